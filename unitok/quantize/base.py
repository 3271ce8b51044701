"""The contract every quantizer in unitok fulfils, and the registry of quantizer kinds.

A quantizer turns a latent into integer ids and back:

- ``forward(z) -> (quantized, codes, aux_loss [])``: the training pass; ``aux_loss`` is the
  quantizer's own loss (commitment, entropy; zero where there is none);
- ``encode(z) -> codes``: integer ids (int64), as everywhere in unitok; never changes the module
  (no EMA update, no dead-code expiry, whatever the training mode);
- ``decode(codes, ...) -> quantized latent``: the code vectors the ids stand for; in eval mode
  ``forward`` returns exactly ``decode(codes)``, so decoding stored ids gives bit for bit what
  encoding saw;
- ``codebook_sizes`` (one entry per level of ids), ``codebook_size``, ``dim`` (latent channels).

Shapes depend on the family: :class:`GridQuantizer` (FSQ, VQ, LFQ) works on ``[B, D, H, W]``
with codes ``[B, H, W]``; the multi-scale wrapper gives one ``[B, h_s, w_s]`` map per scale; the
residual quantizer works on ``[B, D, T]`` with codes ``[B, K, T]``. Quantization runs in fp32,
also under bf16 autocast (bf16 rounding would move codes).

Kinds: each kind is one file that registers its config dataclass and its module with
:func:`register_kind`; :func:`build_quantizer` builds any registered config, and
:func:`quantizer_config` reads one from a ``config.json`` dict (``{"kind": ..., ...}``),
including the flat forms that unitok wrote before the kinds had configs of their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from dataclasses import dataclass
import torch
from einops import rearrange
from torch import nn

from ..checkpoint import config_from_dict
from ..errors import ConfigError
from ..layout import MISSING


class BaseQuantizerConfig:
    """Base of every kind's config dataclass (not a dataclass itself, so a config field typed
    with it takes a ``{"kind": ...}`` dict that :func:`quantizer_config` turns into the kind's
    config). Subclasses declare ``kind`` as a field with ``init=False`` so that it is saved."""

    kind: str

    @property
    def dim(self) -> int:
        """Channels of the latent the quantizer takes."""
        raise NotImplementedError

    @property
    def size(self) -> int:
        """Entries of each level's (implicit) codebook."""
        raise NotImplementedError


def kind_field(name: str):
    """The ``kind`` field of a config dataclass: saved with the config, not a constructor argument."""
    return dataclasses.field(default=name, init=False)


@dataclass(frozen=True)
class Kind:
    name: str
    config: type
    module: type


_KINDS: dict[str, Kind] = {}


def register_kind(name: str, config: type):
    """Class decorator for a quantizer module: ``build_quantizer`` builds configs of ``config``
    (whose ``kind`` is ``name``) with it."""

    def deco(module: type) -> type:
        other = _KINDS.get(name)
        if other is not None and other.module.__qualname__ != module.__qualname__:
            raise ValueError(f"quantizer kind {name!r} is already registered by {other.module!r}")
        _KINDS[name] = Kind(name, config, module)
        return module

    return deco


def kinds() -> dict[str, Kind]:
    return dict(_KINDS)


def lookup(name: str, *, source: str = "quantizer") -> Kind:
    """The registered kind ``name``; ``unitok.quantize.<name>`` is imported on first use, so a kind
    in a file of its own needs no other edit."""
    if name not in _KINDS and isinstance(name, str) and name.isidentifier():
        try:
            importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError:
            pass
    try:
        return _KINDS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"{source}: quantizer kind {name!r} is unknown; use one of {sorted(_KINDS)}") from None


def build_quantizer(cfg: BaseQuantizerConfig) -> "Quantizer":
    """The quantizer module of a config of any registered kind."""
    kind = lookup(getattr(cfg, "kind", None), source=type(cfg).__name__)
    if not isinstance(cfg, kind.config):
        raise ConfigError(f"a {type(cfg).__name__} cannot configure a {kind.name!r} quantizer")
    return kind.module.from_config(cfg)


# flat keys of the single config unitok wrote before each kind had its own: image and video
# quantizers ({kind: fsq|vq|lfq, ...every kind's options..., scales, refine}) and audio ones
# ({kind: rvq|rfsq, ...}); a file written then holds every key, whatever its kind
FLAT_GRID_KEYS = frozenset({"kind", "levels", "codebook_size", "codebook_dim", "commitment_weight", "ema_decay",
                            "kmeans_init", "dead_code_threshold", "bits", "spherical", "entropy_weight", "scales",
                            "refine"})
FLAT_RESIDUAL_KEYS = frozenset({"kind", "levels", "dim", "codebook_size", "ema_decay", "kmeans_init",
                                "dead_code_threshold", "commitment_weight", "fsq_levels", "dropout", "min_levels"})
FLAT_KEYS = {"fsq": FLAT_GRID_KEYS, "vq": FLAT_GRID_KEYS, "lfq": FLAT_GRID_KEYS,
             "rvq": FLAT_RESIDUAL_KEYS, "rfsq": FLAT_RESIDUAL_KEYS}


def quantizer_config(data, *, source: str = "quantizer") -> BaseQuantizerConfig:
    """A quantizer config from its ``config.json`` form: ``{"kind": "fsq", "levels": [...]}``,
    ``{"kind": "multiscale", "quantizer": {...}, "scales": [...], "refine": true}`` and so on, or
    the flat form older unitok wrote (``{"kind": "fsq", "levels": ..., "codebook_size": ...,
    "scales": [...], ...}``, where the options of the other kinds are ignored). Unknown keys are
    refused with the valid ones named. A config object passes through."""
    if isinstance(data, BaseQuantizerConfig):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected an object with a 'kind', got {type(data).__name__}")
    kind = lookup(data.get("kind", "fsq"), source=source)     # "fsq" was the default of the flat form
    rest = {k: v for k, v in data.items() if k != "kind"}
    own = {f.name for f in dataclasses.fields(kind.config) if f.init}
    flat = FLAT_KEYS.get(kind.name, frozenset())
    if set(rest) <= own or not set(rest) <= flat:
        return config_from_dict(kind.config, rest, source=source)
    inner = config_from_dict(kind.config, {k: v for k, v in rest.items() if k in own}, source=source)
    if flat is not FLAT_GRID_KEYS or not rest.get("scales"):
        return inner
    return quantizer_config({"kind": "multiscale", "quantizer": inner, "scales": rest["scales"],
                             **({"refine": rest["refine"]} if "refine" in rest else {})}, source=source)


def QuantizerConfig(**flat) -> BaseQuantizerConfig:   # noqa: N802 (the name of the old class)
    """The config of the flat keyword form older unitok took, e.g. ``QuantizerConfig(kind="fsq",
    levels=(5, 5, 5), scales=(4, 2, 1))`` -> ``MultiScaleConfig(FSQConfig((5, 5, 5)), (4, 2, 1))``.
    Kept so that code written then still runs; new code builds the kind's config directly."""
    unknown = set(flat) - FLAT_GRID_KEYS
    if unknown:
        raise ConfigError(f"unknown QuantizerConfig option(s) {sorted(unknown)}; valid options: "
                          f"{sorted(FLAT_GRID_KEYS)}")
    data = {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()}
    return quantizer_config({"kind": "fsq", **data}, source="QuantizerConfig")


# -- modules ----------------------------------------------------------------------------------------


def fp32(device_type: str):
    """Quantization in fp32 whatever autocast says (bf16 rounding would move codes)."""
    return torch.autocast(device_type=device_type, enabled=False)


@contextlib.contextmanager
def eval_mode(module: nn.Module):
    """``module`` in eval mode for the block (no EMA update, no dead-code expiry), then as before."""
    was = module.training
    module.train(False)
    try:
        yield module
    finally:
        module.train(was)


class Quantizer(nn.Module):
    """Base of every quantizer module: the contract of the module docstring."""

    dim: int
    codebook_size: int

    @classmethod
    def from_config(cls, cfg: BaseQuantizerConfig) -> "Quantizer":
        return cls(cfg)

    @property
    def codebook_sizes(self) -> list[int]:
        """Codebook entries per level of ids (one level: the codebook is shared)."""
        return [self.codebook_size]

    @torch.no_grad()
    def encode(self, z: torch.Tensor):
        """z -> codes, int64 (nearest codes; the module is not changed)."""
        with eval_mode(self):
            return self(z)[1]

    def decode(self, codes, *args) -> torch.Tensor:
        raise NotImplementedError


class GridQuantizer(Quantizer):
    """A single-scale quantizer over ``[B, D, H, W]`` latents, one code per position:

    - ``forward(z: [B, D, H, W]) -> (quantized [B, D, H, W] fp32, codes [B, H, W] int64, aux_loss [])``;
    - ``encode(z: [B, D, H, W]) -> codes [B, H, W]``;
    - ``decode(codes: [B, H, W]) -> quantized [B, D, H, W] fp32`` (the code vectors);
    - ``vectors_to_codes(vectors: [B, D, H, W]) -> codes [B, H, W]`` (inverse of ``decode``).

    A kind implements ``_quantize``, ``_vectors`` and ``_ids`` over channels-last tensors.
    """

    def __init__(self, cfg: BaseQuantizerConfig):
        super().__init__()
        self.cfg = cfg
        self.dim = cfg.dim
        self.codebook_size = cfg.size

    def _quantize(self, z: torch.Tensor):
        """z: [B, D, H, W] fp32 -> (quantized [B, D, H, W], codes [B, H, W], aux loss or None)."""
        raise NotImplementedError

    def _vectors(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, H, W] int64 -> code vectors [B, H, W, D]."""
        raise NotImplementedError

    def _ids(self, vectors: torch.Tensor) -> torch.Tensor:
        """vectors: [B, H, W, D] fp32 -> codes [B, H, W] int64."""
        raise NotImplementedError

    def forward(self, z: torch.Tensor):
        """z: [B, D, H, W] -> (quantized [B, D, H, W] fp32, codes [B, H, W] int64, aux_loss [])."""
        if z.ndim != 4 or z.shape[1] != self.dim:
            raise ValueError(f"quantizer expects [B, {self.dim}, H, W], got {tuple(z.shape)}")
        with fp32(z.device.type):
            z = z.float()
            q, codes, aux = self._quantize(z)
            codes = codes.long()
            if not self.training:
                q = self.decode(codes)
            if aux is None:
                aux = z.new_zeros(())
            return q, codes, aux.float().reshape(()) if torch.is_tensor(aux) else z.new_tensor(float(aux))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, H, W] int -> quantized latent [B, D, H, W] fp32. A code ``MISSING`` (-1: not
        in a truncated sequence) decodes as :meth:`neutral_code`, the code nearest zero."""
        codes = codes.long()
        missing = codes == MISSING
        if missing.any():
            codes = torch.where(missing, self.neutral_code(codes.device), codes)
        vectors = self._vectors(codes)
        return rearrange(vectors.float(), "b h w d -> b d h w").contiguous()

    def neutral_code(self, device: torch.device | str = "cpu") -> int:
        """The code whose vector is nearest zero (among the first 65,536 of a larger codebook):
        what stands in for a missing code where nothing else is known."""
        n = min(self.codebook_size, 1 << 16)
        with torch.no_grad():
            vectors = self._vectors(torch.arange(n, device=device)[None, None]).float()
        return int(vectors.flatten(0, 2).norm(dim=-1).argmin())

    def vectors_to_codes(self, vectors: torch.Tensor) -> torch.Tensor:
        """vectors: [B, D, H, W] (as ``decode`` gives them) -> codes [B, H, W] int64."""
        return self._ids(rearrange(vectors.float(), "b d h w -> b h w d")).long()
