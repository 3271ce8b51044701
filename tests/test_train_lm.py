"""recipes/train_lm.py end to end (the tiny config, about a minute): a small LM trained on
``unitok tokenize`` shards with ``unitok.lm``'s positions, blocks, labels and loss mask generates
documents that all decode with ``strict=True`` under ``tok.constraint``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import unitok
from unitok import lm
from unitok.data import TokenDataset

import lm_proof   # benchmarks/ is on the test path

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The tiny config, as the README runs it, into a temporary folder: (recipe, data dir, out dir)."""
    root = tmp_path_factory.mktemp("lm")
    recipe = lm_proof.recipe()          # recipes/train_lm.py as a module
    rc = recipe.main(["--config", str(ROOT / "recipes" / "configs" / "lm_tiny.yaml"), "--data", str(root / "data"),
                      "--out-dir", str(root / "out")])
    assert rc == 0
    return recipe, root / "data", root / "out"


def test_constrained_samples_all_decode_strictly(run):
    _, _, out = run
    report = json.loads((out / "report.json").read_text())
    s = report["samples"]["constrained"]
    assert s["n"] == 16 and s["strict"] == s["n"] and s["with_repairs"] == 0
    assert s["kinds"]["image"] + s["kinds"]["audio"] > 0          # it generates media, not only text
    samples = json.loads((out / "samples.json").read_text())
    free = samples["free"]
    assert all(not r["repairs"] for r in free if r["strict"])
    assert report["samples"]["free"]["strict"] == sum(r["strict"] for r in free)


def test_the_model_learns(run):
    _, _, out = run
    curve = json.loads((out / "loss.json").read_text())
    first, last = curve["val"][0][1], curve["val"][-1][1]
    assert last < 0.5 * first, curve
    assert (out / "model" / "model.safetensors").exists()
    picture = unitok.Image.open(out / "samples.png")
    assert picture.width > 8 * 64


@pytest.mark.parametrize("mode", ["uni", "mrope"])
def test_generation_positions_equal_lm_positions(run, mode):
    """The positions a sample is generated with are those it is trained with (lm.positions)."""
    recipe, data, _ = run
    tok, ds = unitok.load(data / "suite"), TokenDataset(data / "tokens")
    for g in (tok.constraint(image=(32, 32), audio=(32, 80), max_tokens=200), tok.constraint(max_tokens=200)):
        for i in range(4):
            tracker = recipe.PositionTracker(tok, mode, g)
            got = np.stack([tracker.push(int(t)) for t in ds[i]["ids"]])
            assert np.array_equal(got, lm.positions(ds.sequence(i), mode, tok=tok))


def test_the_results_section_reports_the_run(run):
    recipe, _, out = run
    report = json.loads((out / "report.json").read_text())
    cfg = recipe.load_config(ROOT / "recipes" / "configs" / "lm_tiny.yaml")
    body = lm_proof.section({"masked": report}, cfg, "benchmarks/plots/x.png", "python benchmarks/lm_proof.py").body
    assert "| loss mask (`lm.loss_mask`) | `tok.constraint(image=(32, 32), audio=(32, 80))` | 16/16 (100%) |" in body
    assert "- Command: `python benchmarks/lm_proof.py`" in body and "![LM samples](plots/x.png)" in body
