"""VQ: a learned codebook of ``codebook_size`` low-dimensional (``D = codebook_dim``),
l2-normalised code vectors, matched by cosine similarity, with k-means initialisation, EMA updates
and dead-code expiry (ViT-VQGAN / Improved VQGAN); ``aux_loss`` is the commitment loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..checkpoint import training_only
from ..errors import ConfigError
from .base import BaseQuantizerConfig, GridQuantizer, kind_field, register_kind


@dataclass
class VQConfig(BaseQuantizerConfig):
    codebook_size: int = 1024
    codebook_dim: int = 8                       # low-dimensional codes make lookups meaningful
    # training only: a trained codebook is in the weights (k-means init is done once, and saved
    # as done), whatever these say
    commitment_weight: float = training_only(0.25)
    ema_decay: float = training_only(0.8)
    kmeans_init: bool = training_only(True)
    dead_code_threshold: float = training_only(2.0)   # codes used less than this (EMA count) are re-seeded
    kind: str = kind_field("vq")

    def __post_init__(self):
        if self.codebook_size < 2 or self.codebook_dim < 1:
            raise ConfigError("quantizer.codebook_size must be >= 2 and quantizer.codebook_dim >= 1")

    @property
    def dim(self) -> int:
        return self.codebook_dim

    @property
    def size(self) -> int:
        return self.codebook_size


@register_kind("vq", VQConfig)
class VQQuantizer(GridQuantizer):
    """Cosine-similarity VQ over ``[B, D, H, W]`` latents; the contract of
    :class:`~unitok.quantize.base.GridQuantizer`."""

    def __init__(self, cfg: VQConfig):
        super().__init__(cfg)
        from vector_quantize_pytorch import VectorQuantize

        self.impl = VectorQuantize(
            dim=cfg.dim, codebook_size=cfg.codebook_size, use_cosine_sim=True,
            kmeans_init=cfg.kmeans_init, kmeans_iters=10, decay=cfg.ema_decay,
            threshold_ema_dead_code=cfg.dead_code_threshold, commitment_weight=cfg.commitment_weight,
            accept_image_fmap=True)

    def _quantize(self, z: torch.Tensor):
        return self.impl(z)

    def codebook(self) -> torch.Tensor:
        """[K, D] l2-normalised code vectors."""
        return F.normalize(self.impl.codebook.float().reshape(-1, self.dim), dim=-1)

    def _vectors(self, codes: torch.Tensor) -> torch.Tensor:
        return self.codebook()[codes]

    def _ids(self, vectors: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bhwd,kd->bhwk", F.normalize(vectors, dim=-1), self.codebook()).argmax(-1)
