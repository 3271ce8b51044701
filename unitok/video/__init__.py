"""Video tokenizer: ``VideoTokenizer`` (checkpoint type ``"video.causal"``) and its config.

    >>> from unitok.video import VideoTokenizer, load_default
    >>> model = load_default()                       # the bundled tokenizer (if trained)
    >>> codes = model.encode(frames)                 # frames: [B, T, 3, H, W] in [0, 1] or uint8
    >>> recon = model.decode(codes, frames=T, size=(H, W))
    >>> from unitok.image import load_default as load_image
    >>> inflated = VideoTokenizer.from_image(load_image(), temporal=4)   # a 1-frame video == the image

``VideoTokenizerConfig.spatial`` is the image tokenizer's ``SpatialConfig`` (2-D layers and
quantizer, see :mod:`unitok.image.spatial`); the other fields are the temporal part.
"""

from __future__ import annotations

from ..checkpoint import ASSETS, load_bundled
from ..image.spatial import SpatialConfig
from .model import Decoder, Encoder, VideoTokenizer, VideoTokenizerConfig

DEFAULT_DIR = ASSETS / "video"


def load_default(device: str = "cpu") -> VideoTokenizer:
    """The bundled default video tokenizer (``unitok/assets/video``)."""
    return load_bundled(VideoTokenizer, "video", device)


__all__ = ["VideoTokenizer", "VideoTokenizerConfig", "SpatialConfig", "Encoder", "Decoder", "load_default"]
