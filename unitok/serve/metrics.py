"""``GET /metrics``: requests, latency histograms, batch sizes, queue depth, errors by kind and
worker restarts, in Prometheus's text format (``prometheus_client``, one registry per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("unitok_requests", "Requests answered, by endpoint and status", ["endpoint", "status"],
                                registry=r)
        self.latency = Histogram("unitok_request_seconds", "Time from a request's arrival to its answer",
                                 ["endpoint"], buckets=_LATENCY, registry=r)
        self.errors = Counter("unitok_errors", "Requests answered with an error, by kind", ["kind"], registry=r)
        self.batch_size = Histogram("unitok_batch_size", "Requests per batch sent to a worker", ["kind"],
                                    buckets=_SIZES, registry=r)
        self.queue_wait = Histogram("unitok_queue_seconds", "Time a request waited for a worker", ["kind"],
                                    buckets=_LATENCY, registry=r)
        self.depth = Gauge("unitok_queue_depth", "Requests waiting for a worker, by kind", ["kind"], registry=r)
        self.restarts = Counter("unitok_worker_restarts", "Worker processes started again after dying", registry=r)
        self.streams = Gauge("unitok_audio_streams", "Streamed audio decodes in progress", registry=r)

    @staticmethod
    def kind(key: tuple) -> str:
        return f"{key[0]}:{key[1]}"   # operation and modality; options stay out of the labels

    def queue_depth(self, key: tuple, depth: int) -> None:
        self.depth.labels(self.kind(key)).set(depth)

    def batch(self, key: tuple, size: int, waits: list[float]) -> None:
        kind = self.kind(key)
        self.batch_size.labels(kind).observe(size)
        for w in waits:
            self.queue_wait.labels(kind).observe(w)

    def answered(self, endpoint: str, status: int, seconds: float, kind: str | None = None) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status >= 400:
            self.errors.labels(kind or str(status)).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)
