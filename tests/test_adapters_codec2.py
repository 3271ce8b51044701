"""X-codec2 and NeuCodec, the codecs of ``transformers`` whose encoders read fbank features, checked
as in tests/test_adapters_more.py: a tiny reference with seeded random weights, saved with
``save_pretrained``, loaded with ``unitok.from_hf``; codes equal the reference's encode (its
feature extractor, then ``encode``) after the layout round trip through global ids, decoded audio
equals the reference's decode within 1e-5, the input's length (NeuCodec: its duration at the
output rate) comes back exactly, ``len(space)`` grows by the codebook size, a batch equals single
items. Nothing touches the hub."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import unitok
from unitok.media import Audio
from test_adapters import ids_round_trip, text_tokenizer
from test_adapters_more import check_batches_and_reload

os.environ["HF_HUB_OFFLINE"] = "1"
RATE, OUT_RATE = 8000, 12000


def _tr():
    return pytest.importorskip("transformers")


def _config(tr, cls, **rates):
    # the semantic branch reads pairs of fbank frames of 160 samples, so the acoustic hop is kept at
    # 320 (4 * 8 * 10); the decoder's GroupNorm has 32 groups, so hidden_size is 64
    semantic = tr.Wav2Vec2BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                     output_hidden_size=16, conv_depthwise_kernel_size=3)
    return cls(hidden_size=64, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
               head_dim=32, encoder_hidden_size=2, downsampling_ratios=[4, 8, 10],
               semantic_model_config=semantic.to_dict(), quantization_dim=80, quantization_levels=[4, 4, 2], **rates)


def xcodec2():
    tr = _tr()
    return tr.Xcodec2Model(_config(tr, tr.Xcodec2Config, sampling_rate=RATE)), tr.Xcodec2FeatureExtractor


def neucodec():
    tr = _tr()
    model = tr.NeuCodecModel(_config(tr, tr.NeuCodecConfig, input_sampling_rate=RATE, output_sampling_rate=OUT_RATE))
    return model, tr.NeuCodecFeatureExtractor


def _spread_codes(model):
    """The FSQ codebook is fixed; the untrained latents are tiny, so they all round to one code.
    A seeded projection of a larger scale gives codes that differ from frame to frame."""
    with torch.no_grad():
        model.quantizer.project_in.weight.normal_(std=100.0)


def ref_encode(ref, features, wav, pad_to=1):
    """The reference's own path: its feature extractor, then ``encode``."""
    wav = torch.nn.functional.pad(wav, (0, -wav.shape[-1] % pad_to))
    fe = features(sampling_rate=RATE, hop_length=320)
    with torch.no_grad():
        return ref.encode(**fe(list(wav[:, 0]), sampling_rate=RATE, return_tensors="pt")).audio_codes


@pytest.mark.parametrize("build, out_rate, pad_to", [(xcodec2, RATE, 1), (neucodec, OUT_RATE, 320)])
def test_fbank_codecs_match_reference(build, out_rate, pad_to, tmp_path):
    torch.manual_seed(0)
    ref, features = build()
    ref.eval()
    _spread_codes(ref)
    ref.save_pretrained(tmp_path / "ref")
    tok = unitok.from_hf(tmp_path / "ref")
    assert tok.levels == 1 and tok.codebook_sizes == [32] and tok.output_rate == out_rate
    text = text_tokenizer()
    suite = unitok.UniTokenizer(text, {"audio": tok})
    assert len(suite.space) - len(unitok.UniTokenizer(text).space) == sum(tok.codebook_sizes)

    n = 2003
    g = torch.Generator().manual_seed(1)
    wav = (torch.rand(1, 1, n, generator=g) - 0.5) * 0.5
    audio = Audio(wav[0], RATE)
    header, codes = tok.encode_item(audio)
    want = ref_encode(ref, features, wav, pad_to).long()
    assert want.shape == (1, 1, tok.frames(header)) and len(np.unique(want.numpy())) > 1
    assert np.array_equal(ids_round_trip(suite, "audio", header, codes), want[0].numpy())
    for m in (1, 7, 319, 320, 641, n):        # frames_of follows the reference for any length
        assert tok.frames_of(m) == tok.encode(wav[..., :m]).shape[-1]

    decoded = suite.decode(suite.encode(["a sound:", audio]))[1]
    n_out = -(-n * out_rate // RATE)                 # the input's duration at the output rate
    assert decoded.sample_rate == out_rate and decoded.num_samples == n_out
    with torch.no_grad():
        expect = ref.decode(want).audio_values[0, :, :n_out].clamp(-1, 1)
    assert torch.allclose(decoded.samples, expect, atol=1e-5)
    if out_rate != RATE:                             # back at the input's rate and length on request
        tok.resample_to_input = True
        back = tok.decode_item(header, codes)
        tok.resample_to_input = False
        assert back.sample_rate == RATE and back.num_samples == n

    check_batches_and_reload(tok, wav, codes, g, tmp_path)


def test_long_input_in_windows(tmp_path):
    """Inputs over ``chunk_seconds`` go through the reference in windows of whole frames (X-codec2's
    extractor adds a frame to each window, which the windowed encode drops): every frame is
    coded once and the decoded length is exact."""
    torch.manual_seed(0)
    ref, _ = xcodec2()
    _spread_codes(ref.eval())
    ref.save_pretrained(tmp_path / "ref")
    tok = unitok.from_hf(tmp_path / "ref")
    tok.chunk_seconds, tok.context_seconds = 0.2, 0.08          # 5 frames a window, 2 of context
    wav = (torch.rand(1, 1, 6001, generator=torch.Generator().manual_seed(2)) - 0.5) * 0.5
    seen, encode = [], tok._encode
    tok._encode = lambda w, n: seen.append(w.shape[-1]) or encode(w, n)
    codes = tok.encode(wav)
    assert len(seen) == 4 and max(seen) == 9 * 320              # 19 frames: windows of 5 (+ context)
    assert codes.shape == (1, 1, tok.frames_of(6001)) == (1, 1, 19)
    assert tok.decode(codes, 6001).shape == (1, 1, 6001)
