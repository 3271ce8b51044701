"""The local engine: ``--workers N`` processes (spawned, so each loads the models once, cleanly),
fed batches of records through a bounded window; ``--workers 0`` tokenizes in the calling process.

Results come back in any order; the job puts them into their shards by record index, so the output
does not depend on the worker count or on scheduling.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Iterable, Iterator

from ..errors import UnitokError
from ..parentwatch import start_worker
from .shards import Document, Skipped
from .sources import Record, chunks
from .worker import Worker, WorkerSpec, init_process, run_in_process

CRASH_REASON = ("the worker process died while tokenizing this record (killed, out of memory, or a crash in a "
                "decoder)")


class LocalEngine:
    """Args:
        spec: how each worker loads its tokenizer.
        workers: processes; 0 runs in this process with ``tok``.
        batch: records per task sent to a worker.
        window: tasks in flight per worker (bounds memory and the queue).
    """

    def __init__(self, spec: WorkerSpec, workers: int, *, batch: int = 8, window: int = 8, tok=None):
        self.spec, self.workers, self.batch, self.window, self.tok = spec, workers, batch, window, tok

    def map(self, records: Iterable[Record]) -> Iterator[Document | Skipped]:
        if self.workers == 0:
            worker = Worker(self.tok, self.spec.options) if self.tok is not None else Worker.from_spec(
                self.spec, in_subprocess=False)
            for r in records:
                yield worker(r)
            return
        batches = chunks(records, self.batch)
        retry: list[list[Record]] | None = []   # batches lost with a crashed pool, retried one record at a time
        while retry is not None:
            retry = yield from self._run_pool(batches, retry)

    def _pool(self) -> ProcessPoolExecutor:
        # The initializer lives in a module without torch and gets the spec pickled, so a worker
        # watches for its parent's death before its heavy imports: a main process killed while its
        # workers start must not leave them running. The kernel's parent-death signal follows the
        # thread that starts the workers, so it is asked for only from the main thread.
        main = threading.current_thread() is threading.main_thread()
        pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"), initializer=start_worker,
                                   initargs=(main, f"{init_process.__module__}.{init_process.__name__}",
                                             pickle.dumps(self.spec)))
        # One empty task per worker, submitted together: the pool starts its processes on demand, so
        # this starts all of them now (not one by one while records wait), and a pool whose workers
        # cannot start is not mistaken for records that crash them.
        try:
            for probe in [pool.submit(run_in_process, []) for _ in range(self.workers)]:
                probe.result()
        except BrokenProcessPool:
            pool.shutdown(wait=True)
            raise UnitokError("the worker processes could not start (see the error printed above); try --workers "
                              "0 to run in this process") from None
        return pool

    def _run_pool(self, batches: Iterator[list[Record]], retry: list[list[Record]]):
        """Run batches until the input ends (returns None) or the pool breaks (returns the batches
        to retry). A record that breaks a pool on its own is reported, not retried."""
        pool = self._pool()
        in_flight: dict = {}
        singles = [[r] for batch in retry for r in batch] if retry else []
        alone = bool(singles)           # retrying crashed records: one at a time, one in flight
        limit = 1 if alone else self.workers * self.window
        try:
            while True:
                while len(in_flight) < limit:
                    batch = singles.pop(0) if singles else (None if alone else next(batches, None))
                    if batch is None:
                        break
                    in_flight[pool.submit(run_in_process, batch)] = batch
                if not in_flight:
                    if alone:          # the suspects are done; go on with the rest at full width
                        alone, limit = False, self.workers * self.window
                        continue
                    return None
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    batch = in_flight.pop(future)
                    try:
                        yield from future.result()
                    except BrokenProcessPool:
                        if alone:      # this record alone killed a worker
                            yield Worker.skip(batch[0], CRASH_REASON)
                            return singles
                        return [batch, *in_flight.values()]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
