"""``Audio``: the sound value type, reading the first audio stream of any file (also the sound track
of a video, through ``_AudioCollector`` and ``_check_audio_stream``), truncation checks for WAV and
FLAC, and writing (wav, flac, mp3, ogg/opus, m4a; ``_AudioEncoder`` also writes video sound
tracks)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from ..errors import MediaError
from ._av import av, lib_errors
from .convert import _as_tensor
from .inputs import (_USE, Source, _decoder_of, _Demuxer, _first_audio_stream, _holds,
                     _Input, _open_container, _resolve, _stream_seconds, _why)
from .limits import (DEFAULT_LIMITS, MediaLimits, _check_audio_format, _check_decoded_bytes,
                     _check_seconds)
from .output import _atomic_target, _output_path


_INT_SCALE = {"s16": 2.0**15, "s32": 2.0**31, "s64": 2.0**63}


def _audio_frame_to_float(frame: av.AudioFrame) -> np.ndarray:
    """A decoded audio frame -> ``[C, n]`` float32 (not yet clipped)."""
    channels = frame.layout.nb_channels
    fmt = frame.format
    x = frame.to_ndarray()
    if not fmt.is_planar:  # interleaved: [1, n * C] -> [C, n]
        x = x.reshape(-1, channels).T
    base = fmt.packed.name
    if base in ("flt", "dbl"):
        return x.astype(np.float32, copy=False)
    if base == "u8":
        return (x.astype(np.float32) - 128.0) / 128.0
    return x.astype(np.float32) / np.float32(_INT_SCALE[base])


class _AudioCollector:
    """Gathers decoded audio frames under the limits; ``build()`` returns an ``Audio``."""

    def __init__(self, name: str, limits: MediaLimits):
        self.name, self.limits = name, limits
        self.rate = self.channels = None
        self.chunks: list[np.ndarray] = []
        self.count = 0

    def add(self, frame: av.AudioFrame) -> None:
        rate, channels = frame.sample_rate, frame.layout.nb_channels
        if self.rate is None:
            _check_audio_format(rate, channels, self.limits, self.name)
            self.rate, self.channels = rate, channels
        elif (rate, channels) != (self.rate, self.channels):
            raise MediaError(f"the audio changes format mid-stream ({self.channels} ch @ {self.rate} Hz "
                             f"-> {channels} ch @ {rate} Hz), which is not supported", self.name)
        x = _audio_frame_to_float(frame)
        if not np.isfinite(x).all():
            raise MediaError("audio contains NaN or infinite samples", self.name)
        self.count += x.shape[1]
        _check_seconds(self.count / rate, self.limits, self.name, "audio")
        _check_decoded_bytes(4 * channels * self.count, self.limits, self.name, "audio")
        self.chunks.append(x)

    def build(self) -> "Audio":
        if self.count == 0:
            raise MediaError("the audio stream holds no samples", self.name)
        samples = np.concatenate(self.chunks, axis=1) if len(self.chunks) > 1 else self.chunks[0]
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        # Lossy decoders overshoot full scale a little and float files may exceed it: clip to the
        # [-1, 1] contract instead of rejecting otherwise good audio.
        np.clip(samples, -1.0, 1.0, out=samples)
        self.chunks = []
        return Audio(torch.from_numpy(samples), int(self.rate))


def _check_audio_stream(stream, container, limits: MediaLimits, name: str) -> None:
    """Refuse from the declared format and duration, before decoding anything."""
    cc = _decoder_of(stream, name)
    rate, channels = cc.sample_rate or 0, cc.channels or 0
    if rate <= 0:
        raise MediaError(f"audio declares an invalid sample rate ({rate} Hz)", name)
    _check_audio_format(rate, channels or 1, limits, name)
    seconds = _stream_seconds(stream, container)
    _check_seconds(seconds, limits, name, "audio")
    _check_decoded_bytes(int(4 * max(channels, 1) * rate * seconds), limits, name, "audio")


def _read_audio(container, inp: _Input, limits: MediaLimits) -> "Audio":
    stream = _first_audio_stream(container)
    if stream is None:
        kind = _holds(container, inp.head())
        raise MediaError("no audio stream" + (f" ({_USE[kind]})" if kind else ""), inp.name)
    _check_audio_stream(stream, container, limits, inp.name)
    collector = _AudioCollector(inp.name, limits)
    try:
        for frame in _Demuxer(container, [stream], inp.name).frames():
            collector.add(frame)
    except MediaError:
        raise
    except lib_errors() as e:
        raise MediaError(f"corrupt or truncated audio ({_why(e)})", inp.name) from e
    audio = collector.build()
    _check_not_truncated(stream, audio.num_samples, audio.sample_rate, inp.name)
    _check_wav_not_truncated(inp)
    return audio


def _wav_data_chunk(head: bytes) -> tuple[int, int] | None:
    """(offset, declared size) of a RIFF/WAVE file's ``data`` chunk found in ``head``, else None."""
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return None
    order = "little" if head[:4] == b"RIFF" else "big"
    at = 12
    while at + 8 <= len(head):
        size = int.from_bytes(head[at + 4:at + 8], order)
        if head[at:at + 4] == b"data":
            return at + 8, size
        at += 8 + size + (size & 1)          # chunks are padded to an even length
    return None


def _check_wav_not_truncated(inp: _Input) -> None:
    """A WAV cut short decodes without any error (PCM has no framing), so compare the data
    chunk's declared size with the bytes the file holds. Streamed WAVs declare 0 or 0xFFFFFFFF
    (unknown) and cannot be checked."""
    found = _wav_data_chunk(inp.head(1 << 16))
    if found is None:
        return
    offset, declared = found
    if declared in (0, 0xFFFFFFFF):
        return
    held = inp.size - offset
    if held < declared:
        raise MediaError(f"truncated WAV: the header declares {declared} bytes of samples but the file "
                         f"holds {max(held, 0)}", inp.name)


def _check_not_truncated(stream, decoded_samples: int, rate: int, name: str) -> None:
    """FLAC headers state the exact sample count; a file that ends early decodes fewer samples
    without any decoder error, so compare. (Other formats' declared lengths are estimates.)"""
    if stream.codec_context.name != "flac" or not stream.duration or not stream.time_base:
        return
    declared = int(round(stream.duration * stream.time_base * rate))
    if decoded_samples < declared:
        raise MediaError(f"truncated audio: the header declares {declared} samples but only "
                         f"{decoded_samples} could be decoded", name)


# Which codec each audio extension is written with, and the container format.
_AUDIO_WRITERS = {
    ".wav": ("wav", None), ".flac": ("flac", "flac"), ".mp3": ("mp3", "libmp3lame"),
    # FFmpeg's own Vorbis encoder is experimental and stereo-only, so .ogg holds Opus.
    ".ogg": ("ogg", "libopus"), ".opus": ("opus", "libopus"), ".m4a": ("ipod", "aac"),
}
_PCM_CODECS = {"s16": "pcm_s16le", "s24": "pcm_s24le", "s32": "pcm_s32le", "f32": "pcm_f32le"}
_MAX_CODEC_CHANNELS = {"libmp3lame": 2, "libopus": 8, "aac": 8, "flac": 8}


class _AudioEncoder:
    """Adds an audio stream to an output container and feeds it ``Audio`` samples in chunks.

    Rates the codec cannot store are resampled (the only resampling in this module): to 48 kHz
    for Opus, else to the nearest higher supported rate.
    """

    def __init__(self, container, audio: "Audio", codec: str, name: str,
                 bit_rate: int | None = None, sample_format: str | None = None):
        self.container, self.audio, self.name = container, audio, name
        channels = audio.num_channels
        limit = _MAX_CODEC_CHANNELS.get(codec)
        if limit is not None and channels > limit:
            raise MediaError(f"{codec} stores at most {limit} channels, the audio has {channels}; "
                             f"use .wav, or downmix first", name)
        info = av.Codec(codec, "w")
        rate = audio.sample_rate
        if info.audio_rates and rate not in info.audio_rates:
            higher = [r for r in info.audio_rates if r >= rate]
            rate = 48000 if codec == "libopus" or not higher else min(higher)
        self.layout = av.AudioLayout(f"{channels}c").name
        self.stream = container.add_stream(codec, rate=rate, layout=self.layout)
        formats = [f.name for f in info.audio_formats or []]
        wanted = {"s16": ["s16"], "s24": ["s32"], "s32": ["s32"], "f32": ["flt"],
                  None: ["flt", "s16", "s32"]}[sample_format]
        candidates = [f for base in wanted for f in (base, base + "p") if f in formats]
        if not candidates:
            raise MediaError(f"{codec} cannot store {sample_format or 'float or 16/32-bit'} "
                             f"samples (it takes {', '.join(formats)})", name)
        self.format = candidates[0]
        self.stream.format = self.format
        if bit_rate is not None:
            self.stream.bit_rate = int(bit_rate)
        self.resampler = None
        if rate != audio.sample_rate:
            self.resampler = av.AudioResampler(format=self.format, layout=self.layout, rate=rate)
        self.pos = 0
        self.s24 = sample_format == "s24"

    def _frame(self, x: np.ndarray) -> av.AudioFrame:
        """``x: [C, n]`` float32 -> an AudioFrame in the encoder's sample format."""
        fmt = av.AudioFormat(self.format)
        base = fmt.packed.name
        if base == "flt":
            y = x
        elif base == "s16":
            y = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
        elif base == "s32" and self.s24:  # 24-bit data in the top bits of 32-bit words
            y = (np.clip(np.round(x.astype(np.float64) * 2.0**23), -2**23, 2**23 - 1)
                 .astype(np.int32) << 8)
        else:  # s32, the only other format __init__ picks
            y = np.clip(np.round(x.astype(np.float64) * 2.0**31), -2**31, 2**31 - 1).astype(np.int32)
        if not fmt.is_planar:
            y = y.T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y), format=self.format,
                                           layout=self.layout)
        frame.sample_rate = self.audio.sample_rate
        frame.pts = self.pos
        frame.time_base = Fraction(1, self.audio.sample_rate)
        return frame

    def _encode(self, frame: av.AudioFrame | None) -> None:
        frames = [frame] if self.resampler is None else self.resampler.resample(frame)
        for f in frames:
            self.container.mux(self.stream.encode(f))
        if frame is None and self.resampler is not None:
            self.container.mux(self.stream.encode(None))

    def write_until(self, stop: int) -> None:
        """Encode samples ``[pos, stop)``, in chunks that keep the converted copies small."""
        samples = self.audio.samples
        stop = min(stop, samples.shape[1])
        while self.pos < stop:
            end = min(stop, self.pos + 65536)
            self._encode(self._frame(samples[:, self.pos:end].cpu().numpy()))
            self.pos = end

    def finish(self) -> None:
        self.write_until(self.audio.num_samples)
        self._encode(None)


@dataclass(frozen=True, eq=False)
class Audio:
    """A sound.

    Attributes:
        samples: ``[C, N]`` float32 in [-1, 1] (channels first).
        sample_rate: samples per second per channel, in Hz.
    """

    samples: torch.Tensor
    sample_rate: int

    def __post_init__(self):
        s = self.samples
        if not isinstance(s, torch.Tensor):
            raise MediaError(f"Audio.samples must be a torch.Tensor, got {type(s).__name__}; "
                             f"use Audio.from_array for numpy arrays")
        if s.dtype != torch.float32:
            raise MediaError(f"Audio.samples must be float32, got {s.dtype}; use Audio.from_array")
        if s.ndim != 2 or s.shape[0] < 1 or s.shape[1] < 1:
            raise MediaError(f"Audio.samples must be [C, N] with C >= 1 and N >= 1, got shape "
                             f"{tuple(s.shape)}")
        if not torch.isfinite(s).all():
            raise MediaError("Audio.samples contain NaN or infinity")
        if s.min() < -1 or s.max() > 1:
            raise MediaError(f"Audio.samples must lie in [-1, 1], got [{s.min().item():.4g}, "
                             f"{s.max().item():.4g}]")
        rate = self.sample_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise MediaError(f"Audio.sample_rate must be a positive integer (Hz), got {rate!r}")
        object.__setattr__(self, "sample_rate", int(rate))

    @property
    def num_channels(self) -> int:
        return self.samples.shape[0]

    @property
    def num_samples(self) -> int:
        return self.samples.shape[1]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate

    def __repr__(self) -> str:
        return (f"Audio({self.num_channels} ch x {self.num_samples} samples @ {self.sample_rate} Hz, "
                f"{self.duration:.3f} s)")

    @classmethod
    def from_array(cls, x, sample_rate: int) -> "Audio":
        """Audio from a numpy array or tensor.

        Args:
            x: ``[N]`` (mono) or ``[C, N]`` (channels first). float in [-1, 1], or int16 / int32
                / uint8 PCM, scaled to [-1, 1].
            sample_rate: in Hz.
        """
        t, _ = _as_tensor(x, "Audio.from_array")
        if t.ndim == 1:
            t = t.unsqueeze(0)
        if t.ndim != 2:
            raise MediaError(f"Audio.from_array: expected [N] or [C, N], got shape {tuple(t.shape)}")
        if t.numel() == 0:
            raise MediaError(f"Audio.from_array: no samples (shape {tuple(t.shape)})")
        if t.shape[0] > t.shape[1]:
            raise MediaError(f"Audio.from_array: shape {tuple(t.shape)} looks like [N, C]; samples "
                             f"must be channels first [C, N] (pass x.T)")
        if t.dtype == torch.int16:
            t = t.to(torch.float32) / 32768.0
        elif t.dtype == torch.int32:
            t = (t.to(torch.float64) / 2.0**31).to(torch.float32)
        elif t.dtype == torch.uint8:
            t = (t.to(torch.float32) - 128.0) / 128.0
        elif t.is_floating_point():
            t = t.to(torch.float32)
        else:
            raise MediaError(f"Audio.from_array: dtype {t.dtype} is not supported; pass float in "
                             f"[-1, 1] or int16 / int32 / uint8 PCM")
        return cls(t.contiguous(), sample_rate)

    @classmethod
    def open(cls, path: Source, *, limits: MediaLimits | None = None) -> "Audio":
        """Read the first audio stream of a file: wav, flac, ogg (vorbis/opus), opus, mp3, m4a,
        or the sound track of a video.

        The native channel count and sample rate are kept (resampling is the tokenizer's job);
        Opus always decodes at 48 kHz. Samples beyond [-1, 1] (lossy overshoot, float files) are
        clipped; NaN or infinite samples are refused.
        """
        limits = limits or DEFAULT_LIMITS
        inp = _resolve(path, limits)
        with _open_container(inp, "an audio file") as container:
            return _read_audio(container, inp, limits)

    def save(self, path, bit_rate: int | None = None, *, sample_format: str | None = None) -> None:
        """Write the audio; the format follows the extension.

        - ``.wav``: PCM; ``sample_format`` "s16" (default), "s24", "s32" or "f32".
        - ``.flac``: lossless; ``sample_format`` "s16" (default) or "s24"; up to 8 channels.
        - ``.mp3``: up to 2 channels, ``bit_rate`` in bits/s (default 192k).
        - ``.ogg`` / ``.opus``: Opus (Ogg Opus), up to 8 channels. Opus stores 8/12/16/24/48 kHz;
          other rates are resampled to 48 kHz. Opus decoders always return 48 kHz.
        - ``.m4a``: AAC, up to 8 channels.

        Float samples are rounded to the nearest integer level for integer formats, so audio read
        from a 16-bit file and saved as 16-bit is bit-exact.
        """
        p, ext = _output_path(path, _AUDIO_WRITERS, "audio")
        fmt, codec = _AUDIO_WRITERS[ext]
        allowed = {".wav": ("s16", "s24", "s32", "f32"), ".flac": ("s16", "s24")}.get(ext, ())
        if sample_format is not None and sample_format not in allowed:
            raise MediaError(f"sample_format={sample_format!r} is not available for {ext}"
                             + (f"; use one of {allowed}" if allowed else ""), str(p))
        if ext in (".wav", ".flac"):
            sample_format = sample_format or "s16"
        if ext == ".wav":
            codec = _PCM_CODECS[sample_format]
        if bit_rate is None and codec == "libmp3lame":
            bit_rate = 192_000
        try:
            with _atomic_target(p) as tmp, av.open(str(tmp), "w", format=fmt) as container:
                encoder = _AudioEncoder(container, self, codec, str(p), bit_rate,
                                        sample_format if ext in (".wav", ".flac") else None)
                encoder.finish()
        except lib_errors() as e:
            if isinstance(e, MediaError):
                raise
            raise MediaError(f"cannot write audio as {ext} ({_why(e)})", str(p)) from e
