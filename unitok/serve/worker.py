"""The worker process of ``unitok serve``: loads the suite once and answers batches of requests
sent through a pipe. Runs in its own (spawned) process, so the server's event loop never waits on a
model, and a worker that crashes or is killed takes no other worker with it.

Protocol: the server sends ``(tag, op, payload)``; the worker answers ``(tag, result)`` in order.
Batch ops answer one ``(status, json_bytes)`` per request, so one bad request fails alone.
"""

from __future__ import annotations

import json
import os
import traceback

import numpy as np

from ..errors import ConfigError, LimitError, MediaError, TokenSequenceError, UnitokError
from ..suiteinfo import retired_advice, space_name
from .wire import dump_decoded, load_document

_LIMIT_MARKS = ("(MediaLimits.", "UniTokenizer.max_tokens")   # what a size-limit message names


def error_body(status: int, kind: str, reason: str, position: int | None = None) -> tuple[int, bytes]:
    err = {"status": status, "kind": kind, "reason": reason}
    if position is not None:
        err["position"] = int(position)
    return status, json.dumps({"error": err}).encode()


def answer_error(e: Exception) -> tuple[int, bytes]:
    """An exception -> (HTTP status, JSON body). Over a limit: 413; a strict decode failure: 422
    with the position; bad media or options: 400; anything else is a bug: 500."""
    if isinstance(e, TokenSequenceError):
        return error_body(422, "token_sequence", e.reason, e.position)
    if isinstance(e, MediaError):
        limit = isinstance(e, LimitError) or any(mark in str(e) for mark in _LIMIT_MARKS)
        return error_body(413 if limit else 400, "limit" if limit else "media", str(e))
    if isinstance(e, ConfigError):
        return error_body(400, "config", str(e))
    if isinstance(e, UnitokError):
        return error_body(400, "request", str(e))
    return error_body(500, "internal", f"{type(e).__name__}: {e}")


def flag(req: dict, name: str, default: bool) -> bool:
    """A request's yes/no option: JSON true or false (a string such as "no" is refused, not taken as
    true), ``default`` when absent or null."""
    value = req.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"'{name}' must be true or false, got {value!r}")
    return value


def ok(body: dict) -> tuple[int, bytes]:
    # ensure_ascii: a decoded text part may hold lone surrogates (invalid UTF-8 decodes that way),
    # which JSON carries only as escapes
    return 200, json.dumps(body, ensure_ascii=True).encode()


class Server:
    """One loaded suite and the requests it answers (also usable in-process, e.g. by Ray Serve)."""

    def __init__(self, tok, limits=None):
        self.tok = tok.with_limits(limits) if limits is not None else tok
        self.limits = self.tok.limits
        self.streams: dict[str, AudioStream] = {}

    def info(self) -> dict:
        sp = self.tok.space.special_tokens
        return {"fingerprint": self.tok.space.fingerprint, "manifest": json.loads(self.tok.space.to_json()),
                "modalities": self.tok.modalities, "pid": os.getpid(),
                "begin": {m: sp[f"<|{m}|>"] for m in self.tok.media},
                "audio_rate": self.tok.media["audio"].sample_rate if "audio" in self.tok.media else None}

    # -- encode ------------------------------------------------------------------------------------

    def encode(self, requests: list[dict]) -> list[tuple[int, bytes]]:
        """Requests sharing their options (the batcher's key) -> one answer each; the documents that
        parse are encoded together (``encode_batch``: the text parts in parallel)."""
        answers: list = [None] * len(requests)
        docs, where = [], []
        for i, req in enumerate(requests):
            try:
                docs.append(load_document(req, self.limits))
                where.append(i)
            except Exception as e:
                answers[i] = answer_error(e)
        if docs:
            try:
                tok, kw = self._encoder(requests[0])
                seqs = tok.encode_batch(docs, **kw) if len(docs) > 1 else [tok.encode(docs[0], **kw)]
            except Exception:   # one document spoiled the batch: encode them one by one to tell which
                seqs = [self._encode_one(requests[i], d) for i, d in zip(where, docs)]
            for i, seq in zip(where, seqs):
                answers[i] = seq if isinstance(seq, tuple) else self._sequence(seq, requests[i])
        return answers

    def _encoder(self, req: dict):
        allowed = req.get("allowed_special", ())
        if allowed != "all" and not (isinstance(allowed, (list, tuple)) and all(isinstance(a, str) for a in allowed)):
            raise ConfigError(f"'allowed_special' must be \"all\" or a list of token names, got {allowed!r}")
        kw = {"bos": flag(req, "bos", False), "eos": flag(req, "eos", False),
              "allowed_special": "all" if allowed == "all" else set(allowed)}
        flag(req, "meta", False)
        preprocess = req.get("preprocess")
        if not preprocess:
            return self.tok, kw
        from ..media import Preprocess

        try:
            policy = Preprocess(**preprocess)
        except TypeError as e:
            raise ConfigError(f"preprocess: {e}; the fields are those of unitok.media.Preprocess") from None
        return self.tok.with_limits(preprocess=policy), kw

    def _encode_one(self, req: dict, doc) -> object:
        try:
            tok, kw = self._encoder(req)
            return tok.encode(doc, **kw)
        except Exception as e:
            return answer_error(e)

    def _sequence(self, seq, req: dict) -> tuple[int, bytes]:
        body = seq.to_dict()
        if req.get("meta"):
            try:
                from .. import lm
            except ImportError:
                return error_body(400, "request", "per-token metadata needs unitok.lm, which this install lacks")
            try:
                m = lm.annotate(seq, tok=self.tok)
            except Exception as e:
                return answer_error(e)
            body["meta"] = {"role": m.role.tolist(), "blocks": m.blocks.tolist(), "parents": m.parents.tolist(),
                            "cells": m.cells.tolist(), "mrope": m.mrope.tolist(), "uni": m.uni.tolist(),
                            "loss": m.loss.tolist()}
        return ok(body)

    # -- decode ------------------------------------------------------------------------------------

    def decode(self, requests: list[dict]) -> list[tuple[int, bytes]]:
        return [self._decode_one(req) for req in requests]

    def _decode_one(self, req: dict) -> tuple[int, bytes]:
        try:
            fingerprint = req.get("fingerprint")
            if fingerprint is not None and fingerprint != self.tok.space.fingerprint:
                advice = retired_advice(fingerprint) or "; decode them with the suite that made them"
                return error_body(409, "fingerprint", f"the ids were made with {space_name(str(fingerprint))}, "
                                                      f"this server's is {self.tok.space.fingerprint[:12]}{advice}")
            ids = req.get("ids")
            if not isinstance(ids, list):
                raise TokenSequenceError("'ids' must be a list of integers")
            decoded = self.tok.decode(np.asarray(ids) if ids else np.zeros(0, np.int64),
                                      strict=flag(req, "strict", True))
            return ok(dump_decoded(decoded))
        except (ValueError, TypeError, OverflowError) as e:
            if isinstance(e, UnitokError):
                return answer_error(e)
            return error_body(422, "token_sequence", f"'ids' must be a flat list of integers ({e})")
        except Exception as e:
            return answer_error(e)

    # -- streamed audio decode ---------------------------------------------------------------------

    def stream(self, op: str, sid: str, payload) -> tuple[int, bytes]:
        try:
            if op == "stream_open":
                self.streams[sid] = AudioStream(self.tok, payload)
                return 200, b""
            stream = self.streams.get(sid)
            if stream is None:
                return error_body(404, "stream", f"no audio stream {sid!r} on this worker")
            if op == "stream_push":
                return 200, stream.push(payload).tobytes()
            self.streams.pop(sid, None)
            return (200, stream.close().tobytes()) if op == "stream_close" else (200, b"")   # stream_drop
        except Exception as e:
            self.streams.pop(sid, None)
            return answer_error(e)


class AudioStream:
    """Audio ids in as a model generates them, samples out as soon as they are final.

    The ids are one audio segment as the suite lays it out (``CodecDepth``: a frame is its levels'
    codes, coarse to fine): with its begin token and header first (then the output is cut to the
    header's length, as ``decode`` cuts it, and the end token closes it), or the body alone with
    ``levels`` given. Concatenated, the pushes and the close give ``decode``'s samples up to float
    rounding (``unitok.audio.streaming.StreamDecoder``).
    """

    def __init__(self, tok, options: dict):
        if "audio" not in tok.media:
            raise ConfigError("this suite has no audio tokenizer")
        self.tok, self.codec = tok, tok.media["audio"]
        if getattr(self.codec.cfg, "layout", "depth") == "delay":
            raise ConfigError("streamed decode takes audio laid out frame by frame (CodecDepth); this suite's "
                              "audio tokenizer uses the delay pattern: decode whole sequences with /v1/decode")
        sp = tok.space.special_tokens
        self.begin, self.end = sp["<|audio|>"], sp["<|/audio|>"]
        levels = options.get("levels")
        self.levels = None if levels is None else int(levels)
        if self.levels is not None and not 1 <= self.levels <= self.codec.levels:
            raise ConfigError(f"levels must be 1..{self.codec.levels}, got {levels}")
        self.pending = np.zeros(0, np.int64)
        self.position = 0          # index (in the stream) of pending[0]
        self.length = None         # samples the header asks for (None: the body alone was sent)
        self.emitted = 0
        self.closed = False
        self.decoder = self.codec.stream_decoder()

    def push(self, ids) -> np.ndarray:
        """ids: the next ids of the segment (any count) -> float32 samples now final."""
        if self.closed:
            raise TokenSequenceError("ids after the end token <|/audio|>", self.position + len(self.pending))
        self.pending = np.concatenate([self.pending, np.asarray(ids, dtype=np.int64).reshape(-1)])
        if self.levels is None and not self._header():
            return np.zeros(0, np.float32)
        ends = np.flatnonzero(self.pending == self.end)
        if len(ends):
            if int(ends[0]) != len(self.pending) - 1:
                raise TokenSequenceError("ids after the end token <|/audio|>", self.position + int(ends[0]) + 1)
            self.pending, self.closed = self.pending[:-1], True
        n = len(self.pending) // self.levels
        return self._frames(n)

    def close(self) -> np.ndarray:
        if len(self.pending):
            raise TokenSequenceError(f"the stream ends inside a frame: {len(self.pending)} of its {self.levels} "
                                     f"codes", self.position + len(self.pending))
        if self.levels is None:
            raise TokenSequenceError("the stream ended before the audio header was complete", self.position)
        return self._emit(self.decoder.flush())

    def _header(self) -> bool:
        codec, width = self.codec, sum(self.codec.header_widths())
        if not len(self.pending):
            return False
        if int(self.pending[0]) != self.begin:
            raise TokenSequenceError("an audio stream starts with <|audio|> and its header (or give 'levels' to "
                                     "send the body alone)", self.position)
        if len(self.pending) < 1 + width:
            return False
        try:
            values = self.tok.space.dims_from_ids(self.pending[1:1 + width], len(codec.header_fields),
                                                  codec.header_widths())
            header = dict(zip(codec.header_fields, values))
            codec.check_header(header)
        except TokenSequenceError as e:
            raise TokenSequenceError(f"audio header: {e.reason}", self.position + 1 + (e.position or 0)) from None
        self.levels, self.length = header["levels"], codec.model_length(header)
        self.pending, self.position = self.pending[1 + width:], self.position + 1 + width
        return True

    def _frames(self, n: int) -> np.ndarray:
        if n == 0:
            return np.zeros(0, np.float32)
        chunk = self.pending[:n * self.levels]
        levels, codes = self.tok.space.media_codes("audio", chunk)
        expected = np.tile(np.arange(self.levels), n)
        bad = np.flatnonzero(levels != expected)
        if len(bad):
            i = int(bad[0])
            raise TokenSequenceError(f"expected an audio level-{expected[i]} code", self.position + i)
        self.pending, self.position = self.pending[n * self.levels:], self.position + n * self.levels
        return self._emit(self.decoder.push(codes.reshape(n, self.levels).T))

    def _emit(self, samples) -> np.ndarray:
        out = samples.detach().cpu().numpy().astype(np.float32, copy=False).reshape(-1)
        if self.length is not None:
            out = out[:max(0, self.length - self.emitted)]
        self.emitted += len(out)
        return out


def load_server(spec: dict) -> Server:
    """A worker's or a Ray Serve replica's ``Server``: torch threads, plugins, the suite on
    ``spec["device"]`` under the service's media limits (``spec``: ``Pool.spec``'s fields)."""
    import torch

    from ..pipeline.worker import import_plugins, resolve_loader
    from .config import ServeConfig

    torch.set_num_threads(spec["threads"])
    import_plugins(spec["plugins"])
    limits = ServeConfig(limits=spec["limits"]).media_limits()
    return Server(resolve_loader(spec["loader"])(spec["suite"], device=spec["device"]), limits)


def main(conn, spec: dict) -> None:
    """The worker process: load, announce, answer until told to stop or the pipe closes."""
    import torch

    from ..pipeline.worker import _exit_with_parent

    _exit_with_parent()
    try:
        device = spec["device"]
        if device == "cuda" and torch.cuda.device_count() > 1:   # one GPU per worker, round robin
            device = f"cuda:{spec['index'] % torch.cuda.device_count()}"
        server = load_server({**spec, "device": device})
        conn.send(("ready", server.info()))
    except Exception as e:
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    while True:
        try:
            tag, op, payload = conn.recv()
        except (EOFError, OSError):
            return
        if op == "stop":
            return
        try:
            if op == "encode":
                result = server.encode(payload)
            elif op == "decode":
                result = server.decode(payload)
            else:
                result = server.stream(op, *payload)
        except Exception:   # a bug: answer it rather than leave the request hanging
            result = error_body(500, "internal", traceback.format_exc(limit=3))
        conn.send((tag, result))
