"""Make the small captioned dataset that ``recipes/train_lm.py`` trains on: generated, no downloads.

    python recipes/data/make_lm_data.py --out data/lm --images 2000 --audio 2000

Documents are ``[caption, image]`` and ``[caption, audio]``:

- images: 32x32 pictures of one shape (circle, square, triangle, cross), white or black, big or
  small, placed at random on a mid-grey ground; caption "a big white circle";
- audio: 0.32 s at 8 kHz of a slow synthetic signal (a rising or falling sweep of the level, a
  slow or fast wave), loud or quiet; caption "a loud slow wave".

They are tokenized with a small suite so that sequences stay short (about 100 tokens): the bundled
text tokenizer plus the toy codecs of ``unitok.testing`` (``ToyImage``, grey levels of 4x4 blocks,
next-scale 2x2 -> 4x4 -> 8x8, 84 tokens; ``ToyAudio``, 3 residual levels of the per-frame mean,
32 frames of 3 codes). The toy audio codec keeps one value per 10 ms frame, so the signals are
slow on purpose: that is all of them it can represent.

Writes::

    OUT/suite/           the token suite (load with unitok.load(OUT/suite); its types register
                         on `import unitok.testing`)
    OUT/media/           the generated PNG and WAV files
    OUT/documents.jsonl  the manifest (one document per line; the first ones are the held-out split)
    OUT/tokens/          the `unitok tokenize` output (TokenDataset)
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

import unitok
from unitok import Audio, Image, UniTokenizer
from unitok.pipeline import Options, TokenizeConfig, tokenize
from unitok.testing import ToyAudio, ToyAudioConfig, ToyImage, ToyImageConfig

SIZE = 32                     # image side, pixels
SAMPLE_RATE, SAMPLES = 8000, 2560   # audio: 32 frames of the toy codec's 80-sample hop
SHAPES = ("circle", "square", "triangle", "cross")
SHADES = {"white": 255, "black": 0}
SIGNALS = ("rising sweep", "falling sweep", "slow wave", "fast wave")
PLUGINS = ("unitok.testing",)   # the toy codecs register their types when this module is imported


def suite() -> UniTokenizer:
    """The bundled text tokenizer with the toy image and audio codecs (short sequences)."""
    return UniTokenizer(unitok.text.load_default(),
                        {"image": ToyImage(ToyImageConfig(patch=4, levels=16, scales=(4, 2))),
                         "audio": ToyAudio(ToyAudioConfig(sample_rate=SAMPLE_RATE, hop=80, levels=3, bins=8))})


def draw_shape(shape: str, shade: int, big: bool, rng: np.random.Generator) -> np.ndarray:
    """uint8 [SIZE, SIZE, 3]: one shape on a mid-grey ground, jittered in place."""
    r = (11 if big else 6) + rng.uniform(-1, 1)
    cy, cx = rng.uniform(r + 1, SIZE - r - 1, size=2)
    y, x = np.mgrid[:SIZE, :SIZE] + 0.5
    dy, dx = y - cy, x - cx
    if shape == "circle":
        inside = dy ** 2 + dx ** 2 <= r ** 2
    elif shape == "square":
        inside = (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    elif shape == "triangle":   # apex up
        inside = (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    else:                       # a plus sign
        inside = ((np.abs(dy) <= r * 0.3) & (np.abs(dx) <= r)) | ((np.abs(dx) <= r * 0.3) & (np.abs(dy) <= r))
    pixels = np.full((SIZE, SIZE), 128, np.uint8)
    pixels[inside] = shade
    return np.repeat(pixels[..., None], 3, axis=-1)


def make_signal(kind: str, loud: bool, rng: np.random.Generator) -> np.ndarray:
    """float32 [SAMPLES] in [-1, 1]: a slow signal the toy codec (a mean per 10 ms frame) keeps."""
    t = np.arange(SAMPLES) / SAMPLES
    amp = (0.8 if loud else 0.3) * rng.uniform(0.9, 1.1)
    if kind == "rising sweep":
        x = 2 * t - 1
    elif kind == "falling sweep":
        x = 1 - 2 * t
    else:
        cycles = 1.5 if kind == "slow wave" else 5.0
        x = np.sin(2 * math.pi * cycles * t + rng.uniform(0, 2 * math.pi))
    return (amp * x).astype(np.float32)


def write_media(out: Path, images: int, audio: int, seed: int) -> list[dict]:
    """Generate the media files and return the manifest lines (images and audio interleaved)."""
    rng = np.random.default_rng(seed)
    media = out / "media"
    media.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(max(images, audio)):
        if i < images:
            shape, shade, big = SHAPES[rng.integers(4)], list(SHADES)[rng.integers(2)], bool(rng.integers(2))
            name = f"media/img{i:05d}.png"
            Image.from_array(torch.from_numpy(draw_shape(shape, SHADES[shade], big, rng)), channels_last=True
                             ).save(out / name)
            lines.append({"id": f"img{i:05d}", "content": [{"text": f"a {'big' if big else 'small'} {shade} {shape}"},
                                                           {"image": name}]})
        if i < audio:
            kind, loud = SIGNALS[rng.integers(4)], bool(rng.integers(2))
            name = f"media/aud{i:05d}.wav"
            Audio.from_array(torch.from_numpy(make_signal(kind, loud, rng))[None], SAMPLE_RATE).save(out / name)
            lines.append({"id": f"aud{i:05d}", "content": [{"text": f"a {'loud' if loud else 'quiet'} {kind}"},
                                                           {"audio": name}]})
    return lines


def build(out: str | Path, images: int = 2000, audio: int = 2000, seed: int = 0, *, workers: int = 0,
          overwrite: bool = False) -> Path:
    """Write the suite, the media, the manifest and the tokenized dataset under ``out``; returns
    the ``TokenDataset`` folder. An existing finished dataset is kept unless ``overwrite``."""
    out = Path(out)
    tokens = out / "tokens"
    if (tokens / "index.json").exists() and not overwrite:
        return tokens
    out.mkdir(parents=True, exist_ok=True)
    tok = suite()
    tok.save_pretrained(out / "suite")
    lines = write_media(out, images, audio, seed)
    with open(out / "documents.jsonl", "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    summary = tokenize(TokenizeConfig([str(out / "documents.jsonl")], tokens, suite=str(out / "suite"),
                                      options=Options(bos=True, eos=True), plugins=PLUGINS, workers=workers,
                                      overwrite=True, progress=False, shard_size=10_000), tok=tok)
    print(summary.line())
    return tokens


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/lm", help="output folder")
    ap.add_argument("--images", type=int, default=2000, help="captioned images")
    ap.add_argument("--audio", type=int, default=2000, help="captioned audio clips")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=0, help="tokenize worker processes (0: this process)")
    ap.add_argument("--overwrite", action="store_true", help="rebuild a finished dataset")
    args = ap.parse_args(argv)
    build(args.out, args.images, args.audio, args.seed, workers=args.workers, overwrite=args.overwrite)


if __name__ == "__main__":
    main()
