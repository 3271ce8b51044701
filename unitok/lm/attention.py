"""Views of the attention structure ``blocks`` (with ``documents`` for packed sequences).

Query i may attend key j iff ``documents[i] == documents[j]`` and ``blocks[j] <= blocks[i]``. For
a document, blocks are non-decreasing, so every key is visible to one contiguous run of queries:
from the first token of its own block to the end of its document. That is what the FlashMask form
stores; FlexAttention gets a ``mask_mod`` over the same two arrays.

Arrays are ``[N]`` (one sequence) or ``[B, N]`` (a batch); ``documents=None`` is one document.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError


def _documents(blocks, documents):
    if documents is None:
        return blocks * 0
    if tuple(documents.shape) != tuple(blocks.shape):
        raise ConfigError(f"documents {tuple(documents.shape)} and blocks {tuple(blocks.shape)} must have one shape")
    return documents


def dense_mask(blocks, documents=None):
    """bool ``[N, N]`` (or ``[B, N, N]``), True where query (row) may attend key (column). numpy in,
    numpy out; torch in, torch out (usable as SDPA's boolean ``attn_mask`` after ``[:, None]``)."""
    documents = _documents(blocks, documents)
    same = documents[..., :, None] == documents[..., None, :]
    return same & (blocks[..., None, :] <= blocks[..., :, None])


def mask_mod(blocks, documents=None):
    """A FlexAttention ``mask_mod(b, h, q_idx, kv_idx)`` for torch tensors ``blocks``/``documents``
    ``[B, N]`` (or ``[N]``: then every batch index reads the one sequence)."""
    import torch

    blocks = torch.as_tensor(blocks)
    documents = _documents(blocks, None if documents is None else torch.as_tensor(documents, device=blocks.device))
    if blocks.ndim == 1:
        blocks, documents = blocks[None], documents[None]

    def mod(b, h, q_idx, kv_idx):
        b = b * 0 if blocks.shape[0] == 1 else b
        return (documents[b, q_idx] == documents[b, kv_idx]) & (blocks[b, kv_idx] <= blocks[b, q_idx])

    return mod


def block_mask(blocks, documents=None, *, block_size: int = 128, device=None):
    """A FlexAttention ``BlockMask`` (``torch.nn.attention.flex_attention.create_block_mask``) for
    torch tensors ``[B, N]`` or ``[N]``. Built without ``torch.compile``, so it works on CPU; pass
    the result to ``flex_attention(q, k, v, block_mask=...)``."""
    import torch
    from torch.nn.attention.flex_attention import create_block_mask

    blocks = torch.as_tensor(blocks)
    B = blocks.shape[0] if blocks.ndim == 2 else None
    N = blocks.shape[-1]
    return create_block_mask(mask_mod(blocks, documents), B, None, N, N, device=device or blocks.device,
                             BLOCK_SIZE=block_size)


def flashmask(blocks, documents=None) -> np.ndarray:
    """FlashMask's column-wise form, int32 ``[N, 2]`` (or ``[B, N, 2]``): for key column j,
    ``(LTS, UTE)``: rows ``>= LTS`` and rows ``< UTE`` are masked, so j is visible to rows
    ``[UTE, LTS)`` (its block's first token to its document's end). This is
    ``startend_row_indices[..., None, :, :]`` of ``paddle.nn.functional.flashmask_attention``
    with ``causal=False``."""
    blocks = np.asarray(blocks)
    documents = np.asarray(_documents(blocks, None if documents is None else np.asarray(documents)))
    if blocks.ndim == 2:
        return np.stack([flashmask(b, d) for b, d in zip(blocks, documents)])
    N = len(blocks)
    new_doc = np.r_[True, documents[1:] != documents[:-1]]
    new_run = new_doc | np.r_[True, blocks[1:] != blocks[:-1]]
    if np.any(~new_doc[1:] & (blocks[1:] < blocks[:-1])) or len(np.unique(documents[new_doc])) != new_doc.sum():
        raise ConfigError("flashmask needs each document contiguous with non-decreasing blocks")
    run_start = np.flatnonzero(new_run)[np.cumsum(new_run) - 1]
    doc_end = np.r_[np.flatnonzero(new_doc)[1:], N][np.cumsum(new_doc) - 1]
    return np.stack([doc_end, run_start], -1).astype(np.int32)
