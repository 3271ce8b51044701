"""Losses and the discriminator for training audio codecs (``recipes/train_audio.py``):
multi-resolution STFT loss, band-envelope correlation (STOI's core), EnCodec's multi-scale STFT
discriminator and feature matching. The spectral metrics (mel distance, SI-SDR) are in
:mod:`unitok.metrics`.

    x: [B, N] (losses) or [B, 1, N] (discriminators), float waveforms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ..metrics import stft_magnitude


# -- spectral losses ----------------------------------------------------------------------------


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


class EnvelopeCorrelationLoss(nn.Module):
    """1 - the mean correlation between the reference's and the reconstruction's short-time
    envelopes in 15 third-octave bands from 150 Hz, over windows of 30 frames of 12.8 ms: the
    intermediate quantity of STOI (Taal et al. 2011), which judges intelligibility by exactly
    these envelopes, without its silence removal and clipping (differentiable; as in STOI-trained
    speech enhancement). Phase- and gain-blind: it rewards getting each band's rise and fall
    right. x (reconstruction), y (target): [B, N] at ``rate`` -> []."""

    def __init__(self, rate: int, bands: int = 15, low: float = 150.0, frames: int = 30):
        super().__init__()
        self.win = round(0.0256 * rate)
        self.hop = self.win // 2
        self.n_fft = 1 << (self.win - 1).bit_length()
        self.frames = frames
        freqs = torch.arange(self.n_fft // 2 + 1) * rate / self.n_fft
        centres = low * 2.0 ** (torch.arange(bands) / 3)
        lo, hi = centres * 2 ** (-1 / 6), centres * 2 ** (1 / 6)
        self.register_buffer("bands", ((freqs >= lo[:, None]) & (freqs < hi[:, None])).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(self.win), persistent=False)

    def envelopes(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x.float(), self.n_fft, self.hop, self.win, self.window, return_complex=True).abs().pow(2)
        return (self.bands @ spec).clamp_min(1e-10).sqrt()                          # [B, bands, T]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ex, ey = self.envelopes(x), self.envelopes(y)
        n = min(self.frames, ex.shape[-1])
        ex, ey = ex.unfold(-1, n, max(1, n // 3)), ey.unfold(-1, n, max(1, n // 3))   # [B, bands, W, n]
        ex, ey = ex - ex.mean(-1, keepdim=True), ey - ey.mean(-1, keepdim=True)
        corr = (ex * ey).sum(-1) / (ex.norm(dim=-1) * ey.norm(dim=-1) + 1e-8)
        return 1 - corr.mean()


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


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's multi-period idea: x [B, 1, N] folded into ``period`` columns ([B, 1, N / period,
    period]; reflect-padded to a whole number of periods) and judged by convolutions along time
    only, so each column holds one phase of any component periodic in ``period`` samples. A voice's
    harmonics line up there, sample by sample, where spectrogram discriminators blur them.
    -> (logits [B, 1, t, period], feature maps)."""

    def __init__(self, period: int, channels: int = 32, layers: int = 4):
        super().__init__()
        self.period = period
        wn = weight_norm
        widths = [1] + [min(channels * 2 ** i, 512) for i in range(layers)]
        self.convs = nn.ModuleList(wn(nn.Conv2d(a, b, (5, 1), stride=(3, 1), padding=(2, 0)))
                                   for a, b in zip(widths[:-1], widths[1:]))
        self.post = wn(nn.Conv2d(widths[-1], widths[-1], (5, 1), padding=(2, 0)))
        self.out = wn(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, x: torch.Tensor):
        pad = -x.shape[-1] % self.period
        h = F.pad(x.float(), (0, pad), mode="reflect") if pad else x.float()
        h = h.view(x.shape[0], 1, -1, self.period)
        features = []
        for conv in [*self.convs, self.post]:
            h = F.leaky_relu(conv(h), 0.1)
            features.append(h)
        return self.out(h), features


class Discriminators(nn.Module):
    """Several discriminators judged together: x [B, 1, N] -> (the logits of each sub-
    discriminator, their feature maps), as :class:`MultiScaleSTFTDiscriminator` gives them.
    ``periods`` adds a :class:`PeriodDiscriminator` per period beside the STFT ones (HiFi-GAN's
    and DAC's mix)."""

    def __init__(self, n_ffts=(2048, 1024, 512), channels: int = 32, layers: int = 3, periods=(),
                 period_channels: int = 32, period_layers: int = 4):
        super().__init__()
        self.stft = MultiScaleSTFTDiscriminator(n_ffts, channels, layers)
        self.periods = nn.ModuleList(PeriodDiscriminator(p, period_channels, period_layers) for p in periods)

    def forward(self, x: torch.Tensor):
        logits, features = self.stft(x)
        for d in self.periods:
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
