"""Image tokenizer: ``ImageTokenizer`` (checkpoint type ``"image.vqgan"``) and its config.

    >>> from unitok.image import ImageTokenizer, load_default
    >>> model = load_default()                       # the bundled multi-scale tokenizer
    >>> codes = model.encode(pixels)                 # pixels: [B, 3, H, W] float in [0, 1]
    >>> recon = model.decode(codes, size=pixels.shape[-2:])

The spatial core it shares with the video tokenizer (``SpatialConfig``, the 2-D layer stacks, the
latent grid and the code maps) is :mod:`unitok.image.spatial`.
"""

from __future__ import annotations

from pathlib import Path

from .model import Decoder, Encoder, ImageTokenizer, ImageTokenizerConfig
from .spatial import SpatialCodec, SpatialConfig, load_bundled

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "assets" / "image"


def load_default(device: str = "cpu") -> ImageTokenizer:
    """The bundled default image tokenizer (``unitok/assets/image``)."""
    return load_bundled(ImageTokenizer, DEFAULT_DIR, "image", device)


__all__ = ["ImageTokenizer", "ImageTokenizerConfig", "SpatialConfig", "SpatialCodec", "Encoder", "Decoder",
           "load_default"]
