"""FSQ: finite scalar quantization (Mentzer et al. 2023). Each of ``D = len(levels)`` channels is
bounded and rounded to one of ``levels[i]`` values; the codebook is the implicit grid of
``prod(levels)`` points: nothing to learn, no auxiliary loss, no codebook collapse."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .base import BaseQuantizerConfig, GridQuantizer, kind_field, register_kind


@dataclass
class FSQConfig(BaseQuantizerConfig):
    levels: tuple[int, ...] = (8, 5, 5, 5)      # quantization levels per channel; prod = codebook size
    kind: str = kind_field("fsq")

    def __post_init__(self):
        if not self.levels or min(self.levels) < 3:
            raise ConfigError(f"quantizer.levels must be a non-empty list of integers >= 3, got {self.levels}")

    @property
    def dim(self) -> int:
        return len(self.levels)

    @property
    def size(self) -> int:
        return math.prod(self.levels)


@register_kind("fsq", FSQConfig)
class FSQQuantizer(GridQuantizer):
    """FSQ over ``[B, D, H, W]`` latents; the contract of :class:`~unitok.quantize.base.GridQuantizer`."""

    def __init__(self, cfg: FSQConfig):
        super().__init__(cfg)
        from vector_quantize_pytorch import FSQ

        self.impl = FSQ(levels=list(cfg.levels), dim=cfg.dim)

    def _quantize(self, z: torch.Tensor):
        q, codes = self.impl(z)
        return q, codes, None

    def _vectors(self, codes: torch.Tensor) -> torch.Tensor:
        return self.impl._indices_to_codes(codes)

    def _ids(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.impl.codes_to_indices(vectors)
