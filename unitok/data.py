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
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .files import read_json_file, read_regular_file, regular_file_size
from .pipeline.shards import (GROUP_DTYPE, INDEX_FIELDS, INDEX_FILE, MegatronIndex, check_fields, check_format,
                              parse_doc_line, read_megatron_index)
from .sequence import Span, TokenSequence

SHARD_NAME = re.compile(r"shard-\d{5,}")
MAX_DOCS_BYTES = 1 << 32   # a shard's .docs.jsonl (one short line per document)


def _memmap(path: Path, dtype) -> np.ndarray:
    # a regular file only: mapping opens it, and a FIFO would block (its size says 0)
    size = regular_file_size(path, ConfigError, "token file")
    try:
        if size == 0:
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
        docs = read_regular_file(docs_path, MAX_DOCS_BYTES, ConfigError, "document index").splitlines()
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
        if not os.path.lexists(index_file):
            raise ConfigError(f"{self.path}: no {INDEX_FILE}, so this is not a finished tokenize run (resume it with "
                              f"'unitok tokenize ... --resume')")
        self.index = read_json_file(index_file, ConfigError, "dataset index")
        check_format(self.index, index_file, "the index of a unitok tokenized dataset")
        check_fields(self.index, INDEX_FIELDS, index_file, "the index of a tokenized dataset")
        if len(self.index["shards"]) != len(self.index["documents_per_shard"]):
            raise ConfigError(f"{index_file}: {len(self.index['shards'])} shards but "
                              f"{len(self.index['documents_per_shard'])} document counts; the file was edited or damaged")
        self.fingerprint: str = self.index["fingerprint"]
        self.shard_names: list[str] = list(self.index["shards"])
        for name in self.shard_names:   # the dataset's own shards only: never another folder's
            if not SHARD_NAME.fullmatch(name):
                raise ConfigError(f"{index_file}: shard name {name!r} is not one a run writes (shard-NNNNN); the "
                                  f"index was edited or damaged")
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


# -- packing for training --------------------------------------------------------------------------


@dataclass
class Packer:
    """A ``collate_fn`` that packs documents (``TokenDataset`` items or ``TokenSequence``) into
    fixed-length rows, greedily in order; a document longer than ``length`` continues on the next
    row (its attention is cut there). Picklable, so it works in ``DataLoader`` workers; with
    ``tok=None`` each worker loads the bundled suite once.

    Returns a dict of torch tensors, ``R`` rows of ``length`` tokens:
        ids [R, L] int64 (``<|pad|>`` after the last document), documents [R, L] int64 (-1 on
        padding), blocks [R, L] int64 (``convention="next_group"``: ``lm.blocks``; else causal),
        positions [R, L, 3] (``mode="uni"``: float32; ``"mrope"``: int64), labels [R, L]
        (``depth`` > 1: [R, depth, L], depths 1..depth) int64 with -100 where there is no target
        (or, ``masked=True``, no loss), loss_mask [R, L] bool, parents [R, L] int64 (row index,
        -1 where the parent is not in the row).
    ``headers=False``: media headers (the shapes) carry no loss and, with ``masked``, are no
    targets, for a model that is always given the shape (``lm.loss_mask``).
    The attention mask is ``lm.dense_mask(blocks, documents)`` or ``lm.block_mask(blocks, documents)``.
    """

    length: int
    tok: object = None
    depth: int = 1
    convention: str = "next_token"
    mode: str = "uni"
    masked: bool = True
    headers: bool = True

    def __post_init__(self):
        if not isinstance(self.length, int) or self.length < 1:
            raise ConfigError(f"Packer: length must be a positive integer, got {self.length!r}")
        if self.mode not in ("uni", "mrope") or self.convention not in ("next_token", "next_group"):
            raise ConfigError(f"Packer: mode must be 'uni' or 'mrope' and convention 'next_token' or 'next_group', "
                              f"got {self.mode!r} and {self.convention!r}")
        if not isinstance(self.depth, int) or self.depth < 1:
            raise ConfigError(f"Packer: depth must be an integer >= 1, got {self.depth!r}")

    def __call__(self, items) -> dict:
        import torch

        from . import lm   # the model side imports the token space; data readers do not need it

        L, pieces = self.length, []
        for item in items:
            meta = lm.annotate(item, tok=self.tok)
            n = len(meta)
            labels = np.stack([lm.labels(meta, d, convention=self.convention, masked=self.masked,
                                         headers=self.headers, tok=self.tok) for d in range(1, self.depth + 1)])
            blocks = meta.blocks if self.convention == "next_group" else np.arange(n)
            loss = lm.loss_mask(meta, headers=self.headers)
            for a in range(0, n, L):
                pieces.append((meta, a, min(a + L, n), labels, blocks, loss))
        rows, used = [], L
        for piece in pieces:
            size = piece[2] - piece[1]
            if used + size > L:
                rows.append([])
                used = 0
            rows[-1].append(piece)
            used += size
        R = len(rows)
        space = lm.suite(self.tok).space
        out = {"ids": np.full((R, L), space.special("<|pad|>"), np.int64), "documents": np.full((R, L), -1, np.int64),
               "blocks": np.zeros((R, L), np.int64), "labels": np.full((R, self.depth, L), -100, np.int64),
               "loss_mask": np.zeros((R, L), bool), "parents": np.full((R, L), -1, np.int64),
               "positions": np.zeros((R, L, 3), np.float32 if self.mode == "uni" else np.int64)}
        doc = 0
        for r, row in enumerate(rows):
            at = 0
            for meta, a, b, labels, blocks, loss in row:
                s = slice(at, at + b - a)
                out["ids"][r, s], out["documents"][r, s], out["blocks"][r, s] = meta.ids[a:b], doc, blocks[a:b]
                out["labels"][r, :, s], out["loss_mask"][r, s] = labels[:, a:b], loss[a:b]
                out["positions"][r, s] = lm.positions(meta, self.mode)[a:b]
                parents = meta.parents[a:b]
                out["parents"][r, s] = np.where(parents >= a, parents - a + at, -1)
                at, doc = at + b - a, doc + 1
        if self.depth == 1:
            out["labels"] = out["labels"][:, 0]
        return {k: torch.from_numpy(v) for k, v in out.items()}
