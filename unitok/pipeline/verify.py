"""``unitok verify OUT``: check a tokenized dataset end to end.

1. Every shard: the files its manifest lists exist with their sizes and sha256; the Megatron index
   agrees with the ``.bin``; groups, spans and document lines agree with the index; ids lie in the
   token space; ``errors.jsonl`` and ``index.json`` agree with the manifests.
2. A sample of documents: re-read from their sources and encoded again, they give the stored ids
   and groups; decoded (strictly), they give parts of the same kinds in the same order, text parts
   equal to the source text byte for byte, and media of the source's size and length.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checkpoint import file_sha256
from ..errors import ConfigError, UnitokError
from ..files import MAX_JSON_BYTES, read_json_file, read_regular_file
from ..space import check_space_version
from ..media import Video
from .shards import (ERRORS_FILE, INDEX_FIELDS, INDEX_FILE, RUN_FILE, check_fields, parse_doc_line, read_manifest,
                     read_megatron_index, shard_name)
from .sources import iter_records
from .worker import Options, Worker, upgrade_recorded

PART_SUFFIX = {"image": ".png", "video": ".mp4", "audio": ".wav"}
RUN_FIELDS = {"inputs": lambda v: isinstance(v, list) and all(isinstance(f, dict) and isinstance(f.get("path"), str)
                                                              for f in v),
              "options": lambda v: isinstance(v, dict)}


@dataclass
class VerifyReport:
    shards: int = 0
    documents: int = 0
    sampled: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _read_json(path: Path) -> dict:
    if not os.path.lexists(path):
        raise ConfigError(f"{path}: missing; is {path.parent} the output folder of a finished 'unitok tokenize' "
                          f"run?")
    return read_json_file(path, ConfigError, path.name)


def _check_shard(out: Path, name: str, vocab_size: int, problems: list[str]) -> dict | None:
    try:
        manifest = read_manifest(out / f"{name}.json")
    except ConfigError as e:
        problems.append(str(e))
        return None
    for fname, info in manifest["files"].items():
        path = out / fname
        if not path.is_file():
            problems.append(f"{path}: missing")
            return None
        digest = file_sha256(path)
        if digest != info["sha256"] or path.stat().st_size != info["bytes"]:
            problems.append(f"{path}: content differs from its manifest (sha256 {digest[:12]} vs "
                            f"{info['sha256'][:12]})")
            return None
    try:
        index = read_megatron_index(out / f"{name}.idx")
    except ConfigError as e:
        problems.append(str(e))
        return None
    ids = np.fromfile(out / f"{name}.bin", dtype=index.dtype.newbyteorder("<"))
    groups = np.fromfile(out / f"{name}.groups.bin", dtype="<u4")
    docs = (out / f"{name}.docs.jsonl").read_bytes().splitlines()
    sizes = index.sizes.astype(np.int64)
    where = f"{out / name}"
    if len(docs) != len(sizes) or len(sizes) != manifest["documents"]:
        problems.append(f"{where}: {len(sizes)} sequences in the index, {len(docs)} document lines, "
                        f"{manifest['documents']} in the manifest")
        return None
    if len(ids) != sizes.sum() or len(groups) != len(ids) or manifest["tokens"] != len(ids):
        problems.append(f"{where}: {len(ids)} ids, {len(groups)} groups, index sizes sum to {sizes.sum()}")
        return None
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if len(sizes) else np.zeros(0, np.int64)
    if not np.array_equal(index.pointers, starts * ids.itemsize) or not np.array_equal(
            index.doc_idx, np.arange(len(sizes) + 1)):
        problems.append(f"{where}.idx: pointers or document index do not match the sizes")
    if len(ids) and (ids.min() < 0 or ids.max() >= vocab_size):
        problems.append(f"{where}.bin: ids outside the token space (0..{vocab_size - 1})")
    for j, (line, a, n) in enumerate(zip(docs, starts, sizes)):
        g = groups[a:a + n].astype(np.int64)
        if n and (g[0] != 0 or np.any(np.diff(g) < 0)):
            problems.append(f"{where}: document {j}: groups do not start at 0 and never decrease")
        try:
            spans = parse_doc_line(line, out / f"{name}.docs.jsonl", j + 1)["spans"]
        except ConfigError as e:
            problems.append(str(e))
            continue
        bounds = [(s["start"], s["stop"]) for s in spans]
        if any(not 0 <= s < e <= n for s, e in bounds) or any(p[1] > q[0] for p, q in zip(bounds, bounds[1:])):
            problems.append(f"{where}: document {j}: spans {spans} do not fit its {n} tokens in order")
    return manifest


def _at_rate(audio, rate: int) -> int:
    """Samples ``audio`` has once resampled to ``rate`` (codecs decode at their own rate; the count
    may round either way, so callers allow one sample)."""
    return -(-audio.num_samples * rate // audio.sample_rate)


def _as_coded(tok, items: list) -> list:
    """A record's parts as the suite coded them: media under its ``preprocess`` policy (where the
    suite's stride is known here), a video as its shots, then its sound track as an audio part
    where the suite codes audio."""
    out = []
    for x in items:
        modality = "text" if isinstance(x, (str, bytes)) else type(x).__name__.lower()
        stride = getattr(tok.media.get(modality), "pixel_stride", None)
        if stride is not None:
            x = tok.preprocess.apply(x, stride)
        if isinstance(x, Video):
            out.extend(tok.preprocess.shots(x))
            if x.audio is not None and "audio" in tok.media:
                out.append(x.audio)
        else:
            out.append(x)
    return out


def _compare_parts(decoded, source, spans, where: str, problems: list[str]) -> None:
    kinds = [("text" if isinstance(x, str) else type(x).__name__.lower()) for x in decoded]
    if kinds != [s.modality for s in spans]:
        problems.append(f"{where}: decodes to parts {kinds}, its spans say {[s.modality for s in spans]}")
        return
    originals = [x for x in source if not (isinstance(x, (str, bytes)) and len(x) == 0)]
    for i, (got, want) in enumerate(zip(decoded, originals)):
        if isinstance(got, str):
            want_bytes = want.encode("utf-8", "surrogateescape") if isinstance(want, str) else bytes(want)
            if got.encode("utf-8", "surrogateescape") != want_bytes:
                problems.append(f"{where}: text part {i} does not round-trip to the source text")
        elif kinds[i] == "image" and (got.height, got.width) != (want.height, want.width):
            problems.append(f"{where}: image part {i} decodes to {got.width}x{got.height}, the source is "
                            f"{want.width}x{want.height}")
        elif kinds[i] == "audio" and abs(got.num_samples - _at_rate(want, got.sample_rate)) > 1:
            problems.append(f"{where}: audio part {i} decodes to {got.duration:.4f} s ({got.num_samples} samples at "
                            f"{got.sample_rate} Hz), the source lasts {want.duration:.4f} s ({want.num_samples} at "
                            f"{want.sample_rate} Hz)")
        elif kinds[i] == "video" and (got.num_frames, got.height, got.width) != (
                want.num_frames, want.height, want.width):
            problems.append(f"{where}: video part {i} decodes to a different size or frame count")


def verify(out: str | Path, tok, *, sample: int = 16, seed: int = 0, decode_to: str | Path | None = None,
           progress=None) -> VerifyReport:
    """Check the shards in ``out`` and round-trip ``sample`` documents (all with ``sample < 0``)."""
    from ..data import TokenDataset   # data -> pipeline.shards -> pipeline/__init__ -> verify: a cycle at import time

    out = Path(out)
    run = check_fields(_read_json(out / RUN_FILE), RUN_FIELDS, out / RUN_FILE, "the run.json of a tokenize run")
    index = check_fields(_read_json(out / INDEX_FILE), INDEX_FIELDS, out / INDEX_FILE,
                         "the index of a tokenized dataset")
    report = VerifyReport()
    problems = report.problems
    try:
        check_space_version(index.get("space_version"), source=str(out / INDEX_FILE))
        tok.space.check_fingerprint(index["fingerprint"], source=f"the ids in {out}")
    except ConfigError as e:
        problems.append(str(e))
        return report
    manifests = []
    for name in index["shards"]:
        m = _check_shard(out, name, len(tok.space), problems)
        if m is not None:
            manifests.append(m)
            if m["fingerprint"] != index["fingerprint"] or name != shard_name(m["shard"]):
                problems.append(f"{out / name}.json: another run's shard (fingerprint or number differ)")
    report.shards = len(manifests)
    try:   # a regular file only: a FIFO would block, /dev/zero never end
        errors = [json.loads(line) for line in read_regular_file(out / ERRORS_FILE, MAX_JSON_BYTES, ConfigError,
                                                                 "error list").splitlines()] if (
            os.path.lexists(out / ERRORS_FILE)) else []
    except (ValueError, RecursionError, ConfigError):
        errors = None
    # a shard whose manifest could not be read has already been named: its skipped records are unknown,
    # so errors.jsonl can only be checked against the manifests when all of them were read
    if len(manifests) == len(index["shards"]) and errors != [e for m in manifests for e in m["errors"]]:
        problems.append(f"{out / ERRORS_FILE}: does not list the skipped records of the shard manifests")
    if problems:
        return report
    try:
        ds = TokenDataset(out)
    except ConfigError as e:
        problems.append(str(e))
        return report
    report.documents = len(ds)
    picks = list(range(len(ds))) if sample < 0 or sample >= len(ds) else sorted(
        random.Random(seed).sample(range(len(ds)), sample))
    options = dict(upgrade_recorded(run["options"]))   # a run of unitok before 0.4 coded videos whole
    if not isinstance(options.get("allowed_special"), str):
        options["allowed_special"] = tuple(options.get("allowed_special") or ())
    try:
        by_record = {ds.source(i)[0]: i for i in picks}
        worker = Worker(tok, Options(**options))
    except (ConfigError, TypeError) as e:   # TypeError: options this unitok does not know
        problems.append(f"{out}: cannot check documents ({e})")
        return report
    if decode_to is not None:
        Path(decode_to).mkdir(parents=True, exist_ok=True)
    inputs = [f["path"] for f in run["inputs"]]
    for record in iter_records(inputs, confine=worker.options.confine,
                               max_member_bytes=worker.options.media_limits().max_file_bytes):
        i = by_record.pop(record.index, None)
        if i is None:
            continue
        where = f"document {i} ({record.source}, {record.position})"
        seq = ds.sequence(i)
        again = worker(record)
        if not hasattr(again, "ids"):
            problems.append(f"{where}: its source no longer tokenizes: {again.reason}")
        elif not (np.array_equal(again.ids, seq.ids) and np.array_equal(again.groups, seq.groups)
                  and again.spans == seq.spans):
            problems.append(f"{where}: encoding the source again gives other ids than the shard holds")
        try:
            decoded = worker.tok.decode(seq, strict=True)   # the run's limits, as it encoded
        except UnitokError as e:
            problems.append(f"{where}: does not decode: {e}")
            continue
        if hasattr(again, "ids"):
            _compare_parts(decoded, _as_coded(worker.tok, worker.items(record)), seq.spans, where, problems)
        if decode_to is not None:
            _write_parts(Path(decode_to), i, decoded)
        report.sampled += 1
        if progress is not None:
            progress(1)
        if not by_record:
            break
    for i in by_record.values():
        problems.append(f"document {i}: its record is no longer in the inputs")
    return report


def _write_parts(folder: Path, i: int, decoded) -> None:
    for j, item in enumerate(decoded):
        if isinstance(item, str):
            (folder / f"doc{i:06d}.part{j}.txt").write_bytes(item.encode("utf-8", "surrogateescape"))
        else:
            item.save(folder / f"doc{i:06d}.part{j}{PART_SUFFIX[type(item).__name__.lower()]}")
