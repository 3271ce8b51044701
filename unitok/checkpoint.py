"""Checkpoints: a folder holding ``config.json`` + ``model.safetensors``. Never pickle.

``config.json`` names the tokenizer ``type`` (e.g. ``"text.bpe"``, ``"image.vq"``). Classes
register under their type with :func:`register`; :func:`load_pretrained` resolves a folder's type
to its class, importing ``unitok.<family>`` on first use, so a modality package plugs in by
registering itself, with no edit to the core. No code is ever executed from a checkpoint: the type
is looked up in the registry, and only modules inside the ``unitok`` package are imported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import re
import typing
from pathlib import Path
from typing import Any, ClassVar

from .errors import ConfigError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".npy")

_REGISTRY: dict[str, type] = {}
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")


def register(type_name: str):
    """Class decorator: make ``load_pretrained`` build checkpoints of ``type_name`` with this class."""
    if not _TYPE_RE.match(type_name):
        raise ValueError(f"checkpoint type must look like 'family.kind', got {type_name!r}")

    def deco(cls):
        other = _REGISTRY.get(type_name)
        if other is not None and other.__qualname__ != cls.__qualname__:
            raise ValueError(f"checkpoint type {type_name!r} is already registered by {other!r}")
        _REGISTRY[type_name] = cls
        cls.checkpoint_type = type_name
        return cls

    return deco


def registered_types() -> dict[str, type]:
    return dict(_REGISTRY)


def resolve(type_name: str, *, source: str = "checkpoint") -> type:
    if not isinstance(type_name, str) or not _TYPE_RE.match(type_name):
        raise ConfigError(f"{source}: invalid tokenizer type {type_name!r}")
    if type_name not in _REGISTRY:
        family = type_name.split(".")[0]
        try:
            importlib.import_module(f"unitok.{family}")
        except ModuleNotFoundError:
            pass
    try:
        return _REGISTRY[type_name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ConfigError(f"{source}: unknown tokenizer type {type_name!r} (registered: {known}); "
                          f"is the package that provides it installed and imported?") from None


def _refuse_pickle(folder: Path) -> None:
    if (folder / WEIGHTS_NAME).exists():
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ConfigError(f"{folder}: found {', '.join(pickles)} but no {WEIGHTS_NAME}; pickle checkpoints are "
                          f"refused because loading them can run arbitrary code. Convert the weights to "
                          f"safetensors with a trusted tool first.")


def read_config(folder: str | Path) -> dict:
    """``config.json`` of a checkpoint folder, validated to be a JSON object with a ``type``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: checkpoint folder not found" if not folder.exists()
                          else f"{folder}: a checkpoint is a folder holding {CONFIG_NAME}, not a file")
    _refuse_pickle(folder)
    path = folder / CONFIG_NAME
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing; a checkpoint folder needs {CONFIG_NAME}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e}); the file is truncated or corrupted") from None
    if not isinstance(data, dict) or "type" not in data:
        raise ConfigError(f"{path}: expected a JSON object with a 'type' field")
    version = data.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise ConfigError(f"{path}: checkpoint format version {version!r} is not supported "
                          f"(this unitok reads version {FORMAT_VERSION})")
    return data


def write_config(folder: str | Path, type_name: str, config: dict, **extra: Any) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = {"type": type_name, "format_version": FORMAT_VERSION, "config": config, **extra}
    (folder / CONFIG_NAME).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_weights(folder: str | Path, state_dict: dict, *, dtype=None) -> None:
    """Write ``model.safetensors``; floating tensors are cast to ``dtype`` when given (fp16 keeps
    bundled checkpoints small)."""
    from safetensors.torch import save_file

    tensors = {}
    for k, v in state_dict.items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v.contiguous()
    Path(folder).mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(Path(folder) / WEIGHTS_NAME), metadata={"format": "pt", "producer": "unitok"})


def load_weights(folder: str | Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS_NAME
    if not path.exists():
        _refuse_pickle(Path(folder))
        raise ConfigError(f"{path}: missing; a model checkpoint needs {WEIGHTS_NAME}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read safetensors ({e}); the file is truncated or corrupted") from None


def load_pretrained(folder: str | Path, **kwargs):
    """Load any registered tokenizer from its checkpoint folder."""
    config = read_config(folder)
    cls = resolve(config["type"], source=str(Path(folder) / CONFIG_NAME))
    return cls.from_pretrained(folder, **kwargs)


def state_fingerprint(state_dict: dict) -> str:
    """sha256 over parameter names, shapes, dtypes and bytes: two models with the same config but
    different weights give different token spaces."""
    import torch

    h = hashlib.sha256()
    for k in sorted(state_dict):
        v = state_dict[k].detach().cpu().contiguous()
        h.update(f"{k}:{tuple(v.shape)}:{v.dtype};".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# -- config dataclasses ---------------------------------------------------------------------------


def config_to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(cls: type, data: dict, *, source: str = "config"):
    """Build a (possibly nested) config dataclass from a dict, refusing unknown or ill-typed keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected an object for {cls.__name__}, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{source}: unknown {cls.__name__} option(s) {sorted(unknown)}; "
                          f"valid options: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        hint = hints.get(name)
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = config_from_dict(hint, value, source=f"{source}.{name}")
        elif (hint is tuple or typing.get_origin(hint) is tuple) and isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: invalid {cls.__name__}: {e}") from None


class Pretrained:
    """Mixin for ``nn.Module`` tokenizers configured by a dataclass ``config_class``.

    Subclasses set ``config_class`` and build themselves with ``__init__(cfg)``.
    """

    config_class: ClassVar[type]
    checkpoint_type: ClassVar[str]

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg)

    def save_pretrained(self, folder: str | Path, *, dtype=None) -> None:
        write_config(folder, self.checkpoint_type, config_to_dict(self.cfg))
        save_weights(folder, self.state_dict(), dtype=dtype)

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, device: str = "cpu"):
        data = read_config(folder)
        source = str(Path(folder) / CONFIG_NAME)
        if data["type"] != cls.checkpoint_type:
            raise ConfigError(f"{source}: holds a {data['type']!r} checkpoint, not {cls.checkpoint_type!r}")
        cfg = config_from_dict(cls.config_class, data.get("config", {}), source=source)
        model = cls.from_config(cfg)
        state = load_weights(folder)
        expected = model.state_dict()
        missing, extra = set(expected) - set(state), set(state) - set(expected)
        if missing or extra:
            raise ConfigError(f"{Path(folder) / WEIGHTS_NAME}: weights do not match the config "
                              f"(missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]})")
        for k, v in state.items():
            if v.shape != expected[k].shape:
                raise ConfigError(f"{Path(folder) / WEIGHTS_NAME}: {k} has shape {tuple(v.shape)}, the config "
                                  f"needs {tuple(expected[k].shape)}")
            state[k] = v.to(expected[k].dtype)
        model.load_state_dict(state)
        return model.to(device).eval()
