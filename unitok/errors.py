"""Public exception types. Every user-facing failure raises one of these."""

from __future__ import annotations


class UnitokError(Exception):
    """Base class of every error unitok raises on purpose."""


class MediaError(UnitokError, ValueError):
    """A media file or array is bad or unsupported. The message names the file and the reason."""

    def __init__(self, reason: str, path: str | None = None):
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class LimitError(MediaError):
    """Media (or a document) over a size limit: ``MediaLimits`` or ``UniTokenizer.max_tokens``. The
    input may be fine; a caller with the memory for it can raise the limit (the service answers 413)."""


class TokenSequenceError(UnitokError, ValueError):
    """A token id sequence cannot be decoded. ``position`` is the index of the offending id."""

    def __init__(self, reason: str, position: int | None = None):
        self.position = position
        self.reason = reason
        where = f"at position {position}: " if position is not None else ""
        super().__init__(f"{where}{reason}")


class ConfigError(UnitokError, ValueError):
    """A configuration, checkpoint or token-space manifest is invalid or does not match."""
