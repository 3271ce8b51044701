"""Rate-distortion of a bitwise image tokenizer with nested vocabularies
(``unitok.quantize.bitwise``): the section "## Bitwise image tokenizer (nested vocabularies)" of
``benchmarks/RESULTS.md``.

    python benchmarks/image_bitwise.py [--checkpoint data/train_image_bitwise/best] [--bits 2 4 6 8 10 12]

The checkpoint encodes every 256x256 held-out crop (the crops of ``benchmarks/image.py``) once, at
its full ``d`` bits per token; for each ``k`` the first ``k`` bits of every code
(``quantizer.prefix``) are decoded at ``k`` bits, a rate of ``tokens * k / pixels`` bpp. The
benchmark checks on the first batch that the prefixes are exactly the codes a ``k``-bit encode
gives. The FSQ tokenizer of the bundled suite (or ``--fsq DIR``) and JPEG / WebP over a quality
sweep run on the same crops; the anchors are interpolated at each ``k``'s rate as in
``benchmarks/image.py`` (never extrapolated).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from unitok import ConfigError, Image

from candidates import BUNDLED_SUITE, load_codec, parameter_count
from image import ANCHORS, HELDOUT, crops_of, heldout_description, load_heldout, quality_batch, run_anchor
from report import RESULTS, ROOT, Section, command_line, fmt, markdown_table, progress_bar, rel, run_lines, write_section

TITLE = "Bitwise image tokenizer (nested vocabularies)"
DEFAULT_CHECKPOINT = ROOT / "data" / "train_image_bitwise" / "best"


def to_images(x: torch.Tensor) -> list[Image]:
    """x: [B, 3, H, W] in [0, 1] -> uint8 images, as a user gets them."""
    return [Image((y * 255).round().to(torch.uint8).cpu().contiguous()) for y in x]


def measure(model, crops: list, bits: list[int] | None, batch: int, progress: bool) -> dict:
    """Mean PSNR / SSIM of ``model`` over ``crops`` (Pictures of one size): at each of ``bits``
    (k-bit prefix codes of a bitwise model), or at the model's own rate (``bits`` None).
    Returns {k or None: {"psnr", "ssim", "bpp"}}."""
    h, w = crops[0].image.height, crops[0].image.width
    keys = bits if bits is not None else [None]
    scores = {k: [] for k in keys}
    for i in progress_bar(range(0, len(crops), batch), "batches", progress, unit="batch"):
        refs = [c.image for c in crops[i:i + batch]]
        x = torch.stack([r.to_rgb().to_float() for r in refs])
        codes = model.encode(x)
        for k in keys:
            if k is None:
                y = model.decode(codes, (h, w))
            else:
                prefix = model.quantizer.prefix(codes, k)
                if i == 0 and not all(torch.equal(a, b) for a, b in zip(prefix, model.quantizer.encode(
                        model.encode_latent(x), bits=k))):
                    sys.exit(f"error: the {k}-bit prefixes differ from a {k}-bit encode: the nesting is broken")
                y = model.decode(prefix, (h, w), bits=k)
            scores[k] += [quality_batch(ref, [rec])[0] for ref, rec in zip(refs, to_images(y))]
    tokens = model.tokens(h, w)
    out = {}
    for k, rows in scores.items():
        per_token = math.log2(model.quantizer.codebook_size) if k is None else k
        out[k] = {"psnr": float(np.mean([r["psnr"] for r in rows])), "ssim": float(np.mean([r["ssim"] for r in rows])),
                  "bpp": tokens * per_token / (h * w), "tokens": tokens}
    return out


COLUMNS = ("tokenizer", "bits/token", "codes", "bpp", "PSNR", "SSIM") + tuple(
    f"{a} {m} @ same bpp" for m in ("PSNR", "SSIM") for a in ANCHORS)


def table(rows: list[dict], columns: tuple[str, ...] = COLUMNS) -> str:
    def cell(col: str, row: dict) -> str:
        value = row.get(col)
        if isinstance(value, float):
            return fmt(value, 4 if "SSIM" in col or col == "bpp" else 2)
        return "n/a" if value is None else str(value)

    return markdown_table(columns, rows, cell)


def crop_options(ap: argparse.ArgumentParser) -> None:
    """The held-out crops and the output options the image rate benchmarks share."""
    ap.add_argument("--heldout", type=Path, default=HELDOUT)
    ap.add_argument("--limit", type=int, default=None, help="use the first N held-out pictures")
    ap.add_argument("--random-crops", type=int, default=15, help="random 256x256 crops per picture (plus the center)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--note", default="", help="a line added to the section (e.g. how the CPU was shared)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the markdown file to write the section to")
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing it")


def publish_table(args: argparse.Namespace, title: str, body: list[str], rows: list[dict],
                  columns: tuple[str, ...] = COLUMNS) -> None:
    """Write (or with --no-write print) the section: ``body`` lines, --note, then the table."""
    if args.note:
        body.append(f"- {args.note}")
    body += ["", table(rows, columns), ""]
    section = Section(title, "\n".join(body))
    if args.no_write:
        print(section.body)
    else:
        write_section(args.results, section)
        print(f"wrote section '{title}' to {rel(args.results)}")
        print(table(rows, columns))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="a bitwise image tokenizer folder")
    ap.add_argument("--fsq", type=Path, default=BUNDLED_SUITE / "image",
                    help="the FSQ tokenizer to compare with (default: the bundled suite's)")
    ap.add_argument("--bits", type=int, nargs="*", default=None, help="the k to decode at (default: 1..d)")
    crop_options(ap)
    args = ap.parse_args(argv)

    try:
        model = load_codec(args.checkpoint, "image", "a bitwise image tokenizer",
                           accept=lambda c: getattr(c.quantizer, "nested_bits", False)).eval()
        fsq = load_codec(args.fsq, "image", "an image tokenizer").eval()
    except ConfigError as e:
        sys.exit(f"error: {e}")
    d = model.quantizer.bits
    bits = sorted(set(args.bits or range(1, d + 1)))
    if not all(1 <= k <= d for k in bits):
        sys.exit(f"error: --bits must lie in 1..{d} (the checkpoint's bits per token), got {bits}")
    pictures = load_heldout(args.heldout, args.limit)
    crops = crops_of(pictures, 256, args.random_crops)
    progress = sys.stderr.isatty()
    print(f"{len(crops)} crops of {len(pictures)} held-out pictures; decoding {rel(args.checkpoint)} at k = {bits}")

    with torch.inference_mode():
        ours = measure(model, crops, bits, args.batch, progress)
        base = measure(fsq, crops, None, args.batch, progress)[None]
    with tempfile.TemporaryDirectory() as tmp:
        curves = {name: run_anchor(name, crops, ANCHORS[name][2], Path(tmp), progress=progress) for name in ANCHORS}

    def anchors_at(bpp: float) -> dict:
        return {f"{a} {m.upper()} @ same bpp": curve.at_rate(bpp, m) for a, curve in curves.items()
                for m in ("psnr", "ssim")}

    def row(name: str, per_token: str, codes: str, r: dict) -> dict:
        return {"tokenizer": name, "bits/token": per_token, "codes": codes, "bpp": r["bpp"], "PSNR": r["psnr"],
                "SSIM": r["ssim"], **anchors_at(r["bpp"])}

    rows = [row(f"bitwise, k = {k}", str(k), f"2^{k}", ours[k]) for k in bits]
    fsq_bits = math.log2(fsq.quantizer.codebook_size)
    rows.append(row(f"FSQ default ({rel(args.fsq)})", f"{fsq_bits:g}", str(fsq.quantizer.codebook_size), base))
    q = model.quantizer.cfg
    body = run_lines(command_line()) + [
        f"- Held-out set: {heldout_description(args.heldout, pictures)}; {len(crops)} 256x256 crops "
        f"(the crops of `benchmarks/image.py`: per picture the center crop after resizing the short side to 256, "
        f"plus {args.random_crops} fixed-seed random crops at random scales)",
        f"- Bitwise tokenizer: `{rel(args.checkpoint)}`, {parameter_count(model, dtype=False)}, stride "
        f"{model.downsample}, {ours[bits[0]]['tokens']} tokens per 256x256 image over scales {list(q.scales)}, "
        f"{d} sign bits per token (`quantizer: {{kind: bitwise, bits: {d}}}`). Every crop is encoded once at "
        f"{d} bits; row k decodes the first k bits of every code (`quantizer.prefix(codes, k)`, "
        f"`decode(..., bits=k)`; the other channels at their neutral 0). The prefixes were checked to equal a "
        f"k-bit encode.",
        f"- FSQ default: `{rel(args.fsq)}`, {parameter_count(fsq, dtype=False)}, stride {fsq.downsample}, "
        f"{fsq.tokens(256, 256)} tokens per 256x256 image, {fsq_bits:g} bits per token.",
        "- bpp = tokens * bits per token / pixels (structural tokens excluded). PSNR / SSIM: `unitok.metrics` on "
        "the uint8 reconstructions, mean over crops. Anchors: JPEG / WebP (Pillow) over a quality sweep on the "
        "same crops, file bytes with headers; \"JPEG 1/2-res\" codes at half size and upsamples (bicubic); "
        "interpolated linearly in mean bpp at each row's bpp, n/a outside the sweep (never extrapolated).",
    ]
    publish_table(args, TITLE, body, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
