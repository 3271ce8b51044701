"""Media value types (``Image``, ``Video``, ``Audio``) and all media file I/O.

This is the only module in unitok that reads or writes media files. Everything else receives the
value types below, whose tensors have fixed layouts:

- ``Image.pixels``: ``[C, H, W]`` uint8, ``C`` in {1, 3, 4} (grayscale, RGB, RGBA).
- ``Video.frames``: ``[T, 3, H, W]`` uint8 (always RGB), ``Video.fps`` a ``Fraction``, and an
  optional ``Video.audio``.
- ``Audio.samples``: ``[C, N]`` float32 in [-1, 1], ``Audio.sample_rate`` in Hz.

Still images are decoded with torchvision (png, jpeg, webp); everything else (gif, bmp, avif,
tiff, video, audio) goes through PyAV (FFmpeg). Every failure is a
:class:`~unitok.errors.MediaError` naming the file and the reason.

Untrusted files are read under :class:`MediaLimits`: sizes declared in headers are checked before
anything is decoded, and decoding stops as soon as a limit is crossed, so a small file that
declares a huge picture or an endless stream cannot exhaust memory.

Every ``open`` accepts a path or the file's bytes (``bytes``/``bytearray``/``memoryview``, e.g. a
member of a tar shard); errors then name the input ``<bytes>``.
"""

from __future__ import annotations

import io
import math
import os
import stat
import struct
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Union

import av
import numpy as np
import torch
import torchvision.io as tvio

from .errors import ConfigError, MediaError

__all__ = [
    "Image", "Video", "Audio", "MediaLimits", "DEFAULT_LIMITS", "open_media", "kind_of",
    "decoded_bytes", "check_document_bytes",
    "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "AUDIO_EXTENSIONS", "TEXT_EXTENSIONS",
]

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]

# Exceptions that PyAV, torchvision and the OS raise for bad input. They are turned into
# MediaError at the library boundary; anything else is a bug and is left to propagate.
_LIB_ERRORS = (av.error.FFmpegError, OSError, RuntimeError, ValueError, EOFError, UnicodeError)


# -- limits ---------------------------------------------------------------------------------------

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


def decoded_bytes(item: "Image | Video | Audio") -> int:
    """Bytes a decoded item holds in memory (pixels, frames and samples)."""
    if isinstance(item, Image):
        return item.pixels.numel()
    if isinstance(item, Video):
        return item.frames.numel() + (decoded_bytes(item.audio) if item.audio is not None else 0)
    if isinstance(item, Audio):
        return 4 * item.samples.numel()
    raise MediaError(f"expected an Image, Video or Audio, got {type(item).__name__}")


def check_document_bytes(total: int, item: "Image | Video | Audio", limits: MediaLimits, name: str) -> int:
    """``total`` plus the bytes of ``item``, refused once a document's media together go over
    ``limits.max_decoded_bytes`` (each file is checked alone while it is read; this bounds a
    document that lists many large files, or one file many times)."""
    total += decoded_bytes(item)
    if total > limits.max_decoded_bytes:
        raise MediaError(f"the document's media decode to {total} bytes together, over the limit of "
                         f"{limits.max_decoded_bytes} (MediaLimits.max_decoded_bytes)", name)
    return total


def _check_picture_size(width: int, height: int, limits: MediaLimits, name: str) -> None:
    if width <= 0 or height <= 0:
        raise MediaError(f"picture has an empty size {width}x{height}", name)
    if max(width, height) > limits.max_side:
        raise MediaError(f"picture is {width}x{height}, a side over the limit of {limits.max_side} "
                         f"pixels (MediaLimits.max_side)", name)
    if width * height > limits.max_pixels:
        raise MediaError(f"picture is {width}x{height} = {width * height} pixels, over the limit of "
                         f"{limits.max_pixels} (MediaLimits.max_pixels)", name)


def _check_audio_format(sample_rate: int, channels: int, limits: MediaLimits, name: str) -> None:
    if not limits.min_sample_rate <= sample_rate <= limits.max_sample_rate:
        raise MediaError(f"sample rate {sample_rate} Hz is outside the accepted range "
                         f"{limits.min_sample_rate}..{limits.max_sample_rate} Hz "
                         f"(MediaLimits.min_sample_rate / max_sample_rate)", name)
    if not 1 <= channels <= limits.max_channels:
        raise MediaError(f"audio has {channels} channels; accepted are 1..{limits.max_channels} "
                         f"(MediaLimits.max_channels)", name)


def _check_seconds(seconds: float, limits: MediaLimits, name: str, what: str) -> None:
    seconds = float(seconds)
    if seconds > limits.max_seconds:
        raise MediaError(f"{what} lasts {seconds:.1f} s, over the limit of {limits.max_seconds:g} s "
                         f"(MediaLimits.max_seconds)", name)


def _check_decoded_bytes(nbytes: int, limits: MediaLimits, name: str, what: str) -> None:
    if nbytes > limits.max_decoded_bytes:
        raise MediaError(f"decoded {what} needs {nbytes} bytes, over the limit of "
                         f"{limits.max_decoded_bytes} (MediaLimits.max_decoded_bytes)", name)


# -- inputs ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Input:
    """A checked input: a regular, non-empty file within the size limit, or in-memory bytes."""

    name: str  # what error messages call it
    path: Path | None
    data: bytes | None
    size: int

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except OSError as e:
            raise MediaError(f"cannot read the file ({e.strerror or e})", self.name) from e

    def head(self, n: int = 64) -> bytes:
        if self.data is not None:
            return self.data[:n]
        try:
            with open(self.path, "rb") as f:
                return f.read(n)
        except OSError as e:
            raise MediaError(f"cannot read the file ({e.strerror or e})", self.name) from e


def _resolve(source: Source, limits: MediaLimits) -> _Input:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = "<bytes>"
        size = len(data)
        path = None
    else:
        try:
            path = Path(os.fspath(source))
        except TypeError:
            raise MediaError(f"expected a file path or bytes, got {type(source).__name__}") from None
        name = str(path)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise MediaError("file not found", name) from None
        except OSError as e:
            raise MediaError(f"cannot access the file ({e.strerror or e})", name) from e
        except ValueError as e:  # a NUL byte in the name (possible in JSON manifests)
            raise MediaError(f"not a usable file name ({e})", repr(name)) from None
        if stat.S_ISDIR(st.st_mode):
            raise MediaError("is a directory, not a file", name)
        if not stat.S_ISREG(st.st_mode):
            raise MediaError("is not a regular file", name)
        size = st.st_size
        data = None
    if size == 0:
        raise MediaError("file is empty (0 bytes)", name)
    if size > limits.max_file_bytes:
        raise MediaError(f"file is {size} bytes, over the limit of {limits.max_file_bytes} "
                         f"(MediaLimits.max_file_bytes)", name)
    return _Input(name, path, data, size)


def _looks_like_text(head: bytes) -> bool:
    """True for content that is plainly text: no NUL bytes and almost only printable characters."""
    if not head or b"\x00" in head:
        return False
    printable = sum(1 for b in head if b >= 0x20 or b in b"\t\n\r\f")
    return printable >= 0.95 * len(head)


def _why(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


@contextmanager
def _open_container(inp: _Input, what: str) -> Iterator[av.container.InputContainer]:
    """Open ``inp`` with PyAV. Non-UTF-8 metadata is ignored: tags must never stop decoding."""
    try:
        target = str(inp.path) if inp.path is not None else io.BytesIO(inp.data)
        container = av.open(target, mode="r", metadata_errors="ignore")
    except _LIB_ERRORS as e:
        head = inp.head(4096)
        if _looks_like_text(head):
            raise MediaError(f"not {what}: the content looks like text", inp.name) from e
        raise MediaError(f"not {what}, or the file is corrupt or truncated ({_why(e)})", inp.name) from e
    try:
        yield container
    finally:
        container.close()


class _Demuxer:
    """Demuxes and decodes ``streams``, refusing damaged video packets.

    A file cut short mid-packet yields a last packet flagged corrupt, which decoders would
    silently conceal; ``end`` (byte offset just past the last packet) lets callers tell a file
    that stops early from one whose index simply declares more frames than it plays.
    """

    def __init__(self, container, streams, name: str):
        self.container, self.streams, self.name = container, streams, name
        self.end = 0

    def frames(self) -> Iterator[av.AudioFrame | av.VideoFrame]:
        for packet in self.container.demux(*self.streams):
            # Only for video: a short last packet of PCM audio is normal (streamed WAVs declare
            # no length), while a short video packet decodes to garbage.
            if packet.size and packet.is_corrupt and packet.stream.type == "video":
                raise MediaError(f"corrupt or truncated file (damaged packet at byte {packet.pos})",
                                 self.name)
            if packet.size and packet.pos is not None and packet.pos >= 0:
                self.end = max(self.end, packet.pos + packet.size)
            yield from packet.decode()


def _first_video_stream(container) -> av.video.stream.VideoStream | None:
    # Cover art in audio files is a one-picture "video" stream flagged attached_pic: not a video.
    for s in container.streams.video:
        if not s.disposition & av.stream.Disposition.attached_pic:
            return s
    return None


def _first_audio_stream(container) -> av.audio.stream.AudioStream | None:
    return container.streams.audio[0] if container.streams.audio else None


def _decoder_of(stream, name: str):
    """The stream's codec context. PyAV gives None when FFmpeg has no decoder for the codec the
    container names, which is what a damaged codec tag or an exotic codec looks like."""
    cc = stream.codec_context
    if cc is None:
        raise MediaError(f"no decoder for the {stream.type} stream (its codec is unknown: the file is corrupt "
                         f"or uses an unsupported codec)", name)
    return cc


# FFmpeg demuxers that hold one still picture (plus "gif", which may also be animated).
_STILL_DEMUXERS = ("image2", "webp", "apng", "ico", "alias_pix", "brender_pix")


def _holds(container, head: bytes) -> str | None:
    """What an opened file is: ``"image" | "video" | "audio"`` or None (nothing usable)."""
    fmt = container.format.name
    if _first_video_stream(container) is not None:
        still = fmt.endswith("_pipe") or fmt in _STILL_DEMUXERS or fmt == "gif"
        return "image" if still or _sniff_image(head) is not None else "video"
    return "audio" if container.streams.audio else None


_USE = {"image": "it is an image; use Image.open", "video": "it holds video; use Video.open",
        "audio": "it holds audio only; use Audio.open"}


def _stream_seconds(stream, container) -> float:
    """Declared duration of ``stream`` in seconds, 0.0 when the container does not say."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return 0.0


# -- still images: sniffing and header sizes ---------------------------------------------------------

def _sniff_image(head: bytes) -> str | None:
    """The still-image format of some leading bytes, or None. Extensions are never trusted."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:12] in (b"ftypavif", b"ftypavis"):  # AVIF: an ISO-BMFF file holding AV1 pictures
        return "avif"
    # "BM" alone is weak; also require a known DIB header size.
    if head[:2] == b"BM" and len(head) >= 18 and struct.unpack_from("<I", head, 14)[0] in (
            12, 40, 52, 56, 64, 108, 124):
        return "bmp"
    return None


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker == 0xDA:  # scan data before any frame header: malformed
            return None
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                return None
            height, width = struct.unpack_from(">HH", data, i + 5)
            return width, height
        i += 2 + struct.unpack_from(">H", data, i + 2)[0]
    return None


def _image_header_size(fmt: str, data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` as the file's header declares it, read without decoding anything."""
    try:
        if fmt == "png":
            if data[12:16] != b"IHDR":
                return None
            return struct.unpack_from(">II", data, 16)
        if fmt == "gif":
            return struct.unpack_from("<HH", data, 6)
        if fmt == "jpeg":
            return _jpeg_size(data)
        if fmt == "webp":
            chunk = data[12:16]
            if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
                w, h = struct.unpack_from("<HH", data, 26)
                return w & 0x3FFF, h & 0x3FFF
            if chunk == b"VP8L" and data[20] == 0x2F:
                bits = struct.unpack_from("<I", data, 21)[0]
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8X":
                return (1 + int.from_bytes(data[24:27], "little"),
                        1 + int.from_bytes(data[27:30], "little"))
            return None
        if fmt == "bmp":
            if struct.unpack_from("<I", data, 14)[0] == 12:  # OS/2 header: 16-bit sizes
                return struct.unpack_from("<HH", data, 18)
            w, h = struct.unpack_from("<ii", data, 18)
            return w, abs(h)  # negative height means top-down rows
    except (struct.error, IndexError):
        return None
    return None


# -- pixel conversions -------------------------------------------------------------------------------

def _composite(rgba: torch.Tensor, background: tuple[int, int, int]) -> torch.Tensor:
    """``rgba: [..., 4, H, W]`` uint8 -> ``[..., 3, H, W]`` uint8, alpha-blended over ``background``."""
    rgb = rgba[..., :3, :, :].to(torch.int32)
    alpha = rgba[..., 3:, :, :].to(torch.int32)
    bg = torch.tensor(background, dtype=torch.int32).view(3, 1, 1)
    out = (rgb * alpha + bg * (255 - alpha) + 127) // 255
    return out.to(torch.uint8)


def _frame_has_alpha(fmt: av.VideoFormat) -> bool:
    # Palettes (GIF) may carry transparency; decode them with alpha and check.
    return fmt.has_palette or any(c.is_alpha for c in fmt.components)


def _frame_is_gray(fmt: av.VideoFormat) -> bool:
    return not fmt.has_palette and sum(1 for c in fmt.components if not c.is_alpha) == 1


def _still_frame_to_pixels(frame: av.VideoFrame) -> torch.Tensor:
    """A decoded picture -> ``[C, H, W]`` uint8, keeping gray as 1 channel and real alpha as 4."""
    fmt = frame.format
    if _frame_has_alpha(fmt):
        hwc = frame.to_ndarray(format="rgba")
        if (hwc[..., 3] == 255).all():  # an alpha plane that is fully opaque carries nothing
            hwc = hwc[..., :3]
    elif _frame_is_gray(fmt):
        hwc = frame.to_ndarray(format="gray")[..., None]
    else:
        hwc = frame.to_ndarray(format="rgb24")
    return torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1)))


def _video_frame_to_rgb(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """A decoded frame -> ``[3, H, W]`` uint8 at the stream's first size (transparency on white)."""
    if frame.width != width or frame.height != height:
        # A mid-stream resolution change: scale to the first size so that all frames stack.
        frame = frame.reformat(width=width, height=height)
    if _frame_has_alpha(frame.format):
        rgba = torch.from_numpy(frame.to_ndarray(format="rgba")).permute(2, 0, 1)
        return _composite(rgba, (255, 255, 255)).numpy()
    return np.ascontiguousarray(frame.to_ndarray(format="rgb24").transpose(2, 0, 1))


def _display_rotation(frame: av.VideoFrame) -> int:
    """Quarter turns counterclockwise that the stream's display matrix asks for (phones store
    portrait video as landscape frames plus this matrix); 0 when absent or not a right angle."""
    try:
        degrees = frame.rotation
    except (AttributeError, ValueError):
        return 0
    quarter = round(degrees / 90)
    return quarter % 4 if abs(degrees - 90 * quarter) < 1 else 0


def _to_uint8(x: torch.Tensor, what: str) -> torch.Tensor:
    """Integer arrays with values 0..255, or float arrays in [0, 1] -> uint8."""
    if x.dtype == torch.uint8:
        return x
    if x.dtype == torch.bool or x.is_complex():
        raise MediaError(f"{what}: dtype {x.dtype} is not supported; pass uint8 or float in [0, 1]")
    if x.is_floating_point():
        if x.numel() and not torch.isfinite(x).all():
            raise MediaError(f"{what}: float pixels contain NaN or infinity")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise MediaError(f"{what}: float pixels must lie in [0, 1], got "
                             f"[{x.min().item():.4g}, {x.max().item():.4g}]")
        return (x.to(torch.float32) * 255).round_().to(torch.uint8)
    if x.numel() and (x.min() < 0 or x.max() > 255):
        raise MediaError(f"{what}: integer pixels must lie in 0..255 (dtype {x.dtype}), got "
                         f"{x.min().item()}..{x.max().item()}; convert 16-bit data first")
    return x.to(torch.uint8)


def _as_tensor(x, what: str) -> tuple[torch.Tensor, bool]:
    """``(tensor on CPU, came_from_numpy)``."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu(), False
    if isinstance(x, np.ndarray):
        if x.dtype == np.uint16:  # torch has limited uint16 support: widen before checking range
            x = x.astype(np.int32)
        try:
            return torch.from_numpy(np.ascontiguousarray(x)), True
        except TypeError as e:
            raise MediaError(f"{what}: unsupported numpy dtype {x.dtype}") from e
    raise MediaError(f"{what}: expected a numpy array or torch tensor, got {type(x).__name__}")


def _channels_first(x: torch.Tensor, channels_last: bool | None, from_numpy: bool,
                    what: str, allowed=(1, 3, 4)) -> torch.Tensor:
    """``[..., H, W, C]`` or ``[..., C, H, W]`` -> ``[..., C, H, W]``.

    When both readings are possible (e.g. a 3x3x3 array) and ``channels_last`` is None, numpy
    arrays are taken as channels-last and tensors as channels-first, their usual conventions.
    """
    first_ok, last_ok = x.shape[-3] in allowed, x.shape[-1] in allowed
    if channels_last is None:
        if first_ok and last_ok:
            channels_last = from_numpy
        elif first_ok or last_ok:
            channels_last = last_ok
        else:
            raise MediaError(f"{what}: cannot find the channel axis in shape {tuple(x.shape)}; "
                             f"expected {allowed} channels first or last")
    if channels_last:
        if not last_ok:
            raise MediaError(f"{what}: shape {tuple(x.shape)} has {x.shape[-1]} channels last, "
                             f"expected one of {allowed}")
        return x.movedim(-1, -3).contiguous()
    if not first_ok:
        raise MediaError(f"{what}: shape {tuple(x.shape)} has {x.shape[-3]} channels first, "
                         f"expected one of {allowed}")
    return x.contiguous()


def _as_fps(fps) -> Fraction:
    if isinstance(fps, bool):
        raise MediaError(f"fps must be a positive number, got {fps!r}")
    if isinstance(fps, (int, Fraction)):
        value = Fraction(fps)
    elif isinstance(fps, float):
        if not math.isfinite(fps):
            raise MediaError(f"fps must be a positive number, got {fps!r}")
        # 29.97002997... comes back as 30000/1001
        value = Fraction(fps).limit_denominator(10_000)
    else:
        try:
            value = Fraction(fps)
        except (TypeError, ValueError):
            raise MediaError(f"fps must be a positive number, got {fps!r}") from None
    if value <= 0:
        raise MediaError(f"fps must be a positive number, got {fps!r}")
    return value


# -- writing helpers -------------------------------------------------------------------------------

def _output_path(path, kinds: dict, what: str) -> tuple[Path, str]:
    """Check an output path; returns it and its lower-case extension (a key of ``kinds``)."""
    try:
        p = Path(os.fspath(path))
    except TypeError:
        raise MediaError(f"expected an output file path, got {type(path).__name__}") from None
    ext = p.suffix.lower()
    if ext not in kinds:
        raise MediaError(f"cannot write {what} as '{ext or p.name}'; use one of "
                         f"{', '.join(sorted(kinds))}", str(p))
    if p.is_dir():
        raise MediaError("is a directory, not a file", str(p))
    if not p.parent.is_dir():
        raise MediaError(f"the folder {p.parent} does not exist", str(p))
    return p, ext


@contextmanager
def _atomic_target(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path`` (same extension) that replaces it once writing succeeded,
    so a failed save never leaves a half-written file under the real name."""
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_bytes(path: Path, data: bytes) -> None:
    try:
        with _atomic_target(path) as tmp:
            tmp.write_bytes(data)
    except OSError as e:
        raise MediaError(f"cannot write the file ({e.strerror or e})", str(path)) from e


def _encode_picture(codec: str, hwc: np.ndarray, src_format: str, pix_fmt: str,
                    options: dict[str, str] | None = None) -> bytes:
    """Encode one ``[H, W, C]`` uint8 picture with a still-image codec; returns the file bytes."""
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height = hwc.shape[1], hwc.shape[0]
    ctx.pix_fmt = pix_fmt
    ctx.time_base = Fraction(1, 1)
    if options:
        ctx.options = options
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(hwc), format=src_format)
    frame = frame.reformat(format=pix_fmt)
    packets = ctx.encode(frame) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)


def _gif_palette_frames(frames_hwc: list[np.ndarray], fps: Fraction) -> list[av.VideoFrame]:
    """RGB pictures -> pal8 frames sharing one palette built from all of them.

    GIF holds 256 colours; FFmpeg's palettegen/paletteuse pick them from the content, which is far
    closer than a fixed 3-3-2 palette. Ordered (Bayer) dithering keeps frames from flickering.
    """
    h, w = frames_hwc[0].shape[:2]
    graph = av.filter.Graph()
    src = graph.add_buffer(width=w, height=h, format="rgb24", time_base=1 / fps)
    split = graph.add("split")
    palettegen = graph.add("palettegen")
    paletteuse = graph.add("paletteuse", "dither=bayer:bayer_scale=3")
    sink = graph.add("buffersink")
    src.link_to(split)
    split.link_to(paletteuse, 0, 0)
    split.link_to(palettegen, 1, 0)
    palettegen.link_to(paletteuse, 0, 1)
    paletteuse.link_to(sink)
    graph.configure()
    for i, hwc in enumerate(frames_hwc):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(hwc), format="rgb24")
        frame.pts = i
        frame.time_base = 1 / fps
        graph.vpush(frame)
    graph.vpush(None)  # palettegen emits the palette only at the end of the stream
    out = []
    while True:
        try:
            out.append(graph.vpull())
        except (av.error.BlockingIOError, av.error.EOFError):
            break
    return out


def _write_gif(target, frames_hwc: list[np.ndarray], fps: Fraction) -> None:
    """Write RGB ``[H, W, 3]`` pictures as a GIF to ``target`` (a path or a writable file)."""
    h, w = frames_hwc[0].shape[:2]
    with av.open(target, "w", format="gif") as container:
        stream = container.add_stream("gif", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "pal8"
        for i, frame in enumerate(_gif_palette_frames(frames_hwc, fps)):
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


# -- Image -----------------------------------------------------------------------------------------

_IMAGE_WRITERS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".gif": "gif",
                  ".bmp": "bmp"}


@dataclass(frozen=True, eq=False)
class Image:
    """A still picture.

    Attributes:
        pixels: ``[C, H, W]`` uint8; ``C`` is 1 (gray), 3 (RGB) or 4 (RGBA, straight alpha).
    """

    pixels: torch.Tensor

    def __post_init__(self):
        p = self.pixels
        if not isinstance(p, torch.Tensor):
            raise MediaError(f"Image.pixels must be a torch.Tensor, got {type(p).__name__}; "
                             f"use Image.from_array for numpy arrays")
        if p.dtype != torch.uint8:
            raise MediaError(f"Image.pixels must be uint8, got {p.dtype}; use Image.from_array "
                             f"to convert floats in [0, 1]")
        if p.ndim != 3 or p.shape[0] not in (1, 3, 4):
            raise MediaError(f"Image.pixels must be [C, H, W] with C in (1, 3, 4), got shape "
                             f"{tuple(p.shape)}")
        if p.shape[1] == 0 or p.shape[2] == 0:
            raise MediaError(f"Image has an empty size {p.shape[2]}x{p.shape[1]}")

    @property
    def channels(self) -> int:
        return self.pixels.shape[0]

    @property
    def height(self) -> int:
        return self.pixels.shape[1]

    @property
    def width(self) -> int:
        return self.pixels.shape[2]

    def __repr__(self) -> str:
        return f"Image({self.channels}x{self.height}x{self.width} uint8)"

    # -- constructors --

    @classmethod
    def from_array(cls, x, *, channels_last: bool | None = None) -> "Image":
        """An image from a numpy array or tensor.

        Args:
            x: ``[H, W]`` (gray), ``[H, W, C]`` or ``[C, H, W]`` with ``C`` in (1, 3, 4); uint8
                (or any integer dtype with values 0..255), or float in [0, 1].
            channels_last: where the channel axis is; by default it is inferred from the shape,
                and when both readings fit, numpy is taken as ``HWC`` and torch as ``CHW``.

        A uint8 input already in ``[C, H, W]`` layout shares memory with the result.
        """
        t, from_numpy = _as_tensor(x, "Image.from_array")
        if t.ndim == 2:
            t = t.unsqueeze(0)
        elif t.ndim == 3:
            t = _channels_first(t, channels_last, from_numpy, "Image.from_array")
        else:
            raise MediaError(f"Image.from_array: expected [H, W], [H, W, C] or [C, H, W], got shape "
                             f"{tuple(t.shape)}")
        return cls(_to_uint8(t, "Image.from_array"))

    @classmethod
    def open(cls, path: Source, *, limits: MediaLimits | None = None) -> "Image":
        """Read a still image: png, jpeg, webp, gif (first frame), bmp, avif, tiff, or any other
        single picture FFmpeg reads.

        The format comes from the content, not the extension. Gray images stay 1 channel and
        images with transparency keep it (4 channels); 16-bit images are reduced to 8 bits;
        JPEG EXIF orientation is applied. The size declared in the header is checked against
        ``limits`` before any pixel is decoded.
        """
        limits = limits or DEFAULT_LIMITS
        inp = _resolve(path, limits)
        data = inp.read()
        fmt = _sniff_image(data[:64])
        if fmt is None:
            if _looks_like_text(data[:4096]):
                raise MediaError("not an image: the content looks like text", inp.name)
            return cls(_decode_picture_av(inp, limits))
        if fmt == "avif":  # no torchvision decoder here; the container's size is checked instead
            return cls(_decode_picture_av(inp, limits))
        size = _image_header_size(fmt, data)
        if size is None:
            raise MediaError(f"corrupt or truncated {fmt} image: its header is unreadable", inp.name)
        _check_picture_size(*size, limits, inp.name)
        if fmt in ("gif", "bmp"):
            # torchvision has no bmp decoder and decodes *every* gif frame; PyAV stops at one.
            return cls(_decode_picture_av(inp, limits))
        try:
            pixels = tvio.decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                       mode=tvio.ImageReadMode.UNCHANGED,
                                       apply_exif_orientation=True)
        except _LIB_ERRORS as e:
            raise MediaError(f"corrupt or truncated {fmt} image ({_why(e)})", inp.name) from e
        if pixels.ndim == 4:  # an animated image: keep the first frame
            pixels = pixels[0]
        if fmt == "jpeg" and pixels.shape[0] == 4:  # CMYK: let the decoder convert to RGB
            pixels = tvio.decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                       mode=tvio.ImageReadMode.RGB, apply_exif_orientation=True)
        _check_picture_size(pixels.shape[2], pixels.shape[1], limits, inp.name)
        if pixels.dtype != torch.uint8:  # 16-bit png: scale 0..65535 to 0..255 with rounding
            pixels = ((pixels.to(torch.int32) * 255 + 32767) // 65535).to(torch.uint8)
        if pixels.shape[0] == 2:  # gray + alpha: unitok keeps alpha only with RGB
            pixels = torch.cat([pixels[:1].expand(3, -1, -1), pixels[1:]])
        return cls(pixels.contiguous())

    # -- conversions --

    def to_float(self) -> torch.Tensor:
        """``[C, H, W]`` float32 in [0, 1]."""
        return self.pixels.to(torch.float32) / 255.0

    def to_rgb(self, background: tuple[int, int, int] | None = (255, 255, 255)) -> "Image":
        """A 3-channel copy. Gray is repeated into R, G and B. RGBA is alpha-composited over
        ``background`` (white by default); with ``background=None`` alpha is simply dropped.
        An RGB image is returned as is."""
        c = self.channels
        if c == 3:
            return self
        if c == 1:
            return Image(self.pixels.expand(3, -1, -1).contiguous())
        if background is None:
            return Image(self.pixels[:3].contiguous())
        return Image(_composite(self.pixels, background))

    # -- writing --

    def save(self, path, *, quality: int | None = None, lossless: bool = False) -> None:
        """Write the image; the format follows the extension.

        - ``.png``: lossless, keeps gray / RGB / RGBA.
        - ``.jpg`` / ``.jpeg``: ``quality`` 1..100 (default 95); RGBA is composited on white.
        - ``.webp``: lossy with ``quality`` (default 90), or ``lossless=True``; keeps alpha.
        - ``.gif``: 256 colours chosen from the image; alpha composited on white.
        - ``.bmp``: lossless RGB / RGBA.
        """
        p, ext = _output_path(path, _IMAGE_WRITERS, "an image")
        fmt = _IMAGE_WRITERS[ext]
        if quality is not None and not (isinstance(quality, int) and 1 <= quality <= 100):
            raise MediaError(f"quality must be an integer in 1..100, got {quality!r}", str(p))
        if lossless and fmt != "webp":
            raise MediaError(f"lossless=True applies to .webp only ({ext} is "
                             f"{'always lossless' if fmt in ('png', 'bmp') else 'lossy'})", str(p))
        pixels = self.pixels.cpu()
        try:
            if fmt == "png":
                if self.channels == 4:  # torchvision's png encoder takes 1 or 3 channels only
                    data = _encode_picture("png", pixels.permute(1, 2, 0).numpy(), "rgba", "rgba")
                else:
                    data = tvio.encode_png(pixels.contiguous()).numpy().tobytes()
            elif fmt == "jpeg":
                rgb = pixels if self.channels == 1 else self.to_rgb().pixels.cpu()
                data = tvio.encode_jpeg(rgb.contiguous(), quality=quality or 95).numpy().tobytes()
            elif fmt == "webp":
                src = pixels if self.channels == 4 else self.to_rgb().pixels.cpu()
                src_fmt = "rgba" if self.channels == 4 else "rgb24"
                opts = {"lossless": "1"} if lossless else {"quality": str(quality or 90)}
                pix_fmt = "bgra" if lossless else ("yuva420p" if self.channels == 4 else "yuv420p")
                data = _encode_picture("libwebp", src.permute(1, 2, 0).numpy(), src_fmt, pix_fmt, opts)
            elif fmt == "bmp":
                if self.channels == 4:
                    data = _encode_picture("bmp", pixels.permute(1, 2, 0).numpy(), "rgba", "bgra")
                else:
                    rgb = self.to_rgb().pixels.cpu().permute(1, 2, 0).numpy()
                    data = _encode_picture("bmp", rgb, "rgb24", "bgr24")
            else:  # gif
                buf = io.BytesIO()
                _write_gif(buf, [self.to_rgb().pixels.cpu().permute(1, 2, 0).numpy()], Fraction(1))
                data = buf.getvalue()
        except _LIB_ERRORS as e:
            raise MediaError(f"cannot encode the image as {ext} ({_why(e)})", str(p)) from e
        _write_bytes(p, data)


def _decode_picture_av(inp: _Input, limits: MediaLimits) -> torch.Tensor:
    """First picture of an image file via PyAV -> ``[C, H, W]`` uint8."""
    with _open_container(inp, "an image") as container:
        kind = _holds(container, inp.head())
        if kind != "image":
            raise MediaError("not an image" + (f" ({_USE[kind]})" if kind else ""), inp.name)
        stream = _first_video_stream(container)
        cc = _decoder_of(stream, inp.name)
        if cc.width and cc.height:
            _check_picture_size(cc.width, cc.height, limits, inp.name)
        try:
            frame = next(container.decode(stream), None)
        except _LIB_ERRORS as e:
            raise MediaError(f"corrupt or truncated image ({_why(e)})", inp.name) from e
        if frame is None:
            raise MediaError("corrupt or truncated image: no picture could be decoded", inp.name)
        _check_picture_size(frame.width, frame.height, limits, inp.name)
        return _still_frame_to_pixels(frame)


# -- Audio -----------------------------------------------------------------------------------------

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
    except _LIB_ERRORS as e:
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
        except _LIB_ERRORS as e:
            if isinstance(e, MediaError):
                raise
            raise MediaError(f"cannot write audio as {ext} ({_why(e)})", str(p)) from e


# -- Video -----------------------------------------------------------------------------------------

def _stream_fps(stream) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return Fraction(rate)
    return None


def _read_video(container, inp: _Input, limits: MediaLimits, with_audio: bool) -> "Video":
    name = inp.name
    vstream = _first_video_stream(container)
    kind = _holds(container, inp.head())
    if vstream is None or (kind == "image" and container.format.name != "gif"):
        # A still picture is not a one-frame video (GIFs are both).
        prefix = "no video stream" if vstream is None else "not a video"
        raise MediaError(prefix + (f" ({_USE[kind]})" if kind else ""), name)
    cc = _decoder_of(vstream, name)
    width, height = cc.width, cc.height
    if width or height:
        _check_picture_size(width, height, limits, name)
    fps = _stream_fps(vstream)
    if fps is None:
        raise MediaError("the video does not state a frame rate", name)

    # Refuse from what the container declares before decoding anything.
    seconds = _stream_seconds(vstream, container)
    _check_seconds(seconds, limits, name, "video")
    declared = max(vstream.frames or 0, int(seconds * fps))
    if declared > limits.max_frames:
        raise MediaError(f"video declares about {declared} frames, over the limit of "
                         f"{limits.max_frames} (MediaLimits.max_frames)", name)
    if width and height:
        _check_decoded_bytes(declared * 3 * width * height, limits, name, "video")

    astream = _first_audio_stream(container) if with_audio else None
    if astream is not None:
        _check_audio_stream(astream, container, limits, name)
    collector = _AudioCollector(name, limits) if astream is not None else None
    vstream.thread_type = "AUTO"

    frames: list[np.ndarray] = []
    turns = 0
    streams = [vstream] + ([astream] if astream is not None else [])
    demuxer = _Demuxer(container, streams, name)
    try:
        for frame in demuxer.frames():
            if isinstance(frame, av.AudioFrame):
                collector.add(frame)
                continue
            if not frames:
                width, height = frame.width, frame.height
                _check_picture_size(width, height, limits, name)
                turns = _display_rotation(frame)
            if len(frames) >= limits.max_frames:
                raise MediaError(f"video has more than {limits.max_frames} frames "
                                 f"(MediaLimits.max_frames)", name)
            frames.append(_video_frame_to_rgb(frame, width, height))
            _check_seconds(len(frames) / fps, limits, name, "video")
            _check_decoded_bytes(len(frames) * 3 * width * height, limits, name, "video")
    except MediaError:
        raise
    except _LIB_ERRORS as e:
        raise MediaError(f"corrupt or truncated video ({_why(e)})", name) from e
    if not frames:
        raise MediaError("the video stream holds no frames", name)
    if vstream.frames and len(frames) < vstream.frames and demuxer.end >= inp.size:
        # The index promised more frames and reading ran into the end of the file: cut short.
        raise MediaError(f"truncated video: {vstream.frames} frames declared, only {len(frames)} "
                         f"decoded before the file ended", name)
    video_frames = torch.from_numpy(np.stack(frames))
    del frames
    if turns:
        # show the frames the way players do, so that tokens see the picture upright
        video_frames = torch.rot90(video_frames, turns, dims=(2, 3)).contiguous()
    audio = None
    if collector is not None and collector.count:
        audio = collector.build()
    return Video(video_frames, fps, audio)


# extension -> (container format, default video codecs in order of preference, audio codec)
_VIDEO_WRITERS = {
    ".mp4": ("mp4", ("libx264", "mpeg4"), "aac"),
    ".m4v": ("mp4", ("libx264", "mpeg4"), "aac"),
    ".mov": ("mov", ("libx264", "mpeg4"), "aac"),
    ".mkv": ("matroska", ("libx264", "mpeg4"), "aac"),
    ".webm": ("webm", ("libvpx-vp9", "libvpx"), "libopus"),
    ".avi": ("avi", ("mpeg4",), "libmp3lame"),
    ".gif": ("gif", ("gif",), None),
}
_CRF_CODECS = {"libx264", "libx265", "libvpx-vp9", "libvpx", "libaom-av1", "libsvtav1"}


def _pick_codec(candidates) -> str | None:
    for name in candidates:
        try:
            av.Codec(name, "w")
            return name
        except (av.error.FFmpegError, ValueError):
            continue
    return None


def _pick_pix_fmt(codec: av.Codec, width: int, height: int) -> str:
    formats = [f.name for f in codec.video_formats or []]
    if not formats:
        return "yuv420p"
    even = width % 2 == 0 and height % 2 == 0
    # 4:2:0 is what every player decodes; x264 needs even sides for it, so odd sizes use 4:4:4
    # (where the codec has it) rather than silently cropping or padding.
    order = ["yuv420p", "yuv444p"] if even or codec.name not in ("libx264", "libx265") else [
        "yuv444p", "yuv420p"]
    return next((f for f in order if f in formats), formats[0])


@dataclass(frozen=True, eq=False)
class Video:
    """A sequence of RGB frames at a constant frame rate, with an optional sound track.

    Attributes:
        frames: ``[T, 3, H, W]`` uint8, RGB.
        fps: frames per second, a ``Fraction`` (30000/1001 for NTSC); ints and floats are converted.
        audio: the sound track, or None.
    """

    frames: torch.Tensor
    fps: Fraction
    audio: Audio | None = None

    def __post_init__(self):
        f = self.frames
        if not isinstance(f, torch.Tensor):
            raise MediaError(f"Video.frames must be a torch.Tensor, got {type(f).__name__}; "
                             f"use Video.from_array for numpy arrays")
        if f.dtype != torch.uint8:
            raise MediaError(f"Video.frames must be uint8, got {f.dtype}; use Video.from_array")
        if f.ndim != 4 or f.shape[1] != 3:
            raise MediaError(f"Video.frames must be [T, 3, H, W] (RGB), got shape {tuple(f.shape)}; "
                             f"Video.from_array converts gray and RGBA")
        if f.shape[0] == 0 or f.shape[2] == 0 or f.shape[3] == 0:
            raise MediaError(f"Video is empty: shape {tuple(f.shape)}")
        object.__setattr__(self, "fps", _as_fps(self.fps))
        if self.audio is not None and not isinstance(self.audio, Audio):
            raise MediaError(f"Video.audio must be an Audio or None, got {type(self.audio).__name__}")

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def height(self) -> int:
        return self.frames.shape[2]

    @property
    def width(self) -> int:
        return self.frames.shape[3]

    @property
    def duration(self) -> float:
        """Length in seconds, ``num_frames / fps``."""
        return float(self.num_frames / self.fps)

    def __repr__(self) -> str:
        sound = f", audio={self.audio!r}" if self.audio is not None else ""
        return (f"Video({self.num_frames} frames x 3x{self.height}x{self.width} uint8 @ "
                f"{self.fps} fps{sound})")

    def to_float(self) -> torch.Tensor:
        """``[T, 3, H, W]`` float32 in [0, 1]."""
        return self.frames.to(torch.float32) / 255.0

    @classmethod
    def from_array(cls, frames, fps, audio: Audio | None = None, *,
                   channels_last: bool | None = None) -> "Video":
        """A video from a numpy array or tensor.

        Args:
            frames: ``[T, H, W, C]`` or ``[T, C, H, W]``, ``C`` in (1, 3, 4); uint8 (or integers
                0..255) or float in [0, 1]. Gray is repeated to RGB and RGBA composited on white.
            fps: frames per second (int, float or Fraction).
            audio: optional sound track.
            channels_last: where the channel axis is; inferred as in ``Image.from_array``.
        """
        t, from_numpy = _as_tensor(frames, "Video.from_array")
        if t.ndim != 4:
            raise MediaError(f"Video.from_array: expected [T, H, W, C] or [T, C, H, W], got shape "
                             f"{tuple(t.shape)}")
        t = _to_uint8(_channels_first(t, channels_last, from_numpy, "Video.from_array"),
                      "Video.from_array")
        if t.shape[1] == 1:
            t = t.expand(-1, 3, -1, -1).contiguous()
        elif t.shape[1] == 4:
            t = _composite(t, (255, 255, 255))
        return cls(t, fps, audio)

    @classmethod
    def open(cls, path: Source, *, limits: MediaLimits | None = None,
             with_audio: bool = True) -> "Video":
        """Read a video: mp4, mkv, webm, mov, avi, gif, or anything else FFmpeg demuxes.

        Every frame is decoded, in order, to RGB at the first frame's size (variable frame rates
        are not resampled; ``fps`` is the stream's average rate). A display matrix that turns
        the picture by a right angle (portrait phone video) is applied, so frames come back
        upright, as players show them. Transparent pixels (GIF) are composited on white. The first audio stream, if any and ``with_audio``, becomes
        ``video.audio`` at its native rate. Declared size, frame count and duration are checked
        against ``limits`` before decoding, and decoding stops as soon as a limit is crossed.
        """
        limits = limits or DEFAULT_LIMITS
        inp = _resolve(path, limits)
        with _open_container(inp, "a video") as container:
            return _read_video(container, inp, limits, with_audio)

    def save(self, path, codec: str | None = None, bit_rate: int | None = None,
             crf: int | None = None) -> None:
        """Write the video; the container follows the extension.

        - ``.mp4`` / ``.m4v`` / ``.mov`` / ``.mkv``: H.264 (libx264; mpeg4 if missing), AAC audio.
        - ``.webm``: VP9, Opus audio (48 kHz).  ``.avi``: MPEG-4 part 2, mp3 audio.
        - ``.gif``: 256 colours chosen from the whole video; the frame delay is stored in 1/100 s,
          so ``fps`` is rounded to 100/k; the audio is dropped with a warning.

        Args:
            codec: an FFmpeg encoder name overriding the default (e.g. "libx265", "mpeg4").
            bit_rate: target bits per second for the video.
            crf: constant quality (lower is better; 0 is lossless YUV for x264) for codecs that
                have it (libx264, libx265, libvpx-vp9, ...).

        Even sizes are stored as 4:2:0; odd sizes are kept exactly, as 4:4:4 for x264/x265.
        """
        p, ext = _output_path(path, _VIDEO_WRITERS, "a video")
        fmt, candidates, audio_codec = _VIDEO_WRITERS[ext]
        codec_name = codec if codec is not None else _pick_codec(candidates)
        if codec_name is None:
            raise MediaError(f"no encoder for {ext} is available in this FFmpeg build "
                             f"(tried {', '.join(candidates)})", str(p))
        if crf is not None and codec_name not in _CRF_CODECS:
            raise MediaError(f"crf is not supported by {codec_name}; use bit_rate", str(p))
        audio = self.audio
        if audio is not None and audio_codec is None:
            warnings.warn(f"{p}: {ext} cannot hold sound; the audio track is not saved", stacklevel=2)
            audio = None
        try:
            with _atomic_target(p) as tmp:
                if ext == ".gif" and codec is None:
                    hwc = self.frames.cpu().permute(0, 2, 3, 1).numpy()
                    _write_gif(str(tmp), list(hwc), self.fps)
                else:
                    self._write(tmp, fmt, codec_name, bit_rate, crf, audio, audio_codec, str(p))
        except _LIB_ERRORS as e:
            if isinstance(e, MediaError):
                raise
            raise MediaError(f"cannot write the video as {ext} with {codec_name} ({_why(e)})",
                             str(p)) from e

    def _write(self, tmp: Path, fmt: str, codec_name: str, bit_rate, crf, audio, audio_codec,
               name: str) -> None:
        try:
            info = av.Codec(codec_name, "w")
        except (av.error.FFmpegError, ValueError):
            raise MediaError(f"unknown video encoder {codec_name!r}", name) from None
        if info.type != "video":
            raise MediaError(f"{codec_name} is not a video encoder", name)
        with av.open(str(tmp), "w", format=fmt) as container:
            stream = container.add_stream(codec_name, rate=self.fps)
            stream.width, stream.height = self.width, self.height
            stream.pix_fmt = _pick_pix_fmt(info, self.width, self.height)
            options = {}
            if crf is not None:
                options["crf"] = str(int(crf))
            if codec_name.startswith("libvpx") and crf is None and bit_rate is None:
                options["crf"] = "32"  # libvpx's default target of 256 kbit/s is poor for large frames
            if codec_name.startswith("libvpx") and "crf" in options and bit_rate is None:
                bit_rate = 0  # constant-quality mode in libvpx needs b=0
            if codec_name == "mpeg4" and bit_rate is None:
                # ffmpeg's 200 kbit/s default smears anything bigger than a thumbnail
                bit_rate = max(200_000, int(0.15 * self.width * self.height * float(self.fps)))
            if options:
                stream.codec_context.options = options
            if bit_rate is not None:
                stream.bit_rate = int(bit_rate)
            sound = None
            if audio is not None:
                sound = _AudioEncoder(container, audio, audio_codec, name)
            pix_fmt = stream.pix_fmt
            for i in range(self.num_frames):
                hwc = np.ascontiguousarray(self.frames[i].cpu().permute(1, 2, 0).numpy())
                frame = av.VideoFrame.from_ndarray(hwc, format="rgb24").reformat(format=pix_fmt)
                frame.pts = i
                container.mux(stream.encode(frame))
                if sound is not None:  # keep sound and picture interleaved in time
                    sound.write_until(int((i + 1) / self.fps * audio.sample_rate))
            container.mux(stream.encode(None))
            if sound is not None:
                sound.finish()


# -- dispatch --------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff",
                              ".avif"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi"})
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac"})
TEXT_EXTENSIONS = frozenset({".txt", ".text", ".md", ".markdown", ".rst", ".html", ".htm", ".xml",
                             ".tex", ".py", ".c", ".h", ".cc", ".cpp", ".hpp", ".java", ".js",
                             ".rs", ".go", ".sh", ".csv", ".tsv", ".log"})


def kind_of(path) -> str | None:
    """``"image" | "video" | "audio" | "text"`` from the file extension alone, or None.

    ``.gif`` counts as an image (``open_media`` returns a ``Video`` for an animated one). JSON is
    not text here: the CLI reads ``.json``/``.jsonl`` as manifests.
    """
    ext = Path(os.fspath(path)).suffix.lower()
    for kind, exts in (("image", IMAGE_EXTENSIONS), ("video", VIDEO_EXTENSIONS),
                       ("audio", AUDIO_EXTENSIONS), ("text", TEXT_EXTENSIONS)):
        if ext in exts:
            return kind
    return None


def _gif_is_animated(inp: _Input) -> bool:
    """Counts GIF frames by demuxing only (no decoding): more than one means animated."""
    with _open_container(inp, "an image") as container:
        stream = _first_video_stream(container)
        if stream is None:
            return False
        count = 0
        try:
            for packet in container.demux(stream):
                count += packet.size > 0
                if count > 1:
                    return True
        except _LIB_ERRORS:
            return False  # let Image.open report the damage
    return False


def open_media(path: Source, *, limits: MediaLimits | None = None) -> Image | Video | Audio:
    """Open any supported media file as an ``Image``, ``Video`` or ``Audio``.

    The kind is decided by the content, so a misnamed file (a PNG called ``.jpg``, an audio-only
    ``.mp4``) still opens as what it is. An animated GIF opens as a ``Video``, a still one as an
    ``Image``; a video with a sound track is a ``Video`` carrying its ``audio``.
    """
    limits = limits or DEFAULT_LIMITS
    inp = _resolve(path, limits)
    head = inp.head(4096)
    fmt = _sniff_image(head[:64])
    if fmt == "gif" and _gif_is_animated(inp):
        return Video.open(path, limits=limits)
    if fmt is not None:
        return Image.open(path, limits=limits)
    if _looks_like_text(head):
        expected = kind_of(inp.name) if inp.path is not None else None
        what = f"not {'an' if expected in ('image', 'audio') else 'a'} {expected} file" if (
            expected in ("image", "video", "audio")) else "not a media file"
        raise MediaError(f"{what}: the content looks like text", inp.name)
    with _open_container(inp, "a media file") as container:
        kind = _holds(container, head)
        if kind == "video":
            return _read_video(container, inp, limits, with_audio=True)
        if kind == "audio":
            return _read_audio(container, inp, limits)
    if kind == "image":
        return Image(_decode_picture_av(inp, limits))
    raise MediaError("no picture, video or audio stream in the file", inp.name)
