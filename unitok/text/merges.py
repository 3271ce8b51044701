"""Rank-based BPE (tiktoken) against merge-list BPE (HF ``tokenizers``): when they agree, and how
to make them agree.

tiktoken merges the adjacent pair whose *concatenation* has the lowest rank, and looks a whole
pre-token up in the vocabulary before merging anything. HF merges the pair with the lowest index
in its merge list, and looks the whole pre-token up only when the model says ``ignore_merges``.

A useful fact: a token ``T`` is built inside a longer text exactly when BPE builds it from ``T``'s
own bytes, with the same last merge (every merge that builds ``T`` stays inside ``T``'s span, and
inside the span merges run in the same order as on ``T`` alone). So running BPE on each token's
bytes tells everything: either it ends in two parts (the one merge that can ever build ``T``) or
it never reaches two parts (no merge ever builds ``T``: only a whole pre-token can be ``T``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from unitok.errors import ConfigError

__all__ = ["bpe_parts", "check_hf_merges", "merge_plan", "recover_merges"]


def bpe_parts(parts: list[bytes], ranks: Mapping[bytes, int], stop: int = 1) -> list[bytes]:
    """Run tiktoken's merge loop on ``parts`` (in place and returned) until ``stop`` parts are
    left or no adjacent pair concatenates to a token; the lowest rank merges first, ties go to
    the leftmost pair."""
    while len(parts) > stop:
        best, best_rank = -1, None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and (best_rank is None or r < best_rank):
                best, best_rank = i, r
        if best < 0:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts


def merge_plan(ranks: Mapping[bytes, int]) -> tuple[list[tuple[bytes, bytes]], dict[bytes, list[bytes]]]:
    """``(merges, unreachable)``: the merge that builds each token, in rank order, and the
    multi-byte tokens that no merge can build, each with the tokens BPE makes of its bytes
    instead (tiktoken emits such a token only when a whole pre-token equals it)."""
    merges: list[tuple[bytes, bytes]] = []
    unreachable: dict[bytes, list[bytes]] = {}
    for token, _ in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        # Two parts left: their pair is the only one and concatenates to ``token``, so it merges
        # next. More than two and no pair merges: ``token`` is never built.
        parts = bpe_parts([token[i : i + 1] for i in range(len(token))], ranks, stop=2)
        if len(parts) == 2:
            merges.append((parts[0], parts[1]))
        else:
            unreachable[token] = parts
    return merges, unreachable


def recover_merges(ranks: Mapping[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merge list, in rank order, that makes an HF BPE behave like these tiktoken ranks."""
    return merge_plan(ranks)[0]


def check_hf_merges(
    ranks: Mapping[bytes, int],
    hf_merges: Sequence[tuple[bytes, bytes]],
    name: str,
) -> None:
    """Raise ConfigError unless tiktoken with ``ranks`` encodes exactly like an HF BPE with
    ``hf_merges`` (in priority order).

    They agree when the merges of each token form one block of the list, blocks in rank order,
    and the one merge that rank-based BPE can ever apply to build a token (``merge_plan``) is
    among that token's HF merges. (Tiktoken-converted files list every split of a token as a
    merge in one block; HF-trained files list one merge per token.)
    """
    last_rank = -1
    splits: dict[bytes, set[tuple[bytes, bytes]]] = {}
    for i, (left, right) in enumerate(hf_merges):
        token = left + right
        rank = ranks[token]
        if rank < last_rank:
            raise ConfigError(
                f"{name}: merge {i} ({left!r} + {right!r}) comes after a merge of a later token; "
                "merges that interleave like this cannot be reproduced by rank-based BPE (tiktoken)"
            )
        last_rank = rank
        splits.setdefault(token, set()).add((left, right))
    merges, _ = merge_plan(ranks)
    for left, right in merges:
        token = left + right
        if (left, right) not in splits.get(token, ()):
            raise ConfigError(
                f"{name}: token {token!r} would be built from {left!r} + {right!r}, which is not "
                "one of its merges; this vocabulary cannot be reproduced by rank-based BPE (tiktoken)"
            )
