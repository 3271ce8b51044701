"""The spectral design: every learned layer at the frame rate (one frame per ``hop`` samples).

    STFTEncoder:  each hop's log-magnitude spectrum (an ``n_fft`` window ending where the hop
                  ends), a 1x1 conv, ConvNeXt blocks, LayerNorm, 1x1 conv -> latent [B, dim, T]
    ISTFTDecoder: conv, ConvNeXt blocks, LayerNorm, then each frame's log-magnitude and phase
                  spectrum and an inverse STFT (Vocos's head) -> wav [B, 1, T * hop]

The pair is an order of magnitude cheaper to run and much quicker to train than the SEANet pair
(:mod:`unitok.audio.seanet`), and either side combines with the other design's (WavTokenizer
pairs a SEANet encoder with this decoder). The layers come from :mod:`unitok.nn.audio`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn.audio import Conv1d, ConvNeXt1d, ISTFTHead, LogSpectrum, Seq


def _channels_last_norm(norm: nn.LayerNorm, h: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the channels of h: [B, C, T]."""
    return norm(h.transpose(1, 2)).transpose(1, 2)


class STFTEncoder(nn.Module):
    """wav [B, 1, N] (N a multiple of the hop) -> latent [B, dim, N / hop]: each hop's
    log-magnitude spectrum, then ConvNeXt blocks over the frames, the mirror of the iSTFT decoder.
    The STFT is a strided 1-D convolution with fixed Fourier kernels, so this is the SEANet
    encoder with its learned front end replaced by a fixed one and all its learned layers at the
    frame rate: the spectral envelope the decoder must rebuild is there from the first step
    instead of learned in a few channels."""

    def __init__(self, dim: int, *, hop: int, n_fft: int, width: int = 256, layers: int = 4, causal: bool = True):
        super().__init__()
        self.dim, self.hop, self.causal = dim, hop, causal
        self.spectrum = LogSpectrum(n_fft, hop, causal)
        blocks: list[nn.Module] = [Conv1d(n_fft // 2 + 1, width, 1, causal=causal, norm=False)]
        blocks += [ConvNeXt1d(width, 3 * width, causal=causal) for _ in range(layers)]
        self.backbone = Seq(*blocks)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Conv1d(width, dim, 1)

    def context(self) -> int:
        """Input samples a latent frame sees beyond its own hop, both sides together."""
        frames = sum(c.padding for c in self.backbone.modules() if isinstance(c, Conv1d))
        return self.spectrum.padding + frames * self.spectrum.hop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(_channels_last_norm(self.norm, self.backbone(self.spectrum(x))))

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        return self.out(_channels_last_norm(self.norm, self.backbone.stream(self.spectrum.stream(x, state), state)))


class ISTFTDecoder(nn.Module):
    """latent [B, dim, T] -> wav [B, 1, T * hop]: a ConvNeXt backbone over the frames and an
    inverse STFT head (Vocos). Magnitudes and phases are predicted per frame rather than built
    sample by sample.

    A sample needs the frames whose windows cover it: its own and ``lookahead = n_fft / hop - 1``
    more (3 frames for a 4-hop window, 1 for the bundled 2-hop one). ``forward`` appends that
    many zero latents (the end of the signal); streaming holds back that many frames' samples
    until later frames arrive, and ``flush`` ends the stream as ``forward`` ends the signal.
    ``phase``: "absolute" (each frame's phase) or "increment" (its advance over the last frame's,
    see :class:`unitok.nn.audio.ISTFTHead`)."""

    def __init__(self, dim: int, *, hop: int, n_fft: int, width: int = 256, layers: int = 4, kernel: int = 7,
                 phase: str = "absolute", causal: bool = True):
        super().__init__()
        self.dim, self.hop, self.causal = dim, hop, causal
        blocks: list[nn.Module] = [Conv1d(dim, width, kernel, causal=causal)]
        blocks += [ConvNeXt1d(width, 3 * width, causal=causal) for _ in range(layers)]
        self.backbone = Seq(*blocks)
        self.norm = nn.LayerNorm(width)
        self.head = ISTFTHead(width, n_fft, hop, phase)
        self.lookahead = self.head.lookahead

    def context_frames(self) -> int:
        """Latent frames an output sample sees beyond its own frame, both sides together."""
        return sum(c.padding for c in self.backbone.modules() if isinstance(c, Conv1d)) + 2 * self.lookahead

    @property
    def last_layer(self) -> torch.Tensor:
        return self.head.proj.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = torch.nn.functional.pad(z, (0, self.lookahead))
        return self.head(_channels_last_norm(self.norm, self.backbone(z)))

    def stream(self, z: torch.Tensor, state: dict) -> torch.Tensor:
        return self.head.stream(_channels_last_norm(self.norm, self.backbone.stream(z, state)), state)

    def flush(self, state: dict, batch: int) -> torch.Tensor:
        """The held-back samples at the end of a stream (``lookahead`` frames of them)."""
        device = self.head.window.device
        if self.head not in state or not self.lookahead:
            return torch.zeros(batch, 1, 0, device=device)
        return self.stream(torch.zeros(batch, self.dim, self.lookahead, device=device), state)
