"""The tokenizers as a service: ``unitok serve`` (``pip install 'unitok[serve]'``).

- ``create_app(ServeConfig(...))``: the ASGI app (FastAPI): encode, decode, streamed audio decode,
  space, health and metrics, with per-kind dynamic batching over worker processes (``pool.py``);
  ``serve(cfg)`` runs it under uvicorn.
- ``Client(url)`` (also ``unitok.Client``): ``encode`` / ``decode`` returning the local API's
  objects, ``stream_audio``; standard library HTTP only.
- ``load_remote(url)``: a running service as the suite of a batch job (``unitok tokenize --remote``).
- ``ray_app.build_app(cfg, replicas=, gpus_per_replica=)``: the same service as a Ray Serve
  application, a pool of replicas per modality (``unitok serve --engine ray``; the [ray] extra).

The client side imports neither FastAPI nor torch; the app is imported when it is asked for.
"""

from __future__ import annotations

from .client import Client, MediaLimitError, ServiceError
from .config import ServeConfig

__all__ = ["Client", "ServiceError", "MediaLimitError", "ServeConfig", "create_app", "serve", "load_remote",
           "RemoteTokenizer"]


def __getattr__(name: str):
    if name in ("create_app", "serve"):   # FastAPI and uvicorn: the [serve] extra, only for the server
        from . import app

        return getattr(app, name)
    if name in ("load_remote", "RemoteTokenizer"):
        from . import remote

        return getattr(remote, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
