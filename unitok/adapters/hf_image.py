"""Image and video VQ tokenizers of ``transformers``: Emu3's (``Emu3VQVAE``, images and videos,
laid out as Emu3 does: rows ending in ``<|eol|>``, frames in ``<|eof|>``) and Janus's
(``JanusVQVAE``, raster). Any size in, the same size out: pixels are normalized as the
reference's image processor does, padded to the stride (border replicated) and cropped back.

Transformers' Chameleon VQ (``ChameleonVQVAE``) has no decoder there, so it is not adapted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import register
from ..errors import ConfigError, MediaError, TokenSequenceError
from ..layout import MISSING, FrameRaster, Raster
from ..media import DEFAULT_LIMITS, Image, Video
from .base import ReferenceTokenizer, build_hf

MAX_SIDE = 1 << 15


@dataclass
class ImageAdapterConfig:
    """An adapted image (or video) VQ: the reference's config, the pixel normalization of its
    image processor, and the grouping of the raster (one group per "token" or per "row")."""

    reference: dict = field(default_factory=dict)
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    group: str = "token"

    def __post_init__(self):
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise ConfigError(f"image adapter config: image_mean and image_std need 3 values (std > 0), got "
                              f"{self.image_mean}, {self.image_std}")
        if self.group not in ("token", "row"):
            raise ConfigError(f"image adapter config: group must be 'token' or 'row', got {self.group!r}")


def fill_missing(codes: np.ndarray) -> np.ndarray:
    """Lenient decoding: each ``MISSING`` code takes the last present code before it in raster
    order (0 before the first), the most neutral guess a plain VQ allows."""
    flat = np.asarray(codes).reshape(-1)
    present = flat != MISSING
    last = np.maximum.accumulate(np.where(present, np.arange(len(flat)), -1))
    out = np.where(last >= 0, flat[np.maximum(last, 0)], 0)
    return out.reshape(np.shape(codes))


class _VQImage(ReferenceTokenizer):
    """Shared by the image VQs: normalization, padding to the stride, cropping back."""

    config_class = ImageAdapterConfig
    config_class_name: str
    model_class_name: str
    limits = DEFAULT_LIMITS

    @classmethod
    def build_reference(cls, cfg: ImageAdapterConfig):
        return build_hf(cls.config_class_name, cls.model_class_name, cfg.reference)

    stride: int

    @property
    def pixel_stride(self) -> int:
        return self.stride

    def grid(self, height: int, width: int) -> tuple[int, int]:
        return -(-height // self.stride), -(-width // self.stride)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., 3, H, W] in [0, 1] -> normalized and padded to the stride."""
        mean = torch.tensor(self.cfg.image_mean, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.cfg.image_std, device=x.device).view(3, 1, 1)
        x = (x - mean) / std
        H, W = x.shape[-2:]
        pad = (0, -W % self.stride, 0, -H % self.stride)
        if any(pad):
            lead = x.shape[:-3]
            x = F.pad(x.reshape(-1, *x.shape[-3:]), pad, mode="replicate").reshape(*lead, 3, H + pad[3], W + pad[1])
        return x

    def _denormalize(self, x: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
        mean = torch.tensor(self.cfg.image_mean, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.cfg.image_std, device=x.device).view(3, 1, 1)
        x = x.float() * std + mean
        if size is not None:
            x = x[..., :size[0], :size[1]]
        return x.clamp(0, 1)

    def _check_pixels(self, x: torch.Tensor, ndim: int) -> torch.Tensor:
        if not torch.is_tensor(x) or x.ndim != ndim or x.shape[-3] != 3:
            raise MediaError(f"{self.reference_name} expects RGB pixels in [0, 1] of {ndim} dimensions "
                             f"(channels third from last), got {tuple(x.shape) if torch.is_tensor(x) else type(x)}")
        return x.to(self.device, torch.float32)

    def check_header(self, header: dict[str, int]) -> None:
        super().check_header(header)
        side = min(MAX_SIDE, self.limits.max_side)
        for name in ("height", "width"):
            if header[name] > side:
                raise TokenSequenceError(f"{self.modality} {name} {header[name]} is larger than {side} pixels")
        if header["height"] * header["width"] > self.limits.max_pixels:
            raise TokenSequenceError(f"{self.modality} of {header['width']}x{header['height']} pixels is over the "
                                     f"limit of {self.limits.max_pixels} (MediaLimits.max_pixels)")

    def _image_header(self, item) -> dict[str, int]:
        if not isinstance(item, Image):
            raise MediaError(f"the {self.reference_name} tokenizer takes an Image, got {type(item).__name__}")
        header = {"height": item.height, "width": item.width}
        try:
            self.check_header(header)
        except TokenSequenceError as e:
            raise MediaError(f"cannot tokenize this image: {e.reason}") from None
        return header

    @staticmethod
    def _to_uint8(x: torch.Tensor) -> torch.Tensor:
        return (x * 255).round().to(torch.uint8).cpu().contiguous()


@register("adapters.janus")
class JanusAdapter(_VQImage):
    """DeepSeek's Janus VQ (``JanusVQVAE``): ``encode(x: [B, 3, H, W]) -> codes [B, h, w]``."""

    modality = "image"
    header_fields = ("height", "width")
    reference_name = "Janus VQ"
    config_class_name, model_class_name = "JanusVQVAEConfig", "JanusVQVAE"

    @property
    def stride(self) -> int:
        return 2 ** (len(self.model.config.channel_multiplier) - 1)

    @property
    def codebook_sizes(self) -> list[int]:
        return [int(self.model.config.num_embeddings)]

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] in [0, 1] -> codes [B, ceil(H / f), ceil(W / f)] int64."""
        x = self._normalize(self._check_pixels(x, 4))
        h, w = x.shape[-2] // self.stride, x.shape[-1] // self.stride
        return self.model.encode(x).image_tokens.view(x.shape[0], h, w)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """codes: [B, h, w] -> pixels [B, 3, H, W] in [0, 1], cropped to ``size``."""
        codes = torch.as_tensor(codes, device=self.device).long()
        quantize = self.model.quantize
        saved = quantize.quant_state_dims
        quantize.quant_state_dims = list(codes.shape[-2:])    # the reference decodes its training size only
        try:
            x = self.model.decode(codes.reshape(codes.shape[0], -1))
        finally:
            quantize.quant_state_dims = saved
        return self._denormalize(x, size)

    def layout(self, header):
        return Raster(*self.grid(header["height"], header["width"]), 1, group=self.cfg.group)

    def encode_item(self, item):
        header = self._image_header(item)
        return header, self.encode(item.to_rgb().to_float()[None]).cpu().numpy()   # [1, h, w]: Raster's levels axis

    def decode_item(self, header, codes) -> Image:
        codes = torch.as_tensor(fill_missing(codes))
        return Image(self._to_uint8(self.decode(codes, (header["height"], header["width"]))[0]))


class _Emu3(_VQImage):
    config_class_name, model_class_name = "Emu3VQVAEConfig", "Emu3VQVAE"

    @property
    def stride(self) -> int:
        return int(self.model.vision_spatial_factor)

    @property
    def temporal(self) -> int:
        return int(self.model.config.temporal_downsample_factor)

    @property
    def codebook_sizes(self) -> list[int]:
        return [int(self.model.config.codebook_size)]

    def _sizes(self, x: torch.Tensor) -> torch.Tensor:
        """``image_sizes`` for ``Emu3VQVAE.encode``, which crops each item's codes to ``size / f``
        along their first two axes: [h, w] for a picture, but [t, h] for a video (transformers 5.25),
        where that crop would cut latent frames and rows off a portrait or short, wide clip. A video
        gets sizes no crop reaches, so its codes stay [t, h, w] whole."""
        if x.ndim == 5:
            return torch.full((x.shape[0], 2), torch.iinfo(torch.int32).max)
        return torch.tensor([list(x.shape[-2:])] * x.shape[0])

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] (images) or [B, T, 3, H, W] (videos, T a multiple of ``temporal``) in
        [0, 1] -> codes [B, h, w] or [B, T / temporal, h, w] int64."""
        x = self._normalize(self._check_pixels(x, x.ndim if x.ndim in (4, 5) else 4))
        return torch.stack(self.model.encode(x, self._sizes(x)).image_tokens)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """codes: [B, h, w] or [B, t, h, w] -> pixels [B, 3, H, W] or [B, t * temporal, 3, H, W]."""
        return self._denormalize(self.model.decode(torch.as_tensor(codes, device=self.device).long()), size)


@register("adapters.emu3")
class Emu3ImageAdapter(_Emu3):
    """Emu3's vision tokenizer (``Emu3VQVAE``) for pictures: codes [h, w], laid out as Emu3 does
    (:class:`unitok.layout.FrameRaster`: each row ends with ``<|eol|>``, the picture with ``<|eof|>``)."""

    modality = "image"
    header_fields = ("height", "width")
    reference_name = "Emu3 VQ"

    def layout(self, header):
        return FrameRaster(1, *self.grid(header["height"], header["width"]), group=self.cfg.group)

    def encode_item(self, item):
        header = self._image_header(item)
        return header, self.encode(item.to_rgb().to_float()[None]).cpu().numpy()      # [1, h, w]: one frame

    def decode_item(self, header, codes) -> Image:
        codes = torch.as_tensor(fill_missing(codes))                                   # [1, h, w]
        return Image(self._to_uint8(self.decode(codes, (header["height"], header["width"]))[0]))


@register("adapters.emu3_video")
class Emu3VideoAdapter(_Emu3):
    """Emu3's vision tokenizer for videos: ``temporal`` frames (4) become one latent frame of [h, w]
    codes; a frame count that is not a multiple is padded by repeating the last frame and cropped
    back. Header: frames, height, width and the frame rate as a fraction, as unitok's video."""

    modality = "video"
    header_fields = ("frames", "height", "width", "fps_num", "fps_den")
    reference_name = "Emu3 VQ (video)"
    window = 8     # latent frames encoded or decoded together (a runtime setting)

    def latent_frames(self, frames: int) -> int:
        return -(-frames // self.temporal)

    def layout(self, header):
        return FrameRaster(self.latent_frames(header["frames"]), *self.grid(header["height"], header["width"]),
                           group=self.cfg.group)

    def check_header(self, header: dict[str, int]) -> None:
        super().check_header(header)
        if header["frames"] > self.limits.max_frames:
            raise TokenSequenceError(f"video header asks for {header['frames']} frames, over the limit of "
                                     f"{self.limits.max_frames} (MediaLimits.max_frames)")

    def encode_item(self, item):
        if not isinstance(item, Video):
            raise MediaError(f"the {self.reference_name} tokenizer takes a Video, got {type(item).__name__}")
        fps = Fraction(item.fps)
        header = {"frames": item.num_frames, "height": item.height, "width": item.width,
                  "fps_num": fps.numerator, "fps_den": fps.denominator}
        try:
            self.check_header(header)
        except TokenSequenceError as e:
            raise MediaError(f"cannot tokenize this video: {e.reason}") from None
        x = item.to_float()
        extra = -len(x) % self.temporal
        if extra:
            x = torch.cat([x, x[-1:].expand(extra, -1, -1, -1)])
        # windows of ``window`` latent frames: memory is bounded by the window (a video no longer
        # than one window gives exactly the reference's codes)
        step = self.window * self.temporal
        codes = [self.encode(x[t:t + step][None])[0] for t in range(0, len(x), step)]
        return header, torch.cat(codes).cpu().numpy()                                  # [t, h, w]

    def decode_item(self, header, codes) -> Video:
        codes = torch.as_tensor(fill_missing(codes))
        size = (header["height"], header["width"])
        frames = torch.cat([self._to_uint8(self.decode(codes[t:t + self.window][None], size)[0])
                            for t in range(0, len(codes), self.window)])
        return Video(frames[:header["frames"]].contiguous(), Fraction(header["fps_num"], header["fps_den"]))
