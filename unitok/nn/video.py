"""Layers for causal (2+1)-D video models: 2-D layers run on every frame, these mix frames.

    x: [B, T, C, H, W] (frames in time order) everywhere here; 2-D layers (``unitok.nn.blocks``)
    run on ``x.flatten(0, 1)`` through :func:`per_frame`.

Causality and streaming: output frame ``t`` depends on input frames ``<= t`` only. Every layer
takes a ``state`` dict and keeps in it, under its own key, what the next call needs: the last
input frames of a temporal conv, or whether the stream has started. A fresh dict starts a
stream; passing the same dict to consecutive calls over consecutive windows of frames gives the
one-shot result (up to float rounding, see ``unitok.video``). At the start of a stream a
temporal conv pads with copies of the first frame, so a still picture stays a still video.

All of them start as the identity, or as "use the frame itself" (see each class), so a model
inflated from an image model reproduces that model on a one-frame video exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import norm2d


def per_frame(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D module to every frame: x: [B, T, C, H, W] -> [B, T, C', H', W']."""
    B, T = x.shape[:2]
    y = module(x.flatten(0, 1))
    return y.unflatten(0, (B, T))


class TemporalConv(nn.Module):
    """Causal convolution over time with a 1x1 spatial kernel: x: [B, T, C_in, H, W] ->
    [B, T, C_out, H, W]; output frame t sees input frames t - kernel + 1 .. t.

    Computed as one 1x1 2-D convolution over the ``kernel`` shifted copies of the input stacked
    along channels (a single large matrix product; no 3-D convolution kernels needed).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, bias: bool = True):
        super().__init__()
        if kernel < 1:
            raise ValueError(f"temporal kernel must be >= 1, got {kernel}")
        self.kernel = kernel
        self.conv = nn.Conv2d(kernel * c_in, c_out, 1, bias=bias)

    def forward(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        k, T = self.kernel, x.shape[1]
        if k == 1:
            return per_frame(self.conv, x)
        past = state.get(self)
        if past is None:   # start of the stream: a still past
            past = x[:, :1].expand(-1, k - 1, -1, -1, -1)
        full = torch.cat([past, x], 1)
        state[self] = full[:, full.shape[1] - (k - 1):]
        stacked = torch.cat([full[:, j:j + T] for j in range(k)], 2)
        return per_frame(self.conv, stacked)


class TemporalBlock(nn.Module):
    """Residual block over time: x + conv_t(SiLU(norm(conv_t(SiLU(norm(x)))))), with causal
    temporal convs; the second conv starts at zero, so the block starts as the identity."""

    def __init__(self, channels: int, kernel: int = 3, norm: str = "none"):
        super().__init__()
        self.norm1 = norm2d(norm, channels)
        self.conv1 = TemporalConv(channels, channels, kernel)
        self.norm2 = norm2d(norm, channels)
        self.conv2 = TemporalConv(channels, channels, kernel)
        nn.init.zeros_(self.conv2.conv.weight)
        nn.init.zeros_(self.conv2.conv.bias)

    def forward(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        h = self.conv1(F.silu(per_frame(self.norm1, x)), state)
        h = self.conv2(F.silu(per_frame(self.norm2, h)), state)
        return x + h


class TimeToDepth(nn.Module):
    """Temporal downsampling by ``factor``: x: [B, T, C, h, w] -> [B, T', C, h, w].

    At the start of a stream the first frame is a chunk of its own (``T = 1 + factor * k``,
    ``T' = 1 + k``); afterwards every ``factor`` frames make one chunk (``T = factor * k``).
    A chunk ``f_0 .. f_{r-1}`` becomes ``f_last + W [f_0 - f_last, ..., f_{r-2} - f_last]``: a
    chunk of equal frames (the first frame; any still scene) passes through exactly, whatever W
    has learned. W starts as the average (``1/r`` per frame), so a moving chunk starts as the mean
    of its frames.
    """

    def __init__(self, channels: int, factor: int):
        super().__init__()
        self.factor = factor
        self.mix = nn.Conv2d((factor - 1) * channels, channels, 1, bias=False) if factor > 1 else None
        if self.mix is not None:
            with torch.no_grad():
                eye = torch.eye(channels) / factor
                self.mix.weight.copy_(torch.cat([eye] * (factor - 1), 1)[..., None, None])

    def forward(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        r = self.factor
        if r == 1:
            return x
        first = None
        if not state.get(self):
            state[self] = True
            first, x = x[:, :1], x[:, 1:]
        B, T = x.shape[:2]
        if T % r:
            raise ValueError(f"{T} frames after the first do not make whole chunks of {r}")
        out = []
        if first is not None:
            out.append(first)
        if T:
            chunks = x.unflatten(1, (T // r, r))                        # [B, T', r, C, h, w]
            last = chunks[:, :, -1]
            diff = (chunks[:, :, :-1] - last[:, :, None]).flatten(2, 3)  # [B, T', (r-1)C, h, w]
            out.append(last + per_frame(self.mix, diff))
        return torch.cat(out, 1) if len(out) > 1 else out[0]


class DepthToTime(nn.Module):
    """Temporal upsampling by ``factor``: z: [B, T', C, h, w] -> [B, T, C, h, w]; the inverse
    layout of :class:`TimeToDepth` (the first latent frame of a stream gives one frame, every
    later one gives ``factor``). Frame j of a chunk is ``z + V_j z``; V starts at zero, so every
    frame starts as a copy of its latent frame."""

    def __init__(self, channels: int, factor: int):
        super().__init__()
        self.factor = factor
        self.expand = nn.Conv2d(channels, factor * channels, 1) if factor > 1 else None
        if self.expand is not None:
            nn.init.zeros_(self.expand.weight)
            nn.init.zeros_(self.expand.bias)

    def forward(self, z: torch.Tensor, state: dict) -> torch.Tensor:
        r = self.factor
        if r == 1:
            return z
        B, T, C = z.shape[:3]
        frames = z[:, :, None] + per_frame(self.expand, z).unflatten(2, (r, C))   # [B, T', r, C, h, w]
        frames = frames.flatten(1, 2)
        if not state.get(self):
            state[self] = True
            frames = frames[:, r - 1:]        # the first latent frame stands for one frame
        return frames
