"""Audio tokenizer: lengths and rates through UniTokenizer, bitrates, chunked encoding, streaming
decoding, save/load, layouts, errors, and the tiny training recipe."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import unitok
from unitok import Audio, ConfigError, MediaError, TokenSequenceError, UniTokenizer
from unitok.audio import (AudioTokenizer, AudioTokenizerConfig, ISTFTDecoder, SEANetEncoder, STFTEncoder, build_parts,
                          resample_blocks)
from unitok.checkpoint import load_pretrained
from unitok.layout import PAD, CodecDepth, Delay
from unitok.metrics import MelSpectrograms, mel_distance, si_sdr
from unitok.nn.audio import ISTFTHead
from unitok.nn.audio_losses import stft_loss
from unitok.quantize import ResidualQuantizer, ResidualQuantizerConfig, RFSQConfig, RVQConfig

ROOT = Path(__file__).resolve().parent.parent


def tiny_model(**kw) -> AudioTokenizer:
    """8 kHz, hop 16, 4 levels of 16 codes; random (not k-means) codebooks so codes vary."""
    torch.manual_seed(0)
    q = kw.pop("quantizer", RVQConfig(levels=4, dim=8, codebook_size=16, kmeans_init=False))
    cfg = AudioTokenizerConfig(sample_rate=8000, channels=4, ratios=kw.pop("ratios", (4, 4)), res_units=1, kernel=5,
                               lstm=kw.pop("lstm", 1), quantizer=q, **kw)
    return AudioTokenizer(cfg).eval()


def noise(channels: int, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(channels, n, generator=g) * 2 - 1) * 0.5


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The codecs here are tiny: a second thread only adds synchronisation (and on a busy machine
    waits for a core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def text():
    return unitok.text.load_default()


@pytest.fixture(scope="module", params=["seanet", "istft", "stft+istft", "stft+istft-increment", "stft+istft-stride"])
def model(request):
    """Every encoder and decoder: SEANet both ways; the ConvNeXt + inverse STFT decoder (which holds
    samples back for ``lookahead`` frames when streaming); that with the spectral encoder; and the
    spectral pair with latent frames 4 STFT frames long (a 12.5 Hz codec's design)."""
    if request.param == "stft+istft-stride":
        return tiny_model(encoder="stft", encoder_dim=12, encoder_layers=1, decoder="istft", decoder_dim=12,
                          decoder_layers=1, ratios=(2, 2), frame_stride=4, latent_layers=1, n_fft=8)
    if request.param == "istft":
        return tiny_model(decoder="istft", decoder_dim=12, decoder_layers=2)
    if request.param.startswith("stft+istft"):
        phase = "increment" if request.param.endswith("increment") else "absolute"
        return tiny_model(encoder="stft", encoder_dim=12, encoder_layers=2, decoder="istft", decoder_dim=12,
                          decoder_layers=2, decoder_phase=phase)
    return tiny_model()


# -- batched API ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 15, 16, 17, 1001])
def test_encode_decode_shapes_odd_lengths(model, n):
    wav = noise(2, n)[:, None]                                     # [B=2, 1, n]
    codes = model.encode(wav)
    T = math.ceil(n / model.hop)
    assert codes.shape == (2, model.levels, T) and codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < model.quantizer.codebook_size
    assert model.decode(codes).shape == (2, 1, T * model.hop)
    y = model.decode(codes, length=n)
    assert y.shape == (2, 1, n) and y.abs().max() <= 1


def test_encode_rejects_wrong_shapes(model):
    with pytest.raises(MediaError, match=r"\[B, 1, N\]"):
        model.encode(torch.zeros(1, 2, 100))
    with pytest.raises(ConfigError, match="n_levels"):
        model.encode(torch.zeros(1, 1, 100), n_levels=9)
    with pytest.raises(TokenSequenceError, match="0..15"):
        model.decode(torch.full((1, 2, 3), 16))


# -- through UniTokenizer ---------------------------------------------------------------------------


@pytest.mark.parametrize("rate,channels,n", [(8000, 1, 1), (8000, 1, 1001), (44100, 2, 4411), (48000, 1, 12345),
                                             (16000, 2, 3), (24000, 1, 2401)])
def test_uni_tokenizer_round_trip_any_rate_and_length(text, rate, channels, n):
    model = tiny_model()
    tok = UniTokenizer(text, {"audio": model})
    audio = Audio.from_array(noise(channels, n), rate)
    seq = tok.encode(["a sound:", audio, "end"])
    assert [s.modality for s in seq.spans] == ["text", "audio", "text"]
    parts = tok.decode(seq)
    assert parts[0] == "a sound:" and parts[2] == "end"
    out = parts[1]
    assert isinstance(out, Audio) and out.num_channels == 1
    assert out.sample_rate == 8000 and out.num_samples == math.ceil(n * 8000 / rate)   # the same duration
    model.resample_to_input = True                               # back to the input's rate and length
    back = tok.decode(seq)[1]
    assert back.sample_rate == rate and back.num_samples == n
    assert tok.encode(audio) == tok.encode([audio])


def test_header_carries_levels_and_exact_length(text):
    model = tiny_model()
    tok = UniTokenizer(text, {"audio": model})
    header, codes = model.encode_item(Audio.from_array(noise(2, 1001), 44100))
    assert header == {"levels": 4, "sample_rate": 44100, "samples": 1001}
    assert codes.shape == (4, math.ceil(math.ceil(1001 * 8000 / 44100) / model.hop))
    # the length takes 4 shape tokens (2 per other field): lengths past 2**20 - 1, hours, round-trip exactly
    assert model.header_widths() == [2, 2, 4]
    long = {"levels": 2, "sample_rate": 8000, "samples": 3 * 2 ** 20 + 5}
    model.check_header(long)
    assert model.model_length(long) == 3 * 2 ** 20 + 5
    assert len(model.layout(long)) == 2 * math.ceil((3 * 2 ** 20 + 5) / model.hop)
    short = Audio.from_array(noise(1, 200), 8000)
    assert len(tok.encode(short)) == 2 + 8 + 4 * math.ceil(200 / 16)        # begin/end, 2 + 2 + 4 digits
    for bad, why in [({**long, "levels": 5}, "levels"), ({**long, "sample_rate": 50}, "sample_rate"),
                     ({**long, "samples": 0}, "0 samples")]:
        with pytest.raises(TokenSequenceError, match=why):
            model.check_header(bad)
    # the same ids as when the length was two 2-digit fields (samples_high, samples_low)
    assert tok.space.dim_ids([3 * 2 ** 20 + 5], 4) == tok.space.dim_ids([3, 5])


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
def test_every_bitrate_decodes(text, levels):
    model = tiny_model()
    tok = UniTokenizer(text, {"audio": model})
    model.n_levels = levels
    audio = Audio.from_array(noise(1, 777), 8000)
    seq = tok.encode(audio)
    header, codes = model.encode_item(audio)
    assert header["levels"] == levels and codes.shape[0] == levels
    body = seq.ids[1 + 8:-1]
    kinds = {tok.space.describe(int(i))[:2] for i in body}
    assert kinds == {("audio", k) for k in range(levels)}        # ids name their level
    out = tok.decode(seq)[0]
    assert out.num_samples == 777
    # fewer levels: each is a prefix of the full encoding (residual coding)
    full = model.encode(audio.samples[None], n_levels=4)
    assert torch.equal(torch.as_tensor(codes), full[0, :levels])
    # a sequence with more levels than the tokenizer has is refused
    model.n_levels = 4
    bad = seq.ids.copy()
    digits = tok.space.dim_ids([9])
    bad[1:3] = digits
    with pytest.raises(TokenSequenceError, match="levels"):
        tok.decode(bad, fingerprint=seq.fingerprint)


def test_bitrates_of_a_24khz_model():
    cfg = AudioTokenizerConfig(channels=2, lstm=0, quantizer=RVQConfig(levels=8, dim=8, codebook_size=1024))
    model = AudioTokenizer(cfg)
    assert model.frame_rate == 75
    assert {k: model.bitrates[k] for k in (2, 4, 8)} == {2: 1.5, 4: 3.0, 8: 6.0}
    assert model.set_bitrate(3.0) == 4 and model.n_levels == 4
    assert model.set_bitrate(7.0) == 8
    with pytest.raises(ConfigError, match="lowest bitrate"):
        model.set_bitrate(0.5)


def test_delay_layout(text):
    model = tiny_model(layout="delay")
    tok = UniTokenizer(text, {"audio": model})
    audio = Audio.from_array(noise(1, 160), 8000)
    seq = tok.encode(audio)
    header, _ = model.encode_item(audio)
    layout = model.layout(header)
    assert isinstance(layout, Delay) and len(layout) == 4 * (10 + 3)
    body = seq.ids[1 + 8:-1]
    assert int((body == tok.space.special_tokens["<|pad|>"]).sum()) == 4 * 3    # K(K-1) pads
    assert (layout.expected_levels == PAD).sum() == 12
    assert tok.decode(seq)[0].num_samples == 160
    plain = tiny_model()
    assert isinstance(plain.layout(header), CodecDepth)
    assert plain.fingerprint != model.fingerprint            # the layout is part of the token format


# -- long audio and streaming ---------------------------------------------------------------------


def test_chunked_encode_equals_one_shot(model):
    wav = noise(2, 8000 * 3, seed=1)[:, None]
    one_shot = model.encode(wav)
    model.chunk_seconds = 0.3                                    # 150 frames in 10 chunks
    try:
        chunked = model.encode(wav)
        # through encode_item: downmix + resampling in blocks + streaming encoder
        audio = Audio.from_array(noise(2, 44100 * 2, seed=2), 44100)
        _, codes_blocks = model.encode_item(audio)
    finally:
        model.chunk_seconds = 10.0
    assert torch.equal(chunked, one_shot)
    _, codes_whole = model.encode_item(audio)
    assert np.mean(codes_blocks != codes_whole) <= 0.001         # equal up to float-rounding flips


def test_resample_blocks_match_one_shot():
    import torchaudio.functional as AF

    x = noise(2, 20_001, seed=3)
    for orig, new in [(44100, 8000), (8000, 24000), (48000, 24000)]:
        ref = AF.resample(x.mean(0), orig, new)
        y = torch.cat(list(resample_blocks(x, orig, new, 1000)))
        assert y.shape == ref.shape and torch.allclose(y, ref, atol=1e-5)


def test_streaming_decode_equals_one_shot(model):
    wav = noise(2, 8000, seed=4)[:, None]
    codes = model.encode(wav)                                    # [2, 4, 500]
    full = model.decode(codes)
    dec = model.stream_decoder()
    held = dec.latency_samples
    assert dec.latency_frames == -(-held // model.hop)
    pieces = [dec.push(codes[:, :, t:t + 1]) for t in range(40)]            # frame by frame
    # a sample is final once the frames after it are in: the stream holds `held` samples back
    assert [sum(p.shape[-1] for p in pieces[:t + 1]) for t in range(40)] == [
        max(0, (t + 1) * model.hop - held) for t in range(40)]
    pieces += [dec.push(codes[:, :, t:t + 7]) for t in range(40, 500, 7)]   # then 7 frames at a time
    assert dec.frames == 500
    pieces.append(dec.flush())
    assert pieces[-1].shape == (2, 1, held)
    assert torch.allclose(torch.cat(pieces, -1), full, atol=1e-5)
    # one item, [K, n] codes: [n * hop] samples; fewer levels decode as a lower bitrate
    y = torch.cat([dec.push(codes[0, :2, t:t + 1].numpy()) for t in range(10)] + [dec.flush()])
    assert y.shape == (10 * model.hop,)
    assert torch.allclose(y, model.decode(codes[:1, :2, :10])[0, 0], atol=1e-5)


@pytest.mark.parametrize("phase", ["absolute", "increment"])
def test_istft_decoder_streams_from_any_chunking(phase):
    """Chunks shorter than the look-ahead (and a flush right after them) still give the one-shot
    samples, each exactly once; running phases carry over."""
    model = tiny_model(decoder="istft", decoder_dim=8, decoder_layers=1, n_fft=64, decoder_phase=phase)  # lookahead 3
    codes = model.encode(noise(1, 16 * 9, seed=8)[:, None])                          # 9 frames
    full = model.decode(codes)
    for cuts in ([1, 1, 7], [2, 7], [9], [1] * 9):
        dec, parts, at = model.stream_decoder(), [], 0
        for n in cuts:
            parts.append(dec.push(codes[:, :, at:at + n]))
            at += n
        parts.append(dec.flush())
        assert torch.allclose(torch.cat(parts, -1), full, atol=1e-5), cuts
    short = model.stream_decoder()
    assert short.push(codes[:, :, :1]).shape[-1] == 0 and short.flush().shape[-1] == 16


def test_long_decode_is_chunked_and_equal(model):
    codes = model.encode(noise(1, 8000 * 2, seed=5)[:, None])
    whole = model.decode(codes)
    model.chunk_seconds = 0.1
    try:
        assert torch.allclose(model.decode(codes), whole, atol=1e-5)
    finally:
        model.chunk_seconds = 10.0


@pytest.mark.parametrize("encoder, decoder", [("seanet", "seanet"), ("seanet", "istft"), ("stft", "istft")])
def test_non_causal_model(encoder, decoder):
    model = tiny_model(causal=False, lstm=0, encoder=encoder, encoder_dim=8, encoder_layers=2, decoder=decoder,
                       decoder_dim=8, decoder_layers=2)
    wav = noise(1, 8000, seed=6)[:, None]
    one_shot = model.encode(wav)
    model.chunk_seconds = 0.25                  # windows overlap by the receptive field: same codes
    assert torch.equal(model.encode(wav), one_shot)
    model.chunk_seconds = 10.0
    whole = model.decode(one_shot)
    model.chunk_seconds = 0.25
    assert torch.allclose(model.decode(one_shot), whole, atol=1e-5)
    with pytest.raises(ConfigError, match="causal"):
        model.stream_decoder()


# -- quantizer --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rvq", "rfsq"])
def test_residual_quantizer(kind):
    torch.manual_seed(0)
    cfg = (RVQConfig(levels=4, dim=8, codebook_size=32, dropout=1.0) if kind == "rvq"
           else RFSQConfig(levels=4, dim=8, dropout=1.0, fsq_levels=(3, 3, 3)))
    q = ResidualQuantizer(cfg)
    z = torch.randn(16, 8, 12)
    q.train()
    quantized, codes, aux = q(z)
    assert codes.shape == (16, 4, 12) and quantized.shape == z.shape and aux.shape == ()
    kept = (codes >= 0).all(-1).sum(1)                          # levels each sample kept
    assert (codes[:, 0] >= 0).all() and kept.min() >= 1 and kept.max() <= 4 and len(set(kept.tolist())) > 1
    q.eval()
    quantized, codes, _ = q(z)
    assert torch.equal(quantized, q.decode(codes))               # eval forward == decode(indices)
    assert torch.equal(q.encode(z, 2), codes[:, :2])
    assert int(codes.max()) < q.codebook_size and q.codebook_sizes == [q.codebook_size] * 4
    err = [(q.decode(codes[:, :n]) - z).pow(2).mean() for n in (1, 2, 4)]
    if kind == "rfsq":                                          # finer with every level
        assert err[0] > err[1] > err[2]


# -- parts --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoder, decoder", [("seanet", "seanet"), ("seanet", "istft"), ("stft", "istft")])
def test_assembled_from_parts_handed_in(encoder, decoder):
    """The factory's parts, parts built by hand, and the config alone give one model: same weights
    under the same seed, same state_dict keys (the checkpoint format), same codes."""
    kw = dict(encoder=encoder, encoder_dim=8, encoder_layers=1, decoder=decoder, decoder_dim=8, decoder_layers=1)
    ref = tiny_model(**kw)
    cfg = ref.cfg
    torch.manual_seed(0)
    assembled = AudioTokenizer(cfg, **build_parts(cfg)._asdict()).eval()
    torch.manual_seed(0)
    plain = AudioTokenizer.from_config(cfg).eval()
    wav = noise(1, 500)[:, None]
    for other in (assembled, plain):
        assert other.state_dict().keys() == ref.state_dict().keys()
        assert all(torch.equal(v, other.state_dict()[k]) for k, v in ref.state_dict().items())
        assert torch.equal(other.encode(wav), ref.encode(wav))
    if (encoder, decoder) == ("seanet", "istft"):
        torch.manual_seed(0)
        enc = SEANetEncoder(8, channels=4, ratios=(4, 4), res_units=1, kernel=5, lstm=1)
        q = ResidualQuantizer(cfg.quantizer)
        dec = ISTFTDecoder(8, hop=16, n_fft=64, width=8, layers=1, kernel=5)
        by_hand = AudioTokenizer(cfg, encoder=enc, quantizer=q, decoder=dec).eval()
        assert all(torch.equal(v, by_hand.state_dict()[k]) for k, v in ref.state_dict().items())


def test_parts_that_do_not_match_the_config_are_refused():
    cfg = tiny_model().cfg
    with pytest.raises(ConfigError, match="encoder has .*hop"):
        AudioTokenizer(cfg, encoder=STFTEncoder(8, hop=32, n_fft=64, width=8, layers=1))
    with pytest.raises(ConfigError, match="decoder has .*dim"):
        AudioTokenizer(cfg, decoder=ISTFTDecoder(12, hop=16, n_fft=64, width=8, layers=1))
    with pytest.raises(ConfigError, match="quantizer has 2 levels"):
        AudioTokenizer(cfg, quantizer=ResidualQuantizer(RVQConfig(levels=2, dim=8, codebook_size=16)))


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="layout"):
        AudioTokenizerConfig(layout="raster")
    with pytest.raises(ConfigError, match="sample_rate"):
        AudioTokenizerConfig(sample_rate=10)
    with pytest.raises(ConfigError, match="kind"):
        ResidualQuantizerConfig(kind="fsq")              # the flat form older unitok took
    with pytest.raises(ConfigError, match="min_levels"):
        RVQConfig(levels=2, min_levels=3)
    with pytest.raises(ConfigError, match="must be residual"):
        AudioTokenizerConfig(quantizer={"kind": "fsq", "levels": [5, 5]})
    assert ResidualQuantizerConfig(kind="rfsq", levels=2, fsq_levels=(3, 3)) == RFSQConfig(levels=2, fsq_levels=(3, 3))
    with pytest.raises(ConfigError, match="decoder must be"):
        AudioTokenizerConfig(decoder="hifigan")
    with pytest.raises(ConfigError, match="n_fft"):
        AudioTokenizerConfig(decoder="istft", n_fft=1000)               # not a multiple of the hop (320)
    with pytest.raises(ConfigError, match="unknown"):
        from unitok.checkpoint import config_from_dict

        config_from_dict(AudioTokenizerConfig, {"quantizer": {"level": 3}})


def test_encode_item_rejects_non_audio(model):
    with pytest.raises(MediaError, match="takes an Audio"):
        model.encode_item("not audio")


# -- checkpoints ------------------------------------------------------------------------------------


def test_save_load(tmp_path, text, model):
    model.save_pretrained(tmp_path / "a")
    loaded = load_pretrained(tmp_path / "a")
    assert isinstance(loaded, AudioTokenizer) and loaded.fingerprint == model.fingerprint
    wav = noise(1, 999)[:, None]
    assert torch.equal(loaded.encode(wav), model.encode(wav))
    model.save_pretrained(tmp_path / "h", dtype=torch.float16)   # how the bundled default is stored
    half = AudioTokenizer.from_pretrained(tmp_path / "h")
    assert half.decode(half.encode(wav)).shape == (1, 1, 1008)
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["type"] == "audio.codec"
    # a whole suite: ids made before saving decode after loading
    tok = UniTokenizer(text, {"audio": model})
    seq = tok.encode(Audio.from_array(noise(1, 500), 8000))
    tok.save_pretrained(tmp_path / "suite")
    tok2 = unitok.load(tmp_path / "suite")
    assert tok2.decode(seq)[0].num_samples == 500


def test_cli_round_trip(tmp_path, text, model):
    from unitok.cli import main

    UniTokenizer(text, {"audio": model}).save_pretrained(tmp_path / "suite")
    src = tmp_path / "speech.flac"
    Audio.from_array(noise(2, 12_345), 44100).save(src)
    assert main(["encode", str(src), "-o", str(tmp_path / "tok"), "--suite", str(tmp_path / "suite")]) == 0
    assert main(["decode", str(tmp_path / "tok"), "-o", str(tmp_path / "rec"), "--suite", str(tmp_path / "suite")]) == 0
    rec = Audio.open(tmp_path / "rec" / "speech.wav")
    assert rec.sample_rate == 8000 and rec.num_samples == math.ceil(12_345 * 8000 / 44100)


def test_bundled_default_if_present():
    from unitok.audio import DEFAULT_DIR, load_default

    if not (DEFAULT_DIR / "config.json").exists():
        pytest.skip("no bundled audio tokenizer yet")
    assert (DEFAULT_DIR / "model.safetensors").stat().st_size < 8e6
    model = load_default()
    assert model.sample_rate == 24000 and model.bitrates[2] == 1.5 and model.bitrates[8] == 6.0
    tok = unitok.load()
    assert "audio" in tok.media
    out = tok.decode(tok.encode(Audio.from_array(noise(1, 4410), 44100)))[0]
    assert out.sample_rate == 24000 and out.num_samples == 2400


# -- losses and metrics -----------------------------------------------------------------------------


def test_losses_and_metrics():
    x = noise(2, 4000, seed=7)
    mels = MelSpectrograms(8000, windows=(64, 256), mels=(10, 40))
    assert torch.allclose(mel_distance(mels, x, x), torch.zeros(2))
    assert (mel_distance(mels, x * 0.5, x) > 0.1).all()
    assert float(stft_loss(x, x)) == pytest.approx(0.0, abs=1e-5)
    assert (si_sdr(x, x) > 60).all()
    assert (si_sdr(0.3 * x, x) > 60).all()                      # scale-invariant
    assert (si_sdr(x + noise(2, 4000, seed=8), x).abs() < 3).all()


# -- recipe -----------------------------------------------------------------------------------------


def _recipe():
    spec = importlib.util.spec_from_file_location("train_audio", ROOT / "recipes" / "train_audio.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "recipes" / "configs").glob("audio_*.yaml")))
def test_configs_parse_and_build(name):
    recipe = _recipe()
    cfg = recipe.load_config(ROOT / "recipes" / "configs" / f"{name}.yaml")
    model, disc = recipe.build(cfg, torch.device("cpu"))
    assert (disc is not None) == (cfg["loss"]["gan"] > 0 or cfg["loss"]["feature"] > 0)
    if name in ("audio_continued", "audio_gan", "audio_gan_gpu", "audio_gan_mpd_gpu"):   # the bundled weights, trained on
        bundled = AudioTokenizer.from_pretrained(ROOT / "unitok" / "assets" / "audio").state_dict()
        assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in bundled.items()}
    if name == "audio_12hz":                                      # ERNIE 5.0's and Mimi's rate
        assert model.sample_rate == 24000 and model.frame_rate == 12.5
        assert {k: model.bitrates[k] for k in (6, 12, 24)} == {6: 0.75, 12: 1.5, 24: 3.0}
    elif name != "audio_tiny":
        assert model.sample_rate == 24000 and model.frame_rate == 75
        assert {k: model.bitrates[k] for k in (2, 4, 8)} == {2: 1.5, 4: 3.0, 8: 6.0}
    # the bundled kind and its history; audio_large and audio_12hz (24 codebooks of 1024 x 128 with
    # their EMA state: about 20 MB in fp16) are not bundled
    if name not in ("audio_large", "audio_12hz"):
        n = sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
        assert n * 2 < 8e6                                        # fp16 checkpoint under 8 MB


def test_head_spectrum_losses_are_zero_for_the_signal_itself():
    """The phase and consistency losses compare the iSTFT head's own spectrum with the target's on
    the head's frames: the target's spectrum, given to the head, gives the target back."""
    recipe = _recipe()
    head = ISTFTHead(4, 64, 16)
    loss = recipe.HeadSpectrumLoss(head)
    x = torch.randn(2, 16 * 12)
    S = loss.spectrum(x, 12 + head.lookahead)
    assert torch.allclose(head.synthesise(S)[:, 0], x, atol=1e-5)
    proj = torch.cat([S.abs().clamp_min(1e-9).log(), S.angle() + 2 * math.pi], 1)      # a whole turn is no error
    phase, consistency = loss(proj, x, x)
    assert float(phase) < 1e-4 and float(consistency) < 1e-3
    noisy = torch.cat([S.abs().clamp_min(1e-9).log(), S.angle() + torch.randn_like(S.real)], 1)
    assert float(loss(noisy, x, x)[0]) > 1.0
    # a head that predicts increments: the phases compared are its running sums
    inc = ISTFTHead(4, 64, 16, phase="increment")
    steps = torch.diff(S.angle(), dim=-1, prepend=torch.zeros_like(S.angle()[..., :1])) - inc.advance[:, None]
    proj = torch.cat([S.abs().clamp_min(1e-9).log(), steps], 1)
    assert float(recipe.HeadSpectrumLoss(inc)(proj, x, x)[0]) < 1e-3
    assert float(loss(proj, x, x)[0]) > 1.0                       # read as absolute phases they are wrong


def test_recipe_phase_losses_train_and_need_the_istft_decoder(tmp_path):
    recipe = _recipe()
    over = {"log": {"out_dir": str(tmp_path / "run"), "val_every": 1000}, "train": {"steps": 6},
            "loss": {"phase": 0.5, "consistency": 0.5, "gan_start": 1000}}
    cfg = recipe.load_config(ROOT / "recipes" / "configs" / "audio_tiny.yaml", over)
    assert recipe.train(cfg)["steps"] == 6
    logged = [line for line in (tmp_path / "run" / "log.txt").read_text().splitlines() if line.startswith("step 6 ")]
    assert logged and " phase 0.0000 " not in logged[0] and " cons 0.0000 " not in logged[0]
    over["model"] = {"encoder": "seanet", "decoder": "seanet"}
    with pytest.raises(ConfigError, match="inverse-STFT decoder"):
        recipe.train(recipe.load_config(ROOT / "recipes" / "configs" / "audio_tiny.yaml", over))


def test_recipe_disc_warmup_trains_the_discriminator_alone_first(tmp_path):
    recipe = _recipe()
    over = {"log": {"out_dir": str(tmp_path / "run"), "val_every": 1000, "every": 2}, "train": {"steps": 8},
            "loss": {"gan_start": 0, "disc_warmup": 4}}
    recipe.train(recipe.load_config(ROOT / "recipes" / "configs" / "audio_tiny.yaml", over))
    lines = {int(line.split()[1]): line for line in (tmp_path / "run" / "log.txt").read_text().splitlines()
             if line.startswith("step ")}
    for step in (2, 4):          # the discriminator learns; the generator has no adversarial terms yet
        assert " gan 0.000 feat 0.000 " in lines[step] and " d 0.000 " not in lines[step], lines[step]
    for step in (6, 8):
        assert " gan 0.000 " not in lines[step] and " feat 0.000 " not in lines[step], lines[step]


def test_period_discriminator_folds_the_wave_by_its_period():
    from unitok.nn.audio_losses import Discriminators, PeriodDiscriminator

    d = PeriodDiscriminator(5, channels=4, layers=2)
    x = noise(2, 1003, seed=3)[:, None]                     # not a whole number of periods: padded
    logits, feats = d(x)
    assert logits.shape[0] == 2 and logits.shape[-1] == 5 and len(feats) == 3
    # it sees the signal only as columns of 5 samples: a wave periodic in 5 samples is the same
    # value in every row of a column, so its first features are constant along time
    wave = torch.sin(2 * math.pi * torch.arange(1000) / 5).repeat(2, 1)[:, None]
    first = d(wave)[1][0]
    assert torch.allclose(first[..., 2:-2, :], first[..., 2:3, :].expand_as(first[..., 2:-2, :]), atol=1e-3)
    both = Discriminators((64, 32), channels=4, layers=1, periods=(2, 3), period_channels=4)
    logits, feats = both(x)
    assert len(logits) == len(feats) == 4                     # two STFT windows, two periods
    sum(lo.mean() for lo in logits).backward()
    assert all(p.grad is not None for p in both.periods.parameters())


def test_recipe_trains_with_period_discriminators(tmp_path):
    recipe = _recipe()
    over = {"log": {"out_dir": str(tmp_path / "run"), "val_every": 1000, "every": 2}, "train": {"steps": 4},
            "loss": {"gan_start": 0, "disc_periods": [2, 3], "disc_period_channels": 4}}
    cfg = recipe.load_config(ROOT / "recipes" / "configs" / "audio_tiny.yaml", over)
    _, disc = recipe.build(cfg, torch.device("cpu"))
    assert len(disc.periods) == 2
    assert recipe.train(cfg)["steps"] == 4
    line = [ln for ln in (tmp_path / "run" / "log.txt").read_text().splitlines() if ln.startswith("step 4 ")][0]
    assert " gan 0.000 " not in line and " d 0.000 " not in line
    saved = load_file(str(tmp_path / "run" / "checkpoint" / "discriminator.safetensors"))
    assert any(k.startswith("periods.1.") for k in saved)


def test_recipe_rejects_unknown_options(tmp_path):
    recipe = _recipe()
    bad = tmp_path / "bad.yaml"
    bad.write_text("loss:\n  mell: 4\n")
    with pytest.raises(ConfigError, match="mell"):
        recipe.load_config(bad)


def test_recipe_main_reports_missing_data(tmp_path, capsys):
    recipe = _recipe()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  train: {tmp_path / 'nope.npy'}\nlog:\n  out_dir: {tmp_path / 'o'}\n")
    assert recipe.main(["--config", str(cfg)]) == 2
    assert "fetch_audio.py" in capsys.readouterr().err


@pytest.mark.timeout(180)
def test_tiny_recipe_loss_falls_and_resumes(tmp_path):
    recipe = _recipe()
    out = tmp_path / "run"
    cfg = recipe.load_config(ROOT / "recipes" / "configs" / "audio_tiny.yaml", {"log": {"out_dir": str(out)}})
    summary = recipe.train(cfg)
    assert summary["steps"] == cfg["train"]["steps"]
    assert summary["last_loss"] < 0.9 * summary["first_loss"], summary
    log = (out / "log.txt").read_text()
    assert log.count("val step") >= 2 and "sisdr" in log
    assert (out / "checkpoint" / "optimizer.safetensors").exists()
    assert (out / "checkpoint" / "discriminator.safetensors").exists()
    assert AudioTokenizer.from_pretrained(out / "final").levels == 4
    cfg2 = recipe.load_config(ROOT / "recipes" / "configs" / "audio_tiny.yaml",
                              {"log": {"out_dir": str(out)}, "train": {"steps": cfg["train"]["steps"] + 5}})
    assert recipe.train(cfg2, resume=True)["steps"] == cfg["train"]["steps"] + 5
    assert "resumed from" in (out / "log.txt").read_text()
    assert recipe.main(["--config", str(ROOT / "recipes" / "configs" / "audio_tiny.yaml"), "--out-dir", str(out),
                        "--export", str(tmp_path / "exported")]) == 0
    assert AudioTokenizer.from_pretrained(tmp_path / "exported").fingerprint != ""


def test_warm_start_copies_matching_weights(tmp_path):
    """--init: a model with a new decoder starts from an old model's encoder and codebooks."""
    recipe = _recipe()
    old = tiny_model()
    new = tiny_model(decoder="istft", decoder_dim=8, decoder_layers=1)
    assert recipe.warm_start(new, old.state_dict()) == ["decoder"]
    for k, v in old.state_dict().items():
        if not k.startswith("decoder."):
            assert torch.equal(new.state_dict()[k], v), k
    with pytest.raises(ConfigError, match="shares no weights"):
        recipe.warm_start(new, {"unrelated.weight": torch.zeros(3)})
    # one small tensor of the same name and shape is another architecture, not a warm start
    one = next(k for k, v in old.state_dict().items() if v.ndim == 1 and k in dict(new.named_parameters()))
    with pytest.raises(ConfigError, match="only 0.*another architecture"):
        recipe.warm_start(tiny_model(decoder="istft", decoder_dim=8, decoder_layers=1), {one: old.state_dict()[one]})


@pytest.mark.timeout(240)
def test_tiny_recipe_trains_under_torchrun_ddp(tmp_path):
    """The large config's path (torchrun, DistributedDataParallel) on two CPU processes (gloo):
    both ranks step together, rank 0 writes the log and the checkpoints, and a resume works."""
    import os
    import subprocess
    import sys

    import yaml

    cfg = yaml.safe_load((ROOT / "recipes" / "configs" / "audio_tiny.yaml").read_text())
    cfg["loss"]["gan_start"], cfg["log"]["val_every"] = 20, 30             # the discriminator runs in DDP too
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "recipes" / "train_audio.py"), "--config", str(tmp_path / "tiny.yaml"), "--out-dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd + ["--steps", "30"], capture_output=True, text=True, env=env, timeout=200)
    assert run.returncode == 0, run.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert "world 2" in log and "done: 30 steps" in log
    assert AudioTokenizer.from_pretrained(out / "final").levels == 4
    run = subprocess.run(cmd + ["--steps", "35", "--resume"], capture_output=True, text=True, env=env, timeout=200)
    assert run.returncode == 0, run.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert "resumed from" in log and "done: 35 steps" in log
