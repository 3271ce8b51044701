"""Worker processes that end with the process that started them.

A SIGKILL gives a parent no chance to stop its workers, and a worker left behind holds a loaded
suite (and a GPU) for ever. This module imports only the standard library, so that a process
pool's initializer from here (:func:`start_worker`) starts the watch before the worker imports
torch or loads a suite: a parent killed while its workers start is noticed as soon as they run
any code of ours, not missed because the watch began after the parent was already gone.
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import sys
import threading
import time

_watching = False


def watch_parent(*, kill_signal: bool = False) -> None:
    """End this process (``os._exit``) when its parent ends; a second call does nothing.

    A ``multiprocessing`` child waits on the pipe from its parent, which closes when the parent
    dies, also when it died before this call (its ``getppid()`` is then already another process,
    so comparing parent ids would never fire). Other processes (Ray actors) poll for being
    reparented. ``kill_signal`` (Linux): the kernel also sends SIGKILL when the parent dies, which
    ends a worker even while a C extension holds the GIL. It is tied to the parent *thread* that
    started this process, so only ask for it when that thread lives as long as the pool (the
    main thread)."""
    global _watching
    if _watching:
        return
    _watching = True
    if kill_signal and sys.platform.startswith("linux"):
        _die_with_parent_thread()
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is not None and parent.sentinel is not None:
        from multiprocessing.connection import wait

        def watch():
            wait([parent.sentinel])
            os._exit(0)
    else:
        ppid = os.getppid()

        def watch():
            while os.getppid() == ppid:
                time.sleep(0.5)
            os._exit(0)

    threading.Thread(target=watch, daemon=True, name="unitok-parent-watch").start()


def _die_with_parent_thread() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):   # no libc prctl (musl without it, a sandbox): the watch thread remains
        pass


def start_worker(kill_signal: bool, initializer: str, payload: bytes) -> None:
    """A process pool's initializer: watch the parent first, then run ``initializer`` (found by its
    ``module.function`` name) on ``pickle.loads(payload)``. Both are resolved here, after the watch
    started, because unpickling them imports the heavy modules."""
    watch_parent(kill_signal=kill_signal)
    module, _, name = initializer.rpartition(".")
    getattr(importlib.import_module(module), name)(pickle.loads(payload))
