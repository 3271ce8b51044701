"""Train the bundled byte-level BPE text vocabulary.

    python recipes/data/fetch_text.py                       # once: data/text/{train,heldout}
    python recipes/train_text.py --vocab-size 49152 --out unitok/assets/text

Trains on data/text/train only (at most --max-mb per source file, so no language or source
drowns the others), then reports bytes per token on the held-out split, per source.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from unitok.text import DEFAULT_PATTERN, TextTokenizer, train_bpe


def _take_prefix(src: Path, dst: Path, max_bytes: int) -> int:
    """Copy whole lines of ``src`` into ``dst`` up to ``max_bytes``; returns bytes written."""
    written = 0
    with src.open("rb") as fin, dst.open("wb") as fout:
        for line in fin:
            if written + len(line) > max_bytes:
                break
            fout.write(line)
            written += len(line)
    return written


def held_out_report(tok: TextTokenizer, heldout: Path) -> list[tuple[str, int, int]]:
    rows = []
    for path in sorted(heldout.glob("*.txt")):
        data = path.read_bytes()
        rows.append((path.stem, len(data), len(tok.encode(data))))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/text"), help="output of fetch_text.py")
    parser.add_argument("--vocab-size", type=int, default=49152, help="total ids (32768..65536)")
    parser.add_argument("--out", type=Path, default=Path("unitok/assets/text"))
    parser.add_argument("--max-mb", type=float, default=8.0, help="cap per training source file (MB)")
    parser.add_argument("--min-frequency", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="trainer threads (0 = all cores)")
    args = parser.parse_args(argv)

    if not 32768 <= args.vocab_size <= 65536:
        sys.exit(f"--vocab-size must be in 32768..65536 for the bundled vocabulary, got {args.vocab_size}")
    train_dir = args.data / "train"
    sources = sorted(train_dir.glob("*.txt"))
    if not sources:
        sys.exit(f"no training text in {train_dir}; run: python recipes/data/fetch_text.py --out {args.data}")
    if args.threads:
        os.environ["RAYON_NUM_THREADS"] = str(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        files, total = [], 0
        for src in sources:
            dst = Path(tmp) / src.name
            n = _take_prefix(src, dst, int(args.max_mb * 1e6))
            files.append(dst)
            total += n
            print(f"  {src.name:<20} {n / 1e6:6.2f} MB")
        print(f"training on {total / 1e6:.1f} MB, vocab size {args.vocab_size}")
        start = time.perf_counter()
        tok = train_bpe(
            files,
            args.vocab_size,
            DEFAULT_PATTERN,
            min_frequency=args.min_frequency,
            name=f"unitok-text-{args.vocab_size // 1024}k",
        )
        elapsed = time.perf_counter() - start
    print(f"trained in {elapsed:.0f} s: {tok}")
    if tok.n_vocab != args.vocab_size:
        print(f"note: the corpus only supported {tok.n_vocab} ids (min_frequency {args.min_frequency})")

    tok.save_pretrained(args.out)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {args.out} ({size / 1e6:.2f} MB), fingerprint {tok.fingerprint[:16]}")

    heldout = args.data / "heldout"
    if any(heldout.glob("*.txt")):
        print(f"\nheld-out compression ({heldout}):")
        print(f"  {'source':<12} {'MB':>7} {'tokens':>9} {'bytes/token':>12}")
        rows = held_out_report(tok, heldout)
        for name, nbytes, ntok in rows:
            print(f"  {name:<12} {nbytes / 1e6:7.2f} {ntok:9d} {nbytes / ntok:12.2f}")
        nbytes, ntok = sum(r[1] for r in rows), sum(r[2] for r in rows)
        print(f"  {'all':<12} {nbytes / 1e6:7.2f} {ntok:9d} {nbytes / ntok:12.2f}")


if __name__ == "__main__":
    main()
