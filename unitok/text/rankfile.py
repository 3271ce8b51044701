"""tiktoken rank files: ``base64(token) rank`` per line, in rank order."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path

from unitok.errors import ConfigError
from unitok.files import read_regular_file

__all__ = ["format_rank_file", "read_rank_file"]


def format_rank_file(ranks: Mapping[bytes, int]) -> bytes:
    """tiktoken rank-file text: ``base64(token) rank`` per line, in rank order."""
    lines = [
        base64.b64encode(token) + b" " + str(rank).encode()
        for token, rank in sorted(ranks.items(), key=lambda kv: kv[1])
    ]
    return b"\n".join(lines) + b"\n"


def read_rank_file(path: str | os.PathLike) -> dict[bytes, int]:
    """Read a tiktoken rank file. Raises ConfigError naming the file and line on any defect."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: rank file not found")
    return _parse_rank_file(read_regular_file(path, 1 << 30, ConfigError, "rank file"), str(path))


def _parse_rank_file(data: bytes, name: str) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError("expected two fields")
            token = base64.b64decode(parts[0], validate=True)
            rank = int(parts[1])
        except (ValueError, binascii.Error):
            raise ConfigError(
                f"{name}, line {lineno}: not a tiktoken rank line ('<base64 token> <rank>'); "
                "the file is corrupt or not a tiktoken vocabulary"
            ) from None
        if token in ranks:
            raise ConfigError(f"{name}, line {lineno}: token {token!r} appears twice")
        ranks[token] = rank
    if not ranks:
        raise ConfigError(f"{name}: rank file is empty")
    return ranks
