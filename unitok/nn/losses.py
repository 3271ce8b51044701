"""Training losses that need no downloaded weights: pixel, structural, frequency, adversarial."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..metrics import ms_ssim, ssim


def structural_loss(x: torch.Tensor, y: torch.Tensor, kind: str = "ssim") -> torch.Tensor:
    """1 - (MS-)SSIM between x, y: [B, C, H, W] in [0, 1]; 0 for identical images.

    ``"ms_ssim"`` needs H, W >= 161 (five scales); smaller inputs fall back to SSIM."""
    if kind == "ms_ssim" and min(x.shape[-2:]) >= 161:
        return 1 - ms_ssim(x, y).mean()
    return 1 - ssim(x, y).mean()


def gradient_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and vertical finite differences of x and y: [B, C, H, W]; it
    rewards sharp edges that a plain L2 loss blurs."""
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return (dx(x) - dx(y)).abs().mean() + (dy(x) - dy(y)).abs().mean()


def frequency_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 between log-amplitude spectra of x and y: [B, C, H, W] (focal-frequency style)."""
    fx = torch.fft.rfft2(x.float(), norm="ortho").abs()
    fy = torch.fft.rfft2(y.float(), norm="ortho").abs()
    return (torch.log1p(fx) - torch.log1p(fy)).abs().mean()


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: push real logits above +1 and fake below -1."""
    return 0.5 * (F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean())


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator side of the hinge GAN: raise the discriminator's logits on reconstructions."""
    return -logits_fake.mean()


def adaptive_gan_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                        max_weight: float = 1e4) -> torch.Tensor:
    """VQGAN's balance: scale the GAN loss so its gradient at the decoder's last layer is as large
    as the reconstruction loss's."""
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    return (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0.0, max_weight).detach()
