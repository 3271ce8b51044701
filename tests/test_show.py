"""`unitok show`: reconstruction per scale, spectrograms, video frames and the token map."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import unitok
from unitok import Audio, Image, UniTokenizer, show
from unitok.cli import main
from unitok.metrics import psnr
from unitok.testing import ToyAudio, ToyAudioConfig, ToyImage, ToyImageConfig


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def picture(h, w, seed=0):
    """A smooth colour picture [h, w, 3] uint8 (codecs reconstruct it well enough to show gains)."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 6, 3)
    return np.stack([127 + 120 * np.sin(4 * x + 3 * y + p) for p in phase], -1).round().astype(np.uint8)


@pytest.fixture(scope="module")
def toy():
    return UniTokenizer(unitok.text.load_default(), {"image": ToyImage(ToyImageConfig(scales=(4, 2))),
                                                     "audio": ToyAudio(ToyAudioConfig(levels=3))})


@pytest.fixture(scope="module")
def toy_suite(toy, tmp_path_factory):
    folder = tmp_path_factory.mktemp("suite")
    toy.save_pretrained(folder)
    return folder


def panels(path, legend):
    """The panels of a picture, cut out along the legend's boxes: [3, h, w] float each."""
    img = Image.open(path).to_float()
    return [img[:, p["y"]:p["y"] + p["height"], p["x"]:p["x"] + p["width"]] for p in legend["panels"]]


def test_image_scales_side_by_side(capsys, tmp_path, toy, toy_suite):
    Image.from_array(picture(40, 56)).save(tmp_path / "pic.png")
    code, _, err = run(capsys, "show", tmp_path / "pic.png", "-o", tmp_path / "out", "--suite", toy_suite)
    assert code == 0, err
    assert "showed 1 file(s)" in err
    legend = json.loads((tmp_path / "out" / "pic.png.show.json").read_text())["pictures"]
    entry = legend["pic.png.scales.png"]
    scales = len(toy.media["image"].layout({"height": 40, "width": 56}).scales)
    assert scales == 3 and len(entry["panels"]) == scales + 1              # the original, then one per scale
    img = Image.open(tmp_path / "out" / "pic.png.scales.png")
    assert (img.height, img.width) == (40, 4 * 56 + 3 * show.GAP)
    cut = panels(tmp_path / "out" / "pic.png.scales.png", entry)
    assert all(p.shape == (3, 40, 56) for p in cut)
    assert torch.equal(cut[0], Image.from_array(picture(40, 56)).to_float())   # the original, exact
    seq = toy.encode(Image.from_array(picture(40, 56)))
    assert torch.equal(cut[-1], toy.decode(seq)[0].to_rgb().to_float())         # all scales: the decode
    assert [p["tokens"] for p in entry["panels"][1:]] == [4, 4 + 12, 4 + 12 + 35]    # 2x2, 3x4, 5x7 scales
    assert entry["panels"][-1]["bits"] == 51 * 4.0                              # 16 codes a level: 4 bits


def test_token_map_colours_follow_spans_and_groups(toy):
    seq = toy.encode(["a caption", Image.from_array(picture(24, 32)), "then", "more"], bos=True, eos=True)
    pic = show.token_map(seq, toy.space, width=16, cell=3)
    rows = -(-len(seq) // 16)
    assert (pic.image.height, pic.image.width) == (rows * 3, 16 * 3)
    cells = pic.image.pixels.permute(1, 2, 0).numpy()[1::3, 1::3].reshape(-1, 3)[:len(seq)]
    assert (pic.image.pixels.permute(1, 2, 0).numpy()[::3, ::3].reshape(-1, 3)[:len(seq)] == cells).all()

    def colour(category, group):
        shade = show.ODD_GROUP_SHADE if group % 2 else 1.0
        return np.round(np.array(show.COLOURS[category]) * shade).astype(np.uint8)

    sp = toy.space.special_tokens
    for span in seq.spans:
        for i in range(span.start, span.stop):
            if span.modality == "text":
                want = "text"
            elif i in (span.start, span.stop - 1):
                want = "special"                    # begin / end tokens
            elif i <= span.start + sum(toy.media[span.modality].header_widths()):
                want = "dim"                        # the header's shape tokens
            else:
                want = span.modality
            assert (cells[i] == colour(want, seq.groups[i])).all(), (span, i)
    assert (cells[0] == colour("special", 0)).all() and seq.ids[0] == sp["<|bos|>"]
    # neighbours in different groups differ in brightness: group boundaries show
    image = next(s for s in seq.spans if s.modality == "image")
    body = slice(image.start + 5, image.stop - 1)
    change = np.flatnonzero(np.diff(seq.groups[body]))
    assert len(change) and all((cells[body][k] != cells[body][k + 1]).any() for k in change)
    legend = pic.legend
    assert legend["tokens"] == len(seq) and legend["groups"] == int(seq.groups[-1]) + 1
    assert set(legend["colours"]) == set(show.COLOURS)


def test_token_files_and_bare_id_lists(capsys, tmp_path, toy, toy_suite):
    doc = ["hello", Image.from_array(picture(16, 24)), "world", "again"]
    seq = toy.encode(doc, bos=True)
    seq.save(tmp_path / "doc.tokens.json")
    (tmp_path / "gen.txt").write_text(" ".join(map(str, seq.ids.tolist())))
    # a bare id list gets the groups and spans the tokenizer gives them
    groups, spans = show.infer_groups(toy, seq.ids, show.segments(toy, seq.ids))
    assert groups.tolist() == seq.groups.tolist() and spans == seq.spans
    code, _, err = run(capsys, "show", tmp_path / "doc.tokens.json", tmp_path / "gen.txt", "-o", tmp_path / "out",
                       "--suite", toy_suite, "--width", "8", "--cell", "2")
    assert code == 0, err
    a, b = (Image.open(tmp_path / "out" / f"{n}.tokens.png") for n in ("doc", "gen"))
    assert (a.width, a.height) == (16, 2 * -(-len(seq) // 8))
    assert torch.equal(a.pixels, b.pixels)
    scales = json.loads((tmp_path / "out" / "gen.show.json").read_text())["pictures"]["gen.scales.png"]
    assert len(scales["panels"]) == 3 and all(p["what"] != "original" for p in scales["panels"])
    # a truncated image body: the missing scales are missing, the picture is still drawn
    cut = seq.ids[:seq.spans[1].start + 1 + 4 + 2 + 8]
    (tmp_path / "cut.json").write_text(json.dumps(cut.tolist()))
    code, _, err = run(capsys, "show", tmp_path / "cut.json", "-o", tmp_path / "out", "--suite", toy_suite)
    assert code == 0, err
    assert Image.open(tmp_path / "out" / "cut.scales.png").width == 3 * 24 + 2 * show.GAP


def test_audio_spectrograms(capsys, tmp_path, toy, toy_suite):
    t = np.arange(4000) / 8000
    Audio.from_array((0.4 * np.sin(2 * np.pi * 500 * t) * t * 2)[None].astype(np.float32), 8000).save(
        tmp_path / "tone.wav")
    code, _, err = run(capsys, "show", tmp_path / "tone.wav", "-o", tmp_path / "out", "--suite", toy_suite)
    assert code == 0, err
    legend = json.loads((tmp_path / "out" / "tone.wav.show.json").read_text())["pictures"]
    entry = legend["tone.wav.spectrogram.png"]
    assert [p.get("levels") for p in entry["panels"]] == [None, 1, 2, 3]        # original, 1, half, all
    img = Image.open(tmp_path / "out" / "tone.wav.spectrogram.png")
    h = entry["panels"][0]["height"]
    assert (img.width, img.height) == (entry["width_px"], 4 * h + 3 * show.GAP)
    assert img.width > show.MIN_SPECTROGRAM_COLUMNS // 2                       # short audio: wide columns
    assert (tmp_path / "out" / "tone.wav.tokens.png").exists()


def test_bundled_image_scales_improve(tmp_path):
    tok = unitok.load()
    codec = tok.media["image"]
    Image.from_array(picture(48, 64, seed=3)).save(tmp_path / "pic.png")
    written = show.show_file(tok, tmp_path / "pic.png", tmp_path / "out")
    assert {p.name for p in written} == {"pic.png.scales.png", "pic.png.tokens.png", "pic.png.show.json"}
    entry = json.loads((tmp_path / "out" / "pic.png.show.json").read_text())["pictures"]["pic.png.scales.png"]
    cut = panels(tmp_path / "out" / "pic.png.scales.png", entry)
    assert len(cut) == 1 + len(codec.scales(48, 64)) > 2
    quality = [float(psnr(p[None], cut[0][None])) for p in cut[1:]]
    assert all(b >= a for a, b in zip(quality, quality[1:])), quality
    assert quality[-1] > quality[0] + 3
    assert [p["psnr_db"] for p in entry["panels"][1:]] == [round(q, 2) for q in quality]


def test_bundled_video_frames_grid():
    from fractions import Fraction

    tok = unitok.load()
    frames = np.stack([np.roll(picture(32, 40), 3 * t, axis=1) for t in range(5)]).transpose(0, 3, 1, 2)
    video = unitok.Video.from_array(frames, Fraction(10))
    made = show.pictures(tok, tok.encode(video), [video])
    assert [p.kind for p in made] == ["tokens", "frames"]
    grid = made[1]
    scales = len(tok.media["video"].scales(32, 40))
    cols = max(4, scales + 1)
    assert (grid.image.height, grid.image.width) == (3 * 32 + 2 * show.GAP, cols * 40 + (cols - 1) * show.GAP)
    boxes = grid.legend["panels"]
    assert len(boxes) == 4 + 4 + 1 + scales       # original frames, reconstructed frames, frame 0 per scale
    px = grid.image.pixels
    cut = lambda b: px[:, b["y"]:b["y"] + 32, b["x"]:b["x"] + 40]  # noqa: E731
    # all scales of the first latent frame decode to frame 0 (causal; up to float rounding)
    assert (cut(boxes[4]).int() - cut(boxes[-1]).int()).abs().max() <= 1


def test_errors_exit_codes_and_summary(capsys, tmp_path, toy_suite):
    Image.from_array(picture(16, 16)).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "ids.json").write_text('{"ids": [1, 2], "fingerprint": "0000"}')
    code, _, err = run(capsys, "show", tmp_path / "good.png", tmp_path / "bad.png", tmp_path / "missing.wav",
                       tmp_path / "ids.json", "-o", tmp_path / "out", "--suite", toy_suite)
    assert code == 1
    assert "bad.png" in err and "missing.wav" in err and "no such file" in err and "ids.json" in err
    assert "showed 1 file(s)" in err and "3 failed" in err
    assert (tmp_path / "out" / "good.png.scales.png").exists()
    # a broken media header: the error names the file and position; the token map is still drawn
    tok = unitok.load(toy_suite)
    ids = tok.encode(["x", Image.from_array(picture(16, 16))]).ids.tolist()
    ids[2] = 7                                                  # the first shape token of the header
    (tmp_path / "broken.json").write_text(json.dumps(ids))
    code, _, err = run(capsys, "show", tmp_path / "broken.json", "-o", tmp_path / "out", "--suite", toy_suite)
    assert code == 1 and "broken.json" in err and "image header" in err and "(at id 2)" in err
    assert (tmp_path / "out" / "broken.tokens.png").exists()
    for argv in (["show", str(tmp_path / "good.png")], ["show", "x.png", "-o", "o", "--width", "0"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    capsys.readouterr()


def test_show_help_loads_no_torch():
    probe = ("import sys, unitok.cli\ntry:\n    unitok.cli.main(['show', '--help'])\nexcept SystemExit:\n    pass\n"
             "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")
