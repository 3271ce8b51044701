"""Convolutional building blocks shared by the media tokenizers (2-D here; video and audio add
their own causal variants next to these)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def norm2d(kind: str, channels: int) -> nn.Module:
    """``"group"``: GroupNorm (VQGAN); ``"none"``: identity (faster on CPU; the residual blocks
    are zero-initialised so a deep stack still starts as the identity)."""
    if kind == "group":
        return nn.GroupNorm(min(32, channels // 4) or 1, channels, eps=1e-6)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; use 'group' or 'none'")


class ResBlock(nn.Module):
    """x: [B, C_in, H, W] -> [B, C_out, H, W]; norm -> SiLU -> conv3x3, twice, plus a skip."""

    def __init__(self, c_in: int, c_out: int | None = None, norm: str = "group"):
        super().__init__()
        c_out = c_out or c_in
        self.norm1 = norm2d(norm, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = norm2d(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        # the block starts as the identity: deep stacks train from step one
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Downsample(nn.Module):
    """x: [B, C_in, H, W] -> [B, C_out, H/2, W/2] (H, W even): a strided 3x3 conv."""

    def __init__(self, c_in: int, c_out: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out or c_in, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """x: [B, C_in, H, W] -> [B, C_out, 2H, 2W]: nearest upsampling then a 3x3 conv (no
    checkerboard artefacts of transposed convs)."""

    def __init__(self, c_in: int, c_out: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out or c_in, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, x: [B, C, H, W] -> same (VQGAN's
    mid-block). Used only at the lowest resolution, where H*W is small."""

    def __init__(self, channels: int, norm: str = "group"):
        super().__init__()
        self.norm = norm2d(norm, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).transpose(-1, -2).unbind(1)  # [B, HW, C]
        h = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.out(h.transpose(-1, -2).reshape(B, C, H, W))
