"""The ``unitok`` command's arguments: the parser of every subcommand and the argument types.

Kept apart from :mod:`unitok.cli` (what each command does) so that both stay short; like the rest of
the command line, nothing here imports torch at module level (``unitok --help`` answers without it).
"""

from __future__ import annotations

import argparse
import re

TOKEN_SUFFIX = ".tokens.json"


def _version() -> str:
    from . import __version__

    return __version__


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


def _sample(text: str) -> int:
    """argparse type of ``verify --sample``: a count >= 0, or -1 for every document."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < -1:
        raise argparse.ArgumentTypeError(f"{text}: must be a number of documents >= 0, or -1 for all of them")
    return value


def _preprocess_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("preprocessing (before tokenizing; by default media keep their size, rate and length, "
                                 "and videos are split at scene cuts)")
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
    g.add_argument("--split-shots", action=argparse.BooleanOptionalAction, default=None,
                   help="code each shot of a video (split at detected scene cuts) as its own video segment, so no "
                        "latent mixes two shots; each extra shot pays its own key frame (default: on; "
                        "--no-split-shots codes every video as one segment, as unitok before 0.4 did; a resumed "
                        "run keeps the setting it started with)")
    g.add_argument("--min-shot-frames", type=_positive(int), metavar="N",
                   help="with --split-shots: every shot keeps at least N frames (default: 4)")


def preprocess_options(args) -> dict:
    names = ("max_pixels", "min_pixels", "target_pixels", "max_fps", "max_duration", "split_shots",
             "min_shot_frames")
    # only what was given: a policy left out takes Preprocess's default in a new run and the recorded
    # value in a resumed one (``Options.resuming``); --no-split-shots gives False
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _suite_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", metavar="DIR", default=None,
                   help="tokenizer suite folder (default: the suite bundled with unitok)")
    p.add_argument("--device", default="cpu", type=_device,
                   help="torch device for media tokenizers: cpu, cuda, cuda:N or mps (default: cpu)")


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--bpe-dropout", type=float, default=0.0, metavar="P",
                   help="BPE-dropout of the text: skip each merge with probability P, for segmentation noise "
                        "in LM training (default: 0, plain BPE)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of --bpe-dropout; record i uses (S, i), so the shards do not depend on the "
                        "worker count (default: 0)")
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
    p.add_argument("--sample", type=_sample, default=16, metavar="N",
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
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local worker processes, or a Ray Serve application with a pool of replicas per "
                        "modality (pip install 'unitok[ray]'; joins RAY_ADDRESS or --ray-address, else starts "
                        "a local Ray) (default: local)")
    p.add_argument("--replicas", default="1", metavar="N|POOL=N,...",
                   help="--engine ray: replicas of every pool, or per pool (default, image, video, audio; 0 "
                        "folds a modality into default), e.g. image=2,audio=1 (default: 1)")
    p.add_argument("--gpus-per-replica", type=float, default=0.0, metavar="G",
                   help="--engine ray: GPUs each replica holds; its models run on cuda (default: 0)")
    p.add_argument("--cpus-per-replica", type=float, default=1.0, metavar="C",
                   help="--engine ray: CPUs Ray reserves for each replica (default: 1)")
    p.add_argument("--ray-address", metavar="ADDR", default=None, help="Ray cluster to run on with --engine ray")

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
