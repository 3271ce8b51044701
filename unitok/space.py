"""The shared token space: every id arithmetic in unitok lives here.

Ids are laid out as::

    [text vocab][unitok special block][image levels][video levels][audio levels]

Text comes first and keeps its own ids, so a pretrained LLM vocabulary can be extended in place.
The special block has a fixed size (``SPECIAL_BLOCK``): named tokens first, then the shape-digit
tokens, then reserved slots, so adding a named token later never shifts an existing id. Every
media level (one per codebook) gets its own contiguous range, so an id alone tells
``(modality, level, code)``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .errors import ConfigError, TokenSequenceError
from .files import read_regular_file
from .layout import FOREIGN, STRUCTURAL

#: The token-space manifest version. 2: a fingerprint covers only what decides ids (each component's
#: weights digest and id-relevant config); 1 hashed whole configs, training-only settings included.
MANIFEST_VERSION = 2
FIRST_RELEASE_OF = {2: "0.2.0"}   # the unitok release that introduced each manifest version

MEDIA_MODALITIES = ("image", "video", "audio")

#: Named special tokens, in slot order. The order is a contract: append, never reorder.
SPECIAL_TOKENS = (
    "<|bos|>", "<|eos|>", "<|pad|>",
    "<|image|>", "<|/image|>",
    "<|video|>", "<|/video|>",
    "<|audio|>", "<|/audio|>",
    "<|sep|>", "<|eol|>", "<|eof|>",
)
NAMED_SLOTS = 64          # named tokens + reserved named slots
DIM_BASE = 1024           # shape tokens <|dim:0|> .. <|dim:1023|>: digits of a base-1024 number
DIM_DIGITS = 2            # every shape field is written with this many digits (max 1024**2 - 1)
SPECIAL_BLOCK = 2048      # NAMED_SLOTS + DIM_BASE + reserved slots
MAX_DIM = DIM_BASE ** DIM_DIGITS - 1
MAX_DIM_DIGITS = 6        # a wide header field (``MediaTokenizer.header_digits``) takes at most this many
MAX_IDS = 2**31 - 1       # ids are stored as int32 in tokenized shards (uint16 for small spaces)

BEGIN = {m: f"<|{m}|>" for m in MEDIA_MODALITIES}
END = {m: f"<|/{m}|>" for m in MEDIA_MODALITIES}


@dataclass(frozen=True)
class Range:
    """One contiguous block of ids: ``[start, stop)``."""

    modality: str   # "text", "special", "image", "video" or "audio"
    level: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def check_space_version(version, *, source: str) -> None:
    """Refuse ids, token files and datasets made under another token-space manifest version,
    saying why and what to do (``version`` None: written before versions were recorded, i.e. 1)."""
    if version == MANIFEST_VERSION:
        return
    if version is None or version == 1:
        raise ConfigError(
            f"{source}: made under token-space manifest version 1 (unitok 0.1), whose fingerprints hashed whole "
            f"tokenizer configs, training-only settings included. This unitok ({FIRST_RELEASE_OF[MANIFEST_VERSION]} "
            f"or later) fingerprints only what decides ids (manifest version {MANIFEST_VERSION}), so it cannot "
            f"check that these ids belong to your tokenizer suite. The bundled tokenizers' ids did not change: "
            f"encode the source again (a new `unitok tokenize` run into an empty folder, or `unitok encode`) to get "
            f"version-{MANIFEST_VERSION} files, or read these with unitok 0.1")
    raise ConfigError(f"{source}: token-space manifest version {version!r} is not one this unitok reads "
                      f"({MANIFEST_VERSION}); it was written by another unitok release, upgrade to read it")


def _widths(digits: int | Sequence[int], count: int) -> list[int]:
    """Shape tokens per header value: one count for all values, or one per value."""
    widths = [digits] * count if _is_int(digits) else list(digits)
    if len(widths) != count or not all(_is_int(w) and 1 <= w <= MAX_DIM_DIGITS for w in widths):
        raise ConfigError(f"header widths must be {count} integers in 1..{MAX_DIM_DIGITS}, got {digits!r:.80}")
    return [int(w) for w in widths]


def prefix_codes(codes, bits: int, k: int):
    """Nested bitwise vocabularies (``unitok.quantize.bitwise``): ``bits``-bit codes -> their first
    ``k`` bits, the most significant ones (``code >> (bits - k)``). ``codes``: an int, an integer
    tensor or array, or a list of them (one per scale); the same structure comes back."""
    if not 1 <= k <= bits:
        raise ConfigError(f"cannot take the first {k} bits of a {bits}-bit code; use 1..{bits}")
    if isinstance(codes, (list, tuple)):
        return type(codes)(prefix_codes(c, bits, k) for c in codes)
    return codes >> (bits - k)


def extend_codes(codes, k: int, bits: int):
    """Inverse of :func:`prefix_codes` on the shared bits: ``k``-bit codes -> the first
    ``bits``-bit code of each (the other bits 0), so ``prefix_codes(extend_codes(c, k, bits), bits,
    k) == c`` for every ``k``-bit code; the ``bits``-bit codes under a ``k``-bit code ``c`` are
    ``extend_codes(c) .. extend_codes(c + 1) - 1``."""
    if not 1 <= k <= bits:
        raise ConfigError(f"cannot extend {k}-bit codes to {bits} bits; use 1..{bits}")
    if isinstance(codes, (list, tuple)):
        return type(codes)(extend_codes(c, k, bits) for c in codes)
    return codes << (bits - k)


def _special_name(slot: int) -> str:
    if slot < len(SPECIAL_TOKENS):
        return SPECIAL_TOKENS[slot]
    if slot < NAMED_SLOTS:
        return f"<|reserved_{slot}|>"
    if slot < NAMED_SLOTS + DIM_BASE:
        return f"<|dim:{slot - NAMED_SLOTS}|>"
    return f"<|reserved_{slot}|>"


class TokenSpace:
    """The unified vocabulary of a tokenizer suite.

    Args:
        text_vocab_size: number of ids the text tokenizer uses (its own specials included).
        codebook_sizes: per media modality, one codebook size per level.
        components: per component, the fingerprint string of its configuration and weights; any
            change to a component changes the space's fingerprint.
    """

    def __init__(
        self,
        text_vocab_size: int,
        codebook_sizes: Mapping[str, Sequence[int]] | None = None,
        components: Mapping[str, str] | None = None,
    ):
        if not isinstance(codebook_sizes or {}, Mapping):
            raise ConfigError(f"codebook_sizes must map modalities to lists of sizes, got {codebook_sizes!r:.80}")
        codebook_sizes = dict(codebook_sizes or {})
        unknown = set(codebook_sizes) - set(MEDIA_MODALITIES)
        if unknown:
            raise ConfigError(f"unknown modalities {sorted(map(str, unknown))}; expected some of {MEDIA_MODALITIES}")
        if not _is_int(text_vocab_size) or text_vocab_size < 1:
            raise ConfigError(f"text_vocab_size must be a positive int, got {text_vocab_size!r:.80}")
        self.text_vocab_size = int(text_vocab_size)
        self.codebook_sizes = {}
        for m in MEDIA_MODALITIES:
            if m not in codebook_sizes:
                continue
            sizes = codebook_sizes[m]
            if not isinstance(sizes, (list, tuple, np.ndarray)) or not all(map(_is_int, sizes)):
                raise ConfigError(f"{m}: codebook sizes must be a list of integers, got {sizes!r:.80}")
            if not sizes or any(s < 2 for s in sizes):
                raise ConfigError(f"{m}: every level needs a codebook of at least 2 codes, got {list(sizes)!r:.80}")
            self.codebook_sizes[m] = [int(s) for s in sizes]
        total = self.text_vocab_size + SPECIAL_BLOCK + sum(sum(v) for v in self.codebook_sizes.values())
        if total > MAX_IDS:
            raise ConfigError(f"the token space would have {total} ids; at most {MAX_IDS} are supported (ids are "
                              f"stored as int32)")
        if not isinstance(components or {}, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in (components or {}).items()):
            raise ConfigError(f"components must map names to fingerprint strings, got {components!r:.80}")
        self.components = dict(sorted((components or {}).items()))

        ranges = [Range("text", 0, 0, text_vocab_size),
                  Range("special", 0, text_vocab_size, text_vocab_size + SPECIAL_BLOCK)]
        start = text_vocab_size + SPECIAL_BLOCK
        for m in MEDIA_MODALITIES:
            for level, size in enumerate(self.codebook_sizes.get(m, [])):
                ranges.append(Range(m, level, start, start + size))
                start += size
        self.ranges: tuple[Range, ...] = tuple(ranges)
        self._size = start
        self._starts = np.array([r.start for r in ranges], dtype=np.int64)
        self._level_start = {(r.modality, r.level): r.start for r in ranges}
        self._media_start = {m: np.array([r.start for r in ranges if r.modality == m], dtype=np.int64)
                             for m in self.codebook_sizes}
        self._media_size = {m: np.array(self.codebook_sizes[m], dtype=np.int64) for m in self.codebook_sizes}
        self._special_ids = {_special_name(i): text_vocab_size + i for i in range(NAMED_SLOTS)}

    # -- basic queries -------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._size

    def __eq__(self, other) -> bool:
        return isinstance(other, TokenSpace) and self.fingerprint == other.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return f"TokenSpace(size={len(self)}, fingerprint={self.fingerprint[:12]})"

    @property
    def special_start(self) -> int:
        return self.text_vocab_size

    def special(self, name: str) -> int:
        """Id of a named special token, e.g. ``space.special("<|image|>")``."""
        try:
            return self._special_ids[name]
        except KeyError:
            raise ConfigError(f"unknown special token {name!r}; known: {', '.join(SPECIAL_TOKENS)}") from None

    @property
    def special_tokens(self) -> dict[str, int]:
        """The named special tokens (not the shape digits or reserved slots)."""
        return {name: self._special_ids[name] for name in SPECIAL_TOKENS}

    def token_name(self, token_id: int) -> str | None:
        """The name of a special-block id (``<|image|>``, ``<|dim:37|>``, ``<|reserved_70|>``), else None."""
        slot = int(token_id) - self.text_vocab_size
        return _special_name(slot) if 0 <= slot < SPECIAL_BLOCK else None

    def describe(self, token_id: int) -> tuple[str, int, int]:
        """``(modality, level, code)`` of one id. Text ids are ``("text", 0, id)``; special-block
        ids are ``("special", 0, slot)``."""
        token_id = int(token_id)
        if not 0 <= token_id < self._size:
            raise TokenSequenceError(f"id {token_id} is outside the token space [0, {self._size})")
        r = self.ranges[int(np.searchsorted(self._starts, token_id, side="right")) - 1]
        return r.modality, r.level, token_id - r.start

    def range_of(self, token_id: int) -> Range:
        modality, level, _ = self.describe(token_id)
        return next(r for r in self.ranges if r.modality == modality and r.level == level)

    def bits(self, token_id: int) -> float:
        """log2 of the size of the level this id belongs to (its information content at most)."""
        return math.log2(self.range_of(token_id).size)

    def bits_of(self, ids: np.ndarray) -> float:
        """Total ``bits`` of an id array, vectorised."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self._size):
            raise TokenSequenceError("ids outside the token space")
        which = np.searchsorted(self._starts, ids, side="right") - 1
        sizes = np.array([r.size for r in self.ranges], dtype=np.float64)
        return float(np.log2(sizes[which]).sum())

    # -- shape tokens ----------------------------------------------------------------------------

    def dim_ids(self, values: Iterable[int], digits: int | Sequence[int] = DIM_DIGITS) -> list[int]:
        """Shape tokens for header values: ``digits`` base-``DIM_BASE`` digits each (one count for
        every value, or one per value: a wide field such as an audio length in samples takes 4),
        most significant first."""
        values = [int(v) for v in values]
        widths = _widths(digits, len(values))
        out = []
        base = self.text_vocab_size + NAMED_SLOTS
        for v, width in zip(values, widths):
            if not 0 <= v < DIM_BASE ** width:
                raise ConfigError(f"shape value {v} does not fit in {width} shape tokens "
                                  f"(max {DIM_BASE ** width - 1})")
            digits_of_v = []
            for _ in range(width):
                v, d = divmod(v, DIM_BASE)
                digits_of_v.append(base + d)
            out.extend(reversed(digits_of_v))
        return out

    def dim_digit(self, token_id: int) -> int | None:
        """The digit a shape token carries, or None if the id is not a shape token."""
        d = int(token_id) - self.text_vocab_size - NAMED_SLOTS
        return d if 0 <= d < DIM_BASE else None

    def dims_from_ids(self, ids: np.ndarray, count: int, digits: int | Sequence[int] = DIM_DIGITS) -> list[int]:
        """Inverse of :meth:`dim_ids` for ``count`` values. Raises ``TokenSequenceError`` whose
        position is relative to ``ids`` when a token is missing or is not a shape token."""
        widths = _widths(digits, count)
        need = sum(widths)
        ends = np.cumsum(widths)
        values = []
        for i in range(need):
            if i >= len(ids):
                raise TokenSequenceError(f"expected {need} shape tokens, the sequence ends after {i}", i)
            d = self.dim_digit(ids[i])
            if d is None:
                raise TokenSequenceError(f"expected a shape token <|dim:N|>, got id {int(ids[i])}", i)
            if i == 0 or i in ends:
                values.append(0)
            values[-1] = values[-1] * DIM_BASE + d
        return values

    # -- media codes -----------------------------------------------------------------------------

    def media_ids(self, modality: str, levels: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Global ids of ``(level, code)`` pairs of one modality. ``levels`` may hold the structural
        markers of ``unitok.layout`` (``PAD``, ``EOL``, ``EOF``), which map to their special ids.

        Args:
            levels: [N] int, level index per token (or a negative structural marker).
            codes: [N] int, code within that level's codebook.
        Returns:
            [N] int64 ids.
        """
        starts, sizes = self._media_levels(modality)
        levels = np.asarray(levels, dtype=np.int64)
        codes = np.asarray(codes, dtype=np.int64)
        is_code = levels >= 0
        if np.any(levels[is_code] >= len(sizes)):
            raise ConfigError(f"{modality}: level out of range (this space has {len(sizes)} levels)")
        lv = np.where(is_code, levels, 0)
        bad = is_code & ((codes < 0) | (codes >= sizes[lv]))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ConfigError(f"{modality}: code {int(codes[i])} out of range for level {int(levels[i])} "
                              f"(size {int(sizes[levels[i]])}) at token {i}")
        ids = starts[lv] + codes
        for marker, name in STRUCTURAL.items():
            ids = np.where(levels == marker, self.special(name), ids)
        return ids

    def media_codes(self, modality: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`media_ids`: ``(levels, codes)``. Ids that are neither a code of this
        modality nor a structural marker get level ``FOREIGN``."""
        starts, sizes = self._media_levels(modality)
        ids = np.asarray(ids, dtype=np.int64)
        levels = np.full(ids.shape, FOREIGN, dtype=np.int64)
        codes = np.zeros(ids.shape, dtype=np.int64)
        for level, (s, n) in enumerate(zip(starts, sizes)):
            inside = (ids >= s) & (ids < s + n)
            levels[inside] = level
            codes[inside] = ids[inside] - s
        for marker, name in STRUCTURAL.items():
            levels[ids == self.special(name)] = marker
        return levels, codes

    def _media_levels(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        if modality not in self._media_start:
            raise ConfigError(f"this token space has no {modality} codes; load a suite with a {modality} tokenizer")
        return self._media_start[modality], self._media_size[modality]

    def modality_of(self, ids: np.ndarray) -> np.ndarray:
        """Vectorised: index into ``self.ranges`` for each id (-1 outside the space)."""
        ids = np.asarray(ids, dtype=np.int64)
        which = np.searchsorted(self._starts, ids, side="right") - 1
        return np.where((ids < 0) | (ids >= self._size), -1, which)

    # -- manifest ----------------------------------------------------------------------------------

    def _content(self) -> dict:
        return {
            "version": MANIFEST_VERSION,
            "text_vocab_size": self.text_vocab_size,
            "special_block": SPECIAL_BLOCK,
            "named_slots": NAMED_SLOTS,
            "special_tokens": list(SPECIAL_TOKENS),
            "dim_base": DIM_BASE,
            "dim_digits": DIM_DIGITS,
            "codebook_sizes": self.codebook_sizes,
            "components": self.components,
        }

    @property
    def fingerprint(self) -> str:
        """sha256 over the layout of the space and every component's fingerprint."""
        return hashlib.sha256(_canonical(self._content()).encode()).hexdigest()

    def to_json(self) -> str:
        content = self._content()
        content["size"] = len(self)
        content["ranges"] = [[r.modality, r.level, r.start, r.stop] for r in self.ranges]
        content["fingerprint"] = self.fingerprint
        return json.dumps(content, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "token space manifest") -> "TokenSpace":
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as e:   # bad JSON, huge numbers, deep nesting
            raise ConfigError(f"{source}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object")
        check_space_version(data.get("version"), source=source)
        fixed = {"special_block": SPECIAL_BLOCK, "named_slots": NAMED_SLOTS, "dim_base": DIM_BASE,
                 "dim_digits": DIM_DIGITS, "special_tokens": list(SPECIAL_TOKENS)}
        for key, want in fixed.items():
            if data.get(key) != want:
                raise ConfigError(f"{source}: {key} is {data.get(key)!r}, this unitok uses {want!r}")
        if "text_vocab_size" not in data:
            raise ConfigError(f"{source}: malformed manifest (no 'text_vocab_size')")
        try:
            space = cls(data["text_vocab_size"], data.get("codebook_sizes") or {}, data.get("components") or {})
        except ConfigError as e:
            raise ConfigError(f"{source}: malformed manifest ({e})") from None
        if "fingerprint" in data and data["fingerprint"] != space.fingerprint:
            raise ConfigError(f"{source}: fingerprint does not match its content (the file was edited or "
                              f"corrupted)")
        return space

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TokenSpace":
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: cannot read token space manifest (No such file or directory)")
        return cls.from_json(read_regular_file(path, 64 << 20, ConfigError, "token space manifest"), source=str(path))

    def check_fingerprint(self, fingerprint: str | None, *, source: str = "token ids") -> None:
        """Raise ``ConfigError`` when ids made with another space are decoded with this one
        (files from another manifest version are refused when they are read, with
        :func:`check_space_version`)."""
        if fingerprint is not None and not isinstance(fingerprint, str):
            raise ConfigError(f"{source}: a fingerprint is a string, got {type(fingerprint).__name__}")
        if fingerprint is not None and fingerprint != self.fingerprint:
            from .suiteinfo import retired_advice, space_name

            advice = retired_advice(fingerprint) or "; decode them with the tokenizer suite that encoded them"
            raise ConfigError(f"{source} were made with {space_name(fingerprint)}, but this tokenizer's space is "
                              f"{self.fingerprint[:12]}{advice}")

    def table(self) -> str:
        """A human-readable table of the ranges (``unitok info``)."""
        rows = [("modality", "level", "start", "stop", "size", "bits")]
        for r in self.ranges:
            rows.append((r.modality, str(r.level), str(r.start), str(r.stop), str(r.size), f"{math.log2(r.size):.2f}"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                 for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"total {len(self)} ids; fingerprint {self.fingerprint[:16]}")
        return "\n".join(lines)
