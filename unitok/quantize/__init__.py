"""Quantizers: one kind per file, one contract for all (see :mod:`.base`).

- :mod:`.fsq` ``"fsq"``: finite scalar quantization (:class:`FSQConfig`);
- :mod:`.vq` ``"vq"``: a learned cosine-similarity codebook (:class:`VQConfig`);
- :mod:`.lfq` ``"lfq"``: lookup-free quantization, ``spherical=True`` is BSQ (:class:`LFQConfig`);
- :mod:`.multiscale` ``"multiscale"``: one of those over a schedule of scales (VAR / Infinity;
  :class:`MultiScaleConfig`, :func:`scale_schedule`);
- :mod:`.bitwise` ``"bitwise"``: sign bits over a schedule of scales with nested vocabularies (the
  first k bits of a code are a k-bit code; Infinity / BSQ; :class:`BitwiseConfig`);
- :mod:`.residual` ``"rvq"`` / ``"rfsq"``: residual quantization of ``[B, D, T]`` latents, for
  audio (:class:`RVQConfig`, :class:`RFSQConfig`).

    >>> from unitok.quantize import FSQConfig, MultiScaleConfig, build_quantizer
    >>> q = build_quantizer(MultiScaleConfig(FSQConfig(levels=(8, 8, 8, 8)), scales=(4, 2, 1)))
    >>> codes = q.encode(z)                  # z: [B, 4, h, w] -> list of [B, h_s, w_s] int64
    >>> latent = q.decode(codes)             # [B, 4, h, w]

A new kind is a new file here: a config dataclass (subclass of :class:`BaseQuantizerConfig`
with a ``kind`` field) and a module registered with :func:`register_kind`.
"""

from .base import (BaseQuantizerConfig, GridQuantizer, Quantizer, QuantizerConfig, build_quantizer, kinds,
                   quantizer_config, register_kind)
from .bitwise import BitwiseConfig, BitwiseQuantizer
from .fsq import FSQConfig, FSQQuantizer
from .lfq import LFQConfig, LFQQuantizer
from .multiscale import MultiScaleConfig, MultiScaleQuantizer, scale_schedule
from .residual import RFSQConfig, RVQConfig, ResidualQuantizer, ResidualQuantizerConfig
from .vq import VQConfig, VQQuantizer

__all__ = [
    "BaseQuantizerConfig", "Quantizer", "GridQuantizer", "build_quantizer", "quantizer_config", "register_kind",
    "kinds", "FSQConfig", "FSQQuantizer", "VQConfig", "VQQuantizer", "LFQConfig", "LFQQuantizer",
    "MultiScaleConfig", "MultiScaleQuantizer", "scale_schedule", "RVQConfig", "RFSQConfig", "ResidualQuantizer",
    "ResidualQuantizerConfig", "QuantizerConfig", "BitwiseConfig", "BitwiseQuantizer",
]
