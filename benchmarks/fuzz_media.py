"""Fuzz cases of media (``robustness.py``): mutated image, video and audio files through every
opener and, when they open, every suite's encode; hand-made hostile files; in-memory items of odd
shapes and rates, and objects of the wrong type."""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

from fuzz_common import ALL_EXTENSIONS, Bad, Calls, Context, failed, mutate, round_trip, seeds_of, y4m


# =================================================================================================
# mutated files through every opener and every suite
# =================================================================================================

def _check_media(item, limits=None) -> None:
    """An opened item respects its type's contract and the limits it was read under."""
    import torch

    from unitok import Audio, Image, Video
    from unitok.media import DEFAULT_LIMITS

    limits = limits or DEFAULT_LIMITS
    if isinstance(item, Image):
        if item.height * item.width > limits.max_pixels or max(item.height, item.width) > limits.max_side:
            raise Bad(f"{item!r} is over the limits it was read under")
    elif isinstance(item, Video):
        if item.num_frames > limits.max_frames or item.frames.numel() > limits.max_decoded_bytes:
            raise Bad(f"{item!r} is over the limits it was read under")
        if item.audio is not None:
            _check_media(item.audio, limits)
    elif isinstance(item, Audio):
        if not torch.isfinite(item.samples).all() or item.samples.abs().max() > 1:
            raise Bad(f"{item!r} holds samples outside [-1, 1]")
        if item.duration > limits.max_seconds or item.num_channels > limits.max_channels:
            raise Bad(f"{item!r} is over the limits it was read under")
    else:
        raise Bad(f"open returned a {type(item).__name__}")


def _openers():
    from unitok import Audio, Image, Video
    from unitok.media import open_media

    return {"image": Image.open, "video": Video.open, "audio": Audio.open, "media": open_media}


def _through_everything(ctx: Context, calls: Calls, source) -> None:
    """Every opener on ``source``; every tokenizer on what opens (small items only, to stay fast)."""
    from unitok import Audio, Image, Video

    for name, opener in _openers().items():
        item = calls(f"{name} open", opener, source)
        if failed(item):
            continue
        calls.check(f"{name} open: result", _check_media, item)
        if name != "media" or not _small(item):
            continue
        for suite_name, tok in ctx.suites.items():
            modality = {Image: "image", Video: "video", Audio: "audio"}[type(item)]
            if modality in tok.media:
                calls(f"encode with the {suite_name} suite", round_trip, tok, ["caption", item])


def _small(item) -> bool:
    from unitok import Audio, Image, Video

    if isinstance(item, Image):
        return item.height * item.width <= 512 * 512
    if isinstance(item, Video):
        return item.frames.numel() <= 3 * 64 * 64 * 32
    return isinstance(item, Audio) and item.num_samples * item.num_channels <= 200_000


def file_case(kind: str):
    def case(ctx: Context, rng, index: int):
        names = seeds_of(ctx, kind)
        name = names[index % len(names)]
        data, _ = mutate(ctx.seeds[name], rng, list(ctx.seeds.values()))
        calls = Calls()
        if rng.random() < 0.3:        # tar members reach open as bytes
            _through_everything(ctx, calls, data)
        else:                          # any extension: the content decides
            path = ctx.fresh() / f"case{ALL_EXTENSIONS[int(rng.integers(len(ALL_EXTENSIONS)))]}"
            path.write_bytes(data)
            _through_everything(ctx, calls, path)
        return calls.result()
    return case


# =================================================================================================
# crafted files
# =================================================================================================

def _png(w: int, h: int, pixels: bool = False) -> bytes:
    """A PNG declaring a w x h RGB picture; with ``pixels`` its (zero) rows are all there, else a
    few bytes stand in for them."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if pixels:
        z = zlib.compressobj(9)
        row = b"\x00" * (1 + 3 * w)
        raw = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    else:
        raw = zlib.compress(bytes(16))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def _image_header(fmt: str, w: int, h: int) -> bytes:
    if fmt == "png":
        return _png(w, h)
    if fmt == "gif":
        return b"GIF89a" + struct.pack("<HH", w, h) + bytes(64)
    if fmt == "bmp":
        return b"BM" + bytes(12) + struct.pack("<Iii", 40, w, h) + bytes(64)
    if fmt == "webp":
        vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
        return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x + bytes(64)
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, h, w, 1) + b"\x01\x11\x00"
    return b"\xff\xd8\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9) + sof0 + bytes(64)


def _wav(rate: int, data: bytes, *, fmt_tag: int = 1, bits: int = 16, channels: int = 1,
         declared: int | None = None) -> bytes:
    fmt = struct.pack("<HHIIHH", fmt_tag, channels & 0xFFFF, rate & 0xFFFFFFFF,
                      (rate * channels * bits // 8) & 0xFFFFFFFF, (channels * bits // 8) & 0xFFFF, bits)
    size = len(data) if declared is None else declared
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body) & 0xFFFFFFFF) + body


def _floats(values, bits: int = 32) -> bytes:
    import numpy as np

    return np.asarray(values, dtype=np.float32 if bits == 32 else np.float64).tobytes()


def _tagged(ctx: Context, name: str) -> bytes:
    """A seed rewritten with a title tag, whose UTF-8 'café' is then made invalid UTF-8."""
    import av

    src = ctx.fresh() / name
    src.write_bytes(ctx.seeds[name])
    out = src.with_name("tagged" + src.suffix)
    with av.open(str(src)) as inp, av.open(str(out), "w") as dst:
        dst.metadata["title"] = "caf\u00e9 cr\u00e8me"
        streams = {s.index: dst.add_stream_from_template(s) for s in inp.streams if s.type in ("audio", "video")}
        for packet in inp.demux():
            if packet.stream.index in streams and packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    data = out.read_bytes()
    return data.replace("café".encode(), b"caf\xe9\xff")


def _gif_frames(n: int) -> bytes:
    import numpy as np

    from unitok import Video

    path = Path(tempfile.mkdtemp()) / "many.gif"
    frames = np.zeros((n, 2, 2, 3), np.uint8)
    frames[:, 0, 0] = (np.arange(n) % 256)[:, None]
    Video.from_array(frames, fps=50).save(path)
    data = path.read_bytes()
    shutil.rmtree(path.parent)
    return data


def crafted_case(ctx: Context, rng, index: int):
    """The hand-made cases, in a fixed cycle; randomness picks the sizes."""
    from unitok import Audio, Image, Video
    from unitok.media import MediaLimits, open_media

    big = int(rng.integers(16385, 1 << 16))
    cases = [
        ("png declaring a huge picture", lambda: _image_header("png", big, big)),
        ("gif declaring a huge picture", lambda: _image_header("gif", 65535, int(rng.integers(8193, 65536)))),
        ("bmp declaring a huge picture", lambda: _image_header("bmp", big, -big)),
        ("webp declaring a huge picture", lambda: _image_header("webp", big, big)),
        ("jpeg declaring a huge picture", lambda: _image_header("jpeg", 65535, 65535)),
        ("png declaring 0 x N", lambda: _image_header("png", 0, int(rng.integers(1, 100)))),
        ("png declaring 2**31 x 2**31", lambda: _image_header("png", 2**31, 2**31)),
        ("png bomb within the limits (3000 x 3000 from 30 KB)", lambda: _png(3000, 3000, pixels=True)),
        ("y4m declaring 100000 x 100000 frames", lambda: b"YUV4MPEG2 W100000 H100000 F25:1 Ip A1:1 C420jpeg\n"
                                                         b"FRAME\n" + bytes(64)),
        ("y4m with 3000 frames", lambda: y4m(2, 2, 3000)),
        ("y4m at 1e9 fps", lambda: y4m(4, 4, 3, "1000000000:1")),
        ("y4m at 1/1e9 fps (years long)", lambda: y4m(4, 4, 3, "1:1000000000")),
        ("animated gif with 2000 frames", lambda: _gif_frames(2000)),
        ("wav at 0 Hz", lambda: _wav(0, bytes(2000))),
        ("wav at 1 MHz", lambda: _wav(1_000_000, bytes(2000))),
        ("wav with 32 channels", lambda: _wav(16000, bytes(6400), channels=32)),
        ("wav with 65535 channels", lambda: _wav(16000, bytes(100), channels=65535)),
        ("float wav with NaN", lambda: _wav(16000, _floats([0, float("nan"), 0]), fmt_tag=3, bits=32)),
        ("float wav with +inf", lambda: _wav(16000, _floats([0, float("inf")]), fmt_tag=3, bits=32)),
        ("double wav with -inf", lambda: _wav(16000, _floats([float("-inf")] * 4, 64), fmt_tag=3, bits=64)),
        ("float wav beyond full scale", lambda: _wav(16000, _floats([0, 7.5, -1e30]), fmt_tag=3, bits=32)),
        ("float wav of denormals", lambda: _wav(16000, _floats([1e-40] * 8), fmt_tag=3, bits=32)),
        ("wav with 0 bits per sample", lambda: _wav(16000, bytes(100), bits=0)),
        ("wav with an unknown format tag", lambda: _wav(8000, bytes(300), fmt_tag=0x1234)),
        ("wav declaring 4 GB of samples", lambda: _wav(8000, bytes(300), declared=0xFFFFFFF0)),
        ("wav declaring no samples", lambda: _wav(16000, b"")),
        ("flac with a non-UTF-8 title", lambda: _tagged(ctx, "snd.flac")),
        ("mp3 with a non-UTF-8 title", lambda: _tagged(ctx, "snd.mp3")),
        ("mkv with a non-UTF-8 title", lambda: _tagged(ctx, "vid.mkv")),
        ("mp4 with a non-UTF-8 title", lambda: _tagged(ctx, "vid.mp4")),
        ("zero-length file", lambda: b""),
        ("text saved as media", lambda: b"This is a plain text file, not media.\n" * 40),
        ("10 MB of random bytes", lambda: rng.integers(0, 256, 10 << 20).astype("uint8").tobytes()),
        ("FIFO", None), ("sparse 3 GB file", None), ("directory", None), ("symlink to /dev/zero", None),
        ("NUL byte in the name", None),
    ]
    label, build = cases[index % len(cases)]
    folder = ctx.fresh()
    ext = ALL_EXTENSIONS[int(rng.integers(len(ALL_EXTENSIONS)))]
    path = folder / f"crafted{ext}"
    if build is not None:
        data = build()
        path.write_bytes(data)
    elif label == "FIFO":
        os.mkfifo(path)
    elif label == "sparse 3 GB file":
        with open(path, "wb") as f:
            f.write(_png(64, 64))
            f.truncate(3 << 30)
    elif label == "directory":
        path.mkdir()
    elif label == "symlink to /dev/zero":
        path.symlink_to("/dev/zero")
    else:
        path = Path(str(path) + "\x00.png")
    calls = Calls()
    _through_everything(ctx, calls, path)
    if build is not None and label.startswith(("y4m with", "animated gif")):
        # the frame limit, checked while decoding
        few = MediaLimits(max_frames=1000)
        calls("Video.open under max_frames=1000", _expect_refusal, Video.open, path, limits=few)
    if build is not None and label.startswith("png bomb"):
        calls("Image.open under max_pixels=10**6", _expect_refusal, Image.open, path,
              limits=MediaLimits(max_pixels=10**6))
    if build is not None and label.startswith("wav") and rng.random() < 0.5:
        calls("Audio.open of the bytes", Audio.open, data)
    if build is not None and rng.random() < 0.3:
        calls("open_media of the bytes", open_media, data)
    return calls.result()


def _expect_refusal(fn, *args, **kwargs):
    from unitok import MediaError

    try:
        fn(*args, **kwargs)
    except MediaError as e:
        if "MediaLimits" not in str(e):
            raise Bad(f"refused for another reason: {e}") from None
        raise
    raise Bad("opened although it is over the limit")


# =================================================================================================
# in-memory items through encode
# =================================================================================================

def _item(rng):
    import torch

    from unitok import Audio, Image, Video

    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    kind = int(rng.integers(0, 9))
    if kind <= 2:
        h, w = (int(rng.choice([1, 2, 3, 7, 8, 9, 31, 64, 333, 1500])) for _ in range(2))
        c = int(rng.choice([1, 3, 4]))
        return Image(torch.randint(0, 256, (c, h, w), dtype=torch.uint8, generator=g))
    if kind <= 5:
        c = int(rng.choice([1, 2, 5, 16, 17]))
        n = int(rng.choice([1, 2, 79, 80, 81, 321, 4000, 24001]))
        rate = int(rng.choice([1, 999, 1000, 8000, 22050, 24000, 44100, 48000, 384000, 384001, 10**9]))
        fill = int(rng.integers(0, 4))
        x = [torch.rand(c, n, generator=g) * 2 - 1, torch.ones(c, n), -torch.ones(c, n),
             torch.full((c, n), 1e-40)][fill]
        return Audio(x.contiguous(), rate)
    if kind <= 7:
        t = int(rng.choice([1, 2, 4, 5, 9]))
        h, w = (int(rng.choice([1, 2, 7, 8, 16, 33])) for _ in range(2))
        fps = rng.choice([1, 25, 10**9, 0.001])
        sound = Audio(torch.zeros(1, int(rng.integers(1, 2000))), 8000) if rng.random() < 0.3 else None
        return Video(torch.randint(0, 256, (t, 3, h, w), dtype=torch.uint8, generator=g), fps, sound)
    import numpy as np

    return [None, 5, 2.5, {"image": "x.png"}, np.zeros((4, 4, 3)), torch.zeros(3, 4, 4), object(), [["nested"]],
            Path("/nonexistent/x.png"), Path("/"), Path("/dev/null")][int(rng.integers(0, 11))]


def items_case(ctx: Context, rng, index: int):
    calls = Calls()
    item = _item(rng)
    doc = [item] if rng.random() < 0.5 else ["before", item, "after"]
    for name, tok in ctx.suites.items():
        calls(f"encode with the {name} suite", round_trip, tok, doc)
    return calls.result()
