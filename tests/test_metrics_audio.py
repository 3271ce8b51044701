"""Audio metrics of ``unitok.metrics``: SI-SDR, mel distance, and the STOI / PESQ wrappers over the
optional pystoi and pesq packages (skipped where they are not installed)."""

import sys

import numpy as np
import pytest
import torch

from unitok import metrics
from unitok.nn import audio as nn_audio


def speech_like(seconds: float, rate: int, seed: int = 0) -> torch.Tensor:
    """[N]: a gliding harmonic voice switched on and off a few times a second, with a little
    noise; enough for STOI and PESQ to find 'speech' in it."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * rate)) / rate
    f0 = 140 + 30 * torch.sin(2 * torch.pi * 0.7 * t)
    phase = 2 * torch.pi * torch.cumsum(f0, 0) / rate
    voice = sum(torch.sin(k * phase) / k for k in range(1, 12))
    syllables = (torch.sin(2 * torch.pi * 3.0 * t).clamp_min(0)) ** 0.5
    x = 0.3 * voice * syllables + 0.003 * torch.randn(len(t), generator=g)
    return (x / x.abs().max() * 0.8).float()


def noise(n: int, seed: int, scale: float = 0.3) -> torch.Tensor:
    return scale * torch.randn(n, generator=torch.Generator().manual_seed(seed))


def test_si_sdr_is_high_for_copies_and_low_for_noise():
    x = speech_like(1.0, 16000)[None]
    assert float(metrics.si_sdr(x, x)) > 60
    assert float(metrics.si_sdr(0.5 * x, x)) > 60                     # scale-invariant
    assert float(metrics.si_sdr(noise(16000, 1)[None], x)) < -15       # unrelated signal
    n = 0.1 * noise(16000, 2)[None]
    snr = 10 * torch.log10(x.pow(2).sum() / n.pow(2).sum())
    assert float(metrics.si_sdr(x + n, x)) == pytest.approx(float(snr), abs=0.5)   # ~ the SNR for white noise


def test_mel_distance_is_zero_for_identical_and_grows_with_damage():
    mels = metrics.MelSpectrograms(16000)
    x = torch.stack([speech_like(1.0, 16000, 0), speech_like(1.0, 16000, 1)])
    assert torch.allclose(metrics.mel_distance(mels, x, x), torch.zeros(2))
    light = metrics.mel_distance(mels, x + 0.001 * torch.randn_like(x), x)
    heavy = metrics.mel_distance(mels, x + 0.1 * torch.randn_like(x), x)
    assert (light > 0).all() and (heavy > light).all()


def test_nn_audio_reexports_the_metrics():
    # recipes/train_audio.py and older callers import them from unitok.nn.audio
    for name in ("si_sdr", "mel_distance", "MelSpectrograms", "stft_magnitude"):
        assert getattr(nn_audio, name) is getattr(metrics, name)


def test_stoi_sanity():
    pytest.importorskip("pystoi")
    x = speech_like(2.0, 24000)
    assert float(metrics.stoi(x, x, 24000)) == pytest.approx(1.0, abs=1e-6)
    noisy = x + noise(len(x), 3, 0.3)
    assert 0 < float(metrics.stoi(x, noisy, 24000)) < 0.9
    batch = metrics.stoi(torch.stack([x, x]), torch.stack([x, noisy]), 24000)
    assert batch.shape == (2,) and batch[0] > batch[1]
    # too little speech for STOI's 30 frames: NaN, not pystoi's 1e-5 placeholder
    assert np.isnan(float(metrics.stoi(x[:3000], x[:3000], 24000)))


def test_pesq_sanity():
    pytest.importorskip("pesq")
    x = speech_like(2.0, 24000)
    clean = float(metrics.pesq(x, x, 24000))                   # resampled to 16 kHz inside
    noisy = float(metrics.pesq(x, x + noise(len(x), 4, 0.1), 24000))
    assert clean > 4.0 and 1.0 <= noisy < clean
    assert np.isnan(float(metrics.pesq(x, torch.zeros_like(x), 24000)))     # silent output: no score
    assert metrics.pesq(torch.stack([x, x]), torch.stack([x, x]), 24000).shape == (2,)
    with pytest.raises(ValueError, match="mode"):
        metrics.pesq(x, x, 24000, mode="fb")


def test_speech_metrics_check_shapes():
    x = torch.zeros(100)
    for fn in (metrics.stoi, metrics.pesq):
        with pytest.raises((ValueError, ImportError)):
            fn(x, torch.zeros(99), 16000)


@pytest.mark.parametrize("fn,package", [(metrics.stoi, "pystoi"), (metrics.pesq, "pesq")])
def test_missing_package_says_how_to_install(monkeypatch, fn, package):
    monkeypatch.setitem(sys.modules, package, None)        # makes the import fail
    with pytest.raises(ImportError, match=rf"pip install 'unitok\[bench\]'.*{package}=="):
        fn(torch.zeros(16000), torch.zeros(16000), 16000)
