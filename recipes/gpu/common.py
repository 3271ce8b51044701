"""What the packing scripts of ``recipes/gpu`` share: loading a recipe or a sibling script by path
(the recipes are scripts, not a package) and their command line."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_module(path: Path, name: str):
    """The Python file ``path`` imported as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recipe(name: str):
    """``recipes/<name>.py`` (``train_audio``, ``train_image``, ``train_video``) as a module."""
    return load_module(ROOT / "recipes" / f"{name}.py", name)


def parser(doc: str, *, what: str, megabytes: float, source: str, unpack: bool = True) -> argparse.ArgumentParser:
    """``[pack|unpack] --config YAML --train-mb MB --source DIR``."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    if unpack:
        ap.add_argument("action", choices=("pack", "unpack"))
    ap.add_argument("--config", required=True, help="the GPU config whose data paths to write")
    ap.add_argument("--train-mb", type=float, default=megabytes,
                    help=f"pack: bytes of training {what} (default: {megabytes:g} MB)")
    ap.add_argument("--source", default=source, help="pack: folder of the full split")
    return ap


def lacks(src: Path, names, fetch: str) -> bool:
    """Whether the full split ``src`` misses any of ``names``; if so, says which and how to fetch
    them (``fetch``: the script under recipes/data)."""
    missing = [n for n in names if not (src / n).exists()]
    if missing:
        print(f"{src} lacks {', '.join(missing)}: run python recipes/data/{fetch} first", file=sys.stderr)
    return bool(missing)
