"""The video benchmark's classic codecs: H.264 and AV1 through PyAV at a constant-quality
setting, encoded in memory, with a search for the CRF that lands on a target bits per pixel.

Everything here works on frames ([T, 3, H, W] uint8 RGB, or PyAV yuv420p frames); ``video.py``
runs it over the held-out clips and scores it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import torch

RATE_TOLERANCE = 0.02       # the anchors' rate search stops within 2% of the target bpp
SEARCH_ENCODES = 8          # ... or after this many encodes of a clip, keeping the closest


@dataclass(frozen=True)
class VideoAnchor:
    """A classic video codec driven through PyAV at a constant-quality setting.

    The anchors are encoded in memory rather than through ``Video.save``: the rate search needs
    the bitstream's own size (the packets, sequence headers included, no container), fractional
    CRF steps and the encoder's tuning, which a file writer has no business exposing."""

    name: str                       # "H.264", "AV1"
    encoder: str                    # the FFmpeg encoder
    decoders: tuple[str, ...]       # FFmpeg decoders, the first available is used
    low: float                      # the CRF range (low: best quality)
    high: float
    step: float                     # the CRF resolution the encoder honours
    halving: float                  # about how much the CRF rises when the rate halves (search guess)
    start: float                    # where the search starts for a clip
    options: tuple[tuple[str, str], ...] = ()   # fixed encoder options
    param_string: str | None = None  # encoder whose CRF goes in a parameter string (e.g. svtav1-params)

    def options_at(self, crf: float) -> dict[str, str]:
        opts = dict(self.options)
        if self.param_string:
            key, extra = self.param_string.split("=", 1) if "=" in self.param_string else (self.param_string, "")
            opts[key] = f"crf={crf:g}" + (f":{extra}" if extra else "")
        else:
            opts["crf"] = f"{crf:g}"
        return opts


#: per codec name, the encoders in order of preference. x264 is tuned for PSNR (no psycho-visual
#: optimisation), as SVT-AV1 is by default: PSNR is the acceptance metric. One thread each keeps
#: the bitstreams deterministic and leaves the CPU to the tokenizer.
VIDEO_ANCHORS: dict[str, tuple[VideoAnchor, ...]] = {
    "H.264": (VideoAnchor("H.264", "libx264", ("h264",), 0, 51, 0.01, 6, 32,
                          (("preset", "medium"), ("tune", "psnr"))),),
    "AV1": (VideoAnchor("AV1", "libsvtav1", ("libdav1d", "av1", "libaom-av1"), 1, 63, 0.25, 12, 45,
                        (("preset", "8"),), "svtav1-params=lp=1"),
            VideoAnchor("AV1", "libaom-av1", ("libdav1d", "libaom-av1", "av1"), 0, 63, 1, 10, 40,
                        (("cpu-used", "6"), ("row-mt", "0"))),),
}


def video_anchors(names: Sequence[str] = tuple(VIDEO_ANCHORS)) -> tuple[list[VideoAnchor], list[str]]:
    """(the first available encoder of each codec in ``names``, a note per codec that has none)."""
    available = av.codecs_available
    found, missing = [], []
    for name in names:
        pick = next((a for a in VIDEO_ANCHORS[name] if a.encoder in available
                     and any(d in available for d in a.decoders)), None)
        if pick is None:
            missing.append(f"{name}: none of {', '.join(a.encoder for a in VIDEO_ANCHORS[name])} is in this "
                           f"PyAV build, so there is no {name} anchor")
        else:
            found.append(pick)
    return found, missing


def yuv420_frames(frames: torch.Tensor) -> list:
    """uint8 [T, 3, H, W] RGB -> PyAV yuv420p frames (what every anchor encodes: 4:2:0, BT.601,
    limited range)."""
    hwc = frames.permute(0, 2, 3, 1).numpy()
    return [av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24").reformat(format="yuv420p")
            for f in hwc]


def rgb(frames) -> torch.Tensor:
    """PyAV frames -> uint8 [T, 3, H, W]."""
    return torch.from_numpy(np.stack([f.to_ndarray(format="rgb24") for f in frames])).permute(0, 3, 1, 2).contiguous()


@dataclass
class Bitstream:
    packets: list[bytes]
    extradata: bytes

    @property
    def size(self) -> int:
        """Bytes a decoder needs: the packets plus out-of-band headers (none for these encoders
        without a container's global-header flag)."""
        return sum(map(len, self.packets)) + len(self.extradata)


def anchor_encode(anchor: VideoAnchor, frames: Sequence, fps: Fraction, crf: float) -> Bitstream:
    """Encode yuv420p PyAV frames (``_yuv420_frames``) at ``crf``."""
    os.environ.setdefault("SVT_LOG", "1")      # SVT-AV1 prints its whole config per encoder otherwise
    ctx = av.CodecContext.create(anchor.encoder, "w")
    ctx.width, ctx.height = frames[0].width, frames[0].height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = 1 / fps
    ctx.framerate = fps
    ctx.thread_count = 1
    ctx.options = anchor.options_at(crf)
    packets = []
    for i, frame in enumerate(frames):
        frame.pts = i
        packets += [bytes(p) for p in ctx.encode(frame)]
    packets += [bytes(p) for p in ctx.encode(None)]
    return Bitstream(packets, bytes(ctx.extradata or b""))


def anchor_decode(anchor: VideoAnchor, stream: Bitstream) -> torch.Tensor:
    """Bitstream -> uint8 [T, 3, H, W] RGB (the decoder converts back from yuv420p, BT.601)."""
    name = next(d for d in anchor.decoders if d in av.codecs_available)
    ctx = av.CodecContext.create(name, "r")
    if stream.extradata:
        ctx.extradata = stream.extradata
    frames = []
    for data in stream.packets:
        frames += ctx.decode(av.Packet(data))
    frames += ctx.decode(None)
    return rgb(frames)


def search_crf(anchor: VideoAnchor, frames: Sequence, fps: Fraction, pixels: int, target: float, start: float, *,
               tolerance: float = RATE_TOLERANCE, budget: int = SEARCH_ENCODES
               ) -> tuple[float, Bitstream, int]:
    """The CRF whose bitstream comes closest to ``target`` bits per pixel: a secant search on
    log(bpp) against CRF, bracketing the target once both sides are seen; it stops within
    ``tolerance``, at neighbouring CRF steps, at the end of the range, or after ``budget`` encodes.
    Returns (crf, its bitstream, encodes spent)."""
    tried: dict[float, Bitstream] = {}

    def bpp(q: float) -> float:
        return tried[q].size * 8 / pixels

    def encode(q: float) -> float:
        q = min(max(round(q / anchor.step) * anchor.step, anchor.low), anchor.high)
        q = round(q, 4)
        if q not in tried:
            tried[q] = anchor_encode(anchor, frames, fps, q)
        return q

    q = encode(start)
    for _ in range(budget - 1):
        if abs(math.log(bpp(q) / target)) <= math.log1p(tolerance):
            break
        over = [k for k in tried if bpp(k) > target]      # too many bits: a higher CRF is needed
        under = [k for k in tried if bpp(k) <= target]
        if over and under:
            a, b = max(over), min(under)
            if b - a <= anchor.step + 1e-9:
                break                                     # neighbouring settings: as close as it gets
            la, lb = math.log(bpp(a)), math.log(bpp(b))
            guess = a + (la - math.log(target)) / (la - lb) * (b - a)
            guess = min(max(guess, a + anchor.step), b - anchor.step)
        else:
            ref = max(over) if over else min(under)
            guess = ref + anchor.halving * math.log2(bpp(ref) / target)
        n = len(tried)
        q = encode(guess)
        if len(tried) == n:
            break                                         # the range's end: nothing new to try
    best = min(tried, key=lambda k: abs(math.log(bpp(k) / target)))
    return best, tried[best], len(tried)


def anchor_versions() -> str:
    """The anchor libraries' versions as PyAV reports them (FFmpeg's, and x264's build)."""
    parts = [f"PyAV {av.__version__}"]
    ffmpeg = getattr(av, "ffmpeg_version_info", None)
    if ffmpeg:
        parts.append(f"FFmpeg {ffmpeg}")
    return ", ".join(parts)
