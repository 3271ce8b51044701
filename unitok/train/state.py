"""Training state on disk without pickle: optimizer state as safetensors + JSON, and a
checkpoint folder that is swapped in only once complete (a kill never leaves a broken one)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..checkpoint import config_to_dict, save_tensors
from ..errors import ConfigError


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict, dict]:
    """Adam state as flat tensors (no pickle) + the JSON-able rest."""
    sd = opt.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "scalars": {}}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                meta["scalars"][f"{pid}.{k}"] = v
    return tensors, meta


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict, prefix: str) -> None:
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_training_state(ckpt: Path, model, opt: torch.optim.Optimizer, state: dict, disc=None, opt_d=None) -> None:
    """Write ``ckpt`` (model folder + optimizer.safetensors + discriminator + state.json) via a
    temporary folder swapped in only once complete: a kill never leaves a broken checkpoint.
    ``state`` (JSON-able) gets the optimizers' non-tensor state added. Shared by the recipes."""
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tensors, state["optimizer"] = optimizer_tensors(opt, "model")
    if disc is not None:
        dmod = disc.module if hasattr(disc, "module") else disc
        save_tensors(tmp / "discriminator.safetensors",
                     {k: v.detach().cpu().contiguous() for k, v in dmod.state_dict().items()})
        t_d, state["optimizer_d"] = optimizer_tensors(opt_d, "disc")
        tensors.update(t_d)
    save_tensors(tmp / "optimizer.safetensors", tensors)
    (tmp / "state.json").write_text(json.dumps(state, default=str) + "\n")
    old = ckpt.with_name(ckpt.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if ckpt.exists():
        ckpt.rename(old)
    tmp.rename(ckpt)
    shutil.rmtree(old, ignore_errors=True)


def load_training_state(ckpt: Path, model, opt: torch.optim.Optimizer, disc=None, opt_d=None) -> dict:
    """Inverse of :func:`save_training_state`: load the weights and optimizer state into the given
    objects (the model's config must equal the checkpoint's) and return ``state.json``."""
    if not (ckpt / "state.json").exists():
        raise ConfigError(f"{ckpt}: nothing to resume (no state.json); drop --resume to start fresh")
    state = json.loads((ckpt / "state.json").read_text())
    loaded = type(model).from_pretrained(ckpt)
    if config_to_dict(loaded.cfg) != config_to_dict(model.cfg):
        raise ConfigError(f"{ckpt}: the checkpoint's model config differs from the YAML's 'model' section; "
                          f"resume with the config it was trained with, or start a new out_dir")
    model.load_state_dict(loaded.state_dict())
    tensors = load_file(str(ckpt / "optimizer.safetensors"))
    load_optimizer(opt, tensors, state["optimizer"], "model")
    if disc is not None and (ckpt / "discriminator.safetensors").exists():
        disc.load_state_dict(load_file(str(ckpt / "discriminator.safetensors")))
        load_optimizer(opt_d, tensors, state["optimizer_d"], "disc")
    return state


def warm_start(model: torch.nn.Module, source: dict[str, torch.Tensor]) -> list[str]:
    """Copy every tensor of ``source`` whose name and shape match into ``model`` (so a model with a
    new decoder can start from an old model's encoder and codebooks); returns the top-level
    modules left untouched, ``"name (k of n tensors)"`` for one left partly untouched. A source
    that shares no parameter with the model is an error."""
    own = model.state_dict()
    match = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    params = dict(model.named_parameters())
    # parameters only: a few matching buffers (a quantizer's fixed levels) are not a start
    shared = sum(params[k].numel() for k in params.keys() & match.keys()) / sum(p.numel() for p in params.values())
    if not shared:
        raise ConfigError("--init: the checkpoint shares no weights with this model's config (no parameter has "
                          "the same name and shape)")
    if shared < 0.05:   # a bias or two of the same shape: another architecture, not a warm start
        raise ConfigError(f"--init: the checkpoint holds only {100 * shared:.1f}% of this model's weights (by name "
                          f"and shape); it is another architecture than the config's")
    model.load_state_dict(match, strict=False)
    fresh = []
    for module in sorted({k.split(".")[0] for k in own if k not in match}):
        keys = [k for k in own if k.split(".")[0] == module]
        new = sum(k not in match for k in keys)
        fresh.append(module if new == len(keys) else f"{module} ({new} of {len(keys)} tensors)")
    return fresh
