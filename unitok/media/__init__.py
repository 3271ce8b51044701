"""Media value types (``Image``, ``Video``, ``Audio``) and all media file I/O.

This is the only package in unitok that reads or writes media files. Everything else receives the
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

Modules (dependencies point down the list; import the public names from ``unitok.media``):

- ``limits``: ``MediaLimits``, ``DEFAULT_LIMITS`` and the size / duration / byte checks.
- ``inputs``: path-or-bytes inputs, content sniffing, PyAV containers and demuxing.
- ``convert``: array, dtype, channel-axis and alpha conversions the value types share.
- ``output``: output paths, atomic writes, the GIF encoder.
- ``image`` / ``audio`` / ``video``: one media type each: its value type, reading and writing.
- ``dispatch``: ``open_media``, ``kind_of`` and the extension sets, a document's byte budget.
- ``resize``: ``Preprocess``, the resize (max/min/target pixels), frame-rate and duration policies
  applied before tokenizing.
"""

from __future__ import annotations

from .audio import Audio
from .dispatch import (AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, TEXT_EXTENSIONS, VIDEO_EXTENSIONS,
                       check_document_bytes, decoded_bytes, kind_of, open_media)
from .image import Image
from .inputs import Source  # noqa: F401  (the type of every `open` argument, for annotations)
from .limits import DEFAULT_LIMITS, MediaLimits
from .resize import Preprocess
from .video import Video

__all__ = [
    "Image", "Video", "Audio", "MediaLimits", "DEFAULT_LIMITS", "Preprocess", "open_media", "kind_of",
    "decoded_bytes", "check_document_bytes",
    "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "AUDIO_EXTENSIONS", "TEXT_EXTENSIONS",
]
