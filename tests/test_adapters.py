"""Public tokenizers adapted through their reference implementations (``transformers``, ``snac``),
each built here from a tiny config with seeded random weights, saved in its own format to a
temporary folder and loaded with ``unitok.from_hf``: codes equal the reference's encode after the
layout round trip through global ids, decoded media equal the reference's decode, sizes come back
exactly, batches equal single items. Nothing touches the hub."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import unitok
from unitok.checkpoint import load_pretrained
from unitok.errors import ConfigError
from unitok.media import Audio, Image, Video

os.environ["HF_HUB_OFFLINE"] = "1"
RATE = 8000


def _tr():
    return pytest.importorskip("transformers")


# -- tiny references -----------------------------------------------------------------------------


def mimi():
    tr = _tr()
    return tr.MimiModel(tr.MimiConfig(
        sampling_rate=RATE, hidden_size=16, num_filters=4, upsampling_ratios=[4, 2], codebook_size=16, codebook_dim=8,
        num_quantizers=4, vector_quantization_hidden_dimension=8, upsample_groups=16, num_hidden_layers=1,
        intermediate_size=32, num_attention_heads=2, num_key_value_heads=2, head_dim=8, frame_rate=500, sliding_window=16))


def encodec():
    tr = _tr()
    return tr.EncodecModel(tr.EncodecConfig(
        sampling_rate=RATE, hidden_size=8, num_filters=4, upsampling_ratios=[4, 2], codebook_size=16, codebook_dim=8,
        num_lstm_layers=1, target_bandwidths=[4.0, 12.0]))


def _dac_config(tr):
    return tr.DacConfig(encoder_hidden_size=4, downsampling_ratios=[2, 4], decoder_hidden_size=16,
                        upsampling_ratios=[4, 2], n_codebooks=3, codebook_size=16, codebook_dim=4, hidden_size=16,
                        hop_length=8, sampling_rate=RATE)


def dac():
    tr = _tr()
    return tr.DacModel(_dac_config(tr))


def xcodec():
    tr = _tr()
    semantic = tr.HubertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                               conv_dim=(8, 8), conv_stride=(4, 2), conv_kernel=(8, 2), num_conv_pos_embeddings=4,
                               num_conv_pos_embedding_groups=2)
    return tr.XcodecModel(tr.XcodecConfig(acoustic_model_config=_dac_config(tr).to_dict(),
                                          semantic_model_config=semantic.to_dict(), sample_rate=RATE,
                                          codebook_size=16, codebook_dim=32, target_bandwidths=[4.0, 12.0]))


SNAC_CONFIG = dict(sampling_rate=RATE, encoder_dim=4, encoder_rates=[2, 4], decoder_dim=16, decoder_rates=[4, 2],
                   attn_window_size=None, codebook_size=16, codebook_dim=4, vq_strides=[4, 2, 1], noise=True,
                   depthwise=True)


def snac():
    return pytest.importorskip("snac").SNAC(**SNAC_CONFIG)


def save_reference(model, folder):
    if model.__class__.__name__ == "SNAC":
        from safetensors.torch import save_file
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(SNAC_CONFIG))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    else:
        model.save_pretrained(folder)


def reference(build, tmp_path):
    torch.manual_seed(0)
    ref = build().eval()
    save_reference(ref, tmp_path / "ref")
    return ref, unitok.from_hf(tmp_path / "ref")


# -- what each reference's own API gives ------------------------------------------------------------


def ref_encode(ref, wav):
    name = type(ref).__name__
    with torch.no_grad():
        if name == "MimiModel":
            return ref.encode(wav).audio_codes
        if name == "EncodecModel":
            return ref.encode(wav, bandwidth=12.0).audio_codes[0]
        if name == "DacModel":    # the original package pads to whole frames; so does the adapter
            return ref.encode(torch.nn.functional.pad(wav, (0, -wav.shape[-1] % 8))).audio_codes
        if name == "XcodecModel":   # padded to whole frames too
            return ref.encode(torch.nn.functional.pad(wav, (0, -wav.shape[-1] % 8)), bandwidth=12.0).audio_codes
        return ref.encode(wav)


def ref_decode(ref, codes):
    name = type(ref).__name__
    with torch.no_grad():
        if name == "MimiModel":
            return ref.decode(codes).audio_values
        if name == "EncodecModel":
            return ref.decode(codes[None], [None]).audio_values
        if name == "DacModel":
            return ref.decode(audio_codes=codes).audio_values[:, None]
        if name == "XcodecModel":
            return ref.decode(codes).audio_values
        torch.manual_seed(0)
        return ref.decode(codes)


def text_tokenizer():
    return unitok.text.load_default()


def ids_round_trip(suite, modality, header, codes):
    """codes -> layout -> global ids -> codes, as UniTokenizer.encode and decode do."""
    codec = suite.media[modality]
    layout = codec.layout(header)
    flat = layout.flatten(codes)
    ids = suite.space.media_ids(modality, flat.levels, flat.codes)
    levels, back = suite.space.media_codes(modality, ids)
    out, repairs = layout.unflatten(levels, back)
    assert repairs == []
    return out


def as_list(codes):
    return [np.asarray(c) for c in codes] if isinstance(codes, list) else [np.asarray(codes)]


# -- audio ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [mimi, encodec, dac, xcodec, snac])
def test_audio_adapter_matches_reference(build, tmp_path):
    ref, tok = reference(build, tmp_path)
    text = text_tokenizer()
    suite = unitok.UniTokenizer(text, {"audio": tok})
    assert len(suite.space) - len(unitok.UniTokenizer(text).space) == sum(tok.codebook_sizes)

    g = torch.Generator().manual_seed(1)
    wav = (torch.rand(1, 1, 1003, generator=g) - 0.5) * 0.5
    audio = Audio(wav[0], RATE)
    header, codes = tok.encode_item(audio)
    want = ref_encode(ref, wav)
    got = ids_round_trip(suite, "audio", header, codes)
    if isinstance(want, list):            # SNAC: one code array per level
        assert all(np.array_equal(a, w[0].numpy()) for a, w in zip(got, want))
    else:
        assert np.array_equal(got, want[0].numpy())

    seq = suite.encode(["a sound:", audio])
    parts = suite.decode(seq)
    decoded = parts[1] if isinstance(parts, list) else list(parts)[1]
    assert decoded.sample_rate == RATE and decoded.num_samples == 1003
    expect = ref_decode(ref, want)[0, :, :1003].clamp(-1, 1)
    assert torch.allclose(decoded.samples, expect, atol=1e-5)

    # batch equals single, and items of other lengths never share a padded batch
    wav2 = (torch.rand(1, 1, 1003, generator=g) - 0.5) * 0.5
    batch = tok.encode(torch.cat([wav, wav2]))
    one = [tok.encode(wav), tok.encode(wav2)]
    for j in range(2):
        assert all(torch.equal(b[j:j + 1], o) for b, o in zip(as_list_t(batch), as_list_t(one[j])))
    short = Audio(wav2[0, :, :517], RATE)
    many = tok.encode_items([audio, short, audio])
    for (h, c), item in zip(many, [audio, short, audio]):
        h1, c1 = tok.encode_item(item)
        assert h == h1 and all(np.array_equal(a, b) for a, b in zip(as_list(c), as_list(c1)))

    # a saved unitok checkpoint loads by type and keeps the fingerprint and the codes
    tok.save_pretrained(tmp_path / "unitok")
    again = load_pretrained(tmp_path / "unitok")
    assert type(again) is type(tok) and again.fingerprint == tok.fingerprint
    assert all(np.array_equal(a, b) for a, b in zip(as_list(again.encode_item(audio)[1]), as_list(codes)))
    assert tok.origin["type"] == tok.checkpoint_type and len(tok.origin["weights_sha256"]) == 64


def as_list_t(codes):
    return codes if isinstance(codes, list) else [codes]


def test_audio_other_rate_length_and_lenient_truncation(tmp_path):
    ref, tok = reference(mimi, tmp_path)
    suite = unitok.UniTokenizer(text_tokenizer(), {"audio": tok})
    audio = Audio((torch.rand(1, 2205) - 0.5) * 0.5, 22050)      # resampled to 8 kHz and back
    seq = suite.encode(audio)
    out = suite.decode(seq)[0]
    assert out.sample_rate == RATE and out.num_samples == -(-2205 * RATE // 22050)
    tok.resample_to_input = True
    out = suite.decode(seq)[0]
    assert out.sample_rate == 22050 and out.num_samples == 2205
    tok.resample_to_input = False
    cut = suite.decode(seq.ids[:len(seq.ids) // 2], strict=False, fingerprint=seq.fingerprint)
    assert cut.repairs and cut[0].num_samples == -(-2205 * RATE // 22050)


def test_long_audio_in_windows(tmp_path):
    _, tok = reference(dac, tmp_path)
    wav = (torch.rand(1, 1, 8000) - 0.5) * 0.5
    whole = tok.encode(wav)
    tok.chunk_seconds, tok.context_seconds = 0.1, 0.05        # windows of 100 frames, 50 of context
    windowed = tok.encode(wav)
    assert windowed.shape == whole.shape
    assert (windowed == whole).float().mean() > 0.95
    assert tok.decode(windowed, 8000).shape == (1, 1, 8000)


def test_level_delay_layout_for_dia_and_moshi(tmp_path):
    torch.manual_seed(0)
    dac().save_pretrained(tmp_path / "dac")
    tok = unitok.from_hf(tmp_path / "dac", layout="level_delay", delays=(0, 2, 3))
    suite = unitok.UniTokenizer(text_tokenizer(), {"audio": tok})
    audio = Audio((torch.rand(1, 800) - 0.5) * 0.5, RATE)
    seq = suite.encode(audio)
    assert len(seq.ids) == 2 + 8 + 3 * (100 + 3)     # begin, end, 8 shape tokens, 103 steps of 3
    assert np.array_equal(suite.decode(seq)[0].samples, tok.decode_item(*tok.encode_item(audio)).samples)
    with pytest.raises(ConfigError, match="one delay per level"):
        unitok.from_hf(tmp_path / "dac", layout="level_delay", delays=(0, 8))
    # options that would be ignored or could never encode are refused when the tokenizer is made
    for options, message in (({"layout": "level_delay", "delays": (0, -1, 2)}, "whole numbers >= 0"),
                             ({"layout": "level_delay", "delays": (0, 1.5, 2)}, "whole numbers >= 0"),
                             ({"delays": (0, 2, 3)}, "delays apply to layout='level_delay'"),
                             ({"layout": "delay", "delays": (0, 2, 3)}, "delays apply to layout='level_delay'"),
                             ({"order": "tree"}, "SNAC's option"),
                             ({"group": "row"}, "applies to image codes")):
        with pytest.raises(ConfigError, match=message):
            unitok.from_hf(tmp_path / "dac", **options)


# -- images and video -------------------------------------------------------------------------------


def emu3():
    tr = _tr()
    return tr.Emu3VQVAE(tr.Emu3VQVAEConfig(codebook_size=32, embed_dim=4, latent_channels=4, base_channels=32,
                                           channel_multiplier=[1, 2], num_res_blocks=1, attn_resolutions=[],
                                           temporal_downsample_factor=2, hidden_size=64, num_attention_heads=1))


def janus():
    tr = _tr()
    return tr.JanusVQVAE(tr.JanusVQVAEConfig(embed_dim=4, num_embeddings=32, latent_channels=8, base_channels=32,
                                             channel_multiplier=[1, 2], num_res_blocks=1, num_patches=4,
                                             projection_dim=8, image_token_embed_dim=8))


def normalize(x):
    return (x - 0.5) / 0.5


@pytest.mark.parametrize("build", [emu3, janus])
def test_image_adapter_matches_reference(build, tmp_path):
    ref, tok = reference(build, tmp_path)
    text = text_tokenizer()
    suite = unitok.UniTokenizer(text, {"image": tok})
    assert len(suite.space) - len(unitok.UniTokenizer(text).space) == sum(tok.codebook_sizes)
    g = torch.Generator().manual_seed(2)
    image = Image.from_array((torch.rand(3, 15, 21, generator=g) * 255).to(torch.uint8))    # not a multiple of 2
    header, codes = tok.encode_item(image)
    x = normalize(image.to_float())[None]
    x = torch.nn.functional.pad(x, (0, 1, 0, 1), mode="replicate")
    with torch.no_grad():
        if build is emu3:
            want = ref.encode(x, torch.tensor([[16, 22]])).image_tokens[0]
            pixels = ref.decode(want[None])
        else:
            want = ref.encode(x).image_tokens.view(8, 11)
            ref.quantize.quant_state_dims = [8, 11]
            pixels = ref.decode(want.view(1, -1))
    got = ids_round_trip(suite, "image", header, codes)
    assert np.array_equal(got[0], want.numpy())
    expect = (pixels[0] * 0.5 + 0.5)[:, :15, :21].clamp(0, 1)
    assert torch.allclose(tok.decode(torch.as_tensor(codes), (15, 21))[0], expect, atol=1e-5)
    out = suite.decode(suite.encode(image))[0]
    assert (out.height, out.width) == (15, 21)
    assert torch.equal(out.pixels, (expect * 255).round().to(torch.uint8))
    # batch equals single
    pics = torch.rand(2, 3, 16, 22, generator=g)
    assert torch.equal(tok.encode(pics), torch.cat([tok.encode(pics[:1]), tok.encode(pics[1:])]))
    if build is emu3:   # Emu3's order: rows ending in <|eol|>, then <|eof|>
        seq = suite.encode(image)
        names = [suite.space.token_name(int(i)) for i in seq.ids]
        assert names.count("<|eol|>") == 8 and names.count("<|eof|>") == 1


def test_emu3_video_matches_reference(tmp_path):
    ref, _ = reference(emu3, tmp_path)
    tok = unitok.from_hf(tmp_path / "ref", modality="video")
    suite = unitok.UniTokenizer(text_tokenizer(), {"video": tok})
    frames = (torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 255).to(torch.uint8)
    video = Video(frames, 12)
    header, codes = tok.encode_item(video)
    x = normalize(torch.cat([frames, frames[-1:]]).float() / 255)[None]    # padded to whole chunks of 2
    with torch.no_grad():
        want = ref.encode(x, torch.tensor([[16, 16]])).image_tokens[0]
        pixels = ref.decode(want[None])[0]
    assert np.array_equal(ids_round_trip(suite, "video", header, codes), want.numpy())
    out = suite.decode(suite.encode(video))[0]
    assert out.num_frames == 3 and out.fps == 12
    expect = ((pixels * 0.5 + 0.5).clamp(0, 1)[:3] * 255).round().to(torch.uint8)
    assert torch.equal(out.frames, expect)


def test_emu3_video_of_any_shape_keeps_every_latent_frame_and_row(tmp_path):
    """transformers' Emu3VQVAE.encode crops a video's codes [t, h, w] by image_sizes as if they were
    [h, w]; the adapter keeps them whole, so portrait clips and clips with more latent frames than
    latent rows encode too, with the reference's codes run uncropped."""
    ref, _ = reference(emu3, tmp_path)
    tok = unitok.from_hf(tmp_path / "ref", modality="video")
    suite = unitok.UniTokenizer(text_tokenizer(), {"video": tok})
    g = torch.Generator().manual_seed(4)
    for frames, height, width in ((2, 24, 8), (6, 2, 16), (2, 16, 16)):   # portrait; many frames, one row; square
        video = Video((torch.rand(frames, 3, height, width, generator=g) * 255).to(torch.uint8), 8)
        header, codes = tok.encode_item(video)
        assert codes.shape == (frames // 2, height // 2, width // 2)
        x = normalize(video.frames.float() / 255)[None]
        with torch.no_grad():
            want = ref.encode(x, torch.tensor([[1 << 20, 1 << 20]])).image_tokens[0]
        assert np.array_equal(ids_round_trip(suite, "video", header, codes), want.numpy())
        out = suite.decode(suite.encode(video))[0]
        assert (out.num_frames, out.height, out.width) == (frames, height, width)


# -- loading rules ----------------------------------------------------------------------------------


def test_refuses_pickles_unknown_types_and_chameleon(tmp_path):
    tr = _tr()
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(SNAC_CONFIG))
    torch.save({"w": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="unitok convert"):
        unitok.from_hf(folder)
    tr.ChameleonVQVAEConfig().save_pretrained(tmp_path / "cham")
    with pytest.raises(ConfigError, match="no decoder"):
        unitok.from_hf(tmp_path / "cham")
    tr.BertConfig().save_pretrained(tmp_path / "bert")
    with pytest.raises(ConfigError, match="not a supported tokenizer"):
        unitok.from_hf(tmp_path / "bert")


@pytest.mark.parametrize("build", [mimi, snac], ids=["transformers", "snac"])
def test_truncated_safetensors_are_a_config_error(build, tmp_path, capsys):
    torch.manual_seed(0)
    save_reference(build().eval(), tmp_path / "ref")
    weights = tmp_path / "ref" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    with pytest.raises(ConfigError, match="truncated or corrupted"):
        unitok.from_hf(tmp_path / "ref")
    from unitok.cli import main
    assert main(["convert", str(tmp_path / "ref"), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "error: " in err and "truncated or corrupted" in err and "Traceback" not in err


def test_convert_pickle_in_a_subprocess(tmp_path):
    ref = snac()
    src = tmp_path / "snac_original"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(SNAC_CONFIG))
    torch.save(ref.state_dict(), src / "pytorch_model.bin")
    from unitok.adapters.convert import convert_pickles
    convert_pickles(src, tmp_path / "snac")
    tok = unitok.from_hf(tmp_path / "snac")
    wav = (torch.rand(1, 1, 640) - 0.5) * 0.5
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(tok.encode(wav), ref.encode(wav)))


# -- suites and the command line ---------------------------------------------------------------------


def test_suite_of_text_adapted_image_and_audio_tokenizes_a_folder(tmp_path, capsys):
    """Our text BPE + Emu3's image VQ + Mimi, saved as a suite: `unitok tokenize` over a mixed
    folder gives, through TokenDataset, the ids `encode` gives."""
    from unitok.cli import main
    from unitok.data import TokenDataset
    _, image_tok = reference(emu3, tmp_path / "e")
    _, audio_tok = reference(mimi, tmp_path / "m")
    suite = unitok.UniTokenizer(text_tokenizer(), {"image": image_tok, "audio": audio_tok})
    suite.save_pretrained(tmp_path / "suite")
    loaded = unitok.load(tmp_path / "suite")
    assert loaded.space.fingerprint == suite.space.fingerprint
    data = tmp_path / "data"
    data.mkdir()
    g = torch.Generator().manual_seed(4)
    Image.from_array((torch.rand(3, 12, 10, generator=g) * 255).to(torch.uint8)).save(data / "pic.png")
    Audio((torch.rand(1, 900, generator=g) - 0.5) * 0.5, RATE).save(data / "sound.wav")
    (data / "note.txt").write_text("a picture and a sound")
    code = main(["tokenize", str(data), "-o", str(tmp_path / "out"), "--suite", str(tmp_path / "suite"),
                 "--workers", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    ds = TokenDataset(tmp_path / "out")
    assert len(ds) == 3
    for i in range(len(ds)):
        _, source = ds.source(i)
        want = loaded.encode(unitok.media.open_media(source) if not source.endswith(".txt")
                             else open(source, encoding="utf-8").read())
        assert np.array_equal(ds[i]["ids"], want.ids), (source, err)


def test_cli_convert_writes_a_unitok_checkpoint(tmp_path, capsys):
    from unitok.cli import main
    torch.manual_seed(0)
    src = tmp_path / "snac_original"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(SNAC_CONFIG))
    torch.save(snac().state_dict(), src / "pytorch_model.bin")
    code = main(["convert", str(src), "-o", str(tmp_path / "audio"), "--order", "tree"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "converted 1 pickle file" in out and "adapters.snac" in out
    tok = load_pretrained(tmp_path / "audio")
    assert tok.cfg.order == "tree" and tok.layout({"levels": 3, "sample_rate": RATE, "samples": 64}).rates == (1, 2, 4)
    assert main(["convert", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x")]) == 1


def test_the_reconstruction_benchmark_runs_on_an_adapted_codec(tmp_path):
    """Issue 15 item 6: a user with real weights converts them and gets the same tables as for
    unitok's own tokenizers (here tiny random EnCodec weights, so only the mechanics are checked)."""
    import math

    import audio as audio_bench          # benchmarks/audio.py (pytest's pythonpath holds benchmarks/)

    encodec().save_pretrained(tmp_path / "hf")
    adapted = unitok.from_hf(tmp_path / "hf")
    adapted.save_pretrained(tmp_path / "ck")
    cand, = audio_bench.load_audio_candidates(None, [tmp_path / "ck"], use_suite=False)
    t = torch.arange(24000) / 24000
    clip = audio_bench.Clip("s", "speech", (0.3 * torch.sin(2 * torch.pi * 220 * t)).float())
    top = max(adapted.bitrates.values())                       # every level of the tiny model
    report = audio_bench.run_audio([cand], [clip], kbps=(top,), devices=["cpu"], threads=(), repeat=1, rtf_seconds=1,
                                   memory_minutes=0, progress=False)
    ours = next(r for r in report.runs if r.codec == cand.name)
    frames = ours.tokens[0] / ours.levels                      # every level holds one code per frame
    bits = frames * sum(math.log2(s) for s in adapted.codebook_sizes[:ours.levels])
    assert ours.levels >= 1 and ours.bits.tolist() == [bits]
    assert math.isfinite(float(ours.scores["mel"][0]))
