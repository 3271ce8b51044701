"""Robustness: every entry point fed hostile input, each case in a watchdog process.

    python benchmarks/robustness.py                         # the long run (a few minutes), writes RESULTS.md
    python benchmarks/robustness.py --cases 40 --seed 3 --no-write
    python benchmarks/robustness.py --only tokens-lenient --cases 2000

Categories (``CATEGORIES``): mutated image, video and audio files (truncated, bit-flipped, spliced,
overwritten, saved under a wrong extension) through ``Image/Video/Audio.open`` and ``open_media`` and,
when they open, every tokenizer's ``encode``; crafted files (headers declaring huge pictures,
thousands of frames, 0 Hz or 1 MHz, 32 channels, NaN/inf float samples, non-UTF-8 tags, empty files,
FIFOs, sparse 3 GB files, NUL bytes in names); in-memory items of odd shapes and rates and objects
of the wrong type through ``encode``; random and adversarial id sequences through ``decode`` in strict
and lenient mode, and every truncation of valid sequences; damaged, tampered, foreign and pickled
checkpoints; damaged token-space manifests, suite configs and token files; damaged tokenized datasets
(``TokenDataset``, ``unitok verify``); ``unitok tokenize`` over manifests of broken files; and the
robustness issue's classes: hostile manifest records, folder entries and tar samples, truncated tar
shards, special files (FIFO, /dev/zero) everywhere a path is opened, pathological JSON in every file
a suite or dataset has, files named outside their folder, and unclean failures (a full disk, a
blocked output path, a racing run) followed by a resume identical to a clean run.

Each case is generated from ``(seed, category, index)`` alone and runs in a worker process
(``fuzz_worker.py``). The cases live by category in ``fuzz_media.py`` (files, crafted files, items),
``fuzz_tokens.py`` (token streams, truncation), ``fuzz_storage.py`` (checkpoints, manifests,
datasets, ``unitok tokenize``) and ``fuzz_hostile.py`` (the robustness issue's classes), sharing
``fuzz_common.py``. This file is the parent: it classifies
each case:

- ``error``: refused with a unitok error (``MediaError``, ``TokenSequenceError`` with its position,
  ``ConfigError``);
- ``ok``: a documented success whose result passed the case's checks (shapes, round trips, limits);
- ``crash``: any other exception, a failed check, or the worker process dying;
- ``hang``: no answer within ``--timeout`` seconds (the worker is killed and restarted);
- ``memory``: the worker's resident memory grew by more than ``--max-rss-gb``;
- ``lost`` (the ``unitok tokenize`` categories): records that are neither in the dataset with the
  ids ``tok.encode`` gives nor listed in ``errors.jsonl`` (a good record listed counts too).

Decoding and encoding run under ``fuzz_limits()`` and ``FUZZ_MAX_TOKENS`` (a header may ask for at most
4 megapixels, 120 s or 2**18 tokens), tighter than the defaults, so that no case is legitimately slow;
files are opened under the default ``MediaLimits``.

``tests/test_fuzz.py`` runs a short deterministic slice of the same cases (``SLICE``) in CI.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from fuzz_common import CATEGORIES, ORDER
from report import RESULTS, Section, machine_description, write_section

SECTION = "Robustness"
WORKER = Path(__file__).resolve().parent / "fuzz_worker.py"

DEFAULT_CASES = {"tokenize": 6, "checkpoints": 150, "datasets": 60, "truncation": 600, "hostile-records": 40,
                 "tar-shards": 150, "special-files": 150, "damaged-json": 200, "containment": 100,
                 "unclean-failures": 60}
COUNTS_RECORDS = {"tokenize", "hostile-records", "tar-shards", "special-files"}   # whose cases count lost records
SLICE = {  # the CI slice (tests/test_fuzz.py): cases per category, about 30 s on one thread
    "image-files": 24, "video-files": 10, "audio-files": 20, "crafted-files": 40, "items": 16,
    "tokens-strict": 60, "tokens-lenient": 60, "truncation": 96, "checkpoints": 10, "manifests": 30,
    "datasets": 6, "tokenize": 1, "hostile-records": 1, "tar-shards": 6, "special-files": 6, "damaged-json": 8,
    "containment": 4, "unclean-failures": 3,
}


# =================================================================================================
# the parent: runs cases in a worker process, with a timeout and a memory ceiling
# =================================================================================================

@dataclass
class Tally:
    cases: int = 0
    error: int = 0
    ok: int = 0
    crash: int = 0
    hang: int = 0
    memory: int = 0
    lost: int = 0
    seconds: float = 0.0
    failures: list = field(default_factory=list)   # (index, status, detail)

    def add(self, index: int, status: str, detail: str, lost: int, seconds: float) -> None:
        self.cases += 1
        setattr(self, status, getattr(self, status) + 1)
        self.lost += lost
        self.seconds += seconds
        if status in ("crash", "hang", "memory") or lost:
            self.failures.append((index, status, detail))


def _rss(pid: int) -> int:
    """Resident memory of a process in bytes (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Watchdog:
    """A worker process that runs one case at a time; killed and restarted on a hang, a memory
    blow-up or its own death."""

    def __init__(self, work: Path, seed: int, *, timeout: float, max_rss: float, log: Path):
        self.work, self.seed, self.timeout, self.max_rss, self.log = work, seed, timeout, max_rss, log
        self.proc: subprocess.Popen | None = None
        self.baseline = 0
        self.fresh = True    # no case answered since the start: the worker may still load models

    def _start(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, str(WORKER), "--seed", str(self.seed), "--work",
                                          str(self.work)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env)
        reply = self._read(300.0, watch_memory=False)
        if reply is None or reply.get("ready") is not True:
            self.stop()
            raise RuntimeError(f"the fuzz worker did not start; see {self.log}")
        self.baseline = _rss(self.proc.pid)
        self.fresh = True

    def _read(self, timeout: float, *, watch_memory: bool = True) -> dict | str | None:
        """The worker's next reply; "hang" / "memory" / "died" when it has none."""
        deadline = time.monotonic() + timeout
        out = self.proc.stdout
        while True:
            ready, _, _ = select.select([out], [], [], 0.05)
            if ready:
                line = out.readline()
                if not line:
                    return "died"
                return json.loads(line)
            if self.proc.poll() is not None:
                return "died"
            if watch_memory and _rss(self.proc.pid) - self.baseline > self.max_rss:
                return "memory"
            if time.monotonic() > deadline:
                return "hang"

    def run(self, category: str, index: int) -> tuple[str, str, int, float]:
        if self.proc is None:
            self._start()
        start = time.monotonic()
        self.proc.stdin.write((json.dumps({"category": category, "index": index}) + "\n").encode())
        self.proc.stdin.flush()
        reply = self._read(self.timeout)
        seconds = time.monotonic() - start
        if isinstance(reply, dict):
            if self.fresh:   # memory is measured from what the worker holds once it is set up
                self.baseline, self.fresh = max(self.baseline, _rss(self.proc.pid)), False
            return reply["status"], reply.get("detail", ""), reply.get("lost", 0), seconds
        code = self.proc.wait(timeout=30) if reply == "died" else None
        self.stop()
        detail = {"hang": f"no answer in {self.timeout:g} s",
                  "memory": f"resident memory grew by more than {self.max_rss / 2**30:g} GiB",
                  "died": f"the worker process died (exit status {code})"}[reply]
        return ("crash" if reply == "died" else reply), detail, 0, seconds

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                f.close()
            self.proc = None


def run(cases: dict[str, int], *, seed: int = 0, timeout: float = 60.0, max_rss_gb: float = 3.0,
        work: Path | None = None, progress=None) -> dict[str, Tally]:
    """Run ``cases[category]`` cases of each category; returns a tally per category."""
    unknown = set(cases) - set(ORDER)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; known: {', '.join(CATEGORIES)}")
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="unitok-fuzz-")) if own else Path(work)
    work.mkdir(parents=True, exist_ok=True)
    dog = Watchdog(work, seed, timeout=timeout, max_rss=max_rss_gb * 2**30, log=work / "worker.log")
    tallies = {}
    try:
        for category in ORDER:
            if not cases.get(category):
                continue
            tally = tallies[category] = Tally()
            for i in range(cases[category]):
                tally.add(i, *dog.run(category, i))
                if progress is not None:
                    progress(category, i, tally)
    finally:
        dog.stop()
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return tallies


# =================================================================================================
# the report
# =================================================================================================

def table(tallies: dict[str, Tally]) -> str:
    rows = ["| category | cases | refused (unitok error) | decoded (checked) | crashes | hangs | memory blow-ups | "
            "records lost | s/case |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    total = Tally()
    for name, t in tallies.items():
        lost = str(t.lost) if name in COUNTS_RECORDS else "-"
        rows.append(f"| {name} | {t.cases} | {t.error} | {t.ok} | {t.crash} | {t.hang} | {t.memory} | {lost} | "
                    f"{t.seconds / max(t.cases, 1):.3f} |")
        for k in ("cases", "error", "ok", "crash", "hang", "memory", "lost", "seconds"):
            setattr(total, k, getattr(total, k) + getattr(t, k))
    rows.append(f"| **total** | {total.cases} | {total.error} | {total.ok} | **{total.crash}** | **{total.hang}** | "
                f"**{total.memory}** | **{total.lost}** | {total.seconds / max(total.cases, 1):.3f} |")
    return "\n".join(rows)


def failures(tallies: dict[str, Tally]) -> list[str]:
    return [f"{name} #{i}: {status}: {detail}" for name, t in tallies.items() for i, status, detail in t.failures]


def section_body(tallies: dict[str, Tally], args, seconds: float) -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    lines = [
        f"- Machine: {machine_description()}",
        f"- Date: {_dt.date.today().isoformat()}",
        f"- Command: `{' '.join(shlex.quote(a) for a in ['python', 'benchmarks/robustness.py', *sys.argv[1:]])}` "
        f"({seconds / 60:.1f} minutes; seed {args.seed}, {args.timeout:g} s per case, "
        f"{args.max_rss_gb:g} GiB memory ceiling per case)",
    ]
    if load:
        lines.append(f"- Load average when it ended: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min)")
    lines += [
        "- Every case runs in a watchdog worker process (one torch thread). *Refused*: a unitok error "
        "(`MediaError`, `ConfigError`, `TokenSequenceError` with a position inside the sequence). *Decoded*: a "
        "documented success whose result passed the case's checks (the limits it was read under, strict round "
        "trips of what encodes, lenient parts of the shapes their headers declare). *Crash*: any other exception, a "
        "failed check, or the worker dying. *Hang*: no answer in time. *Memory*: resident memory grew past the "
        "ceiling. *Records lost* (`unitok tokenize`): records neither stored with the ids `tok.encode` gives "
        "nor listed in `errors.jsonl`; a good record listed as an error counts too. The issue-19 categories "
        "(hostile-records to unclean-failures) also check that a run cut short, or failed by a full disk, a "
        "blocked output path or a racing run, ends with one-line errors, leaves no temporary file, and "
        "completes with `--resume` byte-identical to a clean run.",
        "- Suites: the bundled one (`unitok.load()`: text, image, audio and, since its checkpoint landed in "
        "`unitok/assets/video`, video), the two toy suites of `unitok/testing.py` (next-scale and raster images, "
        "codec-depth and delay audio, 3 text tokens a group) and a small randomly initialised `unitok.video` "
        "tokenizer. Encoding and decoding run under "
        "tighter limits than the defaults (a header may ask for at most 4 megapixels, 120 s or 2**18 tokens) so "
        "that no case is legitimately slow; files are opened under the default `MediaLimits`, and the defaults' "
        "own refusals (a 16000 x 16000 image header, 4 h of audio, a config asking for 2**63 LSTM layers) are "
        "regression tests in `tests/test_fuzz.py`.",
        "- CI runs a deterministic slice of the same cases (`tests/test_fuzz.py`, seed 0, "
        f"{sum(SLICE.values())} cases, about 40 s).",
        "",
        table(tallies),
        "",
        "What a case is, per category:",
        "",
    ]
    lines += [f"- **{name}**: {what}." for name, what in CATEGORIES.items() if name in tallies]
    bad = failures(tallies)
    if bad:
        lines += ["", "Failures:", ""] + [f"- {b}" for b in bad[:50]]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=400, help="cases per category (fewer for the slow ones: "
                                                                 "tokenize 6, checkpoints 150, datasets 60, "
                                                                 "truncation 600 at the default)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", action="append", choices=list(CATEGORIES), help="run only this category "
                                                                                  "(repeatable)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a case counts as a hang")
    parser.add_argument("--max-rss-gb", type=float, default=3.0, help="memory growth that counts as a blow-up")
    parser.add_argument("--slice", action="store_true", help="the CI slice's case counts")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    names = args.only or list(CATEGORIES)
    if args.slice:
        cases = {n: SLICE[n] for n in names}
    else:
        scale = args.cases / 400
        cases = {n: max(1, round(DEFAULT_CASES.get(n, 400) * scale)) for n in names}

    def progress(category, i, tally):
        if i + 1 == cases[category] or (i + 1) % 50 == 0:
            print(f"{category}: {i + 1}/{cases[category]} (crashes {tally.crash}, hangs {tally.hang}, "
                  f"memory {tally.memory}, lost {tally.lost})", file=sys.stderr, flush=True)

    start = time.monotonic()
    tallies = run(cases, seed=args.seed, timeout=args.timeout, max_rss_gb=args.max_rss_gb, progress=progress)
    seconds = time.monotonic() - start
    print(table(tallies))
    for b in failures(tallies):
        print(b)
    if not args.no_write:
        write_section(args.results, Section(SECTION, section_body(tallies, args, seconds)))
        print(f"wrote the {SECTION!r} section of {args.results}")
    bad = sum(t.crash + t.hang + t.memory + t.lost for t in tallies.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
