"""UniTokenizer: interleaved documents, groups and spans, strict and lenient decoding of generated ids,
suites on disk. Media tokenizers here are the toy codecs of ``unitok/testing.py``."""

import json

import numpy as np
import pytest
import torch

import unitok
from unitok import Audio, ConfigError, Image, TokenSequence, TokenSequenceError, UniTokenizer
from unitok.space import DIM_DIGITS

from unitok.testing import ToyAudio, ToyAudioConfig, ToyImage, ToyImageConfig


@pytest.fixture(scope="module")
def text():
    return unitok.text.load_default()


@pytest.fixture(scope="module")
def tok(text):
    return UniTokenizer(text, {"audio": ToyAudio(), "image": ToyImage()})


def image(h=20, w=33, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Image.from_array(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))


def audio(n=1000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Audio((torch.rand(1, n, generator=g) - 0.5), 8000)


def doc():
    return ["A cat, 猫, кот 🐈", image(), audio(), "more text"]


def test_text_round_trip_and_single_vs_list(tok):
    s = "Hello, wörld! 你好 <|image|> <|endoftext|>\r\n\x00"
    seq = tok.encode(s)
    assert seq.ids.tolist() == tok.encode([s]).ids.tolist()
    assert seq.ids.tolist() == tok.text.encode(s)           # text ids are the text vocabulary's, unchanged
    assert tok.decode(seq) == [s]
    assert seq.spans == [unitok.Span("text", 0, len(seq))]
    assert seq.groups.tolist() == list(range(len(seq)))


def test_invalid_utf8_round_trips(tok):
    raw = b"ok \xff\xfe \xc3( end"
    (out,) = tok.decode(tok.encode(raw))
    assert out.encode("utf-8", "surrogateescape") == raw


def test_interleaved_document(tok):
    seq = tok.encode(doc(), bos=True, eos=True)
    assert [s.modality for s in seq.spans] == ["text", "image", "audio", "text"]
    sp = tok.space.special_tokens
    assert seq.ids[0] == sp["<|bos|>"] and seq.ids[-1] == sp["<|eos|>"]
    img, aud = seq.spans[1], seq.spans[2]
    assert seq.ids[img.start] == sp["<|image|>"] and seq.ids[img.stop - 1] == sp["<|/image|>"]
    assert seq.ids[aud.start] == sp["<|audio|>"] and seq.ids[aud.stop - 1] == sp["<|/audio|>"]
    # groups: start at 0, non-decreasing, no gaps
    assert seq.groups[0] == 0 and np.all(np.diff(seq.groups) >= 0) and np.all(np.diff(seq.groups) <= 1)
    # every id is in range and says which modality it is
    for s in seq.spans[1:3]:
        body = seq.ids[s.start + 1 + 2 * DIM_DIGITS:s.stop - 1]
        assert {tok.space.describe(i)[0] for i in body} == {s.modality}
    out = tok.decode(seq)
    assert [type(x) for x in out] == [str, Image, Audio, str]
    assert out[0] == doc()[0] and out[3] == "more text"
    assert (out[1].height, out[1].width) == (20, 33)
    assert out[2].num_samples == 1000


def test_next_scale_groups_are_one_per_scale(tok):
    seq = tok.encode(image(64, 64))
    begin, head_end = 0, 1 + 2 * DIM_DIGITS
    body_groups = seq.groups[head_end:-1]
    scales = tok.media["image"].layout({"height": 64, "width": 64}).scales
    assert len(np.unique(body_groups)) == len(scales)
    assert np.bincount(body_groups - body_groups[0]).tolist() == [h * w for h, w in scales]
    # structural tokens and the header are groups of their own
    assert len({seq.groups[begin], seq.groups[1], seq.groups[head_end], seq.groups[-1]}) == 4
    assert len(np.unique(seq.groups[1:head_end])) == 1


def test_text_parts_in_a_row_stay_apart(tok):
    seq = tok.encode(["one", "two", "", "three"])
    assert tok.decode(seq) == ["one", "two", "three"]
    assert (seq.ids == tok.space.special("<|sep|>")).sum() == 2


def test_arbitrary_sizes_round_trip(tok):
    for h, w in [(1, 1), (201, 333), (7, 64)]:
        (out,) = tok.decode(tok.encode(image(h, w)))
        assert (out.height, out.width) == (h, w)


def test_encode_batch_matches_encode(tok):
    docs = [doc(), "just text", ["a", "b"]]
    for a, b in zip(tok.encode_batch(docs), [tok.encode(d) for d in docs]):
        assert a == b


def test_ids_as_tensor_list_or_array(tok):
    seq = tok.encode(doc())
    for ids in (seq.ids, seq.ids.tolist(), torch.from_numpy(seq.ids)):
        assert [type(x) for x in tok.decode(ids)] == [str, Image, Audio, str]
    with pytest.raises(TokenSequenceError, match="not an integer") as e:
        tok.decode(np.array([1.0, 2.5]))
    assert e.value.position == 1


def test_missing_modality(text, tok):
    only_text = UniTokenizer(text)
    with pytest.raises(ConfigError, match="no image tokenizer"):
        only_text.encode(["x", image()])
    seq = tok.encode(["x", image(), "y"])
    with pytest.raises(ConfigError, match="token space"):   # other suite: fingerprint differs
        only_text.decode(seq)


# -- generated ids: strict names the position, lenient repairs and reports ------------------------------

def _generated(tok):
    seq = tok.encode(doc())
    return seq.ids.copy(), seq.spans


def test_unknown_id(tok):
    ids, _ = _generated(tok)
    ids[3] = len(tok.space) + 5
    with pytest.raises(TokenSequenceError, match="unknown id") as e:
        tok.decode(ids)
    assert e.value.position == 3
    out = tok.decode(ids, strict=False)
    assert [r.position for r in out.repairs] == [3]
    assert [type(x) for x in out] == [str, str, Image, Audio, str]   # the text part is split around it


def test_truncated_last_group(tok):
    ids, spans = _generated(tok)
    cut = spans[2].stop - 3            # inside the audio body: its last frame group is incomplete
    with pytest.raises(TokenSequenceError, match="never closed") as e:
        tok.decode(ids[:cut])
    assert e.value.position == cut
    out = tok.decode(ids[:cut], strict=False)
    assert [type(x) for x in out] == [str, Image, Audio]
    assert out[2].num_samples == 1000                     # declared shape is kept
    assert {r.action for r in out.repairs} == {"closed", "padded"}


def test_missing_end_token_before_text(tok):
    ids, spans = _generated(tok)
    ids = np.delete(ids, spans[1].stop - 1)                  # drop <|/image|>
    with pytest.raises(TokenSequenceError, match="missing <\\|/image\\|>") as e:
        tok.decode(ids)
    assert e.value.position == spans[1].stop - 1               # where <|audio|> now stands
    out = tok.decode(ids, strict=False)
    assert [type(x) for x in out] == [str, Image, Audio, str]
    assert [r.action for r in out.repairs] == ["closed"]


def test_wrong_modality_inside_segment(tok):
    ids, spans = _generated(tok)
    at = spans[1].start + 1 + 2 * DIM_DIGITS + 2
    ids = np.insert(ids, at, tok.encode("zz").ids[0])          # a text id inside the image body
    with pytest.raises(TokenSequenceError, match="another modality") as e:
        tok.decode(ids)
    assert e.value.position == at
    out = tok.decode(ids, strict=False)
    assert [type(x) for x in out] == [str, Image, Audio, str]
    assert [(r.position, r.action) for r in out.repairs] == [(at, "dropped")]


def test_audio_code_in_image_segment_and_code_outside_segment(tok):
    ids, spans = _generated(tok)
    audio_code = ids[spans[2].start + 1 + 2 * DIM_DIGITS]
    at = spans[1].start + 1 + 2 * DIM_DIGITS
    bad = ids.copy()
    bad[at] = audio_code
    with pytest.raises(TokenSequenceError) as e:
        tok.decode(bad)
    assert e.value.position == at
    stray = np.insert(ids, 1, audio_code)
    with pytest.raises(TokenSequenceError, match="outside of any media segment") as e:
        tok.decode(stray)
    assert e.value.position == 1


def test_bad_header(tok):
    ids, spans = _generated(tok)
    ids[spans[1].start + 2] = 7                                # a text id where a shape token belongs
    with pytest.raises(TokenSequenceError, match="shape token") as e:
        tok.decode(ids)
    assert e.value.position == spans[1].start + 2
    out = tok.decode(ids, strict=False)
    assert [type(x) for x in out] == [str, Audio, str]
    assert out.repairs[0].action == "dropped"


def test_absurd_header_is_refused(tok):
    sp = tok.space
    ids = [sp.special("<|image|>"), *sp.dim_ids([1_000_000, 1_000_000]), sp.special("<|/image|>")]
    with pytest.raises(TokenSequenceError, match="limit"):
        tok.decode(ids)
    assert tok.decode(ids, strict=False) == []


def test_nested_and_unmatched_markers(tok):
    sp = tok.space
    ids, spans = _generated(tok)
    with pytest.raises(TokenSequenceError, match="without a matching begin") as e:
        tok.decode(np.insert(ids, 0, sp.special("<|/audio|>")))
    assert e.value.position == 0
    nested = np.insert(ids, spans[1].start + 1 + 2 * DIM_DIGITS, sp.special("<|audio|>"))
    with pytest.raises(TokenSequenceError, match="inside the image segment"):
        tok.decode(nested)
    assert len(tok.decode(nested, strict=False).repairs) > 0


def test_lenient_decoding_of_random_ids_never_crashes(tok):
    rng = np.random.default_rng(0)
    ids, spans = _generated(tok)
    for _ in range(200):
        noisy = ids.copy()
        k = rng.integers(1, 6)
        noisy[rng.integers(0, len(ids), k)] = rng.integers(-5, len(tok.space) + 5, k)
        noisy = noisy[: rng.integers(1, len(ids) + 1)]
        out = tok.decode(noisy, strict=False)
        for item in out:
            assert isinstance(item, (str, Image, Audio))
        try:
            tok.decode(noisy)
        except TokenSequenceError as e:
            assert e.position is not None and 0 <= e.position <= len(noisy)


def test_delay_layout_suite(text):
    tok = UniTokenizer(text, {"audio": ToyAudio(ToyAudioConfig(layout="delay"))})
    a = audio(800)
    seq = tok.encode(a)
    assert (seq.ids == tok.space.special("<|pad|>")).sum() == 3 * 2   # K(K-1) pads for K=3
    (out,) = tok.decode(seq)
    (ref,) = UniTokenizer(text, {"audio": ToyAudio()}).decode(UniTokenizer(text, {"audio": ToyAudio()}).encode(a))
    assert torch.equal(out.samples, ref.samples)


def test_suite_save_load(tok, tmp_path):
    tok.save_pretrained(tmp_path / "suite")
    again = unitok.load(tmp_path / "suite")
    assert again.space.fingerprint == tok.space.fingerprint
    seq = tok.encode(doc())
    assert [type(x) for x in again.decode(seq)] == [str, Image, Audio, str]
    # a component changed after saving: the manifest no longer matches
    ToyImage(ToyImageConfig(levels=8)).save_pretrained(tmp_path / "suite" / "image")
    with pytest.raises(ConfigError, match="space.json"):
        unitok.load(tmp_path / "suite")


def test_token_file_formats(tok, tmp_path):
    seq = tok.encode(doc())
    seq.save(tmp_path / "a.json")
    assert TokenSequence.load(tmp_path / "a.json") == seq
    (tmp_path / "b.txt").write_text(" ".join(map(str, seq.ids.tolist())))
    assert TokenSequence.load(tmp_path / "b.txt").ids.tolist() == seq.ids.tolist()
    (tmp_path / "c.json").write_text(json.dumps(seq.ids.tolist()))
    assert TokenSequence.load(tmp_path / "c.json").ids.tolist() == seq.ids.tolist()
    (tmp_path / "d.txt").write_text("1 2 x")
    with pytest.raises(ConfigError, match="d.txt"):
        TokenSequence.load(tmp_path / "d.txt")


def test_default_suite_loads():
    tok = unitok.load()
    assert "text" in tok.modalities
    assert 32_000 <= tok.text.n_vocab <= 65_536
    assert tok.decode(tok.encode("round trip")) == ["round trip"]
