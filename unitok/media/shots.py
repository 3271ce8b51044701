"""Shots: where a video cuts from one shot to the next, and the video split there.

A causal video tokenizer codes frame 0 alone, then chunks of frames whose latents see the frames
before them; across a hard cut that context carries the previous shot into the new one (a ghost).
Splitting a video at its cuts and coding each shot as its own video segment (each with its own key
frame) keeps every latent inside one shot, as unified-model data pipelines do. The price is one key
frame (and one partly padded chunk) per extra shot. ``unitok.media.Preprocess`` does this by default
(``split_shots``); a video with no detected cut is coded as one segment, exactly as before.

How a cut is found (ideas from PySceneDetect's content and adaptive detectors, our own measure):

- every frame is averaged down to ``FEATURE_SIZE`` x ``FEATURE_SIZE`` pixels in YCbCr (full range,
  BT.601), so noise, compression and fine texture hardly count;
- the change from frame ``t - 1`` to ``t`` is the sum of a *pixel* change (mean absolute
  difference, the smallest over shifts of up to ``MAX_SHIFT`` feature pixels, so a pan costs little)
  and half a *colour* change (half the L1 distance of per-channel histograms, which motion barely
  moves);
- a frame starts a new shot when its change is at least ``min_change`` and ``ratio`` times the
  median change of the ``window`` frames on each side: a fast pan or a zoom changes every frame
  alike, a cut stands out from its neighbours;
- strongest cuts first, a cut is kept only while every shot (the first and the last too) keeps at
  least ``min_shot_frames`` frames, so a flash or a black frame at the start makes no shot of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError, MediaError
from .video import Video

FEATURE_SIZE = 32          # frames are compared at this size (pixels per side)
MAX_SHIFT = 3              # feature pixels a frame may move and still match (about 10% of the side)
HISTOGRAM_BINS = 16        # per channel
FLOOR = 0.01               # the smallest neighbour change a ratio is taken against (a still shot)
MIN_SHOT_FRAMES = 4        # defaults of detect_cuts
RATIO = 4.0
MIN_CHANGE = 0.1
WINDOW = 2
_CHUNK = 64                # frames compared at a time
_CHUNK_VALUES = 1 << 24    # at most this many full-size values are in float at once (64 MB), however large the frames


def _features(frames: torch.Tensor) -> torch.Tensor:
    """frames: [T, 3, H, W] uint8 RGB -> [T, 3, FEATURE_SIZE, FEATURE_SIZE] float YCbCr (Y in
    [0, 1], Cb and Cr in [-0.5, 0.5])."""
    x = F.adaptive_avg_pool2d(frames.float() / 255, FEATURE_SIZE)
    r, g, b = x.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return torch.stack([y, 0.564 * (b - y), 0.713 * (r - y)], 1)


def _pixel_change(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[N, 3, S, S] each -> [N]: mean |a - b| over the overlap, the smallest over shifts of b
    by up to ``MAX_SHIFT`` pixels each way."""
    S = a.shape[-1]
    m = min(MAX_SHIFT, S - 1)
    best = None
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            pa = a[..., max(0, dy):S + min(0, dy), max(0, dx):S + min(0, dx)]
            pb = b[..., max(0, -dy):S + min(0, -dy), max(0, -dx):S + min(0, -dx)]
            d = (pa - pb).abs().mean((1, 2, 3))
            best = d if best is None else torch.minimum(best, d)
    return best


def _histograms(x: torch.Tensor) -> torch.Tensor:
    """[T, 3, S, S] YCbCr -> [T, 3, HISTOGRAM_BINS], each row summing to 1."""
    lows = torch.tensor([0.0, -0.5, -0.5]).view(1, 3, 1)
    bins = ((x.flatten(2) - lows) * HISTOGRAM_BINS).long().clamp_(0, HISTOGRAM_BINS - 1)
    counts = torch.zeros(x.shape[0], 3, HISTOGRAM_BINS).scatter_add_(2, bins, torch.ones_like(bins, dtype=torch.float))
    return counts / bins.shape[-1]


def frame_changes(frames: torch.Tensor) -> torch.Tensor:
    """How much each frame differs from the one before it (see the module docstring).

    Args:
        frames: ``[T, 3, H, W]`` uint8 RGB.
    Returns:
        ``[T]`` float, 0 for frame 0; about 0.01 between frames of a still shot, 0.15 and more
        across a cut.
    """
    if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise MediaError(f"frame_changes takes uint8 frames [T, 3, H, W], got "
                         f"{getattr(frames, 'dtype', type(frames).__name__)} {tuple(getattr(frames, 'shape', ()))}")
    T = frames.shape[0]
    out = torch.zeros(T)
    if T < 2:
        return out
    # chunk by chunk, carrying the last frame's features over: memory stays bounded whatever the
    # length and frame size (a long clip of tiny frames would otherwise hold its features, each
    # FEATURE_SIZE^2 floats, all at once)
    per_chunk = max(1, min(_CHUNK, _CHUNK_VALUES // max(1, frames[0].numel())))
    last = None
    for start in range(0, T, per_chunk):
        x = _features(frames[start:start + per_chunk])
        h = _histograms(x)
        if last is not None:
            x, h = torch.cat([last[0], x]), torch.cat([last[1], h])
        first = start if last is None else start - 1
        colour = (h[1:] - h[:-1]).abs().sum((1, 2)) / 6      # half the L1 distance, averaged over 3 channels
        out[first + 1:first + len(x)] = _pixel_change(x[:-1], x[1:]) + 0.5 * colour
        last = (x[-1:], h[-1:])
    return out


def _check_settings(min_shot_frames, ratio, min_change, window) -> None:
    if isinstance(min_shot_frames, bool) or not isinstance(min_shot_frames, int) or min_shot_frames < 1:
        raise ConfigError(f"min_shot_frames must be a whole number >= 1, got {min_shot_frames!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"window must be a whole number >= 1, got {window!r}")
    if not ratio > 1 or not min_change >= 0:
        raise ConfigError(f"ratio must be > 1 and min_change >= 0, got ratio={ratio!r}, min_change={min_change!r}")


def detect_cuts(frames: torch.Tensor, *, min_shot_frames: int = MIN_SHOT_FRAMES, ratio: float = RATIO,
                min_change: float = MIN_CHANGE, window: int = WINDOW) -> list[int]:
    """The frames where a new shot starts (hard cuts; see the module docstring).

    Args:
        frames: ``[T, 3, H, W]`` uint8 RGB.
        min_shot_frames: every shot keeps at least this many frames (the first and last too).
        ratio: a cut changes at least this many times more than the median of its neighbours.
        min_change: ... and at least this much (``frame_changes``' scale).
        window: neighbours on each side that set the recent motion level.
    Returns:
        Ascending frame indices in ``1 .. T - 1`` (frame 0 always starts the first shot and is not
        listed); empty when the video is one shot.
    """
    _check_settings(min_shot_frames, ratio, min_change, window)
    change = frame_changes(frames)
    T = len(change)
    # the recent motion level at t: the median change of the `window` frames on each side (frame
    # 0 has no change of its own and is not a neighbour), fewer at the ends
    padded = torch.full((T + 2 * window,), float("nan"))
    padded[window + 1:window + T] = change[1:]
    offsets = [o for o in range(-window, window + 1) if o]
    around = torch.stack([padded[window + o:window + o + T] for o in offsets], 1)
    level = around.nanmedian(1).values.nan_to_num(0.0).clamp_min(FLOOR)
    hits = (change >= min_change) & (change >= ratio * level)
    candidates = [t for t in hits.nonzero().flatten().tolist() if t >= 1]
    cuts: list[int] = []
    for t in sorted(candidates, key=lambda t: -float(change[t])):
        bounds = sorted([0, T, *cuts, t])
        if all(b - a >= min_shot_frames for a, b in zip(bounds, bounds[1:])):
            cuts.append(t)
    return sorted(cuts)


def split_shots(video: Video, cuts: Sequence[int] | None = None, **detect) -> list[Video]:
    """``video`` as one ``Video`` per shot, in order, at ``cuts`` (``detect_cuts(video.frames,
    **detect)`` when None). The shots carry no sound: a sound track stays whole (``UniTokenizer``
    codes it as one audio segment after the last shot)."""
    if cuts is None:
        cuts = detect_cuts(video.frames, **detect)
    bounds = [0, *cuts, video.num_frames]
    if any(not a < b for a, b in zip(bounds, bounds[1:])):
        raise ConfigError(f"cuts {list(cuts)} must be ascending frame indices inside 1..{video.num_frames - 1}")
    if len(bounds) == 2:
        return [video] if video.audio is None else [Video(video.frames, video.fps)]
    return [Video(video.frames[a:b].contiguous(), video.fps) for a, b in zip(bounds, bounds[1:])]


def join_shots(videos: Sequence[Video]) -> Video:
    """Consecutive shots (decoded video segments) back into one ``Video``: frames concatenated in
    order; they must share size and frame rate. The first one's sound track, if any, is kept."""
    videos = list(videos)
    if not videos or not all(isinstance(v, Video) for v in videos):
        raise MediaError("join_shots takes a non-empty list of Video")
    first = videos[0]
    for i, v in enumerate(videos[1:], 1):
        if (v.height, v.width, v.fps) != (first.height, first.width, first.fps):
            raise MediaError(f"join_shots: video {i} is {v.width}x{v.height} at {v.fps} fps, video 0 is "
                             f"{first.width}x{first.height} at {first.fps} fps; only shots of one video can be joined")
    if len(videos) == 1:
        return first
    return Video(torch.cat([v.frames for v in videos]), first.fps, first.audio)
