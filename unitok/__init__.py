"""unitok: text, image, video and audio tokenizers mapped into one shared token space, laid out in
groups for next-group-of-tokens prediction.

    >>> import unitok
    >>> tok = unitok.load()
    >>> seq = tok.encode(["A caption", unitok.Image.open("cat.jpg")])
    >>> parts = tok.decode(seq)

The public names below are imported on first use (PEP 562), so that ``import unitok`` and the
``unitok`` command's help and argument errors answer without loading torch and the codecs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import ConfigError, LimitError, MediaError, TokenSequenceError, UnitokError

__version__ = "0.4.0"

_LAZY = {
    "load": "tokenizer", "UniTokenizer": "tokenizer",
    "TokenSpace": "space",
    "TokenSequence": "sequence", "Span": "sequence", "Decoded": "sequence", "Repair": "sequence",
    "Image": "media", "Video": "media", "Audio": "media",
    "Client": "serve",
    "from_hf": "adapters",
}

__all__ = [
    "load", "UniTokenizer", "TokenSpace", "TokenSequence", "Span", "Decoded", "Repair",
    "Image", "Video", "Audio", "Client", "from_hf",
    "UnitokError", "MediaError", "LimitError", "TokenSequenceError", "ConfigError",
]

if TYPE_CHECKING:   # what type checkers and IDEs see
    from .adapters import from_hf
    from .media import Audio, Image, Video
    from .sequence import Decoded, Repair, Span, TokenSequence
    from .serve import Client
    from .space import TokenSpace
    from .tokenizer import UniTokenizer, load


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    try:   # a subpackage used as an attribute: unitok.text, unitok.image, unitok.pipeline, ...
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
