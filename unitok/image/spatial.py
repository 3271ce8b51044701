"""The spatial core that the image and the video tokenizer share.

- :class:`SpatialConfig`: the 2-D network and the quantizer. ``ImageTokenizerConfig`` is one plus
  its layout option; ``VideoTokenizerConfig`` holds one as ``spatial`` (what inflation copies).
- :func:`encoder_levels`, :func:`middle_layers`, :func:`decoder_levels`: the 2-D layers in the
  order both models build them (the video model interleaves its temporal layers through ``per_level``), so that an image
  tokenizer's weights map one to one onto a video tokenizer's 2-D layers.
- :class:`SpatialCodec`: what both tokenizers do around the networks: the latent grid and its
  scales, padding to the stride, bf16 autocast, and the quantizer seen as a pyramid of code maps.
  A single-scale quantizer is a pyramid of one map: the models have one code path, and only their
  public codes (``[B, ..., h, w]`` instead of a one-element list) and layouts (``Raster`` instead
  of ``NextScale``) tell the two apart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..nn import AttnBlock, Downsample, ResBlock, Upsample
from ..quantize import (BaseQuantizerConfig, FSQConfig, GridQuantizer, MultiScaleQuantizer, build_quantizer,
                        quantizer_config)


@dataclass
class SpatialConfig:
    channels: int = 64                          # width of the first level
    channel_mult: tuple[int, ...] = (1, 2)      # width multiplier per level; 2x downsampling between levels
    patch: int = 4                              # space-to-depth stem: the network starts at H/patch
    enc_blocks: int = 1                         # residual blocks per encoder level
    dec_blocks: int = 2                         # residual blocks per decoder level
    mid_blocks: int = 1                         # extra residual blocks at the lowest resolution (each side)
    attention: bool = False                     # self-attention at the lowest resolution
    norm: str = "none"                          # "group" (VQGAN) or "none" (faster on CPU)
    # a grid quantizer (one code map) or a multi-scale one (a pyramid of maps): ``unitok.quantize``
    quantizer: BaseQuantizerConfig = field(default_factory=FSQConfig)

    def __post_init__(self):
        name = type(self).__name__
        if self.channels < 1 or not self.channel_mult or min(self.channel_mult) < 1:
            raise ConfigError(f"{name}: channels and every channel_mult entry must be >= 1")
        if self.patch < 1:
            raise ConfigError(f"{name}: patch must be >= 1, got {self.patch}")
        if self.norm not in ("group", "none"):
            raise ConfigError(f"{name}: norm must be 'group' or 'none', got {self.norm!r}")
        self.quantizer = quantizer_config(self.quantizer, source=f"{name}: quantizer")

    @property
    def downsample(self) -> int:
        """Pixels per latent position along each side."""
        return self.patch * 2 ** (len(self.channel_mult) - 1)

    @property
    def widths(self) -> list[int]:
        """Channels of each level, finest first."""
        return [self.channels * m for m in self.channel_mult]


def spatial_part(cfg: SpatialConfig) -> SpatialConfig:
    """The :class:`SpatialConfig` inside a config that extends it (an ``ImageTokenizerConfig``),
    without a multi-scale quantizer's ``plane_prior``: that describes the codes one trained model
    gives (how often each level occurs), not the network, so a model built from this config (a
    video tokenizer inflated from an image one) does not inherit it."""
    out = SpatialConfig(**{f.name: getattr(cfg, f.name) for f in fields(SpatialConfig)})
    if getattr(out.quantizer, "plane_prior", ()):
        out.quantizer = dataclasses.replace(out.quantizer, plane_prior=())
    return out


# -- the 2-D layers -----------------------------------------------------------------------------------


def encoder_levels(cfg: SpatialConfig, per_level: Callable[[int], list] = lambda width: []) -> list[nn.Module]:
    """The encoder's 2-D layers from the stem to the lowest resolution, finest level first;
    ``per_level(width)`` adds layers after each level's residual blocks."""
    widths = cfg.widths
    levels: list[nn.Module] = []
    for i, w in enumerate(widths):
        levels += [ResBlock(w, w, cfg.norm) for _ in range(cfg.enc_blocks)]
        levels += per_level(w)
        if i + 1 < len(widths):
            levels.append(Downsample(w, widths[i + 1]))
    return levels


def decoder_levels(cfg: SpatialConfig, per_level: Callable[[int], list] = lambda width: []) -> list[nn.Module]:
    """The decoder's 2-D layers from the lowest resolution up, coarsest level first;
    ``per_level(width)`` adds layers after each level's residual blocks."""
    widths = cfg.widths
    levels: list[nn.Module] = []
    for i in reversed(range(len(widths))):
        levels += [ResBlock(widths[i], widths[i], cfg.norm) for _ in range(cfg.dec_blocks)]
        levels += per_level(widths[i])
        if i > 0:
            levels.append(Upsample(widths[i], widths[i - 1]))
    return levels


def middle_layers(cfg: SpatialConfig) -> list[nn.Module]:
    """The 2-D layers at the lowest resolution (each side): residual blocks, then attention."""
    w = cfg.widths[-1]
    layers: list[nn.Module] = [ResBlock(w, w, cfg.norm) for _ in range(cfg.mid_blocks)]
    if cfg.attention:
        layers.append(AttnBlock(w, cfg.norm))
    return layers


# -- the shared tokenizer part ----------------------------------------------------------------------


class SpatialCodec:
    """Mixin of ``ImageTokenizer`` and ``VideoTokenizer``: everything about the latent grid and
    the quantizer. Code maps (``maps``) are always a list over scales, coarse to fine, of
    ``[N, h_s, w_s]`` int64; public codes are that list (multi-scale) or its only entry."""

    quantizer: nn.Module
    amp: bool

    @property
    def spatial_config(self) -> SpatialConfig:
        raise NotImplementedError

    @staticmethod
    def build_quantizer(cfg: SpatialConfig) -> nn.Module:
        quantizer = build_quantizer(cfg.quantizer)
        if not isinstance(quantizer, (GridQuantizer, MultiScaleQuantizer)):
            raise ConfigError(f"{type(cfg).__name__}: quantizer kind {cfg.quantizer.kind!r} does not quantize "
                              f"[B, D, H, W] latents; use fsq, vq, lfq or multiscale")
        return quantizer

    @property
    def multiscale(self) -> bool:
        return isinstance(self.quantizer, MultiScaleQuantizer)

    @property
    def codebook_sizes(self) -> list[int]:
        return self.quantizer.codebook_sizes

    @property
    def downsample(self) -> int:
        """Pixels per latent position along each side."""
        return self.spatial_config.downsample

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Latent grid of a picture (or frame) of ``height x width`` pixels."""
        f = self.downsample
        return math.ceil(height / f), math.ceil(width / f)

    def scales(self, height: int, width: int) -> list[tuple[int, int]]:
        """Code map sizes of a picture (or frame) of ``height x width`` pixels, coarse to fine."""
        h, w = self.grid(height, width)
        return self.quantizer.schedule(h, w) if self.multiscale else [(h, w)]

    def _autocast(self, device: torch.device):
        """bf16 autocast on CUDA (when ``amp``); elsewhere whatever the caller set (the CPU recipes
        wrap their training pass in their own autocast, which an ``enabled=False`` here would undo)."""
        if device.type != "cuda" or not self.amp:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16)

    def _pad_space(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., C, H, W] -> [..., C, H', W'] with H', W' multiples of the stride."""
        f = self.downsample
        ph, pw = -x.shape[-2] % f, -x.shape[-1] % f
        if not (ph or pw):
            return x
        # replicate, not zeros: a black border would cost codes and bleed into the picture
        lead = x.shape[:-3]
        return F.pad(x.flatten(0, -4), (0, pw, 0, ph), mode="replicate").unflatten(0, lead)

    # -- the quantizer as a pyramid of code maps --------------------------------------------------

    def _quantize(self, z: torch.Tensor):
        """z: [N, D, h, w] -> (quantized [N, D, h, w], maps, aux loss [])."""
        q, codes, aux = self.quantizer(z)
        return q, self._maps(codes), aux

    def _encode_maps(self, z: torch.Tensor) -> list[torch.Tensor]:
        """z: [N, D, h, w] -> maps (nearest codes; the quantizer is not changed)."""
        return self._maps(self.quantizer.encode(z))

    def _latent(self, maps: list[torch.Tensor], bits: int | None = None, planes: int | None = None,
                pixels: tuple[int, int] | None = None) -> torch.Tensor:
        """maps -> quantized latent [N, D, h, w]; ``bits``: the maps hold ``bits``-bit prefix
        codes of a bitwise quantizer (``unitok.quantize.bitwise``); ``planes``: the finest scale
        present holds the top ``planes`` bits of each FSQ channel (``MultiScaleQuantizer.decode``);
        ``pixels``: the picture's size, which lets ``maps`` be only the first k scales."""
        if bits is not None:
            if not getattr(self.quantizer, "nested_bits", False):
                raise ConfigError(f"decoding at {bits} bits needs a bitwise quantizer (kind 'bitwise'), "
                                  f"this tokenizer's is {self.spatial_config.quantizer.kind!r}")
            return self.quantizer.decode(maps, bits=bits)
        if planes is not None and not hasattr(getattr(self.quantizer, "quantizer", None), "decode_planes"):
            raise ConfigError(f"decoding bit planes needs a multi-scale FSQ quantizer, this tokenizer's is "
                              f"{self.spatial_config.quantizer.kind!r}")
        if not self.multiscale:
            return self.quantizer.decode(maps[0])
        grid = None if pixels is None else self.grid(*pixels)
        return self.quantizer.decode(maps, grid, **({} if planes is None else {"planes": planes}))

    def _maps(self, codes) -> list[torch.Tensor]:
        """Public codes (tensors or arrays) -> maps on the model's device."""
        return [torch.as_tensor(c, device=self.device).long() for c in (codes if self.multiscale else [codes])]

    def _public(self, maps: list):
        return maps if self.multiscale else maps[0]
