"""Fetch and prepare real speech, music and sound effects for the audio tokenizer.

Sources (see shared DATA.md), fetched with ``apt-get download`` + ``dpkg -x`` (no root install):

- ``ktuberling-data``: single words recorded by real people in about 20 languages (speech);
- ``wesnoth-1.16-music``: about 40 orchestral tracks, Ogg Vorbis (music);
- ``sound-theme-freedesktop`` and ``yaru-theme-sound``: short sound effects (effects);
- ``klettres-data`` (held out only): letters and syllables recorded by real people, in the
  languages of ``KLETTRES_LANGUAGES``: those whose ktuberling recordings are not in training
  (both games were voiced by KDE volunteers, so a language heard in training may be the same
  voice), which makes every held-out voice unseen;
- optionally ``espeak-ng`` (``--espeak N``): N synthetic sentences in several languages (speech).
  Its binary is run from the unpacked packages with ``LD_LIBRARY_PATH``, nothing is installed.

    python recipes/data/fetch_audio.py [--out data/audio] [--espeak 0] [--parts train heldout val bench]

Writes::

    data/audio/raw/                     the .deb files and what they unpack to
    data/audio/train_24k.npy            int16 [N]: every training file, 24 kHz mono, one after
                                        another (a GPU run memory-maps it, no decoding needed)
    data/audio/train_index.json         [{"source", "category", "start", "length"}] per file
    data/audio/val/<category>/*.flac    validation files (speech, music, effects), 24 kHz mono FLAC
    data/audio/val_24k.npy              int16 [M] + val_index.json: the same, one array: what the
                                        training recipes validate on (``data.val``, ``data.val_index``)
    data/audio/bench/<category>/*.flac  benchmark files: what ``benchmarks/audio.py`` reports on
    data/audio/bench_24k.npy            int16 [K] + bench_index.json
    data/audio/heldout/...              legacy: the held-out set from before the val/bench division
    data/audio/heldout_24k.npy          (+ heldout_index.json), kept byte-identical because runs
                                        started before it validate on it; never report numbers on it
    data/audio/split.json               which source went where, and why

Train / held-out is deterministic and never moves a source between reruns. Speech is split by
*language folder* (each ktuberling language is recorded by different people, so held-out speech
has unseen voices): a language is held out when sha256 of its name falls in the lowest
``--heldout-frac`` of the hash range (at least ``--min-heldout-languages``). Music, effects and
espeak sentences are split by file with the same rule. Identical files (ktuberling shares
recordings between locale variants) are kept once, in the split of their first occurrence; silent
files (wesnoth's ``silence.ogg``) and files shorter than 0.1 s are skipped.

Held-out material is then divided into val and bench (``splits.divide``): speech by *language*
(ktuberling and KLettres recordings of one language on the same side), music by track, effects
and espeak sentences by file, so no voice, language or track is on both sides. Each speech
language contributes at most ``--max-per-language`` files per package to val / bench (the lowest
hashes of their names), so one language does not dominate. ``--parts val bench`` writes only the
two new splits and leaves the training and legacy files alone (outputs are written under
temporary names and renamed into place).
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
from splits import BENCH, PARTS, VAL, WHY, divide, hash_frac

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
#: held-out speech only (see the module docstring); ktuberling's held-out languages (ca, lt) may
#: appear here too, its training languages may not
KLETTRES = "klettres-data"
KLETTRES_LANGUAGES = ("ar", "cs", "he", "hu", "lt", "ml", "nb", "tn")
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
            elif pkg == KLETTRES:
                lang = rel.parts[3] if len(rel.parts) > 4 else ""  # usr/share/klettres/<lang>/<alpha|syllab>/x.ogg
                if lang not in KLETTRES_LANGUAGES:
                    continue
                group = f"klettres/{lang}"
            else:
                group = f"{pkg}/{rel}"
            out.append({"path": real, "category": category, "group": group, "name": f"{pkg}/{rel}"})
    return out


def split(sources: list[dict], frac: float, min_languages: int) -> set[str]:
    """Names of the held-out groups (see the module docstring). Groups are ranked per family
    (ktuberling languages, music, effects, espeak) so every family has held-out material;
    KLettres is held out whole."""
    families: dict[str, set[str]] = {}
    held = {s["group"] for s in sources if s["group"].startswith("klettres/")}
    for s in sources:
        if s["group"].startswith("klettres/"):
            continue
        families.setdefault(f"{s['category']}:{s['group'].split('/')[0]}", set()).add(s["group"])
    for family, groups in sorted(families.items()):
        ranked = sorted(groups, key=hash_frac)
        minimum = min_languages if family.endswith(":ktuberling") else 1
        held |= {g for g in ranked if hash_frac(g) < frac} | set(ranked[:minimum])
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
    """File stem for a held-out copy: ``ca_apple``, ``kl_cs_alpha_a``, ``legends_of_the_north``,
    ``yaru_bell``."""
    pkg, stem = src["name"].split("/")[0], Path(src["name"]).stem
    if pkg == "ktuberling-data":
        return f"{Path(src['name']).parent.name}_{stem}"
    if pkg == KLETTRES:
        lang, kind = Path(src["name"]).parts[-3:-1]
        return f"kl_{lang}_{kind}_{stem}"
    if PACKAGES.get(pkg) == "effects":
        return f"{pkg.split('-')[0]}_{stem}"
    return stem


def write_array(items: list[tuple[dict, torch.Tensor]], array_path: Path, index_path: Path) -> int:
    """One int16 array of every item, one after another, and its index; written under temporary
    names and renamed into place. Returns the number of samples."""
    total = sum(len(x) for _, x in items)
    tmp = array_path.with_name(array_path.name + ".tmp")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16, shape=(total,))
    index, start = [], 0
    for src, x in items:
        arr[start:start + len(x)] = (x * 32767).round().clamp(-32768, 32767).to(torch.int16).numpy()
        index.append({"source": src["name"], "category": src["category"], "start": start, "length": len(x)})
        start += len(x)
    arr.flush()
    del arr
    os.replace(tmp, array_path)
    index_path.with_name(index_path.name + ".tmp").write_text(json.dumps(index, indent=0) + "\n")
    os.replace(index_path.with_name(index_path.name + ".tmp"), index_path)
    return total


def unit_of(src: dict) -> tuple[str, str]:
    """(family, unit) by which a held-out source is divided into val and bench: speech by
    language (ktuberling and KLettres alike), espeak by language, music and effects by file."""
    kind, _, rest = src["group"].partition("/")
    if kind in ("ktuberling", "klettres"):
        return "speech", f"speech/{rest}"
    if kind == "espeak":
        return "espeak", "espeak/" + Path(rest).stem.split("_", 1)[1]
    return src["category"], src["group"]


def divide_heldout(held: list[dict], max_per_language: int) -> dict[str, str]:
    """Source name -> "val" or "bench" for the held-out sources kept in the two splits (see the
    module docstring): units divided per family, at least three speech languages a side; each
    speech language keeps at most ``max_per_language`` files per package (lowest name hashes)."""
    families: dict[str, set[str]] = {}
    for src in held:
        family, unit = unit_of(src)
        families.setdefault(family, set()).add(unit)
    side: dict[str, str] = {}
    for family, units in sorted(families.items()):
        side.update(divide(units, 3 if family == "speech" else 1))
    keep: dict[tuple[str, str], list[str]] = {}
    for src in held:
        family, unit = unit_of(src)
        if family == "speech":
            keep.setdefault((unit, src["name"].split("/")[0]), []).append(src["name"])
    dropped = {n for names in keep.values() for n in sorted(names, key=hash_frac)[max_per_language:]}
    return {src["name"]: side[unit_of(src)[1]] for src in held if src["name"] not in dropped}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/audio", help="output folder (default: data/audio)")
    ap.add_argument("--heldout-frac", type=float, default=0.1, help="share of each category held out")
    ap.add_argument("--min-heldout-languages", type=int, default=2, help="speech languages held out at least")
    ap.add_argument("--espeak", type=int, default=0, metavar="N", help="also synthesise N espeak-ng sentences")
    ap.add_argument("--max-per-language", type=int, default=60,
                    help="speech files per language and package in val / bench (default: 60)")
    ap.add_argument("--parts", nargs="+", choices=("train", "heldout") + PARTS, default=["train", "heldout", *PARTS],
                    help="outputs to write (default: all); `--parts val bench` leaves train_24k.npy and the legacy "
                         "heldout files as they are")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    out = Path(args.out)
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    # KLettres last: sources are deduplicated in this order, and the training audio must not change
    roots = {name: fetch_deb(name, raw) for name in [*PACKAGES, KLETTRES]}
    sources = find_sources(roots) + espeak_sources(raw, args.espeak)
    held_groups = split(sources, args.heldout_frac, args.min_heldout_languages)
    side = divide_heldout([s for s in sources if s["group"] in held_groups], args.max_per_language)

    from unitok import Audio

    for part in {"heldout", *PARTS} & set(args.parts):
        if (out / part).exists():
            shutil.rmtree(out / part)
    items: dict[str, list] = {"train": [], "heldout": [], VAL: [], BENCH: []}
    record = []
    for i, src in enumerate(sources):
        x = to_mono_24k(src["path"])
        if x is None or len(x) < RATE // 10 or float(x.pow(2).mean().sqrt()) < 1e-4:
            continue   # undecodable, shorter than 0.1 s, or silent (wesnoth's silence.ogg)
        is_held = src["group"] in held_groups
        legacy = is_held and not src["group"].startswith("klettres/")
        part = side.get(src["name"])
        record.append({"source": src["name"], "category": src["category"], "group": src["group"],
                       "split": "heldout" if is_held else "train", "part": part, "legacy_heldout": legacy,
                       "seconds": round(len(x) / RATE, 3)})
        for name, wanted in (("train", not is_held), ("heldout", legacy), (VAL, part == VAL), (BENCH, part == BENCH)):
            if not wanted or name not in args.parts:
                continue
            items[name].append((src, x))
            if name != "train":
                d = out / name / src["category"]
                d.mkdir(parents=True, exist_ok=True)
                Audio(x[None].contiguous(), RATE).save(d / f"{short_name(src)}.flac")
        if (i + 1) % 200 == 0:
            print(f"  {i + 1}/{len(sources)} files", flush=True)

    stems = {"train": "train", "heldout": "heldout", VAL: VAL, BENCH: BENCH}
    for name in args.parts:
        n = write_array(items[name], out / f"{stems[name]}_24k.npy", out / f"{stems[name]}_index.json")
        print(f"wrote {out / f'{name}_24k.npy'} ({n / RATE / 60:.1f} min)" + ("" if name == "train" else
                                                                              f" and {out / name}/"))
    languages = {p: sorted({unit_of(s)[1].split("/")[1] for s in sources if side.get(s["name"]) == p
                            and unit_of(s)[0] == "speech"}) for p in PARTS}
    meta = {"rate": RATE, "why": WHY, "heldout_groups": sorted(held_groups), "speech_languages": languages,
            "heldout_note": "legacy: heldout/ and heldout_24k.npy hold the files with legacy_heldout true (the "
                            "held-out set from before the val/bench division); runs started before it validate on "
                            "it. Never report numbers on it.",
            "files": record}
    (out / "split.json.tmp").write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(out / "split.json.tmp", out / "split.json")
    for name in ("train", VAL, BENCH):
        by_cat: dict[str, list[float]] = {}
        for r in record:
            if (r["split"] == "train") if name == "train" else (r["part"] == name):
                by_cat.setdefault(r["category"], []).append(r["seconds"])
        summary = ", ".join(f"{c} {len(v)} files {sum(v) / 60:.1f} min" for c, v in sorted(by_cat.items()))
        print(f"{name}: {summary}" + (f"; speech languages {', '.join(languages[name])}" if name in PARTS else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
