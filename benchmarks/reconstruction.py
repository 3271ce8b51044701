"""Reconstruction quality of the media tokenizers, against classic codecs at the same bit rate.

    python benchmarks/reconstruction.py --modality image [--suite DIR] [--checkpoint DIR ...] [--no-suite]
        [--heldout data/images/heldout] [--limit N] [--max-side 1024] [--no-write]
    python benchmarks/reconstruction.py --modality audio [--suite DIR] [--checkpoint DIR ...] [--no-suite]
        [--heldout data/audio/heldout] [--kbps 1.5 3 6] [--memory-minutes 60] [--no-write]
    python benchmarks/reconstruction.py --modality video [--suite DIR] [--checkpoint DIR ...] [--no-suite]
        [--heldout data/video/heldout_256.npy] [--limit N] [--rate-multiples 1 2 4] [--no-write]

Each modality registers a function in ``BENCHMARKS``; it returns the markdown body of its section
in ``benchmarks/RESULTS.md`` ("## Image reconstruction" for images), which this script replaces
in place, leaving the other sections alone, and writes its plots to ``benchmarks/plots/``.

Image: every tokenizer under test (the suite's image tokenizer and each ``--checkpoint``) encodes
and decodes the held-out pictures in two settings, 256x256 crops and native size. JPEG and WebP
run over a quality sweep on the same pictures in the same run, and their PSNR / SSIM are
interpolated (linearly in bits per pixel, never extrapolated) at each tokenizer's rate.

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

Audio ("## Audio reconstruction"): every audio tokenizer under test codes the held-out speech and
music (``data/audio/heldout/<category>/``; long music files cut into evenly spread windows) at each
target rate (1.5 / 3 / 6 kbps: the most residual levels within it), and Opus (libopus through
PyAV) codes the same clips at the same targets in the same run. Per category: kbps (code bits /
seconds; for Opus the packet payload, which libopus keeps above its own floor whatever it is
asked), tokens/s, SI-SDR, multi-resolution mel distance, STOI and wideband PESQ
(``unitok.metrics``), codebook usage per level; then encode / decode speed (x real time, 1 and 2
CPU threads, and a GPU when there is one) and the peak memory of encoding a 60-minute input in a
fresh process. The rate-quality plot is ``plots/audio_rd.png``.

Video ("## Video reconstruction"): every video tokenizer under test (the bundled one in
``unitok/assets/video`` and each ``--checkpoint``) codes the held-out clips
(``data/video/heldout_256.npy``, grouped by ``split.json`` into pan-and-zoom, real camera and
animation) through ``tok.encode(Video)`` / ``tok.decode``: per-frame PSNR and SSIM (frame 0 and
the later frames apart), temporal PSNR (of the frame differences), bpp from the code ids emitted and
tokens per second. H.264 (libx264) and AV1 (SVT-AV1, else libaom) code the same clips in the same
run as yuv420p, with a per-clip CRF search that lands their bitstream on the tokenizer's bpp (and on
multiples of it for ``plots/video_rd.png``). Then frames/s of encode and decode in a fresh process
(1 and 2 CPU threads, and a GPU when there is one), and the check that a one-frame video codes like
an image (an inflated, not fine-tuned model exactly; the trained one as measured).
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
PLOTS = ROOT / "benchmarks" / "plots"
HELDOUT = ROOT / "data" / "images" / "heldout"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import Section, machine_description, write_section  # noqa: E402

import unitok  # noqa: E402
from unitok import Audio, ConfigError, Image, MediaError, UniTokenizer, Video  # noqa: E402
from unitok import metrics  # noqa: E402

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MS_SSIM_MIN_SIDE = 176           # five scales of an 11-pixel window: 11 * 2**4
PSNR_CAP = 100.0                 # unitok.metrics.psnr floors the MSE at 1e-10 (10 * log10(1e10))
MAX_PLOT_BYTES = 300_000

#: anchors: name -> (file suffix, downscale factor, quality sweep). JPEG quality 1 and 2 give the
#: same file (libjpeg clamps its tables), and JPEG's headers alone cost about 0.07 bpp at 256x256,
#: so plain JPEG cannot go below about 0.2 bpp there; "JPEG 1/2-res" (halve the size, encode,
#: decode, upsample bicubic) is the usual way to reach lower rates with it.
ANCHORS: dict[str, tuple[str, int, tuple[int, ...]]] = {
    "JPEG": (".jpg", 1, (1, 3, 5, 8, 10, 15, 20, 30, 50, 75, 90)),
    "WebP": (".webp", 1, (1, 5, 10, 20, 30, 50, 75, 90)),
    "JPEG 1/2-res": (".jpg", 2, (1, 3, 5, 10, 20, 30, 50, 75, 90)),
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


def _progress(items, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="img", leave=False, disable=not enabled)


# ------------------------------------------------------------------------------------------------
# held-out pictures


@dataclass
class Picture:
    """One image under test."""

    name: str             # the held-out file's stem, plus ":center" / ":crop<k>" for a crop
    image: Image          # RGB
    note: str = ""        # e.g. "downscaled from 5120x2880"


def load_heldout(folder: Path, limit: int | None = None) -> list[Picture]:
    """The held-out pictures of ``folder`` (sorted by name, the first ``limit``), as RGB."""
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        sys.exit(f"no held-out images (*.png, *.jpg, *.webp) in {folder}. Fetch them first:\n"
                 f"    python recipes/data/fetch_images.py\n"
                 f"then rerun (or pass --heldout DIR with your own pictures, never seen in training).")
    pictures = []
    for path in files[:limit]:
        try:
            pictures.append(Picture(path.stem, Image.open(path).to_rgb()))
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
        out.append(Picture(f"{pic.name}:center", crop(small, t, l, size)))
        top = min(min(pic.image.height, pic.image.width), 4 * size)
        if top <= size:
            continue
        rng = np.random.default_rng([seed, int(hashlib.sha256(pic.name.encode()).hexdigest()[:8], 16)])
        for k in range(random_crops):
            scaled = resize_short(pic.image, round(math.exp(rng.uniform(math.log(size), math.log(top)))))
            t = int(rng.integers(0, scaled.height - size + 1))
            l = int(rng.integers(0, scaled.width - size + 1))
            out.append(Picture(f"{pic.name}:crop{k}", crop(scaled, t, l, size)))
    return out


def native_of(pictures: Sequence[Picture], max_side: int | None = 1024) -> list[Picture]:
    """The whole pictures; a picture whose long side exceeds ``max_side`` is downscaled to it."""
    out = []
    for pic in pictures:
        im = pic.image
        if max_side and max(im.height, im.width) > max_side:
            s = max_side / max(im.height, im.width)
            small = resize(im, max(1, round(im.height * s)), max(1, round(im.width * s)))
            out.append(Picture(pic.name, small, f"downscaled from {im.width}x{im.height}"))
        else:
            out.append(Picture(pic.name, im))
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


@dataclass
class Candidate:
    """A tokenizer under test: a suite with an image tokenizer, and how to call it in tables."""

    name: str
    tok: UniTokenizer
    description: str = ""

    @property
    def codec(self):
        return self.tok.media["image"]


def describe_codec(codec) -> str:
    sizes = codec.codebook_sizes
    bits = ", ".join(f"{math.log2(s):.4g}" for s in sizes)
    params = sum(p.numel() for p in codec.parameters())
    what = f"type `{getattr(codec, 'checkpoint_type', type(codec).__name__)}`"
    if hasattr(codec, "downsample"):
        what += f", stride {codec.downsample}"
    if getattr(codec, "multiscale", False) and hasattr(codec, "scales"):
        what += f", next-scale ({len(codec.scales(256, 256))} scales at 256x256)"
    elif hasattr(codec, "multiscale"):
        what += ", single scale (raster)"
    return (f"{what}, {len(sizes)} level(s) of {'/'.join(map(str, sizes))} codes ({bits} bits), "
            f"{params / 1e6:.2f}M parameters")


def candidate(name: str, tok: UniTokenizer) -> Candidate:
    if "image" not in tok.media:
        raise ConfigError(f"{name} has no image tokenizer (it has: {', '.join(tok.modalities)}); train one "
                          f"(recipes/train_image.py) or pass --checkpoint DIR with an image tokenizer folder")
    return Candidate(name, tok, describe_codec(tok.media["image"]))


def load_candidates(suite: Path | None, checkpoints: Sequence[Path], *, use_suite: bool = True,
                    device: str = "cpu") -> list[Candidate]:
    """The suite (``unitok.load(suite)``: the bundled one when ``suite`` is None) and one candidate
    per bare image-tokenizer folder in ``checkpoints``. A suite without an image tokenizer is
    refused, unless checkpoints are given and it is the bundled one (then it is skipped with a
    note); ``use_suite=False`` compares the checkpoints alone."""
    out = []
    if use_suite:
        name = _rel(suite) if suite is not None else "bundled suite"
        tok = unitok.load(suite, device=device)
        if "image" in tok.media or suite is not None or not checkpoints:
            out.append(candidate(name, tok))
        else:
            print(f"note: the {name} has no image tokenizer; comparing the --checkpoint folders only")
    elif not checkpoints:
        raise ConfigError("nothing to compare: --no-suite needs at least one --checkpoint DIR")
    text = unitok.text.load_default() if checkpoints else None
    for folder in checkpoints:
        codec = unitok.checkpoint.load_pretrained(folder, device=device)
        if getattr(codec, "modality", None) != "image":
            raise ConfigError(f"{folder}: is a {getattr(codec, 'modality', type(codec).__name__)} tokenizer, "
                              f"not an image tokenizer")
        out.append(candidate(_rel(folder), UniTokenizer(text, {"image": codec})))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"the same tokenizer is listed twice: {names}")
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
        for i, pic in enumerate(_progress(pictures, desc or cand.name, progress)):
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


def interpolate(rates: np.ndarray, values: np.ndarray, bpp: float) -> float | None:
    """Piecewise-linear ``values(rate)`` at ``bpp``; None outside ``[min(rates), max(rates)]``."""
    order = np.argsort(rates, kind="stable")
    x, y = np.asarray(rates, dtype=np.float64)[order], np.asarray(values, dtype=np.float64)[order]
    if not len(x) or not math.isfinite(bpp) or bpp < x[0] - 1e-12 or bpp > x[-1] + 1e-12:
        return None
    return float(np.interp(bpp, x, y))


def run_anchor(codec: str, pictures: Sequence[Picture], qualities: Sequence[int], workdir: Path, *,
               progress: bool = True) -> AnchorCurve:
    """Encode every picture at every quality through ``Image.save`` and read it back."""
    path = workdir / f"anchor{ANCHORS[codec][0]}"
    shape = (len(qualities), len(pictures))
    out = {k: np.zeros(shape) for k in ("bpp", "psnr", "ssim", "ms_ssim")}
    for j, pic in enumerate(_progress(pictures, codec, progress)):
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


def _best_time(fn: Callable[[], object], repeat: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


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
        row["encode img/s (one at a time)"] = n / _best_time(lambda: [tok.encode(im) for im in images], repeat, sync)
        row["decode img/s (one at a time)"] = n / _best_time(lambda: [tok.decode(s) for s in seqs], repeat, sync)
        row["encode img/s (batch)"] = row["decode img/s (batch)"] = None
        if callable(getattr(codec, "encode", None)) and callable(getattr(codec, "decode", None)):
            x = torch.stack([im.to_float() for im in images]).to(device)
            size = tuple(x.shape[-2:])
            codes = codec.encode(x)
            row["encode img/s (batch)"] = n / _best_time(lambda: codec.encode(x), repeat, sync)
            row["decode img/s (batch)"] = n / _best_time(lambda: codec.decode(codes, size), repeat, sync)
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
    devices = list(devices) if devices is not None else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
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


def _fmt(value, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, str):
        return value
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _cell(col: str, row: dict) -> str:
    v = row.get(col)
    if col == "tokenizer":
        return str(v)
    if col == "tokens/image":
        return f"{v:.0f} (+{row['structural tokens/image']:.0f})"
    if col == "bpp":
        return _fmt(v, 4)
    if "SSIM" in col:
        return _fmt(v, 4)
    if col.startswith("gap"):
        return _fmt(v, 2, signed=True)
    if col == "codebook usage":
        return f"{100 * v:.1f}%"
    return _fmt(v, 2)


def markdown_table(columns: Sequence[str], rows: Sequence[dict], cell: Callable[[str, dict], str],
                   left: Sequence[str] = ("tokenizer", "device")) -> str:
    """A markdown table; the ``left`` columns (text) are left-aligned, the others (numbers) right."""
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if c in left else "---:" for c in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(cell(c, row) for c in columns) + " |")
    return "\n".join(lines)


def quality_table(setting: SettingResult) -> str:
    return markdown_table(QUALITY_COLUMNS, setting.rows, _cell)


def versus_table(setting: SettingResult) -> str:
    return markdown_table(anchor_columns(list(setting.anchors)), setting.rows, _cell)


def anchor_table(setting: SettingResult) -> str:
    lines = ["| codec | quality | bpp | PSNR | SSIM | MS-SSIM |", "|---|---:|---:|---:|---:|---:|"]
    for name, a in setting.anchors.items():
        bpp, psnr, ssim, ms = a.mean("bpp"), a.mean("psnr"), a.mean("ssim"), a.mean("ms_ssim")
        for i, q in enumerate(a.qualities):
            lines.append(f"| {name} | {q} | {bpp[i]:.4f} | {psnr[i]:.2f} | {ssim[i]:.4f} | {_fmt(float(ms[i]), 4)} |")
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
    return _fmt(v, 1)


def throughput_table(report: ImageReport) -> str:
    return markdown_table(THROUGHPUT_COLUMNS, report.throughput, _throughput_cell)


def _rel(path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


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
        f"- Machine: {machine_description()}; torch {torch.__version__}, "
        f"torch threads: {torch.get_num_threads()}"
        + (f"; GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "; no GPU"),
        f"- Date: {_dt.date.today().isoformat()}",
        f"- Command: `{command}`",
        f"- Held-out set: {heldout}",
        f"- Settings: **{crops.title}**: {len(crops.pictures)} crops of the {n_pics} pictures (per picture the "
        f"center crop after resizing the short side to 256, plus fixed-seed random crops at random scales); "
        f"**native size**: the {n_pics} whole pictures"
        + (f", {len(downscaled)} of them downscaled to a long side of "
           f"{max(max(p.image.height, p.image.width) for p in downscaled)} pixels to keep CPU time bounded"
           if downscaled else "") + ".",
        "- bpp = sum over the image's code ids of log2(its level's codebook size) / pixels (from the token "
        f"space). Each image segment also has {struct:.0f} structural tokens (begin, 4 shape tokens, end; the "
        f"\"(+{struct:.0f})\" in the tokens column), excluded from bpp; at log2({vocab}) bits each they would add "
        f"{struct * math.log2(max(vocab, 2)) / (side * side):.4f} bpp at {side}x{side}. JPEG / WebP bpp = file bytes * "
        "8 / pixels, headers included; \"JPEG 1/2-res\" codes the picture at half its width and height and "
        "upsamples the decoded picture (bicubic), which reaches the low rates plain JPEG cannot.",
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
    body += ["", "Codebook usage per level:", "", *usage_lines(report)]
    if plots:
        body += [""]
        if "rd" in plots:
            body += [f"![rate-distortion: PSNR vs bpp]({_rel_to(plots['rd'], results_dir)})", ""]
        if "grid" in plots:
            body += [f"Side by side ({crops.title}, 1:1 pixels; original, each tokenizer, then the JPEG point "
                     f"closest to the first tokenizer's bpp (plain JPEG if within 15%, else 1/2-res); "
                     f"{report.grid_note}): "
                     f"[{plots['grid'].name}]({_rel_to(plots['grid'], results_dir)})",
                     "", f"![originals and reconstructions]({_rel_to(plots['grid'], results_dir)})"]
    body += ["", f"### Throughput ({crops.title.replace(' crops', '')})", "",
             f"One at a time: `tok.encode(Image)` -> ids and `tok.decode(ids)` -> `Image`, as a user calls them. "
             f"Batch: the codec's batched `encode` / `decode` on a [{batch}, 3, H, W] tensor (n/a for codecs "
             f"without one). Best of the timed runs after a warm-up.", "", throughput_table(report)]
    for setting in report.settings:
        body += ["", f"<details><summary>JPEG and WebP sweeps, {setting.title}</summary>", "",
                 anchor_table(setting), "", "</details>"]
    return "\n".join(body)


def _rel_to(path: Path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------------------------
# plots


def _pyplot(warn: bool = False):
    """matplotlib.pyplot on the Agg backend, or None (saying so when ``warn``) when it is missing."""
    try:
        import matplotlib
    except ImportError:
        if warn:
            print("matplotlib is not installed: no plots (pip install matplotlib)", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_rd(report: ImageReport, path: Path) -> Path | None:
    """PSNR vs bpp: the JPEG and WebP sweeps and the tokenizers, one panel per setting."""
    plt = _pyplot(warn=True)
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
    return _save_figure(plt, fig, path)


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
    plt = _pyplot()
    if plt is None or not report.grid_index:
        return None
    from PIL import Image as PILImage   # a dependency of matplotlib

    with tempfile.TemporaryDirectory() as tmp:
        rows = _grid_columns(report, Path(tmp))
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in range(len(rows), 0, -1):
        canvas = _draw_grid(plt, rows[:n])
        for bits in (8, 7, 6, 5):
            mask = np.uint8((0xFF << (8 - bits)) & 0xFF)
            PILImage.fromarray(canvas & mask).save(path, "PNG", optimize=True)
            if path.stat().st_size <= max_bytes:
                report.grid_note = (f"{n} of {len(rows)} rows" if n < len(rows) else f"{n} rows") + (
                    f"; colours stored with {bits} bits per channel to keep the PNG under "
                    f"{max_bytes // 1000} KB (the metrics use the full images)" if bits < 8 else "")
                return path
    report.grid_note = f"1 row; over {max_bytes // 1000} KB even at 5 bits per channel"
    return path


def _draw_grid(plt, rows) -> np.ndarray:
    """[H, W, 3] uint8 canvas: a label band above every tile, tiles at 1:1 pixels."""
    dpi, label = 100, 30
    th, tw = rows[0][0][0].height, rows[0][0][0].width
    cols = len(rows[0])
    fig = plt.figure(figsize=(cols * tw / dpi, len(rows) * (th + label) / dpi), dpi=dpi)
    H = len(rows) * (th + label)
    for r, tiles in enumerate(rows):
        for c, (im, text) in enumerate(tiles):
            bottom = H - (r + 1) * (th + label)
            ax = fig.add_axes((c / cols, bottom / H, 1 / cols, th / H))
            ax.imshow(im.pixels.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_axis_off()
            ax.text(0.5, 1.0 + 2 / th, text, transform=ax.transAxes, ha="center", va="bottom", fontsize=7)
    fig.canvas.draw()
    canvas = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return canvas


# ------------------------------------------------------------------------------------------------
# command line


def command_line() -> str:
    """This run's command, as RESULTS.md records it."""
    return "python " + " ".join(shlex.quote(a) for a in [_rel(sys.argv[0]), *sys.argv[1:]])


def heldout_description(folder: Path, pictures: Sequence[Picture]) -> str:
    split = folder.parent / "split.json"
    sizes = ", ".join(f"{p.name} {p.image.width}x{p.image.height}" for p in pictures)
    sources: dict[str, int] = {}
    for p in pictures:
        sources[p.name.split("_")[0]] = sources.get(p.name.split("_")[0], 0) + 1
    where = (f"{_rel(folder)}, {len(pictures)} pictures (by source: "
             f"{', '.join(f'{k} {v}' for k, v in sources.items())}): {sizes}")
    if split.exists():
        where += (f"; the split in {_rel(split)} is by picture (all variants of a wallpaper on one side), "
                  "so none of them, nor any crop of them, was seen in training")
    return where


def bench_image(args: argparse.Namespace) -> tuple[Section, dict[str, Path]]:
    try:
        candidates = load_candidates(args.suite, args.checkpoint or [], use_suite=not args.no_suite)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    pictures = load_heldout(args.heldout, args.limit)
    for c in candidates:
        print(f"[{c.name}] {c.description}")
    print(f"held-out: {len(pictures)} pictures from {args.heldout}")
    report = run_image(candidates, pictures, random_crops=args.random_crops, max_side=args.max_side or None,
                       repeat=args.repeat, batch=args.batch)
    plots = {}
    if not args.no_write:
        if (p := plot_rd(report, args.plots / "image_rd.png")) is not None:
            plots["rd"] = p
        if (p := plot_grid(report, args.plots / "image_grid.png")) is not None:
            plots["grid"] = p
    body = render_section(report, command=command_line(), heldout=heldout_description(args.heldout, pictures),
                          plots=plots, results_dir=args.results.parent, notes=args.note or ())
    return Section("Image reconstruction", body), plots


# ================================================================================================
# audio (``--modality audio``): everything from here to the registry serves the audio mode only


AUDIO_HELDOUT = ROOT / "data" / "audio" / "heldout"
BUNDLED_SUITE = Path(unitok.__file__).resolve().parent / "assets"
AUDIO_RATE = 24_000                       # the held-out files' rate; every metric runs at it
AUDIO_KBPS = (1.5, 3.0, 6.0)              # the rates the issue asks for (levels 2, 4, 8 at 75 Hz)
AUDIO_CATEGORIES = ("speech", "music")
AUDIO_FILE_SUFFIXES = (".flac", ".wav", ".ogg", ".oga", ".opus", ".mp3")
#: metric key -> column title; lower is better only for the mel distance
AUDIO_METRICS = {"si_sdr": "SI-SDR (dB)", "mel": "mel distance", "stoi": "STOI", "pesq": "PESQ (WB)"}
AUDIO_QUALITY_COLUMNS = ("codec", "target kbps", "kbps", "tokens/s", *AUDIO_METRICS.values())
AUDIO_THROUGHPUT_COLUMNS = ("tokenizer", "device", "threads", "load average", "audio s", "encode x real time",
                            "decode x real time", "encode+decode x real time")
AUDIO_MEMORY_COLUMNS = ("tokenizer", "path", "input", "input samples (MiB)", "peak RSS before encoding (MiB)",
                        "peak RSS (MiB)", "wall s")
AUDIO_TEXT_COLUMNS = ("codec", "tokenizer", "device", "path", "input", "mel distance winner", "STOI winner")
OPUS = "Opus"


@dataclass
class Clip:
    """One held-out sound under test, mono at ``AUDIO_RATE``."""

    name: str             # the file's stem, plus "@<start>s" for a segment of a long file
    category: str         # "speech", "music", ...
    wav: torch.Tensor     # [N] float32 in [-1, 1]

    @property
    def seconds(self) -> float:
        return len(self.wav) / AUDIO_RATE


def segments_of(name: str, category: str, wav: torch.Tensor, segments: int, length: int) -> list[Clip]:
    """The whole sound when it is at most ``length`` samples, else ``segments`` windows of that
    length spread evenly from its start to its end (a fixed rule, so reruns cut the same)."""
    if len(wav) <= length or segments < 1:
        return [Clip(name, category, wav)]
    starts = np.linspace(0, len(wav) - length, segments).round().astype(int)
    return [Clip(f"{name}@{s / AUDIO_RATE:.0f}s", category, wav[s:s + length].clone()) for s in starts]


def load_audio_heldout(folder: Path, categories: Sequence[str] = AUDIO_CATEGORIES, *, limit: int | None = None,
                       segments: int = 6, segment_seconds: float = 10.0) -> list[Clip]:
    """Every held-out file of ``folder/<category>/`` (sorted by name, the first ``limit`` per
    category), downmixed to mono at ``AUDIO_RATE``; files longer than ``segment_seconds`` are cut
    into ``segments`` evenly spread windows (``segments_of``)."""
    import torchaudio.functional as AF

    clips, missing = [], []
    for category in categories:
        sub = folder / category
        files = sorted(p for p in sub.glob("*") if p.suffix.lower() in AUDIO_FILE_SUFFIXES) if sub.is_dir() else []
        if not files:
            missing.append(category)
        for path in files[:limit]:
            try:
                audio = Audio.open(path)
            except MediaError as e:
                sys.exit(f"cannot read a held-out clip: {e}")
            wav = audio.samples.mean(0)
            if audio.sample_rate != AUDIO_RATE:
                wav = AF.resample(wav, audio.sample_rate, AUDIO_RATE)
            clips += segments_of(path.stem, category, wav.clamp(-1, 1).contiguous(), segments,
                                 round(segment_seconds * AUDIO_RATE))
    if missing:
        sys.exit(f"no held-out audio for {', '.join(missing)} in {folder} (expected {folder}/<category>/*.flac). "
                 f"Fetch it first:\n    python recipes/data/fetch_audio.py\nthen rerun (or pass --heldout DIR "
                 f"with speech/ and music/ folders of your own, never seen in training).")
    return clips


def fit_length(wav: torch.Tensor, n: int) -> torch.Tensor:
    """[M] -> [n]: cropped, or padded with zeros at the end."""
    return wav[:n] if len(wav) >= n else F.pad(wav, (0, n - len(wav)))


@dataclass
class AudioCandidate:
    """An audio tokenizer under test, and the folder it was loaded from (the memory probe loads
    it again in a fresh process)."""

    name: str
    codec: torch.nn.Module        # an AudioTokenizer: encode(wav [B, 1, N], n_levels), decode(codes, length)
    folder: Path
    description: str = ""


def describe_audio_codec(codec) -> str:
    sizes = codec.codebook_sizes
    params = sum(p.numel() for p in codec.parameters())
    dtype = str(next(codec.parameters()).dtype).replace("torch.", "")
    serves = ", ".join(f"{r:g}" for r in codec.bitrates.values())
    causal = "causal" if getattr(codec.cfg, "causal", False) else "non-causal"
    kinds = getattr(codec.cfg, "encoder", None), getattr(codec.cfg, "decoder", None)
    design = f"{kinds[0]} encoder, {kinds[1]} decoder, " if None not in kinds else ""
    return (f"type `{getattr(codec, 'checkpoint_type', type(codec).__name__)}`, {design}"
            f"{codec.sample_rate / 1000:g} kHz, "
            f"hop {codec.hop} ({codec.frame_rate:g} frames/s), {codec.levels} residual levels of {sizes[0]} codes "
            f"({math.log2(sizes[0]):.4g} bits), {causal}, {params / 1e6:.2f}M parameters ({dtype} in memory); "
            f"serves {serves} kbps")


def candidate_folders(modality: str, suite: Path | None, checkpoints: Sequence[Path], *,
                      use_suite: bool = True) -> list[tuple[str, Path]]:
    """(name, folder) of every ``modality`` tokenizer under test: the suite's (``<suite>/<modality>``;
    the bundled suite when ``suite`` is None), then each of ``checkpoints``. A suite without one is
    refused, unless checkpoints are given and it is the bundled one (then it is skipped with a note)."""
    from unitok import checkpoint

    folders = []
    if use_suite:
        base = Path(suite) if suite is not None else BUNDLED_SUITE
        name = _rel(suite) if suite is not None else "bundled suite"
        if (base / modality / checkpoint.CONFIG_NAME).exists():
            folders.append((name, base / modality))
        elif suite is not None or not checkpoints:
            article = "an" if modality[0] in "aeiou" else "a"
            raise ConfigError(f"{name} has no {modality} tokenizer ({base / modality}); train one "
                              f"(recipes/train_{modality}.py) or pass --checkpoint DIR with {article} {modality} "
                              f"tokenizer folder")
        else:
            print(f"note: the {name} has no {modality} tokenizer; comparing the --checkpoint folders only")
    elif not checkpoints:
        raise ConfigError("nothing to compare: --no-suite needs at least one --checkpoint DIR")
    return folders + [(_rel(f), Path(f)) for f in checkpoints]


def load_audio_candidates(suite: Path | None, checkpoints: Sequence[Path], *, use_suite: bool = True,
                          device: str = "cpu") -> list[AudioCandidate]:
    """The suite's audio tokenizer (``<suite>/audio``; the bundled one when ``suite`` is None) and
    one candidate per bare audio-tokenizer folder in ``checkpoints``."""
    from unitok import checkpoint

    out = []
    for name, folder in candidate_folders("audio", suite, checkpoints, use_suite=use_suite):
        codec = checkpoint.load_pretrained(folder, device=device)
        if getattr(codec, "modality", None) != "audio" or not hasattr(codec, "bitrates"):
            raise ConfigError(f"{folder}: is a {getattr(codec, 'modality', type(codec).__name__)} tokenizer, "
                              f"not an audio codec with residual levels")
        codec.eval()      # a quantizer in training mode would update its codebooks while we measure
        out.append(AudioCandidate(name, codec, folder, describe_audio_codec(codec)))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"the same tokenizer is listed twice: {names}")
    return out


def levels_for(codec, kbps: float) -> int | None:
    """The most levels whose bitrate is at most ``kbps`` (as ``AudioTokenizer.set_bitrate``,
    without changing the model); None below the lowest."""
    fits = [k for k, r in codec.bitrates.items() if r <= kbps + 1e-9]
    return max(fits) if fits else None


# ------------------------------------------------------------------------------------------------
# audio: round trips and scores


def codec_round_trip(codec, wav: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """wav [N] at ``AUDIO_RATE`` -> (reconstruction [N] at ``AUDIO_RATE``, codes [levels, T]),
    through the codec's batched API at its own rate."""
    import torchaudio.functional as AF

    x = wav if codec.sample_rate == AUDIO_RATE else AF.resample(wav, AUDIO_RATE, codec.sample_rate)
    with torch.inference_mode():
        codes = codec.encode(x[None, None].to(codec.device), levels)
        y = codec.decode(codes, x.shape[-1])[0, 0].float().cpu()
    if codec.sample_rate != AUDIO_RATE:
        y = AF.resample(y, codec.sample_rate, AUDIO_RATE)
    return fit_length(y, len(wav)), codes[0].cpu()


def opus_round_trip(wav: torch.Tensor, kbps: float, path: Path) -> tuple[torch.Tensor, int, int]:
    """wav [N] at ``AUDIO_RATE`` through libopus (``Audio.save`` as Ogg Opus at ``kbps``, read
    back with ``Audio.open``) -> (decoded [N] at ``AUDIO_RATE``, packet payload bytes, file bytes).

    The Ogg container carries Opus's pre-skip and the end trim, and the decoder applies both, so
    the decoded signal lines up with the input sample for sample (``tests/test_benchmarks.py``
    checks it). The payload is the sum of the Opus packets' sizes: what a token stream competes
    with; the file adds the Ogg pages and the OpusHead / OpusTags headers."""
    import av
    import torchaudio.functional as AF

    Audio(wav[None].contiguous(), AUDIO_RATE).save(path, bit_rate=round(kbps * 1000))
    with av.open(str(path)) as container:
        payload = sum(p.size for p in container.demux(container.streams.audio[0]))
    decoded = Audio.open(path)
    y = decoded.samples.mean(0)
    if decoded.sample_rate != AUDIO_RATE:
        y = AF.resample(y, decoded.sample_rate, AUDIO_RATE)
    return fit_length(y, len(wav)), payload, path.stat().st_size


def libopus_version() -> str:
    """"libopus 1.x.y" of the library PyAV loads, or "libopus" when it cannot be asked."""
    import ctypes
    import glob

    import av

    libs = glob.glob(str(Path(av.__file__).resolve().parent.parent / "av.libs" / "libopus*.so*"))
    try:
        lib = ctypes.CDLL(libs[0] if libs else "libopus.so.0")
        lib.opus_get_version_string.restype = ctypes.c_char_p
        return lib.opus_get_version_string().decode()
    except (OSError, AttributeError):
        return "libopus"


def speech_metrics_missing() -> list[str]:
    """The optional packages behind STOI / PESQ that are not installed."""
    import importlib.util

    return [pkg for pkg in ("pystoi", "pesq") if importlib.util.find_spec(pkg) is None]


def audio_scores(ref: torch.Tensor, rec: torch.Tensor, mels) -> dict[str, float]:
    """SI-SDR, mel distance, STOI and wideband PESQ of one reconstruction (NaN where a measure is
    undefined for the clip or its package is missing). ref, rec: [N] at ``AUDIO_RATE``."""
    r, d = ref[None], rec[None]
    out = {"si_sdr": float(metrics.si_sdr(d, r)[0]), "mel": float(metrics.mel_distance(mels, d, r)[0])}
    missing = speech_metrics_missing()
    out["stoi"] = math.nan if "pystoi" in missing else float(metrics.stoi(ref, rec, AUDIO_RATE))
    out["pesq"] = math.nan if "pesq" in missing else float(metrics.pesq(ref, rec, AUDIO_RATE))
    return out


@dataclass
class AudioRun:
    """One codec at one target rate over every clip (arrays in clip order)."""

    codec: str                    # the tokenizer's name, or ``OPUS``
    target_kbps: float
    levels: int | None            # residual levels used (None for Opus)
    bits: np.ndarray              # [clips] code bits (Opus: packet payload bytes * 8)
    scores: dict[str, np.ndarray]  # metric key -> [clips]
    tokens: np.ndarray | None = None        # [clips] code tokens (None for Opus)
    file_bits: np.ndarray | None = None     # Opus: whole Ogg file bytes * 8
    usage: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)  # category -> (level, used, size)

    @property
    def label(self) -> str:
        return f"{self.codec}, {self.levels} levels" if self.levels is not None else OPUS


def _progress_clips(clips, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(clips, desc=desc, unit="clip", leave=False, disable=not enabled)


def _collect(rows: list[dict[str, float]]) -> dict[str, np.ndarray]:
    return {k: np.array([r[k] for r in rows], dtype=np.float64) for k in AUDIO_METRICS}


def run_audio_codec(cand: AudioCandidate, clips: Sequence[Clip], target: float, levels: int, mels, *,
                    progress: bool = True) -> AudioRun:
    codec = cand.codec
    size = codec.quantizer.codebook_size
    used = {c.category: np.zeros((levels, size), dtype=bool) for c in clips}
    bits, tokens, rows = [], [], []
    for clip in _progress_clips(clips, f"{cand.name} @ {target:g} kbps", progress):
        rec, codes = codec_round_trip(codec, clip.wav, levels)
        for lv in range(levels):
            used[clip.category][lv, codes[lv].numpy()] = True
        tokens.append(codes.numel())
        bits.append(codes.numel() * math.log2(size))
        rows.append(audio_scores(clip.wav, rec, mels))
    usage = {cat: [(lv, int(u[lv].sum()), size) for lv in range(levels)] for cat, u in used.items()}
    return AudioRun(cand.name, target, levels, np.array(bits), _collect(rows), np.array(tokens, dtype=np.float64),
                    usage=usage)


def run_opus(clips: Sequence[Clip], target: float, mels, workdir: Path, *, progress: bool = True) -> AudioRun:
    path = workdir / "anchor.opus"
    payload, files, rows = [], [], []
    for clip in _progress_clips(clips, f"{OPUS} @ {target:g} kbps", progress):
        rec, nbytes, file_bytes = opus_round_trip(clip.wav, target, path)
        payload.append(8 * nbytes)
        files.append(8 * file_bytes)
        rows.append(audio_scores(clip.wav, rec, mels))
    return AudioRun(OPUS, target, None, np.array(payload, dtype=np.float64), _collect(rows),
                    file_bits=np.array(files, dtype=np.float64))


# ------------------------------------------------------------------------------------------------
# audio: speed and memory


def audio_signal(clips: Sequence[Clip], seconds: float) -> torch.Tensor:
    """[round(seconds * AUDIO_RATE)] float32: the clips one after another, repeated as needed
    (real audio, so the timings see what the codec sees in the quality runs)."""
    n = round(seconds * AUDIO_RATE)
    joined = torch.cat([c.wav for c in clips])
    return joined.repeat(-(-n // len(joined)))[:n].contiguous()


#: run in a fresh interpreter by ``audio_probe``: argv = mode ("speed" | "memory"), codec folder,
#: signal.npy (float32 [N]), levels, threads, device, repeat; prints one JSON line
_AUDIO_PROBE = r"""
import json, os, resource, sys, time
import numpy as np, torch
mode, folder, signal, levels, threads, device, repeat = sys.argv[1:8]
levels, repeat = int(levels), int(repeat)
torch.set_num_threads(int(threads))
import unitok
from unitok import Audio, UniTokenizer
from unitok.checkpoint import load_pretrained
sys.path.insert(0, os.environ["UNITOK_BENCHMARKS"])
from throughput import interleaved_best

def peak():
    # VmHWM: this process's peak resident memory; exec resets it, while ru_maxrss would carry
    # over the (larger) parent's from the fork
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

codec = load_pretrained(folder, device=device).eval()
codec.n_levels = levels
wav = torch.from_numpy(np.load(signal))           # float32 [N], no copy
out = {"threads": torch.get_num_threads(), "load": os.getloadavg()[0]}
with torch.inference_mode():
    if mode == "memory":
        tok = UniTokenizer(unitok.text.load_default(), {"audio": codec})
        out["before"] = peak()
        start = time.perf_counter()
        out["tokens"] = len(tok.encode(Audio(wav[None], codec.sample_rate)).ids)
        out["wall"] = time.perf_counter() - start
        out["peak"] = peak()
    else:
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        x = wav[None, None].to(device)
        codes = codec.encode(x, levels)
        fns = {"encode": lambda: (codec.encode(x, levels), sync()),
               "decode": lambda: (codec.decode(codes, x.shape[-1]), sync())}
        out.update(interleaved_best(fns, repeat))
print(json.dumps(out))
"""


def audio_probe(mode: str, cand: AudioCandidate, signal: torch.Tensor, levels: int, workdir: Path, *,
                threads: int = 1, device: str = "cpu", repeat: int = 3, passive: bool = False) -> dict:
    """Run ``_AUDIO_PROBE`` on ``signal`` [N] in a fresh process with ``OMP_NUM_THREADS=threads``
    (how a user runs with that many threads; changing the count inside a process that started with
    one thread misleads), so neither this process's memory nor its thread pool leaks into the
    numbers; ``passive`` sets ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of
    spinning). Returns the probe's JSON."""
    npy = workdir / "probe_signal.npy"
    np.save(npy, signal.clamp(-1, 1).numpy().astype(np.float32))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), UNITOK_BENCHMARKS=str(Path(__file__).resolve().parent))
    env.pop("OMP_WAIT_POLICY", None)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    argv = [mode, str(cand.folder), str(npy), str(levels), str(threads), device, str(repeat)]
    proc = subprocess.run([sys.executable, "-c", _AUDIO_PROBE, *argv], capture_output=True, text=True, env=env,
                          check=False)
    npy.unlink()
    if proc.returncode != 0:
        raise RuntimeError(f"audio {mode} probe failed:\n{proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_audio_throughput(cand: AudioCandidate, signal: torch.Tensor, levels: int, workdir: Path, *,
                             device: str = "cpu", threads: int = 1, repeat: int = 3, passive: bool = False) -> dict:
    """Seconds of audio per second of wall time for the codec's batched ``encode`` and ``decode``
    of ``signal`` [N] as one [1, 1, N] input at ``levels`` levels, on ``device`` with ``threads``
    CPU threads: best of ``repeat`` rounds after a warm-up, the two taking turns
    (``interleaved_best``), in a fresh process (``audio_probe``; ``passive``: with
    ``OMP_WAIT_POLICY=PASSIVE``)."""
    out = audio_probe("speed", cand, signal, levels, workdir, threads=threads, device=device, repeat=repeat,
                      passive=passive)
    seconds = len(signal) / AUDIO_RATE
    label = f"{out['threads']}" + (", passive wait" if passive else "") if device == "cpu" else "-"
    return {"tokenizer": cand.name, "device": device, "threads": label,
            "load average": out["load"], "audio s": seconds,
            "encode x real time": seconds / out["encode"], "decode x real time": seconds / out["decode"],
            "encode+decode x real time": seconds / (out["encode"] + out["decode"])}


def measure_encode_memory(cand: AudioCandidate, signal: torch.Tensor, levels: int, workdir: Path) -> dict:
    """Peak resident memory of a fresh one-thread process that loads the codec and encodes
    ``signal`` [N] (float32, read from disk) as a user does: ``tok.encode(Audio)``, ids out."""
    out = audio_probe("memory", cand, signal, levels, workdir)
    return {"tokenizer": cand.name, "path": "`tok.encode(Audio)`",
            "input": f"{len(signal) / AUDIO_RATE / 60:g} min mono {AUDIO_RATE} Hz",
            "input samples (MiB)": len(signal) * 4 / 2 ** 20, "peak RSS before encoding (MiB)": out["before"] / 2 ** 20,
            "peak RSS (MiB)": out["peak"] / 2 ** 20, "wall s": out["wall"], "tokens": out["tokens"]}


# ------------------------------------------------------------------------------------------------
# audio: the benchmark


@dataclass
class AudioReport:
    candidates: list[AudioCandidate]
    clips: list[Clip]
    runs: list[AudioRun]              # every tokenizer at every rate it serves, then Opus at every rate
    throughput: list[dict]
    memory: list[dict]
    opus_version: str = "libopus"
    skipped: list[str] = field(default_factory=list)   # rates a tokenizer cannot serve

    @property
    def categories(self) -> list[str]:
        return list(dict.fromkeys(c.category for c in self.clips))

    def indices(self, category: str) -> np.ndarray:
        return np.array([i for i, c in enumerate(self.clips) if c.category == category], dtype=int)

    def seconds(self, category: str) -> float:
        return sum(self.clips[i].seconds for i in self.indices(category))


def run_audio(candidates: Sequence[AudioCandidate], clips: Sequence[Clip], *, kbps: Sequence[float] = AUDIO_KBPS,
              opus_kbps: Sequence[float] | None = None, devices: Sequence[str] | None = None,
              threads: Sequence[int] = (1, 2), repeat: int = 3, rtf_seconds: float = 60.0,
              memory_minutes: float = 60.0, progress: bool = True) -> AudioReport:
    """The whole audio benchmark, in memory (temporary Opus files aside).

    Args:
        candidates: audio tokenizers under test.
        clips: held-out clips (``load_audio_heldout``).
        kbps: target rates; each tokenizer runs at the most levels within each (``levels_for``).
        opus_kbps: Opus targets (default: ``kbps``; more points only add to the plot's curve).
        devices: throughput devices (default: cpu, and cuda when available).
        threads: CPU thread counts for the throughput rows.
        repeat / rtf_seconds: timed rounds, and the length of the timed signal.
        memory_minutes: length of the input for the peak-memory probe (0: skip it).
    """
    kbps = sorted(set(kbps))
    opus_kbps = sorted(set(kbps if opus_kbps is None else opus_kbps))
    devices = list(devices) if devices is not None else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    mels = metrics.MelSpectrograms(AUDIO_RATE)
    runs, skipped = [], []
    for cand in candidates:
        for target in kbps:
            levels = levels_for(cand.codec, target)
            if levels is None:
                skipped.append(f"{cand.name} cannot code at {target:g} kbps (its lowest rate is "
                               f"{min(cand.codec.bitrates.values()):g} kbps)")
                continue
            runs.append(run_audio_codec(cand, clips, target, levels, mels, progress=progress))
    throughput, memory = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runs += [run_opus(clips, target, mels, work, progress=progress) for target in opus_kbps]
        for cand in candidates:
            top = max((r.levels for r in runs if r.codec == cand.name), default=cand.codec.levels)
            signal = audio_signal(clips, rtf_seconds)
            for device in devices:
                # several threads on a shared CPU: also with sleeping idle threads (see the section's text)
                settings = [(t, p) for t in threads for p in ((False, True) if t > 1 else (False,))]
                for t, passive in (settings if device == "cpu" else [(1, False)]):
                    throughput.append(measure_audio_throughput(cand, signal, top, work, device=device, threads=t,
                                                               repeat=repeat, passive=passive))
            if memory_minutes > 0:
                memory.append(measure_encode_memory(cand, audio_signal(clips, memory_minutes * 60), top, work))
    return AudioReport(list(candidates), list(clips), runs, throughput, memory, libopus_version(), skipped)


# ------------------------------------------------------------------------------------------------
# audio: markdown


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def audio_rows(report: AudioReport, category: str) -> list[dict]:
    """One row per run for the clips of ``category``: rates summed over the clips, metrics
    averaged over the clips where they are defined; rows ordered by target rate."""
    idx, seconds = report.indices(category), report.seconds(category)
    rows = []
    for run in sorted(report.runs, key=lambda r: (r.target_kbps, r.codec == OPUS)):
        row = {"codec": run.label, "target kbps": run.target_kbps, "kbps": run.bits[idx].sum() / seconds / 1000,
               "tokens/s": run.tokens[idx].sum() / seconds if run.tokens is not None else None,
               "file kbps": run.file_bits[idx].sum() / seconds / 1000 if run.file_bits is not None else None,
               "run": run}
        for key, title in AUDIO_METRICS.items():
            row[title] = _mean(run.scores[key][idx])
            row[f"{key} scored"] = int(np.isfinite(run.scores[key][idx]).sum())
        rows.append(row)
    return rows


def _audio_cell(col: str, row: dict) -> str:
    v = row.get(col)
    if isinstance(v, str) or col == "threads":
        return str(v)
    if col == "target kbps":
        return f"{v:g}"
    if col == "tokens/s":
        return "-" if v is None else f"{v:.1f}"
    if col.endswith("(MiB)"):
        return f"{v:.0f}"
    if col in ("kbps", "Opus kbps", "mel distance", "STOI") or col.endswith("@ same kbps"):
        return _fmt(v, 3)
    if col in ("SI-SDR (dB)", "PESQ (WB)"):
        return _fmt(v, 2)
    return _fmt(v, 1)


def versus_opus_rows(report: AudioReport, category: str) -> list[dict]:
    """Each tokenizer run against Opus asked for the same target rate (where Opus ran at it), and
    against Opus's curve over all its targets interpolated at the tokenizer's measured kbps
    (linear in kbps, never extrapolated: None outside the kbps Opus really spent)."""
    rows = audio_rows(report, category)
    opus_rows = [r for r in rows if r["run"].codec == OPUS]
    opus = {r["target kbps"]: r for r in opus_rows}
    out = []
    for row in rows:
        o = opus.get(row["target kbps"])
        if row["run"].codec == OPUS or o is None:
            continue
        line = {"tokenizer": row["codec"], "target kbps": row["target kbps"], "kbps": row["kbps"],
                "Opus kbps": o["kbps"]}
        for title in ("mel distance", "STOI"):
            ours, theirs = row[title], o[title]
            line[title] = f"{_fmt(ours, 3)} / {_fmt(theirs, 3)}"
            if ours is None or theirs is None:
                line[f"{title} winner"] = "n/a"
            else:
                better = ours < theirs if title == "mel distance" else ours > theirs
                line[f"{title} winner"] = "tokenizer" if better else ("tie" if ours == theirs else OPUS)
            curve = [r for r in opus_rows if r[title] is not None]
            line[f"Opus {title} @ same kbps"] = interpolate(np.array([r["kbps"] for r in curve]),
                                                           np.array([r[title] for r in curve]), row["kbps"])
        out.append(line)
    return out


VERSUS_COLUMNS = ("tokenizer", "target kbps", "kbps", "Opus kbps", "mel distance", "mel distance winner",
                  "Opus mel distance @ same kbps", "STOI", "STOI winner", "Opus STOI @ same kbps")


def audio_usage_lines(report: AudioReport) -> list[str]:
    """Codebook usage per level of each tokenizer's highest-rate run, per category."""
    lines = []
    for cand in report.candidates:
        mine = [r for r in report.runs if r.codec == cand.name]
        if not mine:
            continue
        top = max(mine, key=lambda r: r.levels)
        for cat, usage in top.usage.items():
            levels = ", ".join(f"L{lv} {u}/{s} ({100 * u / s:.1f}%)" for lv, u, s in usage)
            tokens = int(top.tokens[report.indices(cat)].sum())
            lines.append(f"- {cand.name}, {cat}, {top.levels} levels: {levels}; {tokens} code tokens seen")
    return lines


def acceptance_lines(report: AudioReport, *, target: float = 6.0, speed: float = 20.0,
                     memory_gib: float = 2.0) -> list[str]:
    """Issue 4's acceptance criteria, each with the measured numbers (a reading aid, no verdict
    beyond the arithmetic)."""
    lines = []
    for cat in report.categories:
        for row in versus_opus_rows(report, cat):
            if row["target kbps"] != target:
                continue
            need = "beats" if cat == "speech" else "is not worse than"
            wins = [row["mel distance winner"], row["STOI winner"]]
            good = ("tokenizer",) if cat == "speech" else ("tokenizer", "tie")
            ok = all(w in good for w in wins)
            lines.append(f"- {row['tokenizer']} {need} Opus at {target:g} kbps on {cat} (mel distance, STOI): "
                         f"{'yes' if ok else 'no'} (mel {row['mel distance']}, STOI {row['STOI']}; tokenizer / Opus)")
    for row in report.throughput:
        if row["device"] == "cpu":
            v = row["encode+decode x real time"]
            lines.append(f"- {row['tokenizer']} encode + decode at least {speed:g}x real time on the CPU (threads: "
                         f"{row['threads']}): {'yes' if v >= speed else 'no'} ({v:.1f}x)")
    for row in report.memory:
        v = row["peak RSS (MiB)"]
        lines.append(f"- {row['tokenizer']} encodes {row['input']} through {row['path']} with peak memory under "
                     f"{memory_gib:g} GiB: {'yes' if v < memory_gib * 1024 else 'no'} ({v:.0f} MiB)")
    return lines


def render_audio_section(report: AudioReport, *, command: str, heldout: str, rerun: str,
                         plots: dict[str, Path] | None = None, results_dir: Path = RESULTS.parent,
                         notes: Sequence[str] = ()) -> str:
    cats = report.categories
    counts = "; ".join(f"{c}: {len(report.indices(c))} clips, {report.seconds(c):.1f} s" for c in cats)
    opus_rows = [r for c in cats for r in audio_rows(report, c) if r["run"].codec == OPUS]
    overhead = max((r["file kbps"] - r["kbps"] for r in opus_rows), default=0.0)
    body = [
        f"- Machine: {machine_description()}; torch {torch.__version__}, torch threads: {torch.get_num_threads()}"
        + (f"; GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "; no GPU"),
        f"- Date: {_dt.date.today().isoformat()}",
        f"- Command: `{command}`",
        f"- Held-out set: {heldout} ({counts})",
        "- kbps of a tokenizer = code tokens x log2(codebook size) / seconds, summed over the category's clips "
        "(the last frame of a clip is padded, so short clips cost slightly more than the nominal rate; the "
        "segment's 6 structural tokens are not counted). tokens/s = code tokens per second of audio. Opus: "
        f"{report.opus_version} through PyAV (`Audio.save` to Ogg Opus at 24 kHz with the target bit rate, "
        "default VBR, application `audio`; decoded with `Audio.open`, resampled from 48 kHz); its kbps is "
        "the sum of its packet sizes (what the encoder really spent: libopus does not go below its own "
        f"floor whatever it is asked); the Ogg file adds at most {overhead:.2f} kbps of pages and headers "
        "on these clips. Opus output is aligned by its container (pre-skip and end trim), checked in the tests.",
        "- Metrics at 24 kHz, mean over clips (`unitok.metrics`): SI-SDR (dB, higher is better), mel distance "
        "(multi-resolution log-mel L1, windows 64..2048, lower is better; the training recipe's validation "
        f"metric), STOI (pystoi, 0..1) and wideband PESQ (pesq, P.862.2, 1..4.6) over the clips where they are "
        "defined: STOI needs about 0.4 s of non-silent speech and PESQ finds no utterance in some clips, so a "
        "few short clips are left out of those two columns (counts below). STOI and PESQ are speech measures; "
        "on music they are indicative only.",
        *[f"- {n}" for n in notes],
        "",
        "Tokenizers:",
        "",
        *[f"- **{c.name}** (`{_rel(c.folder)}`): {c.description}" for c in report.candidates],
        *[f"- {s}" for s in report.skipped],
    ]
    for cat in cats:
        rows = audio_rows(report, cat)
        body += ["", f"### {cat[0].upper() + cat[1:]} ({len(report.indices(cat))} clips, "
                     f"{report.seconds(cat):.1f} s)", "",
                 markdown_table(AUDIO_QUALITY_COLUMNS, rows, _audio_cell, AUDIO_TEXT_COLUMNS)]
        n = len(report.indices(cat))
        gaps = sorted({f"STOI on {r['stoi scored']}/{n}" for r in rows if r["stoi scored"] < n}
                      | {f"PESQ on {r['pesq scored']}/{n}" for r in rows if r["pesq scored"] < n})
        if gaps:
            body += ["", f"Scored clips where fewer than all: {', '.join(gaps)} (the same clips for every codec "
                         "where the reference decides; a silent reconstruction also has no PESQ)."]
    body += ["", "### Against Opus at the same target rate", "",
             "mel distance and STOI as tokenizer / Opus asked for the same target; the winner is the better of the "
             "two (lower mel distance, higher STOI). Opus spends more than asked at low targets (its kbps column), "
             "which favours it, so \"@ same kbps\" also gives Opus's numbers interpolated linearly along all its "
             "points at the kbps the tokenizer really spent (n/a outside the range Opus reached). The mel "
             "distance weighs every mel band alike on a log scale, so a codec that drops the upper bands (libopus "
             "narrows its audio bandwidth at low rates) pays for it there more than in STOI or PESQ.", ""]
    for cat in cats:
        body += [f"{cat[0].upper() + cat[1:]}:", "", markdown_table(VERSUS_COLUMNS, versus_opus_rows(report, cat),
                                                                    _audio_cell, AUDIO_TEXT_COLUMNS), ""]
    body += ["Codebook usage per level (codes used at least once / codebook size, at each tokenizer's highest "
             "rate):", "", *audio_usage_lines(report)]
    if plots and "rd" in plots:
        body += ["", f"![rate-quality: mel distance and STOI vs kbps]({_rel_to(plots['rd'], results_dir)})"]
    seconds = report.throughput[0]["audio s"] if report.throughput else 0
    body += ["", "### Throughput", "",
             "The codec's batched `encode` (wav [1, 1, N] -> codes) and `decode` (codes -> wav) of one "
             f"{seconds:.0f} s signal of held-out audio at the highest rate measured, in a fresh process started "
             "with `OMP_NUM_THREADS` = threads; x real time = seconds of audio per second of wall time (higher "
             "is faster; a real-time factor of 0.05 is 20x). Best of the timed rounds after a warm-up. Load "
             "average: the machine's 1-minute load average when the row was measured; above its "
             f"{len(os.sched_getaffinity(0))} cores the CPU was shared with other work, so the row is a lower "
             "bound. With more threads than free cores, OpenMP's idle threads spin by default and steal the "
             "cores the working threads need; \"passive wait\" rows set `OMP_WAIT_POLICY=PASSIVE`, which makes "
             "them sleep instead (what to use on a shared machine).", "",
             markdown_table(AUDIO_THROUGHPUT_COLUMNS, report.throughput, _audio_cell, AUDIO_TEXT_COLUMNS)]
    if report.memory:
        body += ["", "### Peak memory of a long input", "",
                 "A fresh one-thread process loads the codec, reads the held-out clips concatenated and repeated "
                 "to the length shown (float32 samples, as `Audio` holds them) and encodes them with "
                 "`tok.encode(Audio)`; peak RSS is the process's high-water mark (`VmHWM`), everything included "
                 "(Python, torch, the model, the input samples themselves); the column before it is the same "
                 "mark just before encoding starts.", "",
                 markdown_table(AUDIO_MEMORY_COLUMNS, report.memory, _audio_cell, AUDIO_TEXT_COLUMNS)]
    body += ["", "### Issue 4 acceptance, as measured", "", *acceptance_lines(report), "",
             f"To rerun with another audio tokenizer folder (e.g. the retrained model): `{rerun}`"]
    return "\n".join(body)


# ------------------------------------------------------------------------------------------------
# audio: plot


def plot_audio_rd(report: AudioReport, path: Path) -> Path | None:
    """Mel distance and STOI against kbps, one column per category: each tokenizer's rates as a
    line, Opus's as another."""
    plt = _pyplot(warn=True)
    if plt is None:
        return None
    cats = report.categories
    fig, axes = plt.subplots(2, len(cats), figsize=(5.2 * len(cats), 7.4), dpi=100, squeeze=False)
    for col, cat in enumerate(cats):
        rows = audio_rows(report, cat)
        series: dict[str, list[dict]] = {}
        for row in rows:
            series.setdefault(row["run"].codec, []).append(row)
        for k, (name, pts) in enumerate(series.items()):
            style = dict(color="black", marker="s", ls="--") if name == OPUS else dict(
                color=plt.cm.tab10(k % 10), marker="o", ls="-")
            for ax, title in zip(axes[:, col], ("mel distance", "STOI")):
                xs = [p["kbps"] for p in pts if p[title] is not None]
                ys = [p[title] for p in pts if p[title] is not None]
                ax.plot(xs, ys, label=name, ms=6, **style)
                if name == OPUS:     # one label per point: libopus lands several low targets on one rate
                    asked: dict[tuple[float, float], list[str]] = {}
                    for p in pts:
                        if p[title] is not None:
                            asked.setdefault((p["kbps"], p[title]), []).append(f"{p['target kbps']:g}")
                    for xy, targets in asked.items():
                        ax.annotate(f"asked {', '.join(targets)}", xy, fontsize=6, textcoords="offset points",
                                    xytext=(4, 4))
        for ax, title in zip(axes[:, col], ("mel distance (lower is better)", "STOI (higher is better)")):
            ax.set_xlabel("kbps (measured)")
            ax.set_ylabel(title)
            ax.set_title(f"held-out {cat}")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
    return _save_figure(plt, fig, path)


# ------------------------------------------------------------------------------------------------
# audio: command line


def audio_heldout_description(folder: Path, clips: Sequence[Clip], segments: int, segment_seconds: float) -> str:
    parts = [_rel(folder)]
    cut = sorted({c.name.split("@")[0] for c in clips if "@" in c.name})
    if cut:
        parts.append(f"files longer than {segment_seconds:g} s ({', '.join(cut)}) are cut into {segments} windows "
                     f"of {segment_seconds:g} s spread evenly over the file")
    if (folder.parent / "split.json").exists():
        parts.append(f"the split in {_rel(folder.parent / 'split.json')} holds out whole speech languages (unseen "
                     "voices) and whole music tracks, so none of this audio was seen in training")
    return "; ".join(parts)


def bench_audio(args: argparse.Namespace) -> tuple[Section, dict[str, Path]]:
    try:
        candidates = load_audio_candidates(args.suite, args.checkpoint or [], use_suite=not args.no_suite)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    missing = speech_metrics_missing()
    if missing:
        print(f"warning: {', '.join(missing)} not installed: STOI / PESQ columns will be n/a "
              f"(pip install 'unitok[bench]')", file=sys.stderr)
    clips = load_audio_heldout(args.heldout, args.categories, limit=args.limit, segments=args.segments,
                               segment_seconds=args.segment_seconds)
    for c in candidates:
        print(f"[{c.name}] {c.description}")
    print(f"held-out: {len(clips)} clips from {args.heldout}")
    opus = sorted(set(args.kbps) | set(args.opus_extra_kbps or ()))
    report = run_audio(candidates, clips, kbps=args.kbps, opus_kbps=opus, threads=args.threads,
                       repeat=args.repeat, rtf_seconds=args.rtf_seconds, memory_minutes=args.memory_minutes)
    plots = {}
    if not args.no_write and (p := plot_audio_rd(report, args.plots / "audio_rd.png")) is not None:
        plots["rd"] = p
    rerun = ("OMP_NUM_THREADS=1 python benchmarks/reconstruction.py --modality audio --no-suite "
             "--checkpoint DIR")
    body = render_audio_section(report, command=command_line(), rerun=rerun, plots=plots,
                                results_dir=args.results.parent,
                                heldout=audio_heldout_description(args.heldout, clips, args.segments,
                                                                  args.segment_seconds),
                                notes=args.note or ())
    print(f"\nrerun with the retrained model: {rerun}\n(or, once it is bundled in unitok/assets/audio: "
          f"OMP_NUM_THREADS=1 python benchmarks/reconstruction.py --modality audio)")
    return Section("Audio reconstruction", body), plots


# ================================================================================================
# video (``--modality video``): everything from here to the registry serves the video mode only


VIDEO_HELDOUT = ROOT / "data" / "video" / "heldout_256.npy"
#: pan-and-zoom clips are made from photos and have no rate of their own; they are read at this one
VIDEO_DEFAULT_FPS = Fraction(25)
VIDEO_GROUPS = ("pan-and-zoom", "real camera", "animation")     # reported in this order, after "all"
#: anchor targets: the tokenizer's own bpp, then higher rates for the rate-distortion plot
VIDEO_RATE_MULTIPLES = (1.0, 2.0, 4.0)
VIDEO_RATE_TOLERANCE = 0.02       # the anchors' rate search stops within 2% of the target bpp
VIDEO_SEARCH_ENCODES = 8          # ... or after this many encodes of a clip, keeping the closest
VIDEO_QUALITY_COLUMNS = ("group", "codec", "bpp", "tokens/s", "PSNR", "PSNR frame 0", "PSNR frames 1+", "SSIM",
                         "temporal PSNR")
VIDEO_THROUGHPUT_COLUMNS = ("tokenizer", "device", "threads", "load average", "clip", "encode frames/s",
                            "decode frames/s", "encode+decode frames/s")
VIDEO_TEXT_COLUMNS = ("group", "codec", "tokenizer", "device", "threads", "clip", "setting", "within 2%")


@dataclass
class VideoClip:
    """One held-out clip under test."""

    name: str             # source and region, e.g. "bikes@176+173" or "photo:plasma/Altai#23"
    group: str            # one of ``VIDEO_GROUPS`` ("clips" when split.json does not say)
    frames: torch.Tensor  # [T, 3, H, W] uint8 RGB
    fps: Fraction

    @property
    def pixels(self) -> int:
        T, _, H, W = self.frames.shape
        return T * H * W

    @property
    def seconds(self) -> float:
        return float(self.frames.shape[0] / self.fps)


def clip_group(meta: dict) -> str:
    """The report group of a held-out clip from its split.json entry."""
    if not meta:
        return "clips"
    if meta.get("kind") == "pan_zoom":
        return "pan-and-zoom"
    return "animation" if meta.get("source") == "bigbuckbunny" else "real camera"


def clip_groups(clips: Sequence["VideoClip"]) -> list[str]:
    """The groups present among ``clips``, in ``VIDEO_GROUPS`` order, then any others."""
    present = list(dict.fromkeys(c.group for c in clips))
    return [g for g in VIDEO_GROUPS if g in present] + [g for g in present if g not in VIDEO_GROUPS]


def load_video_heldout(path: Path, limit: int | None = None) -> list[VideoClip]:
    """The clips of ``path`` (uint8 [N, T, H, W, 3], ``recipes/data/fetch_video.py``), each with
    the source, group and frame rate that ``split.json`` beside it records. ``limit``: that many
    clips evenly spaced over the file, so every group keeps its share."""
    if not path.is_file():
        sys.exit(f"no held-out clips at {path}. Fetch them first:\n    python recipes/data/fetch_video.py\n"
                 f"then rerun (or pass --heldout FILE.npy with uint8 [N, T, H, W, 3] clips never seen in training).")
    array = np.load(path, mmap_mode="r")
    if array.ndim != 5 or array.shape[-1] != 3 or array.dtype != np.uint8:
        sys.exit(f"{path}: expected uint8 clips [N, T, H, W, 3], got {array.dtype} {array.shape}")
    split = path.parent / "split.json"
    meta = json.loads(split.read_text()) if split.exists() else {}
    entries = meta.get("heldout") or [{}] * len(array)
    if len(entries) != len(array):
        sys.exit(f"{split} lists {len(entries)} held-out clips, {path} holds {len(array)}; refetch them together")
    rates = {name: Fraction(src["fps"]) for name, src in meta.get("real_sources", {}).items()}
    picks = range(len(array)) if not limit else np.unique(np.linspace(0, len(array) - 1, min(limit, len(array)))
                                                         .round().astype(int))
    clips = []
    for i in picks:
        m = entries[i]
        source = m.get("source", path.stem)
        name = f"{source}@{m['first_frame']}+{m['left']}" if "first_frame" in m else f"{source}#{i}"
        frames = torch.from_numpy(np.array(array[i])).permute(0, 3, 1, 2).contiguous()
        clips.append(VideoClip(name, clip_group(m), frames, rates.get(source, VIDEO_DEFAULT_FPS)))
    return clips


def video_scores(ref: torch.Tensor, rec: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-frame PSNR and SSIM ([T] each) and the PSNR of frame differences ([T - 1]: x[t] - x[t-1]
    of the original against the same of the reconstruction, peak 1 as for pixels), PSNR capped at
    ``PSNR_CAP``. ref, rec: uint8 [T, 3, H, W]."""
    if rec.shape != ref.shape:
        raise MediaError(f"reconstruction has shape {tuple(rec.shape)}, the original {tuple(ref.shape)}")
    x, y = ref.float() / 255, rec.float() / 255
    dx, dy = x[1:] - x[:-1], y[1:] - y[:-1]
    temporal = metrics.psnr(dx, dy) if len(dx) else torch.zeros(0)
    return {"psnr": metrics.psnr(x, y).clamp(max=PSNR_CAP).numpy(), "ssim": metrics.ssim(x, y).numpy(),
            "tpsnr": temporal.clamp(max=PSNR_CAP).numpy()}


@dataclass
class VideoCandidate:
    """A video tokenizer under test, in a suite of its own (the bundled text vocabulary and it),
    and the folder it came from (the speed probe loads it again in a fresh process)."""

    name: str
    tok: UniTokenizer
    folder: Path
    description: str = ""

    @property
    def codec(self):
        return self.tok.media["video"]


def describe_video_codec(codec) -> str:
    sizes = codec.codebook_sizes
    params = sum(p.numel() for p in codec.parameters())
    dtype = str(next(codec.parameters()).dtype).replace("torch.", "")
    scales = codec.scales(256, 256)
    per_frame = sum(h * w for h, w in scales)
    return (f"type `{getattr(codec, 'checkpoint_type', type(codec).__name__)}`, stride {codec.downsample}, temporal "
            f"{codec.temporal} (frame 0 alone, then chunks of {codec.temporal}), {len(scales)} scales per latent "
            f"frame ({per_frame} tokens at 256x256), {'/'.join(map(str, sizes))} codes "
            f"({math.log2(sizes[0]):.4g} bits), {params / 1e6:.2f}M parameters ({dtype} in memory)")


def load_video_candidates(suite: Path | None, checkpoints: Sequence[Path], *, use_suite: bool = True,
                          device: str = "cpu") -> list[VideoCandidate]:
    """The suite's video tokenizer (``<suite>/video``; the bundled one when ``suite`` is None) and
    one candidate per bare video-tokenizer folder in ``checkpoints``."""
    from unitok import checkpoint

    text = unitok.text.load_default()
    out = []
    for name, folder in candidate_folders("video", suite, checkpoints, use_suite=use_suite):
        codec = checkpoint.load_pretrained(folder, device=device)
        if getattr(codec, "modality", None) != "video":
            raise ConfigError(f"{folder}: is a {getattr(codec, 'modality', type(codec).__name__)} tokenizer, "
                              f"not a video tokenizer")
        codec.eval()
        out.append(VideoCandidate(name, UniTokenizer(text, {"video": codec}), Path(folder),
                                  describe_video_codec(codec)))
    if len({c.name for c in out}) != len(out):
        raise ConfigError(f"the same tokenizer is listed twice: {[c.name for c in out]}")
    return out


@dataclass
class VideoRun:
    """One codec over every clip (arrays in clip order): a tokenizer at its own rate, or an
    anchor at a target rate."""

    codec: str                     # the tokenizer's name, or the anchor's ("H.264", "AV1")
    target: float | None           # anchors: the bpp searched for; None for a tokenizer
    bits: np.ndarray               # [N] code bits (anchors: bitstream bytes * 8)
    psnr: np.ndarray               # [N, T]
    ssim: np.ndarray               # [N, T]
    tpsnr: np.ndarray              # [N, T - 1]
    tokens: np.ndarray | None = None       # [N] code tokens (tokenizers)
    structural: np.ndarray | None = None   # [N] the segment's other tokens (tokenizers)
    setting: np.ndarray | None = None      # [N] anchors: the CRF the search kept
    encodes: np.ndarray | None = None      # [N] anchors: encodes the search spent
    kept: dict[int, torch.Tensor] = field(default_factory=dict)   # clip index -> reconstruction (grid)


def _stack_scores(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([r[k] for r in rows]) for k in ("psnr", "ssim", "tpsnr")}


def run_video_tokenizer(cand: VideoCandidate, clips: Sequence[VideoClip], *, keep: Sequence[int] = (),
                        progress: bool = True) -> VideoRun:
    """Every clip through ``tok.encode(Video)`` -> ids -> ``tok.decode`` -> ``Video``, as a user
    calls them; the rate is counted on the ids emitted."""
    tok = cand.tok
    bits, tokens, structural, rows, kept = [], [], [], [], {}
    with torch.inference_mode():
        for i, clip in enumerate(_progress_clips(clips, cand.name, progress)):
            seq = tok.encode(Video(clip.frames, clip.fps))
            span = next(s for s in seq.spans if s.modality == "video")
            ids = seq.ids[span.start:span.stop]
            levels, _ = tok.space.media_codes("video", ids)
            codes = ids[levels >= 0]
            rec = tok.decode(seq)[0].frames
            bits.append(tok.space.bits_of(codes))
            tokens.append(len(codes))
            structural.append(len(ids) - len(codes))
            rows.append(video_scores(clip.frames, rec))
            if i in keep:
                kept[i] = rec
    return VideoRun(cand.name, None, np.array(bits, dtype=np.float64), **_stack_scores(rows),
                    tokens=np.array(tokens, dtype=np.float64), structural=np.array(structural, dtype=np.float64),
                    kept=kept)


# ------------------------------------------------------------------------------------------------
# video: the classic codecs (PyAV)


@dataclass(frozen=True)
class VideoAnchor:
    """A classic video codec driven through PyAV at a constant-quality setting.

    The anchors are encoded in memory rather than through ``Video.save``: the rate search needs
    the bitstream's own size (the packets, sequence headers included, no container), fractional
    CRF steps and the encoder's tuning, which a file writer has no business exposing."""

    name: str                       # "H.264", "AV1"
    encoder: str                    # the FFmpeg encoder
    decoders: tuple[str, ...]       # FFmpeg decoders, the first available is used
    low: float                      # the CRF range (low: best quality)
    high: float
    step: float                     # the CRF resolution the encoder honours
    halving: float                  # about how much the CRF rises when the rate halves (search guess)
    start: float                    # where the search starts for a clip
    options: tuple[tuple[str, str], ...] = ()   # fixed encoder options
    param_string: str | None = None  # encoder whose CRF goes in a parameter string (e.g. svtav1-params)

    def options_at(self, crf: float) -> dict[str, str]:
        opts = dict(self.options)
        if self.param_string:
            key, extra = self.param_string.split("=", 1) if "=" in self.param_string else (self.param_string, "")
            opts[key] = f"crf={crf:g}" + (f":{extra}" if extra else "")
        else:
            opts["crf"] = f"{crf:g}"
        return opts


#: per codec name, the encoders in order of preference. x264 is tuned for PSNR (no psycho-visual
#: optimisation), as SVT-AV1 is by default: PSNR is the acceptance metric. One thread each keeps
#: the bitstreams deterministic and leaves the CPU to the tokenizer.
VIDEO_ANCHORS: dict[str, tuple[VideoAnchor, ...]] = {
    "H.264": (VideoAnchor("H.264", "libx264", ("h264",), 0, 51, 0.01, 6, 32,
                          (("preset", "medium"), ("tune", "psnr"))),),
    "AV1": (VideoAnchor("AV1", "libsvtav1", ("libdav1d", "av1", "libaom-av1"), 1, 63, 0.25, 12, 45,
                        (("preset", "8"),), "svtav1-params=lp=1"),
            VideoAnchor("AV1", "libaom-av1", ("libdav1d", "libaom-av1", "av1"), 0, 63, 1, 10, 40,
                        (("cpu-used", "6"), ("row-mt", "0"))),),
}


def video_anchors(names: Sequence[str] = tuple(VIDEO_ANCHORS)) -> tuple[list[VideoAnchor], list[str]]:
    """(the first available encoder of each codec in ``names``, a note per codec that has none)."""
    import av

    available = av.codecs_available
    found, missing = [], []
    for name in names:
        pick = next((a for a in VIDEO_ANCHORS[name] if a.encoder in available
                     and any(d in available for d in a.decoders)), None)
        if pick is None:
            missing.append(f"{name}: none of {', '.join(a.encoder for a in VIDEO_ANCHORS[name])} is in this "
                           f"PyAV build, so there is no {name} anchor")
        else:
            found.append(pick)
    return found, missing


def _yuv420_frames(clip: VideoClip) -> list:
    """The clip as PyAV yuv420p frames (what every anchor encodes: 4:2:0, BT.601, limited range)."""
    import av

    hwc = clip.frames.permute(0, 2, 3, 1).numpy()
    return [av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24").reformat(format="yuv420p")
            for f in hwc]


def _rgb(frames) -> torch.Tensor:
    """PyAV frames -> uint8 [T, 3, H, W]."""
    return torch.from_numpy(np.stack([f.to_ndarray(format="rgb24") for f in frames])).permute(0, 3, 1, 2).contiguous()


@dataclass
class Bitstream:
    packets: list[bytes]
    extradata: bytes

    @property
    def size(self) -> int:
        """Bytes a decoder needs: the packets plus out-of-band headers (none for these encoders
        without a container's global-header flag)."""
        return sum(map(len, self.packets)) + len(self.extradata)


def anchor_encode(anchor: VideoAnchor, frames: Sequence, fps: Fraction, crf: float) -> Bitstream:
    """Encode yuv420p PyAV frames (``_yuv420_frames``) at ``crf``."""
    import av

    os.environ.setdefault("SVT_LOG", "1")      # SVT-AV1 prints its whole config per encoder otherwise
    ctx = av.CodecContext.create(anchor.encoder, "w")
    ctx.width, ctx.height = frames[0].width, frames[0].height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = 1 / fps
    ctx.framerate = fps
    ctx.thread_count = 1
    ctx.options = anchor.options_at(crf)
    packets = []
    for i, frame in enumerate(frames):
        frame.pts = i
        packets += [bytes(p) for p in ctx.encode(frame)]
    packets += [bytes(p) for p in ctx.encode(None)]
    return Bitstream(packets, bytes(ctx.extradata or b""))


def anchor_decode(anchor: VideoAnchor, stream: Bitstream) -> torch.Tensor:
    """Bitstream -> uint8 [T, 3, H, W] RGB (the decoder converts back from yuv420p, BT.601)."""
    import av

    name = next(d for d in anchor.decoders if d in av.codecs_available)
    ctx = av.CodecContext.create(name, "r")
    if stream.extradata:
        ctx.extradata = stream.extradata
    frames = []
    for data in stream.packets:
        frames += ctx.decode(av.Packet(data))
    frames += ctx.decode(None)
    return _rgb(frames)


def search_crf(anchor: VideoAnchor, frames: Sequence, fps: Fraction, pixels: int, target: float, start: float, *,
               tolerance: float = VIDEO_RATE_TOLERANCE, budget: int = VIDEO_SEARCH_ENCODES
               ) -> tuple[float, Bitstream, int]:
    """The CRF whose bitstream comes closest to ``target`` bits per pixel: a secant search on
    log(bpp) against CRF, bracketing the target once both sides are seen; it stops within
    ``tolerance``, at neighbouring CRF steps, at the end of the range, or after ``budget`` encodes.
    Returns (crf, its bitstream, encodes spent)."""
    tried: dict[float, Bitstream] = {}

    def bpp(q: float) -> float:
        return tried[q].size * 8 / pixels

    def encode(q: float) -> float:
        q = min(max(round(q / anchor.step) * anchor.step, anchor.low), anchor.high)
        q = round(q, 4)
        if q not in tried:
            tried[q] = anchor_encode(anchor, frames, fps, q)
        return q

    q = encode(start)
    for _ in range(budget - 1):
        if abs(math.log(bpp(q) / target)) <= math.log1p(tolerance):
            break
        over = [k for k in tried if bpp(k) > target]      # too many bits: a higher CRF is needed
        under = [k for k in tried if bpp(k) <= target]
        if over and under:
            a, b = max(over), min(under)
            if b - a <= anchor.step + 1e-9:
                break                                     # neighbouring settings: as close as it gets
            la, lb = math.log(bpp(a)), math.log(bpp(b))
            guess = a + (la - math.log(target)) / (la - lb) * (b - a)
            guess = min(max(guess, a + anchor.step), b - anchor.step)
        else:
            ref = max(over) if over else min(under)
            guess = ref + anchor.halving * math.log2(bpp(ref) / target)
        n = len(tried)
        q = encode(guess)
        if len(tried) == n:
            break                                         # the range's end: nothing new to try
    best = min(tried, key=lambda k: abs(math.log(bpp(k) / target)))
    return best, tried[best], len(tried)


def run_video_anchor(anchor: VideoAnchor, clips: Sequence[VideoClip], targets: Sequence[float], *,
                     keep: Sequence[int] = (), progress: bool = True) -> list[VideoRun]:
    """``anchor`` at each target bpp (ascending) on every clip: one CRF search per clip and
    target (each target starting from the CRF the one before it found), then the kept bitstream
    decoded and scored. Returns one run per target."""
    targets = sorted(targets)
    cols = {t: {"bits": [], "rows": [], "crf": [], "encodes": [], "kept": {}} for t in targets}
    for i, clip in enumerate(_progress_clips(clips, anchor.name, progress)):
        frames = _yuv420_frames(clip)
        start = anchor.start
        for t in targets:
            crf, stream, spent = search_crf(anchor, frames, clip.fps, clip.pixels, t, start)
            rec = anchor_decode(anchor, stream)
            c = cols[t]
            c["bits"].append(stream.size * 8)
            c["rows"].append(video_scores(clip.frames, rec))
            c["crf"].append(crf)
            c["encodes"].append(spent)
            if i in keep:
                c["kept"][i] = rec
            start = crf - anchor.halving       # the next target is higher: a lower CRF
    return [VideoRun(anchor.name, t, np.array(c["bits"], dtype=np.float64), **_stack_scores(c["rows"]),
                     setting=np.array(c["crf"]), encodes=np.array(c["encodes"]), kept=c["kept"])
            for t, c in cols.items()]


def yuv420_ceiling(clips: Sequence[VideoClip]) -> np.ndarray:
    """[N] mean per-frame PSNR of RGB -> yuv420p -> RGB with no coding at all: the most any
    anchor can reach on each clip."""
    return np.array([video_scores(c.frames, _rgb(_yuv420_frames(c)))["psnr"].mean() for c in clips])


def anchor_versions() -> str:
    """The anchor libraries' versions as PyAV reports them (FFmpeg's, and x264's build)."""
    import av

    parts = [f"PyAV {av.__version__}"]
    ffmpeg = getattr(av, "ffmpeg_version_info", None)
    if ffmpeg:
        parts.append(f"FFmpeg {ffmpeg}")
    return ", ".join(parts)


# ------------------------------------------------------------------------------------------------
# video: speed, and image / video agreement


#: run in a fresh interpreter by ``video_probe``: argv = codec folder, clip.npy (uint8 [T, 3, H, W]),
#: threads, device, repeat; prints one JSON line
_VIDEO_PROBE = r"""
import json, os, sys
import numpy as np, torch
folder, clip, threads, device, repeat = sys.argv[1:6]
torch.set_num_threads(int(threads))
from unitok.checkpoint import load_pretrained
sys.path.insert(0, os.environ["UNITOK_BENCHMARKS"])
from throughput import interleaved_best

codec = load_pretrained(folder, device=device).eval()
frames = torch.from_numpy(np.load(clip))
T, H, W = frames.shape[0], frames.shape[2], frames.shape[3]
x = frames[None].to(device)
sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
with torch.inference_mode():
    codes = codec.encode(x)
    fns = {"encode": lambda: (codec.encode(x), sync()), "decode": lambda: (codec.decode(codes, T, (H, W)), sync())}
    out = {"threads": torch.get_num_threads(), "load": os.getloadavg()[0], **interleaved_best(fns, int(repeat))}
print(json.dumps(out))
"""


def measure_video_throughput(cand: VideoCandidate, clip: VideoClip, workdir: Path, *, device: str = "cpu",
                             threads: int = 1, repeat: int = 3) -> dict:
    """Frames/s of the codec's batched ``encode`` (uint8 [1, T, 3, H, W] -> codes) and ``decode``
    (codes -> frames) of one clip, best of ``repeat`` rounds after a warm-up, the two taking turns,
    in a fresh process started with ``OMP_NUM_THREADS=threads`` (how a user runs with that many)."""
    npy = workdir / "probe_clip.npy"
    np.save(npy, clip.frames.numpy())
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), UNITOK_BENCHMARKS=str(Path(__file__).resolve().parent))
    argv = [str(cand.folder), str(npy), str(threads), device, str(repeat)]
    proc = subprocess.run([sys.executable, "-c", _VIDEO_PROBE, *argv], capture_output=True, text=True, env=env,
                          check=False)
    npy.unlink()
    if proc.returncode != 0:
        raise RuntimeError(f"video speed probe failed:\n{proc.stderr.strip()[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    T, _, H, W = clip.frames.shape
    return {"tokenizer": cand.name, "device": device, "threads": str(out["threads"]) if device == "cpu" else "-",
            "load average": out["load"], "clip": f"{T}x{H}x{W}", "encode frames/s": T / out["encode"],
            "decode frames/s": T / out["decode"], "encode+decode frames/s": T / (out["encode"] + out["decode"])}


def _code_maps(codes) -> list[torch.Tensor]:
    return [c.cpu() for c in codes] if isinstance(codes, (list, tuple)) else [codes.cpu()]


def code_agreement(image, video, pictures: torch.Tensor, batch: int = 8) -> dict[str, float]:
    """How ``video`` codes one-frame videos against how ``image`` codes the same pictures
    ([N, 3, H, W] uint8): pictures whose codes are all equal ("maps"), the fraction of equal codes
    ("codes"), and each model's mean PSNR on the pictures ("image psnr", "video psnr"; outputs
    rounded to uint8)."""
    same_maps, same, total, p_image, p_video = 0, 0, 0, [], []
    H, W = pictures.shape[-2:]
    rounded = lambda y: (y * 255).round() / 255    # noqa: E731  (as a user gets the pixels)
    with torch.inference_mode():
        for start in range(0, len(pictures), batch):
            x = pictures[start:start + batch].float() / 255
            codes_image, codes_video = image.encode(x), video.encode(x[:, None])
            a = _code_maps(codes_image)
            b = [c[:, 0] for c in _code_maps(codes_video)]
            if [t.shape for t in a] != [t.shape for t in b]:
                raise ConfigError("the image and video tokenizers code a frame at different scales")
            eq = [(p == q).flatten(1) for p, q in zip(a, b)]
            same_maps += int(torch.cat(eq, 1).all(1).sum())
            same += sum(int(e.sum()) for e in eq)
            total += sum(e.numel() for e in eq)
            p_image.append(metrics.psnr(x, rounded(image.decode(codes_image, (H, W)).cpu())))
            p_video.append(metrics.psnr(x, rounded(video.decode(codes_video, 1, (H, W))[:, 0].cpu())))
    return {"maps": same_maps, "codes": same / max(total, 1), "image psnr": float(torch.cat(p_image).mean()),
            "video psnr": float(torch.cat(p_video).mean())}


def image_video_agreement(candidates: Sequence[VideoCandidate], clips: Sequence[VideoClip],
                          image_folder: Path) -> list[str]:
    """Issue 5's check that a one-frame video is an image, on the clips' first frames: a model
    inflated from the image tokenizer and not fine-tuned (built here from each candidate's config)
    must give exactly the image codes; a fine-tuned one is measured as it is."""
    from unitok import checkpoint
    from unitok.video import VideoTokenizer

    if not (image_folder / checkpoint.CONFIG_NAME).exists():
        return [f"- not checked: no image tokenizer at {_rel(image_folder)}"]
    image = checkpoint.load_pretrained(image_folder).eval()
    pictures = torch.stack([c.frames[0] for c in clips])
    n = len(pictures)
    where = f"the first frames of the {n} held-out clips ({pictures.shape[-1]}x{pictures.shape[-2]})"
    lines = []
    for cand in candidates:
        cfg = cand.codec.cfg
        temporal = {k: getattr(cfg, k) for k in ("temporal", "temporal_kernel", "temporal_blocks",
                                                 "mid_temporal_blocks", "eof")}
        try:
            inflated = VideoTokenizer.from_image(image, **temporal).eval()
        except ConfigError as e:
            lines.append(f"- {cand.name}: its spatial config differs from {_rel(image_folder)} ({e}); not compared")
            continue
        m = code_agreement(image, inflated, pictures)
        lines.append(f"- Inflated from `{_rel(image_folder)}` with {cand.name}'s temporal settings, not fine-tuned: "
                     f"{m['maps']}/{n} one-frame videos give exactly the image tokenizer's codes "
                     f"({100 * m['codes']:.2f}% of all codes equal) on {where}.")
        m = code_agreement(image, cand.codec, pictures)
        why = ("its shared 2-D layers are still the image tokenizer's" if m["maps"] == n else
               "fine-tuning moved the shared 2-D layers, and with them the latents, so codes flip")
        lines.append(f"- {cand.name} as it is: {m['maps']}/{n} one-frame videos give exactly the image codes, "
                     f"{100 * m['codes']:.1f}% of all codes are equal ({why}). Quality of a single frame, at "
                     f"the same rate: the image tokenizer {m['image psnr']:.2f} dB PSNR on these pictures, "
                     f"{cand.name} {m['video psnr']:.2f} dB on them as one-frame videos.")
    return lines


# ------------------------------------------------------------------------------------------------
# video: the benchmark


@dataclass
class VideoReport:
    candidates: list[VideoCandidate]
    clips: list[VideoClip]
    runs: list[VideoRun]                 # each tokenizer, then each anchor at each target
    anchors: list[VideoAnchor]
    ceiling: np.ndarray                  # [N] PSNR of the yuv420p round trip alone
    throughput: list[dict]
    agreement: list[str]
    notes: list[str] = field(default_factory=list)
    grid: list[int] = field(default_factory=list)     # clips shown in the frame grid
    multiples: tuple[float, ...] = VIDEO_RATE_MULTIPLES
    grid_note: str = ""                                # how the grid PNG was fitted into its size budget

    @property
    def groups(self) -> list[str]:
        """"all" (when there is more than one group), then the groups present."""
        ordered = clip_groups(self.clips)
        return ["all"] + ordered if len(ordered) > 1 else ordered

    def indices(self, group: str) -> np.ndarray:
        return np.array([i for i, c in enumerate(self.clips) if group in ("all", c.group)], dtype=int)

    def tokenizer_runs(self) -> list[VideoRun]:
        return [r for r in self.runs if r.target is None]

    def anchor_runs(self, name: str) -> list[VideoRun]:
        return sorted((r for r in self.runs if r.codec == name and r.target is not None), key=lambda r: r.target)


def grid_clips(clips: Sequence[VideoClip]) -> list[int]:
    """One clip per group for the frame grid: the middle one of the group (a fixed rule)."""
    out = []
    for group in clip_groups(clips):
        members = [i for i, c in enumerate(clips) if c.group == group]
        out.append(members[len(members) // 2])
    return out


def run_video(candidates: Sequence[VideoCandidate], clips: Sequence[VideoClip], *,
              multiples: Sequence[float] = VIDEO_RATE_MULTIPLES, anchors: Sequence[str] = tuple(VIDEO_ANCHORS),
              devices: Sequence[str] | None = None, threads: Sequence[int] = (1, 2), repeat: int = 3,
              image_folder: Path | None = None, progress: bool = True) -> VideoReport:
    """The whole video benchmark, in memory.

    Args:
        candidates: video tokenizers under test.
        clips: held-out clips (``load_video_heldout``).
        multiples: anchor targets as multiples of each tokenizer's mean bpp (1 is "the same rate").
        anchors: anchor codecs by name (``VIDEO_ANCHORS``); those PyAV lacks are noted and skipped.
        devices: throughput devices (default: cpu, and cuda when available).
        threads: CPU thread counts for the throughput rows.
        image_folder: the image tokenizer for the one-frame agreement check (None: skip it).
    """
    devices = list(devices) if devices is not None else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    grid = grid_clips(clips)
    runs = [run_video_tokenizer(c, clips, keep=grid, progress=progress) for c in candidates]
    rates = sorted({round(float((r.bits / [c.pixels for c in clips]).mean()) * m, 6) for r in runs for m in multiples})
    found, notes = video_anchors(anchors)
    for anchor in found:
        runs += run_video_anchor(anchor, clips, rates, keep=grid, progress=progress)
    throughput = []
    with tempfile.TemporaryDirectory() as tmp:
        for cand in candidates:
            for device in devices:
                for t in (threads if device == "cpu" else [1]):
                    throughput.append(measure_video_throughput(cand, clips[0], Path(tmp), device=device, threads=t,
                                                               repeat=repeat))
    agreement = image_video_agreement(candidates, clips, image_folder) if image_folder is not None else []
    return VideoReport(list(candidates), list(clips), runs, found, yuv420_ceiling(clips), throughput, agreement,
                       notes, grid, tuple(sorted(set(multiples))))


# ------------------------------------------------------------------------------------------------
# video: markdown


def video_row(report: VideoReport, run: VideoRun, group: str) -> dict:
    """Means over the group's clips: bpp = bits / pixels, tokens/s = code tokens / seconds (both
    summed over the clips), the metrics per frame then per clip."""
    idx = report.indices(group)
    clips = [report.clips[i] for i in idx]
    pixels = sum(c.pixels for c in clips)
    seconds = sum(c.seconds for c in clips)
    row = {"group": group, "codec": run.codec if run.target is None else f"{run.codec} @ {run.target:.4f} bpp",
           "bpp": run.bits[idx].sum() / pixels,
           "tokens/s": run.tokens[idx].sum() / seconds if run.tokens is not None else None,
           "PSNR": float(run.psnr[idx].mean()), "PSNR frame 0": float(run.psnr[idx, 0].mean()),
           "PSNR frames 1+": float(run.psnr[idx, 1:].mean()) if run.psnr.shape[1] > 1 else None,
           "SSIM": float(run.ssim[idx].mean()),
           "temporal PSNR": float(run.tpsnr[idx].mean()) if run.tpsnr.shape[1] else None, "run": run}
    if run.target is not None:
        bpp = run.bits[idx] / np.array([c.pixels for c in clips])
        row["within"] = int((np.abs(np.log(bpp / run.target)) <= math.log1p(VIDEO_RATE_TOLERANCE) + 1e-9).sum())
        row["clips"] = len(idx)
    return row


def _video_cell(col: str, row: dict) -> str:
    v = row.get(col)
    if isinstance(v, str) or col in VIDEO_TEXT_COLUMNS:
        return str(v)
    if col.endswith("bpp") or "SSIM" in col:
        return _fmt(v, 4)
    if col.startswith("gap"):
        return _fmt(v, 2, signed=True)
    if col == "tokens/s" or col.endswith("frames/s"):
        return "-" if v is None else f"{v:.1f}"
    return _fmt(v, 2)


def video_quality_rows(report: VideoReport) -> list[dict]:
    """Per group: each tokenizer, then each anchor at the first tokenizer's rate."""
    rows = []
    first = report.tokenizer_runs()[0] if report.tokenizer_runs() else None
    for group in report.groups:
        for run in report.tokenizer_runs():
            rows.append(video_row(report, run, group))
        for anchor in report.anchors:
            match = _same_rate(report, anchor.name, first)
            if match is not None:
                rows.append(video_row(report, match, group))
    return rows


def _same_rate(report: VideoReport, anchor: str, run: VideoRun | None) -> VideoRun | None:
    """The anchor's run searched for ``run``'s own mean bpp."""
    if run is None:
        return None
    bpp = round(float((run.bits / [c.pixels for c in report.clips]).mean()), 6)
    return next((r for r in report.anchor_runs(anchor) if abs(r.target - bpp) < 1e-9), None)


def video_versus_rows(report: VideoReport) -> list[dict]:
    rows = []
    for run in report.tokenizer_runs():
        for group in report.groups:
            ours = video_row(report, run, group)
            row = {"tokenizer": run.codec, "group": group, "bpp": ours["bpp"], "PSNR": ours["PSNR"],
                   "SSIM": ours["SSIM"], "temporal PSNR": ours["temporal PSNR"]}
            for anchor in report.anchors:
                match = _same_rate(report, anchor.name, run)
                theirs = video_row(report, match, group) if match is not None else {}
                for key in ("bpp", "PSNR", "SSIM", "temporal PSNR"):
                    row[f"{anchor.name} {key}"] = theirs.get(key)
                row[f"gap to {anchor.name} (dB)"] = (ours["PSNR"] - theirs["PSNR"]) if theirs else None
            rows.append(row)
    return rows


def video_versus_columns(report: VideoReport) -> tuple[str, ...]:
    cols = ["tokenizer", "group", "bpp", "PSNR"]
    for a in report.anchors:
        cols += [f"{a.name} bpp", f"{a.name} PSNR", f"gap to {a.name} (dB)"]
    cols += ["SSIM"] + [f"{a.name} SSIM" for a in report.anchors]
    cols += ["temporal PSNR"] + [f"{a.name} temporal PSNR" for a in report.anchors]
    return tuple(cols)


def video_anchor_rows(report: VideoReport) -> list[dict]:
    """Every anchor point over all clips: target, achieved rate, the CRFs the search kept."""
    rows = []
    for anchor in report.anchors:
        for run in report.anchor_runs(anchor.name):
            row = video_row(report, run, "all")
            s = run.setting
            row.update({"codec": anchor.name, "target bpp": run.target,
                        "setting": f"{np.median(s):g} ({s.min():g}-{s.max():g})",
                        "within 2%": f"{row['within']}/{row['clips']}",
                        "encodes/clip": float(run.encodes.mean())})
            rows.append(row)
    return rows


VIDEO_ANCHOR_COLUMNS = ("codec", "target bpp", "bpp", "setting", "within 2%", "encodes/clip", "PSNR", "SSIM",
                        "temporal PSNR")


def anchor_miss_notes(report: VideoReport) -> list[str]:
    """Why an anchor at a tokenizer's rate missed it on some clips (so its column compares at
    another rate, and in which direction that leans)."""
    notes = []
    for anchor in report.anchors:
        for run in report.tokenizer_runs():
            match = _same_rate(report, anchor.name, run)
            if match is None:
                continue
            bpp = match.bits / np.array([c.pixels for c in report.clips])
            miss = np.abs(np.log(bpp / match.target)) > math.log1p(VIDEO_RATE_TOLERANCE) + 1e-9
            if not miss.any():
                continue
            floor = miss & (match.setting >= anchor.high) & (bpp > match.target)
            ceiling = miss & (match.setting <= anchor.low) & (bpp < match.target)
            jumps = miss & ~floor & ~ceiling
            why = [f"on {int(floor.sum())} its lowest rate (CRF {anchor.high:g}) is above the target (it spends "
                   "more bits than the tokenizer, which favours it)" if floor.any() else "",
                   f"on {int(ceiling.sum())} its best setting (CRF {anchor.low:g}) stays below the target (it "
                   "spends fewer bits, nearly lossless)" if ceiling.any() else "",
                   f"on {int(jumps.sum())} its rate jumps between neighbouring CRF steps or the search ran out of "
                   "encodes (the closest encode is kept)" if jumps.any() else ""]
            notes.append(f"{anchor.name} at {run.codec}'s {match.target:.4f} bpp missed the rate by more than "
                         f"{100 * VIDEO_RATE_TOLERANCE:g}% on {int(miss.sum())} of {len(miss)} clips: "
                         + "; ".join(w for w in why if w) + f". Its mean bpp over all clips: {bpp.mean():.4f}.")
    return notes


def video_acceptance_lines(report: VideoReport, *, psnr: float = 26.0, bpp: float = 0.1) -> list[str]:
    """Issue 5's criterion with the measured numbers, and the gaps to the anchors."""
    lines = []
    for row in video_versus_rows(report):
        if row["group"] not in ("all", report.groups[0]):
            continue
        ok = row["PSNR"] >= psnr and row["bpp"] <= bpp
        gaps = "; ".join(f"{a.name} at the same rate {_fmt(row[f'{a.name} PSNR'])} dB (gap "
                         f"{_fmt(row[f'gap to {a.name} (dB)'], 2, signed=True)} dB)" for a in report.anchors)
        lines.append(f"- {row['tokenizer']}: per-frame PSNR >= {psnr:g} dB at <= {bpp:g} bpp on the held-out "
                     f"{report.clips[0].frames.shape[-1]}x{report.clips[0].frames.shape[-2]} clips: "
                     f"**{'yes' if ok else 'no'}** ({row['PSNR']:.2f} dB at {row['bpp']:.4f} bpp). {gaps}.")
    return lines


def render_video_section(report: VideoReport, *, command: str, heldout: str, plots: dict[str, Path] | None = None,
                         results_dir: Path = RESULTS.parent, notes: Sequence[str] = ()) -> str:
    clips = report.clips
    T, _, H, W = clips[0].frames.shape
    runs = report.tokenizer_runs()
    struct = float(runs[0].structural.mean()) if runs else 0.0
    vocab = len(report.candidates[0].tok.space) if report.candidates else 2
    anchors = ", ".join(f"{a.name}: `{a.encoder}` ({', '.join(f'{k} {v}' for k, v in a.options)}; CRF in steps of "
                        f"{a.step:g}, range {a.low:g}-{a.high:g}; decoded with `{a.decoders[0]}`)"
                        for a in report.anchors)
    groups = ", ".join(f"{g} {len(report.indices(g))}" for g in report.groups if g != "all")
    rates = ", ".join(f"{c.name.split('@')[0]} {c.fps} fps" for c in
                      {c.name.split('@')[0]: c for c in clips if "@" in c.name}.values())
    body = [
        f"- Machine: {machine_description()}; torch {torch.__version__}, torch threads: {torch.get_num_threads()}"
        + (f"; GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "; no GPU on this machine"),
        f"- Date: {_dt.date.today().isoformat()}",
        f"- Command: `{command}`",
        f"- Held-out set: {heldout}: {len(clips)} clips of {T} frames, {W}x{H} ({groups}). Frame rates: "
        f"{rates or 'n/a'}; the pan-and-zoom clips have no rate of their own and are taken at "
        f"{VIDEO_DEFAULT_FPS} fps (for tokens/s and the anchors' rate control).",
        f"- bpp of a tokenizer = its code ids from `tok.encode(Video)` x log2(their level's codebook size) / "
        f"(frames x height x width), from the token space (`space.bits_of`); the segment's {struct:.0f} structural "
        f"tokens (begin, header, end) are excluded: at log2({vocab}) bits each they would add "
        f"{struct * math.log2(max(vocab, 2)) / (T * H * W):.4f} bpp to a {T}x{W}x{H} clip. The codes are "
        "fixed-length (no entropy coding), the anchors' bitstreams are entropy coded. tokens/s = code tokens "
        "per second of video at the clip's frame rate.",
        "- Metrics (`unitok.metrics`, RGB in [0, 1], reconstructions as uint8, as a user gets them): per-frame "
        "PSNR and SSIM, averaged over frames, then over clips; \"frame 0\" is the first frame (coded alone, "
        f"like an image), \"frames 1+\" the other {T - 1}. Temporal PSNR: PSNR between the frame differences "
        "x[t] - x[t-1] of the original and of the reconstruction (peak 1, as for pixels), averaged likewise; "
        "it drops when a reconstruction flickers or drifts even where every frame alone scores well.",
        f"- Anchors, in the same run ({anchor_versions()}): {anchors or 'none'}. They code the clip as yuv420p "
        "(4:2:0, BT.601, limited range: the tokenizers see full RGB), are decoded back to RGB and scored "
        "alike; the colour conversion alone (no coding) caps them at "
        f"{report.ceiling.mean():.2f} dB mean PSNR on these clips. Their bpp = bitstream bytes x 8 / pixels, "
        "from the encoded packets (sequence and picture headers included; no container overhead: they are "
        "encoded in memory, never muxed). Rate matching: per clip, a secant search on the CRF (one thread, "
        f"at most {VIDEO_SEARCH_ENCODES} encodes) stops within {100 * VIDEO_RATE_TOLERANCE:g}% of the target "
        "bpp or at neighbouring CRF steps and keeps the closest encode; the table below says how many clips "
        "landed within the tolerance. Targets: each tokenizer's mean bpp (\"the same rate\")"
        + "".join(f", {m:g}x" for m in report.multiples if m != 1) + " that rate (for the rate-distortion plot).",
        *[f"- {n}" for n in report.notes],
        *[f"- {n}" for n in notes],
        "",
        "Tokenizers:",
        "",
        *[f"- **{c.name}** (`{_rel(c.folder)}`): {c.description}" for c in report.candidates],
        "",
        "### Quality at the tokenizer's rate",
        "",
        "Each group: the tokenizer(s), then each anchor searched for the first tokenizer's bpp.",
        "",
        markdown_table(VIDEO_QUALITY_COLUMNS, video_quality_rows(report), _video_cell, VIDEO_TEXT_COLUMNS),
        "",
        "### Against H.264 and AV1 at the same bpp",
        "",
        "Gap = tokenizer PSNR minus anchor PSNR (positive: the tokenizer is better); the anchors' bpp is what "
        "they really spent.",
        "",
        markdown_table(video_versus_columns(report), video_versus_rows(report), _video_cell, VIDEO_TEXT_COLUMNS),
        "",
        "### Anchor rate points (all clips)",
        "",
        "setting = the CRF the search kept: median (range over clips).",
        "",
        markdown_table(VIDEO_ANCHOR_COLUMNS, video_anchor_rows(report), _video_cell, VIDEO_TEXT_COLUMNS),
    ]
    misses = anchor_miss_notes(report)
    if misses:
        body += [""] + [f"- {n}" for n in misses]
    if plots and "rd" in plots:
        body += ["", f"![rate-distortion: PSNR vs bpp, tokenizers, H.264 and AV1]({_rel_to(plots['rd'], results_dir)})"]
    if plots and "grid" in plots:
        grid = _rel_to(plots["grid"], results_dir)
        body += ["", f"Frame {T // 2} of one clip per group, its centre 128x128 at 1:1 pixels (bpp and PSNR: the whole "
                     f"clip and frame): original, each tokenizer, each anchor at the same rate ({report.grid_note}):",
                 "", f"![frame grid: originals and reconstructions]({grid})"]
    body += ["", "### Throughput", "",
             f"The codec's batched `encode` (uint8 [1, {T}, 3, {H}, {W}] -> codes) and `decode` (codes -> frames) of "
             "one held-out clip, in a fresh process started with `OMP_NUM_THREADS` = threads; frames/s = frames "
             "per second of wall time, best of the timed rounds after a warm-up. Load average: the machine's "
             f"1-minute load when the row was measured; above its {len(os.sched_getaffinity(0))} cores the CPU "
             "was shared with other work and the row is a lower bound.", "",
             markdown_table(VIDEO_THROUGHPUT_COLUMNS, report.throughput, _video_cell, VIDEO_TEXT_COLUMNS)]
    if not torch.cuda.is_available():
        body += ["", "No GPU on this machine: no GPU row (the same command adds one where CUDA is available)."]
    if report.agreement:
        body += ["", "### One-frame video vs image", "", *report.agreement]
    body += ["", "### Issue 5 acceptance, as measured", "", *video_acceptance_lines(report)]
    return "\n".join(body)


# ------------------------------------------------------------------------------------------------
# video: plots


def plot_video_rd(report: VideoReport, path: Path) -> Path | None:
    """PSNR against bpp, one panel per group: each anchor's rate points as a line, each tokenizer
    as a point."""
    plt = _pyplot(warn=True)
    if plt is None:
        return None
    groups = report.groups
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 4.0), dpi=100, squeeze=False)
    styles = {"H.264": dict(color="black", ls="--", marker="s"), "AV1": dict(color="tab:blue", ls=":", marker="^")}
    for ax, group in zip(axes[0], groups):
        for anchor in report.anchors:
            pts = [video_row(report, r, group) for r in report.anchor_runs(anchor.name)]
            ax.plot([p["bpp"] for p in pts], [p["PSNR"] for p in pts], label=f"{anchor.name} ({anchor.encoder})",
                    ms=5, **styles.get(anchor.name, dict(color="gray", marker=".")))
        for k, run in enumerate(report.tokenizer_runs()):
            row = video_row(report, run, group)
            ax.plot([row["bpp"]], [row["PSNR"]], "o*Dv"[k % 4], ms=9, color=plt.cm.tab10((k + 3) % 10),
                    label=run.codec, ls="none")
        ax.set_xscale("log")
        lo, hi = ax.get_xlim()
        ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 4) if lo <= t <= hi]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("bits per pixel (measured)")
        ax.set_ylabel("per-frame PSNR (dB)")
        ax.set_title(f"{group} ({len(report.indices(group))} clips)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return _save_figure(plt, fig, path)


def plot_video_grid(report: VideoReport, path: Path, max_bytes: int = MAX_PLOT_BYTES, crop: int = 128
                    ) -> Path | None:
    """The centre ``crop`` x ``crop`` of the middle frame of one clip per group: original, each
    tokenizer, each anchor at the first tokenizer's rate, at 1:1 pixels (PSNR: the whole frame);
    colour bits, then rows, are dropped until the PNG fits in ``max_bytes``."""
    plt = _pyplot()
    if plt is None or not report.grid:
        return None
    from PIL import Image as PILImage   # a dependency of matplotlib

    first = report.tokenizer_runs()[0] if report.tokenizer_runs() else None
    shown = report.tokenizer_runs() + [r for a in report.anchors if (r := _same_rate(report, a.name, first))]
    rows = []
    for i in report.grid:
        clip = report.clips[i]
        t = clip.frames.shape[0] // 2
        H, W = clip.frames.shape[-2:]
        top, left = max(0, (H - crop) // 2), max(0, (W - crop) // 2)
        cut = lambda frames: Image(frames[t, :, top:top + crop, left:left + crop].contiguous())  # noqa: E731
        tiles = [(cut(clip.frames), f"{clip.group}\n{clip.name.split('#')[0]}")]
        for run in shown:
            label = run.codec if run.target is None else f"{run.codec}, CRF {run.setting[i]:g}"
            tiles.append((cut(run.kept[i]), f"{label}\n{run.bits[i] / clip.pixels:.3f} bpp, {run.psnr[i, t]:.1f} dB"))
        rows.append(tiles)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas = _draw_grid(plt, rows)
    # PNG spends ~12 bits per pixel on this content: keep fewer bits per channel (5 bits is an error of
    # at most 7 levels, ~41 dB, far above every codec here), then fewer rows, until it fits
    for bits, n in [(b, len(rows)) for b in (8, 7, 6, 5)] + [(5, k) for k in range(len(rows) - 1, 0, -1)]:
        keep = canvas[:n * canvas.shape[0] // len(rows)]
        PILImage.fromarray(keep & np.uint8((0xFF << (8 - bits)) & 0xFF)).save(path, "PNG", optimize=True)
        if path.stat().st_size <= max_bytes:
            report.grid_note = f"{n} of {len(rows)} rows, colours with {bits} bits per channel"
            break
    return path


# ------------------------------------------------------------------------------------------------
# video: command line


def video_heldout_description(path: Path) -> str:
    split = path.parent / "split.json"
    where = _rel(path)
    if split.exists():
        where += (f" (what each clip is: {_rel(split)}; the camera clips are held out by time region, after a gap, "
                  "the pan-and-zoom clips move over held-out photos, so nothing here was seen in training)")
    return where


def bench_video(args: argparse.Namespace) -> tuple[Section, dict[str, Path]]:
    try:
        candidates = load_video_candidates(args.suite, args.checkpoint or [], use_suite=not args.no_suite)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    clips = load_video_heldout(args.heldout, args.limit)
    for c in candidates:
        print(f"[{c.name}] {c.description}")
    print(f"held-out: {len(clips)} clips from {args.heldout}")
    image = None if args.no_agreement else args.agreement_image
    report = run_video(candidates, clips, multiples=args.rate_multiples, threads=args.threads, repeat=args.repeat,
                       image_folder=image)
    plots = {}
    if not args.no_write:
        if (p := plot_video_rd(report, args.plots / "video_rd.png")) is not None:
            plots["rd"] = p
        if (p := plot_video_grid(report, args.plots / "video_grid.png")) is not None:
            plots["grid"] = p
    body = render_video_section(report, command=command_line(), heldout=video_heldout_description(args.heldout),
                                plots=plots, results_dir=args.results.parent, notes=args.note or ())
    return Section("Video reconstruction", body), plots


# Other modalities add their functions here: name -> (args -> (section, written plots)).
BENCHMARKS: dict[str, Callable[[argparse.Namespace], tuple[Section, dict[str, Path]]]] = {
    "image": bench_image,
    "audio": bench_audio,
    "video": bench_video,
}
#: where each modality's held-out set lives unless --heldout says otherwise
DEFAULT_HELDOUT: dict[str, Path] = {"image": HELDOUT, "audio": AUDIO_HELDOUT, "video": VIDEO_HELDOUT}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modality", choices=sorted(BENCHMARKS), required=True)
    parser.add_argument("--suite", type=Path, help="tokenizer suite folder (default: the bundled suite)")
    parser.add_argument("--checkpoint", type=Path, action="append",
                        help="a bare tokenizer folder of the benchmarked modality (config.json + "
                             "model.safetensors), compared as its own row next to the suite's; repeat to compare "
                             "several")
    parser.add_argument("--no-suite", action="store_true", help="compare the --checkpoint folders only")
    parser.add_argument("--heldout", type=Path, help="folder of held-out media (default: data/images/heldout for "
                                                     "images, data/audio/heldout for audio; for video the clips "
                                                     "file data/video/heldout_256.npy)")
    parser.add_argument("--limit", type=int, help="use only the first N held-out files (sorted by name; for audio "
                                                  "N per category; for video N clips evenly spaced over the file)")
    parser.add_argument("--random-crops", type=int, default=15, help="random 256x256 crops per picture, besides "
                                                                     "the center crop")
    parser.add_argument("--max-side", type=int, default=1024, help="native size: downscale pictures whose long "
                                                                   "side is longer (0: never)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per throughput measurement")
    parser.add_argument("--batch", type=int, default=8, help="images per batch for batched throughput")
    parser.add_argument("--note", action="append", help="a line to add to the section's notes (e.g. what else "
                                                        "ran on the machine); repeatable")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file to update")
    parser.add_argument("--plots", type=Path, default=PLOTS, help="folder for the PNG plots")
    parser.add_argument("--no-write", action="store_true", help="print only; write neither RESULTS.md nor plots")
    audio = parser.add_argument_group("audio")
    audio.add_argument("--kbps", type=float, nargs="+", default=list(AUDIO_KBPS),
                       help="target rates; each tokenizer uses the most levels within each, Opus is asked for it")
    audio.add_argument("--opus-extra-kbps", type=float, nargs="*", default=[8.0, 12.0],
                       help="more Opus rates, for the plot's Opus curve and the comparison at the tokenizer's own "
                            "kbps (default: 8 12)")
    audio.add_argument("--categories", nargs="+", default=list(AUDIO_CATEGORIES),
                       help="sub-folders of --heldout to use (e.g. speech music effects)")
    audio.add_argument("--segments", type=int, default=6, help="windows cut from each file longer than "
                                                               "--segment-seconds")
    audio.add_argument("--segment-seconds", type=float, default=10.0, help="length of those windows")
    audio.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CPU threads for the throughput rows")
    audio.add_argument("--rtf-seconds", type=float, default=60.0, help="length of the timed signal")
    audio.add_argument("--memory-minutes", type=float, default=60.0,
                       help="input length for the peak-memory probe (0: skip it)")
    video = parser.add_argument_group("video")
    video.add_argument("--rate-multiples", type=float, nargs="+", default=list(VIDEO_RATE_MULTIPLES),
                       help="anchor targets as multiples of each tokenizer's bpp (1: the same rate; more points "
                            "draw the anchors' curves in the plot; default: 1 2 4)")
    video.add_argument("--agreement-image", type=Path, default=BUNDLED_SUITE / "image",
                       help="image tokenizer for the one-frame video vs image check (default: the bundled one)")
    video.add_argument("--no-agreement", action="store_true", help="skip the one-frame video vs image check")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    if args.heldout is None:
        args.heldout = DEFAULT_HELDOUT[args.modality]

    section, plots = BENCHMARKS[args.modality](args)
    print()
    print(f"## {section.title}\n\n{section.body}")
    if not args.no_write:
        write_section(args.results, section)
        print(f"\nupdated {args.results}" + "".join(f"\nwrote {p}" for p in plots.values()))


if __name__ == "__main__":
    main()
