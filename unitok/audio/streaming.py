"""Long audio and streaming: chunked and windowed encode/decode, block-wise resampling, and the
frame-by-frame :class:`StreamDecoder`.

Causal models (``causal=True``, the default): every layer is causal, so the encoder runs over
consecutive chunks carrying its state and gives the codes of a one-shot encode; the decoder does
the same frame by frame. Both match the one-shot result up to float rounding (convolutions over
different lengths may round the last bit differently; a code can then flip only where two codes
are within that rounding of each other). The iSTFT decoder's windows reach ``n_fft / hop - 1``
frames past a sample (3 frames, 40 ms, for the config's default 4-hop window; 1 frame, 13 ms,
for the bundled model's 2-hop window), so a stream holds a sample back until those frames are in
(``StreamDecoder.latency_frames``), and the end of a signal is decoded as if zero latents
followed it.

Non-causal models encode long inputs in windows with an overlap of the encoder's receptive field
on each side; codes match a one-shot encode except where the LSTM's state, reset per window,
changes a decision near the start of a window. They decode in windows the same way.

The functions here take the :class:`~unitok.audio.AudioTokenizer` and use its parts
(``encoder``, ``quantizer``, ``decoder``) and its runtime ``chunk_samples``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn.utils import parametrize

from ..errors import ConfigError

if TYPE_CHECKING:
    from .model import AudioTokenizer


def pad_to_hop(wav: torch.Tensor, hop: int) -> torch.Tensor:
    """wav: [B, 1, N] -> [B, 1, ceil(N / hop) * hop], zeros appended."""
    extra = -wav.shape[-1] % hop
    return torch.nn.functional.pad(wav, (0, extra)) if extra else wav


def encode_chunked(model: AudioTokenizer, wav: torch.Tensor, n: int) -> torch.Tensor:
    """wav: [B, 1, N] (N a multiple of the hop) -> codes [B, n, N / hop], ``chunk_samples`` at a
    time: streamed through a causal encoder, in overlapping windows through a non-causal one."""
    if model.cfg.causal:
        state: dict = {}
        return torch.cat([model.quantizer.encode(model.encoder.stream(c, state), n)
                          for c in wav.split(model.chunk_samples, -1)], -1)
    hop, step = model.hop, model.chunk_samples
    ctx = -(-model.encoder.context() // hop) * hop
    out = []
    for s in range(0, wav.shape[-1], step):
        a, b = max(0, s - ctx), min(wav.shape[-1], s + step + ctx)
        codes = model.quantizer.encode(model.encoder(wav[..., a:b]), n)
        f0 = (s - a) // hop
        out.append(codes[..., f0:f0 + min(step, wav.shape[-1] - s) // hop])
    return torch.cat(out, -1)


def decode_chunked(model: AudioTokenizer, codes: torch.Tensor) -> torch.Tensor:
    """codes: [B, n, T] -> wav [B, 1, T * hop] (unclamped), ``chunk_samples / hop`` frames at a
    time: streamed through a causal decoder, in overlapping windows through a non-causal one."""
    T, hop = codes.shape[-1], model.hop
    chunk = model.chunk_samples // hop
    if model.cfg.causal:
        state: dict = {}
        parts = []
        for s, c in zip(range(0, T, chunk), codes.split(chunk, -1)):
            parts.append(model.decoder.stream(model.quantizer.decode(c), state))
            model.report_progress(min(T, s + chunk), T, "frame")
        return torch.cat(parts + [model.decoder.flush(state, codes.shape[0])], -1)
    ctx = model.decoder.context_frames() + 1
    parts = []
    for s in range(0, T, chunk):
        a, b = max(0, s - ctx), min(T, s + chunk + ctx)
        y = model.decoder(model.quantizer.decode(codes[..., a:b]))
        parts.append(y[..., (s - a) * hop:(s - a + min(chunk, T - s)) * hop])
        model.report_progress(min(T, s + chunk), T, "frame")
    return torch.cat(parts, -1)


@torch.no_grad()
def encode_blocks(model: AudioTokenizer, blocks: Iterator[torch.Tensor], n: int, total: int | None = None) -> torch.Tensor:
    """Mono blocks at the model's rate ([m] each, any sizes) -> codes [1, n, T]. A causal model
    streams them (bounded memory); a non-causal one gathers the signal and encodes it in windows.
    ``total``: the frames to expect, for ``model.report_progress``."""
    if not model.cfg.causal:
        wav = torch.cat(list(blocks))[None, None]
        return model.encode(wav, n)
    hop, state, out = model.hop, {}, []
    pending = torch.zeros(0)
    with parametrize.cached():
        for block in blocks:
            pending = torch.cat([pending, block.float()])
            usable = pending.shape[0] // hop * hop
            if usable >= model.chunk_samples:
                x = pending[:usable].to(model.device)[None, None]
                out.append(model.quantizer.encode(model.encoder.stream(x, state), n))
                pending = pending[usable:]
                if total:
                    model.report_progress(min(total, sum(o.shape[-1] for o in out)), total, "frame")
        if pending.shape[0] or not out:
            x = pad_to_hop(pending.to(model.device)[None, None], hop)
            if x.shape[-1] == 0:
                x = x.new_zeros(1, 1, hop)
            out.append(model.quantizer.encode(model.encoder.stream(x, state), n))
    return torch.cat(out, -1)


def resample_blocks(samples: torch.Tensor, orig: int, new: int, block: int) -> Iterator[torch.Tensor]:
    """Downmix ``samples: [C, N]`` to mono and resample from ``orig`` to ``new`` Hz, yielding
    consecutive blocks ``[n]`` (about ``block`` input samples each) whose concatenation has
    ``ceil(N * new / orig)`` samples, as ``torchaudio.functional.resample`` gives in one shot.
    Each block is resampled with enough context on both sides that it matches the one-shot
    result up to float rounding; memory stays bounded by the block size."""
    import torchaudio.functional as AF

    N = samples.shape[-1]
    if orig == new:
        for s in range(0, N, block):
            yield samples[:, s:s + block].mean(0)
        return
    g = math.gcd(orig, new)
    o, n = orig // g, new // g
    width = math.ceil(6 * o / (0.99 * min(o, n)))          # torchaudio's filter half-width (default options)
    ctx = o * math.ceil((width + 2) / o)
    block = o * max(1, block // o)
    total = -(-N * n // o)
    for s in range(0, N, block):
        a, b = max(0, s - ctx), min(N, s + block + ctx)
        y = AF.resample(samples[:, a:b].mean(0), orig, new)
        off = (s - a) // o * n
        start = s // o * n
        yield y[off:off + min(block // o * n, total - start)]


class StreamDecoder:
    """Decode codes as a generating model emits them, one or more frames at a time.

        dec = model.stream_decoder()
        for frame_codes in generated:        # [K, n] (or [B, K, n]) int, n >= 1 frames
            audio = dec.push(frame_codes)    # float32 [m] (or [B, 1, m]) in [-1, 1]: the samples now final
        audio = dec.flush()                  # the end of the sound: what was held back

    The concatenated outputs (pushes, then ``flush``) equal ``model.decode(all_codes)`` up to float
    rounding. Every decoder here is causal in the codes. The SEANet decoder needs nothing from the
    future: each push returns ``n * hop`` samples and ``flush`` returns none. The iSTFT decoder
    needs ``lookahead`` more frames before a sample is final (1 frame, 13 ms, for the bundled
    model). Its first pushes return that many frames' samples fewer (``latency_samples``: fewer than
    a whole frame when the latent frames are coarser than its STFT frames, as in a 12.5 Hz codec),
    and ``flush`` returns them. ``latency_frames`` says how many frames. Only the last few frames' activations are kept, so memory
    does not grow with the length.
    """

    def __init__(self, model: AudioTokenizer):
        if not model.cfg.causal:
            raise ConfigError("streaming decoding needs a causal model (config causal: true); decode a "
                              "non-causal model's codes with model.decode")
        self.model = model
        self.state: dict = {}
        self.frames = 0
        self._batch: int | None = None       # items in the stream; None for one unbatched item

    @property
    def latency_frames(self) -> int:
        """Frames a sample waits for after its own frame has been pushed."""
        return self.model.decoder.lookahead

    @property
    def latency_samples(self) -> int:
        """Samples a stream holds back until later frames (or ``flush``) arrive."""
        return self.model.decoder.held_samples

    def reset(self) -> None:
        self.state.clear()
        self.frames = 0
        self._batch = None

    @torch.no_grad()
    def push(self, codes) -> torch.Tensor:
        """codes: [K', n] or [B, K', n] int (K' <= K levels) -> the samples now final: [m] or
        [B, 1, m] with ``m = n * hop`` once the first ``latency_frames`` frames are in."""
        c = torch.as_tensor(np.asarray(codes) if not torch.is_tensor(codes) else codes)
        single = c.ndim == 2
        c = self.model.check_codes(c[None] if single else c)
        self._batch = None if single else c.shape[0]
        with parametrize.cached():
            z = self.model.quantizer.decode(c)
            y = self.model.decoder.stream(z, self.state).clamp(-1, 1)
        self.frames += c.shape[-1]
        return y[0, 0] if single else y

    @torch.no_grad()
    def flush(self) -> torch.Tensor:
        """End the stream: the samples still held back ([m] or [B, 1, m]); then ``reset``."""
        with parametrize.cached():
            y = self.model.decoder.flush(self.state, self._batch or 1).clamp(-1, 1)
        batch = self._batch
        self.reset()
        return y if batch else y[0, 0]
