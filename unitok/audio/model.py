"""The audio tokenizer: an encoder, a residual quantizer and a decoder, handed in as parts
(:mod:`unitok.audio.parts` builds them from the config), with quantizer dropout so one model
serves several bitrates.

    Audio (any sample rate, any channels)
      -> downmix to mono, resample to ``sample_rate`` (24 kHz), in blocks (bounded memory)
      -> encoder -> latent [B, D, T], one frame per ``hop = prod(ratios)`` samples (320: 75 Hz).
         Two designs (config ``encoder``): "seanet" (:mod:`unitok.audio.seanet`: strided convs,
         LSTM) or "stft" (:mod:`unitok.audio.spectral`, the bundled default: each hop's
         log-magnitude spectrum, then ConvNeXt blocks over the frames).
      -> ResidualQuantizer (``unitok.quantize``): K levels of codes per frame, [B, K, T]
      -> decoder -> [B, 1, T * hop] -> crop. Two designs (config ``decoder``): "seanet" (the
         encoder's mirror image, sample by sample) or "istft" (the bundled default: ConvNeXt
         blocks over the frames, then each frame's spectrum and an inverse STFT, Vocos's head).

Bitrate = levels x frame rate x log2(codebook size): with 1024-code levels at 75 Hz, 2 levels
are 1.5 kbps, 4 are 3 kbps, 8 are 6 kbps. ``AudioTokenizer.n_levels`` (or ``set_bitrate``)
chooses how many levels ``encode`` emits; every sequence says in its header how many it carries.

Token header (shape tokens): ``levels`` (K of this sequence), ``sample_rate`` (of the input, Hz)
and ``samples``, the input length in samples, written with 4 shape tokens (``header_digits``) so
any length up to hours round-trips exactly. The frame count follows:
``ceil(ceil(samples * rate / sample_rate) / hop)``.

Long inputs are encoded and decoded in chunks, and codes decode frame by frame as a model
generates them: see :mod:`unitok.audio.streaming`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..checkpoint import register
from ..errors import ConfigError, LimitError, MediaError, TokenSequenceError
from ..layout import MISSING, CodecDepth, Delay
from ..media import DEFAULT_LIMITS, Audio
from ..modality import MediaTokenizer
from ..quantize import ResidualQuantizer
from .config import MAX_RATE, MIN_RATE, AudioTokenizerConfig
from .parts import build_decoder, build_encoder, build_parts
from .streaming import StreamDecoder, decode_chunked, encode_blocks, encode_chunked, pad_to_hop, resample_blocks


@register("audio.codec")
class AudioTokenizer(MediaTokenizer):
    """Audio <-> codes, assembled from an ``encoder``, a ``quantizer`` and a ``decoder`` (see
    :mod:`unitok.audio.parts` for what each provides). Build with
    ``AudioTokenizer.from_config(cfg)`` (the parts ``cfg`` describes), ``AudioTokenizer(cfg,
    encoder=..., quantizer=..., decoder=...)`` (parts built elsewhere; any left out are built
    from ``cfg``) or ``AudioTokenizer.from_pretrained(folder)``. ``cfg`` must describe the parts:
    it is what ``save_pretrained`` writes, and what a checkpoint is rebuilt from.

    Batched API at the model's rate: ``encode(wav: [B, 1, N]) -> codes [B, n_levels, T]`` with
    ``T = ceil(N / hop)``; ``decode(codes: [B, n, T]) -> wav [B, 1, T * hop]`` (or cropped to
    ``length``). Runtime settings (not part of the token format): ``n_levels`` (levels
    ``encode`` emits, default all), ``resample_to_input`` (``decode_item`` returns the input's
    rate and exact length instead of the model's rate), ``chunk_seconds`` (inputs longer than
    this are processed in chunks of this size).
    """

    modality = "audio"
    header_fields = ("levels", "sample_rate", "samples")
    header_digits = {"samples": 4}    # a length in samples up to 1024**4 - 1 (hours at any rate)
    config_class = AudioTokenizerConfig
    limits = DEFAULT_LIMITS   # the longest sound a decoded header may ask for (max_seconds)

    def __init__(self, cfg: AudioTokenizerConfig | None = None, *, encoder: nn.Module | None = None,
                 quantizer: ResidualQuantizer | None = None, decoder: nn.Module | None = None):
        super().__init__()
        cfg = AudioTokenizerConfig() if cfg is None else cfg
        self.cfg = cfg
        # built in this order when left out, as build_parts does (seeded builds keep their weights)
        self.encoder = build_encoder(cfg) if encoder is None else encoder
        self.quantizer = ResidualQuantizer(cfg.quantizer) if quantizer is None else quantizer
        self.decoder = build_decoder(cfg) if decoder is None else decoder
        self._check_parts()
        self.n_levels = cfg.quantizer.levels
        self.resample_to_input = False
        self.chunk_seconds = 10.0

    @classmethod
    def from_config(cls, cfg: AudioTokenizerConfig) -> AudioTokenizer:
        """The tokenizer ``cfg`` describes, from :func:`unitok.audio.parts.build_parts`."""
        return cls(cfg, **build_parts(cfg)._asdict())

    def _check_parts(self) -> None:
        """Parts handed in must be the ones the config describes: the config is all a checkpoint
        keeps of them."""
        cfg = self.cfg
        want = {"dim": cfg.quantizer.dim, "hop": cfg.hop, "causal": cfg.causal}
        for name in ("encoder", "decoder"):
            part = getattr(self, name)
            got = {k: getattr(part, k, None) for k in want}
            if got != want:
                raise ConfigError(f"audio tokenizer: the {name} has {got}, the config describes {want}; build the "
                                  f"parts from the config (unitok.audio.parts.build_parts)")
        if len(self.quantizer.codebook_sizes) != cfg.quantizer.levels:
            raise ConfigError(f"audio tokenizer: the quantizer has {len(self.quantizer.codebook_sizes)} levels, the "
                              f"config describes {cfg.quantizer.levels}")

    # -- properties --------------------------------------------------------------------------------

    @property
    def codebook_sizes(self) -> list[int]:
        return self.quantizer.codebook_sizes

    @property
    def levels(self) -> int:
        """Most levels a sequence can carry (K)."""
        return self.cfg.quantizer.levels

    @property
    def hop(self) -> int:
        return self.cfg.hop

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.cfg.sample_rate / self.hop

    def bitrate(self, levels: int | None = None) -> float:
        """Bits per second carried by ``levels`` levels (default ``n_levels``)."""
        levels = self.n_levels if levels is None else levels
        return levels * self.frame_rate * math.log2(self.quantizer.codebook_size)

    @property
    def bitrates(self) -> dict[int, float]:
        """Levels -> kbps for every level count this model serves."""
        return {k: self.bitrate(k) / 1000 for k in range(1, self.levels + 1)}

    def set_bitrate(self, kbps: float) -> int:
        """Use the most levels whose bitrate is at most ``kbps``; returns that level count."""
        fits = [k for k, r in self.bitrates.items() if r <= kbps + 1e-9]
        if not fits:
            raise ConfigError(f"{kbps} kbps is below this model's lowest bitrate "
                              f"({self.bitrates[1]:.3g} kbps with one level); choose from "
                              f"{', '.join(f'{r:.3g}' for r in self.bitrates.values())} kbps")
        self.n_levels = max(fits)
        return self.n_levels

    @property
    def chunk_samples(self) -> int:
        return max(1, round(self.chunk_seconds * self.sample_rate / self.hop)) * self.hop

    # -- checks ------------------------------------------------------------------------------------

    def _levels_arg(self, n_levels: int | None) -> int:
        n = self.n_levels if n_levels is None else n_levels
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= self.levels:
            raise ConfigError(f"n_levels must be an integer in 1..{self.levels}, got {n!r} (set_bitrate picks it "
                              f"from a bitrate)")
        return int(n)

    def _check_wav(self, wav: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(wav) or wav.ndim != 3 or wav.shape[1] != 1 or wav.shape[-1] < 1:
            shape = tuple(wav.shape) if torch.is_tensor(wav) else type(wav).__name__
            raise MediaError(f"the audio tokenizer expects mono samples [B, 1, N] at {self.sample_rate} Hz, got "
                             f"{shape}; use encode_item(Audio) for other rates and channel counts")
        return wav.to(self.device, torch.float32)

    def check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, n, T] integers (n <= levels, each in the codebook) -> int64 on the model's
        device; anything else is a ``TokenSequenceError``."""
        codes = torch.as_tensor(codes)
        if codes.ndim != 3 or not 1 <= codes.shape[1] <= self.levels or codes.shape[-1] < 1:
            raise TokenSequenceError(f"audio codes must be [B, levels, frames] with 1..{self.levels} levels, got "
                                     f"shape {tuple(codes.shape)}")
        if codes.dtype.is_floating_point:
            raise TokenSequenceError(f"audio codes must be integers, got {codes.dtype}")
        if codes.numel() and (int(codes.min()) < MISSING or int(codes.max()) >= self.quantizer.codebook_size):
            raise TokenSequenceError(f"audio codes must be in 0..{self.quantizer.codebook_size - 1} ({MISSING}: missing), "
                                     f"got {int(codes.min())}..{int(codes.max())}")
        return codes.to(self.device).long()

    # -- batched API -------------------------------------------------------------------------------

    def forward(self, wav: torch.Tensor):
        """Training pass. wav: [B, 1, N] (N a multiple of the hop) -> (reconstruction [B, 1, N],
        codes [B, K, N / hop] with -1 where quantizer dropout removed a level, aux loss [])."""
        z = self.encoder(wav)
        q, codes, aux = self.quantizer(z)
        return self.decoder(q), codes, aux

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, n_levels: int | None = None) -> torch.Tensor:
        """wav: [B, 1, N] in [-1, 1] at ``sample_rate`` -> codes [B, n_levels, ceil(N / hop)] int64.

        Inputs longer than ``chunk_seconds`` are encoded chunk by chunk (see
        :mod:`unitok.audio.streaming` for how the codes compare with a one-shot encode)."""
        n = self._levels_arg(n_levels)
        wav = pad_to_hop(self._check_wav(wav), self.hop)
        with parametrize.cached():
            if wav.shape[-1] <= self.chunk_samples:
                return self.quantizer.encode(self.encoder(wav), n)
            return encode_chunked(self, wav, n)

    @torch.no_grad()
    def decode(self, codes, length: int | None = None) -> torch.Tensor:
        """codes: [B, n, T] int (any n <= K levels) -> wav [B, 1, T * hop] in [-1, 1], cropped to
        ``length`` samples when given. Long inputs are decoded chunk by chunk."""
        codes = self.check_codes(codes)
        with parametrize.cached():
            if codes.shape[-1] <= self.chunk_samples // self.hop:
                wav = self.decoder(self.quantizer.decode(codes))
            else:
                wav = decode_chunked(self, codes)
        wav = wav.clamp(-1, 1)
        return wav[..., :length] if length is not None else wav

    def stream_decoder(self) -> StreamDecoder:
        """A :class:`StreamDecoder` for decoding codes frame by frame as they are generated."""
        return StreamDecoder(self)

    # -- MediaTokenizer ----------------------------------------------------------------------------

    def model_length(self, header: dict[str, int]) -> int:
        """Samples at the model's rate that a header's input length resamples to."""
        return -(-header["samples"] * self.sample_rate // header["sample_rate"])

    def frames(self, header: dict[str, int]) -> int:
        return -(-self.model_length(header) // self.hop)

    def layout(self, header: dict[str, int]):
        cls = Delay if self.cfg.layout == "delay" else CodecDepth
        return cls(header["levels"], self.frames(header))

    def check_header(self, header: dict[str, int]) -> None:
        if not 1 <= header["levels"] <= self.levels:
            raise TokenSequenceError(f"audio header says {header['levels']} levels; this tokenizer has 1..{self.levels}")
        if not MIN_RATE <= header["sample_rate"] <= MAX_RATE:
            raise TokenSequenceError(f"audio header sample_rate {header['sample_rate']} Hz is outside "
                                     f"{MIN_RATE}..{MAX_RATE} Hz")
        n_in = header["samples"]
        if n_in < 1:
            raise TokenSequenceError("audio header length is 0 samples")
        if n_in / header["sample_rate"] > self.limits.max_seconds:
            raise TokenSequenceError(f"audio header asks for {n_in / header['sample_rate']:.0f} s, over the limit of "
                                     f"{self.limits.max_seconds:g} s (MediaLimits.max_seconds)")

    def encode_item(self, item) -> tuple[dict[str, int], object]:
        """Audio -> (header, codes [n_levels, T] int64 numpy)."""
        if not isinstance(item, Audio):
            raise MediaError(f"the audio tokenizer takes an Audio, got {type(item).__name__}")
        if not MIN_RATE <= item.sample_rate <= MAX_RATE:
            raise MediaError(f"sample rate {item.sample_rate} Hz is outside the supported {MIN_RATE}..{MAX_RATE} Hz")
        if item.duration > self.limits.max_seconds:   # what decode would refuse is not encoded either
            raise LimitError(f"audio lasts {item.duration:.0f} s, over the limit of {self.limits.max_seconds:g} s "
                             f"(MediaLimits.max_seconds)")
        n = self._levels_arg(None)
        header = {"levels": n, "sample_rate": item.sample_rate, "samples": item.num_samples}
        rate = item.sample_rate
        blocks = resample_blocks(item.samples, rate, self.sample_rate, self._input_block(rate))
        frames = self.frames(header)
        codes = encode_blocks(self, blocks, n, total=frames)
        if codes.shape[-1] != frames:   # an invariant of resample_blocks and the padding
            raise AssertionError(f"encoded {codes.shape[-1]} frames, header implies {frames}")
        return header, codes[0].cpu().numpy()

    def _input_block(self, rate: int) -> int:
        return max(1, round(self.chunk_seconds * rate))

    def decode_item(self, header: dict[str, int], codes) -> Audio:
        """(header, codes [levels, T]) -> Audio at the model's rate (``ceil(N * rate / input
        rate)`` samples) or, with ``resample_to_input``, at the input's rate and length."""
        batch = torch.as_tensor(np.asarray(codes))[None]
        n_model = self.model_length(header)
        wav = self.decode(batch, n_model)[0]                               # [1, n_model]
        silent = (batch[0] == MISSING).all(0)                              # [T]: frames with no code at all
        if silent.any():
            # lenient decoding of a truncated sequence: what the decoder makes of a zero latent is
            # a steady hum, not the absence of sound, so a frame with no code decodes as silence
            keep = (~silent).repeat_interleave(self.hop)[:wav.shape[-1]].to(wav.device, wav.dtype)
            wav = wav * keep
        if self.resample_to_input and header["sample_rate"] != self.sample_rate:
            n_in = header["samples"]
            wav = torch.cat(list(resample_blocks(wav.cpu(), self.sample_rate, header["sample_rate"],
                                                 self._input_block(self.sample_rate))))[None]
            wav = torch.nn.functional.pad(wav, (0, max(0, n_in - wav.shape[-1])))[..., :n_in]
            return Audio(wav.clamp(-1, 1).contiguous(), header["sample_rate"])
        return Audio(wav.cpu().contiguous(), self.sample_rate)
