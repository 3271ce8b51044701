"""Train an image tokenizer (``unitok.image.ImageTokenizer``).

A self-contained recipe in the torchtune style: read a YAML config, build plain PyTorch modules,
loop. Runs on a CPU (``tiny``, ``default``) or on GPUs under ``torchrun`` (``large``)::

    python recipes/train_image.py --config recipes/configs/image_tiny.yaml
    python recipes/train_image.py --config recipes/configs/image_default.yaml [--resume]
    torchrun --nproc_per_node 8 recipes/train_image.py --config recipes/configs/image_large.yaml
    unitok train image --config recipes/configs/image_default.yaml        # the same, via the CLI

Data: ``recipes/data/fetch_images.py`` writes ``data/images/train_256.npy`` (uint8 [N, 256, 256,
3] crops of the training photos) and ``val_256.npy`` (crops of the validation pictures, used for
validation and ``best/`` only; the benchmark split ``bench/`` is never read here). Losses: L1 + L2 on pixels, 1 - SSIM (or MS-SSIM), the quantizer's own losses,
and, after ``loss.gan_start`` steps, a hinge PatchGAN loss with VQGAN's adaptive weight.

Output folder (``log.out_dir``)::

    log.txt                 everything printed
    checkpoint/             latest state: the model (config.json + model.safetensors, fp32),
                            optimizer.safetensors, discriminator/ and state.json; --resume reads it
    best/                   the model with the best held-out PSNR so far (fp32)
    final/                  the model at the end, fp16 (export.dtype): what gets bundled
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from unitok.checkpoint import config_to_dict
from unitok.errors import ConfigError
from unitok.image import ImageTokenizer, ImageTokenizerConfig
from unitok.metrics import code_histogram, codebook_usage, perplexity, psnr, ssim
from unitok.quantize.multiscale import plane_prior_of
from unitok.train import (ddp_shutdown, EXPORT_DTYPES, load_training_state, Logger, lr_at, read_config,
                          recipe_parser, run_recipe, save_final, save_training_state, setup_runtime, StepWindow,
                          tokenizer_step, warm_start)
from unitok.train.images import CropSampler, synthetic_images
from unitok.nn import PatchDiscriminator

DEFAULTS = {
    "model": {},
    "data": {"train": "data/images/train_256.npy", "val": "data/images/val_256.npy", "crop": 256,
             "limit": None, "val_limit": 64, "synthetic": False},
    "train": {"batch_size": 8, "lr": 4e-4, "min_lr_ratio": 0.1, "schedule": "budget", "warmup": 200, "steps": 100000,
              "time_limit_min": None, "betas": [0.9, 0.99], "weight_decay": 0.0, "grad_clip": 1.0,
              "amp": True, "channels_last": True, "seed": 0, "num_threads": None, "device": "auto", "init": None},
    "loss": {"l1": 1.0, "l2": 10.0, "structural": 0.2, "structural_kind": "ssim", "quantizer": 1.0,
             "gan": 0.0, "gan_start": 10000, "disc_lr": 1e-4, "disc_channels": 64, "disc_layers": 3,
             "adaptive_gan_weight": True},
    "log": {"out_dir": "data/train_image", "every": 50, "val_every": 500, "checkpoint_every_min": 5.0,
            "val_bits": []},   # bitwise quantizer: also validate decodes at these k-bit prefixes
    "export": {"dtype": "float16"},
}


# -- config -------------------------------------------------------------------------------------


def load_config(path: str | Path, overrides: dict | None = None) -> dict:
    """YAML -> nested dict with this recipe's defaults filled in; unknown sections or keys raise."""
    return read_config(path, DEFAULTS, ImageTokenizerConfig, overrides)


# -- data (the samplers and generated pictures are in unitok.train.images) ---------------------


def open_array(path: str, what: str) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: {what} not found; run `python recipes/data/fetch_images.py` first, or set "
                          f"data.synthetic: true to train on generated pictures")
    return np.load(p, mmap_mode="r")


# -- training -----------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: ImageTokenizer, val: torch.Tensor, batch_size: int, device, bits: int | None = None) -> dict:
    """Held-out PSNR / SSIM (on outputs rounded to uint8, as a user gets them), codebook usage and
    perplexity. val: [N, 3, S, S] in [0, 1]. ``bits``: decode the k-bit prefix codes (bitwise
    quantizer)."""
    was_training = model.training
    model.eval()
    size = model.quantizer.codebook_size if bits is None else 2 ** bits
    ps, ss, hist = [], [], torch.zeros(size, dtype=torch.float64)
    for i in range(0, len(val), batch_size):
        x = val[i:i + batch_size].to(device)
        codes = model.encode(x)
        if bits is not None:
            codes = model.quantizer.prefix(codes, bits)
        y = (model.decode(codes, tuple(x.shape[-2:]), bits=bits) * 255).round() / 255
        ps.append(psnr(y, x).cpu())
        ss.append(ssim(y, x).cpu())
        hist += code_histogram(codes, size)
    model.train(was_training)
    return {"psnr": float(torch.cat(ps).mean()), "ssim": float(torch.cat(ss).mean()),
            "usage": codebook_usage(hist), "perplexity": perplexity(hist)}


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
    elif tc["init"]:
        # warm start: weights only; the step count, schedule and optimizer start afresh
        fresh = warm_start(raw_model, ImageTokenizer.from_pretrained(tc["init"]).state_dict())
        log(f"initialised from {tc['init']}" + (f"; trained from scratch: {', '.join(fresh)}" if fresh else ""))

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
        log(f"validation: {len(val)} crops of {dc['val'] if not dc['synthetic'] else 'generated pictures'} "
            f"every {cfg['log']['val_every']} steps")

    amp = tc["amp"]
    amp_dtype = torch.bfloat16

    last_validation: dict = {}     # step -> metrics: the end of a run on a val_every step validates once

    def validate(step: int, best: float) -> tuple[float, dict]:
        """Held-out metrics to the log; keep the best model in <out>/best. Returns (best PSNR,
        these metrics)."""
        if step in last_validation:
            return best, last_validation[step]
        metrics = evaluate(raw_model, val, tc["batch_size"], device)
        log(f"val step {step} | held-out psnr {metrics['psnr']:.3f} ssim {metrics['ssim']:.4f} "
            f"usage {metrics['usage']:.3f} perplexity {metrics['perplexity']:.1f}")
        for k in cfg["log"]["val_bits"]:
            at_k = evaluate(raw_model, val, tc["batch_size"], device, bits=int(k))
            log(f"val step {step} | {k}-bit prefix codes: psnr {at_k['psnr']:.3f} ssim {at_k['ssim']:.4f} "
                f"usage {at_k['usage']:.3f}")
        if metrics["psnr"] > best:
            best = metrics["psnr"]
            raw_model.save_pretrained(out / "best")
        last_validation.clear()
        last_validation[step] = metrics
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
        if hasattr(raw_model.quantizer, "training_step"):
            raw_model.quantizer.training_step = step    # a bitwise quantizer's progressive bit schedule
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
        size = save_final(raw_model, out, cfg["export"]["dtype"])
        log(f"done: {step} steps in {elapsed / 60:.1f} min; held-out psnr {metrics['psnr']:.2f} (best {best:.2f}); "
            f"final model {size / 1e6:.2f} MB in {out / 'final'}")
        summary.update(metrics, best_psnr=best, out_dir=str(out), last_loss=window.mean("loss"))
    ddp_shutdown(world)
    return summary


def export(src: str | Path, dst: str | Path, dtype: str = "float16", train: str | None = None,
           prior_images: int = 512) -> Path:
    """Write the checkpoint in ``src`` (e.g. ``<out_dir>/best``) to ``dst`` as a bundle-ready model.
    A multi-scale FSQ model with 2**n levels per channel also gets its ``plane_prior`` (how often
    each level occurs, from ``prior_images`` pictures of ``train``), so that codes known only to
    their top bit planes decode where such codes really fall (``decode(..., planes=b)``)."""
    model = ImageTokenizer.from_pretrained(src).eval()
    if train and model.multiscale and getattr(model.quantizer.quantizer, "plane_bits", None):
        pictures = open_array(train, "data.train")
        step = max(1, len(pictures) // prior_images)
        batches = (model.encode(torch.from_numpy(np.array(pictures[i:i + 8 * step:step]))
                                .permute(0, 3, 1, 2).float() / 255)
                   for i in range(0, min(len(pictures), prior_images * step), 8 * step))
        model.cfg.quantizer.plane_prior = plane_prior_of(model.quantizer, batches)
    model.save_pretrained(dst, dtype=EXPORT_DTYPES[dtype])
    return Path(dst) / "model.safetensors"


def main(argv=None) -> int:
    ap = recipe_parser("image", "override data.train (a uint8 [N, H, W, 3] .npy)",
                       "train on generated pictures (no data needed)")
    ap.add_argument("--export-to", "--export", dest="export_to", metavar="DIR",
                    help="do not train: write <out_dir>/best (or --export-from) to DIR in export.dtype, e.g. "
                         "unitok/assets/image")
    ap.add_argument("--export-from", metavar="DIR", help="checkpoint folder to export (default <out_dir>/best)")
    ap.add_argument("--init", metavar="DIR", help="start from the weights in DIR (a checkpoint folder, e.g. "
                                                  "unitok/assets/image); overrides train.init")
    args = ap.parse_args(argv)

    def config(path, overrides):
        if args.init:
            overrides.setdefault("train", {})["init"] = args.init
        return load_config(path, overrides)

    def export_to(cfg: dict) -> None:
        src = args.export_from or Path(cfg["log"]["out_dir"]) / "best"
        path = export(src, args.export_to, cfg["export"]["dtype"], cfg["data"].get("train"))
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) from {src}")

    return run_recipe(args, config, train, export_to if args.export_to else None)


if __name__ == "__main__":
    sys.exit(main())
