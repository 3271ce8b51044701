"""Progress of long work, readable wherever it goes: tqdm's bar on a terminal, and a plain line every
so often when stderr is a log file or a batch scheduler's capture (where a bar's carriage returns
would leave one unreadable line of thousands of updates)."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TextIO


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """``update(n)`` as work is done; ``note(text)`` for a figure beside the count (tokens/s);
    ``close()`` at the end. ``enabled``: False shows nothing; None or True show a bar on a terminal
    and, elsewhere, a line every ``every`` seconds plus one at the end."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", *, enabled: bool | None = None,
                 every: float = 30.0, stream: TextIO | None = None):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.stream = stream or sys.stderr
        self.n, self.extra, self.printed = 0, "", 0
        self.start = self.last = time.perf_counter()
        self.bar = None
        self.lines = enabled is not False and not _is_terminal(self.stream)
        if enabled is not False and not self.lines:
            from tqdm import tqdm   # the bar only where a terminal shows it

            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, smoothing=0.1,
                            file=self.stream)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.lines and time.perf_counter() - self.last >= self.every:
            self._line()

    def note(self, text: str) -> None:
        self.extra = text
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.lines and self.printed:     # short work printed nothing; long work says it ended
            self._line(final=True)

    def _line(self, final: bool = False) -> None:
        self.last = time.perf_counter()
        self.printed += 1
        rate = self.n / max(self.elapsed, 1e-9)
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        eta = (f", ETA {_clock((self.total - self.n) / rate)}" if self.total and rate > 0 and not final
               and self.n < self.total else "")
        extra = f", {self.extra}" if self.extra else ""
        print(f"{self.desc}: {done} {self.unit}{pct} in {_clock(self.elapsed)}, {rate:.1f} {self.unit}/s{eta}{extra}"
              + (" (done)" if final else ""), file=self.stream, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ItemProgress:
    """A ``MediaTokenizer.progress`` callback for one long item (a film being encoded, an hour of
    audio being decoded): a :class:`Progress` that appears at the item's first report and closes
    when the work reaches its total."""

    def __init__(self, desc: str, *, enabled: bool | None = None, every: float = 30.0):
        self.desc, self.enabled, self.every = desc, enabled, every
        self.current: Progress | None = None

    def __call__(self, done: int, total: int, unit: str) -> None:
        if self.current is None or self.current.total != total or self.current.unit != unit:
            self.close()
            if done >= total:        # done in one step: nothing to follow
                return
            self.current = Progress(total, self.desc, unit, enabled=self.enabled, every=self.every)
        self.current.update(done - self.current.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None


def progress(items: Iterable, desc: str, unit: str = "it", *, enabled: bool | None = None,
             every: float = 30.0) -> Iterator:
    """``items`` with a :class:`Progress` over them (``len(items)`` as the total when it has one)."""
    total = len(items) if hasattr(items, "__len__") else None
    with Progress(total, desc, unit, enabled=enabled, every=every) as p:
        for item in items:
            yield item
            p.update(1)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
