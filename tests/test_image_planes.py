"""Variable rate from one encode of a multi-scale FSQ image tokenizer: the first k scales (a
shorter list of code maps), and the finest scale known only to its top bit planes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unitok.checkpoint import id_config
from unitok.errors import ConfigError
from unitok.image import ImageTokenizer, ImageTokenizerConfig
from unitok.layout import MISSING
from unitok.quantize.multiscale import MultiScaleConfig, plane_prior_of


def tiny(levels=(8, 8, 8), prior=()) -> ImageTokenizer:
    torch.manual_seed(0)
    q = {"kind": "multiscale", "quantizer": {"kind": "fsq", "levels": list(levels)}, "scales": [4, 2, 1],
         "plane_prior": list(prior)}
    return ImageTokenizer(ImageTokenizerConfig(channels=8, channel_mult=(1, 2), patch=2, mid_blocks=0,
                                               quantizer=q)).eval()


def test_a_prefix_of_scales_is_the_rest_missing():
    m = tiny()
    x = torch.rand(2, 3, 32, 32)
    codes = m.encode(x)
    for k in (1, 2, 3):
        padded = codes[:k] + [torch.full_like(c, MISSING) for c in codes[k:]]
        assert torch.equal(m.decode(codes[:k], (32, 32)), m.decode(padded, (32, 32)))
    with pytest.raises(ValueError, match="needs scales"):
        m.decode(codes[:2])          # without the picture's size the grid is unknown


def test_all_planes_is_the_ordinary_decode_and_low_bits_are_ignored():
    m = tiny()
    x = torch.rand(1, 3, 32, 32)
    codes = m.encode(x)
    assert torch.equal(m.decode(codes, (32, 32), planes=3), m.decode(codes, (32, 32)))
    fsq = m.quantizer.quantizer
    # clear the lowest bit of every channel of the finest scale: one plane fewer decodes the same
    digits = fsq.digits(codes[-1])
    basis = fsq.impl._basis.long()
    cleared = ((digits & ~1) * basis).sum(-1)
    for planes in (1, 2):
        a = m.decode(codes, (32, 32), planes=planes)
        b = m.decode(codes[:-1] + [cleared], (32, 32), planes=planes)
        assert torch.equal(a, b)
    assert not torch.equal(m.decode(codes, (32, 32), planes=1), m.decode(codes, (32, 32)))


def test_a_plane_decodes_to_the_mean_level_of_its_bin():
    """One channel, levels 0..7 with known frequencies: the top plane's two bins decode to the
    frequency-weighted mean level of each half (the bin centre without a prior)."""
    freq = [0.0, 0.0, 0.1, 0.3, 0.4, 0.2, 0.0, 0.0]
    prior = freq * 3 * 3                  # every divisor, every channel
    m = tiny(prior=prior)
    fsq = m.quantizer.quantizer
    ids = torch.tensor([[[0, 7 * 73]]])   # all channels at level 0 / all at level 7 (basis 1, 8, 64)
    got = fsq.decode_planes(ids, 1, torch.tensor(freq * 3).reshape(3, 8))
    low = (2 * 0.1 + 3 * 0.3) / 0.4
    high = (4 * 0.4 + 5 * 0.2) / 0.6
    want = (torch.tensor([low, high]) - 4) / 4      # FSQ's level -> value for 8 levels
    assert torch.allclose(got[0, :, 0, 0], torch.full((3,), want[0]), atol=1e-5)
    assert torch.allclose(got[0, :, 0, 1], torch.full((3,), want[1]), atol=1e-5)
    centre = fsq.decode_planes(ids, 1, None)
    assert torch.allclose(centre[0, 0, 0], (torch.tensor([1.5, 5.5]) - 4) / 4)


def test_planes_are_refused_where_they_do_not_exist():
    m = tiny()
    codes = m.encode(torch.rand(1, 3, 32, 32))
    for bad in (0, 4, 1.5, True):
        with pytest.raises(ConfigError, match="planes must be an int in 1..3"):
            m.decode(codes, (32, 32), planes=bad)
    odd = tiny(levels=(8, 5, 5))
    with pytest.raises(ConfigError, match="one power of two for every channel"):
        odd.decode(odd.encode(torch.rand(1, 3, 32, 32)), (32, 32), planes=1)


def test_the_prior_is_checked_and_stays_out_of_fingerprints_when_empty():
    with pytest.raises(ConfigError, match="plane_prior must hold 72"):
        MultiScaleConfig({"kind": "fsq", "levels": [8, 8, 8]}, (4, 2, 1), plane_prior=(0.5,) * 8)
    with pytest.raises(ConfigError, match="plane_prior must hold 72 finite"):
        MultiScaleConfig({"kind": "fsq", "levels": [8, 8, 8]}, (4, 2, 1), plane_prior=(float("nan"),) * 72)
    assert "plane_prior" not in id_config(tiny().cfg)["quantizer"]
    assert "plane_prior" in id_config(tiny(prior=[1 / 8] * 72).cfg)["quantizer"]


def test_plane_prior_of_counts_levels_per_scale_and_channel():
    m = tiny()
    batches = [m.encode(torch.rand(2, 3, 32, 32)) for _ in range(2)]
    prior = np.array(plane_prior_of(m.quantizer, batches)).reshape(3, 3, 8)
    assert np.allclose(prior.sum(-1), 1, atol=1e-4)
    fine = torch.cat([b[-1].reshape(-1) for b in batches])
    digits = m.quantizer.quantizer.digits(fine)
    want = torch.bincount(digits[:, 1], minlength=8).float() / len(fine)
    assert np.allclose(prior[2, 1], want.numpy(), atol=1e-4)


def test_the_recipe_export_writes_the_prior(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "train_image", Path(__file__).resolve().parent.parent / "recipes" / "train_image.py")
    train_image = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_image)
    tiny().save_pretrained(tmp_path / "src")
    pictures = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "train.npy", pictures)
    train_image.export(tmp_path / "src", tmp_path / "dst", "float32", str(tmp_path / "train.npy"), prior_images=6)
    cfg = json.loads((tmp_path / "dst" / "config.json").read_text())
    prior = cfg["config"]["quantizer"]["plane_prior"]
    assert len(prior) == 72 and abs(sum(prior[-8:]) - 1) < 1e-3
    m = ImageTokenizer.from_pretrained(tmp_path / "dst")
    codes = m.encode(torch.rand(1, 3, 32, 32))
    assert m.decode(codes, (32, 32), planes=1).shape == (1, 3, 32, 32)


def test_planes_need_a_multi_scale_fsq_quantizer():
    from unitok.quantize import FSQConfig

    torch.manual_seed(0)
    single = ImageTokenizer(ImageTokenizerConfig(channels=8, channel_mult=(1,), patch=2, mid_blocks=0,
                                                 quantizer=FSQConfig((8, 8, 8)))).eval()
    bitwise = ImageTokenizer(ImageTokenizerConfig(channels=8, channel_mult=(1,), patch=2, mid_blocks=0, quantizer={
        "kind": "bitwise", "bits": 4, "scales": [2, 1]})).eval()
    for m in (single, bitwise):
        codes = m.encode(torch.rand(1, 3, 16, 16))
        with pytest.raises(ConfigError, match="needs a multi-scale FSQ quantizer"):
            m.decode(codes, (16, 16), planes=1)
    assert bitwise.decode(codes, (16, 16)).shape == (1, 3, 16, 16)


def test_a_video_inflated_from_an_image_does_not_inherit_its_prior():
    from unitok.video import VideoTokenizer

    image = tiny(prior=[1 / 8] * 72)
    video = VideoTokenizer.from_image(image, temporal=2)
    assert video.cfg.spatial.quantizer.plane_prior == ()
    assert torch.equal(video.quantizer.refine.weight, image.quantizer.refine.weight)
