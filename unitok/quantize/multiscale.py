"""The multi-scale residual wrapper (VAR / Infinity): the *same* grid quantizer (FSQ, VQ, LFQ) is
applied to the residual at a schedule of scales, coarse to fine.

For a latent grid ``h x w`` and divisors ``scales = (32, 16, 8, 4, 2, 1)`` scale ``s`` is
``ceil(h / d_s) x ceil(w / d_s)`` (consecutive equal sizes are merged, so tiny images get fewer
scales); each quantized map is upsampled to ``h x w`` (and refined by a small shared convolution)
and summed. Its codes are one ``[B, h_s, w_s]`` id map per scale, laid out by
``unitok.layout.NextScale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..layout import MISSING
from .base import (BaseQuantizerConfig, GridQuantizer, Quantizer, build_quantizer, fp32, kind_field, lookup,
                   quantizer_config, register_kind)
from .fsq import FSQConfig


def scale_schedule(divisors, h: int, w: int) -> list[tuple[int, int]]:
    """Sizes of the scales for a latent grid ``h x w``: ``ceil(h/d) x ceil(w/d)`` per divisor,
    consecutive duplicates merged, always ending with ``(h, w)``."""
    out: list[tuple[int, int]] = []
    for d in divisors:
        s = (math.ceil(h / d), math.ceil(w / d))
        if not out or out[-1] != s:
            out.append(s)
    if not out or out[-1] != (h, w):
        out.append((h, w))
    return out


@dataclass
class MultiScaleConfig(BaseQuantizerConfig):
    quantizer: BaseQuantizerConfig = field(default_factory=FSQConfig)   # the grid quantizer every scale shares
    scales: tuple[int, ...] = (32, 16, 8, 4, 2, 1)   # latent-grid divisors, coarse to fine, ending with 1
    refine: bool = True                         # VAR's phi: a shared 3x3 conv on each upsampled map
    # how often each FSQ level occurs, per divisor and channel (flattened [scales, D, levels], from
    # training images; ``plane_prior_of``): where in its bin a code known only to its top bit planes
    # decodes (``decode(..., planes=b)``). Empty: the bin's centre.
    plane_prior: tuple[float, ...] = ()
    kind: str = kind_field("multiscale")

    def __post_init__(self):
        self.quantizer = quantizer_config(self.quantizer, source="quantizer.quantizer")
        if not issubclass(lookup(self.quantizer.kind).module, GridQuantizer):
            raise ConfigError(f"a multi-scale quantizer wraps a grid quantizer (fsq, vq, lfq), not "
                              f"{self.quantizer.kind!r}")
        self.scales = tuple(self.scales)
        if (not self.scales or any(int(d) < 1 for d in self.scales)
                or list(self.scales) != sorted(self.scales, reverse=True)):
            raise ConfigError(f"quantizer.scales must be decreasing divisors >= 1 (e.g. [32, 16, 8, 4, 2, 1]), "
                              f"got {list(self.scales)}")
        if self.scales[-1] != 1:
            raise ConfigError(f"quantizer.scales must end with 1 (the full latent grid), got {list(self.scales)}")
        self.plane_prior = tuple(float(p) for p in self.plane_prior)
        levels = tuple(getattr(self.quantizer, "levels", ()))
        want = len(self.scales) * len(levels) * max(levels, default=0)
        if self.plane_prior and (len(self.plane_prior) != want
                                 or not all(math.isfinite(p) and p >= 0 for p in self.plane_prior)):
            raise ConfigError(f"quantizer.plane_prior must hold {want} finite, non-negative frequencies (scales x "
                              f"levels of every channel), got {len(self.plane_prior)} values")

    @property
    def dim(self) -> int:
        return self.quantizer.dim

    @property
    def size(self) -> int:
        return self.quantizer.size


@register_kind("multiscale", MultiScaleConfig)
class MultiScaleQuantizer(Quantizer):
    """Residual quantization over a schedule of scales with one shared grid quantizer.

    - ``forward(z: [B, D, H, W]) -> (quantized [B, D, H, W], codes: list over scales of
      [B, h_s, w_s] int64, aux_loss [])``;
    - ``encode(z) -> codes`` (that list); ``decode(codes, size=None) -> [B, D, H, W]`` (``size``
      defaults to the finest scale's, which is always the whole grid);
    - ``vectors_to_codes(vectors)``: per-scale code vectors ([B, D, h_s, w_s], as the inner
      quantizer's ``decode`` gives them) -> codes.

    Each scale quantizes the area-downsampled residual, times a learned per-scale gain (finer
    residuals are smaller; the gain keeps them spread over the codebook); the code map, divided
    by the gain, is upsampled bilinearly, refined, and added.
    """

    def __init__(self, cfg: MultiScaleConfig):
        super().__init__()
        self.cfg = cfg
        self.quantizer = build_quantizer(cfg.quantizer)
        self.dim = cfg.dim
        self.codebook_size = self.quantizer.codebook_size
        self.divisors = tuple(int(d) for d in cfg.scales)
        # log-gain per divisor; finer residuals start with more gain
        self.log_gain = nn.Parameter(torch.linspace(0.0, 0.7, len(self.divisors)))
        if cfg.refine:
            self.refine = nn.Conv2d(self.dim, self.dim, 3, padding=1)
            nn.init.zeros_(self.refine.weight)
            nn.init.zeros_(self.refine.bias)
        else:
            self.refine = None

    def schedule(self, h: int, w: int) -> list[tuple[int, int]]:
        """Code map sizes for a latent grid ``h x w``, coarse to fine."""
        return scale_schedule(self.divisors, h, w)

    def _gain_index(self, h: int, w: int) -> list[int]:
        """For each scale of ``schedule(h, w)``, the divisor whose gain it uses. A grid with fewer
        scales than divisors (a small image) uses the *finest* gains: its scales cover the same
        pixel frequency bands as the finest scales of a large image (measured slightly better
        than matching from the coarse end)."""
        n, d = len(self.schedule(h, w)), len(self.divisors)
        return list(range(d - n, d)) if n <= d else [0] * (n - d) + list(range(d))

    def _expand(self, q: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """q: [B, D, h_s, w_s] -> [B, D, H, W] upsampled and refined."""
        if tuple(q.shape[-2:]) != size:
            q = F.interpolate(q, size=size, mode="bilinear", align_corners=False)
        if self.refine is not None:
            q = q + self.refine(q)
        return q

    def forward(self, z: torch.Tensor):
        """z: [B, D, H, W] -> (quantized [B, D, H, W], codes: list over scales of [B, h_s, w_s], aux [])."""
        with fp32(z.device.type):
            z = z.float()
            H, W = z.shape[-2:]
            f_hat = torch.zeros_like(z)
            codes, aux = [], z.new_zeros(())
            for (h, w), g in zip(self.schedule(H, W), self._gain_index(H, W)):
                residual = z - f_hat
                if (h, w) != (H, W):
                    residual = F.adaptive_avg_pool2d(residual, (h, w))
                gain = self.log_gain[g].exp()
                q, idx, a = self.quantizer(residual * gain)
                f_hat = f_hat + self._expand(q / gain, (H, W))
                codes.append(idx)
                aux = aux + a
            return f_hat, codes, aux

    def decode(self, codes: list[torch.Tensor], size: tuple[int, int] | None = None,
               planes: int | None = None) -> torch.Tensor:
        """codes: list over scales of [B, h_s, w_s] -> quantized latent [B, D, H, W] (``size``).
        A code ``MISSING`` (-1, lenient decoding of a truncated sequence) adds nothing, so the
        latent is the partial residual sum of what is present (a scale with no code is skipped);
        with ``size``, a list of only the first k scales is the same as the rest all missing.

        ``planes=b`` (FSQ with 2**n levels per channel): the finest scale that holds codes is known
        only to the top ``b`` bits of each channel (its ids' low bits are ignored), so one encode
        gives rates between two scales: with the first k scales, the next one's top bit planes."""
        H, W = tuple(codes[-1].shape[-2:]) if size is None else size
        schedule = self.schedule(H, W)
        codes = list(codes)
        if size is not None and 0 < len(codes) < len(schedule):
            codes += [torch.full((codes[0].shape[0], *s), MISSING, dtype=torch.long, device=codes[0].device)
                      for s in schedule[len(codes):]]
        if len(codes) != len(schedule) or any(tuple(c.shape[-2:]) != s for c, s in zip(codes, schedule)):
            raise ValueError(f"a {H}x{W} latent needs scales {schedule}, got {[tuple(c.shape[-2:]) for c in codes]}")
        finest = -1
        if planes is not None:
            self._check_planes(planes)
            finest = max((i for i, c in enumerate(codes) if bool((c != MISSING).any())), default=-1)
        f_hat = None
        with fp32(codes[-1].device.type):
            for i, (idx, g) in enumerate(zip(codes, self._gain_index(H, W))):
                present = idx != MISSING
                if not present.any():
                    continue
                if planes is not None and i == finest:
                    vectors = self.quantizer.decode_planes(idx.clamp_min(0), planes, self._prior(g))
                else:
                    vectors = self.quantizer.decode(idx.clamp_min(0))
                if not present.all():
                    vectors = vectors * present[:, None]
                q = self._expand(vectors / self.log_gain[g].exp(), (H, W))
                f_hat = q if f_hat is None else f_hat + q
            if f_hat is None:     # not one code: the latent is zero
                f_hat = torch.zeros(codes[-1].shape[0], self.dim, H, W, device=codes[-1].device)
        return f_hat

    def _check_planes(self, planes) -> None:
        if not hasattr(self.quantizer, "decode_planes"):
            raise ConfigError(f"decoding bit planes needs an FSQ quantizer, this one is {self.cfg.quantizer.kind!r}")
        self.quantizer.check_planes(planes)

    def _prior(self, divisor: int) -> torch.Tensor | None:
        """Level frequencies [D, L] of the scale with this divisor index, or None."""
        if not self.cfg.plane_prior:
            return None
        table = torch.tensor(self.cfg.plane_prior).reshape(len(self.divisors), self.dim, -1)
        return table[divisor]

    def vectors_to_codes(self, vectors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-scale code vectors ([B, D, h_s, w_s], as the inner quantizer gives them) -> codes."""
        return [self.quantizer.vectors_to_codes(v) for v in vectors]


def plane_prior_of(quantizer: MultiScaleQuantizer, batches, decimals: int = 5) -> tuple[float, ...]:
    """The ``plane_prior`` of a multi-scale FSQ quantizer: how often each level of each channel
    occurs at each divisor's scale, over ``batches`` (an iterable of code lists as ``encode`` gives
    them, e.g. from training images). Flattened [divisors, D, L], each [L] row summing to 1."""
    levels = quantizer.quantizer.impl._levels
    counts = torch.zeros(len(quantizer.divisors), quantizer.dim, int(levels.max()))
    for codes in batches:
        H, W = codes[-1].shape[-2:]
        for idx, g in zip(codes, quantizer._gain_index(H, W)):
            digits = quantizer.quantizer.digits(idx.reshape(-1).cpu())       # [N, D]
            for ch in range(quantizer.dim):
                counts[g, ch] += torch.bincount(digits[:, ch], minlength=counts.shape[-1]).float()
    freq = counts / counts.sum(-1, keepdim=True).clamp_min(1)
    return tuple(round(float(f), decimals) for f in freq.reshape(-1))
