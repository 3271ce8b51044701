"""``Preprocess``: the size, frame rate and duration media are brought to before they are tokenized.

A 12-megapixel photo at stride 8 is about 250k tokens and ten seconds of 640x272 video about as
many: a unified model wants a bound. The policies are those of the anchors:

- ``max_pixels`` / ``min_pixels`` (Qwen2-VL): a picture or frame whose area ``H * W`` is outside the
  range is scaled, keeping its aspect ratio, to the nearest area inside it; one already inside is
  left at its exact size.
- ``target_pixels`` (Emu3): every picture is scaled to about this area, whatever its size.
- Scaled sides are rounded to the codec's stride (``MediaTokenizer.pixel_stride``), so no token is
  spent on padding, and stay inside the bounds after rounding.
- ``max_fps``: a faster video keeps the frames nearest to a ``max_fps`` clock (its frame rate
  becomes ``max_fps``); ``max_duration``: video and audio keep their first ``max_duration`` seconds
  (a video's sound track with it).
- ``split_shots`` (on by default since unitok 0.4): a video is cut into its shots
  (``unitok.media.shots.detect_cuts``, every shot at least ``min_shot_frames`` frames), each coded
  as its own video segment, so no latent mixes two shots and no shot carries a ghost of the one
  before; the sound track stays one audio segment after the last shot. Each extra shot pays its own
  key frame; a video without a detected cut is coded exactly as with ``split_shots=False``. Applied
  last, to the resized frames (``Preprocess.shots``).

``MediaLimits`` is another thing: it refuses files too large to decode at all; ``Preprocess``
shapes what was accepted. Pictures are resampled with antialiased bicubic filtering (area-correct
when shrinking), alpha and gray channels alike.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from fractions import Fraction

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .audio import Audio
from .image import Image
from .shots import MIN_SHOT_FRAMES, split_shots
from .video import Video


@dataclass(frozen=True)
class Preprocess:
    """Resize, frame-rate and duration policies (every one None by default: media keep their size,
    rate and length) and shot splitting (on by default). See the module docstring."""

    max_pixels: int | None = None
    min_pixels: int | None = None
    target_pixels: int | None = None
    max_fps: float | None = None
    max_duration: float | None = None
    split_shots: bool = True               # one video segment per shot (False: a video is one segment)
    min_shot_frames: int | None = None     # with split_shots (None: shots.MIN_SHOT_FRAMES)

    def __post_init__(self):
        if not isinstance(self.split_shots, bool):
            raise ConfigError(f"preprocess: split_shots must be true or false, got {self.split_shots!r}")
        if self.min_shot_frames is not None and (isinstance(self.min_shot_frames, bool)
                                                 or not isinstance(self.min_shot_frames, int)):
            raise ConfigError(f"preprocess: min_shot_frames must be a whole number, got {self.min_shot_frames!r}")
        if self.min_shot_frames is not None and not self.split_shots:
            raise ConfigError("preprocess: min_shot_frames applies to split_shots; set split_shots=True too")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "split_shots":
                continue
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value <= 0):
                raise ConfigError(f"preprocess: {f.name} must be a positive number, got {value!r}")
        if self.target_pixels is not None and (self.max_pixels or self.min_pixels):
            raise ConfigError("preprocess: target_pixels scales every picture to one area; it cannot be combined "
                              "with max_pixels or min_pixels")
        if self.max_pixels and self.min_pixels and self.min_pixels > self.max_pixels:
            raise ConfigError(f"preprocess: min_pixels ({self.min_pixels}) is larger than max_pixels "
                              f"({self.max_pixels})")

    @property
    def active(self) -> bool:
        """Whether any policy differs from the defaults."""
        return any(getattr(self, f.name) != f.default for f in fields(self))

    def to_json(self) -> dict:
        """The fields that are set, ``split_shots`` always (what ``run.json`` records)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    # -- sizes ----------------------------------------------------------------------------------

    def size(self, height: int, width: int, stride: int = 1) -> tuple[int, int]:
        """The ``(height, width)`` a ``height x width`` picture is brought to (see the module
        docstring); the same size when no policy asks for a change."""
        area = height * width
        if self.target_pixels is not None:
            want = self.target_pixels
        elif self.max_pixels is not None and area > self.max_pixels:
            want = self.max_pixels
        elif self.min_pixels is not None and area < self.min_pixels:
            want = self.min_pixels
        else:
            return height, width
        scale = math.sqrt(want / area)
        h, w = self._round(height * scale, stride), self._round(width * scale, stride)
        low, high = (self.min_pixels or 0), (self.max_pixels or math.inf)
        while h * w > high and (h > stride or w > stride):      # rounding up went over: shrink the longer side
            if h >= w:
                h -= stride
            else:
                w -= stride
        while h * w < low:                                      # rounding down went under: grow the shorter side
            if h <= w:
                h += stride
            else:
                w += stride
        return h, w

    @staticmethod
    def _round(x: float, stride: int) -> int:
        return max(stride, int(round(x / stride)) * stride)

    # -- media ----------------------------------------------------------------------------------

    def image(self, image: Image, stride: int = 1) -> Image:
        h, w = self.size(image.height, image.width, stride)
        if (h, w) == (image.height, image.width):
            return image
        return Image(_resample(image.pixels[None], h, w)[0])

    def video(self, video: Video, stride: int = 1) -> Video:
        frames, fps, sound = video.frames, video.fps, video.audio
        if self.max_duration is not None:
            keep = max(1, math.floor(self.max_duration * fps + 1e-9))
            frames = frames[:keep]
            sound = self.audio(sound) if sound is not None else None
        # within 0.01% counts as the same rate: --max-fps 29.97 keeps NTSC's 30000/1001 as it is
        if self.max_fps is not None and fps > self.max_fps * (1 + 1e-4):
            new_fps = Fraction(self.max_fps).limit_denominator(1001)
            count = max(1, math.floor(frames.shape[0] * new_fps / fps + 1e-9))
            picks = [min(frames.shape[0] - 1, round(k * fps / new_fps)) for k in range(count)]
            frames, fps = frames[picks], new_fps
        h, w = self.size(frames.shape[2], frames.shape[3], stride)
        if (h, w) != tuple(frames.shape[2:]):
            frames = torch.cat([_resample(chunk, h, w) for chunk in frames.split(16)])
        if frames is video.frames and fps == video.fps and sound is video.audio:
            return video
        return Video(frames.contiguous(), fps, sound)

    def shots(self, video: Video) -> list[Video]:
        """``video`` as the video segments it is coded as: itself, or one per shot with
        ``split_shots`` (``unitok.media.shots.split_shots``; the shots carry no sound)."""
        if not self.split_shots:
            return [video]
        return split_shots(video, min_shot_frames=self.min_shot_frames or MIN_SHOT_FRAMES)

    def audio(self, audio: Audio) -> Audio:
        if self.max_duration is None:
            return audio
        keep = max(1, math.floor(self.max_duration * audio.sample_rate + 1e-9))
        if keep >= audio.num_samples:
            return audio
        return Audio(audio.samples[:, :keep].contiguous(), audio.sample_rate)

    def apply(self, item, stride: int = 1):
        """``item`` (Image, Video or Audio) under this policy; anything else unchanged."""
        if not self.active:
            return item
        if isinstance(item, Image):
            return self.image(item, stride)
        if isinstance(item, Video):
            return self.video(item, stride)
        if isinstance(item, Audio):
            return self.audio(item)
        return item


def _resample(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """pixels: [N, C, H, W] uint8 -> [N, C, height, width] uint8, antialiased bicubic."""
    x = F.interpolate(pixels.float(), size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8)
