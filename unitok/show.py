"""Pictures of tokens a person can read (``unitok show``).

- ``<name>.scales.png`` (an image): the original and the reconstruction after each scale
  ``k = 1..K`` of a next-scale tokenizer, side by side at the original size (a single-scale
  tokenizer has one reconstruction). Scales after ``k`` are decoded as ``MISSING``, so panel ``k``
  is the partial residual sum a truncated sequence decodes to.
- ``<name>.spectrogram.png`` (audio): log-mel spectrograms of the original and of the
  reconstruction with 1, half and all residual levels, stacked top to bottom, low frequencies at
  the bottom of each panel.
- ``<name>.frames.png`` (video): a grid: a few frames of the original (first row) and of the
  reconstruction (second row); the third row is the first latent frame after each scale.
- ``<name>.tokens.png`` (any sequence): one cell per token in rows of fixed width, left to right
  and top to bottom; the hue says what the token is (text, image, video, audio codes, shape tokens,
  other special tokens, ids outside the space) and the brightness alternates from group to group,
  so group boundaries show.

No text is drawn: ``<name>.show.json`` next to the pictures says what each panel is (its box in
pixels, tokens, bits and PSNR) and lists the colours. Everything is drawn with numpy and torch and
written through ``unitok.media.Image`` (no plotting library).

Sources: a media file (its original is shown beside the reconstructions), a token file of
``unitok encode`` or a bare id list (reconstructions only; a list without groups gets the groups
the tokenizer's layouts give it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import MediaError, TokenSequenceError
from .layout import MISSING, NextScale
from .media import Audio, Image, Video, kind_of, open_media
from .sequence import Span, TokenSequence
from .space import BEGIN, END, DIM_BASE, NAMED_SLOTS, TokenSpace

#: Token-map colours (RGB) of even groups; odd groups are ``ODD_GROUP_SHADE`` times as bright.
COLOURS = {
    "text": (70, 130, 230),
    "image": (60, 190, 80),
    "video": (240, 150, 30),
    "audio": (190, 80, 210),
    "dim": (240, 220, 60),        # shape tokens of a media header
    "special": (230, 60, 60),     # bos, eos, sep, begin / end, pad, eol, eof, reserved
    "unknown": (140, 140, 140),   # ids outside the token space
}
ODD_GROUP_SHADE = 0.55
BACKGROUND = (20, 20, 20)        # the rest of the last row, and the gaps between panels
GAP = 4                          # pixels between panels
MAX_SPECTROGRAM_COLUMNS = 2000   # longer audio is averaged down to this many columns
MIN_SPECTROGRAM_COLUMNS = 480    # shorter audio gets wider columns
VIDEO_FRAMES_SHOWN = 4
# magma-like colour map of the spectrograms, dark (quiet) to light (loud)
_CMAP = np.array([(0, 0, 4), (60, 15, 110), (150, 40, 125), (230, 80, 95), (252, 165, 110), (252, 250, 190)],
                 dtype=np.float64)
_DYNAMIC_RANGE_DB = 80.0


@dataclass
class Picture:
    """One picture to write: ``<name>.<kind>.png`` and its entry in the legend."""

    kind: str                 # "scales", "spectrogram", "frames", "tokens"
    image: Image
    legend: dict = field(default_factory=dict)


@dataclass
class Segment:
    """A media segment of a token sequence, parsed: ``ids[start:stop]`` (begin to end token)."""

    modality: str
    start: int
    stop: int
    header: dict[str, int]
    layout: object           # the codec's unitok.layout layout for this header
    codes: object            # the codes container (``MISSING`` where the body lacks a code)


# -- token map -----------------------------------------------------------------------------------


def token_categories(space: TokenSpace, ids: np.ndarray) -> list[str]:
    """Category (a key of ``COLOURS``) of each id."""
    ids = np.asarray(ids, dtype=np.int64)
    which = space.modality_of(ids)
    digit = ids - space.text_vocab_size - NAMED_SLOTS
    out = []
    for i, w in enumerate(which.tolist()):
        if w < 0:
            out.append("unknown")
        elif space.ranges[w].modality != "special":
            out.append(space.ranges[w].modality)
        else:
            out.append("dim" if 0 <= digit[i] < DIM_BASE else "special")
    return out


def _hex(rgb) -> str:
    return "#" + "".join(f"{v:02x}" for v in rgb)


def token_map(seq: TokenSequence, space: TokenSpace, *, width: int = 64, cell: int = 4) -> Picture:
    """The map of a sequence: token ``i`` is the ``cell`` x ``cell`` square at row ``i // width``,
    column ``i % width``; its colour is ``COLOURS[category]``, times ``ODD_GROUP_SHADE`` in odd
    groups. Returns a picture of ``width * cell`` x ``ceil(len / width) * cell`` pixels (one
    row for an empty sequence)."""
    n = len(seq.ids)
    names = list(COLOURS)
    palette = np.array([COLOURS[c] for c in names], dtype=np.float64)
    cats = np.array([names.index(c) for c in token_categories(space, seq.ids)], dtype=np.int64)
    shade = np.where(np.asarray(seq.groups) % 2 == 1, ODD_GROUP_SHADE, 1.0)
    colours = np.round(palette[cats] * shade[:, None]).astype(np.uint8) if n else np.zeros((0, 3), np.uint8)
    rows = max(1, math.ceil(n / width))
    grid = np.empty((rows * width, 3), dtype=np.uint8)
    grid[:] = BACKGROUND
    grid[:n] = colours
    pixels = np.repeat(np.repeat(grid.reshape(rows, width, 3), cell, 0), cell, 1)
    counts = {c: int((cats == names.index(c)).sum()) for c in names}
    legend = {
        "what": f"one {cell}x{cell} cell per token, {width} tokens per row, left to right, top to bottom",
        "colours": {c: _hex(COLOURS[c]) for c in names},
        "odd_group_shade": ODD_GROUP_SHADE, "background": _hex(BACKGROUND),
        "cell": cell, "width": width, "tokens": n,
        "groups": int(seq.groups[-1]) + 1 if n else 0,
        "tokens_per_category": {c: k for c, k in counts.items() if k},
        "spans": [[s.modality, s.start, s.stop] for s in seq.spans],
    }
    return Picture("tokens", Image.from_array(pixels, channels_last=True), legend)


# -- parsing a sequence --------------------------------------------------------------------------


def segments(tok, ids: np.ndarray) -> list[Segment]:
    """The media segments of ``ids`` whose modality ``tok`` has a tokenizer, parsed leniently (a
    truncated body leaves its missing codes ``MISSING``). A header that cannot be read is a
    ``TokenSequenceError`` naming its position."""
    ids = np.asarray(ids, dtype=np.int64)
    space = tok.space
    marks = np.array([space.special(t) for t in (*BEGIN.values(), *END.values())], dtype=np.int64)
    out = []
    for modality, codec in tok.media.items():
        for begin in np.flatnonzero(ids == space.special(BEGIN[modality])).tolist():
            widths = codec.header_widths()
            try:
                values = space.dims_from_ids(ids[begin + 1:begin + 1 + sum(widths)], len(widths), widths)
            except TokenSequenceError as e:
                fields = ", ".join(codec.header_fields)
                raise TokenSequenceError(f"{modality} header ({fields}): {e.reason}", begin + 1 + (e.position or 0)) \
                    from None
            header = dict(zip(codec.header_fields, values))
            try:
                codec.check_header(header)
            except TokenSequenceError as e:
                raise TokenSequenceError(f"{modality} header {header}: {e.reason}", begin) from None
            layout = codec.layout(header)
            if len(layout) > tok.max_segment_tokens:     # before the layout's plan is allocated
                raise TokenSequenceError(f"{modality} header {header} asks for {len(layout)} tokens, more than "
                                         f"the limit of {tok.max_segment_tokens}", begin)
            body = begin + 1 + sum(widths)
            later = np.flatnonzero(np.isin(ids[body:], marks))
            stop = min(body + int(later[0]) if len(later) else len(ids), body + len(layout))
            levels, codes = space.media_codes(modality, ids[body:stop])
            codes, _ = layout.unflatten(levels, codes, strict=False, what=f"{modality} segment")
            close = stop + 1 if stop < len(ids) and ids[stop] == space.special(END[modality]) else stop
            out.append(Segment(modality, begin, close, header, layout, codes))
    return sorted(out, key=lambda s: s.start)


def infer_groups(tok, ids: np.ndarray, found: list[Segment]) -> tuple[np.ndarray, list[Span]]:
    """Groups and spans of a bare id list, as ``tok.encode`` assigns them: text by the text layout,
    each other special token a group, a media header one group, a media body its layout's groups."""
    ids = np.asarray(ids, dtype=np.int64)
    groups = np.zeros(len(ids), dtype=np.int64)
    spans, g, pos = [], 0, 0
    text = (ids >= 0) & (ids < tok.space.text_vocab_size)
    for seg in [*found, None]:
        stop = seg.start if seg is not None else len(ids)
        while pos < stop:                      # text runs and lone special tokens before the segment
            if text[pos]:
                run = pos + int(np.argmin(np.append(text[pos:stop], False)))
                groups[pos:run] = g + tok.text_layout.groups(run - pos)
                g = int(groups[run - 1]) + 1
                spans.append(Span("text", pos, run))
                pos = run
            else:
                groups[pos] = g
                g, pos = g + 1, pos + 1
        if seg is None:
            break
        body = seg.start + 1 + sum(tok.media[seg.modality].header_widths())
        closed = seg.stop > body and ids[seg.stop - 1] == tok.space.special(END[seg.modality])
        end = seg.stop - closed
        groups[seg.start], groups[seg.start + 1:body] = g, g + 1      # begin token, header
        g += 2
        n = end - body
        layout_groups = np.asarray(seg.layout.groups)
        groups[body:end] = g + (layout_groups[:n] if n <= len(layout_groups) else np.arange(n))
        g = int(groups[end - 1]) + 1 if n else g
        if closed:
            groups[end] = g
            g += 1
        spans.append(Span(seg.modality, seg.start, seg.stop))
        pos = seg.stop
    return groups, spans


# -- helpers -------------------------------------------------------------------------------------


def _hwc(x: torch.Tensor) -> np.ndarray:
    """[3, H, W] float in [0, 1] -> [H, W, 3] uint8."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _rgb(image: Image, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Image -> [3, H, W] float in [0, 1], resized (bilinear) to ``size`` when given."""
    x = image.to_rgb().to_float()
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
    return x


def _grid(cells: list[list[np.ndarray | None]], height: int, width: int) -> tuple[np.ndarray, list[list[dict]]]:
    """Rows of ``[height, width, 3]`` uint8 panels (None: empty) -> one picture with ``GAP`` pixels
    between them, and each panel's box ``{"x", "y", "width", "height"}``."""
    cols = max(len(r) for r in cells)
    out = np.empty((len(cells) * (height + GAP) - GAP, cols * (width + GAP) - GAP, 3), dtype=np.uint8)
    out[:] = BACKGROUND
    boxes = []
    for r, row in enumerate(cells):
        boxes.append([])
        for c, panel in enumerate(row):
            y, x = r * (height + GAP), c * (width + GAP)
            if panel is not None:
                out[y:y + height, x:x + width] = panel
            boxes[-1].append({"x": x, "y": y, "width": width, "height": height})
    return out, boxes


def _psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    from .metrics import psnr

    return round(float(psnr(x[None], y[None])[0]), 2)


def _scale_prefixes(scales: list, level_of_scale, sizes: list[int]) -> list[tuple[int, float]]:
    """(tokens, bits) of the codes of scales ``1..k``, for each ``k``."""
    out, tokens, bits = [], 0, 0.0
    for (h, w), level in zip(scales, level_of_scale):
        tokens += h * w
        bits += h * w * math.log2(sizes[level])
        out.append((tokens, round(bits, 1)))
    return out


def _keep_scales(maps: list, k: int) -> list:
    """A pyramid of code maps with scales after the first ``k`` replaced by ``MISSING``."""
    return [np.asarray(m) if s < k else np.full(np.shape(m), MISSING, dtype=np.int64) for s, m in enumerate(maps)]


# -- image ---------------------------------------------------------------------------------------


def image_scales(codec, seg: Segment, original: Image | None = None) -> Picture:
    """The original (when given) and the reconstruction after each scale, left to right."""
    H, W = seg.header["height"], seg.header["width"]
    if isinstance(seg.layout, NextScale):
        scales, levels = list(seg.layout.scales), list(seg.layout.level_of_scale)
        recon = [codec.decode_item(seg.header, _keep_scales(seg.codes, k)) for k in range(1, len(scales) + 1)]
    else:   # one scale: the whole reconstruction
        scales, levels = [(len(seg.layout), 1)], [0]
        recon = [codec.decode_item(seg.header, seg.codes)]
    ref = _rgb(original, (H, W)) if original is not None else None
    panels, info = [], []
    if ref is not None:
        panels.append(_hwc(ref))
        info.append({"what": "original"})
    for k, (item, (tokens, bits)) in enumerate(zip(recon, _scale_prefixes(scales, levels, codec.codebook_sizes)), 1):
        x = _rgb(item, (H, W))
        panels.append(_hwc(x))
        entry = {"what": f"reconstruction from scales 1..{k} of {len(scales)}", "scales": k, "tokens": tokens,
                 "bits": bits}
        if ref is not None:
            entry["psnr_db"] = _psnr(x, ref)
        info.append(entry)
    pixels, boxes = _grid([panels], H, W)
    legend = {"what": "left to right: " + ("the original, then " if ref is not None else "")
                      + "the reconstruction after each scale (later scales missing)",
              "panels": [dict(box, **entry) for box, entry in zip(boxes[0], info)]}
    return Picture("scales", Image.from_array(pixels, channels_last=True), legend)


# -- video ---------------------------------------------------------------------------------------


def video_frames(codec, seg: Segment, original: Video | None = None) -> Picture:
    """Rows: original frames (when given), reconstructed frames (up to ``VIDEO_FRAMES_SHOWN``,
    evenly spaced), and the first latent frame after each of its scales (the original first
    frame first, when given)."""
    H, W, T = seg.header["height"], seg.header["width"], seg.header["frames"]
    video = codec.decode_item(seg.header, seg.codes)
    picks = sorted({round(i * (T - 1) / max(1, VIDEO_FRAMES_SHOWN - 1)) for i in range(min(T, VIDEO_FRAMES_SHOWN))})
    frame = lambda v, t: _rgb(Image(v.frames[t]), (H, W))  # noqa: E731
    rows, info = [], []
    if original is not None:
        rows.append([_hwc(frame(original, t)) for t in picks])
        info.append([{"what": f"original frame {t}"} for t in picks])
    rows.append([_hwc(frame(video, t)) for t in picks])
    info.append([dict({"what": f"reconstructed frame {t}"},
                      **({"psnr_db": _psnr(frame(video, t), frame(original, t))} if original is not None else {}))
                 for t in picks])
    first = seg.codes[0]
    scales, levels = list(seg.layout.scales), list(seg.layout.level_of_scale)
    one = dict(seg.header, frames=1)       # the first latent frame alone is the first frame (causal)
    row, row_info = [], []
    if original is not None:
        row.append(_hwc(frame(original, 0)))
        row_info.append({"what": "original frame 0"})
    for k, (tokens, bits) in enumerate(_scale_prefixes(scales, levels, codec.codebook_sizes), 1):
        x = frame(codec.decode_item(one, [_keep_scales(first, k)]), 0)
        row.append(_hwc(x))
        entry = {"what": f"frame 0 from scales 1..{k} of {len(scales)} of the first latent frame",
                 "scales": k, "tokens": tokens, "bits": bits}
        if original is not None:
            entry["psnr_db"] = _psnr(x, frame(original, 0))
        row_info.append(entry)
    rows.append(row)
    info.append(row_info)
    pixels, boxes = _grid(rows, H, W)
    legend = {"what": "rows: " + ("original frames, " if original is not None else "")
                      + "reconstructed frames, then the first frame after each scale of its latent frame",
              "panels": [dict(b, **e) for brow, irow in zip(boxes, info) for b, e in zip(brow, irow)]}
    return Picture("frames", Image.from_array(pixels, channels_last=True), legend)


# -- audio ---------------------------------------------------------------------------------------


def log_mel(audio: Audio, rate: int) -> torch.Tensor:
    """Mono log-mel spectrogram in dB at ``rate`` Hz (resampled), ``[n_mels, frames]``."""
    import torchaudio.functional as AF

    from .metrics import MelSpectrograms

    x = audio.samples.float().mean(0)
    if audio.sample_rate != rate:
        x = AF.resample(x, audio.sample_rate, rate)
    n_fft = 2 ** round(math.log2(rate * 0.043))       # ~43 ms windows: 1024 at 24 kHz
    mels = MelSpectrograms(rate, windows=(n_fft,), mels=(min(80, n_fft // 4),))
    return mels(x[None])[0][0] * (20 / math.log(10))


def _colour_map(db: torch.Tensor, top: float) -> np.ndarray:
    """[n_mels, frames] dB -> [n_mels, frames, 3] uint8, ``top - 80 dB .. top`` over the map,
    low frequencies at the bottom."""
    v = ((db - top) / _DYNAMIC_RANGE_DB + 1).clamp(0, 1).flip(0).numpy()
    anchors = np.linspace(0, 1, len(_CMAP))
    return np.stack([np.interp(v, anchors, _CMAP[:, c]) for c in range(3)], -1).round().astype(np.uint8)


def audio_spectrograms(codec, seg: Segment, original: Audio | None = None) -> Picture:
    """Log-mel spectrograms stacked top to bottom: the original (when given), then the
    reconstruction from 1, half and all of the sequence's residual levels."""
    codes = np.asarray(seg.codes)
    K, T = codes.shape
    counts = sorted({1, (K + 1) // 2, K})
    recon = [codec.decode_item(seg.header, np.where(np.arange(K)[:, None] < n, codes, MISSING)) for n in counts]
    rate = recon[-1].sample_rate
    specs = ([log_mel(original, rate)] if original is not None else []) + [log_mel(a, rate) for a in recon]
    frames = min(s.shape[-1] for s in specs)
    specs = [s[:, :frames] for s in specs]
    if frames > MAX_SPECTROGRAM_COLUMNS:   # columns averaged in power, not in dB
        specs = [10 * torch.log10(F.adaptive_avg_pool1d(10 ** (s[None] / 10), MAX_SPECTROGRAM_COLUMNS)[0])
                 for s in specs]
    top = float(specs[0].max())
    stretch = max(1, MIN_SPECTROGRAM_COLUMNS // specs[0].shape[-1])   # short audio: wider columns
    panels = [np.repeat(np.repeat(_colour_map(s, top), 2, 0), stretch, 1) for s in specs]   # 2 rows per band
    sizes = codec.codebook_sizes
    info = [{"what": "original"}] if original is not None else []
    for n in counts:
        info.append({"what": f"reconstruction from levels 1..{n} of {K}", "levels": n, "tokens": n * T,
                     "bits": round(T * sum(math.log2(s) for s in sizes[:n]), 1)})
    pixels, boxes = _grid([[p] for p in panels], panels[0].shape[0], panels[0].shape[1])
    legend = {"what": "top to bottom: log-mel spectrograms (low frequencies at the bottom of each panel, "
                      f"{_DYNAMIC_RANGE_DB:g} dB from dark to light) of "
                      + ("the original, then " if original is not None else "") + "the reconstruction from "
                      "1, half and all residual levels", "sample_rate": rate,
              "panels": [dict(b[0], **e) for b, e in zip(boxes, info)]}
    return Picture("spectrogram", Image.from_array(pixels, channels_last=True), legend)


# -- files ---------------------------------------------------------------------------------------

DRAW = {"image": image_scales, "video": video_frames, "audio": audio_spectrograms}


def _media_parts(tok, item) -> list:
    """The media items an encoded item holds, in segment order (a video's sound track is its
    own segment when the suite has an audio tokenizer), as ``tok.encode`` preprocesses them."""
    if isinstance(item, (Image, Video, Audio)):
        modality = type(item).__name__.lower()
        if modality in tok.media:
            item = tok.preprocess.apply(item, tok.media[modality].pixel_stride)
        parts = tok.preprocess.shots(item) if isinstance(item, Video) and "video" in tok.media else [item]
        if isinstance(item, Video) and item.audio is not None and "audio" in tok.media:
            parts.append(item.audio)
        return parts
    return []


def pictures(tok, seq: TokenSequence, originals: list | None = None, *, width: int = 64,
             cell: int = 4) -> list[Picture]:
    """The token map of ``seq`` and a picture per media segment (``originals``: the media items
    the segments were encoded from, in order, or None)."""
    found = segments(tok, seq.ids)
    if not seq.spans and len(seq.ids):          # a bare id list: the groups its layouts give it
        groups, spans = infer_groups(tok, seq.ids, found)
        seq = TokenSequence(seq.ids, groups, spans, seq.fingerprint)
    out = [token_map(seq, tok.space, width=width, cell=cell)]
    originals = list(originals or [])
    for i, seg in enumerate(found):
        original = originals[i] if i < len(originals) else None
        picture = DRAW[seg.modality](tok.media[seg.modality], seg, original)
        picture.legend["segment"] = {"modality": seg.modality, "start": seg.start, "stop": seg.stop,
                                     "header": seg.header}
        out.append(picture)
    return out


TOKEN_SUFFIX = ".tokens.json"


def is_token_file(path: Path) -> bool:
    return path.name.endswith(TOKEN_SUFFIX) or (path.suffix in (".json", ".txt") and _looks_like_ids(path))


def _looks_like_ids(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", "replace").strip()
    except OSError:
        return False
    return head.startswith(("[", "{")) or (bool(head) and all(c.isdigit() or c in " ,\n\r\t" for c in head))


def output_name(path: Path) -> str:
    """The ``<name>`` of an input's pictures: a media file's name (``photo.jpg``), a token file's
    without the token suffix (``photo.jpg.tokens.json`` -> ``photo.jpg``)."""
    path = Path(path)
    if path.name.endswith(TOKEN_SUFFIX):
        return path.name[:-len(TOKEN_SUFFIX)]
    return path.stem if is_token_file(path) else path.name


def show_file(tok, path: str | Path, out_dir: str | Path, *, width: int = 64, cell: int = 4) -> list[Path]:
    """Write the pictures of one file (a media file, a text file or a token file) into
    ``out_dir`` as ``<name>.<kind>.png`` (several media parts: ``<name>.partN.<kind>.png``),
    and ``<name>.show.json``, their legend. Returns the written paths."""
    path, out_dir = Path(path), Path(out_dir)
    name = output_name(path)
    if is_token_file(path):
        seq = TokenSequence.load(path)
        tok.space.check_fingerprint(seq.fingerprint, source=str(path))
        originals = []
    else:
        if kind_of(path) == "text":
            try:
                item = path.read_bytes()
            except OSError as e:
                raise MediaError(f"cannot read ({e.strerror})", str(path)) from None
        elif kind_of(path) is None:
            raise MediaError("unknown file type; expected a media file, a text file or a token file "
                             f"(*{TOKEN_SUFFIX}, a list of ids)", str(path))
        else:
            item = open_media(path, limits=tok.limits)
        seq = tok.encode(item)
        originals = _media_parts(tok, item)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        made = pictures(tok, seq, originals, width=width, cell=cell)
    except TokenSequenceError:      # a broken header: the map still shows where the ids go wrong
        token_map(seq, tok.space, width=width, cell=cell).image.save(out_dir / f"{name}.tokens.png")
        raise
    legend, written = {"source": str(path), "tokens": len(seq.ids), "pictures": {}}, []
    for i, picture in enumerate(made):
        same_kind = sum(p.kind == picture.kind for p in made) > 1     # two images in one document
        part = f".part{i - 1}" if same_kind else ""                   # made[0] is the token map
        target = out_dir / f"{name}{part}.{picture.kind}.png"
        picture.image.save(target)
        legend["pictures"][target.name] = dict(picture.legend, width_px=picture.image.width,
                                               height_px=picture.image.height)
        written.append(target)
    target = out_dir / f"{name}.show.json"
    target.write_text(json.dumps(legend, indent=1) + "\n")
    return [*written, target]
