"""Variable rate from one multi-scale image tokenizer: the section "## Image: variable rate from one
model (first k scales)" of ``benchmarks/RESULTS.md``.

    python benchmarks/image_rate.py [--checkpoint DIR ...] [--heldout DIR] [--random-crops 15]

Each tokenizer (the bundled suite's image tokenizer, or each ``--checkpoint``) encodes every
256x256 held-out crop (the crops of ``benchmarks/image.py``) once. For each k the first k scales
are decoded and the finer ones are left out (``MISSING``: the decoder gets the partial residual sum,
as a lenient decode of a truncated sequence does), a rate of ``tokens in the first k scales *
bits per token / pixels``; a multi-scale FSQ model with 2**n levels per channel also decodes the
k-th scale from the top b < n bits of each channel (``planes=b``), the rates in between. JPEG, WebP and their half-resolution variants (``ANCHORS`` of
``benchmarks/image.py``) run over a quality sweep on the same crops and are interpolated at each
row's rate (never extrapolated).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from unitok import ConfigError
from unitok.layout import MISSING

from candidates import BUNDLED_SUITE, load_codec, parameter_count
from image import ANCHORS, crops_of, heldout_description, load_heldout, quality_batch, run_anchor
from image_bitwise import crop_options, publish_table, to_images
from report import command_line, progress_bar, rel, run_lines

TITLE = "Image: variable rate from one model (first k scales)"


def truncate(codes: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Multi-scale codes (coarse to fine) with every scale after the first ``k`` left out."""
    return [c if i < k else torch.full_like(c, MISSING) for i, c in enumerate(codes)]


def plane_bits(model) -> int | None:
    """Bits per channel of a multi-scale FSQ model whose codes are stacked bit planes, else None."""
    return getattr(model.quantizer.quantizer, "plane_bits", None)


def measure(model, crops: list, batch: int, progress: bool) -> list[dict]:
    """Mean PSNR / SSIM of ``model`` over ``crops`` (Pictures of one size) decoded from the first
    k scales, for every k, and (multi-scale FSQ with 2**n levels) with the k-th scale known only to
    its top b < n bit planes (``decode(..., planes=b)``). Returns one dict per point, by rate:
    {"k", "planes" (None: whole codes), "tokens", "bpp", "psnr", "ssim"}."""
    h, w = crops[0].image.height, crops[0].image.width
    scales = model.scales(h, w)
    n = plane_bits(model)
    settings = [(k, b) for k in range(1, len(scales) + 1) for b in ([*range(1, n), None] if n else [None])]
    scores: dict[tuple, list[dict]] = {key: [] for key in settings}
    for i in progress_bar(range(0, len(crops), batch), "batches", progress, unit="batch"):
        refs = [c.image for c in crops[i:i + batch]]
        codes = model.encode(torch.stack([r.to_rgb().to_float() for r in refs]))
        for k, b in settings:
            y = model.decode(truncate(codes, k), (h, w), planes=b)
            scores[k, b] += [quality_batch(ref, [rec])[0] for ref, rec in zip(refs, to_images(y))]
    bits = math.log2(model.quantizer.codebook_size)
    out = []
    for k, b in settings:
        before = sum(sh * sw for sh, sw in scales[:k - 1])
        last = scales[k - 1][0] * scales[k - 1][1]
        spent = before * bits + last * (bits if b is None else model.quantizer.dim * b)
        rows = scores[k, b]
        out.append({"k": k, "planes": b, "tokens": before + last, "bpp": spent / (h * w),
                    "psnr": float(np.mean([r["psnr"] for r in rows])), "ssim": float(np.mean([r["ssim"] for r in rows]))})
    return out


COLUMNS = ("tokenizer", "scales", "tokens", "bpp", "PSNR", "SSIM") + tuple(
    f"{a} {m} @ same bpp" for m in ("PSNR", "SSIM") for a in ANCHORS)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, action="append", default=[],
                    help="a multi-scale image tokenizer folder (repeatable; default: the bundled suite's)")
    ap.add_argument("--min-scale", type=int, default=3, help="leave out rows decoded from fewer scales (default 3)")
    crop_options(ap)
    args = ap.parse_args(argv)

    folders = args.checkpoint or [BUNDLED_SUITE / "image"]
    try:
        models = [(f, load_codec(f, "image", "a multi-scale image tokenizer",
                                 accept=lambda c: getattr(c, "multiscale", False)).eval()) for f in folders]
    except ConfigError as e:
        sys.exit(f"error: {e}")
    pictures = load_heldout(args.heldout, args.limit)
    crops = crops_of(pictures, 256, args.random_crops)
    progress = sys.stderr.isatty()
    print(f"{len(crops)} crops of {len(pictures)} held-out pictures; {len(models)} tokenizer(s)")

    with torch.inference_mode():
        results = [(f, m, measure(m, crops, args.batch, progress)) for f, m in models]
    with tempfile.TemporaryDirectory() as tmp:
        curves = {name: run_anchor(name, crops, ANCHORS[name][2], Path(tmp), progress=progress) for name in ANCHORS}

    rows, described = [], []
    for folder, model, points in results:
        name = "bundled suite" if folder == BUNDLED_SUITE / "image" else rel(folder)
        n, total = plane_bits(model), len(model.scales(256, 256))
        for p in points:
            if p["k"] < min(args.min_scale, total):
                continue
            shown = f"{p['k']} of {total}" + ("" if p["planes"] is None else f", top {p['planes']} of {n} bits")
            rows.append({"tokenizer": name, "scales": shown, "tokens": p["tokens"],
                         "bpp": p["bpp"], "PSNR": p["psnr"], "SSIM": p["ssim"],
                         **{f"{a} {m.upper()} @ same bpp": c.at_rate(p["bpp"], m) for a, c in curves.items()
                            for m in ("psnr", "ssim")}})
        described.append(f"`{name}` ({parameter_count(model, dtype=False)}, stride {model.downsample}, scales "
                         f"{[s for s, _ in model.scales(256, 256)]} at 256x256, "
                         f"{math.log2(model.quantizer.codebook_size):g} bits per token)")
    body = run_lines(command_line()) + [
        f"- Held-out set: {heldout_description(args.heldout, pictures)}; {len(crops)} 256x256 crops "
        f"(the crops of `benchmarks/image.py`: per picture the center crop after resizing the short side to 256, "
        f"plus {args.random_crops} fixed-seed random crops at random scales)",
        f"- Tokenizers: {'; '.join(described)}. Every crop is encoded once; row \"k of S\" decodes the first k "
        f"scales with the finer ones left out (`MISSING`, the partial residual sum), so one model and one "
        f"encode give every rate. \"top b of n bits\" (FSQ with 2^n levels per channel): the k-th scale is "
        f"known only to the top b bits of each channel (`decode(codes[:k], size, planes=b)`; each channel "
        f"decodes to the mean level of its bin under the level frequencies of the training images, "
        f"`quantizer.plane_prior`, or the bin's centre without them).",
        "- bpp = bits of the first k scales / pixels: whole tokens * bits per token, and for the k-th scale "
        "channels * b bits a token in the \"top b\" rows (structural tokens excluded). PSNR / SSIM: "
        "`unitok.metrics` on the uint8 reconstructions, mean over crops. Anchors: Pillow over a quality sweep on "
        "the same crops, file bytes with headers; \"1/2-res\" codes at half size and upsamples (bicubic); "
        "interpolated linearly in mean bpp at each row's bpp, n/a outside the sweep (never extrapolated).",
    ]
    publish_table(args, TITLE, body, rows, COLUMNS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
