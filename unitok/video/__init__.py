"""Video tokenizer: ``VideoTokenizer`` (checkpoint type ``"video.causal"``) and its config.

    >>> from unitok.video import VideoTokenizer, load_default
    >>> model = load_default()                       # the bundled tokenizer (if trained)
    >>> codes = model.encode(frames)                 # frames: [B, T, 3, H, W] in [0, 1] or uint8
    >>> recon = model.decode(codes, frames=T, size=(H, W))
    >>> from unitok.image import load_default as load_image
    >>> inflated = VideoTokenizer.from_image(load_image(), temporal=4)   # a 1-frame video == the image
"""

from __future__ import annotations

from pathlib import Path

from ..quantize import QuantizerConfig
from .model import Decoder, Encoder, VideoTokenizer, VideoTokenizerConfig

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "assets" / "video"


def load_default(device: str = "cpu") -> VideoTokenizer:
    """The bundled default video tokenizer (``unitok/assets/video``)."""
    from ..errors import ConfigError

    if not (DEFAULT_DIR / "config.json").exists():
        raise ConfigError(f"{DEFAULT_DIR}: the bundled video tokenizer is missing; reinstall unitok or train "
                          f"one with `unitok train video --config recipes/configs/video_default.yaml`")
    return VideoTokenizer.from_pretrained(DEFAULT_DIR, device=device)


__all__ = ["VideoTokenizer", "VideoTokenizerConfig", "QuantizerConfig", "Encoder", "Decoder", "load_default"]
