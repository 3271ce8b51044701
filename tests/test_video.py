"""Video tokenizer: any size and frame count through UniTokenizer, the frame rate, the
next-frame-and-scale layout, inflation from an image tokenizer, causality and windowed encoding /
decoding, the sound track, save/load, errors, and the tiny training recipe."""

from __future__ import annotations

import importlib.util
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

import unitok
from unitok import Audio, ConfigError, Image, MediaError, TokenSequenceError, UniTokenizer, Video
from unitok.checkpoint import load_pretrained
from unitok.image import ImageTokenizer, ImageTokenizerConfig
from unitok.layout import EOF, FrameScale
from unitok.quantize import FSQConfig, MultiScaleConfig
from unitok.video import SpatialConfig, VideoTokenizer, VideoTokenizerConfig

ROOT = Path(__file__).resolve().parent.parent
FSQ = MultiScaleConfig(FSQConfig((5, 5, 5)), scales=(4, 2, 1))
SPATIAL = dict(channels=8, channel_mult=(1, 2), patch=2, enc_blocks=1, dec_blocks=1, mid_blocks=1)


def tiny_image(quantizer=FSQ) -> ImageTokenizer:
    """Stride 4, random weights; the temporal layers of a video model inflated from it are
    randomised too (see ``tiny_model``) so that they matter."""
    torch.manual_seed(0)
    cfg = ImageTokenizerConfig(**SPATIAL, quantizer=quantizer)
    return ImageTokenizer(cfg).eval()


def tiny_model(**kw) -> VideoTokenizer:
    """A stride-4, temporal-4 video model whose temporal layers are randomised (they start as the
    identity otherwise), so causality and windowing are tested on real temporal mixing."""
    quantizer = kw.pop("quantizer", FSQ)
    torch.manual_seed(0)
    cfg = VideoTokenizerConfig(SpatialConfig(**SPATIAL, quantizer=quantizer), **kw)
    model = VideoTokenizer(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".conv2.conv." in name or "expand" in name:          # the zero-initialised temporal convs
                p.normal_(0, 0.05)
    return model.eval()


def clip(frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """uint8 [frames, 3, height, width]: a smooth picture drifting right, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6, generator=g), size=(height, width + frames),
                                           mode="bilinear", align_corners=False)[0]
    x = torch.stack([base[:, :, t:t + width] for t in range(frames)])
    x = x + 0.05 * torch.rand(x.shape, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def text():
    return unitok.text.load_default()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


# -- the model ------------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 2, 5, 17])
def test_latent_frames_and_shapes(model, frames):
    x = clip(frames, 19, 30)[None]
    codes = model.encode(x)
    T = 1 + -(-(frames - 1) // 4)                       # 1 + ceil((frames - 1) / 4)
    assert model.latent_frames(frames) == T
    assert [tuple(c.shape) for c in codes] == [(1, T, h, w) for h, w in model.scales(19, 30)]
    assert model.decode(codes).shape == (1, 1 + 4 * (T - 1), 3, 20, 32)    # padded grid, whole chunks
    y = model.decode(codes, frames, (19, 30))
    assert y.shape == (1, frames, 3, 19, 30) and 0 <= y.min() and y.max() <= 1
    # 1 + 4k frames need no temporal padding: exactly 1 + k latent frames
    assert model.latent_frames(1 + 4 * 3) == 4 and model.latent_frames(1 + 4 * 3 + 1) == 5


@pytest.mark.parametrize("shape", [(1, 16, 16), (2, 9, 7), (5, 33, 21), (17, 1, 1)])
def test_uni_tokenizer_round_trip_any_size(text, model, shape):
    tok = UniTokenizer(text, {"video": model})
    T, H, W = shape
    video = Video(clip(T, H, W), Fraction(30000, 1001))
    seq = tok.encode(["a clip:", video])
    parts = tok.decode(seq)
    assert parts[0] == "a clip:"
    out = parts[1]
    assert isinstance(out, Video)
    assert (out.num_frames, out.height, out.width) == shape and out.fps == Fraction(30000, 1001)
    assert out.audio is None
    # the body is the FrameScale layout: one group per (latent frame, scale)
    header = {"frames": T, "height": H, "width": W, "fps_num": 30000, "fps_den": 1001}
    layout = model.layout(header)
    assert isinstance(layout, FrameScale) and layout.frames == model.latent_frames(T)
    span = seq.spans[1]
    n_header = len(tok.space.dim_ids(header.values()))
    body = slice(span.start + 1 + n_header, span.stop - 1)
    assert body.stop - body.start == len(layout) == model.tokens(T, H, W)
    groups = seq.groups[body]
    assert len(np.unique(groups)) == layout.frames * len(layout.scales)
    # groups run frame by frame, coarse to fine: the first group of every frame is its 1-token scale
    sizes = np.bincount(groups - groups[0])
    per_frame = [h * w for h, w in model.scales(H, W)]
    assert sizes.tolist() == per_frame * layout.frames
    # decoding is deterministic and equals the batched API
    again = tok.decode(tok.encode(video))[0]
    assert torch.equal(again.frames, out.frames)
    batched = model.decode(model.encode(video.frames[None]), T, (H, W))[0]
    assert torch.equal((batched * 255).round().to(torch.uint8), out.frames)


@pytest.mark.parametrize("fps", [Fraction(30000, 1001), 24, 12.5, Fraction(1, 3)])
def test_frame_rate_round_trips(text, model, fps):
    tok = UniTokenizer(text, {"video": model})
    out = tok.decode(tok.encode(Video(clip(3, 8, 8), fps)))[0]
    assert out.fps == Video(clip(1, 1, 1), fps).fps


def test_eof_layout(text):
    m = tiny_model(eof=True)
    header = {"frames": 9, "height": 8, "width": 12, "fps_num": 25, "fps_den": 1}
    layout = m.layout(header)
    assert layout.eof and len(layout) == m.tokens(9, 8, 12) == 3 * (sum(h * w for h, w in m.scales(8, 12)) + 1)
    assert (layout.expected_levels == EOF).sum() == 3
    tok = UniTokenizer(text, {"video": m})
    out = tok.decode(tok.encode(Video(clip(9, 8, 12), 25)))[0]
    assert (out.num_frames, out.height, out.width) == (9, 8, 12)


def test_bits_per_pixel_of_the_default_layout():
    q = MultiScaleConfig(FSQConfig((8, 8, 8, 8)), scales=(32, 16, 8, 4, 2, 1))
    m = VideoTokenizer(VideoTokenizerConfig(SpatialConfig(channels=8, patch=4, quantizer=q)))
    assert m.downsample == 8 and m.latent_frames(17) == 5
    assert m.tokens(17, 256, 256) == 5 * 1365
    assert abs(m.bits_per_pixel(17, 256, 256) - 5 * 1365 * 12 / (17 * 256 * 256)) < 1e-12
    assert m.bits_per_pixel(17, 256, 256) <= 0.1


# -- inflation --------------------------------------------------------------------------------------


@pytest.mark.parametrize("quantizer", [FSQ, FSQConfig((5, 5, 5))], ids=["multiscale", "single"])
def test_inflated_one_frame_video_is_the_image(quantizer):
    image = tiny_image(quantizer)
    video = VideoTokenizer.from_image(image, temporal=4)
    x = torch.rand(2, 3, 21, 34)
    ci, cv = image.encode(x), video.encode(x[:, None])
    if video.multiscale:
        assert all(torch.equal(a, b[:, 0]) for a, b in zip(ci, cv))
    else:
        assert torch.equal(ci, cv[:, 0])
    assert torch.allclose(image.decode(ci, (21, 34)), video.decode(cv, 1, (21, 34))[:, 0], atol=1e-5)
    # a still video is the image in every latent frame (chunks of equal frames pass through)
    still = video.encode(x[:, None].expand(-1, 9, -1, -1, -1))
    first = still[-1][:, 0] if video.multiscale else still[:, 0]
    assert all(torch.equal(first, (still[-1] if video.multiscale else still)[:, t]) for t in range(3))


def test_inflated_from_the_bundled_image_tokenizer():
    from unitok.image import DEFAULT_DIR, load_default

    if not (DEFAULT_DIR / "config.json").exists():
        pytest.skip("no bundled image tokenizer")
    image = load_default()
    video = VideoTokenizer.from_image(image, temporal=4)
    assert video.bits_per_pixel(17, 256, 256) <= 0.1
    g = torch.Generator().manual_seed(1)
    pic = Image(torch.randint(0, 256, (3, 45, 61), dtype=torch.uint8, generator=g))
    _, image_codes = image.encode_item(pic)
    header, video_codes = video.encode_item(Video(pic.pixels[None], 25))
    assert header["frames"] == 1 and len(video_codes) == 1
    assert all(np.array_equal(a, b) for a, b in zip(image_codes, video_codes[0]))


def test_inflation_refuses_a_different_config():
    image = tiny_image()
    other = VideoTokenizer(VideoTokenizerConfig(SpatialConfig(**{**SPATIAL, "channels": 16}, quantizer=FSQ)))
    with pytest.raises(ConfigError, match="channels"):
        other.inflate_from(image)


# -- causality and long videos -----------------------------------------------------------------------


def test_causal_in_time(model):
    x = clip(13, 16, 16)[None]
    y = x.clone()
    y[:, 9:] = 255 - y[:, 9:]               # change the last chunk only (frames 9..12)
    a, b = model.encode(x), model.encode(y)
    # latent frames 0..2 cover frames 0..8: unchanged; the last one changes
    assert all(torch.equal(p[:, :3], q[:, :3]) for p, q in zip(a, b))
    assert not torch.equal(a[-1][:, 3], b[-1][:, 3])
    da, db = model.decode(a, 13), model.decode(b, 13)
    assert torch.equal(da[:, :9], db[:, :9])


def test_windowed_encode_and_decode_equal_one_shot():
    one_shot, windowed = tiny_model(), tiny_model()
    windowed.window_pixels = 4 * 16 * 16                 # one latent frame (4 frames of 16x16) per window
    assert windowed.window(16, 16) == 1 and one_shot.window(16, 16) > 8
    x = clip(23, 16, 16)[None]
    a, b = one_shot.encode(x), windowed.encode(x)
    assert [c.shape[1] for c in b] == [7] * len(b)
    same = sum(int((p == q).sum()) for p, q in zip(a, b)) / sum(p.numel() for p in a)
    assert same == 1.0                   # float rounding could flip a boundary code; none here
    assert not next(windowed._decode_windows(a, 23, None)).requires_grad    # no graph kept across windows
    da, db = one_shot.decode(a, 23), windowed.decode(a, 23)
    assert da.shape == db.shape == (1, 23, 3, 16, 16)
    assert torch.allclose(da, db, atol=1e-5)


# -- the sound track ---------------------------------------------------------------------------------


def test_video_with_audio(text, model):
    from unitok.audio import AudioTokenizer, AudioTokenizerConfig
    from unitok.quantize import RVQConfig

    sound = Audio.from_array(torch.rand(1, 8000) - 0.5, 8000)
    video = Video(clip(5, 8, 8), 25, audio=sound)
    # no audio tokenizer in the suite: the sound is dropped
    tok = UniTokenizer(text, {"video": model})
    parts = tok.decode(tok.encode(video))
    assert len(parts) == 1 and isinstance(parts[0], Video) and parts[0].audio is None
    # with one: the sound track is its own audio segment right after the video
    torch.manual_seed(0)
    q = RVQConfig(levels=2, dim=8, codebook_size=16, kmeans_init=False)
    audio = AudioTokenizer(AudioTokenizerConfig(sample_rate=8000, channels=4, ratios=(4, 4), kernel=5, lstm=0,
                                                quantizer=q)).eval()
    tok = UniTokenizer(text, {"video": model, "audio": audio})
    seq = tok.encode(video)
    assert [s.modality for s in seq.spans] == ["video", "audio"] and seq.spans[0].stop == seq.spans[1].start
    assert tok.encode(video) == tok.encode([video])
    out_video, out_audio = tok.decode(seq)
    assert isinstance(out_video, Video) and out_video.num_frames == 5
    assert isinstance(out_audio, Audio) and out_audio.num_samples == 8000


def test_cli_round_trip(tmp_path, text, model):
    from unitok.cli import main

    UniTokenizer(text, {"video": model}).save_pretrained(tmp_path / "suite")
    Video(clip(6, 24, 32), Fraction(30000, 1001)).save(tmp_path / "clip.mp4")
    suite = ["--suite", str(tmp_path / "suite")]
    assert main(["encode", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "tok"), *suite]) == 0
    assert main(["decode", str(tmp_path / "tok"), "-o", str(tmp_path / "rec"), *suite]) == 0
    rec = Video.open(tmp_path / "rec" / "clip.mp4")
    assert (rec.num_frames, rec.height, rec.width) == (6, 24, 32) and rec.fps == Fraction(30000, 1001)


# -- errors -----------------------------------------------------------------------------------------


def test_bad_inputs(text, model):
    with pytest.raises(MediaError, match="RGB frames"):
        model.encode(torch.rand(1, 3, 16, 16))                  # an image batch, not a video batch
    with pytest.raises(MediaError, match="takes a Video"):
        model.encode_item(Image(torch.zeros(3, 8, 8, dtype=torch.uint8)))
    tok = UniTokenizer(text, {"video": model})
    seq = tok.encode(Video(clip(5, 8, 8), 25))
    with pytest.raises(TokenSequenceError) as e:                # truncated: the last frame's codes cut off
        tok.decode(np.concatenate([seq.ids[:-4], seq.ids[-1:]]))
    assert e.value.position == len(seq) - 4 and "truncated" in str(e.value)
    repaired = tok.decode(np.concatenate([seq.ids[:-4], seq.ids[-1:]]), strict=False)
    assert repaired[0].num_frames == 5 and repaired.repairs
    bad = seq.ids.copy()
    bad[1:3] = tok.space.dim_ids([0])                           # a header asking for 0 frames
    with pytest.raises(TokenSequenceError, match="frames") as e:
        tok.decode(bad)
    assert e.value.position == 1
    with pytest.raises(TokenSequenceError, match="larger"):
        model.check_header({"frames": 1, "height": 10 ** 6, "width": 4, "fps_num": 1, "fps_den": 1})
    with pytest.raises(ConfigError, match="temporal"):
        VideoTokenizerConfig(temporal=0)


def test_headers_over_the_limits_are_refused_before_decoding(text, model):
    """A generated header may ask for any size; lenient decode must not build it (MediaLimits)."""
    from unitok.media import MediaLimits

    small = MediaLimits(max_frames=100, max_pixels=64 * 64, max_seconds=10.0, max_decoded_bytes=10**6)
    tok = UniTokenizer(text, {"video": model}).with_limits(small)
    ok = {"frames": 17, "height": 32, "width": 32, "fps_num": 25, "fps_den": 1}
    tok.media["video"].check_header(ok)
    for change, what in [({"frames": 101}, "frames"), ({"height": 128, "width": 128}, "pixels"),
                         ({"frames": 99, "fps_num": 1}, "seconds"), ({"frames": 99, "height": 64, "width": 64}, "bytes")]:
        with pytest.raises(TokenSequenceError, match=what):
            tok.media["video"].check_header({**ok, **change})
    with pytest.raises(MediaError, match="frames"):
        tok.encode(Video(clip(101, 8, 8), 25))


# -- checkpoints ------------------------------------------------------------------------------------


def test_save_load(tmp_path, text, model):
    model.save_pretrained(tmp_path / "vid")
    cfg = json.loads((tmp_path / "vid" / "config.json").read_text())
    assert cfg["type"] == "video.causal" and cfg["config"]["temporal"] == 4
    assert cfg["config"]["spatial"]["quantizer"]["kind"] == "multiscale"        # the new form is written
    loaded = load_pretrained(tmp_path / "vid")
    assert isinstance(loaded, VideoTokenizer) and loaded.fingerprint == model.fingerprint
    x = clip(6, 10, 12)[None]
    assert all(torch.equal(a, b) for a, b in zip(model.encode(x), loaded.encode(x)))
    # a suite with a video tokenizer in it; fp16 export still loads
    tok = UniTokenizer(text, {"video": model})
    tok.save_pretrained(tmp_path / "suite")
    video = Video(clip(6, 10, 12), 24)
    assert np.array_equal(tok.encode(video).ids, UniTokenizer.from_pretrained(tmp_path / "suite").encode(video).ids)
    model.save_pretrained(tmp_path / "half", dtype=torch.float16)
    VideoTokenizer.from_pretrained(tmp_path / "half").encode(x)


def test_flat_config_of_older_unitok_loads(tmp_path, model):
    """config.json files written before the spatial part was nested (and before each quantizer
    kind had its config) load into the nested config, with the same weights and codes."""
    from unitok.checkpoint import config_from_dict, config_to_dict

    model.save_pretrained(tmp_path / "vid")
    path = tmp_path / "vid" / "config.json"
    data = json.loads(path.read_text())
    spatial = data["config"].pop("spatial")
    inner = spatial["quantizer"].pop("quantizer")
    spatial["quantizer"] = {**inner, "scales": spatial["quantizer"]["scales"], "refine": True, "bits": 10}
    data["config"].update(spatial)
    path.write_text(json.dumps(data))
    loaded = load_pretrained(tmp_path / "vid")
    assert loaded.cfg == model.cfg
    x = clip(5, 8, 12)[None]
    assert all(torch.equal(a, b) for a, b in zip(model.encode(x), loaded.encode(x)))
    with pytest.raises(ConfigError, match="chanels"):
        config_from_dict(VideoTokenizerConfig, {**config_to_dict(model.cfg), "chanels": 8})


def test_bundled_default_if_present(text):
    from unitok.video import DEFAULT_DIR, load_default

    if not (DEFAULT_DIR / "config.json").exists():
        pytest.skip("no bundled video tokenizer in unitok/assets/video")
    assert (DEFAULT_DIR / "model.safetensors").stat().st_size < 8e6
    m = load_default()
    assert m.bits_per_pixel(17, 256, 256) <= 0.1
    assert "video" in unitok.load().media


# -- the recipe -------------------------------------------------------------------------------------


def _recipe():
    spec = importlib.util.spec_from_file_location("train_video", ROOT / "recipes" / "train_video.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", ["video_default", "video_large", "video_gpu"])
def test_configs_parse_and_build(name):
    recipe = _recipe()
    cfg = recipe.load_config(ROOT / "recipes" / "configs" / f"{name}.yaml")
    model = VideoTokenizer(cfg["model_config"])
    assert model.downsample == 8 and model.temporal == 4 and model.multiscale
    assert model.bits_per_pixel(17, 256, 256) <= 0.1
    if name in ("video_default", "video_gpu"):
        assert sum(p.numel() for p in model.parameters()) * 2 < 8e6           # fp16 weights under 8 MB
        assert cfg["train"]["time_limit_min"] and cfg["init"]["image"] == "unitok/assets/image"
        # the model section matches the bundled image tokenizer, so inflation works
        from unitok.image import DEFAULT_DIR, load_default

        if (DEFAULT_DIR / "config.json").exists():
            model.inflate_from(load_default())


def test_init_image_flag_overrides_the_config(tmp_path, capsys):
    recipe = _recipe()
    assert recipe.main(["--config", str(ROOT / "recipes" / "configs" / "video_tiny.yaml"), "--out-dir",
                        str(tmp_path / "run"), "--init-image", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: checkpoint folder not found" in capsys.readouterr().err


def test_recipe_rejects_unknown_options(tmp_path):
    recipe = _recipe()
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  frame: 9\n")
    with pytest.raises(ConfigError, match="frame"):
        recipe.load_config(bad)


def test_recipe_main_reports_missing_data(tmp_path, capsys):
    recipe = _recipe()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  train: {tmp_path / 'nope.npy'}\nlog:\n  out_dir: {tmp_path / 'o'}\n")
    assert recipe.main(["--config", str(cfg)]) == 2
    assert "fetch_video.py" in capsys.readouterr().err


def test_ssim_loss_matches_the_metric():
    from unitok.metrics import ssim

    recipe = _recipe()
    g = torch.Generator().manual_seed(0)
    for shape in [(2, 3, 40, 33), (1, 3, 7, 9)]:
        x = torch.rand(shape, generator=g)
        y = (x + 0.1 * torch.rand(shape, generator=g)).clamp(0, 1)
        assert abs(float(recipe.ssim_loss(x, y)) - float(1 - ssim(x, y).mean())) < 1e-5


@pytest.mark.timeout(240)
def test_tiny_recipe_trains_resumes_and_exports(tmp_path):
    recipe = _recipe()
    out = tmp_path / "run"
    config = ROOT / "recipes" / "configs" / "video_tiny.yaml"
    cfg = recipe.load_config(config, {"log": {"out_dir": str(out)}})
    summary = recipe.train(cfg)
    assert summary["steps"] == cfg["train"]["steps"]
    assert summary["last_loss"] < 0.7 * summary["first_loss"]
    log = (out / "log.txt").read_text()
    assert log.count("held-out psnr") >= 3 and "bpp" in log
    start = float(log.split("val step 0 | held-out psnr ")[1].split()[0])
    assert summary["psnr"] > start + 3, (start, summary["psnr"])      # held-out clips, not the training ones
    assert (out / "checkpoint" / "optimizer.safetensors").exists()
    # --resume continues from the checkpoint
    cfg2 = recipe.load_config(config, {"log": {"out_dir": str(out)}, "train": {"steps": cfg["train"]["steps"] + 5}})
    assert recipe.train(cfg2, resume=True)["steps"] == cfg["train"]["steps"] + 5
    assert "resumed from" in (out / "log.txt").read_text()
    # --export writes a bundle-ready fp16 model
    assert recipe.main(["--config", str(config), "--out-dir", str(out), "--export", str(tmp_path / "asset")]) == 0
    exported = VideoTokenizer.from_pretrained(tmp_path / "asset")
    assert (tmp_path / "asset" / "model.safetensors").stat().st_size < 8e6
    assert exported.cfg == cfg["model_config"]
