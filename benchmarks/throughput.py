"""Tokenizer throughput.

    python benchmarks/throughput.py --modality text [--corpus data/text/heldout]
    python benchmarks/throughput.py --pipeline [--limit 48] [--repeat 2]

Each modality registers a function in ``BENCHMARKS``; it returns the markdown body of its section
in ``benchmarks/RESULTS.md`` ("## Text throughput" for text), which this script replaces in place,
leaving the other sections alone.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from report import RESULTS, ROOT, Section, command_line, machine_description, publish, rel
from timing import interleaved_best

# ------------------------------------------------------------------------------------------------
# text


def load_text_corpus(corpus: Path, chunk_bytes: int = 8192) -> list[str]:
    """Held-out text cut at line ends into documents of about ``chunk_bytes`` bytes."""
    files = sorted(corpus.glob("*.txt")) if corpus.is_dir() else []
    if not files:
        sys.exit(
            f"no *.txt corpus in {corpus}. Fetch the multilingual held-out split first:\n"
            f"    python recipes/data/fetch_text.py --out data/text\n"
            f"then rerun (or pass --corpus DIR with your own *.txt files)."
        )
    docs: list[str] = []
    for path in files:
        cur: list[str] = []
        size = 0
        # bytes that are not UTF-8 become U+FFFD: every tokenizer compared here (tiktoken too) takes the text
        for line in path.read_bytes().decode("utf-8", errors="replace").splitlines(keepends=True):
            cur.append(line)
            size += len(line.encode("utf-8"))
            if size >= chunk_bytes:
                docs.append("".join(cur))
                cur, size = [], 0
        if cur:
            docs.append("".join(cur))
    return docs


@dataclass
class TextImpl:
    """One tokenizer under test, as plain callables over the whole corpus."""

    name: str
    encode: Callable[[str], list[int]]
    encode_batch: Callable[[list[str]], list[list[int]]]
    decode: Callable[[list[int]], str]


def _threaded(fn: Callable, threads: int) -> Callable[[list], list]:
    pool = ThreadPoolExecutor(threads)
    return lambda items: list(pool.map(fn, items))


def _measure_text(impls: list[TextImpl], docs: list[str], repeat: int) -> dict:
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    rows: dict[str, dict] = {}
    ids_of: dict[str, list[list[int]]] = {}
    for impl in impls:
        ids = ids_of[impl.name] = [impl.encode(d) for d in docs]
        reference = ids_of[impls[0].name]
        rows[impl.name] = {
            "bytes_per_token": nbytes / sum(len(x) for x in ids),
            "agree": sum(a == b for a, b in zip(ids, reference)) / len(docs),
            "lossless": all(impl.decode(x) == d for x, d in zip(ids, docs)),
        }
    kinds = {
        "encode": lambda impl: lambda: [impl.encode(d) for d in docs],
        "encode_batch": lambda impl: lambda: impl.encode_batch(docs),
        "decode": lambda impl: lambda: [impl.decode(x) for x in ids_of[impl.name]],
    }
    for kind, make in kinds.items():
        best = interleaved_best({impl.name: make(impl) for impl in impls}, repeat)
        for name, seconds in best.items():
            rows[name][kind] = nbytes / seconds / 1e6
    for name, r in rows.items():
        print(
            f"  {name:<34} encode {r['encode']:7.2f} MB/s  batch {r['encode_batch']:7.2f} MB/s  "
            f"decode {r['decode']:8.1f} MB/s",
            flush=True,
        )
    return rows


def _table(rows: dict, base: str, ref: str) -> str:
    lines = [
        "| tokenizer | encode MB/s (1 thread) | encode MB/s (batch) | decode MB/s (1 thread) "
        "| bytes/token | same ids as first row | lossless |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['encode']:.2f} | {r['encode_batch']:.2f} | {r['decode']:.1f} "
            f"| {r['bytes_per_token']:.2f} | {100 * r['agree']:.1f}% | {'yes' if r['lossless'] else 'no'} |"
        )
    u, t = rows[base], rows[ref]
    lines.append("")
    lines.append(
        f"Ratio {base} / {ref}: encode {u['encode'] / t['encode']:.3f}x, "
        f"batch encode {u['encode_batch'] / t['encode_batch']:.3f}x, "
        f"decode {u['decode'] / t['decode']:.3f}x."
    )
    return "\n".join(lines)


def bench_text(args: argparse.Namespace) -> Section:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    import tiktoken

    from unitok.text import TextTokenizer, load_default

    corpus = args.corpus or ROOT / "data" / "text" / "heldout"
    docs = load_text_corpus(Path(corpus))
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    threads = args.threads
    print(f"text corpus: {corpus}, {len(docs)} documents, {nbytes / 1e6:.2f} MB; batch threads {threads}")

    def raw_tiktoken(tok: TextTokenizer, ranks: dict[bytes, int], name: str) -> TextImpl:
        enc = tiktoken.Encoding(name, pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens={})
        return TextImpl(
            f"tiktoken {tiktoken.__version__} (same ranks)",
            enc.encode_ordinary,
            lambda ds: enc.encode_ordinary_batch(ds, num_threads=threads),
            lambda ids: enc.decode(ids, errors="surrogateescape"),
        )

    def unitok_impl(tok: TextTokenizer, label: str) -> TextImpl:
        return TextImpl(
            f"unitok ({label})",
            tok.encode,
            lambda ds: tok.encode_batch(ds, num_threads=threads),
            tok.decode,
        )

    # 1. the bundled vocabulary: unitok vs raw tiktoken vs HF tokenizers on the same merges
    tok = load_default()
    import tokenizers

    hf = tok.to_hf_tokenizer()
    hf_impl = TextImpl(
        f"HF tokenizers {tokenizers.__version__} (same merges)",
        lambda s: hf.encode(s, add_special_tokens=False).ids,
        lambda ds: [e.ids for e in hf.encode_batch(ds, add_special_tokens=False)],
        lambda ids: hf.decode(ids, skip_special_tokens=False),
    )
    print(f"[{tok.name}: {tok.n_vocab} ids]")
    bundled = _measure_text(
        [unitok_impl(tok, f"bundled {tok.name}"), raw_tiktoken(tok, tok.mergeable_ranks, "bundled"), hf_impl],
        docs,
        args.repeat,
    )

    # 2. mistral's tekken vocabulary: unitok vs raw tiktoken vs mistral-common itself
    tekken_rows = None
    try:
        import mistral_common
        from mistral_common.tokens.tokenizers.tekken import Tekkenizer
    except ImportError:
        print("mistral-common is not installed: skipping the tekken comparison")
    else:
        path = Path(mistral_common.__file__).parent / "data" / "tekken_240911.json"
        ttok = TextTokenizer.from_tekken(path)
        mistral = Tekkenizer.from_file(path)
        # The same ranks unitok uses (tekken rank + number of specials), so ids match as they are.
        raw = raw_tiktoken(ttok, ttok.mergeable_ranks, "tekken")
        m_encode = lambda s: mistral.encode(s, bos=False, eos=False)
        mistral_impl = TextImpl(
            f"mistral-common {mistral_common.__version__} Tekkenizer",
            m_encode,
            _threaded(m_encode, threads),
            mistral.decode,
        )
        print(f"[tekken_240911: {ttok.n_vocab} ids]")
        tekken_rows = _measure_text(
            [unitok_impl(ttok, "tekken_240911"), raw, mistral_impl], docs, args.repeat
        )

    body = [
        f"- Machine: {machine_description()}",
        f"- Date: {_dt.date.today().isoformat()}",
        f"- Command: `{command_line()}`",
        f"- Corpus: {rel(str(corpus))} ({len(docs)} documents of ~8 KB cut at line ends, "
        f"{nbytes / 1e6:.2f} MB" + (": man pages in en/de/fr/ja/ru/zh_CN/zh_TW and Python docs), never seen in "
                                    "training" if args.corpus is None else ")"),
        f"- MB/s are MB of UTF-8 text per second; best of {args.repeat} runs after a warm-up. "
        f"Batch = `encode_batch` with {threads} threads (HF: its own Rayon pool, "
        "mistral-common: a thread pool over `encode`, as it has no batch API). Decode returns `str`.",
        "- unitok calls the same Rust core as tiktoken, adding one Python call per text; gaps of a few "
        "percent between the two rows move either way from run to run (shared 2-core machine).",
        "",
        f"### Bundled vocabulary ({tok.name}, {tok.n_vocab} ids)",
        "",
        _table(bundled, next(iter(bundled)), list(bundled)[1]),
    ]
    body += ["", "### Held-out compression (bytes per token, higher is better)", "",
             "The held-out documents come from the same sources as the bundled vocabulary's training "
             "text (in-domain for it, not for tekken), so this favours the bundled vocabulary.", "",
             _compression_table(
        Path(corpus), {tok.name: tok, **({"tekken_240911": ttok} if tekken_rows else {})})]
    if tekken_rows:
        body += [
            "",
            "### mistral tekken_240911 (131072 ids)",
            "",
            _table(tekken_rows, next(iter(tekken_rows)), list(tekken_rows)[1]),
        ]
    return Section("Text throughput", "\n".join(body))


def _compression_table(corpus: Path, toks: dict) -> str:
    lines = ["| source | MB | " + " | ".join(toks) + " |", "|---|---:|" + "---:|" * len(toks)]
    totals = {name: 0 for name in toks}
    total_bytes = 0
    for path in sorted(corpus.glob("*.txt")):
        data = path.read_bytes()
        total_bytes += len(data)
        cells = []
        for name, tok in toks.items():
            n = len(tok.encode(data))
            totals[name] += n
            cells.append(f"{len(data) / n:.2f}")
        lines.append(f"| {path.stem} | {len(data) / 1e6:.2f} | " + " | ".join(cells) + " |")
    cells = [f"{total_bytes / n:.2f}" for n in totals.values()]
    lines.append(f"| all | {total_bytes / 1e6:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# pipeline (`unitok tokenize`)


def _pipeline_manifests(folder: Path, limit: int) -> dict[str, Path]:
    """Text-only, image and audio JSONL manifests built from the held-out data."""
    import json

    import numpy as np

    from unitok import Audio, Image

    data = ROOT / "data"
    manifests = {}

    def write(name: str, docs: list[dict]) -> None:
        manifests[name] = folder / f"{name}.jsonl"
        manifests[name].write_text("".join(json.dumps(d) + "\n" for d in docs))

    texts = load_text_corpus(data / "text" / "heldout")
    texts = (texts * (1 + limit * 30 // len(texts)))[:limit * 30]     # enough work to time past start-up
    write("text", [{"content": [{"text": t}]} for t in texts])
    crops = np.load(data / "images" / "heldout_256.npy", mmap_mode="r")
    (folder / "img").mkdir()
    picks = np.linspace(0, len(crops) - 1, min(limit, len(crops))).round().astype(int)
    for i in picks:
        Image.from_array(np.ascontiguousarray(crops[i]), channels_last=True).save(folder / "img" / f"{i:04d}.png")
    write("image", [{"content": [{"image": f"img/{i:04d}.png"}]} for i in picks])
    wave = np.load(data / "audio" / "heldout_24k.npy", mmap_mode="r")
    clips = json.loads((data / "audio" / "heldout_index.json").read_text())
    (folder / "wav").mkdir()
    for j, c in enumerate(clips[:limit]):
        x = np.asarray(wave[c["start"]:c["start"] + min(c["length"], 5 * 24000)], dtype=np.float32) / 32768
        Audio.from_array(x[None], 24000).save(folder / "wav" / f"{j:04d}.wav")
    write("audio", [{"content": [{"audio": f"wav/{j:04d}.wav"}]} for j in range(min(limit, len(clips)))])
    return manifests


def _direct_loop(tok, manifest: Path) -> tuple[float, int, int]:
    """(seconds, documents, tokens) of reading and encoding every line in a plain loop."""
    import json

    start = time.perf_counter()
    docs = tokens = 0
    for line in manifest.read_text().splitlines():
        parts = [p["text"] if "text" in p else manifest.parent / next(iter(p.values()))
                 for p in json.loads(line)["content"]]
        tokens += len(tok.encode(parts))
        docs += 1
    return time.perf_counter() - start, docs, tokens


def _loop_process(manifest: str, ready, go, results) -> None:
    import torch

    from unitok import load

    torch.set_num_threads(1)
    tok = load()
    ready.put(True)
    go.wait()
    results.put(_direct_loop(tok, Path(manifest)))


def _parallel_loops(manifest: Path, n: int) -> float:
    """Aggregate rec/s of ``n`` plain loops run at once in ``n`` processes (no pipeline): what
    this machine gives ``n`` workers at best, the ceiling for the pipeline's speed-up."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_loop_process, args=(str(manifest), ready, go, results)) for _ in range(n)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get()
    go.set()
    runs = [results.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(docs for _, docs, _ in runs) / max(seconds for seconds, _, _ in runs)


def _pipeline_run(tok, manifest: Path, out: Path, workers: int, batch: int) -> dict:
    """One `tokenize` run; rates are measured from the first result on (worker start-up and model
    loading excluded; the end-to-end wall time is kept beside)."""
    from unitok.pipeline import TokenizeConfig, tokenize

    stamps: list[tuple[float, int]] = []
    start = time.perf_counter()
    summary = tokenize(TokenizeConfig([str(manifest)], out, workers=workers, batch=batch, overwrite=True,
                                      shard_size=256, progress=False),
                       tok=tok, on_result=lambda r: stamps.append((time.perf_counter(), len(getattr(r, "ids", ())))))
    wall = time.perf_counter() - start
    skip = min(len(stamps) - 1, workers * batch)       # the first batches carry the start-up
    seconds = stamps[-1][0] - stamps[skip - 1][0] if skip else stamps[-1][0] - start
    steady = stamps[skip:]
    short = len(steady) < 2 * workers * batch   # too few records past the start-up (a small --limit): wall time
    if short:
        steady, seconds = stamps, wall
    return {"wall": wall, "short": short, "records": len(steady) / seconds,
            "tokens": sum(n for _, n in steady) / seconds,
            "documents": summary.documents, "all_tokens": summary.tokens}


def bench_pipeline(args: argparse.Namespace) -> Section:
    """The pipeline rows, in a temporary folder removed afterwards."""
    import shutil
    import tempfile

    import torch

    torch.set_num_threads(1)          # the workers use one thread each; so does the direct loop
    folder = Path(tempfile.mkdtemp(prefix="unitok-pipeline-bench-"))
    try:
        return _bench_pipeline(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _bench_pipeline(args: argparse.Namespace, folder: Path) -> Section:
    from unitok import load

    manifests = _pipeline_manifests(folder, args.limit)
    tok = load()
    rows = []
    for name, manifest in manifests.items():
        best_direct = None
        best: dict[int, dict] = {}
        for _ in range(args.repeat):
            seconds, docs, tokens = _direct_loop(tok, manifest)
            if best_direct is None or seconds < best_direct[0]:
                best_direct = (seconds, docs, tokens)
            for workers in (1, 2):
                r = _pipeline_run(tok, manifest, folder / f"out-{name}-{workers}", workers, args.batch)
                if workers not in best or r["records"] > best[workers]["records"]:
                    best[workers] = r
        ceiling = max(_parallel_loops(manifest, 2) for _ in range(args.repeat))
        seconds, docs, tokens = best_direct
        direct = docs / seconds
        one, two = best[1], best[2]
        assert one["all_tokens"] == two["all_tokens"] == tokens, "the pipeline must give the loop's tokens"
        row = {"name": name, "docs": docs, "tokens": tokens, "direct": direct, "direct_tok": tokens / seconds,
               "one": one, "two": two, "overhead": direct / one["records"] - 1, "speedup": two["records"] / one["records"],
               "ceiling": ceiling / direct}
        rows.append(row)
        print(f"  {name:<6} {docs} docs: direct {direct:8.1f} rec/s | 1 worker {one['records']:8.1f} rec/s "
              f"({100 * row['overhead']:+.1f}%) | 2 workers {two['records']:8.1f} rec/s ({row['speedup']:.2f}x; two plain "
              f"loops at once {row['ceiling']:.2f}x)"
              + (" [too few records to time past the start-up: wall time, start-up included; raise --limit]"
                 if one["short"] or two["short"] else ""),
              flush=True)
    lines = [
        "| manifest | documents | tokens | direct loop rec/s | 1 worker rec/s | 1 worker tok/s | 2 workers rec/s "
        "| 2 workers tok/s | overhead vs loop | 2 vs 1 worker | 2 loops vs 1 (ceiling) | wall 1 / 2 workers (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['docs']} | {r['tokens']} | {r['direct']:.1f} | {r['one']['records']:.1f} "
                     f"| {r['one']['tokens']:,.0f} | {r['two']['records']:.1f} | {r['two']['tokens']:,.0f} "
                     f"| {100 * r['overhead']:+.1f}% | {r['speedup']:.2f}x | {r['ceiling']:.2f}x "
                     f"| {r['one']['wall']:.1f} / {r['two']['wall']:.1f} |")
    body = [
        f"- Machine: {machine_description()}",
        f"- Date: {_dt.date.today().isoformat()}",
        f"- Command: `{command_line()}`",
        f"- Load average when it ended: {' / '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min)",
        "- Manifests from the held-out data: text = ~8 KB documents of the held-out man pages and Python docs "
        "(inline text, the corpus repeated to have enough work to time); image = 256x256 PNG crops of the held-out pictures; audio = the first 5 s of held-out "
        "clips as 24 kHz WAV. Bundled suite, one torch thread per worker.",
        "- Direct loop: `tok.encode(parts)` per manifest line in one process (files decoded in the loop). "
        "Pipeline rates are from the first result to the last (worker start-up and model loading excluded; the "
        "last column is the end-to-end wall time including them, and shard writing). "
        f"Best of {args.repeat} runs, --batch {args.batch}.",
        "- Overhead vs loop = direct rec/s / 1-worker rec/s - 1. Ceiling = two plain loops started together in "
        "two processes (no pipeline at all), aggregate rec/s over one loop's: the most any 2-worker run can get on "
        "this machine at that moment.",
        *([f"- Note: {args.note}"] if args.note else []),
        "",
        *lines,
    ]
    return Section("Pipeline throughput (unitok tokenize)", "\n".join(body))


# Other modalities add their functions here: name -> (args -> Section).
BENCHMARKS: dict[str, Callable[[argparse.Namespace], Section]] = {
    "text": bench_text,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modality", choices=sorted(BENCHMARKS))
    parser.add_argument("--pipeline", action="store_true",
                        help="benchmark `unitok tokenize` (text, image, audio manifests; 1 and 2 workers; overhead "
                             "against a direct loop) instead of one modality's tokenizer")
    parser.add_argument("--limit", type=int, default=96, help="--pipeline: images and audio clips per manifest "
                                                              "(text: 30x as many documents)")
    parser.add_argument("--batch", type=int, default=8, help="--pipeline: records per worker task")
    parser.add_argument("--note", default="", help="--pipeline: a remark for RESULTS.md (e.g. machine load)")
    parser.add_argument("--corpus", type=Path, help="folder of inputs (text: *.txt files)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement")
    parser.add_argument("--threads", type=int, default=2, help="threads for batch runs")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)

    if args.pipeline == bool(args.modality):
        parser.error("pass one of --modality NAME or --pipeline")
    section = bench_pipeline(args) if args.pipeline else BENCHMARKS[args.modality](args)
    publish(section, args.results, not args.no_write)


if __name__ == "__main__":
    main()
