"""Hostile inputs of the kinds the robustness issue found, each a general fix at its source: one
bad record never stops a run, nothing hangs on a special file, damaged JSON is a clear error, files
a checkpoint or dataset names stay inside it, and failed writes leave nothing that looks valid."""

import dataclasses
import errno
import fcntl
import json
import os
from pathlib import Path

import numpy as np
import pytest

import unitok
from unitok import ConfigError, UniTokenizer
from unitok.data import TokenDataset
from unitok.pipeline import TokenizeConfig, tokenize

pytestmark = pytest.mark.timeout(120)     # a hang is a failure, not a stuck CI


@pytest.fixture(scope="module")
def text_suite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("suite")
    UniTokenizer(unitok.text.load_default(), {}).save_pretrained(folder)
    return folder


def _cfg(inputs, out, suite, **kw):
    return TokenizeConfig([str(i) for i in inputs], out, suite=str(suite), workers=0, shard_size=3,
                          progress=False, **kw)


def _errors(out: Path) -> dict[str, str]:
    return {e["id"]: e["reason"] for e in map(json.loads, (out / "errors.jsonl").read_text().splitlines())}


def test_hostile_manifest_records_are_listed_and_the_rest_kept(tmp_path, text_suite):
    lines = [
        '{"id": ' + "1" * 5000 + ', "content": [{"text": "a"}]}',      # an integer past Python's str limit
        '{"id": "\\ud800", "content": [{"text": "lone surrogate id"}]}',
        "[" * 100_000 + "]" * 100_000,                                    # nesting deeper than the stack
        json.dumps({"content": [{"text": " " * 1_000_000}]}),             # panics tiktoken's regex engine
        json.dumps({"id": "last", "content": [{"text": "fine"}]}),
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    summary = tokenize(_cfg([tmp_path / "m.jsonl"], tmp_path / "out", text_suite))
    assert summary.records == 5 and summary.documents == 2
    reasons = _errors(tmp_path / "out")
    assert "not valid JSON" in reasons["1"] and "nested too deeply" in reasons["3"]
    assert "text tokenizer's core failed" in reasons["4"]
    ds = TokenDataset(tmp_path / "out")
    assert [ds[i]["id"] for i in range(2)] == ["\\ud800", "last"]       # escaped, printable
    for p in (tmp_path / "out").iterdir():                               # every JSON file valid UTF-8
        if p.suffix in (".json", ".jsonl"):
            p.read_bytes().decode("utf-8")


def test_special_files_are_refused_not_read(tmp_path, text_suite):
    data = tmp_path / "in"
    data.mkdir()
    (data / "ok.txt").write_text("fine")
    os.mkfifo(data / "pipe.txt")                    # would block a reader for ever
    (data / "zero.txt").symlink_to("/dev/zero")     # would never end
    (data / "gone.txt").symlink_to(data / "nowhere.txt")
    summary = tokenize(_cfg([data], tmp_path / "out", text_suite))
    reasons = _errors(tmp_path / "out")
    assert summary.documents == 1 and summary.skipped == 3
    assert "is a FIFO" in reasons["pipe.txt"] and "is a device" in reasons["zero.txt"]
    assert "not found" in reasons["gone.txt"]
    suite = tmp_path / "fifo_suite"                 # a FIFO in place of a checkpoint's config.json
    (suite / "text").mkdir(parents=True)
    os.mkfifo(suite / "text" / "config.json")
    with pytest.raises(ConfigError, match="is a FIFO"):
        unitok.load(suite)


def test_files_a_checkpoint_or_dataset_names_stay_inside_it(tmp_path, text_suite):
    import shutil

    suite = tmp_path / "suite"
    shutil.copytree(text_suite, suite)
    cfg = json.loads((suite / "text" / "config.json").read_text())
    (tmp_path / "elsewhere.tiktoken").write_bytes((suite / "text" / "vocab.tiktoken").read_bytes())
    cfg["vocab_file"] = "../../elsewhere.tiktoken"
    (suite / "text" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="outside the folder"):
        unitok.load(suite)

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a document")
    tokenize(_cfg([tmp_path / "in"], tmp_path / "out", text_suite))
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    index["shards"] = ["../other/shard-00000"]
    (tmp_path / "out" / "index.json").write_text(json.dumps(index))
    with pytest.raises(ConfigError, match="not one a run writes"):
        TokenDataset(tmp_path / "out")


@pytest.mark.parametrize("damage", ['{"a": ' + "1" * 5000 + "}", "[" * 100_000, "\xff\xfe", ""])
def test_damaged_json_is_a_config_error_naming_the_file(tmp_path, text_suite, damage):
    import shutil

    suite = tmp_path / "suite"
    shutil.copytree(text_suite, suite)
    for name in ("suite.json", "space.json", "text/config.json"):
        original = (suite / name).read_bytes()
        (suite / name).write_bytes(damage.encode("utf-8", "surrogateescape"))
        with pytest.raises(ConfigError, match=name.split("/")[-1]):
            unitok.load(suite)
        (suite / name).write_bytes(original)


def test_a_full_disk_leaves_no_partial_file_and_resume_completes(tmp_path, text_suite, monkeypatch):
    from unitok import files

    data = tmp_path / "in"
    data.mkdir()
    for i in range(7):
        (data / f"d{i}.txt").write_text(f"document {i} " * 5)
    tokenize(_cfg([data], tmp_path / "clean", text_suite))
    real, calls = files.write_atomic, []

    def full_disk(path, blob, **kw):
        calls.append(path)
        if len(calls) == 6:                       # the second shard's data
            with open(Path(path).with_name(f".{Path(path).name}.partial"), "wb") as f:
                f.write(blob[: len(blob) // 2])   # half written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, blob, **kw)

    monkeypatch.setattr(files, "write_atomic", full_disk)
    with pytest.raises(OSError, match="No space left"):
        tokenize(_cfg([data], tmp_path / "out", text_suite))
    monkeypatch.setattr(files, "write_atomic", real)
    assert not (tmp_path / "out" / "index.json").exists()              # nothing claims the run is complete
    tokenize(dataclasses.replace(_cfg([data], tmp_path / "out", text_suite), resume=True))
    names = sorted(p.name for p in (tmp_path / "clean").iterdir())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names
    for name in names:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name


def test_a_second_run_on_the_same_folder_stops_at_once(tmp_path, text_suite):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a document")
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "a+") as held:        # what the first run holds while it writes
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match="another unitok tokenize run"):
            tokenize(_cfg([tmp_path / "in"], out, text_suite))
    tokenize(_cfg([tmp_path / "in"], out, text_suite))
    assert not (out / ".lock").exists() and len(TokenDataset(out)) == 1


def test_limits_raise_a_limit_error():
    """Over a size limit is LimitError (a MediaError): callers (the service's 413) tell it from bad media."""
    import torch

    from unitok import LimitError, MediaError
    from unitok.media import MediaLimits

    tok = unitok.load().with_limits(MediaLimits(max_pixels=100), max_tokens=50)
    with pytest.raises(LimitError, match="MediaLimits.max_pixels"):
        tok.encode(unitok.Image(torch.zeros(3, 20, 20, dtype=torch.uint8)))
    with pytest.raises(LimitError, match="max_tokens"):
        unitok.load().with_limits(max_tokens=5).encode("a text much longer than five tokens, surely")
    assert issubclass(LimitError, MediaError)
