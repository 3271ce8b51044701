"""Media I/O: round trips for every supported format, limits, and the errors users see.

Every file is generated in ``tmp_path`` (PyAV / torchvision or hand-written bytes), so the suite
needs no fixtures on disk.
"""

from __future__ import annotations

import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torchvision.io as tvio

import unitok.media
import unitok.media.video as media_video
from unitok.errors import ConfigError, MediaError
from unitok.media import (DEFAULT_LIMITS, Audio, Image, MediaLimits, Video, kind_of, open_media)

# -- content generators ----------------------------------------------------------------------------


def gradient(h: int, w: int, shift: int = 0) -> np.ndarray:
    """A smooth ``[H, W, 3]`` uint8 picture (lossy codecs reproduce it closely)."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = xx * 255 // max(w - 1, 1)
    g = yy * 255 // max(h - 1, 1)
    b = (128 + 100 * np.sin((xx + yy + shift) / 15.0)).astype(np.int64)
    return np.stack([r, g, b], -1).astype(np.uint8)


def moving(t: int, h: int, w: int) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 frames of a slowly moving gradient."""
    return np.stack([gradient(h, w, shift=3 * i) for i in range(t)])


def tones(channels: int, n: int, rate: int) -> np.ndarray:
    """``[C, N]`` float32 sines at 0.5 amplitude, a different pitch per channel."""
    t = np.arange(n) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)]
                    ).astype(np.float32)


def pcm16(channels: int, n: int, seed: int = 0) -> np.ndarray:
    """``[C, N]`` int16 noise covering the full range, for bit-exact checks."""
    return np.random.default_rng(seed).integers(-32768, 32768, (channels, n)).astype(np.int16)


def mean_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.to(torch.float32) - b.to(torch.float32)).abs().mean().item()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(arr: np.ndarray, color_type: int, depth: int = 8, size=None) -> bytes:
    """A minimal PNG written by hand (for 16-bit, gray+alpha, and lying headers)."""
    h, w = arr.shape[:2]
    if size is not None:
        w, h = size
    dtype = ">u2" if depth == 16 else "u1"
    rows = b"".join(b"\x00" + arr[i].astype(dtype).tobytes() for i in range(arr.shape[0]))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


def wav_bytes(rate: int, data: bytes, *, fmt_tag: int = 1, bits: int = 16, channels: int = 1) -> bytes:
    """A WAV file written by hand (for NaN samples and impossible headers)."""
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * channels * bits // 8,
                      channels * bits // 8, bits)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def expect_error(fn, path, *fragments: str) -> MediaError:
    """``fn()`` raises a MediaError naming ``path`` (and containing each fragment)."""
    with pytest.raises(MediaError) as info:
        fn()
    message = str(info.value)
    assert Path(path).name in message, message
    for fragment in fragments:
        assert fragment in message, message
    return info.value


# -- images ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png_round_trip_is_exact(tmp_path, channels):
    rgb = gradient(201, 333)
    arr = {1: rgb[..., 0], 3: rgb, 4: np.concatenate([rgb, rgb[..., 1:2]], -1)}[channels]
    img = Image.from_array(arr)
    assert (img.channels, img.height, img.width) == (channels, 201, 333)
    img.save(tmp_path / "a.png")
    back = Image.open(tmp_path / "a.png")
    assert back.pixels.shape == (channels, 201, 333)
    assert torch.equal(back.pixels, img.pixels)


@pytest.mark.parametrize("ext,tolerance", [(".jpg", 3.0), (".jpeg", 3.0), (".webp", 4.0), (".gif", 12.0)])
def test_lossy_image_round_trip(tmp_path, ext, tolerance):
    img = Image.from_array(gradient(201, 333))
    img.save(tmp_path / f"a{ext}")
    back = Image.open(tmp_path / f"a{ext}")
    assert back.pixels.shape == (3, 201, 333)
    assert mean_abs(back.pixels, img.pixels) < tolerance


def test_bmp_and_lossless_webp_keep_pixels(tmp_path):
    rgb = gradient(21, 33)
    rgba = np.concatenate([rgb, np.full((21, 33, 1), 200, np.uint8)], -1)
    for arr in (rgb, rgba):
        img = Image.from_array(arr)
        img.save(tmp_path / "a.bmp")
        img.save(tmp_path / "a.webp", lossless=True)
        assert torch.equal(Image.open(tmp_path / "a.bmp").pixels, img.pixels)
        assert torch.equal(Image.open(tmp_path / "a.webp").pixels, img.pixels)


def test_jpeg_of_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)  # fully transparent black
    Image.from_array(rgba).save(tmp_path / "a.jpg")
    back = Image.open(tmp_path / "a.jpg")
    assert back.channels == 3 and back.pixels.min() > 245


def test_sixteen_bit_and_gray_alpha_pngs(tmp_path):
    deep = np.random.default_rng(0).integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    (tmp_path / "deep.png").write_bytes(png_bytes(deep, color_type=2, depth=16))
    img = Image.open(tmp_path / "deep.png")
    assert img.pixels.dtype == torch.uint8 and img.pixels.shape == (3, 5, 7)
    expected = np.round(deep.astype(np.float64) / 257).astype(np.uint8).transpose(2, 0, 1)
    assert np.abs(img.pixels.numpy().astype(int) - expected).max() <= 1

    la = np.random.default_rng(1).integers(0, 256, (5, 7, 2)).astype(np.uint8)
    (tmp_path / "la.png").write_bytes(png_bytes(la, color_type=4))
    img = Image.open(tmp_path / "la.png")
    assert img.pixels.shape == (4, 5, 7)  # gray + alpha becomes RGBA
    assert torch.equal(img.pixels[0], img.pixels[2])
    assert torch.equal(img.pixels[3], torch.from_numpy(la[..., 1]))


def test_image_opens_from_bytes_and_ignores_a_wrong_extension(tmp_path):
    img = Image.from_array(gradient(20, 30))
    img.save(tmp_path / "real.png")
    data = (tmp_path / "real.png").read_bytes()
    (tmp_path / "lying.jpg").write_bytes(data)
    assert torch.equal(Image.open(tmp_path / "lying.jpg").pixels, img.pixels)
    assert torch.equal(Image.open(data).pixels, img.pixels)
    opened = open_media(tmp_path / "lying.jpg")
    assert isinstance(opened, Image) and torch.equal(opened.pixels, img.pixels)


def test_gif_image_is_the_first_frame(tmp_path):
    frames = np.stack([np.full((12, 16, 3), v, np.uint8) for v in (30, 220)])
    Video.from_array(frames, fps=10).save(tmp_path / "anim.gif")
    first = Image.open(tmp_path / "anim.gif")
    assert first.pixels.shape == (3, 12, 16)
    assert abs(first.pixels.float().mean().item() - 30) < 8


def _encode_with_pyav(path: Path, codec: str, fmt: str | None, hwc: np.ndarray, pix_fmt: str) -> None:
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=1)
        s.width, s.height, s.pix_fmt = hwc.shape[1], hwc.shape[0], pix_fmt
        frame = av.VideoFrame.from_ndarray(hwc, format="rgb24")
        frame.pts = 0
        c.mux(s.encode(frame))
        c.mux(s.encode(None))


def test_tiff_and_avif_open_through_pyav(tmp_path):
    hwc = gradient(24, 40)
    _encode_with_pyav(tmp_path / "a.tiff", "tiff", "image2", hwc, "rgb24")
    assert torch.equal(Image.open(tmp_path / "a.tiff").pixels, Image.from_array(hwc).pixels)
    assert isinstance(open_media(tmp_path / "a.tiff"), Image)
    if "libsvtav1" not in av.codecs_available:
        pytest.skip("no AV1 encoder in this FFmpeg build")
    _encode_with_pyav(tmp_path / "a.avif", "libsvtav1", "avif", hwc, "yuv420p")
    img = Image.open(tmp_path / "a.avif")
    assert img.pixels.shape == (3, 24, 40)
    assert mean_abs(img.pixels, torch.from_numpy(hwc).permute(2, 0, 1)) < 8
    assert isinstance(open_media(tmp_path / "a.avif"), Image)
    expect_error(lambda: Video.open(tmp_path / "a.avif"), "a.avif", "use Image.open")


def test_image_from_array_layouts_and_dtypes():
    hwc = gradient(10, 12)
    chw = torch.from_numpy(hwc).permute(2, 0, 1).contiguous()
    assert torch.equal(Image.from_array(hwc).pixels, chw)
    assert torch.equal(Image.from_array(chw).pixels, chw)
    assert torch.equal(Image.from_array(hwc.transpose(2, 0, 1), channels_last=False).pixels, chw)
    assert torch.equal(Image.from_array(chw.float() / 255).pixels, chw)
    assert torch.equal(Image.from_array(hwc.astype(np.int64)).pixels, chw)
    assert Image.from_array(hwc[..., 0]).channels == 1
    # a 3x3x3 array is ambiguous: numpy reads as HWC, torch as CHW
    cube = np.arange(27, dtype=np.uint8).reshape(3, 3, 3)
    assert torch.equal(Image.from_array(cube).pixels, torch.from_numpy(cube).permute(2, 0, 1))
    assert torch.equal(Image.from_array(torch.from_numpy(cube)).pixels, torch.from_numpy(cube))


@pytest.mark.parametrize("bad,fragment", [
    (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
    (np.full((4, 4, 3), 1.5, np.float32), "[0, 1]"),
    (np.full((4, 4, 3), 300, np.int64), "0..255"),
    (np.zeros((6, 6, 5), np.uint8), "channel"),
    (np.zeros((2, 4, 4, 3), np.uint8), "shape"),
    ([[1, 2], [3, 4]], "numpy array or torch tensor"),
])
def test_image_from_array_refuses_bad_input(bad, fragment):
    with pytest.raises(MediaError) as info:
        Image.from_array(bad)
    assert fragment in str(info.value)


def test_image_constructor_validates():
    with pytest.raises(MediaError):
        Image(torch.zeros(3, 4, 4))  # float
    with pytest.raises(MediaError):
        Image(torch.zeros(2, 4, 4, dtype=torch.uint8))
    with pytest.raises(MediaError):
        Image(torch.zeros(3, 0, 4, dtype=torch.uint8))


def test_to_rgb_and_to_float():
    gray = Image.from_array(np.array([[0, 255]], np.uint8))
    assert gray.to_rgb().pixels.shape == (3, 1, 2)
    rgba = Image(torch.tensor([[[0]], [[0]], [[0]], [[0]]], dtype=torch.uint8))  # transparent black
    assert rgba.to_rgb().pixels.flatten().tolist() == [255, 255, 255]
    assert rgba.to_rgb(background=(0, 0, 255)).pixels.flatten().tolist() == [0, 0, 255]
    assert rgba.to_rgb(background=None).pixels.flatten().tolist() == [0, 0, 0]
    f = Image.from_array(gradient(4, 4)).to_float()
    assert f.dtype == torch.float32 and 0 <= f.min() and f.max() <= 1


# -- video -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".mp4", ".webm", ".mkv", ".mov", ".avi"])
def test_video_round_trip(tmp_path, ext):
    video = Video.from_array(moving(10, 48, 64), fps=24)
    video.save(tmp_path / f"v{ext}")
    back = Video.open(tmp_path / f"v{ext}")
    assert back.frames.shape == (10, 3, 48, 64)
    assert back.fps == 24 and back.audio is None
    assert abs(back.duration - 10 / 24) < 1e-9
    assert mean_abs(back.frames, video.frames) < 6


@pytest.mark.parametrize("ext", [".mp4", ".webm"])
def test_odd_video_size_is_kept(tmp_path, ext):
    video = Video.from_array(moving(3, 201, 333), fps=Fraction(30000, 1001))
    video.save(tmp_path / f"odd{ext}")
    back = Video.open(tmp_path / f"odd{ext}")
    assert (back.num_frames, back.height, back.width) == (3, 201, 333)
    assert back.fps == Fraction(30000, 1001)
    assert mean_abs(back.frames, video.frames) < 6


def test_h264_is_the_mp4_default_and_crf_applies(tmp_path):
    video = Video.from_array(moving(4, 32, 32), fps=10)
    video.save(tmp_path / "best.mp4", crf=0)
    video.save(tmp_path / "worst.mp4", crf=51)
    with av.open(str(tmp_path / "best.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
    best = mean_abs(Video.open(tmp_path / "best.mp4").frames, video.frames)
    worst = mean_abs(Video.open(tmp_path / "worst.mp4").frames, video.frames)
    assert best < 4 and best < worst
    with pytest.raises(MediaError, match="crf"):
        video.save(tmp_path / "v.avi", crf=10)


def test_gif_video_round_trip(tmp_path):
    video = Video.from_array(moving(6, 30, 40), fps=25)
    video.save(tmp_path / "v.gif")
    back = Video.open(tmp_path / "v.gif")
    assert back.frames.shape == (6, 3, 30, 40) and back.fps == 25
    assert mean_abs(back.frames, video.frames) < 12
    assert isinstance(open_media(tmp_path / "v.gif"), Video)  # animated: a Video


def test_video_with_audio_round_trip(tmp_path):
    audio = Audio.from_array(tones(2, 44100, 44100), 44100)
    video = Video.from_array(moving(24, 32, 48), fps=24, audio=audio)
    video.save(tmp_path / "va.mp4")
    back = Video.open(tmp_path / "va.mp4")
    assert back.num_frames == 24 and back.audio is not None
    assert back.audio.sample_rate == 44100 and back.audio.num_channels == 2
    assert abs(back.audio.num_samples - 44100) <= 2048  # AAC priming / padding
    assert Video.open(tmp_path / "va.mp4", with_audio=False).audio is None
    # the sound track alone
    assert Audio.open(tmp_path / "va.mp4").sample_rate == 44100
    opened = open_media(tmp_path / "va.mp4")
    assert isinstance(opened, Video) and opened.audio is not None
    # a format without sound keeps the pictures and warns
    with pytest.warns(UserWarning, match="audio"):
        video.save(tmp_path / "va.gif")


def test_webm_audio_is_resampled_to_48k_for_opus(tmp_path):
    audio = Audio.from_array(tones(1, 22050, 22050), 22050)
    Video.from_array(moving(10, 16, 16), fps=10, audio=audio).save(tmp_path / "va.webm")
    back = Video.open(tmp_path / "va.webm")
    assert back.audio.sample_rate == 48000
    assert abs(back.audio.duration - 1.0) < 0.03


def test_video_from_array_converts_gray_and_rgba():
    gray = np.zeros((2, 4, 4, 1), np.uint8)
    assert Video.from_array(gray, fps=5).frames.shape == (2, 3, 4, 4)
    rgba = np.zeros((2, 4, 4, 4), np.uint8)
    assert Video.from_array(rgba, fps=5).frames.min() == 255  # transparent over white
    tchw = torch.zeros(2, 3, 4, 5, dtype=torch.uint8)
    assert Video.from_array(tchw, fps=29.97).fps == Fraction(2997, 100)
    with pytest.raises(MediaError, match="fps"):
        Video.from_array(tchw, fps=0)
    with pytest.raises(MediaError, match="shape"):
        Video.from_array(torch.zeros(3, 4, 5, dtype=torch.uint8), fps=5)
    with pytest.raises(MediaError):
        Video(torch.zeros(0, 3, 4, 4, dtype=torch.uint8), Fraction(5))


# -- audio -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
@pytest.mark.parametrize("ext", [".wav", ".flac"])
def test_pcm16_round_trip_is_exact(tmp_path, rate, ext):
    data = pcm16(1, rate // 4)
    audio = Audio.from_array(data, rate)
    audio.save(tmp_path / f"a{ext}")
    back = Audio.open(tmp_path / f"a{ext}")
    assert back.sample_rate == rate and back.samples.shape == (1, rate // 4)
    assert torch.equal(back.samples, audio.samples)
    assert torch.equal((back.samples * 32768).round().to(torch.int16), torch.from_numpy(data))


def test_audio_and_video_open_from_bytes(good_files):
    assert Audio.open(good_files[".flac"]).num_samples == 16000
    assert Video.open(good_files[".mp4"]).num_frames == 8
    assert isinstance(open_media(good_files[".mp4"]), Video)
    with pytest.raises(MediaError, match="<bytes>"):
        Audio.open(good_files[".flac"][:100])


def test_multichannel_and_high_resolution_are_exact(tmp_path):
    six = Audio.from_array(pcm16(6, 4000, seed=1), 48000)
    for ext in (".wav", ".flac"):
        six.save(tmp_path / f"six{ext}")
        back = Audio.open(tmp_path / f"six{ext}")
        assert back.num_channels == 6 and torch.equal(back.samples, six.samples)
    f32 = Audio.from_array(tones(2, 3000, 16000) * 1.5 - 0.2 / 3, 16000)
    f32.save(tmp_path / "f32.wav", sample_format="f32")
    assert torch.equal(Audio.open(tmp_path / "f32.wav").samples, f32.samples)
    deep = (np.random.default_rng(2).integers(-2**23, 2**23, (2, 3000)) / 2**23).astype(np.float32)
    for ext in (".wav", ".flac"):
        Audio.from_array(deep, 96000).save(tmp_path / f"s24{ext}", sample_format="s24")
        assert torch.equal(Audio.open(tmp_path / f"s24{ext}").samples, torch.from_numpy(deep))


def test_float_wav_written_by_pyav_reads(tmp_path):
    x = tones(2, 2000, 16000)
    with av.open(str(tmp_path / "f.wav"), "w") as c:
        s = c.add_stream("pcm_f32le", rate=16000, layout="stereo")
        frame = av.AudioFrame.from_ndarray(x.T.reshape(1, -1).copy(), format="flt", layout="stereo")
        frame.sample_rate = 16000
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    back = Audio.open(tmp_path / "f.wav")
    assert back.sample_rate == 16000 and torch.equal(back.samples, torch.from_numpy(x))


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_mp3_keeps_rate_and_length(tmp_path, rate):
    audio = Audio.from_array(tones(2, rate // 2, rate), rate)
    audio.save(tmp_path / "a.mp3")
    back = Audio.open(tmp_path / "a.mp3")
    assert back.sample_rate == rate and back.num_channels == 2
    assert abs(back.num_samples - audio.num_samples) <= 1152
    n = min(back.num_samples, audio.num_samples)
    assert mean_abs(back.samples[:, :n], audio.samples[:, :n]) < 0.05


@pytest.mark.parametrize("ext", [".ogg", ".opus"])
@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_opus_decodes_at_48k_with_the_same_duration(tmp_path, ext, rate):
    audio = Audio.from_array(tones(1, rate // 2, rate), rate)
    audio.save(tmp_path / f"a{ext}")
    back = Audio.open(tmp_path / f"a{ext}")
    assert back.sample_rate == 48000 and back.num_channels == 1
    assert abs(back.duration - audio.duration) < 0.01
    if rate == 48000:
        n = min(back.num_samples, audio.num_samples)
        assert mean_abs(back.samples[:, :n], audio.samples[:, :n]) < 0.05


def test_m4a_and_ogg_vorbis_read(tmp_path):
    audio = Audio.from_array(tones(2, 22050, 44100), 44100)
    audio.save(tmp_path / "a.m4a")
    back = Audio.open(tmp_path / "a.m4a")
    assert back.sample_rate == 44100 and abs(back.num_samples - 22050) <= 2048
    # Vorbis is read even though unitok writes Opus into .ogg
    with av.open(str(tmp_path / "v.ogg"), "w") as c:
        s = c.add_stream("vorbis", rate=44100, layout="stereo")
        s.codec_context.options = {"strict": "experimental"}
        frame = av.AudioFrame.from_ndarray(tones(2, 22050, 44100), format="fltp", layout="stereo")
        frame.sample_rate = 44100
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    back = Audio.open(tmp_path / "v.ogg")
    assert back.sample_rate == 44100 and back.num_channels == 2
    assert abs(back.num_samples - 22050) <= 2048


def test_audio_save_refuses_what_a_format_cannot_hold(tmp_path):
    six = Audio.from_array(tones(6, 1000, 16000), 16000)
    expect_error(lambda: six.save(tmp_path / "six.mp3"), tmp_path / "six.mp3", "2 channels")
    expect_error(lambda: six.save(tmp_path / "a.mp3", sample_format="s16"), tmp_path / "a.mp3",
                 "sample_format")
    expect_error(lambda: six.save(tmp_path / "a.xyz"), tmp_path / "a.xyz", ".wav")
    expect_error(lambda: six.save(tmp_path / "nope" / "a.wav"), "a.wav", "does not exist")
    assert not list(tmp_path.glob("*.mp3"))  # nothing half-written is left behind


def test_audio_from_array():
    mono = Audio.from_array(np.array([0, 16384, -32768], np.int16), 8000)
    assert mono.samples.tolist() == [[0.0, 0.5, -1.0]] and mono.duration == 3 / 8000
    with pytest.raises(MediaError, match=r"\[N, C\]"):
        Audio.from_array(np.zeros((100, 2), np.float32), 8000)
    with pytest.raises(MediaError, match="NaN"):
        Audio.from_array(np.array([0.0, np.nan], np.float32), 8000)
    with pytest.raises(MediaError, match=r"\[-1, 1\]"):
        Audio.from_array(np.array([0.0, 2.0], np.float32), 8000)
    with pytest.raises(MediaError, match="sample_rate"):
        Audio.from_array(np.zeros(10, np.float32), 0)
    with pytest.raises(MediaError, match="shape"):
        Audio(torch.zeros(1, 0), 8000)


# -- dispatch --------------------------------------------------------------------------------------


def test_kind_of():
    assert kind_of("a/b/c.PNG") == "image"
    assert kind_of("x.gif") == "image"
    assert kind_of("x.webm") == "video"
    assert kind_of("x.opus") == "audio"
    assert kind_of("README.md") == "text"
    assert kind_of("data.jsonl") is None and kind_of("noext") is None


def test_open_media_dispatches_by_content(tmp_path):
    Image.from_array(gradient(8, 8)).save(tmp_path / "i.webp")
    Audio.from_array(tones(1, 800, 8000), 8000).save(tmp_path / "a.flac")
    Video.from_array(moving(3, 16, 16), fps=5).save(tmp_path / "v.mkv")
    Audio.from_array(tones(1, 800, 8000), 8000).save(tmp_path / "sound_only.wav")
    (tmp_path / "sound_only.mp4").write_bytes((tmp_path / "sound_only.wav").read_bytes())
    assert isinstance(open_media(tmp_path / "i.webp"), Image)
    assert isinstance(open_media(tmp_path / "a.flac"), Audio)
    assert isinstance(open_media(tmp_path / "v.mkv"), Video)
    assert isinstance(open_media(tmp_path / "sound_only.mp4"), Audio)
    expect_error(lambda: Image.open(tmp_path / "v.mkv"), "v.mkv", "not an image", "Video.open")
    expect_error(lambda: Video.open(tmp_path / "i.webp"), "i.webp", "not a video", "Image.open")
    expect_error(lambda: Audio.open(tmp_path / "i.webp"), "i.webp", "no audio", "Image.open")
    expect_error(lambda: Video.open(tmp_path / "a.flac"), "a.flac", "no video stream")
    expect_error(lambda: Audio.open(tmp_path / "v.mkv"), "v.mkv", "no audio stream")


# -- bad files -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_files(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("good")
    Image.from_array(gradient(64, 64)).save(d / "a.png")
    Image.from_array(gradient(64, 64)).save(d / "a.jpg")
    Video.from_array(moving(8, 32, 32), fps=8).save(d / "a.mp4")
    Audio.from_array(tones(2, 16000, 16000), 16000).save(d / "a.flac")
    Audio.from_array(tones(2, 16000, 16000), 16000).save(d / "a.wav")
    return {p.suffix: p.read_bytes() for p in d.iterdir()}


@pytest.mark.parametrize("opener", [Image.open, Video.open, Audio.open, open_media])
def test_missing_directory_and_empty_files(tmp_path, opener):
    expect_error(lambda: opener(tmp_path / "missing.png"), "missing.png", "not found")
    (tmp_path / "folder.wav").mkdir()
    expect_error(lambda: opener(tmp_path / "folder.wav"), "folder.wav", "directory")
    (tmp_path / "empty.mp4").write_bytes(b"")
    expect_error(lambda: opener(tmp_path / "empty.mp4"), "empty.mp4", "empty")


@pytest.mark.parametrize("ext,opener", [(".png", Image.open), (".jpg", Image.open),
                                        (".mp4", Video.open), (".flac", Audio.open),
                                        (".wav", Audio.open)])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_files(tmp_path, good_files, ext, opener, keep):
    data = good_files[ext]
    path = tmp_path / f"cut{ext}"
    path.write_bytes(data[: int(len(data) * keep)])
    expect_error(lambda: opener(path), path)
    expect_error(lambda: open_media(path), path)


def test_streamed_wav_without_length_loads(tmp_path, good_files):
    """A WAV written to a pipe declares no length (0 or 0xFFFFFFFF): not a truncation."""
    data = bytearray(good_files[".wav"])
    at = data.find(b"data")
    for unknown in (b"\xff\xff\xff\xff", b"\x00\x00\x00\x00"):
        data[at + 4:at + 8] = unknown
        path = tmp_path / "streamed.wav"
        path.write_bytes(bytes(data))
        assert Audio.open(path).num_samples > 0


def test_truncated_faststart_mp4(tmp_path):
    """moov first (web-style mp4): the index survives the cut, the frame data does not."""
    path = tmp_path / "web.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for i, hwc in enumerate(moving(10, 32, 32)):
            frame = av.VideoFrame.from_ndarray(hwc, format="rgb24")
            frame.pts = i
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    assert Video.open(path).num_frames == 10
    data = path.read_bytes()
    for keep in (0.7, 0.97):
        cut = tmp_path / f"web_{keep}.mp4"
        cut.write_bytes(data[: int(len(data) * keep)])
        expect_error(lambda: Video.open(cut), cut, "truncated")


@pytest.mark.parametrize("name", ["noise.png", "noise.jpg", "noise.mp4", "noise.wav"])
def test_random_bytes(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint8).tobytes())
    opener = {"png": Image.open, "jpg": Image.open, "mp4": Video.open, "wav": Audio.open}[name[-3:]]
    expect_error(lambda: opener(path), path)
    expect_error(lambda: open_media(path), path)


def test_text_files_with_media_names(tmp_path):
    text = "This is a plain text file, not media.\n" * 20
    (tmp_path / "notes.wav").write_text(text)
    (tmp_path / "notes.png").write_text(text)
    expect_error(lambda: Audio.open(tmp_path / "notes.wav"), "notes.wav", "text")
    expect_error(lambda: Image.open(tmp_path / "notes.png"), "notes.png", "not an image")
    expect_error(lambda: open_media(tmp_path / "notes.png"), "notes.png", "not an image")
    expect_error(lambda: open_media(tmp_path / "notes.wav"), "notes.wav", "not an audio")


def test_png_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(np.zeros((1, 1, 3), np.uint8), 2, size=(100_000, 100_000)))

    def must_not_decode(*args, **kwargs):
        raise AssertionError("a decoder was called for a refused image")

    monkeypatch.setattr(tvio, "decode_image", must_not_decode)
    monkeypatch.setattr(av, "open", must_not_decode)
    expect_error(lambda: Image.open(path), path, "100000x100000")
    expect_error(lambda: open_media(path), path, "MediaLimits.max_side")


def _bomb_header(fmt: str, w: int, h: int) -> bytes:
    """Just enough of a file for its header to declare a ``w`` x ``h`` picture."""
    if fmt == "gif":
        return b"GIF89a" + struct.pack("<HH", w, h) + bytes(64)
    if fmt == "bmp":
        return b"BM" + bytes(12) + struct.pack("<Iii", 40, w, h) + bytes(64)
    if fmt == "webp":
        vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (w - 1).to_bytes(3, "little") + (
            h - 1).to_bytes(3, "little")
        return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x + bytes(64)
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, h, w, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9) + sof0 + bytes(64)


@pytest.mark.parametrize("fmt", ["gif", "bmp", "webp", "jpeg"])
def test_declared_sizes_are_checked_for_every_image_format(tmp_path, monkeypatch, fmt):
    path = tmp_path / f"bomb.{fmt}"
    path.write_bytes(_bomb_header(fmt, 9000, 9000))
    monkeypatch.setattr(tvio, "decode_image", lambda *a, **k: pytest.fail("decoded"))
    monkeypatch.setattr(av, "open", lambda *a, **k: pytest.fail("opened with PyAV"))
    expect_error(lambda: Image.open(path), path, "9000x9000", "max_pixels")


def test_image_limits(tmp_path, good_files):
    (tmp_path / "a.jpg").write_bytes(good_files[".jpg"])
    expect_error(lambda: Image.open(tmp_path / "a.jpg", limits=MediaLimits(max_pixels=1000)),
                 "a.jpg", "max_pixels")
    expect_error(lambda: Image.open(tmp_path / "a.jpg", limits=MediaLimits(max_file_bytes=100)),
                 "a.jpg", "max_file_bytes")


def test_video_over_max_frames(tmp_path, good_files, monkeypatch):
    path = tmp_path / "a.mp4"
    path.write_bytes(good_files[".mp4"])
    few = MediaLimits(max_frames=5)
    expect_error(lambda: Video.open(path, limits=few), path, "max_frames")
    # and while decoding, for containers that declare neither frame count nor duration
    monkeypatch.setattr(media_video, "_stream_seconds", lambda stream, container: 0.0)
    Video.from_array(moving(8, 16, 16), fps=8).save(tmp_path / "b.webm")
    expect_error(lambda: Video.open(tmp_path / "b.webm", limits=few), "b.webm",
                 "more than 5 frames")
    expect_error(lambda: Video.open(path, limits=MediaLimits(max_seconds=0.5)), path, "max_seconds")


def test_audio_limits(tmp_path, good_files):
    path = tmp_path / "a.flac"
    path.write_bytes(good_files[".flac"])  # 1 s, stereo, 16 kHz
    expect_error(lambda: Audio.open(path, limits=MediaLimits(max_seconds=0.5)), path, "max_seconds")
    expect_error(lambda: Audio.open(path, limits=MediaLimits(max_channels=1)), path, "channels")
    expect_error(lambda: Audio.open(path, limits=MediaLimits(min_sample_rate=22050)), path,
                 "sample rate")
    expect_error(lambda: Audio.open(path, limits=MediaLimits(max_decoded_bytes=1000)), path,
                 "max_decoded_bytes")


def test_bad_wav_headers_and_samples(tmp_path):
    nan = np.zeros(1000, np.float32)
    nan[500] = np.nan
    (tmp_path / "nan.wav").write_bytes(wav_bytes(16000, nan.tobytes(), fmt_tag=3, bits=32))
    expect_error(lambda: Audio.open(tmp_path / "nan.wav"), "nan.wav", "NaN")
    (tmp_path / "zero_hz.wav").write_bytes(wav_bytes(0, bytes(2000)))
    expect_error(lambda: Audio.open(tmp_path / "zero_hz.wav"), "zero_hz.wav")
    (tmp_path / "no_samples.wav").write_bytes(wav_bytes(16000, b""))
    expect_error(lambda: Audio.open(tmp_path / "no_samples.wav"), "no_samples.wav")
    loud = np.array([0.0, 3.0, -3.0], np.float32)  # float files may exceed full scale: clipped
    (tmp_path / "loud.wav").write_bytes(wav_bytes(16000, loud.tobytes(), fmt_tag=3, bits=32))
    assert Audio.open(tmp_path / "loud.wav").samples.tolist() == [[0.0, 1.0, -1.0]]


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def _fix_ogg_checksums(data: bytes) -> bytes:
    out, i = bytearray(data), 0
    while i < len(out):
        assert out[i:i + 4] == b"OggS"
        nseg = out[i + 26]
        end = i + 27 + nseg + sum(out[i + 27:i + 27 + nseg])
        out[i + 22:i + 26] = bytes(4)
        out[i + 22:i + 26] = struct.pack("<I", _ogg_crc(bytes(out[i:end])))
        i = end
    return bytes(out)


@pytest.mark.parametrize("ext,codec", [(".flac", "flac"), (".ogg", "libopus")])
def test_non_utf8_metadata_still_opens(tmp_path, ext, codec):
    path = tmp_path / f"tagged{ext}"
    x = tones(1, 4800, 48000)
    with av.open(str(path), "w") as c:
        c.metadata["title"] = "caf\u00e9 au lait"
        s = c.add_stream(codec, rate=48000, layout="mono")
        if codec == "flac":
            frame = av.AudioFrame.from_ndarray((x * 32767).astype(np.int16), format="s16", layout="mono")
        else:
            frame = av.AudioFrame.from_ndarray(x, format="flt", layout="mono")
        frame.sample_rate = 48000
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    data = path.read_bytes()
    assert data.count("café".encode()) == 1
    # the same length in bytes that are not UTF-8 (Latin-1 é and a stray 0xFF)
    data = data.replace("café".encode(), b"caf\xe9\xff")
    if ext == ".ogg":
        data = _fix_ogg_checksums(data)
    path.write_bytes(data)
    with pytest.raises(UnicodeDecodeError):  # what a default PyAV open does with it
        with av.open(str(path)) as c:
            dict(c.metadata)
    audio = Audio.open(path)
    assert audio.num_channels == 1 and audio.sample_rate == 48000
    assert isinstance(open_media(path), Audio)


def test_limits_validate_and_default():
    assert DEFAULT_LIMITS.max_pixels == 8192 * 8192 and DEFAULT_LIMITS.max_channels == 16
    with pytest.raises(ConfigError):
        MediaLimits(max_frames=0)
    with pytest.raises(ConfigError):
        MediaLimits(min_sample_rate=48000, max_sample_rate=8000)


def test_save_errors_name_the_file(tmp_path):
    img = Image.from_array(gradient(4, 4))
    expect_error(lambda: img.save(tmp_path / "a.tga"), "a.tga", ".png")
    expect_error(lambda: img.save(tmp_path / "a.png", lossless=True), "a.png", "webp")
    expect_error(lambda: img.save(tmp_path / "a.jpg", quality=0), "a.jpg", "quality")
    video = Video.from_array(moving(2, 8, 8), fps=5)
    expect_error(lambda: video.save(tmp_path / "v.flv"), "v.flv", ".mp4")
    expect_error(lambda: video.save(tmp_path / "v.mp4", codec="no_such_codec"), "v.mp4")
    assert not list(tmp_path.iterdir())


def test_video_display_rotation_is_applied(tmp_path):
    """Phones store portrait video as landscape frames plus a display matrix; frames come back
    upright, as players show them."""
    frames = torch.zeros(4, 3, 16, 32, dtype=torch.uint8)
    frames[:, 0, :4, :8] = 255                      # a red block at the top left
    plain = tmp_path / "plain.mp4"
    Video.from_array(frames, fps=8).save(plain)
    data = bytearray(plain.read_bytes())
    at = data.find(b"tkhd")
    assert data[at + 4] == 0                        # version 0 track header
    matrix = at + 4 + 4 + 20 + 8 + 8                # after the times, ids, layer, volume fields
    assert struct.unpack(">9i", data[matrix:matrix + 36])[:5] == (1 << 16, 0, 0, 0, 1 << 16)
    # the matrix of a clip recorded holding the phone upright: turn 90 degrees clockwise
    data[matrix:matrix + 36] = struct.pack(">9i", 0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30)
    rotated = tmp_path / "portrait.mp4"
    rotated.write_bytes(bytes(data))
    video = Video.open(rotated)
    assert video.frames.shape == (4, 3, 32, 16)
    red = (video.frames[0, 0] > 128).nonzero()
    assert red[:, 0].max() < 8 and red[:, 1].min() >= 12   # now at the top right
    assert Video.open(plain).frames.shape == (4, 3, 16, 32)


def test_public_names_live_in_unitok_media():
    # unitok.media is a package of modules; callers keep importing every public name from the top.
    names = {"DEFAULT_LIMITS", "MediaLimits", "Image", "Video", "Audio", "open_media", "kind_of",
             "decoded_bytes", "check_document_bytes", "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS",
             "AUDIO_EXTENSIONS", "TEXT_EXTENSIONS", "Preprocess"}
    assert names == set(unitok.media.__all__)
    assert all(hasattr(unitok.media, n) for n in names)


def test_wide_unsigned_tensors_are_media_errors_not_torch_errors():
    import numpy as np

    for x in (torch.full((4, 4, 3), 1000, dtype=torch.int32).to(torch.uint16), np.full((4, 4, 3), 1000, np.uint16)):
        with pytest.raises(unitok.MediaError, match="must lie in 0..255, got 1000..1000"):
            unitok.Image.from_array(x)
    ok = unitok.Image.from_array(torch.full((4, 4, 3), 200, dtype=torch.int32).to(torch.uint16))
    assert int(ok.pixels.max()) == 200
