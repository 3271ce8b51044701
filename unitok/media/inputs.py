"""Inputs and containers: a path or bytes checked into an ``_Input``, content sniffing (text, still
image formats), opening a file with PyAV, demuxing with damaged-packet checks, and what an opened
container holds (image, video or audio). The library errors that the readers turn into
``MediaError`` are listed in ``_av.lib_errors``."""

from __future__ import annotations

import io
import os
import stat
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

from ..errors import LimitError, MediaError
from ._av import av, lib_errors
from .limits import MediaLimits

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]

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
        raise LimitError(f"file is {size} bytes, over the limit of {limits.max_file_bytes} "
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
    except lib_errors() as e:
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
