"""The ASGI app of ``unitok serve`` (FastAPI; ``pip install 'unitok[serve]'``).

    POST /v1/encode                 a document -> ids, groups, spans, fingerprint (+ "meta")
    POST /v1/decode                 ids (+ strict, fingerprint) -> parts and repairs
    POST /v1/decode/audio/stream    audio ids as NDJSON lines, as they are generated -> audio chunks
    GET  /v1/space                  the token-space manifest and fingerprint
    GET  /healthz                   workers, queue
    GET  /metrics                   Prometheus text

Errors are JSON ``{"error": {"kind", "reason", "position"?}}``: 400 bad request or media, 409 ids
of another token space, 413 over a limit (``MediaLimits``, ``max_tokens``, the body size), 422 a
strict decode failure (with the position), 429 the queue is full (``Retry-After``), 503 a worker
died twice on the request. The models run in worker processes (``pool.py``), never on this loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from .. import __version__
from .config import ServeConfig
from .metrics import Metrics
from .pool import Pool, QueueFull, WorkerDied
from .wire import KINDS, b64
from .worker import error_body

JSON = "application/json"


class BodyTooLarge(Exception):
    pass


class _BadRequest(Exception):
    pass


class _BodyLimit:
    """ASGI middleware: a request body over ``cap`` bytes is refused (413) before or while it is
    read, whatever its declared length."""

    def __init__(self, app, cap: int):
        self.app, self.cap = app, cap

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.cap:
            status, body = self.too_large()
            return await Response(body, status, media_type=JSON)(scope, receive, send)
        seen = 0

        async def capped():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.cap:
                    raise BodyTooLarge
            return message

        await self.app(scope, capped, send)

    def too_large(self) -> tuple[int, bytes]:
        return error_body(413, "limit", f"the request body is over the limit of {self.cap} bytes (--max-body-bytes)")


class _Duplex(StreamingResponse):
    """A streamed answer written while the request body is still being read: Starlette's own
    would read the body concurrently to notice a disconnect, and take the ids away from us."""

    async def __call__(self, scope, receive, send):
        await self.stream_response(send)


def _modality(parts) -> str:
    kinds = {"text" if k in ("text", "text_base64") else k for p in parts if isinstance(p, dict) for k in p}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def encode_key(body: dict) -> tuple:
    """Requests with equal keys go through the models together: same options, same modality and,
    for a lone media array, the same shape (so a GPU batch can stack them)."""
    parts = body.get("parts") if isinstance(body.get("parts"), list) else []
    shape = None
    if len(parts) == 1 and isinstance(parts[0], dict):
        field = next(iter(parts[0].values()))
        shape = tuple(field["shape"]) if isinstance(field, dict) and isinstance(field.get("shape"), list) else None
    options = json.dumps([body.get(k) for k in ("bos", "eos", "allowed_special", "preprocess", "meta")], default=str)
    return "encode", _modality(parts), options, str(shape)


def create_app(cfg: ServeConfig | None = None) -> FastAPI:
    cfg = cfg or ServeConfig()
    metrics = Metrics()
    pool = Pool(cfg, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await pool.start()
        yield
        await pool.stop()

    app = FastAPI(title="unitok", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.pool, app.state.metrics, app.state.config = pool, metrics, cfg
    limit = _BodyLimit(None, cfg.max_body_bytes)

    def answer(endpoint: str, started: float, status: int, body: bytes, headers=None) -> Response:
        kind = None
        if status >= 400:
            try:
                kind = json.loads(body)["error"]["kind"]
            except (ValueError, KeyError, TypeError):
                pass
        metrics.answered(endpoint, status, time.perf_counter() - started, kind)
        return Response(body, status, headers=headers, media_type=JSON)

    async def run(endpoint: str, started: float, key: tuple, payload: dict) -> Response:
        try:
            status, body = await pool.submit(key, payload)
        except QueueFull:
            return answer(endpoint, started, *error_body(429, "queue_full", f"the queue is full ({cfg.max_queue} "
                                                                            f"requests wait); retry shortly"),
                          headers={"Retry-After": "1"})
        return answer(endpoint, started, status, body)

    async def read_json(request: Request) -> dict:
        body = await request.body()
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise _BadRequest(f"the body is not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise _BadRequest("the body must be a JSON object")
        return data

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge):
        return answer(request.url.path, time.perf_counter(), *limit.too_large())

    @app.exception_handler(_BadRequest)
    async def bad_request(request: Request, exc: _BadRequest):
        return answer(request.url.path, time.perf_counter(), *error_body(400, "request", str(exc)))

    @app.post("/v1/encode")
    async def encode(request: Request):
        started = time.perf_counter()
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            body = await _multipart(request)
        else:
            body = await read_json(request)
        return await run("/v1/encode", started, encode_key(body), body)

    @app.post("/v1/decode")
    async def decode(request: Request):
        started = time.perf_counter()
        body = await read_json(request)
        ids = body.get("ids")
        modality = "text"
        if isinstance(ids, list):
            begins = pool.info["begin"]
            modality = next((m for m, b in begins.items() if b in ids), "text")
        return await run("/v1/decode", started, ("decode", modality, str(bool(body.get("strict", True))), ""), body)

    @app.post("/v1/decode/audio/stream")
    async def stream(request: Request):
        started = time.perf_counter()
        if pool.streams >= cfg.max_streams:
            return answer("/v1/decode/audio/stream", started,
                          *error_body(429, "queue_full", f"{cfg.max_streams} audio streams are open; retry shortly"),
                          headers={"Retry-After": "1"})
        levels = request.query_params.get("levels")
        try:
            worker = await pool.stream_worker()
            sid = uuid.uuid4().hex
            status, body = await worker.call("stream_open", (sid, {"levels": int(levels) if levels else None}))
        except ValueError:
            status, body = error_body(400, "request", f"levels must be an integer, got {levels!r}")
        except WorkerDied:
            status, body = error_body(503, "worker", "no live worker for the stream; retry shortly")
        if status != 200:
            return answer("/v1/decode/audio/stream", started, status, body)
        return _Duplex(_audio_lines(request, pool, metrics, worker, sid, started), media_type="application/x-ndjson",
                       headers={"X-Sample-Rate": str(pool.info.get("audio_rate", ""))})

    @app.get("/v1/space")
    async def space():
        return Response(json.dumps({"fingerprint": pool.info["fingerprint"], "manifest": pool.info["manifest"],
                                    "modalities": pool.info["modalities"]}), media_type=JSON)

    @app.get("/healthz")
    async def healthz():
        health = pool.health()
        ok = any(w["alive"] for w in health["workers"])
        return Response(json.dumps({"ok": ok, **health}), 200 if ok else 503, media_type=JSON)

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.text(), media_type=metrics.content_type)

    return _BodyLimit(app, cfg.max_body_bytes)


async def _multipart(request: Request) -> dict:
    """A multipart upload -> the JSON form: field ``document`` holds ``{"parts": [...]}`` whose
    media name uploaded files (``{"image": {"upload": "cat"}}``)."""
    form = await request.form()
    try:
        body = json.loads(form.get("document") or "")
        parts = body["parts"]
    except (ValueError, KeyError, TypeError) as e:
        raise _BadRequest(f"a multipart request needs a 'document' field holding {{\"parts\": [...]}} ({e})") from None
    for part in parts if isinstance(parts, list) else []:
        for kind, value in part.items() if isinstance(part, dict) else ():
            if kind in KINDS and isinstance(value, dict) and "upload" in value:
                upload = form.get(str(value["upload"]))
                if upload is None or isinstance(upload, str):
                    raise _BadRequest(f"no uploaded file named {value['upload']!r}")
                part[kind] = {"file": await upload.read()}
    return body


def audio_line(data: bytes, /, **last) -> bytes:
    """A line of a streamed audio decode's answer: ``data``, float32 samples (``last``: the
    closing line's fields)."""
    return json.dumps({"audio": b64(data), **last}).encode() + b"\n"


def stream_ids(line: bytes) -> list[int] | tuple[int, bytes]:
    """One NDJSON line of a streamed audio decode -> its ids, or the error answer (400, 422)."""
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        return error_body(400, "request", f"not a JSON line ({e})")
    ids = data.get("ids") if isinstance(data, dict) else data
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return error_body(422, "token_sequence", "each line must be a list of ids or {\"ids\": [...]}")
    return ids


async def _audio_lines(request: Request, pool: Pool, metrics: Metrics, worker, sid: str, started: float):
    """The streamed answer: one NDJSON line per push that made samples final (``{"audio":
    base64 float32}``), then ``{"done": true, "samples": n, "sample_rate": r}``, or an
    ``{"error": ...}`` line where the stream fails."""
    pool.streams += 1
    metrics.streams.set(pool.streams)
    status, closed, total = 200, False, 0

    async def push(line: bytes):
        ids = stream_ids(line)
        return ids if isinstance(ids, tuple) else await worker.call("stream_push", (sid, ids))

    try:
        buffer = b""
        async for chunk in request.stream():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                status, data = await push(line)
                if status != 200:
                    yield data + b"\n"
                    return
                if data:
                    total += len(data) // 4
                    yield audio_line(data)
        if buffer.strip():
            status, data = await push(buffer)
            if status != 200:
                yield data + b"\n"
                return
            total += len(data) // 4
            yield audio_line(data)
        status, data = await worker.call("stream_close", (sid, None))
        closed = True
        if status != 200:
            yield data + b"\n"
            return
        total += len(data) // 4
        yield audio_line(data, done=True, samples=total, sample_rate=pool.info.get("audio_rate"))
    except WorkerDied:
        status, closed = 503, True
        yield error_body(503, "worker", "the worker decoding this stream died; start the stream again")[1] + b"\n"
    except BodyTooLarge:
        status = 413
        yield error_body(413, "limit", "the stream is over the request body limit (--max-body-bytes)")[1] + b"\n"
    finally:
        pool.streams -= 1
        metrics.streams.set(pool.streams)
        metrics.answered("/v1/decode/audio/stream", status, time.perf_counter() - started)
        if not closed and worker.alive:
            with contextlib.suppress(WorkerDied):
                await asyncio.shield(worker.call("stream_drop", (sid, None)))


def serve(cfg: ServeConfig, *, log_level: str = "warning") -> None:
    """Run the service until interrupted (``unitok serve``)."""
    import uvicorn

    uvicorn.run(create_app(cfg), host=cfg.host, port=cfg.port, log_level=log_level, timeout_graceful_shutdown=5)
