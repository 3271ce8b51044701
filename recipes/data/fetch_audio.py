"""Fetch and prepare real speech, music and sound effects for the audio tokenizer.

Sources (see shared DATA.md), fetched with ``apt-get download`` + ``dpkg -x`` (no root install):

- ``ktuberling-data``: single words recorded by real people in about 20 languages (speech);
- ``wesnoth-1.16-music``: about 40 orchestral tracks, Ogg Vorbis (music);
- ``sound-theme-freedesktop`` and ``yaru-theme-sound``: short sound effects (effects);
- optionally ``espeak-ng`` (``--espeak N``): N synthetic sentences in several languages (speech).
  Its binary is run from the unpacked packages with ``LD_LIBRARY_PATH``, nothing is installed.

    python recipes/data/fetch_audio.py [--out data/audio] [--espeak 0]

Writes::

    data/audio/raw/                     the .deb files and what they unpack to
    data/audio/train_24k.npy            int16 [N]: every training file, 24 kHz mono, one after
                                        another (a GPU run memory-maps it, no decoding needed)
    data/audio/train_index.json         [{"source", "category", "start", "length"}] per file
    data/audio/heldout/speech/*.flac    held-out files, 24 kHz mono 16-bit FLAC, for benchmarks
    data/audio/heldout/music/*.flac
    data/audio/heldout/effects/*.flac
    data/audio/heldout_24k.npy          int16 [M] + heldout_index.json: the same held-out audio,
                                        for validation during training
    data/audio/split.json               which source went where, and why

The split is deterministic and never moves a source between reruns. Speech is split by
*language folder* (each ktuberling language is recorded by different people, so held-out speech
has unseen voices): a language is held out when sha256 of its name falls in the lowest
``--heldout-frac`` of the hash range (at least ``--min-heldout-languages``). Music, effects and
espeak sentences are split by file with the same rule. Identical files (ktuberling shares
recordings between locale variants) are kept once, in the split of their first occurrence; silent
files (wesnoth's ``silence.ogg``) and files shorter than 0.1 s are skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from fetch_images import fetch_deb   # same folder: apt-get download + dpkg -x once

RATE = 24_000
PACKAGES = {
    "ktuberling-data": "speech",
    "wesnoth-1.16-music": "music",
    "sound-theme-freedesktop": "effects",
    "yaru-theme-sound": "effects",
}
# espeak-ng and the shared libraries it loads that a bare machine lacks (run from the unpacked
# packages with LD_LIBRARY_PATH; nothing is installed)
ESPEAK_PACKAGES = ["espeak-ng", "espeak-ng-data", "libespeak-ng1", "libpcaudio0", "libsonic0", "libpulse0",
                   "libsndfile1", "libasyncns0", "libflac12", "libmp3lame0", "libmpg123-0", "libogg0", "libopus0",
                   "libvorbis0a", "libvorbisenc2"]
AUDIO_SUFFIXES = {".wav", ".ogg", ".oga", ".flac", ".mp3"}
ESPEAK_TEXT = {
    "en": ["The quick brown fox jumps over the lazy dog near the river bank.",
           "Please call Stella and ask her to bring these things with her from the store.",
           "A rainbow is a division of white light into many beautiful colors.",
           "She sells sea shells by the sea shore, and the shells she sells are surely seashells."],
    "de": ["Der schnelle braune Fuchs springt über den faulen Hund.",
           "Morgen früh fahren wir mit dem Zug nach Berlin und besuchen das Museum."],
    "fr": ["Le vif renard brun saute par-dessus le chien paresseux.",
           "Nous irons demain au marché acheter des pommes et du pain frais."],
    "es": ["El veloz zorro marrón salta sobre el perro perezoso.",
           "Mañana por la mañana iremos a la playa con nuestros amigos."],
    "it": ["La volpe veloce salta sopra il cane pigro.",
           "Domani andremo al mercato a comprare frutta e verdura fresca."],
    "pt": ["A rápida raposa marrom pula sobre o cão preguiçoso."],
    "nl": ["De snelle bruine vos springt over de luie hond."],
    "ru": ["Съешь же ещё этих мягких французских булок, да выпей чаю."],
}


def _run(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.decode(errors='replace').strip()}")
    return proc


def _hash_frac(name: str) -> float:
    return int(hashlib.sha256(name.encode()).hexdigest()[:12], 16) / 16 ** 12


def find_sources(roots: dict[str, Path]) -> list[dict]:
    """[{"path", "category", "group", "name"}] for every distinct audio file, sorted."""
    out, seen = [], set()
    for pkg, root in roots.items():
        category = PACKAGES.get(pkg, "speech")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        for p in files:
            real = Path(os.path.realpath(p))
            digest = hashlib.sha256(real.read_bytes()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            rel = p.relative_to(root)
            if pkg == "ktuberling-data":
                group = f"ktuberling/{rel.parent.name}"            # the language folder
            else:
                group = f"{pkg}/{rel}"
            out.append({"path": real, "category": category, "group": group, "name": f"{pkg}/{rel}"})
    return out


def split(sources: list[dict], frac: float, min_languages: int) -> set[str]:
    """Names of the held-out groups (see the module docstring). Groups are ranked per family
    (ktuberling languages, music, effects, espeak) so every family has held-out material."""
    families: dict[str, set[str]] = {}
    for s in sources:
        families.setdefault(f"{s['category']}:{s['group'].split('/')[0]}", set()).add(s["group"])
    held = set()
    for family, groups in sorted(families.items()):
        ranked = sorted(groups, key=_hash_frac)
        minimum = min_languages if family.endswith(":ktuberling") else 1
        held |= {g for g in ranked if _hash_frac(g) < frac} | set(ranked[:minimum])
    return held


def to_mono_24k(path: Path) -> torch.Tensor | None:
    """[N] float32 at 24 kHz, or None (with a note) for a file that does not decode."""
    import torchaudio.functional as AF

    from unitok import Audio, MediaError

    try:
        a = Audio.open(path)
    except MediaError as e:
        print(f"  skipped {path.name}: {e}", flush=True)
        return None
    x = a.samples.mean(0)
    if a.sample_rate != RATE:
        x = AF.resample(x, a.sample_rate, RATE)
    return x.clamp(-1, 1)


def espeak_sources(raw: Path, n: int) -> list[dict]:
    """Synthesise ``n`` sentences with espeak-ng (varied voices and speeds) into raw/espeak/."""
    if n <= 0:
        return []
    roots = [fetch_deb(p, raw) for p in ESPEAK_PACKAGES]
    binary = raw / "espeak-ng" / "usr/bin/espeak-ng"
    libdirs = sorted({str(p.parent) for r in roots for p in r.rglob("*.so*")})
    data = next((p.parent for r in roots for p in r.rglob("espeak-ng-data/phontab")), None)
    if data is None:
        sys.exit("espeak-ng-data not found in the unpacked packages")
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(libdirs + [os.environ.get("LD_LIBRARY_PATH", "")]))
    out_dir = raw / "espeak"
    out_dir.mkdir(exist_ok=True)
    texts = [(lang, t) for lang, ts in ESPEAK_TEXT.items() for t in ts]
    voices = ["", "+m3", "+f2", "+m7", "+f4"]
    sources = []
    for i in range(n):
        lang, text = texts[i % len(texts)]
        voice = lang + voices[(i // len(texts)) % len(voices)]
        speed = 130 + (i * 37) % 80
        wav = out_dir / f"{i:04d}_{lang}.wav"
        if not wav.exists():
            _run([str(binary), "--path", str(data.parent), "-v", voice, "-s", str(speed), "-w", str(wav), text],
                 raw, env)
        sources.append({"path": wav, "category": "speech", "group": f"espeak/{wav.name}", "name": f"espeak/{wav.name}"})
    return sources


def short_name(src: dict) -> str:
    """File stem for a held-out copy: ``ca_apple``, ``legends_of_the_north``, ``yaru_bell``."""
    pkg, stem = src["name"].split("/")[0], Path(src["name"]).stem
    if pkg == "ktuberling-data":
        return f"{Path(src['name']).parent.name}_{stem}"
    if PACKAGES.get(pkg) == "effects":
        return f"{pkg.split('-')[0]}_{stem}"
    return stem


def write_array(items: list[tuple[dict, torch.Tensor]], array_path: Path, index_path: Path) -> int:
    total = sum(len(x) for _, x in items)
    arr = np.lib.format.open_memmap(array_path, mode="w+", dtype=np.int16, shape=(total,))
    index, start = [], 0
    for src, x in items:
        arr[start:start + len(x)] = (x * 32767).round().clamp(-32768, 32767).to(torch.int16).numpy()
        index.append({"source": src["name"], "category": src["category"], "start": start, "length": len(x)})
        start += len(x)
    arr.flush()
    index_path.write_text(json.dumps(index, indent=0) + "\n")
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/audio", help="output folder (default: data/audio)")
    ap.add_argument("--heldout-frac", type=float, default=0.1, help="share of each category held out")
    ap.add_argument("--min-heldout-languages", type=int, default=2, help="speech languages held out at least")
    ap.add_argument("--espeak", type=int, default=0, metavar="N", help="also synthesise N espeak-ng sentences")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    out = Path(args.out)
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    roots = {name: fetch_deb(name, raw) for name in PACKAGES}
    sources = find_sources(roots) + espeak_sources(raw, args.espeak)
    held_groups = split(sources, args.heldout_frac, args.min_heldout_languages)

    heldout_dir = out / "heldout"
    if heldout_dir.exists():
        shutil.rmtree(heldout_dir)
    from unitok import Audio

    train, held, record = [], [], []
    for i, src in enumerate(sources):
        x = to_mono_24k(src["path"])
        if x is None or len(x) < RATE // 10 or float(x.pow(2).mean().sqrt()) < 1e-4:
            continue   # undecodable, shorter than 0.1 s, or silent (wesnoth's silence.ogg)
        is_held = src["group"] in held_groups
        record.append({"source": src["name"], "category": src["category"], "group": src["group"],
                       "split": "heldout" if is_held else "train", "seconds": round(len(x) / RATE, 3)})
        if is_held:
            held.append((src, x))
            d = heldout_dir / src["category"]
            d.mkdir(parents=True, exist_ok=True)
            stem = short_name(src)
            Audio(x[None].contiguous(), RATE).save(d / f"{stem}.flac")
        else:
            train.append((src, x))
        if (i + 1) % 200 == 0:
            print(f"  {i + 1}/{len(sources)} files", flush=True)

    n_train = write_array(train, out / "train_24k.npy", out / "train_index.json")
    n_held = write_array(held, out / "heldout_24k.npy", out / "heldout_index.json")
    (out / "split.json").write_text(json.dumps({"rate": RATE, "heldout_groups": sorted(held_groups),
                                                "files": record}, indent=1) + "\n")
    for split_name, items in (("train", train), ("heldout", held)):
        by_cat: dict[str, float] = {}
        for src, x in items:
            by_cat[src["category"]] = by_cat.get(src["category"], 0.0) + len(x) / RATE
        summary = ", ".join(f"{c} {s / 60:.1f} min" for c, s in sorted(by_cat.items()))
        print(f"{split_name}: {len(items)} files ({summary})")
    print(f"wrote {out / 'train_24k.npy'} ({n_train / RATE / 60:.1f} min) and {out / 'heldout_24k.npy'} "
          f"({n_held / RATE / 60:.1f} min); held-out files in {heldout_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
