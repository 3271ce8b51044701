"""The Ray engine (``--engine ray``, ``pip install unitok[ray]``): the same job on Ray Data.

Records go to ``Dataset.map_batches`` with an actor pool, each actor loading the tokenizer suite
once (one GPU per actor with ``--device cuda``); results stream back to the driver, which writes the
same shards as the local engine. Records and results cross Ray as pickled bytes, so the Arrow
blocks hold one binary column whatever the record holds.

Records are handed over in windows (``window`` records per Ray Data execution) so the driver never
holds a whole large dataset; each window starts its actors anew, so keep windows large.
"""

from __future__ import annotations

import os
import pickle
import sys
import warnings
from typing import Iterable, Iterator

from ..errors import ConfigError
from .shards import Document, Skipped
from .sources import Record, chunks
from .worker import Worker, WorkerSpec


class _Actor:
    """One Ray actor: loads the suite in its constructor, then tokenizes batches."""

    def __init__(self, spec: WorkerSpec):
        self.worker = Worker.from_spec(spec)

    def __call__(self, batch: dict) -> dict:
        results = [self.worker(pickle.loads(bytes(b))) for b in batch["record"]]
        return {"result": [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in results]}


class RayEngine:
    """Args:
        spec: how each actor loads its tokenizer.
        workers: actors in the pool.
        batch: records per ``map_batches`` batch.
        address: a Ray cluster to join (default: ``RAY_ADDRESS``, else a local instance).
        window: records per Ray Data execution.
    """

    def __init__(self, spec: WorkerSpec, workers: int, *, batch: int = 8, address: str | None = None,
                 window: int = 100_000):
        self.spec, self.workers, self.batch, self.address, self.window = spec, max(1, workers), batch, address, window

    def _init(self):
        try:
            import ray
        except ImportError:
            raise ConfigError("--engine ray needs Ray: pip install 'unitok[ray]'") from None
        self.started = not ray.is_initialized()
        if self.started:
            address = self.address or os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address, log_to_driver=False)
            else:   # a local instance: its workers see this interpreter's import path (plugins included)
                path = os.pathsep.join(p for p in sys.path if p)
                ray.init(num_cpus=max(self.workers, os.cpu_count() or 1), include_dashboard=False,
                         log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
        with warnings.catch_warnings():     # Ray Data warns about its own deprecated settings
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.verbose_progress = False
        return ray

    def map(self, records: Iterable[Record]) -> Iterator[Document | Skipped]:
        ray = self._init()
        gpus = 1 if self.spec.device.startswith("cuda") else 0
        try:
            for window in chunks(records, self.window):
                rows = [{"record": pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL)} for r in window]
                out = ray.data.from_items(rows).map_batches(
                    _Actor, fn_constructor_kwargs={"spec": self.spec}, batch_size=self.batch, concurrency=self.workers,
                    num_cpus=1, num_gpus=gpus, batch_format="numpy")
                for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
                    for blob in batch["result"]:
                        yield pickle.loads(bytes(blob))
        finally:
            if self.started:      # a Ray instance this run started ends with it
                ray.shutdown()
