"""Resize, frame-rate and duration policies (``unitok.media.Preprocess``): bounded token counts for
large photos and clips, and the same ids from the API, ``unitok encode`` and ``unitok tokenize``."""

import json
import math

import numpy as np
import pytest
import torch

import unitok
from unitok import Audio, ConfigError, Image, Video
from unitok.cli import main
from unitok.data import TokenDataset
from unitok.media import Preprocess
from unitok.pipeline import Options


def _photo(h: int, w: int, seed: int = 0) -> Image:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 50 + 1, w // 50 + 1, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]
    return Image.from_array(x)


@pytest.mark.parametrize("policy", [Preprocess(max_pixels=256 * 256), Preprocess(min_pixels=128 * 128),
                                    Preprocess(min_pixels=64 * 64, max_pixels=320 * 320),
                                    Preprocess(target_pixels=192 * 192)])
def test_sizes_keep_the_aspect_stay_in_bounds_and_round_to_the_stride(policy):
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(8, 5000, 2))
        H, W = policy.size(h, w, stride=8)
        inside = (policy.min_pixels or 0) <= h * w <= (policy.max_pixels or math.inf)
        if policy.target_pixels is None and inside:
            assert (H, W) == (h, w)                       # already inside: the exact size
            continue
        assert H % 8 == 0 and W % 8 == 0
        assert (policy.min_pixels or 0) <= H * W <= (policy.max_pixels or math.inf)
        if policy.target_pixels:
            assert abs(H * W / policy.target_pixels - 1) < 0.25 or min(H, W) == 8
        if min(H, W) > 64:                                  # a long thin picture cannot keep it closely
            assert abs(math.log((H / W) / (h / w))) < 0.15


def test_a_large_photo_has_a_bounded_token_count():
    tok = unitok.load()
    photo = _photo(1500, 2000)
    plain = len(tok.encode(photo))
    tok.preprocess = Preprocess(max_pixels=256 * 256)
    bounded = tok.encode(photo)
    assert len(bounded) < plain / 30
    assert len(bounded) <= len(tok.encode(_photo(256, 256))) + 16
    back = tok.decode(bounded)[0]
    assert back.height * back.width <= 256 * 256 and abs(back.width / back.height - 4 / 3) < 0.1


def test_min_pixels_keeps_the_colour_of_an_icon():
    """README: an 8x8 picture is one latent cell and comes back washed out; scaled up to 64x64
    first it keeps its colour (and decodes at 64x64)."""
    tok = unitok.load()
    red = torch.zeros(3, 8, 8, dtype=torch.uint8)
    red[0] = 255
    plain = tok.decode(tok.encode(Image.from_array(red)))[0].pixels.float().mean((1, 2))
    scaled = tok.with_limits(preprocess=Preprocess(min_pixels=64 * 64))
    seq = scaled.encode(Image.from_array(red))
    out = scaled.decode(seq)[0].pixels
    assert len(seq) == 91 and tuple(out.shape) == (3, 64, 64)
    kept = out.float().mean((1, 2))
    assert kept[0] > 230 and kept[1:].max() < 40, kept
    assert plain[0] - plain[1:].max() < kept[0] - kept[1:].max() - 100, (plain, kept)


def test_video_frame_rate_and_duration_and_its_sound_track():
    t = torch.arange(100)                                 # 4 s at 25 fps
    frames = (t[:, None, None, None] * 2 % 256).expand(100, 3, 16, 24).to(torch.uint8)
    sound = Audio(torch.zeros(1, 16000 * 4), 16000)
    clip = Preprocess(max_fps=10, max_duration=2).video(Video(frames, 25, audio=sound))
    assert clip.fps == 10 and clip.num_frames == 20
    assert clip.audio.num_samples == 32000
    assert torch.equal(clip.frames[1], frames[2]) or torch.equal(clip.frames[1], frames[3])   # the nearest frame
    assert Preprocess().video(Video(frames, 25)).num_frames == 100


def test_bad_policies_are_config_errors():
    with pytest.raises(ConfigError, match="max_pixels must be a positive"):
        Preprocess(max_pixels=0)
    with pytest.raises(ConfigError, match="cannot be combined"):
        Preprocess(target_pixels=100, max_pixels=200)
    with pytest.raises(ConfigError, match="larger than max_pixels"):
        Preprocess(min_pixels=300, max_pixels=200)
    with pytest.raises(ConfigError, match="Preprocess"):
        Options(preprocess={"max_pixel": 5})


def test_encode_and_tokenize_give_the_same_bounded_ids(tmp_path):
    (tmp_path / "in").mkdir()
    _photo(600, 900).save(tmp_path / "in" / "photo.png")
    args = ["--max-pixels", str(128 * 128)]
    assert main(["encode", str(tmp_path / "in"), "-o", str(tmp_path / "tok"), *args]) == 0
    encoded = json.loads((tmp_path / "tok" / "photo.png.tokens.json").read_text())
    assert main(["tokenize", str(tmp_path / "in"), "-o", str(tmp_path / "ds"), "--workers", "0",
                 "--no-progress", *args]) == 0
    ds = TokenDataset(tmp_path / "ds")
    assert ds[0]["ids"].tolist() == encoded["ids"]
    assert json.loads((tmp_path / "ds" / "run.json").read_text())["options"]["preprocess"] == {"max_pixels": 16384,
                                                                                      "split_shots": True}
    assert main(["verify", str(tmp_path / "ds"), "--sample", "-1"]) == 0   # re-encoded under the run's policy
    tok = unitok.load()
    tok.preprocess = Preprocess(max_pixels=128 * 128)
    assert tok.encode(Image.open(tmp_path / "in" / "photo.png")).ids.tolist() == encoded["ids"]
    assert len(encoded["ids"]) < len(unitok.load().encode(Image.open(tmp_path / "in" / "photo.png"))) / 10


def test_preprocess_must_be_a_policy_and_max_fps_keeps_ntsc():
    tok = unitok.load()
    for bad in ({"max_pixels": 5}, "fast"):
        with pytest.raises(ConfigError, match="preprocess must be a unitok.media.Preprocess"):
            tok.preprocess = bad
        with pytest.raises(ConfigError, match="preprocess must be"):
            tok.with_limits(preprocess=bad)
    from fractions import Fraction
    ntsc = Video(torch.zeros(60, 3, 8, 8, dtype=torch.uint8), Fraction(30000, 1001))
    kept = Preprocess(max_fps=29.97).video(ntsc)          # 29.97 is NTSC's rate, to 0.01%
    assert kept.num_frames == 60 and kept.fps == Fraction(30000, 1001)
    halved = Preprocess(max_fps=15).video(ntsc)
    assert halved.fps == 15 and halved.num_frames == 30
