"""Image tokenizer: quantizers, the multi-scale wrapper, arbitrary sizes through UniTokenizer,
save/load, and the tiny training recipe."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import unitok
from unitok import ConfigError, Image, MediaError, TokenSequenceError, UniTokenizer
from unitok.checkpoint import config_to_dict, id_config, load_pretrained
from unitok.image import ImageTokenizer, ImageTokenizerConfig
from unitok.layout import NextScale, Raster
from unitok.metrics import codebook_usage, ms_ssim, perplexity, psnr, ssim
from unitok.quantize import (FSQConfig, LFQConfig, MultiScaleConfig, MultiScaleQuantizer, QuantizerConfig, VQConfig,
                             build_quantizer, quantizer_config, scale_schedule)

ROOT = Path(__file__).resolve().parent.parent

QUANTIZERS = {
    "fsq": FSQConfig(levels=(8, 5, 5, 5)),
    "vq": VQConfig(codebook_size=64, codebook_dim=8),
    "lfq": LFQConfig(bits=8),
    "bsq": LFQConfig(bits=8, spherical=True),
}


def tiny_model(quantizer, **kw) -> ImageTokenizer:
    torch.manual_seed(0)
    cfg = ImageTokenizerConfig(channels=8, channel_mult=(1, 2), patch=2, enc_blocks=1, dec_blocks=1, mid_blocks=0,
                               quantizer=quantizer, **kw)
    return ImageTokenizer(cfg).eval()


@pytest.fixture(scope="module")
def text():
    return unitok.text.load_default()


# -- quantizers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_quantizer_indices_codes_round_trip(name):
    torch.manual_seed(0)
    q = build_quantizer(QUANTIZERS[name])
    z = torch.randn(3, q.dim, 5, 7)
    q.train()
    q(z)                       # VQ: k-means init and one EMA update happen in training mode
    q.eval()
    quantized, idx, aux = q(z)
    assert idx.shape == (3, 5, 7) and idx.dtype == torch.int64
    assert quantized.shape == z.shape and aux.shape == ()
    assert 0 <= int(idx.min()) and int(idx.max()) < q.codebook_size == q.codebook_sizes[0]
    vectors = q.decode(idx)
    assert torch.equal(vectors, quantized)                  # eval forward == decode from ids
    assert torch.equal(q.encode(z), idx) and q.training is False
    assert torch.equal(q.vectors_to_codes(vectors), idx)
    every = torch.arange(q.codebook_size).reshape(1, 1, -1)  # every code survives the round trip
    assert torch.equal(q.vectors_to_codes(q.decode(every)), every)


@pytest.mark.parametrize("name", ["vq", "lfq"])
def test_encode_never_changes_the_quantizer(name):
    torch.manual_seed(0)
    q = build_quantizer(QUANTIZERS[name]).train()
    q(torch.randn(2, q.dim, 4, 4))                          # VQ: k-means init in training mode
    before = {k: v.clone() for k, v in q.state_dict().items()}
    q.encode(torch.randn(2, q.dim, 4, 4) * 3)
    assert q.training and all(torch.equal(v, q.state_dict()[k]) for k, v in before.items())


def test_quantizer_config_errors():
    with pytest.raises(ConfigError, match="kind 'nope' is unknown"):
        quantizer_config({"kind": "nope"})
    with pytest.raises(ConfigError, match="levels"):
        FSQConfig(levels=(2, 8))
    with pytest.raises(ConfigError, match="end with 1"):
        MultiScaleConfig(scales=(4, 2))
    with pytest.raises(ConfigError, match="decreasing"):
        MultiScaleConfig(scales=(1, 2, 4))
    with pytest.raises(ConfigError, match="grid quantizer"):
        MultiScaleConfig({"kind": "rvq"})
    with pytest.raises(ConfigError, match="does not quantize"):
        ImageTokenizer(ImageTokenizerConfig(quantizer={"kind": "rvq", "dim": 4}))


def test_quantizer_config_forms():
    """The config.json form of each kind, and the flat form older unitok wrote, load alike."""
    ms = MultiScaleConfig(VQConfig(codebook_size=64, codebook_dim=4), scales=(2, 1), refine=False)
    saved = config_to_dict(ms)
    assert saved["kind"] == "multiscale" and saved["quantizer"]["kind"] == "vq"
    assert quantizer_config(saved) == ms
    flat = {"kind": "vq", "levels": [8, 8, 8, 8], "codebook_size": 64, "codebook_dim": 4, "commitment_weight": 0.25,
            "ema_decay": 0.8, "kmeans_init": True, "dead_code_threshold": 2.0, "bits": 10, "spherical": False,
            "entropy_weight": 0.1, "scales": [2, 1], "refine": False}
    assert quantizer_config(flat) == ms
    assert quantizer_config({**flat, "scales": []}) == ms.quantizer
    assert QuantizerConfig(kind="lfq", bits=6, spherical=True) == LFQConfig(bits=6, spherical=True)
    with pytest.raises(ConfigError, match="unknown FSQConfig option"):
        quantizer_config({"kind": "fsq", "level": [8]})
    # training-only options are not part of what decides ids
    assert id_config(VQConfig(codebook_size=64, ema_decay=0.5, kmeans_init=False)) == {"codebook_size": 64}


def test_scale_schedule():
    assert scale_schedule((32, 16, 8, 4, 2, 1), 32, 32) == [(1, 1), (2, 2), (4, 4), (8, 8), (16, 16), (32, 32)]
    assert sum(h * w for h, w in scale_schedule((32, 16, 8, 4, 2, 1), 32, 32)) == 1365
    # odd grids: ceil sizes, merged duplicates, always ending at the full grid
    assert scale_schedule((32, 16, 8, 4, 2, 1), 26, 42) == [(1, 2), (2, 3), (4, 6), (7, 11), (13, 21), (26, 42)]
    assert scale_schedule((32, 16, 8, 4, 2, 1), 1, 1) == [(1, 1)]
    assert scale_schedule((4, 2, 1), 3, 1) == [(1, 1), (2, 1), (3, 1)]


@pytest.mark.parametrize("name", ["fsq", "vq", "lfq"])
def test_multiscale_round_trip(name):
    torch.manual_seed(0)
    q = build_quantizer(MultiScaleConfig(QUANTIZERS[name], scales=(8, 4, 2, 1)))
    assert isinstance(q, MultiScaleQuantizer) and q.codebook_sizes == [q.quantizer.codebook_size]
    z = torch.randn(2, q.dim, 11, 16)
    q.train()
    f_hat, idx, aux = q(z)
    assert [tuple(i.shape[-2:]) for i in idx] == [(2, 2), (3, 4), (6, 8), (11, 16)]
    assert f_hat.shape == z.shape and aux.shape == ()
    q.eval()
    f_hat, idx, _ = q(z)
    assert torch.equal(q.decode(idx), f_hat) and torch.equal(q.decode(idx, (11, 16)), f_hat)
    assert all(torch.equal(a, b) for a, b in zip(q.encode(z), idx))
    per_scale = [q.quantizer.decode(i) for i in idx]
    assert all(torch.equal(a, b) for a, b in zip(q.vectors_to_codes(per_scale), idx))
    with pytest.raises(ValueError, match="scales"):
        q.decode(idx[1:], (11, 16))


# -- the model ----------------------------------------------------------------------------------


def test_encode_decode_shapes_any_size():
    m = tiny_model(MultiScaleConfig(FSQConfig((5, 5, 5)), scales=(4, 2, 1)))
    x = torch.rand(2, 3, 37, 21)
    codes = m.encode(x)
    assert [tuple(c.shape) for c in codes] == [(2, 3, 2), (2, 5, 3), (2, 10, 6)]
    assert m.decode(codes).shape == (2, 3, 40, 24)            # the padded grid by default
    y = m.decode(codes, size=(37, 21))
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    with pytest.raises(MediaError, match="RGB"):
        m.encode(torch.rand(1, 4, 8, 8))


@pytest.mark.parametrize("multiscale", [True, False])
@pytest.mark.parametrize("shape", [(3, 201, 333), (3, 1, 1), (1, 17, 9), (4, 30, 41)])
def test_uni_tokenizer_round_trip_any_size(text, multiscale, shape):
    q = MultiScaleConfig(FSQConfig((5, 5, 5)), scales=(8, 4, 2, 1)) if multiscale else FSQConfig((5, 5, 5))
    m = tiny_model(q)
    tok = UniTokenizer(text, {"image": m})
    g = torch.Generator().manual_seed(0)
    img = Image(torch.randint(0, 256, shape, dtype=torch.uint8, generator=g))
    seq = tok.encode(["a picture:", img])
    parts = tok.decode(seq)
    assert parts[0] == "a picture:"
    out = parts[1]
    assert isinstance(out, Image) and out.channels == 3 and (out.height, out.width) == shape[1:]
    # the body is laid out as the codec says: next-scale groups or raster
    span = seq.spans[1]
    h, w = m.grid(shape[1], shape[2])
    header = len(tok.space.dim_ids([shape[1], shape[2]]))
    body = span.stop - span.start - 2 - header
    layout = m.layout({"height": shape[1], "width": shape[2]})
    assert isinstance(layout, NextScale if multiscale else Raster)
    assert body == len(layout) == m.tokens(shape[1], shape[2])
    groups = seq.groups[span.start + 1 + header:span.stop - 1]
    assert len(np.unique(groups)) == (len(layout.scales) if multiscale else h * w)
    # decoding is deterministic and equals the batched API
    again = tok.decode(tok.encode(img))[0]
    assert torch.equal(again.pixels, out.pixels)


def test_gray_and_rgba_use_rgb(text):
    m = tiny_model(MultiScaleConfig(FSQConfig((5, 5, 5)), scales=(4, 2, 1)))
    gray = Image(torch.full((1, 16, 16), 100, dtype=torch.uint8))
    _, codes_gray = m.encode_item(gray)
    _, codes_rgb = m.encode_item(gray.to_rgb())
    assert all(np.array_equal(a, b) for a, b in zip(codes_gray, codes_rgb))
    rgba = Image(torch.cat([torch.full((3, 16, 16), 10, dtype=torch.uint8), torch.zeros(1, 16, 16, dtype=torch.uint8)]))
    _, codes_rgba = m.encode_item(rgba)     # fully transparent over white -> white
    _, codes_white = m.encode_item(Image(torch.full((3, 16, 16), 255, dtype=torch.uint8)))
    assert all(np.array_equal(a, b) for a, b in zip(codes_rgba, codes_white))


def test_header_limits_and_bits(text):
    m = tiny_model(MultiScaleConfig(FSQConfig((8, 8, 8, 8)), scales=(32, 16, 8, 4, 2, 1)))
    m_f8 = ImageTokenizer(ImageTokenizerConfig(channels=8, channel_mult=(1, 2), patch=4,
                                               quantizer=m.cfg.quantizer))
    assert m_f8.tokens(256, 256) == 1365 and m_f8.bits_per_pixel(256, 256) <= 0.25
    with pytest.raises(TokenSequenceError, match="larger"):
        m.check_header({"height": 10 ** 6, "width": 4})
    with pytest.raises(TokenSequenceError):
        m.check_header({"height": 0, "width": 4})


def test_save_load(tmp_path, text):
    m = tiny_model(MultiScaleConfig(VQConfig(codebook_size=32, codebook_dim=4), scales=(2, 1)))
    m.train()
    m(torch.rand(2, 3, 16, 16))                       # k-means init so the codebook is not trivial
    m.eval()
    m.save_pretrained(tmp_path / "img")
    cfg = json.loads((tmp_path / "img" / "config.json").read_text())
    assert cfg["type"] == "image.vqgan" and cfg["config"]["quantizer"]["scales"] == [2, 1]
    assert cfg["config"]["quantizer"]["quantizer"]["kind"] == "vq"               # the new form is written
    loaded = load_pretrained(tmp_path / "img")
    assert isinstance(loaded, ImageTokenizer) and loaded.fingerprint == m.fingerprint
    x = torch.rand(1, 3, 19, 23)
    assert all(torch.equal(a, b) for a, b in zip(m.encode(x), loaded.encode(x)))
    # a whole suite with the image tokenizer in it
    tok = UniTokenizer(text, {"image": m})
    tok.save_pretrained(tmp_path / "suite")
    tok2 = UniTokenizer.from_pretrained(tmp_path / "suite")
    img = Image(torch.randint(0, 256, (3, 19, 23), dtype=torch.uint8))
    assert np.array_equal(tok.encode(img).ids, tok2.encode(img).ids)
    # fp16 export still loads (weights cast back to the model's dtype)
    m.save_pretrained(tmp_path / "half", dtype=torch.float16)
    ImageTokenizer.from_pretrained(tmp_path / "half").encode(x)


def test_config_errors_name_the_field(tmp_path):
    from unitok.checkpoint import config_from_dict

    with pytest.raises(ConfigError, match="norm"):
        ImageTokenizerConfig(norm="batch")
    with pytest.raises(ConfigError, match="unknown FSQConfig option"):
        config_from_dict(ImageTokenizerConfig, {"quantizer": {"kind": "fsq", "level": [8]}})


def test_bundled_default(text):
    from unitok.image import DEFAULT_DIR, load_default

    if not (DEFAULT_DIR / "config.json").exists():
        pytest.skip("no bundled image tokenizer in unitok/assets/image")
    assert (DEFAULT_DIR / "model.safetensors").stat().st_size < 8e6
    m = load_default()
    assert m.multiscale and m.bits_per_pixel(256, 256) <= 0.25
    tok = UniTokenizer(text, {"image": m})
    g = torch.Generator().manual_seed(0)
    img = Image(torch.randint(0, 256, (3, 201, 333), dtype=torch.uint8, generator=g))
    out = tok.decode(tok.encode(img))[0]
    assert (out.height, out.width) == (201, 333)
    # a smooth picture comes back close
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    x = 0.15 + 0.7 * torch.stack([xx, yy, 0.5 * (xx + yy)])[None]
    assert float(psnr(m.decode(m.encode(x), (64, 64)), x).mean()) > 22


# -- metrics ------------------------------------------------------------------------------------


def test_metrics():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    assert torch.all(psnr(x, x) >= 99) and torch.allclose(ssim(x, x), torch.ones(2))
    assert torch.allclose(ms_ssim(x, x), torch.ones(2), atol=1e-5)
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert 19 < float(psnr(noisy, x).mean()) < 22
    assert 0 < float(ssim(noisy, x).mean()) < 1 and 0 < float(ms_ssim(noisy, x).mean()) < 1
    assert ssim(torch.rand(1, 3, 1, 1), torch.rand(1, 3, 1, 1)).shape == (1,)   # tiny images work
    idx = torch.tensor([0, 0, 1, 3])
    assert codebook_usage(idx, 4) == 0.75
    assert math.isclose(perplexity(torch.tensor([0, 1, 2, 3]), 4), 4.0, rel_tol=1e-6)


# -- the recipe ---------------------------------------------------------------------------------


def _recipe():
    spec = importlib.util.spec_from_file_location("train_image", ROOT / "recipes" / "train_image.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", ["image_default", "image_large", "image_single_scale", "image_continued", "image_gpu"])
def test_configs_parse_and_build(name):
    recipe = _recipe()
    cfg = recipe.load_config(ROOT / "recipes" / "configs" / f"{name}.yaml")
    model, disc = recipe.build(cfg, torch.device("cpu"))
    if name in ("image_continued", "image_gpu"):     # they train the bundled weights on: the same tensors
        bundled = ImageTokenizer.from_pretrained(ROOT / "unitok" / "assets" / "image").state_dict()
        assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in bundled.items()}
    if name == "image_default":
        assert model.multiscale and model.bits_per_pixel(256, 256) <= 0.25
        n = sum(p.numel() for p in model.parameters())
        assert n * 2 < 8e6                         # fp16 weights under 8 MB


def test_recipe_rejects_unknown_options(tmp_path):
    recipe = _recipe()
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batchsize: 4\n")
    with pytest.raises(ConfigError, match="batchsize"):
        recipe.load_config(bad)


@pytest.mark.timeout(180)
def test_tiny_recipe_trains_and_resumes(tmp_path):
    recipe = _recipe()
    out = tmp_path / "run"
    cfg = recipe.load_config(ROOT / "recipes" / "configs" / "image_tiny.yaml", {"log": {"out_dir": str(out)}})
    summary = recipe.train(cfg)
    assert summary["steps"] == cfg["train"]["steps"]
    assert summary["last_loss"] < 0.6 * summary["first_loss"]
    # the trained model beats the untrained one on held-out pictures
    val = torch.from_numpy(recipe.synthetic_images(16, 64, seed=cfg["train"]["seed"] + 10_000)).permute(0, 3, 1, 2) / 255
    untrained = ImageTokenizer(cfg["model_config"]).eval()
    before = recipe.evaluate(untrained, val, 8, torch.device("cpu"))["psnr"]
    trained = ImageTokenizer.from_pretrained(out / "final")
    after = recipe.evaluate(trained, val, 8, torch.device("cpu"))["psnr"]
    assert after > before + 3, (before, after)
    vals = [line.split(" |")[0] for line in (out / "log.txt").read_text().splitlines() if "held-out psnr" in line]
    assert len(vals) >= 2 and len(vals) == len(set(vals))     # the last step (a val_every step) validated once
    assert (out / "checkpoint" / "optimizer.safetensors").exists()
    assert (out / "final" / "model.safetensors").stat().st_size < 8e6
    # --resume continues from the checkpoint
    cfg2 = recipe.load_config(ROOT / "recipes" / "configs" / "image_tiny.yaml",
                              {"log": {"out_dir": str(out)}, "train": {"steps": cfg["train"]["steps"] + 10}})
    summary2 = recipe.train(cfg2, resume=True)
    assert summary2["steps"] == cfg["train"]["steps"] + 10
    assert "resumed from" in (out / "log.txt").read_text()
    # --init: a fresh run starts from the trained weights (step 0, new optimizer)
    warm = tmp_path / "warm"
    cfg3 = recipe.load_config(ROOT / "recipes" / "configs" / "image_tiny.yaml",
                              {"log": {"out_dir": str(warm)}, "train": {"steps": 0, "init": str(out / "final")}})
    recipe.train(cfg3)
    assert "initialised from" in (warm / "log.txt").read_text()
    assert recipe.evaluate(ImageTokenizer.from_pretrained(warm / "final"), val, 8, torch.device("cpu"))["psnr"] > before + 3


def test_recipe_main_reports_missing_data(tmp_path, capsys):
    recipe = _recipe()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  train: {tmp_path / 'nope.npy'}\nlog:\n  out_dir: {tmp_path / 'o'}\n")
    assert recipe.main(["--config", str(cfg)]) == 2
    assert "fetch_images.py" in capsys.readouterr().err


@pytest.mark.parametrize("shape", [(4, 3, 64, 48), (2, 3, 9, 7), (1, 1, 5, 30)])
def test_ssim_matrix_blur_equals_the_convolution(shape, monkeypatch):
    """Sides up to MATRIX_BLUR_MAX_SIDE blur by matrix products, larger ones by convolutions:
    the same SSIM and MS-SSIM either way."""
    import unitok.metrics as M

    g = torch.Generator().manual_seed(shape[-1])
    x = torch.rand(shape, generator=g)
    y = (x + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)
    fast = ssim(x, y), ms_ssim(x, y)
    monkeypatch.setattr(M, "MATRIX_BLUR_MAX_SIDE", 0)
    slow = ssim(x, y), ms_ssim(x, y)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(fast, slow))
