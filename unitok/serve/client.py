"""``unitok.Client``: the service with the local API's objects (standard library HTTP only, so a
data loader needs no extra to call a tokenizer pool).

    >>> client = unitok.Client("http://127.0.0.1:8000")
    >>> seq = client.encode(["A cat", unitok.Image.open("cat.jpg")])     # a TokenSequence
    >>> parts = client.decode(seq)                                       # a Decoded, as tok.decode's
    >>> for chunk in client.stream_audio(generated_ids):                 # float32 samples as they are final
    ...     play(chunk)

Errors come back as the local API raises them: ``TokenSequenceError`` (with ``position``),
``MediaError`` (bad media, or over a limit: ``ServiceError.status`` 413 as well), ``ConfigError``
(ids of another token space). A full queue (429) or a lost worker (503) is retried ``retries``
times with backoff, then raised as ``ServiceError``.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import numpy as np

from ..errors import ConfigError, MediaError, TokenSequenceError, UnitokError
from .wire import dump_document, load_decoded

_RETRY = (429, 503)


class ServiceError(UnitokError):
    """The service answered an error that is none of the local API's (or a retried 429 / 503)."""

    def __init__(self, status: int, reason: str, kind: str | None = None):
        self.status, self.reason, self.kind = status, reason, kind
        super().__init__(f"HTTP {status}: {reason}")


class MediaLimitError(MediaError):
    """A media part or a body over the server's limits (HTTP 413)."""

    status = 413


def _raise(status: int, data: bytes):
    try:
        err = json.loads(data)["error"]
        kind, reason, position = err.get("kind"), err.get("reason", ""), err.get("position")
    except (ValueError, KeyError, TypeError):
        kind, reason, position = None, data[:300].decode("utf-8", "replace"), None
    if status == 422:
        raise TokenSequenceError(reason, position)
    if status == 409:
        raise ConfigError(reason)
    if status == 413:
        raise MediaLimitError(reason)
    if status == 400 and kind == "media":
        raise MediaError(reason)
    if status == 400 and kind == "config":
        raise ConfigError(reason)
    raise ServiceError(status, reason, kind)


class Client:
    """Args:
        url: the service, e.g. ``http://127.0.0.1:8000``.
        timeout: seconds to wait for one answer.
        retries: times a 429 (queue full) or 503 (worker lost) is retried, with backoff.
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", *, timeout: float = 120.0, retries: int = 5):
        parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"service URL {url!r}: expected http://HOST:PORT")
        self.url = f"{parsed.scheme}://{parsed.netloc}"
        self._connection = http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
        self._host, self._port = parsed.hostname, parsed.port
        self.timeout, self.retries = timeout, retries
        self._local = threading.local()   # one keep-alive connection per thread
        self._space = None

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # -- HTTP ------------------------------------------------------------------------------------

    def _conn(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = self._local.conn = self._connection(self._host, self._port, timeout=self.timeout)
        return conn

    def _once(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, dict, bytes]:
        for attempt in range(2):   # a keep-alive connection the server closed meanwhile: reconnect once
            conn = self._conn(fresh=attempt > 0)
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                return response.status, dict(response.getheaders()), response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                self._conn(fresh=True)
                if attempt:
                    raise
            except OSError as e:
                self._conn(fresh=True)
                raise ServiceError(0, f"cannot reach {self.url} ({e})") from None
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, payload: dict | None = None) -> bytes:
        """One call, retried on 429 and 503; raises the local API's errors; returns the body."""
        body = None if payload is None else json.dumps(payload, ensure_ascii=True).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in range(self.retries + 1):
            status, answer_headers, data = self._once(method, path, body, headers)
            if status < 400:
                return data
            if status not in _RETRY or attempt == self.retries:
                _raise(status, data)
            wait = min(float(answer_headers.get("Retry-After", 0) or 0), 0.05 * 2**attempt) or 0.05 * 2**attempt
            time.sleep(wait)
        raise AssertionError("unreachable")

    # -- the local API ---------------------------------------------------------------------------

    def encode(self, x, *, bos: bool = False, eos: bool = False, allowed_special=(), meta: bool = False,
               preprocess: dict | None = None):
        """As ``UniTokenizer.encode``: one item or a document (a list of parts: ``str``, ``bytes``,
        ``Image``, ``Video``, ``Audio``, ``pathlib.Path``, read here) -> ``TokenSequence``. With
        ``meta=True``, ``(TokenSequence, unitok.lm.TokenMeta)``. ``preprocess``: the fields of
        ``unitok.media.Preprocess`` the server applies first."""
        from ..sequence import TokenSequence

        payload = dump_document(x)
        payload.update(bos=bool(bos), eos=bool(eos),
                       allowed_special="all" if allowed_special == "all" else sorted(allowed_special))
        if meta:
            payload["meta"] = True
        if preprocess:
            payload["preprocess"] = dict(preprocess)
        data = json.loads(self.request("POST", "/v1/encode", payload))
        seq = TokenSequence.from_dict(data, source=f"{self.url}/v1/encode")
        return (seq, _meta(seq, data["meta"])) if meta else seq

    def encode_batch(self, docs, *, num_threads: int = 8, **kw) -> list:
        """``encode`` of many documents, ``num_threads`` requests in flight (the server batches them)."""
        with ThreadPoolExecutor(max(1, num_threads)) as pool:
            return list(pool.map(lambda d: self.encode(d, **kw), docs))

    def decode(self, ids, *, strict: bool = True, fingerprint: str | None = None):
        """As ``UniTokenizer.decode``: ids or a ``TokenSequence`` -> ``Decoded`` (``.repairs``)."""
        from ..sequence import TokenSequence

        if isinstance(ids, TokenSequence):
            fingerprint = fingerprint or ids.fingerprint
            ids = ids.ids
        if hasattr(ids, "detach"):
            ids = ids.detach().cpu().numpy()
        payload = {"ids": np.asarray(ids).tolist(), "strict": strict}
        if fingerprint is not None:
            payload["fingerprint"] = fingerprint
        return load_decoded(json.loads(self.request("POST", "/v1/decode", payload)))

    @property
    def space(self):
        """The server's ``TokenSpace`` (fetched once)."""
        if self._space is None:
            from ..space import TokenSpace

            data = json.loads(self.request("GET", "/v1/space"))
            self._space = TokenSpace.from_json(json.dumps(data["manifest"]), source=f"{self.url}/v1/space")
            if self._space.fingerprint != data["fingerprint"]:
                raise ConfigError(f"{self.url}/v1/space: the manifest does not match the fingerprint the server gave")
        return self._space

    def health(self) -> dict:
        status, _, data = self._once("GET", "/healthz", None, {})
        return {"status": status, **json.loads(data)}

    def metrics(self) -> str:
        return self.request("GET", "/metrics").decode()

    def stream_audio(self, chunks: Iterable, *, levels: int | None = None) -> Iterator[np.ndarray]:
        """Streamed decode of one audio segment as a model generates it: ``chunks`` yields lists
        of ids (the segment's begin token and header first; or the body alone with ``levels``);
        yields float32 samples (at ``sample_rate`` of the server's audio tokenizer) as soon as the
        server has made them final. The ids are sent while the answer is read."""
        conn = self._connection(self._host, self._port, timeout=self.timeout)
        path = "/v1/decode/audio/stream" + (f"?levels={int(levels)}" if levels is not None else "")
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", "application/x-ndjson")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        failed: list[BaseException] = []

        def send():
            try:
                for ids in chunks:
                    line = json.dumps([int(i) for i in np.asarray(ids).reshape(-1)]).encode() + b"\n"
                    conn.send(b"%x\r\n%s\r\n" % (len(line), line))
                conn.send(b"0\r\n\r\n")
            except BaseException as e:   # handed to the reader: it raises it
                failed.append(e)
                try:
                    conn.sock.shutdown(2)
                except OSError:
                    pass

        sender = threading.Thread(target=send, daemon=True, name="unitok-stream-sender")
        sender.start()
        try:
            response = conn.getresponse()
            if response.status != 200:
                _raise(response.status, response.read())
            while True:
                line = response.readline()
                if not line:
                    break
                data = json.loads(line)
                if "error" in data:
                    _raise(int(data["error"].get("status", 500)), line)
                yield np.frombuffer(base64.b64decode(data["audio"]), dtype="<f4")
                if data.get("done"):
                    return
            if failed:
                raise failed[0]
            raise ServiceError(0, "the audio stream ended without its last line")
        finally:
            sender.join(self.timeout)
            conn.close()


def _meta(seq, data: dict):
    from ..lm import TokenMeta

    return TokenMeta(ids=seq.ids, role=np.asarray(data["role"], np.int8), blocks=np.asarray(data["blocks"], np.int64),
                     parents=np.asarray(data["parents"], np.int64), cells=np.asarray(data["cells"], np.int64).reshape(-1, 4),
                     mrope=np.asarray(data["mrope"], np.int64).reshape(-1, 3),
                     uni=np.asarray(data["uni"], np.float64).reshape(-1, 3), loss=np.asarray(data["loss"], bool))
