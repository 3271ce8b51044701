"""Image tokenizer: ``ImageTokenizer`` (checkpoint type ``"image.vqgan"``) and its config.

    >>> from unitok.image import ImageTokenizer, load_default
    >>> model = load_default()                       # the bundled multi-scale tokenizer
    >>> codes = model.encode(pixels)                 # pixels: [B, 3, H, W] float in [0, 1]
    >>> recon = model.decode(codes, size=pixels.shape[-2:])
"""

from __future__ import annotations

from pathlib import Path

from ..quantize import QuantizerConfig
from .model import Decoder, Encoder, ImageTokenizer, ImageTokenizerConfig

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "assets" / "image"


def load_default(device: str = "cpu") -> ImageTokenizer:
    """The bundled default image tokenizer (``unitok/assets/image``)."""
    from ..errors import ConfigError

    if not (DEFAULT_DIR / "config.json").exists():
        raise ConfigError(f"{DEFAULT_DIR}: the bundled image tokenizer is missing; reinstall unitok or train "
                          f"one with `unitok train image --config recipes/configs/image_default.yaml`")
    return ImageTokenizer.from_pretrained(DEFAULT_DIR, device=device)


__all__ = ["ImageTokenizer", "ImageTokenizerConfig", "QuantizerConfig", "Encoder", "Decoder", "load_default"]
