"""Regression tests for what users hit with ``unitok tokenize`` / ``verify`` / ``TokenDataset`` on
real data: audio at other sample rates, inputs changed before a resume, damaged shards, data
loaders that pickle the dataset, and docs.jsonl read by table libraries."""

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import unitok
from unitok import Audio, ConfigError, UniTokenizer
from unitok.checkpoint import load_pretrained
from unitok.data import TokenDataset
from unitok.pipeline import TokenizeConfig, tokenize, verify

VARIANTS = Path(__file__).parent / "fixtures" / "stable" / "variants"


@pytest.fixture(scope="module")
def text_suite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text_suite")
    UniTokenizer(unitok.text.load_default(), {}).save_pretrained(folder)
    return folder


def _texts(folder: Path, n: int, start: int = 0) -> Path:
    folder.mkdir(exist_ok=True)
    for i in range(start, start + n):
        (folder / f"doc{i:02d}.txt").write_text(f"document number {i} " * 3)
    return folder


def _config(inputs, out, suite, **kw) -> TokenizeConfig:
    return TokenizeConfig([str(i) for i in inputs], out, suite=str(suite), workers=0, shard_size=2,
                          progress=False, **kw)


def test_verify_accepts_audio_at_another_rate_than_the_codec(tmp_path):
    """The codec decodes at its own rate (8 kHz here); a 44.1 kHz source is the same duration."""
    suite = tmp_path / "suite"
    UniTokenizer(unitok.text.load_default(), {"audio": load_pretrained(VARIANTS / "audio_stft_istft")}
                 ).save_pretrained(suite)
    (tmp_path / "in").mkdir()
    for i, rate in enumerate((44100, 48000, 8000)):
        t = torch.arange(rate // 3 + 7 * i) / rate
        Audio((0.3 * torch.sin(2 * torch.pi * 330 * t))[None], rate).save(tmp_path / "in" / f"a{i}.wav")
    tokenize(_config([tmp_path / "in"], tmp_path / "out", suite))
    report = verify(tmp_path / "out", unitok.load(suite), sample=-1)
    assert report.ok, report.problems
    assert report.sampled == 3


def test_resume_refuses_a_folder_that_gained_a_file(tmp_path, text_suite):
    inputs = _texts(tmp_path / "in", 5)
    cfg = _config([inputs], tmp_path / "out", text_suite)
    tokenize(cfg)
    _texts(inputs, 1, start=99)
    with pytest.raises(ConfigError, match=r"in matches 6 file\(s\) now, 5 when the run started"):
        tokenize(dataclasses.replace(cfg, resume=True))


def test_resume_refuses_a_folder_whose_file_was_replaced(tmp_path, text_suite):
    inputs = _texts(tmp_path / "in", 4)
    cfg = _config([inputs], tmp_path / "out", text_suite)
    tokenize(cfg)
    (inputs / "doc01.txt").unlink()
    (inputs / "doc01b.txt").write_text("another file of another size")
    with pytest.raises(ConfigError, match="renamed, replaced or changed size"):
        tokenize(dataclasses.replace(cfg, resume=True))


def test_resume_refuses_an_edited_manifest_of_the_same_size(tmp_path, text_suite):
    manifest = tmp_path / "docs.jsonl"
    manifest.write_text("".join(json.dumps({"content": [{"text": f"doc {c}"}]}) + "\n" for c in "abc"))
    cfg = _config([manifest], tmp_path / "out", text_suite)
    tokenize(cfg)
    manifest.write_text(manifest.read_text().replace("doc b", "doc x"))
    with pytest.raises(ConfigError, match="docs.jsonl changed since the run started"):
        tokenize(dataclasses.replace(cfg, resume=True))


def test_resume_redoes_a_bit_flipped_shard_of_the_right_size(tmp_path, text_suite):
    inputs = _texts(tmp_path / "in", 5)
    cfg = _config([inputs], tmp_path / "out", text_suite)
    tokenize(cfg)
    shard = tmp_path / "out" / "shard-00000.bin"
    good = shard.read_bytes()
    shard.write_bytes(bytes([good[0] ^ 1]) + good[1:])
    summary = tokenize(dataclasses.replace(cfg, resume=True))
    assert shard.read_bytes() == good
    assert summary.shards_kept == 2       # the two undamaged shards of three
    assert verify(tmp_path / "out", unitok.load(text_suite)).ok


def test_a_pickled_dataset_carries_only_its_path(tmp_path, text_suite):
    tokenize(_config([_texts(tmp_path / "in", 40)], tmp_path / "out", text_suite))
    ds = TokenDataset(tmp_path / "out")
    first = [ds[i]["ids"].copy() for i in range(len(ds))]      # every shard is now open and mapped
    blob = pickle.dumps(ds)
    assert len(blob) < 1000, len(blob)
    again = pickle.loads(blob)
    assert all(np.array_equal(again[i]["ids"], first[i]) for i in range(len(ds)))


def test_docs_jsonl_has_one_json_type_per_field(tmp_path, text_suite):
    """Integer and string ids, and spans, as pyarrow / HF datasets read a table: one type a field."""
    manifest = tmp_path / "docs.jsonl"
    lines = [{"id": 17, "content": [{"text": "a"}]}, {"id": "doc-2", "content": [{"text": "b"}, {"text": "c"}]},
             {"content": [{"text": "no id"}]}]
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    tokenize(_config([manifest], tmp_path / "out", text_suite))
    docs = [json.loads(line) for p in sorted((tmp_path / "out").glob("*.docs.jsonl"))
            for line in p.read_text().splitlines()]
    for field in ("index", "id", "source", "spans"):
        assert len({type(d[field]) for d in docs}) == 1, field
    assert [d["id"] for d in docs] == ["17", "doc-2", "3"]
    spans = [s for d in docs for s in d["spans"]]
    assert all(set(s) == {"modality", "start", "stop"} for s in spans)
    for key in ("modality", "start", "stop"):
        assert len({type(s[key]) for s in spans}) == 1, key
    ds = TokenDataset(tmp_path / "out")
    assert [ds[i]["id"] for i in range(3)] == ["17", "doc-2", "3"]
    assert ds[1]["spans"] == unitok.load(text_suite).encode(["b", "c"]).spans


def _tar(path: Path, members) -> None:
    """members: (name, bytes) for regular files, or (name, ("hardlink"|"symlink", target))."""
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type = tarfile.LNKTYPE if content[0] == "hardlink" else tarfile.SYMTYPE
                info.linkname = content[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))


def _errors(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]


def test_tar_links_and_twin_members_are_reported_not_dropped(tmp_path, text_suite):
    _tar(tmp_path / "s.tar", [
        ("a.txt", b"first sample"),
        ("b.txt", ("hardlink", "a.txt")),             # a sample that is only a link
        ("c.txt", b"third"), ("c.json", ("symlink", "/etc/passwd")),
        ("d.txt", b"one"), ("d.TXT", b"two"),          # two members of one extension
        ("e.txt", b"last sample"),
    ])
    summary = tokenize(_config([tmp_path / "s.tar"], tmp_path / "out", text_suite))
    assert summary.records == 5 and summary.documents == 2
    reasons = {e["id"]: e["reason"] for e in _errors(tmp_path / "out")}
    assert "hard link to a.txt" in reasons["b"]
    assert "symbolic link to /etc/passwd" in reasons["c"]
    assert "second member with the extension .txt" in reasons["d"]
    assert [TokenDataset(tmp_path / "out")[i]["id"] for i in range(2)] == ["a", "e"]


def test_confine_keeps_every_input_inside_its_root(tmp_path, text_suite):
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("a file outside the dataset")
    root = _texts(tmp_path / "data", 2)
    (root / "link.txt").symlink_to(outside)
    (root / "m.jsonl").write_text("".join(json.dumps({"content": [{"text": "x"}, {"image": p}]}) + "\n"
                                          for p in ("../elsewhere.png", str(outside))))
    loose = tokenize(_config([root], tmp_path / "loose", text_suite))
    assert loose.documents == 3     # the default follows the link (a local tool's fair default)
    strict = tokenize(_config([root, root / "m.jsonl"], tmp_path / "strict", text_suite,
                              options=unitok.pipeline.Options(confine=True)))
    assert strict.documents == 2 and strict.skipped == 3
    reasons = [e["reason"] for e in _errors(tmp_path / "strict")]
    assert "outside the input folder (--confine)" in reasons[0]
    assert all("leaves the manifest's folder" in r for r in reasons[1:])
    assert json.loads((tmp_path / "strict" / "run.json").read_text())["options"]["confine"] is True


def test_tokenize_takes_what_encode_takes_animated_gifs_and_audio_only_mp4(tmp_path):
    """A folder's file is whatever its content holds, as with `unitok encode` (a manifest that
    says "image" still gets an image or an error)."""
    import shutil

    (tmp_path / "in").mkdir()
    t = torch.arange(8000) / 16000
    Audio((0.3 * torch.sin(2 * torch.pi * 440 * t))[None], 16000).save(tmp_path / "sound.m4a")
    shutil.copy(tmp_path / "sound.m4a", tmp_path / "in" / "sound.mp4")      # an .mp4 with no picture
    g = torch.Generator().manual_seed(0)
    unitok.Video(torch.randint(0, 256, (3, 3, 32, 40), dtype=torch.uint8, generator=g), 5).save(
        tmp_path / "in" / "moving.gif")
    summary = tokenize(TokenizeConfig([str(tmp_path / "in")], tmp_path / "out", workers=0, progress=False))
    assert summary.skipped == 0 and summary.documents == 2
    tok = unitok.load()
    ds = TokenDataset(tmp_path / "out")
    for i, name in enumerate(["moving.gif", "sound.mp4"]):
        want = tok.encode(tmp_path / "in" / name)
        assert np.array_equal(ds[i]["ids"], want.ids) and ds[i]["spans"] == want.spans
    assert [s.modality for s in ds[0]["spans"]] == ["video"] and [s.modality for s in ds[1]["spans"]] == ["audio"]
