"""A tokenize run: checking and writing ``run.json``, resuming, putting results into shards,
progress, ``errors.jsonl``, ``index.json`` and the closing summary. Engines only map records to
results; everything that decides the bytes on disk is here and in ``shards.py``."""

from __future__ import annotations

import fcntl
import json
import time
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import ConfigError, UnitokError
from ..files import read_json_file
from ..progress import Progress
from ..space import MANIFEST_VERSION, check_space_version
from ..suiteinfo import retired_advice, space_name
from .shards import (ERRORS_FILE, FORMAT, FORMAT_VERSION, INDEX_FILE, LOCK_FILE, RUN_FILE, Document, ShardContent, Skipped,
                     canonical_json, complete_shards, id_dtype, owned_paths, shard_name, write_atomic, write_shard)
from .local import LocalEngine
from .sources import count_records, input_facts, iter_records, resolve_inputs
from .worker import (Options, Worker, WorkerSpec, check_allowed_special, import_plugins, resolve_loader,
                     upgrade_recorded)

ENGINES = ("local", "ray")


@dataclass
class TokenizeConfig:
    """A tokenize run. ``inputs``, ``shard_size``, ``options`` and the suite's fingerprint must
    match ``run.json`` to resume; the rest (workers, engine, device, batch) may change."""

    inputs: list[str]
    output: str | Path
    suite: str | None = None
    shard_size: int = 1000
    options: Options = field(default_factory=Options)
    workers: int = 1
    engine: str = "local"
    device: str = "cpu"
    resume: bool = False
    overwrite: bool = False
    on_error: str = "skip"           # or "fail": stop at the first bad record
    plugins: tuple = ()
    batch: int = 8                   # records per task sent to a worker
    progress: bool | None = None     # None: a bar when stderr is a terminal
    ray_address: str | None = None
    loader: str = "unitok.load"      # the suite loader, ``module.function`` (see worker.resolve_loader)

    def check(self) -> None:
        if not self.inputs:
            raise ConfigError("no inputs: name folders, files, globs, JSONL manifests or tar shards")
        if self.shard_size < 1:
            raise ConfigError(f"--shard-size must be at least 1, got {self.shard_size}")
        if self.workers < 0:
            raise ConfigError(f"--workers must be 0 (in this process) or more, got {self.workers}")
        if self.batch < 1:
            raise ConfigError(f"--batch must be at least 1, got {self.batch}")
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine {self.engine!r}; expected one of {', '.join(ENGINES)}")
        if self.on_error not in ("skip", "fail"):
            raise ConfigError(f"--on-error must be skip or fail, got {self.on_error!r}")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; pick one")


@dataclass
class Summary:
    output: Path
    records: int = 0
    documents: int = 0
    skipped: int = 0
    tokens: int = 0
    tokens_by_modality: dict = field(default_factory=dict)
    shards: int = 0
    shards_kept: int = 0          # complete shards found on resume
    seconds: float = 0.0
    records_done: int = 0         # records tokenized by this invocation

    def line(self) -> str:
        per = ", ".join(f"{m} {n}" for m, n in self.tokens_by_modality.items())
        rate = (f"; {self.records_done / self.seconds:.1f} records/s" if self.seconds > 0 and self.records_done
                else "")
        text = (f"tokenized {self.documents} document(s) of {self.records} record(s) into {self.shards} shard(s) in "
                f"{self.output}: {self.tokens} tokens ({per or 'none'}) in {self.seconds:.1f} s{rate}")
        if self.shards_kept:
            text += f"; resumed, kept {self.shards_kept} complete shard(s)"
        if self.skipped:
            text += f"; skipped {self.skipped} record(s), listed in {self.output / ERRORS_FILE}"
        return text


def _input_facts(inputs: list[str]) -> list[dict]:
    """The resolved inputs as ``run.json`` records them, so that a resume notices a changed input:
    per input, what it expands to (see ``sources.input_facts``)."""
    facts = []
    for path in inputs:
        facts.append({"path": path, **input_facts(path)})
    return facts


def run_config(cfg: TokenizeConfig, tok) -> dict:
    """The content of ``run.json``: what a resumed run must share with the first one."""
    return {"format": FORMAT, "version": FORMAT_VERSION, "inputs": _input_facts(resolve_inputs(cfg.inputs)),
            "shard_size": cfg.shard_size, "options": cfg.options.to_json(), "fingerprint": tok.space.fingerprint,
            "space_version": MANIFEST_VERSION,
            "vocab_size": len(tok.space), "dtype": id_dtype(len(tok.space)).name}


def _input_changes(old: list, new: list) -> list[str]:
    """What changed in the inputs since ``run.json`` was written, input by input."""
    old_paths = [f.get("path") if isinstance(f, dict) else f for f in old]
    new_paths = [f["path"] for f in new]
    if old_paths != new_paths:
        return [f"inputs {canonical_json(old_paths)} vs {canonical_json(new_paths)}"]
    out = []
    for was, now in zip(old, new):
        if was == now:
            continue
        name = now["path"]
        if "files" in now and isinstance(was, dict) and "files" in was:
            more = ("" if was["files"] != now["files"] else
                    " (as many files, but some were renamed, replaced or changed size)")
            out.append(f"input {name} matches {now['files']} file(s) now, {was['files']} when the run started{more}")
        elif "missing" in now:
            out.append(f"input {name} is gone ({now['missing']})")
        else:
            out.append(f"input {name} changed since the run started ({canonical_json(was)} vs {canonical_json(now)})")
    return out


def _settled(cfg: TokenizeConfig, out: Path) -> TokenizeConfig:
    """``cfg`` with the options a resumed run keeps from its start (``Options.resuming``): a
    default that changed since does not stop a run that never chose. Whatever else differs is
    reported by ``prepare_output``."""
    run_file = out / RUN_FILE
    if not cfg.resume or cfg.overwrite or not run_file.is_file():
        return cfg
    try:
        old = read_json_file(run_file, ConfigError, "run configuration")
    except ConfigError:
        return cfg   # prepare_output says what is wrong with it
    if not isinstance(old, dict):
        return cfg
    return replace(cfg, options=cfg.options.resuming(old.get("options")))


def _differences(old: dict, new: dict) -> list[str]:
    what = {"inputs": "inputs", "shard_size": "shard size", "options": "options", "fingerprint":
            "tokenizer suite fingerprint", "format": "format", "version": "format version"}
    out = []
    old = {**old, "options": upgrade_recorded(old.get("options"))}
    for key, label in what.items():
        if old.get(key) != new.get(key):
            if key == "inputs" and isinstance(old.get(key), list):
                out.extend(_input_changes(old[key], new[key]))
            elif key == "fingerprint":
                out.append(f"{label}: the run used {space_name(old.get(key))}, this suite is "
                           f"{str(new.get(key))[:12]} (another suite or a changed tokenizer"
                           f"{retired_advice(old.get(key)) or ''})")
            else:
                out.append(f"{label} {canonical_json(old.get(key))} vs {canonical_json(new.get(key))}")
    return out


def prepare_output(cfg: TokenizeConfig, config: dict) -> dict[int, dict]:
    """Create, resume or clear the output folder; returns the complete shards kept (by number)."""
    out = Path(cfg.output)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    run_file = out / RUN_FILE
    ours = owned_paths(out)
    if cfg.overwrite:
        for p in ours:
            p.unlink()
        ours = []
    if not ours:
        write_atomic(run_file, (json.dumps(config, indent=1, sort_keys=True) + "\n").encode())
        return {}
    if not cfg.resume:
        raise ConfigError(f"{out} already holds a tokenize run; pass --resume to continue it or --overwrite to "
                          f"start over")
    if not run_file.exists():
        raise ConfigError(f"{out} holds shard files but no {RUN_FILE}, so it cannot be resumed; pass --overwrite "
                          f"to start over")
    try:
        old = read_json_file(run_file, ConfigError, "run configuration")
    except ConfigError as e:
        raise ConfigError(f"{e}; pass --overwrite to start over") from None
    if not isinstance(old, dict):
        raise ConfigError(f"{run_file}: not a tokenize run's configuration; pass --overwrite to start over")
    check_space_version(old.get("space_version"), source=f"cannot resume {out}: {run_file}")
    diff = _differences(old, config)
    if diff:
        raise ConfigError(f"cannot resume {out}: this run differs from the one that started it: " + "; ".join(diff)
                          + ". Run with the same inputs, shard size, options and suite, or pass --overwrite to "
                            "start over.")
    kept = {k: m for k, m in complete_shards(out).items()
            if m.get("fingerprint") == config["fingerprint"] and m["records"][0] == k * cfg.shard_size}
    for p in out.glob(".*.partial"):
        p.unlink()
    return kept


class Assembler:
    """Collects results by record index and writes each shard once all its records are in.

    Shards are written by one background thread (at most ``queue`` waiting), so the main thread
    keeps the workers fed while a shard is written and synced.
    """

    def __init__(self, out: Path, shard_size: int, kept: dict[int, dict], *, dtype, fingerprint: str,
                 queue: int = 2):
        self.out, self.size, self.kept, self.dtype, self.fingerprint = out, shard_size, kept, dtype, fingerprint
        self.open: dict[int, ShardContent] = {}
        self.writing: dict[int, Future] = {}
        self.written: dict[int, dict] = {}
        self.queue = queue
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="unitok-shard-writer")

    def add(self, result: Document | Skipped) -> None:
        k = result.index // self.size
        shard = self.open.get(k)
        if shard is None:
            shard = self.open[k] = ShardContent(k, k * self.size, (k + 1) * self.size)
        shard.results[result.index] = result
        if shard.complete:
            self._write(shard)

    def finish(self, total: int) -> None:
        """The input ended after ``total`` records: the last shard is short; write what is left."""
        last = (total - 1) // self.size if total else -1
        if last >= 0 and not any(last in d for d in (self.kept, self.writing, self.written)):
            shard = self.open.setdefault(last, ShardContent(last, last * self.size, total))
            shard.stop = total
            if shard.complete:
                self._write(shard)
        self._collect(0)
        if self.open:
            raise UnitokError(f"internal error: shard(s) {sorted(self.open)} did not receive all their records")
        expected = -(-total // self.size)
        for k, m in self.kept.items():
            want = [k * self.size, min((k + 1) * self.size, total)]
            if k >= expected or m["records"] != want:
                raise ConfigError(f"{self.out / shard_name(k)}.json covers records {m['records']}, but the input now "
                                  f"gives {want if k < expected else 'no such shard'}: the input changed since the "
                                  f"run started; pass --overwrite to start over")

    def close(self) -> None:
        """Wait for the shards being written (also when the run stops early: they are complete)."""
        self.writer.shutdown(wait=True)

    def _write(self, shard: ShardContent) -> None:
        del self.open[shard.shard]
        self.writing[shard.shard] = self.writer.submit(write_shard, self.out, shard, dtype=self.dtype,
                                                       fingerprint=self.fingerprint)
        self._collect(self.queue)

    def _collect(self, keep: int) -> None:
        """Take the finished writes (raising their errors), waiting while more than ``keep`` are queued."""
        for k in sorted(self.writing):
            if self.writing[k].done() or len(self.writing) > keep:
                self.written[k] = self.writing.pop(k).result()


def _progress(enabled: bool | None, total: int | None) -> Progress:
    return Progress(total, "tokenize", "rec", enabled=enabled)


def _pending(records: Iterable, kept: set[int], size: int, counter: list) -> Iterator:
    """Records of the shards still to do; counts every record (``counter[0]``)."""
    for r in records:
        counter[0] = r.index + 1
        if r.index // size not in kept:
            yield r


def write_index(out: Path, manifests: dict[int, dict], config: dict) -> dict:
    """``errors.jsonl`` (every skipped record, in input order) and ``index.json`` (the finished run)."""
    order = [manifests[k] for k in sorted(manifests)]
    lines = [canonical_json(e) + "\n" for m in order for e in m["errors"]]
    write_atomic(out / ERRORS_FILE, "".join(lines).encode())
    tokens_by_modality: dict[str, int] = {}
    for m in order:
        for mod, n in m["tokens_by_modality"].items():
            tokens_by_modality[mod] = tokens_by_modality.get(mod, 0) + n
    index = {"format": FORMAT, "version": FORMAT_VERSION, "fingerprint": config["fingerprint"],
             "space_version": config["space_version"],
             "dtype": config["dtype"], "vocab_size": config["vocab_size"],
             "shards": [shard_name(m["shard"]) for m in order],
             "documents_per_shard": [m["documents"] for m in order],
             "records": order[-1]["records"][1] if order else 0,
             "documents": sum(m["documents"] for m in order), "skipped": sum(m["skipped"] for m in order),
             "tokens": sum(m["tokens"] for m in order), "tokens_by_modality": dict(sorted(tokens_by_modality.items()))}
    write_atomic(out / INDEX_FILE, (json.dumps(index, indent=1, sort_keys=True) + "\n").encode())
    return index


def make_engine(cfg: TokenizeConfig, tok):
    spec = WorkerSpec(cfg.suite, cfg.device, cfg.options, tuple(cfg.plugins), loader=cfg.loader)
    if cfg.engine == "ray":
        from .ray_engine import RayEngine   # here, so that ray stays an optional extra

        return RayEngine(spec, cfg.workers, batch=cfg.batch, address=cfg.ray_address)
    return LocalEngine(spec, cfg.workers, batch=cfg.batch, tok=tok)


def tokenize(cfg: TokenizeConfig, *, tok=None, on_result: Callable | None = None) -> Summary:
    """Run (or resume) a tokenize job; returns its summary. ``tok``: an already loaded suite, used
    in this process (``workers=0``) and for the fingerprint; workers load ``cfg.suite``.
    ``on_result`` is called with each ``Document`` or ``Skipped`` as it arrives (any order)."""
    started = time.perf_counter()
    cfg.check()
    import_plugins(cfg.plugins)
    if tok is None:
        tok = resolve_loader(cfg.loader)(cfg.suite, device=cfg.device)
    out = Path(cfg.output)
    cfg = _settled(cfg, out)
    config = run_config(cfg, tok)
    _preflight(cfg, tok, out, config)
    with _exclusive(out):
        return _tokenize(cfg, tok, out, config, on_result, started)


# what --resume accepts after a stop (``_input_changes``): a manifest's lines and a folder's or a
# pattern's listing of names and sizes must be as they were
RESUME_AFTER_FIX = ("--resume continues once the input is fixed without changing the manifest, or a folder's or "
                    "pattern's file names and sizes (a manifest's media files may be replaced); otherwise --overwrite "
                    "starts over, or --on-error skip lists bad records and carries on")


def _preflight(cfg: TokenizeConfig, tok, out: Path, config: dict) -> None:
    """Mistakes that concern the whole run, raised before anything is written (not recorded once
    per record, with an exit status of 0 and an empty dataset): an input that does not exist, a
    pattern that matches no file, a folder with nothing to read, a manifest or tar that is not a
    regular file (for a new run: a resumed one reports what changed since it started), an
    ``--allowed-special`` name the vocabulary lacks, a ``--bitrate`` the suite cannot take."""
    resuming = cfg.resume and not cfg.overwrite and (out / RUN_FILE).is_file()
    if not resuming:
        missing = [fact["missing"] if str(fact["missing"]).startswith(fact["path"]) else
                   f"{fact['path']}: {fact['missing']}" for fact in config["inputs"] if "missing" in fact]
        if missing:
            raise ConfigError("cannot read the input(s) " + "; ".join(missing) + f" (nothing was written to {out})")
    Worker(tok, cfg.options)   # applies the run's limits, preprocessing and bitrate: raises on a run-wide mistake
    check_allowed_special(tok, cfg.options.allowed_special)


@contextmanager
def _exclusive(out: Path):
    """Hold ``OUT/.lock`` for the run: a second run on the same folder (a double-submitted job, a
    resume started while the first still runs) stops at once instead of interleaving shards."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(f"{out}: another unitok tokenize run is writing to this folder; wait for it to end, "
                          f"or write to another folder") from None
    try:
        yield
    finally:
        try:
            path.unlink(missing_ok=True)
        finally:
            handle.close()


def _tokenize(cfg: TokenizeConfig, tok, out: Path, config: dict, on_result, started: float) -> Summary:
    kept = prepare_output(cfg, config)
    inputs = resolve_inputs(cfg.inputs)
    assembler = Assembler(out, cfg.shard_size, kept, dtype=id_dtype(len(tok.space)), fingerprint=config["fingerprint"])
    total = count_records(inputs)
    kept_records = sum(m["records"][1] - m["records"][0] for m in kept.values())
    summary = Summary(out, shards_kept=len(kept))
    counter = [0]
    engine = make_engine(cfg, tok)
    bar = _progress(cfg.progress, None if total is None else max(0, total - kept_records))
    tick = time.perf_counter()
    try:
        records = iter_records(inputs, confine=cfg.options.confine,
                               max_member_bytes=cfg.options.media_limits().max_file_bytes)
        results = engine.map(_pending(records, set(kept), cfg.shard_size, counter))
        for result in results:
            if isinstance(result, Skipped) and cfg.on_error == "fail":
                results.close()
                raise UnitokError(f"{result.source} ({result.position}): {result.reason}. Stopped by --on-error "
                                  f"fail; complete shards are kept. {RESUME_AFTER_FIX}")
            assembler.add(result)
            if on_result is not None:
                on_result(result)
            summary.records_done += 1
            if isinstance(result, Document):
                summary.tokens += len(result.ids)
            now = time.perf_counter()
            if now - tick > 0.5:
                tick = now
                bar.note(f"{summary.tokens / max(bar.elapsed, 1e-9):,.0f} tok/s")
            bar.update(1)
        assembler.finish(counter[0])
    finally:
        assembler.close()
        bar.close()
    manifests = {**kept, **assembler.written}
    index = write_index(out, manifests, config)
    summary.records, summary.documents, summary.skipped = index["records"], index["documents"], index["skipped"]
    summary.tokens, summary.tokens_by_modality = index["tokens"], index["tokens_by_modality"]
    summary.shards = len(manifests)
    summary.seconds = time.perf_counter() - started
    return summary
