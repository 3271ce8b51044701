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
import math
import os
import re
import typing
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.overrides import TorchFunctionMode

from .errors import ConfigError
from .files import ASSETS, file_sha256, read_regular_file, regular_file_size  # noqa: F401  (ASSETS, file_sha256: re-exported)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
MAX_CONFIG_BYTES = 16 * 1024 * 1024   # a config.json larger than this is not read
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
    if not os.path.lexists(path):
        raise ConfigError(f"{path}: missing; a checkpoint folder needs {CONFIG_NAME}")
    raw = read_regular_file(path, MAX_CONFIG_BYTES, ConfigError, "config")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:   # bad JSON, huge numbers, deep nesting
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
    tensors = {}
    for k, v in state_dict.items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v.contiguous()
    Path(folder).mkdir(parents=True, exist_ok=True)
    save_tensors(Path(folder) / WEIGHTS_NAME, tensors, metadata={"format": "pt", "producer": "unitok"})


def save_tensors(path: str | Path, tensors: dict, metadata: dict | None = None) -> None:
    """``safetensors.torch.save_file``, then the file gets the permissions of any file this
    process creates: safetensors writes through a private temporary file (mode 0600), and a
    checkpoint on a shared cluster must be readable by the team's other users."""
    save_file(tensors, str(path), metadata=metadata)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def check_weights_digest(folder: str | Path, data: dict) -> None:
    """Compare ``model.safetensors`` with the ``weights_sha256`` its config.json recorded when it
    was saved (checkpoints written before unitok recorded it carry none and are not checked)."""
    want = data.get("weights_sha256")
    if want is None:
        return
    path = Path(folder) / WEIGHTS_NAME
    if not isinstance(want, str) or file_sha256(path) != want.lower():
        raise ConfigError(f"{path}: does not match the weights_sha256 recorded in {CONFIG_NAME}; the file was "
                          f"changed or damaged after it was saved (if you replaced the weights on purpose, "
                          f"delete weights_sha256 from {CONFIG_NAME})")


def load_weights(folder: str | Path) -> dict:
    path = Path(folder) / WEIGHTS_NAME
    if not path.exists():
        _refuse_pickle(Path(folder))
        raise ConfigError(f"{path}: missing; a model checkpoint needs {WEIGHTS_NAME}")
    regular_file_size(path, ConfigError, "weights file")   # a FIFO would block the reader for ever
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read safetensors ({e}); the file is truncated or corrupted") from None
    for k, v in state.items():
        if v.is_floating_point() and not bool(v.isfinite().all()):
            raise ConfigError(f"{path}: tensor {k!r} holds NaN or infinite values; the file is corrupted")
    return state


DEVICE_PATTERN = re.compile(r"^(cpu|cuda|mps|xpu)(:\d+)?$")


def check_device(device) -> torch.device:
    """``device`` as a torch device that exists on this machine, or a ConfigError that says why
    (a misspelt name, or a GPU that torch cannot see) and what to pass instead."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not DEVICE_PATTERN.match(device):
        raise ConfigError(f"device {device!r} is not a torch device; use cpu, cuda, cuda:N or mps")
    kind, _, index = device.partition(":")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise ConfigError(f"device {device!r}: torch sees no CUDA GPU here (no GPU, no driver, or a CPU-only "
                              f"torch build); use --device cpu")
        if index and int(index) >= count:
            raise ConfigError(f"device {device!r}: torch sees {count} CUDA GPU(s), cuda:0..cuda:{count - 1}")
    elif kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r}: the MPS backend is not available here; use --device cpu")
    elif kind == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise ConfigError(f"device {device!r}: no XPU is available here; use --device cpu")
    return torch.device(device)


def load_pretrained(folder: str | Path, **kwargs):
    """Load any registered tokenizer from its checkpoint folder."""
    config = read_config(folder)
    cls = resolve(config["type"], source=str(Path(folder) / CONFIG_NAME))
    return cls.from_pretrained(folder, **kwargs)


def _construction_budget(weights: Path):
    """A torch function mode that refuses, before allocating, a model much larger than its
    weights file: a config edited to ask for 2**63 layers or a billion channels must fail with a
    ConfigError, not exhaust memory or loop for ever while the model is built."""
    sized = {torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn, torch.full}
    # every parameter or buffer has at least one byte and one entry in the file; the slack covers
    # temporaries (a model creates about one tensor per entry)
    budget = 2 * weights.stat().st_size + (1 << 24)
    tensors = 2 * _tensor_count(weights) + 256

    class Budget(TorchFunctionMode):
        used = created = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in sized:
                size = kwargs.get("size", args[0] if func is torch.full else args)
                if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)):
                    size = size[0]
                numel = 1
                for d in size:
                    numel *= max(int(d), 0)
                self.used += numel
                self.created += 1
                if self.used > budget or self.created > tensors:
                    what = f"{budget} values" if self.used > budget else f"{tensors} tensors"
                    raise ConfigError(f"{weights.parent / CONFIG_NAME}: the config describes a model of more than "
                                      f"{what}, far more than {weights} holds; the config is corrupt or belongs "
                                      f"to other weights")
            return func(*args, **kwargs)

    return Budget()


def _tensor_count(weights: Path) -> int:
    """Entries in a safetensors header (read alone: 8 bytes of length, then JSON); a huge number
    when the header is unreadable, so that load_weights reports the damage instead."""
    try:
        with open(weights, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n)) if n <= 100 * 1024 * 1024 else None
        return len(header) if isinstance(header, dict) else 1 << 40
    except (OSError, ValueError, RecursionError):   # RecursionError: a header nested too deeply
        return 1 << 40


def state_fingerprint(state_dict: dict) -> str:
    """sha256 over parameter names, shapes, dtypes and bytes: two models with the same config but
    different weights give different token spaces."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        v = state_dict[k].detach().cpu().contiguous()
        h.update(f"{k}:{tuple(v.shape)}:{v.dtype};".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# -- config dataclasses ---------------------------------------------------------------------------


def config_to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


TRAINING_ONLY = "unitok.training_only"


def training_only(default=dataclasses.MISSING, *, default_factory=dataclasses.MISSING):
    """A config field that shapes training only (a loss weight, an EMA rate, quantizer dropout):
    it is saved with the config but is not part of the fingerprint, so changing it keeps every
    dataset tokenized before decodable. Mark a field so only if no trained model's ids or decoded
    output can depend on it."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={TRAINING_ONLY: True})


def _field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _plain(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def id_config(cfg) -> dict:
    """The part of a config dataclass that decides ids and decoding: what a fingerprint hashes.

    Training-only fields (:func:`training_only`) are left out, and so is every field at its
    default value, so that a field added later (whose default keeps the old behaviour) leaves the
    fingerprints of existing checkpoints as they were. Nested config dataclasses are reduced the
    same way; one whose class is not the field's default class also records that class's name (a
    VQ quantizer where the default is FSQ)."""
    out = {}
    for f in dataclasses.fields(cfg):
        if f.metadata.get(TRAINING_ONLY):
            continue
        value, default = getattr(cfg, f.name), _field_default(f)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            nested = id_config(value)
            if type(value) is not type(default):
                nested["class"] = type(value).__name__
            if nested:
                out[f.name] = nested
        elif default is dataclasses.MISSING or _plain(value) != _plain(default):
            out[f.name] = _plain(value)
    return out


def _fits(value, hint) -> bool:
    """Whether a config value has its field's type (for the scalar and tuple types configs use; other
    hints are left to the dataclass), so a damaged config.json fails here and not deep in a model."""
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if hint is tuple or typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        return args != (int, ...) or all(_fits(v, int) for v in value)
    return True


def config_from_dict(cls: type, data: dict, *, source: str = "config"):
    """Build a (possibly nested) config dataclass from a dict, refusing unknown or ill-typed keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected an object for {cls.__name__}, got {type(data).__name__}")
    if hasattr(cls, "upgrade_config"):      # a config class that reads the form older unitok wrote
        data = cls.upgrade_config(data)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{source}: unknown {cls.__name__} option(s) {sorted(unknown)}; "
                          f"valid options: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        hint = hints.get(name)
        if dataclasses.is_dataclass(hint) and not isinstance(value, hint):
            value = config_from_dict(hint, value, source=f"{source}.{name}")
        elif (hint is tuple or typing.get_origin(hint) is tuple) and isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        if not _fits(value, hint):
            raise ConfigError(f"{source}: {cls.__name__}.{name} must be {getattr(hint, '__name__', hint)}, got "
                              f"{value!r:.60}")
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
        save_weights(folder, self.state_dict(), dtype=dtype)
        write_config(folder, self.checkpoint_type, config_to_dict(self.cfg),
                     weights_sha256=file_sha256(Path(folder) / WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, device: str = "cpu"):
        device = check_device(device)
        data = read_config(folder)
        source = str(Path(folder) / CONFIG_NAME)
        if data["type"] != cls.checkpoint_type:
            raise ConfigError(f"{source}: holds a {data['type']!r} checkpoint, not {cls.checkpoint_type!r}")
        cfg = config_from_dict(cls.config_class, data.get("config", {}), source=source)
        weights = Path(folder) / WEIGHTS_NAME
        if not weights.is_file():
            load_weights(folder)    # raises the right error (missing, or a pickle file instead)
        with _construction_budget(weights):
            model = cls.from_config(cfg)
        state = load_weights(folder)        # its errors (truncated, NaN) say more than a digest mismatch
        check_weights_digest(folder, data)
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


def load_bundled(cls, modality: str, device: str = "cpu"):
    """The ``modality`` tokenizer bundled in ``unitok/assets/<modality>`` (a class with
    ``from_pretrained``), or a ConfigError that says how to get one."""
    folder = ASSETS / modality
    if not (folder / CONFIG_NAME).exists():
        raise ConfigError(f"{folder}: the bundled {modality} tokenizer is missing; reinstall unitok or train one "
                          f"with `unitok train {modality} --config recipes/configs/{modality}_default.yaml`")
    return cls.from_pretrained(folder, device=device)
