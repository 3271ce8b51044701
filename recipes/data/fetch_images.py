"""Fetch and prepare real photographs for the image tokenizer.

Sources (see shared DATA.md), all fetched through ordinary package clients:

- Debian ``gnome-backgrounds`` and ``plasma-workspace-wallpapers`` (``apt-get download`` +
  ``dpkg -x``): high-resolution photos and artwork;
- PyPI ``scikit-image`` (``pip download --no-deps`` + unzip): the classic test images in
  ``skimage/data``.

    python recipes/data/fetch_images.py [--out data/images] [--crops 20000]

Writes::

    data/images/raw/               the downloaded packages and what they unpack to
    data/images/train_256.npy      uint8 [N, 256, 256, 3] random crops of the training photos,
                                   taken at several scales (the photo is first shrunk so that its
                                   short side is 256..1440 pixels)
    data/images/heldout/*.png      the held-out photos (long side capped at --max-side)
    data/images/heldout_256.npy    uint8 [M, 256, 256, 3] fixed crops of the held-out photos, for
                                   validation during training and the 256x256 benchmark
    data/images/split.json         which source file went where

The split is by *picture*, never by crop, and deterministic: variants of one picture (the many
resolutions of a Plasma wallpaper, its dark version, GNOME's -l/-d pairs) form one group, and a
group is held out when sha256(group name) falls in the lowest ``--heldout-frac`` of the hash
range (at least ``--min-heldout`` groups), so rerunning never moves a picture between splits.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DEBIAN_PACKAGES = ["gnome-backgrounds", "plasma-workspace-wallpapers"]
PYPI_PACKAGE = "scikit-image"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
CROP = 256


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}")


# -- download -----------------------------------------------------------------------------------


def fetch_deb(name: str, raw: Path) -> Path:
    """``apt-get download`` + ``dpkg -x`` once; returns the unpacked root. (fetch_audio.py uses it too.)"""
    root = raw / name
    if root.exists():
        return root
    debs = sorted(raw.glob(f"{name}_*.deb"))
    if not debs:
        print(f"apt-get download {name}", flush=True)
        _run(["apt-get", "download", name], raw)
        debs = sorted(raw.glob(f"{name}_*.deb"))
    _run(["dpkg", "-x", str(debs[-1].resolve()), str(root.resolve())], raw)
    return root


def download(raw: Path) -> dict[str, Path]:
    """Fetch and unpack every source once; returns the unpacked root of each."""
    raw.mkdir(parents=True, exist_ok=True)
    roots = {}
    for name in DEBIAN_PACKAGES:
        roots[name] = fetch_deb(name, raw)
    root = raw / PYPI_PACKAGE
    if not root.exists():
        wheels = sorted(raw.glob("scikit_image-*.whl"))
        if not wheels:
            print(f"pip download {PYPI_PACKAGE}", flush=True)
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", ".",
                  PYPI_PACKAGE], raw)
            wheels = sorted(raw.glob("scikit_image-*.whl"))
        with zipfile.ZipFile(wheels[-1]) as z:
            z.extractall(root, [n for n in z.namelist() if n.startswith("skimage/data/")])
    roots[PYPI_PACKAGE] = root
    return roots


# -- pictures and groups ------------------------------------------------------------------------


def _pixels_in_name(path: str) -> int:
    m = re.search(r"(\d+)x(\d+)", os.path.basename(path))
    return int(m.group(1)) * int(m.group(2)) if m else 0


def find_groups(roots: dict[str, Path]) -> dict[str, list[Path]]:
    """Group name -> the files of that picture (one or more variants, each a distinct picture
    file). Symlinks are resolved so that one file never counts twice."""
    groups: dict[str, list[Path]] = defaultdict(list)
    # Plasma: <Name>/contents/images[_dark]/<W>x<H>.ext; keep the largest resolution of each folder
    for folder in sorted(glob.glob(str(roots["plasma-workspace-wallpapers"] / "usr/share/wallpapers/*/contents/images*"))):
        files = [f for f in glob.glob(folder + "/*") if Path(f).suffix.lower() in IMAGE_SUFFIXES]
        files = [f for f in files if os.path.exists(f) and os.path.getsize(os.path.realpath(f)) > 1024]
        if files:
            best = max(files, key=_pixels_in_name)
            groups["plasma/" + Path(folder).parts[-3]].append(Path(os.path.realpath(best)))
    # GNOME: name-l.ext / name-d.ext are one picture in a light and a dark version
    for f in sorted(glob.glob(str(roots["gnome-backgrounds"] / "usr/share/backgrounds/gnome/*"))):
        p = Path(f)
        if p.suffix.lower() in IMAGE_SUFFIXES and os.path.exists(f) and os.path.getsize(os.path.realpath(f)) > 1024:
            groups["gnome/" + re.sub(r"-[ld]$", "", p.stem)].append(Path(os.path.realpath(f)))
    # scikit-image: each file is its own picture (the motorcycle pair is one scene)
    for f in sorted(glob.glob(str(roots[PYPI_PACKAGE] / "skimage/data/*"))):
        p = Path(f)
        if p.suffix.lower() in IMAGE_SUFFIXES:
            groups["skimage/" + re.sub(r"_(left|right)$", "", p.stem)].append(p)
    return {k: sorted(set(v)) for k, v in sorted(groups.items())}


def _hash_frac(name: str) -> float:
    return int(hashlib.sha256(name.encode()).hexdigest()[:12], 16) / 16 ** 12


def split_groups(names: list[str], frac: float, minimum: int) -> set[str]:
    ranked = sorted(names, key=_hash_frac)
    held = {n for n in names if _hash_frac(n) < frac}
    return held | set(ranked[:minimum])


def load_rgb(path: Path) -> torch.Tensor | None:
    """[3, H, W] uint8, or None (with a note) for a file that does not decode."""
    from unitok import Image, MediaError

    try:
        return Image.open(path).to_rgb().pixels
    except MediaError as e:
        print(f"  skipped {path.name}: {e}", flush=True)
        return None


def resize_short(x: torch.Tensor, short: int) -> torch.Tensor:
    """[3, H, W] uint8 -> [3, h, w] uint8 with min(h, w) == short (antialiased)."""
    h, w = x.shape[1:]
    s = short / min(h, w)
    if abs(s - 1) < 1e-6:
        return x
    size = (max(short, round(h * s)), max(short, round(w * s)))
    y = F.interpolate(x[None].float(), size=size, mode="bicubic", antialias=True, align_corners=False)
    return y[0].round().clamp(0, 255).to(torch.uint8)


def crops_of(x: torch.Tensor, n: int, rng: np.random.Generator, max_short: int = 1440) -> np.ndarray:
    """``n`` random 256x256 crops of ``x: [3, H, W]`` at log-uniform scales -> [n, 256, 256, 3]."""
    short = min(x.shape[1:])
    top = min(short, max_short)
    out = np.empty((n, CROP, CROP, 3), dtype=np.uint8)
    # a handful of scales per picture keeps the resizing cost bounded
    n_scales = max(1, min(4, n))
    scales = sorted({int(round(math.exp(v))) for v in np.linspace(math.log(CROP), math.log(top), n_scales)})
    for i in range(n):
        if i % max(1, n // len(scales)) == 0 or i == 0:
            y = resize_short(x, scales[min(len(scales) - 1, i * len(scales) // n)])
        H, W = y.shape[1:]
        t = rng.integers(0, H - CROP + 1)
        l = rng.integers(0, W - CROP + 1)
        out[i] = y[:, t:t + CROP, l:l + CROP].permute(1, 2, 0).numpy()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/images")
    ap.add_argument("--crops", type=int, default=20000, help="training crops in train_256.npy")
    ap.add_argument("--heldout-crops", type=int, default=16, help="256x256 crops per held-out photo")
    ap.add_argument("--heldout-frac", type=float, default=0.15)
    ap.add_argument("--min-heldout", type=int, default=8)
    ap.add_argument("--max-side", type=int, default=2048, help="long side of the saved held-out photos")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    out = Path(args.out)
    roots = download(out / "raw")
    groups = find_groups(roots)
    held = split_groups(list(groups), args.heldout_frac, args.min_heldout)
    print(f"{len(groups)} pictures: {len(groups) - len(held)} train, {len(held)} held out", flush=True)

    # decode once; pictures smaller than a crop cannot give training crops
    pictures: dict[str, list[tuple[Path, torch.Tensor]]] = {}
    for name, files in groups.items():
        pics = [(f, x) for f in files if (x := load_rgb(f)) is not None]
        pics = [(f, x) for f, x in pics if min(x.shape[1:]) >= CROP]
        if pics:
            pictures[name] = pics
    train_names = [n for n in pictures if n not in held]
    held_names = [n for n in pictures if n in held]

    rng = np.random.default_rng(args.seed)
    # equal crops per picture group, so a huge wallpaper does not dominate
    per_group = math.ceil(args.crops / max(1, len(train_names)))
    train = np.lib.format.open_memmap(out / "train_256.npy.tmp", mode="w+", dtype=np.uint8,
                                      shape=(per_group * len(train_names), CROP, CROP, 3))
    for i, name in enumerate(train_names):
        pics = pictures[name]
        counts = [per_group // len(pics) + (j < per_group % len(pics)) for j in range(len(pics))]
        parts = [crops_of(x, c, rng) for (_, x), c in zip(pics, counts) if c]
        train[i * per_group:(i + 1) * per_group] = np.concatenate(parts)
        print(f"  train {i + 1}/{len(train_names)} {name}", flush=True)
    train.flush()
    order = rng.permutation(len(train))   # shuffled on disk: any prefix is a fair sample
    shuffled = np.lib.format.open_memmap(out / "train_256.npy", mode="w+", dtype=np.uint8, shape=train.shape)
    for s in range(0, len(order), 2048):
        shuffled[s:s + 2048] = train[order[s:s + 2048]]
    shuffled.flush()
    del train, shuffled
    os.remove(out / "train_256.npy.tmp")

    held_dir = out / "heldout"
    held_dir.mkdir(parents=True, exist_ok=True)
    from unitok import Image

    val = []
    for name in held_names:
        for j, (f, x) in enumerate(pictures[name]):
            if max(x.shape[1:]) > args.max_side:
                x = resize_short(x, round(min(x.shape[1:]) * args.max_side / max(x.shape[1:])))
            stem = name.replace("/", "_") + (f"_{j}" if len(pictures[name]) > 1 else "")
            Image(x.contiguous()).save(held_dir / f"{stem}.png")
            val.append(crops_of(x, args.heldout_crops, np.random.default_rng(int(hashlib.sha256(stem.encode()).hexdigest()[:8], 16))))
    np.save(out / "heldout_256.npy", np.concatenate(val))
    raw = (out / "raw").resolve()
    rel = lambda f: str(f.resolve().relative_to(raw)) if f.resolve().is_relative_to(raw) else str(f)  # noqa: E731
    split = {"train": {n: [rel(f) for f, _ in pictures[n]] for n in train_names},
             "heldout": {n: [rel(f) for f, _ in pictures[n]] for n in held_names}}
    (out / "split.json").write_text(json.dumps(split, indent=1) + "\n")
    print(f"wrote {out / 'train_256.npy'} ({per_group * len(train_names)} crops), "
          f"{len(val) * args.heldout_crops} held-out crops and {len(val)} held-out photos in {held_dir}")


if __name__ == "__main__":
    main()
