"""The held-out division of the fetch scripts (``recipes/data/``) into a validation split and a
benchmark split, and how the benchmarks read it: the two sides are disjoint by source (picture,
speech language, track, clip), deterministic, and a scene-cut clip records where its cut is.
Small synthetic inputs only; nothing is downloaded.

The fetch scripts import each other by plain name (``from splits import ...``), as Python lets a
script in ``recipes/data/`` do; they are loaded here under those names, with no sys.path edit."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from unitok import Image

import image as image_bench          # benchmarks/image.py (found through pytest's pythonpath)
import video as video_bench

DATA = Path(__file__).resolve().parents[1] / "recipes" / "data"


def _load(name: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DATA / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


splits = _load("splits")
fetch_images = _load("fetch_images")
fetch_audio = _load("fetch_audio")
fetch_video = _load("fetch_video")


def test_divide_is_disjoint_deterministic_and_fills_both_sides():
    names = [f"plasma/pic{i}" for i in range(40)]
    side = splits.divide(names)
    assert set(side) == set(names) and set(side.values()) == {"val", "bench"}
    assert side == splits.divide(list(reversed(names)))                    # order does not matter
    # a source's side depends on its name only (no minimum to enforce here): adding sources moves none
    more = splits.divide(names + [f"plasma/new{i}" for i in range(10)])
    assert all(more[n] == side[n] for n in names)
    # a family of two always has one on each side; of one, goes where its hash says
    assert sorted(splits.divide(["a/x", "a/y"]).values()) == ["bench", "val"]
    assert len(splits.divide(["a/x"])) == 1
    six = splits.divide([f"speech/{c}" for c in "abcdef"], min_each=3)
    assert sorted(six.values()) == ["bench"] * 3 + ["val"] * 3


def _pictures(folder: Path) -> dict[str, list[Path]]:
    """Five synthetic pictures in three families; one group has two variants."""
    out = {}
    for k, name in enumerate(["mate/a", "mate/b", "opencv/c", "opencv/d", "gnome/e"]):
        files = []
        for j in range(2 if name == "gnome/e" else 1):
            g = torch.Generator().manual_seed(10 * k + j)
            path = folder / f"{name.replace('/', '_')}_{j}.png"
            Image((torch.rand(3, 270, 300, generator=g) * 255).to(torch.uint8)).save(path)
            files.append(path)
        out[name] = files
    return out


def test_image_val_and_bench_are_disjoint_by_picture_and_reproducible(tmp_path):
    pictures = _pictures(tmp_path)
    side = fetch_images.divide_heldout(list(pictures))
    val = [n for n in pictures if side[n] == "val"]
    bench = [n for n in pictures if side[n] == "bench"]
    assert val and bench and not set(val) & set(bench)
    for family in ("mate", "opencv"):                                        # two each: one per side
        assert {side[n] for n in pictures if n.startswith(family)} == {"val", "bench"}
    arrays = []
    for run in range(2):
        out = tmp_path / f"run{run}"
        for part, names in (("val", val), ("bench", bench)):
            n = fetch_images.write_heldout(out / part, out / f"{part}_256.npy", pictures, names, crops=2,
                                           max_side=2048, round_robin=True)
            assert n == sum(len(pictures[x]) for x in names)
        arrays.append({p: np.load(out / f"{p}_256.npy") for p in ("val", "bench")})
        stems = {p: {f.stem.rsplit("_", 1)[0] if f.stem.startswith("gnome") else f.stem for f in (out / p).glob("*.png")}
                 for p in ("val", "bench")}
        assert not stems["val"] & stems["bench"]
    for p in ("val", "bench"):
        assert np.array_equal(arrays[0][p], arrays[1][p])
        assert arrays[0][p].shape[1:] == (256, 256, 3)
    # round robin: the first crops of the array come from different pictures
    val_pictures = sum(len(pictures[n]) for n in val)
    if val_pictures > 1:
        assert not np.array_equal(arrays[0]["val"][0], arrays[0]["val"][1])


def test_image_kinds():
    assert fetch_images.kind_of("plasma/Altai") == "art" and fetch_images.kind_of("plasma/Path") == "photo"
    assert fetch_images.kind_of("skimage/moon") == "science" and fetch_images.kind_of("opencv/messi5") == "photo"
    assert fetch_images.kind_of("gnome/pixels") == "art"


def _speech(pkg: str, lang: str, n: int) -> list[dict]:
    group = f"{'ktuberling' if pkg == 'ktuberling-data' else 'klettres'}/{lang}"
    return [{"name": f"{pkg}/usr/share/x/{lang}/w{i}.ogg", "category": "speech", "group": group} for i in range(n)]


def test_audio_speech_languages_stay_on_one_side():
    held = (_speech("ktuberling-data", "ca", 5) + _speech("ktuberling-data", "lt", 5) + _speech("klettres-data", "lt", 5)
            + [s for lang in ("ar", "cs", "he", "hu") for s in _speech("klettres-data", lang, 4)]
            + [{"name": f"wesnoth/m{i}.ogg", "category": "music", "group": f"wesnoth/m{i}.ogg"} for i in range(4)])
    side = fetch_audio.divide_heldout(held, max_per_language=3)
    assert side == fetch_audio.divide_heldout(list(reversed(held)), max_per_language=3)
    by_language: dict[str, set[str]] = {}
    for src in held:
        if src["name"] in side and src["category"] == "speech":
            by_language.setdefault(fetch_audio.unit_of(src)[1], set()).add(side[src["name"]])
    assert all(len(v) == 1 for v in by_language.values())                    # no language on both sides
    assert len(by_language) == 6
    languages = {p: {lang for lang, s in by_language.items() if s == {p}} for p in ("val", "bench")}
    assert len(languages["val"]) >= 3 and len(languages["bench"]) >= 3
    # at most 3 files per language and package: lt has two packages, so six
    assert sum(1 for s in held if s["name"] in side and s["group"].endswith("/lt")) == 6
    assert {side[s["name"]] for s in held if s["category"] == "music"} == {"val", "bench"}


def test_video_scene_cut_joins_two_shots_and_records_the_cut():
    shots = {"a": torch.zeros(20, 3, 64, 80, dtype=torch.uint8), "b": torch.full((30, 3, 64, 80), 200, dtype=torch.uint8)}
    clips = fetch_video.scene_cuts(shots, {"a": 0, "b": 100})
    assert [m["source"] for m, _ in clips] == ["cut:a+b", "cut:b+a"]
    for meta, clip in clips:
        cut = meta["cut_frame"]
        assert 4 <= cut <= 12 and cut == fetch_video.cut_frame(*meta["source"][4:].split("+"))
        assert clip.shape == (17, 256, 256, 3)
        first, second = (clip[:cut], clip[cut:]) if meta["source"] == "cut:a+b" else (clip[cut:], clip[:cut])
        assert first.max() == 0 and second.min() == 200                   # each side is one shot only
    assert clips[0][0]["shots"][1]["first_frame"] == 100 + (30 - 17) // 2


def test_video_benchmark_reads_the_split_and_the_worst_frame_at_a_cut(tmp_path):
    clips = np.zeros((2, 5, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "bench_32.npy", clips)
    split = {"bench": [{"source": "cut:a+b", "kind": "cut", "cut_frame": 2, "fps": "10"},
                       {"source": "vtest", "kind": "real", "first_frame": 0, "left": 0, "fps": "10"}],
             "val": [{"source": "tree", "kind": "real"}]}
    (tmp_path / "split.json").write_text(json.dumps(split))
    loaded = video_bench.load_video_heldout(tmp_path / "bench_32.npy")
    assert [c.group for c in loaded] == ["scene cut", "real camera"] and [c.cut for c in loaded] == [2, None]
    assert all(c.fps == 10 for c in loaded)
    psnr = np.array([[40.0, 39.0, 20.0, 30.0, 40.0], [40.0] * 5])
    # frames 1..4 around the cut at 2: the worst is 20; the clip without a cut does not count
    assert video_bench.worst_at_cut(psnr, [2, None]) == 20.0
    assert video_bench.worst_at_cut(psnr, [None, None]) is None
    assert "benchmark split" in video_bench.video_heldout_description(tmp_path / "bench_32.npy")


def test_image_benchmark_groups_pictures_by_kind(tmp_path):
    folder = tmp_path / "bench"
    folder.mkdir()
    for k, name in enumerate(["mate_a", "plasma_b", "gnome_e_0"]):
        g = torch.Generator().manual_seed(k)
        Image((torch.rand(3, 64, 64, generator=g) * 255).to(torch.uint8)).save(folder / f"{name}.png")
    (tmp_path / "split.json").write_text(json.dumps({"kinds": {"mate/a": "photo", "plasma/b": "art",
                                                               "gnome/e": "art"}}))
    pictures = image_bench.load_heldout(folder)
    assert {p.name: p.kind for p in pictures} == {"gnome_e_0": "art", "mate_a": "photo", "plasma_b": "art"}
    assert {p.kind for p in image_bench.crops_of(pictures, size=32, random_crops=1)} == {"photo", "art"}
    assert "the benchmark split" in image_bench.heldout_description(folder, pictures)
    assert "photo 1" in image_bench.heldout_description(folder, pictures)


def test_image_table_per_kind_compares_each_kind_with_the_anchor_on_its_own_pictures():
    pics = [image_bench.Picture(f"p{i}", None, kind=k) for i, k in enumerate(["photo", "photo", "art"])]
    n = np.zeros(3)
    run = image_bench.TokenizerRun(np.array([0.2, 0.2, 0.2]), n, n, np.array([30.0, 32.0, 20.0]), n + 0.9, n, [])
    # JPEG: 0.1 -> 0.3 bpp; photos 28 -> 34 dB, the art picture 18 -> 22 dB
    jpeg = image_bench.AnchorCurve("JPEG", (10, 50), np.full((2, 3), 0.1) + [[0], [0.2]],
                                   np.array([[28.0, 28.0, 18.0], [34.0, 34.0, 22.0]]), np.zeros((2, 3)),
                                   np.zeros((2, 3)))
    setting = image_bench.SettingResult("crops", "256x256 crops", pics, {"tok": run}, {"JPEG": jpeg}, [])
    rows = {r["kind"]: r for r in image_bench.kind_rows(setting)}
    assert list(rows) == ["photo", "art"] and rows["photo"]["images"] == 2
    assert rows["photo"]["PSNR"] == 31.0 and rows["photo"]["JPEG PSNR @ same bpp"] == pytest.approx(31.0)
    assert rows["art"]["gap to JPEG (dB)"] == pytest.approx(0.0)
    assert "| photo | 2 | tok |" in image_bench.kind_table(setting)


@pytest.mark.parametrize("script", ["fetch_images", "fetch_audio", "fetch_video"])
def test_fetch_scripts_document_the_split(script):
    doc = sys.modules[script].__doc__
    assert "val" in doc and "bench" in doc
