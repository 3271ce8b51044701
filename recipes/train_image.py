"""Train an image tokenizer (``unitok.image.ImageTokenizer``).

A self-contained recipe in the torchtune style: read a YAML config, build plain PyTorch modules,
loop. Runs on a CPU (``tiny``, ``default``) or on GPUs under ``torchrun`` (``large``)::

    python recipes/train_image.py --config recipes/configs/image_tiny.yaml
    python recipes/train_image.py --config recipes/configs/image_default.yaml [--resume]
    torchrun --nproc_per_node 8 recipes/train_image.py --config recipes/configs/image_large.yaml
    unitok train image --config recipes/configs/image_default.yaml        # the same, via the CLI

Data: ``recipes/data/fetch_images.py`` writes ``data/images/train_256.npy`` (uint8 [N, 256, 256,
3] crops of the training photos) and ``heldout_256.npy`` (crops of the held-out photos, used for
validation only). Losses: L1 + L2 on pixels, 1 - SSIM (or MS-SSIM), the quantizer's own losses,
and, after ``loss.gan_start`` steps, a hinge PatchGAN loss with VQGAN's adaptive weight.

Output folder (``log.out_dir``)::

    log.txt                 everything printed
    checkpoint/             latest state: the model (config.json + model.safetensors, fp32),
                            optimizer.safetensors, discriminator/ and state.json; --resume reads it
    best/                   the model with the best held-out PSNR so far (fp32)
    final/                  the model at the end, fp16 (export.dtype): what gets bundled
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from unitok.checkpoint import config_from_dict, config_to_dict
from unitok.errors import ConfigError
from unitok.image import ImageTokenizer, ImageTokenizerConfig
from unitok.metrics import code_histogram, codebook_usage, perplexity, psnr, ssim
from unitok.nn import PatchDiscriminator, adaptive_gan_weight, hinge_d_loss, hinge_g_loss, structural_loss

DEFAULTS = {
    "model": {},
    "data": {"train": "data/images/train_256.npy", "val": "data/images/heldout_256.npy", "crop": 256,
             "limit": None, "val_limit": 64, "synthetic": False},
    "train": {"batch_size": 8, "lr": 4e-4, "min_lr_ratio": 0.1, "warmup": 200, "steps": 100000,
              "time_limit_min": None, "betas": [0.9, 0.99], "weight_decay": 0.0, "grad_clip": 1.0,
              "amp": True, "channels_last": True, "seed": 0, "num_threads": None, "device": "auto"},
    "loss": {"l1": 1.0, "l2": 10.0, "structural": 0.2, "structural_kind": "ssim", "quantizer": 1.0,
             "gan": 0.0, "gan_start": 10000, "disc_lr": 1e-4, "disc_channels": 64, "disc_layers": 3,
             "adaptive_gan_weight": True},
    "log": {"out_dir": "data/train_image", "every": 50, "val_every": 500, "checkpoint_every_min": 5.0},
    "export": {"dtype": "float16"},
}


# -- config -------------------------------------------------------------------------------------


def load_config(path: str | Path, overrides: dict | None = None) -> dict:
    """YAML -> nested dict with this recipe's defaults filled in; unknown sections or keys raise."""
    return read_config(path, DEFAULTS, ImageTokenizerConfig, overrides)


def read_config(path: str | Path, defaults: dict, model_class: type, overrides: dict | None = None) -> dict:
    """YAML -> nested dict with a recipe's ``defaults`` filled in and ``cfg["model_config"]`` built as
    ``model_class``; unknown sections or keys raise. Shared by the recipes."""
    path = Path(path)
    try:
        user = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(user, dict):
        raise ConfigError(f"{path}: expected a mapping with sections {sorted(defaults)}")
    cfg = json.loads(json.dumps(defaults))
    for section, values in [*user.items(), *(overrides or {}).items()]:
        if section not in defaults:
            raise ConfigError(f"{path}: unknown section {section!r}; valid: {sorted(defaults)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping")
        if section != "model":
            unknown = set(values) - set(defaults[section])
            if unknown:
                raise ConfigError(f"{path}: unknown option(s) {sorted(unknown)} in {section!r}; valid: "
                                  f"{sorted(defaults[section])}")
        if section == "model" and isinstance(values.get("quantizer"), dict):
            values = {**values, "quantizer": {**cfg["model"].get("quantizer", {}), **values["quantizer"]}}
        cfg[section].update(values)
    cfg["model_config"] = config_from_dict(model_class, cfg["model"], source=f"{path}: model")
    return cfg


# -- data ---------------------------------------------------------------------------------------


def synthetic_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 [n, size, size, 3] smooth random pictures (blurred noise, gradients, discs and edges):
    a stand-in for photos in tests and when no data has been fetched."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        low = F.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(size, size), mode="bicubic", align_corners=False)[0]
        mid = F.interpolate(torch.rand(1, 3, 16, 16, generator=g), size=(size, size), mode="bilinear", align_corners=False)[0]
        img = 0.6 * low + 0.25 * mid
        for _ in range(3):
            cx, cy, r = (torch.rand(3, generator=g) * torch.tensor([2, 2, 0.5]) - torch.tensor([1, 1, -0.1])).tolist()
            col = torch.rand(3, 1, 1, generator=g)
            mask = (((xx - cx) ** 2 + (yy - cy) ** 2) < r * r).float()
            img = img * (1 - mask) + col * mask
        out[i] = img
    return (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


class CropSampler:
    """Random batches of crops from a uint8 [N, S, S, 3] array (memory-mapped), with random
    horizontal flips; each DDP rank draws from its own generator."""

    def __init__(self, array: np.ndarray, crop: int, batch_size: int, seed: int):
        if array.ndim != 4 or array.shape[-1] != 3 or array.shape[1] < crop or array.shape[2] < crop:
            raise ConfigError(f"training data must be uint8 [N, H, W, 3] with H, W >= data.crop={crop}, got "
                              f"{array.shape}")
        self.array, self.crop, self.batch_size = array, crop, batch_size
        self.rng = np.random.default_rng(seed)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def next(self) -> torch.Tensor:
        """-> [B, 3, crop, crop] float in [0, 1]."""
        idx = np.sort(self.rng.integers(0, len(self.array), self.batch_size))  # sorted: friendlier to mmap
        N, H, W, _ = self.array.shape
        c = self.crop
        batch = np.empty((self.batch_size, c, c, 3), dtype=np.uint8)
        for j, i in enumerate(idx):
            t, l = self.rng.integers(0, H - c + 1), self.rng.integers(0, W - c + 1)
            crop = self.array[i, t:t + c, l:l + c]
            batch[j] = crop[:, ::-1] if self.rng.random() < 0.5 else crop
        return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255)


def open_array(path: str, what: str) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: {what} not found; run `python recipes/data/fetch_images.py` first, or set "
                          f"data.synthetic: true to train on generated pictures")
    return np.load(p, mmap_mode="r")


# -- optimizer state in safetensors -------------------------------------------------------------


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
    from safetensors.torch import save_file

    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tensors, state["optimizer"] = optimizer_tensors(opt, "model")
    if disc is not None:
        dmod = disc.module if hasattr(disc, "module") else disc
        save_file({k: v.detach().cpu().contiguous() for k, v in dmod.state_dict().items()},
                  str(tmp / "discriminator.safetensors"))
        t_d, state["optimizer_d"] = optimizer_tensors(opt_d, "disc")
        tensors.update(t_d)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
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
    from safetensors.torch import load_file

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


# -- training -----------------------------------------------------------------------------------


class Logger:
    def __init__(self, path: Path | None):
        self.file = open(path, "a") if path is not None else None

    def __call__(self, msg: str) -> None:
        print(msg, flush=True)
        if self.file is not None:
            self.file.write(msg + "\n")
            self.file.flush()


class ThreadTuner:
    """Picks the CPU thread count that gives the most steps per second, re-checked now and then:
    on a shared machine a second thread that must wait for a busy core makes every step several
    times slower than one thread would."""

    def __init__(self, choices: list[int], probe: int = 20, every: int = 200):
        self.choices, self.probe, self.every = choices, probe, every
        self.speed: dict[int, float] = {}
        self.trying = list(choices)          # probe every choice first
        self.current = self.trying.pop()
        self.count, self.since, self.t = 0, 0, time.time()
        torch.set_num_threads(self.current)

    def step(self, step: int) -> None:
        self.count += 1
        if self.count < self.probe:
            return
        speed = self.count / (time.time() - self.t)
        dropped = self.current in self.speed and speed < 0.7 * self.speed[self.current]
        self.speed[self.current] = speed
        self.since += self.count
        if not self.trying and (dropped or self.since >= self.every):
            self.trying = [c for c in self.choices if c != self.current]
            self.since = 0
        nxt = self.trying.pop() if self.trying else max(self.speed, key=self.speed.get)
        if nxt != torch.get_num_threads():
            torch.set_num_threads(nxt)
        self.current, self.count, self.t = nxt, 0, time.time()


def lr_at(step: int, elapsed: float, tc: dict) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr`` over the step or time budget
    (whichever is closer to its end)."""
    if step < tc["warmup"]:
        return tc["lr"] * (step + 1) / tc["warmup"]
    progress = (step - tc["warmup"]) / max(1, tc["steps"] - tc["warmup"])
    if tc["time_limit_min"]:
        progress = max(progress, elapsed / (60 * tc["time_limit_min"]))
    progress = min(1.0, progress)
    r = tc["min_lr_ratio"]
    return tc["lr"] * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * progress)))


def setup_runtime(tc: dict) -> tuple[int, int, torch.device, ThreadTuner | None]:
    """DDP, the device, CPU threads and the seed from a recipe's ``train`` section. Returns (rank,
    world size, device, thread tuner or None)."""
    rank, world, local_rank = _ddp()
    if tc["device"] == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(tc["device"])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # denormal floats (tiny gradients of the zero-initialised blocks) are 10-100x slower on CPUs
    torch.set_flush_denormal(True)
    tuner = None
    if tc["num_threads"] == "adaptive" and device.type == "cpu":
        tuner = ThreadTuner(list(range(1, os.cpu_count() + 1)))
    elif tc["num_threads"] and tc["num_threads"] != "adaptive":
        torch.set_num_threads(int(tc["num_threads"]))
    torch.manual_seed(tc["seed"] + rank)
    return rank, world, device, tuner


def tokenizer_step(raw_model, recon: torch.Tensor, x: torch.Tensor, aux: torch.Tensor, lc: dict, step: int,
                   opt: torch.optim.Optimizer, grad_clip: float, disc=None, opt_d=None, amp: bool = False,
                   structural=structural_loss) -> dict[str, torch.Tensor]:
    """One optimisation step of a pixel tokenizer (and its discriminator) from a forward pass.

    recon, x: [N, 3, H, W] in [0, 1] (recon fp32); aux: the quantizer's loss. Loss: L1 + L2 +
    ``structural(recon, x, kind)`` + quantizer loss, and from ``loss.gan_start`` on a hinge GAN
    loss with VQGAN's adaptive weight (at ``raw_model.decoder.last_layer``); then a discriminator
    step. Returns the detached losses: loss, rec (the reconstruction part), l1, l2, struct,
    quant, gan, d. Shared by the image and video recipes."""
    dev = recon.device.type
    l1 = (recon - x).abs().mean()
    l2 = (recon - x).pow(2).mean()
    st = structural(recon.clamp(0, 1), x, lc["structural_kind"]) if lc["structural"] > 0 else recon.new_zeros(())
    rec = lc["l1"] * l1 + lc["l2"] * l2 + lc["structural"] * st
    loss = rec + lc["quantizer"] * aux
    gan_on = disc is not None and step >= lc["gan_start"]
    g_loss = recon.new_zeros(())
    if gan_on:
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=amp):
            g_loss = hinge_g_loss(disc(recon * 2 - 1).float())
        w = lc["gan"]
        if lc["adaptive_gan_weight"]:
            w = w * adaptive_gan_weight(rec, g_loss, raw_model.decoder.last_layer)
        loss = loss + w * g_loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(raw_model.parameters(), grad_clip)
    opt.step()
    d_loss = recon.new_zeros(())
    if gan_on:
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=amp):
            d_loss = hinge_d_loss(disc(x * 2 - 1).float(), disc(recon.detach() * 2 - 1).float())
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
    out = {"loss": loss, "rec": rec, "l1": l1, "l2": l2, "struct": st, "quant": aux, "gan": g_loss, "d": d_loss}
    return {k: v.detach() for k, v in out.items()}


class StepWindow:
    """Mean losses, train PSNR and codebook usage over the steps between two log lines."""

    KEYS = ("loss", "l1", "l2", "struct", "quant", "gan", "d", "psnr")

    def __init__(self, codebook_size: int):
        self.hist = torch.zeros(codebook_size, dtype=torch.float64)
        self.reset()

    def reset(self) -> None:
        self.sums = dict.fromkeys(self.KEYS, 0.0)
        self.n = 0
        self.hist.zero_()
        self.t = time.time()

    @torch.no_grad()
    def add(self, losses: dict, recon: torch.Tensor, x: torch.Tensor, codes) -> None:
        for k in self.KEYS[:-1]:
            self.sums[k] += float(losses[k])
        self.sums["psnr"] += float(psnr(recon.clamp(0, 1), x).mean())
        self.n += 1
        self.hist += code_histogram(codes, len(self.hist))

    def mean(self, key: str) -> float:
        return self.sums[key] / max(1, self.n)

    def line(self, step: int, elapsed: float, lr: float) -> str:
        """The log line of this window; starts the next window."""
        m = {k: self.mean(k) for k in self.KEYS}
        sps = self.n / max(1e-9, time.time() - self.t)
        line = (f"step {step} | {elapsed / 60:.1f} min | {sps:.2f} steps/s | lr {lr:.2e} | loss {m['loss']:.4f} "
                f"l1 {m['l1']:.4f} l2 {m['l2']:.5f} struct {m['struct']:.4f} "
                f"quant {m['quant']:.4f} gan {m['gan']:.3f} d {m['d']:.3f} | "
                f"train psnr {m['psnr']:.2f} | usage {codebook_usage(self.hist):.3f} "
                f"perplexity {perplexity(self.hist):.1f} | threads {torch.get_num_threads()}")
        self.reset()
        return line


@torch.no_grad()
def evaluate(model: ImageTokenizer, val: torch.Tensor, batch_size: int, device) -> dict:
    """Held-out PSNR / SSIM (on outputs rounded to uint8, as a user gets them), codebook usage and
    perplexity. val: [N, 3, S, S] in [0, 1]."""
    was_training = model.training
    model.eval()
    ps, ss, hist = [], [], torch.zeros(model.quantizer.codebook_size, dtype=torch.float64)
    for i in range(0, len(val), batch_size):
        x = val[i:i + batch_size].to(device)
        codes = model.encode(x)
        y = (model.decode(codes, tuple(x.shape[-2:])) * 255).round() / 255
        ps.append(psnr(y, x).cpu())
        ss.append(ssim(y, x).cpu())
        hist += code_histogram(codes, model.quantizer.codebook_size)
    model.train(was_training)
    return {"psnr": float(torch.cat(ps).mean()), "ssim": float(torch.cat(ss).mean()),
            "usage": codebook_usage(hist), "perplexity": perplexity(hist)}


def _ddp():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch.distributed as dist

        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def build(cfg: dict, device) -> tuple[ImageTokenizer, PatchDiscriminator | None]:
    model = ImageTokenizer(cfg["model_config"]).to(device)
    disc = None
    if cfg["loss"]["gan"] > 0:
        disc = PatchDiscriminator(3, cfg["loss"]["disc_channels"], cfg["loss"]["disc_layers"]).to(device)
    if cfg["train"]["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
        if disc is not None:
            disc = disc.to(memory_format=torch.channels_last)
    return model, disc


def train(cfg: dict, *, resume: bool = False) -> dict:
    """Run the recipe; returns a summary (steps, time, last losses, held-out metrics)."""
    tc, lc, dc = cfg["train"], cfg["loss"], cfg["data"]
    rank, world, device, tuner = setup_runtime(tc)

    out = Path(cfg["log"]["out_dir"])
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    log = Logger(out / "log.txt" if rank == 0 else None) if rank == 0 else (lambda msg: None)

    if dc["synthetic"]:
        train_arr = synthetic_images(dc["limit"] or 256, max(dc["crop"], 64), seed=tc["seed"])
        val_arr = synthetic_images(dc["val_limit"] or 16, max(dc["crop"], 64), seed=tc["seed"] + 10_000)
    else:
        train_arr = open_array(dc["train"], "training crops")
        val_arr = open_array(dc["val"], "held-out crops")
        if dc["limit"]:
            train_arr = train_arr[:dc["limit"]]
    val_arr = np.asarray(val_arr[:dc["val_limit"]] if dc["val_limit"] else val_arr)
    c = dc["crop"]
    val = torch.from_numpy(val_arr[:, :c, :c].copy()).permute(0, 3, 1, 2).float() / 255
    sampler = CropSampler(train_arr, c, tc["batch_size"], seed=tc["seed"] * 1000 + rank)

    model, disc = build(cfg, device)
    raw_model = model
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=tc["lr"], betas=tuple(tc["betas"]), weight_decay=tc["weight_decay"])
    opt_d = (torch.optim.AdamW(disc.parameters(), lr=lc["disc_lr"], betas=(0.5, 0.9)) if disc is not None else None)

    step, elapsed_before, best = 0, 0.0, -1.0
    ckpt = out / "checkpoint"
    if resume:
        state = load_training_state(ckpt, raw_model, opt, disc, opt_d)
        step, elapsed_before, best = state["step"], state["elapsed"], state.get("best_psnr", -1.0)
        if rank == 0 and "sampler" in state:
            sampler.set_state(state["sampler"])
        log(f"resumed from {ckpt} at step {step} ({elapsed_before / 60:.1f} min trained)")

    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        if disc is not None:
            disc = torch.nn.parallel.DistributedDataParallel(disc, device_ids=[device] if device.type == "cuda" else None)

    if rank == 0:
        log(f"image tokenizer: {n_params / 1e6:.2f}M parameters, stride {raw_model.downsample}, codebook "
            f"{raw_model.quantizer.codebook_size}, {raw_model.tokens(256, 256)} tokens and "
            f"{raw_model.bits_per_pixel():.4f} bits/pixel at 256x256, "
            f"{'next-scale' if raw_model.multiscale else 'raster'} layout; device {device}, world {world}, "
            f"{len(train_arr)} training crops; config {json.dumps(config_to_dict(cfg['model_config']))}")

    amp = tc["amp"]
    amp_dtype = torch.bfloat16

    def validate(step: int, best: float) -> tuple[float, dict]:
        """Held-out metrics to the log; keep the best model in <out>/best. Returns (best PSNR,
        these metrics)."""
        metrics = evaluate(raw_model, val, tc["batch_size"], device)
        log(f"val step {step} | held-out psnr {metrics['psnr']:.3f} ssim {metrics['ssim']:.4f} "
            f"usage {metrics['usage']:.3f} perplexity {metrics['perplexity']:.1f}")
        if metrics["psnr"] > best:
            best = metrics["psnr"]
            raw_model.save_pretrained(out / "best")
        return best, metrics

    def save_checkpoint():
        if rank != 0:
            return
        state = {"step": step, "elapsed": elapsed_before + (time.time() - t0), "best_psnr": best,
                 "sampler": sampler.state(), "config": cfg["model"]}
        save_training_state(ckpt, raw_model, opt, state, disc, opt_d)

    t0 = time.time()
    last_ckpt = time.time()
    window = StepWindow(raw_model.quantizer.codebook_size)
    first_loss = None
    metrics = {}
    model.train()
    while step < tc["steps"]:
        elapsed = elapsed_before + (time.time() - t0)
        if tc["time_limit_min"] and elapsed >= 60 * tc["time_limit_min"]:
            break
        lr = lr_at(step, elapsed, tc)
        for g in opt.param_groups:
            g["lr"] = lr
        x = sampler.next().to(device, non_blocking=True)
        if tc["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            recon, codes, aux = model(x)
        recon = recon.float()
        losses = tokenizer_step(raw_model, recon, x, aux, lc, step, opt, tc["grad_clip"], disc, opt_d, amp)
        step += 1
        if tuner is not None:
            tuner.step(step)

        if first_loss is None:
            first_loss = float(losses["rec"])
        window.add(losses, recon.detach(), x, codes)
        if rank == 0 and (step % cfg["log"]["every"] == 0 or step == tc["steps"]):
            log(window.line(step, elapsed, lr))
        if rank == 0 and (step % cfg["log"]["val_every"] == 0):
            best, _ = validate(step, best)
        if time.time() - last_ckpt > 60 * cfg["log"]["checkpoint_every_min"]:
            save_checkpoint()
            last_ckpt = time.time()

    elapsed = elapsed_before + (time.time() - t0)
    summary = {"steps": step, "minutes": elapsed / 60, "first_loss": first_loss}
    if rank == 0:
        best, metrics = validate(step, best)
        save_checkpoint()
        dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": None}[cfg["export"]["dtype"]]
        raw_model.save_pretrained(out / "final", dtype=dtype)
        size = (out / "final" / "model.safetensors").stat().st_size
        log(f"done: {step} steps in {elapsed / 60:.1f} min; held-out psnr {metrics['psnr']:.2f} (best {best:.2f}); "
            f"final model {size / 1e6:.2f} MB in {out / 'final'}")
        summary.update(metrics, best_psnr=best, out_dir=str(out), last_loss=window.mean("loss"))
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return summary


def export(src: str | Path, dst: str | Path, dtype: str = "float16") -> Path:
    """Write the checkpoint in ``src`` (e.g. ``<out_dir>/best``) to ``dst`` as a bundle-ready
    model (``config.json`` + ``model.safetensors`` in ``dtype``)."""
    model = ImageTokenizer.from_pretrained(src)
    model.save_pretrained(dst, dtype={"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": None}[dtype])
    return Path(dst) / "model.safetensors"


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
    ap.add_argument("--data", help=data_help)
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
    if args.data:
        overrides.setdefault("data", {})["train"] = args.data
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


def main(argv=None) -> int:
    ap = recipe_parser("image", "override data.train (a uint8 [N, H, W, 3] .npy)",
                       "train on generated pictures (no data needed)")
    ap.add_argument("--export-to", metavar="DIR",
                    help="do not train: write <out_dir>/best (or --export-from) to DIR in export.dtype, e.g. "
                         "unitok/assets/image")
    ap.add_argument("--export-from", metavar="DIR", help="checkpoint folder to export (default <out_dir>/best)")
    args = ap.parse_args(argv)

    def export_to(cfg: dict) -> None:
        src = args.export_from or Path(cfg["log"]["out_dir"]) / "best"
        path = export(src, args.export_to, cfg["export"]["dtype"])
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) from {src}")

    return run_recipe(args, load_config, train, export_to if args.export_to else None)


if __name__ == "__main__":
    sys.exit(main())
