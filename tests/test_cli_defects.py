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
