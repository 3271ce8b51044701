"""Bitwise multi-scale residual quantization with nested vocabularies (Infinity / BSQ, ERNIE 5.0).

Each code is a group of ``bits = d`` sign bits, one per latent channel: channel ``i`` is ``+a_s``
where bit ``i`` is set and ``-a_s`` where it is not, ``a_s`` a learned step of scale ``s``
(BSQ's ``+-1/sqrt(d)`` on the unit sphere, with the radius learned per scale instead of fixed:
the signs, and so the ids, are the same). Bit ``i`` is the id's bit ``d - 1 - i``: the *first*
channels are the id's most significant bits.

Nesting: nothing in the quantizer mixes channels (the steps are per scale, the upsampling is
bilinear, the refinement convolution is depthwise and has no bias), so the residual of channel
``i`` at every scale depends on channel ``i`` alone. Hence:

- the first ``k`` bits of a ``d``-bit code are exactly the code a ``k``-bit encode gives
  (``encode(z, bits=k) == prefix(encode(z), k)``, not an approximation);
- decoding ``k``-bit codes puts the other ``d - k`` channels at 0, their *neutral* value (the
  mean of a balanced ``+-a`` bit, and what training shows the decoder for dropped bits), so the
  ``2**k`` vocabulary is a coarsening of the ``2**d`` one: ``k``-bit code ``c`` stands for the
  ``2**(d-k)`` codes ``c << (d-k) .. ((c+1) << (d-k)) - 1``.

The id maps are :func:`unitok.space.prefix_codes` / :func:`unitok.space.extend_codes`.
Training makes low-``k`` decodes good with nested dropout: each sample keeps only its first
``k`` channels of the quantized latent, ``k`` drawn per sample, and a progressive schedule can
start with few bits and raise the largest ``k`` to ``d`` over ``progressive_steps`` (ERNIE 5.0:
"training switches progressively from a low-bit tokenizer to higher-bit ones").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import training_only
from ..errors import ConfigError
from ..layout import MISSING
from ..space import extend_codes, prefix_codes
from .base import BaseQuantizerConfig, Quantizer, fp32, kind_field, register_kind
from .lfq import SignBits
from .multiscale import MultiScaleQuantizer

MAX_BITS = 24     # 2**24 codes per level keeps a whole image level inside the int32 token space


@dataclass
class BitwiseConfig(SignBits, BaseQuantizerConfig):
    bits: int = 12                              # d: bits per code (= latent channels), 2**d codes
    scales: tuple[int, ...] = (32, 16, 8, 4, 2, 1)   # latent-grid divisors, coarse to fine, ending with 1
    refine: bool = True                         # a depthwise 3x3 conv on each upsampled map (VAR's phi, per channel)
    min_train_bits: int = training_only(1)      # nested dropout draws k from min_train_bits..d
    full_bits_prob: float = training_only(0.5)  # share of samples trained at the full d bits
    progressive_steps: int = training_only(0)   # the largest k grows from min_train_bits to d over these steps
    commitment_weight: float = training_only(0.25)
    kind: str = kind_field("bitwise")

    def __post_init__(self):
        self.check_bits(MAX_BITS)
        self.scales = tuple(int(d) for d in self.scales)
        if (not self.scales or min(self.scales) < 1 or list(self.scales) != sorted(self.scales, reverse=True)
                or self.scales[-1] != 1):
            raise ConfigError(f"quantizer.scales must be decreasing divisors ending with 1 (e.g. [32, 16, 8, 4, 2, 1]), "
                              f"got {list(self.scales)}")
        if not 1 <= self.min_train_bits <= self.bits:
            raise ConfigError(f"quantizer.min_train_bits must be in 1..bits ({self.bits}), got {self.min_train_bits}")
        if not 0.0 <= self.full_bits_prob <= 1.0:
            raise ConfigError(f"quantizer.full_bits_prob must be in [0, 1], got {self.full_bits_prob}")


@register_kind("bitwise", BitwiseConfig)
class BitwiseQuantizer(MultiScaleQuantizer):
    """Sign bits over a schedule of scales; the multi-scale contract
    (:class:`~unitok.quantize.multiscale.MultiScaleQuantizer`: codes are a list over scales of
    ``[B, h_s, w_s]`` int64) plus a ``bits`` keyword:

    - ``encode(z: [B, d, H, W], bits=k) -> codes`` with ``k``-bit ids (``[0, 2**k)``), the prefixes
      of the ``d``-bit ones;
    - ``decode(codes, size=None, bits=k) -> [B, d, H, W]``: ``k``-bit ids in, channels ``k..d-1``
      at 0;
    - ``prefix(codes, k)`` / ``extend(codes, k)``: the id maps ``d -> k`` bits and back.
    """

    nested_bits = True     # SpatialCodec: decoding at fewer bits is supported

    def __init__(self, cfg: BitwiseConfig):
        # the schedule and expansion of MultiScaleQuantizer, without its inner grid quantizer
        # and its channel-mixing refinement (both would break the nesting)
        Quantizer.__init__(self)
        self.cfg = cfg
        self.dim = self.bits = cfg.bits
        self.codebook_size = cfg.size
        self.divisors = cfg.scales
        # log of 1 / step per scale: finer residuals are smaller
        self.log_gain = nn.Parameter(torch.linspace(0.0, 1.5, len(self.divisors)))
        if cfg.refine:
            self.refine = nn.Conv2d(self.dim, self.dim, 3, padding=1, groups=self.dim, bias=False)
            nn.init.zeros_(self.refine.weight)
        else:
            self.refine = None
        self.register_buffer("weights", 2 ** torch.arange(self.bits - 1, -1, -1), persistent=False)
        self.training_step = 0   # set by the recipe; drives ``progressive_steps``

    # -- ids <-> sign vectors ----------------------------------------------------------------------

    def _check_bits(self, bits: int | None) -> int:
        if bits is None:
            return self.bits
        if not isinstance(bits, int) or not 1 <= bits <= self.bits:
            raise ConfigError(f"bits must be an int in 1..{self.bits} (this quantizer's bits per code), got {bits!r}")
        return bits

    def _signs(self, codes: torch.Tensor, bits: int) -> torch.Tensor:
        """codes: [B, h, w] ``bits``-bit ids -> [B, d, h, w] in {-1, +1} on the first ``bits``
        channels, 0 on the others."""
        weights = self.weights[self.bits - bits:].to(codes.device)   # 2**(bits-1) .. 1
        signs = ((codes[:, None] & weights[:, None, None]) != 0).float() * 2 - 1
        if bits < self.bits:
            signs = F.pad(signs, (0, 0, 0, 0, 0, self.bits - bits))
        return signs

    def _ids(self, signs: torch.Tensor) -> torch.Tensor:
        """signs: [B, d, h, w] -> d-bit ids [B, h, w] (bit set where the channel is positive)."""
        return ((signs > 0).long() * self.weights.to(signs.device)[:, None, None]).sum(1)

    def prefix(self, codes, bits: int):
        """d-bit codes (a tensor, an array, or a list over scales) -> their first ``bits`` bits."""
        return prefix_codes(codes, self.bits, self._check_bits(bits))

    def extend(self, codes, bits: int):
        """``bits``-bit codes -> the first d-bit code of each (the others bits 0); ``prefix``
        undoes it exactly."""
        return extend_codes(codes, self._check_bits(bits), self.bits)

    # -- training ----------------------------------------------------------------------------------

    def max_training_bits(self) -> int:
        """The largest k nested dropout draws at ``training_step`` (the progressive schedule)."""
        n, lo = self.cfg.progressive_steps, self.cfg.min_train_bits
        if n <= 0 or self.training_step >= n:
            return self.bits
        return lo + int((self.bits - lo + 1) * self.training_step / n)

    def _keep_mask(self, z: torch.Tensor) -> torch.Tensor:
        """[B, d, 1, 1]: 1 on the first k channels of each sample (k drawn per sample), else 0."""
        B, hi, lo = z.shape[0], self.max_training_bits(), self.cfg.min_train_bits
        k = torch.randint(lo, hi + 1, (B,), device=z.device)
        if hi == self.bits:
            full = torch.rand(B, device=z.device) < self.cfg.full_bits_prob
            k = torch.where(full, torch.full_like(k, self.bits), k)
        return (torch.arange(self.bits, device=z.device)[None] < k[:, None]).float()[:, :, None, None]

    def forward(self, z: torch.Tensor):
        """z: [B, d, H, W] -> (quantized [B, d, H, W], codes: list over scales of [B, h_s, w_s]
        d-bit ids, aux loss []). In training, each sample's quantized latent keeps its first k
        channels only (nested dropout); the codes are the full d-bit ones all the same."""
        if z.ndim != 4 or z.shape[1] != self.dim:
            raise ValueError(f"quantizer expects [B, {self.dim}, H, W], got {tuple(z.shape)}")
        with fp32(z.device.type):
            z = z.float()
            H, W = z.shape[-2:]
            f_hat = torch.zeros_like(z)
            codes = []
            for (h, w), g in zip(self.schedule(H, W), self._gain_index(H, W)):
                residual = z - f_hat
                if (h, w) != (H, W):
                    residual = F.adaptive_avg_pool2d(residual, (h, w))
                signs = torch.where(residual > 0, 1.0, -1.0)
                # straight-through: the value of the signs, the gradient of the residual; the step
                # gets its gradient from the value
                q = (residual + (signs - residual).detach()) * (-self.log_gain[g]).exp()
                f_hat = f_hat + self._expand(q, (H, W))
                codes.append(self._ids(signs))
            if not self.training:
                return self.decode(codes, (H, W)), codes, z.new_zeros(())
            aux = self.cfg.commitment_weight * F.mse_loss(z, f_hat.detach())
            return f_hat * self._keep_mask(z), codes, aux

    # -- ids -> latent -----------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, z: torch.Tensor, bits: int | None = None) -> list[torch.Tensor]:
        """z: [B, d, H, W] -> list over scales of [B, h_s, w_s] ``bits``-bit ids (default d)."""
        bits = self._check_bits(bits)
        codes = super().encode(z)
        return codes if bits == self.bits else self.prefix(codes, bits)

    def decode(self, codes: list[torch.Tensor], size: tuple[int, int] | None = None,
               bits: int | None = None) -> torch.Tensor:
        """codes: list over scales of [B, h_s, w_s] ``bits``-bit ids (default d) -> quantized
        latent [B, d, H, W], channels ``bits..d-1`` at 0. ``MISSING`` (-1) adds nothing, as in
        :meth:`MultiScaleQuantizer.decode`."""
        bits = self._check_bits(bits)
        H, W = tuple(codes[-1].shape[-2:]) if size is None else size
        schedule = self.schedule(H, W)
        if len(codes) != len(schedule) or any(tuple(c.shape[-2:]) != s for c, s in zip(codes, schedule)):
            raise ValueError(f"a {H}x{W} latent needs scales {schedule}, got {[tuple(c.shape[-2:]) for c in codes]}")
        B, device = codes[-1].shape[0], codes[-1].device
        f_hat = torch.zeros(B, self.dim, H, W, device=device)
        with fp32(device.type):
            for idx, g in zip(codes, self._gain_index(H, W)):
                idx = torch.as_tensor(idx, device=device).long()
                present = idx != MISSING
                if not present.any():
                    continue
                if int(idx.max()) >= 1 << bits:
                    raise ValueError(f"code {int(idx.max())} is not a {bits}-bit code; map d-bit codes with prefix()")
                q = self._signs(idx.clamp_min(0), bits) * present[:, None]
                f_hat = f_hat + self._expand(q * (-self.log_gain[g]).exp(), (H, W))
        return f_hat

    def vectors_to_codes(self, vectors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-scale sign vectors ([B, d, h_s, w_s]) -> d-bit codes."""
        return [self._ids(v) for v in vectors]
