"""UTF-16BE byte-level text tokenizer (``train_bpe(..., byte_encoding="utf-16-be")``): exact round
trips of every str and byte string on a mixed corpus, saving and loading, the fingerprint, special
tokens, and what the mode refuses. Trains one small vocabulary per module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_text import HARD_BYTES, MULTILINGUAL, _corpus_texts
from unitok.errors import ConfigError
from unitok.text import TextTokenizer, load_default, train_bpe
from unitok.text.units import decode_units, escape

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# str that only a Python str can hold: lone and paired surrogate code points, U+FFFF, NUL, emoji.
HARD_STR = [
    "", "\x00", "nul\x00in\x00\x00the middle", "\ud800", "\udfff", "a\ud800b\udc80\udfffc",
    "\ud83d\ude00 is not 😀", "\uffff", "\uffff\uffff😀\uffff\ud83d\ude00\uffff", "\ud800\ud800\udc00",
    "\udbff\udfff\U0010ffff", "👨‍👩‍👧‍👦 🇫🇷 👍🏽 1️⃣ 🏳️‍🌈", "tail high \ud83d", "\udc80\udcff escaped bytes",
    b"caf\xe9 \xff\xfe ok \xc3".decode("utf-8", "surrogateescape"),
]


@pytest.fixture(scope="module")
def u16() -> TextTokenizer:
    lines = [ln for text in _corpus_texts()[:2] for ln in text.splitlines(keepends=True)]
    lines += [f"{s} {i}\n" for i in range(10) for s in MULTILINGUAL]
    return train_bpe(None, 1200, texts=lines, byte_encoding="utf-16-be", show_progress=False,
                     special_tokens=["<|eos|>"], name="u16")


def _mixed_corpus() -> list[bytes]:
    files = [p.read_bytes() for p in sorted(EXAMPLES.glob("*.txt"))] + [t.encode() for t in _corpus_texts()]
    return files + HARD_BYTES + [s.encode("utf-8", "unitok.surrogates") for s in HARD_STR]


def test_every_str_round_trips_exactly(u16):
    for text in HARD_STR + MULTILINGUAL + _corpus_texts():
        assert u16.decode(u16.encode(text)) == text, repr(text[:80])


def test_every_file_of_a_mixed_corpus_round_trips_as_bytes(u16):
    for data in _mixed_corpus():
        ids = u16.encode(data)
        assert u16.decode_bytes(ids) == data
        assert u16.decode(ids).encode("utf-8", "surrogateescape") == data
        assert ids == u16.encode(data.decode("utf-8", "surrogateescape"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(codec=None, categories=None), max_size=40) | st.binary(max_size=40))
def test_any_input_round_trips(u16, data):
    ids = u16.encode(data)
    if isinstance(data, bytes):
        assert u16.decode_bytes(ids) == data
    else:
        assert u16.decode(ids) == data


def test_invalid_utf8_byte_is_its_surrogate_escape_code_unit(u16):
    # byte 0xFF -> the escape U+DCFF -> the code unit DCFF -> bytes DC FF
    assert b"".join(u16.token_bytes(i) for i in u16.encode(b"\xff")) == b"\xdc\xff"
    assert escape("\ud83d\ude00").encode("utf-16-be", "surrogatepass") == b"\xff\xff\xd8\x3d\xde\x00"
    assert decode_units(b"\xff\xff\xd8\x3d\xde\x00") == "\ud83d\ude00"
    assert decode_units(b"\x00a\x00") == "a\ufffd"   # an odd trailing byte (arbitrary ids only)


def test_units_are_utf16_code_units(u16):
    base = TextTokenizer({bytes([b]): b for b in range(256)}, byte_encoding="utf-16-be")
    plain = TextTokenizer({bytes([b]): b for b in range(256)})
    # a CJK or kana character is 2 base units in UTF-16, 3 in UTF-8; ASCII 2 against 1
    assert len(base.encode("東京カナ")) == 8 and len(plain.encode("東京カナ")) == 12
    assert len(base.encode("abc")) == 6
    assert b"".join(u16.token_bytes(i) for i in u16.encode("東京 ab")) == "東京 ab".encode("utf-16-be")


def test_arbitrary_ids_decode_without_error(u16):
    for ids in ([0], [65, 0, 1], list(range(0, u16.n_vocab, 7)), [0xD8, 0x00]):
        assert isinstance(u16.decode(ids), str)
        assert isinstance(u16.decode_bytes(ids), bytes)


def test_special_tokens_are_text_not_units(u16):
    eos = u16.special_tokens["<|eos|>"]
    text = "東京\ud83d<|eos|>\ude00 end<|eos|>"
    ids = u16.encode(text, allowed_special="all")
    assert ids.count(eos) == 2
    assert u16.decode(ids) == text
    assert eos not in u16.encode(text)   # not allowed: plain text
    assert u16.decode(u16.encode(text)) == text


def test_save_load_and_fingerprint(u16, tmp_path):
    u16.save_pretrained(tmp_path / "u16")
    cfg = json.loads((tmp_path / "u16" / "config.json").read_text())
    assert cfg["byte_encoding"] == "utf-16-be" and cfg["format_version"] == 3
    again = TextTokenizer.from_pretrained(tmp_path / "u16")
    assert again.byte_encoding == "utf-16-be" and again.fingerprint == u16.fingerprint
    for text in HARD_STR + MULTILINGUAL:
        assert again.encode(text) == u16.encode(text)
    # the same ranks on UTF-8 units are another vocabulary; a UTF-8 config has no such key
    utf8 = TextTokenizer(u16.mergeable_ranks, u16.pattern, u16.special_tokens, name="u16")
    assert utf8.fingerprint != u16.fingerprint
    assert "byte_encoding" not in utf8.config() and "byte_encoding" not in load_default().config()
    utf8.save_pretrained(tmp_path / "u8")
    assert json.loads((tmp_path / "u8" / "config.json").read_text())["format_version"] == 1


def test_what_utf16_mode_refuses(u16, tmp_path):
    with pytest.raises(ConfigError, match="byte_encoding 'latin-1'"):
        TextTokenizer({bytes([b]): b for b in range(256)}, byte_encoding="latin-1")
    with pytest.raises(ConfigError, match="UTF-8 bytes only"):
        u16.to_hf_tokenizer()
    with pytest.raises(ConfigError, match="save_hf_json"):
        train_bpe(None, 300, texts=["ab"], byte_encoding="utf-16-be", save_hf_json=tmp_path / "t.json")
    assert TextTokenizer({bytes([b]): b for b in range(256)}, byte_encoding="UTF_16BE").byte_encoding == "utf-16-be"


def test_training_from_files_reads_lines_like_texts(tmp_path):
    lines = [f"{s.replace(chr(10), ' ')} {i}\n" for i in range(5) for s in MULTILINGUAL]
    (tmp_path / "a.txt").write_text("".join(lines), encoding="utf-8")
    a = train_bpe([tmp_path / "a.txt"], 600, byte_encoding="utf-16-be", show_progress=False)
    b = train_bpe(None, 600, texts=lines, byte_encoding="utf-16-be", show_progress=False)
    assert a.mergeable_ranks == b.mergeable_ranks
    # merges happen on UTF-16 units: the first one joins the high zero byte to an ASCII letter or space
    first = min((t for t in a.mergeable_ranks if len(t) == 2), key=a.mergeable_ranks.get)
    assert first[0] == 0


def test_dropout_in_utf16_mode_round_trips(u16):
    for text in HARD_STR + MULTILINGUAL:
        assert u16.encode(text, dropout=0.0) == u16.encode(text)
        ids = u16.encode(text, dropout=0.3, seed=7)
        assert u16.decode(ids) == text
        assert ids == u16.encode(text, dropout=0.3, seed=7)
