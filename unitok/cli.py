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

import json
import os
import sys
import time
from pathlib import Path

from .cliargs import TOKEN_SUFFIX, build_parser, preprocess_options
from .errors import MediaError, UnitokError
from .files import read_regular_file, regular_file_size, walk_files, write_atomic

PART_SUFFIX = {"image": ".png", "video": ".mp4", "audio": ".wav"}


def _load(args):
    from .tokenizer import load

    return load(args.suite, device=args.device)


def _expand(inputs: list[str], accept, wanted: str) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named on the command line, with folders expanded recursively (sorted, so runs are
    reproducible). Returns (files, [(input, problem)]). A folder's files that ``accept`` does not
    take (``wanted`` says what it takes) are left out, and a note on standard error says which."""
    files, problems = [], []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            # a FIFO, a device or a broken link of a readable name, and a subfolder that cannot be
            # listed (a path past PATH_MAX), are reported by name instead of vanishing or stopping all
            entries, unlisted = walk_files(path)
            found, refused = [], [(str(p), f"cannot list this folder ({reason})") for p, reason in unlisted]
            for p in sorted(p for p in entries if accept(p)):
                try:
                    regular_file_size(p, UnitokError)
                    found.append(p)
                except UnitokError as e:
                    refused.append((str(p), str(e)))
            left = sorted(p.relative_to(path).as_posix() for p in entries if not accept(p))
            if left:
                shown = ", ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
                print(f"note: {name}: left out {len(left)} file(s) that are not {wanted}: {shown}", file=sys.stderr)
            if not found and not refused:
                problems.append((name, "folder holds no file this command can read"))
            files.extend(found)
            problems.extend(sorted(refused))
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
    from .suiteinfo import BUNDLED_SUITE_VERSION, cached_description, describe
    from .files import ASSETS

    policy = preprocess_options(args)
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
    print(f"suite: {args.suite or f'bundled defaults (bundled suite version {BUNDLED_SUITE_VERSION})'}")
    for line in lines:
        print(line)
    print()
    print(space.table())
    return 0


def cmd_encode(args) -> int:
    from .media import Preprocess, kind_of, open_media
    from .pipeline.worker import MAX_TEXT_BYTES, check_allowed_special, set_audio_bitrate

    started = time.perf_counter()
    try:
        preprocess = Preprocess(**preprocess_options(args))
    except UnitokError as e:
        print(f"unitok encode: error: {e}", file=sys.stderr)
        return 2
    tok = _load(args)
    tok.preprocess = preprocess
    if args.bitrate is not None:
        levels = set_audio_bitrate(tok, args.bitrate)
        print(f"audio: {levels} level(s), {tok.media['audio'].bitrates[levels]:.3g} kbps", file=sys.stderr)
    allowed = "all" if "all" in args.allowed_special else set(args.allowed_special)
    try:
        check_allowed_special(tok, allowed)   # a name the vocabulary lacks is the command's mistake
    except UnitokError as e:
        print(f"unitok encode: error: --allowed-special: {e}", file=sys.stderr)
        return 2
    files, failures = _expand(args.inputs, lambda p: kind_of(p) is not None, "text, image, video or audio")
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    where = _mirror(files, out_dir)
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


def _join_shots_of_a_video(decoded: list, source: str) -> list:
    """A token file made from one video file (or animated GIF) holds its shots as consecutive video
    segments (shot splitting, the default): decode writes them back as one video, its sound beside
    it as before."""
    from .media import Video, kind_of
    from .media.shots import join_shots

    if kind_of(Path(source)) not in ("video", "image") or sum(isinstance(item, Video) for item in decoded) < 2:
        return decoded
    out: list = []
    for item in decoded:
        last = out[-1] if out else None
        if isinstance(item, Video) and isinstance(last, Video) and \
                (item.height, item.width, item.fps) == (last.height, last.width, last.fps):
            out[-1] = join_shots([last, item])
        else:
            out.append(item)
    return out


def cmd_decode(args) -> int:
    from .space import TokenSpace
    from .sequence import TokenSequence

    started = time.perf_counter()
    tok = _load(args)
    if args.space:
        tok.space.check_fingerprint(TokenSpace.load(args.space).fingerprint, source=f"ids of {args.space}")
    files, failures = _expand(args.inputs, lambda p: p.name.endswith(TOKEN_SUFFIX), f"token files (*{TOKEN_SUFFIX})")
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
            seq, extra = TokenSequence.read(path)
            decoded = tok.decode(seq.ids, strict=not args.lenient, fingerprint=seq.fingerprint)
            for r in decoded.repairs:
                print(f"repaired: {path}: {r}", file=sys.stderr)
            if not decoded and not len(seq.ids):
                decoded = [""]        # an empty text file encodes to no id at all; it comes back empty
            elif not decoded:
                raise UnitokError("no parts to write (the ids decode to nothing)")
            source = _source_name(path, extra.get("source"))
            decoded = _join_shots_of_a_video(decoded, source)
            kinds = ["text" if isinstance(item, str) else type(item).__name__.lower() for item in decoded]
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


def cmd_tokenize(args) -> int:
    from .pipeline import Options, TokenizeConfig, tokenize

    allowed = "all" if "all" in args.allowed_special else tuple(args.allowed_special)
    if args.remote and args.bpe_dropout:
        from .errors import ConfigError

        raise ConfigError("--bpe-dropout needs the suite loaded here: 'unitok serve' encodes without dropout; "
                          "drop --remote or --bpe-dropout")
    cfg = TokenizeConfig(
        inputs=args.inputs, output=args.output, suite=args.remote or args.suite, shard_size=args.shard_size,
        options=Options(bos=args.bos, eos=args.eos, allowed_special=allowed, bitrate=args.bitrate,
                        max_tokens=args.max_tokens, limits=dict(args.limit), confine=args.confine,
                        preprocess=preprocess_options(args), bpe_dropout=args.bpe_dropout, seed=args.seed),
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
    files, failures = _expand(args.inputs, lambda p: kind_of(p) is not None or p.name.endswith(TOKEN_SUFFIX),
                              "media, text or token files")
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
    if args.engine == "ray":
        try:
            from .serve import ray_app   # Ray Serve: the [ray] extra
        except ImportError as e:
            raise UnitokError(f"unitok serve --engine ray needs Ray Serve: pip install 'unitok[ray]' ({e})") from None
        print(f"unitok serve: http://{args.host}:{args.port} (Ray Serve, replicas {args.replicas})", file=sys.stderr)
        ray_app.run(cfg, replicas=ray_app.parse_replicas(args.replicas), gpus_per_replica=args.gpus_per_replica,
                    cpus_per_replica=args.cpus_per_replica, address=args.ray_address)
        return 0
    print(f"unitok serve: http://{args.host}:{args.port} ({args.workers} worker(s), {args.device})", file=sys.stderr)
    serve(cfg, log_level=args.log_level)
    return 0


COMMANDS = {"info": cmd_info, "encode": cmd_encode, "decode": cmd_decode, "tokenize": cmd_tokenize,
            "verify": cmd_verify, "show": cmd_show, "train": cmd_script, "bench": cmd_script, "serve": cmd_serve,
            "convert": cmd_convert}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
