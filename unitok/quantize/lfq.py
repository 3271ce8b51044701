"""LFQ: lookup-free quantization, one bit per channel (``D = bits``, ``2**bits`` codes; MAGVIT-2);
``aux_loss`` is the entropy penalty. ``spherical=True`` is BSQ: the codes lie on the unit sphere
(``+-1/sqrt(bits)`` per channel; Infinity)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..checkpoint import training_only
from ..errors import ConfigError
from .base import BaseQuantizerConfig, GridQuantizer, kind_field, register_kind


class SignBits:
    """Configs whose codes are one sign bit per latent channel: ``bits`` channels, 2**bits codes."""

    bits: int

    def check_bits(self, most: int) -> None:
        if not 1 <= self.bits <= most:
            raise ConfigError(f"quantizer.bits must be in 1..{most}, got {self.bits}")

    @property
    def dim(self) -> int:
        return self.bits

    @property
    def size(self) -> int:
        return 2 ** self.bits


@dataclass
class LFQConfig(SignBits, BaseQuantizerConfig):
    bits: int = 10
    spherical: bool = False                     # BSQ
    entropy_weight: float = training_only(0.1)
    kind: str = kind_field("lfq")

    def __post_init__(self):
        self.check_bits(30)


@register_kind("lfq", LFQConfig)
class LFQQuantizer(GridQuantizer):
    """LFQ / BSQ over ``[B, D, H, W]`` latents; the contract of
    :class:`~unitok.quantize.base.GridQuantizer`."""

    def __init__(self, cfg: LFQConfig):
        super().__init__(cfg)
        from vector_quantize_pytorch import LFQ

        # the entropy term compares every token with every code: sample tokens for big codebooks
        frac = 1.0 if cfg.bits <= 12 else 0.25
        self.impl = LFQ(dim=cfg.bits, codebook_size=2 ** cfg.bits, entropy_loss_weight=cfg.entropy_weight,
                        spherical=cfg.spherical, frac_per_sample_entropy=frac)

    def _quantize(self, z: torch.Tensor):
        return self.impl(z)

    def _vectors(self, codes: torch.Tensor) -> torch.Tensor:
        bits = (codes[..., None] & self.impl.mask.long()) != 0
        vectors = bits.float() * 2 - 1
        return vectors / math.sqrt(self.cfg.bits) if self.cfg.spherical else vectors

    def _ids(self, vectors: torch.Tensor) -> torch.Tensor:
        return ((vectors > 0).long() * self.impl.mask.long()).sum(-1)
