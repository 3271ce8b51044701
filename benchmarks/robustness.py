"""Robustness: every entry point fed hostile input, each case in a watchdog process.

    python benchmarks/robustness.py                         # the long run (a few minutes), writes RESULTS.md
    python benchmarks/robustness.py --cases 40 --seed 3 --no-write
    python benchmarks/robustness.py --only tokens-lenient --cases 2000

Categories (``CATEGORIES``): mutated image, video and audio files (truncated, bit-flipped, spliced,
overwritten, saved under a wrong extension) through ``Image/Video/Audio.open`` and ``open_media`` and,
when they open, every tokenizer's ``encode``; crafted files (headers declaring huge pictures,
thousands of frames, 0 Hz or 1 MHz, 32 channels, NaN/inf float samples, non-UTF-8 tags, empty files,
FIFOs, sparse 3 GB files, NUL bytes in names); in-memory items of odd shapes and rates and objects
of the wrong type through ``encode``; random and adversarial id sequences through ``decode`` in strict
and lenient mode, and every truncation of valid sequences; damaged, tampered, foreign and pickled
checkpoints; damaged token-space manifests, suite configs and token files; damaged tokenized datasets
(``TokenDataset``, ``unitok verify``); and ``unitok tokenize`` over manifests of broken files.

Each case is generated from ``(seed, category, index)`` alone and runs in a worker process. The parent
classifies it:

- ``error``: refused with a unitok error (``MediaError``, ``TokenSequenceError`` with its position,
  ``ConfigError``);
- ``ok``: a documented success whose result passed the case's checks (shapes, round trips, limits);
- ``crash``: any other exception, a failed check, or the worker process dying;
- ``hang``: no answer within ``--timeout`` seconds (the worker is killed and restarted);
- ``memory``: the worker's resident memory grew by more than ``--max-rss-gb``;
- ``lost`` (``unitok tokenize`` only): records that are neither in the dataset with the ids
  ``tok.encode`` gives nor listed in ``errors.jsonl``.

Decoding and encoding run under ``_fuzz_limits()`` and ``FUZZ_MAX_TOKENS`` (a header may ask for at most
4 megapixels, 120 s or 2**18 tokens), tighter than the defaults, so that no case is legitimately slow;
files are opened under the default ``MediaLimits``.

``tests/test_fuzz.py`` runs a short deterministic slice of the same cases (``SLICE``) in CI.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import os
import pickle
import select
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SECTION = "Robustness"

# category -> what one case is (the table's first column and its notes)
CATEGORIES = {
    "image-files": "a mutated PNG/JPEG/WebP/GIF/BMP/TIFF, under any extension, through Image.open, Video.open, "
                   "Audio.open, open_media and, when it opens, every suite's encode",
    "video-files": "the same with MP4/WebM/MKV/MOV/AVI (with sound), animated GIF and Y4M files",
    "audio-files": "the same with WAV (16-bit, float), FLAC (16, 24-bit), Ogg Opus, MP3 and M4A files",
    "crafted-files": "a hand-made hostile file (huge declared sizes, many frames, odd rates and channels, "
                     "NaN/inf samples, non-UTF-8 tags, empty, FIFO, sparse 3 GB, NUL in the name)",
    "items": "an in-memory Image/Audio/Video of odd shape or rate, or an object of the wrong type, "
             "through every suite's encode",
    "tokens-strict": "a random or adversarial id sequence through decode(strict=True)",
    "tokens-lenient": "the same kind of sequence through decode(strict=False)",
    "truncation": "a valid sequence cut at one position, decoded strict and lenient",
    "checkpoints": "a suite folder with one file damaged, tampered, deleted, of another version, or pickled",
    "manifests": "a damaged space.json, suite.json or token file",
    "datasets": "a tokenized dataset with one file damaged, through TokenDataset and unitok verify",
    "tokenize": "a unitok tokenize run over a 40-line manifest of good and mutated files, a FIFO, bad JSON, "
                "NUL bytes in names and ill-typed parts (odd cases in a process pool of one)",
}
DEFAULT_CASES = {"tokenize": 6, "checkpoints": 150, "datasets": 60, "truncation": 600}
SLICE = {  # the CI slice (tests/test_fuzz.py): cases per category, about 30 s on one thread
    "image-files": 24, "video-files": 10, "audio-files": 20, "crafted-files": 40, "items": 16,
    "tokens-strict": 60, "tokens-lenient": 60, "truncation": 96, "checkpoints": 10, "manifests": 30,
    "datasets": 6, "tokenize": 1,
}


# =================================================================================================
# the parent: runs cases in a worker process, with a timeout and a memory ceiling
# =================================================================================================

@dataclass
class Tally:
    cases: int = 0
    error: int = 0
    ok: int = 0
    crash: int = 0
    hang: int = 0
    memory: int = 0
    lost: int = 0
    seconds: float = 0.0
    failures: list = field(default_factory=list)   # (index, status, detail)

    def add(self, index: int, status: str, detail: str, lost: int, seconds: float) -> None:
        self.cases += 1
        setattr(self, status, getattr(self, status) + 1)
        self.lost += lost
        self.seconds += seconds
        if status in ("crash", "hang", "memory") or lost:
            self.failures.append((index, status, detail))


def _rss(pid: int) -> int:
    """Resident memory of a process in bytes (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Watchdog:
    """A worker process that runs one case at a time; killed and restarted on a hang, a memory
    blow-up or its own death."""

    def __init__(self, work: Path, seed: int, *, timeout: float, max_rss: float, log: Path):
        self.work, self.seed, self.timeout, self.max_rss, self.log = work, seed, timeout, max_rss, log
        self.proc: subprocess.Popen | None = None
        self.baseline = 0
        self.fresh = True    # no case answered since the start: the worker may still load models

    def _start(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", "--seed",
                                          str(self.seed), "--work", str(self.work)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env)
        reply = self._read(300.0, watch_memory=False)
        if reply is None or reply.get("ready") is not True:
            self.stop()
            raise RuntimeError(f"the fuzz worker did not start; see {self.log}")
        self.baseline = _rss(self.proc.pid)
        self.fresh = True

    def _read(self, timeout: float, *, watch_memory: bool = True) -> dict | str | None:
        """The worker's next reply; "hang" / "memory" / "died" when it has none."""
        deadline = time.monotonic() + timeout
        out = self.proc.stdout
        while True:
            ready, _, _ = select.select([out], [], [], 0.05)
            if ready:
                line = out.readline()
                if not line:
                    return "died"
                return json.loads(line)
            if self.proc.poll() is not None:
                return "died"
            if watch_memory and _rss(self.proc.pid) - self.baseline > self.max_rss:
                return "memory"
            if time.monotonic() > deadline:
                return "hang"

    def run(self, category: str, index: int) -> tuple[str, str, int, float]:
        if self.proc is None:
            self._start()
        start = time.monotonic()
        self.proc.stdin.write((json.dumps({"category": category, "index": index}) + "\n").encode())
        self.proc.stdin.flush()
        reply = self._read(self.timeout)
        seconds = time.monotonic() - start
        if isinstance(reply, dict):
            if self.fresh:   # memory is measured from what the worker holds once it is set up
                self.baseline, self.fresh = max(self.baseline, _rss(self.proc.pid)), False
            return reply["status"], reply.get("detail", ""), reply.get("lost", 0), seconds
        code = self.proc.wait(timeout=30) if reply == "died" else None
        self.stop()
        detail = {"hang": f"no answer in {self.timeout:g} s",
                  "memory": f"resident memory grew by more than {self.max_rss / 2**30:g} GiB",
                  "died": f"the worker process died (exit status {code})"}[reply]
        return ("crash" if reply == "died" else reply), detail, 0, seconds

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                f.close()
            self.proc = None


def run(cases: dict[str, int], *, seed: int = 0, timeout: float = 60.0, max_rss_gb: float = 3.0,
        work: Path | None = None, progress=None) -> dict[str, Tally]:
    """Run ``cases[category]`` cases of each category; returns a tally per category."""
    unknown = set(cases) - set(CASES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; known: {', '.join(CATEGORIES)}")
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="unitok-fuzz-")) if own else Path(work)
    work.mkdir(parents=True, exist_ok=True)
    dog = Watchdog(work, seed, timeout=timeout, max_rss=max_rss_gb * 2**30, log=work / "worker.log")
    tallies = {}
    try:
        for category in CASES:
            if not cases.get(category):
                continue
            tally = tallies[category] = Tally()
            for i in range(cases[category]):
                tally.add(i, *dog.run(category, i))
                if progress is not None:
                    progress(category, i, tally)
    finally:
        dog.stop()
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return tallies


# =================================================================================================
# the worker: builds each case from (seed, category, index) and runs it
# =================================================================================================

FUZZ_MAX_TOKENS = 1 << 18


def _fuzz_limits():
    """Tighter than the defaults, so that no single case is legitimately slow: under the defaults a
    dozen ids may ask lenient decoding for a 64-megapixel picture or 4 hours of sound, which takes
    minutes on a CPU (the defaults' own refusals are tested in tests/test_fuzz.py)."""
    from unitok.media import MediaLimits

    return MediaLimits(max_pixels=1 << 22, max_side=4096, max_seconds=120.0)


class Bad(Exception):
    """A check on a successful result failed: counted as a crash."""


class Context:
    """What every case may use, built once per worker: seed files and tokenizer suites."""

    def __init__(self, work: Path, seed: int):
        import torch

        torch.set_num_threads(1)
        import unitok
        from unitok.testing import ToyAudio, ToyAudioConfig, ToyImage, ToyImageConfig

        self.work, self.seed = work, seed
        self.seeds = _seed_files(work / "seeds")
        text = unitok.text.load_default()
        suites = {
            "bundled": unitok.load(),
            "toy": unitok.UniTokenizer(text, {"image": ToyImage(), "audio": ToyAudio()}),
            "toy-raster": unitok.UniTokenizer(text, {"image": ToyImage(ToyImageConfig(layout="raster")),
                                                     "audio": ToyAudio(ToyAudioConfig(layout="delay"))},
                                              text_group_size=3),
        }
        video = _tiny_video_tokenizer()
        if video is not None:
            suites["video"] = unitok.UniTokenizer(text, {"video": video, "audio": ToyAudio()})
        limits = _fuzz_limits()
        self.suites = {name: tok.with_limits(limits, max_tokens=FUZZ_MAX_TOKENS) for name, tok in suites.items()}
        self.tmp = work / "cases"
        self._suite_dirs: dict[str, Path] = {}
        self._dataset: Path | None = None

    def suite_dir(self, name: str) -> Path:
        """A saved copy of a suite (what the checkpoint cases damage copies of)."""
        if name not in self._suite_dirs:
            folder = self.work / f"suite-{name}"
            if not (folder / "space.json").exists():
                self.suites[name].save_pretrained(folder)
            self._suite_dirs[name] = folder
        return self._suite_dirs[name]

    def fresh(self) -> Path:
        """An empty folder for one case."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        return self.tmp


def _tiny_video_tokenizer():
    """A small random video tokenizer when ``unitok.video`` is importable (it is optional here)."""
    try:
        from unitok.checkpoint import config_from_dict
        from unitok.video import VideoTokenizer, VideoTokenizerConfig

        cfg = config_from_dict(VideoTokenizerConfig, {
            "channels": 8, "channel_mult": [1, 2], "patch": 2, "enc_blocks": 1, "dec_blocks": 1, "mid_blocks": 1,
            "quantizer": {"kind": "fsq", "levels": [5, 5, 5], "scales": [4, 2, 1]}, "temporal": 4})
        return VideoTokenizer(cfg).eval()
    except Exception:   # noqa: BLE001 - a video package still being written must not stop the fuzz
        return None


def worker_main(work: Path, seed: int) -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)   # what libraries print goes to the log, not into the protocol
    ctx = None      # built by the first case that needs it (the harness's self-test does not)
    proto.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        category, index = req["category"], req["index"]
        rng = _rng(seed, category, index)
        try:
            if ctx is None and category != "selftest":
                ctx = Context(work, seed)
            status, detail, lost = CASES[category](ctx, rng, index)
        except Bad as e:
            status, detail, lost = "crash", f"check failed: {e}", 0
        except Exception as e:   # noqa: BLE001 - the point: anything not a unitok error is a crash
            status, detail, lost = "crash", _describe(e), 0
        proto.write(json.dumps({"status": status, "detail": detail, "lost": lost}) + "\n")


def _rng(seed: int, category: str, index: int):
    import numpy as np

    return np.random.default_rng([seed, list(CASES).index(category), index])


def _describe(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"{type(e).__name__}: {str(e)[:300]}{where}"


class Calls:
    """Runs the entry points of one case and folds their outcomes into the case's status."""

    def __init__(self):
        self.ok = self.errors = 0
        self.crash: str | None = None

    def __call__(self, label: str, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``; a unitok error is returned (not raised), a crash recorded."""
        from unitok import TokenSequenceError, UnitokError

        try:
            result = fn(*args, **kwargs)
        except TokenSequenceError as e:
            self.errors += 1
            if not isinstance(e.position, int):
                self._crash(f"{label}: TokenSequenceError without a position: {e}")
            return e
        except UnitokError as e:
            self.errors += 1
            return e
        except Bad as e:
            self._crash(f"{label}: check failed: {e}")
            return e
        except Exception as e:   # noqa: BLE001
            self._crash(f"{label}: {_describe(e)}")
            return e
        self.ok += 1
        return result

    def check(self, label: str, fn, *args) -> None:
        """A check of a result: it can only add a crash, it is not an outcome of its own."""
        try:
            fn(*args)
        except Bad as e:
            self._crash(f"{label}: check failed: {e}")
        except Exception as e:   # noqa: BLE001
            self._crash(f"{label}: {_describe(e)}")

    def _crash(self, detail: str) -> None:
        if self.crash is None:
            self.crash = detail

    def result(self, lost: int = 0) -> tuple[str, str, int]:
        if self.crash is not None:
            return "crash", self.crash, lost
        return ("ok" if self.ok else "error"), "", lost


def _failed(x) -> bool:
    return isinstance(x, Exception)


# =================================================================================================
# the corpus: good files of every kind, written with unitok's own writers
# =================================================================================================

def _seed_files(folder: Path) -> dict[str, bytes]:
    done = folder / ".complete"
    if not done.exists():
        import numpy as np

        from unitok import Audio, Image, Video

        folder.mkdir(parents=True, exist_ok=True)
        yy, xx = np.mgrid[0:24, 0:40]
        pic = np.stack([xx * 6, yy * 10, (xx + yy) * 3], -1).astype(np.uint8)
        for ext in (".png", ".jpg", ".webp", ".gif", ".bmp"):
            Image.from_array(pic).save(folder / f"img{ext}")
        Image.from_array(np.dstack([pic, np.full((24, 40, 1), 128, np.uint8)])).save(folder / "rgba.png")
        Image.from_array(pic[..., 0]).save(folder / "gray.png")
        _write_tiff(folder / "img.tiff", pic)
        t = np.arange(8000) / 8000
        sound = Audio.from_array(np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)])
                                 .astype(np.float32), 8000)
        frames = np.stack([np.roll(pic[:16, :32], 3 * i, 1) for i in range(6)])
        for ext in (".mp4", ".webm", ".mkv", ".mov", ".avi"):
            Video.from_array(frames, fps=6, audio=sound).save(folder / f"vid{ext}")
        Video.from_array(frames, fps=6).save(folder / "vid.gif")
        Video.from_array(frames, fps=6).save(folder / "silent.mp4")
        (folder / "vid.y4m").write_bytes(_y4m(16, 16, 4))
        for ext in (".wav", ".flac", ".ogg", ".mp3", ".m4a"):
            sound.save(folder / f"snd{ext}")
        sound.save(folder / "f32.wav", sample_format="f32")
        sound.save(folder / "s24.flac", sample_format="s24")
        done.write_text("")
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def _write_tiff(path: Path, hwc) -> None:
    import av
    import numpy as np

    ctx = av.CodecContext.create("tiff", "w")
    ctx.width, ctx.height, ctx.pix_fmt = hwc.shape[1], hwc.shape[0], "rgb24"
    ctx.time_base = 1
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(hwc), format="rgb24")
    path.write_bytes(b"".join(bytes(p) for p in ctx.encode(frame) + ctx.encode(None)))


def _y4m(w: int, h: int, frames: int, fps: str = "25:1") -> bytes:
    """Raw YUV 4:2:0 video (FFmpeg's yuv4mpegpipe), ``frames`` black frames."""
    frame = b"FRAME\n" + bytes(w * h + 2 * ((w + 1) // 2) * ((h + 1) // 2))
    return f"YUV4MPEG2 W{w} H{h} F{fps} Ip A1:1 C420jpeg\n".encode() + frame * frames


KIND_OF_SEED = {"image": ("img.", "rgba.png", "gray.png"), "video": ("vid.", "silent.mp4"),
                "audio": ("snd.", "f32.wav", "s24.flac")}
ALL_EXTENSIONS = (".png", ".jpg", ".webp", ".gif", ".bmp", ".tiff", ".mp4", ".webm", ".mkv", ".mov", ".avi",
                  ".wav", ".flac", ".ogg", ".mp3", ".m4a", ".txt", "")


def _seeds_of(ctx: Context, kind: str) -> list[str]:
    return [n for n in ctx.seeds if n.startswith(KIND_OF_SEED[kind])]


# -- mutations of bytes ---------------------------------------------------------------------------

MAGIC = (0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE)


def mutate(data: bytes, rng, others: list[bytes]) -> tuple[bytes, str]:
    """One random damage to ``data``; the name of what was done."""
    b = bytearray(data)
    n = len(b)
    op = int(rng.integers(0, 10))
    if op == 0:
        cut = int(rng.integers(0, n))
        return bytes(b[:cut]), f"truncated to {cut} of {n} bytes"
    if op == 1:
        k = int(rng.integers(1, 17))
        for _ in range(k):
            i = int(rng.integers(0, n))
            b[i] ^= 1 << int(rng.integers(0, 8))
        return bytes(b), f"{k} bits flipped"
    if op == 2:   # the header is where sizes live
        i = int(rng.integers(0, min(n, 512)))
        for j in range(i, min(n, i + int(rng.integers(1, 5)))):
            b[j] = int(rng.choice(MAGIC))
        return bytes(b), f"header bytes at {i} set to extreme values"
    if op == 3:
        i, k = int(rng.integers(0, n)), int(rng.integers(1, 64))
        b[i:i + k] = rng.integers(0, 256, k).astype("uint8").tobytes()
        return bytes(b), f"{k} random bytes at {i}"
    if op == 4:
        i, k = int(rng.integers(0, n)), int(rng.integers(1, 512))
        del b[i:i + k]
        return bytes(b), f"{k} bytes deleted at {i}"
    if op == 5:
        i, k = int(rng.integers(0, n)), int(rng.integers(1, 512))
        b[i:i] = b[i:i + k]
        return bytes(b), f"{k} bytes repeated at {i}"
    if op == 6:   # the head of one file, the tail of another
        other = others[int(rng.integers(0, len(others)))]
        cut = int(rng.integers(1, n))
        return bytes(b[:cut]) + other[int(rng.integers(0, len(other))):], "spliced with another file"
    if op == 7:
        k = int(rng.integers(1, 4096))
        return rng.integers(0, 256, k).astype("uint8").tobytes(), f"{k} random bytes"
    if op == 8:
        i = int(rng.integers(0, min(n, 256)))
        b[i:i + 4] = b"\xff\xff\xff\x7f"
        return bytes(b), f"a 32-bit field at {i} set to 2**31 - 1"
    k = int(rng.integers(1, 8))
    for _ in range(k):   # a few bytes anywhere set to extreme values
        b[int(rng.integers(0, n))] = int(rng.choice(MAGIC))
    return bytes(b), f"{k} bytes set to extreme values"


# =================================================================================================
# checks on successful results
# =================================================================================================

def _check_media(item, limits=None) -> None:
    """An opened item respects its type's contract and the limits it was read under."""
    import torch

    from unitok import Audio, Image, Video
    from unitok.media import DEFAULT_LIMITS

    limits = limits or DEFAULT_LIMITS
    if isinstance(item, Image):
        if item.height * item.width > limits.max_pixels or max(item.height, item.width) > limits.max_side:
            raise Bad(f"{item!r} is over the limits it was read under")
    elif isinstance(item, Video):
        if item.num_frames > limits.max_frames or item.frames.numel() > limits.max_decoded_bytes:
            raise Bad(f"{item!r} is over the limits it was read under")
        if item.audio is not None:
            _check_media(item.audio, limits)
    elif isinstance(item, Audio):
        if not torch.isfinite(item.samples).all() or item.samples.abs().max() > 1:
            raise Bad(f"{item!r} holds samples outside [-1, 1]")
        if item.duration > limits.max_seconds or item.num_channels > limits.max_channels:
            raise Bad(f"{item!r} is over the limits it was read under")
    else:
        raise Bad(f"open returned a {type(item).__name__}")


def _kind(x) -> str:
    return "text" if isinstance(x, str) else type(x).__name__.lower()


def _round_trip(tok, doc) -> None:
    """Encode ``doc``; a success must decode strictly to parts of the same kinds and sizes."""
    seq = tok.encode(doc)
    out = tok.decode(seq)
    expect = []
    for x in (doc if isinstance(doc, list) else [doc]):
        if isinstance(x, str) and not x:
            continue
        expect.append(x)
        if _kind(x) == "video" and x.audio is not None and "audio" in tok.media:
            expect.append(x.audio)
    if [_kind(x) for x in out] != [_kind(x) for x in expect]:
        raise Bad(f"decodes to {[_kind(x) for x in out]}, encoded {[_kind(x) for x in expect]}")
    for got, want in zip(out, expect):
        if _kind(got) == "image" and (got.height, got.width) != (want.height, want.width):
            raise Bad(f"image {want.width}x{want.height} decodes to {got.width}x{got.height}")
        if _kind(got) == "video" and got.frames.shape != want.frames.shape:
            raise Bad(f"video {tuple(want.frames.shape)} decodes to {tuple(got.frames.shape)}")
    if len(seq) > tok.max_tokens:
        raise Bad(f"{len(seq)} tokens, over max_tokens")


def _openers():
    from unitok import Audio, Image, Video
    from unitok.media import open_media

    return {"image": Image.open, "video": Video.open, "audio": Audio.open, "media": open_media}


def _through_everything(ctx: Context, calls: Calls, source) -> None:
    """Every opener on ``source``; every tokenizer on what opens (small items only, to stay fast)."""
    from unitok import Audio, Image, Video

    for name, opener in _openers().items():
        item = calls(f"{name} open", opener, source)
        if _failed(item):
            continue
        calls.check(f"{name} open: result", _check_media, item)
        if name != "media" or not _small(item):
            continue
        for suite_name, tok in ctx.suites.items():
            modality = {Image: "image", Video: "video", Audio: "audio"}[type(item)]
            if modality in tok.media:
                calls(f"encode with the {suite_name} suite", _round_trip, tok, ["caption", item])


def _small(item) -> bool:
    from unitok import Audio, Image, Video

    if isinstance(item, Image):
        return item.height * item.width <= 512 * 512
    if isinstance(item, Video):
        return item.frames.numel() <= 3 * 64 * 64 * 32
    return isinstance(item, Audio) and item.num_samples * item.num_channels <= 200_000


def _file_case(kind: str):
    def case(ctx: Context, rng, index: int):
        names = _seeds_of(ctx, kind)
        name = names[index % len(names)]
        data, _ = mutate(ctx.seeds[name], rng, list(ctx.seeds.values()))
        calls = Calls()
        if rng.random() < 0.3:        # tar members reach open as bytes
            _through_everything(ctx, calls, data)
        else:                          # any extension: the content decides
            path = ctx.fresh() / f"case{ALL_EXTENSIONS[int(rng.integers(len(ALL_EXTENSIONS)))]}"
            path.write_bytes(data)
            _through_everything(ctx, calls, path)
        return calls.result()
    return case


# =================================================================================================
# crafted files
# =================================================================================================

def _png(w: int, h: int, pixels: bool = False) -> bytes:
    """A PNG declaring a w x h RGB picture; with ``pixels`` its (zero) rows are all there, else a
    few bytes stand in for them."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if pixels:
        z = zlib.compressobj(9)
        row = b"\x00" * (1 + 3 * w)
        raw = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    else:
        raw = zlib.compress(bytes(16))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def _image_header(fmt: str, w: int, h: int) -> bytes:
    if fmt == "png":
        return _png(w, h)
    if fmt == "gif":
        return b"GIF89a" + struct.pack("<HH", w, h) + bytes(64)
    if fmt == "bmp":
        return b"BM" + bytes(12) + struct.pack("<Iii", 40, w, h) + bytes(64)
    if fmt == "webp":
        vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
        return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x + bytes(64)
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, h, w, 1) + b"\x01\x11\x00"
    return b"\xff\xd8\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9) + sof0 + bytes(64)


def _wav(rate: int, data: bytes, *, fmt_tag: int = 1, bits: int = 16, channels: int = 1,
         declared: int | None = None) -> bytes:
    fmt = struct.pack("<HHIIHH", fmt_tag, channels & 0xFFFF, rate & 0xFFFFFFFF,
                      (rate * channels * bits // 8) & 0xFFFFFFFF, (channels * bits // 8) & 0xFFFF, bits)
    size = len(data) if declared is None else declared
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body) & 0xFFFFFFFF) + body


def _floats(values, bits: int = 32) -> bytes:
    import numpy as np

    return np.asarray(values, dtype=np.float32 if bits == 32 else np.float64).tobytes()


def _tagged(ctx: Context, name: str) -> bytes:
    """A seed rewritten with a title tag, whose UTF-8 'café' is then made invalid UTF-8."""
    import av

    src = ctx.fresh() / name
    src.write_bytes(ctx.seeds[name])
    out = src.with_name("tagged" + src.suffix)
    with av.open(str(src)) as inp, av.open(str(out), "w") as dst:
        dst.metadata["title"] = "caf\u00e9 cr\u00e8me"
        streams = {s.index: dst.add_stream_from_template(s) for s in inp.streams if s.type in ("audio", "video")}
        for packet in inp.demux():
            if packet.stream.index in streams and packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    data = out.read_bytes()
    return data.replace("café".encode(), b"caf\xe9\xff")


def _gif_frames(n: int) -> bytes:
    import numpy as np

    from unitok import Video

    path = Path(tempfile.mkdtemp()) / "many.gif"
    frames = np.zeros((n, 2, 2, 3), np.uint8)
    frames[:, 0, 0] = (np.arange(n) % 256)[:, None]
    Video.from_array(frames, fps=50).save(path)
    data = path.read_bytes()
    shutil.rmtree(path.parent)
    return data


def _crafted(ctx: Context, rng, index: int):
    """The hand-made cases, in a fixed cycle; randomness picks the sizes."""
    from unitok import Audio, Image, Video
    from unitok.media import MediaLimits, open_media

    big = int(rng.integers(16385, 1 << 16))
    cases = [
        ("png declaring a huge picture", lambda: _image_header("png", big, big)),
        ("gif declaring a huge picture", lambda: _image_header("gif", 65535, int(rng.integers(8193, 65536)))),
        ("bmp declaring a huge picture", lambda: _image_header("bmp", big, -big)),
        ("webp declaring a huge picture", lambda: _image_header("webp", big, big)),
        ("jpeg declaring a huge picture", lambda: _image_header("jpeg", 65535, 65535)),
        ("png declaring 0 x N", lambda: _image_header("png", 0, int(rng.integers(1, 100)))),
        ("png declaring 2**31 x 2**31", lambda: _image_header("png", 2**31, 2**31)),
        ("png bomb within the limits (3000 x 3000 from 30 KB)", lambda: _png(3000, 3000, pixels=True)),
        ("y4m declaring 100000 x 100000 frames", lambda: b"YUV4MPEG2 W100000 H100000 F25:1 Ip A1:1 C420jpeg\n"
                                                         b"FRAME\n" + bytes(64)),
        ("y4m with 3000 frames", lambda: _y4m(2, 2, 3000)),
        ("y4m at 1e9 fps", lambda: _y4m(4, 4, 3, "1000000000:1")),
        ("y4m at 1/1e9 fps (years long)", lambda: _y4m(4, 4, 3, "1:1000000000")),
        ("animated gif with 2000 frames", lambda: _gif_frames(2000)),
        ("wav at 0 Hz", lambda: _wav(0, bytes(2000))),
        ("wav at 1 MHz", lambda: _wav(1_000_000, bytes(2000))),
        ("wav with 32 channels", lambda: _wav(16000, bytes(6400), channels=32)),
        ("wav with 65535 channels", lambda: _wav(16000, bytes(100), channels=65535)),
        ("float wav with NaN", lambda: _wav(16000, _floats([0, float("nan"), 0]), fmt_tag=3, bits=32)),
        ("float wav with +inf", lambda: _wav(16000, _floats([0, float("inf")]), fmt_tag=3, bits=32)),
        ("double wav with -inf", lambda: _wav(16000, _floats([float("-inf")] * 4, 64), fmt_tag=3, bits=64)),
        ("float wav beyond full scale", lambda: _wav(16000, _floats([0, 7.5, -1e30]), fmt_tag=3, bits=32)),
        ("float wav of denormals", lambda: _wav(16000, _floats([1e-40] * 8), fmt_tag=3, bits=32)),
        ("wav with 0 bits per sample", lambda: _wav(16000, bytes(100), bits=0)),
        ("wav with an unknown format tag", lambda: _wav(8000, bytes(300), fmt_tag=0x1234)),
        ("wav declaring 4 GB of samples", lambda: _wav(8000, bytes(300), declared=0xFFFFFFF0)),
        ("wav declaring no samples", lambda: _wav(16000, b"")),
        ("flac with a non-UTF-8 title", lambda: _tagged(ctx, "snd.flac")),
        ("mp3 with a non-UTF-8 title", lambda: _tagged(ctx, "snd.mp3")),
        ("mkv with a non-UTF-8 title", lambda: _tagged(ctx, "vid.mkv")),
        ("mp4 with a non-UTF-8 title", lambda: _tagged(ctx, "vid.mp4")),
        ("zero-length file", lambda: b""),
        ("text saved as media", lambda: b"This is a plain text file, not media.\n" * 40),
        ("10 MB of random bytes", lambda: rng.integers(0, 256, 10 << 20).astype("uint8").tobytes()),
        ("FIFO", None), ("sparse 3 GB file", None), ("directory", None), ("symlink to /dev/zero", None),
        ("NUL byte in the name", None),
    ]
    label, build = cases[index % len(cases)]
    folder = ctx.fresh()
    ext = ALL_EXTENSIONS[int(rng.integers(len(ALL_EXTENSIONS)))]
    path = folder / f"crafted{ext}"
    if build is not None:
        data = build()
        path.write_bytes(data)
    elif label == "FIFO":
        os.mkfifo(path)
    elif label == "sparse 3 GB file":
        with open(path, "wb") as f:
            f.write(_png(64, 64))
            f.truncate(3 << 30)
    elif label == "directory":
        path.mkdir()
    elif label == "symlink to /dev/zero":
        path.symlink_to("/dev/zero")
    else:
        path = Path(str(path) + "\x00.png")
    calls = Calls()
    _through_everything(ctx, calls, path)
    if build is not None and label.startswith(("y4m with", "animated gif")):
        # the frame limit, checked while decoding
        few = MediaLimits(max_frames=1000)
        calls("Video.open under max_frames=1000", _expect_refusal, Video.open, path, limits=few)
    if build is not None and label.startswith("png bomb"):
        calls("Image.open under max_pixels=10**6", _expect_refusal, Image.open, path,
              limits=MediaLimits(max_pixels=10**6))
    if build is not None and label.startswith("wav") and rng.random() < 0.5:
        calls("Audio.open of the bytes", Audio.open, data)
    if build is not None and rng.random() < 0.3:
        calls("open_media of the bytes", open_media, data)
    return calls.result()


def _expect_refusal(fn, *args, **kwargs):
    from unitok import MediaError

    try:
        fn(*args, **kwargs)
    except MediaError as e:
        if "MediaLimits" not in str(e):
            raise Bad(f"refused for another reason: {e}") from None
        raise
    raise Bad("opened although it is over the limit")


# =================================================================================================
# in-memory items through encode
# =================================================================================================

def _item(rng):
    import torch

    from unitok import Audio, Image, Video

    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    kind = int(rng.integers(0, 9))
    if kind <= 2:
        h, w = (int(rng.choice([1, 2, 3, 7, 8, 9, 31, 64, 333, 1500])) for _ in range(2))
        c = int(rng.choice([1, 3, 4]))
        return Image(torch.randint(0, 256, (c, h, w), dtype=torch.uint8, generator=g))
    if kind <= 5:
        c = int(rng.choice([1, 2, 5, 16, 17]))
        n = int(rng.choice([1, 2, 79, 80, 81, 321, 4000, 24001]))
        rate = int(rng.choice([1, 999, 1000, 8000, 22050, 24000, 44100, 48000, 384000, 384001, 10**9]))
        fill = int(rng.integers(0, 4))
        x = [torch.rand(c, n, generator=g) * 2 - 1, torch.ones(c, n), -torch.ones(c, n),
             torch.full((c, n), 1e-40)][fill]
        return Audio(x.contiguous(), rate)
    if kind <= 7:
        t = int(rng.choice([1, 2, 4, 5, 9]))
        h, w = (int(rng.choice([1, 2, 7, 8, 16, 33])) for _ in range(2))
        fps = rng.choice([1, 25, 10**9, 0.001])
        sound = Audio(torch.zeros(1, int(rng.integers(1, 2000))), 8000) if rng.random() < 0.3 else None
        return Video(torch.randint(0, 256, (t, 3, h, w), dtype=torch.uint8, generator=g), fps, sound)
    import numpy as np

    return [None, 5, 2.5, {"image": "x.png"}, np.zeros((4, 4, 3)), torch.zeros(3, 4, 4), object(), [["nested"]],
            Path("/nonexistent/x.png"), Path("/"), Path("/dev/null")][int(rng.integers(0, 11))]


def _items_case(ctx: Context, rng, index: int):
    calls = Calls()
    item = _item(rng)
    doc = [item] if rng.random() < 0.5 else ["before", item, "after"]
    for name, tok in ctx.suites.items():
        calls(f"encode with the {name} suite", _round_trip, tok, doc)
    return calls.result()


# =================================================================================================
# token streams
# =================================================================================================

def _doc(ctx: Context, suite: str, rng, small: bool = False):
    """A small random document for ``suite``."""
    import torch

    from unitok import Audio, Image, Video

    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    tok = ctx.suites[suite]
    side = (lambda: int(rng.integers(1, 12))) if small else (lambda: int(rng.integers(1, 40)))
    parts: list = ["a caption"] if rng.random() < 0.7 else []
    for _ in range(int(rng.integers(1, 3))):
        choice = rng.choice(list(tok.media))
        if choice == "image":
            parts.append(Image(torch.randint(0, 256, (3, side(), side()), dtype=torch.uint8, generator=g)))
        elif choice == "audio":
            n = int(rng.integers(1, 200 if small else 3000))
            parts.append(Audio(torch.rand(1, n, generator=g) * 2 - 1, int(rng.choice([8000, 24000]))))
        else:
            parts.append(Video(torch.randint(0, 256, (int(rng.integers(1, 6)), 3, 8, 8), dtype=torch.uint8,
                                             generator=g), 8))
        if rng.random() < 0.5:
            parts.append("more text" if not small else "x")
    return tok.encode(parts, bos=bool(rng.integers(2)), eos=bool(rng.integers(2))).ids


def _adversarial_ids(ctx: Context, rng):
    """(suite, ids, what was done) for one token-stream case."""
    import numpy as np

    from unitok.space import DIM_DIGITS

    suite = list(ctx.suites)[int(rng.integers(len(ctx.suites)))]
    tok = ctx.suites[suite]
    sp = tok.space
    ids = _doc(ctx, suite, rng)
    specials = np.array(list(sp.special_tokens.values()))
    begins = np.array([sp.special(f"<|{m}|>") for m in tok.media])
    op = int(rng.integers(0, 14))
    n = len(ids)
    if op == 0:
        ids = rng.integers(-3, len(sp) + 3, int(rng.integers(0, 300)))
        what = "random ids"
    elif op == 1:
        ids = ids[:int(rng.integers(0, n + 1))]
        what = "truncated"
    elif op == 2:
        k = int(rng.integers(1, 8))
        ids[rng.integers(0, n, k)] = rng.integers(0, len(sp), k)
        what = f"{k} ids replaced by random ids"
    elif op == 3:   # codes of another modality (or text) inside a segment
        k = int(rng.integers(1, 6))
        foreign = rng.integers(sp.text_vocab_size + 2048, len(sp), k) if rng.random() < 0.7 else rng.integers(
            0, sp.text_vocab_size, k)
        ids[rng.integers(0, n, k)] = foreign
        what = f"{k} foreign codes"
    elif op == 4:   # begin/end/structural tokens anywhere: nested, unmatched, doubled
        for _ in range(int(rng.integers(1, 4))):
            ids = np.insert(ids, int(rng.integers(0, len(ids) + 1)), rng.choice(specials))
        what = "structural tokens inserted"
    elif op == 5:
        marks = np.flatnonzero(np.isin(ids, specials))
        if len(marks):
            ids = np.delete(ids, rng.choice(marks, int(rng.integers(1, min(3, len(marks)) + 1)), replace=False))
        what = "structural tokens deleted"
    elif op == 6:   # extreme header values
        starts = np.flatnonzero(np.isin(ids, begins))
        if len(starts):
            p = int(rng.choice(starts))
            m = next(m for m in tok.media if sp.special(f"<|{m}|>") == ids[p])
            f = int(rng.integers(0, len(tok.media[m].header_fields)))
            v = int(rng.choice([0, 1, 2, 3, 7, 999, 1000, 1023, 1024, 4096, 16385, 65535, 2**20 - 1]))
            at = p + 1 + DIM_DIGITS * f
            ids[at:at + DIM_DIGITS] = sp.dim_ids([v])[:len(ids[at:at + DIM_DIGITS])]
        what = "a header field set to an extreme value"
    elif op == 7:
        k = int(rng.integers(1, 5))
        ids[rng.integers(0, n, k)] = [sp.dim_ids([int(rng.integers(0, 2**20))])[0] for _ in range(k)]
        what = "shape tokens anywhere"
    elif op == 8:
        i = int(rng.integers(0, n))
        ids = np.concatenate([ids[:i], ids[int(rng.integers(i, n + 1)):]])
        what = "a run deleted"
    elif op == 9:
        ids = np.concatenate([ids, _doc(ctx, suite, rng)[:int(rng.integers(1, 200))]])
        what = "a second document appended, cut short"
    elif op == 10:
        ids = ids[::-1].copy()
        what = "reversed"
    elif op == 11:
        ids = np.concatenate([ids, np.full(int(rng.integers(1, 3000)), rng.choice(specials))])
        what = "a long run of one structural token"
    elif op == 12:   # a header that asks for a lot, with almost no body
        m = list(tok.media)[int(rng.integers(len(tok.media)))]
        fields = len(tok.media[m].header_fields)
        dims = [int(rng.choice([1, 2, 8, 1000, 4096, 2**20 - 1])) for _ in range(fields)]
        ids = np.array([sp.special(f"<|{m}|>"), *sp.dim_ids(dims)] + list(ids[:int(rng.integers(0, 20))]))
        what = f"a {m} header asking for {dims}"
    else:
        ids = ids.copy()
        ids[rng.integers(0, n, int(rng.integers(1, 4)))] = rng.choice([-1, -2**40, len(sp), 2**40, 2**62])
        what = "ids far outside the space"
    return suite, np.asarray(ids, dtype=np.int64), what


def _declared(tok, ids):
    """(kind, shape) of every segment header in ``ids``, in order: what lenient decoding may give."""
    from unitok.space import DIM_DIGITS

    sp = tok.space
    out = []
    for m, codec in tok.media.items():
        begin = sp.special(f"<|{m}|>")
        width = DIM_DIGITS * len(codec.header_fields)
        for p in (i for i, t in enumerate(ids) if t == begin):
            try:
                values = sp.dims_from_ids(ids[p + 1:p + 1 + width], len(codec.header_fields))
            except Exception:   # noqa: BLE001 - a damaged header: the decoder drops that segment
                continue
            out.append((p, m, dict(zip(codec.header_fields, values))))
    return [(m, h) for _, m, h in sorted(out, key=lambda x: x[0])]


def _shape_matches(tok, item, modality: str, header: dict) -> bool:
    codec = tok.media[modality]
    if modality == "image":
        return (item.height, item.width) == (header["height"], header["width"])
    if modality == "video":
        return (item.num_frames, item.height, item.width) == (header["frames"], header["height"], header["width"])
    if hasattr(codec, "model_length"):          # the bundled audio codec, at its own rate
        return item.num_samples == codec.model_length(header)
    if "frames" in header:                       # the toy audio codec
        return item.num_samples == min(header["frames"] * codec.cfg.hop,
                                       (header["frames"] - 1) * codec.cfg.hop + header["samples_in_last_frame"])
    return True


def _check_lenient(tok, ids, out) -> None:
    """Lenient decoding gave parts, and every media part has the shape a header in ``ids`` declares
    (headers in order: a dropped segment may be skipped)."""
    from unitok import Decoded

    if not isinstance(out, Decoded):
        raise Bad(f"lenient decode returned a {type(out).__name__}")
    declared = _declared(tok, list(ids))
    j = 0
    for item in out:
        kind = _kind(item)
        if kind == "text":
            continue
        while j < len(declared) and not (declared[j][0] == kind and _shape_matches(tok, item, kind, declared[j][1])):
            j += 1
        if j == len(declared):
            raise Bad(f"lenient decode gave {item!r}, which no header in the sequence declares")
        j += 1
    for r in out.repairs:
        if not 0 <= r.position <= len(ids):
            raise Bad(f"repair at position {r.position}, outside the {len(ids)} ids")


def _check_strict(ids, result) -> None:
    from unitok import Decoded, TokenSequenceError

    if isinstance(result, TokenSequenceError):
        if not 0 <= result.position <= len(ids):
            raise Bad(f"TokenSequenceError at position {result.position}, outside the {len(ids)} ids")
    elif not isinstance(result, Decoded) or result.repairs:
        raise Bad("strict decode returned repairs")


def _strict_case(ctx: Context, rng, index: int):
    suite, ids, what = _adversarial_ids(ctx, rng)
    calls = Calls()
    result = calls(f"decode strict ({what})", ctx.suites[suite].decode, ids)
    calls.check("strict result", _check_strict, ids, result)
    return calls.result()


def _lenient_case(ctx: Context, rng, index: int):
    suite, ids, what = _adversarial_ids(ctx, rng)
    tok = ctx.suites[suite]
    calls = Calls()
    out = calls(f"decode lenient ({what})", tok.decode, ids, strict=False)
    if isinstance(out, Exception):    # lenient decoding of an int sequence never refuses
        calls.crash = calls.crash or f"decode lenient ({what}) raised {type(out).__name__}: {out}"
    else:
        calls.check("lenient result", _check_lenient, tok, ids, out)
    return calls.result()


SWEEP = 64   # truncation positions per document (documents are built with fewer tokens)


def _truncation_case(ctx: Context, rng, index: int):
    """Document ``index // SWEEP`` cut at position ``index % SWEEP``: every position of each."""
    doc_rng = _rng(ctx.seed, "truncation", 10**9 + index // SWEEP)   # the same document for its SWEEP cases
    suite = list(ctx.suites)[(index // SWEEP) % len(ctx.suites)]
    tok = ctx.suites[suite]
    for _ in range(50):
        ids = _doc(ctx, suite, doc_rng, small=True)
        if len(ids) < SWEEP:
            break
    cut = ids[:min(index % SWEEP, len(ids))]
    calls = Calls()
    result = calls(f"decode strict, cut at {len(cut)} of {len(ids)}", tok.decode, cut)
    calls.check("strict result", _check_strict, cut, result)
    out = calls(f"decode lenient, cut at {len(cut)} of {len(ids)}", tok.decode, cut, strict=False)
    if isinstance(out, Exception):
        calls.crash = calls.crash or f"lenient decode of a cut sequence raised {out!r}"
    else:
        calls.check("lenient result", _check_lenient, tok, cut, out)
    return calls.result()


# =================================================================================================
# checkpoints and manifests
# =================================================================================================

WEIRD = (None, True, False, 0, -1, 1, 2, 3, 10**9, 2**63, 10**30, 1.5, float("nan"), float("inf"), "", "x",
         "image.vqgan", "os.system", "../../etc", [], [1], [1.5], {}, {"a": 1})


def mutate_json(obj, rng, depth: int = 0):
    """One random edit somewhere in a JSON value: a weird value, a deleted or an added key."""
    if isinstance(obj, dict) and obj and depth < 6:
        key = sorted(obj)[int(rng.integers(len(obj)))]
        op = int(rng.integers(0, 4))
        if op == 0:
            obj[key] = copy.deepcopy(WEIRD[int(rng.integers(len(WEIRD)))])
        elif op == 1:
            del obj[key]
        elif op == 2:
            obj[f"unknown_{int(rng.integers(9))}"] = 1
        else:
            obj[key] = mutate_json(obj[key], rng, depth + 1)
        return obj
    if isinstance(obj, list) and obj and depth < 6:
        i = int(rng.integers(len(obj)))
        op = int(rng.integers(0, 3))
        if op == 0:
            obj[i] = copy.deepcopy(WEIRD[int(rng.integers(len(WEIRD)))])
        elif op == 1:
            del obj[i]
        else:
            obj[i] = mutate_json(obj[i], rng, depth + 1)
        return obj
    return copy.deepcopy(WEIRD[int(rng.integers(len(WEIRD)))])


class _Marker:
    """Unpickling this creates a file: its existence afterwards would prove code ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _damage_file(path: Path, rng) -> str:
    data = path.read_bytes()
    op = int(rng.integers(0, 4))
    if op == 0 and path.suffix == ".json":
        try:
            obj = json.loads(data)
        except ValueError:
            obj = None
        path.write_text(json.dumps(mutate_json(obj, rng)))
        return f"edited {path.name}"
    if op <= 1:
        path.write_bytes(data[:int(rng.integers(0, len(data) + 1))])
        return f"truncated {path.name}"
    if op == 2:
        b = bytearray(data)
        head = rng.random() < 0.6   # the safetensors header and JSON text are where damage bites
        for _ in range(int(rng.integers(1, 9))):
            if b:
                i = int(rng.integers(0, min(len(b), 4096) if head else len(b)))
                b[i] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(b))
        return f"bits flipped in {path.name}"
    path.unlink()
    return f"deleted {path.name}"


def _checkpoint_case(ctx: Context, rng, index: int):
    import unitok

    suite = "bundled" if rng.random() < 0.4 else "toy"
    folder = ctx.fresh() / "suite"
    shutil.copytree(ctx.suite_dir(suite), folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    op = int(rng.integers(0, 8))
    marker = ctx.tmp / "code-ran"
    if op <= 3:
        what = _damage_file(files[int(rng.integers(len(files)))], rng)
    elif op == 4:   # weights as a pickle that would run code
        part = folder / ("image" if rng.random() < 0.5 else "audio")
        (part / "model.safetensors").unlink()
        name = ["model.pt", "pytorch_model.bin", "model.ckpt", "weights.pkl"][int(rng.integers(4))]
        (part / name).write_bytes(pickle.dumps({"state": _Marker(str(marker))}))
        what = f"weights replaced by {name}, a pickle that runs code"
    elif op == 5:   # the type names something outside the registry
        part = folder / ["image", "audio", "text"][int(rng.integers(3))]
        cfg = json.loads((part / "config.json").read_text())
        cfg["type"] = ["os.system", "builtins.eval", "cli.main", "subprocess.run", "unitok..x", "Image.Vqgan",
                       "torch.load"][int(rng.integers(7))]
        (part / "config.json").write_text(json.dumps(cfg))
        what = f"type set to {cfg['type']}"
    elif op == 6:   # another version of the format or of the manifest
        target = [folder / "image" / "config.json", folder / "space.json", folder / "text" / "config.json"][
            int(rng.integers(3))]
        cfg = json.loads(target.read_text())
        key = "version" if target.name == "space.json" else "format_version"
        cfg[key] = int(rng.choice([0, 2, 99]))
        target.write_text(json.dumps(cfg))
        what = f"{target.relative_to(folder)} says {key} {cfg[key]}"
    else:            # a component from another suite: the fingerprint no longer matches
        other = "toy-raster" if suite == "toy" else "toy"
        part = ["image", "audio"][int(rng.integers(2))]
        shutil.rmtree(folder / part)
        shutil.copytree(ctx.suite_dir(other) / part, folder / part)
        what = f"{part} swapped for another suite's"
    calls = Calls()
    tok = calls(f"load ({what})", unitok.load, folder)
    if not _failed(tok):
        calls("round trip", _round_trip, tok, ["text", _small_image(rng)])
    if op == 4 and (marker.exists() or not _failed(tok) or "pickle" not in str(tok)):
        calls.crash = f"a pickle checkpoint was not refused as one ({tok!r}; code ran: {marker.exists()})"
    return calls.result()


def _small_image(rng):
    import torch

    from unitok import Image

    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    return Image(torch.randint(0, 256, (3, 16, 24), dtype=torch.uint8, generator=g))


def _manifest_case(ctx: Context, rng, index: int):
    import unitok
    from unitok import TokenSequence, TokenSpace

    suite = "bundled" if rng.random() < 0.5 else "toy"
    folder = ctx.fresh()
    calls = Calls()
    which = int(rng.integers(0, 3))
    if which == 0:
        path = folder / "space.json"
        shutil.copy(ctx.suite_dir(suite) / "space.json", path)
        what = _damage_file(path, rng)
        if rng.random() < 0.5 and path.exists():   # without a fingerprint the content itself is checked
            try:
                obj = json.loads(path.read_text())
                if isinstance(obj, dict):
                    obj.pop("fingerprint", None)
                    path.write_text(json.dumps(obj))
            except ValueError:
                pass
        space = calls(f"TokenSpace.load ({what})", TokenSpace.load, path)
        if not _failed(space):
            calls.check("the space", lambda s: (len(s), s.table(), s.describe(0), s.fingerprint), space)
            calls("check_fingerprint", space.check_fingerprint, ctx.suites[suite].space.fingerprint)
    elif which == 1:
        shutil.copytree(ctx.suite_dir(suite), folder / "suite")
        what = _damage_file(folder / "suite" / "suite.json", rng)
        tok = calls(f"load ({what})", unitok.load, folder / "suite")
        if not _failed(tok):
            calls("round trip", _round_trip, tok, ["text", _small_image(rng)])
    else:
        tok = ctx.suites[suite]
        seq = tok.encode(["a caption", _small_image(rng)])
        path = folder / "doc.tokens.json"
        form = int(rng.integers(0, 3))
        if form == 0:
            seq.save(path)
        elif form == 1:
            path.write_text(json.dumps(seq.ids.tolist()))
        else:
            path.write_text(" ".join(map(str, seq.ids.tolist())))
        what = _damage_file(path, rng) if rng.random() < 0.9 else "intact"
        loaded = calls(f"TokenSequence.load ({what})", TokenSequence.load, path) if path.exists() else None
        if loaded is not None and not _failed(loaded):
            out = calls("decode strict", tok.decode, loaded)
            calls.check("strict result", _check_strict, loaded.ids, out)
            if loaded.fingerprint in (None, tok.space.fingerprint):
                out = calls("decode lenient", tok.decode, loaded, strict=False)
                if not _failed(out):
                    calls.check("lenient result", _check_lenient, tok, loaded.ids, out)
    return calls.result()


# =================================================================================================
# tokenized datasets and unitok tokenize
# =================================================================================================

def _dataset(ctx: Context) -> Path:
    """A small finished tokenize run (made once per worker)."""
    if ctx._dataset is None:
        from unitok.pipeline import TokenizeConfig, tokenize

        src = ctx.work / "dataset-src"
        out = ctx.work / "dataset"
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        src.mkdir(parents=True)
        (src / "img.png").write_bytes(ctx.seeds["img.png"])
        (src / "snd.wav").write_bytes(ctx.seeds["snd.wav"])
        lines = [{"content": [{"text": f"document {i} " * (i + 1)}] + ([{"image": "img.png"}] if i % 3 == 0 else [])
                  + ([{"audio": "snd.wav"}] if i % 4 == 1 else [])} for i in range(7)]
        lines[5] = {"content": [{"image": "missing.png"}]}
        (src / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        tokenize(TokenizeConfig([str(src / "m.jsonl")], out, shard_size=3, workers=0, progress=False),
                 tok=ctx.suites["bundled"])
        ctx._dataset = out
    return ctx._dataset


def _dataset_case(ctx: Context, rng, index: int):
    from unitok.data import TokenDataset
    from unitok.pipeline import verify

    src = _dataset(ctx)
    folder = ctx.fresh() / "out"
    shutil.copytree(src, folder)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    what = _damage_file(files[int(rng.integers(len(files)))], rng)
    calls = Calls()

    def read_all(path):
        ds = TokenDataset(path)
        for i in range(len(ds)):
            ds[i], ds.sequence(i), ds.source(i)
        return ds.sizes

    calls(f"TokenDataset ({what})", read_all, folder)
    # verify reports damage as problems (a success here); only an exception would be a crash
    calls(f"verify ({what})", verify, folder, ctx.suites["bundled"], sample=2)
    return calls.result()


def _tokenize_case(ctx: Context, rng, index: int):
    """A manifest mixing good files, mutated files, a FIFO and bad lines; afterwards every record
    must be in the dataset with exactly the ids ``tok.encode`` gives it, or in errors.jsonl. Even
    cases tokenize in the worker's own process, odd ones in a process pool of one."""
    import numpy as np

    from unitok import UnitokError
    from unitok.data import TokenDataset
    from unitok.media import check_document_bytes, open_media
    from unitok.pipeline import Options, TokenizeConfig, tokenize

    tok = ctx.suites["bundled"]
    root = ctx.fresh()
    media = []
    for k in range(24):
        name = list(ctx.seeds)[int(rng.integers(len(ctx.seeds)))]
        data = ctx.seeds[name]
        if rng.random() < 0.6:
            data, _ = mutate(data, rng, list(ctx.seeds.values()))
        ext = Path(name).suffix if rng.random() < 0.8 else ALL_EXTENSIONS[int(rng.integers(len(ALL_EXTENSIONS)))]
        path = root / f"f{k}{ext}"
        path.write_bytes(data)
        media.append(path.name)
    os.mkfifo(root / "fifo.wav")
    media.append("fifo.wav")
    lines: list = []
    for i in range(40):
        r = rng.random()
        if r < 0.08:
            lines.append('{"content": [{"text": "unterminated')
            continue
        if r < 0.12:
            lines.append({"content": [{"image": "nul\u0000.png"}]})
            continue
        if r < 0.15:
            lines.append({"content": [{"audio": 5}]})
            continue
        parts = []
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.3:
                parts.append({"text": "some text \u00e9\U0001F600 " * int(rng.integers(0, 3))})
            else:
                name = media[int(rng.integers(len(media)))]
                kind = {"image": "image", "video": "video", "audio": "audio"}.get(
                    _kind_of_name(name), ["image", "audio", "video"][int(rng.integers(3))])
                parts.append({kind: name})
        lines.append({"id": f"doc-{i}", "content": parts})
    manifest = root / "docs.jsonl"
    manifest.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    out = root / "out"
    limits = _fuzz_limits()
    options = Options(max_tokens=tok.max_tokens,
                      limits={k: getattr(limits, k) for k in ("max_pixels", "max_side", "max_seconds")})
    summary = tokenize(TokenizeConfig([str(manifest)], out, shard_size=7, workers=index % 2, options=options,
                                      progress=False), tok=tok)

    # what each record should have become, from tok.encode directly
    expected: dict[int, np.ndarray | None] = {}
    for i, line in enumerate(lines):
        if isinstance(line, str):
            expected[i] = None
            continue
        parts = line["content"]
        try:
            items, total = [], 0
            for p in parts:
                (kind, value), = p.items()
                if kind == "text":
                    items.append(value)
                    continue
                if not isinstance(value, str):
                    raise UnitokError("bad part")
                item = open_media(root / value)
                if type(item).__name__.lower() != kind:
                    raise UnitokError("wrong kind")
                total = check_document_bytes(total, item, tok.limits, value)
                items.append(item)
            seq = tok.encode(items)
            expected[i] = seq.ids if seq.spans else None
        except UnitokError:
            expected[i] = None
    ds = TokenDataset(out)
    stored = {ds.source(j)[0]: ds[j]["ids"] for j in range(len(ds))}
    errors = {json.loads(x)["index"] for x in (out / "errors.jsonl").read_text().splitlines()}
    lost = 0
    problems = []
    for i, ids in expected.items():
        if i in stored and i in errors:
            problems.append(f"record {i} is both stored and listed as an error")
        elif i not in stored and i not in errors:
            lost += 1
        elif ids is None and i in stored:
            problems.append(f"record {i} was stored, but tok.encode refuses it")
        elif ids is not None and i in errors:
            lost += 1
            problems.append(f"good record {i} was skipped")
        elif ids is not None and not np.array_equal(stored[i], ids):
            problems.append(f"record {i} was stored with other ids than tok.encode gives")
    if summary.records != len(lines) or summary.documents + summary.skipped != summary.records:
        problems.append(f"summary counts {summary.records} records, {summary.documents} documents, "
                        f"{summary.skipped} skipped, for {len(lines)} lines")
    if problems:
        return "crash", "; ".join(problems[:3]), lost
    return ("ok" if stored else "error"), f"{len(stored)} stored, {len(errors)} skipped", lost


def _selftest_case(ctx: Context, rng, index: int):
    """The harness's own test (``run({"selftest": 5})``): a hang, a memory blow-up, a dying worker,
    a crash and a success, in that order."""
    if index == 0:
        time.sleep(10**6)
    if index == 1:
        hog = []
        while True:
            hog.append(bytearray(64 << 20))
            hog[-1][::4096] = b"x" * len(range(0, 64 << 20, 4096))
    if index == 2:
        os._exit(3)
    if index == 3:
        raise KeyError("a bug")
    return "ok", "", 0


def _kind_of_name(name: str) -> str | None:
    from unitok.media import kind_of

    return kind_of(name)


CASES = {
    "image-files": _file_case("image"), "video-files": _file_case("video"), "audio-files": _file_case("audio"),
    "crafted-files": _crafted, "items": _items_case, "tokens-strict": _strict_case,
    "tokens-lenient": _lenient_case, "truncation": _truncation_case, "checkpoints": _checkpoint_case,
    "manifests": _manifest_case, "datasets": _dataset_case, "tokenize": _tokenize_case, "selftest": _selftest_case,
}


# =================================================================================================
# the report
# =================================================================================================

def table(tallies: dict[str, Tally]) -> str:
    rows = ["| category | cases | refused (unitok error) | decoded (checked) | crashes | hangs | memory blow-ups | "
            "records lost | s/case |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    total = Tally()
    for name, t in tallies.items():
        lost = str(t.lost) if name == "tokenize" else "-"
        rows.append(f"| {name} | {t.cases} | {t.error} | {t.ok} | {t.crash} | {t.hang} | {t.memory} | {lost} | "
                    f"{t.seconds / max(t.cases, 1):.3f} |")
        for k in ("cases", "error", "ok", "crash", "hang", "memory", "lost", "seconds"):
            setattr(total, k, getattr(total, k) + getattr(t, k))
    rows.append(f"| **total** | {total.cases} | {total.error} | {total.ok} | **{total.crash}** | **{total.hang}** | "
                f"**{total.memory}** | **{total.lost}** | {total.seconds / max(total.cases, 1):.3f} |")
    return "\n".join(rows)


def failures(tallies: dict[str, Tally]) -> list[str]:
    return [f"{name} #{i}: {status}: {detail}" for name, t in tallies.items() for i, status, detail in t.failures]


def section_body(tallies: dict[str, Tally], args, seconds: float) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from throughput import machine_description

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    lines = [
        f"- Machine: {machine_description()}",
        f"- Date: {_dt.date.today().isoformat()}",
        f"- Command: `{' '.join(shlex.quote(a) for a in ['python', 'benchmarks/robustness.py', *sys.argv[1:]])}` "
        f"({seconds / 60:.1f} minutes; seed {args.seed}, {args.timeout:g} s per case, "
        f"{args.max_rss_gb:g} GiB memory ceiling per case)",
    ]
    if load:
        lines.append(f"- Load average when it ended: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min)")
    lines += [
        "- Every case runs in a watchdog worker process (one torch thread). *Refused*: a unitok error "
        "(`MediaError`, `ConfigError`, `TokenSequenceError` with a position inside the sequence). *Decoded*: a "
        "documented success whose result passed the case's checks (the limits it was read under, strict round "
        "trips of what encodes, lenient parts of the shapes their headers declare). *Crash*: any other exception, a "
        "failed check, or the worker dying. *Hang*: no answer in time. *Memory*: resident memory grew past the "
        "ceiling. *Records lost* (`unitok tokenize`): records neither stored with the ids `tok.encode` gives "
        "nor listed in `errors.jsonl`.",
        "- Suites: the bundled one (`unitok.load()`: text, image, audio and, since its checkpoint landed in "
        "`unitok/assets/video`, video), the two toy suites of `unitok/testing.py` (next-scale and raster images, "
        "codec-depth and delay audio, 3 text tokens a group) and a small randomly initialised `unitok.video` "
        "tokenizer. Encoding and decoding run under "
        "tighter limits than the defaults (a header may ask for at most 4 megapixels, 120 s or 2**18 tokens) so "
        "that no case is legitimately slow; files are opened under the default `MediaLimits`, and the defaults' "
        "own refusals (a 16000 x 16000 image header, 4 h of audio, a config asking for 2**63 LSTM layers) are "
        "regression tests in `tests/test_fuzz.py`.",
        "- CI runs a deterministic slice of the same cases (`tests/test_fuzz.py`, seed 0, "
        f"{sum(SLICE.values())} cases, about 30 s).",
        "",
        table(tallies),
        "",
        "What a case is, per category:",
        "",
    ]
    lines += [f"- **{name}**: {what}." for name, what in CATEGORIES.items() if name in tallies]
    bad = failures(tallies)
    if bad:
        lines += ["", "Failures:", ""] + [f"- {b}" for b in bad[:50]]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=400, help="cases per category (fewer for the slow ones: "
                                                                 "tokenize 6, checkpoints 150, datasets 60, "
                                                                 "truncation 600 at the default)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", action="append", choices=list(CATEGORIES), help="run only this category "
                                                                                  "(repeatable)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a case counts as a hang")
    parser.add_argument("--max-rss-gb", type=float, default=3.0, help="memory growth that counts as a blow-up")
    parser.add_argument("--slice", action="store_true", help="the CI slice's case counts")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.work, args.seed)
        return 0
    names = args.only or list(CATEGORIES)
    if args.slice:
        cases = {n: SLICE[n] for n in names}
    else:
        scale = args.cases / 400
        cases = {n: max(1, round(DEFAULT_CASES.get(n, 400) * scale)) for n in names}

    def progress(category, i, tally):
        if i + 1 == cases[category] or (i + 1) % 50 == 0:
            print(f"{category}: {i + 1}/{cases[category]} (crashes {tally.crash}, hangs {tally.hang}, "
                  f"memory {tally.memory}, lost {tally.lost})", file=sys.stderr, flush=True)

    start = time.monotonic()
    tallies = run(cases, seed=args.seed, timeout=args.timeout, max_rss_gb=args.max_rss_gb, progress=progress)
    seconds = time.monotonic() - start
    print(table(tallies))
    for b in failures(tallies):
        print(b)
    if not args.no_write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from throughput import Section, write_section

        write_section(args.results, Section(SECTION, section_body(tallies, args, seconds)))
        print(f"wrote the {SECTION!r} section of {args.results}")
    bad = sum(t.crash + t.hang + t.memory + t.lost for t in tallies.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
