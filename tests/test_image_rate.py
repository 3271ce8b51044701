"""benchmarks/image_rate.py: one multi-scale model decoded from its first k scales gives a rate-
distortion curve; the finer scales are left out, not zero-filled."""

from __future__ import annotations

import pytest
import torch

import image_rate
from unitok import Image
from unitok.image import ImageTokenizer, ImageTokenizerConfig
from unitok.layout import MISSING
from unitok.quantize import FSQConfig


def tiny(multiscale: bool = True, levels=(5, 5, 5)) -> ImageTokenizer:
    torch.manual_seed(0)
    q = ({"kind": "multiscale", "quantizer": {"kind": "fsq", "levels": list(levels)}, "scales": [4, 2, 1]}
         if multiscale else FSQConfig((5, 5, 5)))
    return ImageTokenizer(ImageTokenizerConfig(channels=8, channel_mult=(1, 2), patch=2, mid_blocks=0,
                                               quantizer=q)).eval()


def test_truncate_leaves_the_finer_scales_out():
    codes = [torch.zeros(1, s, s, dtype=torch.long) for s in (1, 2, 4)]
    cut = image_rate.truncate(codes, 2)
    assert [bool((c == MISSING).all()) for c in cut] == [False, False, True]
    m = tiny()
    x = torch.rand(2, 3, 32, 32)
    full = m.encode(x)
    # all scales kept: the ordinary decode; fewer: the partial residual sum, a different picture
    assert torch.equal(m.decode(image_rate.truncate(full, 3), (32, 32)), m.decode(full, (32, 32)))
    assert not torch.equal(m.decode(image_rate.truncate(full, 1), (32, 32)), m.decode(full, (32, 32)))


def run_benchmark(tmp_path, model: ImageTokenizer, seed: int, size: tuple[int, int]) -> str:
    """The benchmark on one random picture of ``size`` for ``model``, every scale; RESULTS.md's text."""
    model.save_pretrained(tmp_path / "ms")
    (tmp_path / "heldout").mkdir()
    g = torch.Generator().manual_seed(seed)
    Image(torch.randint(0, 256, (3, *size), dtype=torch.uint8, generator=g)).save(tmp_path / "heldout" / "a.png")
    results = tmp_path / "RESULTS.md"
    assert image_rate.main(["--checkpoint", str(tmp_path / "ms"), "--heldout", str(tmp_path / "heldout"),
                            "--random-crops", "0", "--min-scale", "1", "--results", str(results)]) == 0
    return results.read_text()


def test_benchmark_writes_one_row_per_scale(tmp_path):
    tiny(multiscale=False).save_pretrained(tmp_path / "single")
    text = run_benchmark(tmp_path, tiny(), 0, (300, 280))
    assert "## Image: variable rate from one model (first k scales)" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and " of 3 |" in line]
    assert len(rows) == 3 and "WebP PSNR @ same bpp" in text
    bpp = [float(r.split("|")[4]) for r in rows]
    assert bpp == sorted(bpp) and bpp[0] < bpp[-1]
    with pytest.raises(SystemExit, match="not a multi-scale image tokenizer"):
        image_rate.main(["--checkpoint", str(tmp_path / "single"), "--heldout", str(tmp_path / "heldout")])


def test_bit_plane_rows_fill_the_rates_between_scales(tmp_path):
    """FSQ with 4 levels per channel (2 bits): each scale also decodes from its top bit, at
    channels * 1 bit per token for that scale, and every row's rate lies between its neighbours."""
    text = run_benchmark(tmp_path, tiny(levels=(4, 4, 4)), 1, (260, 270))
    rows = [line.split("|") for line in text.splitlines() if line.startswith("| ") and " of 3" in line]
    assert [r[2].strip() for r in rows] == [f"{k} of 3{p}" for k in (1, 2, 3) for p in (", top 1 of 2 bits", "")]
    bpp = [float(r[4]) for r in rows]
    assert bpp == sorted(bpp) and len(set(bpp)) == 6
    # 256x256 crop, stride 4: scales 16, 32, 64 per side; the top-bit row of scale 3 pays 3 bits a token there
    assert bpp[4] == pytest.approx(((16 ** 2 + 32 ** 2) * 6 + 64 ** 2 * 3) / 256 ** 2, abs=1e-4)
