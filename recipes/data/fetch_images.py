"""Fetch and prepare real photographs and artwork for the image tokenizer.

Sources (see shared DATA.md), all fetched through ordinary package clients:

- training and the first held-out pictures: Debian ``gnome-backgrounds`` and
  ``plasma-workspace-wallpapers`` (``apt-get download`` + ``dpkg -x``; high-resolution photos and
  artwork) and PyPI ``scikit-image`` (``pip download --no-deps`` + unzip; ``skimage/data``);
- held-out photographs only (``PHOTOS``: what users' pictures look like, chosen one by one, no
  artwork): Debian ``mate-backgrounds`` (its ``nature`` folder), ``lomiri-wallpapers-16.04`` and
  ``-20.04`` (photographers' pictures), ``opencv-doc`` (the colour photos among OpenCV's sample
  data: faces, street scenes, food, animals, documents), PyPI ``scikit-learn`` (china, flower) and
  ``matplotlib`` (grace_hopper). They never reach training, so ``train_256.npy`` is exactly what it
  was before they were added.

    python recipes/data/fetch_images.py [--out data/images] [--crops 20000] [--parts train heldout val bench]

Writes::

    data/images/raw/               the downloaded packages and what they unpack to
    data/images/train_256.npy      uint8 [N, 256, 256, 3] random crops of the training photos,
                                   taken at several scales (the photo is first shrunk so that its
                                   short side is 256..1440 pixels)
    data/images/val/*.png          the validation pictures (long side capped at --max-side)
    data/images/val_256.npy        uint8 [M, 256, 256, 3] fixed crops of them, round-robin over the
                                   pictures (any prefix covers every picture): what the training
                                   recipes validate on (``data.val``) and pick best/ by
    data/images/bench/*.png        the benchmark pictures: what ``benchmarks/image.py`` reports on
    data/images/bench_256.npy      uint8 [K, 256, 256, 3] fixed crops of them (same layout)
    data/images/heldout/*.png      legacy: the held-out set from before the val/bench division (the
    data/images/heldout_256.npy    union of val and bench minus the photos added with it), kept
                                   byte-identical because runs started before it validate on it;
                                   never report numbers on it
    data/images/split.json         which picture went where ("train", "val", "bench", legacy
                                   "heldout"), the kind of every picture ("kinds": photo, art or
                                   science) and why the held-out set is divided

Train / held-out is by *picture*, never by crop, and deterministic: variants of one picture (the
many resolutions of a Plasma wallpaper, its dark version, GNOME's -l/-d pairs) form one group, and
a group is held out when sha256(group name) falls in the lowest ``--heldout-frac`` of the hash
range (at least ``--min-heldout`` groups), so rerunning never moves a picture between splits.
Held-out pictures (those groups and every ``PHOTOS`` picture) are then divided into val and bench
by ``splits.divide`` within each source family (plasma, skimage, mate, lomiri, opencv, ...), so
both sides have real photographs and a source's pictures are never on both sides. Outputs are
written under temporary names and renamed into place; ``--parts val bench`` writes only the two
new splits and leaves the training and legacy files alone.
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

from splits import BENCH, PARTS, VAL, WHY, divide_families, hash_frac, interleave, save_npy   # same folder

DEBIAN_PACKAGES = ["gnome-backgrounds", "plasma-workspace-wallpapers"]
PYPI_PACKAGE = "scikit-image"
#: PyPI wheels: unpacked root name -> (requirement, the folder of the wheel to unpack). Versions
#: are pinned so a rerun unpacks the same pictures.
PYPI_WHEELS = {
    "scikit-image": ("scikit-image==0.26.0", "skimage/data/"),
    "scikit-learn": ("scikit-learn==1.9.1", "sklearn/datasets/images/"),
    "matplotlib": ("matplotlib==3.11.2", "matplotlib/mpl-data/sample_data/"),
}
_MATE = "usr/share/backgrounds/mate/nature/"
_LOMIRI = "usr/share/backgrounds/"
_OPENCV = "usr/share/doc/opencv-doc/examples/data/"
#: held-out photographs: package -> (family, files under its root). Picked by looking at each one:
#: colour photographs of at least 256 pixels a side; artwork, renders, logos, greyscale calibration
#: shots and the second picture of stereo / before-after pairs are left out.
PHOTOS: dict[str, tuple[str, list[str]]] = {
    "mate-backgrounds": ("mate", [_MATE + f"{n}.jpg" for n in (
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
        "TwoWings", "Wood", "YellowFlower")]),
    "lomiri-wallpapers-16.04": ("lomiri", [_LOMIRI + f"{n}.jpg" for n in (
        "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace", "Picture_1A_by_freespace",
        "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi", "free_by_Peter_Nerlich",
        "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich", "life_by_Aitzol_Berasategi",
        "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi")]),
    "lomiri-wallpapers-20.04": ("lomiri", [_LOMIRI + "Kleiber_by_Lukas_Baubkus.jpg"]),
    "opencv-doc": ("opencv", [_OPENCV + n for n in (
        "aero1.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "building.jpg", "butterfly.jpg",
        "chicky_512.png", "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg", "left.jpg", "leuvenA.jpg",
        "licenseplate_motion.jpg", "messi5.jpg", "orange.jpg", "rubberwhale1.png", "smarties.png",
        "squirrel_cls.jpg", "stuff.jpg", "sudoku.png")]),
    "scikit-learn": ("sklearn", ["sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg"]),
    "matplotlib": ("matplotlib", ["matplotlib/mpl-data/sample_data/grace_hopper.jpg"]),
}
#: the kind of each training / first held-out picture, from looking at it ("photo" unless listed):
#: Plasma wallpapers are artwork except these photographs; every GNOME background is artwork
PLASMA_PHOTOS = {"BytheWater", "ColdRipple", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "Kite",
                 "OneStandsOut", "Path", "summer_1am"}
SKIMAGE_KINDS = {"cell": "science", "hubble_deep_field": "science", "ihc": "science", "moon": "science",
                 "retina": "science", "color": "art", "horse": "art", "logo": "art", "phantom": "art"}
KINDS = ("photo", "art", "science")
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


def fetch_wheel(name: str, raw: Path) -> Path:
    """``pip download --no-deps`` the pinned wheel of ``PYPI_WHEELS[name]`` once and unzip its data
    folder; returns the unpacked root."""
    requirement, folder = PYPI_WHEELS[name]
    root = raw / name
    if root.exists():
        return root
    pattern = name.replace("-", "_") + "-*.whl"
    wheels = sorted(raw.glob(pattern))
    if not wheels:
        print(f"pip download {requirement}", flush=True)
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", ".", requirement], raw)
        wheels = sorted(raw.glob(pattern))
    with zipfile.ZipFile(wheels[-1]) as z:
        z.extractall(root, [n for n in z.namelist() if n.startswith(folder)])
    return root


def download(raw: Path) -> dict[str, Path]:
    """Fetch and unpack every source once; returns the unpacked root of each."""
    raw.mkdir(parents=True, exist_ok=True)
    roots = {name: fetch_deb(name, raw) for name in DEBIAN_PACKAGES}
    for name in PHOTOS:
        roots[name] = fetch_wheel(name, raw) if name in PYPI_WHEELS else fetch_deb(name, raw)
    roots[PYPI_PACKAGE] = fetch_wheel(PYPI_PACKAGE, raw)
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


def photo_groups(roots: dict[str, Path]) -> dict[str, list[Path]]:
    """The held-out photographs of ``PHOTOS``: group name ``<family>/<stem>`` -> [its file]."""
    groups = {}
    for package, (family, files) in PHOTOS.items():
        for rel in files:
            path = roots[package] / rel
            if not path.is_file():
                sys.exit(f"{path} is missing from {package}; delete {roots[package]} and rerun to unpack it again")
            groups[f"{family}/{Path(rel).stem}"] = [path]
    return dict(sorted(groups.items()))


def kind_of(name: str) -> str:
    """"photo", "art" or "science" for a group name (see ``PLASMA_PHOTOS``, ``SKIMAGE_KINDS``)."""
    family, stem = name.split("/", 1)
    if family == "plasma":
        return "photo" if stem in PLASMA_PHOTOS else "art"
    if family == "gnome":
        return "art"
    if family == "skimage":
        return SKIMAGE_KINDS.get(stem, "photo")
    return "photo"                     # every PHOTOS family


def split_groups(names: list[str], frac: float, minimum: int) -> set[str]:
    ranked = sorted(names, key=hash_frac)
    held = {n for n in names if hash_frac(n) < frac}
    return held | set(ranked[:minimum])


def divide_heldout(names: list[str]) -> dict[str, str]:
    """Held-out group name -> "val" or "bench", divided within each family (the part before "/")."""
    families: dict[str, list[str]] = defaultdict(list)
    for n in names:
        families[n.split("/")[0]].append(n)
    return divide_families(families)


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


def usable(files: list[Path]) -> list[Path]:
    """The files that decode and are at least a crop on each side (decoded once, then dropped:
    holding every picture at once would take gigabytes)."""
    return [f for f in files if (x := load_rgb(f)) is not None and min(x.shape[1:]) >= CROP]


def write_train(out: Path, pictures: dict[str, list[Path]], names: list[str], crops: int, seed: int) -> int:
    """train_256.npy: equal crops per picture group (a huge wallpaper does not dominate), shuffled
    on disk (any prefix is a fair sample). Returns the number of crops."""
    rng = np.random.default_rng(seed)
    per_group = math.ceil(crops / max(1, len(names)))
    tmp = out / "train_256.npy.tmp"
    train = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(per_group * len(names), CROP, CROP, 3))
    for i, name in enumerate(names):
        files = pictures[name]
        counts = [per_group // len(files) + (j < per_group % len(files)) for j in range(len(files))]
        parts = [crops_of(load_rgb(f), c, rng) for f, c in zip(files, counts) if c]
        train[i * per_group:(i + 1) * per_group] = np.concatenate(parts)
        print(f"  train {i + 1}/{len(names)} {name}", flush=True)
    train.flush()
    order = rng.permutation(len(train))
    part = out / "train_256.npy.part"
    shuffled = np.lib.format.open_memmap(part, mode="w+", dtype=np.uint8, shape=train.shape)
    for s in range(0, len(order), 2048):
        shuffled[s:s + 2048] = train[order[s:s + 2048]]
    shuffled.flush()
    del train, shuffled
    os.remove(tmp)
    os.replace(part, out / "train_256.npy")
    return len(order)


def write_heldout(folder: Path, array: Path, pictures: dict[str, list[Path]], names: list[str], *, crops: int,
                  max_side: int, round_robin: bool) -> int:
    """Save the pictures of ``names`` into ``folder`` (long side capped at ``max_side``) and
    ``crops`` fixed 256x256 crops of each into ``array`` (seeded by the file stem, so a picture's
    crops do not depend on what else is held out). ``round_robin``: crop 0 of every picture first,
    then crop 1, ... (any prefix covers every picture); else picture by picture. Returns the
    number of pictures."""
    from unitok import Image

    folder.mkdir(parents=True, exist_ok=True)
    per_picture = []
    for name in names:
        files = pictures[name]
        for j, f in enumerate(files):
            x = load_rgb(f)
            if max(x.shape[1:]) > max_side:
                x = resize_short(x, round(min(x.shape[1:]) * max_side / max(x.shape[1:])))
            stem = name.replace("/", "_") + (f"_{j}" if len(files) > 1 else "")
            Image(x.contiguous()).save(folder / f"{stem}.png")
            seed = int(hashlib.sha256(stem.encode()).hexdigest()[:8], 16)
            per_picture.append(crops_of(x, crops, np.random.default_rng(seed)))
    save_npy(array, interleave(per_picture) if round_robin else np.concatenate(per_picture))
    return len(per_picture)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/images")
    ap.add_argument("--crops", type=int, default=20000, help="training crops in train_256.npy")
    ap.add_argument("--heldout-crops", type=int, default=16, help="256x256 crops per held-out photo")
    ap.add_argument("--heldout-frac", type=float, default=0.15)
    ap.add_argument("--min-heldout", type=int, default=8)
    ap.add_argument("--max-side", type=int, default=2048, help="long side of the saved held-out photos")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", nargs="+", choices=("train", "heldout") + PARTS, default=["train", "heldout", *PARTS],
                    help="outputs to write (default: all); `--parts val bench` leaves train_256.npy and the legacy "
                         "heldout files as they are")
    args = ap.parse_args(argv)

    out = Path(args.out)
    roots = download(out / "raw")
    groups = find_groups(roots)
    held = split_groups(list(groups), args.heldout_frac, args.min_heldout)
    print(f"{len(groups)} pictures: {len(groups) - len(held)} train, {len(held)} held out", flush=True)
    # pictures smaller than a crop cannot give crops; the order of groups decides the training crops
    pictures = {name: ok for name, files in groups.items() if (ok := usable(files))}
    train_names = [n for n in pictures if n not in held]
    held_names = [n for n in pictures if n in held]
    photos = {name: ok for name, files in photo_groups(roots).items() if (ok := usable(files))}
    pictures.update(photos)
    side = divide_heldout(held_names + list(photos))
    parts = {p: [n for n in held_names + list(photos) if side[n] == p] for p in PARTS}

    n_train = write_train(out, pictures, train_names, args.crops, args.seed) if "train" in args.parts else None
    written = {}
    for part, names, round_robin in (("heldout", held_names, False), (VAL, parts[VAL], True),
                                     (BENCH, parts[BENCH], True)):
        if part in args.parts:
            written[part] = write_heldout(out / part, out / f"{part}_256.npy", pictures, names,
                                          crops=args.heldout_crops, max_side=args.max_side, round_robin=round_robin)
    raw = (out / "raw").resolve()
    rel = lambda f: str(f.resolve().relative_to(raw)) if f.resolve().is_relative_to(raw) else str(f)  # noqa: E731
    listing = lambda names: {n: [rel(f) for f in pictures[n]] for n in names}  # noqa: E731
    split = {"why": WHY, "train": listing(train_names), VAL: listing(parts[VAL]), BENCH: listing(parts[BENCH]),
             "heldout": listing(held_names),
             "heldout_note": "legacy: the held-out set from before the val/bench division (val and bench minus "
                             "the photos added with it); runs started before it validate on heldout_256.npy. "
                             "Never report numbers on it.",
             "kinds": {n: kind_of(n) for n in pictures}}
    (out / "split.json.tmp").write_text(json.dumps(split, indent=1) + "\n")
    os.replace(out / "split.json.tmp", out / "split.json")
    for part in ("train", VAL, BENCH):
        names = train_names if part == "train" else parts[part]
        kinds = {k: sum(kind_of(n) == k for n in names) for k in KINDS}
        print(f"{part}: {len(names)} pictures ({', '.join(f'{k} {v}' for k, v in kinds.items())})")
    if n_train is not None:
        print(f"wrote {out / 'train_256.npy'} ({n_train} crops)")
    for part, n in written.items():
        print(f"wrote {out / part}/ ({n} pictures) and {out / f'{part}_256.npy'} ({n * args.heldout_crops} crops)")


if __name__ == "__main__":
    main()
