"""Pack training crops small enough to travel to a GPU machine, and unpack them there.

The image recipe reads uint8 crops [N, 256, 256, 3] (``data/images/train_256.npy``, 787 MB): too
large for the 64 MiB that travels with the repository. Here (``pack``), crops of the training
split are stored as JPEG at quality 95 (about 19 KB a crop, 36 dB from the original: far
above what the tokenizer reconstructs, so the artefacts do not shape training) until
``--train-mb`` is spent (taken from all over the array, whatever the budget), and ``val_limit``
validation crops, evenly spaced over the split (so over its pictures: the recipe itself would take
the first ones), are stored as they are. There (``unpack``, run by ``recipes/gpu/run.sh image``),
torchvision decodes the JPEGs back into the array the config's ``data.train`` names; PyAV is not
needed.

    python recipes/gpu/pack_images.py pack --config recipes/configs/image_gpu.yaml [--train-mb 26] [--val-limit 48]
    python recipes/gpu/pack_images.py unpack --config recipes/configs/image_gpu.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torchvision.io as tvio

from common import JPEG_QUALITY, ROOT, lacks, parser, recipe


def packed_path(train: str) -> Path:
    """Where the JPEGs of the array ``train`` travel: beside it, ``<name>.jpeg.npz``."""
    p = ROOT / train
    return p.with_name(p.stem + ".jpeg.npz")


def spread_order(n: int) -> np.ndarray:
    """0 .. n-1 in an order whose every prefix spreads over the whole range (van der Corput: by
    bit-reversed index), so whatever the budget keeps comes from all over the training set, not
    from its first pictures."""
    bits = max(1, (n - 1).bit_length())
    return np.argsort([int(format(i, f"0{bits}b")[::-1], 2) for i in range(n)], kind="stable")


def pack_crops(array: np.ndarray, budget: int, quality: int = JPEG_QUALITY) -> tuple[np.ndarray, np.ndarray]:
    """Crops of ``array`` (in ``spread_order``) as JPEG until ``budget`` bytes: (the bytes one
    after another, uint8; the offsets, int64 [n + 1])."""
    blobs, total = [], 0
    for i in spread_order(len(array)):
        blob = tvio.encode_jpeg(torch.from_numpy(np.array(array[i])).permute(2, 0, 1).contiguous(),
                                quality=quality).numpy()
        if total + len(blob) > budget:
            break
        blobs.append(blob)
        total += len(blob)
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    return np.concatenate(blobs), offsets


def unpack_crops(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The inverse of ``pack_crops``: uint8 [n, H, W, 3]."""
    return np.stack([tvio.decode_jpeg(torch.from_numpy(data[a:b].copy())).permute(1, 2, 0).numpy()
                     for a, b in zip(offsets[:-1], offsets[1:])])


def main(argv=None) -> int:
    ap = parser(__doc__, what="crops as JPEG", megabytes=26.0, source="data/images", jpeg=True)
    args = ap.parse_args(argv)
    dc = recipe("train_image").load_config(args.config)["data"]
    train, val = ROOT / dc["train"], ROOT / dc["val"]
    if args.action == "unpack":
        packed = np.load(packed_path(dc["train"]))
        crops = unpack_crops(packed["data"], packed["offsets"])
        np.save(train, crops)
        print(f"unpacked {len(crops)} crops -> {train.relative_to(ROOT)}")
        return 0
    src = ROOT / args.source
    if lacks(src, ("train_256.npy", "val_256.npy"), "fetch_images.py"):
        return 1
    data, offsets = pack_crops(np.load(src / "train_256.npy", mmap_mode="r"), int(args.train_mb * 1e6), args.quality)
    train.parent.mkdir(parents=True, exist_ok=True)
    np.savez(packed_path(dc["train"]), data=data, offsets=offsets)
    full = np.load(src / "val_256.npy", mmap_mode="r")
    keep = min(args.val_limit or dc["val_limit"] or len(full), len(full))
    picks = np.unique(np.linspace(0, len(full) - 1, keep).round().astype(int))
    val_crops = np.stack([np.asarray(full[i]) for i in picks])
    np.save(val, val_crops)
    print(f"train: {len(offsets) - 1} crops as JPEG q{args.quality}, {data.nbytes / 1e6:.1f} MB -> "
          f"{packed_path(dc['train']).relative_to(ROOT)}; val: {len(val_crops)} crops evenly spaced over the split, "
          f"{val.stat().st_size / 1e6:.1f} MB -> {val.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
