"""What every benchmark shares to report its numbers: the paths, the RESULTS.md sections, the
machine description, markdown tables and the plot helpers.

The benchmark scripts import their siblings by plain name (``from report import Section``): run as
``python benchmarks/NAME.py``, Python puts ``benchmarks/`` first on ``sys.path``; under pytest,
``pythonpath = ["benchmarks"]`` in pyproject.toml does the same, so no script edits ``sys.path``.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import re
import shlex
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
PLOTS = ROOT / "benchmarks" / "plots"
MAX_PLOT_BYTES = 300_000
PSNR_CAP = 100.0                 # unitok.metrics.psnr floors the MSE at 1e-10 (10 * log10(1e10))


@dataclass
class Section:
    title: str  # heading text without "## "
    body: str  # markdown under the heading


def write_section(path: Path, section: Section) -> None:
    """Replace (or append) ``## title`` in ``path``, keeping every other section as it is."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    block = f"## {section.title}\n\n{section.body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(section.title)}[ \t]*\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + block
    path.write_text(text, encoding="utf-8")


def publish(section: Section, results: Path, write: bool = True, extra: str = "") -> None:
    """Print a benchmark's section and, unless ``write`` is off (``--no-write``), put it into
    ``results`` (RESULTS.md) in place of the old one."""
    print(f"\n## {section.title}\n\n{section.body}")
    if write:
        write_section(results, section)
        print(f"\nupdated {results}" + extra)


# ------------------------------------------------------------------------------------------------
# the machine and the run


def machine_description() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {threads} cores available, Python {platform.python_version()}"


def run_lines(command: str, *, no_gpu: str = "no GPU") -> list[str]:
    """The Machine (with torch, its threads and the GPU, or ``no_gpu``), Date and Command lines
    that open a media benchmark's section."""
    import torch

    gpu = f"; GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else f"; {no_gpu}"
    return [f"- Machine: {machine_description()}; torch {torch.__version__}, torch threads: "
            f"{torch.get_num_threads()}" + gpu,
            f"- Date: {_dt.date.today().isoformat()}",
            f"- Command: `{command}`"]


def default_devices() -> list[str]:
    """The devices a throughput table measures: the CPU, and CUDA when there is one."""
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def rel(path) -> str:
    """``path`` relative to the checkout when it lies inside it (what RESULTS.md records)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def rel_to(path: Path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def command_line() -> str:
    """This run's command, as RESULTS.md records it."""
    return "python " + " ".join(shlex.quote(a) for a in [rel(sys.argv[0]), *sys.argv[1:]])


def progress_bar(items: Iterable, desc: str, enabled: bool, unit: str = "img"):
    """tqdm over ``items`` (hidden unless ``enabled``), gone once done."""
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit=unit, leave=False, disable=not enabled)


# ------------------------------------------------------------------------------------------------
# numbers and tables


def interpolate(rates: np.ndarray, values: np.ndarray, bpp: float) -> float | None:
    """Piecewise-linear ``values(rate)`` at ``bpp``; None outside ``[min(rates), max(rates)]``."""
    order = np.argsort(rates, kind="stable")
    x, y = np.asarray(rates, dtype=np.float64)[order], np.asarray(values, dtype=np.float64)[order]
    if not len(x) or not math.isfinite(bpp) or bpp < x[0] - 1e-12 or bpp > x[-1] + 1e-12:
        return None
    return float(np.interp(bpp, x, y))


def fmt(value, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, str):
        return value
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def markdown_table(columns: Sequence[str], rows: Sequence[dict], cell: Callable[[str, dict], str],
                   left: Sequence[str] = ("tokenizer", "device")) -> str:
    """A markdown table; the ``left`` columns (text) are left-aligned, the others (numbers) right."""
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if c in left else "---:" for c in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(cell(c, row) for c in columns) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# plots


def pyplot(warn: bool = False):
    """matplotlib.pyplot on the Agg backend, or None (saying so when ``warn``) when it is missing."""
    try:
        import matplotlib
    except ImportError:
        if warn:
            print("matplotlib is not installed: no plots (pip install matplotlib)", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def draw_plots(report, folder: Path, plotters: dict[str, tuple[Callable, str]], *, write: bool = True
               ) -> dict[str, Path]:
    """The plots of ``report``, by key: ``plotters`` maps a key to (``plot(report, path)``, which
    returns the path or None when it cannot draw, and the file name in ``folder``). Nothing is
    drawn unless ``write`` (``--no-write``)."""
    plots = {}
    if write:
        for key, (plot, name) in plotters.items():
            if (path := plot(report, folder / name)) is not None:
                plots[key] = path
    return plots


def draw_grid(plt, rows) -> np.ndarray:
    """[H, W, 3] uint8 canvas: a label band above every tile, tiles at 1:1 pixels. ``rows``: lists
    of (``Image``, label)."""
    dpi, label = 100, 30
    th, tw = rows[0][0][0].height, rows[0][0][0].width
    cols = len(rows[0])
    fig = plt.figure(figsize=(cols * tw / dpi, len(rows) * (th + label) / dpi), dpi=dpi)
    H = len(rows) * (th + label)
    for r, tiles in enumerate(rows):
        for c, (im, text) in enumerate(tiles):
            bottom = H - (r + 1) * (th + label)
            ax = fig.add_axes((c / cols, bottom / H, 1 / cols, th / H))
            ax.imshow(im.pixels.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_axis_off()
            ax.text(0.5, 1.0 + 2 / th, text, transform=ax.transAxes, ha="center", va="bottom", fontsize=7)
    fig.canvas.draw()
    canvas = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return canvas


def save_png(canvas: np.ndarray, path: Path, bits: int = 8) -> int:
    """Write ``canvas`` ([H, W, 3] uint8) as an optimised PNG keeping the top ``bits`` bits of each
    channel (fewer bits compress better: the grids' way under their size budget); its size in bytes."""
    from PIL import Image as PILImage   # a dependency of matplotlib

    PILImage.fromarray(canvas & np.uint8((0xFF << (8 - bits)) & 0xFF)).save(path, "PNG", optimize=True)
    return path.stat().st_size
