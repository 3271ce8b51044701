"""The video tokenizer: a causal (2+1)-D convolutional encoder / quantizer / decoder.

    frames [B, T, 3, H, W] in [0, 1]
      -> pad: space to a multiple of the stride (replicate the border), time to ``1 + r*k``
         frames (repeat the last frame); ``r = temporal`` (4)
      -> Encoder: per frame, the image encoder's 2-D layers (space-to-depth stem, residual
         blocks, strided downsampling), each level followed by causal temporal blocks;
         TimeToDepth at the lowest resolution (the first frame alone, then chunks of r frames);
         per latent frame the image encoder's middle blocks, a causal temporal block and the
         output conv -> latent [B, 1 + k, D, H/f, W/f]
      -> quantizer (``unitok.quantize``, the image family): every latent frame is quantized like
         an image: one code map (single scale) or a coarse-to-fine pyramid (multi-scale residual)
      -> Decoder: the mirror image (DepthToTime after the middle blocks) -> crop to T x H x W.

So a one-frame video is one latent frame and ``1 + r*k`` frames are ``1 + k`` latent frames.
The token layout is ``FrameScale``: one group per (latent frame, scale), frames in time order,
scales coarse to fine (next-frame-and-scale prediction). The header carries the frame count, the
size in pixels and the frame rate as a fraction (``fps_num / fps_den``), so all of them
round-trip exactly.

Why (2+1)-D rather than full 3-D kernels: a causal 3x3x3 conv costs three 3x3 2-D convs; this
model spends its budget on per-frame 2-D layers (the same layers as the image tokenizer, so its
weights inflate into them as they are) plus cheap temporal convs (kernel 3 in time, 1x1 in
space: a third of a 3x3 conv each) and a learned temporal down/upsampling. Motion is modelled by
the stack: spatial 3x3 layers between temporal mixes see displaced content. On a 2-core CPU
that is the difference between training and not training.

Inflation (``VideoTokenizer.from_image``): every 2-D layer, the quantizer and the output convs are
copied from an image tokenizer; the temporal blocks start as the identity, TimeToDepth as the
mean of a chunk (exactly the frame itself for the first frame and for still chunks) and
DepthToTime as a copy. An inflated, not fine-tuned model therefore gives a one-frame video
exactly the codes of the image tokenizer (and its pixels up to float rounding, < 1e-6).
Fine-tuning changes the shared layers, so afterwards a one-frame video and the image tokenizer no
longer give the same codes (after 287 fine-tuning steps: 39% of the codes of held-out 256x256
pictures are identical); the fine-tuned model's first frame keeps the image tokenizer's quality.

Long videos: the model is causal in time, so ``encode`` / ``decode`` run over windows of whole
chunks (``model.window_pixels`` frame-pixels at a time, at least one chunk) carrying each temporal
layer's last input frames from window to window; memory is bounded by the window, not the video.
The codes equal a one-shot encode up to float rounding: convolutions over a different number of
frames may round the last bit differently, which can flip a code only where the latent lies on a
quantization boundary (measured: identical codes for a 41-frame real clip encoded one chunk per
window and in one go). Measured with the default width at 1280x720 (one chunk per window): 1.7
GB peak process memory to encode 9 frames, 1.8 GB for 33; decoding adds only the uint8 output.
Spatial tiling is not implemented: a window holds at least one chunk of whole frames, so memory
grows with the frame area (about 2.3x that at 1080p).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import register
from ..errors import ConfigError, LimitError, MediaError, TokenSequenceError
from ..image.spatial import SpatialCodec, SpatialConfig, decoder_levels, encoder_levels, middle_layers, spatial_part
from ..layout import FrameScale
from ..media import DEFAULT_LIMITS, Video
from ..modality import MediaTokenizer
from ..nn import norm2d
from ..nn.video import DepthToTime, TemporalBlock, TimeToDepth, per_frame
from ..space import MAX_DIM

MAX_SIDE = 1 << 15   # a decoded header may not ask for larger frames than this (pixels per side)


@dataclass
class VideoTokenizerConfig:
    # the 2-D network and quantizer, as an image tokenizer's (inflation copies these)
    spatial: SpatialConfig = field(default_factory=SpatialConfig)
    temporal: int = 4                           # frames per latent frame after the first
    temporal_kernel: int = 3                    # frames each causal temporal conv sees
    temporal_blocks: int = 1                    # temporal blocks after each level's residual blocks
    mid_temporal_blocks: int = 1                # temporal blocks over latent frames (each side)
    eof: bool = False                           # end each latent frame with <|eof|> in the layout

    def __post_init__(self):
        if isinstance(self.spatial, dict):
            from ..checkpoint import config_from_dict

            self.spatial = config_from_dict(SpatialConfig, self.spatial, source="video config: spatial")
        if self.temporal < 1 or self.temporal_kernel < 1:
            raise ConfigError(f"video config: temporal and temporal_kernel must be >= 1, got {self.temporal} "
                              f"and {self.temporal_kernel}")
        if self.temporal_blocks < 0 or self.mid_temporal_blocks < 0:
            raise ConfigError("video config: temporal_blocks and mid_temporal_blocks must be >= 0")

    @classmethod
    def upgrade_config(cls, data: dict) -> dict:
        """The ``config.json`` form of this config from the flat one unitok wrote before the
        spatial part was nested (``{"channels": ..., "quantizer": ..., "temporal": ...}``)."""
        flat = {f.name for f in fields(SpatialConfig)} & set(data)
        if not flat or "spatial" in data:
            return data
        return {**{k: v for k, v in data.items() if k not in flat}, "spatial": {k: data[k] for k in flat}}

    @property
    def downsample(self) -> int:
        """Pixels per latent position along each side."""
        return self.spatial.downsample


TEMPORAL_LAYERS = (TemporalBlock, TimeToDepth, DepthToTime)   # the layers inflation does not copy


def _apply(layers: nn.ModuleList, x: torch.Tensor, state: dict) -> torch.Tensor:
    """Run a mixed list of 2-D layers (per frame) and temporal layers (with ``state``)."""
    for m in layers:
        x = m(x, state) if isinstance(m, TEMPORAL_LAYERS) else per_frame(m, x)
    return x


def _temporal_blocks(cfg: VideoTokenizerConfig, width: int, n: int) -> list[nn.Module]:
    return [TemporalBlock(width, cfg.temporal_kernel, cfg.spatial.norm) for _ in range(n)]


def _spatial(layers: nn.ModuleList) -> list[nn.Module]:
    return [m for m in layers if not isinstance(m, TEMPORAL_LAYERS)]


class Encoder(nn.Module):
    """x: [B, T, 3, H, W] in [-1, 1] (``T = 1 + r*k`` at the start of a stream, ``r*k`` after;
    H, W multiples of the stride) -> latent [B, T', D, H/f, W/f]."""

    def __init__(self, cfg: VideoTokenizerConfig, latent_dim: int):
        super().__init__()
        sp = cfg.spatial
        widths = sp.widths
        self.patch = sp.patch
        self.stem = nn.Conv2d(3 * sp.patch ** 2, widths[0], 3, padding=1)
        self.frames = nn.ModuleList(encoder_levels(sp, lambda w: _temporal_blocks(cfg, w, cfg.temporal_blocks)))
        self.to_latent_frames = TimeToDepth(widths[-1], cfg.temporal)
        self.mid = nn.ModuleList(middle_layers(sp) + _temporal_blocks(cfg, widths[-1], cfg.mid_temporal_blocks))
        self.norm_out = norm2d(sp.norm, widths[-1])
        self.out = nn.Conv2d(widths[-1], latent_dim, 3, padding=1)

    def spatial_layers(self) -> list[nn.Module]:
        """The 2-D layers in the order of the image encoder's ``body``."""
        return _spatial(self.frames) + _spatial(self.mid)

    def forward(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        h = per_frame(self.stem, F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x)
        h = _apply(self.frames, h, state)
        h = _apply(self.mid, self.to_latent_frames(h, state), state)
        return per_frame(self.out, F.silu(per_frame(self.norm_out, h)))


class Decoder(nn.Module):
    """latent [B, T', D, h, w] -> frames [B, T, 3, h*f, w*f] (about [-1, 1], unclamped);
    ``T = 1 + r*(T'-1)`` at the start of a stream, ``r*T'`` after."""

    def __init__(self, cfg: VideoTokenizerConfig, latent_dim: int):
        super().__init__()
        sp = cfg.spatial
        widths = sp.widths
        self.patch = sp.patch
        self.stem = nn.Conv2d(latent_dim, widths[-1], 3, padding=1)
        temporal = _temporal_blocks(cfg, widths[-1], cfg.mid_temporal_blocks)
        self.mid = nn.ModuleList(temporal + middle_layers(sp))
        self.to_frames = DepthToTime(widths[-1], cfg.temporal)
        self.frames = nn.ModuleList(decoder_levels(sp, lambda w: _temporal_blocks(cfg, w, cfg.temporal_blocks)))
        self.norm_out = norm2d(sp.norm, widths[0])
        self.out = nn.Conv2d(widths[0], 3 * sp.patch ** 2, 3, padding=1)

    def spatial_layers(self) -> list[nn.Module]:
        """The 2-D layers in the order of the image decoder's ``body``."""
        return _spatial(self.mid) + _spatial(self.frames)

    @property
    def last_layer(self) -> torch.Tensor:
        return self.out.weight

    def forward(self, z: torch.Tensor, state: dict) -> torch.Tensor:
        h = _apply(self.mid, per_frame(self.stem, z), state)
        h = _apply(self.frames, self.to_frames(h, state), state)
        h = per_frame(self.out, F.silu(per_frame(self.norm_out, h)))
        return F.pixel_shuffle(h, self.patch) if self.patch > 1 else h


@register("video.causal")
class VideoTokenizer(SpatialCodec, MediaTokenizer):
    """Video <-> codes. See the module docstring; build with ``VideoTokenizer(cfg)``,
    ``VideoTokenizer.from_pretrained(folder)`` or ``VideoTokenizer.from_image(image_tokenizer)``.

    Codes (``encode`` / ``decode``, batched) have a latent-frame axis after the batch:
      - single scale: ``[B, T', h, w]`` int64;
      - multi-scale: a list over scales, coarse to fine, of ``[B, T', h_s, w_s]`` int64.
    ``T' = 1 + ceil((T - 1) / temporal)``, ``h = ceil(H / f)``, ``w = ceil(W / f)``.
    """

    modality = "video"
    header_fields = ("frames", "height", "width", "fps_num", "fps_den")
    config_class = VideoTokenizerConfig
    limits = DEFAULT_LIMITS   # the largest video a header may ask for (frames, pixels, seconds, bytes)

    def __init__(self, cfg: VideoTokenizerConfig = VideoTokenizerConfig()):
        super().__init__()
        self.cfg = cfg
        self.quantizer = self.build_quantizer(cfg.spatial)
        self.encoder = Encoder(cfg, self.quantizer.dim)
        self.decoder = Decoder(cfg, self.quantizer.dim)
        self.temporal = cfg.temporal          # frames per latent frame after the first
        self.amp = True   # bf16 autocast for the convolutions on CUDA (quantization stays fp32)
        self.window_pixels = 1 << 22   # frames x height x width encoded / decoded at once (long videos)

    @property
    def spatial_config(self) -> SpatialConfig:
        return self.cfg.spatial

    # -- inflation ---------------------------------------------------------------------------------

    @classmethod
    def from_image(cls, image, **temporal) -> "VideoTokenizer":
        """A video tokenizer inflated from an ``ImageTokenizer`` (its spatial config, plus the
        temporal options given as keywords, e.g. ``temporal=4``); see :meth:`inflate_from`."""
        model = cls(VideoTokenizerConfig(spatial=spatial_part(image.cfg), **temporal)).to(image.device)
        return model.inflate_from(image)

    @torch.no_grad()
    def inflate_from(self, image) -> "VideoTokenizer":
        """Copy an image tokenizer's weights into this model's 2-D layers and quantizer (the
        temporal layers keep their identity initialisation); returns ``self``."""
        theirs_cfg, mine_cfg = spatial_part(image.cfg), spatial_part(self.cfg.spatial)
        for f in fields(SpatialConfig):
            theirs, mine = getattr(theirs_cfg, f.name), getattr(mine_cfg, f.name)
            if theirs != mine:
                raise ConfigError(f"cannot inflate: the image tokenizer's {f.name} is {theirs!r}, this video "
                                  f"config has spatial.{f.name} = {mine!r}")
        pairs = [(self.quantizer, image.quantizer)]
        for mine, theirs in ((self.encoder, image.encoder), (self.decoder, image.decoder)):
            pairs += [(mine.stem, theirs.stem), (mine.norm_out, theirs.norm_out), (mine.out, theirs.out)]
            pairs += list(zip(mine.spatial_layers(), list(theirs.body), strict=True))
        for mine, theirs in pairs:
            mine.load_state_dict(theirs.state_dict())
        return self

    # -- properties --------------------------------------------------------------------------------

    def latent_frames(self, frames: int) -> int:
        """Latent frames of a video of ``frames`` frames: ``1 + ceil((frames - 1) / temporal)``."""
        return 1 + math.ceil((frames - 1) / self.temporal)

    def tokens(self, frames: int, height: int, width: int) -> int:
        """Code tokens of a video (``<|eof|>`` tokens included when the layout has them)."""
        per_frame_tokens = sum(h * w for h, w in self.scales(height, width)) + self.cfg.eof
        return self.latent_frames(frames) * per_frame_tokens

    def bits_per_pixel(self, frames: int = 17, height: int = 256, width: int = 256) -> float:
        codes = self.tokens(frames, height, width) - self.cfg.eof * self.latent_frames(frames)
        return codes * math.log2(self.quantizer.codebook_size) / (frames * height * width)

    def window(self, height: int, width: int) -> int:
        """Latent frames per encode / decode window for frames of this size."""
        h, w = self.grid(height, width)
        return max(1, self.window_pixels // (self.temporal * h * w * self.downsample ** 2))

    # -- batched API -------------------------------------------------------------------------------

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[2] != 3:
            raise MediaError(f"video tokenizer expects RGB frames [B, T, 3, H, W], got shape {tuple(x.shape)}")
        if min(x.shape) < 1:
            raise MediaError(f"video is empty: shape {tuple(x.shape)}")

    def _pad(self, x: torch.Tensor, start: bool) -> torch.Tensor:
        """Frames [B, T, 3, H, W] -> float in [-1, 1] on the model's device, padded to the stride
        in space and to whole chunks in time (``1 + r*k`` frames at the start of a stream)."""
        x = x.to(self.device)
        x = self._pad_space(x.float() / 255 if x.dtype == torch.uint8 else x.float())
        pt = -(x.shape[1] - start) % self.temporal
        if pt:
            x = torch.cat([x, x[:, -1:].expand(-1, pt, -1, -1, -1)], 1)
        return x * 2 - 1

    def encode_latent(self, x: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        """x: [B, T, 3, H, W] float in [0, 1] (or uint8) -> unquantized latent [B, T', D, h, w]
        (fp32). ``state``: carried between consecutive windows of one video (see the module
        docstring); None encodes ``x`` as a whole video."""
        self._check(x)
        state = {} if state is None else state
        x = self._pad(x, start=not state)
        with self._autocast(x.device):
            return self.encoder(x, state).float()

    def decode_latent(self, z: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        """z: [B, T', D, h, w] -> frames [B, T, 3, h*f, w*f] in about [0, 1] (unclamped, uncropped)."""
        state = {} if state is None else state
        with self._autocast(z.device):
            x = self.decoder(z, state).float()
        return (x + 1) / 2

    def quantize(self, z: torch.Tensor):
        """z: [B, T', D, h, w] -> (quantized [B, T', D, h, w], codes, aux loss []); every latent
        frame is quantized on its own, like an image."""
        B, T = z.shape[:2]
        q, maps, aux = self._quantize(z.flatten(0, 1))
        return q.unflatten(0, (B, T)), self._public([m.unflatten(0, (B, T)) for m in maps]), aux

    def forward(self, x: torch.Tensor):
        """Training pass. x: [B, T, 3, H, W] in [0, 1] -> (reconstruction [B, T, 3, H, W] in
        about [0, 1], codes, quantizer aux loss [])."""
        q, codes, aux = self.quantize(self.encode_latent(x))
        y = self.decode_latent(q)
        return y[:, :x.shape[1], :, :x.shape[-2], :x.shape[-1]], codes, aux

    def _encode_frames(self, x: torch.Tensor, state: dict) -> list[torch.Tensor]:
        """x: [B, t, 3, H, W] -> maps of its latent frames, [B, t', h_s, w_s] each."""
        z = self.encode_latent(x, state)
        return [m.unflatten(0, z.shape[:2]) for m in self._encode_maps(z.flatten(0, 1))]

    @torch.no_grad()
    def encode(self, x: torch.Tensor):
        """x: [B, T, 3, H, W] float in [0, 1] or uint8 -> codes (see the class docstring).
        Long videos are encoded window by window (bounded memory)."""
        self._check(x)
        T = x.shape[1]
        n = self.window(x.shape[-2], x.shape[-1]) * self.temporal
        state: dict = {}
        out = []
        start, stop = 0, min(T, 1 + n)
        while start < T:
            out.append(self._encode_frames(x[:, start:stop], state))
            self.report_progress(stop, T, "frame")
            start, stop = stop, min(T, stop + n)
        return self._public([torch.cat(parts, 1) for parts in zip(*out)])

    @torch.no_grad()
    def codes_to_latent(self, codes) -> torch.Tensor:
        """codes -> quantized latent [B, T', D, h, w]."""
        return self._maps_to_latent(self._maps(codes))

    def _maps_to_latent(self, maps: list[torch.Tensor], bits: int | None = None) -> torch.Tensor:
        """maps of latent frames ([B, T', h_s, w_s] each) -> quantized latent [B, T', D, h, w]
        (``bits``: see :meth:`decode`)."""
        B, T = maps[-1].shape[:2]
        return self._latent([m.flatten(0, 1) for m in maps], bits).unflatten(0, (B, T))

    @torch.no_grad()
    def _decode_windows(self, codes, frames: int | None, size: tuple[int, int] | None, bits: int | None = None):
        """Yield decoded windows [B, t, 3, H, W] (clamped, cropped), consecutive in time."""
        maps = self._maps(codes)
        full = maps[-1]
        T_lat = full.shape[1]
        f = self.downsample
        H, W = size if size is not None else (full.shape[-2] * f, full.shape[-1] * f)
        total = 1 + self.temporal * (T_lat - 1) if frames is None else frames
        n = self.window(H, W)
        state: dict = {}
        done = 0
        for a in range(0, T_lat, n):
            x = self.decode_latent(self._maps_to_latent([m[:, a:a + n] for m in maps], bits), state)
            x = x[:, :max(0, total - done), :, :H, :W].clamp(0, 1)
            done += x.shape[1]
            self.report_progress(done, total, "frame")
            if x.shape[1]:
                yield x

    @torch.no_grad()
    def decode(self, codes, frames: int | None = None, size: tuple[int, int] | None = None,
               bits: int | None = None) -> torch.Tensor:
        """codes -> frames [B, T, 3, H, W] in [0, 1] (clamped). ``frames`` and ``size=(H, W)`` crop
        the padding away (default: every decoded frame, ``1 + r*(T'-1)``, of the padded grid).
        Long token streams are decoded window by window. ``bits=k`` (bitwise quantizer only): the
        codes are k-bit prefix codes (``quantizer.prefix(codes, k)``), as for images."""
        return torch.cat(list(self._decode_windows(codes, frames, size, bits)), 1)

    # -- MediaTokenizer ----------------------------------------------------------------------------

    def layout(self, header: dict[str, int]) -> FrameScale:
        scales = self.scales(header["height"], header["width"])
        return FrameScale(self.latent_frames(header["frames"]), tuple(scales), (0,) * len(scales), eof=self.cfg.eof)

    def check_header(self, header: dict[str, int]) -> None:
        """Refuse a header that asks for more than ``limits`` (MediaLimits) allow, before anything is
        decoded: a generated header may ask for any size."""
        super().check_header(header)
        lim = self.limits
        side = min(MAX_SIDE, lim.max_side)
        for name in ("height", "width"):
            if header[name] > side:
                raise TokenSequenceError(f"video {name} {header[name]} is larger than {side} pixels"
                                         + (" (MediaLimits.max_side)" if side < MAX_SIDE else ""))
        T, H, W = header["frames"], header["height"], header["width"]
        checks = [
            (T > lim.max_frames, f"{T} frames, over the limit of {lim.max_frames} (MediaLimits.max_frames)"),
            (H * W > lim.max_pixels, f"frames of {W}x{H} = {H * W} pixels, over the limit of {lim.max_pixels} "
                                     f"(MediaLimits.max_pixels)"),
            (header["fps_den"] * T > lim.max_seconds * header["fps_num"],
             f"{T} frames at {header['fps_num']}/{header['fps_den']} fps, longer than {lim.max_seconds:g} seconds "
             f"(MediaLimits.max_seconds)"),
            (T * 3 * H * W > lim.max_decoded_bytes, f"{T}x3x{H}x{W} decoded bytes, over the limit of "
                                                    f"{lim.max_decoded_bytes} (MediaLimits.max_decoded_bytes)"),
        ]
        for bad, why in checks:
            if bad:
                raise TokenSequenceError(f"video header asks for {why}")

    def encode_item(self, item) -> tuple[dict[str, int], object]:
        """Video -> (header, codes: list over latent frames of lists over scales of [h_s, w_s]).
        The sound track is not part of the video segment (``UniTokenizer`` gives it its own
        audio segment when the suite has an audio tokenizer)."""
        if not isinstance(item, Video):
            raise MediaError(f"the video tokenizer takes a Video, got {type(item).__name__}")
        fps = item.fps
        if fps.numerator > MAX_DIM or fps.denominator > MAX_DIM:
            fps = fps.limit_denominator(1000)
        if not 0 < fps.numerator <= MAX_DIM:
            raise MediaError(f"frame rate {item.fps} fps cannot be written in a video header (at most {MAX_DIM})")
        header = {"frames": item.num_frames, "height": item.height, "width": item.width,
                  "fps_num": fps.numerator, "fps_den": fps.denominator}
        try:
            self.check_header(header)   # what decode would refuse is not encoded either
        except TokenSequenceError as e:
            kind = LimitError if "MediaLimits." in str(e) else MediaError   # a size limit, or an impossible size
            raise kind(str(e).replace("video header asks for", "the video has")) from None
        per_scale = [c[0].cpu().numpy() for c in self._maps(self.encode(item.frames[None]))]
        return header, [[s[t] for s in per_scale] for t in range(per_scale[0].shape[0])]

    def decode_item(self, header: dict[str, int], codes) -> Video:
        """(header, codes as ``encode_item`` gives them) -> Video of the header's size, frame
        count and frame rate (decoded window by window into a uint8 buffer)."""
        per_scale = [torch.as_tensor(np.stack([np.asarray(frame[s]) for frame in codes]))[None]
                     for s in range(len(codes[0]))]
        batch = self._public(per_scale)
        T, H, W = header["frames"], header["height"], header["width"]
        out = torch.empty(T, 3, H, W, dtype=torch.uint8)
        t = 0
        for x in self._decode_windows(batch, T, (H, W)):
            out[t:t + x.shape[1]] = (x[0] * 255).round().to(torch.uint8).cpu()
            t += x.shape[1]
        return Video(out, Fraction(header["fps_num"], header["fps_den"]))
