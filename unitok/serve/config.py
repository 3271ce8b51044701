"""``ServeConfig``: everything ``unitok serve`` is started with (no FastAPI import here, so the
client and the CLI's help stay light)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError


@dataclass(frozen=True)
class ServeConfig:
    """Args:
        suite: the suite folder each worker loads (``None``: the bundled suite).
        host, port: where to listen; 127.0.0.1 unless told otherwise (port 0: any free port).
        workers: worker processes, each holding the models once.
        device: ``"cpu"`` or ``"cuda"`` (worker ``i`` takes GPU ``i % count``) or ``"cuda:N"``.
        threads: torch threads per worker (1 keeps ids independent of the worker count, as in
            ``unitok tokenize``).
        max_batch: most requests of one kind a worker takes at once.
        max_wait_ms: how long the oldest request of a kind waits for others to fill its batch.
        max_queue: requests waiting for a worker, all kinds together; beyond it, 429.
        max_streams: concurrent streamed audio decodes; beyond it, 429.
        max_body_bytes: the largest request body; beyond it, 413.
        limits: ``unitok.media.MediaLimits`` fields that differ from the defaults.
        plugins: modules every worker imports first (tokenizer types registered outside unitok).
        loader: the suite loader, ``module.function`` (as ``unitok tokenize``'s).
    """

    suite: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    device: str = "cpu"
    threads: int = 1
    max_batch: int = 8
    max_wait_ms: float = 5.0
    max_queue: int = 256
    max_streams: int = 16
    max_body_bytes: int = 64 * 1024 * 1024
    limits: dict = field(default_factory=dict)
    plugins: tuple = ()
    loader: str = "unitok.load"

    def __post_init__(self):
        for name in ("workers", "threads", "max_batch", "max_queue", "max_streams", "max_body_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"serve: {name} must be a positive integer, got {value!r}")
        if not self.max_wait_ms >= 0:
            raise ConfigError(f"serve: max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        self.media_limits()   # a misspelt limit fails here, not in every worker

    def media_limits(self):
        from ..media import MediaLimits

        try:
            return MediaLimits(**self.limits)
        except TypeError as e:
            raise ConfigError(f"serve: limits: {e}; the fields are those of unitok.media.MediaLimits") from None
