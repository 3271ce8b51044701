"""The spectral design: every learned layer at the frame rate (one frame per ``hop`` samples).

    STFTEncoder:  each hop's log-magnitude spectrum (an ``n_fft`` window ending where the hop
                  ends), a 1x1 conv, ConvNeXt blocks, LayerNorm, 1x1 conv -> latent [B, dim, T]
    ISTFTDecoder: conv, ConvNeXt blocks, LayerNorm, then each frame's log-magnitude and phase
                  spectrum and an inverse STFT (Vocos's head) -> wav [B, 1, T * hop]

With ``stride`` > 1 (the config's ``frame_stride``) the latent frames are coarser than the STFT
frames: the encoder folds every ``stride`` spectral frames into one (a convolution with kernel and
step ``stride``) and runs ``latent_layers`` ConvNeXt blocks at the latent rate; the decoder runs
the mirror image (latent blocks, then a transposed convolution back to the STFT rate). Neither
fold looks across a latent frame's boundary, so chunked and streamed runs stay exact. A 12.5 Hz
codec at 24 kHz is hop 320 x stride 6, its spectra as fine as the 75 Hz default's.

The pair is an order of magnitude cheaper to run and much quicker to train than the SEANet pair
(:mod:`unitok.audio.seanet`), and either side combines with the other design's (WavTokenizer
pairs a SEANet encoder with this decoder). The layers come from :mod:`unitok.nn.audio`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn.audio import Conv1d, ConvNeXt1d, ISTFTHead, LogSpectrum, Seq


class FrameFold(nn.Module):
    """[B, C, T * stride] -> [B, C, T]: every ``stride`` frames into one (a convolution whose
    kernel is its step, so it sees no other latent frame's input)."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, stride, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        return self.conv(x)          # chunks hold whole latent frames


class FrameUnfold(nn.Module):
    """[B, C, T] -> [B, C, T * stride]: each frame into ``stride`` (a transposed convolution
    whose kernel is its step: no overlap between latent frames)."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(channels, channels, stride, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        return self.conv(x)


def _padding(layers) -> int:
    return sum(c.padding for layer in layers for c in layer.modules() if isinstance(c, Conv1d))


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

    def __init__(self, dim: int, *, hop: int, n_fft: int, width: int = 256, layers: int = 4, causal: bool = True,
                 stride: int = 1, latent_layers: int = 0):
        super().__init__()
        self.dim, self.hop, self.causal = dim, hop * stride, causal        # hop: samples per latent frame
        self.spectrum = LogSpectrum(n_fft, hop, causal)
        blocks: list[nn.Module] = [Conv1d(n_fft // 2 + 1, width, 1, causal=causal, norm=False)]
        blocks += [ConvNeXt1d(width, 3 * width, causal=causal) for _ in range(layers)]
        self.backbone = Seq(*blocks)
        # stride 1 has no latent stage, so the default's state_dict keys stay as they were
        self.latent = (Seq(FrameFold(width, stride), *[ConvNeXt1d(width, 3 * width, causal=causal)
                                                        for _ in range(latent_layers)]) if stride > 1 else None)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Conv1d(width, dim, 1)

    def context(self) -> int:
        """Input samples a latent frame sees beyond its own hop, both sides together."""
        latent = _padding(self.latent) * self.hop if self.latent is not None else 0
        return self.spectrum.padding + _padding(self.backbone) * self.spectrum.hop + latent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.backbone(self.spectrum(x))
        if self.latent is not None:
            h = self.latent(h)
        return self.out(_channels_last_norm(self.norm, h))

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        h = self.backbone.stream(self.spectrum.stream(x, state), state)
        if self.latent is not None:
            h = self.latent.stream(h, state)
        return self.out(_channels_last_norm(self.norm, h))


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
                 phase: str = "absolute", causal: bool = True, stride: int = 1, latent_layers: int = 0):
        super().__init__()
        self.dim, self.hop, self.causal, self.stride = dim, hop * stride, causal, stride
        # stride > 1: a latent stage, then the STFT-rate backbone as at stride 1 (the same names, so
        # a 75 Hz codec's backbone can warm-start it) whose first conv smooths across the unfolded
        # frames' boundaries
        self.latent = (Seq(Conv1d(dim, width, kernel, causal=causal),
                           *[ConvNeXt1d(width, 3 * width, causal=causal) for _ in range(latent_layers)],
                           FrameUnfold(width, stride)) if stride > 1 else None)
        blocks: list[nn.Module] = [Conv1d(width if stride > 1 else dim, width, kernel, causal=causal)]
        blocks += [ConvNeXt1d(width, 3 * width, causal=causal) for _ in range(layers)]
        self.backbone = Seq(*blocks)
        self.norm = nn.LayerNorm(width)
        self.head = ISTFTHead(width, n_fft, hop, phase)
        # in latent frames; the samples really held back are the head's lookahead STFT frames
        self.lookahead = -(-self.head.lookahead // stride)
        self.held_samples = self.head.lookahead * hop

    def context_frames(self) -> int:
        """Latent frames an output sample sees beyond its own frame, both sides together."""
        latent = _padding(self.latent) if self.latent is not None else 0
        return latent + -(-_padding(self.backbone) // self.stride) + 2 * self.lookahead

    @property
    def last_layer(self) -> torch.Tensor:
        return self.head.proj.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        T = z.shape[-1]
        z = torch.nn.functional.pad(z, (0, self.lookahead))
        if self.latent is not None:
            z = self.latent(z)
        return self.head(_channels_last_norm(self.norm, self.backbone(z)))[..., :T * self.hop]

    def stream(self, z: torch.Tensor, state: dict) -> torch.Tensor:
        if self.latent is not None:
            z = self.latent.stream(z, state)
        return self.head.stream(_channels_last_norm(self.norm, self.backbone.stream(z, state)), state)

    def flush(self, state: dict, batch: int) -> torch.Tensor:
        """The held-back samples at the end of a stream (the head's ``lookahead`` STFT frames)."""
        device = self.head.window.device
        if self.head not in state or not self.lookahead:
            return torch.zeros(batch, 1, 0, device=device)
        tail = self.stream(torch.zeros(batch, self.dim, self.lookahead, device=device), state)
        return tail[..., :self.head.lookahead * self.head.hop]
