"""Reconstruction quality of the media tokenizers, against classic codecs at the same bit rate.

    python benchmarks/reconstruction.py --modality image [--suite DIR] [--checkpoint DIR ...] [--no-suite]
        [--heldout data/images/bench] [--limit N] [--max-side 1024] [--no-write]
    python benchmarks/reconstruction.py --modality audio [--suite DIR] [--checkpoint DIR ...] [--no-suite]
        [--heldout data/audio/bench] [--kbps 1.5 3 6] [--memory-minutes 60] [--no-write]
    python benchmarks/reconstruction.py --modality video [--suite DIR] [--checkpoint DIR ...] [--no-suite]
        [--heldout data/video/bench_256.npy] [--limit N] [--rate-multiples 1 2 4] [--no-write]

This is the command line; each modality's benchmark is a file of its own (``image.py``, ``audio.py``,
``video.py``, whose docstrings say what they measure and how) and registers a function in
``BENCHMARKS``. It returns the markdown body of its section in ``benchmarks/RESULTS.md`` ("## Image
reconstruction" for images), which this script replaces in place, leaving the other sections alone,
and the plots it wrote to ``benchmarks/plots/``. What the modalities share (the tokenizers under
test, tables, RESULTS.md, the machine) is in ``candidates.py`` and ``report.py``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from audio import AUDIO_CATEGORIES, AUDIO_HELDOUT, AUDIO_KBPS, bench_audio
from candidates import BUNDLED_SUITE
from image import HELDOUT, bench_image
from report import PLOTS, RESULTS, Section, publish
from video import VIDEO_HELDOUT, VIDEO_RATE_MULTIPLES, bench_video

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
    parser.add_argument("--heldout", type=Path, help="folder of held-out media (default: the benchmark split, "
                                                     "data/images/bench for images, data/audio/bench for audio; for "
                                                     "video the clips file data/video/bench_256.npy, or your own video "
                                                     "file or folder of them); the validation "
                                                     "split (data/images/val, data/audio/val, data/video/val_256.npy) "
                                                     "is for comparing design choices")
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
    video.add_argument("--split-shots", action=argparse.BooleanOptionalAction, default=True,
                       help="also code each clip shot by shot, split at detected scene cuts, as its own row "
                            "(default: on; --no-split-shots skips it)")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    if args.heldout is None:
        args.heldout = DEFAULT_HELDOUT[args.modality]

    section, plots = BENCHMARKS[args.modality](args)
    publish(section, args.results, not args.no_write, "".join(f"\nwrote {p}" for p in plots.values()))


if __name__ == "__main__":
    main()
