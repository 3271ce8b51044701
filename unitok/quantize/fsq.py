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

    # -- bit planes: a code known only to the top bits of each channel's level ---------------------

    @property
    def plane_bits(self) -> int | None:
        """Bits per channel when every channel has the same power-of-two number of levels (8 -> 3),
        so a code is ``dim`` stacked bit planes; None otherwise."""
        levels = set(self.cfg.levels)
        n = next(iter(levels))
        return n.bit_length() - 1 if len(levels) == 1 and n & (n - 1) == 0 else None

    def digits(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [...] int -> level index of each channel [..., D] (0 .. levels - 1)."""
        basis = self.impl._basis.to(codes.device).long()
        levels = self.impl._levels.to(codes.device).long()
        return (codes.long()[..., None] // basis) % levels

    def check_planes(self, planes: int) -> int:
        bits = self.plane_bits
        if bits is None:
            raise ConfigError(f"decoding bit planes needs FSQ levels that are one power of two for every "
                              f"channel (e.g. [8, 8, 8, 8]), this quantizer's are {list(self.cfg.levels)}")
        if not isinstance(planes, int) or isinstance(planes, bool) or not 1 <= planes <= bits:
            raise ConfigError(f"planes must be an int in 1..{bits} (bits per channel of these codes), got {planes!r}")
        return planes

    def decode_planes(self, codes: torch.Tensor, planes: int, prior: torch.Tensor | None = None) -> torch.Tensor:
        """codes: [B, H, W] whose channels are known to their top ``planes`` bits (the low bits are
        ignored) -> [B, D, H, W]: each channel at the mean level of its bin, weighted by ``prior``
        ([D, L], how often each level occurs; None: the bin's centre)."""
        bits = self.plane_bits
        if self.check_planes(planes) == bits:
            return self.decode(codes)
        width = 1 << (bits - planes)               # levels per bin
        levels = torch.arange(1 << bits, dtype=torch.float32, device=codes.device)
        weight = torch.ones(self.dim, 1 << bits, device=codes.device) if prior is None else prior.float().to(codes.device)
        weight = weight.reshape(self.dim, -1, width) + 1e-12       # [D, bins, width]
        means = (weight * levels.reshape(1, -1, width)).sum(-1) / weight.sum(-1)    # [D, bins]
        top = self.digits(codes.clamp_min(0)) // width              # [B, H, W, D]
        level = torch.gather(means.T.expand(*top.shape[:-1], -1, -1), -2, top[..., None, :]).squeeze(-2)
        return self.impl._scale_and_shift_inverse(level).permute(0, 3, 1, 2).contiguous()
