"""What the text tokenizer's calls share: reused thread pools, the guard that turns a panic of
tiktoken's core into one text's ``MediaError``, and reading ids from lists, arrays and tensors."""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from threading import Lock
from typing import Any

import numpy as np

from unitok.errors import MediaError, TokenSequenceError

__all__ = ["as_id_list", "executor", "guarded"]

_executors: dict[int, ThreadPoolExecutor] = {}
_executors_lock = Lock()


def _forget_executors_after_fork() -> None:
    # A forked child inherits the pool objects but not their threads; work sent to them would
    # never run. Start afresh in the child.
    global _executors_lock
    _executors.clear()
    _executors_lock = Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_executors_after_fork)


def executor(num_threads: int) -> ThreadPoolExecutor:
    # Threads are reused across calls: creating a pool per call costs more than encoding a
    # small batch. tiktoken's core releases the GIL, so threads run truly in parallel.
    with _executors_lock:
        pool = _executors.get(num_threads)
        if pool is None:
            pool = _executors[num_threads] = ThreadPoolExecutor(num_threads, "unitok-text")
        return pool


def as_id_list(ids: Any) -> list[int]:
    """Accept a list/tuple of ints, a 1-D numpy array or a 1-D torch tensor of integers."""
    if isinstance(ids, (tuple, range)):
        return list(ids)
    if hasattr(ids, "detach") and hasattr(ids, "cpu"):  # torch.Tensor without importing torch
        ids = ids.detach().cpu().numpy()
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise TokenSequenceError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
        if ids.dtype.kind not in "iu":
            raise TokenSequenceError(f"ids must be integers, got dtype {ids.dtype}")
        return ids.tolist()
    if isinstance(ids, Iterable) and not isinstance(ids, (str, bytes)):
        return list(ids)
    raise TypeError(f"ids must be a sequence of ints, a numpy array or a tensor, got {type(ids).__name__}")


def guarded(encode, text, *args) -> list[int]:
    """``encode(text, *args)``, with a panic of tiktoken's Rust core turned into this text's
    ``MediaError`` (pyo3 raises panics as ``PanicException``, a ``BaseException``, which would
    otherwise end the process's work, or a worker pool, over one input)."""
    try:
        return encode(text, *args)
    except Exception:
        raise
    except BaseException as e:
        if type(e).__name__ != "PanicException":
            raise
        raise MediaError(f"the text tokenizer's core failed on this text of {len(text)} characters ({str(e)[:200]}); "
                         f"it holds a pathological run (e.g. a very long stretch of whitespace)") from None
