"""UTF-8 against UTF-16BE byte-level BPE, and BPE-dropout: tokens per character by script, encode speed.

Trains two vocabularies of the same size on the same corpus (the multilingual Debian man pages and
Python documentation of ``recipes/data/fetch_text.py``: ``train/`` for training, ``heldout/`` for
measuring), one on UTF-8 bytes and one on UTF-16BE code units' bytes (``train_bpe(...,
byte_encoding="utf-16-be")``), then measures on the held-out text and on Python sources (code):

- tokens per character by script. Every token's cost (1) is spread evenly over its bytes, and each
  byte belongs to one character, so a character's cost is the tokens it takes, even when a token
  covers several scripts or part of a character; a script's figure is its characters' mean cost;
- encode speed (MB of UTF-8 input per second, one thread), plain and with BPE-dropout, against HF
  ``tokenizers``' own (unseedable) dropout on the same vocabulary.

    python recipes/data/fetch_text.py --out data/text
    python benchmarks/text_utf16.py --data data/text [--vocab-size 32768] [--no-write]
"""

from __future__ import annotations

import argparse
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np
import regex

from report import RESULTS, Section, command_line, machine_description, publish
from unitok.text import TextTokenizer, train_bpe

SCRIPTS = {   # name -> character class (Python regex); what matches none is "other"
    "Latin": r"\p{Script=Latin}",
    "Cyrillic": r"\p{Script=Cyrillic}",
    "Greek": r"\p{Script=Greek}",
    "CJK ideographs (Han)": r"\p{Script=Han}",
    "Japanese kana": r"[\p{Script=Hiragana}\p{Script=Katakana}\u30fc]",
    "Hangul": r"\p{Script=Hangul}",
    "Arabic": r"\p{Script=Arabic}",
    "Hebrew": r"\p{Script=Hebrew}",
    "digits": r"\p{Nd}",
    "whitespace": r"\s",
}
OTHER = "punctuation, symbols, other"
CODE_FILES = ["argparse.py", "textwrap.py", "json/decoder.py", "csv.py", "difflib.py", "typing.py", "ast.py"]


def script_table() -> tuple[np.ndarray, list[str]]:
    """``[0x110000]`` uint8 script index of every code point, and the names."""
    names = [*SCRIPTS, OTHER]
    table = np.full(0x110000, len(SCRIPTS), dtype=np.uint8)
    cps = np.arange(0x110000)
    cps = cps[(cps < 0xD800) | (cps > 0xDFFF)]
    text = "".join(map(chr, cps.tolist()))
    for k, pattern in reversed(list(enumerate(SCRIPTS.values()))):   # earlier entries win
        hits = [m.start() for m in regex.finditer(pattern, text)]
        table[cps[hits]] = k
    return table, names


def char_costs(tok: TextTokenizer, text: str) -> np.ndarray:
    """``[n_chars]`` tokens each character of ``text`` takes (token costs spread over their bytes)."""
    ids = tok.encode(text)
    lengths = np.array([len(tok.token_bytes(i)) for i in ids], dtype=np.int64)
    weights = np.repeat(1.0 / lengths, lengths)
    if tok.byte_encoding == "utf-8":
        per_char = np.array([len(c.encode("utf-8", "surrogateescape")) for c in text], dtype=np.int64)
    else:
        per_char = np.array([2 if ord(c) < 0x10000 else 4 for c in text], dtype=np.int64)
    assert per_char.sum() == len(weights), "a text with U+FFFF or surrogate pairs needs escapes; not in this corpus"
    return np.bincount(np.repeat(np.arange(len(text)), per_char), weights=weights, minlength=len(text))


def load_samples(folder: Path, limit: int) -> dict[str, str]:
    out = {}
    for path in sorted(folder.glob("*.txt")):
        out[path.stem] = path.read_bytes()[:limit].decode("utf-8", "ignore")
    return out


def training_texts(folder: Path, per_file: int) -> list[str]:
    lines = []
    for path in sorted(folder.glob("*.txt")):
        lines += path.read_bytes()[:per_file].decode("utf-8", "ignore").splitlines(keepends=True)
    return lines


def code_text() -> str:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return "".join((stdlib / n).read_text(encoding="utf-8") for n in CODE_FILES if (stdlib / n).exists())


def by_script(toks: dict[str, TextTokenizer], texts: list[str], table: np.ndarray, names: list[str]) -> list[dict]:
    chars = np.zeros(len(names))
    cost = {k: np.zeros(len(names)) for k in toks}
    units = {k: np.zeros(len(names)) for k in toks}
    for text in texts:
        script = table[np.fromiter(map(ord, text), np.int64, len(text))]
        chars += np.bincount(script, minlength=len(names))
        for k, tok in toks.items():
            cost[k] += np.bincount(script, weights=char_costs(tok, text), minlength=len(names))
            size = [len(c.encode("utf-8")) if tok.byte_encoding == "utf-8" else len(c.encode("utf-16-be"))
                    for c in text]
            units[k] += np.bincount(script, weights=size, minlength=len(names))
    rows = []
    for j, name in enumerate(names):
        row = {"script": name, "chars": int(chars[j])}
        for k in toks:
            row[k] = cost[k][j] / chars[j] if chars[j] else None
            row[k + " bytes"] = units[k][j] / chars[j] if chars[j] else None
        rows.append(row)
    return rows


def speed(fn, docs: list, repeat: int = 3) -> float:
    """MB of UTF-8 input per second (best of ``repeat``)."""
    size = sum(len(d.encode("utf-8")) for d in docs)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for d in docs:
            fn(d)
        best = min(best, time.perf_counter() - start)
    return size / best / 1e6


def documents(samples: dict[str, str]) -> list[str]:
    """Held-out text cut into man-page-sized documents (blank-line separated, ~4 KB)."""
    docs, cur = [], []
    for text in samples.values():
        for para in text.split("\n\n"):
            cur.append(para)
            if sum(map(len, cur)) > 4000:
                docs.append("\n\n".join(cur))
                cur = []
    return docs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/text"), help="output of recipes/data/fetch_text.py")
    parser.add_argument("--vocab-size", type=int, default=32768)
    parser.add_argument("--train-bytes", type=int, default=1_500_000, help="bytes of each train/ file to train on")
    parser.add_argument("--eval-bytes", type=int, default=200_000, help="bytes of each heldout/ file to measure on")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)

    lines = training_texts(args.data / "train", args.train_bytes)
    toks, train_s = {}, {}
    for enc in ("utf-8", "utf-16-be"):
        start = time.perf_counter()
        toks[enc] = train_bpe(None, args.vocab_size, texts=lines, byte_encoding=enc, show_progress=False,
                              name=f"bench-{enc}")
        train_s[enc] = time.perf_counter() - start
        print(f"trained {enc}: {toks[enc].n_vocab} ids in {train_s[enc]:.0f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:   # the saved folder loads back to the same vocabulary
        for enc, tok in toks.items():
            assert TextTokenizer.from_pretrained(tok.save_pretrained(Path(tmp) / enc)) == tok

    samples = load_samples(args.data / "heldout", args.eval_bytes)
    table, names = script_table()
    rows = by_script(toks, list(samples.values()), table, names)
    code = code_text()
    corpus_rows = []
    for name, text in [*samples.items(), ("code (Python stdlib sources)", code)]:
        corpus_rows.append({"text": name, "chars": len(text),
                            **{k: len(t.encode(text)) / len(text) for k, t in toks.items()}})
    for text in [*samples.values(), code]:   # the round trip holds on everything measured
        for tok in toks.values():
            assert tok.decode(tok.encode(text)) == text

    docs = documents(samples)
    timing = []
    for enc, tok in toks.items():
        plain = sum(len(tok.encode(d)) for d in docs)
        timing.append((f"{enc}, plain", speed(tok.encode, docs), plain, plain))
        for p in (0.1,):
            n = sum(len(tok.encode(d, dropout=p, seed=i)) for i, d in enumerate(docs))
            timing.append((f"{enc}, BPE-dropout p={p} (unitok, seeded)",
                           speed(lambda d: tok.encode(d, dropout=p, seed=0), docs), n, plain))
    hf = toks["utf-8"].to_hf_tokenizer()
    hf_plain = sum(len(hf.encode(d).ids) for d in docs)
    timing.append(("utf-8, HF tokenizers plain", speed(lambda d: hf.encode(d), docs), hf_plain, hf_plain))
    hf.model.dropout = 0.1
    n = sum(len(hf.encode(d).ids) for d in docs)
    timing.append(("utf-8, HF tokenizers dropout=0.1 (unseedable)", speed(lambda d: hf.encode(d), docs), n, hf_plain))
    for name, mbs, n, plain in timing:
        print(f"{name:50s} {mbs:7.2f} MB/s  tokens x{n / plain:.3f}", flush=True)

    def f(v, d=3):
        return "n/a" if v is None else f"{v:.{d}f}"

    body = "\n".join([
        f"- Machine: {machine_description()}",
        f"- Date: {time.strftime('%Y-%m-%d')}",
        f"- Command: `{command_line()}`",
        f"- Corpus: `recipes/data/fetch_text.py` (Debian man pages in en/de/fr/ja/zh_CN/zh_TW/ru and the Python "
        f"documentation); the first {args.train_bytes / 1e6:.1f} MB of each train file ({len(lines)} lines) train "
        f"both vocabularies ({args.vocab_size} ids, the default pattern, HF `tokenizers` trainer: "
        f"{train_s['utf-8']:.0f} s for UTF-8, {train_s['utf-16-be']:.0f} s for UTF-16BE whose pieces are cut "
        f"in Python); the first {args.eval_bytes / 1e3:.0f} KB of each held-out file are measured.",
        "",
        "Tokens per character by script (lower is better; a token's cost is spread over its bytes, so mixed "
        "tokens count for each script in proportion; *base bytes* is the units per character before any merge):",
        "",
        "| script | characters | UTF-8 tokens/char | UTF-16BE tokens/char | UTF-16BE / UTF-8 | base bytes UTF-8 | "
        "base bytes UTF-16BE |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[f"| {r['script']} | {r['chars']} | {f(r['utf-8'])} | {f(r['utf-16-be'])} | "
          f"{f(r['utf-16-be'] / r['utf-8'], 2) if r['chars'] else 'n/a'} | {f(r['utf-8 bytes'], 2)} | "
          f"{f(r['utf-16-be bytes'], 2)} |" for r in rows],
        "",
        "Tokens per character by held-out file:",
        "",
        "| text | characters | UTF-8 | UTF-16BE | UTF-16BE / UTF-8 |",
        "|---|---:|---:|---:|---:|",
        *[f"| {r['text']} | {r['chars']} | {r['utf-8']:.3f} | {r['utf-16-be']:.3f} | "
          f"{r['utf-16-be'] / r['utf-8']:.2f} |" for r in corpus_rows],
        "",
        f"Encode speed, one thread, {len(docs)} held-out documents of ~4 KB (MB of UTF-8 input per second, best "
        "of 3; *tokens* is the count against plain BPE of the same vocabulary):",
        "",
        "| encoder | MB/s | tokens |",
        "|---|---:|---:|",
        *[f"| {name} | {mbs:.2f} | x{n / plain:.3f} |" for name, mbs, n, plain in timing],
        "",
        "Hangul, Arabic and Hebrew hardly occur in this corpus (no man pages in those languages are packaged): "
        "their rows rest on a few characters or none. UTF-8 plain encoding is tiktoken's Rust core end to end; UTF-16BE cuts pieces with Python's `regex` and "
        "runs the core's BPE per piece (with a piece cache); BPE-dropout runs a numpy merge loop over all "
        "pre-tokens of a text at once, seeded per text. HF's dropout draws from an unseeded per-thread "
        "generator (no seed can reproduce a run) and walks a merge queue that puts skipped merges back after "
        "each applied one; at the same p it adds fewer tokens here than unitok, which redraws every candidate "
        "at every step and ends a pre-token when all of a step's candidates are dropped.",
    ])
    section = Section("Text tokenizer: UTF-8 vs UTF-16BE units, BPE-dropout", body)
    publish(section, args.results, not args.no_write)


if __name__ == "__main__":
    main()
