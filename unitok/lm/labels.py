"""Training targets: next-token / multi-token labels and the next-group convention.

Two conventions, each with the attention structure it is leak-free under:

- ``"next_token"`` (MTP, Megatron's shift): the input at i is token i, the depth-d target is token
  ``i + d``; attention must be causal (``blocks = arange(N)``): under group blocks a query would
  see the next token of its own group, the very thing it is asked to predict.
- ``"next_group"``: the target at i is token i itself (depth 1), predicted together with the rest
  of its group under ``blocks``; the inputs at a group's positions are built from earlier blocks
  only (``lm.parents``: for text, the previous token, which makes it next-token prediction again;
  for a scale, the cells of the previous scale, as VAR feeds the upsampled earlier scales).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .meta import annotate, loss_mask

IGNORE = -100   # the target index torch's cross_entropy skips by default

CONVENTIONS = ("next_token", "next_group")


def labels(seq, depth: int = 1, *, convention: str = "next_token", masked: bool = False, headers: bool = True,
           tok=None) -> np.ndarray:
    """Targets of every position at ``depth`` (1..D), int64 [N], ``-100`` where there is none.

    ``"next_token"``: ``ids[i + depth]``, ``-100`` past the end of the document (targets never
    cross a document boundary: concatenate per-document labels when packing).
    ``"next_group"``: the token at the same offset in the group ``depth - 1`` groups after i's own
    (depth 1: token i itself); ``-100`` where that group is shorter or past the document's end. For
    groups of one token this is ``ids[i + depth - 1]``: next-token prediction with inputs shifted
    by one (``lm.parents``).
    ``masked``: also ``-100`` where the target carries no loss (``lm.loss_mask(seq, headers=headers)``:
    with ``headers=False``, header tokens are no targets either).
    """
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ConfigError(f"labels: depth must be an integer >= 1, got {depth!r}")
    if convention not in CONVENTIONS:
        raise ConfigError(f"labels: convention must be one of {CONVENTIONS}, got {convention!r}")
    meta = annotate(seq, tok=tok)
    N = len(meta)
    if N == 0:
        return np.zeros(0, dtype=np.int64)
    i = np.arange(N)
    if convention == "next_token":
        target = i + depth
        valid = target < N
    else:
        starts = np.flatnonzero(np.r_[True, meta.blocks[1:] != meta.blocks[:-1]])   # first token of each block
        sizes = np.diff(np.r_[starts, N])
        own = np.searchsorted(starts, i, side="right") - 1
        later = own + depth - 1
        valid = later < len(starts)
        later = np.minimum(later, len(starts) - 1)
        offset = i - starts[own]
        valid &= offset < sizes[later]
        target = starts[later] + offset
    target = np.where(valid, target, 0)
    if masked:
        valid &= loss_mask(meta, headers=headers)[target]
    return np.where(valid, meta.ids[target], IGNORE).astype(np.int64)
