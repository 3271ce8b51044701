"""The image reconstruction benchmark (``benchmarks/reconstruction.py``) on tiny synthetic pictures
with the toy image codec of ``tests/toys.py``: table columns, bits per pixel, the anchors'
interpolation, PSNR of exact copies, and what the command writes."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import unitok
from unitok import Image, UniTokenizer

from toys import ToyImage, ToyImageConfig

ROOT = Path(__file__).resolve().parent.parent
QUICK = {"JPEG": (5, 30, 90), "WebP": (10, 50, 90)}    # short sweeps keep the tests fast


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("reconstruction", ROOT / "benchmarks" / "reconstruction.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["reconstruction"] = module
    spec.loader.exec_module(module)
    return module


R = _load_benchmark()
CFG = ToyImageConfig(patch=8, levels=16, scales=(4, 2))   # three levels of 16 codes: 4 bits a code


def _picture(h: int, w: int, seed: int) -> Image:
    """A smooth colour gradient with a little texture, so codecs have something to do."""
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, h)[:, None]
    x = torch.linspace(0, 1, w)[None, :]
    rgb = torch.stack(torch.broadcast_tensors(x * y, 1 - x, (y + 0.2 * torch.sin(12 * x)).clamp(0, 1)))
    rgb = (rgb + 0.05 * torch.rand(3, h, w, generator=g)).clamp(0, 1)
    return Image.from_array(rgb)


@pytest.fixture(scope="module")
def pictures():
    return [R.Picture("tall", _picture(200, 180, 0)), R.Picture("wide", _picture(96, 130, 1)),
            R.Picture("small", _picture(70, 90, 2))]


@pytest.fixture(scope="module")
def toy():
    return R.candidate("toy", UniTokenizer(unitok.text.load_default(), {"image": ToyImage(CFG)}))


@pytest.fixture(scope="module")
def report(toy, pictures):
    return R.run_image([toy], pictures, crop_size=64, random_crops=1, max_side=None, qualities=QUICK,
                       repeat=1, batch=2, grid=2, devices=["cpu"], progress=False)


def _toy_bits(h: int, w: int) -> int:
    """Code tokens of the toy codec by hand: a grid of 8x8 patches at scales 1/4, 1/2 and 1."""
    gh, gw = math.ceil(h / 8), math.ceil(w / 8)
    tokens = sum(math.ceil(gh / d) * math.ceil(gw / d) for d in (4, 2, 1))
    return tokens * 4          # log2(16) bits each


def test_table_has_the_expected_columns(report):
    assert [s.key for s in report.settings] == ["crops", "native"]
    anchors = R.anchor_columns(list(QUICK))
    assert "JPEG PSNR @ same bpp" in anchors and "gap to WebP (dB)" in anchors
    for setting in report.settings:
        assert len(setting.rows) == 1
        row = setting.rows[0]
        assert set(R.QUALITY_COLUMNS) <= set(row) and set(anchors) <= set(row)
        assert row["tokenizer"] == "toy"
        md = R.quality_table(setting) + "\n" + R.versus_table(setting)
        assert "| " + " | ".join(R.QUALITY_COLUMNS) + " |" in md
        assert "| " + " | ".join(anchors) + " |" in md
    (t,) = report.throughput
    assert set(R.THROUGHPUT_COLUMNS) <= set(t)
    assert t["encode img/s (one at a time)"] > 0 and t["decode img/s (one at a time)"] > 0
    assert t["encode img/s (batch)"] is None      # the toy codec has no batched API: n/a, not a guess


def test_bpp_is_code_bits_over_pixels(report, pictures):
    crops, native = report.settings
    # 64x64 crops: 8x8 grid -> 2x2 + 4x4 + 8x8 = 84 codes of 4 bits
    assert crops.rows[0]["bpp"] == pytest.approx(84 * 4 / 64 ** 2)
    assert crops.rows[0]["tokens/image"] == 84
    assert crops.rows[0]["structural tokens/image"] == 6      # begin, 2 x 2 shape tokens, end
    run = native.runs["toy"]
    for pic, bpp in zip(pictures, run.bpp):
        assert bpp == pytest.approx(_toy_bits(pic.image.height, pic.image.width)
                                    / (pic.image.height * pic.image.width))
    assert native.rows[0]["bpp"] == pytest.approx(float(np.mean(run.bpp)))


def test_settings_crop_and_keep_native_size(report, pictures):
    crops, native = report.settings
    assert all((p.image.height, p.image.width) == (64, 64) for p in crops.pictures)
    assert [p.name for p in crops.pictures if p.name.endswith(":center")] == [f"{p.name}:center" for p in pictures]
    assert [(p.image.height, p.image.width) for p in native.pictures] == \
        [(p.image.height, p.image.width) for p in pictures]
    # MS-SSIM only where the picture is big enough for its five scales
    ms = native.runs["toy"].ms_ssim
    assert not math.isnan(ms[0]) and math.isnan(ms[1]) and math.isnan(ms[2])
    assert crops.rows[0]["MS-SSIM"] is None and native.rows[0]["MS-SSIM"] == pytest.approx(ms[0])


def test_crops_are_deterministic(pictures):
    a = R.crops_of(pictures, 64, random_crops=2)
    b = R.crops_of(pictures[:1], 64, random_crops=2)
    assert torch.equal(a[1].image.pixels, b[1].image.pixels)   # independent of the other pictures


def test_grid_picks_spread_center_crops():
    im = Image.from_array(np.zeros((4, 4, 3), dtype=np.uint8))
    crops = [R.Picture(f"p{i}:{kind}", im) for i in range(10) for kind in ("center", "crop0")]
    picks = R.grid_picks(crops, 4)
    assert [crops[i].name for i in picks] == ["p1:center", "p3:center", "p6:center", "p8:center"]
    assert len(R.grid_picks(crops[:4], 4)) == 2     # no more rows than pictures


def test_native_caps_the_long_side(pictures):
    (capped, kept, _) = R.native_of(pictures, max_side=150)
    assert max(capped.image.height, capped.image.width) == 150 and "downscaled from 180x200" in capped.note
    assert kept.note == "" and kept.image is pictures[1].image


def test_codebook_usage(report):
    run = report.settings[0].runs["toy"]
    assert [lv for lv, _, _ in run.usage] == [0, 1, 2]
    assert all(0 < used <= size == 16 for _, used, size in run.usage)
    assert report.settings[0].rows[0]["codebook usage"] == pytest.approx(sum(u for _, u, _ in run.usage) / 48)


def test_anchor_interpolation_is_monotone_and_exact_at_the_sweep(report):
    for setting in report.settings:
        jpeg = setting.anchors["JPEG"]
        rates, psnr = jpeg.mean("bpp"), jpeg.mean("psnr")
        assert np.all(np.diff(rates) > 0), "higher JPEG quality must cost more bits"
        for r, p in zip(rates, psnr):
            assert jpeg.at_rate(float(r)) == pytest.approx(float(p))
        grid = np.linspace(rates[0], rates[-1], 50)
        values = [jpeg.at_rate(float(r)) for r in grid]
        if np.all(np.diff(psnr) >= 0):
            assert np.all(np.diff(values) >= -1e-9)
        assert min(values) >= psnr.min() - 1e-9 and max(values) <= psnr.max() + 1e-9
        # never extrapolated
        assert jpeg.at_rate(float(rates[0]) * 0.5) is None and jpeg.at_rate(float(rates[-1]) * 2) is None
        row = setting.rows[0]
        if row["JPEG PSNR @ same bpp"] is not None:
            assert row["gap to JPEG (dB)"] == pytest.approx(row["PSNR"] - row["JPEG PSNR @ same bpp"])


def test_interpolate_by_hand():
    assert R.interpolate(np.array([0.5, 0.1, 0.3]), np.array([35.0, 25.0, 30.0]), 0.2) == pytest.approx(27.5)
    assert R.interpolate(np.array([0.1, 0.3]), np.array([25.0, 30.0]), 0.3) == pytest.approx(30.0)
    assert R.interpolate(np.array([0.1, 0.3]), np.array([25.0, 30.0]), 0.05) is None
    assert R.interpolate(np.array([0.1, 0.3]), np.array([25.0, 30.0]), math.nan) is None


def test_identical_images_psnr_is_capped():
    big = _picture(200, 190, 3)
    q = R.quality(big, big)
    assert q["psnr"] == R.PSNR_CAP == 100.0 and q["ssim"] == pytest.approx(1.0) and q["ms_ssim"] == pytest.approx(1.0)
    small = _picture(40, 50, 4)
    q = R.quality(small, small)
    assert q["psnr"] == 100.0 and math.isnan(q["ms_ssim"])
    worse = Image.from_array(small.to_float().mul(0.9))
    assert R.quality(small, worse)["psnr"] < 100.0


def test_section_renders_and_replaces_only_its_own(report, tmp_path):
    body = R.render_section(report, command="python benchmarks/reconstruction.py --modality image",
                            heldout="synthetic", plots={"rd": tmp_path / "plots" / "image_rd.png"},
                            results_dir=tmp_path)
    assert "- Command: `python benchmarks/reconstruction.py --modality image`" in body
    assert "### 64x64 crops" in body and "### Native size" in body and "### Throughput" in body
    assert "](plots/image_rd.png)" in body
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Text throughput\n\nkeep me\n\n## Image reconstruction\n\nold\n")
    R.write_section(results, R.Section("Image reconstruction", body))
    text = results.read_text()
    assert "keep me" in text and "old\n" not in text and text.count("## Image reconstruction") == 1


def test_plots_stay_small(report, tmp_path):
    pytest.importorskip("matplotlib")
    rd = R.plot_rd(report, tmp_path / "image_rd.png")
    grid = R.plot_grid(report, tmp_path / "image_grid.png")
    for p in (rd, grid):
        assert p.exists() and 0 < p.stat().st_size < R.MAX_PLOT_BYTES


# -- the command ------------------------------------------------------------------------------------


def _heldout(folder: Path) -> Path:
    folder.mkdir()
    _picture(90, 120, 5).save(folder / "a.png")
    return folder


def test_command_compares_checkpoints_and_writes_nothing_with_no_write(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(R, "QUALITIES", QUICK)
    ToyImage(CFG).save_pretrained(tmp_path / "toy_a")
    ToyImage(ToyImageConfig(patch=16, levels=8)).save_pretrained(tmp_path / "toy_b")
    results, plots = tmp_path / "RESULTS.md", tmp_path / "plots"
    R.main(["--modality", "image", "--no-suite",
            "--checkpoint", str(tmp_path / "toy_a"), "--checkpoint", str(tmp_path / "toy_b"),
            "--heldout", str(_heldout(tmp_path / "heldout")), "--random-crops", "0", "--repeat", "1",
            "--batch", "1", "--results", str(results), "--plots", str(plots), "--no-write"])
    out = capsys.readouterr().out
    assert "## Image reconstruction" in out and "### 256x256 crops" in out
    assert out.count("toy_a |") >= 4 and out.count("toy_b |") >= 4    # one row each in every table
    assert not results.exists() and not plots.exists()


def test_command_refuses_a_suite_without_image_tokenizer(tmp_path):
    UniTokenizer(unitok.text.load_default()).save_pretrained(tmp_path / "suite")
    with pytest.raises(SystemExit, match="no image tokenizer"):
        R.main(["--modality", "image", "--suite", str(tmp_path / "suite"), "--no-write"])


def test_command_needs_something_to_compare():
    with pytest.raises(SystemExit, match="needs at least one --checkpoint"):
        R.main(["--modality", "image", "--no-suite", "--no-write"])


def test_command_says_how_to_fetch_missing_heldout(tmp_path):
    ToyImage(CFG).save_pretrained(tmp_path / "toy")
    with pytest.raises(SystemExit, match="recipes/data/fetch_images.py"):
        R.main(["--modality", "image", "--no-suite", "--checkpoint", str(tmp_path / "toy"),
                "--heldout", str(tmp_path / "none"), "--no-write"])
