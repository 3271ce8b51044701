"""Audio reconstruction (``python benchmarks/reconstruction.py --modality audio``): the section
"## Audio reconstruction" of ``benchmarks/RESULTS.md`` and ``plots/audio_rd.png``.

Every audio tokenizer under test codes the held-out speech and music (the benchmark split
``data/audio/bench/<category>/`` unless ``--heldout`` names another folder; the validation split
``data/audio/val`` is for design choices; long music files cut into evenly spread windows) at each
target rate (1.5 / 3 / 6 kbps: the most residual levels within it), and Opus (libopus through PyAV)
codes the same clips at the same targets in the same run. Per category: kbps (code bits / seconds;
for Opus the packet payload, which libopus keeps above its own floor whatever it is asked),
tokens/s, SI-SDR, multi-resolution mel distance, STOI, wideband PESQ and the change of integrated
loudness (BS.1770; ``unitok.metrics``), codebook usage per level; then encode / decode speed (x real
time, 1 and 2 CPU threads, and a GPU when there is one) and the peak memory of encoding a 60-minute
input in a fresh process (``probe.py``).
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
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unitok import Audio, MediaError
from unitok import metrics

from candidates import (announce, candidate_folders, check_unique, codec_type, from_args, load_codec,
                        parameter_count)
from report import (RESULTS, ROOT, Section, command_line, default_devices, draw_plots, fmt, interpolate,
                    markdown_table, progress_bar, pyplot, rel, rel_to, run_lines, save_figure)
from timing import run_probe

AUDIO_HELDOUT = ROOT / "data" / "audio" / "bench"     # the benchmark split (recipes/data/fetch_audio.py)
AUDIO_VAL = ROOT / "data" / "audio" / "val"           # the validation split, for design choices
AUDIO_RATE = 24_000                       # the held-out files' rate; every metric runs at it
AUDIO_KBPS = (1.5, 3.0, 6.0)              # the rates the issue asks for (levels 2, 4, 8 at 75 Hz)
AUDIO_CATEGORIES = ("speech", "music")
AUDIO_FILE_SUFFIXES = (".flac", ".wav", ".ogg", ".oga", ".opus", ".mp3")
#: metric key -> column title; lower is better for the mel distance, nearer 0 for the loudness change
AUDIO_METRICS = {"si_sdr": "SI-SDR (dB)", "mel": "mel distance", "stoi": "STOI", "pesq": "PESQ (WB)",
                 "loudness": "loudness change (dB)"}
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
        kinds = ", ".join(f"*{x}" for x in AUDIO_FILE_SUFFIXES)
        found = [c for c in categories if c not in missing]
        only = (f" To benchmark the categories that are there, pass --categories {' '.join(found)}." if found else "")
        sys.exit(f"no held-out audio for {', '.join(missing)} in {folder} (expected {folder}/<category>/ with "
                 f"{kinds}).{only} Fetch the held-out set with:\n    python recipes/data/fetch_audio.py\n"
                 f"then rerun (or pass --heldout DIR "
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
    serves = ", ".join(f"{r:g}" for r in codec.bitrates.values())
    causal = "causal" if getattr(codec.cfg, "causal", False) else "non-causal"
    kinds = getattr(codec.cfg, "encoder", None), getattr(codec.cfg, "decoder", None)
    design = f"{kinds[0]} encoder, {kinds[1]} decoder, " if None not in kinds else ""
    return (f"{codec_type(codec)}, {design}"
            f"{codec.sample_rate / 1000:g} kHz, "
            f"hop {codec.hop} ({codec.frame_rate:g} frames/s), {codec.levels} residual levels of {sizes[0]} codes "
            f"({math.log2(sizes[0]):.4g} bits), {causal}, {parameter_count(codec)}; "
            f"serves {serves} kbps")


def load_audio_candidates(suite: Path | None, checkpoints: Sequence[Path], *, use_suite: bool = True,
                          device: str = "cpu") -> list[AudioCandidate]:
    """The suite's audio tokenizer (``<suite>/audio``; the bundled one when ``suite`` is None) and
    one candidate per bare audio-tokenizer folder in ``checkpoints``."""
    out = []
    for name, folder in candidate_folders("audio", suite, checkpoints, use_suite=use_suite):
        codec = load_codec(folder, "audio", "an audio codec with residual levels", device=device,
                           accept=lambda codec: hasattr(codec, "bitrates"))
        codec.eval()      # a quantizer in training mode would update its codebooks while we measure
        out.append(AudioCandidate(name, codec, folder, describe_audio_codec(codec)))
    check_unique([c.name for c in out])
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
    out_rate = getattr(codec, "output_rate", codec.sample_rate)     # NeuCodec decodes at another rate
    with torch.inference_mode():
        codes = codec.encode(x[None, None].to(codec.device), levels)
        y = codec.decode(codes, -(-x.shape[-1] * out_rate // codec.sample_rate))[0, 0].float().cpu()
    if out_rate != AUDIO_RATE:
        y = AF.resample(y, out_rate, AUDIO_RATE)
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
    """SI-SDR, mel distance, STOI, wideband PESQ and loudness change (reconstruction minus
    reference integrated loudness, dB) of one reconstruction (NaN where a measure is undefined for
    the clip or its package is missing). ref, rec: [N] at ``AUDIO_RATE``."""
    r, d = ref[None], rec[None]
    out = {"si_sdr": float(metrics.si_sdr(d, r)[0]), "mel": float(metrics.mel_distance(mels, d, r)[0])}
    missing = speech_metrics_missing()
    out["stoi"] = math.nan if "pystoi" in missing else float(metrics.stoi(ref, rec, AUDIO_RATE))
    out["pesq"] = math.nan if "pesq" in missing else float(metrics.pesq(ref, rec, AUDIO_RATE))
    out["loudness"] = float(metrics.loudness_change(ref, rec, AUDIO_RATE))
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


def _collect(rows: list[dict[str, float]]) -> dict[str, np.ndarray]:
    return {k: np.array([r[k] for r in rows], dtype=np.float64) for k in AUDIO_METRICS}


def run_audio_codec(cand: AudioCandidate, clips: Sequence[Clip], target: float, levels: int, mels, *,
                    progress: bool = True) -> AudioRun:
    codec = cand.codec
    sizes = codec.codebook_sizes      # the MediaTokenizer contract: ours and adapted codecs alike
    size = max(sizes)
    used = {c.category: np.zeros((levels, size), dtype=bool) for c in clips}
    bits, tokens, rows = [], [], []
    for clip in progress_bar(clips, f"{cand.name} @ {target:g} kbps", progress, "clip"):
        rec, codes = codec_round_trip(codec, clip.wav, levels)
        for lv in range(levels):
            used[clip.category][lv, codes[lv].numpy()] = True
        tokens.append(codes.numel())
        bits.append(sum(codes[lv].numel() * math.log2(sizes[lv]) for lv in range(levels)))
        rows.append(audio_scores(clip.wav, rec, mels))
    usage = {cat: [(lv, int(u[lv].sum()), sizes[lv]) for lv in range(levels)] for cat, u in used.items()}
    return AudioRun(cand.name, target, levels, np.array(bits), _collect(rows), np.array(tokens, dtype=np.float64),
                    usage=usage)


def run_opus(clips: Sequence[Clip], target: float, mels, workdir: Path, *, progress: bool = True) -> AudioRun:
    path = workdir / "anchor.opus"
    payload, files, rows = [], [], []
    for clip in progress_bar(clips, f"{OPUS} @ {target:g} kbps", progress, "clip"):
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


def audio_probe(mode: str, cand: AudioCandidate, signal: torch.Tensor, levels: int, workdir: Path, *,
                threads: int = 1, device: str = "cpu", repeat: int = 3, passive: bool = False) -> dict:
    """Run ``probe.py audio-<mode>`` on ``signal`` [N] in a fresh process with ``OMP_NUM_THREADS=threads``
    (``timing.run_probe``); ``passive`` sets ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep
    instead of spinning). Returns the probe's JSON."""
    npy = workdir / "probe_signal.npy"
    np.save(npy, signal.clamp(-1, 1).numpy().astype(np.float32))
    argv = [f"audio-{mode}", str(cand.folder), str(npy), str(threads), device, str(repeat), "--levels", str(levels)]
    try:
        return run_probe(argv, threads=threads, passive=passive, what=f"audio {mode}")
    finally:
        npy.unlink()


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
    devices = list(devices) if devices is not None else default_devices()
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
        return fmt(v, 3)
    if col in ("SI-SDR (dB)", "PESQ (WB)", "loudness change (dB)"):
        return fmt(v, 2)
    return fmt(v, 1)


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
        for title, key in (("mel distance", "mel distance"), ("STOI", "STOI"), ("PESQ", "PESQ (WB)")):
            ours, theirs = row[key], o[key]
            line[title] = f"{fmt(ours, 3)} / {fmt(theirs, 3)}"
            line[f"{title} (tokenizer)"] = ours
            if ours is None or theirs is None:
                line[f"{title} winner"] = "n/a"
            else:
                better = ours < theirs if title == "mel distance" else ours > theirs
                line[f"{title} winner"] = "tokenizer" if better else ("tie" if ours == theirs else OPUS)
            curve = [r for r in opus_rows if r[key] is not None]
            line[f"Opus {title} @ same kbps"] = interpolate(np.array([r["kbps"] for r in curve]),
                                                           np.array([r[key] for r in curve]), row["kbps"])
        out.append(line)
    return out


VERSUS_COLUMNS = ("tokenizer", "target kbps", "kbps", "Opus kbps", "mel distance", "mel distance winner",
                  "Opus mel distance @ same kbps", "STOI", "STOI winner", "Opus STOI @ same kbps", "PESQ",
                  "PESQ winner", "Opus PESQ @ same kbps")


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


def _same_spend_lines(row: dict, category: str, pesq_margin: float) -> list[str]:
    """Issue 18's reading of a speech row: the tokenizer against Opus interpolated to the kbps the
    tokenizer really spent (mel distance and STOI at least as good, PESQ within ``pesq_margin``)."""
    cols = {t: (row[f"{t} (tokenizer)"], row[f"Opus {t} @ same kbps"]) for t in ("mel distance", "STOI", "PESQ")}
    if any(o is None or m is None for m, o in cols.values()):
        return [f"- {row['tokenizer']} against Opus at its own spent {row['kbps']:.3f} kbps on {category}: n/a "
                "(outside the rates Opus reached, or a metric is not installed)"]
    (mel, o_mel), (st, o_st), (pq, o_pq) = cols.values()
    return [f"- {row['tokenizer']} at least Opus's mel distance and STOI at its own spent {row['kbps']:.3f} kbps on "
            f"{category} (Opus interpolated): {'yes' if mel <= o_mel and st >= o_st else 'no'} (mel {mel:.3f} / "
            f"{o_mel:.3f}, STOI {st:.3f} / {o_st:.3f})",
            f"- {row['tokenizer']} PESQ within {pesq_margin:g} of Opus's at that rate: "
            f"{'yes' if pq >= o_pq - pesq_margin else 'no'} ({pq:.2f} / {o_pq:.2f}, {pq - o_pq:+.2f})"]


def acceptance_lines(report: AudioReport, *, target: float = 6.0, speed: float = 20.0,
                     memory_gib: float = 2.0, pesq_margin: float = 0.3) -> list[str]:
    """Issues 4 and 18's acceptance criteria, each with the measured numbers (a reading aid, no
    verdict beyond the arithmetic)."""
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
            if cat == "speech":
                lines += _same_spend_lines(row, cat, pesq_margin)
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
        *run_lines(command),
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
        "metric), STOI (pystoi, 0..1) and wideband PESQ (pesq, P.862.2, 1..4.6) over the clips where they are "
        "defined: STOI needs about 0.4 s of non-silent speech and PESQ finds no utterance in some clips, so a "
        "few short clips are left out of those two columns (counts below). STOI and PESQ are speech measures; "
        "on music they are indicative only. loudness change = integrated loudness (ITU-R BS.1770-4, K-weighted and "
        "gated, `torchaudio.functional.loudness` through `unitok.metrics.loudness_change`) of the reconstruction "
        "minus that of the reference, in dB (LU), mean over clips: 0 keeps the level, negative is quieter. Clips "
        "shorter than one 400 ms gating block or silent in the reference have no loudness and are left out of that "
        "column (counts below); a reconstruction silent where the reference is not counts as -70 LUFS, so "
        "dropping a sound is charged, not skipped.",
        *[f"- {n}" for n in notes],
        "",
        "Tokenizers:",
        "",
        *[f"- **{c.name}** (`{rel(c.folder)}`): {c.description}" for c in report.candidates],
        *[f"- {s}" for s in report.skipped],
    ]
    for cat in cats:
        rows = audio_rows(report, cat)
        body += ["", f"### {cat[0].upper() + cat[1:]} ({len(report.indices(cat))} clips, "
                     f"{report.seconds(cat):.1f} s)", "",
                 markdown_table(AUDIO_QUALITY_COLUMNS, rows, _audio_cell, AUDIO_TEXT_COLUMNS)]
        n = len(report.indices(cat))
        gaps = sorted({f"{m.upper()} on {r[m + ' scored']}/{n}" for r in rows for m in ("stoi", "pesq")
                       if r[m + " scored"] < n}
                      | {f"loudness change on {r['loudness scored']}/{n}" for r in rows if r["loudness scored"] < n})
        if gaps:
            body += ["", f"Scored clips where fewer than all: {', '.join(gaps)} (the same clips for every codec "
                         "where the reference decides; a silent reconstruction also has no PESQ)."]
    body += ["", "### Against Opus at the same target rate", "",
             "mel distance, STOI and PESQ as tokenizer / Opus asked for the same target; the winner is the better of "
             "the two (lower mel distance, higher STOI and PESQ). Opus spends more or less than asked (its kbps "
             "column: more at low targets, less at 6 kbps on speech), so \"@ same kbps\" also gives Opus's numbers "
             "interpolated linearly along all its points at the kbps the tokenizer really spent (n/a outside the "
             "range Opus reached): that is the comparison at equal spend. The mel "
             "distance weighs every mel band alike on a log scale, so a codec that drops the upper bands (libopus "
             "narrows its audio bandwidth at low rates) pays for it there more than in STOI or PESQ.", ""]
    for cat in cats:
        body += [f"{cat[0].upper() + cat[1:]}:", "", markdown_table(VERSUS_COLUMNS, versus_opus_rows(report, cat),
                                                                    _audio_cell, AUDIO_TEXT_COLUMNS), ""]
    body += ["Codebook usage per level (codes used at least once / codebook size, at each tokenizer's highest "
             "rate):", "", *audio_usage_lines(report)]
    if plots and "rd" in plots:
        body += ["", f"![rate-quality: mel distance and STOI vs kbps]({rel_to(plots['rd'], results_dir)})"]
    if plots and "spectrograms" in plots:
        body += ["", "Log-mel spectrograms of one clip per category, side by side (the reference, each tokenizer at "
                 "the highest rate all of them reached, and Opus asked for the same rate; one colour scale per row):",
                 "", f"![log-mel spectrograms: reference, tokenizers, Opus]({rel_to(plots['spectrograms'], results_dir)})"]
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
    body += ["", "### Acceptance of issues 4 and 18, as measured", "", *acceptance_lines(report), "",
             f"To rerun with another audio tokenizer folder (e.g. the retrained model): `{rerun}`"]
    return "\n".join(body)


# ------------------------------------------------------------------------------------------------
# audio: plot


def plot_audio_rd(report: AudioReport, path: Path) -> Path | None:
    """Mel distance and STOI against kbps, one column per category: each tokenizer's rates as a
    line, Opus's as another."""
    plt = pyplot(warn=True)
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
    return save_figure(plt, fig, path)


def _spectrogram_clip(report: AudioReport, category: str) -> Clip | None:
    """The category's clip the spectrogram figure shows: the first one of at least 2 s (or the
    longest), so every reader's figure shows the same audio."""
    picks = [report.clips[i] for i in report.indices(category)]
    if not picks:
        return None
    long = [c for c in picks if c.seconds >= 2.0]
    return long[0] if long else max(picks, key=lambda c: c.seconds)


def plot_audio_spectrograms(report: AudioReport, path: Path, *, kbps: float | None = None,
                            seconds: float = 3.0) -> Path | None:
    """Side-by-side log-mel spectrograms: one row per category (its ``_spectrogram_clip``, the
    first ``seconds``), columns the reference, each tokenizer at ``kbps`` (default: the highest
    target that every tokenizer reached) and Opus asked for the same rate, all on one colour scale
    per row."""
    plt = pyplot(warn=True)
    if plt is None:
        return None
    reached = [{r.target_kbps for r in report.runs if r.codec == c.name} for c in report.candidates]
    kbps = kbps if kbps is not None else max(set.intersection(*reached) if reached else set(), default=6.0)
    window = 1024                        # 43 ms; 128 mel bands, a hop of 256 samples
    mels = metrics.MelSpectrograms(AUDIO_RATE, windows=(window,), mels=(128,))
    rows = [(cat, clip) for cat in report.categories if (clip := _spectrogram_clip(report, cat)) is not None]
    if not rows:
        return None
    n = round(seconds * AUDIO_RATE)
    with tempfile.TemporaryDirectory() as tmp:
        panels = []
        for cat, clip in rows:
            wav = clip.wav[:n]
            row = [("reference", wav)]
            for cand in report.candidates:
                levels = levels_for(cand.codec, kbps)
                if levels is not None:
                    row.append((f"{cand.name}, {cand.codec.bitrate(levels) / 1000:g} kbps",
                                codec_round_trip(cand.codec, wav, levels)[0]))
            y, payload, _ = opus_round_trip(wav, kbps, Path(tmp) / "clip.opus")
            row.append((f"Opus asked {kbps:g} kbps (spent {payload * 8 / (len(wav) / AUDIO_RATE) / 1000:.1f})", y))
            panels.append((cat, clip, [(label, mels(x[None].float())[0][0].numpy()) for label, x in row]))
    cols = max(len(p[2]) for p in panels)
    fig, axes = plt.subplots(len(panels), cols, figsize=(3.6 * cols, 2.9 * len(panels)), dpi=100, squeeze=False)
    for r, (cat, clip, specs) in enumerate(panels):
        lo, hi = float(np.percentile(specs[0][1], 2)), float(specs[0][1].max())
        for c in range(cols):
            ax = axes[r, c]
            if c >= len(specs):
                ax.axis("off")
                continue
            label, spec = specs[c]
            ax.imshow(spec, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma",
                      extent=(0, spec.shape[1] * window / 4 / AUDIO_RATE, 0, spec.shape[0]))
            ax.set_title(label if c else f"{cat}: {clip.name} ({label})", fontsize=7)
            ax.set_xlabel("s", fontsize=7)
            ax.set_ylabel("mel band" if c == 0 else "", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    return save_figure(plt, fig, path)


# ------------------------------------------------------------------------------------------------
# audio: command line


def _split_summary(split: Path, part: str) -> str:
    """", speech in ar, he, ..." from split.json's record of ``part``'s languages ("" if none)."""
    try:
        langs = json.loads(split.read_text()).get("speech_languages", {}).get(part, [])
    except (OSError, ValueError):
        return ""
    return f" (speech in {len(langs)} languages: {', '.join(langs)})" if langs else ""


#: what each folder of recipes/data/fetch_audio.py is, for the section header
AUDIO_SPLIT_NAMES = {"bench": "the benchmark split", "val": "the validation split (for design choices, not for "
                     "reported numbers)", "heldout": "the legacy held-out set (validation and benchmark audio "
                     "together; not for reported numbers)"}


def audio_heldout_description(folder: Path, clips: Sequence[Clip], segments: int, segment_seconds: float) -> str:
    split = folder.parent / "split.json"
    which = AUDIO_SPLIT_NAMES.get(folder.name, "audio given with --heldout") if split.exists() else \
        "audio given with --heldout"
    parts = [f"{which}, {rel(folder)}" + (_split_summary(split, folder.name) if split.exists() else "")]
    cut = sorted({c.name.split("@")[0] for c in clips if "@" in c.name})
    if cut:
        parts.append(f"files longer than {segment_seconds:g} s ({', '.join(cut)}) are cut into {segments} windows "
                     f"of {segment_seconds:g} s spread evenly over the file")
    if (folder.parent / "split.json").exists():
        parts.append(f"the split in {rel(split)} holds out whole speech languages (unseen voices) and whole music "
                     "tracks, so none of this audio was seen in training; the held-out audio is divided by speech "
                     "language, music track and effect file into a validation split (training-time validation and "
                     "design choices) and this benchmark split (reported numbers only) by "
                     "`recipes/data/splits.py`")
    return "; ".join(parts)


def bench_audio(args: argparse.Namespace) -> tuple[Section, dict[str, Path]]:
    candidates = from_args(load_audio_candidates, args)
    missing = speech_metrics_missing()
    if missing:
        print(f"warning: {', '.join(missing)} not installed: STOI / PESQ columns will be n/a "
              f"(pip install 'unitok[bench]')", file=sys.stderr)
    clips = load_audio_heldout(args.heldout, args.categories, limit=args.limit, segments=args.segments,
                               segment_seconds=args.segment_seconds)
    announce(candidates, f"{len(clips)} clips from {args.heldout}")
    opus = sorted(set(args.kbps) | set(args.opus_extra_kbps or ()))
    report = run_audio(candidates, clips, kbps=args.kbps, opus_kbps=opus, threads=args.threads,
                       repeat=args.repeat, rtf_seconds=args.rtf_seconds, memory_minutes=args.memory_minutes)
    plots = draw_plots(report, args.plots, {"rd": (plot_audio_rd, "audio_rd.png"),
                                           "spectrograms": (plot_audio_spectrograms, "audio_spectrograms.png")},
                       write=not args.no_write)
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
