"""Image tokenizer: ``ImageTokenizer`` (checkpoint type ``"image.vqgan"``) and its config.

    >>> from unitok.image import ImageTokenizer, load_default
    >>> model = load_default()                       # the bundled multi-scale tokenizer
    >>> codes = model.encode(pixels)                 # pixels: [B, 3, H, W] float in [0, 1]
    >>> recon = model.decode(codes, size=pixels.shape[-2:])

The spatial core it shares with the video tokenizer (``SpatialConfig``, the 2-D layer stacks, the
latent grid and the code maps) is :mod:`unitok.image.spatial`.
"""

from __future__ import annotations

from ..checkpoint import ASSETS, load_bundled
from .model import Decoder, Encoder, ImageTokenizer, ImageTokenizerConfig
from .spatial import SpatialCodec, SpatialConfig

DEFAULT_DIR = ASSETS / "image"


def load_default(device: str = "cpu") -> ImageTokenizer:
    """The bundled default image tokenizer (``unitok/assets/image``)."""
    return load_bundled(ImageTokenizer, "image", device)


__all__ = ["ImageTokenizer", "ImageTokenizerConfig", "SpatialConfig", "SpatialCodec", "Encoder", "Decoder",
           "load_default"]
