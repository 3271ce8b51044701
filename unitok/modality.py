"""The contract a media tokenizer (image, video, audio) fulfils to plug into ``UniTokenizer``.

A media tokenizer is an ``nn.Module`` that:

- declares its ``modality`` and the integer ``header_fields`` written as shape tokens after the
  begin token (e.g. ``("height", "width")`` in pixels, so any size round-trips exactly); each takes
  ``DIM_DIGITS`` base-1024 digits (up to 1,048,575) unless ``header_digits`` gives it more (an
  audio length in samples: 4 digits);
- turns one item into ``(header, codes)`` and back (``encode_item`` / ``decode_item``);
- says how its codes are laid out for a given header (``layout(header)``, a ``unitok.layout``
  layout whose ``flatten`` accepts those codes);
- declares ``codebook_sizes`` (one per level), which fix its id ranges in the token space;
- registers its checkpoint type with ``unitok.checkpoint.register`` and is found by
  ``unitok.load`` in a suite folder (``<suite>/<modality>/config.json``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable, ClassVar

import torch
from torch import nn

from .checkpoint import Pretrained, id_config, state_fingerprint
from .errors import TokenSequenceError
from .layout import Layout
from .space import DIM_DIGITS


class MediaTokenizer(Pretrained, nn.Module):
    modality: ClassVar[str]
    header_fields: ClassVar[tuple[str, ...]]
    header_digits: ClassVar[dict[str, int]] = {}    # shape tokens of a wide field; others take DIM_DIGITS
    #: called as ``progress(done, total, unit)`` by the long loops of one item's encode and decode
    #: (video windows, audio chunks); set it on an instance to follow long work, e.g. with
    #: ``unitok.progress.ItemProgress``
    progress: Callable[[int, int, str], None] | None = None

    def report_progress(self, done: int, total: int, unit: str) -> None:
        if self.progress is not None:
            self.progress(done, total, unit)

    @classmethod
    def header_widths(cls) -> list[int]:
        """Shape tokens each of ``header_fields`` takes, in order."""
        return [cls.header_digits.get(f, DIM_DIGITS) for f in cls.header_fields]

    @property
    def codebook_sizes(self) -> list[int]:
        raise NotImplementedError

    def encode_item(self, item) -> tuple[dict[str, int], object]:
        """One media item -> ``(header, codes)``; ``codes`` is what ``layout(header).flatten`` takes."""
        raise NotImplementedError

    def decode_item(self, header: dict[str, int], codes) -> object:
        """Inverse of :meth:`encode_item` (up to the codec's loss)."""
        raise NotImplementedError

    def layout(self, header: dict[str, int]) -> Layout:
        raise NotImplementedError

    def check_header(self, header: dict[str, int]) -> None:
        """Raise ``TokenSequenceError`` (position filled in by the caller) if decoded shape values
        are impossible. The default refuses zeros; codecs add their own limits."""
        for name, value in header.items():
            if value < 1:
                raise TokenSequenceError(f"{self.modality} header field {name!r} is {value}, must be >= 1")

    @property
    def pixel_stride(self) -> int:
        """Pixels per latent position along a side (1 for a codec without a grid): what resize
        policies (``unitok.media.Preprocess``) round sizes to, so no token pays for padding."""
        return int(getattr(self, "downsample", 1))

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    @property
    def fingerprint(self) -> str:
        """sha256 of what decides this tokenizer's ids and decoded output: its checkpoint type,
        the id-relevant part of its config (:func:`unitok.checkpoint.id_config`: no training-only
        field, no field at its default) and a digest of its weights. Like
        ``TextTokenizer.fingerprint``, an attribute; computed on access (the weights may change)."""
        content = {"type": self.checkpoint_type, "config": id_config(self.cfg),
                   "weights": state_fingerprint(self.state_dict())}
        return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

