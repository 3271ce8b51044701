"""A tokenizer pool as a suite: ``unitok tokenize --remote URL`` (``TokenizeConfig(loader=
"unitok.serve.load_remote", suite=URL)``). ``RemoteTokenizer`` has the surface of ``UniTokenizer``
that the pipeline's workers use (``encode``, ``decode``, ``space``, ``media``, ``modalities``,
``limits``, ``max_tokens``, ``preprocess``, ``with_limits``), backed by a ``Client``. Files are still
read by the job's own workers, under the job's limits; the server encodes what they read."""

from __future__ import annotations

import copy
from dataclasses import fields

from ..errors import UnitokError
from ..media import DEFAULT_LIMITS, MediaLimits, Preprocess
from .client import Client


class _RemoteCodec:
    """Stands for one of the server's media tokenizers: it is there, and it is not changed from here."""

    def __init__(self, modality: str):
        self.modality = modality

    def set_bitrate(self, kbps: float) -> int:
        raise UnitokError(f"the {self.modality} tokenizer runs on the server: its bitrate is the server's; start the "
                          f"service with a suite saved at that bitrate instead of passing --bitrate with --remote")


class RemoteTokenizer:
    """``UniTokenizer``'s batch-job surface over a running ``unitok serve``."""

    def __init__(self, client: Client, *, limits: MediaLimits = DEFAULT_LIMITS, max_tokens: int = 1 << 24,
                 preprocess: Preprocess | None = None):
        self.client = client
        self.space = client.space
        media = [m for m in ("image", "video", "audio") if m in self._space_modalities()]
        self.media = {m: _RemoteCodec(m) for m in media}
        self.modalities = ["text", *media]
        self.limits, self.max_tokens = limits, max_tokens
        self.preprocess = preprocess or Preprocess()

    def __repr__(self) -> str:
        return f"RemoteTokenizer({self.client.url}; {', '.join(self.modalities)}; {len(self.space)} ids)"

    def _space_modalities(self) -> list[str]:
        import json

        return json.loads(self.client.request("GET", "/v1/space"))["modalities"]

    def with_limits(self, limits=None, *, max_tokens: int | None = None, preprocess: Preprocess | None = None):
        other = copy.copy(self)
        if limits is not None:
            other.limits = limits
        if max_tokens is not None:
            other.max_tokens = max_tokens
        if preprocess is not None:
            other.preprocess = preprocess
        return other

    def encode(self, x, *, bos: bool = False, eos: bool = False, allowed_special=()):
        policy = {f.name: getattr(self.preprocess, f.name) for f in fields(self.preprocess)
                  if getattr(self.preprocess, f.name) is not None}
        return self.client.encode(x, bos=bos, eos=eos, allowed_special=allowed_special, preprocess=policy or None)

    def decode(self, ids, *, strict: bool = True, fingerprint: str | None = None):
        return self.client.decode(ids, strict=strict, fingerprint=fingerprint)


def load_remote(url: str, *, device: str = "cpu") -> RemoteTokenizer:
    """The suite loader of ``unitok tokenize --remote URL``: ``url`` stands where a suite folder
    would; ``device`` is the server's business."""
    del device
    if not url:
        raise UnitokError("--remote needs the service's URL, e.g. http://127.0.0.1:8000")
    return RemoteTokenizer(Client(url))
