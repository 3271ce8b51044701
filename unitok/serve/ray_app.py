"""``unitok serve --engine ray``: the same service as a Ray Serve application (``pip install
'unitok[ray]'``), for tokenizer pools that span machines and GPUs.

The HTTP contract is the FastAPI app's (``app.py``): the same routes, JSON bodies and error answers,
so ``unitok.Client(url)`` and ``unitok tokenize --remote`` work against it unchanged. Deployments:

- ``Gateway`` (the ingress, no model): parses a request, routes it by modality, turns Ray's
  back-pressure into 429 and a lost replica into 503, and keeps ``/metrics``;
- one ``Tokenizers`` deployment per pool: ``image``, ``video``, ``audio`` (the documents and decodes
  of that modality alone) and ``default`` (text, mixed documents, and a modality without a pool of
  its own). Every replica loads the suite once (``worker.load_server``), on its own GPU(s) with
  ``gpus_per_replica`` (``ray_actor_options={"num_gpus": g}``), and batches its encode requests with
  ``serve.batch`` (``max_batch``, ``max_wait_ms``), grouped by the local batcher's key.

Differences from the local engine: a streamed audio decode answers once its request body is
complete (a Ray Serve call takes its arguments whole), so the lines are the same but come later;
the batch-size and queue metrics live in the replicas (Ray's own metrics), not in ``/metrics``;
``max_streams`` does not apply, and ``max_queue`` bounds each pool's queue rather than all of them.
"""

# no ``from __future__ import annotations``: the gateway's class travels to its replica by value, and
# FastAPI must see ``Request`` in its routes' annotations as the class, not as a name to look up
import json
import os
import sys
import threading
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from ray import serve   # this module is the [ray] extra's: it is imported only for --engine ray

from .. import __version__
from ..errors import ConfigError
from .app import JSON, _modality, _multipart, audio_line, encode_key, stream_ids
from .config import ServeConfig
from .metrics import Metrics
from .worker import error_body, load_server

MEDIA_POOLS = ("image", "video", "audio")


class Tokenizers:
    """One replica of a pool: a loaded suite (``worker.Server``) answering batched calls.

    Ray Serve runs the batched ``encode`` on the replica's event loop and ``decode`` and ``stream``
    on worker threads, so they would run torch at the same time in one process; they take turns
    (``_turn``) instead. Two torch computations from two threads at once, each with its own
    intra-op threads, were seen to spin without end on a busy 2-core machine (both threads in a
    convolution for over 20 minutes); a replica's parallelism is its intra-op threads, and more
    replicas add more."""

    def __init__(self, spec: dict, max_batch: int, max_wait_s: float):
        self.server = load_server(spec)
        self._turn = threading.Lock()
        self.encode.set_max_batch_size(max_batch)
        self.encode.set_batch_wait_timeout_s(max_wait_s)

    def info(self) -> dict:
        return self.server.info()

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def encode(self, calls: list[tuple[str, dict]]) -> list[tuple[int, bytes]]:
        """calls: ``(batch key, request)`` each -> one answer each; requests with equal keys share
        one ``Server.encode`` call (its options are the first request's)."""
        answers: list = [None] * len(calls)
        groups: dict[str, list[int]] = {}
        for i, (key, _) in enumerate(calls):
            groups.setdefault(key, []).append(i)
        for members in groups.values():
            with self._turn:
                encoded = self.server.encode([calls[i][1] for i in members])
            for i, answer in zip(members, encoded):
                answers[i] = answer
        return answers

    def decode(self, request: dict) -> tuple[int, bytes]:
        with self._turn:
            return self.server.decode([request])[0]

    def _stream(self, op: str, sid: str, arg):
        with self._turn:
            return self.server.stream(op, sid, arg)

    def stream(self, levels: int | None, lines: list, failure: tuple | None):
        """A whole streamed audio decode: ``lines`` (ids each) -> first the opening's ``(status,
        body)``, then the answer's NDJSON lines as ``app._audio_lines`` writes them; ``failure``:
        the error line to end with (a line of the body that did not parse)."""
        sid = uuid.uuid4().hex
        opened = self._stream("stream_open", sid, {"levels": levels})
        yield opened
        if opened[0] != 200:
            return
        total = 0
        try:
            for ids in lines:
                status, data = self._stream("stream_push", sid, ids)
                if status != 200:
                    yield data + b"\n"
                    return
                if data:
                    total += len(data) // 4
                    yield audio_line(data)
            if failure is not None:
                yield failure[1] + b"\n"
                return
            status, data = self._stream("stream_close", sid, None)
            if status != 200:
                yield data + b"\n"
                return
            total += len(data) // 4
            yield audio_line(data, done=True, samples=total, sample_rate=self.server.info()["audio_rate"])
        finally:
            self.server.streams.pop(sid, None)


def _counts(replicas) -> dict[str, int]:
    """``replicas``: one count for every pool, or ``{pool: count}`` (``default`` is always there)."""
    if isinstance(replicas, int):
        return {pool: replicas for pool in ("default", *MEDIA_POOLS)}
    counts = {"default": 1, **replicas}
    unknown = set(counts) - {"default", *MEDIA_POOLS}
    if unknown:
        raise ConfigError(f"--replicas: unknown pool(s) {', '.join(sorted(unknown))}; the pools are default, "
                          f"{', '.join(MEDIA_POOLS)}")
    for pool, n in counts.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0 or (pool == "default" and n < 1):
            raise ConfigError(f"--replicas: {pool} needs a whole number of replicas (default at least 1), got {n!r}")
    return {pool: n for pool, n in counts.items() if n}


def check_fits(replicas, cpus_per_replica: float, gpus_per_replica: float, resources: dict) -> None:
    """Refuse replicas that ask Ray for more CPUs or GPUs than ``resources`` (the cluster's) hold:
    Ray Serve would start the ones that fit and wait for the others for ever, so the service
    would never answer. Raised before the application is deployed, with the way out."""
    counts = _counts(replicas)
    n = sum(counts.values())
    for name, each, flag in (("CPU", cpus_per_replica, "--cpus-per-replica"),
                             ("GPU", gpus_per_replica, "--gpus-per-replica")):
        need, have = n * each, float(resources.get(name, 0))
        if need > have + 1e-9:
            pools = ", ".join(f"{pool} {c}" for pool, c in counts.items())
            raise ConfigError(f"{n} model replicas ({pools}) ask Ray for {need:g} {name}(s), {each:g} each "
                              f"({flag}), and this Ray cluster has {have:g}: the service would wait for ever for "
                              f"the rest. Pass {flag} {have / n:.3g} or fewer, or fewer replicas (--replicas "
                              f"image=0,video=0,audio=0 serves everything from the default pool)")


def parse_replicas(text: str) -> int | dict[str, int]:
    """``--replicas``: ``"2"`` (every pool) or ``"image=2,audio=1"`` (those pools; 0 folds a
    modality into ``default``)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    counts = {}
    for item in text.split(","):
        pool, sep, n = item.partition("=")
        if not sep or not n.strip().isdigit():
            raise ConfigError(f"--replicas: expected N or POOL=N,... (e.g. image=2,audio=1), got {text!r}")
        counts[pool.strip()] = int(n)
    _counts(counts)   # an unknown pool fails here, before Ray starts
    return counts


def build_app(cfg: ServeConfig, *, replicas=1, gpus_per_replica: float = 0.0, cpus_per_replica: float = 1.0):
    """The Ray Serve application (``serve.run(build_app(cfg))``).

    Args:
        cfg: the service's settings (``workers``, ``host`` and ``port`` are not used here: the
            replica counts are ``replicas``, the address is Ray Serve's HTTP options).
        replicas: replicas of every pool, or ``{pool: count}`` with pools ``default``, ``image``,
            ``video``, ``audio`` (a media pool left out, or given 0, is served by ``default``).
        gpus_per_replica: GPUs each model replica holds (its models go to ``cuda``).
        cpus_per_replica: CPUs Ray reserves for each model replica.
    """
    counts = _counts(replicas)
    device = "cuda" if gpus_per_replica > 0 else cfg.device
    spec = {"suite": cfg.suite, "device": device, "threads": cfg.threads, "limits": dict(cfg.limits),
            "plugins": tuple(cfg.plugins), "loader": cfg.loader}
    api = FastAPI(title="unitok", version=__version__, docs_url=None, redoc_url=None)

    @serve.deployment(name="gateway", ray_actor_options={"num_cpus": 0},
                      max_ongoing_requests=max(64, cfg.max_queue))
    @serve.ingress(api)
    class Gateway:
        def __init__(self, **pools):
            self.pools, self.metrics, self._info = pools, Metrics(), None

        async def info(self) -> dict:
            if self._info is None:
                self._info = await self.pools["default"].info.remote()
            return self._info

        def answer(self, endpoint: str, started: float, status: int, body: bytes, headers=None) -> Response:
            kind = json.loads(body)["error"]["kind"] if status >= 400 else None
            self.metrics.answered(endpoint, status, time.perf_counter() - started, kind)
            return Response(body, status, headers=headers, media_type=JSON)

        async def call(self, endpoint: str, started: float, response) -> Response:
            from ray.exceptions import RayActorError
            from ray.serve.exceptions import BackPressureError

            try:
                status, body = await response
            except BackPressureError:
                return self.answer(endpoint, started, *error_body(429, "queue_full", f"the queue is full "
                                                                  f"({cfg.max_queue} requests wait); retry shortly"),
                                   headers={"Retry-After": "1"})
            except RayActorError:
                status, body = error_body(503, "worker", "the replica answering this request died; retry")
            return self.answer(endpoint, started, status, body)

        async def body(self, request: Request) -> bytes | tuple[int, bytes]:
            declared = request.headers.get("content-length", "")
            over = declared.isdigit() and int(declared) > cfg.max_body_bytes   # refused before it is read
            data = b"" if over else await request.body()
            if over or len(data) > cfg.max_body_bytes:
                return error_body(413, "limit", f"the request body is over the limit of {cfg.max_body_bytes} "
                                                f"bytes (--max-body-bytes)")
            return data

        async def json_body(self, request: Request) -> dict | tuple[int, bytes]:
            data = await self.body(request)
            if isinstance(data, tuple):
                return data
            try:
                body = json.loads(data)
            except (ValueError, UnicodeDecodeError) as e:
                return error_body(400, "request", f"the body is not valid JSON ({e})")
            return body if isinstance(body, dict) else error_body(400, "request", "the body must be a JSON object")

        def pool(self, modality: str):
            return self.pools.get(modality, self.pools["default"])

        @api.post("/v1/encode")
        async def encode(self, request: Request):
            started = time.perf_counter()
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                try:
                    body = await _multipart(request)
                except Exception as e:   # app._BadRequest: its message is the answer
                    return self.answer("/v1/encode", started, *error_body(400, "request", str(e)))
            else:
                body = await self.json_body(request)
            if isinstance(body, tuple):
                return self.answer("/v1/encode", started, *body)
            key = encode_key(body)
            parts = body.get("parts") if isinstance(body.get("parts"), list) else []
            return await self.call("/v1/encode", started,
                                   self.pool(_modality(parts)).encode.remote((json.dumps(key), body)))

        @api.post("/v1/decode")
        async def decode(self, request: Request):
            started = time.perf_counter()
            body = await self.json_body(request)
            if isinstance(body, tuple):
                return self.answer("/v1/decode", started, *body)
            ids, modality = body.get("ids"), "default"
            if isinstance(ids, list):
                begins = (await self.info())["begin"]
                modality = next((m for m, b in begins.items() if b in ids), "default")
            return await self.call("/v1/decode", started, self.pool(modality).decode.remote(body))

        @api.post("/v1/decode/audio/stream")
        async def stream(self, request: Request):
            started, endpoint = time.perf_counter(), "/v1/decode/audio/stream"
            levels = request.query_params.get("levels")
            try:
                levels = int(levels) if levels else None
            except ValueError:
                return self.answer(endpoint, started, *error_body(400, "request", f"levels must be an integer, "
                                                                                  f"got {levels!r}"))
            data = await self.body(request)
            if isinstance(data, tuple):
                return self.answer(endpoint, started, *data)
            lines, failure = [], None
            for line in data.split(b"\n"):
                if line.strip():
                    ids = stream_ids(line)
                    if isinstance(ids, tuple):
                        failure = ids
                        break
                    lines.append(ids)
            chunks = self.pool("audio").options(stream=True).stream.remote(levels, lines, failure)
            status, body = await chunks.__anext__()
            if status != 200:
                return self.answer(endpoint, started, status, body)
            self.metrics.answered(endpoint, 200, time.perf_counter() - started)
            rate = (await self.info()).get("audio_rate")
            return StreamingResponse(chunks, media_type="application/x-ndjson", headers={"X-Sample-Rate": str(rate)})

        @api.get("/v1/space")
        async def space(self):
            info = await self.info()
            return Response(json.dumps({"fingerprint": info["fingerprint"], "manifest": info["manifest"],
                                        "modalities": info["modalities"]}), media_type=JSON)

        @api.get("/healthz")
        async def healthz(self):
            workers = []
            for name, handle in self.pools.items():
                try:
                    workers.append({"pool": name, "pid": (await handle.info.remote())["pid"], "alive": True})
                except Exception:
                    workers.append({"pool": name, "pid": None, "alive": False})
            ok = all(w["alive"] for w in workers)
            return Response(json.dumps({"ok": ok, "workers": workers, "engine": "ray"}), 200 if ok else 503,
                            media_type=JSON)

        @api.get("/metrics")
        async def prometheus(self):
            return Response(self.metrics.text(), media_type=self.metrics.content_type)

    pools = {}
    for pool, n in counts.items():
        pools[pool] = serve.deployment(Tokenizers).options(
            name=f"tokenizers-{pool}", num_replicas=n, max_queued_requests=cfg.max_queue,
            max_ongoing_requests=2 * cfg.max_batch,   # room for a batch to fill while one runs
            ray_actor_options={"num_cpus": cpus_per_replica, "num_gpus": gpus_per_replica},
        ).bind(spec, cfg.max_batch, cfg.max_wait_ms / 1000)
    return Gateway.bind(**pools)


def run(cfg: ServeConfig, *, replicas=1, gpus_per_replica: float = 0.0, cpus_per_replica: float = 1.0,
        address: str | None = None) -> None:
    """``unitok serve --engine ray``: join ``address`` (or ``RAY_ADDRESS``), else start a local Ray,
    run the application on ``cfg.host:cfg.port`` until interrupted, then shut it down."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:   # a local instance: its workers see this interpreter's import path (plugins included)
        path = os.pathsep.join(p for p in sys.path if p)
        ray.init(include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        try:
            check_fits(replicas, cpus_per_replica, gpus_per_replica, ray.cluster_resources())
        except ConfigError as e:
            if not address:     # a local instance has what it has
                raise
            print(f"unitok serve: warning: {e} (unless the cluster's autoscaler adds nodes)", file=sys.stderr)
        serve.start(http_options={"host": cfg.host, "port": cfg.port})
        serve.run(build_app(cfg, replicas=replicas, gpus_per_replica=gpus_per_replica,
                            cpus_per_replica=cpus_per_replica), name="unitok", route_prefix="/", blocking=True)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
