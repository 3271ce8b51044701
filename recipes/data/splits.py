"""The held-out rule the fetch scripts share: held-out material is divided, by source, into a
validation split and a benchmark split.

- **val** (``val/``, ``val_*.npy``): what the training recipes validate on and pick ``best/`` by,
  and what design choices (architectures, losses, rates) are compared on.
- **bench** (``bench/``, ``bench_*.npy``): only for the numbers reported in
  ``benchmarks/RESULTS.md``. Nothing is tuned on it, so a reported number is not the winner of a
  selection made on the same data.

The unit of division is a *source* (a picture with its variants, a speech language, a music
track, a video clip), never a crop or a window, so no content is on both sides. A source goes to
val when sha256("val:" + its name) falls in the lower half of the hash range; within each family
(one package, one kind of material) at least ``min_each`` sources are moved to the emptier side
when the family has enough of them. The rule depends on the names only: rerunning, or adding a
source elsewhere, never moves a source between val and bench.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

VAL, BENCH = "val", "bench"
PARTS = (VAL, BENCH)
#: written into every split.json, so the reason travels with the data
WHY = ("held-out material is divided by source into 'val' (validation during training, best/ selection and "
       "design choices) and 'bench' (only the numbers reported in benchmarks/RESULTS.md), so reported numbers "
       "are not the result of choices made on the same data; see recipes/data/splits.py")


def hash_frac(name: str, salt: str = "") -> float:
    """A stable number in [0, 1) for ``name``: the first 48 bits of sha256(salt + name)."""
    return int(hashlib.sha256((salt + name).encode()).hexdigest()[:12], 16) / 16 ** 12


def divide(names: Iterable[str], min_each: int = 1) -> dict[str, str]:
    """name -> "val" or "bench" for the sources of one family (see the module docstring).

    Each side gets at least ``min_each`` sources when there are ``2 * min_each`` or more; a family of
    one source goes where its hash says."""
    ranked = sorted(set(names), key=lambda n: (hash_frac(n, "val:"), n))
    side = {n: VAL if hash_frac(n, "val:") < 0.5 else BENCH for n in ranked}
    if min_each and len(ranked) >= 2 * min_each:
        # at most one side is short; the lowest hashes are val, the highest bench, so these never overlap
        if sum(s == VAL for s in side.values()) < min_each:
            side.update({n: VAL for n in ranked[:min_each]})
        if sum(s == BENCH for s in side.values()) < min_each:
            side.update({n: BENCH for n in ranked[-min_each:]})
    return side


def divide_families(families: dict[str, Iterable[str]], min_each: int = 1) -> dict[str, str]:
    """:func:`divide` over each family (family name -> its source names), merged."""
    out: dict[str, str] = {}
    for family in sorted(families):
        out.update(divide(families[family], min_each))
    return out


def save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` to a temporary name, then an atomic rename: a training run that has the old file
    open (memory-mapped) keeps reading the old contents, and nobody ever sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def interleave(groups: list[np.ndarray]) -> np.ndarray:
    """Items of several sources ``[n_i, ...]`` in round-robin order (item 0 of every source, then
    item 1, ...), so any prefix of the result (a recipe's ``val_limit``) covers every source."""
    longest = max((len(g) for g in groups), default=0)
    order = [g[i] for i in range(longest) for g in groups if i < len(g)]
    return np.stack(order) if order else np.zeros((0,), dtype=np.uint8)
