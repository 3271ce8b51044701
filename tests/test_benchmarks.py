"""The reconstruction benchmark (``benchmarks/reconstruction.py`` and its modality files
``image.py``, ``audio.py``, ``video.py``) on tiny synthetic media with the toy codecs of
``unitok/testing.py``: table columns, bits per pixel, the anchors' interpolation, PSNR of exact
copies, and what the command writes.

The benchmark modules are imported by plain name: pyproject.toml's pytest ``pythonpath`` puts
``benchmarks/`` on the path, as running a script there does."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import unitok
from unitok import Image, UniTokenizer
from unitok.testing import ToyImage, ToyImageConfig

import audio as audio_bench          # benchmarks/audio.py (found through pytest's pythonpath)
import audio_phase
import image as image_bench
import reconstruction
import report as bench_report
import video as video_bench
import video_anchors

QUICK = {"JPEG": (5, 30, 90), "WebP": (10, 50, 90)}    # short sweeps keep the tests fast
CFG = ToyImageConfig(patch=8, levels=16, scales=(4, 2))   # three levels of 16 codes: 4 bits a code


def _picture(h: int, w: int, seed: int) -> Image:
    """A smooth colour gradient with a little texture, so codecs have something to do."""
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, h)[:, None]
    x = torch.linspace(0, 1, w)[None, :]
    rgb = torch.stack(torch.broadcast_tensors(x * y, 1 - x, (y + 0.2 * torch.sin(12 * x)).clamp(0, 1)))
    rgb = (rgb + 0.05 * torch.rand(3, h, w, generator=g)).clamp(0, 1)
    return Image.from_array(rgb)


@pytest.fixture(scope="module")
def pictures():
    return [image_bench.Picture("tall", _picture(200, 180, 0)), image_bench.Picture("wide", _picture(96, 130, 1)),
            image_bench.Picture("small", _picture(70, 90, 2))]


@pytest.fixture(scope="module")
def toy():
    return image_bench.candidate("toy", UniTokenizer(unitok.text.load_default(), {"image": ToyImage(CFG)}))


@pytest.fixture(scope="module")
def report(toy, pictures):
    return image_bench.run_image([toy], pictures, crop_size=64, random_crops=1, max_side=None, qualities=QUICK,
                       repeat=1, batch=2, grid=2, devices=["cpu"], progress=False)


def _toy_bits(h: int, w: int) -> int:
    """Code tokens of the toy codec by hand: a grid of 8x8 patches at scales 1/4, 1/2 and 1."""
    gh, gw = math.ceil(h / 8), math.ceil(w / 8)
    tokens = sum(math.ceil(gh / d) * math.ceil(gw / d) for d in (4, 2, 1))
    return tokens * 4          # log2(16) bits each


def test_table_has_the_expected_columns(report):
    assert [s.key for s in report.settings] == ["crops", "native"]
    anchors = image_bench.anchor_columns(list(QUICK))
    assert "JPEG PSNR @ same bpp" in anchors and "gap to WebP (dB)" in anchors
    for setting in report.settings:
        assert len(setting.rows) == 1
        row = setting.rows[0]
        assert set(image_bench.QUALITY_COLUMNS) <= set(row) and set(anchors) <= set(row)
        assert row["tokenizer"] == "toy"
        md = image_bench.quality_table(setting) + "\n" + image_bench.versus_table(setting)
        assert "| " + " | ".join(image_bench.QUALITY_COLUMNS) + " |" in md
        assert "| " + " | ".join(anchors) + " |" in md
    (t,) = report.throughput
    assert set(image_bench.THROUGHPUT_COLUMNS) <= set(t)
    assert t["encode img/s (one at a time)"] > 0 and t["decode img/s (one at a time)"] > 0
    assert t["encode img/s (batch)"] is None      # the toy codec has no batched API: n/a, not a guess


def test_bpp_is_code_bits_over_pixels(report, pictures):
    crops, native = report.settings
    # 64x64 crops: 8x8 grid -> 2x2 + 4x4 + 8x8 = 84 codes of 4 bits
    assert crops.rows[0]["bpp"] == pytest.approx(84 * 4 / 64 ** 2)
    assert crops.rows[0]["tokens/image"] == 84
    assert crops.rows[0]["structural tokens/image"] == 6      # begin, 2 x 2 shape tokens, end
    run = native.runs["toy"]
    for pic, bpp in zip(pictures, run.bpp):
        assert bpp == pytest.approx(_toy_bits(pic.image.height, pic.image.width)
                                    / (pic.image.height * pic.image.width))
    assert native.rows[0]["bpp"] == pytest.approx(float(np.mean(run.bpp)))


def test_settings_crop_and_keep_native_size(report, pictures):
    crops, native = report.settings
    assert all((p.image.height, p.image.width) == (64, 64) for p in crops.pictures)
    assert [p.name for p in crops.pictures if p.name.endswith(":center")] == [f"{p.name}:center" for p in pictures]
    assert [(p.image.height, p.image.width) for p in native.pictures] == \
        [(p.image.height, p.image.width) for p in pictures]
    # MS-SSIM only where the picture is big enough for its five scales
    ms = native.runs["toy"].ms_ssim
    assert not math.isnan(ms[0]) and math.isnan(ms[1]) and math.isnan(ms[2])
    assert crops.rows[0]["MS-SSIM"] is None and native.rows[0]["MS-SSIM"] == pytest.approx(ms[0])


def test_crops_are_deterministic(pictures):
    a = image_bench.crops_of(pictures, 64, random_crops=2)
    b = image_bench.crops_of(pictures[:1], 64, random_crops=2)
    assert torch.equal(a[1].image.pixels, b[1].image.pixels)   # independent of the other pictures


def test_grid_picks_spread_center_crops():
    im = Image.from_array(np.zeros((4, 4, 3), dtype=np.uint8))
    crops = [image_bench.Picture(f"p{i}:{kind}", im) for i in range(10) for kind in ("center", "crop0")]
    picks = image_bench.grid_picks(crops, 4)
    assert [crops[i].name for i in picks] == ["p1:center", "p3:center", "p6:center", "p8:center"]
    assert len(image_bench.grid_picks(crops[:4], 4)) == 2     # no more rows than pictures


def test_native_caps_the_long_side(pictures):
    (capped, kept, _) = image_bench.native_of(pictures, max_side=150)
    assert max(capped.image.height, capped.image.width) == 150 and "downscaled from 180x200" in capped.note
    assert kept.note == "" and kept.image is pictures[1].image


def test_codebook_usage(report):
    run = report.settings[0].runs["toy"]
    assert [lv for lv, _, _ in run.usage] == [0, 1, 2]
    assert all(0 < used <= size == 16 for _, used, size in run.usage)
    assert report.settings[0].rows[0]["codebook usage"] == pytest.approx(sum(u for _, u, _ in run.usage) / 48)


def test_anchor_interpolation_is_monotone_and_exact_at_the_sweep(report):
    for setting in report.settings:
        jpeg = setting.anchors["JPEG"]
        rates, psnr = jpeg.mean("bpp"), jpeg.mean("psnr")
        assert np.all(np.diff(rates) > 0), "higher JPEG quality must cost more bits"
        for r, p in zip(rates, psnr):
            assert jpeg.at_rate(float(r)) == pytest.approx(float(p))
        grid = np.linspace(rates[0], rates[-1], 50)
        values = [jpeg.at_rate(float(r)) for r in grid]
        if np.all(np.diff(psnr) >= 0):
            assert np.all(np.diff(values) >= -1e-9)
        assert min(values) >= psnr.min() - 1e-9 and max(values) <= psnr.max() + 1e-9
        # never extrapolated
        assert jpeg.at_rate(float(rates[0]) * 0.5) is None and jpeg.at_rate(float(rates[-1]) * 2) is None
        row = setting.rows[0]
        if row["JPEG PSNR @ same bpp"] is not None:
            assert row["gap to JPEG (dB)"] == pytest.approx(row["PSNR"] - row["JPEG PSNR @ same bpp"])


def test_interpolate_by_hand():
    assert bench_report.interpolate(np.array([0.5, 0.1, 0.3]), np.array([35.0, 25.0, 30.0]), 0.2) == pytest.approx(27.5)
    assert bench_report.interpolate(np.array([0.1, 0.3]), np.array([25.0, 30.0]), 0.3) == pytest.approx(30.0)
    assert bench_report.interpolate(np.array([0.1, 0.3]), np.array([25.0, 30.0]), 0.05) is None
    assert bench_report.interpolate(np.array([0.1, 0.3]), np.array([25.0, 30.0]), math.nan) is None


def test_identical_images_psnr_is_capped():
    big = _picture(200, 190, 3)
    q = image_bench.quality(big, big)
    assert q["psnr"] == bench_report.PSNR_CAP == 100.0 and q["ssim"] == pytest.approx(1.0) and q["ms_ssim"] == pytest.approx(1.0)
    small = _picture(40, 50, 4)
    q = image_bench.quality(small, small)
    assert q["psnr"] == 100.0 and math.isnan(q["ms_ssim"])
    worse = Image.from_array(small.to_float().mul(0.9))
    assert image_bench.quality(small, worse)["psnr"] < 100.0


def test_section_renders_and_replaces_only_its_own(report, tmp_path):
    body = image_bench.render_section(report, command="python benchmarks/reconstruction.py --modality image",
                            heldout="synthetic", plots={"rd": tmp_path / "plots" / "image_rd.png"},
                            results_dir=tmp_path)
    assert "- Command: `python benchmarks/reconstruction.py --modality image`" in body
    assert "### 64x64 crops" in body and "### Native size" in body and "### Throughput" in body
    assert "](plots/image_rd.png)" in body
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Text throughput\n\nkeep me\n\n## Image reconstruction\n\nold\n")
    bench_report.write_section(results, bench_report.Section("Image reconstruction", body))
    text = results.read_text()
    assert "keep me" in text and "old\n" not in text and text.count("## Image reconstruction") == 1


def test_plots_stay_small(report, tmp_path):
    pytest.importorskip("matplotlib")
    rd = image_bench.plot_rd(report, tmp_path / "image_rd.png")
    grid = image_bench.plot_grid(report, tmp_path / "image_grid.png")
    for p in (rd, grid):
        assert p.exists() and 0 < p.stat().st_size < bench_report.MAX_PLOT_BYTES


# -- the command ------------------------------------------------------------------------------------


def _heldout(folder: Path) -> Path:
    folder.mkdir()
    _picture(90, 120, 5).save(folder / "a.png")
    return folder


def test_command_compares_checkpoints_and_writes_nothing_with_no_write(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(image_bench, "QUALITIES", QUICK)
    ToyImage(CFG).save_pretrained(tmp_path / "toy_a")
    ToyImage(ToyImageConfig(patch=16, levels=8)).save_pretrained(tmp_path / "toy_b")
    results, plots = tmp_path / "RESULTS.md", tmp_path / "plots"
    reconstruction.main(["--modality", "image", "--no-suite",
            "--checkpoint", str(tmp_path / "toy_a"), "--checkpoint", str(tmp_path / "toy_b"),
            "--heldout", str(_heldout(tmp_path / "heldout")), "--random-crops", "0", "--repeat", "1",
            "--batch", "1", "--results", str(results), "--plots", str(plots), "--no-write"])
    out = capsys.readouterr().out
    assert "## Image reconstruction" in out and "### 256x256 crops" in out
    assert out.count("toy_a |") >= 4 and out.count("toy_b |") >= 4    # one row each in every table
    assert not results.exists() and not plots.exists()


def test_command_refuses_a_suite_without_image_tokenizer(tmp_path):
    UniTokenizer(unitok.text.load_default()).save_pretrained(tmp_path / "suite")
    with pytest.raises(SystemExit, match="no image tokenizer"):
        reconstruction.main(["--modality", "image", "--suite", str(tmp_path / "suite"), "--no-write"])


def test_command_needs_something_to_compare():
    with pytest.raises(SystemExit, match="needs at least one --checkpoint"):
        reconstruction.main(["--modality", "image", "--no-suite", "--no-write"])


def test_command_says_how_to_fetch_missing_heldout(tmp_path):
    ToyImage(CFG).save_pretrained(tmp_path / "toy")
    with pytest.raises(SystemExit, match="recipes/data/fetch_images.py"):
        reconstruction.main(["--modality", "image", "--no-suite", "--checkpoint", str(tmp_path / "toy"),
                "--heldout", str(tmp_path / "none"), "--no-write"])


# -- audio (``--modality audio``) -------------------------------------------------------------------
#
# A tiny untrained AudioTokenizer (75 frames/s, 8 levels of 1024 codes: 0.75 kbps a level, so the
# 1.5 / 3 / 6 kbps targets are 2 / 4 / 8 levels) and a few seconds of synthetic audio.

from unitok import Audio  # noqa: E402
from unitok.audio import AudioTokenizer, AudioTokenizerConfig  # noqa: E402
from unitok.quantize import ResidualQuantizerConfig  # noqa: E402

AUDIO_CFG = AudioTokenizerConfig(channels=2, lstm=0, quantizer=ResidualQuantizerConfig(levels=8, dim=8,
                                                                                        codebook_size=1024))


def _tone(seconds: float, seed: int) -> torch.Tensor:
    """[N] at 24 kHz: a few harmonics switched on and off, with a little noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(round(seconds * 24000)) / 24000
    x = sum(torch.sin(2 * torch.pi * f * t) / k for k, f in enumerate((180, 360, 540, 1100, 2300), 1))
    x = x * torch.sin(2 * torch.pi * 2.5 * t).clamp_min(0) + 0.01 * torch.randn(len(t), generator=g)
    return (0.8 * x / x.abs().max()).float()


@pytest.fixture(scope="module")
def audio_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio_model")
    torch.manual_seed(0)
    AudioTokenizer(AUDIO_CFG).eval().save_pretrained(folder)
    return folder


def test_audio_levels_follow_the_target_rate():
    model = AudioTokenizer(AUDIO_CFG)
    assert [audio_bench.levels_for(model, k) for k in (0.5, 1.5, 3, 6, 100)] == [None, 2, 4, 8, 8]


def test_audio_long_files_are_cut_into_spread_windows():
    wav = torch.arange(100, dtype=torch.float32)
    whole = audio_bench.segments_of("a", "speech", wav[:40], 3, 40)
    assert len(whole) == 1 and whole[0].name == "a"
    cut = audio_bench.segments_of("b", "music", wav, 3, 40)
    assert [int(c.wav[0]) for c in cut] == [0, 30, 60] and all(len(c.wav) == 40 for c in cut)


def test_opus_anchor_reports_the_rate_it_spends_and_stays_aligned(tmp_path):
    x = _tone(3.0, 0)
    rec, payload, file_bytes = audio_bench.opus_round_trip(x, 12.0, tmp_path / "a.opus")
    assert rec.shape == x.shape
    kbps = payload * 8 / 3.0 / 1000
    assert kbps == pytest.approx(12.0, rel=0.3)          # VBR around a rate libopus honours
    assert payload < file_bytes < payload + 1500         # the Ogg pages and headers come on top
    # aligned: no lag between input and output, so a high rate gives a high SI-SDR
    hi, _, _ = audio_bench.opus_round_trip(x, 64.0, tmp_path / "b.opus")
    xc = np.correlate(hi.numpy(), x.numpy(), "full")
    assert int(xc.argmax()) - (len(x) - 1) == 0
    assert float(unitok.metrics.si_sdr(hi[None], x[None])) > 10
    # libopus has a floor: asked for 0.5 kbps it spends more, and the benchmark reports what it spent
    _, low, _ = audio_bench.opus_round_trip(x, 0.5, tmp_path / "c.opus")
    assert low * 8 / 3.0 / 1000 > 0.5


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def test_audio_benchmark_end_to_end(tmp_path, audio_model, capsys):
    heldout = tmp_path / "heldout"
    for cat, seconds, seed in (("speech", 1.6, 1), ("music", 3.2, 2)):   # multiples of the 320-sample hop
        (heldout / cat).mkdir(parents=True)
        Audio.from_array(_tone(seconds, seed), 24000).save(heldout / cat / f"{cat}0.flac")
    results, plots = tmp_path / "RESULTS.md", tmp_path / "plots"
    results.write_text("# Benchmark results\n\n## Image reconstruction\n\nkeep me\n")
    reconstruction.main(["--modality", "audio", "--no-suite", "--checkpoint", str(audio_model), "--heldout", str(heldout),
            "--segments", "2", "--segment-seconds", "1.6", "--repeat", "1", "--threads", "1",
            "--rtf-seconds", "1", "--memory-minutes", "0.02", "--results", str(results), "--plots", str(plots)])
    out = capsys.readouterr().out
    text = results.read_text()
    assert "## Image reconstruction\n\nkeep me" in text            # the other sections stay as they were
    section = text.split("## Audio reconstruction", 1)[1]
    name = bench_report.rel(audio_model)
    assert "### Speech (1 clips, 1.6 s)" in section and "### Music (2 clips, 3.2 s)" in section
    assert "| " + " | ".join(audio_bench.AUDIO_QUALITY_COLUMNS) + " |" in section
    for levels, kbps in ((2, "1.5"), (4, "3"), (8, "6")):
        # exact rate and tokens/s: the clips are whole frames long
        assert f"| {name}, {levels} levels | {kbps} | {float(kbps):.3f} | {75 * levels:.1f} |" in section
        assert f"| Opus | {kbps} | " in section
    assert section.count("codebook") and f"{name}, music, 8 levels: L0 " in section and "L7 " in section
    assert "| cpu | 1 |" in section and "`tok.encode(Audio)`" in section
    assert section.count(" x real time") >= 3
    assert "### Acceptance of issues 4 and 18, as measured" in section and "--checkpoint DIR" in out
    if _has_matplotlib():                       # the plot needs the bench extra
        assert (plots / "audio_rd.png").stat().st_size > 1000
        assert (plots / "audio_spectrograms.png").stat().st_size > 1000
        assert "![log-mel spectrograms" in section


def test_audio_report_numbers(audio_model):
    cand, = audio_bench.load_audio_candidates(None, [audio_model], use_suite=False)
    clips = [audio_bench.Clip("s", "speech", _tone(1.6, 3)), audio_bench.Clip("m", "music", _tone(1.6, 4))]
    report = audio_bench.run_audio([cand], clips, kbps=(1.5,), devices=["cpu"], threads=(), repeat=1, rtf_seconds=1,
                         memory_minutes=0, progress=False)     # speed and memory: see the end-to-end test
    ours, opus = report.runs
    assert (ours.levels, opus.codec, opus.levels) == (2, "Opus", None)
    assert ours.bits.tolist() == [2 * 120 * 10] * 2                # 2 levels x 120 frames x 10 bits
    rows = audio_bench.audio_rows(report, "speech")
    assert [r["codec"] for r in rows] == [f"{cand.name}, 2 levels", "Opus"]
    assert rows[0]["SI-SDR (dB)"] == pytest.approx(float(ours.scores["si_sdr"][0]))
    assert rows[1]["kbps"] == pytest.approx(opus.bits[0] / 1.6 / 1000)
    assert report.throughput == [] and report.memory == []
    versus = audio_bench.versus_opus_rows(report, "music")
    assert len(versus) == 1 and versus[0]["mel distance winner"] in ("tokenizer", "Opus", "tie")


def test_audio_acceptance_reads_opus_at_the_spent_rate():
    row = {"tokenizer": "t", "kbps": 6.02, "mel distance (tokenizer)": 0.365, "Opus mel distance @ same kbps": 1.086,
           "STOI (tokenizer)": 0.777, "Opus STOI @ same kbps": 0.751, "PESQ (tokenizer)": 1.90,
           "Opus PESQ @ same kbps": 2.97}
    same, pesq_line = audio_bench._same_spend_lines(row, "speech", 0.3)
    assert "6.020 kbps" in same and ": yes (mel 0.365 / 1.086, STOI 0.777 / 0.751)" in same
    assert pesq_line.endswith("PESQ within 0.3 of Opus's at that rate: no (1.90 / 2.97, -1.07)")
    assert audio_bench._same_spend_lines({**row, "PESQ (tokenizer)": 2.70}, "speech", 0.3)[1].startswith(
        "- t PESQ within 0.3 of Opus's at that rate: yes")
    outside, = audio_bench._same_spend_lines({**row, "Opus PESQ @ same kbps": None}, "speech", 0.3)
    assert outside.endswith(": n/a (outside the rates Opus reached, or a metric is not installed)")


def test_audio_phase_hybrids_swap_magnitudes_and_phases():
    x = _tone(0.7, 5)                                            # 16800 samples: not a whole number of hops
    spec = audio_phase.stft(x, 640, 320)
    assert torch.allclose(audio_phase.istft(spec, len(x), 640, 320), x, atol=1e-5)
    y = 0.5 * torch.roll(x, 37)                                  # half as loud, shifted: other phases
    out = audio_phase.hybrids(x, y, 640, 320)
    assert list(out) == list(audio_phase.VARIANTS) and torch.equal(out["codec"], y)
    assert torch.allclose(out["reference, resynthesised"], x, atol=1e-5)
    level = lambda s: float(s.pow(2).mean().sqrt())                                # noqa: E731
    # magnitudes decide the level, phases the waveform
    assert level(out["reference magnitudes, codec phases"]) > 1.6 * level(out["codec magnitudes, reference phases"])
    corr = lambda a, b: float(torch.dot(a, b) / (a.norm() * b.norm()))             # noqa: E731
    assert corr(out["codec magnitudes, reference phases"], x) > 0.9
    assert corr(out["reference magnitudes, codec phases"], y) > 0.9
    assert abs(corr(out["reference magnitudes, random phases"], x)) < 0.2


def test_audio_command_needs_an_audio_tokenizer(tmp_path, audio_model):
    ToyImage(CFG).save_pretrained(tmp_path / "toy")
    with pytest.raises(SystemExit, match="not an audio codec"):
        reconstruction.main(["--modality", "audio", "--no-suite", "--checkpoint", str(tmp_path / "toy"), "--no-write"])
    with pytest.raises(SystemExit, match="recipes/data/fetch_audio.py"):
        reconstruction.main(["--modality", "audio", "--no-suite", "--checkpoint", str(audio_model),
                "--heldout", str(tmp_path / "none"), "--no-write"])


# -- video (``--modality video``) -------------------------------------------------------------------
#
# Two short synthetic clips (5 frames, 64x64) in a held-out file with its split.json, a tiny
# untrained video tokenizer (stride 4, FSQ 5x5x5) and an image tokenizer with the same 2-D config.

import json  # noqa: E402
from fractions import Fraction  # noqa: E402

import av  # noqa: E402

from unitok.image import ImageTokenizer, ImageTokenizerConfig, SpatialConfig  # noqa: E402
from unitok.quantize import QuantizerConfig  # noqa: E402
from unitok.video import VideoTokenizer, VideoTokenizerConfig  # noqa: E402

VIDEO_SPATIAL = dict(channels=8, channel_mult=(1, 2), patch=2, enc_blocks=1, dec_blocks=1, mid_blocks=1,
                     quantizer=QuantizerConfig(kind="fsq", levels=(5, 5, 5), scales=(4, 2, 1)))


def _video_frames(frames: int, size: int, seed: int) -> np.ndarray:
    """uint8 [frames, size, size, 3]: a textured picture sliding 2 pixels a frame."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 12, generator=g), size=(size, size + 2 * frames),
                                           mode="bicubic", align_corners=False)[0]
    x = torch.stack([base[:, :, 2 * t:2 * t + size] for t in range(frames)])
    x = (x + 0.08 * torch.rand(x.shape, generator=g)).clamp(0, 1)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def video_heldout(tmp_path_factory):
    """A held-out file as fetch_video.py writes it: 2 clips of 5 frames, 64x64, and split.json."""
    folder = tmp_path_factory.mktemp("video")
    np.save(folder / "heldout_64.npy", np.stack([_video_frames(5, 64, 0), _video_frames(5, 64, 1)]))
    split = {"real_sources": {"carphone": {"fps": "30000/1001"}},
             "heldout": [{"source": "photo:x/y", "kind": "pan_zoom"},
                         {"source": "carphone", "kind": "real", "first_frame": 88, "left": 28}]}
    (folder / "split.json").write_text(json.dumps(split))
    return folder / "heldout_64.npy"


@pytest.fixture(scope="module")
def video_models(tmp_path_factory):
    """(image tokenizer folder, video tokenizer folder): untrained; the video model has the same
    2-D layers config but its own random weights."""
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    ImageTokenizer(ImageTokenizerConfig(**VIDEO_SPATIAL)).eval().save_pretrained(folder / "image")
    VideoTokenizer(VideoTokenizerConfig(spatial=SpatialConfig(**VIDEO_SPATIAL))).eval().save_pretrained(folder / "video")
    return folder / "image", folder / "video"


def test_video_heldout_clips_carry_group_and_frame_rate(video_heldout):
    clips = video_bench.load_video_heldout(video_heldout)
    assert [c.group for c in clips] == ["pan-and-zoom", "real camera"]
    assert [c.fps for c in clips] == [Fraction(25), Fraction(30000, 1001)]
    assert clips[1].name == "carphone@88+28" and clips[0].frames.shape == (5, 3, 64, 64)
    assert [c.name for c in video_bench.load_video_heldout(video_heldout, limit=1)] == [clips[0].name]


def test_video_missing_heldout_says_how_to_fetch(tmp_path):
    with pytest.raises(SystemExit, match="recipes/data/fetch_video.py"):
        video_bench.load_video_heldout(tmp_path / "none.npy")


def test_video_scores_see_flicker_that_frames_alone_do_not():
    ref = torch.from_numpy(_video_frames(6, 32, 2)).permute(0, 3, 1, 2).contiguous()
    same = video_bench.video_scores(ref, ref)
    assert (same["psnr"] == bench_report.PSNR_CAP).all() and (same["tpsnr"] == bench_report.PSNR_CAP).all() and same["tpsnr"].shape == (5,)
    steady = (ref.int() + 6).clamp(0, 255).to(torch.uint8)           # the same error in every frame
    flicker = (ref.int() + torch.tensor([6, -6] * 3).view(6, 1, 1, 1)).clamp(0, 255).to(torch.uint8)
    s, f = video_bench.video_scores(ref, steady), video_bench.video_scores(ref, flicker)
    assert abs(s["psnr"].mean() - f["psnr"].mean()) < 0.5             # per frame they look alike
    assert s["tpsnr"].mean() > f["tpsnr"].mean() + 10                   # in time they do not


def test_h264_anchor_reports_the_bitstream_it_spent(video_heldout, tmp_path):
    anchors, _ = video_anchors.video_anchors(["H.264"])
    h264, = anchors
    clip = video_bench.load_video_heldout(video_heldout)[1]
    frames = video_anchors.yuv420_frames(clip.frames)
    target = 0.5
    crf, stream, spent = video_anchors.search_crf(h264, frames, clip.fps, clip.pixels, target, h264.start)
    bpp = stream.size * 8 / clip.pixels
    assert bpp == pytest.approx(target, rel=0.05) and 1 <= spent <= video_anchors.SEARCH_ENCODES
    # the packets are the whole bitstream: written raw (no container), they are all a decoder needs
    raw = tmp_path / "clip.h264"
    raw.write_bytes(stream.extradata + b"".join(stream.packets))
    assert raw.stat().st_size == stream.size
    with av.open(str(raw)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    ours = video_anchors.anchor_decode(h264, stream)
    assert torch.equal(torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2), ours)
    # and the run reports that same rate
    run, = video_bench.run_video_anchor(h264, [clip], [target], progress=False)
    assert run.bits[0] == stream.size * 8 and run.setting[0] == crf


def test_video_benchmark_end_to_end(video_heldout, video_models, tmp_path, capsys):
    image, video = video_models
    results, plots = tmp_path / "RESULTS.md", tmp_path / "plots"
    results.write_text("# Benchmark results\n\n## Image reconstruction\n\nkeep me\n")
    reconstruction.main(["--modality", "video", "--no-suite", "--checkpoint", str(video), "--heldout", str(video_heldout),
            "--repeat", "1", "--threads", "1", "--rate-multiples", "1", "3", "--agreement-image", str(image),
            "--results", str(results), "--plots", str(plots)])
    capsys.readouterr()
    text = results.read_text()
    assert "## Image reconstruction\n\nkeep me" in text              # the other sections stay as they were
    section = text.split("## Video reconstruction", 1)[1]
    name = bench_report.rel(video)
    # 5 frames -> 2 latent frames; stride 4: a 16x16 grid, scales 16, 8, 4 -> 256 + 64 + 16 = 336 codes
    # a latent frame, each of FSQ 5x5x5 (125 codes, log2(125) bits)
    codes = 2 * 336
    bpp = codes * np.log2(125) / (5 * 64 * 64)
    tokens_per_s = 2 * codes / (5 / 25 + 5 / float(Fraction(30000, 1001)))
    assert f"| pan-and-zoom | {name} | {bpp:.4f} | {codes / 0.2:.1f} | " in section
    assert f"| all | {name} | {bpp:.4f} | {tokens_per_s:.1f} | " in section
    for codec in ("H.264", "AV1"):
        if codec in {a.name for a in video_anchors.video_anchors()[0]}:
            assert f"| all | {codec} @ {bpp:.4f} bpp | " in section and f"gap to {codec} (dB)" in section
    assert "| cpu | 1 |" in section and "| 5x64x64 |" in section
    assert "not fine-tuned: 2/2 one-frame videos give exactly the image tokenizer's codes" in section
    assert "Quality of a single frame, at the same rate: the image tokenizer " in section
    assert "### Issue 5 acceptance, as measured" in section
    if _has_matplotlib():                       # the plot needs the bench extra
        assert (plots / "video_rd.png").stat().st_size > 1000
        assert 0 < (plots / "video_grid.png").stat().st_size <= bench_report.MAX_PLOT_BYTES


def test_video_command_needs_a_video_tokenizer(tmp_path, video_models):
    image, _ = video_models
    with pytest.raises(SystemExit, match="not a video tokenizer"):
        reconstruction.main(["--modality", "video", "--no-suite", "--checkpoint", str(image), "--no-write"])
    UniTokenizer(unitok.text.load_default()).save_pretrained(tmp_path / "suite")
    with pytest.raises(SystemExit, match="has no video tokenizer.*recipes/train_video.py"):
        reconstruction.main(["--modality", "video", "--suite", str(tmp_path / "suite"), "--no-write"])


# -- benchmarks/video_ceiling.py ---------------------------------------------------------------------

def test_video_ceiling_codes_frames_as_the_image_tokenizer_does():
    """Its "all scales" row is the image tokenizer's own encode and decode, a frame at a time; its
    key-frame row spends the key frame's codes plus the coarser scales' for every later frame."""
    import video_ceiling
    from unitok.image import ImageTokenizer, ImageTokenizerConfig
    from unitok.quantize import FSQConfig, MultiScaleConfig

    torch.manual_seed(0)
    image = ImageTokenizer(ImageTokenizerConfig(channels=8, channel_mult=(1, 2), patch=2, mid_blocks=0,
                                                quantizer=MultiScaleConfig(FSQConfig((5, 5, 5)), scales=(4, 2, 1)))
                           ).eval()
    frames = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ways = video_ceiling.image_ways(image, frames)
        codes = image.encode(frames.float() / 255)
        own = video_ceiling._uint8(image.decode(codes, (16, 16)))
    rec, spent = ways["intra, all scales"]
    assert torch.equal(rec, own) and spent == 3 * (1 + 4 + 16)
    assert ways["intra, all but the finest"][1] == 3 * (1 + 4)
    assert ways["key frame + residuals"][1] == (1 + 4 + 16) + 2 * (1 + 4)


def test_video_benchmark_reads_your_own_video_files(tmp_path):
    """--heldout a video file or a folder of them: each clip whole, at its size and frame rate; a
    file that is not an array of clips gets a message, not numpy's traceback."""
    g = torch.Generator().manual_seed(0)
    for name, frames in (("a.mp4", 5), ("b.mp4", 3)):
        unitok.Video((torch.rand(frames, 3, 32, 48, generator=g) * 255).to(torch.uint8), 12).save(tmp_path / name)
    clips = video_bench.load_video_heldout(tmp_path)
    assert [(c.name, c.group, tuple(c.frames.shape), c.fps) for c in clips] == [
        ("a.mp4", "clips", (5, 3, 32, 48), 12), ("b.mp4", "clips", (3, 3, 32, 48), 12)]
    assert len(video_bench.load_video_heldout(tmp_path / "b.mp4")) == 1
    np.save(tmp_path / "objects.npy", np.array([{"not": "clips"}], dtype=object))
    with pytest.raises(SystemExit, match="not an array of uint8 clips"):
        video_bench.load_video_heldout(tmp_path / "objects.npy")
    (tmp_path / "c.mp4").write_bytes(b"not a video at all")           # left out, the others measured
    assert [c.name for c in video_bench.load_video_heldout(tmp_path)] == ["a.mp4", "b.mp4"]
    with pytest.raises(SystemExit, match="none of its video files could be read"):
        video_bench.load_video_heldout(tmp_path / "c.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no video files here"):
        video_bench.load_video_heldout(tmp_path / "empty")
