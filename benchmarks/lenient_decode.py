"""Lenient decoding time against the number of ids, up to the ``max_tokens`` limit (2**24).

    python benchmarks/lenient_decode.py [--sizes 10000 100000 1000000 16777216] [--no-write]

The worst input a model can write for the decoder: random ids with a begin token every 7 ids, so
almost every segment is broken and dropped, and stray ids lie everywhere in between. The table gives
seconds per million ids at each size (flat when decoding is linear) and the repairs kept (alike
repairs in a row are one summary, so memory stays bounded).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from report import RESULTS, Section, command_line, machine_description, publish


def main(argv: list[str] | None = None) -> None:
    import unitok

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 1 << 24])
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)

    tok = unitok.load()
    space = tok.space
    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        ids = rng.integers(0, len(space), n)
        ids[::7] = space.special("<|image|>")
        start = time.perf_counter()
        out = tok.decode(ids, strict=False)
        seconds = time.perf_counter() - start
        rows.append((n, seconds, len(out.repairs), len(out)))
        print(f"{n:>10,} ids: {seconds:8.2f} s ({seconds / n * 1e6:.2f} s per million), {len(out.repairs):,} repairs",
              flush=True)
    body = "\n".join([
        f"- Machine: {machine_description()}",
        f"- Date: {time.strftime('%Y-%m-%d')}",
        f"- Command: `{command_line()}`",
        "",
        "| ids | seconds | seconds per million ids | repairs kept | parts decoded |",
        "|---:|---:|---:|---:|---:|",
        *[f"| {n:,} | {s:.2f} | {s / n * 1e6:.2f} | {r:,} | {p:,} |" for n, s, r, p in rows],
        "",
        "Random ids with `<|image|>` every 7 ids (the bundled suite): nearly every segment is broken. Before the "
        "begin/end positions were found once and searched, 160,000 such ids took 7.6 s (quadratic); each stray id "
        "also kept a repair of its own.",
    ])
    section = Section("Lenient decoding time", body)
    publish(section, args.results, not args.no_write)


if __name__ == "__main__":
    main()
