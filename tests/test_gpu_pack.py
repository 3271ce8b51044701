"""recipes/gpu/pack_audio.py: the training audio packed small enough to travel to a GPU machine,
in the layout the audio recipe reads, with exactly the validation clips of the full split."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pack = _module(ROOT / "recipes" / "gpu" / "pack_audio.py", "pack_audio")


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
