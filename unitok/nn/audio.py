"""The 1-D layers both audio codec designs are built from (``unitok.audio.seanet`` and
``unitok.audio.spectral``): causal and non-causal convs, sub-pixel upsampling, SEANet residual
units, the LSTM bottleneck, ConvNeXt blocks over frames, the log-spectrum front end and the
inverse-STFT head. Training losses and the discriminator are in :mod:`unitok.nn.audio_losses`.

Streaming: every layer here can run on a signal cut into consecutive chunks, carrying what it
needs from the past in a ``state`` dict (``layer.stream(x, state)``). For causal layers the
concatenated chunk outputs equal the one-shot output (up to float rounding): a causal conv keeps
its last ``padding`` input samples, the LSTM keeps ``(h, c)``. Only causal layers stream.

    x: [B, C, T] everywhere (channels first).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class Seq(nn.Sequential):
    """``nn.Sequential`` whose ``stream`` chains the layers' ``stream``."""

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        for layer in self:
            x = layer.stream(x, state)
        return x


class ELU(nn.ELU):
    """Pointwise: streams trivially."""

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        return self(x)


def with_past(layer: nn.Module, x: torch.Tensor, state: dict, padding: int, causal: bool,
              step: tuple[str, int], what: str) -> torch.Tensor:
    """Streaming for a causal layer that looks ``padding`` samples back: the chunk ``x`` with the
    last ``padding`` samples of the stream before it (zeros before the start), keeping the
    chunk's own last ``padding`` samples in ``state[layer]`` for the next call. ``step``: the
    (name, size) every chunk length must be a multiple of."""
    if not causal:
        raise ValueError(f"only causal {what} can stream")
    if x.shape[-1] % step[1]:
        raise ValueError(f"chunk length {x.shape[-1]} is not a multiple of the {step[0]} {step[1]}")
    past = state.get(layer)
    if past is None:
        past = x.new_zeros(x.shape[0], x.shape[1], padding)
    full = torch.cat([past, x], -1)
    state[layer] = full[..., full.shape[-1] - padding:]
    return full


class Conv1d(nn.Module):
    """x: [B, C_in, T] -> [B, C_out, T / stride] (T a multiple of ``stride``).

    Pads ``(kernel - 1) * dilation + 1 - stride`` samples in all, so every output frame sees a
    whole window; ``causal=True`` puts all of them on the left (output frame t sees only input up
    to the end of frame t), otherwise they are split evenly. Weight-normalised (SEANet).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1,
                 causal: bool = True, norm: bool = True, groups: int = 1):
        super().__init__()
        conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, dilation=dilation, groups=groups)
        self.conv = weight_norm(conv) if norm else conv
        self.stride = stride
        self.causal = causal
        self.padding = (kernel - 1) * dilation + 1 - stride
        if self.padding < 0:
            raise ValueError(f"kernel {kernel} is shorter than stride {stride}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.stride:
            raise ValueError(f"length {x.shape[-1]} is not a multiple of the stride {self.stride}")
        p = self.padding
        left = p if self.causal else p - p // 2
        return self.conv(F.pad(x, (left, p - left)))

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        """The next chunk (a multiple of the stride) -> its output frames."""
        return self.conv(with_past(self, x, state, self.padding, self.causal, ("stride", self.stride), "convolutions"))


class Upsample1d(nn.Module):
    """x: [B, C_in, T] -> [B, C_out, T * stride]: a conv over frames that emits ``stride``
    samples per frame (sub-pixel upsampling). With a 2-frame causal kernel it is exactly a
    transposed conv of kernel ``2 * stride`` with its look-ahead trimmed (SEANet's decoder), but
    it streams like any causal conv (no overlap-add state)."""

    def __init__(self, c_in: int, c_out: int, stride: int, causal: bool = True, norm: bool = True):
        super().__init__()
        self.stride, self.c_out = stride, c_out
        self.conv = Conv1d(c_in, c_out * stride, 2 if causal else 3, causal=causal, norm=norm)

    def _shuffle(self, y: torch.Tensor) -> torch.Tensor:
        B, _, T = y.shape
        return y.view(B, self.c_out, self.stride, T).transpose(2, 3).reshape(B, self.c_out, T * self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._shuffle(self.conv(x))

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        return self._shuffle(self.conv.stream(x, state))


class ResUnit1d(nn.Module):
    """SEANet residual unit: x + conv1x1(ELU(conv_k(ELU(x), dilation))), width halved inside."""

    def __init__(self, channels: int, dilation: int = 1, kernel: int = 3, causal: bool = True, norm: bool = True):
        super().__init__()
        hidden = max(1, channels // 2)
        self.block = Seq(ELU(), Conv1d(channels, hidden, kernel, dilation=dilation, causal=causal, norm=norm),
                         ELU(), Conv1d(hidden, channels, 1, causal=causal, norm=norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        return x + self.block.stream(x, state)


class LSTM1d(nn.Module):
    """x: [B, C, T] -> x + LSTM(x) (EnCodec's bottleneck sequence model; causal by nature)."""

    def __init__(self, channels: int, layers: int = 1):
        super().__init__()
        self.lstm = nn.LSTM(channels, channels, layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x.transpose(1, 2))
        return x + y.transpose(1, 2)

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        y, state[self] = self.lstm(x.transpose(1, 2), state.get(self))
        return x + y.transpose(1, 2)


class ConvNeXt1d(nn.Module):
    """ConvNeXt block over frames (Vocos's backbone): x + scale * pw2(GELU(pw1(LN(dwconv(x))))).
    The depthwise conv is causal when ``causal``; everything else is per frame, so it streams."""

    def __init__(self, channels: int, hidden: int, kernel: int = 7, causal: bool = True, layer_scale: float = 0.1):
        super().__init__()
        self.dw = Conv1d(channels, channels, kernel, causal=causal, norm=False, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.pw1 = nn.Linear(channels, hidden)
        self.pw2 = nn.Linear(hidden, channels)
        self.scale = nn.Parameter(torch.full((channels,), layer_scale))

    def _pointwise(self, h: torch.Tensor) -> torch.Tensor:
        h = self.pw2(F.gelu(self.pw1(self.norm(h.transpose(1, 2)))))
        return (h * self.scale).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self._pointwise(self.dw(x))

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        return x + self._pointwise(self.dw.stream(x, state))


class LogSpectrum(nn.Module):
    """wav [B, 1, N] (N a multiple of ``hop``) -> log-magnitude spectra [B, n_fft // 2 + 1, N / hop]
    (periodic Hann window). Causal: frame t covers samples ``[(t + 1) * hop - n_fft, (t + 1) * hop)``,
    zeros before sample 0, so it ends where its hop ends (the inverse of :class:`ISTFTHead`);
    ``stream`` keeps the last ``n_fft - hop`` samples. Otherwise frames are centred on their hop."""

    def __init__(self, n_fft: int, hop: int, causal: bool = True):
        super().__init__()
        if n_fft % hop or n_fft < hop:
            raise ValueError(f"n_fft ({n_fft}) must be a multiple of the hop ({hop})")
        self.n_fft, self.hop, self.causal = n_fft, hop, causal
        self.padding = n_fft - hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def _spectra(self, x: torch.Tensor) -> torch.Tensor:
        frames = x[:, 0].float().unfold(-1, self.n_fft, self.hop) * self.window      # [B, T, n_fft]
        return torch.fft.rfft(frames, dim=-1).abs().clamp_min(1e-5).log().transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.hop:
            raise ValueError(f"length {x.shape[-1]} is not a multiple of the hop {self.hop}")
        left = self.padding if self.causal else self.padding // 2
        return self._spectra(F.pad(x, (left, self.padding - left)))

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        return self._spectra(with_past(self, x, state, self.padding, self.causal, ("hop", self.hop), "spectra"))


class ISTFTHead(nn.Module):
    """Frames [B, C, T] -> waveform by an inverse STFT (Vocos): a linear layer predicts each
    frame's log-magnitude and phase for ``n_fft // 2 + 1`` bins; the inverse FFTs are windowed
    (periodic Hann) and overlap-added at ``hop`` samples per frame.

    Frame t covers samples ``[(t + 1) * hop - n_fft, (t + 1) * hop)``: it ends where latent frame
    t's input ends, so a causal backbone makes frame t depend on the input up to its own end
    only. A sample is final once the ``lookahead = n_fft / hop - 1`` frames after its own have
    been added; ``forward`` gets them by running on ``lookahead`` extra frames (the caller pads
    the latents) and returns ``[B, 1, (T - lookahead) * hop]`` for ``T`` frames in, samples
    ``[0, (T - lookahead) * hop)``. ``stream`` keeps the partial sums of the last
    ``lookahead * hop`` samples and returns each chunk's final samples (the first chunk's
    output starts at sample 0, so it is ``lookahead`` frames shorter)."""

    def __init__(self, channels: int, n_fft: int, hop: int, phase: str = "absolute"):
        super().__init__()
        if n_fft % hop or n_fft < hop:
            raise ValueError(f"n_fft ({n_fft}) must be a multiple of the hop ({hop})")
        if phase not in ("absolute", "increment"):
            raise ValueError(f"phase must be 'absolute' or 'increment', got {phase!r}")
        self.n_fft, self.hop, self.lookahead = n_fft, hop, n_fft // hop - 1
        self.phase = phase
        self.proj = nn.Conv1d(channels, 2 * (n_fft // 2 + 1), 1)
        # "increment": each frame's phase is the last one's plus the advance of a sinusoid at the
        # bin's centre frequency (2 pi k hop / n_fft) plus a predicted deviation, so a steady partial
        # stays coherent from frame to frame unless the model moves it (a phase vocoder's rule)
        advance = (2 * math.pi * torch.arange(n_fft // 2 + 1, dtype=torch.float64) * hop / n_fft) % (2 * math.pi)
        self.register_buffer("advance", advance, persistent=False)
        window = torch.hann_window(n_fft)
        # the overlap-added squared window is periodic in the hop: divide it out (exact wherever
        # all overlapping frames are present, which the padding guarantees)
        envelope = window.pow(2).view(-1, hop).sum(0)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("envelope", envelope, persistent=False)

    def analyse(self, wav: torch.Tensor, frames: int) -> torch.Tensor:
        """The inverse of :meth:`synthesise`: wav [B, N] -> its spectrum [B, n_fft // 2 + 1, frames]
        on this head's frames (frame t covers samples ``[(t + 1) * hop - n_fft, (t + 1) * hop)``,
        zeros outside the signal) under the same window, so ``synthesise(analyse(wav, N / hop +
        lookahead))`` gives ``wav`` back up to float rounding."""
        pad = self.n_fft - self.hop
        need = (frames - 1) * self.hop + self.n_fft - pad - wav.shape[-1]
        wav = F.pad(wav.float(), (pad, max(need, 0)))
        chunks = wav.unfold(-1, self.n_fft, self.hop)[:, :frames]
        return torch.fft.rfft(chunks * self.window, dim=-1).transpose(1, 2)

    def synthesise(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex spectra [B, n_fft // 2 + 1, T] -> waveform [B, 1, (T - lookahead) * hop]: what
        ``forward`` does with the spectra it predicts."""
        return self._complete(self._overlap_add(self._windowed(spec)))

    def _windowed(self, spec: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft(spec, n=self.n_fft, dim=1) * self.window[:, None]

    def frames(self, x: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        """[B, C, T] -> windowed time-domain frames [B, n_fft, T] (float32). With increments, the
        running phase (float64, so long signals lose no precision) carries over in ``state``."""
        log_mag, phase = self.proj(x).float().chunk(2, 1)
        if self.phase == "increment":
            key = (self, "phase")
            start = state.get(key) if state is not None else None
            run = torch.cumsum(phase.double() + self.advance[:, None], -1)
            if start is not None:
                run = run + start
            if state is not None:
                state[key] = run[..., -1:]
            phase = torch.remainder(run, 2 * math.pi).float()
        spec = torch.polar(log_mag.clamp(max=8.0).exp(), phase)              # |S| <= e^8
        return self._windowed(spec)

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        T = frames.shape[-1]
        out = F.fold(frames, (1, (T - 1) * self.hop + self.n_fft), (1, self.n_fft), stride=(1, self.hop))
        return out[:, 0, 0]                                                   # [B, (T + lookahead) * hop]

    def _normalise(self, y: torch.Tensor) -> torch.Tensor:
        return (y.view(y.shape[0], -1, self.hop) / self.envelope).reshape(y.shape[0], 1, -1)

    def _complete(self, y: torch.Tensor) -> torch.Tensor:
        """Overlap-added frames -> the samples every frame that covers them reached, normalised."""
        L = self.lookahead * self.hop
        return self._normalise(y[:, L:y.shape[-1] - L])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._complete(self._overlap_add(self.frames(x)))

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        L = self.lookahead * self.hop
        y = self._overlap_add(self.frames(x, state))          # this chunk's frames, from L samples back
        past, skip = state.get(self, (None, L))                # nothing lies before sample 0
        if past is not None:
            y = torch.cat([y[:, :L] + past, y[:, L:]], 1)
        out = y[:, :y.shape[-1] - L]
        drop = min(skip, out.shape[-1])
        state[self] = (y[:, y.shape[-1] - L:], skip - drop)
        return self._normalise(out[:, drop:])


# older callers import the losses and the spectral metrics from here
from ..metrics import MelSpectrograms, mel_distance, si_sdr, stft_magnitude  # noqa: E402, F401
from .audio_losses import (EnvelopeCorrelationLoss, MultiScaleSTFTDiscriminator,  # noqa: E402, F401
                           STFTDiscriminator, feature_matching_loss, stft_loss)
