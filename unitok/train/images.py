"""Picture data for the pixel recipes (image, and video through its clip sampler): random crops
of a memory-mapped uint8 array, and generated pictures for tests and runs without fetched data."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError


def synthetic_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 [n, size, size, 3] smooth random pictures (blurred noise, gradients, discs and edges):
    a stand-in for photos in tests and when no data has been fetched."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        low = F.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(size, size), mode="bicubic", align_corners=False)[0]
        mid = F.interpolate(torch.rand(1, 3, 16, 16, generator=g), size=(size, size), mode="bilinear", align_corners=False)[0]
        img = 0.6 * low + 0.25 * mid
        for _ in range(3):
            cx, cy, r = (torch.rand(3, generator=g) * torch.tensor([2, 2, 0.5]) - torch.tensor([1, 1, -0.1])).tolist()
            col = torch.rand(3, 1, 1, generator=g)
            mask = (((xx - cx) ** 2 + (yy - cy) ** 2) < r * r).float()
            img = img * (1 - mask) + col * mask
        out[i] = img
    return (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


class CropSampler:
    """Random batches of crops from a uint8 [N, S, S, 3] array (memory-mapped), with random
    horizontal flips; each DDP rank draws from its own generator."""

    def __init__(self, array: np.ndarray, crop: int, batch_size: int, seed: int):
        if array.ndim != 4 or array.shape[-1] != 3 or array.shape[1] < crop or array.shape[2] < crop:
            raise ConfigError(f"training data must be uint8 [N, H, W, 3] with H, W >= data.crop={crop}, got "
                              f"{array.shape}")
        self.array, self.crop, self.batch_size = array, crop, batch_size
        self.rng = np.random.default_rng(seed)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def next(self) -> torch.Tensor:
        """-> [B, 3, crop, crop] float in [0, 1]."""
        idx = np.sort(self.rng.integers(0, len(self.array), self.batch_size))  # sorted: friendlier to mmap
        N, H, W, _ = self.array.shape
        c = self.crop
        batch = np.empty((self.batch_size, c, c, 3), dtype=np.uint8)
        for j, i in enumerate(idx):
            t, l = self.rng.integers(0, H - c + 1), self.rng.integers(0, W - c + 1)
            crop = self.array[i, t:t + c, l:l + c]
            batch[j] = crop[:, ::-1] if self.rng.random() < 0.5 else crop
        return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255)
