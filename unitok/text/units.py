"""The byte-level units BPE runs on: a text's UTF-8 bytes (the default) or its UTF-16BE code units'
bytes (ERNIE 5.0's choice), and how every ``str`` maps to them losslessly.

UTF-8. Invalid UTF-8 travels in a ``str`` as the surrogate escapes U+DC80..U+DCFF of
``bytes.decode("utf-8", "surrogateescape")``; the error handler below turns them back into their
bytes. Other lone surrogates have no UTF-8 form; they are kept as their 3-byte ``surrogatepass``
encoding (nothing is lost or refused, but they decode as three escaped bytes).

UTF-16BE. Every character is one code unit (two bytes) or a surrogate pair (four): a CJK or kana
character is 2 base bytes instead of UTF-8's 3, Cyrillic, Greek, Arabic and Hebrew 2 as in UTF-8,
ASCII 2 instead of 1 (BPE merges the ``00`` high byte away early). The pre-tokenizer regex still
runs on the text; each piece it cuts becomes the bytes of its code units. tiktoken's core hands
only UTF-8 to its own regex, so in this mode the split runs in Python's ``regex`` engine, the same
one at training and at encoding time, and only the core's BPE is used. Every ``str`` round-trips:

- a lone surrogate code point is its own code unit (``surrogatepass``); so the surrogate-escaped
  invalid UTF-8 byte ``b`` is the unit ``0xDC00 + b``, bytes ``DC b``, and comes back as the same
  escape (``decode(...).encode("utf-8", "surrogateescape")`` gives the original bytes);
- a high surrogate code point followed by a low one would read back as the astral character
  they encode, so it is written ``FFFF`` + its unit; U+FFFF itself (a noncharacter, absent from
  real text) is written ``FFFF FFFF``. Decoding undoes both;
- an odd trailing byte, which encode never produces (only arbitrary ids can), decodes to U+FFFD.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from typing import Any

from unitok.errors import ConfigError

from .patterns import split_isolated

__all__ = ["BYTE_ENCODINGS", "UTF16BE", "UTF8", "Utf16Units", "byte_encoding", "decode_units", "escape"]

UTF8 = "utf-8"
UTF16BE = "utf-16-be"
BYTE_ENCODINGS = (UTF8, UTF16BE)
_ALIASES = {"utf8": UTF8, "utf-8": UTF8, "utf16be": UTF16BE, "utf-16-be": UTF16BE, "utf-16be": UTF16BE}

# Runs of escaped bytes that ``bytes.decode("utf-8", "surrogateescape")`` produces.
ESCAPED_BYTES = re.compile("[\udc80-\udcff]+")
SURROGATES = re.compile("[\ud800-\udfff]")


def byte_encoding(name: Any, where: str) -> str:
    """The canonical name of a byte encoding ("utf-8" or "utf-16-be"); ConfigError otherwise."""
    canonical = _ALIASES.get(str(name).lower().replace("_", "-")) if isinstance(name, str) else None
    if canonical is None:
        raise ConfigError(f"{where}: byte_encoding {name!r} is not supported; use one of {', '.join(BYTE_ENCODINGS)}")
    return canonical


# ------------------------------------------------------------------------------------------------
# UTF-8


def _surrogates_to_bytes(exc: UnicodeError) -> tuple[bytes, int]:
    """Codec error handler: surrogateescape where it applies, surrogatepass elsewhere."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = bytearray()
    for ch in exc.object[exc.start : exc.end]:
        cp = ord(ch)
        if 0xDC80 <= cp <= 0xDCFF:
            out.append(cp - 0xDC00)
        else:
            out += ch.encode("utf-8", "surrogatepass")
    return bytes(out), exc.end


SURROGATE_ERRORS = "unitok.surrogates"
codecs.register_error(SURROGATE_ERRORS, _surrogates_to_bytes)


def utf8_pieces(text: str, regexes: Sequence[Any]) -> list[bytes]:
    """The UTF-8 pieces BPE sees, as the core's lossless path cuts them: runs of escaped bytes
    are one raw piece each, the text between them is split by ``regexes``."""
    if not SURROGATES.search(text):
        return [p.encode("utf-8") for p in split_isolated(text, regexes)]
    text = text.encode("utf-8", SURROGATE_ERRORS).decode("utf-8", "surrogateescape")
    out: list[bytes] = []
    pos = 0
    for m in ESCAPED_BYTES.finditer(text):
        out += [p.encode("utf-8") for p in split_isolated(text[pos : m.start()], regexes)]
        out.append(m.group().encode("utf-8", "surrogateescape"))
        pos = m.end()
    out += [p.encode("utf-8") for p in split_isolated(text[pos:], regexes)]
    return out


# ------------------------------------------------------------------------------------------------
# UTF-16BE

_NEEDS_ESCAPE = re.compile("[\ud800-\udbff\uffff]")
_TO_ESCAPE = re.compile("\uffff|[\ud800-\udbff](?=[\udc00-\udfff])")
_ESCAPED = re.compile("\uffff([\uffff\U00010000-\U0010ffff])")


def escape(text: str) -> str:
    """``text`` with U+FFFF doubled and a U+FFFF before each high surrogate that a low one
    follows, so that its UTF-16BE units read back as the same code points."""
    if not _NEEDS_ESCAPE.search(text):
        return text
    return _TO_ESCAPE.sub(lambda m: "\uffff" + m.group(), text)


def _unescape_one(m: re.Match) -> str:
    ch = m.group(1)
    if ch == "\uffff":
        return ch
    cp = ord(ch) - 0x10000  # an escaped high surrogate, paired by the decoder: split it again
    return chr(0xD800 + (cp >> 10)) + chr(0xDC00 + (cp & 0x3FF))


def decode_units(raw: bytes) -> str:
    """UTF-16BE units (as ``escape`` and ``surrogatepass`` wrote them) -> the original ``str``."""
    tail = ""
    if len(raw) % 2:
        raw, tail = raw[:-1], "\ufffd"
    text = raw.decode("utf-16-be", "surrogatepass")
    if "\uffff" in text:
        text = _ESCAPED.sub(_unescape_one, text)
    return text + tail


class Utf16Units:
    """Encoding in UTF-16BE mode: text -> pieces (Python regex) -> unit bytes -> the core's BPE.

    Args:
        core: tiktoken's ``CoreBPE`` holding the vocabulary (its ``encode_single_piece`` is used).
        regexes: compiled pre-splits then the pattern, applied one after another (unmatched text
            stays a piece of its own, so nothing is dropped).
    """

    MAX_CACHE = 1 << 16   # pieces remembered; a word seen again costs one dict lookup

    def __init__(self, core: Any, regexes: Sequence[Any]):
        self._core = core
        self._regexes = list(regexes)
        self._cache: dict[str, list[int]] = {}

    def pieces(self, text: str) -> list[str]:
        """The pieces of one stretch of text (no special tokens), escaped."""
        return split_isolated(escape(text), self._regexes)

    def piece_bytes(self, text: str) -> list[bytes]:
        return [p.encode("utf-16-be", "surrogatepass") for p in self.pieces(text)]

    def encode(self, text: str) -> list[int]:
        """Internal ids (ranks) of one stretch of text."""
        out: list[int] = []
        cache = self._cache
        core = self._core
        for piece in self.pieces(text):
            ids = cache.get(piece)
            if ids is None:
                ids = core.encode_single_piece(piece.encode("utf-16-be", "surrogatepass"))
                if len(cache) >= self.MAX_CACHE:
                    cache.clear()
                cache[piece] = ids
            out += ids
        return out


def training_text(text: str, units: Utf16Units, table: str) -> str:
    """One training sample for HF's trainer in UTF-16BE mode: the unit bytes of each piece as
    GPT-2's printable characters (``table``: a ``str.translate`` table over Latin-1), pieces
    separated by U+3000, which no such character is."""
    return "\u3000".join(b.decode("latin-1") for b in units.piece_bytes(text)).translate(table)
