"""The values every layer shares: ``TokenSequence``, ``Span``, ``Decoded`` and ``Repair``.

A leaf module (it imports only ``unitok.errors``), so the layouts, the pipeline, the dataset reader,
the model side and the service can use token sequences without importing the tokenizers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import ConfigError
from .files import read_regular_file

MAX_TOKEN_FILE_BYTES = 1 << 30   # a token file of 2**24 ids (max_tokens) as JSON is well under this


@dataclass(frozen=True)
class Repair:
    """One change lenient decoding made to a token sequence."""

    position: int   # index in the decoded id sequence where the problem was found
    action: str     # "dropped", "padded", "replaced", "closed", "skipped"
    reason: str

    def __str__(self) -> str:
        return f"position {self.position}: {self.action}: {self.reason}"


@dataclass(frozen=True)
class Span:
    """One part of a document: ``ids[start:stop]``. Media spans include their begin/end tokens."""

    modality: str   # "text", "image", "video", "audio"
    start: int
    stop: int


@dataclass
class TokenSequence:
    """Token ids of one document, with a group index per id and the span of every part.

    ``ids`` and ``groups`` are 1-D int64 numpy arrays of the same length; ``groups`` is
    non-decreasing and starts at 0. ``fingerprint`` is the token space that made the ids.
    """

    ids: np.ndarray
    groups: np.ndarray
    spans: list[Span]
    fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other) -> bool:
        return (isinstance(other, TokenSequence) and np.array_equal(self.ids, other.ids)
                and np.array_equal(self.groups, other.groups) and self.spans == other.spans
                and self.fingerprint == other.fingerprint)

    def to_dict(self) -> dict:
        from .space import MANIFEST_VERSION   # space -> layout -> sequence: imported here to break the cycle

        return {"fingerprint": self.fingerprint, "space_version": MANIFEST_VERSION, "ids": self.ids.tolist(),
                "groups": self.groups.tolist(), "spans": [[s.modality, s.start, s.stop] for s in self.spans]}

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "token sequence") -> "TokenSequence":
        """The inverse of :meth:`to_dict`. Ids, groups and span bounds must be integers as they are
        (``3.5``, ``"12"`` or ``true`` is refused with its position, not rounded or converted)."""
        if not isinstance(data, dict) or "ids" not in data:
            raise ConfigError(f"{source}: not a token sequence (expected an object with 'ids')")
        ids = _integers(data["ids"], "ids", source)
        groups = _integers(data["groups"], "groups", source) if "groups" in data else np.arange(len(ids))
        spans = data.get("spans", [])
        try:
            spans = [Span(m, a, b) for m, a, b in spans]
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: 'spans' must be a list of [modality, start, stop]") from None
        for i, span in enumerate(spans):
            if not isinstance(span.modality, str) or not all(_is_int(v) for v in (span.start, span.stop)):
                raise ConfigError(f"{source}: spans[{i}] is {[span.modality, span.start, span.stop]!r}: expected "
                                  "[modality name, integer start, integer stop]")
            if not 0 <= span.start <= span.stop <= len(ids):
                raise ConfigError(f"{source}: spans[{i}] covers ids {span.start}..{span.stop}, outside the "
                                  f"{len(ids)} ids")
        if ids.ndim != 1 or groups.shape != ids.shape:
            raise ConfigError(f"{source}: 'ids' and 'groups' must be flat lists of the same length")
        fingerprint = data.get("fingerprint")
        if fingerprint is not None and not isinstance(fingerprint, str):
            raise ConfigError(f"{source}: 'fingerprint' must be a string, got {type(fingerprint).__name__}")
        if fingerprint is not None:   # ids without a fingerprint (a model's output) carry no claim to check
            from .space import check_space_version   # space -> layout -> sequence: imported here to break the cycle

            check_space_version(data.get("space_version"), source=source)
        return cls(ids, groups, spans, fingerprint)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TokenSequence":
        """Read a token file: the JSON ``save`` writes, a bare JSON list of ids, or ids separated by
        whitespace or commas (for example the output of a language model)."""
        return cls.read(path)[0]

    @classmethod
    def read(cls, path: str | Path) -> tuple["TokenSequence", dict]:
        """:meth:`load`, with the token file's other fields (``unitok encode`` records the
        ``source`` file's name; empty for bare id lists), from one read of the file."""
        path = Path(path)
        raw = read_regular_file(path, MAX_TOKEN_FILE_BYTES, ConfigError, "token file")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: cannot read token file ({e})") from None
        stripped = text.strip()
        if stripped.startswith(("{", "[")):
            try:
                data = json.loads(stripped)
            except (ValueError, RecursionError) as e:   # bad JSON, huge numbers, deep nesting
                raise ConfigError(f"{path}: not valid JSON ({e})") from None
            data = data if isinstance(data, dict) else {"ids": data}
            extra = {k: v for k, v in data.items() if k not in ("ids", "groups", "spans", "fingerprint", "space_version")}
            return cls.from_dict(data, source=str(path)), extra
        try:
            ids = [int(t) for t in stripped.replace(",", " ").split()]
        except ValueError as e:
            raise ConfigError(f"{path}: expected token ids separated by spaces or commas ({e})") from None
        return cls.from_dict({"ids": ids}, source=str(path)), {}


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _integers(values, name: str, source: str) -> np.ndarray:
    """A flat list of integers (JSON numbers without a fraction) -> int64 array; anything else is
    refused with the first offending position."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu" and values.ndim == 1:
        return values.astype(np.int64, copy=False)
    if not isinstance(values, (list, tuple)):
        raise ConfigError(f"{source}: '{name}' must be a list of integers, got {type(values).__name__}")
    if not set(map(type, values)) <= {int}:   # the usual case (JSON integers) checked at C speed
        for i, v in enumerate(values):
            if not _is_int(v):
                raise ConfigError(f"{source}: {name}[{i}] is {v!r}, not an integer")
    try:
        return np.asarray(values, dtype=np.int64).reshape(len(values))
    except OverflowError:
        big = next(i for i, v in enumerate(values) if not -(1 << 63) <= v < (1 << 63))
        raise ConfigError(f"{source}: {name}[{big}] is out of the int64 range") from None


class Decoded(list):
    """The parts a sequence decoded to, in order; ``repairs`` lists what lenient decoding changed."""

    def __init__(self, items=(), repairs: Iterable[Repair] = ()):
        super().__init__(items)
        self.repairs: list[Repair] = list(repairs)
