"""``Video``: the value type for RGB frames at a constant rate with an optional sound track, reading
(every frame to RGB, upright, under the limits) and writing (mp4, m4v, mov, mkv, webm, avi, gif)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..errors import LimitError, MediaError
from ._av import av, lib_errors
from .audio import Audio, _AudioCollector, _AudioEncoder, _check_audio_stream
from .convert import _as_tensor, _channels_first, _composite, _frame_has_alpha, _to_uint8
from .inputs import (_USE, Source, _decoder_of, _Demuxer, _first_audio_stream,
                     _first_video_stream, _holds, _Input, _open_container, _resolve, _stream_seconds,
                     _why)
from .limits import (DEFAULT_LIMITS, MediaLimits, _check_decoded_bytes, _check_picture_size,
                     _check_seconds)
from .output import _atomic_target, _output_path, _write_gif


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
        raise LimitError(f"video declares about {declared} frames, over the limit of "
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
                raise LimitError(f"video has more than {limits.max_frames} frames "
                                 f"(MediaLimits.max_frames)", name)
            frames.append(_video_frame_to_rgb(frame, width, height))
            _check_seconds(len(frames) / fps, limits, name, "video")
            _check_decoded_bytes(len(frames) * 3 * width * height, limits, name, "video")
    except MediaError:
        raise
    except lib_errors() as e:
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
        except lib_errors() as e:
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
