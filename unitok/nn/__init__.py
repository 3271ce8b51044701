"""Layers and losses shared by the modality tokenizers."""

from .blocks import AttnBlock, Downsample, ResBlock, Upsample, norm2d
from .discriminator import PatchDiscriminator
from .losses import (adaptive_gan_weight, frequency_loss, gradient_loss, hinge_d_loss, hinge_g_loss,
                     structural_loss)

__all__ = [
    "ResBlock", "Downsample", "Upsample", "AttnBlock", "norm2d", "PatchDiscriminator",
    "structural_loss", "gradient_loss", "frequency_loss", "hinge_d_loss", "hinge_g_loss",
    "adaptive_gan_weight",
]
