"""Hostile inputs of the kinds the robustness issue found, each a general fix at its source: one
bad record never stops a run, nothing hangs on a special file, damaged JSON is a clear error, files
a checkpoint or dataset names stay inside it, and failed writes leave nothing that looks valid."""

import dataclasses
import errno
import fcntl
import json
import os
from pathlib import Path

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


_ORPHAN_MAIN = '''
import os, sys, threading, time
if __name__ == "__mp_main__":        # the worker re-imports this file first: stall it before the pool code runs
    time.sleep(float(os.environ["STALL"]))


def hang(suite, device):             # the suite loader: a worker that gets this far never finishes starting
    time.sleep(10**6)


if __name__ == "__main__":
    import multiprocessing as mp

    from unitok.pipeline.local import LocalEngine
    from unitok.pipeline.worker import Options, WorkerSpec

    def announce():
        while not mp.active_children():
            time.sleep(0.01)
        print(" ".join(str(p.pid) for p in mp.active_children()), flush=True)

    threading.Thread(target=announce, daemon=True).start()
    LocalEngine(WorkerSpec(None, "cpu", Options(), loader="__mp_main__.hang"), 2)._pool()
'''


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_end_with_a_main_process_killed_while_they_start(tmp_path):
    """A main process SIGKILLed while its workers imported torch left them running for ever: the
    watch began after the imports and compared parent ids, and the parent was already init. Here
    the main dies before the workers run any code of ours (they stall 2 s first)."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "main.py"
    script.write_text(_ORPHAN_MAIN)
    main = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, STALL="2"), start_new_session=True)
    workers = [int(p) for p in main.stdout.readline().split()]
    main.kill()
    main.wait()
    main.stdout.close()
    deadline = time.monotonic() + 60
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in workers if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert workers and not left, f"worker processes {left} outlived their main process"


def _too_deep(top: Path) -> None:
    """Folders nested past PATH_MAX below ``top``, with a text file at the bottom."""
    top.mkdir(parents=True)
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(24):
            os.mkdir("d" * 200, dir_fd=fd)
            nxt = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        os.close(os.open("x.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


def test_a_folder_holding_a_path_past_path_max_is_one_listed_error(tmp_path, text_suite, capsys):
    """os.scandir raised 'File name too long' out of the folder listing: unitok tokenize and encode
    of the whole folder stopped, losing every good file."""
    from unitok import cli

    data = tmp_path / "in"
    _too_deep(data / "deep")
    (data / "good.txt").write_text("a good document")
    summary = tokenize(_cfg([data], tmp_path / "out", text_suite))
    assert summary.documents == 1 and summary.skipped == 1
    (reason,) = _errors(tmp_path / "out").values()
    assert "cannot list this folder" in reason
    code = cli.main(["encode", str(data), "--suite", str(text_suite), "-o", str(tmp_path / "enc")])
    err = capsys.readouterr().err
    assert code == 1 and "cannot list this folder" in err and "encoded 1 file(s)" in err
    assert len(list((tmp_path / "enc").rglob("*.tokens.json"))) == 1


def test_special_files_named_directly_or_in_a_folder_are_refused_by_name(tmp_path, text_suite, capsys):
    """A FIFO given as a manifest or tar shard blocked tokenize for ever (and /dev/zero as a
    manifest grew without end); FIFOs in a folder given to encode or decode vanished silently."""
    from unitok import cli

    (tmp_path / "good.txt").write_text("a good document")
    os.mkfifo(tmp_path / "m.jsonl")
    os.mkfifo(tmp_path / "s.tar")
    (tmp_path / "z.jsonl").symlink_to("/dev/zero")
    inputs = [tmp_path / n for n in ("m.jsonl", "s.tar", "z.jsonl", "good.txt")]
    with pytest.raises(ConfigError) as e:       # inputs that cannot be read stop the run before it writes
        tokenize(_cfg(inputs, tmp_path / "out", text_suite))
    for name, reason in (("m.jsonl", "is a FIFO, not a regular manifest"),
                         ("s.tar", "is a FIFO, not a regular tar shard"), ("z.jsonl", "is a device")):
        assert f"{tmp_path / name}: {reason}" in str(e.value) and f"{tmp_path / name}: {tmp_path}" not in str(e.value)
    assert "good.txt" not in str(e.value) and not (tmp_path / "out").exists()
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("fine")
    os.mkfifo(folder / "pipe.txt")
    os.mkfifo(folder / "pipe.tokens.json")
    code = cli.main(["encode", str(folder), "--suite", str(text_suite), "-o", str(tmp_path / "enc")])
    assert code == 1 and "pipe.txt: is a FIFO" in capsys.readouterr().err
    code = cli.main(["decode", str(folder), "--suite", str(text_suite), "-o", str(tmp_path / "dec")])
    assert code == 1 and "pipe.tokens.json: is a FIFO" in capsys.readouterr().err


def test_a_tar_cut_at_a_header_boundary_is_listed_not_taken_for_its_end(tmp_path, text_suite):
    """tarfile reads a shard cut exactly between members as a whole one: the samples after the cut
    vanished without an error line."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for k in range(4):
            data = f"sample {k} ".encode() * 60
            info = tarfile.TarInfo(f"s{k}.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / "s.tar").write_bytes(buf.getvalue()[:2 * 1536])       # s0 and s1 whole, nothing after
    summary = tokenize(_cfg([tmp_path / "s.tar"], tmp_path / "out", text_suite))
    assert summary.documents == 1
    (reason,) = _errors(tmp_path / "out").values()
    assert "without the end-of-archive marker" in reason and "sample s1 may be incomplete" in reason


def test_special_files_and_deep_json_in_weights_and_shards(tmp_path, text_suite):
    """A FIFO as model.safetensors or as a shard's .idx blocked the loader for ever; a safetensors
    header nested 100,000 deep raised RecursionError."""
    import shutil
    import struct

    from unitok.checkpoint import load_pretrained

    folder = tmp_path / "image"
    shutil.copytree(Path(unitok.__file__).parent / "assets" / "image", folder)
    weights = folder / "model.safetensors"
    weights.unlink()
    os.mkfifo(weights)
    with pytest.raises(ConfigError, match="is a FIFO, not a regular weights file"):
        load_pretrained(folder)
    weights.unlink()
    weights.write_bytes(struct.pack("<Q", 200_000) + b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(ConfigError, match="model.safetensors"):
        load_pretrained(folder)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a document")
    tokenize(_cfg([tmp_path / "in"], tmp_path / "out", text_suite))
    for name in ("shard-00000.idx", "shard-00000.bin"):
        (tmp_path / "out" / name).rename(tmp_path / name)
        os.mkfifo(tmp_path / "out" / name)
        with pytest.raises(ConfigError, match=f"{name}: is a FIFO"):
            TokenDataset(tmp_path / "out")[0]
        (tmp_path / "out" / name).unlink()
        (tmp_path / name).rename(tmp_path / "out" / name)
    from unitok.pipeline import verify                       # unitok verify read errors.jsonl whatever it was

    (tmp_path / "out" / "errors.jsonl").unlink()
    os.mkfifo(tmp_path / "out" / "errors.jsonl")
    report = verify(tmp_path / "out", unitok.load(text_suite), sample=1)
    assert not report.ok and any("errors.jsonl" in p for p in report.problems)
