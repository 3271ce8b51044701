"""The command line the recipes share and the ``main`` around it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..errors import ConfigError
from .runtime import SCHEDULES


def recipe_parser(modality: str, data_help: str, synthetic_help: str) -> argparse.ArgumentParser:
    """The command line the recipes share: ``--config``, ``--resume`` and the overrides that
    :func:`cli_overrides` reads; a recipe adds its export options."""
    ap = argparse.ArgumentParser(prog=f"unitok train {modality}",
                                 description=f"Train {'an' if modality[0] in 'aeiou' else 'a'} {modality} tokenizer.")
    ap.add_argument("--config", required=True, help=f"YAML config (recipes/configs/{modality}_*.yaml)")
    ap.add_argument("--resume", action="store_true", help="continue from <out_dir>/checkpoint")
    ap.add_argument("--out-dir", help="override log.out_dir")
    ap.add_argument("--steps", type=int, help="override train.steps")
    ap.add_argument("--time-limit-min", type=float, help="override train.time_limit_min")
    ap.add_argument("--schedule", choices=SCHEDULES,
                    help="override train.schedule: the cosine over the step or time budget, whichever ends "
                         "first (budget), or over train.steps alone, the same on any machine (steps)")
    ap.add_argument("--data", help=data_help + "; turns data.synthetic off")
    ap.add_argument("--synthetic", action="store_true", help=synthetic_help)
    return ap


def cli_overrides(args: argparse.Namespace) -> dict:
    """Config overrides from the options of :func:`recipe_parser`."""
    overrides: dict = {}
    if args.out_dir:
        overrides.setdefault("log", {})["out_dir"] = args.out_dir
    if args.steps is not None:
        overrides.setdefault("train", {})["steps"] = args.steps
    if args.time_limit_min is not None:
        overrides.setdefault("train", {})["time_limit_min"] = args.time_limit_min
    if args.schedule:
        overrides.setdefault("train", {})["schedule"] = args.schedule
    if args.data:   # your own data: a config that trains on generated data (the tiny ones) takes it too
        overrides.setdefault("data", {}).update(train=args.data, synthetic=False)
    if args.synthetic:
        overrides.setdefault("data", {})["synthetic"] = True
    return overrides


def run_recipe(args: argparse.Namespace, load_config, train, export=None) -> int:
    """A recipe's ``main`` after parsing: the YAML config with the command line's overrides, then
    ``export(cfg)`` when given, else ``train(cfg, resume=args.resume)``. A ``ConfigError`` prints
    its message and gives exit status 2."""
    try:
        cfg = load_config(args.config, cli_overrides(args))
        if export is not None:
            export(cfg)
        else:
            train(cfg, resume=args.resume)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


EXPORT_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": None}


def export_checkpoint(model_class: type, src: str | Path, dst: str | Path, dtype: str = "float16") -> Path:
    """Write the checkpoint folder ``src`` (e.g. ``<out_dir>/best``) to ``dst`` as a bundle-ready
    model (``config.json`` + ``model.safetensors`` in ``dtype``); returns the weights file."""
    if dtype not in EXPORT_DTYPES:
        raise ConfigError(f"export.dtype must be one of {sorted(EXPORT_DTYPES)}, got {dtype!r}")
    model_class.from_pretrained(src).save_pretrained(dst, dtype=EXPORT_DTYPES[dtype])
    return Path(dst) / "model.safetensors"


def save_final(model, out_dir: str | Path, dtype: str = "float16") -> int:
    """Write the model at the end of a run to ``<out_dir>/final`` in ``dtype``; returns its size in bytes."""
    final = Path(out_dir) / "final"
    model.save_pretrained(final, dtype=EXPORT_DTYPES[dtype])
    return (final / "model.safetensors").stat().st_size
