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

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import register
from ..errors import ConfigError, MediaError, TokenSequenceError
from ..layout import NextScale, Raster
from ..media import DEFAULT_LIMITS, Image
from ..modality import MediaTokenizer
from ..nn import AttnBlock, Downsample, ResBlock, Upsample, norm2d
from ..quantize import MultiScaleQuantizer, QuantizerConfig, build_quantizer

MAX_SIDE = 1 << 15   # a decoded header may not ask for a larger image than this (pixels per side)


@dataclass
class ImageTokenizerConfig:
    channels: int = 64                          # width of the first level
    channel_mult: tuple[int, ...] = (1, 2)      # width multiplier per level; 2x downsampling between levels
    patch: int = 4                              # space-to-depth stem: the network starts at H/patch
    enc_blocks: int = 1                         # residual blocks per encoder level
    dec_blocks: int = 2                         # residual blocks per decoder level
    mid_blocks: int = 1                         # extra residual blocks at the lowest resolution (each side)
    attention: bool = False                     # self-attention at the lowest resolution
    norm: str = "none"                          # "group" (VQGAN) or "none" (faster on CPU)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    raster_group: str = "token"                 # single-scale layout: one group per "token" or per "row"

    def __post_init__(self):
        if self.channels < 1 or not self.channel_mult or min(self.channel_mult) < 1:
            raise ConfigError("image config: channels and every channel_mult entry must be >= 1")
        if self.patch < 1:
            raise ConfigError(f"image config: patch must be >= 1, got {self.patch}")
        if self.norm not in ("group", "none"):
            raise ConfigError(f"image config: norm must be 'group' or 'none', got {self.norm!r}")
        if self.raster_group not in ("token", "row"):
            raise ConfigError(f"image config: raster_group must be 'token' or 'row', got {self.raster_group!r}")
        if isinstance(self.quantizer, dict):
            from ..checkpoint import config_from_dict

            self.quantizer = config_from_dict(QuantizerConfig, self.quantizer, source="image config: quantizer")

    @property
    def downsample(self) -> int:
        """Pixels per latent position along each side."""
        return self.patch * 2 ** (len(self.channel_mult) - 1)


class Encoder(nn.Module):
    """x: [B, 3, H, W] in [-1, 1] (H, W multiples of the stride) -> latent [B, D, H/f, W/f]."""

    def __init__(self, cfg: ImageTokenizerConfig, latent_dim: int):
        super().__init__()
        widths = [cfg.channels * m for m in cfg.channel_mult]
        self.patch = cfg.patch
        self.stem = nn.Conv2d(3 * cfg.patch ** 2, widths[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, w in enumerate(widths):
            layers += [ResBlock(w, w, cfg.norm) for _ in range(cfg.enc_blocks)]
            if i + 1 < len(widths):
                layers.append(Downsample(w, widths[i + 1]))
        layers += [ResBlock(widths[-1], widths[-1], cfg.norm) for _ in range(cfg.mid_blocks)]
        if cfg.attention:
            layers.append(AttnBlock(widths[-1], cfg.norm))
        self.body = nn.Sequential(*layers)
        self.norm_out = norm2d(cfg.norm, widths[-1])
        self.out = nn.Conv2d(widths[-1], latent_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x)
        return self.out(F.silu(self.norm_out(self.body(h))))


class Decoder(nn.Module):
    """latent [B, D, h, w] -> x [B, 3, h*f, w*f] (about [-1, 1], unclamped)."""

    def __init__(self, cfg: ImageTokenizerConfig, latent_dim: int):
        super().__init__()
        widths = [cfg.channels * m for m in cfg.channel_mult]
        self.patch = cfg.patch
        self.stem = nn.Conv2d(latent_dim, widths[-1], 3, padding=1)
        layers: list[nn.Module] = [ResBlock(widths[-1], widths[-1], cfg.norm) for _ in range(cfg.mid_blocks)]
        if cfg.attention:
            layers.append(AttnBlock(widths[-1], cfg.norm))
        for i in reversed(range(len(widths))):
            layers += [ResBlock(widths[i], widths[i], cfg.norm) for _ in range(cfg.dec_blocks)]
            if i > 0:
                layers.append(Upsample(widths[i], widths[i - 1]))
        self.body = nn.Sequential(*layers)
        self.norm_out = norm2d(cfg.norm, widths[0])
        self.out = nn.Conv2d(widths[0], 3 * cfg.patch ** 2, 3, padding=1)

    @property
    def last_layer(self) -> torch.Tensor:
        return self.out.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.out(F.silu(self.norm_out(self.body(self.stem(z)))))
        return F.pixel_shuffle(h, self.patch) if self.patch > 1 else h


@register("image.vqgan")
class ImageTokenizer(MediaTokenizer):
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
        self.quantizer = build_quantizer(cfg.quantizer)
        self.encoder = Encoder(cfg, self.quantizer.dim)
        self.decoder = Decoder(cfg, self.quantizer.dim)
        self.amp = True   # bf16 autocast for the convolutions on CUDA (quantization stays fp32)

    # -- properties --------------------------------------------------------------------------------

    @property
    def multiscale(self) -> bool:
        return isinstance(self.quantizer, MultiScaleQuantizer)

    @property
    def codebook_sizes(self) -> list[int]:
        return self.quantizer.codebook_sizes

    @property
    def downsample(self) -> int:
        return self.cfg.downsample

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Latent grid of an image of ``height x width`` pixels."""
        f = self.downsample
        return math.ceil(height / f), math.ceil(width / f)

    def scales(self, height: int, width: int) -> list[tuple[int, int]]:
        """Code map sizes of an image of ``height x width`` pixels, coarse to fine."""
        h, w = self.grid(height, width)
        return self.quantizer.schedule(h, w) if self.multiscale else [(h, w)]

    def tokens(self, height: int, width: int) -> int:
        """Number of code tokens for an image of this size."""
        return sum(h * w for h, w in self.scales(height, width))

    def bits_per_pixel(self, height: int = 256, width: int = 256) -> float:
        return self.tokens(height, width) * math.log2(self.quantizer.codebook_size) / (height * width)

    # -- batched API -------------------------------------------------------------------------------

    def _autocast(self, device: torch.device):
        if device.type == "cuda" and self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise MediaError(f"image tokenizer expects RGB pixels [B, 3, H, W], got shape {tuple(x.shape)}; "
                             f"convert with Image.to_rgb()")
        f = self.downsample
        ph, pw = -x.shape[-2] % f, -x.shape[-1] % f
        # replicate, not zeros: a black border would cost codes and bleed into the picture
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] in [0, 1] -> unquantized latent [B, D, ceil(H/f), ceil(W/f)] (fp32)."""
        x = self._pad(x.to(self.device, torch.float32)) * 2 - 1
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
        z = self.encode_latent(x)
        q, codes, aux = self.quantizer(z)
        return self.decode_latent(q, tuple(x.shape[-2:])), codes, aux

    @torch.no_grad()
    def encode(self, x: torch.Tensor):
        """x: [B, 3, H, W] float in [0, 1] -> codes (see the class docstring)."""
        _, codes, _ = self.quantizer(self.encode_latent(x))
        return codes

    @torch.no_grad()
    def codes_to_latent(self, codes) -> torch.Tensor:
        """codes -> quantized latent [B, D, h, w]."""
        if self.multiscale:
            codes = [torch.as_tensor(c, device=self.device).long() for c in codes]
            return self.quantizer.indices_to_codes(codes, tuple(codes[-1].shape[-2:]))
        return self.quantizer.indices_to_codes(torch.as_tensor(codes, device=self.device).long())

    @torch.no_grad()
    def decode(self, codes, size: tuple[int, int] | None = None) -> torch.Tensor:
        """codes -> pixels [B, 3, H, W] in [0, 1] (clamped); ``size=(H, W)`` crops the padding
        away (default: the whole padded grid, ``h*f x w*f``)."""
        return self.decode_latent(self.codes_to_latent(codes), size).clamp(0, 1)

    # -- MediaTokenizer ----------------------------------------------------------------------------

    def layout(self, header: dict[str, int]):
        h, w = self.grid(header["height"], header["width"])
        if self.multiscale:
            scales = self.quantizer.schedule(h, w)
            return NextScale(tuple(scales), (0,) * len(scales))
        return Raster(h, w, 1, group=self.cfg.raster_group)

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
            raise MediaError(f"cannot tokenize this image: {e.reason}") from None
        rgb = item.to_rgb()
        codes = self.encode(rgb.to_float()[None])
        if self.multiscale:
            return header, [c[0].cpu().numpy() for c in codes]
        return header, codes.cpu().numpy()          # [1, h, w]: Raster's (levels, h, w)

    def decode_item(self, header: dict[str, int], codes) -> Image:
        if self.multiscale:
            batch = [torch.as_tensor(np.asarray(c))[None] for c in codes]
        else:
            batch = torch.as_tensor(np.asarray(codes))            # [1, h, w]
        x = self.decode(batch, (header["height"], header["width"]))[0]
        return Image((x * 255).round().to(torch.uint8).cpu().contiguous())
