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
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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


def _ssim_parts(x: torch.Tensor, y: torch.Tensor, window: int, sigma: float):
    """Mean SSIM and mean contrast-structure term per image: ([B], [B])."""
    C = x.shape[1]
    win = min(window, x.shape[-2], x.shape[-1])
    win -= (win % 2 == 0)   # odd, so the window is centred
    g = _gaussian(win, sigma * win / window, x.device, x.dtype)
    gh = g.reshape(1, 1, 1, win).expand(C, 1, 1, win)
    gv = g.reshape(1, 1, win, 1).expand(C, 1, win, 1)
    blur = lambda t: F.conv2d(F.conv2d(t, gh, groups=C), gv, groups=C)  # noqa: E731  (separable, valid)
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    cs = (2 * sxy + _C2) / (sxx + syy + _C2)
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
