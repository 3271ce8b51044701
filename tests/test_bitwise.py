"""Bitwise multi-scale quantization with nested vocabularies (``unitok.quantize.bitwise``): the
k-bit prefix of a code is the k-bit code, decoding at every k, the id maps, the image tokenizer
hook, save/load, fingerprints and the tiny recipe."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import unitok
from unitok import ConfigError, Image, UniTokenizer
from unitok.checkpoint import id_config, load_pretrained
from unitok.image import ImageTokenizer, ImageTokenizerConfig
from unitok.layout import MISSING, NextScale
from unitok.quantize import BitwiseConfig, BitwiseQuantizer, FSQConfig, build_quantizer, quantizer_config
from unitok.space import extend_codes, prefix_codes

ROOT = Path(__file__).resolve().parent.parent
BITS = 6


def quantizer(**kw) -> BitwiseQuantizer:
    torch.manual_seed(0)
    q = build_quantizer(BitwiseConfig(bits=BITS, scales=(4, 2, 1), **kw))
    with torch.no_grad():   # a non-trivial refinement and steps, as after training
        q.refine.weight.normal_(0, 0.2)
        q.log_gain.normal_(0, 0.5)
    return q.eval()


def tiny_model(bits: int = BITS) -> ImageTokenizer:
    torch.manual_seed(0)
    cfg = ImageTokenizerConfig(channels=8, channel_mult=(1, 2), patch=2, enc_blocks=1, dec_blocks=1, mid_blocks=0,
                               quantizer=BitwiseConfig(bits=bits, scales=(4, 2, 1)))
    model = ImageTokenizer(cfg).eval()
    with torch.no_grad():
        model.quantizer.refine.weight.normal_(0, 0.2)
    return model


# -- id maps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", range(1, BITS + 1))
def test_id_maps_are_inverses_on_the_shared_bits(k):
    codes_k = np.arange(2 ** k)
    up = extend_codes(codes_k, k, BITS)
    assert (prefix_codes(up, BITS, k) == codes_k).all()
    # the d-bit codes under a k-bit code are one contiguous block: a coarsening of the vocabulary
    codes_d = np.arange(2 ** BITS)
    under = prefix_codes(codes_d, BITS, k)
    assert (np.bincount(under) == 2 ** (BITS - k)).all()
    assert (extend_codes(under, k, BITS) <= codes_d).all() and (codes_d < extend_codes(under + 1, k, BITS)).all()
    # the shared bits survive a round trip: d -> k -> d keeps the first k bits
    assert (prefix_codes(extend_codes(under, k, BITS), BITS, k) == under).all()
    # tensors and lists over scales keep their type
    t = [torch.arange(2 ** BITS).reshape(1, 8, 8)]
    assert torch.equal(extend_codes(prefix_codes(t, BITS, k), k, BITS)[0] >> (BITS - k), t[0] >> (BITS - k))


def test_id_maps_refuse_bad_widths():
    with pytest.raises(ConfigError, match="first 7 bits of a 6-bit"):
        prefix_codes(np.zeros(3, np.int64), 6, 7)
    with pytest.raises(ConfigError, match="bits must be an int in 1..6"):
        quantizer().prefix([torch.zeros(1, 1, 1, dtype=torch.long)], 0)


# -- nesting ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", range(1, BITS + 1))
def test_prefix_codes_are_the_k_bit_encode_and_decode_validly(k):
    q = quantizer()
    z = torch.randn(2, BITS, 9, 7) * 2
    full = q.encode(z)
    assert [tuple(c.shape) for c in full] == [(2, 3, 2), (2, 5, 4), (2, 9, 7)]
    prefix = q.prefix(full, k)
    assert all(torch.equal(a, b) for a, b in zip(q.encode(z, bits=k), prefix))
    assert all(int(c.max()) < 2 ** k for c in prefix)
    latent = q.decode(prefix, bits=k)
    # the first k channels are those of the full decode, the others neutral (0)
    torch.testing.assert_close(latent[:, :k], q.decode(full)[:, :k])
    assert not latent[:, k:].any()
    # a k-bit code decodes like its first d-bit code with the other channels neutral
    expected = q.decode(q.extend(prefix, k))
    expected[:, k:] = 0
    torch.testing.assert_close(latent, expected)
    # and the error shrinks (weakly) as bits are added
    with torch.no_grad():
        err = [float((z - q.decode(q.prefix(full, j), bits=j)).pow(2).mean()) for j in range(1, BITS + 1)]
    assert err[-1] < err[0]


def test_eval_forward_is_decode_and_codes_round_trip():
    q = quantizer()
    z = torch.randn(1, BITS, 8, 8)
    latent, codes, aux = q(z)
    assert torch.equal(latent, q.decode(codes)) and float(aux) == 0.0
    signs = [q._signs(c, BITS) for c in codes]
    assert all(torch.equal(a, b) for a, b in zip(q.vectors_to_codes(signs), codes))


def test_decode_refuses_codes_wider_than_bits_and_skips_missing():
    q = quantizer()
    codes = q.encode(torch.randn(1, BITS, 4, 4))
    with pytest.raises(ValueError, match="not a 2-bit code"):
        q.decode(codes, bits=2)
    holes = [c.clone() for c in codes]
    holes[-1][..., 0, 0] = MISSING
    assert torch.isfinite(q.decode(holes)).all()


def test_nested_dropout_and_progressive_schedule():
    q = build_quantizer(BitwiseConfig(bits=8, scales=(2, 1), min_train_bits=2, full_bits_prob=0.0,
                                      progressive_steps=100)).train()
    torch.manual_seed(1)
    z = torch.randn(64, 8, 4, 4)
    assert q.max_training_bits() == 2
    latent, codes, aux = q(z)
    kept = latent.abs().flatten(2).amax(-1) > 0          # [B, d]: channels each sample kept
    assert kept[:, :2].all() and not kept[:, 2:].any() and float(aux) > 0
    q.training_step = 50
    assert 2 < q.max_training_bits() < 8
    q.training_step = 100
    kept = q(z)[0].abs().flatten(2).amax(-1) > 0
    counts = kept.sum(1)
    assert (kept == (torch.arange(8) < counts[:, None])).all()   # always a prefix of the channels
    assert counts.min() >= 2 and counts.max() == 8
    assert all(torch.equal(a, b) for a, b in zip(codes, q.encode(z)))   # codes are d-bit whatever k


# -- config ----------------------------------------------------------------------------------------


def test_config_validation_and_fingerprint():
    cfg = quantizer_config({"kind": "bitwise", "bits": 10, "scales": [4, 2, 1], "progressive_steps": 500})
    assert isinstance(cfg, BitwiseConfig) and cfg.size == 1024 and cfg.dim == 10
    # the training schedule does not decide ids: it is left out of the fingerprint
    assert id_config(cfg) == id_config(BitwiseConfig(bits=10, scales=(4, 2, 1)))
    assert id_config(cfg) != id_config(BitwiseConfig(bits=11, scales=(4, 2, 1)))
    for bad, match in [({"bits": 0}, "bits must be in"), ({"scales": [2, 4, 1]}, "decreasing divisors"),
                       ({"min_train_bits": 13}, "min_train_bits")]:
        with pytest.raises(ConfigError, match=match):
            quantizer_config({"kind": "bitwise", **bad})


# -- the image tokenizer ----------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, BITS])
def test_image_tokenizer_decodes_at_every_k(k):
    m = tiny_model()
    x = torch.rand(2, 3, 37, 21)
    codes = m.encode(x)
    prefix = m.quantizer.prefix(codes, k)
    y = m.decode(prefix, size=(37, 21), bits=k)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    # the same as decoding the latent with the last d - k channels neutral
    z = m.codes_to_latent(codes)
    z[:, k:] = 0
    torch.testing.assert_close(y, m.decode_latent(z, (37, 21)).clamp(0, 1))
    if k == BITS:
        assert torch.equal(y, m.decode(codes, size=(37, 21)))


def test_decode_at_bits_needs_a_bitwise_quantizer():
    cfg = ImageTokenizerConfig(channels=8, channel_mult=(1,), patch=2, quantizer=FSQConfig((5, 5, 5)))
    m = ImageTokenizer(cfg).eval()
    codes = m.encode(torch.rand(1, 3, 8, 8))
    with pytest.raises(ConfigError, match="needs a bitwise quantizer"):
        m.decode(codes, bits=2)


def test_save_load_and_uni_tokenizer_round_trip(tmp_path):
    m = tiny_model()
    m.save_pretrained(tmp_path / "bitwise")
    back = load_pretrained(tmp_path / "bitwise")
    assert isinstance(back.quantizer, BitwiseQuantizer) and back.cfg == m.cfg
    x = torch.rand(1, 3, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(back.encode(x), m.encode(x)))
    tok = UniTokenizer(unitok.text.load_default(), {"image": back})
    assert tok.space.ranges[-1].size == 2 ** BITS
    img = Image(torch.randint(0, 256, (3, 20, 13), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)))
    seq = tok.encode(["a picture:", img])
    out = tok.decode(seq)[1]
    assert isinstance(out, Image) and (out.height, out.width) == (20, 13)
    assert isinstance(back.layout({"height": 20, "width": 13}), NextScale)


# -- the recipe ------------------------------------------------------------------------------------


def _recipe():
    spec = importlib.util.spec_from_file_location("train_image", ROOT / "recipes" / "train_image.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bitwise_config_parses_at_the_default_rate():
    recipe = _recipe()
    cfg = recipe.load_config(ROOT / "recipes" / "configs" / "image_bitwise.yaml")
    model, _ = recipe.build(cfg, torch.device("cpu"))
    assert isinstance(model.quantizer, BitwiseQuantizer) and model.bits_per_pixel(256, 256) <= 0.25
    assert sum(p.numel() for p in model.parameters()) * 2 < 8e6


def test_tiny_bitwise_recipe_trains_and_validates_at_k_bits(tmp_path):
    recipe = _recipe()
    out = tmp_path / "run"
    cfg = recipe.load_config(ROOT / "recipes" / "configs" / "image_bitwise_tiny.yaml",
                             {"log": {"out_dir": str(out)}, "train": {"steps": 12}})
    summary = recipe.train(cfg)
    assert summary["steps"] == 12 and np.isfinite(summary["psnr"])
    log = (out / "log.txt").read_text()
    assert "2-bit prefix codes: psnr" in log and "4-bit prefix codes: psnr" in log
    assert isinstance(load_pretrained(out / "final").quantizer, BitwiseQuantizer)


# -- the video tokenizer ---------------------------------------------------------------------------


def test_video_tokenizer_takes_the_bitwise_quantizer():
    from unitok.image import SpatialConfig
    from unitok.video import VideoTokenizer, VideoTokenizerConfig

    torch.manual_seed(0)
    cfg = VideoTokenizerConfig(SpatialConfig(channels=8, channel_mult=(1, 2), patch=2, enc_blocks=1, dec_blocks=1,
                                             mid_blocks=0, quantizer=BitwiseConfig(bits=BITS, scales=(2, 1))))
    m = VideoTokenizer(cfg).eval()
    x = torch.rand(1, 5, 3, 16, 16)
    codes = m.encode(x)
    assert all(int(c.max()) < 2 ** BITS for c in codes)
    assert m.decode(codes, 5, (16, 16)).shape == x.shape
    # every latent frame's codes nest like an image's
    flat = [c.flatten(0, 1) for c in codes]
    latent = m._latent(m.quantizer.prefix(flat, 2), bits=2)
    assert not latent[:, 2:].any()
    # and the public decode takes k-bit prefix codes: the latent with the last d - k channels neutral
    prefix = m.quantizer.prefix(codes, 2)
    y = m.decode(prefix, 5, (16, 16), bits=2)
    z = m.codes_to_latent(codes)
    z[:, :, 2:] = 0
    torch.testing.assert_close(y, m.decode_latent(z)[:, :5, :, :16, :16].clamp(0, 1))
    assert torch.equal(m.decode(codes, 5, (16, 16), bits=BITS), m.decode(codes, 5, (16, 16)))


# -- the benchmark ---------------------------------------------------------------------------------


def test_benchmark_writes_the_rd_table(tmp_path):
    import image_bitwise

    tiny_model().save_pretrained(tmp_path / "bitwise")
    fsq = ImageTokenizer(ImageTokenizerConfig(channels=8, channel_mult=(1, 2), patch=2, mid_blocks=0,
                                              quantizer=FSQConfig((5, 5, 5))))
    fsq.save_pretrained(tmp_path / "fsq")
    (tmp_path / "heldout").mkdir()
    g = torch.Generator().manual_seed(0)
    Image(torch.randint(0, 256, (3, 300, 280), dtype=torch.uint8, generator=g)).save(tmp_path / "heldout" / "a.png")
    results = tmp_path / "RESULTS.md"
    assert image_bitwise.main(["--checkpoint", str(tmp_path / "bitwise"), "--fsq", str(tmp_path / "fsq"),
                               "--heldout", str(tmp_path / "heldout"), "--random-crops", "0", "--bits", "1", "6",
                               "--results", str(results)]) == 0
    text = results.read_text()
    assert "## Bitwise image tokenizer (nested vocabularies)" in text
    assert "| bitwise, k = 1 | 1 | 2^1 |" in text and "| bitwise, k = 6 | 6 | 2^6 |" in text
    assert "FSQ default" in text and "WebP PSNR @ same bpp" in text
    with pytest.raises(SystemExit, match="--bits must lie in 1..6"):
        image_bitwise.main(["--checkpoint", str(tmp_path / "bitwise"), "--fsq", str(tmp_path / "fsq"),
                            "--heldout", str(tmp_path / "heldout"), "--bits", "7", "--results", str(results)])
    with pytest.raises(SystemExit, match="not a bitwise image tokenizer"):
        image_bitwise.main(["--checkpoint", str(tmp_path / "fsq"), "--heldout", str(tmp_path / "heldout")])
