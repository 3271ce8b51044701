"""Training curves of the recipes' runs: the section "## Training curves" of
``benchmarks/RESULTS.md`` and one ``plots/training_<run>.png`` per run.

    python benchmarks/training_curves.py --run data/train_image_continued [--run DIR ...]
        [--label NAME ...] [--results PATH] [--plots DIR] [--note TEXT] [--no-write]

Reads ``<run>/log.txt`` as ``recipes/train_{image,audio,video,lm}.py`` write it: ``step N | M min |
... | loss X ...`` lines (the training loss, a mean over the log interval), ``val step N | ...``
lines (every validation metric on them), ``initialised from ...`` (a warm start), ``resumed from
... at step N (M min trained)`` and ``done: ...``. A resumed run trains again the steps between its
last checkpoint and the interruption, so those steps are logged twice: the values logged last (the
session the model went on from) are kept. The section is written whole each time, so name every
run to report in one command.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unitok.errors import ConfigError

from report import (PLOTS, RESULTS, ROOT, Section, command_line, draw_plots, machine_description, markdown_table,
                    publish, pyplot, rel, rel_to, save_figure)

TITLE = "Training curves"
CONFIGS = ROOT / "recipes" / "configs"

_STEP = re.compile(r"^step (\d+) \| ([\d.]+) min\b")
_LOSS = re.compile(r"\|\s*loss ([-+]?[\d.]+(?:[eE][-+]?\d+)?|nan|inf)\b")
_VAL = re.compile(r"^val step (\d+) \| (.*)$")
_RESUMED = re.compile(r"^resumed from (.+) at step (\d+) \(([\d.]+) min trained\)")
_INIT = re.compile(r"^initialised from (.+)$")
_HEADER = re.compile(r"^(?:\w+ tokenizer|lm): ")
_INFLATED = re.compile(r"\binflated from ([^;]+)")
_DONE = re.compile(r"^done\b")                # "done: N steps in M min; ..." (LM: "done in M min: ...")
_YAML = re.compile(r"(\S+\.ya?ml)\b")
# a metric on a val line: a name, then its number (loudness carries a "dB" unit)
_PAIR = re.compile(r"([A-Za-z][\w-]*)\s+([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))(?:dB)?(?![\w.])")
# what a clause of a val line says before its metrics: "4-bit prefix codes:" (bitwise image),
# "1.5kbps" (audio, per bit rate)
_CLAUSE_PREFIX = re.compile(r"^(?:(\d+-bit) prefix codes:|(\d+(?:\.\d+)?kbps))\s*")
_CATEGORY = re.compile(r"\b([A-Za-z]\w*):\s")           # "speech: mel 0.42 sisdr ..." (audio)


def val_metrics(body: str) -> dict[str, tuple[float, int]]:
    """The metrics of one ``val step N | body`` line, by name: (value, decimals as logged).

    Names are as the line says them, with the clause's prefix: ``psnr``, ``ssim``, ``4-bit psnr``
    (bitwise image), ``1.5kbps mel``, ``speech sisdr``, ``speech STOI``, ``mean level usage``
    (audio), ``first-frame psnr``, ``bpp`` (video), ``loss`` (LM)."""
    # the video line: "psnr P (first frame F, later L) ssim S at B bpp (N clips (...))"
    body = re.sub(r"\(first frame (\S+), later (\S+)\)", r" first-frame_psnr \1 later-frames_psnr \2 ", body)
    body = re.sub(r"\bat (\S+) bpp\b", r"bpp \1", body)
    body = re.sub(r"\(\d+ clips [^|]*", "", body)
    # the audio line's per-level codebook usage: one number per level, reported as their mean
    body = re.sub(r"usage per level ((?:[-+\d.]+\s*)+)",
                  lambda m: f"mean_level_usage {np.mean([float(x) for x in m[1].split()]):.3f} ", body)
    out: dict[str, tuple[float, int]] = {}
    for clause in re.split(r"\|+", body):
        clause = clause.strip()
        prefix = ""
        if m := _CLAUSE_PREFIX.match(clause):
            prefix, clause = m[1] or m[2], clause[m.end():]
        parts = _CATEGORY.split(clause)         # [before, label, text, label, text, ...]
        for label, text in [("", parts[0]), *zip(parts[1::2], parts[2::2])]:
            for name, value in _PAIR.findall(text):
                key = " ".join(x for x in (prefix, label, name.replace("_", " ")) if x)
                out[key] = (float(value), len(value.split(".")[1]) if "." in value else 0)
    return out


@dataclass
class ValPoint:
    step: int
    values: dict[str, float]
    minutes: float | None = None


@dataclass
class RunLog:
    """What one ``log.txt`` says about the run it logs (its last run, when it holds several)."""

    folder: Path
    train: list[tuple[int, float, float]] = field(default_factory=list)   # (step, minutes, loss), by step
    val: list[ValPoint] = field(default_factory=list)                     # by step
    digits: dict[str, int] = field(default_factory=dict)                  # decimals each metric is logged with
    init: str | None = None                 # "initialised from ..." / the video header's "inflated from ..."
    resumes: list[tuple[int, float]] = field(default_factory=list)        # (step, minutes trained)
    replaced: int = 0                       # logged points of interrupted sessions that were trained again
    earlier_runs: int = 0                   # fresh runs before this one in the same log
    header: str | None = None               # the model line, without its config JSON
    done: str | None = None                 # the run's last line, when it finished
    config: str | None = None               # the YAML config, when the log names one

    @property
    def metrics(self) -> list[str]:
        """Every validation metric, in the order the lines give them."""
        order: list[str] = []
        for p in self.val:
            before = None
            for k in p.values:
                if k not in order:
                    order.insert(order.index(before) + 1 if before is not None else len(order), k)
                before = k
        return order

    def minutes_at(self, step: int) -> float | None:
        """Training minutes at ``step``: the step lines' clock (the recipes carry it across resumes),
        interpolated between logged steps; None with no clock at all."""
        known = sorted({0: 0.0, **{s: m for s, m in self.resumes}, **{s: m for s, m, _ in self.train},
                        **self._done_point()}.items())
        if len(known) < 2 and step != 0:
            return None
        steps, minutes = zip(*known)
        return float(np.interp(step, steps, np.maximum.accumulate(minutes)))

    def _done_point(self) -> dict[int, float]:
        m = re.search(r"(\d+) steps in ([\d.]+) min", self.done or "")
        return {int(m[1]): float(m[2])} if m else {}


def parse_log(text: str, folder: Path) -> RunLog:
    """A RunLog from the text of ``folder/log.txt``. Steps logged again after a resume keep the
    last value; a fresh run appended to the log (a header after points, no resume line before it)
    starts the record again."""
    run = RunLog(folder)
    train: dict[int, tuple[float, float]] = {}
    val: dict[int, dict[str, float]] = {}
    current: tuple[int, dict] | None = None     # the evaluation being read: consecutive val lines of one step
    previous = ""                               # the kind of the last line
    for line in text.splitlines():
        line = line.strip()
        kind = ""
        if m := _VAL.match(line):
            step, values = int(m[1]), val_metrics(m[2])
            if current is None or current[0] != step or values.keys() & current[1].keys():
                current = (step, {})
                val[step] = current[1]          # an evaluation logged again replaces the earlier one
            current[1].update({k: v for k, (v, _) in values.items()})
            for k, (_, d) in values.items():
                run.digits[k] = max(run.digits.get(k, 0), d)
            kind = "val"
        elif m := _STEP.match(line):
            loss = _LOSS.search(line)
            train[int(m[1])] = (float(m[2]), float(loss[1]) if loss else math.nan)
            kind = "step"
        elif m := _RESUMED.match(line):
            step = int(m[2])
            # the steps after the checkpoint were trained again from it: the interrupted session's
            # points there belong to a model that was thrown away
            stale = [s for s in train if s > step] + [s for s in val if s > step]
            run.replaced += len(stale)
            for s in stale:
                train.pop(s, None)
                val.pop(s, None)
            run.resumes.append((step, float(m[3])))
            run.done = None
            kind = "resume"
        elif (m := _INIT.match(line)) or _HEADER.match(line):
            if (train or val) and previous not in ("resume", "init"):
                # a fresh run appended to the same log: only the last one is reported
                train, val, init = {}, {}, run.init if previous == "init" else None
                run = RunLog(folder, digits=run.digits, init=init, earlier_runs=run.earlier_runs + 1,
                             config=run.config)
            if m:
                run.init, kind = line, "init"
            else:
                run.header = re.sub(r"; config \{.*$", "", line)
                if (inflated := _INFLATED.search(line)) and not run.resumes:
                    run.init = f"inflated from {inflated[1].strip()}"
                kind = "header"
        elif _DONE.match(line):
            run.done = line
            kind = "done"
        if kind in ("", "init", "done") and (y := _YAML.search(line)):     # a line naming the recipe's config
            run.config = y[1]
        if kind != "val":
            current = None
        previous = kind or previous
    run.train = [(s, *train[s]) for s in sorted(train)]
    run.val = [ValPoint(s, val[s]) for s in sorted(val)]
    for p in run.val:
        p.minutes = run.minutes_at(p.step)
    return run


def read_run(folder: Path) -> RunLog:
    """The RunLog of ``folder/log.txt``; ConfigError when it is missing or logs no step yet."""
    folder = Path(folder)
    log = folder / "log.txt"
    if not log.is_file():
        raise ConfigError(f"{log}: no such log; --run takes a training run's out_dir (the folder the recipe "
                          f"writes log.txt into, e.g. data/train_image_continued)")
    text = log.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise ConfigError(f"{log} is empty: the run has not logged anything yet; leave it out or wait")
    run = parse_log(text, folder)
    if not run.train and not run.val:
        raise ConfigError(f"{log} has no 'step N | ...' or 'val step N | ...' line: the run has logged no "
                          f"step yet (or this is not a recipe's log); leave it out or wait")
    if run.config is None:
        run.config = config_for(folder)
    return run


def config_for(folder: Path) -> str | None:
    """The recipe config (recipes/configs/*.yaml) whose ``log.out_dir`` is ``folder``, if exactly one."""
    target = Path(folder).resolve()
    found = []
    for path in sorted(CONFIGS.glob("*.yaml")):
        m = re.search(r"^\s*out_dir:\s*['\"]?([^'\"\s#]+)", path.read_text(encoding="utf-8"), re.MULTILINE)
        if m and (ROOT / m[1]).resolve() == target:
            found.append(rel(path))
    return found[0] if len(found) == 1 else None


# ------------------------------------------------------------------------------------------------
# numbers


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of the last ``window`` values at every point (trailing: no look-ahead)."""
    values = np.asarray(values, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(values)])
    i = np.arange(1, len(values) + 1)
    lo = np.maximum(0, i - window)
    return (c[i] - c[lo]) / (i - lo)


def smoothing_window(n: int) -> int:
    return max(1, round(n / 15))


def best_metric(run: RunLog) -> tuple[str, bool] | None:
    """The metric a run is judged by and whether higher is better: what the recipe keeps ``best/``
    by (image and video: psnr; audio: mel distance at the highest rate; LM: validation loss)."""
    names = run.metrics
    if "psnr" in names:
        return "psnr", True
    rates = [(float(m[1]), k) for k in names if (m := re.fullmatch(r"([\d.]+)kbps mel", k))]
    if rates:
        return max(rates)[1], False
    for name in ("mel", "loss"):
        if name in names:
            return name, False
    return None


def best_point(run: RunLog) -> tuple[ValPoint, str, bool] | None:
    judged = best_metric(run)
    if judged is None:
        return None
    name, higher = judged
    points = [p for p in run.val if name in p.values and math.isfinite(p.values[name])]
    if not points:
        return None
    pick = max if higher else min
    return pick(points, key=lambda p: p.values[name]), name, higher


def train_loss_at(run: RunLog, step: int) -> float | None:
    """The smoothed training loss at the last logged step not after ``step``."""
    steps = [s for s, _, _ in run.train]
    i = int(np.searchsorted(steps, step, side="right")) - 1
    if i < 0:
        return None
    curve = smooth(np.array([loss for _, _, loss in run.train]), smoothing_window(len(steps)))
    return float(curve[i])


# ------------------------------------------------------------------------------------------------
# the section


def run_title(run: RunLog, label: str | None) -> str:
    where = f"`{rel(run.folder)}`" + (f" ({run.config})" if run.config else "")
    return f"{label}: {where}" if label else where


def _value(value: float | None, digits: int) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _metric(run: RunLog, name: str, value: float | None) -> str:
    """``value`` of metric ``name`` with the decimals the log gives it."""
    return _value(value, run.digits.get(name, 3))


def run_section(run: RunLog, label: str | None, plot: Path | None, results_dir: Path, plots_missing: str) -> str:
    lines = [f"### {run_title(run, label)}", ""]
    if run.header:
        lines.append(f"- Model (the log's header): {run.header}")
    lines.append(f"- Warm start: {run.init}" if run.init else "- Warm start: none (trained from scratch)")
    if run.resumes:
        at = ", ".join(f"step {s} ({m:.1f} min)" for s, m in run.resumes)
        lines.append(f"- Resumed {len(run.resumes)} time{'s' if len(run.resumes) > 1 else ''} from its checkpoint: "
                     f"at {at}" + (f"; {run.replaced} logged point(s) of the interrupted sessions after the "
                                   f"checkpoint were trained again and are replaced by the later values"
                                   if run.replaced else ""))
    if run.earlier_runs:
        lines.append(f"- The log also holds {run.earlier_runs} earlier fresh run(s) into the same folder; only the "
                     f"last one is shown")
    last_step = max([s for s, _, _ in run.train] + [p.step for p in run.val])
    minutes = run.minutes_at(last_step)
    lines.append(f"- Finished: `{run.done}`" if run.done else
                 f"- Not finished (no `done:` line): still training or stopped; last logged step {last_step}"
                 + (f" at {minutes:.1f} min" if minutes is not None else ""))
    if run.train:
        w = smoothing_window(len(run.train))
        curve = smooth(np.array([x for _, _, x in run.train]), w)
        (s0, _, _), (s1, _, _) = run.train[0], run.train[-1]
        lines.append(f"- Training loss (the `loss` of the step lines, mean of the last {w} logged values): "
                     f"{curve[0]:.4f} at step {s0} -> {curve[-1]:.4f} at step {s1}")
    best = best_point(run)
    if best:
        p, name, higher = best
        others = ", ".join(f"{k} {_metric(run, k, v)}" for k, v in p.values.items() if k != name)
        why = "" if name == "loss" else "; what the recipe keeps `best/` by"
        lines.append(f"- Best validation point by {name} ({'higher' if higher else 'lower'} is better{why}): "
                     f"step {p.step} ({_value(p.minutes, 1)} min): "
                     f"**{name} {_metric(run, name, p.values[name])}**" + (f"; {others}" if others else ""))
    if not run.val:
        lines += ["", "No validation line in the log yet (the run has not reached its first validation)."]
    else:
        names = run.metrics
        columns = ["step", "minutes", "train loss", *names]
        rows = [{"step": str(p.step), "minutes": _value(p.minutes, 1),
                 "train loss": _value(train_loss_at(run, p.step), 4),
                 **{k: _metric(run, k, p.values.get(k)) for k in names}} for p in run.val]
        lines += ["", markdown_table(columns, rows, lambda c, r: r[c], left=())]
    if plot is not None:
        lines += ["", f"![training curves of {rel(run.folder)}]({rel_to(plot, results_dir)})"]
    elif plots_missing:
        lines += ["", f"(No plot: {plots_missing}.)"]
    return "\n".join(lines)


def render_section(runs: list[tuple[RunLog, str | None]], plots: dict[str, Path], *, command: str,
                   results_dir: Path, plots_missing: str = "", note: str = "") -> Section:
    body = [
        f"- Machine: {machine_description()} (where this section was made from the logs; each run trained on "
        f"the device its header names)",
        f"- Date: {_dt.date.today().isoformat()}",
        f"- Command: `{command}`",
        "- From each run's `log.txt` (recipes/train_*.py). minutes = training minutes at that step (the step "
        "lines' clock, which the recipes carry across resumes; interpolated between logged steps). train loss = "
        "the training loss of the step lines (each a mean over the recipe's log interval), further smoothed "
        "over the last few logged values, at the last logged step not after the validation step. The other "
        "columns are every metric of the `val step` lines, on the recipe's validation split (never the "
        "benchmark split the reconstruction sections report); names as the log gives them (image: PSNR / SSIM "
        "/ codebook usage / perplexity, `k-bit` = bitwise prefix codes; audio: mel distance and SI-SDR per bit "
        "rate and per category at the full rate, speech STOI, `mean level usage` = codebook usage averaged "
        "over the RVQ levels; video: `first-frame` / `later-frames` PSNR, bpp). A resumed run trains again "
        "the steps between its checkpoint and the interruption: those steps keep the values logged last.",
    ]
    if note:
        body.append(f"- {note}")
    for run, label in runs:
        body += ["", run_section(run, label, plots.get(str(run.folder)), results_dir, plots_missing)]
    return Section(TITLE, "\n".join(body))


# ------------------------------------------------------------------------------------------------
# the plot


def metric_groups(run: RunLog) -> dict[str, list[str]]:
    """The validation metrics by kind (the last word of the name: psnr, mel, usage, ...): one panel each."""
    groups: dict[str, list[str]] = {}
    for k in run.metrics:
        groups.setdefault(k.split()[-1], []).append(k)
    return groups


def plot_run(run: RunLog, path: Path, title: str = "") -> Path | None:
    """Training loss (logged and smoothed) and one panel per kind of validation metric against
    step, training minutes on the top axis, resumes as dotted lines, the best point circled."""
    plt = pyplot()     # main() has said so once when it is missing
    if plt is None:
        return None
    groups = metric_groups(run)
    n = 1 + len(groups)
    cols = 1 if n == 1 else 2
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 3.3 * rows), dpi=80, squeeze=False)
    panels = list(axes.flat)
    ax = panels[0]
    if run.train:
        steps = np.array([s for s, _, _ in run.train])
        loss = np.array([x for _, _, x in run.train])
        w = smoothing_window(len(steps))
        ax.plot(steps, loss, color="0.7", lw=0.8, label="logged")
        ax.plot(steps, smooth(loss, w), color="C0", lw=1.6, label=f"mean of last {w}")
        ax.legend(fontsize=7)
    ax.set_title("training loss", fontsize=9)
    best = best_point(run)
    for ax, (kind, names) in zip(panels[1:], groups.items()):
        for i, name in enumerate(names):
            pts = [(p.step, p.values[name]) for p in run.val if name in p.values]
            ax.plot(*zip(*pts), marker="o", ms=3, lw=1.2, color=plt.cm.tab10(i % 10), label=name)
        if best and best[1] in names:
            ax.plot([best[0].step], [best[0].values[best[1]]], marker="o", ms=11, mfc="none", mec="red",
                    ls="none", label=f"best ({best[1]})")
        ax.set_title(f"validation: {kind}", fontsize=9)
        if len(names) > 1 or (best and best[1] in names):
            ax.legend(fontsize=6, ncol=2 if len(names) > 4 else 1)
    last = max([s for s, _, _ in run.train] + [p.step for p in run.val])
    for ax in panels[:n]:
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        for s, _ in run.resumes:
            ax.axvline(s, color="0.4", ls=":", lw=0.9)
        # the training minutes at the step ticks, on top (not a scale of its own: the clock runs
        # unevenly when the machine is shared, and its ticks would crowd there)
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi and 0 <= t <= last]
        top = ax.secondary_xaxis("top")
        top.set_xticks(ticks, labels=[_value(run.minutes_at(int(t)), 0) for t in ticks])
        top.set_xlabel("training minutes", fontsize=7)
        top.tick_params(labelsize=7)
    for ax in panels[n:]:
        ax.set_visible(False)
    fig.suptitle(title or rel(run.folder), fontsize=10)
    return save_figure(plt, fig, path)


def plot_name(run: RunLog) -> str:
    return f"training_{re.sub(r'[^A-Za-z0-9_.-]+', '_', run.folder.name)}.png"


# ------------------------------------------------------------------------------------------------
# command line


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, action="append", required=True,
                    help="a training run's out_dir holding log.txt (repeatable, one subsection each)")
    ap.add_argument("--label", action="append", default=[],
                    help="a name for the run given by the --run at the same position (repeatable)")
    ap.add_argument("--note", default="", help="a line added to the section")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the markdown file to write the section to")
    ap.add_argument("--plots", type=Path, default=PLOTS, help="the folder for the PNGs (default benchmarks/plots)")
    ap.add_argument("--no-write", action="store_true", help="print the section; write neither it nor the plots")
    args = ap.parse_args(argv)
    if len(args.label) > len(args.run):
        ap.error(f"{len(args.label)} --label for {len(args.run)} --run: give at most one label per run")
    try:
        runs = [read_run(folder) for folder in args.run]
    except ConfigError as e:
        sys.exit(f"error: {e}")
    labels = args.label + [None] * (len(runs) - len(args.label))

    missing = "" if args.no_write or pyplot(warn=True) is not None else "matplotlib is not installed"
    plots: dict[str, Path] = {}
    for run, label in zip(runs, labels):
        title = run_title(run, label).replace("`", "")
        plots |= draw_plots(run, args.plots, {str(run.folder): (lambda r, path, t=title: plot_run(r, path, t),
                                                                plot_name(run))}, write=not args.no_write)
    # main(argv) from Python (the tests) records argv, not the caller's command line
    command = command_line() if argv is None else shlex.join(["python", rel(__file__), *map(str, argv)])
    section = render_section(list(zip(runs, labels)), plots, command=command,
                             results_dir=args.results.parent, plots_missing=missing, note=args.note)
    publish(section, args.results, write=not args.no_write,
            extra="".join(f"\nwrote {rel(p)}" for p in plots.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
