"""The server side of the workers: worker processes (started, watched, restarted), the dynamic
batcher (one queue per kind of request, bounded all together) and the dispatch loops that feed
batches to the workers.

A request's kind (its batch key) is its operation, its modality and, for encode, its options and
the shape of a lone media part: requests of one kind can share one call to the models. A worker
takes the oldest kind first and waits up to ``max_wait_ms`` for that kind to fill ``max_batch``.
A batch in flight on a worker that dies is put back at the front of the queue once (it runs
again on a live worker); a second death fails its requests with 503, so a request that kills
workers cannot take the service down.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import multiprocessing as mp
import threading
import time
from dataclasses import dataclass, field

from .config import ServeConfig
from .worker import error_body, main as worker_main

RETRIES = 1   # times a batch runs again after its worker died


class QueueFull(Exception):
    """The bounded queue is full: the caller answers 429."""


class WorkerDied(Exception):
    pass


@dataclass
class Job:
    key: tuple
    payload: dict
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)
    attempts: int = 0


class Batcher:
    """Queues per batch key; ``max_queue`` requests in all (``QueueFull`` beyond)."""

    def __init__(self, max_queue: int, max_batch: int, max_wait: float, on_depth=None):
        self.queues: dict[tuple, collections.deque[Job]] = {}
        self.max_queue, self.max_batch, self.max_wait = max_queue, max_batch, max_wait
        self.size = 0
        self.changed = asyncio.Condition()
        self.on_depth = on_depth or (lambda key, depth: None)

    async def submit(self, key: tuple, payload: dict) -> tuple[int, bytes]:
        if self.size >= self.max_queue:
            raise QueueFull
        job = Job(key, payload, asyncio.get_running_loop().create_future())
        await self._put(job)
        return await job.future

    async def _put(self, job: Job, *, front: bool = False) -> None:
        queue = self.queues.setdefault(job.key, collections.deque())
        queue.appendleft(job) if front else queue.append(job)
        self.size += 1
        self.on_depth(job.key, len(queue))
        async with self.changed:
            self.changed.notify_all()

    async def requeue(self, jobs: list[Job]) -> None:
        for job in reversed(jobs):   # retried work goes first, past the bound: it was admitted already
            await self._put(job, front=True)

    async def next_batch(self) -> list[Job]:
        """Wait for work; return up to ``max_batch`` jobs of the kind whose oldest job is oldest."""
        async with self.changed:
            while True:
                live = [(q[0].queued, key) for key, q in self.queues.items() if q]
                if live:
                    oldest, key = min(live)
                    left = oldest + self.max_wait - time.perf_counter()
                    if len(self.queues[key]) >= self.max_batch or left <= 0:
                        return self._take(key)
                    try:
                        await asyncio.wait_for(self.changed.wait(), left)
                    except asyncio.TimeoutError:
                        pass
                else:
                    await self.changed.wait()

    def _take(self, key: tuple) -> list[Job]:
        queue = self.queues[key]
        jobs = [queue.popleft() for _ in range(min(self.max_batch, len(queue)))]
        self.size -= len(jobs)
        self.on_depth(key, len(queue))
        return [j for j in jobs if not j.future.done()]   # a client that went away needs no answer


class WorkerHandle:
    """One worker process and its pipe. Calls are tagged; a reader thread hands the answers back
    to the event loop, and turns the pipe's end (the process died) into ``WorkerDied``."""

    def __init__(self, index: int, spec: dict, loop: asyncio.AbstractEventLoop, on_died=None):
        self.index, self.spec, self.loop, self.on_died = index, spec, loop, on_died
        self.pending: dict[int, asyncio.Future] = {}
        self.tags = itertools.count()
        self.send_lock = threading.Lock()
        self.info: dict | None = None
        self.alive = False
        self.ready = asyncio.Event()

    async def start(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=worker_main, args=(child, {**self.spec, "index": self.index}),
                                   name=f"unitok-serve-worker-{self.index}", daemon=True)
        self.process.start()
        child.close()
        status, info = await asyncio.to_thread(self._first_message)
        if status != "ready":
            raise RuntimeError(f"worker {self.index} could not start: {info}")
        self.info, self.alive = info, True
        threading.Thread(target=self._read, daemon=True, name=f"unitok-serve-reader-{self.index}").start()
        self.ready.set()

    def _first_message(self):
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            return "failed", f"the process exited with code {self.process.exitcode}"

    def _read(self) -> None:
        conn = self.conn
        while True:
            try:
                tag, result = conn.recv()
            except (EOFError, OSError):
                break
            self.loop.call_soon_threadsafe(self._resolve, tag, result)
        self.loop.call_soon_threadsafe(self._died)

    def _resolve(self, tag: int, result) -> None:
        future = self.pending.pop(tag, None)
        if future is not None and not future.done():
            future.set_result(result)

    def _died(self) -> None:
        self.alive = False
        self.ready.clear()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(WorkerDied())
        self.pending.clear()
        if self.on_died is not None:
            self.on_died(self)

    async def call(self, op: str, payload):
        if not self.alive:
            raise WorkerDied()
        tag = next(self.tags)
        future = self.loop.create_future()
        self.pending[tag] = future
        try:
            await asyncio.to_thread(self._send, (tag, op, payload))
        except (OSError, ValueError, BrokenPipeError):
            self.pending.pop(tag, None)
            raise WorkerDied() from None
        return await future

    def _send(self, message) -> None:
        with self.send_lock:
            self.conn.send(message)

    def stop(self) -> None:
        try:
            with self.send_lock:
                self.conn.send((-1, "stop", None))
        except (OSError, ValueError):
            pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


class Pool:
    """``cfg.workers`` workers fed by one ``Batcher``; a worker that dies is started again."""

    def __init__(self, cfg: ServeConfig, metrics=None):
        self.cfg, self.metrics = cfg, metrics
        self.spec = {"suite": cfg.suite, "device": cfg.device, "threads": cfg.threads, "limits": dict(cfg.limits),
                     "plugins": tuple(cfg.plugins), "loader": cfg.loader}
        self.restarts = 0
        self.tasks: list[asyncio.Task] = []
        self.stopping = False
        self.streams = 0
        self.rr = itertools.count()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        depth = self.metrics.queue_depth if self.metrics else None
        self.batcher = Batcher(self.cfg.max_queue, self.cfg.max_batch, self.cfg.max_wait_ms / 1000, depth)
        self.workers = [WorkerHandle(i, self.spec, loop, self._on_died) for i in range(self.cfg.workers)]
        await asyncio.gather(*(w.start() for w in self.workers))
        self.info = self.workers[0].info
        self.tasks = [asyncio.create_task(self._dispatch(w)) for w in self.workers]

    async def stop(self) -> None:
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in self.workers))

    async def submit(self, key: tuple, payload: dict) -> tuple[int, bytes]:
        return await self.batcher.submit(key, payload)

    def health(self) -> dict:
        return {"workers": [{"index": w.index, "pid": w.process.pid, "alive": w.alive} for w in self.workers],
                "queued": self.batcher.size, "restarts": self.restarts, "streams": self.streams}

    async def _dispatch(self, worker: WorkerHandle) -> None:
        while True:
            await worker.ready.wait()   # while it is started again, the other workers take the queue
            jobs = await self.batcher.next_batch()
            if not jobs:
                continue
            if self.metrics:
                self.metrics.batch(jobs[0].key, len(jobs), [time.perf_counter() - j.queued for j in jobs])
            try:
                results = await worker.call(jobs[0].key[0], [j.payload for j in jobs])
            except WorkerDied:
                await self._lost(jobs)
                continue
            for job, result in zip(jobs, results):
                if not job.future.done():
                    job.future.set_result(result)

    async def _lost(self, jobs: list[Job]) -> None:
        again = []
        for job in jobs:
            job.attempts += 1
            if job.attempts > RETRIES:
                if not job.future.done():
                    job.future.set_result(error_body(503, "worker", "a worker died twice while answering this "
                                                                    "request; it was not retried again"))
            else:
                again.append(job)
        await self.batcher.requeue(again)

    def _on_died(self, worker: WorkerHandle) -> None:
        if not self.stopping:
            self.tasks.append(asyncio.create_task(self._restart(worker)))

    async def _restart(self, worker: WorkerHandle) -> None:
        await asyncio.to_thread(worker.process.join, 5)
        self.restarts += 1
        if self.metrics:
            self.metrics.restarts.inc()
        while True:
            try:
                await worker.start()
                return
            except RuntimeError:   # the suite failed to load: keep trying, slowly
                await asyncio.sleep(5)

    async def stream_worker(self) -> WorkerHandle:
        """A live worker for a new audio stream (round robin)."""
        for _ in range(50 * len(self.workers)):
            worker = self.workers[next(self.rr) % len(self.workers)]
            if worker.alive:
                return worker
            await asyncio.sleep(0.1 / len(self.workers))
        raise WorkerDied()
