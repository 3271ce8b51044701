"""``Image``: the still-picture value type, reading (header sizes checked before decoding; png /
jpeg / webp through torchvision, everything else through PyAV) and writing (png, jpeg, webp, gif,
bmp)."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
import torchvision.io as tvio

from ..errors import MediaError
from ._av import av, lib_errors
from .convert import _as_tensor, _channels_first, _composite, _frame_has_alpha, _to_uint8
from .inputs import (_USE, Source, _decoder_of, _first_video_stream, _holds, _Input,
                     _looks_like_text, _open_container, _resolve, _sniff_image, _why)
from .limits import DEFAULT_LIMITS, MediaLimits, _check_picture_size
from .output import _output_path, _write_bytes, _write_gif


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker == 0xDA:  # scan data before any frame header: malformed
            return None
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                return None
            height, width = struct.unpack_from(">HH", data, i + 5)
            return width, height
        i += 2 + struct.unpack_from(">H", data, i + 2)[0]
    return None


def _image_header_size(fmt: str, data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` as the file's header declares it, read without decoding anything."""
    try:
        if fmt == "png":
            if data[12:16] != b"IHDR":
                return None
            return struct.unpack_from(">II", data, 16)
        if fmt == "gif":
            return struct.unpack_from("<HH", data, 6)
        if fmt == "jpeg":
            return _jpeg_size(data)
        if fmt == "webp":
            chunk = data[12:16]
            if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
                w, h = struct.unpack_from("<HH", data, 26)
                return w & 0x3FFF, h & 0x3FFF
            if chunk == b"VP8L" and data[20] == 0x2F:
                bits = struct.unpack_from("<I", data, 21)[0]
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8X":
                return (1 + int.from_bytes(data[24:27], "little"),
                        1 + int.from_bytes(data[27:30], "little"))
            return None
        if fmt == "bmp":
            if struct.unpack_from("<I", data, 14)[0] == 12:  # OS/2 header: 16-bit sizes
                return struct.unpack_from("<HH", data, 18)
            w, h = struct.unpack_from("<ii", data, 18)
            return w, abs(h)  # negative height means top-down rows
    except (struct.error, IndexError):
        return None
    return None


def _frame_is_gray(fmt: av.VideoFormat) -> bool:
    return not fmt.has_palette and sum(1 for c in fmt.components if not c.is_alpha) == 1


def _still_frame_to_pixels(frame: av.VideoFrame) -> torch.Tensor:
    """A decoded picture -> ``[C, H, W]`` uint8, keeping gray as 1 channel and real alpha as 4."""
    fmt = frame.format
    if _frame_has_alpha(fmt):
        hwc = frame.to_ndarray(format="rgba")
        if (hwc[..., 3] == 255).all():  # an alpha plane that is fully opaque carries nothing
            hwc = hwc[..., :3]
    elif _frame_is_gray(fmt):
        hwc = frame.to_ndarray(format="gray")[..., None]
    else:
        hwc = frame.to_ndarray(format="rgb24")
    return torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1)))


def _encode_picture(codec: str, hwc: np.ndarray, src_format: str, pix_fmt: str,
                    options: dict[str, str] | None = None) -> bytes:
    """Encode one ``[H, W, C]`` uint8 picture with a still-image codec; returns the file bytes."""
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height = hwc.shape[1], hwc.shape[0]
    ctx.pix_fmt = pix_fmt
    ctx.time_base = Fraction(1, 1)
    if options:
        ctx.options = options
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(hwc), format=src_format)
    frame = frame.reformat(format=pix_fmt)
    packets = ctx.encode(frame) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)


_IMAGE_WRITERS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".gif": "gif",
                  ".bmp": "bmp"}


@dataclass(frozen=True, eq=False)
class Image:
    """A still picture.

    Attributes:
        pixels: ``[C, H, W]`` uint8; ``C`` is 1 (gray), 3 (RGB) or 4 (RGBA, straight alpha).
    """

    pixels: torch.Tensor

    def __post_init__(self):
        p = self.pixels
        if not isinstance(p, torch.Tensor):
            raise MediaError(f"Image.pixels must be a torch.Tensor, got {type(p).__name__}; "
                             f"use Image.from_array for numpy arrays")
        if p.dtype != torch.uint8:
            raise MediaError(f"Image.pixels must be uint8, got {p.dtype}; use Image.from_array "
                             f"to convert floats in [0, 1]")
        if p.ndim != 3 or p.shape[0] not in (1, 3, 4):
            raise MediaError(f"Image.pixels must be [C, H, W] with C in (1, 3, 4), got shape "
                             f"{tuple(p.shape)}")
        if p.shape[1] == 0 or p.shape[2] == 0:
            raise MediaError(f"Image has an empty size {p.shape[2]}x{p.shape[1]}")

    @property
    def channels(self) -> int:
        return self.pixels.shape[0]

    @property
    def height(self) -> int:
        return self.pixels.shape[1]

    @property
    def width(self) -> int:
        return self.pixels.shape[2]

    def __repr__(self) -> str:
        return f"Image({self.channels}x{self.height}x{self.width} uint8)"

    # -- constructors --

    @classmethod
    def from_array(cls, x, *, channels_last: bool | None = None) -> "Image":
        """An image from a numpy array or tensor.

        Args:
            x: ``[H, W]`` (gray), ``[H, W, C]`` or ``[C, H, W]`` with ``C`` in (1, 3, 4); uint8
                (or any integer dtype with values 0..255), or float in [0, 1].
            channels_last: where the channel axis is; by default it is inferred from the shape,
                and when both readings fit, numpy is taken as ``HWC`` and torch as ``CHW``.

        A uint8 input already in ``[C, H, W]`` layout shares memory with the result.
        """
        t, from_numpy = _as_tensor(x, "Image.from_array")
        if t.ndim == 2:
            t = t.unsqueeze(0)
        elif t.ndim == 3:
            t = _channels_first(t, channels_last, from_numpy, "Image.from_array")
        else:
            raise MediaError(f"Image.from_array: expected [H, W], [H, W, C] or [C, H, W], got shape "
                             f"{tuple(t.shape)}")
        return cls(_to_uint8(t, "Image.from_array"))

    @classmethod
    def open(cls, path: Source, *, limits: MediaLimits | None = None) -> "Image":
        """Read a still image: png, jpeg, webp, gif (first frame), bmp, avif, tiff, or any other
        single picture FFmpeg reads.

        The format comes from the content, not the extension. Gray images stay 1 channel and
        images with transparency keep it (4 channels); 16-bit images are reduced to 8 bits;
        JPEG EXIF orientation is applied. The size declared in the header is checked against
        ``limits`` before any pixel is decoded.
        """
        limits = limits or DEFAULT_LIMITS
        inp = _resolve(path, limits)
        data = inp.read()
        fmt = _sniff_image(data[:64])
        if fmt is None:
            if _looks_like_text(data[:4096]):
                raise MediaError("not an image: the content looks like text", inp.name)
            return cls(_decode_picture_av(inp, limits))
        if fmt == "avif":  # no torchvision decoder here; the container's size is checked instead
            return cls(_decode_picture_av(inp, limits))
        size = _image_header_size(fmt, data)
        if size is None:
            raise MediaError(f"corrupt or truncated {fmt} image: its header is unreadable", inp.name)
        _check_picture_size(*size, limits, inp.name)
        if fmt in ("gif", "bmp"):
            # torchvision has no bmp decoder and decodes *every* gif frame; PyAV stops at one.
            return cls(_decode_picture_av(inp, limits))
        try:
            pixels = tvio.decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                       mode=tvio.ImageReadMode.UNCHANGED,
                                       apply_exif_orientation=True)
        except lib_errors() as e:
            raise MediaError(f"corrupt or truncated {fmt} image ({_why(e)})", inp.name) from e
        if pixels.ndim == 4:  # an animated image: keep the first frame
            pixels = pixels[0]
        if fmt == "jpeg" and pixels.shape[0] == 4:  # CMYK: let the decoder convert to RGB
            pixels = tvio.decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                       mode=tvio.ImageReadMode.RGB, apply_exif_orientation=True)
        _check_picture_size(pixels.shape[2], pixels.shape[1], limits, inp.name)
        if pixels.dtype != torch.uint8:  # 16-bit png: scale 0..65535 to 0..255 with rounding
            pixels = ((pixels.to(torch.int32) * 255 + 32767) // 65535).to(torch.uint8)
        if pixels.shape[0] == 2:  # gray + alpha: unitok keeps alpha only with RGB
            pixels = torch.cat([pixels[:1].expand(3, -1, -1), pixels[1:]])
        return cls(pixels.contiguous())

    # -- conversions --

    def to_float(self) -> torch.Tensor:
        """``[C, H, W]`` float32 in [0, 1]."""
        return self.pixels.to(torch.float32) / 255.0

    def to_rgb(self, background: tuple[int, int, int] | None = (255, 255, 255)) -> "Image":
        """A 3-channel copy. Gray is repeated into R, G and B. RGBA is alpha-composited over
        ``background`` (white by default); with ``background=None`` alpha is simply dropped.
        An RGB image is returned as is."""
        c = self.channels
        if c == 3:
            return self
        if c == 1:
            return Image(self.pixels.expand(3, -1, -1).contiguous())
        if background is None:
            return Image(self.pixels[:3].contiguous())
        return Image(_composite(self.pixels, background))

    # -- writing --

    def save(self, path, *, quality: int | None = None, lossless: bool = False) -> None:
        """Write the image; the format follows the extension.

        - ``.png``: lossless, keeps gray / RGB / RGBA.
        - ``.jpg`` / ``.jpeg``: ``quality`` 1..100 (default 95); RGBA is composited on white.
        - ``.webp``: lossy with ``quality`` (default 90), or ``lossless=True``; keeps alpha.
        - ``.gif``: 256 colours chosen from the image; alpha composited on white.
        - ``.bmp``: lossless RGB / RGBA.
        """
        p, ext = _output_path(path, _IMAGE_WRITERS, "an image")
        fmt = _IMAGE_WRITERS[ext]
        if quality is not None and not (isinstance(quality, int) and 1 <= quality <= 100):
            raise MediaError(f"quality must be an integer in 1..100, got {quality!r}", str(p))
        if lossless and fmt != "webp":
            raise MediaError(f"lossless=True applies to .webp only ({ext} is "
                             f"{'always lossless' if fmt in ('png', 'bmp') else 'lossy'})", str(p))
        pixels = self.pixels.cpu()
        try:
            if fmt == "png":
                if self.channels == 4:  # torchvision's png encoder takes 1 or 3 channels only
                    data = _encode_picture("png", pixels.permute(1, 2, 0).numpy(), "rgba", "rgba")
                else:
                    data = tvio.encode_png(pixels.contiguous()).numpy().tobytes()
            elif fmt == "jpeg":
                rgb = pixels if self.channels == 1 else self.to_rgb().pixels.cpu()
                data = tvio.encode_jpeg(rgb.contiguous(), quality=quality or 95).numpy().tobytes()
            elif fmt == "webp":
                src = pixels if self.channels == 4 else self.to_rgb().pixels.cpu()
                src_fmt = "rgba" if self.channels == 4 else "rgb24"
                opts = {"lossless": "1"} if lossless else {"quality": str(quality or 90)}
                pix_fmt = "bgra" if lossless else ("yuva420p" if self.channels == 4 else "yuv420p")
                data = _encode_picture("libwebp", src.permute(1, 2, 0).numpy(), src_fmt, pix_fmt, opts)
            elif fmt == "bmp":
                if self.channels == 4:
                    data = _encode_picture("bmp", pixels.permute(1, 2, 0).numpy(), "rgba", "bgra")
                else:
                    rgb = self.to_rgb().pixels.cpu().permute(1, 2, 0).numpy()
                    data = _encode_picture("bmp", rgb, "rgb24", "bgr24")
            else:  # gif
                buf = io.BytesIO()
                _write_gif(buf, [self.to_rgb().pixels.cpu().permute(1, 2, 0).numpy()], Fraction(1))
                data = buf.getvalue()
        except lib_errors() as e:
            raise MediaError(f"cannot encode the image as {ext} ({_why(e)})", str(p)) from e
        _write_bytes(p, data)


def _decode_picture_av(inp: _Input, limits: MediaLimits) -> torch.Tensor:
    """First picture of an image file via PyAV -> ``[C, H, W]`` uint8."""
    with _open_container(inp, "an image") as container:
        kind = _holds(container, inp.head())
        if kind != "image":
            raise MediaError("not an image" + (f" ({_USE[kind]})" if kind else ""), inp.name)
        stream = _first_video_stream(container)
        cc = _decoder_of(stream, inp.name)
        if cc.width and cc.height:
            _check_picture_size(cc.width, cc.height, limits, inp.name)
        try:
            frame = next(container.decode(stream), None)
        except lib_errors() as e:
            raise MediaError(f"corrupt or truncated image ({_why(e)})", inp.name) from e
        if frame is None:
            raise MediaError("corrupt or truncated image: no picture could be decoded", inp.name)
        _check_picture_size(frame.width, frame.height, limits, inp.name)
        return _still_frame_to_pixels(frame)
