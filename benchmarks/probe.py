"""The benchmarks' probe: one measurement of a codec in a fresh interpreter, printed as one JSON line.

    python benchmarks/probe.py {audio-speed,audio-memory,video-speed} CODEC_DIR DATA.npy THREADS DEVICE REPEAT
        [--levels N]

``audio.py`` and ``video.py`` start it with ``OMP_NUM_THREADS=THREADS`` (``timing.run_probe``), so
neither the benchmark's own memory nor its thread pool leaks into the numbers. Every mode gives
``threads`` (torch's) and ``load`` (the 1-minute load average), and:

- ``audio-speed``: DATA is float32 [N] samples at the codec's rate; the best wall time of the
  codec's batched ``encode`` (wav [1, 1, N] -> codes) at ``--levels`` levels and ``decode``, the
  two taking turns (``timing.interleaved_best``): keys ``encode``, ``decode`` (seconds).
- ``audio-memory``: ``tok.encode(Audio)`` of the whole signal, as a user encodes it: keys
  ``before`` / ``peak`` (bytes of peak resident memory just before encoding / at the end),
  ``wall`` (seconds), ``tokens``.
- ``video-speed``: DATA is one uint8 [T, 3, H, W] clip; as ``audio-speed`` with ``encode`` (uint8
  [1, T, 3, H, W] -> codes) and ``decode`` (codes -> frames).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Callable

import numpy as np
import torch

import unitok
from unitok import Audio, UniTokenizer
from unitok.checkpoint import load_pretrained

from timing import interleaved_best


def peak() -> int:
    """Peak resident memory of this process in bytes."""
    # VmHWM: exec resets it, while ru_maxrss would carry over the (larger) parent's from the fork
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def audio_speed(codec, wav: torch.Tensor, args, sync: Callable[[], None]) -> dict:
    """wav: [N] float32."""
    x = wav[None, None].to(args.device)
    codes = codec.encode(x, args.levels)
    return interleaved_best({"encode": lambda: (codec.encode(x, args.levels), sync()),
                             "decode": lambda: (codec.decode(codes, x.shape[-1]), sync())}, args.repeat)


def audio_memory(codec, wav: torch.Tensor, args, sync: Callable[[], None]) -> dict:
    """wav: [N] float32."""
    tok = UniTokenizer(unitok.text.load_default(), {"audio": codec})
    out = {"before": peak()}
    start = time.perf_counter()
    out["tokens"] = len(tok.encode(Audio(wav[None], codec.sample_rate)).ids)
    out["wall"] = time.perf_counter() - start
    out["peak"] = peak()
    return out


def video_speed(codec, frames: torch.Tensor, args, sync: Callable[[], None]) -> dict:
    """frames: [T, 3, H, W] uint8."""
    T, H, W = frames.shape[0], frames.shape[2], frames.shape[3]
    x = frames[None].to(args.device)
    codes = codec.encode(x)
    return interleaved_best({"encode": lambda: (codec.encode(x), sync()),
                             "decode": lambda: (codec.decode(codes, T, (H, W)), sync())}, args.repeat)


MODES = {"audio-speed": audio_speed, "audio-memory": audio_memory, "video-speed": video_speed}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("folder", help="the codec's folder (config.json + model.safetensors)")
    parser.add_argument("data", help=".npy file: the signal or clip to code")
    parser.add_argument("threads", type=int)
    parser.add_argument("device")
    parser.add_argument("repeat", type=int, help="timed rounds after the warm-up")
    parser.add_argument("--levels", type=int, help="audio: residual levels to code with")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    codec = load_pretrained(args.folder, device=args.device).eval()
    if args.levels is not None:
        codec.n_levels = args.levels
    data = torch.from_numpy(np.load(args.data))           # no copy
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    out = {"threads": torch.get_num_threads(), "load": os.getloadavg()[0]}
    with torch.inference_mode():
        out.update(MODES[args.mode](codec, data, args, sync))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
