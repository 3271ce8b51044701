"""Where an audio codec loses PESQ: its magnitudes or its phases.

    OMP_NUM_THREADS=1 python benchmarks/audio_phase.py [--checkpoint DIR] [--split val] [--every 6] [--no-write]

Each speech clip and the codec's reconstruction at its highest rate are taken to one STFT (a
periodic Hann window of ``--n-fft`` samples, ``--hop`` apart: by default the bundled decoder's own
frames), and signals are resynthesised (windowed overlap-add) from one's magnitudes and the other's
phases. The PESQ and STOI of those hybrids against the reference say how much each half costs:
"reference magnitudes, codec phases" is what perfect magnitudes would give with the codec's phases,
"codec magnitudes, reference phases" what perfect phases would give with its magnitudes. The
reference resynthesised from its own STFT is the ceiling (identical up to float rounding) and random
phases the floor. Uses the validation split by default (a design question, not a reported figure
of merit); ``--split bench`` reads the benchmark split.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from audio import AUDIO_RATE, codec_round_trip, load_audio_heldout
from report import RESULTS, ROOT, Section, command_line, machine_description, publish, rel

VARIANTS = ("reference, resynthesised", "codec", "reference magnitudes, codec phases",
            "codec magnitudes, reference phases", "reference magnitudes, random phases")


def _head(n_fft: int, hop: int):
    """An inverse-STFT head used only for its framing: :meth:`ISTFTHead.analyse` and
    :meth:`ISTFTHead.synthesise` are each other's inverse on the decoder's own frames."""
    from unitok.nn.audio import ISTFTHead

    return ISTFTHead(1, n_fft, hop)


def stft(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """[N] -> [F, frames]: the head's frames over the whole signal (``n_fft / hop`` frames cover
    every sample)."""
    head = _head(n_fft, hop)
    return head.analyse(x[None], -(-len(x) // hop) + head.lookahead)[0]


def istft(spec: torch.Tensor, n: int, n_fft: int, hop: int) -> torch.Tensor:
    """The inverse of :func:`stft` -> [n]."""
    return _head(n_fft, hop).synthesise(spec[None])[0, 0, :n]


def hybrids(x: torch.Tensor, y: torch.Tensor, n_fft: int, hop: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The five signals of ``VARIANTS`` for reference x and reconstruction y ([N] each)."""
    sx, sy = stft(x, n_fft, hop), stft(y, n_fft, hop)
    g = torch.Generator().manual_seed(seed)
    random = torch.rand(sx.shape, generator=g) * 2 * math.pi
    n = len(x)
    return {VARIANTS[0]: istft(sx, n, n_fft, hop), VARIANTS[1]: y,
            VARIANTS[2]: istft(torch.polar(sx.abs(), sy.angle()), n, n_fft, hop),
            VARIANTS[3]: istft(torch.polar(sy.abs(), sx.angle()), n, n_fft, hop),
            VARIANTS[4]: istft(torch.polar(sx.abs(), random), n, n_fft, hop)}


def main(argv: list[str] | None = None) -> None:
    from unitok import metrics
    from unitok.audio import AudioTokenizer

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=ROOT / "unitok" / "assets" / "audio",
                   help="audio codec folder (default: the bundled one)")
    p.add_argument("--split", default="val", help="folder under data/audio (val, bench)")
    p.add_argument("--every", type=int, default=6, help="every N-th speech clip (1: all)")
    p.add_argument("--n-fft", type=int, default=640)
    p.add_argument("--hop", type=int, default=320)
    p.add_argument("--results", type=Path, default=RESULTS, help="markdown file to update")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = p.parse_args(argv)
    if args.n_fft % args.hop:
        p.error("--n-fft must be a multiple of --hop")

    codec = AudioTokenizer.from_pretrained(args.checkpoint).float().eval()
    folder = ROOT / "data" / "audio" / args.split
    clips = [c for c in load_audio_heldout(folder, ("speech",)) if c.category == "speech"][::max(1, args.every)]
    if not clips:
        raise SystemExit(f"no speech clips in {folder}: run python recipes/data/fetch_audio.py")
    scores = {v: [] for v in VARIANTS}
    for i, clip in enumerate(clips):
        y = codec_round_trip(codec, clip.wav, codec.levels)[0]
        for name, out in hybrids(clip.wav, y, args.n_fft, args.hop, seed=i).items():
            scores[name].append((float(metrics.pesq(clip.wav, out, AUDIO_RATE)),
                                 float(metrics.stoi(clip.wav, out, AUDIO_RATE))))
        print(f"\r{i + 1}/{len(clips)} clips", end="", flush=True)
    print()
    rows = []
    for name in VARIANTS:
        a = np.array(scores[name], dtype=float)
        rows.append((name, np.nanmean(a[:, 0]), np.nanmean(a[:, 1])))
        print(f"{name:40s} PESQ {rows[-1][1]:.3f}  STOI {rows[-1][2]:.3f}")
    kbps = codec.bitrate(codec.levels) / 1000
    body = "\n".join([
        f"- Machine: {machine_description()}",
        f"- Date: {time.strftime('%Y-%m-%d')}",
        f"- Command: `{command_line()}`",
        f"- Codec: {rel(args.checkpoint)} at {kbps:g} kbps ({codec.levels} levels); {len(clips)} speech clips of "
        f"{rel(folder)} (every {args.every}th); STFT: periodic Hann, {args.n_fft} samples, hop {args.hop} "
        f"({1000 * args.n_fft / AUDIO_RATE:.1f} ms windows); wideband PESQ and STOI against the reference.",
        "",
        "| signal | PESQ (WB) | STOI |",
        "|---|---:|---:|",
        *[f"| {name} | {pq:.2f} | {st:.3f} |" for name, pq, st in rows],
        "",
        "Each hybrid is resynthesised from one signal's STFT magnitudes and the other's phases: the step from "
        "\"codec\" to \"codec magnitudes, reference phases\" is what the codec's phases cost, the step to "
        "\"reference magnitudes, codec phases\" what its magnitudes cost.",
    ])
    publish(Section("Audio: magnitudes and phases", body), args.results, not args.no_write)


if __name__ == "__main__":
    main()
