"""What every fuzz case shares (``robustness.py`` runs them, ``fuzz_worker.py`` hosts them): the
categories, the worker's context (seed files and tokenizer suites), the outcome of a case's calls,
the corpus of good files and the mutations of bytes, and the round trip every success must pass."""

from __future__ import annotations

import shutil
import traceback
from pathlib import Path

# category -> what one case is (the table's first column and its notes). The order is part of every
# case's identity: ``case_rng`` seeds a case by its category's position, so never reorder.
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
    # the robustness issue's classes (fuzz_hostile.py)
    "hostile-records": "a unitok tokenize run over a manifest, a folder and a tar shard mixing good records with "
                       "huge-integer and lone-surrogate ids, JSON nested 100,000 deep, invalid UTF-8 lines, paths "
                       "past PATH_MAX, a million spaces, non-UTF-8 file and member names, FIFOs, /dev/zero, "
                       "twin, link and sparse (8 GB) members; then cut short and resumed",
    "tar-shards": "a tar shard of good and bad samples cut at a random byte or header boundary, then another "
                  "input",
    "special-files": "a FIFO or /dev/zero in place of a suite's, a dataset's or a token file, or as a manifest, "
                     "tar, glob match or folder entry given to unitok tokenize",
    "damaged-json": "deep, huge-integer, invalid UTF-8, lone-surrogate, NaN, truncated or empty JSON in a suite's "
                    "JSON, a safetensors header, a token file or a dataset's JSON; a damaged shard manifest "
                    "resumed",
    "containment": "a vocab_file, id_map_file or index.json shard name reaching outside its folder",
    "unclean-failures": "unitok tokenize / encode with a full disk at a random write, a folder where an output "
                        "file must go, or another run holding the lock; then resumed once the cause is gone",
}
#: every category a worker runs: the report's, then the harness's own self-test
ORDER = (*CATEGORIES, "selftest")

FUZZ_MAX_TOKENS = 1 << 18


def fuzz_limits():
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
        limits = fuzz_limits()
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


def case_rng(seed: int, category: str, index: int):
    """The random numbers of one case: (seed, category, index) decide the case alone."""
    import numpy as np

    return np.random.default_rng([seed, ORDER.index(category), index])


def describe_error(e: BaseException) -> str:
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
            self._crash(f"{label}: {describe_error(e)}")
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
            self._crash(f"{label}: {describe_error(e)}")

    def _crash(self, detail: str) -> None:
        if self.crash is None:
            self.crash = detail

    def result(self, lost: int = 0) -> tuple[str, str, int]:
        if self.crash is not None:
            return "crash", self.crash, lost
        return ("ok" if self.ok else "error"), "", lost


def failed(x) -> bool:
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
        (folder / "vid.y4m").write_bytes(y4m(16, 16, 4))
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


def y4m(w: int, h: int, frames: int, fps: str = "25:1") -> bytes:
    """Raw YUV 4:2:0 video (FFmpeg's yuv4mpegpipe), ``frames`` black frames."""
    frame = b"FRAME\n" + bytes(w * h + 2 * ((w + 1) // 2) * ((h + 1) // 2))
    return f"YUV4MPEG2 W{w} H{h} F{fps} Ip A1:1 C420jpeg\n".encode() + frame * frames


KIND_OF_SEED = {"image": ("img.", "rgba.png", "gray.png"), "video": ("vid.", "silent.mp4"),
                "audio": ("snd.", "f32.wav", "s24.flac")}
ALL_EXTENSIONS = (".png", ".jpg", ".webp", ".gif", ".bmp", ".tiff", ".mp4", ".webm", ".mkv", ".mov", ".avi",
                  ".wav", ".flac", ".ogg", ".mp3", ".m4a", ".txt", "")


def seeds_of(ctx: Context, kind: str) -> list[str]:
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

def part_kind(x) -> str:
    return "text" if isinstance(x, str) else type(x).__name__.lower()


def round_trip(tok, doc) -> None:
    """Encode ``doc``; a success must decode strictly to parts of the same kinds and sizes (a video
    to its shots, as the suite's ``preprocess`` splits it)."""
    seq = tok.encode(doc)
    out = tok.decode(seq)
    expect = []
    for x in (doc if isinstance(doc, list) else [doc]):
        if isinstance(x, str) and not x:
            continue
        expect.extend(tok.preprocess.shots(x) if part_kind(x) == "video" else [x])
        if part_kind(x) == "video" and x.audio is not None and "audio" in tok.media:
            expect.append(x.audio)
    if [part_kind(x) for x in out] != [part_kind(x) for x in expect]:
        raise Bad(f"decodes to {[part_kind(x) for x in out]}, encoded {[part_kind(x) for x in expect]}")
    for got, want in zip(out, expect):
        if part_kind(got) == "image" and (got.height, got.width) != (want.height, want.width):
            raise Bad(f"image {want.width}x{want.height} decodes to {got.width}x{got.height}")
        if part_kind(got) == "video" and got.frames.shape != want.frames.shape:
            raise Bad(f"video {tuple(want.frames.shape)} decodes to {tuple(got.frames.shape)}")
    if len(seq) > tok.max_tokens:
        raise Bad(f"{len(seq)} tokens, over max_tokens")
