"""Video reconstruction (``python benchmarks/reconstruction.py --modality video``): the section
"## Video reconstruction" of ``benchmarks/RESULTS.md`` and ``plots/video_rd.png`` / ``video_grid.png``.

Every video tokenizer under test (the bundled one in ``unitok/assets/video`` and each
``--checkpoint``) codes the held-out clips (the benchmark split ``data/video/bench_256.npy`` unless
``--heldout`` names another file; the validation split ``val_256.npy`` is for design choices),
grouped by ``split.json`` into pan-and-zoom, real camera, animation and scene cut, through
``tok.encode(Video)`` / ``tok.decode``: per-frame PSNR and SSIM (frame 0 and the later frames
apart), temporal PSNR (of the frame differences), the worst frame around each scene cut (a cut
must not carry the previous shot), bpp from the code ids emitted and tokens per second. H.264 (libx264) and AV1
(SVT-AV1, else libaom) code the same clips in the same run as yuv420p, with a per-clip CRF search
that lands their bitstream on the tokenizer's bpp (and on multiples of it for the plot;
``video_anchors.py``). Then frames/s of encode and decode in a fresh process (``probe.py``; 1
and 2 CPU threads, and a GPU when there is one), and the check that a one-frame video codes like an
image (an inflated, not fine-tuned model exactly; the trained one as measured).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

import unitok
from unitok import ConfigError, Image, MediaError, UniTokenizer, Video
from unitok import metrics
from unitok.media import Preprocess
from unitok.media.shots import detect_cuts, join_shots

from candidates import (Candidate, announce, candidate_folders, check_unique, codec_type, from_args, load_codec,
                        parameter_count)
from report import (MAX_PLOT_BYTES, PSNR_CAP, RESULTS, ROOT, Section, command_line, default_devices, draw_grid,
                    draw_plots, fmt, markdown_table, progress_bar, pyplot, rel, rel_to, run_lines, save_figure,
                    save_png)
from timing import run_probe
from video_anchors import (RATE_TOLERANCE, SEARCH_ENCODES, VIDEO_ANCHORS, VideoAnchor, anchor_decode,
                           anchor_versions, rgb, search_crf, video_anchors, yuv420_frames)

VIDEO_HELDOUT = ROOT / "data" / "video" / "bench_256.npy"    # the benchmark split (recipes/data/fetch_video.py)
VIDEO_VAL = ROOT / "data" / "video" / "val_256.npy"          # the validation split, for design choices
#: pan-and-zoom clips are made from photos and have no rate of their own; they are read at this one
VIDEO_DEFAULT_FPS = Fraction(25)
VIDEO_GROUPS = ("pan-and-zoom", "real camera", "animation", "scene cut")   # reported in this order, after "all"
#: frames around a scene cut whose worst PSNR is reported: the last frame of the first shot and the
#: first three of the second (where a codec that carries the previous shot shows it)
CUT_WINDOW = (-1, 3)
#: anchor targets: the tokenizer's own bpp, then higher rates for the rate-distortion plot
VIDEO_RATE_MULTIPLES = (1.0, 2.0, 4.0)
VIDEO_QUALITY_COLUMNS = ("group", "codec", "bpp", "tokens/s", "PSNR", "PSNR frame 0", "PSNR frames 1+", "SSIM",
                         "temporal PSNR", "worst PSNR at cut")
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
    cut: int | None = None   # a scene cut: index of the first frame of the second shot

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
    if meta.get("kind") == "cut":
        return "scene cut"
    return "animation" if meta.get("kind") == "animation" or meta.get("source") == "bigbuckbunny" else "real camera"


def clip_groups(clips: Sequence["VideoClip"]) -> list[str]:
    """The groups present among ``clips``, in ``VIDEO_GROUPS`` order, then any others."""
    present = list(dict.fromkeys(c.group for c in clips))
    return [g for g in VIDEO_GROUPS if g in present] + [g for g in present if g not in VIDEO_GROUPS]


def _video_files(path: Path, limit: int | None) -> list[VideoClip]:
    """Your own clips: a video file, or every video file in a folder (sorted), each whole, at its
    own size and frame rate (group "clips")."""
    from unitok import UnitokError
    from unitok.media import Video, kind_of

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and kind_of(p) == "video")
    if not files:
        sys.exit(f"{path}: no video files here (or pass a .npy of uint8 clips [N, T, H, W, 3])")
    clips = []
    for f in files[:limit] if limit else files:
        try:
            video = Video.open(f)
        except UnitokError as e:     # one bad file is left out, said so, and the others are measured
            print(f"{f}: left out, cannot read this video ({e})", file=sys.stderr)
            continue
        clips.append(VideoClip(f.name, "clips", video.frames.contiguous(), Fraction(video.fps)))
    if not clips:
        sys.exit(f"{path}: none of its video files could be read")
    return clips


def load_video_heldout(path: Path, limit: int | None = None) -> list[VideoClip]:
    """The clips of ``path`` (uint8 [N, T, H, W, 3], ``recipes/data/fetch_video.py``; a video file or
    a folder of them is read with :func:`_video_files`), each with
    the source, group, frame rate and scene cut that ``split.json`` beside it records (under the
    file's split name: "bench" for ``bench_256.npy``, "val", or "heldout"). ``limit``: that many
    clips evenly spaced over the file, so every group keeps its share."""
    if path.is_dir() or path.is_file() and path.suffix.lower() != ".npy":
        return _video_files(path, limit)
    if not path.is_file():
        sys.exit(f"no held-out clips at {path}. Fetch them first:\n    python recipes/data/fetch_video.py\n"
                 f"then rerun (or pass --heldout with a video file, a folder of them, or FILE.npy with uint8 "
                 f"[N, T, H, W, 3] clips never seen in training).")
    try:
        array = np.load(path, mmap_mode="r")
    except ValueError as e:     # an object array (pickled data) or a damaged file
        sys.exit(f"{path}: not an array of uint8 clips [N, T, H, W, 3] ({e})")
    if array.ndim != 5 or array.shape[-1] != 3 or array.dtype != np.uint8:
        sys.exit(f"{path}: expected uint8 clips [N, T, H, W, 3], got {array.dtype} {array.shape}")
    split = path.parent / "split.json"
    meta = json.loads(split.read_text()) if split.exists() else {}
    entries = meta.get(path.stem.rsplit("_", 1)[0]) or meta.get("heldout") or [{}] * len(array)
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
        fps = Fraction(m["fps"]) if "fps" in m else rates.get(source, VIDEO_DEFAULT_FPS)
        clips.append(VideoClip(name, clip_group(m), frames, fps, m.get("cut_frame")))
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


def describe_video_codec(codec) -> str:
    sizes = codec.codebook_sizes
    scales = codec.scales(256, 256)
    per_frame = sum(h * w for h, w in scales)
    return (f"{codec_type(codec)}, stride {codec.downsample}, temporal "
            f"{codec.temporal} (frame 0 alone, then chunks of {codec.temporal}), {len(scales)} scales per latent "
            f"frame ({per_frame} tokens at 256x256), {'/'.join(map(str, sizes))} codes "
            f"({math.log2(sizes[0]):.4g} bits), {parameter_count(codec)}")


def load_video_candidates(suite: Path | None, checkpoints: Sequence[Path], *, use_suite: bool = True,
                          device: str = "cpu") -> list[Candidate]:
    """The suite's video tokenizer (``<suite>/video``; the bundled one when ``suite`` is None) and
    one candidate per bare video-tokenizer folder in ``checkpoints``."""
    text = unitok.text.load_default()
    out = []
    for name, folder in candidate_folders("video", suite, checkpoints, use_suite=use_suite):
        codec = load_codec(folder, "video", "a video tokenizer", device=device).eval()
        out.append(Candidate(name, UniTokenizer(text, {"video": codec}), "video", describe_video_codec(codec),
                             Path(folder)))
    check_unique([c.name for c in out])
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
    shots: np.ndarray | None = None        # [N] tokenizers coding shot by shot: video segments per clip
    kept: dict[int, torch.Tensor] = field(default_factory=dict)   # clip index -> reconstruction (grid)


def _stack_scores(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([r[k] for r in rows]) for k in ("psnr", "ssim", "tpsnr")}


#: the row of a tokenizer that codes each clip shot by shot (``--split-shots``)
SHOTS_SUFFIX = ", shots split"


def run_video_tokenizer(cand: Candidate, clips: Sequence[VideoClip], *, keep: Sequence[int] = (),
                        progress: bool = True, split_shots: bool = False) -> VideoRun:
    """Every clip through ``tok.encode(Video)`` -> ids -> ``tok.decode`` -> ``Video``, as a user
    calls them; the rate is counted on the ids emitted. ``split_shots``: under
    ``Preprocess(split_shots=True)`` (unitok's default since 0.4), a clip is one video segment per
    detected shot; the decoded shots are joined back (``join_shots``) for scoring and the bits are
    those of every segment. Without it, under ``split_shots=False``: the clip whole, one segment."""
    tok = cand.tok.with_limits(preprocess=Preprocess(split_shots=split_shots))   # the clip whole, or shot by shot
    name = cand.name + (SHOTS_SUFFIX if split_shots else "")
    bits, tokens, structural, shots, rows, kept = [], [], [], [], [], {}
    with torch.inference_mode():
        for i, clip in enumerate(progress_bar(clips, name, progress, "clip")):
            seq = tok.encode(Video(clip.frames, clip.fps))
            spans = [s for s in seq.spans if s.modality == "video"]
            ids = np.concatenate([seq.ids[s.start:s.stop] for s in spans])
            levels, _ = tok.space.media_codes("video", ids)
            codes = ids[levels >= 0]
            rec = join_shots(tok.decode(seq)).frames
            bits.append(tok.space.bits_of(codes))
            tokens.append(len(codes))
            structural.append(len(ids) - len(codes))
            shots.append(len(spans))
            rows.append(video_scores(clip.frames, rec))
            if i in keep:
                kept[i] = rec
    return VideoRun(name, None, np.array(bits, dtype=np.float64), **_stack_scores(rows),
                    tokens=np.array(tokens, dtype=np.float64), structural=np.array(structural, dtype=np.float64),
                    shots=np.array(shots) if split_shots else None, kept=kept)


# ------------------------------------------------------------------------------------------------
# video: the classic codecs (PyAV)


def run_video_anchor(anchor: VideoAnchor, clips: Sequence[VideoClip], targets: Sequence[float], *,
                     keep: Sequence[int] = (), progress: bool = True) -> list[VideoRun]:
    """``anchor`` at each target bpp (ascending) on every clip: one CRF search per clip and
    target (each target starting from the CRF the one before it found), then the kept bitstream
    decoded and scored. Returns one run per target."""
    targets = sorted(targets)
    cols = {t: {"bits": [], "rows": [], "crf": [], "encodes": [], "kept": {}} for t in targets}
    for i, clip in enumerate(progress_bar(clips, anchor.name, progress, "clip")):
        frames = yuv420_frames(clip.frames)
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
    return np.array([video_scores(c.frames, rgb(yuv420_frames(c.frames)))["psnr"].mean() for c in clips])


# ------------------------------------------------------------------------------------------------
# video: speed, and image / video agreement


def measure_video_throughput(cand: Candidate, clip: VideoClip, workdir: Path, *, device: str = "cpu",
                             threads: int = 1, repeat: int = 3) -> dict:
    """Frames/s of the codec's batched ``encode`` (uint8 [1, T, 3, H, W] -> codes) and ``decode``
    (codes -> frames) of one clip, best of ``repeat`` rounds after a warm-up, the two taking turns,
    in a fresh process started with ``OMP_NUM_THREADS=threads`` (``probe.py video-speed``, run by
    ``timing.run_probe``)."""
    npy = workdir / "probe_clip.npy"
    np.save(npy, clip.frames.numpy())
    try:
        out = run_probe(["video-speed", str(cand.folder), str(npy), str(threads), device, str(repeat)],
                        threads=threads, what="video speed")
    finally:
        npy.unlink()
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


def image_video_agreement(candidates: Sequence[Candidate], clips: Sequence[VideoClip],
                          image_folder: Path) -> list[str]:
    """Issue 5's check that a one-frame video is an image, on the clips' first frames: a model
    inflated from the image tokenizer and not fine-tuned (built here from each candidate's config)
    must give exactly the image codes; a fine-tuned one is measured as it is."""
    from unitok import checkpoint
    from unitok.video import VideoTokenizer

    if not (image_folder / checkpoint.CONFIG_NAME).exists():
        return [f"- not checked: no image tokenizer at {rel(image_folder)}"]
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
            lines.append(f"- {cand.name}: its spatial config differs from {rel(image_folder)} ({e}); not compared")
            continue
        m = code_agreement(image, inflated, pictures)
        lines.append(f"- Inflated from `{rel(image_folder)}` with {cand.name}'s temporal settings, not fine-tuned: "
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
    candidates: list[Candidate]
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


def run_video(candidates: Sequence[Candidate], clips: Sequence[VideoClip], *,
              multiples: Sequence[float] = VIDEO_RATE_MULTIPLES, anchors: Sequence[str] = tuple(VIDEO_ANCHORS),
              devices: Sequence[str] | None = None, threads: Sequence[int] = (1, 2), repeat: int = 3,
              image_folder: Path | None = None, progress: bool = True, split_shots: bool = False) -> VideoReport:
    """The whole video benchmark, in memory.

    Args:
        candidates: video tokenizers under test.
        clips: held-out clips (``load_video_heldout``).
        multiples: anchor targets as multiples of each tokenizer's mean bpp (1 is "the same rate").
        anchors: anchor codecs by name (``VIDEO_ANCHORS``); those PyAV lacks are noted and skipped.
        devices: throughput devices (default: cpu, and cuda when available).
        threads: CPU thread counts for the throughput rows.
        image_folder: the image tokenizer for the one-frame agreement check (None: skip it).
        split_shots: each tokenizer also codes every clip shot by shot (its own row, after the
            plain one; the anchors are searched for the plain rows' rates only).
    """
    devices = list(devices) if devices is not None else default_devices()
    grid = grid_clips(clips)
    runs = [run_video_tokenizer(c, clips, keep=grid, progress=progress) for c in candidates]
    rates = sorted({round(float((r.bits / [c.pixels for c in clips]).mean()) * m, 6) for r in runs for m in multiples})
    if split_shots:
        runs = [r for plain, cand in zip(runs, candidates)
                for r in (plain, run_video_tokenizer(cand, clips, keep=grid, progress=progress, split_shots=True))]
    found, notes = video_anchors(anchors)
    if split_shots:
        notes.append(cut_detection_note(clips))
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
           "temporal PSNR": float(run.tpsnr[idx].mean()) if run.tpsnr.shape[1] else None,
           "worst PSNR at cut": worst_at_cut(run.psnr[idx], [c.cut for c in clips]), "run": run}
    if run.target is not None:
        bpp = run.bits[idx] / np.array([c.pixels for c in clips])
        row["within"] = int((np.abs(np.log(bpp / run.target)) <= math.log1p(RATE_TOLERANCE) + 1e-9).sum())
        row["clips"] = len(idx)
    return row


def worst_at_cut(psnr: np.ndarray, cuts: Sequence[int | None]) -> float | None:
    """Mean over the clips with a scene cut of their worst per-frame PSNR in ``CUT_WINDOW`` around
    the cut; None when no clip has one. psnr: [N, T]."""
    worst = [float(p[max(0, c + CUT_WINDOW[0]):c + CUT_WINDOW[1]].min()) for p, c in zip(psnr, cuts) if c]
    return float(np.mean(worst)) if worst else None


def cut_detection_note(clips: Sequence[VideoClip]) -> str:
    """How the shot detector (``detect_cuts`` at its defaults, as ``--split-shots`` uses it) does on
    ``clips``: recorded cuts found at their exact frame, and cuts found in clips without one."""
    found = [detect_cuts(c.frames) for c in clips]
    recorded = [(c, f) for c, f in zip(clips, found) if c.cut]
    exact = sum(f == [c.cut] for c, f in recorded)
    extra = [f"{c.name} at frame {', '.join(map(str, f))}" for c, f in zip(clips, found) if not c.cut and f]
    others = len(clips) - len(recorded)
    return (f"Shot detector (`unitok.media.shots.detect_cuts`, its defaults): the recorded cut at its exact frame "
            f"and no other in {exact} of {len(recorded)} scene-cut clips; cuts found in the {others} other clips: "
            f"{'; '.join(extra) if extra else 'none'}.")


SHOTS_COLUMNS = ("group", "clips split", "bpp", "bpp, shots split", "bpp change", "PSNR", "PSNR, shots split",
                 "worst PSNR at cut", "worst PSNR at cut, shots split")


def shots_rows(report: VideoReport) -> list[dict]:
    """Per tokenizer coded shot by shot (``split_shots``) and group: it against the same tokenizer
    coding each clip whole."""
    rows = []
    runs = report.tokenizer_runs()
    for split in (r for r in runs if r.shots is not None):
        plain = next(r for r in runs if r.codec + SHOTS_SUFFIX == split.codec)
        for group in report.groups:
            a, b = video_row(report, plain, group), video_row(report, split, group)
            idx = report.indices(group)
            rows.append({"group": f"{group} ({plain.codec})" if len(runs) > 2 else group,
                         "clips split": f"{int((split.shots[idx] > 1).sum())}/{len(idx)}",
                         "bpp": fmt(a["bpp"], 4), "bpp, shots split": fmt(b["bpp"], 4),
                         "bpp change": f"{100 * (b['bpp'] / a['bpp'] - 1):+.1f}%",
                         "PSNR": fmt(a["PSNR"]), "PSNR, shots split": fmt(b["PSNR"]),
                         "worst PSNR at cut": fmt(a["worst PSNR at cut"]),
                         "worst PSNR at cut, shots split": fmt(b["worst PSNR at cut"])})
    return rows


def _video_cell(col: str, row: dict) -> str:
    v = row.get(col)
    if isinstance(v, str) or col in VIDEO_TEXT_COLUMNS:
        return str(v)
    if col.endswith("bpp") or "SSIM" in col:
        return fmt(v, 4)
    if col.startswith("gap"):
        return fmt(v, 2, signed=True)
    if col == "tokens/s" or col.endswith("frames/s"):
        return "-" if v is None else f"{v:.1f}"
    return fmt(v, 2)


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
    for run in (r for r in report.tokenizer_runs() if r.shots is None):   # the anchors were searched for these
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
            miss = np.abs(np.log(bpp / match.target)) > math.log1p(RATE_TOLERANCE) + 1e-9
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
                         f"{100 * RATE_TOLERANCE:g}% on {int(miss.sum())} of {len(miss)} clips: "
                         + "; ".join(w for w in why if w) + f". Its mean bpp over all clips: {bpp.mean():.4f}.")
    return notes


def video_acceptance_lines(report: VideoReport, *, psnr: float = 26.0, bpp: float = 0.1) -> list[str]:
    """Issue 5's criterion with the measured numbers, and the gaps to the anchors."""
    lines = []
    for row in video_versus_rows(report):
        if row["group"] not in ("all", report.groups[0]):
            continue
        ok = row["PSNR"] >= psnr and row["bpp"] <= bpp
        gaps = "; ".join(f"{a.name} at the same rate {fmt(row[f'{a.name} PSNR'])} dB (gap "
                         f"{fmt(row[f'gap to {a.name} (dB)'], 2, signed=True)} dB)" for a in report.anchors)
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
        *run_lines(command, no_gpu="no GPU on this machine"),
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
        f"at most {SEARCH_ENCODES} encodes) stops within {100 * RATE_TOLERANCE:g}% of the target "
        "bpp or at neighbouring CRF steps and keeps the closest encode; the table below says how many clips "
        "landed within the tolerance. Targets: each tokenizer's mean bpp (\"the same rate\")"
        + "".join(f", {m:g}x" for m in report.multiples if m != 1) + " that rate (for the rate-distortion plot).",
        *[f"- {n}" for n in report.notes],
        *[f"- {n}" for n in notes],
        "",
        "Tokenizers:",
        "",
        *[f"- **{c.name}** (`{rel(c.folder)}`): {c.description}" for c in report.candidates],
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
        body += ["", f"![rate-distortion: PSNR vs bpp, tokenizers, H.264 and AV1]({rel_to(plots['rd'], results_dir)})"]
    if plots and "grid" in plots:
        grid = rel_to(plots["grid"], results_dir)
        body += ["", f"Frame {T // 2} of one clip per group, its centre 128x128 at 1:1 pixels (bpp and PSNR: the whole "
                     f"clip and frame): original, each tokenizer, each anchor at the same rate ({report.grid_note}):",
                 "", f"![frame grid: originals and reconstructions]({grid})"]
    if any(r.shots is not None for r in runs):
        body += ["", "### Shots split at scene cuts", "",
                 "The same tokenizer coding each clip whole (`Preprocess(split_shots=False)`, the rows above), and "
                 "shot by shot: `Preprocess(split_shots=True)` (what `tok.encode` and the CLI do by default since "
                 "unitok 0.4) cuts a clip at the scene cuts `unitok.media.shots.detect_cuts` finds and codes "
                 "each shot as its own video segment (its own key frame); the decoded shots are joined back "
                 "(`join_shots`) and scored against the whole clip, and bpp counts the codes of every segment. "
                 "Clips without a detected cut are coded exactly as before.", "",
                 markdown_table(SHOTS_COLUMNS, shots_rows(report), lambda col, row: str(row[col]), ("group",))]
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
    if any(c.group != "clips" for c in report.clips):   # the project's held-out split, not your own clips
        body += ["", "### Issue 5 acceptance, as measured", "", *video_acceptance_lines(report)]
    return "\n".join(body)


# ------------------------------------------------------------------------------------------------
# video: plots


def plot_video_rd(report: VideoReport, path: Path) -> Path | None:
    """PSNR against bpp, one panel per group: each anchor's rate points as a line, each tokenizer
    as a point."""
    plt = pyplot(warn=True)
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
    return save_figure(plt, fig, path)


def plot_video_grid(report: VideoReport, path: Path, max_bytes: int = MAX_PLOT_BYTES, crop: int = 128
                    ) -> Path | None:
    """The centre ``crop`` x ``crop`` of the middle frame of one clip per group: original, each
    tokenizer, each anchor at the first tokenizer's rate, at 1:1 pixels (PSNR: the whole frame);
    colour bits, then rows, are dropped until the PNG fits in ``max_bytes``."""
    plt = pyplot()
    if plt is None or not report.grid:
        return None
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
    canvas = draw_grid(plt, rows)
    # PNG spends ~12 bits per pixel on this content: keep fewer bits per channel (5 bits is an error of
    # at most 7 levels, ~41 dB, far above every codec here), then fewer rows, until it fits
    for bits, n in [(b, len(rows)) for b in (8, 7, 6, 5)] + [(5, k) for k in range(len(rows) - 1, 0, -1)]:
        if save_png(canvas[:n * canvas.shape[0] // len(rows)], path, bits) <= max_bytes:
            report.grid_note = f"{n} of {len(rows)} rows, colours with {bits} bits per channel"
            break
    return path


# ------------------------------------------------------------------------------------------------
# video: command line


#: what each file of recipes/data/fetch_video.py is, for the section header
VIDEO_SPLIT_NAMES = {"bench": "the benchmark split", "val": "the validation split (for design choices, not for "
                     "reported numbers)"}


def video_heldout_description(path: Path) -> str:
    split = path.parent / "split.json"
    part = path.stem.rsplit("_", 1)[0]
    where = rel(path)
    if split.exists():
        which = VIDEO_SPLIT_NAMES.get(part, "clips given with --heldout")
        try:
            sources = [n for n, src in json.loads(split.read_text()).get("real_sources", {}).items()
                       if src.get("part") == part]
        except (OSError, ValueError):
            sources = []
        where = (f"{which}, {where}" + (f" (real sources: {', '.join(sources)})" if sources else "")
                 + f"; what each clip is: {rel(split)}. The camera clips of the training sources are held out "
                 "by time region, after a gap, the others whole; pan-and-zoom clips move over held-out photos; a "
                 "scene cut joins two held-out shots of the same split (\"worst PSNR at cut\": the worst of the "
                 f"frames {CUT_WINDOW[0]:+d}..{CUT_WINDOW[1] - 1:+d} around the cut, averaged over the cut clips). "
                 "Held-out sources are divided into a validation split (training-time validation and design "
                 "choices) and this benchmark split (reported numbers only) by source (recipes/data/fetch_video.py)"
                 ", so nothing here was seen in training or tuned on")
    return where


def bench_video(args: argparse.Namespace) -> tuple[Section, dict[str, Path]]:
    candidates = from_args(load_video_candidates, args)
    clips = load_video_heldout(args.heldout, args.limit)
    announce(candidates, f"{len(clips)} clips from {args.heldout}")
    image = None if args.no_agreement else args.agreement_image
    report = run_video(candidates, clips, multiples=args.rate_multiples, threads=args.threads, repeat=args.repeat,
                       image_folder=image, split_shots=getattr(args, "split_shots", True))
    plots = draw_plots(report, args.plots, {"rd": (plot_video_rd, "video_rd.png"),
                                            "grid": (plot_video_grid, "video_grid.png")}, write=not args.no_write)
    body = render_video_section(report, command=command_line(), heldout=video_heldout_description(args.heldout),
                                plots=plots, results_dir=args.results.parent, notes=args.note or ())
    return Section("Video reconstruction", body), plots
