"""A PatchGAN discriminator (pix2pix / VQGAN): real-vs-fake logits per overlapping patch."""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """x: [B, C, H, W] in [-1, 1] -> logits [B, 1, H / 2**layers - c, W / 2**layers - c].

    Args:
        channels: width of the first layer, doubled per layer up to 8x.
        layers: strided layers; the receptive field grows with each (3 layers: 70x70 patches).
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, layers: int = 3):
        super().__init__()
        mods = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = channels
        for i in range(1, layers + 1):
            c_next = channels * min(2 ** i, 8)
            stride = 2 if i < layers else 1
            # GroupNorm rather than BatchNorm: batch statistics break with tiny or DDP-split batches
            mods += [nn.Conv2d(c, c_next, 4, stride, 1, bias=False), nn.GroupNorm(min(32, c_next // 4), c_next),
                     nn.LeakyReLU(0.2)]
            c = c_next
        mods.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
