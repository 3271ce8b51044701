"""What the packing scripts of ``recipes/gpu`` share: loading a recipe or a sibling script by path
(the recipes are scripts, not a package), their command line, and a lossless squeeze of 16-bit
samples for the trip."""

from __future__ import annotations

import argparse
import importlib.util
import lzma
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

#: JPEG quality the training pictures travel at by default: about 36 dB from the original, far above
#: what the tokenizers reconstruct, so the artefacts do not shape training
JPEG_QUALITY = 95


def load_module(path: Path, name: str):
    """The Python file ``path`` imported as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recipe(name: str):
    """``recipes/<name>.py`` (``train_audio``, ``train_image``, ``train_video``) as a module."""
    return load_module(ROOT / "recipes" / f"{name}.py", name)


def parser(doc: str, *, what: str, megabytes: float, source: str, jpeg: bool = False) -> argparse.ArgumentParser:
    """``pack|unpack --config YAML --train-mb MB --source DIR`` (``jpeg``: also ``--quality Q``
    and ``--val-limit N``)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("action", choices=("pack", "unpack"))
    ap.add_argument("--config", required=True, help="the GPU config whose data paths to write")
    ap.add_argument("--train-mb", type=float, default=megabytes,
                    help=f"pack: bytes of training {what} (default: {megabytes:g} MB)")
    ap.add_argument("--source", default=source, help="pack: folder of the full split")
    if jpeg:
        ap.add_argument("--quality", type=int, default=JPEG_QUALITY,
                        help=f"pack: JPEG quality of the training pictures (default {JPEG_QUALITY})")
        ap.add_argument("--val-limit", type=int, help="pack: validation items to keep (default: the config's "
                        "data.val_limit); the recipe scores all of them, up to val_limit")
    return ap


def lacks(src: Path, names, fetch: str) -> bool:
    """Whether the full split ``src`` misses any of ``names``; if so, says which and how to fetch
    them (``fetch``: the script under recipes/data)."""
    missing = [n for n in names if not (src / n).exists()]
    if missing:
        print(f"{src} lacks {', '.join(missing)}: run python recipes/data/{fetch} first", file=sys.stderr)
    return bool(missing)


def squeezed_path(path: Path) -> Path:
    """Where the squeezed copy of the array file ``path`` travels: ``<name>.i16.xz`` beside it."""
    return path.with_name(path.stem + ".i16.xz")


def squeeze(samples: np.ndarray) -> bytes:
    """int16 samples [N] -> bytes, losslessly (:func:`unsqueeze` inverts it): each sample's
    difference from the one before (wrapping in 16 bits), the low bytes then the high bytes, LZMA.
    The packed audio keeps 64% of its size this way (speech alone about 56%), against 81% for zlib
    on the raw samples."""
    x = np.ascontiguousarray(samples, dtype=np.int16).view(np.uint16)
    delta = np.diff(x, prepend=np.uint16(0))                        # uint16 arithmetic wraps
    planes = delta.astype("<u2").view(np.uint8).reshape(-1, 2).T    # [2, N]: low bytes, high bytes
    return lzma.compress(np.ascontiguousarray(planes).tobytes(), preset=6)


def unsqueeze(blob: bytes) -> np.ndarray:
    """The inverse of :func:`squeeze`: int16 [N]. A damaged blob raises ``ValueError``."""
    try:
        raw = lzma.decompress(blob)
    except lzma.LZMAError as e:
        raise ValueError(f"not a squeezed array ({e})") from None
    if len(raw) % 2:
        raise ValueError(f"not a squeezed array ({len(raw)} bytes: two byte planes must be the same length)")
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(2, -1)
    delta = np.ascontiguousarray(planes.T).view("<u2")[:, 0]
    return np.cumsum(delta, dtype=np.uint16).view(np.int16)         # the running sum wraps back
