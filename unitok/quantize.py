"""One adapter over vector-quantize-pytorch, and the multi-scale residual wrapper.

Every quantizer here has the same contract, whatever the method underneath:

- ``forward(z: [B, D, H, W]) -> (quantized [B, D, H, W], indices [B, H, W] int64, aux_loss [])``;
- ``indices_to_codes(indices [B, H, W]) -> [B, D, H, W]`` and ``codes_to_indices`` back, exact in
  eval mode (in eval mode ``forward`` returns exactly ``indices_to_codes(indices)``, so decoding
  stored ids gives bit-for-bit what encoding saw);
- ``codebook_size`` and ``codebook_sizes`` (one entry per level; one here: the codebook is shared).

Methods (``QuantizerConfig.kind``):

- ``"fsq"``: finite scalar quantization; ``levels`` per channel, ``D = len(levels)``, no
  codebook to learn, no auxiliary loss (Mentzer et al. 2023).
- ``"vq"``: a learned codebook of ``codebook_size`` low-dimensional (``D = codebook_dim``)
  l2-normalised codes (cosine similarity), k-means initialisation, EMA updates and dead-code
  expiry; ``aux_loss`` is the commitment loss (ViT-VQGAN / Improved VQGAN).
- ``"lfq"``: lookup-free, one bit per channel (``D = bits``, ``2**bits`` codes); ``aux_loss``
  is the entropy penalty; ``spherical=True`` is BSQ (codes on the unit sphere, MAGVIT-2 /
  Infinity).

Quantization always runs in fp32, also under bf16 autocast.

The multi-scale residual mode (``QuantizerConfig.scales``, VAR / Infinity): the *same* quantizer
is applied to the residual at a schedule of scales, coarse to fine. For a latent grid ``h x w``
and divisors ``scales = (32, 16, 8, 4, 2, 1)`` scale ``s`` is ``ceil(h / d_s) x ceil(w / d_s)``
(consecutive equal sizes are merged, so tiny images get fewer scales); each quantized map is
upsampled to ``h x w`` (and refined by a small shared convolution) and summed. Its codes are one
``[h_s, w_s]`` index map per scale, laid out by ``unitok.layout.NextScale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .errors import ConfigError

KINDS = ("fsq", "vq", "lfq")


@dataclass
class QuantizerConfig:
    kind: str = "fsq"                           # "fsq" | "vq" | "lfq"
    # fsq
    levels: tuple[int, ...] = (8, 5, 5, 5)      # quantization levels per channel; prod = codebook size
    # vq
    codebook_size: int = 1024
    codebook_dim: int = 8                       # low-dimensional codes make lookups meaningful
    commitment_weight: float = 0.25
    ema_decay: float = 0.8
    kmeans_init: bool = True
    dead_code_threshold: float = 2.0            # codes used less than this (EMA count) are re-seeded
    # lfq / bsq
    bits: int = 10
    spherical: bool = False
    entropy_weight: float = 0.1
    # multi-scale residual mode: latent-grid divisors, coarse to fine; () = one scale
    scales: tuple[int, ...] = ()
    refine: bool = True                         # VAR's phi: a shared 3x3 conv on each upsampled map

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"quantizer kind {self.kind!r} is unknown; use one of {KINDS}")
        if self.kind == "fsq" and (not self.levels or min(self.levels) < 3):
            raise ConfigError(f"quantizer.levels must be a non-empty list of integers >= 3, got {self.levels}")
        if self.kind == "vq" and (self.codebook_size < 2 or self.codebook_dim < 1):
            raise ConfigError("quantizer.codebook_size must be >= 2 and quantizer.codebook_dim >= 1")
        if self.kind == "lfq" and not 1 <= self.bits <= 30:
            raise ConfigError(f"quantizer.bits must be in 1..30, got {self.bits}")
        if any(int(d) < 1 for d in self.scales) or list(self.scales) != sorted(self.scales, reverse=True):
            raise ConfigError(f"quantizer.scales must be decreasing divisors >= 1 (e.g. [32, 16, 8, 4, 2, 1]), "
                              f"got {list(self.scales)}")
        if self.scales and self.scales[-1] != 1:
            raise ConfigError(f"quantizer.scales must end with 1 (the full latent grid), got {list(self.scales)}")

    @property
    def dim(self) -> int:
        """Channels of the latent the quantizer takes."""
        return {"fsq": len(self.levels), "vq": self.codebook_dim, "lfq": self.bits}[self.kind]

    @property
    def size(self) -> int:
        """Entries of the (implicit) codebook."""
        if self.kind == "fsq":
            return math.prod(self.levels)
        return self.codebook_size if self.kind == "vq" else 2 ** self.bits


class _NoAutocast:
    """Quantization in fp32 whatever autocast says (bf16 rounding would move codes)."""

    def __init__(self, device_type: str):
        self.ctx = torch.autocast(device_type=device_type, enabled=False)

    def __enter__(self):
        return self.ctx.__enter__()

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc)


class Quantizer(nn.Module):
    """A single-scale quantizer over ``[B, D, H, W]`` latents. See the module docstring."""

    def __init__(self, cfg: QuantizerConfig):
        super().__init__()
        from vector_quantize_pytorch import FSQ, LFQ, VectorQuantize

        self.cfg = cfg
        self.dim = cfg.dim
        self.codebook_size = cfg.size
        if cfg.kind == "fsq":
            self.impl = FSQ(levels=list(cfg.levels), dim=cfg.dim)
        elif cfg.kind == "vq":
            self.impl = VectorQuantize(
                dim=cfg.dim, codebook_size=cfg.codebook_size, use_cosine_sim=True,
                kmeans_init=cfg.kmeans_init, kmeans_iters=10, decay=cfg.ema_decay,
                threshold_ema_dead_code=cfg.dead_code_threshold, commitment_weight=cfg.commitment_weight,
                accept_image_fmap=True)
        else:
            # the entropy term compares every token with every code: sample tokens for big codebooks
            frac = 1.0 if cfg.bits <= 12 else 0.25
            self.impl = LFQ(dim=cfg.bits, codebook_size=2 ** cfg.bits, entropy_loss_weight=cfg.entropy_weight,
                            spherical=cfg.spherical, frac_per_sample_entropy=frac)

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.codebook_size]

    def forward(self, z: torch.Tensor):
        """z: [B, D, H, W] -> (quantized [B, D, H, W] fp32, indices [B, H, W] int64, aux_loss [])."""
        if z.ndim != 4 or z.shape[1] != self.dim:
            raise ValueError(f"quantizer expects [B, {self.dim}, H, W], got {tuple(z.shape)}")
        with _NoAutocast(z.device.type):
            z = z.float()
            if self.cfg.kind == "fsq":
                q, idx = self.impl(z)
                aux = z.new_zeros(())
            elif self.cfg.kind == "vq":
                q, idx, aux = self.impl(z)
            else:
                q, idx, aux = self.impl(z)
            idx = idx.long()
            if not self.training:
                q = self.indices_to_codes(idx)
            return q, idx, aux.float().reshape(()) if torch.is_tensor(aux) else z.new_tensor(float(aux))

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """indices: [B, H, W] int -> codes [B, D, H, W] fp32."""
        indices = indices.long()
        if self.cfg.kind == "fsq":
            codes = self.impl._indices_to_codes(indices)                       # [B, H, W, D]
        elif self.cfg.kind == "vq":
            codes = self._codebook()[indices]
        else:
            mask = self.impl.mask.long()
            bits = (indices[..., None] & mask) != 0
            codes = bits.float() * 2 - 1
            if self.cfg.spherical:
                codes = codes / math.sqrt(self.cfg.bits)
        return rearrange(codes.float(), "b h w d -> b d h w").contiguous()

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, D, H, W] (as ``indices_to_codes`` gives) -> indices [B, H, W] int64."""
        codes = rearrange(codes.float(), "b d h w -> b h w d")
        if self.cfg.kind == "fsq":
            return self.impl.codes_to_indices(codes).long()
        if self.cfg.kind == "vq":
            return torch.einsum("bhwd,kd->bhwk", F.normalize(codes, dim=-1), self._codebook()).argmax(-1)
        mask = self.impl.mask.long()
        return ((codes > 0).long() * mask).sum(-1)

    def _codebook(self) -> torch.Tensor:
        """[K, D] l2-normalised code vectors of the VQ codebook."""
        return F.normalize(self.impl.codebook.float().reshape(-1, self.dim), dim=-1)


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


class MultiScaleQuantizer(nn.Module):
    """Residual quantization over a schedule of scales with one shared quantizer (VAR, Infinity).

    ``forward(z: [B, D, H, W]) -> (quantized [B, D, H, W], indices: list over scales of
    [B, h_s, w_s], aux_loss [])``. Each scale quantizes the area-downsampled residual, times a
    learned per-scale gain (finer residuals are smaller; the gain keeps them spread over the
    codebook); the code map, divided by the gain, is upsampled bilinearly, refined, and added.
    """

    def __init__(self, cfg: QuantizerConfig):
        super().__init__()
        self.cfg = cfg
        self.quantizer = Quantizer(cfg)
        self.dim = cfg.dim
        self.divisors = tuple(int(d) for d in cfg.scales)
        # log-gain per divisor; finer residuals start with more gain
        self.log_gain = nn.Parameter(torch.linspace(0.0, 0.7, len(self.divisors)))
        if cfg.refine:
            self.refine = nn.Conv2d(self.dim, self.dim, 3, padding=1)
            nn.init.zeros_(self.refine.weight)
            nn.init.zeros_(self.refine.bias)
        else:
            self.refine = None

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.codebook_size]

    def schedule(self, h: int, w: int) -> list[tuple[int, int]]:
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
        with _NoAutocast(z.device.type):
            z = z.float()
            H, W = z.shape[-2:]
            f_hat = torch.zeros_like(z)
            indices, aux = [], z.new_zeros(())
            for (h, w), g in zip(self.schedule(H, W), self._gain_index(H, W)):
                residual = z - f_hat
                if (h, w) != (H, W):
                    residual = F.adaptive_avg_pool2d(residual, (h, w))
                gain = self.log_gain[g].exp()
                q, idx, a = self.quantizer(residual * gain)
                f_hat = f_hat + self._expand(q / gain, (H, W))
                indices.append(idx)
                aux = aux + a
            return f_hat, indices, aux

    def indices_to_codes(self, indices: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """indices: list over scales of [B, h_s, w_s] -> quantized latent [B, D, H, W] (``size``)."""
        H, W = size
        schedule = self.schedule(H, W)
        if len(indices) != len(schedule) or any(tuple(i.shape[-2:]) != s for i, s in zip(indices, schedule)):
            raise ValueError(f"a {H}x{W} latent needs scales {schedule}, got {[tuple(i.shape[-2:]) for i in indices]}")
        f_hat = None
        for idx, g in zip(indices, self._gain_index(H, W)):
            q = self._expand(self.quantizer.indices_to_codes(idx) / self.log_gain[g].exp(), (H, W))
            f_hat = q if f_hat is None else f_hat + q
        return f_hat

    def codes_to_indices(self, codes: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-scale codes ([B, D, h_s, w_s], as the inner quantizer gives them) -> indices."""
        return [self.quantizer.codes_to_indices(c) for c in codes]


def build_quantizer(cfg: QuantizerConfig) -> Quantizer | MultiScaleQuantizer:
    return MultiScaleQuantizer(cfg) if cfg.scales else Quantizer(cfg)



# -- residual quantization over time (audio) ------------------------------------------------------

RESIDUAL_KINDS = ("rvq", "rfsq")


@dataclass
class ResidualQuantizerConfig:
    """Residual quantization of a ``[B, D, T]`` latent with ``levels`` stages (SoundStream /
    EnCodec / DAC), each stage quantizing what the previous ones left over.

    ``kind="rvq"``: a learned codebook of ``codebook_size`` vectors per level (k-means init, EMA
    updates, dead-code expiry; ``ResidualVQ`` of vector-quantize-pytorch). ``kind="rfsq"``: residual
    FSQ, an implicit ``prod(fsq_levels)``-code grid per level, finer by a fixed factor each level
    (``ResidualFSQ``); nothing to learn, no codebook collapse.

    Quantizer dropout: in training, each sample keeps only its first ``n`` levels with
    probability ``dropout`` (``n`` uniform in ``min_levels..levels``), so the decoder learns to
    work from any prefix of the levels: one model, several bitrates.
    """

    kind: str = "rvq"                           # "rvq" | "rfsq"
    levels: int = 8                             # residual levels K (the most a sequence can carry)
    dim: int = 128                              # latent channels D
    # rvq
    codebook_size: int = 1024
    ema_decay: float = 0.99
    kmeans_init: bool = True
    dead_code_threshold: float = 2.0
    commitment_weight: float = 1.0
    # rfsq
    fsq_levels: tuple[int, ...] = (4, 4, 4, 4, 4)
    # quantizer dropout (training only)
    dropout: float = 0.5
    min_levels: int = 1

    def __post_init__(self):
        if self.kind not in RESIDUAL_KINDS:
            raise ConfigError(f"quantizer kind {self.kind!r} is unknown for residual quantization; use one of "
                              f"{RESIDUAL_KINDS}")
        if self.levels < 1 or self.dim < 1:
            raise ConfigError(f"quantizer.levels and quantizer.dim must be >= 1, got {self.levels} and {self.dim}")
        if self.kind == "rvq" and self.codebook_size < 2:
            raise ConfigError(f"quantizer.codebook_size must be >= 2, got {self.codebook_size}")
        if self.kind == "rfsq" and (not self.fsq_levels or min(self.fsq_levels) < 2):
            raise ConfigError(f"quantizer.fsq_levels must be integers >= 2, got {list(self.fsq_levels)}")
        if not 0.0 <= self.dropout <= 1.0:
            raise ConfigError(f"quantizer.dropout is a probability in [0, 1], got {self.dropout}")
        if not 1 <= self.min_levels <= self.levels:
            raise ConfigError(f"quantizer.min_levels must be in 1..levels={self.levels}, got {self.min_levels}")

    @property
    def size(self) -> int:
        """Entries of each level's codebook."""
        return math.prod(self.fsq_levels) if self.kind == "rfsq" else self.codebook_size


class ResidualQuantizer(nn.Module):
    """Residual quantizer over ``[B, D, T]`` latents with per-sample quantizer dropout.

    - ``forward(z: [B, D, T]) -> (quantized [B, D, T], codes [B, K, T] int64, aux_loss [])``.
      In training, levels a sample dropped have code ``-1`` and add nothing to ``quantized``;
      in eval mode ``quantized == decode(codes)`` exactly.
    - ``encode(z, n_levels) -> codes [B, n_levels, T]``: nearest codes of the first levels. It
      never changes the module (vector-quantize-pytorch would k-means-initialise an untrained
      codebook on the first batch it sees, even in eval mode).
    - ``decode(codes: [B, n, T]) -> [B, D, T]``: the sum of the first ``n`` levels' codes; any
      ``n <= K`` works (a lower bitrate).
    """

    def __init__(self, cfg: ResidualQuantizerConfig):
        super().__init__()
        self.cfg = cfg
        self.dim = cfg.dim
        self.levels = cfg.levels
        self.codebook_size = cfg.size
        if cfg.kind == "rvq":
            from vector_quantize_pytorch import ResidualVQ

            self.impl = ResidualVQ(
                dim=cfg.dim, num_quantizers=cfg.levels, codebook_size=cfg.codebook_size, decay=cfg.ema_decay,
                kmeans_init=cfg.kmeans_init, kmeans_iters=10, threshold_ema_dead_code=cfg.dead_code_threshold,
                commitment_weight=cfg.commitment_weight)
        else:
            from vector_quantize_pytorch import ResidualFSQ

            self.impl = ResidualFSQ(levels=list(cfg.fsq_levels), num_quantizers=cfg.levels, dim=cfg.dim)

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.codebook_size] * self.levels

    # -- rvq helpers -------------------------------------------------------------------------------

    def _codebook(self, k: int) -> torch.Tensor:
        """[C, D] code vectors of level k (rvq)."""
        return self.impl.layers[k]._codebook.embed[0].float()

    @staticmethod
    def _nearest(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """x: [N, D], codebook: [C, D] -> index of the nearest code [N] (squared euclidean)."""
        d = codebook.pow(2).sum(-1)[None] - 2 * x @ codebook.t()
        return d.argmin(-1)

    # -- rfsq helpers ------------------------------------------------------------------------------

    def _fsq_in(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] -> projected, soft-clamped [B, T, len(fsq_levels)] (as ResidualFSQ does)."""
        x = self.impl.project_in(x)
        c = self.impl.soft_clamp_input_value
        return (x / c).tanh() * c if c is not None else x

    # -- forward / encode / decode -----------------------------------------------------------------

    def _keep(self, B: int, device) -> torch.Tensor:
        """Levels each sample keeps in training: [B] int (quantizer dropout)."""
        K, lo = self.levels, self.cfg.min_levels
        keep = torch.full((B,), K, device=device, dtype=torch.long)
        if self.cfg.dropout > 0 and K > lo:
            drop = torch.rand(B, device=device) < self.cfg.dropout
            keep = torch.where(drop, torch.randint(lo, K + 1, (B,), device=device), keep)
        return keep

    def forward(self, z: torch.Tensor, n_levels: int | None = None):
        """z: [B, D, T] -> (quantized [B, D, T] fp32, codes [B, K', T] int64, aux_loss []).
        ``K' = n_levels`` (default all levels). See the class docstring for training mode."""
        if z.ndim != 3 or z.shape[1] != self.dim:
            raise ValueError(f"residual quantizer expects [B, {self.dim}, T], got {tuple(z.shape)}")
        n = self.levels if n_levels is None else n_levels
        with _NoAutocast(z.device.type):
            z = z.float()
            if not self.training:
                codes = self.encode(z, n)
                return self.decode(codes), codes, z.new_zeros(())
            x = rearrange(z, "b d t -> b t d")
            B = x.shape[0]
            keep = self._keep(B, z.device) if n_levels is None else torch.full((B,), n, device=z.device)
            aux = z.new_zeros(())
            codes = []
            if self.cfg.kind == "rvq":
                residual, out = x, torch.zeros_like(x)
                for k in range(n):
                    q, idx, loss = self.impl.layers[k](residual)
                    m = (keep > k).float()[:, None, None]
                    out = out + q * m
                    residual = residual - q.detach()
                    aux = aux + loss.float().sum()
                    codes.append(torch.where(keep[:, None] > k, idx.long(), -1))
            else:
                residual = self._fsq_in(x)
                acc = torch.zeros_like(residual)
                for k in range(n):
                    scale = self.impl.scales[k]
                    q, idx = self.impl.layers[k](residual / scale)
                    q = q * scale
                    m = (keep > k).float()[:, None, None]
                    acc = acc + q * m
                    residual = residual - q.detach()
                    codes.append(torch.where(keep[:, None] > k, idx.long(), -1))
                out = self.impl.project_out(acc)
            return rearrange(out, "b t d -> b d t"), torch.stack(codes, 1), aux

    @torch.no_grad()
    def encode(self, z: torch.Tensor, n_levels: int | None = None) -> torch.Tensor:
        """z: [B, D, T] -> codes [B, n_levels, T] int64 (nearest codes, level by level)."""
        n = self.levels if n_levels is None else int(n_levels)
        if not 1 <= n <= self.levels:
            raise ConfigError(f"n_levels must be in 1..{self.levels}, got {n}")
        with _NoAutocast(z.device.type):
            x = rearrange(z.float(), "b d t -> b t d")
            B, T, _ = x.shape
            codes = []
            if self.cfg.kind == "rvq":
                residual = x.reshape(B * T, -1)
                for k in range(n):
                    cb = self._codebook(k)
                    idx = self._nearest(residual, cb)
                    residual = residual - cb[idx]
                    codes.append(idx.reshape(B, T))
            else:
                residual = self._fsq_in(x)
                for k in range(n):
                    layer, scale = self.impl.layers[k], self.impl.scales[k]
                    idx = layer.codes_to_indices(layer.quantize(residual / scale)).long()
                    residual = residual - layer._indices_to_codes(idx) * scale
                    codes.append(idx)
            return torch.stack(codes, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, n, T] int (n <= K; ``-1`` = level not used) -> quantized latent [B, D, T]."""
        if codes.ndim != 3 or not 1 <= codes.shape[1] <= self.levels:
            raise ValueError(f"codes must be [B, n, T] with 1 <= n <= {self.levels}, got {tuple(codes.shape)}")
        codes = codes.long()
        with _NoAutocast(codes.device.type):
            out = None
            for k in range(codes.shape[1]):
                idx = codes[:, k]
                used = (idx >= 0)[..., None].float()
                idx = idx.clamp_min(0)
                if self.cfg.kind == "rvq":
                    q = self._codebook(k)[idx]
                else:
                    q = self.impl.layers[k]._indices_to_codes(idx).float() * self.impl.scales[k]
                q = q * used
                out = q if out is None else out + q
            if self.cfg.kind == "rfsq":
                out = self.impl.project_out(out)
            return rearrange(out, "b t d -> b d t").contiguous()
