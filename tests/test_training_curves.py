"""benchmarks/training_curves.py: the recipes' logs read back into curves (steps logged again after
a resume keep their last value), and the "## Training curves" section written from them."""

from __future__ import annotations

import pytest

import training_curves as tc
from report import MAX_PLOT_BYTES, pyplot
from unitok.errors import ConfigError

HEADER = ('image tokenizer: 1.00M parameters, stride 8, codebook 64, next-scale layout; device cpu, world 1, '
          '10 training crops; config {"channels": 8}')


def step(n: int, minutes: float, loss: float) -> str:
    return (f"step {n} | {minutes:.1f} min | 1.00 steps/s | lr 1.00e-04 | loss {loss:.4f} l1 0.1000 l2 0.01000 "
            f"struct 0.2000 quant 0.0000 gan 0.000 d 0.000 | train psnr 20.00 | usage 0.900 perplexity 10.0 | threads 1")


def val(n: int, psnr: float, bits_psnr: float) -> list[str]:
    return [f"val step {n} | held-out psnr {psnr:.3f} ssim 0.6000 usage 0.500 perplexity 9.0",
            f"val step {n} | 4-bit prefix codes: psnr {bits_psnr:.3f} ssim 0.5500 usage 1.000"]


# a warm-started run, resumed twice: once from a checkpoint before its last logged step (step 300
# was trained again), once at a step it then validated again
RESUMED = "\n".join([
    "initialised from unitok/assets/image", HEADER,
    step(100, 1.0, 0.5), step(200, 2.0, 0.4), *val(200, 21.0, 20.5), step(300, 3.0, 0.35),
    "resumed from out/checkpoint at step 250 (2.5 min trained)", HEADER,
    step(300, 3.2, 0.3), step(400, 4.2, 0.28), *val(400, 22.5, 21.5),
    "resumed from out/checkpoint at step 400 (4.2 min trained)", HEADER,
    *val(400, 22.4, 21.4),
    "done: 400 steps in 4.2 min; held-out psnr 22.40 (best 22.50); final model 1.00 MB in out/final",
]) + "\n"

NO_VAL = "\n".join([HEADER, step(10, 0.1, 0.9), step(20, 0.2, 0.8), step(30, 0.3, 0.7)]) + "\n"


def write_log(folder, text: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "log.txt").write_text(text)
    return folder


def test_resumed_run_keeps_the_last_value_of_each_step(tmp_path):
    run = tc.parse_log(RESUMED, tmp_path)
    assert [(s, m, loss) for s, m, loss in run.train] == [(100, 1.0, 0.5), (200, 2.0, 0.4), (300, 3.2, 0.3),
                                                          (400, 4.2, 0.28)]
    assert [p.step for p in run.val] == [200, 400]
    assert run.val[0].values == {"psnr": 21.0, "ssim": 0.6, "usage": 0.5, "perplexity": 9.0,
                                 "4-bit psnr": 20.5, "4-bit ssim": 0.55, "4-bit usage": 1.0}
    assert run.val[1].values["psnr"] == 22.4 and run.val[1].values["4-bit psnr"] == 21.4    # the re-evaluation
    assert [p.minutes for p in run.val] == [2.0, 4.2]
    assert run.resumes == [(250, 2.5), (400, 4.2)] and run.replaced == 1     # step 300 of the first session
    assert run.init == "initialised from unitok/assets/image"
    assert run.done.startswith("done: 400 steps in 4.2 min") and run.header.endswith("10 training crops")
    assert run.metrics == ["psnr", "ssim", "usage", "perplexity", "4-bit psnr", "4-bit ssim", "4-bit usage"]
    best, name, higher = tc.best_point(run)
    assert (best.step, name, higher) == (400, "psnr", True)


def test_an_evaluation_logged_twice_in_a_row_keeps_the_second():
    text = "\n".join([HEADER, step(30, 0.3, 0.5), *val(30, 14.0, 13.0), *val(30, 14.5, 13.5)])
    run = tc.parse_log(text, tc.ROOT)
    assert len(run.val) == 1 and run.val[0].values["psnr"] == 14.5 and run.val[0].values["4-bit psnr"] == 13.5


def test_a_fresh_run_appended_to_the_log_replaces_the_earlier_one(tmp_path):
    text = "\n".join([HEADER, step(100, 1.0, 0.5), *val(100, 20.0, 19.0), HEADER, step(50, 0.5, 0.6)])
    run = tc.parse_log(text, tmp_path)
    assert [s for s, _, _ in run.train] == [50] and run.val == [] and run.earlier_runs == 1


def test_audio_video_and_lm_val_lines():
    audio = tc.val_metrics(
        "0.8kbps mel 0.705 sisdr -36.56 | 1.5kbps mel 0.702 sisdr -36.90 || effects: mel 0.725 sisdr -29.68 "
        "loudness -1.20dB speech: mel 0.711 sisdr -33.62 loudness +0.50dB speech STOI 0.909 PESQ 2.10 || "
        "usage per level 0.30 0.10")
    assert {k: v for k, (v, _) in audio.items()} == {
        "0.8kbps mel": 0.705, "0.8kbps sisdr": -36.56, "1.5kbps mel": 0.702, "1.5kbps sisdr": -36.9,
        "effects mel": 0.725, "effects sisdr": -29.68, "effects loudness": -1.2, "speech mel": 0.711,
        "speech sisdr": -33.62, "speech loudness": 0.5, "speech STOI": 0.909, "speech PESQ": 2.1,
        "mean level usage": 0.2}
    assert audio["0.8kbps mel"][1] == 3 and audio["0.8kbps sisdr"][1] == 2     # decimals as logged
    run = tc.parse_log("val step 250 | 0.8kbps mel 0.705 sisdr -36.56 | 1.5kbps mel 0.702 sisdr -36.90", tc.ROOT)
    assert tc.best_metric(run) == ("1.5kbps mel", False)          # the full rate's mel: what best/ is kept by

    video = tc.val_metrics("held-out psnr 30.100 (first frame 31.20, later 29.90) ssim 0.8000 at 0.1234 bpp "
                           "(4 clips (17, 64, 64)) | usage 0.500 perplexity 100.0 | 12 s")
    assert {k: v for k, (v, _) in video.items()} == {
        "psnr": 30.1, "first-frame psnr": 31.2, "later-frames psnr": 29.9, "ssim": 0.8, "bpp": 0.1234,
        "usage": 0.5, "perplexity": 100.0}
    inflated = tc.parse_log("video tokenizer: 1.00M parameters; inflated from unitok/assets/image; device cpu, "
                            "world 1; config {}\n" + step(10, 0.1, 0.5), tc.ROOT)
    assert inflated.init == "inflated from unitok/assets/image"

    lm = tc.parse_log("lm: 1.06M parameters\nval step 0 | loss 7.6550\nstep 50 | 0.2 min | lr 1.00e-03 | "
                      "loss 5.8338\nval step 50 | loss 5.9000", tc.ROOT)
    assert [(p.step, p.values) for p in lm.val] == [(0, {"loss": 7.655}), (50, {"loss": 5.9})]
    assert lm.train == [(50, 0.2, 5.8338)] and tc.best_point(lm)[0].step == 50


def test_missing_or_empty_logs_are_refused_clearly(tmp_path):
    with pytest.raises(ConfigError, match="no such log"):
        tc.read_run(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="is empty"):
        tc.read_run(write_log(tmp_path / "empty", "\n"))
    with pytest.raises(ConfigError, match="no 'step N"):
        tc.read_run(write_log(tmp_path / "started", HEADER + "\n"))
    with pytest.raises(SystemExit, match="error: .*no such log"):
        tc.main(["--run", str(tmp_path / "nowhere"), "--results", str(tmp_path / "R.md")])


def test_section_is_written_with_table_best_point_and_plots(tmp_path, capsys):
    resumed, no_val = write_log(tmp_path / "run_a", RESUMED), write_log(tmp_path / "run_b", NO_VAL)
    results, plots = tmp_path / "RESULTS.md", tmp_path / "plots"
    results.write_text("# Benchmark results\n\n## Other\n\nkept\n")
    argv = ["--run", str(resumed), "--run", str(no_val), "--label", "image retrained", "--results", str(results),
            "--plots", str(plots), "--note", "a note"]
    for _ in range(2):                                  # written twice: replaced, not appended
        assert tc.main(argv) == 0
    text = results.read_text()
    assert text.count("## Training curves") == 1 and "## Other\n\nkept" in text
    assert f"### image retrained: `{resumed}`" in text and f"### `{no_val}`" in text
    assert "- a note" in text and "- Command: `python benchmarks/training_curves.py --run" in text
    assert "- Warm start: initialised from unitok/assets/image" in text
    assert "Resumed 2 times from its checkpoint: at step 250 (2.5 min), step 400 (4.2 min); 1 logged point" in text
    assert "| step | minutes | train loss | psnr | ssim | usage | perplexity | 4-bit psnr |" in text
    assert "| 400 | 4.2 |" in text and "| 22.400 | 0.6000 |" in text
    assert "step 400 (4.2 min): **psnr 22.400**" in text
    assert "No validation line in the log yet" in text and "- Warm start: none (trained from scratch)" in text
    if pyplot() is None:
        assert "(No plot: matplotlib is not installed.)" in text
    else:
        for folder in (resumed, no_val):
            png = plots / tc.plot_name(tc.read_run(folder))
            assert 1000 < png.stat().st_size < MAX_PLOT_BYTES
            assert f"](plots/{png.name})" in text


def test_no_write_leaves_files_alone(tmp_path, capsys):
    run = write_log(tmp_path / "run", NO_VAL)
    results, plots = tmp_path / "RESULTS.md", tmp_path / "plots"
    assert tc.main(["--run", str(run), "--results", str(results), "--plots", str(plots), "--no-write"]) == 0
    assert "## Training curves" in capsys.readouterr().out
    assert not results.exists() and not plots.exists()
