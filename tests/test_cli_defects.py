"""Regression tests for what users hit with ``unitok encode`` / ``decode``: outputs that overwrote
one another, text files that came back with another extension, and a slow command line."""

import subprocess
import sys
from pathlib import Path

import torch

from unitok import Image
from unitok.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _picture(seed: int, path: Path) -> None:
    g = torch.Generator().manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.from_array(torch.randint(0, 256, (3, 24, 32), dtype=torch.uint8, generator=g)).save(path)


def test_encode_keeps_inputs_of_one_name_apart(capsys, tmp_path):
    _picture(0, tmp_path / "a" / "pic.png")
    _picture(1, tmp_path / "b" / "pic.png")
    code, _, err = run(capsys, "encode", tmp_path / "a" / "pic.png", tmp_path / "b" / "pic.png", "-o", tmp_path / "tok")
    assert code == 0, err
    made = sorted(p.relative_to(tmp_path / "tok").as_posix() for p in (tmp_path / "tok").rglob("*.tokens.json"))
    assert made == ["a/pic.png.tokens.json", "b/pic.png.tokens.json"]
    assert (tmp_path / "tok" / "a" / "pic.png.tokens.json").read_text() != (
        tmp_path / "tok" / "b" / "pic.png.tokens.json").read_text()
    code, _, err = run(capsys, "decode", tmp_path / "tok", "-o", tmp_path / "out")
    assert code == 0, err
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == [
        "a/pic.png", "b/pic.png"]


def test_decode_does_not_let_photo_jpg_overwrite_photo_png(capsys, tmp_path):
    _picture(0, tmp_path / "in" / "photo.png")
    _picture(1, tmp_path / "in" / "photo.jpg")
    assert run(capsys, "encode", tmp_path / "in", "-o", tmp_path / "tok")[0] == 0
    code, _, err = run(capsys, "decode", tmp_path / "tok", "-o", tmp_path / "out")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["photo.jpg.png", "photo.png"]
    assert "decoded 2 file(s)" in err


def test_a_decoded_text_file_keeps_its_extension(capsys, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "script.py").write_text("def f(x):\n    return x + 1\n")
    (tmp_path / "in" / "notes.rst").write_text("Title\n=====\n")
    assert run(capsys, "encode", tmp_path / "in", "-o", tmp_path / "tok")[0] == 0
    assert run(capsys, "decode", tmp_path / "tok", "-o", tmp_path / "out")[0] == 0
    for name in ("script.py", "notes.rst"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "in" / name).read_bytes()


def test_help_does_not_load_torch():
    code = ("import sys, unitok.cli\n"
            "try:\n    unitok.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'av', 'numpy', 'unitok.tokenizer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_device_errors_are_one_line_not_tracebacks(capsys):
    import pytest

    with pytest.raises(SystemExit) as e:         # a name that is no device: a usage error
        main(["info", "--device", "gpu"])
    assert e.value.code == 2 and "not a torch device" in capsys.readouterr().err
    if not torch.cuda.is_available():
        code, _, err = run(capsys, "info", "--device", "cuda")
        assert code == 1 and "no CUDA GPU" in err and "Traceback" not in err


def test_bitrate_zero_is_a_usage_error(capsys, tmp_path):
    import pytest

    with pytest.raises(SystemExit) as e:
        main(["encode", str(tmp_path), "-o", str(tmp_path / "o"), "--bitrate", "0"])
    assert e.value.code == 2 and "positive" in capsys.readouterr().err


def test_info_json_into_a_closed_pipe_is_quiet():
    script = "import sys; sys.stdout.flush(); sys.stdin.close()"
    info = subprocess.Popen([sys.executable, "-m", "unitok.cli", "info", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    reader = subprocess.run([sys.executable, "-c", script], stdin=info.stdout)
    info.stdout.close()                          # the reader has gone: the pipe is closed
    err = info.stderr.read().decode()
    info.wait(timeout=120)
    assert reader.returncode == 0 and "Traceback" not in err and "BrokenPipe" not in err


def test_an_empty_text_file_round_trips(capsys, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.txt").write_bytes(b"")
    assert run(capsys, "encode", tmp_path / "in", "-o", tmp_path / "tok")[0] == 0
    code, _, err = run(capsys, "decode", tmp_path / "tok", "-o", tmp_path / "out")
    assert code == 0, err
    assert (tmp_path / "out" / "empty.txt").read_bytes() == b""


def test_an_output_that_cannot_be_written_is_reported_per_file(capsys, tmp_path):
    """A read-only or full folder fails each write with an OSError; here a folder sits where the
    token file should go (that stops root too)."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("some text")
    (tmp_path / "in" / "b.txt").write_text("more text")
    (tmp_path / "out" / "a.txt.tokens.json").mkdir(parents=True)
    code, _, err = run(capsys, "encode", tmp_path / "in", "-o", tmp_path / "out")
    assert code == 1 and "cannot write" in err and "a.txt" in err and "Traceback" not in err
    assert (tmp_path / "out" / "b.txt.tokens.json").is_file()          # the others are still written


def test_progress_in_a_log_is_plain_lines():
    import io

    from unitok.progress import Progress

    log = io.StringIO()                       # not a terminal: no bar, no carriage returns
    with Progress(4, "tokenize", "rec", every=0.0, stream=log) as p:
        for _ in range(4):
            p.update(1)
            p.note("12 tok/s")
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 5
    assert lines[0].startswith("tokenize: 1/4 rec (25%)") and "ETA" in lines[0]
    assert lines[-1].endswith("12 tok/s (done)")
    quiet = io.StringIO()                     # short work in a log prints nothing at all
    with Progress(4, "encode", "file", every=60.0, stream=quiet) as p:
        p.update(4)
    assert quiet.getvalue() == ""


def test_a_failure_names_its_file_once(capsys, tmp_path):
    bad = tmp_path / "bad.tokens.json"
    bad.write_text('{"ids": [1, 2,')
    code, _, err = run(capsys, "decode", bad, "-o", tmp_path / "out")
    line = next(x for x in err.splitlines() if x.startswith("error:"))
    assert code == 1 and line.count("bad.tokens.json") == 1 and "not valid JSON" in line


def test_long_items_report_their_progress():
    import unitok
    from unitok import Audio, Video
    from unitok.progress import ItemProgress

    tok = unitok.load()
    calls = []
    for codec in tok.media.values():
        codec.progress = lambda done, total, unit: calls.append((done, total, unit))
    t = torch.arange(24000 * 40) / 24000
    seq = tok.encode(Audio((0.2 * torch.sin(2 * torch.pi * 200 * t))[None], 24000))
    assert len(calls) > 2 and calls[-1][0] == calls[-1][1] and [c[0] for c in calls] == sorted(c[0] for c in calls)
    calls.clear()
    tok.decode(seq)
    assert len(calls) > 2 and calls[-1][0] == calls[-1][1] == 3000
    calls.clear()
    tok.media["video"].window_pixels = 1 << 16          # small windows, so a short clip has several
    tok.encode(Video(torch.zeros(21, 3, 64, 64, dtype=torch.uint8), 25))
    assert [c[:2] for c in calls][-1] == (21, 21) and len(calls) > 1

    follow = ItemProgress("encode film.mp4", enabled=False)
    follow(5, 21, "frame")
    assert follow.current is not None and follow.current.n == 5
    follow(21, 21, "frame")
    assert follow.current is None                          # closed at its total


def test_info_answers_from_the_suite_files_and_agrees_with_loading(capsys, tmp_path):
    import shutil

    import unitok
    from unitok.files import ASSETS
    from unitok.media import Preprocess
    from unitok.suiteinfo import cached_description, describe

    cached = cached_description(ASSETS)
    assert cached is not None, "unitok/assets/suite.json is stale: run `python -m unitok.suiteinfo`"
    tok = unitok.load()
    assert cached[0] == describe(tok, Preprocess()) and cached[1].fingerprint == tok.space.fingerprint
    code, out, _ = run(capsys, "info")
    assert code == 0 and out.splitlines()[1:len(cached[0]) + 1] == cached[0]

    suite = tmp_path / "suite"                         # a saved suite carries its description too
    unitok.UniTokenizer(tok.text, {"image": tok.media["image"]}).save_pretrained(suite)
    assert cached_description(suite) is not None
    shutil.copy(suite / "text" / "vocab.tiktoken", tmp_path / "v")
    with open(suite / "image" / "config.json", "a") as f:
        f.write(" ")                                   # a component changed since: load it instead
    assert cached_description(suite) is None
    code, out, _ = run(capsys, "info", "--suite", suite)
    assert code == 0 and "image: image.vqgan" in out and "not in this suite: video, audio" in out


def test_info_does_not_load_torch():
    code = ("import sys, unitok.cli\nunitok.cli.main(['info'])\n"
            "print(sorted(m for m in ('torch', 'av') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
