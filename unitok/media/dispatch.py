"""Any media file: its kind from the extension (``kind_of`` and the ``*_EXTENSIONS`` sets), opening
it as whatever its content holds (``open_media``), and the decoded bytes of a document's media
together (``decoded_bytes``, ``check_document_bytes``)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import LimitError, MediaError
from ._av import lib_errors
from .audio import Audio, _read_audio
from .image import Image, _decode_picture_av
from .inputs import (Source, _first_video_stream, _holds, _Input, _looks_like_text,
                     _open_container, _resolve, _sniff_image)
from .limits import DEFAULT_LIMITS, MediaLimits
from .video import Video, _read_video


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
        except lib_errors():
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
        raise LimitError(f"the document's media decode to {total} bytes together, over the limit of "
                         f"{limits.max_decoded_bytes} (MediaLimits.max_decoded_bytes)", name)
    return total
