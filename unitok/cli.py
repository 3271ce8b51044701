"""The ``unitok`` command.

    unitok info                         the suite's components and its token-space ranges
    unitok encode FILE|DIR... -o OUT    one token file per input (text, image, video or audio)
    unitok decode TOKENS|DIR... -o OUT  token files (or generated id lists) back to files
    unitok tokenize INPUT... -o OUT     a dataset to resumable, memory-mappable token shards
    unitok verify OUT                   check a tokenized dataset and round-trip a sample of it
    unitok show FILE|DIR... -o OUT      pictures of tokens (per-scale reconstructions, spectrograms, token map)
    unitok train MODALITY [ARGS...]     run recipes/train_<modality>.py (a source checkout)
    unitok bench NAME [ARGS...]         run benchmarks/<name>.py (a source checkout)
    unitok serve [--port N]             the tokenizers as an HTTP service (the [serve] extra)

Exit status: 0 when every input succeeded, 1 when some input failed (each failure is printed with
its file and reason, and the others are still processed), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from .errors import MediaError, UnitokError
from .files import read_regular_file, write_atomic

TOKEN_SUFFIX = ".tokens.json"
PART_SUFFIX = {"image": ".png", "video": ".mp4", "audio": ".wav"}
TEXT_SUFFIXES = (".txt", ".md", ".rst")


def _device(text: str) -> str:
    """argparse type of --device: a well-formed name (whether that device exists is checked when the
    suite loads, which needs torch)."""
    if not re.match(r"^(cpu|cuda|mps|xpu)(:\d+)?$", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device; use cpu, cuda, cuda:N or mps")
    return text


def _positive(cast, what: str = "", example: str = ""):
    """argparse type: a positive, finite number (``cast`` int or float), a usage error otherwise."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{' number of ' + what if what else ' ' + cast.__name__}") \
                from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text}{' ' + what if what else ''}: must be a positive number{example}")
        return value
    parse.__name__ = cast.__name__
    return parse


_kbps = _positive(float, "kbit/s", ", e.g. 1.5, 3 or 6")   # --bitrate


def _preprocess_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("preprocessing (before tokenizing; none by default)")
    g.add_argument("--max-pixels", type=_positive(int), metavar="N",
                   help="scale pictures and video frames larger than N pixels down to about N, keeping the aspect "
                        "ratio, sides rounded to the tokenizer's stride (Qwen2-VL's max_pixels)")
    g.add_argument("--min-pixels", type=_positive(int), metavar="N", help="scale smaller ones up to about N")
    g.add_argument("--target-pixels", type=_positive(int), metavar="N",
                   help="scale every picture and frame to about N pixels (Emu3's target area)")
    g.add_argument("--max-fps", type=_positive(float), metavar="F", help="video faster than F frames/s keeps the "
                                                                           "frames nearest an F clock")
    g.add_argument("--max-duration", type=_positive(float), metavar="S",
                   help="keep the first S seconds of each video and audio")


def _preprocess(args) -> dict:
    names = ("max_pixels", "min_pixels", "target_pixels", "max_fps", "max_duration")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _suite_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", metavar="DIR", default=None,
                   help="tokenizer suite folder (default: the suite bundled with unitok)")
    p.add_argument("--device", default="cpu", type=_device,
                   help="torch device for media tokenizers: cpu, cuda, cuda:N or mps (default: cpu)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unitok", description="Multimodal tokenizers into one shared token space.",
        epilog="Run 'unitok COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"unitok {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("info", help="show the suite's tokenizers and token-space ranges",
                       description="Show the tokenizers of a suite and the id ranges of its token space.")
    _suite_args(p)
    p.add_argument("--json", action="store_true", help="print the token-space manifest as JSON instead of a table")
    _preprocess_args(p)

    p = sub.add_parser("encode", help="encode files to token files",
                       description="Encode each input file (text, image, video or audio, chosen by extension) "
                                   f"to OUT/<name>{TOKEN_SUFFIX}: ids, groups, spans and the token-space "
                                   "fingerprint. Folders are searched recursively for files of known kinds.")
    p.add_argument("inputs", nargs="+", metavar="FILE|DIR", help="files or folders to encode")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the token files (created)")
    _suite_args(p)
    p.add_argument("--bos", action="store_true", help="start each sequence with <|bos|>")
    p.add_argument("--eos", action="store_true", help="end each sequence with <|eos|>")
    p.add_argument("--bitrate", metavar="KBPS", type=_kbps, default=None,
                   help="audio: the highest bitrate to use, in kbit/s (e.g. 1.5, 3, 6); picks the number of "
                        "residual levels (default: all levels)")
    p.add_argument("--allowed-special", metavar="TOKEN", action="append", default=[],
                   help="a special token of the text vocabulary to recognise inside text (repeatable; "
                        "'all' for every one). By default special-token strings are plain text.")
    _preprocess_args(p)

    p = sub.add_parser("decode", help="decode token files back to files",
                       description="Decode token files (written by 'unitok encode', a JSON list of ids, or ids "
                                   "separated by spaces, e.g. generated by a model) back to text, images, "
                                   "video and audio in OUT. A file whose ids hold several parts gives "
                                   "<name>.partN.<ext> files.")
    p.add_argument("inputs", nargs="+", metavar="TOKENS|DIR", help=f"token files or folders of *{TOKEN_SUFFIX}")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the decoded files (created)")
    _suite_args(p)
    p.add_argument("--lenient", action="store_true",
                   help="repair malformed ids (unknown ids, truncated groups, missing end tokens) and print "
                        "each repair, instead of failing at the first problem")
    p.add_argument("--space", metavar="MANIFEST", default=None,
                   help="token-space manifest (space.json) the ids were made with; decoding refuses ids "
                        "of another space. Token files written by 'unitok encode' carry their own.")
    p = sub.add_parser("tokenize", help="tokenize a dataset into token shards",
                       description="Tokenize a dataset into shards that unitok.data.TokenDataset memory-maps "
                                   "(token ids in Megatron .bin/.idx files, group ids, a document index) and "
                                   "OUT/errors.jsonl listing every skipped record. Each record is one document: a "
                                   "file of a folder or glob, a line of a JSONL manifest ({\"id\": ..., "
                                   "\"content\": [{\"text\": ...}, {\"image\": PATH}, ...]}, paths relative to "
                                   "the manifest), or a sample of a WebDataset tar shard. Output does not depend "
                                   "on the worker count or engine; a killed run continues with --resume.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="folders, files, globs, JSONL manifests (.jsonl) or tar shards (.tar, brace patterns)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the shards (created)")
    _suite_args(p)
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes (Ray actors with --engine ray), each loading the models once; 0 "
                        "tokenizes in this process (default: 1)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local processes, or Ray Data (pip install 'unitok[ray]'; joins RAY_ADDRESS or "
                        "--ray-address, else starts a local Ray) (default: local)")
    p.add_argument("--ray-address", metavar="ADDR", default=None, help="Ray cluster to run on with --engine ray")
    p.add_argument("--shard-size", type=int, default=1000, metavar="N",
                   help="records per shard: shard k holds records [k*N, (k+1)*N) (default: 1000)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue a run in OUT, keeping its complete shards (the inputs, shard size, options "
                           "and suite must be the same)")
    mode.add_argument("--overwrite", action="store_true", help="delete a previous run's files in OUT and start over")
    p.add_argument("--on-error", choices=("skip", "fail"), default="skip",
                   help="a bad record (corrupt or missing file, bad JSON line, empty document, absurd size): "
                        "record it in errors.jsonl and go on, or stop the run (default: skip)")
    p.add_argument("--bos", action="store_true", help="start each document with <|bos|>")
    p.add_argument("--eos", action="store_true", help="end each document with <|eos|> (usual for LM training)")
    p.add_argument("--allowed-special", metavar="TOKEN", action="append", default=[],
                   help="a special token of the text vocabulary to recognise inside text (repeatable; 'all')")
    p.add_argument("--bitrate", metavar="KBPS", type=_kbps, default=None,
                   help="audio: the highest bitrate to use, in kbit/s (default: all levels)")
    p.add_argument("--max-tokens", type=int, default=1 << 24, metavar="N",
                   help="skip documents of more tokens than this (default: 16777216)")
    p.add_argument("--confine", action="store_true",
                   help="every file a record names must lie inside its input: a folder's files (links resolved) "
                        "inside the folder, a manifest's media inside the manifest's folder; other records are "
                        "skipped with the reason (recorded in run.json)")
    _preprocess_args(p)
    p.add_argument("--limit", metavar="NAME=VALUE", action="append", default=[], type=_limit,
                   help="raise or lower a media limit for this run, e.g. --limit max_frames=1000000 or "
                        "--limit max_seconds=36000 (repeatable; the names are the fields of "
                        "unitok.media.MediaLimits, listed in README 'Limits')")
    p.add_argument("--batch", type=int, default=8, metavar="N", help="records per task sent to a worker (default: 8)")
    p.add_argument("--remote", metavar="URL", default=None,
                   help="encode with a running 'unitok serve' at URL (e.g. http://127.0.0.1:8000) instead of "
                        "loading the models here; files are still read here, under --limit")
    p.add_argument("--plugin", metavar="MODULE", action="append", default=[],
                   help="import MODULE first, in every worker too (e.g. a package registering its own tokenizer "
                        "types; repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("verify", help="check a tokenized dataset",
                       description="Check the shards of a 'unitok tokenize' run: files against their manifests "
                                   "(sizes, sha256), the Megatron index, groups, spans and errors.jsonl; then "
                                   "re-read a sample of documents from their sources and check that they encode to "
                                   "the stored ids and decode back to parts of the same kinds, text byte for byte "
                                   "and media of the same size. Exit status 1 when a check fails.")
    p.add_argument("shards", metavar="OUT", help="the output folder of 'unitok tokenize'")
    _suite_args(p)
    p.add_argument("--sample", type=int, default=16, metavar="N",
                   help="documents to round-trip, chosen at random (default: 16; -1: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default: 0)")
    p.add_argument("--decode-to", metavar="DIR", default=None,
                   help="also write the sampled documents' decoded parts to DIR")
    p.add_argument("--plugin", metavar="MODULE", action="append", default=[],
                   help="import MODULE first (e.g. a package registering its own tokenizer types)")

    def _pixels(text: str) -> int:
        if not text.isdigit() or not 1 <= int(text) <= 4096:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number from 1 to 4096")
        return int(text)

    p = sub.add_parser("show", help="draw pictures of tokens (reconstruction per scale, spectrograms, token map)",
                       description="Draw pictures a person can read into OUT, per input: <name>.scales.png (an "
                                   "image: the original and the reconstruction after each scale, side by side), "
                                   "<name>.spectrogram.png (audio: log-mel spectrograms of the original and of "
                                   "the reconstruction from 1, half and all levels), <name>.frames.png (video: "
                                   "frames of the original and the reconstruction, and the first frame after "
                                   "each scale), <name>.tokens.png (any input: one cell per token, hue by "
                                   "modality, brightness alternating by group) and <name>.show.json, the "
                                   "legend of every panel and colour. Inputs are media or text files (encoded "
                                   f"first) or token files (*{TOKEN_SUFFIX}, a JSON list of ids, or ids "
                                   "separated by spaces).")
    p.add_argument("inputs", nargs="+", metavar="FILE|DIR", help="media, text or token files, or folders of them")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the pictures (created)")
    _suite_args(p)
    p.add_argument("--width", type=_pixels, default=64, metavar="N", help="token map: tokens per row (default: 64)")
    p.add_argument("--cell", type=_pixels, default=4, metavar="PX",
                   help="token map: pixels per side of a token's cell (default: 4)")

    p = sub.add_parser("convert", help="make a unitok tokenizer of a public one (Mimi, EnCodec, DAC, SNAC, Emu3, ...)",
                       description="Read a local Hugging Face-format folder of a supported public tokenizer "
                                   "(config.json + safetensors; see README 'Public tokenizers') and write it as a "
                                   "unitok tokenizer checkpoint into OUT (usable as a suite's image/, video/ or "
                                   "audio/ folder). Nothing is downloaded. Pickle weights (.bin, .pth, .th, "
                                   ".ckpt) are converted first, with torch.load(weights_only=True) in a separate "
                                   "process. Needs the extra: pip install 'unitok[hf]'.")
    p.add_argument("folder", metavar="FOLDER", help="the reference's folder")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="folder for the unitok checkpoint (created)")
    p.add_argument("--modality", choices=["image", "video", "audio"], default=None,
                   help="video makes an Emu3 folder a video tokenizer (default: the reference's own modality)")
    p.add_argument("--layout", choices=["codec_depth", "delay", "level_delay"], default=None,
                   help="audio codes' layout (default: codec_depth, one group per frame)")
    p.add_argument("--delays", default=None, metavar="D,D,...",
                   help="level_delay: one delay per level, e.g. Dia's 0,8,9,10,11,12,13,14,15")
    p.add_argument("--order", choices=["level", "tree"], default="level",
                   help="SNAC: order within a coarse frame (tree: Orpheus's) (default: level)")

    p = sub.add_parser("serve", help="run the tokenizers as an HTTP service (pip install 'unitok[serve]')",
                       description="Serve encode, decode, streamed audio decode, the token space, health and "
                                   "Prometheus metrics over HTTP (FastAPI + uvicorn), with dynamic batching per "
                                   "modality over worker processes that each load the suite once. Media travel "
                                   "in the requests; the server never opens a path a request names. See README "
                                   "'Service'.")
    _suite_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0: any free port)")
    p.add_argument("--workers", type=int, default=1, metavar="K",
                   help="worker processes, each holding the models (with --device cuda, one GPU each, round "
                        "robin) (default: 1)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="torch threads per worker (default: 1)")
    p.add_argument("--max-batch", type=int, default=8, metavar="N",
                   help="most requests of one kind a worker takes at once (default: 8)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, metavar="MS",
                   help="how long a request waits for others of its kind to fill a batch (default: 5)")
    p.add_argument("--max-queue", type=int, default=256, metavar="N",
                   help="requests that may wait for a worker; beyond it the answer is 429 (default: 256)")
    p.add_argument("--max-body-bytes", type=int, default=64 * 1024 * 1024, metavar="N",
                   help="largest request body; beyond it the answer is 413 (default: 67108864)")
    p.add_argument("--limit", metavar="NAME=VALUE", action="append", default=[], type=_limit,
                   help="a media limit for every request, e.g. --limit max_pixels=4194304 (repeatable; the "
                        "fields of unitok.media.MediaLimits); a request over it is answered 413")
    p.add_argument("--plugin", metavar="MODULE", action="append", default=[],
                   help="import MODULE first in every worker (tokenizer types registered outside unitok)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"),
                   help="uvicorn's log level (default: warning)")

    for name, folder, what in (("train", "recipes", "train_{}.py"), ("bench", "benchmarks", "{}.py")):
        p = sub.add_parser(name, help=f"run a {folder[:-1]} script of a source checkout",
                           description=f"Run {folder}/{what.format('NAME')} from the unitok source checkout "
                                       f"(found beside the installed package, or in the current folder), "
                                       f"passing ARGS through. Run it with --help to see its options.",
                           add_help=True)
        p.add_argument("target", metavar="MODALITY" if name == "train" else "NAME",
                       help="text, image, ..." if name == "train" else "throughput, reconstruction, ...")
        p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
        p.set_defaults(script_folder=folder, script_pattern=what)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def _load(args):
    from .tokenizer import load

    return load(args.suite, device=args.device)


def _expand(inputs: list[str], accept) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named on the command line, with folders expanded recursively (sorted, so runs are
    reproducible). Returns (files, [(input, problem)])."""
    files, problems = [], []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and accept(p))
            if not found:
                problems.append((name, "folder holds no file this command can read"))
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            problems.append((name, "no such file or folder"))
    return files, problems


def _progress(items, desc: str):
    from .progress import progress

    return progress(items, desc, "file", enabled=None if len(items) > 1 else False)


def _follow_items(tok, files: list[Path], verb: str) -> None:
    """One input: show the progress inside it (a long video or audio file), since the per-file bar
    has nothing to show. Several inputs: the per-file bar is enough."""
    if len(files) == 1:
        from .progress import ItemProgress

        follow = ItemProgress(f"{verb} {files[0].name}")
        for codec in tok.media.values():
            codec.progress = follow


def _report(failures, done: int, what: str, extra: str, started: float) -> int:
    for name, reason in failures:
        if reason.startswith(f"{name}: "):      # the error named the file already
            reason = reason[len(name) + 2:]
        print(f"error: {name}: {reason}", file=sys.stderr)
    summary = f"{what} {done} file(s){extra} in {time.perf_counter() - started:.2f} s"
    if failures:
        summary += f"; {len(failures)} failed"
    print(summary, file=sys.stderr)
    return 1 if failures else 0


def cmd_info(args) -> int:
    from .suiteinfo import cached_description, describe
    from .files import ASSETS

    policy = _preprocess(args)
    # the suite's saved description, when its files are still the ones described: no model to load
    cached = None if policy or args.device != "cpu" else cached_description(args.suite or ASSETS)
    if cached is not None:
        lines, space = cached
    else:
        from .media import Preprocess

        preprocess = Preprocess(**policy)
        tok = _load(args)
        lines, space = describe(tok, preprocess), tok.space
    if args.json:
        print(space.to_json())
        return 0
    print(f"suite: {args.suite or 'bundled defaults'}")
    for line in lines:
        print(line)
    print()
    print(space.table())
    return 0


def cmd_encode(args) -> int:
    from .media import Preprocess, kind_of, open_media
    from .pipeline.worker import MAX_TEXT_BYTES

    started = time.perf_counter()
    try:
        preprocess = Preprocess(**_preprocess(args))
    except UnitokError as e:
        print(f"unitok encode: error: {e}", file=sys.stderr)
        return 2
    tok = _load(args)
    tok.preprocess = preprocess
    if args.bitrate is not None:
        if "audio" not in tok.media:
            raise UnitokError("--bitrate applies to audio, but this suite has no audio tokenizer")
        levels = tok.media["audio"].set_bitrate(args.bitrate)
        print(f"audio: {levels} level(s), {tok.media['audio'].bitrates[levels]:.3g} kbps", file=sys.stderr)
    files, failures = _expand(args.inputs, lambda p: kind_of(p) is not None)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    where = _mirror(files, out_dir)
    allowed = "all" if "all" in args.allowed_special else set(args.allowed_special)
    done = tokens = 0
    _follow_items(tok, files, "encode")
    for path in _progress(files, "encode"):
        try:
            kind = kind_of(path)
            if kind == "text":   # a regular file only: a FIFO would block, /dev/zero never end
                item = read_regular_file(path, MAX_TEXT_BYTES, MediaError, "text file")
            elif kind is None:
                raise UnitokError("unknown file type; expected text (.txt, .md, ...), image, video or audio")
            else:
                item = open_media(path)
            seq = tok.encode(item, bos=args.bos, eos=args.eos, allowed_special=allowed)
            data = seq.to_dict()
            data["source"] = path.name          # decode gives the part its name and text its extension back
            target = where[path].with_name(path.name + TOKEN_SUFFIX)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, (json.dumps(data) + "\n").encode())   # never a half token file
            done += 1
            tokens += len(seq)
        except UnitokError as e:
            failures.append((str(path), getattr(e, "reason", None) or str(e)))
        except OSError as e:     # the token file could not be written (a read-only or full folder)
            failures.append((str(path), _write_error(e)))
    return _report(failures, done, "encoded", f" ({tokens} tokens) to {out_dir}", started)


def _write_error(e: OSError) -> str:
    return f"cannot write {e.filename}: {e.strerror or e}" if e.filename else f"cannot write the output ({e})"


def _mirror(files: list[Path], out_dir: Path) -> dict[Path, Path]:
    """Where each input's output goes: ``out_dir`` + its path below the inputs' common folder, so
    ``a/pic.png`` and ``b/pic.png`` give ``OUT/a/...`` and ``OUT/b/...`` instead of one file."""
    if not files:
        return {}
    root = Path(os.path.commonpath([str(p.resolve().parent) for p in files]))
    return {p: out_dir / p.resolve().relative_to(root) for p in files}


def _source_name(token_file: Path, data_source) -> str:
    """The file a token file was made from: its recorded ``source``, else its own name without
    the token suffix (``notes.py.tokens.json`` -> ``notes.py``)."""
    if isinstance(data_source, str) and data_source and Path(data_source).name == data_source:
        return data_source
    name = token_file.name
    for suffix in (TOKEN_SUFFIX, ".json", ".txt"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _recorded_source(token_file: Path):
    """The ``source`` a token file of ``unitok encode`` records (None for bare id lists)."""
    from .sequence import MAX_TOKEN_FILE_BYTES

    try:
        data = json.loads(read_regular_file(token_file, MAX_TOKEN_FILE_BYTES, ValueError, "token file"))
    except (ValueError, RecursionError):
        return None
    return data.get("source") if isinstance(data, dict) else None


def _claim(folder: Path, source: str, kinds: list[str], token_file: Path, claimed: dict,
           originals: dict) -> list[Path]:
    """Output paths for one token file's parts, never one another input of this run writes: the
    short names (``photo.png``) unless they are another input's original name or already written,
    then the long ones (``photo.jpg.png``); a clash even then is an error, not an overwrite."""
    others = originals.get(folder, set()) - {source}
    targets = [folder / n for n in _output_names(source, kinds)]
    if any(t.name in others or t in claimed for t in targets):
        targets = [folder / n for n in _output_names(source, kinds, long=True)]
    for t in targets:
        if t in claimed:
            raise UnitokError(f"its part would overwrite {t}, written for {claimed[t]}; decode the two into "
                              f"separate folders")
    claimed.update((t, token_file) for t in targets)
    return targets


def _output_names(source: str, kinds: list[str], *, long: bool = False) -> list[str]:
    """``notes.py`` + text -> ``notes.py`` (text keeps its extension); ``photo.jpg`` + image ->
    ``photo.png`` (or ``photo.jpg.png`` with ``long``, when two sources would meet); several
    parts -> ``photo.part0.txt``, ``photo.part1.png``, ..."""
    from .media import kind_of   # here, like every heavy import of this module: help answers without torch

    path = Path(source)
    stem = source if long or not path.suffix else path.stem
    names = []
    for i, kind in enumerate(kinds):
        if kind == "text":
            ext = path.suffix if path.suffix and kind_of(path) in ("text", None) else ".txt"
            if long and ext == path.suffix:
                ext = ""
        else:
            ext = PART_SUFFIX[kind]
        names.append(f"{stem}.part{i}{ext}" if len(kinds) > 1 else f"{stem}{ext}")
    return names


def cmd_decode(args) -> int:
    from .space import TokenSpace
    from .sequence import TokenSequence

    started = time.perf_counter()
    tok = _load(args)
    if args.space:
        tok.space.check_fingerprint(TokenSpace.load(args.space).fingerprint, source=f"ids of {args.space}")
    files, failures = _expand(args.inputs, lambda p: p.name.endswith(TOKEN_SUFFIX))
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    where = _mirror(files, out_dir)
    # the files the inputs were made from, per output folder: a decoded part never takes the name
    # of another input's original (photo.jpg -> photo.png would meet photo.png's own decode)
    originals: dict[Path, set[str]] = {}
    for p in files:
        originals.setdefault(where[p].parent, set()).add(_source_name(p, None))
    claimed: dict[Path, Path] = {}     # output file -> the token file that wrote it in this run
    done = parts = 0
    _follow_items(tok, files, "decode")
    for path in _progress(files, "decode"):
        try:
            seq = TokenSequence.load(path)
            decoded = tok.decode(seq.ids, strict=not args.lenient, fingerprint=seq.fingerprint)
            for r in decoded.repairs:
                print(f"repaired: {path}: {r}", file=sys.stderr)
            if not decoded and not len(seq.ids):
                decoded = [""]        # an empty text file encodes to no id at all; it comes back empty
            elif not decoded:
                raise UnitokError("no parts to write (the ids decode to nothing)")
            kinds = ["text" if isinstance(item, str) else type(item).__name__.lower() for item in decoded]
            source = _source_name(path, _recorded_source(path))
            targets = _claim(where[path].parent, source, kinds, path, claimed, originals)
            for item, kind, target in zip(decoded, kinds, targets):
                target.parent.mkdir(parents=True, exist_ok=True)
                if kind == "text":
                    write_atomic(target, item.encode("utf-8", "surrogateescape"))
                else:
                    item.save(target)
                parts += 1
            done += 1
        except UnitokError as e:
            position = getattr(e, "position", None)
            at = f" (at id {position})" if position is not None else ""
            failures.append((str(path), (getattr(e, "reason", None) or str(e)) + at))
        except OSError as e:     # the output could not be written (a read-only or full folder)
            failures.append((str(path), _write_error(e)))
    return _report(failures, done, "decoded", f" into {parts} part(s) in {out_dir}", started)


def _limit(text: str) -> tuple[str, float]:
    """argparse type of --limit: 'max_frames=1000000' -> ('max_frames', 1000000)."""
    import argparse
    import dataclasses

    from .media import MediaLimits

    name, sep, value = text.partition("=")
    names = [f.name for f in dataclasses.fields(MediaLimits)]
    if not sep or name.strip() not in names:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE with NAME one of {', '.join(names)}; got {text!r}")
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: {value!r} is not a number") from None
    return name.strip(), int(number) if number.is_integer() and name.strip() != "max_seconds" else number


def cmd_tokenize(args) -> int:
    from .pipeline import Options, TokenizeConfig, tokenize

    allowed = "all" if "all" in args.allowed_special else tuple(args.allowed_special)
    cfg = TokenizeConfig(
        inputs=args.inputs, output=args.output, suite=args.remote or args.suite, shard_size=args.shard_size,
        options=Options(bos=args.bos, eos=args.eos, allowed_special=allowed, bitrate=args.bitrate,
                        max_tokens=args.max_tokens, limits=dict(args.limit), confine=args.confine,
                        preprocess=_preprocess(args)),
        workers=args.workers, engine=args.engine, device=args.device, resume=args.resume, overwrite=args.overwrite,
        on_error=args.on_error, plugins=tuple(args.plugin), batch=args.batch,
        progress=False if args.no_progress else None, ray_address=args.ray_address,
        loader="unitok.serve.load_remote" if args.remote else "unitok.load")
    summary = tokenize(cfg)
    print(summary.line(), file=sys.stderr)
    return 0


def cmd_convert(args) -> int:
    import tempfile

    from .adapters import from_hf
    from .adapters.convert import PICKLES, convert_pickles
    from .errors import ConfigError

    folder = Path(args.folder)
    delays = None
    if args.delays:
        try:
            delays = [int(d) for d in args.delays.split(",")]
        except ValueError:
            raise ConfigError(f"--delays {args.delays!r}: expected whole numbers separated by commas") from None
    with tempfile.TemporaryDirectory() as tmp:
        if folder.is_dir() and not any(folder.glob("*.safetensors")) and \
                any(p.suffix.lower() in PICKLES for p in folder.iterdir()):
            written = convert_pickles(folder, tmp)
            print(f"converted {len(written)} pickle file(s) to safetensors (weights only, separate process)")
            folder = Path(tmp)
        tok = from_hf(folder, modality=args.modality, layout=args.layout, delays=delays, order=args.order)
        tok.save_pretrained(args.output)
    print(f"{args.output}: {tok.reference_name} as {tok.checkpoint_type} ({tok.modality}, "
          f"{len(tok.codebook_sizes)} level(s) of {max(tok.codebook_sizes)} codes)")
    return 0


def cmd_verify(args) -> int:
    from .pipeline import verify
    from .pipeline.worker import import_plugins

    started = time.perf_counter()
    import_plugins(args.plugin)
    report = verify(args.shards, _load(args), sample=args.sample, seed=args.seed, decode_to=args.decode_to)
    for problem in report.problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"verified {report.shards} shard(s), {report.documents} document(s); round-tripped {report.sampled} "
          f"in {time.perf_counter() - started:.2f} s: " + ("ok" if report.ok else f"{len(report.problems)} problem(s)"),
          file=sys.stderr)
    return 0 if report.ok else 1


def cmd_show(args) -> int:
    from .media import kind_of
    from .show import output_name, show_file

    started = time.perf_counter()
    tok = _load(args)
    files, failures = _expand(args.inputs, lambda p: kind_of(p) is not None or p.name.endswith(TOKEN_SUFFIX))
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    where = _mirror(files, out_dir)
    claimed: dict[Path, Path] = {}     # <folder>/<name> -> the input whose pictures have that name
    done = pictures = 0
    for path in _progress(files, "show"):
        try:
            key = where[path].parent / output_name(path)
            if key in claimed:
                raise UnitokError(f"its pictures would overwrite those of {claimed[key]} ({key}.*); show the two "
                                  f"into separate folders")
            claimed[key] = path
            pictures += sum(p.suffix == ".png" for p in show_file(tok, path, where[path].parent, width=args.width,
                                                                   cell=args.cell))
            done += 1
        except UnitokError as e:
            position = getattr(e, "position", None)
            at = f" (at id {position})" if position is not None else ""
            failures.append((str(path), (getattr(e, "reason", None) or str(e)) + at))
        except OSError as e:
            failures.append((str(path), _write_error(e)))
    return _report(failures, done, "showed", f" in {pictures} picture(s) in {out_dir}", started)


def cmd_script(args) -> int:
    """``unitok train`` / ``unitok bench``: recipes and benchmarks are scripts kept in the source
    tree (hackable, like torchtune's recipes), not part of the installed package."""
    import runpy

    script = args.script_pattern.format(args.target)
    roots = [Path(__file__).resolve().parent.parent, Path.cwd()]
    found = next((r / args.script_folder / script for r in roots if (r / args.script_folder / script).is_file()), None)
    if found is None:
        available = sorted({p.name for r in roots for p in (r / args.script_folder).glob("*.py")})
        raise UnitokError(f"no {args.script_folder}/{script} in the unitok source checkout "
                          f"(available: {', '.join(available) or 'none; run from a clone of the repository'})")
    if args.script_folder == "benchmarks":
        return _run_benchmark(found, args.args)
    sys.argv = [str(found), *args.args]
    try:
        runpy.run_path(str(found), run_name="__main__")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def _run_benchmark(script: Path, argv: list[str]) -> int:
    """Run a benchmark as ``python benchmarks/NAME.py ARGS`` does, in a fresh interpreter: the
    scripts import their siblings by plain name (``from report import ...``), which works because
    Python puts a script's folder first on the path, and their probes time fresh processes anyway.
    What it prints comes back through ``sys.stdout`` (so a caller capturing it sees it); progress
    on stderr goes straight through."""
    import os
    import subprocess

    env = dict(os.environ, PYTHONUNBUFFERED="1")      # lines as they come, not at the end
    with subprocess.Popen([sys.executable, str(script), *argv], stdout=subprocess.PIPE, text=True,
                          env=env) as proc:
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
        except BrokenPipeError:      # the reader left (`unitok bench ... | head`): the benchmark stops too
            proc.kill()
    return proc.returncode


def cmd_serve(args) -> int:
    try:
        from .serve import ServeConfig, serve
        from .serve.app import create_app   # noqa: F401  (FastAPI and uvicorn: the [serve] extra)
    except ImportError as e:
        raise UnitokError(f"unitok serve needs the [serve] extra: pip install 'unitok[serve]' ({e})") from None
    cfg = ServeConfig(suite=args.suite, host=args.host, port=args.port, workers=args.workers, device=args.device,
                      threads=args.threads, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                      max_queue=args.max_queue, max_body_bytes=args.max_body_bytes, limits=dict(args.limit),
                      plugins=tuple(args.plugin))
    print(f"unitok serve: http://{args.host}:{args.port} ({args.workers} worker(s), {args.device})", file=sys.stderr)
    serve(cfg, log_level=args.log_level)
    return 0


COMMANDS = {"info": cmd_info, "encode": cmd_encode, "decode": cmd_decode, "tokenize": cmd_tokenize,
            "verify": cmd_verify, "show": cmd_show, "train": cmd_script, "bench": cmd_script, "serve": cmd_serve,
            "convert": cmd_convert}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UnitokError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:      # `unitok info --json | head`: the reader left; say nothing more
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141               # 128 + SIGPIPE, what a shell reports for a command its pipe closed
    except OSError as e:         # a read-only or full output folder, outside any one input's handling
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
