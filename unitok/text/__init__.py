"""Text tokenizer: lossless byte-level BPE on tiktoken's core.

    >>> from unitok.text import load_default
    >>> tok = load_default()
    >>> tok.decode(tok.encode("héllo wörld")) == "héllo wörld"
    True
"""

from __future__ import annotations

import functools
from pathlib import Path

from ..checkpoint import register
from .bpe import TextTokenizer
from .patterns import DEFAULT_PATTERN, GPT2_PATTERN
from .train import train_bpe

register("text.bpe")(TextTokenizer)   # so suites and unitok.checkpoint.load_pretrained find it

__all__ = ["DEFAULT_PATTERN", "GPT2_PATTERN", "TextTokenizer", "load_default", "train_bpe"]


def default_vocab_dir() -> Path:
    """Folder of the bundled default vocabulary (``unitok/assets/text``).

    Found next to this file rather than through importlib.resources, which cannot resolve a
    package that an editable install exposes as a namespace.
    """
    return Path(__file__).resolve().parent.parent / "assets" / "text"


@functools.lru_cache(maxsize=1)
def load_default() -> TextTokenizer:
    """The bundled multilingual vocabulary (trained by ``recipes/train_text.py``)."""
    return TextTokenizer.from_pretrained(default_vocab_dir())
