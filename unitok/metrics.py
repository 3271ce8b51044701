"""Reconstruction and codebook metrics (torch, batched).

Images are ``[B, C, H, W]`` floats in ``[0, 1]`` (``Image.to_float()`` gives that per image);
every image metric returns one value per image, ``[B]``, so callers average as they need.

- ``psnr``: dB, ``10 log10(1 / MSE)``; about 20-40 for lossy codecs; identical images give 100
  (the MSE is floored at 1e-10).
- ``ssim``: structural similarity, Gaussian window 11 / sigma 1.5 (Wang et al. 2004), in
  ``[-1, 1]``, 1 for identical images; windows shrink for images smaller than 11 pixels.
- ``ms_ssim``: multi-scale SSIM (Wang et al. 2003), five scales with the standard weights,
  contrast terms clamped at 0, so in ``[0, 1]``; images too small for five scales use as many as
  fit (each scale needs a side >= 11), with the weights renormalised.
- ``codebook_usage`` / ``perplexity``: over a tensor of code indices.

Audio is ``[B, N]`` (mono samples in [-1, 1]); the audio metrics also return ``[B]`` (``stoi`` and
``pesq`` also take a single ``[N]`` and return a 0-d tensor):

- ``si_sdr``: scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019); tens of dB
  for near-exact copies, 0 when the error is as strong as the signal, far below 0 for an
  unrelated signal (or one whose phase is scrambled).
- ``mel_distance``: multi-resolution log-mel L1 distance (DAC's mel loss) with a
  :class:`MelSpectrograms`; 0 for identical signals, lower is better.
- ``stoi`` / ``pesq``: short-time objective intelligibility (Taal et al. 2011, in [0, 1]) and
  wideband PESQ (ITU-T P.862.2, MOS-LQO in about [1, 4.6]), through the optional ``pystoi`` and
  ``pesq`` packages (``pip install 'unitok[bench]'``). Both are speech measures; each item where
  the measure is undefined (too little non-silent speech) gives NaN.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_C1, _C2 = 0.01 ** 2, 0.03 ** 2


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"expected two [B, C, H, W] tensors of the same shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image. x, y: [B, C, H, W] -> [B]."""
    _check(x, y)
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range ** 2 / mse.clamp_min(1e-10))


def _gaussian(size: int, sigma: float, device, dtype) -> torch.Tensor:
    t = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return g / g.sum()


MATRIX_BLUR_MAX_SIDE = 4096   # sides up to this blur by matrix products ([side, side] floats each)


def blur_matrix(n: int, win: int, sigma: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """[n - win + 1, n]: the "valid" 1-D Gaussian blur of ``win`` taps as a banded matrix."""
    g = _gaussian(win, sigma, device, dtype)
    rows = torch.arange(n - win + 1, device=device)[:, None]
    return torch.zeros(n - win + 1, n, device=device, dtype=dtype).scatter_(
        1, rows + torch.arange(win, device=device), g.expand(n - win + 1, win))


def _ssim_parts(x: torch.Tensor, y: torch.Tensor, window: int, sigma: float):
    """Mean SSIM and mean contrast-structure term per image: ([B], [B]). The separable blur is
    two matrix products (several times faster on a CPU than depthwise convolutions) unless a side
    is over ``MATRIX_BLUR_MAX_SIDE``; both give the same values to float rounding."""
    C, H, W = x.shape[1:]
    win = min(window, H, W)
    win -= (win % 2 == 0)   # odd, so the window is centred
    sig = sigma * win / window
    if max(H, W) <= MATRIX_BLUR_MAX_SIDE:
        gv, gh = blur_matrix(H, win, sig, x.device, x.dtype), blur_matrix(W, win, sig, x.device, x.dtype)
        mx, my, xx, yy, xy = gv @ torch.stack([x, y, x * x, y * y, x * y]) @ gh.T
    else:
        g = _gaussian(win, sig, x.device, x.dtype)
        kh = g.reshape(1, 1, 1, win).expand(C, 1, 1, win)
        kv = g.reshape(1, 1, win, 1).expand(C, 1, win, 1)
        blur = lambda t: F.conv2d(F.conv2d(t, kh, groups=C), kv, groups=C)  # noqa: E731  (separable, valid)
        mx, my, xx, yy, xy = (blur(t) for t in (x, y, x * x, y * y, x * y))
    cs = (2 * (xy - mx * my) + _C2) / (xx - mx * mx + yy - my * my + _C2)
    lum = (2 * mx * my + _C1) / (mx * mx + my * my + _C1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per image. x, y: [B, C, H, W] in [0, 1] -> [B] in [-1, 1]."""
    _check(x, y)
    return _ssim_parts(x.float(), y.float(), window, sigma)[0]


def ms_ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Multi-scale SSIM per image. x, y: [B, C, H, W] in [0, 1] -> [B] in [0, 1]."""
    _check(x, y)
    x, y = x.float(), y.float()
    scales = max(1, min(len(MS_SSIM_WEIGHTS), int(math.floor(math.log2(min(x.shape[-2:]) / window))) + 1))
    w = torch.tensor(MS_SSIM_WEIGHTS[:scales], device=x.device)
    w = w / w.sum()
    terms = []
    for s in range(scales):
        full, cs = _ssim_parts(x, y, window, sigma)
        terms.append((full if s == scales - 1 else cs).clamp_min(0))
        if s < scales - 1:
            x, y = F.avg_pool2d(x, 2, ceil_mode=True), F.avg_pool2d(y, 2, ceil_mode=True)
    vals = torch.stack(terms, 1)                                  # [B, scales]
    return torch.prod(vals ** w, dim=1)


def code_histogram(indices, codebook_size: int) -> torch.Tensor:
    """Counts per code [codebook_size] of an index tensor (or a list of them, e.g. per scale)."""
    if isinstance(indices, (list, tuple)):
        return sum(code_histogram(i, codebook_size) for i in indices)
    indices = torch.as_tensor(indices).reshape(-1).long().cpu()
    if len(indices) and (indices.min() < 0 or indices.max() >= codebook_size):
        raise ValueError(f"indices outside 0..{codebook_size - 1}")
    return torch.bincount(indices, minlength=codebook_size).double()


def codebook_usage(indices_or_counts, codebook_size: int | None = None) -> float:
    """Fraction of the codebook used at least once, in [0, 1]. Pass indices and the codebook size,
    or a histogram from :func:`code_histogram` (to accumulate over a data set)."""
    counts = _counts(indices_or_counts, codebook_size)
    return float((counts > 0).double().mean())


def perplexity(indices_or_counts, codebook_size: int | None = None) -> float:
    """exp(entropy) of the code distribution, in [1, codebook_size]: the number of equally used
    codes that would give the same entropy."""
    counts = _counts(indices_or_counts, codebook_size)
    p = counts / counts.sum().clamp_min(1)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum())) if len(p) else 1.0


def _counts(indices_or_counts, codebook_size):
    if codebook_size is None:
        return torch.as_tensor(indices_or_counts).double()
    return code_histogram(indices_or_counts, codebook_size)


# -- audio ---------------------------------------------------------------------------------------


def stft_magnitude(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """x: [B, N] -> |STFT| [B, n_fft // 2 + 1, frames] (fp32)."""
    # reflect padding needs more samples than half a window; very short inputs pad with zeros
    pad_mode = "reflect" if x.shape[-1] > n_fft // 2 else "constant"
    spec = torch.stft(x.float(), n_fft, hop, window=window, return_complex=True, center=True, pad_mode=pad_mode)
    return spec.abs()


class MelSpectrograms(nn.Module):
    """Log-mel spectrograms at several window sizes. ``forward(x: [B, N]) -> list of
    [B, n_mels_i, frames_i]`` (natural log of magnitude mel energies, floored at 1e-5)."""

    def __init__(self, sample_rate: int, windows=(64, 128, 256, 512, 1024, 2048), mels=(10, 20, 40, 80, 80, 128)):
        super().__init__()
        import torchaudio.functional as AF

        if len(windows) != len(mels):
            raise ValueError("one mel count per window size")
        self.windows, self.sample_rate = tuple(windows), sample_rate
        for w, m in zip(windows, mels):
            self.register_buffer(f"window_{w}", torch.hann_window(w), persistent=False)
            fb = AF.melscale_fbanks(w // 2 + 1, 0.0, sample_rate / 2, m, sample_rate, norm="slaney", mel_scale="slaney")
            self.register_buffer(f"fbank_{w}", fb, persistent=False)   # [n_freqs, n_mels]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for w in self.windows:
            mag = stft_magnitude(x, w, w // 4, getattr(self, f"window_{w}"))
            mel = torch.einsum("bft,fm->bmt", mag, getattr(self, f"fbank_{w}"))
            out.append(mel.clamp_min(1e-5).log())
        return out


def mel_distance(mels: MelSpectrograms, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Multi-resolution log-mel L1 distance (DAC's mel loss) per item. x, y: [B, N] -> [B]."""
    return torch.stack([(a - b).abs().mean((1, 2)) for a, b in zip(mels(x), mels(y))]).mean(0)


def si_sdr(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant signal-to-distortion ratio in dB per item. x (estimate), y (reference):
    [B, N] -> [B]; zero-mean first, as in Le Roux et al. 2019."""
    x = x.float() - x.float().mean(-1, keepdim=True)
    y = y.float() - y.float().mean(-1, keepdim=True)
    a = (x * y).sum(-1, keepdim=True) / (y.pow(2).sum(-1, keepdim=True) + eps)
    target = a * y
    return 10 * torch.log10(target.pow(2).sum(-1) / ((x - target).pow(2).sum(-1) + eps) + eps)


def _optional(module: str, package: str, metric: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"unitok.metrics.{metric} needs the optional package {package}: "
                          f"pip install 'unitok[bench]' (or pip install {package})") from None


def _speech_pairs(ref, deg, metric: str) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """ref, deg: [N] or [B, N] (tensors or arrays) -> float64 [B, N] twice, and the output shape."""
    r = torch.as_tensor(np.asarray(ref) if not torch.is_tensor(ref) else ref).detach().cpu().double()
    d = torch.as_tensor(np.asarray(deg) if not torch.is_tensor(deg) else deg).detach().cpu().double()
    if r.shape != d.shape or r.ndim not in (1, 2) or r.shape[-1] < 1:
        raise ValueError(f"{metric}: expected a reference and a degraded signal of the same shape, [N] or "
                         f"[B, N], got {tuple(r.shape)} and {tuple(d.shape)}")
    shape = tuple(r.shape[:-1])
    return r.reshape(-1, r.shape[-1]).numpy(), d.reshape(-1, d.shape[-1]).numpy(), shape


def stoi(ref, deg, rate: int, extended: bool = False) -> torch.Tensor:
    """Short-time objective intelligibility of ``deg`` against the clean ``ref``, per item.

    ref, deg: [N] or [B, N] at ``rate`` Hz (any rate: pystoi resamples to its 10 kHz) -> [] or
    [B] float64 in [0, 1] (``extended=True``: ESTOI). NaN where the reference has fewer than 30
    non-silent 25.6 ms frames (about 0.4 s of speech), where pystoi has no score to give."""
    lib = _optional("pystoi", "pystoi==0.4.1", "stoi")
    r, d, shape = _speech_pairs(ref, deg, "stoi")
    out = []
    for a, b in zip(r, d):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = float(lib.stoi(a, b, rate, extended=extended))
        short = any("Not enough STFT frames" in str(w.message) for w in caught)
        out.append(math.nan if short else value)
    return torch.tensor(out, dtype=torch.float64).reshape(shape)


def pesq(ref, deg, rate: int, mode: str = "wb") -> torch.Tensor:
    """PESQ (MOS-LQO) of ``deg`` against the clean ``ref``, per item.

    ref, deg: [N] or [B, N] at ``rate`` Hz -> [] or [B] float64. ``mode="wb"`` is wideband PESQ
    (P.862.2) at 16 kHz, ``"nb"`` narrowband (P.862) at 8 kHz; other rates are resampled to it
    (torchaudio). NaN where PESQ cannot score the pair: no speech in the reference, under about
    1/4 s, or an all-silent ``deg`` (the library fails on it)."""
    lib = _optional("pesq", "pesq==0.0.4", "pesq")
    if mode not in ("wb", "nb"):
        raise ValueError(f"pesq: mode must be 'wb' (16 kHz) or 'nb' (8 kHz), got {mode!r}")
    r, d, shape = _speech_pairs(ref, deg, "pesq")
    target = 16000 if mode == "wb" else 8000
    if rate != target:
        import torchaudio.functional as AF

        r = AF.resample(torch.from_numpy(r), rate, target).numpy()
        d = AF.resample(torch.from_numpy(d), rate, target).numpy()
    out = []
    for a, b in zip(r, d):
        try:
            with np.errstate(invalid="ignore", divide="ignore"):   # it divides by the peak, 0 for silence
                out.append(float(lib.pesq(target, a, b, mode)))
        except (lib.NoUtterancesError, lib.BufferTooShortError, ValueError):
            out.append(math.nan)
    return torch.tensor(out, dtype=torch.float64).reshape(shape)


# -- loudness (ITU-R BS.1770) ---------------------------------------------------------------------

LOUDNESS_BLOCK_SECONDS = 0.4     # BS.1770's gating block: a shorter signal has no integrated loudness
LOUDNESS_FLOOR_LUFS = -70.0      # BS.1770's absolute gate: blocks below it count as silence


def _k_weighting_peak(x: torch.Tensor, rate: int) -> torch.Tensor:
    """[B, N] float64 -> [B]: the peak of the K-weighted signal. torchaudio's biquads clip their
    output to [-1, 1], so this is measured on a copy scaled far below full scale (the filter is
    linear) and scaled back."""
    import torchaudio.functional as AF

    tiny = 1e-3
    k = AF.highpass_biquad(AF.treble_biquad(x * tiny, rate, 4.0, 1500.0, 1 / math.sqrt(2)), rate, 38.0, 0.5)
    return k.abs().amax(-1) / tiny


def loudness(x: torch.Tensor, rate: int) -> torch.Tensor:
    """Integrated loudness (ITU-R BS.1770-4, K-weighted and gated) in LUFS per item, through
    ``torchaudio.functional.loudness``. x: [N] or [B, N] mono at ``rate`` Hz -> [] or [B] float64.

    NaN where it is undefined: a signal shorter than one 400 ms gating block, or one with no block
    above the -70 LUFS absolute gate (silence). torchaudio's K-weighting filters clip at full scale,
    which would understate loud, bright audio by up to several dB; an item whose K-weighted peak
    passes 1 is measured scaled down below it and the gain added back (exact, since the measure is
    homogeneous, except that the absolute gate then sits that many dB higher, which matters only
    for programme material quieter than about -50 LUFS)."""
    import torchaudio.functional as AF

    x = torch.as_tensor(x).detach().cpu().double()
    if x.ndim not in (1, 2):
        raise ValueError(f"loudness: expected [N] or [B, N] mono samples, got shape {tuple(x.shape)}")
    flat = x.reshape(-1, x.shape[-1])
    out = torch.full((flat.shape[0],), math.nan, dtype=torch.float64)
    if flat.shape[-1] >= round(LOUDNESS_BLOCK_SECONDS * rate):
        scale = (0.99 / _k_weighting_peak(flat, rate).clamp_min(1e-12)).clamp(max=1.0)      # [B]
        out = AF.loudness((flat * scale[:, None])[:, None], rate) - 20 * torch.log10(scale)
        out = torch.where(torch.isfinite(out), out, torch.full_like(out, math.nan))
    return out.reshape(x.shape[:-1])


def loudness_change(ref: torch.Tensor, rec: torch.Tensor, rate: int) -> torch.Tensor:
    """Integrated loudness of ``rec`` minus that of ``ref`` in dB (LU) per item: 0 when the
    reconstruction is as loud as the reference, -3 when it is 3 dB quieter.

    ref, rec: [N] or [B, N] at ``rate`` Hz -> [] or [B] float64. NaN where the reference has no
    integrated loudness (shorter than 400 ms, or silent: see :func:`loudness`); a reconstruction
    that is silent where the reference is not counts as ``LOUDNESS_FLOOR_LUFS`` (-70 LUFS), so a
    codec that drops a sound is charged for it instead of leaving the item out."""
    r, d = torch.as_tensor(ref), torch.as_tensor(rec)
    if r.shape != d.shape:
        raise ValueError(f"loudness_change: reference and reconstruction differ in shape: {tuple(r.shape)} and "
                         f"{tuple(d.shape)}")
    lr, ld = loudness(r, rate), loudness(d, rate)
    return ld.nan_to_num(LOUDNESS_FLOOR_LUFS) - lr     # NaN stays where the reference has none
