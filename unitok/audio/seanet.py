"""The SEANet design (EnCodec, DAC): a strided 1-D convolutional encoder and its mirror-image
decoder, working sample by sample.

    SEANetEncoder: conv, then per ratio (reversed) [residual units, ELU, strided conv (x2
                   channels)], LSTM, ELU, conv -> latent [B, dim, N / hop]
    SEANetDecoder: conv, LSTM, then per ratio [ELU, sub-pixel upsampling (/2 channels),
                   residual units], ELU, conv -> wav [B, 1, T * hop]

Both stream (``causal=True``): see :mod:`unitok.nn.audio`. The layers come from there; the
spectral design (:mod:`unitok.audio.spectral`) shares them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..nn.audio import ELU, Conv1d, LSTM1d, ResUnit1d, Seq, Upsample1d


class SEANetEncoder(nn.Module):
    """wav [B, 1, N] (N a multiple of the hop) -> latent [B, dim, N / hop], ``hop = prod(ratios)``."""

    def __init__(self, dim: int, *, channels: int = 16, ratios: tuple[int, ...] = (8, 5, 4, 2), res_units: int = 1,
                 dilation_base: int = 2, kernel: int = 7, lstm: int = 1, causal: bool = True):
        super().__init__()
        self.dim, self.hop, self.causal = dim, math.prod(ratios), causal
        c = channels
        layers: list[nn.Module] = [Conv1d(1, c, kernel, causal=causal)]
        for r in reversed(ratios):
            layers += [ResUnit1d(c, dilation_base ** j, causal=causal) for j in range(res_units)]
            layers += [ELU(), Conv1d(c, 2 * c, 2 * r, stride=r, causal=causal)]
            c *= 2
        if lstm:
            layers.append(LSTM1d(c, lstm))
        layers += [ELU(), Conv1d(c, dim, kernel, causal=causal)]
        self.net = Seq(*layers)

    def context(self) -> int:
        """Input samples a latent frame sees beyond its own hop, both sides together (the convs'
        receptive field; the LSTM's memory is not bounded)."""
        total, scale = 0, 1
        for m in self.net.modules():
            if isinstance(m, Conv1d):
                total += m.padding * scale
                scale *= m.stride
        return total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        return self.net.stream(x, state)


class SEANetDecoder(nn.Module):
    """latent [B, dim, T] -> wav [B, 1, T * hop] (about [-1, 1], unclamped). It needs no latent
    from the future (``lookahead`` 0): a stream's every push is final."""

    lookahead = 0
    held_samples = 0

    def __init__(self, dim: int, *, channels: int = 16, ratios: tuple[int, ...] = (8, 5, 4, 2), res_units: int = 1,
                 dilation_base: int = 2, kernel: int = 7, lstm: int = 1, causal: bool = True):
        super().__init__()
        self.dim, self.hop, self.causal = dim, math.prod(ratios), causal
        c = channels * 2 ** len(ratios)
        layers: list[nn.Module] = [Conv1d(dim, c, kernel, causal=causal)]
        if lstm:
            layers.append(LSTM1d(c, lstm))
        for r in ratios:
            layers += [ELU(), Upsample1d(c, c // 2, r, causal=causal)]
            c //= 2
            layers += [ResUnit1d(c, dilation_base ** j, causal=causal) for j in range(res_units)]
        layers += [ELU(), Conv1d(c, 1, kernel, causal=causal)]
        self.net = Seq(*layers)

    def context_frames(self) -> int:
        """Latent frames an output sample sees beyond its own frame, both sides together."""
        total, samples_per_frame = 0.0, 1
        for layer in self.net:
            if isinstance(layer, Upsample1d):
                total += layer.conv.padding / samples_per_frame
                samples_per_frame *= layer.stride
            else:
                total += sum(c.padding for c in layer.modules() if isinstance(c, Conv1d)) / samples_per_frame
        return math.ceil(total)

    @property
    def last_layer(self) -> torch.Tensor:
        return self.net[-1].conv.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def stream(self, z: torch.Tensor, state: dict) -> torch.Tensor:
        return self.net.stream(z, state)

    def flush(self, state: dict, batch: int) -> torch.Tensor:
        """Samples still held back at the end of a stream: none (nothing waits for the future)."""
        return torch.zeros(batch, 1, 0, device=self.last_layer.device)
