"""How fast the ``unitok`` command answers, and how much memory it takes to do so.

    python benchmarks/cli_startup.py [--repeat 5] [--no-write]

Each command runs in a fresh process (as a user's shell starts it), ``--repeat`` times; the table
gives the best wall time and the peak resident memory of that process. Anchor in the same run: a
bare ``python -c pass`` (the interpreter's own start-up) and ``python -c "import torch"`` (what
every command that loads a model pays), so the figures read as ratios on any machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import RESULTS, ROOT, Section, command_line, machine_description, publish

# the console script pip installed beside this interpreter (what a user's shell runs)
_SCRIPT = Path(sys.executable).with_name("unitok")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "unitok.cli"]


def commands(tmp: Path) -> dict[str, list[str]]:
    (tmp / "note.txt").write_text("A short note to encode.\n")
    return {
        "python -c pass (anchor)": [sys.executable, "-c", "pass"],
        "python -c 'import torch' (anchor)": [sys.executable, "-c", "import torch"],
        "unitok --help": [*CLI, "--help"],
        "unitok encode (usage error)": [*CLI, "encode"],
        "unitok decode --lenient (usage error)": [*CLI, "decode", "--lenient"],
        "unitok info": [*CLI, "info"],
        "unitok encode note.txt": [*CLI, "encode", str(tmp / "note.txt"), "-o", str(tmp / "tok")],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh runs per command (the best is kept)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, cmd in commands(Path(tmp)).items():
            seconds = min(measure_one(cmd) for _ in range(args.repeat))
            rows.append((name, seconds, peak_rss(cmd)))
            print(f"{name:40s} {seconds:7.3f} s  {rows[-1][2]:7.0f} MiB", flush=True)
    body = "\n".join([
        f"- Machine: {machine_description()}",
        f"- Date: {time.strftime('%Y-%m-%d')}",
        f"- Command: `{command_line()}`",
        "",
        "| command | best wall time (s) | peak memory (MiB) |",
        "|---|---:|---:|",
        *[f"| {name} | {s:.3f} | {m:.0f} |" for name, s, m in rows],
        "",
        "Help and usage errors import neither torch nor the codecs (`unitok/__init__.py` imports its public "
        "names on first use); `info` reads the suite's `suite.json` and `space.json` after checking the sha256 of "
        "every component file (no model is loaded); `encode` loads the suite, so it pays torch's import.",
    ])
    section = Section("Command-line start-up", body)
    publish(section, args.results, not args.no_write)


def measure_one(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def peak_rss(argv: list[str]) -> float:
    """Peak resident memory (MiB) of one fresh run, read by a wrapper process around it (the
    children's maximum of this process would carry over from earlier, larger commands)."""
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
               "stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", wrapper, *argv], capture_output=True, text=True, cwd=ROOT)
    return int(out.stdout.strip() or 0) / 1024


if __name__ == "__main__":
    main()
