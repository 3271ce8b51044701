"""unitok: text, image, video and audio tokenizers mapped into one shared token space, laid out in
groups for next-group-of-tokens prediction.

    >>> import unitok
    >>> tok = unitok.load()
    >>> seq = tok.encode(["A caption", unitok.Image.open("cat.jpg")])
    >>> parts = tok.decode(seq)
"""

from .errors import ConfigError, MediaError, TokenSequenceError, UnitokError
from .media import Audio, Image, Video
from .sequence import Decoded, Repair, Span, TokenSequence
from .space import TokenSpace
from .tokenizer import UniTokenizer, load
from . import text  # noqa: E402  (registers the text tokenizer type)

__version__ = "0.2.0"

__all__ = [
    "load", "UniTokenizer", "TokenSpace", "TokenSequence", "Span", "Decoded", "Repair",
    "Image", "Video", "Audio",
    "UnitokError", "MediaError", "TokenSequenceError", "ConfigError",
]
