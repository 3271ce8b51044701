"""The image tokenizer: a convolutional encoder / quantizer / decoder (VQGAN family).

    pixels [B, 3, H, W] in [0, 1]
      -> pad to a multiple of the stride (replicate the border)
      -> Encoder: space-to-depth stem (``patch``), residual blocks, strided downsampling,
         optional self-attention at the lowest resolution -> latent [B, D, H/f, W/f]
      -> quantizer (``unitok.quantize``): one code per latent position (single scale, raster
         layout) or a coarse-to-fine pyramid of code maps (multi-scale residual, next-scale layout)
      -> Decoder (the mirror image) -> crop back to H x W.

``f = patch * 2 ** (len(channel_mult) - 1)`` is the stride. Any size works; the header stores
the image size in pixels, so a 333x201 image decodes to 333x201.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import register
from ..errors import ConfigError, LimitError, MediaError, TokenSequenceError
from ..layout import NextScale, Raster
from ..media import DEFAULT_LIMITS, Image
from ..modality import MediaTokenizer
from ..nn import norm2d
from .spatial import SpatialCodec, SpatialConfig, decoder_levels, encoder_levels, middle_layers

MAX_SIDE = 1 << 15   # a decoded header may not ask for a larger image than this (pixels per side)


@dataclass
class ImageTokenizerConfig(SpatialConfig):
    """The spatial network and quantizer (:class:`~unitok.image.spatial.SpatialConfig`) plus the
    layout of single-scale codes."""

    raster_group: str = "token"                 # single-scale layout: one group per "token" or per "row"

    def __post_init__(self):
        super().__post_init__()
        if self.raster_group not in ("token", "row"):
            raise ConfigError(f"image config: raster_group must be 'token' or 'row', got {self.raster_group!r}")


class Encoder(nn.Module):
    """x: [B, 3, H, W] in [-1, 1] (H, W multiples of the stride) -> latent [B, D, H/f, W/f]."""

    def __init__(self, cfg: SpatialConfig, latent_dim: int):
        super().__init__()
        widths = cfg.widths
        self.patch = cfg.patch
        self.stem = nn.Conv2d(3 * cfg.patch ** 2, widths[0], 3, padding=1)
        self.body = nn.Sequential(*encoder_levels(cfg), *middle_layers(cfg))
        self.norm_out = norm2d(cfg.norm, widths[-1])
        self.out = nn.Conv2d(widths[-1], latent_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x)
        return self.out(F.silu(self.norm_out(self.body(h))))


class Decoder(nn.Module):
    """latent [B, D, h, w] -> x [B, 3, h*f, w*f] (about [-1, 1], unclamped)."""

    def __init__(self, cfg: SpatialConfig, latent_dim: int):
        super().__init__()
        widths = cfg.widths
        self.patch = cfg.patch
        self.stem = nn.Conv2d(latent_dim, widths[-1], 3, padding=1)
        self.body = nn.Sequential(*middle_layers(cfg), *decoder_levels(cfg))
        self.norm_out = norm2d(cfg.norm, widths[0])
        self.out = nn.Conv2d(widths[0], 3 * cfg.patch ** 2, 3, padding=1)

    @property
    def last_layer(self) -> torch.Tensor:
        return self.out.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.out(F.silu(self.norm_out(self.body(self.stem(z)))))
        return F.pixel_shuffle(h, self.patch) if self.patch > 1 else h


@register("image.vqgan")
class ImageTokenizer(SpatialCodec, MediaTokenizer):
    """Image <-> codes. See the module docstring; build with ``ImageTokenizer(cfg)`` or
    ``ImageTokenizer.from_pretrained(folder)``.

    Codes (``encode`` / ``decode``, batched):
      - single scale: ``[B, h, w]`` int64;
      - multi-scale: a list over scales, coarse to fine, of ``[B, h_s, w_s]`` int64.
    ``h = ceil(H / f)``, ``w = ceil(W / f)``.
    """

    modality = "image"
    header_fields = ("height", "width")
    config_class = ImageTokenizerConfig
    limits = DEFAULT_LIMITS   # the largest picture a decoded header may ask for (max_side, max_pixels)

    def __init__(self, cfg: ImageTokenizerConfig = ImageTokenizerConfig()):
        super().__init__()
        self.cfg = cfg
        self.quantizer = self.build_quantizer(cfg)
        self.encoder = Encoder(cfg, self.quantizer.dim)
        self.decoder = Decoder(cfg, self.quantizer.dim)
        self.amp = True   # bf16 autocast for the convolutions on CUDA (quantization stays fp32)

    @property
    def spatial_config(self) -> ImageTokenizerConfig:
        return self.cfg

    def tokens(self, height: int, width: int) -> int:
        """Number of code tokens for an image of this size."""
        return sum(h * w for h, w in self.scales(height, width))

    def bits_per_pixel(self, height: int = 256, width: int = 256) -> float:
        return self.tokens(height, width) * math.log2(self.quantizer.codebook_size) / (height * width)

    # -- batched API -------------------------------------------------------------------------------

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] in [0, 1] -> unquantized latent [B, D, ceil(H/f), ceil(W/f)] (fp32)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise MediaError(f"image tokenizer expects RGB pixels [B, 3, H, W], got shape {tuple(x.shape)}; "
                             f"convert with Image.to_rgb()")
        x = self._pad_space(x.to(self.device, torch.float32)) * 2 - 1
        with self._autocast(x.device):
            return self.encoder(x).float()

    def decode_latent(self, z: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """z: [B, D, h, w] -> pixels [B, 3, H, W] in [0, 1], unclamped, cropped to ``size``."""
        with self._autocast(z.device):
            x = self.decoder(z).float()
        if size is not None:
            x = x[..., :size[0], :size[1]]
        return (x + 1) / 2

    def forward(self, x: torch.Tensor):
        """Training pass. x: [B, 3, H, W] in [0, 1] -> (reconstruction [B, 3, H, W] in about
        [0, 1], codes, quantizer aux loss [])."""
        q, maps, aux = self._quantize(self.encode_latent(x))
        return self.decode_latent(q, tuple(x.shape[-2:])), self._public(maps), aux

    @torch.no_grad()
    def encode(self, x: torch.Tensor):
        """x: [B, 3, H, W] float in [0, 1] -> codes (see the class docstring)."""
        return self._public(self._encode_maps(self.encode_latent(x)))

    @torch.no_grad()
    def codes_to_latent(self, codes, bits: int | None = None, planes: int | None = None,
                        size: tuple[int, int] | None = None) -> torch.Tensor:
        """codes -> quantized latent [B, D, h, w] (``bits``, ``planes``, ``size``: see :meth:`decode`)."""
        return self._latent(self._maps(codes), bits, planes, size)

    @torch.no_grad()
    def decode(self, codes, size: tuple[int, int] | None = None, bits: int | None = None,
               planes: int | None = None) -> torch.Tensor:
        """codes -> pixels [B, 3, H, W] in [0, 1] (clamped); ``size=(H, W)`` crops the padding
        away (default: the whole padded grid, ``h*f x w*f``).

        Lower rates from the same codes (variable rate from one encode):
          - multi-scale, with ``size``: ``codes`` may be only the first k scales (coarse to fine);
            the picture is their partial residual sum;
          - ``planes=b`` (multi-scale FSQ with 2**n levels per channel): the finest scale given is
            known only to the top b bits of each channel (``b * D`` bits a code instead of
            ``n * D``); the low bits of its ids are ignored;
          - ``bits=k`` (bitwise quantizer only): the codes are k-bit prefix codes
            (``quantizer.prefix(codes, k)``)."""
        return self.decode_latent(self.codes_to_latent(codes, bits, planes, size), size).clamp(0, 1)

    # -- MediaTokenizer ----------------------------------------------------------------------------

    def layout(self, header: dict[str, int]):
        scales = self.scales(header["height"], header["width"])
        if self.multiscale:
            return NextScale(tuple(scales), (0,) * len(scales))
        return Raster(*scales[0], 1, group=self.cfg.raster_group)

    def check_header(self, header: dict[str, int]) -> None:
        super().check_header(header)
        side = min(MAX_SIDE, self.limits.max_side)
        for name in self.header_fields:
            if header[name] > side:
                raise TokenSequenceError(f"image {name} {header[name]} is larger than {side} pixels"
                                         + (" (MediaLimits.max_side)" if side < MAX_SIDE else ""))
        pixels = header["height"] * header["width"]
        if pixels > self.limits.max_pixels:
            # decoding runs the decoder at full size: refuse what Image.open would refuse to read
            raise TokenSequenceError(f"image of {header['width']}x{header['height']} = {pixels} pixels is over the "
                                     f"limit of {self.limits.max_pixels} (MediaLimits.max_pixels)")

    def encode_item(self, item) -> tuple[dict[str, int], object]:
        if not isinstance(item, Image):
            raise MediaError(f"the image tokenizer takes an Image, got {type(item).__name__}")
        header = {"height": item.height, "width": item.width}
        try:
            self.check_header(header)   # what decode would refuse is not encoded either
        except TokenSequenceError as e:
            kind = LimitError if "MediaLimits." in e.reason else MediaError   # a size limit, or an impossible size
            raise kind(f"cannot tokenize this image: {e.reason}") from None
        maps = self._maps(self.encode(item.to_rgb().to_float()[None]))
        if self.multiscale:
            return header, [c[0].cpu().numpy() for c in maps]
        return header, maps[0].cpu().numpy()        # [1, h, w]: Raster's (levels, h, w)

    def decode_item(self, header: dict[str, int], codes) -> Image:
        # NextScale gives a list of [h_s, w_s] maps, Raster one [1, h, w] array (its level axis)
        maps = [np.asarray(c)[None] for c in codes] if self.multiscale else [np.asarray(codes)]
        x = self.decode(self._public(maps), (header["height"], header["width"]))[0]
        return Image((x * 255).round().to(torch.uint8).cpu().contiguous())
