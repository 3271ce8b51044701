"""Small, deterministic, non-learned media tokenizers used by the core tests.

They are real codecs (residual quantisers of block means), tiny enough to run in milliseconds, and
they plug into ``UniTokenizer`` through the same registration mechanism as the real modality
packages: that the core works with them is the test that a modality needs no core edit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from unitok.checkpoint import register
from unitok.layout import MISSING, CodecDepth, Delay, NextScale, Raster
from unitok.media import Audio, Image
from unitok.modality import MediaTokenizer


@dataclass
class ToyImageConfig:
    patch: int = 8
    levels: int = 16             # codebook size
    layout: str = "next_scale"   # or "raster"
    scales: tuple = (1, 2)       # coarse scales (divisors of the grid); the full grid is always last


@register("testing.toy_image")
class ToyImage(MediaTokenizer):
    """Grey-level residual quantiser over ``patch`` x ``patch`` blocks at several scales."""

    modality = "image"
    header_fields = ("height", "width")
    config_class = ToyImageConfig

    def __init__(self, cfg: ToyImageConfig = ToyImageConfig()):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("scale", torch.tensor(1.0))  # a weight, so checkpoints have content

    @property
    def codebook_sizes(self):
        return [self.cfg.levels] * (len(self._scales(8, 8)) if self.cfg.layout == "next_scale" else 1)

    def _grid(self, header):
        p = self.cfg.patch
        return math.ceil(header["height"] / p), math.ceil(header["width"] / p)

    def _scales(self, h, w):
        if self.cfg.layout != "next_scale":
            return [(h, w)]
        return [(math.ceil(h / d), math.ceil(w / d)) for d in self.cfg.scales] + [(h, w)]

    def layout(self, header):
        h, w = self._grid(header)
        if self.cfg.layout == "raster":
            return Raster(h, w)
        scales = self._scales(h, w)
        return NextScale(scales, list(range(len(scales))))

    def _q(self, x):
        n = self.cfg.levels
        return torch.clamp(torch.round((x + 1) / 2 * (n - 1)), 0, n - 1).long()

    def _dq(self, q):
        return q.float() / (self.cfg.levels - 1) * 2 - 1

    def encode_item(self, item: Image):
        header = {"height": item.height, "width": item.width}
        h, w = self._grid(header)
        x = item.to_float().mean(0, keepdim=True)[None] * 2 - 1            # [1, 1, H, W] in [-1, 1]
        x = F.interpolate(x, size=(h, w), mode="area")
        codes, recon = [], torch.zeros_like(x)
        for sh, sw in self._scales(h, w):
            q = self._q(F.interpolate(x - recon, size=(sh, sw), mode="area"))
            codes.append(q[0, 0].numpy())
            recon = recon + F.interpolate(self._dq(q) * (1 if not codes[:-1] else 0.5), size=(h, w), mode="nearest")
        return header, codes if self.cfg.layout == "next_scale" else codes[0][None]

    def decode_item(self, header, codes):
        h, w = self._grid(header)
        codes = codes if self.cfg.layout == "next_scale" else [codes[0]]
        recon = torch.zeros(1, 1, h, w)
        for i, q in enumerate(codes):
            q = torch.as_tensor(np.asarray(q))[None, None]
            present = (q != MISSING).float()         # a missing code adds nothing
            recon = recon + F.interpolate(self._dq(q) * present * (1 if i == 0 else 0.5), size=(h, w), mode="nearest")
        up = F.interpolate(recon, scale_factor=self.cfg.patch, mode="nearest")[0, :, :header["height"], :header["width"]]
        pixels = ((up.clamp(-1, 1) + 1) / 2 * 255).round().to(torch.uint8).expand(3, -1, -1)
        return Image.from_array(pixels.contiguous())


@dataclass
class ToyAudioConfig:
    sample_rate: int = 8000
    hop: int = 80
    levels: int = 3
    bins: int = 8
    layout: str = "codec_depth"   # or "delay"


@register("testing.toy_audio")
class ToyAudio(MediaTokenizer):
    """Residual scalar quantiser of per-frame mean and energy; mono at ``sample_rate``."""

    modality = "audio"
    header_fields = ("frames", "samples_in_last_frame")
    config_class = ToyAudioConfig

    def __init__(self, cfg: ToyAudioConfig = ToyAudioConfig()):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("scale", torch.tensor(1.0))

    @property
    def codebook_sizes(self):
        return [self.cfg.bins] * self.cfg.levels

    def layout(self, header):
        cls = Delay if self.cfg.layout == "delay" else CodecDepth
        return cls(self.cfg.levels, header["frames"])

    def encode_item(self, item: Audio):
        x = item.samples.mean(0)
        hop = self.cfg.hop
        frames = max(1, math.ceil(len(x) / hop))
        last = len(x) - (frames - 1) * hop
        x = F.pad(x, (0, frames * hop - len(x))).view(frames, hop).mean(1)
        codes, residual, step = [], x, 2.0 / self.cfg.bins
        for _ in range(self.cfg.levels):
            q = torch.clamp(torch.floor((residual + step * self.cfg.bins / 2) / step), 0, self.cfg.bins - 1)
            residual = residual - ((q + 0.5) * step - step * self.cfg.bins / 2)
            codes.append(q.long().numpy())
            step /= self.cfg.bins
        return {"frames": frames, "samples_in_last_frame": last}, np.stack(codes)

    def decode_item(self, header, codes):
        step, x = 2.0 / self.cfg.bins, torch.zeros(header["frames"])
        for q in np.asarray(codes):
            q = torch.as_tensor(q)
            x = x + ((q.float() + 0.5) * step - step * self.cfg.bins / 2) * (q != MISSING)   # missing: adds nothing
            step /= self.cfg.bins
        wave = x.repeat_interleave(self.cfg.hop)
        wave = wave[:(header["frames"] - 1) * self.cfg.hop + header["samples_in_last_frame"]]
        return Audio(wave[None].contiguous(), self.cfg.sample_rate)
