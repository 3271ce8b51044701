"""What the recipes share: the learning-rate schedule, over the step or time budget ("budget") or
over the steps alone ("steps", the same rate at every step on any machine and under any load); the
config's values checked against their defaults' kinds and ranges, with the file and the key named."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest

from unitok.errors import ConfigError
from unitok.train import lr_at

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

TRAIN = {"lr": 1.0, "min_lr_ratio": 0.1, "warmup": 10, "steps": 110, "time_limit_min": 10.0}


def test_warm_up_then_cosine_over_the_steps():
    tc = {**TRAIN, "time_limit_min": None}
    assert lr_at(0, 0.0, tc) == pytest.approx(0.1)
    assert lr_at(9, 0.0, tc) == pytest.approx(1.0)
    assert lr_at(10, 0.0, tc) == pytest.approx(1.0)
    assert lr_at(60, 0.0, tc) == pytest.approx(0.1 + 0.9 * 0.5)        # half way: cos(pi / 2) = 0
    assert lr_at(110, 0.0, tc) == pytest.approx(0.1)
    assert lr_at(500, 0.0, tc) == pytest.approx(0.1)                      # stays at the floor


def test_budget_schedule_follows_whichever_budget_is_nearer_its_end():
    # 5 of 10 minutes gone but only 10% of the steps: the clock decides
    assert lr_at(20, 300.0, TRAIN) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(20, 300.0, {**TRAIN, "schedule": "budget"}) == pytest.approx(lr_at(20, 300.0, TRAIN))
    # a slower machine (more minutes for the same step) gets a lower rate at that step
    assert lr_at(20, 450.0, TRAIN) < lr_at(20, 300.0, TRAIN)


def test_steps_schedule_ignores_the_clock():
    tc = {**TRAIN, "schedule": "steps"}
    expected = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 10 / 100))
    for elapsed in (0.0, 300.0, 600.0, 6000.0):
        assert lr_at(20, elapsed, tc) == pytest.approx(expected)


def test_unknown_schedule_is_refused_by_name():
    with pytest.raises(ConfigError, match="train.schedule.*'wallclock'.*budget.*steps"):
        lr_at(20, 0.0, {**TRAIN, "schedule": "wallclock"})


@pytest.mark.parametrize("recipe,config", [("train_image", "image_tiny.yaml"), ("train_video", "video_tiny.yaml"),
                                           ("train_audio", "audio_tiny.yaml"), ("train_lm", "lm_tiny.yaml")])
def test_every_recipe_reads_the_schedule(recipe, config, tmp_path):
    spec = importlib.util.spec_from_file_location(recipe, RECIPES / f"{recipe}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[recipe] = module          # the recipes' dataclasses look their module up there
    spec.loader.exec_module(module)
    configs = RECIPES / "configs"
    assert module.load_config(configs / config)["train"]["schedule"] == "budget"
    assert module.load_config(configs / config, {"train": {"schedule": "steps"}})["train"]["schedule"] == "steps"
    bad = tmp_path / "bad.yaml"
    bad.write_text((configs / config).read_text().replace("train:\n", "train:\n  schedule: hours\n", 1))
    with pytest.raises(ConfigError, match="schedule"):
        module.load_config(bad)


def test_schedule_flag_overrides_the_config():
    from unitok.train import cli_overrides, recipe_parser

    ap = recipe_parser("image", "data", "synthetic")
    overrides = cli_overrides(ap.parse_args(["--config", "x.yaml", "--schedule", "steps"]))
    assert overrides == {"train": {"schedule": "steps"}}
    assert cli_overrides(ap.parse_args(["--config", "x.yaml"])) == {}
    with pytest.raises(SystemExit):
        ap.parse_args(["--config", "x.yaml", "--schedule", "hours"])


def _load(recipe: str):
    spec = importlib.util.spec_from_file_location(recipe, RECIPES / f"{recipe}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[recipe] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("line,fix,message", [
    ("  lr: 2.0e-3", "  lr: fast", "train.lr must be a number, got 'fast'"),
    ("  batch_size: 8", '  batch_size: "8"', "train.batch_size must be a whole number, got '8'"),
    ("  steps: 200", "  steps: 2.5", "train.steps must be a whole number, got 2.5"),
    ("  steps: 200", "  steps: -5", "train.steps must be at least 0, got -5"),
    ("  steps: 200", "  steps: true", "train.steps must be a whole number, got True"),
])
def test_wrong_kinds_and_ranges_name_the_file_and_key(line, fix, message, tmp_path):
    module = _load("train_image")
    text = (RECIPES / "configs" / "image_tiny.yaml").read_text()
    assert line + "\n" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(line + "\n", fix + "\n", 1))
    with pytest.raises(ConfigError, match=f"bad.yaml: {re.escape(message)}"):
        module.load_config(bad)


def test_numbers_are_read_as_the_default_expects(tmp_path):
    module = _load("train_image")
    text = (RECIPES / "configs" / "image_tiny.yaml").read_text().replace("  lr: 2.0e-3\n", "  lr: 2e-3\n", 1)
    (tmp_path / "c.yaml").write_text(text)
    cfg = module.load_config(tmp_path / "c.yaml")      # PyYAML reads 2e-3 as a string: taken as a number
    assert cfg["train"]["lr"] == 0.002 and isinstance(cfg["train"]["lr"], float)


@pytest.mark.parametrize("recipe,config,what", [("train_image", "image_tiny.yaml", "training crops"),
                                                ("train_video", "video_tiny.yaml", "training clips"),
                                                ("train_audio", "audio_tiny.yaml", "training audio")])
def test_data_flag_turns_generated_data_off(recipe, config, what, tmp_path, capsys):
    """The tiny configs train on generated data; --data names your own, which is then read (a
    missing file is an error, not a run on generated data)."""
    module = _load(recipe)
    missing = tmp_path / "nope.npy"
    code = module.main(["--config", str(RECIPES / "configs" / config), "--out-dir", str(tmp_path / "run"),
                        "--data", str(missing), "--steps", "2"])
    assert code == 2 and f"{missing}: {what} not found" in capsys.readouterr().err
