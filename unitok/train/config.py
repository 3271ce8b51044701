"""Recipe configs: a YAML file over a recipe's defaults, with every unknown key refused."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..checkpoint import config_from_dict
from ..errors import ConfigError
from .runtime import check_schedule


def read_config(path: str | Path, defaults: dict, model_class: type, overrides: dict | None = None) -> dict:
    """YAML -> nested dict with a recipe's ``defaults`` filled in and ``cfg["model_config"]`` built as
    ``model_class``; unknown sections or keys raise. Shared by the recipes."""
    path = Path(path)
    try:
        user = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(user, dict):
        raise ConfigError(f"{path}: expected a mapping with sections {sorted(defaults)}")
    cfg = json.loads(json.dumps(defaults))
    for section, values in [*user.items(), *(overrides or {}).items()]:
        if section not in defaults:
            raise ConfigError(f"{path}: unknown section {section!r}; valid: {sorted(defaults)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping")
        if section != "model":
            unknown = set(values) - set(defaults[section])
            if unknown:
                raise ConfigError(f"{path}: unknown option(s) {sorted(unknown)} in {section!r}; valid: "
                                  f"{sorted(defaults[section])}")
        if section == "model" and isinstance(values.get("quantizer"), dict):
            values = {**values, "quantizer": {**cfg["model"].get("quantizer", {}), **values["quantizer"]}}
        cfg[section].update(values)
    if "schedule" in cfg.get("train", {}):
        try:
            check_schedule(cfg["train"])
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    cfg["model_config"] = config_from_dict(model_class, cfg["model"], source=f"{path}: model")
    return cfg
