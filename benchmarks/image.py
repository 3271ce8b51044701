"""Image reconstruction (``python benchmarks/reconstruction.py --modality image``): the section
"## Image reconstruction" of ``benchmarks/RESULTS.md`` and ``plots/image_rd.png`` / ``image_grid.png``.

Every tokenizer under test (the suite's image tokenizer and each ``--checkpoint``) encodes and
decodes the held-out pictures in two settings, 256x256 crops and native size. The pictures are the
benchmark split ``data/images/bench`` unless ``--heldout`` names another folder (the validation
split ``data/images/val`` is for design choices: compare candidates there, report here); the
kind of each picture (photo, art, science) comes from ``split.json`` beside the folder, and every
setting also gets a table per kind. JPEG and WebP run
over a quality sweep on the same pictures in the same run, and their PSNR / SSIM are interpolated
(linearly in bits per pixel, never extrapolated) at each tokenizer's rate.

Definitions (also written into RESULTS.md):

- bits per pixel (bpp) of a tokenizer = sum over the image's *code* ids of log2(size of the id's
  level) / pixels, from the token space (``space.bits_of``). The structural tokens of the segment
  (begin, shape tokens, end) are excluded and listed separately; for an anchor, bpp = file
  bytes * 8 / pixels (headers included).
- PSNR / SSIM / MS-SSIM are ``unitok.metrics`` on RGB in [0, 1], averaged over images. PSNR of an
  exact reconstruction is capped at 100 dB (``unitok.metrics.psnr`` floors the MSE at 1e-10).
  MS-SSIM is the standard five-scale one and is only reported for images whose short side is at
  least 176 pixels (11 * 2**4); smaller images show "n/a".
- codebook usage = fraction of each level's codes used at least once over the setting's images.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import unitok
from unitok import ConfigError, Image, MediaError, UniTokenizer
from unitok import metrics

from candidates import Candidate, announce, check_unique, codec_type, from_args, load_codec, parameter_count
from report import (MAX_PLOT_BYTES, PSNR_CAP, RESULTS, ROOT, Section, command_line, default_devices, draw_grid,
                    draw_plots, fmt, interpolate, markdown_table, progress_bar, pyplot, rel, rel_to, run_lines,
                    save_figure, save_png)
from timing import best_time

HELDOUT = ROOT / "data" / "images" / "bench"          # the benchmark split (recipes/data/fetch_images.py)
VAL_HELDOUT = ROOT / "data" / "images" / "val"       # the validation split, for design choices

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MS_SSIM_MIN_SIDE = 176           # five scales of an 11-pixel window: 11 * 2**4

#: anchors: name -> (file suffix, downscale factor, quality sweep). JPEG quality 1 and 2 give the
#: same file (libjpeg clamps its tables), and JPEG's headers alone cost about 0.07 bpp at 256x256,
#: so plain JPEG cannot go below about 0.2 bpp there; "JPEG 1/2-res" (halve the size, encode,
#: decode, upsample bicubic) is the usual way to reach lower rates with it.
ANCHORS: dict[str, tuple[str, int, tuple[int, ...]]] = {
    "JPEG": (".jpg", 1, (1, 3, 5, 8, 10, 15, 20, 30, 50, 75, 90)),
    "WebP": (".webp", 1, (1, 5, 10, 20, 30, 50, 75, 90)),
    "JPEG 1/2-res": (".jpg", 2, (1, 3, 5, 10, 20, 30, 50, 75, 90)),
    "WebP 1/2-res": (".webp", 2, (1, 5, 10, 20, 30, 50, 75, 90)),     # the low-rate anchor of issue 18
}
QUALITIES: dict[str, tuple[int, ...]] = {name: a[2] for name, a in ANCHORS.items()}

#: columns of the per-setting tables, in order: the tokenizer's own numbers, then the anchors at
#: the same rate (``anchor_columns``)
QUALITY_COLUMNS = ("tokenizer", "tokens/image", "bpp", "PSNR", "SSIM", "MS-SSIM", "codebook usage")


def anchor_columns(anchors: Sequence[str]) -> tuple[str, ...]:
    cols = ["tokenizer", "bpp", "PSNR"]
    for name in anchors:
        cols += [f"{name} PSNR @ same bpp", f"gap to {name} (dB)"]
    cols += ["SSIM"] + [f"{name} SSIM @ same bpp" for name in anchors]
    return tuple(cols)


THROUGHPUT_COLUMNS = (
    "tokenizer", "device", "threads", "encode img/s (one at a time)", "decode img/s (one at a time)",
    "encode img/s (batch)", "decode img/s (batch)",
)


# ------------------------------------------------------------------------------------------------
# held-out pictures


@dataclass
class Picture:
    """One image under test."""

    name: str             # the held-out file's stem, plus ":center" / ":crop<k>" for a crop
    image: Image          # RGB
    note: str = ""        # e.g. "downscaled from 5120x2880"
    kind: str = ""        # "photo", "art" or "science" from split.json ("" when it does not say)


def picture_kinds(folder: Path) -> dict[str, str]:
    """File stem -> kind, from the ``kinds`` of ``split.json`` beside ``folder`` (group
    "plasma/Altai" is file ``plasma_Altai.png``, or ``plasma_Altai_<j>.png`` for one of several
    variants); empty when there is none."""
    split = folder.parent / "split.json"
    try:
        kinds = json.loads(split.read_text()).get("kinds", {}) if split.is_file() else {}
    except (OSError, ValueError):
        return {}
    return {name.replace("/", "_"): kind for name, kind in kinds.items()}


def kind_of_stem(stem: str, kinds: dict[str, str]) -> str:
    return kinds.get(stem) or kinds.get(stem.rsplit("_", 1)[0], "")


def load_heldout(folder: Path, limit: int | None = None) -> list[Picture]:
    """The held-out pictures of ``folder`` (sorted by name, the first ``limit``), as RGB."""
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        sys.exit(f"no held-out images (*.png, *.jpg, *.webp) in {folder}. Fetch them first:\n"
                 f"    python recipes/data/fetch_images.py\n"
                 f"then rerun (or pass --heldout DIR with your own pictures, never seen in training).")
    pictures = []
    kinds = picture_kinds(folder)
    for path in files[:limit]:
        try:
            pictures.append(Picture(path.stem, Image.open(path).to_rgb(), kind=kind_of_stem(path.stem, kinds)))
        except MediaError as e:
            sys.exit(f"cannot read a held-out picture: {e}")
    return pictures


def resize(image: Image, height: int, width: int) -> Image:
    """Bicubic resize of an RGB image (antialiased when shrinking)."""
    if (image.height, image.width) == (height, width):
        return image
    x = image.pixels[None].float()
    y = F.interpolate(x, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return Image(y[0].round().clamp(0, 255).to(torch.uint8).contiguous())


def resize_short(image: Image, short: int) -> Image:
    s = short / min(image.height, image.width)
    return resize(image, max(short, round(image.height * s)), max(short, round(image.width * s)))


def crop(image: Image, top: int, left: int, size: int) -> Image:
    return Image(image.pixels[:, top:top + size, left:left + size].contiguous())


def crops_of(pictures: Sequence[Picture], size: int = 256, random_crops: int = 3, seed: int = 0) -> list[Picture]:
    """Per picture: the center ``size`` crop after resizing the short side to ``size``, then
    ``random_crops`` crops at random positions and scales (short side log-uniform between
    ``size`` and the picture's own short side, capped at 4x ``size``). The randomness is seeded by
    the picture's name, so a crop never changes when other pictures are added or ``--limit``
    changes."""
    out = []
    for pic in pictures:
        small = resize_short(pic.image, size)
        t, l = (small.height - size) // 2, (small.width - size) // 2
        out.append(Picture(f"{pic.name}:center", crop(small, t, l, size), kind=pic.kind))
        top = min(min(pic.image.height, pic.image.width), 4 * size)
        if top <= size:
            continue
        rng = np.random.default_rng([seed, int(hashlib.sha256(pic.name.encode()).hexdigest()[:8], 16)])
        for k in range(random_crops):
            scaled = resize_short(pic.image, round(math.exp(rng.uniform(math.log(size), math.log(top)))))
            t = int(rng.integers(0, scaled.height - size + 1))
            l = int(rng.integers(0, scaled.width - size + 1))
            out.append(Picture(f"{pic.name}:crop{k}", crop(scaled, t, l, size), kind=pic.kind))
    return out


def native_of(pictures: Sequence[Picture], max_side: int | None = 1024) -> list[Picture]:
    """The whole pictures; a picture whose long side exceeds ``max_side`` is downscaled to it."""
    out = []
    for pic in pictures:
        im = pic.image
        if max_side and max(im.height, im.width) > max_side:
            s = max_side / max(im.height, im.width)
            small = resize(im, max(1, round(im.height * s)), max(1, round(im.width * s)))
            out.append(Picture(pic.name, small, f"downscaled from {im.width}x{im.height}", pic.kind))
        else:
            out.append(Picture(pic.name, im, kind=pic.kind))
    return out


# ------------------------------------------------------------------------------------------------
# metrics


def quality(ref: Image, rec: Image) -> dict[str, float]:
    """PSNR (dB, capped at ``PSNR_CAP``), SSIM and MS-SSIM (NaN below ``MS_SSIM_MIN_SIDE``)."""
    return quality_batch(ref, [rec])[0]


def quality_batch(ref: Image, recs: Sequence[Image], max_pixels: int = 1 << 22) -> list[dict[str, float]]:
    """``quality`` of several reconstructions of one image, in batches of at most ``max_pixels``
    (batched metric calls are several times faster on a CPU than one call per image)."""
    for rec in recs:
        if (rec.height, rec.width) != (ref.height, ref.width):
            raise MediaError(f"reconstruction is {rec.width}x{rec.height}, the original {ref.width}x{ref.height}")
    x = ref.to_rgb().to_float()[None]
    big = min(ref.height, ref.width) >= MS_SSIM_MIN_SIDE
    step = max(1, max_pixels // (ref.height * ref.width))
    out = []
    for start in range(0, len(recs), step):
        y = torch.stack([r.to_rgb().to_float() for r in recs[start:start + step]])
        xs = x.expand(len(y), -1, -1, -1)
        p, s = metrics.psnr(xs, y), metrics.ssim(xs, y)
        m = metrics.ms_ssim(xs, y) if big else torch.full((len(y),), math.nan)
        out += [{"psnr": min(PSNR_CAP, float(p[i])), "ssim": float(s[i]), "ms_ssim": float(m[i])}
                for i in range(len(y))]
    return out


# ------------------------------------------------------------------------------------------------
# tokenizers under test


def describe_codec(codec) -> str:
    sizes = codec.codebook_sizes
    bits = ", ".join(f"{math.log2(s):.4g}" for s in sizes)
    what = codec_type(codec)
    if hasattr(codec, "downsample"):
        what += f", stride {codec.downsample}"
    if getattr(codec, "multiscale", False) and hasattr(codec, "scales"):
        what += f", next-scale ({len(codec.scales(256, 256))} scales at 256x256)"
    elif hasattr(codec, "multiscale"):
        what += ", single scale (raster)"
    return (f"{what}, {len(sizes)} level(s) of {'/'.join(map(str, sizes))} codes ({bits} bits), "
            f"{parameter_count(codec, dtype=False)}")


def candidate(name: str, tok: UniTokenizer) -> Candidate:
    if "image" not in tok.media:
        raise ConfigError(f"{name} has no image tokenizer (it has: {', '.join(tok.modalities)}); train one "
                          f"(recipes/train_image.py) or pass --checkpoint DIR with an image tokenizer folder")
    return Candidate(name, tok, "image", describe_codec(tok.media["image"]))


def load_candidates(suite: Path | None, checkpoints: Sequence[Path], *, use_suite: bool = True,
                    device: str = "cpu") -> list[Candidate]:
    """The suite (``unitok.load(suite)``: the bundled one when ``suite`` is None) and one candidate
    per bare image-tokenizer folder in ``checkpoints``. A suite without an image tokenizer is
    refused, unless checkpoints are given and it is the bundled one (then it is skipped with a
    note); ``use_suite=False`` compares the checkpoints alone."""
    out = []
    if use_suite:
        name = rel(suite) if suite is not None else "bundled suite"
        tok = unitok.load(suite, device=device)
        if "image" in tok.media or suite is not None or not checkpoints:
            out.append(candidate(name, tok))
        else:
            print(f"note: the {name} has no image tokenizer; comparing the --checkpoint folders only")
    elif not checkpoints:
        raise ConfigError("nothing to compare: --no-suite needs at least one --checkpoint DIR")
    text = unitok.text.load_default() if checkpoints else None
    for folder in checkpoints:
        codec = load_codec(folder, "image", "an image tokenizer", device=device)
        out.append(candidate(rel(folder), UniTokenizer(text, {"image": codec})))
    check_unique([c.name for c in out])
    return out


# ------------------------------------------------------------------------------------------------
# measurements


@dataclass
class TokenizerRun:
    """One tokenizer over one setting's images: per-image numbers and the codes it used."""

    bpp: np.ndarray               # [N]
    code_tokens: np.ndarray       # [N]
    structural_tokens: np.ndarray  # [N]
    psnr: np.ndarray
    ssim: np.ndarray
    ms_ssim: np.ndarray           # NaN where the image is too small
    usage: list[tuple[int, int, int]]   # per level: (level, codes used, codebook size)
    kept: dict[int, Image] = field(default_factory=dict)   # reconstructions asked for (for the grid)


def image_codes(tok: UniTokenizer, ids: np.ndarray) -> tuple[np.ndarray, int]:
    """(the image code ids of a segment, the number of other tokens in it)."""
    space = tok.space
    which = space.modality_of(ids)
    image_ranges = np.array([r.modality == "image" for r in space.ranges])
    is_code = (which >= 0) & image_ranges[np.maximum(which, 0)]
    return ids[is_code], int((~is_code).sum())


def run_tokenizer(cand: Candidate, pictures: Sequence[Picture], *, keep: Sequence[int] = (),
                  desc: str = "", progress: bool = True) -> TokenizerRun:
    tok = cand.tok
    sizes = tok.space.codebook_sizes["image"]
    used = [np.zeros(s, dtype=bool) for s in sizes]
    cols: dict[str, list[float]] = {k: [] for k in ("bpp", "code", "struct", "psnr", "ssim", "ms_ssim")}
    kept = {}
    with torch.inference_mode():
        for i, pic in enumerate(progress_bar(pictures, desc or cand.name, progress)):
            seq = tok.encode(pic.image)
            span = next(s for s in seq.spans if s.modality == "image")
            codes, struct = image_codes(tok, seq.ids[span.start:span.stop])
            levels, values = tok.space.media_codes("image", codes)
            for lv in np.unique(levels):
                used[lv][values[levels == lv]] = True
            rec = tok.decode(seq)[0]
            q = quality(pic.image, rec)
            cols["bpp"].append(tok.space.bits_of(codes) / (pic.image.height * pic.image.width))
            cols["code"].append(len(codes))
            cols["struct"].append(struct)
            for k in ("psnr", "ssim", "ms_ssim"):
                cols[k].append(q[k])
            if i in keep:
                kept[i] = rec
    arr = {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}
    return TokenizerRun(arr["bpp"], arr["code"], arr["struct"], arr["psnr"], arr["ssim"], arr["ms_ssim"],
                        [(lv, int(u.sum()), len(u)) for lv, u in enumerate(used)], kept)


@dataclass
class AnchorCurve:
    """A classic codec over a quality sweep: per-image numbers, [Q, N] each."""

    codec: str
    qualities: tuple[int, ...]
    bpp: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray
    ms_ssim: np.ndarray

    def mean(self, what: str) -> np.ndarray:
        """[Q] mean over images (MS-SSIM over the images big enough for it)."""
        values = getattr(self, what)
        if what == "ms_ssim" and np.isnan(values).all():
            return np.full(len(self.qualities), math.nan)
        return np.nanmean(values, axis=1) if what == "ms_ssim" else values.mean(axis=1)

    def at_rate(self, bpp: float, what: str = "psnr") -> float | None:
        """The mean ``what`` interpolated linearly in bpp at ``bpp``; None outside the sweep's
        range (the anchor cannot reach that rate, and extrapolating would be a guess)."""
        return interpolate(self.mean("bpp"), self.mean(what), bpp)

    def subset(self, idx: np.ndarray) -> "AnchorCurve":
        """The same sweep over the images ``idx`` only."""
        return AnchorCurve(self.codec, self.qualities, self.bpp[:, idx], self.psnr[:, idx], self.ssim[:, idx],
                           self.ms_ssim[:, idx])


def run_anchor(codec: str, pictures: Sequence[Picture], qualities: Sequence[int], workdir: Path, *,
               progress: bool = True) -> AnchorCurve:
    """Encode every picture at every quality through ``Image.save`` and read it back."""
    path = workdir / f"anchor{ANCHORS[codec][0]}"
    shape = (len(qualities), len(pictures))
    out = {k: np.zeros(shape) for k in ("bpp", "psnr", "ssim", "ms_ssim")}
    for j, pic in enumerate(progress_bar(pictures, codec, progress)):
        coded = [encode_anchor(codec, pic.image, q, path) for q in qualities]
        for i, ((_, nbytes), m) in enumerate(zip(coded, quality_batch(pic.image, [rec for rec, _ in coded]))):
            out["bpp"][i, j] = nbytes * 8 / (pic.image.height * pic.image.width)
            for k in ("psnr", "ssim", "ms_ssim"):
                out[k][i, j] = m[k]
    return AnchorCurve(codec, tuple(qualities), out["bpp"], out["psnr"], out["ssim"], out["ms_ssim"])


def encode_anchor(codec: str, image: Image, q: int, path: Path) -> tuple[Image, int]:
    """(decoded image, file size in bytes) of ``image`` saved as ``codec`` at quality ``q``
    (``path`` must have the codec's suffix). A downscaled anchor codes the image at
    ``1/factor`` of its size and upsamples the decoded picture back (bicubic)."""
    factor = ANCHORS[codec][1]
    small = image
    if factor > 1:
        small = resize(image, max(1, math.ceil(image.height / factor)), max(1, math.ceil(image.width / factor)))
    small.save(path, quality=q)
    rec = Image.open(path).to_rgb()
    if factor > 1:
        rec = resize(rec, image.height, image.width)
    return rec, path.stat().st_size


def measure_throughput(cand: Candidate, pictures: Sequence[Picture], *, device: str = "cpu", repeat: int = 3,
                       batch: int = 8) -> dict:
    """Images/s at the pictures' size: one at a time through ``tok.encode`` / ``tok.decode`` (ids
    in, ``Image`` out), and in batches through the codec's own batched ``encode`` / ``decode``
    (tensors in and out) where it has them. Best of ``repeat`` runs after a warm-up."""
    tok = cand.tok
    if device != "cpu":
        tok = UniTokenizer(tok.text, {"image": copy.deepcopy(cand.codec).to(device)})
    codec = tok.media["image"]
    sync = (lambda: torch.cuda.synchronize()) if device.startswith("cuda") else (lambda: None)
    images = [p.image for p in pictures[:batch]]
    n = len(images)
    row = {"tokenizer": cand.name, "device": device, "threads": torch.get_num_threads() if device == "cpu" else "-"}
    with torch.inference_mode():
        seqs = [tok.encode(im) for im in images]
        row["encode img/s (one at a time)"] = n / best_time(lambda: [tok.encode(im) for im in images], repeat, sync)
        row["decode img/s (one at a time)"] = n / best_time(lambda: [tok.decode(s) for s in seqs], repeat, sync)
        row["encode img/s (batch)"] = row["decode img/s (batch)"] = None
        if callable(getattr(codec, "encode", None)) and callable(getattr(codec, "decode", None)):
            x = torch.stack([im.to_float() for im in images]).to(device)
            size = tuple(x.shape[-2:])
            codes = codec.encode(x)
            row["encode img/s (batch)"] = n / best_time(lambda: codec.encode(x), repeat, sync)
            row["decode img/s (batch)"] = n / best_time(lambda: codec.decode(codes, size), repeat, sync)
    row["batch"] = n
    return row


# ------------------------------------------------------------------------------------------------
# the benchmark


@dataclass
class SettingResult:
    """One setting (256x256 crops or native size): a table row per tokenizer and the anchors."""

    key: str                      # "crops" or "native"
    title: str
    pictures: list[Picture]
    runs: dict[str, TokenizerRun]
    anchors: dict[str, AnchorCurve]
    rows: list[dict]              # QUALITY_COLUMNS + anchor_columns -> value (None: "n/a")


@dataclass
class ImageReport:
    candidates: list[Candidate]
    settings: list[SettingResult]
    throughput: list[dict]
    grid_index: list[int]         # which crops of the first setting the grid shows
    grid_note: str = ""           # how the grid PNG was fitted into its size budget


def grid_picks(crops: Sequence[Picture], n: int) -> list[int]:
    """Indices of ``n`` center crops for the side-by-side grid, chosen by a fixed rule (never by
    how they look): evenly spaced over the pictures, in name order, each from the middle of its
    share of the list."""
    centers = [i for i, p in enumerate(crops) if p.name.endswith(":center")]
    n = min(n, len(centers))
    return [centers[int((k + 0.5) * len(centers) / n)] for k in range(n)]


def table_row(cand: Candidate, run: TokenizerRun, anchors: dict[str, AnchorCurve]) -> dict:
    bpp = float(run.bpp.mean())
    psnr, ssim = float(run.psnr.mean()), float(run.ssim.mean())
    ms = run.ms_ssim[~np.isnan(run.ms_ssim)]
    used = sum(u for _, u, _ in run.usage)
    total = sum(s for _, _, s in run.usage)
    row = {
        "tokenizer": cand.name,
        "tokens/image": float(run.code_tokens.mean()),
        "structural tokens/image": float(run.structural_tokens.mean()),
        "bpp": bpp, "PSNR": psnr, "SSIM": ssim,
        "MS-SSIM": float(ms.mean()) if len(ms) else None,
        "codebook usage": used / total,
    }
    for name, a in anchors.items():
        p = a.at_rate(bpp, "psnr")
        row[f"{name} PSNR @ same bpp"] = p
        row[f"gap to {name} (dB)"] = psnr - p if p is not None else None
        row[f"{name} SSIM @ same bpp"] = a.at_rate(bpp, "ssim")
    return row


def run_image(candidates: Sequence[Candidate], pictures: Sequence[Picture], *, crop_size: int = 256,
              random_crops: int = 3, max_side: int | None = 1024, qualities: dict | None = None,
              repeat: int = 3, batch: int = 8, grid: int = 4, devices: Sequence[str] | None = None,
              progress: bool = True) -> ImageReport:
    """The whole image benchmark, in memory: nothing is written except temporary anchor files.

    Args:
        candidates: tokenizers under test (each a suite with an image tokenizer).
        pictures: the held-out pictures (RGB).
        crop_size / random_crops: the crop setting (see ``crops_of``).
        max_side: native setting: pictures with a longer side are downscaled to it (None: never).
        qualities: anchor codec -> quality sweep (default ``QUALITIES``).
        repeat / batch: throughput runs and the number of crops per timed batch.
        grid: how many crops the side-by-side grid shows (their reconstructions are kept).
        devices: throughput devices (default: cpu, and cuda when available).
    """
    qualities = QUALITIES if qualities is None else qualities
    unknown = set(qualities) - set(ANCHORS)
    if unknown:
        raise ConfigError(f"unknown anchor codecs {sorted(unknown)}; known: {', '.join(ANCHORS)}")
    devices = list(devices) if devices is not None else default_devices()
    crops = crops_of(pictures, crop_size, random_crops)
    grid_index = grid_picks(crops, grid)
    native = native_of(pictures, max_side)
    settings = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for key, title, pics, keep in (("crops", f"{crop_size}x{crop_size} crops", crops, grid_index),
                                       ("native", "native size", native, ())):
            anchors = {name: run_anchor(name, pics, qs, work, progress=progress) for name, qs in qualities.items()}
            runs = {c.name: run_tokenizer(c, pics, keep=keep, desc=f"{c.name} ({title})", progress=progress)
                    for c in candidates}
            rows = [table_row(c, runs[c.name], anchors) for c in candidates]
            settings.append(SettingResult(key, title, list(pics), runs, anchors, rows))
    throughput = [measure_throughput(c, crops, device=d, repeat=repeat, batch=batch)
                  for c in candidates for d in devices]
    return ImageReport(list(candidates), settings, throughput, grid_index)


# ------------------------------------------------------------------------------------------------
# markdown


def _cell(col: str, row: dict) -> str:
    v = row.get(col)
    if col == "tokenizer":
        return str(v)
    if col == "tokens/image":
        return f"{v:.0f} (+{row['structural tokens/image']:.0f})"
    if col == "bpp":
        return fmt(v, 4)
    if "SSIM" in col:
        return fmt(v, 4)
    if col.startswith("gap"):
        return fmt(v, 2, signed=True)
    if col == "codebook usage":
        return f"{100 * v:.1f}%"
    return fmt(v, 2)


def quality_table(setting: SettingResult) -> str:
    return markdown_table(QUALITY_COLUMNS, setting.rows, _cell)


def kind_rows(setting: SettingResult) -> list[dict]:
    """Per kind of picture (photo, art, science) and tokenizer: its mean bpp, PSNR and SSIM on
    that kind's images and each anchor's on the same images at that bpp. Empty when the pictures
    are all of one kind or their kinds are unknown."""
    kinds = sorted({p.kind for p in setting.pictures}, key=lambda k: (k != "photo", k))
    if len(kinds) < 2 or "" in kinds:
        return []
    rows = []
    for kind in kinds:
        idx = np.array([i for i, p in enumerate(setting.pictures) if p.kind == kind])
        for name, run in setting.runs.items():
            bpp, psnr = float(run.bpp[idx].mean()), float(run.psnr[idx].mean())
            row = {"kind": kind, "images": len(idx), "tokenizer": name, "bpp": bpp, "PSNR": psnr,
                   "SSIM": float(run.ssim[idx].mean())}
            for anchor, curve in setting.anchors.items():
                p = curve.subset(idx).at_rate(bpp, "psnr")
                row[f"{anchor} PSNR @ same bpp"] = p
                row[f"gap to {anchor} (dB)"] = psnr - p if p is not None else None
            rows.append(row)
    return rows


def kind_table(setting: SettingResult) -> str:
    rows = kind_rows(setting)
    if not rows:
        return ""
    cols = ("kind", "images", "tokenizer", "bpp", "PSNR", "SSIM")
    for name in setting.anchors:
        cols += (f"{name} PSNR @ same bpp", f"gap to {name} (dB)")
    return markdown_table(cols, rows, lambda c, r: str(r[c]) if c in ("kind", "images") else _cell(c, r))


def versus_table(setting: SettingResult) -> str:
    return markdown_table(anchor_columns(list(setting.anchors)), setting.rows, _cell)


def anchor_table(setting: SettingResult) -> str:
    lines = ["| codec | quality | bpp | PSNR | SSIM | MS-SSIM |", "|---|---:|---:|---:|---:|---:|"]
    for name, a in setting.anchors.items():
        bpp, psnr, ssim, ms = a.mean("bpp"), a.mean("psnr"), a.mean("ssim"), a.mean("ms_ssim")
        for i, q in enumerate(a.qualities):
            lines.append(f"| {name} | {q} | {bpp[i]:.4f} | {psnr[i]:.2f} | {ssim[i]:.4f} | {fmt(float(ms[i]), 4)} |")
    return "\n".join(lines)


def anchor_range_notes(setting: SettingResult) -> list[str]:
    """Why an anchor cell is n/a: the tokenizer's rate lies outside the anchor's sweep."""
    notes = []
    for row in setting.rows:
        for name, a in setting.anchors.items():
            if row.get(f"{name} PSNR @ same bpp") is None:
                rates = a.mean("bpp")
                lowest = f"{rates.min():.3f} bpp at quality {a.qualities[int(np.argmin(rates))]}"
                where = (f"below its lowest rate ({lowest})" if row["bpp"] < rates.min()
                         else f"above its highest rate ({rates.max():.3f} bpp)")
                notes.append(f"{row['tokenizer']}: {row['bpp']:.4f} bpp is {where} of {name} on these images, "
                             f"so there is no {name} point at the same rate.")
    return notes


def usage_lines(report: ImageReport) -> list[str]:
    lines = []
    for setting in report.settings:
        for name, run in setting.runs.items():
            seen = int(run.code_tokens.sum())
            levels = ", ".join(f"L{lv} {u}/{s} ({100 * u / s:.1f}%)" for lv, u, s in run.usage[:16])
            more = f", ... ({len(run.usage)} levels)" if len(run.usage) > 16 else ""
            lines.append(f"- {name}, {setting.title}: {levels}{more}; {seen} code tokens seen in all")
    return lines


def _throughput_cell(col: str, row: dict) -> str:
    v = row.get(col)
    if col in ("tokenizer", "device", "threads"):
        return str(v)
    return fmt(v, 1)


def throughput_table(report: ImageReport) -> str:
    return markdown_table(THROUGHPUT_COLUMNS, report.throughput, _throughput_cell)


def render_section(report: ImageReport, *, command: str, heldout: str, plots: dict[str, Path] | None = None,
                   results_dir: Path = RESULTS.parent, notes: Sequence[str] = ()) -> str:
    crops, native = report.settings
    struct = crops.runs[report.candidates[0].name].structural_tokens.mean() if report.candidates else 0
    side = crops.pictures[0].image.height if crops.pictures else 256
    vocab = len(report.candidates[0].tok.space) if report.candidates else 0
    n_pics = len(native.pictures)
    downscaled = [p for p in native.pictures if p.note]
    batch = report.throughput[0]["batch"] if report.throughput else 0
    body = [
        *run_lines(command),
        f"- Held-out set: {heldout}",
        f"- Settings: **{crops.title}**: {len(crops.pictures)} crops of the {n_pics} pictures (per picture the "
        f"center crop after resizing the short side to 256"
        + (", plus fixed-seed random crops at random scales" if len(crops.pictures) > n_pics else "") + "); "
        f"**native size**: the {n_pics} whole pictures"
        + (f", {len(downscaled)} of them downscaled to a long side of "
           f"{max(max(p.image.height, p.image.width) for p in downscaled)} pixels to keep CPU time bounded"
           if downscaled else "") + ".",
        "- bpp = sum over the image's code ids of log2(its level's codebook size) / pixels (from the token "
        f"space). Each image segment also has {struct:.0f} structural tokens (begin, 4 shape tokens, end; the "
        f"\"(+{struct:.0f})\" in the tokens column), excluded from bpp; at log2({vocab}) bits each they would add "
        f"{struct * math.log2(max(vocab, 2)) / (side * side):.4f} bpp at {side}x{side}. JPEG / WebP bpp = file bytes * "
        "8 / pixels, headers included; \"JPEG 1/2-res\" and \"WebP 1/2-res\" code the picture at half its width "
        "and height and upsample the decoded picture (bicubic), which reaches the low rates the plain codecs cannot.",
        "- PSNR / SSIM / MS-SSIM: `unitok.metrics` on RGB, mean over images (PSNR capped at 100 dB for exact "
        "copies); MS-SSIM (5 scales) only for images with a short side >= 176. \"@ same bpp\": the anchor's "
        "mean PSNR / SSIM over its quality sweep, interpolated linearly in mean bpp at the tokenizer's mean bpp "
        "(never extrapolated: n/a outside the sweep). Gap = tokenizer minus anchor (positive: the tokenizer "
        "is better).",
        "- Codebook usage: codes used at least once over the setting's images / codebook size (all levels).",
        *[f"- {n}" for n in notes],
        "",
        "Tokenizers:",
        "",
        *[f"- **{c.name}**: {c.description}" for c in report.candidates],
    ]
    for setting in report.settings:
        body += ["", f"### {setting.title[0].upper() + setting.title[1:]}", "", quality_table(setting), "",
                 f"Against classic codecs at the same rate ({setting.title}):", "", versus_table(setting)]
        notes = anchor_range_notes(setting)
        if notes:
            body += [""] + [f"- {n}" for n in notes]
        by_kind = kind_table(setting)
        if by_kind:
            body += ["", f"By kind of picture ({setting.title}; the anchors on the same images at each row's bpp):",
                     "", by_kind]
    body += ["", "Codebook usage per level:", "", *usage_lines(report)]
    if plots:
        body += [""]
        if "rd" in plots:
            body += [f"![rate-distortion: PSNR vs bpp]({rel_to(plots['rd'], results_dir)})", ""]
        if "grid" in plots:
            body += [f"Side by side ({crops.title}, 1:1 pixels; original, each tokenizer, then the JPEG point "
                     f"closest to the first tokenizer's bpp (plain JPEG if within 15%, else 1/2-res); "
                     f"{report.grid_note}): "
                     f"[{plots['grid'].name}]({rel_to(plots['grid'], results_dir)})",
                     "", f"![originals and reconstructions]({rel_to(plots['grid'], results_dir)})"]
    body += ["", f"### Throughput ({crops.title.replace(' crops', '')})", "",
             f"One at a time: `tok.encode(Image)` -> ids and `tok.decode(ids)` -> `Image`, as a user calls them. "
             f"Batch: the codec's batched `encode` / `decode` on a [{batch}, 3, H, W] tensor (n/a for codecs "
             f"without one). Best of the timed runs after a warm-up.", "", throughput_table(report)]
    for setting in report.settings:
        body += ["", f"<details><summary>JPEG and WebP sweeps, {setting.title}</summary>", "",
                 anchor_table(setting), "", "</details>"]
    return "\n".join(body)


# ------------------------------------------------------------------------------------------------
# plots


def plot_rd(report: ImageReport, path: Path) -> Path | None:
    """PSNR vs bpp: the JPEG and WebP sweeps and the tokenizers, one panel per setting."""
    plt = pyplot(warn=True)
    if plt is None:
        return None
    fig, axes = plt.subplots(1, len(report.settings), figsize=(5.5 * len(report.settings), 4.2), dpi=100)
    axes = np.atleast_1d(axes)
    markers = "os^DvP*X"
    for ax, setting in zip(axes, report.settings):
        colors = {"JPEG": "black", "WebP": "tab:blue"}
        for (name, a), style in zip(setting.anchors.items(), ("-", "--", ":", "-.")):
            ax.plot(a.mean("bpp"), a.mean("psnr"), style, marker=".", color=colors.get(name, "gray"), label=name)
        for k, row in enumerate(setting.rows):
            ax.plot([row["bpp"]], [row["PSNR"]], markers[k % len(markers)], ms=8, label=row["tokenizer"],
                    color=plt.cm.tab10((k + 1) % 10))
        ax.set_xscale("log")
        rates = np.concatenate([a.mean("bpp") for a in setting.anchors.values()] + [[r["bpp"] for r in setting.rows]])
        lo, hi = float(rates.min()) / 1.15, float(rates.max()) * 1.15
        ax.set_xlim(lo, hi)
        ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 4, 8) if lo <= t <= hi]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"held-out pictures, {setting.title}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(plt, fig, path)


def _grid_columns(report: ImageReport, workdir: Path) -> list[list[tuple[Image, str]]]:
    """Rows of (tile, label): original, each tokenizer, JPEG at the closest rate."""
    setting = report.settings[0]
    jpegs = [name for name in setting.anchors if name.startswith("JPEG")]
    first = report.candidates[0].name if report.candidates else None
    rows = []
    for i in report.grid_index:
        pic = setting.pictures[i]
        tiles = [(pic.image, pic.name)]
        for c in report.candidates:
            run = setting.runs[c.name]
            tiles.append((run.kept[i], f"{c.name}\n{run.bpp[i]:.3f} bpp, {run.psnr[i]:.1f} dB"))
        if jpegs and first is not None:
            # plain JPEG when it has a point within 15% of the rate, else the closest of any JPEG
            target = setting.runs[first].bpp[i]
            miss = lambda nj: abs(setting.anchors[nj[0]].bpp[nj[1], i] - target) / target  # noqa: E731
            points = [(n, j) for n in jpegs for j in range(len(setting.anchors[n].qualities))]
            name, j = min(points, key=lambda nj: (nj[0] != "JPEG" or miss(nj) > 0.15, miss(nj)))
            a = setting.anchors[name]
            rec, _ = encode_anchor(name, pic.image, a.qualities[j], workdir / f"grid{ANCHORS[name][0]}")
            tiles.append((rec, f"{name} q{a.qualities[j]}\n{a.bpp[j, i]:.3f} bpp, {a.psnr[j, i]:.1f} dB"))
        rows.append(tiles)
    return rows


def plot_grid(report: ImageReport, path: Path, max_bytes: int = MAX_PLOT_BYTES) -> Path | None:
    """Originals and reconstructions at 1:1 pixels, as a PNG under ``max_bytes``.

    PNG spends about 12 bits per pixel on photographs, so a few rows of 256x256 tiles overflow
    the budget: the colours are first reduced to 7, 6, then 5 bits per channel (an error of at
    most 7 levels in 255, about 41 dB PSNR, well above every codec compared here), and only then
    are rows dropped. What was done is recorded in ``report.grid_note`` for the caption."""
    plt = pyplot()
    if plt is None or not report.grid_index:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        rows = _grid_columns(report, Path(tmp))
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in range(len(rows), 0, -1):
        canvas = draw_grid(plt, rows[:n])
        for bits in (8, 7, 6, 5):
            if save_png(canvas, path, bits) <= max_bytes:
                report.grid_note = (f"{n} of {len(rows)} rows" if n < len(rows) else f"{n} rows") + (
                    f"; colours stored with {bits} bits per channel to keep the PNG under "
                    f"{max_bytes // 1000} KB (the metrics use the full images)" if bits < 8 else "")
                return path
    report.grid_note = f"1 row; over {max_bytes // 1000} KB even at 5 bits per channel"
    return path


# ------------------------------------------------------------------------------------------------
# command line


#: what each folder of recipes/data/fetch_images.py is, for the section header
SPLIT_NAMES = {"bench": "the benchmark split", "val": "the validation split (for design choices, not for reported "
               "numbers)", "heldout": "the legacy held-out set (validation and benchmark pictures together; not for "
               "reported numbers)"}


def heldout_description(folder: Path, pictures: Sequence[Picture]) -> str:
    split = folder.parent / "split.json"
    sizes = ", ".join(f"{p.name} {p.image.width}x{p.image.height}" for p in pictures)
    sources: dict[str, int] = {}
    for p in pictures:   # the fetched splits name each picture <source>_<name>; your own files are one source
        source = p.name.split("_")[0] if split.exists() else "your files"
        sources[source] = sources.get(source, 0) + 1
    kinds: dict[str, int] = {}
    for p in pictures:
        kinds[p.kind or "unknown"] = kinds.get(p.kind or "unknown", 0) + 1
    which = SPLIT_NAMES.get(folder.name, "pictures given with --heldout") if split.exists() else \
        "pictures given with --heldout"
    where = (f"{which}, {rel(folder)}: {len(pictures)} pictures (by kind: "
             f"{', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}; by source: "
             f"{', '.join(f'{k} {v}' for k, v in sources.items())}): {sizes}")
    if split.exists():
        where += (f". The split in {rel(split)} is by picture (all variants of a wallpaper on one side), so none of "
                  "them, nor any crop of them, was seen in training; the held-out pictures are divided by source "
                  "into a validation split (training-time validation and design choices) and this benchmark split "
                  "(reported numbers only) by `recipes/data/splits.py`, and the kinds (photo: camera photographs; "
                  "art: drawn, painted or rendered; science: microscopy, telescope, medical) were assigned by "
                  "looking at each picture")
    return where


def bench_image(args: argparse.Namespace) -> tuple[Section, dict[str, Path]]:
    candidates = from_args(load_candidates, args)
    pictures = load_heldout(args.heldout, args.limit)
    announce(candidates, f"{len(pictures)} pictures from {args.heldout}")
    report = run_image(candidates, pictures, random_crops=args.random_crops, max_side=args.max_side or None,
                       repeat=args.repeat, batch=args.batch)
    plots = draw_plots(report, args.plots, {"rd": (plot_rd, "image_rd.png"), "grid": (plot_grid, "image_grid.png")},
                       write=not args.no_write)
    body = render_section(report, command=command_line(), heldout=heldout_description(args.heldout, pictures),
                          plots=plots, results_dir=args.results.parent, notes=args.note or ())
    return Section("Image reconstruction", body), plots
