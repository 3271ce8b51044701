"""What every recipe sets up the same way: DDP, device, CPU threads, seed, the log and the
learning-rate schedule."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

from ..errors import ConfigError


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


SCHEDULES = ("budget", "steps")


def check_schedule(tc: dict) -> str:
    """``train.schedule`` (default "budget"), refused by name when it is not one of ``SCHEDULES``."""
    schedule = tc.get("schedule", "budget")
    if schedule not in SCHEDULES:
        raise ConfigError(f"train.schedule is {schedule!r}; valid: {', '.join(SCHEDULES)}")
    return schedule


def lr_at(step: int, elapsed: float, tc: dict) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr``. Over what is ``train.schedule``:

    - "budget" (the default): the step budget (``steps``) or the time budget (``time_limit_min``),
      whichever is nearer its end, so a run stopped by the clock still ends annealed. The rate at a
      given step then depends on how fast the machine ran: a slower or shared machine reaches that
      step later, at a lower rate.
    - "steps": the step budget alone, so every step gets the same rate on any machine and under any
      load (runs compared step for step, a run reproduced elsewhere); ``time_limit_min`` then only
      stops the run, wherever its schedule is."""
    if step < tc["warmup"]:
        return tc["lr"] * (step + 1) / tc["warmup"]
    progress = (step - tc["warmup"]) / max(1, tc["steps"] - tc["warmup"])
    if check_schedule(tc) == "budget" and tc["time_limit_min"]:
        progress = max(progress, elapsed / (60 * tc["time_limit_min"]))
    progress = min(1.0, progress)
    r = tc["min_lr_ratio"]
    return tc["lr"] * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * progress)))


def ddp_env():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch.distributed as dist

        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def setup_runtime(tc: dict) -> tuple[int, int, torch.device, ThreadTuner | None]:
    """DDP, the device, CPU threads and the seed from a recipe's ``train`` section. Returns (rank,
    world size, device, thread tuner or None)."""
    rank, world, local_rank = ddp_env()
    if tc["device"] == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(tc["device"])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # denormal floats (tiny gradients of the zero-initialised blocks) are 10-100x slower on CPUs;
    # numpy's float limits are read first, as it caches them: read with denormals flushed, they
    # warn that "the smallest subnormal is zero" at every start
    import numpy as np

    for dtype in (np.float16, np.float32, np.float64):
        np.finfo(dtype).smallest_subnormal
    torch.set_flush_denormal(True)
    tuner = None
    if tc["num_threads"] == "adaptive" and device.type == "cpu":
        tuner = ThreadTuner(list(range(1, os.cpu_count() + 1)))
    elif tc["num_threads"] and tc["num_threads"] != "adaptive":
        torch.set_num_threads(int(tc["num_threads"]))
    torch.manual_seed(tc["seed"] + rank)
    return rank, world, device, tuner


def ddp_shutdown(world: int) -> None:
    """End the process group that :func:`setup_runtime` started under ``torchrun``."""
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
