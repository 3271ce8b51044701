"""Pack training clips small enough to travel to a GPU machine, and unpack them there.

The video recipe reads uint8 clips [N, F, H, W, 3] (``data/video/train_256.npy``, 4.5 GB) and
trains on windows of ``data.frames`` frames cropped to ``data.crop``. Here (``pack``), one such
window of every clip (its place drawn from a generator seeded by the clip's index), the clips
taken in ``pack_images.spread_order``, is stored frame by frame as JPEG at quality 95 until
``--train-mb`` is spent; the validation clips the recipe scores (``validation_clips``: evenly spaced,
their first ``val_frames`` frames, the centre ``val_crop`` square) are stored the same way. There
(``unpack``, run by ``recipes/gpu/run.sh video``), torchvision decodes them into the arrays the
config's ``data.train`` and ``data.val`` name.

    python recipes/gpu/pack_video.py pack --config recipes/configs/video_gpu.yaml [--train-mb 24]
    python recipes/gpu/pack_video.py unpack --config recipes/configs/video_gpu.yaml
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torchvision.io as tvio

from common import JPEG_QUALITY, ROOT, lacks, parser, recipe as load_recipe
import pack_images as images


def window(array: np.ndarray, i: int, frames: int, crop: int) -> np.ndarray:
    """Clip ``i``'s training window: ``frames`` frames, a ``crop`` square, placed by a generator
    seeded with ``i`` (the same on every run)."""
    _, F, H, W, _ = array.shape
    rng = np.random.default_rng(i)
    s, top, left = rng.integers(0, F - frames + 1), rng.integers(0, H - crop + 1), rng.integers(0, W - crop + 1)
    return np.array(array[i, s:s + frames, top:top + crop, left:left + crop])


def encode_clips(clips, budget: int | None = None,
                 quality: int = JPEG_QUALITY) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Clips (an iterable of uint8 [T, H, W, 3], all one shape) as JPEG frames, whole clips only,
    until ``budget`` bytes: (bytes, per-frame offsets, the clip shape)."""
    blobs, total, shape = [], 0, None
    for clip in clips:
        frames = [tvio.encode_jpeg(torch.from_numpy(f).permute(2, 0, 1).contiguous(),
                                   quality=quality).numpy() for f in clip]
        size = sum(len(b) for b in frames)
        if budget is not None and total + size > budget:
            break
        blobs += frames
        total += size
        shape = clip.shape
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    return np.concatenate(blobs), offsets, tuple(shape)


def decode_clips(data: np.ndarray, offsets: np.ndarray, shape) -> np.ndarray:
    """The inverse of ``encode_clips``: uint8 [n, T, H, W, 3]."""
    return images.unpack_crops(data, offsets).reshape(-1, *shape)


def main(argv=None) -> int:
    ap = parser(__doc__, what="clips as JPEG", megabytes=24.0, source="data/video", jpeg=True)
    args = ap.parse_args(argv)
    recipe = load_recipe("train_video")
    dc = recipe.load_config(args.config)["data"]
    packed = {key: images.packed_path(dc[key]) for key in ("train", "val")}
    if args.action == "unpack":
        for key, path in packed.items():
            z = np.load(path)
            clips = decode_clips(z["data"], z["offsets"], tuple(z["shape"]))
            np.save(ROOT / dc[key], clips)
            print(f"unpacked {len(clips)} {key} clips {tuple(clips.shape[1:])} -> {dc[key]}")
        return 0
    src = ROOT / args.source
    if lacks(src, ("train_256.npy", "val_256.npy"), "fetch_video.py"):
        return 1
    train = np.load(src / "train_256.npy", mmap_mode="r")
    val = recipe.validation_clips(np.load(src / "val_256.npy", mmap_mode="r"), args.val_limit or dc["val_limit"],
                                  dc["val_frames"], dc["val_crop"]).permute(0, 1, 3, 4, 2).numpy()
    windows = (window(train, int(i), dc["frames"], dc["crop"]) for i in images.spread_order(len(train)))
    parts = {"train": encode_clips(windows, int(args.train_mb * 1e6), args.quality), "val": encode_clips(val)}
    quality = {"train": args.quality, "val": JPEG_QUALITY}
    packed["train"].parent.mkdir(parents=True, exist_ok=True)
    for key, (data, offsets, shape) in parts.items():
        np.savez(packed[key], data=data, offsets=offsets, shape=np.array(shape))
        print(f"{key}: {(len(offsets) - 1) // shape[0]} clips {shape} as JPEG q{quality[key]}, "
              f"{data.nbytes / 1e6:.1f} MB -> {packed[key].relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
