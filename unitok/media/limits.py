"""Limits on what reading a file may cost: ``MediaLimits`` and ``DEFAULT_LIMITS``, and the checks
of declared or decoded picture sizes, audio formats, durations and byte counts that every reader
runs before and while it decodes (a small file that declares a huge picture or an endless stream
fails fast)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError, LimitError, MediaError


@dataclass(frozen=True)
class MediaLimits:
    """Limits applied when reading files, so that decompression bombs fail fast.

    The defaults keep one decoded item well inside the memory of a 24 GB machine. Raise a limit
    explicitly for trusted, larger inputs: ``Video.open(p, limits=MediaLimits(max_frames=10**6))``.

    Attributes:
        max_file_bytes: largest accepted file (2 GiB).
        max_pixels: largest picture, ``H * W`` of one image or video frame (8192 * 8192).
        max_side: largest height or width (16384).
        max_frames: most video frames (100_000).
        max_seconds: longest audio or video (4 hours).
        max_channels: most audio channels (16).
        min_sample_rate / max_sample_rate: accepted audio sample rates (1 kHz .. 384 kHz).
        max_decoded_bytes: largest decoded tensor, ``T*3*H*W`` bytes of video or ``4*C*N`` bytes
            of audio (4 GiB). Decoding briefly holds about twice this.
    """

    max_file_bytes: int = 2 * 1024**3
    max_pixels: int = 8192 * 8192
    max_side: int = 16384
    max_frames: int = 100_000
    max_seconds: float = 4 * 3600.0
    max_channels: int = 16
    min_sample_rate: int = 1000
    max_sample_rate: int = 384_000
    max_decoded_bytes: int = 4 * 1024**3

    def __post_init__(self):
        for name in ("max_file_bytes", "max_pixels", "max_side", "max_frames", "max_seconds",
                     "max_channels", "min_sample_rate", "max_sample_rate", "max_decoded_bytes"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ConfigError(f"MediaLimits.{name} must be a positive number, got {value!r}")
        if self.min_sample_rate > self.max_sample_rate:
            raise ConfigError(f"MediaLimits.min_sample_rate ({self.min_sample_rate}) is above "
                              f"max_sample_rate ({self.max_sample_rate})")


DEFAULT_LIMITS = MediaLimits()


def _check_picture_size(width: int, height: int, limits: MediaLimits, name: str) -> None:
    if width <= 0 or height <= 0:
        raise MediaError(f"picture has an empty size {width}x{height}", name)
    if max(width, height) > limits.max_side:
        raise LimitError(f"picture is {width}x{height}, a side over the limit of {limits.max_side} "
                         f"pixels (MediaLimits.max_side)", name)
    if width * height > limits.max_pixels:
        raise LimitError(f"picture is {width}x{height} = {width * height} pixels, over the limit of "
                         f"{limits.max_pixels} (MediaLimits.max_pixels)", name)


def _check_audio_format(sample_rate: int, channels: int, limits: MediaLimits, name: str) -> None:
    if not limits.min_sample_rate <= sample_rate <= limits.max_sample_rate:
        raise LimitError(f"sample rate {sample_rate} Hz is outside the accepted range "
                         f"{limits.min_sample_rate}..{limits.max_sample_rate} Hz "
                         f"(MediaLimits.min_sample_rate / max_sample_rate)", name)
    if not 1 <= channels <= limits.max_channels:
        raise LimitError(f"audio has {channels} channels; accepted are 1..{limits.max_channels} "
                         f"(MediaLimits.max_channels)", name)


def _check_seconds(seconds: float, limits: MediaLimits, name: str, what: str) -> None:
    seconds = float(seconds)
    if seconds > limits.max_seconds:
        raise LimitError(f"{what} lasts {seconds:.1f} s, over the limit of {limits.max_seconds:g} s "
                         f"(MediaLimits.max_seconds)", name)


def _check_decoded_bytes(nbytes: int, limits: MediaLimits, name: str, what: str) -> None:
    if nbytes > limits.max_decoded_bytes:
        raise LimitError(f"decoded {what} needs {nbytes} bytes, over the limit of "
                         f"{limits.max_decoded_bytes} (MediaLimits.max_decoded_bytes)", name)
