"""File facts every layer may need without loading torch: where the bundled assets live, and a
file's sha256 (read in blocks, so a checkpoint of any size is hashed in bounded memory)."""

from __future__ import annotations

import hashlib
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
