"""Train a video tokenizer (``unitok.video.VideoTokenizer``).

A self-contained recipe in the torchtune style: read a YAML config, build plain PyTorch modules,
loop. Runs on a CPU (``tiny``, ``default``) or on GPUs under ``torchrun`` (``large``)::

    python recipes/train_video.py --config recipes/configs/video_tiny.yaml
    python recipes/train_video.py --config recipes/configs/video_default.yaml [--resume]
    torchrun --nproc_per_node 8 recipes/train_video.py --config recipes/configs/video_large.yaml
    unitok train video --config recipes/configs/video_default.yaml        # the same, via the CLI
    python recipes/train_video.py --config ... --export unitok/assets/video  # bundle best/ as fp16

Initialisation: with ``init.image`` set (e.g. the bundled ``unitok/assets/image``), the model's
2-D layers and quantizer are inflated from that image tokenizer (the temporal layers start as the
identity / the chunk mean), so training starts from a model that already codes every frame like
an image; the ``model`` section must then match the image tokenizer's config.

Data: ``recipes/data/fetch_video.py`` writes ``data/video/train_256.npy`` (uint8 [N, 17, 256,
256, 3] clips: real footage and pan-and-zoom sequences over photos) and ``val_256.npy`` (for
validation only; the benchmark split ``bench_256.npy`` is never read here). Batches are random
``data.frames``-frame windows of random ``data.crop`` crops, flipped at random. Losses: L1 + L2
on pixels, 1 - SSIM per frame, the quantizer's own losses, and after ``loss.gan_start`` steps a
per-frame hinge PatchGAN loss with VQGAN's adaptive weight. Held-out validation prints per-frame
PSNR / SSIM (first frame and later frames apart) and the bits per pixel of the validation clips.

Output folder (``log.out_dir``)::

    log.txt          everything printed
    checkpoint/      latest state (model fp32, optimizer, discriminator, state.json); --resume reads it
    best/            the model with the best held-out PSNR so far (fp32)
    final/           the model at the end, in export.dtype (fp16)
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
from unitok.image import ImageTokenizer
from unitok.metrics import code_histogram, codebook_usage, perplexity, psnr, ssim
from unitok.nn import PatchDiscriminator, structural_loss
from unitok.video import VideoTokenizer, VideoTokenizerConfig
from unitok.train import (ddp_shutdown, export_checkpoint, load_training_state, Logger, lr_at, read_config,
                          recipe_parser, run_recipe, save_final, save_training_state, setup_runtime, StepWindow,
                          tokenizer_step)
from unitok.train.images import CropSampler, synthetic_images
from unitok.video.model import TEMPORAL_LAYERS

DEFAULTS = {
    "model": {},
    "init": {"image": None},
    "data": {"train": "data/video/train_256.npy", "val": "data/video/val_256.npy", "crop": 128, "frames": 9,
             "limit": None, "val_limit": 12, "val_crop": 256, "val_frames": 17, "synthetic": False},
    "train": {"batch_size": 4, "lr": 2e-4, "min_lr_ratio": 0.1, "schedule": "budget", "warmup": 200, "steps": 100000,
              "time_limit_min": None, "betas": [0.9, 0.99], "weight_decay": 0.0, "grad_clip": 1.0,
              "temporal_lr_mult": 1.0, "amp": True, "seed": 0, "num_threads": None, "device": "auto"},
    "loss": {"l1": 1.0, "l2": 10.0, "structural": 0.2, "structural_kind": "ssim", "quantizer": 1.0,
             "gan": 0.0, "gan_start": 10000, "disc_lr": 1e-4, "disc_channels": 64, "disc_layers": 3,
             "adaptive_gan_weight": True},
    "log": {"out_dir": "data/train_video", "every": 50, "val_every": 500, "checkpoint_every_min": 5.0},
    "export": {"dtype": "float16"},
}


def load_config(path: str | Path, overrides: dict | None = None) -> dict:
    """YAML -> nested dict with this recipe's defaults filled in; unknown sections or keys raise."""
    return read_config(path, DEFAULTS, VideoTokenizerConfig, overrides)


# -- data ---------------------------------------------------------------------------------------


def synthetic_clips(n: int, frames: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 [n, frames, size, size, 3]: a camera panning over generated pictures at 0..3 pixels
    per frame in a random direction; a stand-in for real clips in tests and without fetched data."""
    rng = np.random.default_rng(seed)
    margin = 3 * (frames - 1)
    pictures = synthetic_images(n, size + 2 * margin, seed=seed)
    out = np.empty((n, frames, size, size, 3), dtype=np.uint8)
    for i in range(n):
        vy, vx = rng.uniform(-3, 3, 2)
        for t in range(frames):
            y, x = int(round(margin + vy * t)), int(round(margin + vx * t))
            out[i, t] = pictures[i, y:y + size, x:x + size]
    return out


class ClipSampler(CropSampler):
    """Random batches from a uint8 [N, F, S, S, 3] array of clips (memory-mapped): a random
    window of ``frames`` frames, a random ``crop`` x ``crop`` square, a random horizontal flip;
    each DDP rank draws from its own generator (saved and restored as the image recipe's)."""

    def __init__(self, array: np.ndarray, frames: int, crop: int, batch_size: int, seed: int):
        if array.ndim != 5 or array.shape[-1] != 3 or array.shape[1] < frames or min(array.shape[2:4]) < crop:
            raise ConfigError(f"training clips must be uint8 [N, F, H, W, 3] with F >= data.frames={frames} and "
                              f"H, W >= data.crop={crop}, got {array.shape}")
        self.array, self.frames, self.crop, self.batch_size = array, frames, crop, batch_size
        self.rng = np.random.default_rng(seed)

    def next(self) -> torch.Tensor:
        """-> [B, frames, 3, crop, crop] float in [0, 1]."""
        N, F_, H, W, _ = self.array.shape
        c, T = self.crop, self.frames
        batch = np.empty((self.batch_size, T, c, c, 3), dtype=np.uint8)
        for j, i in enumerate(np.sort(self.rng.integers(0, N, self.batch_size))):
            s = self.rng.integers(0, F_ - T + 1)
            top, left = self.rng.integers(0, H - c + 1), self.rng.integers(0, W - c + 1)
            clip = self.array[i, s:s + T, top:top + c, left:left + c]
            batch[j] = clip[:, :, ::-1] if self.rng.random() < 0.5 else clip
        return torch.from_numpy(batch).permute(0, 1, 4, 2, 3).float().div_(255)


def open_clips(path: str, what: str) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: {what} not found; run `python recipes/data/fetch_video.py` first, or set "
                          f"data.synthetic: true to train on generated clips")
    return np.load(p, mmap_mode="r")


def validation_clips(array: np.ndarray, n: int | None, frames: int, crop: int) -> torch.Tensor:
    """A fixed, evenly spaced selection of ``n`` held-out clips -> uint8 [n, frames, 3, crop, crop]
    (the first frames, the centre crop)."""
    N, _, H, W, _ = array.shape
    idx = np.unique(np.linspace(0, N - 1, min(n or N, N)).round().astype(np.int64))
    top, left = (H - crop) // 2, (W - crop) // 2
    clips = np.stack([array[i, :frames, top:top + crop, left:left + crop] for i in idx])
    return torch.from_numpy(clips).permute(0, 1, 4, 2, 3).contiguous()


# -- losses -------------------------------------------------------------------------------------


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 - mean SSIM of x, y: [B, 3, H, W] in [0, 1] (``unitok.metrics.ssim``, differentiable)."""
    return 1 - ssim(x, y).mean()


def structural(x: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """The recipe's structural loss: :func:`ssim_loss` for ``"ssim"``, else ``unitok.nn``'s."""
    return ssim_loss(x, y) if kind == "ssim" else structural_loss(x, y, kind)


# -- training -----------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: VideoTokenizer, val: torch.Tensor, device) -> dict:
    """Held-out per-frame PSNR / SSIM on outputs rounded to uint8 (as a user gets them), the
    first frame and the later frames apart; bits per pixel; codebook usage and perplexity.
    val: uint8 [N, T, 3, H, W]; one clip at a time (bounded memory)."""
    was_training = model.training
    model.eval()
    ps, ss, hist = [], [], torch.zeros(model.quantizer.codebook_size, dtype=torch.float64)
    for clip in val:
        x = clip[None].to(device)
        codes = model.encode(x)
        y = (model.decode(codes, x.shape[1], tuple(x.shape[-2:]))[0] * 255).round() / 255
        ref = x[0].float() / 255
        ps.append(psnr(y, ref).cpu())
        ss.append(ssim(y, ref).cpu())
        hist += code_histogram(codes, model.quantizer.codebook_size)
    model.train(was_training)
    ps, ss = torch.stack(ps), torch.stack(ss)                   # [N, T]
    T, H, W = val.shape[1], val.shape[-2], val.shape[-1]
    return {"psnr": float(ps.mean()), "ssim": float(ss.mean()), "psnr_first": float(ps[:, 0].mean()),
            "psnr_later": float(ps[:, 1:].mean()) if T > 1 else float("nan"),
            "bpp": model.bits_per_pixel(T, H, W), "usage": codebook_usage(hist), "perplexity": perplexity(hist)}


def param_groups(model: VideoTokenizer, temporal_lr_mult: float) -> list[dict]:
    """Two optimizer groups: the temporal layers (new when the model is inflated from an image
    tokenizer) at ``temporal_lr_mult`` times the learning rate, and everything else."""
    temporal = {id(p) for m in model.modules() if isinstance(m, TEMPORAL_LAYERS) for p in m.parameters()}
    params = list(model.parameters())
    return [{"params": [p for p in params if id(p) not in temporal], "lr_mult": 1.0},
            {"params": [p for p in params if id(p) in temporal], "lr_mult": temporal_lr_mult}]


def build(cfg: dict, device) -> tuple[VideoTokenizer, PatchDiscriminator | None]:
    model = VideoTokenizer(cfg["model_config"])
    if cfg["init"]["image"]:
        image = ImageTokenizer.from_pretrained(cfg["init"]["image"])
        model.inflate_from(image)
    model = model.to(device)
    disc = None
    if cfg["loss"]["gan"] > 0:
        disc = PatchDiscriminator(3, cfg["loss"]["disc_channels"], cfg["loss"]["disc_layers"]).to(device)
    return model, disc


def export(out_dir: str | Path, target: str | Path, dtype: str = "float16", source: str | Path | None = None) -> Path:
    """Write ``source`` (default ``<out_dir>/best``, else ``<out_dir>/checkpoint``) to ``target`` in
    ``dtype``: what gets bundled in ``unitok/assets/video``. Returns the source folder."""
    out_dir = Path(out_dir)
    if source is None:
        source = out_dir / "best" if (out_dir / "best" / "config.json").exists() else out_dir / "checkpoint"
    export_checkpoint(VideoTokenizer, source, target, dtype)
    return Path(source)


def train(cfg: dict, *, resume: bool = False) -> dict:
    """Run the recipe; returns a summary (steps, time, first and last losses, held-out metrics)."""
    tc, lc, dc = cfg["train"], cfg["loss"], cfg["data"]
    rank, world, device, tuner = setup_runtime(tc)

    out = Path(cfg["log"]["out_dir"])
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    log = Logger(out / "log.txt") if rank == 0 else (lambda msg: None)

    if dc["synthetic"]:
        size = max(dc["crop"], dc["val_crop"])
        frames = max(dc["frames"], dc["val_frames"])
        train_arr = synthetic_clips(dc["limit"] or 64, frames, size, seed=tc["seed"])
        val_arr = synthetic_clips(dc["val_limit"] or 8, frames, size, seed=tc["seed"] + 10_000)
    else:
        train_arr = open_clips(dc["train"], "training clips")
        val_arr = open_clips(dc["val"], "held-out clips")
        if dc["limit"]:
            train_arr = train_arr[:dc["limit"]]
    val = validation_clips(val_arr, dc["val_limit"], dc["val_frames"], dc["val_crop"])
    sampler = ClipSampler(train_arr, dc["frames"], dc["crop"], tc["batch_size"], seed=tc["seed"] * 1000 + rank)

    model, disc = build(cfg, device)
    raw_model = model
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(param_groups(raw_model, tc["temporal_lr_mult"]), lr=tc["lr"], betas=tuple(tc["betas"]),
                            weight_decay=tc["weight_decay"])
    opt_d = torch.optim.AdamW(disc.parameters(), lr=lc["disc_lr"], betas=(0.5, 0.9)) if disc is not None else None

    step, elapsed_before, best = 0, 0.0, -1.0
    ckpt = out / "checkpoint"
    if resume:
        state = load_training_state(ckpt, raw_model, opt, disc, opt_d)
        step, elapsed_before, best = state["step"], state["elapsed"], state.get("best_psnr", -1.0)
        if "sampler" in state:
            sampler.set_state(state["sampler"])
        log(f"resumed from {ckpt} at step {step} ({elapsed_before / 60:.1f} min trained)")

    if world > 1:
        ids = [device] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if disc is not None:
            disc = torch.nn.parallel.DistributedDataParallel(disc, device_ids=ids)

    if rank == 0:
        init = f"inflated from {cfg['init']['image']}" if cfg["init"]["image"] and not resume else "not inflated"
        log(f"video tokenizer: {n_params / 1e6:.2f}M parameters, stride {raw_model.downsample}, temporal "
            f"{raw_model.temporal}, codebook {raw_model.quantizer.codebook_size}; a 17x256x256 clip is "
            f"{raw_model.latent_frames(17)} latent frames, {raw_model.tokens(17, 256, 256)} tokens, "
            f"{raw_model.bits_per_pixel(17, 256, 256):.4f} bits/pixel; {init}; device {device}, world {world}, "
            f"{len(train_arr)} training clips, batches of {tc['batch_size']}x{dc['frames']}x{dc['crop']}x{dc['crop']}; "
            f"config {json.dumps(config_to_dict(cfg['model_config']))}")

    validated_at = -1
    metrics: dict = {}

    def validate():
        nonlocal best, metrics, validated_at
        if validated_at == step:
            return
        validated_at = step
        t = time.time()
        metrics = evaluate(raw_model, val, device)
        log(f"val step {step} | held-out psnr {metrics['psnr']:.3f} (first frame {metrics['psnr_first']:.2f}, "
            f"later {metrics['psnr_later']:.2f}) ssim {metrics['ssim']:.4f} at {metrics['bpp']:.4f} bpp "
            f"({len(val)} clips {tuple(val.shape[1:2] + val.shape[3:])}) | usage {metrics['usage']:.3f} "
            f"perplexity {metrics['perplexity']:.1f} | {time.time() - t:.0f} s")
        if metrics["psnr"] > best:
            best = metrics["psnr"]
            raw_model.save_pretrained(out / "best")

    def save_checkpoint():
        if rank == 0:
            state = {"step": step, "elapsed": elapsed_before + (time.time() - t0), "best_psnr": best,
                     "sampler": sampler.state(), "config": cfg["model"]}
            save_training_state(ckpt, raw_model, opt, state, disc, opt_d)

    amp = tc["amp"]
    t0 = last_ckpt = time.time()
    if rank == 0 and step == 0:
        validate()      # the starting point (for an inflated model: the image tokenizer frame by frame)
    window = StepWindow(raw_model.quantizer.codebook_size)
    first_loss = last_loss = None
    model.train()
    while step < tc["steps"]:
        elapsed = elapsed_before + (time.time() - t0)
        if tc["time_limit_min"] and elapsed >= 60 * tc["time_limit_min"]:
            break
        lr = lr_at(step, elapsed, tc)
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_mult"]
        x = sampler.next().to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            recon, codes, aux = model(x)
        recon, ref = recon.float().flatten(0, 1), x.flatten(0, 1)      # frames as a batch of pictures
        losses = tokenizer_step(raw_model, recon, ref, aux, lc, step, opt, tc["grad_clip"], disc, opt_d, amp,
                                structural=structural)
        step += 1
        if tuner is not None:
            tuner.step(step)
        last_loss = float(losses["rec"])
        first_loss = last_loss if first_loss is None else first_loss
        window.add(losses, recon.detach(), ref, codes)
        if rank == 0 and (step % cfg["log"]["every"] == 0 or step == tc["steps"]):
            log(window.line(step, elapsed, lr))
        if rank == 0 and step % cfg["log"]["val_every"] == 0:
            validate()
        if time.time() - last_ckpt > 60 * cfg["log"]["checkpoint_every_min"]:
            save_checkpoint()
            last_ckpt = time.time()

    elapsed = elapsed_before + (time.time() - t0)
    summary = {"steps": step, "minutes": elapsed / 60, "first_loss": first_loss, "last_loss": last_loss}
    if rank == 0:
        validate()
        save_checkpoint()
        size = save_final(raw_model, out, cfg["export"]["dtype"])
        log(f"done: {step} steps in {elapsed / 60:.1f} min; held-out psnr {metrics['psnr']:.2f} (best {best:.2f}) "
            f"at {metrics['bpp']:.4f} bpp; final model {size / 1e6:.2f} MB in {out / 'final'}")
        summary.update(metrics, best_psnr=best, out_dir=str(out))
    ddp_shutdown(world)
    return summary


def main(argv=None) -> int:
    ap = recipe_parser("video", "override data.train (a uint8 [N, F, H, W, 3] .npy)",
                       "train on generated clips (no data needed)")
    ap.add_argument("--export", metavar="DIR", help="do not train: write <out_dir>/best (or --export-from) in "
                                                    "export.dtype to DIR (e.g. unitok/assets/video) and exit")
    ap.add_argument("--export-from", metavar="DIR", help="checkpoint folder to export (default <out_dir>/best)")
    ap.add_argument("--init-image", metavar="DIR", help="inflate from the image tokenizer in DIR (overrides "
                                                        "init.image; ignored on --resume)")
    args = ap.parse_args(argv)

    def config(path, overrides):
        if args.init_image:
            overrides.setdefault("init", {})["image"] = args.init_image
        return load_config(path, overrides)

    def export_to(cfg: dict) -> None:
        source = export(cfg["log"]["out_dir"], args.export, cfg["export"]["dtype"], args.export_from)
        size = (Path(args.export) / "model.safetensors").stat().st_size
        print(f"exported {source} to {args.export} ({size / 1e6:.2f} MB, {cfg['export']['dtype']})")

    return run_recipe(args, config, train, export_to if args.export else None)


if __name__ == "__main__":
    sys.exit(main())
