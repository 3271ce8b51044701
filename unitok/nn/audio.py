"""1-D layers, discriminator and losses for audio codecs (SEANet family).

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

# the spectral metrics live in unitok.metrics; re-exported here for the recipes' losses
from ..metrics import MelSpectrograms, mel_distance, si_sdr, stft_magnitude  # noqa: F401


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


class Conv1d(nn.Module):
    """x: [B, C_in, T] -> [B, C_out, T / stride] (T a multiple of ``stride``).

    Pads ``(kernel - 1) * dilation + 1 - stride`` samples in all, so every output frame sees a
    whole window; ``causal=True`` puts all of them on the left (output frame t sees only input up
    to the end of frame t), otherwise they are split evenly. Weight-normalised (SEANet).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1,
                 causal: bool = True, norm: bool = True):
        super().__init__()
        conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, dilation=dilation)
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
        if not self.causal:
            raise ValueError("only causal convolutions can stream")
        if x.shape[-1] % self.stride:
            raise ValueError(f"chunk length {x.shape[-1]} is not a multiple of the stride {self.stride}")
        past = state.get(self)
        if past is None:
            past = x.new_zeros(x.shape[0], x.shape[1], self.padding)
        full = torch.cat([past, x], -1)
        state[self] = full[..., full.shape[-1] - self.padding:]
        return self.conv(full)


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


# -- spectra -------------------------------------------------------------------------------------


def stft_loss(x: torch.Tensor, y: torch.Tensor, resolutions=((512, 128), (1024, 256), (2048, 512))) -> torch.Tensor:
    """Multi-resolution STFT loss (Parallel WaveGAN): spectral convergence + log-magnitude L1,
    averaged over resolutions ``(n_fft, hop)``. x (reconstruction), y (target): [B, N] -> []."""
    total = x.new_zeros((), dtype=torch.float32)
    for n_fft, hop in resolutions:
        window = torch.hann_window(n_fft, device=x.device)
        mx, my = stft_magnitude(x, n_fft, hop, window), stft_magnitude(y, n_fft, hop, window)
        sc = torch.linalg.norm(my - mx, dim=(1, 2)) / torch.linalg.norm(my, dim=(1, 2)).clamp_min(1e-5)
        mag = (mx.clamp_min(1e-5).log() - my.clamp_min(1e-5).log()).abs().mean()
        total = total + sc.mean() + mag
    return total / len(resolutions)


# -- adversarial ---------------------------------------------------------------------------------


class STFTDiscriminator(nn.Module):
    """EnCodec-style discriminator on one complex STFT: x [B, 1, N] -> (logits [B, 1, t, f],
    feature maps). Real and imaginary parts are two input channels; convs stride over
    frequency and dilate over time."""

    def __init__(self, n_fft: int, channels: int = 32, layers: int = 3):
        super().__init__()
        self.n_fft, self.hop = n_fft, n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        wn = weight_norm
        convs = [wn(nn.Conv2d(2, channels, (3, 9), padding=(1, 4)))]
        for i in range(layers):
            d = 2 ** i
            convs.append(wn(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4))))
        convs.append(wn(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(convs)
        self.out = wn(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor):
        spec = torch.stft(x[:, 0].float(), self.n_fft, self.hop, window=self.window, return_complex=True)
        h = torch.stack([spec.real, spec.imag], 1).transpose(2, 3)       # [B, 2, frames, freq]
        features = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
            features.append(h)
        return self.out(h), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """Several :class:`STFTDiscriminator` at window sizes ``n_ffts`` (EnCodec's MS-STFTD).
    x: [B, 1, N] -> (list of logits, list of lists of feature maps)."""

    def __init__(self, n_ffts=(2048, 1024, 512), channels: int = 32, layers: int = 3):
        super().__init__()
        self.discs = nn.ModuleList(STFTDiscriminator(n, channels, layers) for n in n_ffts)

    def forward(self, x: torch.Tensor):
        logits, features = [], []
        for d in self.discs:
            lo, fe = d(x)
            logits.append(lo)
            features.append(fe)
        return logits, features


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminators' feature maps of real and reconstructed audio, each relative
    to the real map's mean magnitude (EnCodec), averaged over all maps."""
    total, n = 0.0, 0
    for fr, ff in zip(real, fake):
        for r, f in zip(fr, ff):
            r = r.detach()
            total = total + (r - f).abs().mean() / r.abs().mean().clamp_min(1e-5)
            n += 1
    return total / max(1, n)


def frames_for(samples: int, hop: int) -> int:
    """Frames needed to cover ``samples`` samples at ``hop`` samples per frame (at least 1)."""
    return max(1, math.ceil(samples / hop))
