"""The on-disk format of a tokenized dataset: one file per concern, written atomically.

A run's output folder holds::

    run.json                    the job's configuration (inputs, shard size, options, suite fingerprint)
    shard-00000.bin             token ids of every document, back to back (uint16, or int32 above 65,535 ids)
    shard-00000.idx             Megatron indexed-dataset index of the .bin (one sequence per document)
    shard-00000.groups.bin      uint32 per token: its group inside its document (from 0, non-decreasing)
    shard-00000.docs.jsonl      one line per document: record index, id, source, spans
    shard-00000.json            the shard's manifest, written last (its presence means "complete")
    ...
    errors.jsonl                every skipped record: index, id, source, position, reason
    index.json                  written when the run finishes: shard list, totals, fingerprint

Shard ``k`` holds the records ``[k * shard_size, (k + 1) * shard_size)`` of the input, in input
order, whatever engine or worker count made it, so shards are reproducible and a resumed run redoes
only the shards that have no manifest. No file holds a time or a host name.

``.bin`` + ``.idx`` are Megatron-LM's ``MMapIndexedDataset`` layout (also fairseq's): the index is
``MMIDIDX\\x00\\x00``, version ``<Q`` 1, dtype code ``<B``, sequence count ``<Q``, document count
``<Q``, then ``sizes`` int32[sequences], ``pointers`` int64[sequences] (byte offsets into the .bin)
and ``doc_idx`` int64[documents + 1]. Megatron has no uint32 code, so ids of a space with more than
65,535 ids are stored as int32 (code 4), which holds any id a vocabulary can have.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import files
from ..files import file_sha256, read_json_file, regular_file_size
from ..errors import ConfigError
from ..sequence import Span
from ..space import MANIFEST_VERSION, check_space_version

FORMAT = "unitok-shards"
FORMAT_VERSION = 2   # 2: string ids and span objects in docs.jsonl (one JSON type per field)
RUN_FILE = "run.json"
INDEX_FILE = "index.json"
LOCK_FILE = ".lock"                # held by the run writing the folder (removed when it ends)
ERRORS_FILE = "errors.jsonl"

MEGATRON_MAGIC = b"MMIDIDX\x00\x00"
MEGATRON_VERSION = 1
# Megatron-LM's DType codes (megatron/core/datasets/indexed_dataset.py)
DTYPE_CODES = {np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int16): 3, np.dtype(np.int32): 4,
               np.dtype(np.int64): 5, np.dtype(np.float64): 6, np.dtype(np.float32): 7, np.dtype(np.uint16): 8}
CODE_DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}
GROUP_DTYPE = np.dtype("<u4")
SUFFIXES = (".bin", ".idx", ".groups.bin", ".docs.jsonl")   # the manifest (.json) is written last


def id_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else int32 (Megatron's choice, which has no uint32)."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def canonical_json(data) -> str:
    """Stable JSON text (sorted keys), so equal content gives equal bytes."""
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def printable(text) -> str:
    """``text`` as valid, printable Unicode: a lone surrogate (a file name that is not UTF-8, a
    manifest id ``"\\ud800"``) becomes its backslash escape, so every file a run writes is valid
    UTF-8 JSON that any reader takes."""
    text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name and a rename (fsynced), so a reader (or a
    resumed run) sees the old file or the new one, never half of one, and a failed write leaves no
    temporary file behind."""
    files.write_atomic(path, data, durable=True)


# -- the Megatron index ---------------------------------------------------------------------------

def megatron_index(sizes: np.ndarray, dtype: np.dtype) -> bytes:
    """The ``.idx`` bytes for documents of ``sizes`` tokens each, one sequence per document."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.size and sizes.max() > np.iinfo(np.int32).max:
        raise ConfigError(f"a document of {int(sizes.max())} tokens is too long for the Megatron index (int32 sizes)")
    pointers = np.zeros(len(sizes), dtype="<i8")
    if len(sizes) > 1:
        pointers[1:] = np.cumsum(sizes[:-1]) * dtype.itemsize
    doc_idx = np.arange(len(sizes) + 1, dtype="<i8")
    header = MEGATRON_MAGIC + struct.pack("<Q", MEGATRON_VERSION) + struct.pack("<B", DTYPE_CODES[dtype])
    header += struct.pack("<Q", len(sizes)) + struct.pack("<Q", len(doc_idx))
    return header + sizes.astype("<i4").tobytes() + pointers.tobytes() + doc_idx.tobytes()


@dataclass
class MegatronIndex:
    dtype: np.dtype
    sizes: np.ndarray      # int32 [sequences]
    pointers: np.ndarray   # int64 [sequences], byte offsets into the .bin
    doc_idx: np.ndarray    # int64 [documents + 1]


def read_megatron_index(path: Path) -> MegatronIndex:
    """Parse an ``.idx`` file (memory-mapped), checking its header; errors name the file."""
    regular_file_size(path, ConfigError, "index")    # mapping opens the file: a FIFO would block
    try:
        raw = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the index ({e})") from None
    head = len(MEGATRON_MAGIC) + 8 + 1 + 8 + 8
    if len(raw) < head or bytes(raw[:len(MEGATRON_MAGIC)]) != MEGATRON_MAGIC:
        raise ConfigError(f"{path}: not a Megatron indexed-dataset index (bad header)")
    pos = len(MEGATRON_MAGIC)
    version, code, n_seq, n_doc = struct.unpack("<QBQQ", bytes(raw[pos:head]))
    if version != MEGATRON_VERSION or code not in CODE_DTYPES:
        raise ConfigError(f"{path}: unsupported index version {version} or dtype code {code}")
    need = head + 4 * n_seq + 8 * n_seq + 8 * n_doc
    if len(raw) != need:
        raise ConfigError(f"{path}: index is {len(raw)} bytes, its header says {need} (truncated or corrupt)")
    sizes = raw[head:head + 4 * n_seq].view("<i4")
    pointers = raw[head + 4 * n_seq:head + 12 * n_seq].view("<i8")
    doc_idx = raw[head + 12 * n_seq:need].view("<i8")
    return MegatronIndex(CODE_DTYPES[code], sizes, pointers, doc_idx)


# -- one shard ------------------------------------------------------------------------------------

@dataclass
class Document:
    """One tokenized record, as a worker returns it."""

    index: int                 # record index in the input
    id: str                    # the record's id (manifest "id" or line number, file name, tar key)
    source: str
    ids: np.ndarray            # [n], the shard's id dtype (``id_dtype``), so fewer bytes travel
    groups: np.ndarray         # [n] uint32
    spans: list[Span]


@dataclass
class Skipped:
    """One record that could not be tokenized."""

    index: int
    id: object
    source: str
    position: str
    reason: str

    def to_dict(self) -> dict:
        return {"index": self.index, "id": printable(self.id), "source": printable(self.source),
                "position": printable(self.position), "reason": printable(self.reason)}


@dataclass
class ShardContent:
    """The results for records ``[start, stop)``; complete once every record is in."""

    shard: int
    start: int
    stop: int
    results: dict = field(default_factory=dict)   # record index -> Document | Skipped

    @property
    def complete(self) -> bool:
        return len(self.results) == self.stop - self.start


def tokens_by_modality(docs: list[Document]) -> dict[str, int]:
    """Tokens inside each modality's spans; ``structure`` counts the rest (bos, eos, sep)."""
    counts: dict[str, int] = {}
    structure = 0
    for d in docs:
        inside = 0
        for s in d.spans:
            counts[s.modality] = counts.get(s.modality, 0) + s.stop - s.start
            inside += s.stop - s.start
        structure += len(d.ids) - inside
    if structure:
        counts["structure"] = structure
    return dict(sorted(counts.items()))


def _doc_line(d: Document) -> str:
    # one JSON type per field (pyarrow and HF datasets read the file as a table)
    return canonical_json({"index": d.index, "id": printable(d.id), "source": printable(d.source),
                           "spans": [{"modality": s.modality, "start": s.start, "stop": s.stop} for s in d.spans]})


def write_shard(out: Path, content: ShardContent, *, dtype: np.dtype, fingerprint: str) -> dict:
    """Write one complete shard: data files first, then the manifest, each through a rename.

    Returns the manifest. A kill at any moment leaves either no manifest (the shard is redone on
    resume) or a complete shard.
    """
    assert content.complete, "a shard is written only once all its records are in"
    ordered = [content.results[i] for i in range(content.start, content.stop)]
    docs = [r for r in ordered if isinstance(r, Document)]
    skipped = [r for r in ordered if isinstance(r, Skipped)]
    assert all(d.ids.dtype == dtype and d.groups.dtype == GROUP_DTYPE for d in docs), "workers cast ids and groups"
    ids = np.concatenate([d.ids for d in docs]).astype(dtype.newbyteorder("<")) if docs else np.zeros(0, dtype)
    groups = (np.concatenate([d.groups for d in docs]).astype(GROUP_DTYPE) if docs
              else np.zeros(0, GROUP_DTYPE))
    sizes = np.array([len(d.ids) for d in docs], dtype=np.int64)
    name = shard_name(content.shard)
    files = {
        ".bin": ids.tobytes(),
        ".idx": megatron_index(sizes, dtype),
        ".groups.bin": groups.tobytes(),
        ".docs.jsonl": "".join(_doc_line(d) + "\n" for d in docs).encode(),
    }
    for suffix in SUFFIXES:
        write_atomic(out / (name + suffix), files[suffix])
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION, "shard": content.shard,
        "records": [content.start, content.stop], "documents": len(docs), "skipped": len(skipped),
        "tokens": int(sizes.sum()), "tokens_by_modality": tokens_by_modality(docs),
        "dtype": dtype.name, "fingerprint": fingerprint, "space_version": MANIFEST_VERSION,
        "files": {name + s: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()} for s, b in files.items()},
        "errors": [s.to_dict() for s in skipped],
    }
    write_atomic(out / f"{name}.json", (json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False)
                                        + "\n").encode())
    return manifest


# -- checking the JSON files a run writes (they may be edited or damaged since) ------------------

def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _counts(v) -> bool:
    return isinstance(v, list) and all(map(_count, v))


def _str_to_count(v) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and _count(n) for k, n in v.items())


def _files(v) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(f, dict) and _count(f.get("bytes"))
                                       and isinstance(f.get("sha256"), str) for k, f in v.items())


def _errors(v) -> bool:
    return isinstance(v, list) and all(isinstance(e, dict) for e in v)


def _record_range(v) -> bool:
    return _counts(v) and len(v) == 2 and v[0] <= v[1]


def _is_str(v) -> bool:
    return isinstance(v, str)


SHARD_FIELDS = {"shard": _count, "records": _record_range, "documents": _count, "skipped": _count,
                "tokens": _count, "tokens_by_modality": _str_to_count, "dtype": _is_str, "fingerprint": _is_str,
                "files": _files, "errors": _errors}
INDEX_FIELDS = {"fingerprint": _is_str, "dtype": _is_str, "vocab_size": _count,
                "shards": lambda v: isinstance(v, list) and all(map(_is_str, v)), "documents_per_shard": _counts,
                "records": _count, "documents": _count, "skipped": _count, "tokens": _count,
                "tokens_by_modality": _str_to_count}


def check_fields(data, fields: dict, path: Path, what: str) -> dict:
    """``data`` if it is a JSON object whose ``fields`` all pass their checks, else a ConfigError
    naming the file and the first bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not {what} (expected a JSON object)")
    for key, ok in fields.items():
        if not ok(data.get(key)):
            raise ConfigError(f"{path}: not {what}: field {key!r} is missing or malformed "
                              f"({data.get(key)!r:.60}); the file was edited or damaged")
    return data


def check_format(data, path: Path, what: str) -> None:
    """Refuse a run file (manifest, index.json, run.json) of another format or manifest version;
    the manifest version is checked first, since its message says what to do."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path}: not {what}")
    check_space_version(data.get("space_version"), source=str(path))
    if data.get("version") != FORMAT_VERSION:
        raise ConfigError(f"{path}: shard format version {data.get('version')!r} is not supported "
                          f"(this unitok reads version {FORMAT_VERSION}); tokenize the inputs again")


def read_manifest(path: Path) -> dict:
    data = read_json_file(path, ConfigError, "shard manifest")
    check_format(data, path, "a unitok shard manifest")
    return check_fields(data, SHARD_FIELDS, path, "a unitok shard manifest")


def parse_doc_line(line: bytes, path: Path, number: int) -> dict:
    """One line of a ``.docs.jsonl`` file, checked (``number`` counts from 1, for messages)."""
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError) as e:
        raise ConfigError(f"{path}, line {number}: not valid JSON ({e}); the file was edited or damaged") from None
    spans = doc.get("spans") if isinstance(doc, dict) else None
    if not (isinstance(doc, dict) and _count(doc.get("index")) and isinstance(doc.get("source"), str)
            and isinstance(doc.get("id"), str) and isinstance(spans, list)
            and all(isinstance(x, dict) and _is_str(x.get("modality")) and _count(x.get("start"))
                    and _count(x.get("stop")) for x in spans)):
        raise ConfigError(f"{path}, line {number}: not a document line (index, id, source, spans); the file was "
                          f"edited or damaged")
    return doc


def complete_shards(out: Path) -> dict[int, dict]:
    """Manifests of the shards in ``out`` that are complete: a manifest whose files are all there
    with the sizes and sha256 it records (a shard damaged since is redone)."""
    done = {}
    for path in sorted(out.glob("shard-*.json")):
        try:
            manifest = read_manifest(path)
        except ConfigError:
            continue
        ok = all((out / f).is_file() and (out / f).stat().st_size == info["bytes"]
                 and file_sha256(out / f) == info["sha256"] for f, info in manifest.get("files", {}).items())
        if ok and path.name == shard_name(manifest["shard"]) + ".json":
            done[manifest["shard"]] = manifest
    return done


def owned_paths(out: Path) -> list[Path]:
    """Every file a run writes in ``out`` (what ``--overwrite`` removes; nothing else is touched)."""
    names = [RUN_FILE, INDEX_FILE, ERRORS_FILE]
    paths = [out / n for n in names if (out / n).exists()]
    paths += sorted(p for p in out.glob("shard-*") if p.is_file())
    paths += sorted(p for p in out.glob(".*.partial") if p.is_file())
    return paths
