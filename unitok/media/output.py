"""Writing files: output path checks, atomic replacement (a failed save never leaves a half-written
file under the real name), and the GIF encoder that both ``Image.save`` and ``Video.save`` use."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import MediaError
from ._av import av


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
