"""Residual quantization of a ``[B, D, T]`` latent with ``levels`` stages (SoundStream / EnCodec /
DAC), each stage quantizing what the previous ones left over; the audio tokenizer's quantizer.

Kinds: ``"rvq"`` (:class:`RVQConfig`): a learned codebook of ``codebook_size`` vectors per level
(k-means init, EMA updates, dead-code expiry; ``ResidualVQ`` of vector-quantize-pytorch).
``"rfsq"`` (:class:`RFSQConfig`): residual FSQ, an implicit ``prod(fsq_levels)``-code grid per
level, finer by a fixed factor each level (``ResidualFSQ``); nothing to learn, no codebook collapse.

Quantizer dropout: in training, each sample keeps only its first ``n`` levels with probability
``dropout`` (``n`` uniform in ``min_levels..levels``), so the decoder learns to work from any
prefix of the levels: one model, several bitrates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange

from ..checkpoint import training_only
from ..errors import ConfigError
from .base import FLAT_RESIDUAL_KEYS, BaseQuantizerConfig, Quantizer, fp32, kind_field, quantizer_config, register_kind


@dataclass
class _ResidualConfig(BaseQuantizerConfig):
    levels: int = 8                             # residual levels K (the most a sequence can carry)
    dim: int = 128                              # latent channels D
    # quantizer dropout: in training only (see the module docstring)
    dropout: float = training_only(0.5)
    min_levels: int = training_only(1)

    def __post_init__(self):
        if self.levels < 1 or self.dim < 1:
            raise ConfigError(f"quantizer.levels and quantizer.dim must be >= 1, got {self.levels} and {self.dim}")
        if not 0.0 <= self.dropout <= 1.0:
            raise ConfigError(f"quantizer.dropout is a probability in [0, 1], got {self.dropout}")
        if not 1 <= self.min_levels <= self.levels:
            raise ConfigError(f"quantizer.min_levels must be in 1..levels={self.levels}, got {self.min_levels}")


@dataclass
class RVQConfig(_ResidualConfig):
    codebook_size: int = 1024
    # training only: a trained codebook is in the weights, whatever these say
    ema_decay: float = training_only(0.99)
    kmeans_init: bool = training_only(True)
    dead_code_threshold: float = training_only(2.0)
    commitment_weight: float = training_only(1.0)
    kind: str = kind_field("rvq")

    def __post_init__(self):
        super().__post_init__()
        if self.codebook_size < 2:
            raise ConfigError(f"quantizer.codebook_size must be >= 2, got {self.codebook_size}")

    @property
    def size(self) -> int:
        return self.codebook_size


@dataclass
class RFSQConfig(_ResidualConfig):
    fsq_levels: tuple[int, ...] = (4, 4, 4, 4, 4)
    kind: str = kind_field("rfsq")

    def __post_init__(self):
        super().__post_init__()
        if not self.fsq_levels or min(self.fsq_levels) < 2:
            raise ConfigError(f"quantizer.fsq_levels must be integers >= 2, got {list(self.fsq_levels)}")

    @property
    def size(self) -> int:
        return math.prod(self.fsq_levels)


RESIDUAL_KINDS = ("rvq", "rfsq")


def ResidualQuantizerConfig(**flat) -> RVQConfig | RFSQConfig:   # noqa: N802 (the name of the old class)
    """The config of the flat keyword form older unitok took for both residual kinds, e.g.
    ``ResidualQuantizerConfig(kind="rvq", levels=8, codebook_size=1024)`` -> ``RVQConfig(...)``.
    Kept so that code written then still runs; new code builds :class:`RVQConfig` or
    :class:`RFSQConfig` directly."""
    unknown = set(flat) - FLAT_RESIDUAL_KEYS
    if unknown:
        raise ConfigError(f"unknown ResidualQuantizerConfig option(s) {sorted(unknown)}; valid options: "
                          f"{sorted(FLAT_RESIDUAL_KEYS)}")
    kind = flat.get("kind", "rvq")
    if kind not in RESIDUAL_KINDS:
        raise ConfigError(f"quantizer kind {kind!r} is unknown for residual quantization; use one of {RESIDUAL_KINDS}")
    data = {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()}
    return quantizer_config({"kind": kind, **data}, source="ResidualQuantizerConfig")


@register_kind("rfsq", RFSQConfig)
@register_kind("rvq", RVQConfig)
class ResidualQuantizer(Quantizer):
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

    def __init__(self, cfg: RVQConfig | RFSQConfig):
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
        with fp32(z.device.type):
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
        with fp32(z.device.type):
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
        with fp32(codes.device.type):
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
