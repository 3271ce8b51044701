"""Recipe configs: a YAML file over a recipe's defaults, with every unknown key refused."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..checkpoint import config_from_dict
from ..errors import ConfigError
from .runtime import check_schedule


_KINDS = ((bool, "true or false"), (int, "a whole number"), (float, "a number"), (str, "a string"),
          (list, "a list"), (dict, "a mapping"))


def _typed(path: Path, section: str, key: str, value, default):
    """``value`` checked against the kind of its default (a default of None takes anything): a
    wrong kind is a ConfigError naming the file and the key, not a TypeError deep in training. A
    number where a float is expected is taken as a float, so is a string YAML did not read as a
    number (``1e-4``: PyYAML wants ``1.0e-4``)."""
    if default is None or value is None:
        return value
    for kind, words in _KINDS:
        if isinstance(default, kind):
            break
    else:
        return value
    if kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if kind is float:   # an int is a number too; True is not
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{path}: {section}.{key} must be {words}, got {value!r}")
    return float(value) if kind is float else value


def _check_ranges(path: Path, train: dict) -> None:
    for key, low in (("steps", 0), ("batch_size", 1), ("warmup", 0)):   # steps 0: validate and export only
        if key in train and train[key] is not None and train[key] < low:
            raise ConfigError(f"{path}: train.{key} must be at least {low}, got {train[key]!r}")
    if "lr" in train and train["lr"] is not None and not train["lr"] > 0:
        raise ConfigError(f"{path}: train.lr must be positive, got {train['lr']!r}")


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
            values = {k: _typed(path, section, k, v, defaults[section][k]) for k, v in values.items()}
        if section == "model" and isinstance(values.get("quantizer"), dict):
            values = {**values, "quantizer": {**cfg["model"].get("quantizer", {}), **values["quantizer"]}}
        cfg[section].update(values)
    _check_ranges(path, cfg.get("train", {}))
    if "schedule" in cfg.get("train", {}):
        try:
            check_schedule(cfg["train"])
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    cfg["model_config"] = config_from_dict(model_class, cfg["model"], source=f"{path}: model")
    return cfg
