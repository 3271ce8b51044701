"""``TokenDataset``: a memory-mapped reader of the shards ``unitok tokenize`` writes, for LM training.

    >>> ds = TokenDataset("out/tokens")
    >>> doc = ds[0]          # {"id", "ids", "groups", "spans"}, in input order
    >>> doc["ids"]           # numpy view of the shard's .bin (uint16 or int32), no copy
    >>> tok.decode(ds.sequence(0))

``ds[i]["ids"]`` and ``["groups"]`` equal ``tok.encode(document).ids`` / ``.groups`` of the i-th
good record (skipped records are listed in ``errors.jsonl``, not here). The format is described in
``unitok/pipeline/shards.py``; the ids are a Megatron indexed dataset per shard, so Megatron-LM can
also read ``shard-NNNNN`` prefixes directly.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .pipeline.shards import (GROUP_DTYPE, INDEX_FIELDS, INDEX_FILE, MegatronIndex, check_fields, check_format,
                              parse_doc_line, read_megatron_index)
from .sequence import Span, TokenSequence


def _memmap(path: Path, dtype) -> np.ndarray:
    try:
        if path.stat().st_size == 0:
            return np.zeros(0, dtype=dtype)     # numpy cannot map an empty file
        return np.memmap(path, dtype=dtype, mode="r")
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot map the file ({e})") from None


@dataclass
class _Shard:
    prefix: Path
    index: MegatronIndex
    ids: np.ndarray
    groups: np.ndarray
    docs: list[bytes]        # one JSON line per document, parsed on access

    def doc(self, j: int) -> dict:
        return parse_doc_line(self.docs[j], self.prefix.with_name(self.prefix.name + ".docs.jsonl"), j + 1)

    @classmethod
    def open(cls, prefix: Path) -> "_Shard":
        index = read_megatron_index(prefix.with_name(prefix.name + ".idx"))
        ids = _memmap(prefix.with_name(prefix.name + ".bin"), index.dtype.newbyteorder("<"))
        groups = _memmap(prefix.with_name(prefix.name + ".groups.bin"), GROUP_DTYPE)
        docs_path = prefix.with_name(prefix.name + ".docs.jsonl")
        try:
            docs = docs_path.read_bytes().splitlines()
        except OSError as e:
            raise ConfigError(f"{docs_path}: cannot read ({e.strerror or e})") from None
        if not (len(index.sizes) == len(docs) and len(ids) == len(groups) == int(np.sum(index.sizes, dtype=np.int64))):
            raise ConfigError(f"{prefix}: the shard's files disagree (documents {len(index.sizes)} vs {len(docs)}, "
                              f"tokens {len(ids)} vs {len(groups)}); run 'unitok verify' on the folder")
        return cls(prefix, index, ids, groups, docs)


class TokenDataset:
    """The documents of a finished tokenize run, in input order, memory-mapped.

    Args:
        path: the run's output folder (the one holding ``index.json``).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        index_file = self.path / INDEX_FILE
        try:
            self.index = json.loads(index_file.read_bytes())
        except FileNotFoundError:
            raise ConfigError(f"{self.path}: no {INDEX_FILE}, so this is not a finished tokenize run (resume it with "
                              f"'unitok tokenize ... --resume')") from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{index_file}: cannot read ({e})") from None
        check_format(self.index, index_file, "the index of a unitok tokenized dataset")
        check_fields(self.index, INDEX_FIELDS, index_file, "the index of a tokenized dataset")
        if len(self.index["shards"]) != len(self.index["documents_per_shard"]):
            raise ConfigError(f"{index_file}: {len(self.index['shards'])} shards but "
                              f"{len(self.index['documents_per_shard'])} document counts; the file was edited or damaged")
        self.fingerprint: str = self.index["fingerprint"]
        self.shard_names: list[str] = list(self.index["shards"])
        self._starts = np.concatenate([[0], np.cumsum(self.index["documents_per_shard"])]).astype(np.int64).tolist()
        self._open: dict[int, _Shard] = {}

    def __len__(self) -> int:
        return self._starts[-1]

    def __reduce__(self):
        # only the path travels (as with Megatron's reader): a DataLoader worker started with spawn or
        # forkserver maps the shards itself instead of receiving a copy of every one already opened
        return type(self), (self.path,)

    def __repr__(self) -> str:
        return (f"TokenDataset({str(self.path)!r}: {len(self)} documents, {self.num_tokens} tokens, "
                f"{len(self.shard_names)} shards)")

    @property
    def num_tokens(self) -> int:
        return int(self.index["tokens"])

    @property
    def tokens_by_modality(self) -> dict[str, int]:
        return dict(self.index["tokens_by_modality"])

    @cached_property
    def sizes(self) -> np.ndarray:
        """Tokens per document, int64 [len(self)] (for packing and length-bucketed sampling)."""
        parts = [self._shard(k).index.sizes for k in range(len(self.shard_names))]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def _shard(self, k: int) -> _Shard:
        shard = self._open.get(k)
        if shard is None:
            shard = self._open[k] = _Shard.open(self.path / self.shard_names[k])
        return shard

    def _locate(self, i: int) -> tuple[_Shard, int]:
        n = len(self)
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"TokenDataset indices are integers, not {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"document {i} out of range for {n} documents")
        i = int(i) % n
        k = bisect.bisect_right(self._starts, i) - 1
        shard = self._shard(k)
        if i - self._starts[k] >= len(shard.docs):
            raise ConfigError(f"{shard.prefix}: holds {len(shard.docs)} documents, {self.path / INDEX_FILE} says "
                              f"{self._starts[k + 1] - self._starts[k]}; run 'unitok verify' on the folder")
        return shard, i - self._starts[k]

    def __getitem__(self, i: int) -> dict:
        """``{"id", "ids", "groups", "spans"}`` of document ``i``; ``ids`` and ``groups`` are
        read-only views of the mapped files (copy them to modify)."""
        shard, j = self._locate(i)
        start = int(shard.index.pointers[j]) // shard.ids.itemsize
        stop = start + int(shard.index.sizes[j])
        if not 0 <= start <= stop <= len(shard.ids):
            raise ConfigError(f"{shard.prefix}.idx: document {j} points outside the .bin; the index is damaged "
                              f"(run 'unitok verify' on the folder)")
        doc = shard.doc(j)
        return {"id": doc["id"], "ids": shard.ids[start:stop], "groups": shard.groups[start:stop],
                "spans": [Span(s["modality"], s["start"], s["stop"]) for s in doc["spans"]]}

    def source(self, i: int) -> tuple[int, str]:
        """(record index in the input, source file) of document ``i``."""
        shard, j = self._locate(i)
        doc = shard.doc(j)
        return doc["index"], doc["source"]

    def sequence(self, i: int) -> TokenSequence:
        """Document ``i`` as a ``TokenSequence`` (int64 copies, with the fingerprint), ready for
        ``UniTokenizer.decode``."""
        doc = self[i]
        return TokenSequence(np.asarray(doc["ids"], dtype=np.int64), np.asarray(doc["groups"], dtype=np.int64),
                             doc["spans"], self.fingerprint)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]
