"""The model side of unitok: what a model needs to learn and generate next groups of tokens,
derived from the same layout plans that make ``flatten``/``unflatten`` exact.

    >>> from unitok import lm
    >>> lm.positions(seq, mode="uni")   # float64 [N, 3] (t, h, w); mode="mrope": int64 [N, 3]
    >>> lm.blocks(seq)                  # int64 [N]: query i sees key j iff blocks[j] <= blocks[i]
    >>> lm.loss_mask(seq)               # bool [N]
    >>> lm.labels(seq, depth=1)         # int64 [N], -100 where there is no target
    >>> lm.dense_mask(lm.blocks(seq))   # bool [N, N]; block_mask / flashmask: other views

``seq`` is a ``TokenSequence`` (``tok.encode``, ``TokenDataset.sequence(i)``), a ``TokenDataset``
item, or a ``TokenMeta`` from ``lm.annotate`` (annotate once, read every array). ``tok=`` names
the suite that made the ids (default: the bundled one).
"""

from .attention import block_mask, dense_mask, flashmask, mask_mod
from .labels import IGNORE, labels
from .meta import ROLES, TokenMeta, annotate, blocks, cells, loss_mask, parents, positions, suite

__all__ = [
    "annotate", "TokenMeta", "ROLES", "suite",
    "positions", "blocks", "loss_mask", "labels", "parents", "cells", "IGNORE",
    "dense_mask", "mask_mod", "block_mask", "flashmask",
]

# -- generation: the constraint automaton (``tok.constraint()``) and incremental decoding -----------
from .constraint import Constraint, State, mask_logits  # noqa: E402
from .incremental import IncrementalDecoder, Update  # noqa: E402

__all__ += ["Constraint", "State", "mask_logits", "IncrementalDecoder", "Update"]
