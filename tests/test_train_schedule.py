"""The recipes' learning-rate schedule: over the step or time budget ("budget"), or over the steps
alone ("steps"), which gives the same rate at every step on any machine and under any load."""

from __future__ import annotations

import importlib.util
import math
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
