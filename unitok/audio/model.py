"""The audio tokenizer: a strided 1-D convolutional codec (the SEANet family, or its spectral
variant) with residual quantization and quantizer dropout, so one model serves several bitrates.

    Audio (any sample rate, any channels)
      -> downmix to mono, resample to ``sample_rate`` (24 kHz), in blocks (bounded memory)
      -> Encoder -> latent [B, D, T], one frame per ``hop = prod(ratios)`` samples (320: 75 Hz).
         Two kinds (config ``encoder``): "seanet": conv, then per ratio [residual units, strided
         conv (x2 channels)], LSTM, conv; "stft" (the bundled default): each hop's log-magnitude
         spectrum, then ConvNeXt blocks over the frames.
      -> ResidualQuantizer (``unitok.quantize``): K levels of codes per frame, [B, K, T]
      -> Decoder -> [B, 1, T * hop] -> crop. Two kinds (config ``decoder``):
         "seanet": the encoder's mirror image (sub-pixel upsampling, sample by sample);
         "istft" (the bundled default): ConvNeXt blocks over the frames, then each frame's
         log-magnitude and phase spectrum and an inverse STFT (Vocos's head). With every learned
         layer at the frame rate, the spectral pair is far cheaper to run and to train.

Bitrate = levels x frame rate x log2(codebook size): with 1024-code levels at 75 Hz, 2 levels
are 1.5 kbps, 4 are 3 kbps, 8 are 6 kbps. ``AudioTokenizer.n_levels`` (or ``set_bitrate``)
chooses how many levels ``encode`` emits; every sequence says in its header how many it carries.

Token header (shape tokens): ``levels`` (K of this sequence), ``sample_rate`` (of the input, Hz)
and the input length in samples split in two fields, ``samples_high`` and ``samples_low``
(``N = samples_high * 2**20 + samples_low``), so any length up to hours round-trips exactly. The
frame count follows: ``ceil(ceil(N * 24000 / sample_rate) / hop)``.

Long audio and streaming (``causal=True``, the default): every layer is causal, so the encoder
runs over consecutive chunks carrying its state and gives the codes of a one-shot encode; the
decoder does the same frame by frame (:meth:`AudioTokenizer.stream_decoder`). Both match the
one-shot result up to float rounding (convolutions over different lengths may round the last bit
differently; a code can then flip only where two codes are within that rounding of each other).
The iSTFT decoder's windows reach ``n_fft / hop - 1`` frames past a sample (3 frames, 40 ms, for
the config's default 4-hop window; 1 frame, 13 ms, for the bundled model's 2-hop window), so
a stream holds a sample back until those frames are in (``StreamDecoder.latency_frames``), and
the end of a signal is decoded as if zero latents followed it.
Non-causal models encode long inputs in windows with an overlap of the encoder's receptive field
on each side; codes match a one-shot encode except where the LSTM's state, reset per window,
changes a decision near the start of a window.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..checkpoint import register
from ..errors import ConfigError, MediaError, TokenSequenceError
from ..layout import CodecDepth, Delay
from ..media import DEFAULT_LIMITS, Audio
from ..modality import MediaTokenizer
from ..nn.audio import ELU, Conv1d, ConvNeXt1d, ISTFTHead, LogSpectrum, LSTM1d, ResUnit1d, Seq, Upsample1d
from ..quantize import ResidualQuantizer, ResidualQuantizerConfig
from ..space import MAX_DIM

LENGTH_BASE = MAX_DIM + 1          # samples_high * LENGTH_BASE + samples_low
MIN_RATE, MAX_RATE = 1000, 384_000  # accepted input sample rates (as MediaLimits)
LAYOUTS = ("codec_depth", "delay")
DECODERS = ("seanet", "istft")
ENCODERS = ("seanet", "stft")
MAX_DILATION = 1 << 16              # largest dilation of a residual unit's convolution


@dataclass
class AudioTokenizerConfig:
    sample_rate: int = 24_000                   # the model's rate; inputs are resampled to it
    channels: int = 16                          # width of the first conv; doubled at every downsampling
    ratios: tuple[int, ...] = (8, 5, 4, 2)      # decoder upsampling factors (the encoder uses them reversed)
    res_units: int = 1                          # residual units per resolution (dilations 1, base, base^2...)
    dilation_base: int = 2
    kernel: int = 7                             # first and last convs
    lstm: int = 1                               # LSTM layers at the bottleneck (0: none)
    causal: bool = True                         # causal convs: streaming and exact chunking
    quantizer: ResidualQuantizerConfig = field(default_factory=ResidualQuantizerConfig)
    layout: str = "codec_depth"                 # "codec_depth" (next-codec) or "delay" (MusicGen)
    encoder: str = "seanet"                     # "seanet" (strided convs) or "stft" (log spectra + ConvNeXt)
    encoder_dim: int = 256                      # stft: width of the ConvNeXt blocks over frames
    encoder_layers: int = 4                     # stft: ConvNeXt blocks
    decoder: str = "seanet"                     # "seanet" (the encoder's mirror) or "istft" (Vocos)
    decoder_dim: int = 256                      # istft: width of the ConvNeXt backbone over frames
    decoder_layers: int = 4                     # istft: ConvNeXt blocks
    n_fft: int = 0                              # stft/istft: window, a multiple of the hop (0: 4 hops)
    decoder_phase: str = "absolute"             # istft: predict each frame's phase, or its "increment"

    def __post_init__(self):
        if isinstance(self.quantizer, dict):
            from ..checkpoint import config_from_dict

            self.quantizer = config_from_dict(ResidualQuantizerConfig, self.quantizer, source="audio config: quantizer")
        if not MIN_RATE <= self.sample_rate <= MAX_RATE:
            raise ConfigError(f"audio config: sample_rate must be in {MIN_RATE}..{MAX_RATE} Hz, got {self.sample_rate}")
        if self.channels < 1 or not self.ratios or min(self.ratios) < 1:
            raise ConfigError("audio config: channels and every entry of ratios must be >= 1")
        if self.res_units < 0 or self.dilation_base < 1 or self.lstm < 0:
            raise ConfigError("audio config: res_units and lstm must be >= 0, dilation_base >= 1")
        if self.res_units > 1 and (self.res_units - 1) * math.log2(self.dilation_base) > math.log2(MAX_DILATION):
            # the convolutions pad by the dilation: a damaged config must not make every encode
            # allocate gigabytes of padding
            raise ConfigError(f"audio config: dilation_base ** (res_units - 1) must be at most {MAX_DILATION}, got "
                              f"{self.dilation_base} ** {self.res_units - 1}")
        if self.kernel < 1 or (not self.causal and self.kernel % 2 == 0):
            raise ConfigError(f"audio config: kernel must be >= 1 (odd for a non-causal model), got {self.kernel}")
        if self.encoder not in ENCODERS:
            raise ConfigError(f"audio config: encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.encoder_dim < 1 or not 0 <= self.encoder_layers <= 64:
            raise ConfigError("audio config: encoder_dim must be >= 1 and encoder_layers in 0..64")
        if self.decoder_phase not in ("absolute", "increment"):
            raise ConfigError(f"audio config: decoder_phase must be 'absolute' or 'increment', got {self.decoder_phase!r}")
        if self.decoder not in DECODERS:
            raise ConfigError(f"audio config: decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.decoder_dim < 1 or not 0 <= self.decoder_layers <= 64:
            raise ConfigError("audio config: decoder_dim must be >= 1 and decoder_layers in 0..64")
        if self.n_fft and (self.n_fft % self.hop or not self.hop <= self.n_fft <= 16 * self.hop):
            raise ConfigError(f"audio config: n_fft must be 0 or a multiple of the hop ({self.hop}) up to 16 hops, "
                              f"got {self.n_fft}")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"audio config: layout must be one of {LAYOUTS}, got {self.layout!r}")

    @property
    def hop(self) -> int:
        """Samples per frame."""
        return math.prod(self.ratios)


class Encoder(nn.Module):
    """wav [B, 1, N] (N a multiple of the hop) -> latent [B, D, N / hop]."""

    def __init__(self, cfg: AudioTokenizerConfig):
        super().__init__()
        c, causal = cfg.channels, cfg.causal
        layers: list[nn.Module] = [Conv1d(1, c, cfg.kernel, causal=causal)]
        for r in reversed(cfg.ratios):
            layers += [ResUnit1d(c, cfg.dilation_base ** j, causal=causal) for j in range(cfg.res_units)]
            layers += [ELU(), Conv1d(c, 2 * c, 2 * r, stride=r, causal=causal)]
            c *= 2
        if cfg.lstm:
            layers.append(LSTM1d(c, cfg.lstm))
        layers += [ELU(), Conv1d(c, cfg.quantizer.dim, cfg.kernel, causal=causal)]
        self.net = Seq(*layers)

    def context(self) -> int:
        """Input samples a latent frame sees beyond its own hop, both sides together (the convs'
        receptive field; the LSTM's memory is not bounded)."""
        total, scale = 0, 1
        for m in self.net.modules():
            if isinstance(m, Conv1d):
                total += m.padding * scale
                scale *= m.stride
        return total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        return self.net.stream(x, state)


class STFTEncoder(nn.Module):
    """wav [B, 1, N] -> latent [B, D, N / hop]: each hop's log-magnitude spectrum (an ``n_fft``
    window ending where the hop ends), then ConvNeXt blocks over the frames, the mirror of the
    iSTFT decoder. The STFT is a strided 1-D convolution with fixed Fourier kernels, so this is
    the SEANet encoder with its learned front end replaced by a fixed one and all its learned
    layers at the frame rate: an order of magnitude cheaper to run, and the spectral envelope
    the decoder must rebuild is there from the first step instead of learned in 16 channels."""

    def __init__(self, cfg: AudioTokenizerConfig):
        super().__init__()
        n_fft, dim, causal = cfg.n_fft or 4 * cfg.hop, cfg.encoder_dim, cfg.causal
        self.spectrum = LogSpectrum(n_fft, cfg.hop, causal)
        layers: list[nn.Module] = [Conv1d(n_fft // 2 + 1, dim, 1, causal=causal, norm=False)]
        layers += [ConvNeXt1d(dim, 3 * dim, causal=causal) for _ in range(cfg.encoder_layers)]
        self.backbone = Seq(*layers)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Conv1d(dim, cfg.quantizer.dim, 1)

    def context(self) -> int:
        """Input samples a latent frame sees beyond its own hop, both sides together."""
        frames = sum(c.padding for c in self.backbone.modules() if isinstance(c, Conv1d))
        return self.spectrum.padding + frames * self.spectrum.hop

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(h.transpose(1, 2)).transpose(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._head(self.backbone(self.spectrum(x)))

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        return self._head(self.backbone.stream(self.spectrum.stream(x, state), state))


class Decoder(nn.Module):
    """latent [B, D, T] -> wav [B, 1, T * hop] (about [-1, 1], unclamped)."""

    def __init__(self, cfg: AudioTokenizerConfig):
        super().__init__()
        causal = cfg.causal
        c = cfg.channels * 2 ** len(cfg.ratios)
        layers: list[nn.Module] = [Conv1d(cfg.quantizer.dim, c, cfg.kernel, causal=causal)]
        if cfg.lstm:
            layers.append(LSTM1d(c, cfg.lstm))
        for r in cfg.ratios:
            layers += [ELU(), Upsample1d(c, c // 2, r, causal=causal)]
            c //= 2
            layers += [ResUnit1d(c, cfg.dilation_base ** j, causal=causal) for j in range(cfg.res_units)]
        layers += [ELU(), Conv1d(c, 1, cfg.kernel, causal=causal)]
        self.net = Seq(*layers)

    def context_frames(self) -> int:
        """Latent frames an output sample sees beyond its own frame, both sides together."""
        total, samples_per_frame = 0.0, 1
        for layer in self.net:
            if isinstance(layer, Upsample1d):
                total += layer.conv.padding / samples_per_frame
                samples_per_frame *= layer.stride
            else:
                total += sum(c.padding for c in layer.modules() if isinstance(c, Conv1d)) / samples_per_frame
        return math.ceil(total)

    @property
    def last_layer(self) -> torch.Tensor:
        return self.net[-1].conv.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def stream(self, z: torch.Tensor, state: dict) -> torch.Tensor:
        return self.net.stream(z, state)

    def flush(self, state: dict, batch: int) -> torch.Tensor:
        """Samples still held back at the end of a stream: none (nothing waits for the future)."""
        return torch.zeros(batch, 1, 0, device=self.last_layer.device)


class ISTFTDecoder(nn.Module):
    """latent [B, D, T] -> wav [B, 1, T * hop]: a ConvNeXt backbone over the frames and an inverse
    STFT head (Vocos; WavTokenizer pairs it with a SEANet encoder). All the work happens at
    the frame rate, which makes it cheaper to run and much quicker to train than the upsampling
    decoder, and magnitudes and phases are predicted per frame rather than built sample by sample.

    A sample needs the frames whose windows cover it: its own and ``lookahead = n_fft / hop - 1``
    more (3 frames for a 4-hop window, 1 for the bundled 2-hop one). ``forward`` appends that many zero latents
    (the end of the signal); streaming holds back that many frames' samples until later frames
    arrive, and ``flush`` ends the stream as ``forward`` ends the signal."""

    def __init__(self, cfg: AudioTokenizerConfig):
        super().__init__()
        causal, dim = cfg.causal, cfg.decoder_dim
        layers: list[nn.Module] = [Conv1d(cfg.quantizer.dim, dim, cfg.kernel, causal=causal)]
        layers += [ConvNeXt1d(dim, 3 * dim, causal=causal) for _ in range(cfg.decoder_layers)]
        self.backbone = Seq(*layers)
        self.norm = nn.LayerNorm(dim)
        self.head = ISTFTHead(dim, cfg.n_fft or 4 * cfg.hop, cfg.hop, cfg.decoder_phase)
        self.lookahead = self.head.lookahead

    def context_frames(self) -> int:
        return sum(c.padding for c in self.backbone.modules() if isinstance(c, Conv1d)) + 2 * self.lookahead

    @property
    def last_layer(self) -> torch.Tensor:
        return self.head.proj.weight

    def _head_in(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(h.transpose(1, 2)).transpose(1, 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = torch.nn.functional.pad(z, (0, self.lookahead))
        return self.head(self._head_in(self.backbone(z)))

    def stream(self, z: torch.Tensor, state: dict) -> torch.Tensor:
        return self.head.stream(self._head_in(self.backbone.stream(z, state)), state)

    def flush(self, state: dict, batch: int) -> torch.Tensor:
        """The held-back samples at the end of a stream (``lookahead`` frames of them)."""
        device = self.head.window.device
        if self.head not in state or not self.lookahead:
            return torch.zeros(batch, 1, 0, device=device)
        return self.stream(torch.zeros(batch, self.backbone[0].conv.in_channels, self.lookahead, device=device), state)


def build_decoder(cfg: AudioTokenizerConfig) -> nn.Module:
    return ISTFTDecoder(cfg) if cfg.decoder == "istft" else Decoder(cfg)


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
    model). Its
    first pushes return that many frames' samples fewer, and ``flush`` returns them.
    ``latency_frames`` says how many. Only the last few frames' activations are kept, so memory
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
        return getattr(self.model.decoder, "lookahead", 0)

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
        c = self.model._check_codes(c[None] if single else c)
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


@register("audio.codec")
class AudioTokenizer(MediaTokenizer):
    """Audio <-> codes. See the module docstring; build with ``AudioTokenizer(cfg)`` or
    ``AudioTokenizer.from_pretrained(folder)``.

    Batched API at the model's rate: ``encode(wav: [B, 1, N]) -> codes [B, n_levels, T]`` with
    ``T = ceil(N / hop)``; ``decode(codes: [B, n, T]) -> wav [B, 1, T * hop]`` (or cropped to
    ``length``). Runtime settings (not part of the token format): ``n_levels`` (levels
    ``encode`` emits, default all), ``resample_to_input`` (``decode_item`` returns the input's
    rate and exact length instead of the model's rate), ``chunk_seconds`` (inputs longer than
    this are processed in chunks of this size).
    """

    modality = "audio"
    header_fields = ("levels", "sample_rate", "samples_high", "samples_low")
    config_class = AudioTokenizerConfig
    limits = DEFAULT_LIMITS   # the longest sound a decoded header may ask for (max_seconds)

    def __init__(self, cfg: AudioTokenizerConfig | None = None):
        super().__init__()
        cfg = AudioTokenizerConfig() if cfg is None else cfg
        self.cfg = cfg
        self.encoder = STFTEncoder(cfg) if cfg.encoder == "stft" else Encoder(cfg)
        self.quantizer = ResidualQuantizer(cfg.quantizer)
        self.decoder = build_decoder(cfg)
        self.n_levels = cfg.quantizer.levels
        self.resample_to_input = False
        self.chunk_seconds = 10.0

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

    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        codes = torch.as_tensor(codes)
        if codes.ndim != 3 or not 1 <= codes.shape[1] <= self.levels or codes.shape[-1] < 1:
            raise TokenSequenceError(f"audio codes must be [B, levels, frames] with 1..{self.levels} levels, got "
                                     f"shape {tuple(codes.shape)}")
        if codes.dtype.is_floating_point:
            raise TokenSequenceError(f"audio codes must be integers, got {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.quantizer.codebook_size):
            raise TokenSequenceError(f"audio codes must be in 0..{self.quantizer.codebook_size - 1}, got "
                                     f"{int(codes.min())}..{int(codes.max())}")
        return codes.to(self.device).long()

    # -- batched API -------------------------------------------------------------------------------

    def forward(self, wav: torch.Tensor):
        """Training pass. wav: [B, 1, N] (N a multiple of the hop) -> (reconstruction [B, 1, N],
        codes [B, K, N / hop] with -1 where quantizer dropout removed a level, aux loss [])."""
        z = self.encoder(wav)
        q, codes, aux = self.quantizer(z)
        return self.decoder(q), codes, aux

    def _pad(self, wav: torch.Tensor) -> torch.Tensor:
        extra = -wav.shape[-1] % self.hop
        return torch.nn.functional.pad(wav, (0, extra)) if extra else wav

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, n_levels: int | None = None) -> torch.Tensor:
        """wav: [B, 1, N] in [-1, 1] at ``sample_rate`` -> codes [B, n_levels, ceil(N / hop)] int64.

        Inputs longer than ``chunk_seconds`` are encoded chunk by chunk (see the module docstring
        for how the codes compare with a one-shot encode)."""
        n = self._levels_arg(n_levels)
        wav = self._pad(self._check_wav(wav))
        with parametrize.cached():
            if wav.shape[-1] <= self.chunk_samples:
                return self.quantizer.encode(self.encoder(wav), n)
            if self.cfg.causal:
                state: dict = {}
                return torch.cat([self.quantizer.encode(self.encoder.stream(c, state), n)
                                  for c in wav.split(self.chunk_samples, -1)], -1)
            return self._encode_windows(wav, n)

    def _encode_windows(self, wav: torch.Tensor, n: int) -> torch.Tensor:
        """Non-causal long input: windows of ``chunk_samples`` with the receptive field as overlap."""
        hop, step = self.hop, self.chunk_samples
        ctx = -(-self.encoder.context() // hop) * hop
        out = []
        for s in range(0, wav.shape[-1], step):
            a, b = max(0, s - ctx), min(wav.shape[-1], s + step + ctx)
            codes = self.quantizer.encode(self.encoder(wav[..., a:b]), n)
            f0 = (s - a) // hop
            out.append(codes[..., f0:f0 + min(step, wav.shape[-1] - s) // hop])
        return torch.cat(out, -1)

    @torch.no_grad()
    def decode(self, codes, length: int | None = None) -> torch.Tensor:
        """codes: [B, n, T] int (any n <= K levels) -> wav [B, 1, T * hop] in [-1, 1], cropped to
        ``length`` samples when given. Long inputs are decoded chunk by chunk."""
        codes = self._check_codes(codes)
        T = codes.shape[-1]
        chunk = self.chunk_samples // self.hop
        with parametrize.cached():
            if T <= chunk:
                wav = self.decoder(self.quantizer.decode(codes))
            elif self.cfg.causal:
                state: dict = {}
                parts = [self.decoder.stream(self.quantizer.decode(c), state) for c in codes.split(chunk, -1)]
                wav = torch.cat(parts + [self.decoder.flush(state, codes.shape[0])], -1)
            else:
                ctx = self.decoder.context_frames() + 1
                parts = []
                for s in range(0, T, chunk):
                    a, b = max(0, s - ctx), min(T, s + chunk + ctx)
                    y = self.decoder(self.quantizer.decode(codes[..., a:b]))
                    parts.append(y[..., (s - a) * self.hop:(s - a + min(chunk, T - s)) * self.hop])
                wav = torch.cat(parts, -1)
        wav = wav.clamp(-1, 1)
        return wav[..., :length] if length is not None else wav

    def stream_decoder(self) -> StreamDecoder:
        """A :class:`StreamDecoder` for decoding codes frame by frame as they are generated."""
        return StreamDecoder(self)

    # -- MediaTokenizer ----------------------------------------------------------------------------

    def model_length(self, header: dict[str, int]) -> int:
        """Samples at the model's rate that a header's input length resamples to."""
        n_in = header["samples_high"] * LENGTH_BASE + header["samples_low"]
        return -(-n_in * self.sample_rate // header["sample_rate"])

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
        n_in = header["samples_high"] * LENGTH_BASE + header["samples_low"]
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
            raise MediaError(f"audio lasts {item.duration:.0f} s, over the limit of {self.limits.max_seconds:g} s "
                             f"(MediaLimits.max_seconds)")
        n = self._levels_arg(None)
        N = item.num_samples
        header = {"levels": n, "sample_rate": item.sample_rate, "samples_high": N // LENGTH_BASE,
                  "samples_low": N % LENGTH_BASE}
        codes = self._encode_blocks(resample_blocks(item.samples, item.sample_rate, self.sample_rate,
                                                    self._input_block(item.sample_rate)), n)
        frames = self.frames(header)
        if codes.shape[-1] != frames:   # an invariant of resample_blocks and the padding
            raise AssertionError(f"encoded {codes.shape[-1]} frames, header implies {frames}")
        return header, codes[0].cpu().numpy()

    def _input_block(self, rate: int) -> int:
        return max(1, round(self.chunk_seconds * rate))

    @torch.no_grad()
    def _encode_blocks(self, blocks: Iterator[torch.Tensor], n: int) -> torch.Tensor:
        """Mono model-rate blocks -> codes [1, n, T]. Causal models stream (bounded memory);
        non-causal ones gather the signal and encode it in windows."""
        if not self.cfg.causal:
            wav = torch.cat(list(blocks))[None, None]
            return self.encode(wav, n)
        hop, state, out = self.hop, {}, []
        pending = torch.zeros(0)
        with parametrize.cached():
            for block in blocks:
                pending = torch.cat([pending, block.float()])
                usable = pending.shape[0] // hop * hop
                if usable >= self.chunk_samples:
                    x = pending[:usable].to(self.device)[None, None]
                    out.append(self.quantizer.encode(self.encoder.stream(x, state), n))
                    pending = pending[usable:]
            if pending.shape[0] or not out:
                x = self._pad(pending.to(self.device)[None, None])
                if x.shape[-1] == 0:
                    x = x.new_zeros(1, 1, hop)
                out.append(self.quantizer.encode(self.encoder.stream(x, state), n))
        return torch.cat(out, -1)

    def decode_item(self, header: dict[str, int], codes) -> Audio:
        """(header, codes [levels, T]) -> Audio at the model's rate (``ceil(N * rate / input
        rate)`` samples) or, with ``resample_to_input``, at the input's rate and length."""
        batch = torch.as_tensor(np.asarray(codes))[None]
        n_model = self.model_length(header)
        wav = self.decode(batch, n_model)[0]                               # [1, n_model]
        if self.resample_to_input and header["sample_rate"] != self.sample_rate:
            n_in = header["samples_high"] * LENGTH_BASE + header["samples_low"]
            wav = torch.cat(list(resample_blocks(wav.cpu(), self.sample_rate, header["sample_rate"],
                                                 self._input_block(self.sample_rate))))[None]
            wav = torch.nn.functional.pad(wav, (0, max(0, n_in - wav.shape[-1])))[..., :n_in]
            return Audio(wav.clamp(-1, 1).contiguous(), header["sample_rate"])
        return Audio(wav.cpu().contiguous(), self.sample_rate)
