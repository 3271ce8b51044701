"""Batch tokenization (``unitok tokenize``, ``unitok.pipeline``, ``unitok.data.TokenDataset``) with
the toy codecs of ``unitok/testing.py``: bad records, worker-count independence, kill and resume, the
on-disk format, WebDataset tars, verify, and the Ray engine."""

import io
import json
import os
import signal
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import unitok
from unitok import Audio, ConfigError, Image, UniTokenizer, UnitokError
from unitok.checkpoint import register
from unitok.cli import main
from unitok.data import TokenDataset
from unitok.pipeline import Options, TokenizeConfig, tokenize
from unitok.pipeline.shards import id_dtype, megatron_index, read_megatron_index

from unitok.testing import ToyAudio, ToyImage, ToyImageConfig

TESTS = Path(__file__).resolve().parent
PLUGINS = ("unitok.testing",)   # workers import the toy codecs' module, which registers their types


def _picture(seed: int, h: int = 24, w: int = 40) -> Image:
    g = torch.Generator().manual_seed(seed)
    return Image.from_array(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g))


def _tone(seed: int, n: int = 1200) -> Audio:
    t = torch.arange(n) / 8000
    return Audio((0.2 * torch.sin(2 * torch.pi * (200 + 40 * seed) * t))[None], 8000)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("suite")
    UniTokenizer(unitok.text.load_default(), {"image": ToyImage(), "audio": ToyAudio()}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tok(suite):
    return unitok.load(suite)


def _write_manifest(path: Path, lines: list) -> None:
    with open(path, "w") as f:
        for line in lines:
            f.write((line if isinstance(line, str) else json.dumps(line)) + "\n")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A manifest seeded with bad records, plus a folder of media and text files."""
    root = tmp_path_factory.mktemp("data")
    (root / "img").mkdir()
    for i in range(3):
        _picture(i).save(root / "img" / f"p{i}.png")
    _picture(7, 33, 17).save(root / "img" / "q.jpg", quality=90)
    _tone(0).save(root / "a0.wav")
    _tone(1, 3000).save(root / "a1.flac")
    good_png = (root / "img" / "p0.png").read_bytes()
    (root / "img" / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    (root / "img" / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(300))
    lines = [
        {"id": "doc-1", "content": [{"text": "A cat"}, {"image": "img/p0.png"}, {"audio": "a0.wav"}]},
        {"content": [{"text": "only text, no id"}]},
        {"id": "doc-3", "content": [{"image": "img/truncated.png"}]},                   # corrupt
        {"id": "doc-4", "content": [{"text": "before"}, {"image": "img/missing.png"}]},  # missing file
        '{"id": "doc-5", "content": [{"text": "unterminated',                           # bad JSON
        {"id": "doc-6", "content": []},                                                 # empty
        {"id": "doc-7", "content": [{"text": ""}]},                                     # empty text only
        {"id": "doc-8", "content": [{"image": "img/garbage.jpg"}]},                     # corrupt
        {"id": "doc-9", "content": [{"image": "a1.flac"}]},                             # wrong kind
        {"id": "doc-10", "content": [{"video": 3}]},                                    # bad part
        {"id": "doc-11", "content": [{"audio": "a1.flac"}, {"text": "after"}, {"text": "two"},
                                     {"image": "img/q.jpg"}]},
        "",                                                                             # blank: not a record
        ["not", "an", "object"],
        {"id": "doc-14", "content": [{"image": "img/p1.png"}, {"image": "img/p2.png"}]},
    ]
    _write_manifest(root / "docs.jsonl", lines)
    texts = root / "texts"
    texts.mkdir()
    for i in range(5):
        (texts / f"t{i}.txt").write_text(f"text file {i} " * (i + 1))
    (texts / "bytes.txt").write_bytes(b"\xff\xfe invalid utf-8 \x80")
    return root


BAD = {  # manifest line -> words its reason must hold
    3: "truncated.png", 4: "missing.png: file not found", 5: "not valid JSON", 6: "empty document",
    7: "empty document", 8: "garbage.jpg", 9: "listed as image, but the file holds an audio",
    10: "part 0: video must be a string", 13: "expected a JSON object",
}
GOOD_LINES = [1, 2, 11, 14]


def _documents(data: Path) -> dict[int, list]:
    """The good manifest lines as documents for ``UniTokenizer.encode``."""
    out = {}
    for number, line in enumerate((data / "docs.jsonl").read_text().splitlines(), 1):
        if number in GOOD_LINES:
            out[number] = [p["text"] if "text" in p else data / next(iter(p.values()))
                           for p in json.loads(line)["content"]]
    return out


def _run(out, inputs, suite, **kw) -> "unitok.pipeline.Summary":
    kw.setdefault("workers", 0)
    kw.setdefault("shard_size", 3)
    return tokenize(TokenizeConfig([str(i) for i in inputs], out, suite=str(suite), plugins=PLUGINS,
                                   progress=False, **kw))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data, suite):
    """An uninterrupted in-process run over the manifest, the text folder and a glob."""
    out = tmp_path_factory.mktemp("reference")
    _run(out, [data / "docs.jsonl", data / "texts", data / "img" / "p*.png"], suite, options=Options(eos=True))
    return out


# -- acceptance: bad records, exact ids ------------------------------------------------------------

def test_bad_records_are_listed_with_reasons_and_good_ones_kept(reference, data, tok):
    errors = [json.loads(line) for line in (reference / "errors.jsonl").read_text().splitlines()]
    by_line = {int(e["position"].split()[1]): e for e in errors if e["position"].startswith("line")}
    assert sorted(by_line) == sorted(BAD)
    for number, words in BAD.items():
        e = by_line[number]
        assert words in e["reason"], e
        assert e["source"] == str(data / "docs.jsonl")
    assert by_line[3]["id"] == "doc-3" and by_line[5]["id"] == "5"  # unreadable JSON: the line number
    assert len(errors) == len(BAD)

    ds = TokenDataset(reference)
    assert len(ds) == len(GOOD_LINES) + 6 + 3                       # manifest, text folder, glob
    docs = _documents(data)
    for i, (number, doc) in enumerate(docs.items()):
        seq = tok.encode(doc, eos=True)
        got = ds[i]
        assert got["id"] == json.loads((data / "docs.jsonl").read_text().splitlines()[number - 1]).get("id", str(number))
        assert np.array_equal(got["ids"], seq.ids) and np.array_equal(got["groups"], seq.groups)
        assert got["spans"] == seq.spans
    folder = sorted((data / "texts").iterdir())
    for j, path in enumerate(folder):
        got = ds[len(docs) + j]
        assert got["id"] == path.name
        assert np.array_equal(got["ids"], tok.encode(path.read_bytes(), eos=True).ids)
    for j in range(3):
        got = ds[len(docs) + len(folder) + j]
        assert got["id"] == f"p{j}.png"
        assert np.array_equal(got["ids"], tok.encode(data / "img" / f"p{j}.png", eos=True).ids)
    assert tok.decode(ds.sequence(len(docs) + folder.index(data / "texts" / "bytes.txt")))[0].encode(
        "utf-8", "surrogateescape") == (data / "texts" / "bytes.txt").read_bytes()


def test_on_error_fail_stops_at_the_first_bad_record(tmp_path, data, suite):
    with pytest.raises(UnitokError, match=r"docs.jsonl \(line 3\).*truncated.png.*--on-error fail"):
        _run(tmp_path / "out", [data / "docs.jsonl"], suite, on_error="fail")


def test_resume_after_on_error_fail_and_a_fixed_media_file(tmp_path, data, suite):
    """What the stop message promises: a manifest's media file fixed in place (another size too),
    --resume goes on to the next bad record."""
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    out = tmp_path / "out"
    with pytest.raises(UnitokError, match=r"line 3.*--resume continues once the input is fixed"):
        _run(out, [copy / "docs.jsonl"], suite, on_error="fail", shard_size=2)
    _picture(11, 30, 30).save(copy / "img" / "truncated.png")
    with pytest.raises(UnitokError, match=r"docs.jsonl \(line 4\).*missing.png"):
        _run(out, [copy / "docs.jsonl"], suite, on_error="fail", shard_size=2, resume=True)


# -- format -----------------------------------------------------------------------------------------

def test_shards_are_megatron_indexed_datasets(reference):
    index = json.loads((reference / "index.json").read_text())
    assert index["dtype"] == "uint16"
    ds = TokenDataset(reference)
    n = 0
    for name, count in zip(index["shards"], index["documents_per_shard"]):
        raw = (reference / f"{name}.idx").read_bytes()
        assert raw[:9] == b"MMIDIDX\x00\x00"
        version, code, seqs, docs = struct.unpack("<QBQQ", raw[9:34])
        assert (version, code, seqs, docs) == (1, 8, count, count + 1)
        sizes = np.frombuffer(raw, "<i4", seqs, 34)
        pointers = np.frombuffer(raw, "<i8", seqs, 34 + 4 * seqs)
        doc_idx = np.frombuffer(raw, "<i8", docs, 34 + 12 * seqs)
        assert np.array_equal(doc_idx, np.arange(count + 1))
        ids = np.fromfile(reference / f"{name}.bin", "<u2")
        groups = np.fromfile(reference / f"{name}.groups.bin", "<u4")
        assert len(ids) == len(groups) == sizes.sum()
        for size, ptr in zip(sizes, pointers):
            doc = ds[n]
            assert np.array_equal(ids[ptr // 2:ptr // 2 + size], doc["ids"])
            assert np.array_equal(groups[ptr // 2:ptr // 2 + size], doc["groups"])
            n += 1
        manifest = json.loads((reference / f"{name}.json").read_text())
        assert manifest["documents"] == count and manifest["fingerprint"] == index["fingerprint"]
        assert sum(manifest["tokens_by_modality"].values()) == manifest["tokens"] == sizes.sum()
    assert n == len(ds)
    text = (reference / "shard-00000.json").read_text() + (reference / "run.json").read_text()
    assert os.uname().nodename not in text


def test_large_vocabularies_use_int32(tmp_path):
    assert id_dtype(1 << 16) == np.uint16 and id_dtype((1 << 16) + 1) == np.int32
    (tmp_path / "x.idx").write_bytes(megatron_index(np.array([3, 0, 5]), np.dtype(np.int32)))
    index = read_megatron_index(tmp_path / "x.idx")
    assert index.dtype == np.int32 and index.pointers.tolist() == [0, 12, 12] and index.doc_idx.tolist() == [0, 1, 2, 3]
    (tmp_path / "y.idx").write_bytes(b"MMIDIDX\x00\x00" + b"\x01" * 20)
    with pytest.raises(ConfigError, match="y.idx"):
        read_megatron_index(tmp_path / "y.idx")


# -- workers, resume --------------------------------------------------------------------------------

def test_output_is_byte_identical_whatever_the_worker_count(tmp_path, reference, data, suite):
    _run(tmp_path / "two", [data / "docs.jsonl", data / "texts", data / "img" / "p*.png"], suite,
         options=Options(eos=True), workers=2, batch=2)
    assert _files(tmp_path / "two") == _files(reference)


def test_resume_redoes_only_unfinished_shards(tmp_path, reference, data, suite):
    out = tmp_path / "out"
    inputs = [data / "docs.jsonl", data / "texts", data / "img" / "p*.png"]
    out.mkdir()
    for name, content in _files(reference).items():      # a run killed while writing shard 2
        if not name.startswith(("shard-00002", "shard-00004", "index", "errors")):
            (out / name).write_bytes(content)
    (out / "shard-00002.bin").write_bytes(b"half a shard")
    (out / ".shard-00004.idx.partial").write_bytes(b"junk")
    kept = {name: (out / name).stat().st_mtime_ns for name in _files(out) if name.startswith("shard-00001")}
    with pytest.raises(ConfigError, match="already holds a tokenize run.*--resume.*--overwrite"):
        _run(out, inputs, suite, options=Options(eos=True))
    summary = _run(out, inputs, suite, options=Options(eos=True), resume=True)
    assert summary.shards_kept == summary.shards - 2
    assert _files(out) == _files(reference)
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept    # not rewritten


def test_resume_refuses_another_config_or_suite(tmp_path, reference, data, suite):
    out = tmp_path / "out"
    inputs = [data / "docs.jsonl"]
    _run(out, inputs, suite)
    with pytest.raises(ConfigError, match=r"shard size 3 vs 5.*--overwrite"):
        _run(out, inputs, suite, shard_size=5, resume=True)
    with pytest.raises(ConfigError, match="options"):
        _run(out, inputs, suite, options=Options(bos=True), resume=True)
    other = tmp_path / "other_suite"
    UniTokenizer(unitok.text.load_default(), {"image": ToyImage(ToyImageConfig(levels=8)), "audio": ToyAudio()}
                 ).save_pretrained(other)
    with pytest.raises(ConfigError, match="tokenizer suite fingerprint"):
        _run(out, inputs, other, resume=True)
    summary = _run(out, inputs, other, overwrite=True)
    assert summary.shards_kept == 0 and summary.documents == len(GOOD_LINES)


def _big_manifest(folder: Path, n: int) -> Path:
    folder.mkdir()
    _picture(0, 64, 64).save(folder / "a.png")
    lines = [{"content": [{"text": f"record {i} " * (1 + i % 7)}, {"image": "a.png"}]} for i in range(n)]
    lines[n // 3] = "{broken"
    _write_manifest(folder / "big.jsonl", lines)
    return folder / "big.jsonl"


def test_sigkill_midway_then_resume_gives_identical_shards(tmp_path, suite):
    """Acceptance: kill a running `unitok tokenize` (all its processes) with SIGKILL once some
    shards are written, resume it, and compare with an uninterrupted run."""
    manifest = _big_manifest(tmp_path / "in", 400)
    _run(tmp_path / "ref", [manifest], suite, shard_size=10)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "unitok.cli", "tokenize", str(manifest), "-o", str(out), "--suite", str(suite),
           "--plugin", "unitok.testing", "--workers", "2", "--shard-size", "10", "--batch", "4", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    job = subprocess.Popen(cmd, env=env, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "shard-00002.json").exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert job.returncode == -signal.SIGKILL, job.stderr.read().decode()
    done = sorted(out.glob("shard-*.json"))
    print(f"killed with {len(done)} shards complete")
    assert 0 < len(done) < 40, "the kill should land midway"
    assert not (out / "index.json").exists()
    with pytest.raises(ConfigError, match="not a finished tokenize run"):
        TokenDataset(out)
    resume = [*cmd[:cmd.index("--workers") + 1], "0", *cmd[cmd.index("--workers") + 2:], "--resume"]
    resumed = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"kept {len(done)} complete shard(s)" in resumed.stderr
    assert _files(out) == _files(tmp_path / "ref")


# -- WebDataset tars --------------------------------------------------------------------------------

def _tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))


def test_webdataset_tar_shards(tmp_path, data, suite, tok):
    png = (data / "img" / "p0.png").read_bytes()
    wav = (data / "a0.wav").read_bytes()
    order = json.dumps({"content": [{"audio": "wav"}, {"text": "between"}, {"image": "png"}]}).encode()
    _tar(tmp_path / "shard-000.tar", [
        ("s0.png", png), ("s0.txt", b"caption of s0"),                        # members in tar order
        ("s1.json", order), ("s1.png", png), ("s1.wav", wav),                 # order from the json member
        ("s2.png", png[:100]),                                                # corrupt member
        ("s3.json", json.dumps({"content": [{"image": "jpg"}]}).encode()),     # names a missing member
    ])
    _tar(tmp_path / "shard-001.tar", [("t0.txt", b"second shard")])
    _tar(tmp_path / "shard-002.tar", [("u0.txt", b"x" * 5000), ("u1.txt", b"y")])
    (tmp_path / "shard-002.tar").write_bytes((tmp_path / "shard-002.tar").read_bytes()[:2000])   # truncated
    summary = _run(tmp_path / "out", [tmp_path / "shard-{000..002}.tar"], suite)
    ds = TokenDataset(tmp_path / "out")
    assert [ds[i]["id"] for i in range(len(ds))] == ["s0", "s1", "t0"]
    assert np.array_equal(ds[0]["ids"], tok.encode([Image.open(png), "caption of s0"]).ids)
    assert np.array_equal(ds[1]["ids"], tok.encode([Audio.open(wav), "between", Image.open(png)]).ids)
    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert [(e["id"], e["position"]) for e in errors][:2] == [("s2", "sample s2"), ("s3", "sample s3")]
    assert "shard-000.tar:s2.png" in errors[0]["reason"] and "jpg" in errors[1]["reason"]
    assert errors[2]["source"].endswith("shard-002.tar") and "truncated" in errors[2]["reason"]
    assert summary.skipped == 3


# -- CLI, verify -------------------------------------------------------------------------------------

def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_tokenize_and_verify(capsys, tmp_path, data, suite):
    import unitok.testing  # noqa: F401  (registers the toy types)
    out = tmp_path / "out"
    code, _, err = _cli(capsys, "tokenize", data / "docs.jsonl", data / "a0.wav", "-o", out, "--suite", suite,
                        "--plugin", "unitok.testing", "--workers", "0", "--shard-size", "4", "--eos", "--no-progress")
    assert code == 0, err
    assert f"tokenized {len(GOOD_LINES) + 1} document(s) of {len(GOOD_LINES) + len(BAD) + 1} record(s)" in err
    assert "skipped 9 record(s)" in err and "errors.jsonl" in err
    code, _, err = _cli(capsys, "verify", out, "--suite", suite, "--sample", "-1", "--decode-to", tmp_path / "dec")
    assert code == 0, err
    assert "round-tripped 5" in err and "ok" in err
    with pytest.raises(SystemExit) as stop:                 # -1 is all; below it is a usage error
        main(["verify", str(out), "--suite", str(suite), "--sample", "-3"])
    assert stop.value.code == 2 and "--sample: -3" in capsys.readouterr().err
    assert (tmp_path / "dec" / "doc000000.part0.txt").read_text() == "A cat"
    assert Image.open(tmp_path / "dec" / "doc000000.part1.png").width == 40
    # a changed source and a damaged shard are both found
    _tone(0, 2000).save(data / "a0.wav")
    try:
        code, _, err = _cli(capsys, "verify", out, "--suite", suite, "--sample", "-1")
        assert code == 1 and "other ids" in err
    finally:
        _tone(0).save(data / "a0.wav")
    blob = bytearray((out / "shard-00000.bin").read_bytes())
    blob[3] ^= 1
    (out / "shard-00000.bin").write_bytes(bytes(blob))
    code, _, err = _cli(capsys, "verify", out, "--suite", suite)
    assert code == 1 and "shard-00000.bin: content differs" in err
    # an unreadable manifest is named; errors.jsonl is not blamed for the records it can no longer match
    (out / "shard-00001.json").write_text("{broken")
    code, _, err = _cli(capsys, "verify", out, "--suite", suite)
    assert code == 1 and "shard-00001.json" in err and "does not list the skipped records" not in err
    code, _, err = _cli(capsys, "tokenize", data / "docs.jsonl", "-o", out, "--suite", suite, "--plugin", "unitok.testing",
                        "--shard-size", "5", "--resume", "--no-progress")
    assert code == 1 and "cannot resume" in err and "shard size 4 vs 5" in err


@pytest.mark.parametrize("cmd, options", [
    ("tokenize", "--output --suite --device --workers --engine --ray-address --shard-size --resume --overwrite "
                 "--on-error --bos --eos --allowed-special --bitrate --max-tokens --limit --batch --plugin --no-progress"),
    ("verify", "--suite --device --sample --seed --decode-to --plugin"),
])
def test_cli_help_documents_every_option(capsys, cmd, options):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    help_text = capsys.readouterr().out
    assert e.value.code == 0
    assert [o for o in options.split() if o not in help_text] == []


def test_cli_limit_sets_media_limits_for_the_run(capsys, tmp_path, data, suite):
    """--limit NAME=VALUE: a file over the run's limit is a recorded error, the rest go on."""
    import unitok.testing  # noqa: F401  (registers the toy types)
    out = tmp_path / "out"
    code, _, err = _cli(capsys, "tokenize", data / "a0.wav", data / "a1.flac", "-o", out, "--suite", suite,
                        "--plugin", "unitok.testing", "--workers", "0", "--no-progress", "--limit", "max_seconds=0.2")
    assert code == 0, err
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 1 and "a1.flac" in errors[0]["source"] and "max_seconds" in errors[0]["reason"]
    assert json.loads((out / "run.json").read_text())["options"]["limits"] == {"max_seconds": 0.2}
    for bad, message in (("max_frame=3", "NAME one of"), ("max_frames", "NAME=VALUE"), ("max_frames=lots", "not a number")):
        with pytest.raises(SystemExit):
            main(["tokenize", str(data / "a0.wav"), "-o", str(tmp_path / "x"), "--limit", bad])
        assert message in capsys.readouterr().err


def test_missing_inputs_stop_a_new_run_before_anything_is_written(tmp_path, data, suite, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as e:
        _run(tmp_path / "out", [data / "texts", tmp_path / "nope.jsonl", tmp_path / "none*.png", tmp_path / "empty"],
             suite)
    for name, reason in (("nope.jsonl", "no such file or folder"), ("none*.png", "the pattern matches no file"),
                         ("empty", "folder holds no text or media file")):
        assert f"{tmp_path / name}: {reason}" in str(e.value)
    assert "texts" not in str(e.value) and not (tmp_path / "out").exists()
    code, _, err = _cli(capsys, "tokenize", tmp_path / "nope.jsonl", "-o", tmp_path / "out", "--suite", suite,
                        "--plugin", "unitok.testing", "--workers", "0", "--no-progress")
    assert code == 1 and "nope.jsonl: no such file or folder" in err and not (tmp_path / "out").exists()


def test_run_wide_option_mistakes_stop_before_anything_is_written(tmp_path, data, suite, capsys):
    for flags, message in ((["--allowed-special", "<|nope|>"], "<|nope|>"),
                           (["--bitrate", "3"], "ToyAudio) has no bitrates to choose from")):
        code, _, err = _cli(capsys, "tokenize", data / "texts", "-o", tmp_path / "out", "--suite", suite,
                            "--plugin", "unitok.testing", "--workers", "1", "--no-progress", *flags)
        assert code == 1 and message in err and "Traceback" not in err, err
        assert not (tmp_path / "out").exists()


def test_a_resumed_run_reports_an_input_that_is_gone(tmp_path, data, suite):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("one")
    _run(tmp_path / "out", [folder], suite)
    (folder / "a.txt").unlink()
    with pytest.raises(ConfigError, match="cannot resume.*is gone"):
        _run(tmp_path / "out", [folder], suite, resume=True)


def test_absurdly_long_documents_are_skipped(tmp_path, data, suite):
    summary = _run(tmp_path / "out", [data / "texts"], suite, options=Options(max_tokens=12))
    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert errors and all("over the limit of 12 (--max-tokens)" in e["reason"] for e in errors)
    assert summary.documents + summary.skipped == 6


@register("crashy.image")
class CrashyImage(ToyImage):
    """Kills its process on a 13-pixel-wide picture, as a crashing decoder would."""

    def encode_item(self, item):
        if item.width == 13:
            os._exit(3)
        return super().encode_item(item)


def test_a_record_that_kills_its_worker_is_skipped(tmp_path):
    suite = tmp_path / "suite"
    UniTokenizer(unitok.text.load_default(), {"image": CrashyImage()}).save_pretrained(suite)
    _picture(0, 16, 20).save(tmp_path / "ok.png")
    _picture(1, 16, 13).save(tmp_path / "crash.png")
    # one worker, 8 batches of 2 in flight: the crashing record is the last of them, then more follow
    lines = [{"content": [{"image": "crash.png" if i == 15 else "ok.png"}]} for i in range(20)]
    _write_manifest(tmp_path / "m.jsonl", lines)
    summary = tokenize(TokenizeConfig([str(tmp_path / "m.jsonl")], tmp_path / "out", suite=str(suite),
                                      plugins=("unitok.testing", "test_pipeline"), workers=1, batch=2, shard_size=8,
                                      progress=False))
    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert [(e["position"], "worker process died" in e["reason"]) for e in errors] == [("line 16", True)]
    assert summary.documents == 19
    assert [TokenDataset(tmp_path / "out")[i]["id"] for i in range(19)] == [str(n) for n in [*range(1, 16), *range(17, 21)]]


# -- Ray ---------------------------------------------------------------------------------------------

def test_ray_engine_writes_the_same_shards(tmp_path, reference, data, suite):
    """Ray Data with an actor pool of two on a local two-CPU Ray that the engine starts and stops."""
    ray = pytest.importorskip("ray")
    _run(tmp_path / "ray", [data / "docs.jsonl", data / "texts", data / "img" / "p*.png"], suite,
         options=Options(eos=True), engine="ray", workers=2, batch=4)
    assert not ray.is_initialized()
    assert _files(tmp_path / "ray") == _files(reference)
