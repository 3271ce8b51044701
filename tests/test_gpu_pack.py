"""recipes/gpu/pack_audio.py: the training audio packed small enough to travel to a GPU machine,
in the layout the audio recipe reads, with exactly the validation clips of the full split."""

import json
import lzma
from pathlib import Path

import numpy as np
import pytest
import torch

import common
import pack_audio as pack      # recipes/gpu/ (found through pytest's pythonpath)
import pack_images as images
import pack_video as video


def _split(seed: int, lengths: dict[str, list[int]]):
    rng = np.random.default_rng(seed)
    index, start = [], 0
    for cat, ls in lengths.items():
        for i, n in enumerate(ls):
            index.append({"source": f"{cat}{i}.ogg", "category": cat, "start": start, "length": n})
            start += n
    return rng.integers(-20000, 20000, start).astype(np.int16), index


def test_shares_fill_short_files_whole_and_split_the_rest():
    assert pack.shares([10, 1000, 1000], 610) == [10, 300, 300]
    assert pack.shares([5, 5], 100) == [5, 5]
    assert sum(pack.shares([400, 7, 90, 3000], 1000)) == 1000


def test_packed_training_audio_keeps_categories_spans_and_budget():
    array, index = _split(0, {"speech": [3000, 500, 8000], "music": [20000], "effects": [100]})
    out, spans = pack.pack_train(array, index, 6000, {"speech": 0.5, "music": 0.35, "effects": 0.15})
    assert len(out) <= 6000 and out.dtype == np.int16
    assert sorted({s["category"] for s in spans}) == ["effects", "music", "speech"]
    assert sum(s["length"] for s in spans if s["category"] == "speech") == 3000
    for s in spans:   # every span is a piece of its own source file, in order, back to back
        src = next(e for e in index if e["source"] == s["source"])
        piece = out[s["start"]:s["start"] + s["length"]]
        assert any(np.array_equal(piece, array[src["start"] + o:src["start"] + o + len(piece)])
                   for o in range(src["length"] - len(piece) + 1))
    assert [s["start"] for s in spans] == list(np.cumsum([0] + [s["length"] for s in spans[:-1]]))


def test_packed_validation_scores_the_same_clips(tmp_path):
    recipe = pack._recipe()
    array, index = _split(1, {"speech": [5000, 7000, 3000], "music": [9000, 4000]})
    clips, length = {"speech": 4, "music": 3}, 1200
    packed, spans = pack.pack_val(array, index, clips, length, recipe)
    want = recipe.validation_clips(array, index, clips, length)
    got = recipe.validation_clips(packed, spans, clips, length)
    assert all(torch.equal(want[c], got[c]) for c in clips)
    json.dumps(spans)   # the index is written as JSON


def test_squeezed_samples_come_back_exactly_and_smaller():
    t = np.arange(48_000) / 24_000
    rng = np.random.default_rng(4)
    speechlike = (8000 * np.sin(2 * np.pi * 180 * t) * np.sin(2 * np.pi * 3 * t) + rng.normal(0, 300, t.size))
    extremes = np.array([-32768, 32767, -32768, 32767, 0, -1, 1], np.int16)   # differences that wrap
    for x in (speechlike.round().astype(np.int16), extremes, np.zeros(0, np.int16),
              rng.integers(-32768, 32768, 5000).astype(np.int16)):
        back = common.unsqueeze(common.squeeze(x))
        assert back.dtype == np.int16 and np.array_equal(back, x)
    assert len(common.squeeze(speechlike.round().astype(np.int16))) < 0.75 * speechlike.size * 2
    assert common.squeezed_path(Path("data/gpu/audio/train_24k.npy")) == Path("data/gpu/audio/train_24k.i16.xz")
    for damaged in (b"not lzma at all", common.squeeze(extremes)[:-9], lzma.compress(b"odd")):
        with pytest.raises(ValueError, match="not a squeezed array"):
            common.unsqueeze(damaged)


def test_packed_audio_unpacks_into_the_arrays_the_recipe_reads(tmp_path, monkeypatch, capsys):
    array, index = _split(5, {"speech": [30000, 20000], "music": [40000]})
    src = tmp_path / "full"
    src.mkdir()
    np.save(src / "train_24k.npy", array)
    np.save(src / "val_24k.npy", array)
    for name in ("train_index.json", "val_index.json"):
        (src / name).write_text(json.dumps(index))
    cfg = {"model": {"sample_rate": 24000}, "data": {
        "train": "gpu/train_24k.npy", "train_index": "gpu/train_index.json", "val": "gpu/val_24k.npy",
        "val_index": "gpu/val_index.json", "weights": {"speech": 0.5, "music": 0.5}, "val_clips": {"speech": 2,
        "music": 1}, "val_seconds": 0.1}}
    recipe = pack._recipe()
    monkeypatch.setattr(recipe, "load_config", lambda path: cfg)
    monkeypatch.setattr(pack, "_recipe", lambda: recipe)
    monkeypatch.setattr(pack, "ROOT", tmp_path)
    (tmp_path / "gpu").mkdir()
    np.save(tmp_path / "gpu" / "train_24k.npy", np.ones(3, np.int16))    # a stale array from an earlier pack
    assert pack.main(["pack", "--config", "x.yaml", "--source", "full", "--train-mb", "0.1"]) == 0
    assert sorted(p.name for p in (tmp_path / "gpu").iterdir()) == [
        "train_24k.i16.xz", "train_index.json", "val_24k.i16.xz", "val_index.json"]   # only what travels
    good = (tmp_path / "gpu" / "train_24k.i16.xz").read_bytes()
    (tmp_path / "gpu" / "train_24k.i16.xz").write_bytes(good[:100])            # cut short on the way
    assert pack.main(["unpack", "--config", "x.yaml"]) == 1
    assert "train_24k.i16.xz" in capsys.readouterr().err
    (tmp_path / "gpu" / "train_24k.i16.xz").write_bytes(good)
    assert pack.main(["unpack", "--config", "x.yaml"]) == 0
    spans = json.loads((tmp_path / "gpu" / "train_index.json").read_text())
    train = np.load(tmp_path / "gpu" / "train_24k.npy")
    want, _ = pack.pack_train(array, index, 50_000, cfg["data"]["weights"])
    assert np.array_equal(train, want) and sum(s["length"] for s in spans) == len(train)
    val_spans = json.loads((tmp_path / "gpu" / "val_index.json").read_text())
    got = recipe.validation_clips(np.load(tmp_path / "gpu" / "val_24k.npy"), val_spans, cfg["data"]["val_clips"], 2400)
    ref = recipe.validation_clips(array, index, cfg["data"]["val_clips"], 2400)
    assert all(torch.equal(ref[c], got[c]) for c in ref)


def test_packed_crops_round_trip_through_jpeg_within_the_budget():
    g = torch.Generator().manual_seed(2)
    smooth = torch.nn.functional.interpolate(torch.rand(130, 3, 4, 4, generator=g), size=(16, 16), mode="bilinear")
    crops = (smooth * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()      # [130, 16, 16, 3]
    data, offsets = images.pack_crops(crops, budget=10_000)
    n = len(offsets) - 1
    assert 5 < n < 65 and offsets[-1] == len(data) <= 10_000
    back = images.unpack_crops(data, offsets)
    assert back.shape == (n, 16, 16, 3) and back.dtype == np.uint8
    # each crop comes back close to its original (JPEG q95), and a small budget still takes crops
    # from all over the array
    error = np.array([[np.abs(c.astype(int) - b.astype(int)).mean() for c in crops] for b in back])
    picked = error.argmin(1)
    assert (error.min(1) < 10).all() and (np.sort(error, 1)[:, 1] > 30).all()
    assert picked.tolist() == images.spread_order(130)[:n].tolist()
    assert np.diff(np.sort(picked)).max() <= 2 * 130 / n and picked.max() - picked.min() > 100


def test_spread_order_prefixes_cover_the_range():
    order = images.spread_order(4005)
    assert sorted(order.tolist()) == list(range(4005))
    for n in (10, 65, 1217):
        gaps = np.diff(np.sort(order[:n]))
        assert gaps.max() <= 2 * 4005 / n + 1


def test_packed_clips_keep_whole_windows_within_the_budget():
    g = torch.Generator().manual_seed(3)
    smooth = torch.nn.functional.interpolate(torch.rand(40, 3, 4, 4, generator=g), size=(24, 24), mode="bilinear")
    clips = (smooth * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy().reshape(8, 5, 24, 24, 3)
    assert np.array_equal(video.window(clips, 3, 3, 16), video.window(clips, 3, 3, 16))   # placed by the index
    windows = [video.window(clips, i, 3, 16) for i in range(8)]
    data, offsets, shape = video.encode_clips(windows, budget=6_000)
    n = (len(offsets) - 1) // 3
    assert shape == (3, 16, 16, 3) and 0 < n < 8 and len(offsets) - 1 == 3 * n and len(data) <= 6_000
    back = video.decode_clips(data, offsets, shape)
    assert back.shape == (n, 3, 16, 16, 3)
    assert all(np.abs(b.astype(int) - w.astype(int)).mean() < 10 for b, w in zip(back, windows))
