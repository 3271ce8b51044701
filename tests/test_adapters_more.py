"""More public tokenizers of ``transformers`` (WavTokenizer, Higgs Audio v2's tokenizer), checked as
in tests/test_adapters.py: a tiny reference with seeded random weights, saved with
``save_pretrained``, loaded with ``unitok.from_hf``; codes equal the reference's encode after the
layout round trip through global ids, decoded audio equals the reference's decode within 1e-5,
the input length comes back exactly, ``len(space)`` grows by the codebook sizes, a batch equals
single items. Nothing touches the hub."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import unitok
from unitok.checkpoint import load_pretrained
from unitok.media import Audio
from test_adapters import ids_round_trip, text_tokenizer

os.environ["HF_HUB_OFFLINE"] = "1"
RATE = 8000


def _tr():
    return pytest.importorskip("transformers")


def _random_codebooks(model):
    """These references initialise their codebooks to zeros (k-means fills them in training):
    random vectors of about the latents' scale give codes that differ from frame to frame."""
    for module in model.modules():
        embed = getattr(module, "embed", None)
        if isinstance(embed, torch.Tensor) and embed.ndim == 2:
            with torch.no_grad():
                embed.normal_(std=0.1)


def wavtokenizer():
    tr = _tr()
    return tr.WavTokenizerModel(tr.WavTokenizerConfig(
        sampling_rate=RATE, num_filters=4, upsampling_ratios=[4, 2], num_lstm_layers=1, hidden_size=8,
        codebook_size=16, codebook_dim=8, decoder_hidden_size=16, decoder_intermediate_size=32, decoder_num_layers=1,
        decoder_attention_num_groups=4))


def higgs():
    tr = _tr()
    # the reference pads the semantic branch by 160 samples a side and expects 320 samples per
    # semantic frame, so the tiny model keeps a hop of 320 (HuBERT strides 5 * 4 * 4 * 4)
    acoustic = tr.DacConfig(encoder_hidden_size=2, downsampling_ratios=[4, 8, 10], decoder_hidden_size=16,
                            upsampling_ratios=[10, 8, 4], n_codebooks=3, codebook_size=16, codebook_dim=4,
                            hidden_size=16, hop_length=320, sampling_rate=RATE)
    semantic = tr.HubertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                               conv_dim=(8, 8, 8, 8), conv_stride=(5, 4, 4, 4), conv_kernel=(10, 4, 4, 4),
                               num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    # 25 frames/s of 5-bit codes: 0.125 kbps a level, so 0.375 kbps is exactly 3 levels
    return tr.HiggsAudioV2TokenizerModel(tr.HiggsAudioV2TokenizerConfig(
        acoustic_model_config=acoustic.to_dict(), semantic_model_config=semantic.to_dict(), sample_rate=RATE,
        semantic_sample_rate=RATE, downsample_factor=320, codebook_size=32, target_bandwidths=[0.25, 0.375]))


def ref_encode(ref, wav):
    with torch.no_grad():
        if type(ref).__name__ == "WavTokenizerModel":
            return ref.encode(wav).audio_codes
        wav = torch.nn.functional.pad(wav, (0, -wav.shape[-1] % 320))     # whole frames, as the adapter
        return ref.encode(wav, bandwidth=0.375, return_dict=True).audio_codes


def ref_decode(ref, codes):
    with torch.no_grad():
        if type(ref).__name__ == "WavTokenizerModel":
            return ref.decode(codes).audio_values
        return ref.decode(codes, return_dict=True).audio_values


@pytest.mark.parametrize("build, n, levels", [(wavtokenizer, 1003, 1), (higgs, 2003, 3)])
def test_more_audio_adapters_match_reference(build, n, levels, tmp_path):
    torch.manual_seed(0)
    ref = build().eval()
    _random_codebooks(ref)
    ref.save_pretrained(tmp_path / "ref")
    tok = unitok.from_hf(tmp_path / "ref")
    assert tok.levels == levels
    text = text_tokenizer()
    suite = unitok.UniTokenizer(text, {"audio": tok})
    assert len(suite.space) - len(unitok.UniTokenizer(text).space) == sum(tok.codebook_sizes)

    g = torch.Generator().manual_seed(1)
    wav = (torch.rand(1, 1, n, generator=g) - 0.5) * 0.5
    audio = Audio(wav[0], RATE)
    header, codes = tok.encode_item(audio)
    want = ref_encode(ref, wav)
    assert want.shape[1] == levels and len(np.unique(want.numpy())) > 1
    assert np.array_equal(ids_round_trip(suite, "audio", header, codes), want[0].numpy())
    for m in (1, 7, 320, 641, n):        # frames_of follows the reference for any length
        assert tok.frames_of(m) == tok.encode(wav[..., :m]).shape[-1]

    decoded = suite.decode(suite.encode(["a sound:", audio]))[1]
    assert decoded.sample_rate == RATE and decoded.num_samples == n
    expect = ref_decode(ref, want)[0, :, :n].clamp(-1, 1)
    assert torch.allclose(decoded.samples, expect, atol=1e-5)

    check_batches_and_reload(tok, wav, codes, g, tmp_path)


def check_batches_and_reload(tok, wav, codes, g, tmp_path):
    """A batch equals single items, items of other lengths never share a padded batch, and the
    saved tokenizer gives the same fingerprint and codes (``wav``: [1, 1, n] at RATE; ``codes``:
    what ``encode_item`` gave for it)."""
    audio, n = Audio(wav[0], RATE), wav.shape[-1]
    wav2 = (torch.rand(1, 1, n, generator=g) - 0.5) * 0.5
    batch = tok.encode(torch.cat([wav, wav2]))
    assert torch.equal(batch[:1], tok.encode(wav)) and torch.equal(batch[1:], tok.encode(wav2))
    short = Audio(wav2[0, :, :517], RATE)
    for (h, c), item in zip(tok.encode_items([audio, short, audio]), [audio, short, audio]):
        h1, c1 = tok.encode_item(item)
        assert h == h1 and np.array_equal(c, c1)

    tok.save_pretrained(tmp_path / "unitok")
    again = load_pretrained(tmp_path / "unitok")
    assert type(again) is type(tok) and again.fingerprint == tok.fingerprint
    assert np.array_equal(again.encode_item(audio)[1], codes)


# -- the vision tokenizer of a whole Emu3 or Janus checkpoint ---------------------------------------


def emu3_whole(tr, vq):
    text = tr.Emu3TextConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0,
                             bos_token_id=1, eos_token_id=2)
    config = tr.Emu3Config(vq_config=vq.config.to_dict(), text_config=text.to_dict(), vocabulary_map={"<image>": 1})
    return tr.Emu3ForConditionalGeneration(config)


def janus_whole(tr, vq):
    text = tr.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=2, pad_token_id=0)
    vision = tr.JanusVisionConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=16,
                                  patch_size=4, intermediate_size=32, projection_dim=16)
    config = tr.JanusConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), vq_config=vq.config.to_dict())
    return tr.JanusForConditionalGeneration(config)


@pytest.mark.parametrize("kind", ["emu3", "janus"])
def test_vision_tokenizer_of_a_whole_model(kind, tmp_path, monkeypatch):
    """A whole checkpoint in several shards gives the tokenizer its VQ alone gives; only the VQ's
    tensors are read from the shards."""
    import safetensors

    from test_adapters import emu3, janus
    tr = _tr()
    torch.manual_seed(0)
    vq = (emu3 if kind == "emu3" else janus)()
    model = (emu3_whole if kind == "emu3" else janus_whole)(tr, vq).eval()
    model.save_pretrained(tmp_path / "whole", max_shard_size="200KB")
    assert len(list((tmp_path / "whole").glob("*.safetensors"))) > 2
    model.model.vqmodel.save_pretrained(tmp_path / "vq")

    read = []
    real_open = safetensors.safe_open

    class Recording:
        def __init__(self, path, framework):
            self.f = real_open(path, framework=framework)

        def __enter__(self):
            self.inner = self.f.__enter__()
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def keys(self):
            return self.inner.keys()

        def get_tensor(self, key):
            read.append(key)
            return self.inner.get_tensor(key)

    monkeypatch.setattr(safetensors, "safe_open", Recording)
    whole = unitok.from_hf(tmp_path / "whole")
    monkeypatch.undo()
    alone = unitok.from_hf(tmp_path / "vq")
    assert read and all(k.startswith(("model.vqmodel.", "vqmodel.")) for k in read)
    assert len(read) == len(alone.model.state_dict())
    assert type(whole) is type(alone) and whole.fingerprint == alone.fingerprint
    assert whole.cfg.reference == alone.cfg.reference

    pics = torch.rand(2, 3, 16, 12, generator=torch.Generator().manual_seed(5))
    codes = whole.encode(pics)
    assert torch.equal(codes, alone.encode(pics))
    assert torch.equal(whole.decode(codes), alone.decode(codes))
    if kind == "emu3":
        video = unitok.from_hf(tmp_path / "whole", modality="video")
        assert video.modality == "video" and video.fingerprint == unitok.from_hf(tmp_path / "vq", modality="video").fingerprint


def test_whole_model_without_vq_tensors_is_refused(tmp_path):
    tr = _tr()
    from test_adapters import emu3
    from unitok.errors import ConfigError
    torch.manual_seed(0)
    model = emu3_whole(tr, emu3())
    model.save_pretrained(tmp_path / "whole")
    from safetensors.torch import load_file, save_file
    path = tmp_path / "whole" / "model.safetensors"
    state = {k: v for k, v in load_file(str(path)).items() if "vqmodel" not in k}
    save_file(state, str(path), metadata={"format": "pt"})
    with pytest.raises(ConfigError, match="no vision tokenizer"):
        unitok.from_hf(tmp_path / "whole")
