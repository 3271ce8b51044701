"""How the benchmarks time a call: best of several rounds after a warm-up.

Kept apart from ``report.py`` (and free of heavy imports) because the probe program (``probe.py``)
imports it in the fresh process whose memory it measures.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

PROBE = Path(__file__).resolve().parent / "probe.py"


def best_time(fn: Callable[[], object], repeat: int, sync: Callable[[], None]) -> float:
    """Best wall time of ``fn`` over ``repeat`` runs after a warm-up; ``sync`` waits for the
    device (``torch.cuda.synchronize``) before the clock is read."""
    fn()
    sync()
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def interleaved_best(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best wall time of each function over ``repeat`` rounds after a warm-up round.

    The functions take turns within every round, in alternating order, so a slow spell of the
    machine hits all of them alike instead of skewing one.
    """
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    order = list(fns.items())
    for _ in range(repeat):
        order.reverse()  # alternate who goes first, so no one always runs on a cold cache
        for name, fn in order:
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def run_probe(argv: list[str], *, threads: int, passive: bool | None = None, what: str) -> dict:
    """Run ``probe.py`` with ``argv`` (its mode first) in a fresh interpreter started with ``OMP_NUM_THREADS=threads``: how a user runs with that many threads
    (changing the count inside a process that started with another misleads), and neither this
    process's memory nor its thread pool leaks into the numbers. ``passive`` True / False sets /
    clears ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of spinning); None leaves
    it as the environment has it. Returns the JSON line the probe prints last."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if passive is not None:
        env.pop("OMP_WAIT_POLICY", None)
        if passive:
            env["OMP_WAIT_POLICY"] = "PASSIVE"
    proc = subprocess.run([sys.executable, str(PROBE), *argv], capture_output=True, text=True, env=env,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} probe failed:\n{proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
