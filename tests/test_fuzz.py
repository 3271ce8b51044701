"""Robustness: a deterministic slice of the fuzz run (``benchmarks/robustness.py``) and a
regression test for every bug the fuzzing found, each with the input that triggered it.

The long run is ``python benchmarks/robustness.py`` (its table is in benchmarks/RESULTS.md)."""

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import unitok
from unitok import Audio, ConfigError, Image, MediaError, TokenSequence, TokenSequenceError, TokenSpace, UniTokenizer
from unitok.checkpoint import load_pretrained
from unitok.data import TokenDataset
from unitok.media import MediaLimits, open_media
from unitok.pipeline import Options, TokenizeConfig, tokenize, verify

from unitok.testing import ToyAudio, ToyImage

import fuzz_common      # the fuzz engine, benchmarks/robustness.py and its fuzz_*.py (pytest's pythonpath)
import fuzz_media
import fuzz_storage
import robustness as R

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bundled():
    return unitok.load()


@pytest.fixture(scope="module")
def toy():
    return UniTokenizer(unitok.text.load_default(), {"image": ToyImage(), "audio": ToyAudio()})


def _picture(h=16, w=24, seed=0) -> Image:
    g = torch.Generator().manual_seed(seed)
    return Image(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g))


# -- the slice and the harness -------------------------------------------------------------------

def test_fuzz_slice_has_no_crash_hang_memory_blowup_or_lost_record(tmp_path):
    """Every category of the long run, a few hundred cases in all (seed 0), each in the watchdog
    worker: zero crashes, zero hangs, zero memory blow-ups, zero lost records."""
    start = time.monotonic()
    tallies = R.run(R.SLICE, seed=0, timeout=60, max_rss_gb=3.0, work=tmp_path)
    report = R.table(tallies) + "\n" + "\n".join(R.failures(tallies))
    assert {name: t.cases for name, t in tallies.items()} == R.SLICE, report
    assert sum(t.crash + t.hang + t.memory + t.lost for t in tallies.values()) == 0, report
    # the cases reach both outcomes: hostile input is refused, and what is fine still decodes
    for name in ("image-files", "audio-files", "crafted-files", "tokens-strict"):
        assert tallies[name].error > 0 and tallies[name].ok > 0, report
    assert tallies["tokenize"].ok == 1, report
    # the robustness issue's classes (fuzz_hostile.py): the runs kept every good record and resumed identically
    assert tallies["hostile-records"].ok == 1 and tallies["unclean-failures"].error == R.SLICE["unclean-failures"], report
    assert time.monotonic() - start < 120, report


def test_the_harness_counts_hangs_memory_blowups_and_crashes(tmp_path):
    tally = R.run({"selftest": 5}, timeout=3, max_rss_gb=0.5, work=tmp_path)["selftest"]
    assert (tally.hang, tally.memory, tally.crash, tally.ok) == (1, 1, 2, 1)
    assert [status for _, status, _ in tally.failures] == ["hang", "memory", "crash", "crash"]
    assert "exit status 3" in tally.failures[2][2] and "KeyError" in tally.failures[3][2]


def test_cases_are_deterministic():
    a, b = fuzz_common.case_rng(0, "tokens-strict", 17), fuzz_common.case_rng(0, "tokens-strict", 17)
    data = bytes(range(256)) * 4
    assert fuzz_common.mutate(data, a, [data]) == fuzz_common.mutate(data, b, [data])


# -- media files -----------------------------------------------------------------------------------

def _wav(rate, data, **kw):
    return fuzz_media._wav(rate, data, **kw)


def test_stream_with_no_decoder_is_a_media_error(tmp_path):
    """A WAV declaring 0 bits per sample (or a damaged codec tag in an MP4) gives a stream PyAV has
    no decoder for; reading it raised AttributeError ('NoneType' object has no attribute ...)."""
    path = tmp_path / "bits0.wav"
    path.write_bytes(_wav(16000, bytes(100), bits=0))
    for opener in (Audio.open, open_media, unitok.Video.open):
        with pytest.raises(MediaError, match="bits0.wav") as e:
            opener(path)
        assert "decoder" in str(e.value) or "no video stream" in str(e.value)


def test_nul_byte_in_a_file_name_is_a_media_error(tmp_path):
    """JSON manifests can hold "\\u0000": os.stat raised ValueError (embedded null byte)."""
    with pytest.raises(MediaError, match="file name"):
        open_media(tmp_path / "a\x00b.png")
    with pytest.raises(MediaError, match="file name"):
        Image.open(str(tmp_path / "x\x00"))


@pytest.mark.parametrize("values", [[0.0, float("nan")], [float("inf")], [-float("inf"), 0.5]])
def test_nan_and_inf_in_float_wav_are_refused_naming_the_file(tmp_path, values):
    path = tmp_path / "bad.wav"
    path.write_bytes(_wav(16000, np.asarray(values, np.float32).tobytes(), fmt_tag=3, bits=32))
    with pytest.raises(MediaError, match="bad.wav.*NaN or infinite"):
        Audio.open(path)


# -- decode: limits on what a header may ask for ------------------------------------------------------

def test_image_header_over_max_pixels_is_refused_before_decoding(bundled):
    """``<|image|> 16000 16000 <|/image|>`` asks for 5.3M tokens, under the segment limit (28000 x
    28000 for 16.3M did too): lenient decoding padded it and ran the decoder on a 256-megapixel
    picture (tens of GB of activations)."""
    sp = bundled.space
    ids = [sp.special("<|image|>"), *sp.dim_ids([16000, 16000]), sp.special("<|/image|>")]
    with pytest.raises(TokenSequenceError, match="max_pixels") as e:
        bundled.decode(ids)
    assert e.value.position == 1
    out = bundled.decode(ids, strict=False)
    assert list(out) == [] and out.repairs[0].action == "dropped"
    # configurable: a lower limit refuses what the default allows
    small = bundled.with_limits(MediaLimits(max_pixels=64 * 64))
    ok = [sp.special("<|image|>"), *sp.dim_ids([64, 80]), sp.special("<|/image|>")]
    assert bundled.decode(ok, strict=False)[0].pixels.shape == (3, 64, 80)
    assert small.decode(ok, strict=False) == []
    assert bundled.media["image"].limits.max_pixels == 8192 * 8192   # the copy left the original alone
    with pytest.raises(MediaError, match="max_pixels"):
        small.encode(_picture(64, 80))


def test_audio_header_over_max_seconds_is_refused(bundled):
    sp = bundled.space
    n = 4 * 3600 * 1000 + 1000                        # 4 h + 1 s at 1 kHz: 8.6M tokens, under the segment limit
    ids = [sp.special("<|audio|>"), *sp.dim_ids([8, 1000, n >> 20, n & (2**20 - 1)]), sp.special("<|/audio|>")]
    with pytest.raises(TokenSequenceError, match="max_seconds"):
        bundled.decode(ids)
    assert bundled.decode(ids, strict=False) == []
    with pytest.raises(MediaError, match="max_seconds"):
        bundled.with_limits(MediaLimits(max_seconds=0.01)).encode(Audio(torch.zeros(1, 800), 8000))


def test_many_small_headers_cannot_ask_for_unbounded_output(toy):
    """Lenient decoding pads each segment to its header: a few ids per segment could ask for any
    amount of output. The segments' declared tokens together are bounded by max_tokens."""
    sp = toy.space
    segment = [sp.special("<|image|>"), *sp.dim_ids([256, 256]), sp.special("<|/image|>")]
    each = len(toy.media["image"].layout({"height": 256, "width": 256}))
    tok = toy.with_limits(max_tokens=5000)
    out = tok.decode(segment * 10, strict=False)
    assert len(out) == 5000 // each and all(x.pixels.shape == (3, 256, 256) for x in out)
    dropped = [r for r in out.repairs if r.action == "dropped" and "max_tokens" in r.reason]
    assert len(dropped) == 1 and dropped[0].reason.startswith(f"{10 - 5000 // each} alike")   # one summary
    with pytest.raises(TokenSequenceError, match="truncated"):   # strict: the first segment is incomplete
        tok.decode(segment * 10)


def test_sequences_longer_than_max_tokens(toy):
    tok = toy.with_limits(max_tokens=50)
    ids = toy.encode("word " * 100).ids
    with pytest.raises(TokenSequenceError, match="max_tokens") as e:
        tok.decode(ids)
    assert e.value.position == 50
    out = tok.decode(ids, strict=False)
    assert out.repairs[0].position == 50 and len(out[0]) < len("word " * 100)
    with pytest.raises(MediaError, match="more than 50 tokens"):
        tok.encode("word " * 100)
    assert toy.max_tokens == 1 << 24 and len(toy.encode("word " * 100)) == len(ids)


def test_float_ids_beyond_int64_are_refused_with_their_position(toy):
    """1e300 was cast to -2**63 (with a RuntimeWarning) and reported as that unknown id."""
    for strict in (True, False):
        with pytest.raises(TokenSequenceError, match="int64") as e:
            toy.decode(np.array([5.0, 1e300]), strict=strict)
        assert e.value.position == 1


def test_a_fingerprint_that_is_not_a_string(toy, tmp_path):
    """decode(fingerprint=5) and a token file with "fingerprint": 5 raised TypeError."""
    with pytest.raises(ConfigError, match="fingerprint"):
        toy.decode([1, 2], fingerprint=5)
    (tmp_path / "t.json").write_text(json.dumps({"ids": [1, 2], "fingerprint": 5}))
    with pytest.raises(ConfigError, match="fingerprint"):
        TokenSequence.load(tmp_path / "t.json")


# -- manifests and checkpoints ----------------------------------------------------------------------

@pytest.mark.parametrize("edit", [
    {"codebook_sizes": 5}, {"codebook_sizes": {"image": "ab"}}, {"codebook_sizes": {"image": [1e30]}},
    {"codebook_sizes": {"image": [2**40]}}, {"components": [1, 2]}, {"components": {"text": 5}},
    {"text_vocab_size": True}, {"text_vocab_size": "x"}, {"codebook_sizes": {"image": [True, 4]}},
])
def test_malformed_token_space_manifests(toy, edit):
    """Each raised AttributeError, ValueError, TypeError or OverflowError (a manifest without its
    fingerprint field is checked field by field)."""
    data = json.loads(toy.space.to_json())
    data.pop("fingerprint")
    data.update(edit)
    with pytest.raises(ConfigError, match="manifest"):
        TokenSpace.from_json(json.dumps(data))


@pytest.mark.parametrize("edit", [
    {"modalities": 5}, {"modalities": "image"}, {"modalities": [1]}, {"modalities": ["image", "image"]},
    {"modalities": [None]}, {"text_group_size": "x"}, {"text_group_size": [2]}, {"text_group_size": 0},
    {"text_group_size": 1.5},
])
def test_malformed_suite_json(toy, tmp_path, edit):
    """Each raised TypeError or ValueError from unitok.load."""
    toy.save_pretrained(tmp_path / "suite")
    data = json.loads((tmp_path / "suite" / "suite.json").read_text())
    data.update(edit)
    (tmp_path / "suite" / "suite.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="suite.json"):
        unitok.load(tmp_path / "suite")


SEANET = {"encoder": "seanet", "decoder": "seanet"}


@pytest.mark.parametrize("edit", [{"lstm": 2**63, **SEANET}, {"channels": 10**6, **SEANET},
                                  {"res_units": 10**9, "dilation_base": 1, **SEANET}, {"kernel": 10**8},
                                  {"encoder_dim": 10**6}, {"decoder_dim": 10**5, "decoder_layers": 64}])
def test_a_config_asking_for_a_giant_model_is_refused_before_allocating(tmp_path, edit):
    """{"lstm": 2**63} in an audio config.json built LSTM layers until memory ran out; a billion
    channels allocated gigabytes before the weights were compared with the config. (The SEANet
    fields only build layers in the SEANet design, so those edits switch the design too.)"""
    folder = tmp_path / "audio"
    shutil.copytree(ROOT / "unitok" / "assets" / "audio", folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["config"].update(edit)
    (folder / "config.json").write_text(json.dumps(cfg))
    start = time.monotonic()
    with pytest.raises(ConfigError, match="far more than"):
        load_pretrained(folder)
    assert time.monotonic() - start < 10


def test_a_config_whose_convolutions_would_pad_by_gigabytes_is_refused(tmp_path):
    folder = tmp_path / "audio"
    shutil.copytree(ROOT / "unitok" / "assets" / "audio", folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["config"].update(res_units=3, dilation_base=10**9)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="dilation_base"):
        load_pretrained(folder)


@pytest.mark.parametrize("where,value", [("channels", 1.5), ("quantizer", 5), ("quantizer", [1]),
                                         ("ratios", ["a"]), ("causal", "yes"), ("kernel", True)])
def test_ill_typed_config_values(tmp_path, where, value):
    """{"quantizer": 5} raised AttributeError and {"channels": 1.5} a TypeError inside torch."""
    folder = tmp_path / "audio"
    shutil.copytree(ROOT / "unitok" / "assets" / "audio", folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["config"][where] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=where if where != "quantizer" else "quantizer|QuantizerConfig"):
        load_pretrained(folder)


def test_weights_with_nan_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "image"
    shutil.copytree(ROOT / "unitok" / "assets" / "image", folder)
    state = load_file(str(folder / "model.safetensors"))
    name = sorted(state)[0]
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ConfigError, match="NaN"):
        load_pretrained(folder)


@pytest.mark.parametrize("key,value", [("vocab_file", True), ("vocab_file", 5), ("pattern", 1.5),
                                       ("format_version", "2"), ("n_vocab", "49152")])
def test_text_config_with_wrong_types(tmp_path, key, value):
    """{"vocab_file": true} raised TypeError (PosixPath / bool)."""
    folder = tmp_path / "text"
    shutil.copytree(ROOT / "unitok" / "assets" / "text", folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg[key] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=key.replace("_", ".")):
        load_pretrained(folder)


def test_pickled_weights_are_refused_and_never_run(tmp_path):
    folder = tmp_path / "image"
    shutil.copytree(ROOT / "unitok" / "assets" / "image", folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "code-ran"
    (folder / "model.pt").write_bytes(__import__("pickle").dumps(fuzz_storage._Marker(str(marker))))
    with pytest.raises(ConfigError, match="pickle"):
        load_pretrained(folder)
    assert not marker.exists()


# -- batch tokenization and tokenized datasets ---------------------------------------------------------

@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory, toy):
    folder = tmp_path_factory.mktemp("suite")
    toy.save_pretrained(folder)
    return folder


def _run(tmp_path, lines, suite_dir, **options):
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    summary = tokenize(TokenizeConfig([str(tmp_path / "m.jsonl")], tmp_path / "out", suite=str(suite_dir),
                                      plugins=("unitok.testing",), workers=0, progress=False, options=Options(**options)))
    errors = [json.loads(x) for x in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    return summary, errors


def test_a_document_listing_one_file_many_times_is_bounded(tmp_path, suite_dir):
    """Each file was checked against MediaLimits alone, so a line naming one large file 1000 times
    decoded all of them at once. A document's media together are now bounded by max_decoded_bytes."""
    _picture(64, 64).save(tmp_path / "p.png")
    limit = 64 * 64 * 3 * 10
    lines = [{"content": [{"image": "p.png"}] * 11}, {"content": [{"image": "p.png"}] * 10},
             {"content": [{"image": "nul\u0000.png"}]}]
    summary, errors = _run(tmp_path, lines, suite_dir, limits={"max_decoded_bytes": limit})
    assert summary.documents == 1
    assert [e["position"] for e in errors] == ["line 1", "line 3"]
    assert "decode to 135168 bytes together" in errors[0]["reason"] and "file name" in errors[1]["reason"]
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["options"]["limits"] == {"max_decoded_bytes": limit}
    with pytest.raises(MediaError, match="together"):
        UniTokenizer(unitok.text.load_default(), {"image": ToyImage()},
                     limits=MediaLimits(max_decoded_bytes=limit)).encode([tmp_path / "p.png"] * 11)


def test_pipeline_limits_and_max_tokens_above_the_suite_default(tmp_path, suite_dir, toy):
    _picture(40, 40).save(tmp_path / "p.png")
    lines = [{"content": [{"image": "p.png"}]}, {"content": [{"text": "word " * 50}]}]
    summary, errors = _run(tmp_path, lines, suite_dir, limits={"max_pixels": 1000})
    assert summary.documents == 1 and "max_pixels" in errors[0]["reason"]
    assert json.loads((tmp_path / "out" / "run.json").read_text())["options"].get("limits") == {"max_pixels": 1000}
    # --max-tokens above the suite's own max_tokens is honoured (on a copy: the suite is unchanged)
    from unitok.pipeline.worker import Worker

    small = toy.with_limits(max_tokens=10)
    worker = Worker(small, Options(max_tokens=1000))
    assert worker.tok.max_tokens == 1000 and small.max_tokens == 10
    with pytest.raises(ConfigError, match="MediaLimits"):
        Options(limits={"max_pixel": 5})
    assert "limits" not in Options().to_json()       # run.json of runs with default limits is unchanged


@pytest.mark.parametrize("target,damage", [
    ("shard-00000.docs.jsonl", b"{not json"), ("shard-00000.docs.jsonl", b'{"id": "x"}'),
    ("shard-00000.docs.jsonl", b"\xff\xfe"), ("index.json", b'{"format": "unitok-shards", "version": 1}'),
    ("index.json", None), ("shard-00000.json", None), ("run.json", None),
])
def test_damaged_tokenized_datasets_give_clear_errors(tmp_path, suite_dir, toy, target, damage):
    """A damaged docs.jsonl made TokenDataset raise JSONDecodeError/KeyError/UnicodeDecodeError, and
    edited manifests made unitok verify raise KeyError/TypeError."""
    _run(tmp_path, [{"content": [{"text": f"doc {i}"}]} for i in range(4)], suite_dir)
    out = tmp_path / "out"
    path = out / target
    if damage is None:   # a field of the right name with the wrong type
        data = json.loads(path.read_text())
        key = {"index.json": "documents_per_shard", "shard-00000.json": "files", "run.json": "inputs"}[target]
        data[key] = "x"
        damage = json.dumps(data).encode()
    if target.endswith(".jsonl"):   # the first line damaged, the others left as they are
        damage = b"\n".join([damage, *path.read_bytes().splitlines()[1:]]) + b"\n"
    path.write_bytes(damage)
    try:
        ds = TokenDataset(out)
        for i in range(len(ds)):
            ds[i]
    except ConfigError as e:
        assert target in str(e)
    try:
        report = verify(out, toy, sample=2)
    except ConfigError as e:
        assert target in str(e)
    else:
        assert not report.ok and any(target in p for p in report.problems)
