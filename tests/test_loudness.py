"""Integrated loudness (ITU-R BS.1770) in ``unitok.metrics`` and the band loudness loss of the audio
recipe (issue 18: the codec's reconstructions must keep the level of what went in)."""

import math
import runpy
from pathlib import Path

import pytest
import torch

from unitok import metrics

ROOT = Path(__file__).resolve().parents[1]
RATE = 24000


def tone(seconds: float, freq: float, amplitude: float) -> torch.Tensor:
    t = torch.arange(round(seconds * RATE), dtype=torch.float64) / RATE
    return amplitude * torch.sin(2 * math.pi * freq * t)


def bursts(seconds: float = 2.0, seed: int = 0) -> torch.Tensor:
    """[N]: noise switched on and off a few times a second (the gating has quiet blocks to drop)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(round(seconds * RATE)) / RATE
    on = (torch.sin(2 * math.pi * 2.5 * t) > 0).double()
    return 0.2 * torch.randn(len(t), generator=g, dtype=torch.float64) * (0.05 + on)


def test_a_known_gain_gives_that_change_in_db():
    x = bursts()
    for gain_db in (-6.0, -3.0, 2.0):
        y = x * 10 ** (gain_db / 20)
        assert float(metrics.loudness_change(x, y, RATE)) == pytest.approx(gain_db, abs=1e-6)
    assert float(metrics.loudness_change(x, x, RATE)) == pytest.approx(0.0, abs=1e-9)


def test_full_scale_bright_audio_is_not_clipped_by_the_filters():
    # torchaudio's K-weighting biquads clip at +-1; an 8 kHz tone near full scale gets +4 dB there
    loud, half = tone(2.0, 8000, 0.99), tone(2.0, 8000, 0.495)
    assert float(metrics.loudness_change(loud, half, RATE)) == pytest.approx(-20 * math.log10(2), abs=1e-6)
    # BS.1770's calibration: a 1 kHz sine at -20 dBFS reads about -23 LUFS
    assert float(metrics.loudness(tone(2.0, 1000, 0.1), RATE)) == pytest.approx(-23.0, abs=0.3)


def test_silence_and_short_clips_have_no_loudness():
    silent, x = torch.zeros(RATE), bursts()
    assert math.isnan(float(metrics.loudness(silent, RATE)))
    assert math.isnan(float(metrics.loudness(x[:RATE // 4], RATE)))             # under one 400 ms block
    assert math.isnan(float(metrics.loudness_change(silent, silent, RATE)))    # no reference level: left out
    # a reconstruction silent where the reference is not is charged, at the -70 LUFS gate
    lost = float(metrics.loudness_change(x, torch.zeros_like(x), RATE))
    assert lost == pytest.approx(metrics.LOUDNESS_FLOOR_LUFS - float(metrics.loudness(x, RATE)))
    assert lost < -40


def test_batches_and_shapes():
    x = torch.stack([bursts(seed=1), bursts(seed=2), torch.zeros(2 * RATE)])
    out = metrics.loudness(x, RATE)
    assert out.shape == (3,) and torch.isfinite(out[:2]).all() and out[2].isnan()
    change = metrics.loudness_change(x, 0.5 * x, RATE)
    assert change[:2] == pytest.approx([-20 * math.log10(2)] * 2, abs=1e-6) and change[2].isnan()
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.loudness_change(x, x[:, :-1], RATE)
    with pytest.raises(ValueError, match="mono"):
        metrics.loudness(x[None], RATE)


def test_band_loudness_loss_asks_for_the_reference_level():
    loss = runpy.run_path(str(ROOT / "recipes" / "train_audio.py"))["BandLoudnessLoss"](RATE)
    x = torch.stack([bursts(0.5, 3), bursts(0.5, 4)]).float()
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    # a uniformly quieter copy: every band short by 2 ln(gain) (a little less in the bands near the floor)
    assert float(loss(0.5 * x, x)) == pytest.approx(2 * math.log(2), rel=2e-2)
    gain = torch.tensor(0.7, requires_grad=True)
    loss(gain * x, x).backward()
    assert gain.grad < 0                                          # descending it makes the copy louder
