"""Pack a subset of the training audio small enough to travel to a GPU machine with the repository.

A lent GPU machine gets the working tree plus at most 64 MiB in all (the tree is about 26 MB of it)
and cannot download anything, so the 376 MB of ``data/audio/train_24k.npy`` cannot go with it. This
writes, in the layout ``recipes/train_audio.py`` reads:

- ``train_24k.npy`` / ``train_index.json``: a piece of every training file, each category getting
  the share of ``--train-mb`` that ``data.weights`` gives it (the sampler draws categories by those
  weights anyway), split evenly over its files (a short file keeps all of itself and leaves the
  rest to the others); the pieces start a quarter into each file, past leading silence;
- ``val_24k.npy`` / ``val_index.json``: exactly the clips the recipe validates on
  (``validation_clips`` of the config's ``val_clips`` and ``val_seconds``), one span each, so
  validation on the GPU scores the same clips as here.

The samples travel squeezed (``common.squeeze``: lossless, about 64% of their size, so 30 MB of
audio takes about 19 MB of the trip) as ``<name>.i16.xz`` beside the index files; there
(``unpack``, run by ``recipes/gpu/run.sh audio``) they become the arrays the config's ``data``
paths name (``data/gpu/audio/...`` for the GPU configs).

    python recipes/gpu/pack_audio.py pack --config recipes/configs/audio_gan_gpu.yaml [--train-mb 30]
    python recipes/gpu/pack_audio.py unpack --config recipes/configs/audio_gan_gpu.yaml
"""

from __future__ import annotations

import json
import sys

import numpy as np

from common import ROOT, lacks, parser, recipe as load_recipe, squeeze, squeezed_path, unsqueeze


def _recipe():
    return load_recipe("train_audio")


def shares(lengths: list[int], budget: int) -> list[int]:
    """Samples to keep of each file: an even split of ``budget``, a file shorter than its share
    keeping all of itself and the others sharing what it leaves (water filling)."""
    keep = [0] * len(lengths)
    left, todo = budget, sorted(range(len(lengths)), key=lambda i: lengths[i])
    while todo:
        each = left // len(todo)
        i = todo.pop(0)
        keep[i] = min(lengths[i], each)
        left -= keep[i]
    return keep


def pack_train(array: np.ndarray, index: list[dict], budget: int, weights: dict[str, float]):
    cats = sorted({e["category"] for e in index})
    w = {c: float(weights.get(c, 0.0)) for c in cats}
    if not sum(w.values()):
        w = {c: 1.0 for c in cats}
    pieces, out_index, start = [], [], 0
    for cat in cats:
        entries = [e for e in index if e["category"] == cat]
        if not w[cat]:
            continue
        keep = shares([e["length"] for e in entries], int(budget * w[cat] / sum(w.values())))
        for e, n in zip(entries, keep):
            if n <= 0:
                continue
            offset = e["start"] + min((e["length"] - n), e["length"] // 4)
            pieces.append(np.asarray(array[offset:offset + n]))
            out_index.append({"source": e.get("source", ""), "category": cat, "start": start, "length": n})
            start += n
    return np.concatenate(pieces).astype(np.int16), out_index


def pack_val(array: np.ndarray, index: list[dict], clips: dict[str, int], length: int, recipe):
    chosen = recipe.validation_clips(array, index, clips, length)
    pieces, out_index, start = [], [], 0
    for cat, x in chosen.items():
        for clip in x[:, 0].numpy():
            pieces.append(np.round(clip * 32768.0).clip(-32768, 32767).astype(np.int16))
            out_index.append({"category": cat, "start": start, "length": length})
            start += length
    return np.concatenate(pieces), out_index


def main(argv=None) -> int:
    ap = parser(__doc__, what="audio (before squeezing)", megabytes=30.0, source="data/audio")
    args = ap.parse_args(argv)
    recipe = _recipe()
    cfg = recipe.load_config(args.config)
    dc = cfg["data"]
    if args.action == "unpack":
        for key in ("train", "val"):
            path = ROOT / dc[key]
            try:
                samples = unsqueeze(squeezed_path(path).read_bytes())
            except (OSError, ValueError) as e:
                print(f"{squeezed_path(path)}: {e}; pack it again here and carry it", file=sys.stderr)
                return 1
            np.save(path, samples)
            print(f"unpacked {squeezed_path(path).relative_to(ROOT)} -> {path.relative_to(ROOT)}")
        return 0
    src = ROOT / args.source
    if lacks(src, ("train_24k.npy", "train_index.json", "val_24k.npy", "val_index.json"), "fetch_audio.py"):
        return 1
    train = np.load(src / "train_24k.npy", mmap_mode="r")
    val = np.load(src / "val_24k.npy", mmap_mode="r")
    rate = int(cfg["model"].get("sample_rate", 24000))
    t_arr, t_index = pack_train(train, json.loads((src / "train_index.json").read_text()),
                                int(args.train_mb * 1e6) // 2, dc["weights"])
    v_arr, v_index = pack_val(val, json.loads((src / "val_index.json").read_text()), dc["val_clips"],
                              int(dc["val_seconds"] * rate), recipe)
    for key, arr, idx in (("train", t_arr, t_index), ("val", v_arr, v_index)):
        path, index_path = ROOT / dc[key], ROOT / dc[f"{key}_index"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)      # only the squeezed copy travels: no stale array beside it
        squeezed_path(path).write_bytes(squeeze(arr))
        index_path.write_text(json.dumps(idx, indent=0) + "\n")
        cats = {}
        for e in idx:
            cats[e["category"]] = cats.get(e["category"], 0) + e["length"]
        per = ", ".join(f"{c} {n / rate / 60:.1f} min" for c, n in sorted(cats.items()))
        print(f"{key}: {len(idx)} spans, {len(arr) / rate / 60:.1f} min ({per}), {arr.nbytes / 1e6:.1f} MB squeezed "
              f"to {squeezed_path(path).stat().st_size / 1e6:.1f} MB -> {squeezed_path(path).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
