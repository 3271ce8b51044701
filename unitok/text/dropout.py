"""BPE-dropout (Provilkov et al., 2020): segmentation noise for training a language model.

Plain BPE applies, inside each pre-token, the best (lowest-rank) merge of adjacent tokens until
none applies. BPE-dropout removes every candidate merge with probability ``p``, drawn afresh at
each step, and applies the best of those left; a pre-token is finished at the first step whose
candidates are all removed. So ``p=0`` is plain BPE, ``p=1`` gives single units, and any ``p``
gives tokens whose concatenation is the pre-token: the ids always decode to the same text.

Merges are pairs of tokens, as in the paper and HF ``tokenizers`` (a pair merges only when it is
the pair that builds their concatenation, ``unitok.text.merges.merge_plan``), which is plain BPE
at ``p=0`` (tiktoken merges by the concatenation's rank; without dropout both build every token
from the same pair). A pre-token that is a token no merge builds (only a whole-piece lookup
emits it, under ``ignore_merges``) is kept whole with probability ``1 - p``.

Why not HF ``tokenizers``' own dropout: its random generator is per thread and cannot be seeded,
so a seed could not make a run reproducible. Here every text draws from its own
``numpy.random.Generator(seed)``, so the ids depend on the text and the seed alone, never on
threads, batches or worker processes.

All pre-tokens of a text advance together, one merge each per step, in numpy arrays: pairs are
found by ``searchsorted`` over the merge keys ``left * n + right``, the best per pre-token by a
segmented minimum, and finished pre-tokens leave the arrays, so a step costs what is still active.
"""

from __future__ import annotations

import re
from threading import Lock
from typing import TYPE_CHECKING, Any

import numpy as np
import regex

from unitok.errors import ConfigError

from .merges import merge_plan
from .patterns import split_isolated
from .units import utf8_pieces

if TYPE_CHECKING:
    from .bpe import TextTokenizer

__all__ = ["MergeTable", "encode_with_dropout", "part_seed", "per_text_seeds"]

_table_lock = Lock()


class MergeTable:
    """A vocabulary's merges as sorted numpy keys.

    Attributes:
        keys: ``[M + 1]`` sorted ``left_rank * n + right_rank``, then a sentinel.
        result: ``[M + 1]`` rank of the token each key's merge builds (its priority: lower first).
        byte_rank: ``[256]`` rank of each single byte.
        whole: token bytes -> rank, for tokens only a whole pre-token reaches (ignore_merges).
        pattern: the pre-tokenizer regex, compiled for Python's ``regex`` (UTF-8 mode splits
            there too, so that each pre-token is known).
    """

    def __init__(self, ranks: dict[bytes, int], ignore_merges: bool, pattern: str):
        merges, unreachable = merge_plan(ranks)
        self.n = max(ranks.values()) + 1
        left = np.fromiter((ranks[a] for a, _ in merges), np.int64, len(merges))
        right = np.fromiter((ranks[b] for _, b in merges), np.int64, len(merges))
        result = np.fromiter((ranks[a + b] for a, b in merges), np.int64, len(merges))
        keys = left * self.n + right
        order = np.argsort(keys)
        # a last key no pair reaches, so a lookup never runs off the end (or into an empty table)
        self.keys = np.append(keys[order], np.iinfo(np.int64).max)
        self.result = np.append(result[order], 0)
        self.byte_rank = np.array([ranks[bytes([b])] for b in range(256)], dtype=np.int64)
        self.whole = {t: ranks[t] for t in unreachable} if ignore_merges else {}
        self.pattern = regex.compile(pattern)

    @classmethod
    def of(cls, tok: TextTokenizer) -> MergeTable:
        """The table of ``tok``, built once (a few seconds for a 100k vocabulary) and kept."""
        with _table_lock:
            if tok._dropout_table is None:
                tok._dropout_table = cls(tok._ranks, tok.ignore_merges, tok.pattern)
            return tok._dropout_table


def check_dropout(p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0.0 <= float(p) <= 1.0:
        raise ConfigError(f"dropout must be a probability in [0, 1] (e.g. 0.1), got {p!r}")
    return float(p)


def make_rng(seed: Any) -> np.random.Generator:
    """A generator for one text: ``seed`` is None (fresh entropy), an int >= 0 or a tuple of them."""
    if seed is not None:
        parts = seed if isinstance(seed, (tuple, list)) else (seed,)
        if not parts or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0
                                for s in parts):
            raise ConfigError(f"seed must be an int >= 0 or a tuple of them, got {seed!r}")
        seed = [int(s) for s in parts]
    return np.random.default_rng(seed)


def per_text_seeds(seed: Any, n: int) -> list[Any]:
    """One seed per text of a batch: ``(seed, i)`` for an int, the items of a sequence as given."""
    if seed is None or isinstance(seed, (int, np.integer)):
        return [None if seed is None else (int(seed), i) for i in range(n)]
    seeds = list(seed)
    if len(seeds) != n:
        raise ConfigError(f"seed: {len(seeds)} seeds for {n} texts; give an int or one seed per text")
    return seeds


def part_seed(seed: Any, j: int) -> Any:
    """The seed of part ``j`` of a document whose seed is ``seed``: ``seed`` itself for the first
    part (so a one-text document encodes as ``TextTokenizer.encode`` would), ``(*seed, j)`` after."""
    if seed is None or j == 0:
        return seed
    return (*(seed if isinstance(seed, (tuple, list)) else (seed,)), j)


def pieces(tok: TextTokenizer, text: str | bytes, allowed: frozenset[str], table: MergeTable) -> list[bytes | int]:
    """The pre-tokens BPE sees, as unit bytes, with allowed special tokens as their internal ids."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", "surrogateescape")
    elif not isinstance(text, str):
        raise TypeError(f"encode expects str or bytes, got {type(text).__name__}")
    stretches: list[str | int] = []
    pos = 0
    if allowed:
        alternatives = sorted(allowed, key=len, reverse=True)   # longest first, as _encode_general
        for m in re.finditer("|".join(map(re.escape, alternatives)), text):
            stretches += [text[pos : m.start()], tok._core_specials[m.group()]]
            pos = m.end()
    stretches.append(text[pos:])
    out: list[bytes | int] = []
    for stretch in stretches:
        if isinstance(stretch, int):
            out.append(stretch)
            continue
        if not stretch:
            continue
        if tok.normalizer:
            stretch = tok.normalizer(stretch)
        if tok._utf16 is not None:
            out += tok._utf16.piece_bytes(stretch)
        else:
            parts = split_isolated(stretch, tok._split_res) if tok._split_res else [stretch]
            out += [b for part in parts for b in utf8_pieces(part, [table.pattern])]
    return out


def merge_with_dropout(units: list[bytes | int], table: MergeTable, p: float, rng: np.random.Generator,
                       ) -> np.ndarray:
    """Internal ids of the pre-tokens ``units`` (bytes; ints are special tokens, passed through)."""
    whole = table.whole
    # special tokens, and the pre-tokens no merge builds kept whole (a draw each), skip the merging
    fixed = [(i, u if type(u) is int else whole[u]) for i, u in enumerate(units)
             if type(u) is int or (u in whole and (p <= 0.0 or rng.random() >= p))]
    if fixed:
        skip = {i for i, _ in fixed}
        segs = [i for i in range(len(units)) if i not in skip]
        pieces_ = [units[i] for i in segs]
    else:
        segs, pieces_ = range(len(units)), units
    whole_seg = [i for i, _ in fixed]
    whole_tok = [t for _, t in fixed]
    done_tok = [np.array(whole_tok, dtype=np.int64)]
    done_seg = [np.array(whole_seg, dtype=np.int64)]
    if pieces_:
        lengths = np.fromiter(map(len, pieces_), np.int64, len(pieces_))
        tok = table.byte_rank[np.frombuffer(b"".join(pieces_), dtype=np.uint8)]
        seg = np.repeat(np.array(segs, dtype=np.int64), lengths)
        active = np.zeros(len(units), dtype=bool)
        while len(tok):
            pos = np.flatnonzero(seg[1:] == seg[:-1])
            key = tok[pos] * table.n + tok[pos + 1]
            j = np.searchsorted(table.keys, key)
            hit = table.keys[j] == key
            pos, res = pos[hit], table.result[j[hit]]
            if p > 0.0 and len(pos):
                kept = rng.random(len(pos)) >= p
                pos, res = pos[kept], res[kept]
            if not len(pos):
                done_tok.append(tok)
                done_seg.append(seg)
                break
            # The best candidate of each pre-token: lowest rank, then leftmost. Candidates come
            # in position order, so each pre-token's are one contiguous run.
            s = seg[pos]
            starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
            best = np.minimum.reduceat(res * len(tok) + pos, starts)
            at, merged = best % len(tok), best // len(tok)
            active[:] = False
            active[s[starts]] = True
            keep = active[seg]
            done_tok.append(tok[~keep])
            done_seg.append(seg[~keep])
            tok[at] = merged
            keep[at + 1] = False
            tok, seg = tok[keep], seg[keep]
    all_tok = np.concatenate(done_tok)
    order = np.argsort(np.concatenate(done_seg), kind="stable")   # each pre-token left in one piece
    return all_tok[order]


def encode_with_dropout(tok: TextTokenizer, text: str | bytes, allowed_special: Any, dropout: Any,
                        seed: Any) -> list[int]:
    """``tok.encode(text, allowed_special=..., dropout=..., seed=...)`` for dropout > 0."""
    p = check_dropout(dropout)
    rng = make_rng(seed)
    allowed = tok._allowed(allowed_special) if allowed_special else frozenset()
    table = MergeTable.of(tok)
    internal = merge_with_dropout(pieces(tok, text, allowed, table), table, p, rng)
    if tok._internal_to_id is not None:
        return tok._internal_to_id[internal].tolist()
    return internal.tolist()
