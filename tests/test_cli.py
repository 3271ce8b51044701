"""The unitok command: info, encode, decode, errors and exit codes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import unitok
from unitok.cli import main
from unitok import Image, UniTokenizer

from unitok.testing import ToyImage

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_info(capsys):
    code, out, _ = run(capsys, "info")
    assert code == 0
    assert "text" in out and "special" in out and "fingerprint" in out
    code, out, _ = run(capsys, "info", "--json")
    manifest = json.loads(out)
    assert manifest["fingerprint"] == unitok.load().space.fingerprint


def test_encode_decode_text_files_byte_exact(capsys, tmp_path):
    code, _, err = run(capsys, "encode", EXAMPLES, "-o", tmp_path / "tok")
    assert code == 0, err
    # the manifest is for `unitok tokenize`: left out, and said so
    assert "left out 1 file(s) that are not text, image, video or audio: documents.jsonl" in err
    code, _, err = run(capsys, "decode", tmp_path / "tok", "-o", tmp_path / "out")
    assert code == 0, err
    sources = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".txt", ".md"))
    assert sources
    for src in sources:
        assert (tmp_path / "out" / src.name).read_bytes() == src.read_bytes()


def test_bad_inputs_are_reported_and_the_rest_processed(capsys, tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("fine")
    code, _, err = run(capsys, "encode", good, tmp_path / "missing.txt", "-o", tmp_path / "tok")
    assert code == 1
    assert "missing.txt" in err and "no such file" in err
    assert (tmp_path / "tok" / "good.txt.tokens.json").exists()


def test_decode_generated_ids_strict_and_lenient(capsys, tmp_path):
    tok = unitok.load()
    ids = tok.encode("generated text").ids.tolist()
    ids.insert(2, len(tok.space) + 1)
    gen = tmp_path / "gen.txt"
    gen.write_text(" ".join(map(str, ids)))
    code, _, err = run(capsys, "decode", gen, "-o", tmp_path / "out")
    assert code == 1 and "unknown id" in err and "at id 2" in err
    code, _, err = run(capsys, "decode", gen, "-o", tmp_path / "out", "--lenient")
    assert code == 0 and "repaired" in err
    parts = sorted((tmp_path / "out").iterdir())
    assert b"".join(p.read_bytes() for p in parts) == b"generated text"


def test_decode_refuses_ids_that_are_not_integers(capsys, tmp_path):
    """3.5, "12" and true are refused with their position, as tok.decode refuses them, not rounded
    or converted."""
    tok = unitok.load()
    cases = (("float", 3.5, "3.5"), ("string", "12", "'12'"), ("bool", True, "True"))
    for name, bad, _ in cases:
        data = tok.encode("some text").to_dict()
        data["ids"][1] = bad
        (tmp_path / f"{name}.tokens.json").write_text(json.dumps(data))
        (tmp_path / f"{name}.json").write_text(json.dumps([data["ids"][0], bad]))     # a bare list of ids
    for name, _, shown in cases:
        for suffix in (".tokens.json", ".json"):
            code, _, err = run(capsys, "decode", tmp_path / f"{name}{suffix}", "-o", tmp_path / "out")
            assert code == 1 and f"ids[1] is {shown}, not an integer" in err, err
    data = tok.encode("some text").to_dict()
    data["spans"] = [["text", 0.5, 2]]
    (tmp_path / "span.tokens.json").write_text(json.dumps(data))
    code, _, err = run(capsys, "decode", tmp_path / "span.tokens.json", "-o", tmp_path / "out")
    assert code == 1 and "spans[0]" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_encode_refuses_an_unknown_allowed_special_before_writing(capsys, tmp_path):
    (tmp_path / "a.txt").write_text("text")
    code, _, err = run(capsys, "encode", tmp_path / "a.txt", "-o", tmp_path / "tok", "--allowed-special", "<|nope|>")
    assert code == 2 and "--allowed-special" in err and "<|nope|>" in err
    assert not (tmp_path / "tok").exists()


def test_decode_refuses_another_space(capsys, tmp_path):
    tok = unitok.load()
    seq = tok.encode("x")
    data = seq.to_dict()
    data["fingerprint"] = "0" * 64
    (tmp_path / "x.tokens.json").write_text(json.dumps(data))
    code, _, err = run(capsys, "decode", tmp_path / "x.tokens.json", "-o", tmp_path / "out")
    assert code == 1 and "token space" in err


def test_media_with_a_suite_folder(capsys, tmp_path):
    suite = tmp_path / "suite"
    UniTokenizer(unitok.text.load_default(), {"image": ToyImage()}).save_pretrained(suite)
    Image.from_array(torch.randint(0, 255, (3, 21, 37), dtype=torch.uint8)).save(tmp_path / "pic.png")
    code, _, err = run(capsys, "encode", tmp_path / "pic.png", "-o", tmp_path / "tok", "--suite", suite)
    assert code == 0, err
    code, _, err = run(capsys, "decode", tmp_path / "tok", "-o", tmp_path / "out", "--suite", suite)
    assert code == 0, err
    out = Image.open(tmp_path / "out" / "pic.png")
    assert (out.height, out.width) == (21, 37)
    # a suite without an image tokenizer: a clear, per-file error
    UniTokenizer(unitok.text.load_default()).save_pretrained(tmp_path / "text_only")
    code, _, err = run(capsys, "encode", tmp_path / "pic.png", "-o", tmp_path / "tok2", "--suite", tmp_path / "text_only")
    assert code == 1 and "pic.png" in err and "no image tokenizer" in err


def test_bundled_suite_round_trips_a_photo(capsys, tmp_path):
    photo = torch.zeros(3, 45, 70, dtype=torch.uint8)
    photo[0] = torch.arange(70, dtype=torch.uint8)[None] * 3          # a smooth gradient and a square
    photo[1, 10:30, 20:50] = 200
    Image.from_array(photo).save(tmp_path / "photo.jpg", quality=95)
    code, _, err = run(capsys, "encode", tmp_path / "photo.jpg", "-o", tmp_path / "tok")
    assert code == 0, err
    code, _, err = run(capsys, "decode", tmp_path / "tok", "-o", tmp_path / "out")
    assert code == 0, err
    out = Image.open(tmp_path / "out" / "photo.png")
    assert (out.channels, out.height, out.width) == (3, 45, 70)


def test_help_documents_every_option(capsys):
    for cmd, options in {"encode": ["--output", "--suite", "--bos", "--eos", "--allowed-special", "--device",
                                    "--bitrate"],
                         "decode": ["--output", "--suite", "--lenient", "--space", "--device"],
                         "info": ["--json", "--suite", "--device"]}.items():
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        for opt in options:
            assert opt in out


def test_console_script():
    script = Path(sys.executable).parent / "unitok"     # installed beside the interpreter, venv or not
    out = subprocess.run([script, "frobnicate"], capture_output=True, text=True)
    assert out.returncode == 2 and "invalid choice" in out.stderr
    out = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("unitok ")


def test_train_and_bench_run_scripts_of_the_checkout(capsys):
    code, _, err = run(capsys, "train", "nosuch")
    assert code == 1 and "recipes/train_nosuch.py" in err and "train_text.py" in err
    code, out, _ = run(capsys, "bench", "throughput", "--help")
    assert code == 0 and "--modality" in out


def test_audio_bitrate_selects_levels(capsys, tmp_path):
    if "audio" not in unitok.load().media:
        pytest.skip("no bundled audio tokenizer")
    t = torch.arange(12000) / 24000
    unitok.Audio((0.3 * torch.sin(2 * torch.pi * 220 * t))[None], 24000).save(tmp_path / "tone.wav")
    code, _, err = run(capsys, "encode", tmp_path / "tone.wav", "-o", tmp_path / "lo", "--bitrate", "1.5")
    assert code == 0, err
    code, _, err = run(capsys, "encode", tmp_path / "tone.wav", "-o", tmp_path / "hi", "--bitrate", "6")
    assert code == 0, err
    lo = json.loads((tmp_path / "lo" / "tone.wav.tokens.json").read_text())
    hi = json.loads((tmp_path / "hi" / "tone.wav.tokens.json").read_text())
    assert len(hi["ids"]) > 3 * len(lo["ids"]) // 2            # 8 levels against 2 per frame
    code, _, err = run(capsys, "decode", tmp_path / "lo", "-o", tmp_path / "out")
    assert code == 0, err
    assert unitok.Audio.open(tmp_path / "out" / "tone.wav").num_samples == 12000
    code, _, err = run(capsys, "encode", tmp_path / "tone.wav", "-o", tmp_path / "x", "--bitrate", "0.1")
    assert code == 1 and "lowest bitrate" in err


def test_a_single_tokenizer_folder_is_not_taken_for_a_suite(capsys, tmp_path):
    image = Path(unitok.__file__).parent / "assets" / "image"
    with pytest.raises(unitok.ConfigError, match="one tokenizer's checkpoint, not a suite"):
        unitok.load(image)
    code, _, err = run(capsys, "info", "--suite", image)
    assert code == 1 and "not a tokenizer suite folder" in err
    code, _, err = run(capsys, "info", "--suite", tmp_path)
    assert code == 1 and "not a tokenizer suite folder: a suite holds text/" in err


def test_token_file_spans_must_lie_inside_the_ids(capsys, tmp_path):
    data = unitok.load().encode("some text").to_dict()
    data["spans"] = [["text", 0, 99]]
    (tmp_path / "x.tokens.json").write_text(json.dumps(data))
    code, _, err = run(capsys, "decode", tmp_path / "x.tokens.json", "-o", tmp_path / "out")
    assert code == 1 and "spans[0] covers ids 0..99, outside the" in err
