"""Incremental decoding of generated ids: ids go in one at a time (checked by the same automaton as
``tok.constraint()``), parts come out as soon as they are defined.

    >>> dec = IncrementalDecoder(tok)
    >>> for t in generated_ids:
    ...     for u in dec.push(t):          # Update(modality, index, item, final)
    ...         show(u.item)
    >>> dec.close()                       # whatever is still pending

- text: one final ``str`` when its part ends (at ``<|sep|>``, a begin token, ``<|eos|>`` or ``close``);
- image with ``NextScale`` codes: a preview after each scale (the later scales ``MISSING``, which
  codecs decode as the partial residual sum), then the final image;
- video with ``FrameScale`` codes: a preview after each latent frame (later frames ``MISSING``);
- audio: with a codec that has ``stream_decoder()`` (causal), the new samples after every frame
  (``Audio`` chunks, ``final=False``), then the whole ``Audio`` from ``decode_item``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from ..layout import MISSING, FrameScale, NextScale
from .constraint import BODY, HEADER, Constraint, State


@dataclass
class Update:
    """A part, or a preview of one. ``index`` counts the parts of the document."""

    modality: str
    index: int
    item: object       # str, Image, Video, Audio (a chunk of new samples while streaming)
    final: bool


class IncrementalDecoder:
    """Ids in, parts out (see the module docstring). ``constraint``: the automaton that checks the
    ids (default ``tok.constraint()``); an id it does not allow raises ``TokenSequenceError``."""

    def __init__(self, tok, constraint: Constraint | None = None):
        self.tok = tok
        self.g = constraint if constraint is not None else tok.constraint()
        self.state: State = self.g.start()
        self.index = 0              # parts finished so far
        self.text: list[int] = []
        self.segment: _Segment | None = None

    def push(self, token_id: int) -> list[Update]:
        prev, t = self.state, int(token_id)
        self.state = s = self.g.advance(prev, t)
        out: list[Update] = []
        if 0 <= t < self.g.space.text_vocab_size and prev.phase not in (HEADER, BODY):
            self.text.append(t)
            return out
        out.extend(self._end_text())
        if prev.phase == HEADER and s.phase == BODY:
            self.segment = _Segment(self.tok, s.modality, s.values)
        elif prev.phase == BODY and prev.pos < prev.body.size:
            item = self.segment.add(prev.pos, t - int(prev.body.lo[prev.pos]), int(prev.body.stop[prev.pos]))
            out.extend(Update(s.modality, self.index, x, False) for x in item)
        elif prev.phase == BODY:   # the end token
            out.extend(Update(prev.modality, self.index, x, final) for x, final in self.segment.finish())
            self.segment = None
            self.index += 1
        return out

    def close(self) -> list[Update]:
        """The text still pending (a media segment left open is not decoded: use ``tok.decode``
        with ``strict=False`` for a cut-off sequence)."""
        return self._end_text()

    def _end_text(self) -> list[Update]:
        if not self.text:
            return []
        update = Update("text", self.index, self.tok.text.decode(self.text), True)
        self.text, self.index = [], self.index + 1
        return [update]


class _Segment:
    """One media body being filled in: a flat codes buffer in the layout's canonical order."""

    def __init__(self, tok, modality: str, values: tuple):
        self.codec = tok.media[modality]
        self.header = dict(zip(self.codec.header_fields, values))
        self.layout = self.codec.layout(self.header)
        self.index = self.layout._plan[2]    # body position -> place in the canonical buffer (-1: structural)
        self.buffer = np.full(self.layout.num_codes, MISSING, dtype=np.int64)
        self.stream = None
        self.pushed = 0                      # audio frames given to the stream decoder
        if modality == "audio" and hasattr(self.codec, "stream_decoder"):
            try:
                self.stream = self.codec.stream_decoder()
            except ConfigError:              # a non-causal codec: the whole sound at the end only
                self.stream = None

    def add(self, pos: int, code: int, group_stop: int) -> list:
        """Record the code at body position ``pos``; return the previews it completes."""
        i = int(self.index[pos])
        if i >= 0:
            self.buffer[i] = code
        if pos + 1 != group_stop:            # previews come at group ends only
            return []
        if self.stream is not None:
            return self._stream()
        last = pos + 1 == len(self.index)    # the final item comes with the end token
        if isinstance(self.layout, FrameScale):
            frame = self.layout._frame.num_codes + self.layout.eof
            return [self._decode()] if (pos + 1) % frame == 0 and not last else []
        return [self._decode()] if isinstance(self.layout, NextScale) and not last else []

    def _stream(self) -> list:
        from ..media import Audio
        K, T = self.layout.levels, self.layout.frames
        codes = self.buffer.reshape(K, T)
        ready = self.pushed
        while ready < T and (codes[:, ready] != MISSING).all():
            ready += 1
        if ready == self.pushed:
            return []
        chunk = self.stream.push(codes[:, self.pushed:ready])
        self.pushed = ready
        return [Audio(chunk.reshape(1, -1).float().cpu(), self.codec.sample_rate)] if chunk.numel() else []

    def _decode(self):
        with torch.no_grad():
            return self.codec.decode_item(self.header, self.layout.unpack(self.buffer.copy()))

    def finish(self) -> list[tuple[object, bool]]:
        # the whole item from decode_item, exactly what tok.decode gives (a stream's chunks are previews)
        return [(self._decode(), True)]
