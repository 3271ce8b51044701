"""Text tokenizer: lossless round trips, special tokens, id errors, files, foreign vocabularies,
training. Uses the bundled vocabulary where a real one is needed; trains tiny ones otherwise."""

from __future__ import annotations

import base64
import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unitok.errors import ConfigError, TokenSequenceError
from unitok.text import DEFAULT_PATTERN, TextTokenizer, default_vocab_dir, load_default, train_bpe
from unitok.text.formats import byte_to_unicode, unicode_to_byte

# Short passages in the languages of the bundled corpus, plus code and emoji.
MULTILINGUAL = [
    "The quick brown fox doesn't jump over the lazy dog; it's 2024 and the fox is 3.5 years old.",
    "Die Straßenbahn fährt um 12:45 Uhr ab. Größere Änderungen müssen wir später besprechen.",
    "L'été dernier, nous sommes allés à Besançon ; c'était très agréable, n'est-ce pas ?",
    "東京の天気は晴れです。明日は雨が降るかもしれません。カタカナとひらがなも混ざっています。",
    "今天的天气很好，我们去公园散步吧。這是繁體中文的句子。",
    "Съешь же ещё этих мягких французских булок, да выпей чаю. Москва — столица России.",
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < n; ++i) { total += a[i] * b[i]; }\r\n",
    "Family: 👨‍👩‍👧‍👦, thumbs: 👍🏽, flag: 🇫🇷, heart: ❤️, keycap: 1️⃣",
    "Combining: e\u0301 a\u0300 n\u0303 and precomposed é à ñ; Hangul 한국어 자모 \u1100\u1161",
    "Tabs\tand    spaces\n\n\nand\r\nCRLF line\rends\u2028separator\u00a0nbsp",
]

SPECIAL_LOOKALIKES = [
    "<|endoftext|>",
    "text <|image|> more <|/image|>",
    "[INST] hello [/INST]",
    "<s>hi</s>",
    "<|bos|><|eos|><|pad|>",
]


@pytest.fixture(scope="module")
def tok() -> TextTokenizer:
    return load_default()


@pytest.fixture(scope="module")
def with_specials(tok) -> TextTokenizer:
    n = tok.n_vocab
    return TextTokenizer(
        tok.mergeable_ranks, tok.pattern, {"<|endoftext|>": n, "<|image|>": n + 1}, name="specials"
    )


def _corpus_texts() -> list[str]:
    """Real text available offline everywhere: the Python standard library's sources."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    names = ["argparse.py", "textwrap.py", "json/decoder.py", "csv.py", "difflib.py"]
    return [(stdlib / n).read_text(encoding="utf-8") for n in names if (stdlib / n).exists()]


def _training_lines() -> list[str]:
    lines = [ln for text in _corpus_texts()[:3] for ln in text.splitlines()]
    for i in range(20):
        lines += [f"{s} {i}" for s in MULTILINGUAL]
    return lines


def _heldout_texts() -> list[str]:
    return MULTILINGUAL + SPECIAL_LOOKALIKES + _corpus_texts()[3:]


# ------------------------------------------------------------------------------------------------
# the bundled vocabulary


def test_bundled_vocab_is_a_real_multilingual_vocab(tok):
    assert 32768 <= tok.n_vocab <= 65536
    assert tok.special_tokens == {}
    folder = default_vocab_dir()
    assert sum(p.stat().st_size for p in folder.iterdir()) < 8_000_000
    # Trained on real multilingual text: common words of every language are few tokens.
    for word in ["the", " function", " Datei", " fichier", " файл", "ファイル", "文件", " return"]:
        assert len(tok.encode(word)) == 1, word
    assert load_default() is tok  # loaded once


# ------------------------------------------------------------------------------------------------
# lossless round trips

HARD_BYTES = [
    b"",
    b"\x00",
    b"a\x00b\x00\x00c",
    b"\xff\xfe\xfd",
    b"valid \xc3\xa9 then invalid \xc3 and \xe2\x82 truncated",
    b"\xed\xa0\x80\xed\xb0\x80",  # UTF-16 surrogates encoded as UTF-8 (invalid)
    b"\xc0\xaf overlong slash",
    b"\xf4\x90\x80\x80 beyond U+10FFFF",
    b"line\r\nline\rline\n",
    "👩‍💻 ZWJ sequence".encode(),
    "\U0001f3f3\ufe0f\u200d\U0001f308".encode(),
    bytes(range(256)),
    bytes(range(255, -1, -1)) * 3,
]


@pytest.mark.parametrize("data", HARD_BYTES + [s.encode() for s in MULTILINGUAL + SPECIAL_LOOKALIKES])
def test_bytes_round_trip(tok, data):
    ids = tok.encode(data)
    assert all(0 <= i < tok.n_vocab for i in ids)
    assert tok.decode_bytes(ids) == data
    assert tok.decode(ids).encode("utf-8", "surrogateescape") == data


@pytest.mark.parametrize("text", MULTILINGUAL + SPECIAL_LOOKALIKES)
def test_str_round_trip_and_same_ids_as_bytes(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.encode(text.encode("utf-8")) == ids


def test_surrogate_escaped_str_round_trips(tok):
    raw = b"caf\xe9 \xff ok \xc3"
    text = raw.decode("utf-8", "surrogateescape")
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode_bytes(ids) == raw
    assert ids == tok.encode(raw)


def test_invalid_bytes_do_not_change_the_valid_text_around_them(tok):
    left, right = "Hello world", " and more text"
    ids = tok.encode(left.encode() + b"\xff" + right.encode())
    assert ids[: len(tok.encode(left))] == tok.encode(left)
    assert ids[-len(tok.encode(right)) :] == tok.encode(right)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_any_bytes_round_trip(tok, data):
    assert tok.decode_bytes(tok.encode(data)) == data
    text = data.decode("utf-8", "surrogateescape")
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_any_text_round_trips(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids == tok.encode(text.encode("utf-8"))


def test_other_lone_surrogates_are_kept_as_bytes(tok):
    # U+D800 has no UTF-8 form; it is kept (as its 3 surrogatepass bytes), never dropped.
    ids = tok.encode("a\ud800b")
    assert tok.decode_bytes(ids) == b"a\xed\xa0\x80b"


def test_encode_rejects_non_text(tok):
    with pytest.raises(TypeError, match="str or bytes"):
        tok.encode(123)


def test_encode_batch_matches_encode(tok):
    texts = MULTILINGUAL * 5 + [b"\xff raw \xfe"] + SPECIAL_LOOKALIKES
    expected = [tok.encode(t) for t in texts]
    assert tok.encode_batch(texts) == expected
    assert tok.encode_batch(texts, num_threads=2) == expected
    assert tok.encode_batch(texts, num_threads=1) == expected
    assert tok.encode_batch([]) == []
    with pytest.raises(ValueError, match="num_threads"):
        tok.encode_batch(texts, num_threads=-1)


def _batch_in_child(texts):
    return load_default().encode_batch(texts, num_threads=2)


def test_encode_batch_works_in_a_forked_child(tok):
    import multiprocessing

    tok.encode_batch(MULTILINGUAL, num_threads=2)  # the parent's thread pool exists now
    with multiprocessing.get_context("fork").Pool(1) as pool:
        result = pool.apply_async(_batch_in_child, (MULTILINGUAL,)).get(timeout=30)
    assert result == [tok.encode(t) for t in MULTILINGUAL]


# ------------------------------------------------------------------------------------------------
# special tokens


def test_special_strings_are_plain_text_by_default(with_specials):
    n = with_specials.n_vocab
    for text in SPECIAL_LOOKALIKES:
        ids = with_specials.encode(text)
        assert all(i < n - 2 for i in ids), text
        assert with_specials.decode(ids) == text


def test_special_tokens_when_allowed(with_specials):
    eot, img = with_specials.special_tokens["<|endoftext|>"], with_specials.special_tokens["<|image|>"]
    text = "a<|endoftext|>b <|image|>"
    only_eot = with_specials.encode(text, allowed_special={"<|endoftext|>"})
    assert eot in only_eot and img not in only_eot
    everything = with_specials.encode(text, allowed_special="all")
    assert eot in everything and img in everything
    assert with_specials.encode(text, allowed_special="<|image|>").count(img) == 1
    for ids in (only_eot, everything):
        assert with_specials.decode(ids) == text
    # invalid bytes next to an allowed special
    raw = b"\xff<|endoftext|>\xfe"
    ids = with_specials.encode(raw, allowed_special="all")
    assert eot in ids and with_specials.decode_bytes(ids) == raw
    assert with_specials.encode_batch([text], allowed_special="all") == [everything]


def test_unknown_allowed_special_is_an_error(with_specials):
    with pytest.raises(ValueError, match="<\\|nope\\|>"):
        with_specials.encode("x", allowed_special={"<|nope|>"})


# ------------------------------------------------------------------------------------------------
# decoding ids


def test_out_of_range_ids_name_the_position(tok):
    good = tok.encode("hello")
    with pytest.raises(TokenSequenceError) as err:
        tok.decode(good + [tok.n_vocab] + good)
    assert err.value.position == len(good)
    assert str(tok.n_vocab) in str(err.value)
    with pytest.raises(TokenSequenceError) as err:
        tok.decode_bytes([5, -1])
    assert err.value.position == 1
    with pytest.raises(TokenSequenceError) as err:
        tok.decode([1, 2, 2**40])
    assert err.value.position == 2


def test_decode_accepts_numpy_and_torch(tok):
    import torch

    text = "Arrays and tensors: 123 ✓"
    ids = tok.encode(text)
    assert tok.decode(np.array(ids, dtype=np.int64)) == text
    assert tok.decode(np.array(ids, dtype=np.uint32)) == text
    assert tok.decode(torch.tensor(ids)) == text
    assert tok.decode(tuple(ids)) == text
    assert tok.decode([]) == ""
    with pytest.raises(TokenSequenceError) as err:
        tok.decode(np.array([1, tok.n_vocab + 5]))
    assert err.value.position == 1
    with pytest.raises(TokenSequenceError, match="integers"):
        tok.decode(np.array([1.0, 2.0]))
    with pytest.raises(TokenSequenceError, match="1-D"):
        tok.decode(torch.zeros(2, 2, dtype=torch.long))


# ------------------------------------------------------------------------------------------------
# files


def test_save_and_load_round_trip(tmp_path, with_specials):
    with_specials.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["type"] == "text.bpe"
    assert cfg["n_vocab"] == with_specials.n_vocab
    assert cfg["special_tokens"] == with_specials.special_tokens
    lines = (tmp_path / "vocab.tiktoken").read_text().splitlines()
    assert len(lines) == with_specials.n_vocab - 2
    token, rank = lines[300].split()
    assert with_specials.mergeable_ranks[base64.b64decode(token)] == int(rank)

    loaded = TextTokenizer.from_pretrained(tmp_path)
    assert loaded.fingerprint == with_specials.fingerprint
    assert loaded.config() == with_specials.config()
    for text in MULTILINGUAL:
        assert loaded.encode(text, allowed_special="all") == with_specials.encode(text, allowed_special="all")

    # the same vocabulary read as a plain tiktoken rank file
    plain = TextTokenizer.from_tiktoken_file(
        tmp_path / "vocab.tiktoken", with_specials.pattern, with_specials.special_tokens
    )
    assert plain.fingerprint == with_specials.fingerprint


def test_fingerprint_tracks_what_decides_ids(tok, with_specials):
    assert tok.fingerprint != with_specials.fingerprint
    other_pattern = TextTokenizer(tok.mergeable_ranks, r"\S+|\s+")
    assert other_pattern.fingerprint != tok.fingerprint
    renamed = TextTokenizer(tok.mergeable_ranks, tok.pattern, name="renamed")
    assert renamed.fingerprint == tok.fingerprint
    json.dumps(tok.config())
    assert tok.config()["vocab_sha256"] and tok.config()["kind"] == "byte_level_bpe"


def test_corrupt_or_missing_files_are_config_errors(tmp_path, tok):
    folder = tmp_path / "t"
    tok.save_pretrained(folder)
    vocab = folder / "vocab.tiktoken"
    data = vocab.read_bytes()

    vocab.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ConfigError, match="vocab.tiktoken.*(corrupt|truncated)"):
        TextTokenizer.from_pretrained(folder)

    vocab.unlink()
    with pytest.raises(ConfigError, match="vocab.tiktoken"):
        TextTokenizer.from_pretrained(folder)

    (folder / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json"):
        TextTokenizer.from_pretrained(folder)

    with pytest.raises(ConfigError, match="config.json"):
        TextTokenizer.from_pretrained(tmp_path / "nowhere")

    bad = tmp_path / "bad.tiktoken"
    bad.write_bytes(data[:2000] + b"!!!not-base64 12\n")
    with pytest.raises(ConfigError, match=r"bad\.tiktoken, line \d+"):
        TextTokenizer.from_tiktoken_file(bad, DEFAULT_PATTERN)


def test_vocab_without_all_bytes_is_rejected():
    ranks = {bytes([b]): b for b in range(255)}
    with pytest.raises(ConfigError, match="0xff"):
        TextTokenizer(ranks)


# ------------------------------------------------------------------------------------------------
# mistral tekken


@pytest.fixture(scope="module")
def tekken_pair():
    mistral_common = pytest.importorskip("mistral_common")
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    path = Path(mistral_common.__file__).parent / "data" / "tekken_240911.json"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return TextTokenizer.from_tekken(path), Tekkenizer.from_file(path)


def test_tekken_ids_identical_to_mistral_common(tekken_pair):
    ours, theirs = tekken_pair
    assert ours.n_vocab == theirs.n_words
    texts = MULTILINGUAL + SPECIAL_LOOKALIKES + _corpus_texts()[:2] + ["\n".join(MULTILINGUAL)]
    for text in texts:
        assert ours.encode(text) == theirs.encode(text, bos=False, eos=False), text[:40]
        assert ours.decode(ours.encode(text)) == text


def test_tekken_special_tokens(tekken_pair):
    ours, theirs = tekken_pair
    assert ours.special_tokens["[INST]"] == theirs.get_special_token("[INST]")
    assert ours.special_tokens["<s>"] == theirs.bos_id
    ids = ours.encode("[INST] hi [/INST]")
    assert ours.special_tokens["[INST]"] not in ids  # plain text unless allowed
    ids = ours.encode("[INST] hi [/INST]", allowed_special={"[INST]", "[/INST]"})
    assert ids[0] == theirs.get_special_token("[INST]")
    assert ids[-1] == theirs.get_special_token("[/INST]")
    data = bytes(range(256))
    assert ours.decode_bytes(ours.encode(data)) == data


# ------------------------------------------------------------------------------------------------
# training and HF tokenizer.json


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny vocabulary trained with train_bpe, and HF's own tokenizer.json of the same run."""
    hf_json = tmp_path_factory.mktemp("hf") / "tokenizer.json"
    tok = train_bpe(None, 1200, texts=_training_lines(), show_progress=False, save_hf_json=hf_json)
    return tok, hf_json


def test_tiny_training_run(trained):
    tok, _ = trained
    assert tok.n_vocab == 1200
    ranks = tok.mergeable_ranks
    assert all(ranks[bytes([b])] == b for b in range(256))  # bytes first, by value
    assert sorted(ranks.values()) == list(range(1200))
    for text in _heldout_texts():
        assert tok.decode(tok.encode(text)) == text
    # it learned something: common code words are single tokens
    assert len(tok.encode(" return")) == 1
    with_specials = train_bpe(None, 400, texts=_training_lines()[:200], special_tokens=["<|eot|>"],
                              show_progress=False)
    assert with_specials.special_tokens == {"<|eot|>": 399}
    with pytest.raises(ConfigError, match="vocab_size"):
        train_bpe(None, 100, texts=["abc"], show_progress=False)


def test_trained_ids_equal_hf_tokenizers_on_heldout_text(trained):
    from tokenizers import Tokenizer

    tok, hf_json = trained
    hf = Tokenizer.from_file(str(hf_json))
    vocab = json.loads(hf_json.read_text())["model"]["vocab"]
    ours_of_hf = {idx: tok.mergeable_ranks[unicode_to_byte(s)] for s, idx in vocab.items()}
    for text in _heldout_texts():
        hf_ids = [ours_of_hf[i] for i in hf.encode(text, add_special_tokens=False).ids]
        assert tok.encode(text) == hf_ids, text[:40]


def test_hf_tokenizer_json_loads_with_identical_ids(trained):
    from tokenizers import Tokenizer

    _, hf_json = trained
    hf = Tokenizer.from_file(str(hf_json))
    tok = TextTokenizer.from_hf_tokenizer_json(hf_json)
    assert tok.rank_to_id is None  # HF ids follow merge order: ids serve as ranks directly
    assert tok.pattern == DEFAULT_PATTERN
    for text in _heldout_texts():
        ids = tok.encode(text)
        assert ids == hf.encode(text, add_special_tokens=False).ids, text[:40]
        assert tok.decode(ids) == text


def test_hf_tokenizer_json_with_ids_out_of_merge_order(trained, tmp_path):
    """Ids shuffled against merge order: ranks come from the merges, ids through a lookup."""
    from tokenizers import Tokenizer

    _, hf_json = trained
    data = json.loads(hf_json.read_text())
    vocab = data["model"]["vocab"]
    n = len(vocab)
    perm = np.random.default_rng(0).permutation(n)
    data["model"]["vocab"] = {s: int(perm[i]) for s, i in vocab.items()}
    data["added_tokens"] = [{"id": n, "content": "<|eot|>", "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": True}]
    data["model"]["vocab"]["<|eot|>"] = n
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data))

    hf = Tokenizer.from_file(str(path))
    tok = TextTokenizer.from_hf_tokenizer_json(path)
    assert tok.rank_to_id is not None
    assert tok.special_tokens == {"<|eot|>": n} and tok.n_vocab == n + 1
    for text in _heldout_texts()[:8]:
        assert tok.encode(text) == hf.encode(text, add_special_tokens=False).ids
    eot_text = "a<|eot|>b"
    assert tok.encode(eot_text, allowed_special="all") == hf.encode(eot_text, add_special_tokens=False).ids
    assert tok.decode(tok.encode(eot_text, allowed_special="all")) == eot_text
    raw = bytes(range(256))
    assert tok.decode_bytes(tok.encode(raw)) == raw

    tok.save_pretrained(tmp_path / "saved")
    again = TextTokenizer.from_pretrained(tmp_path / "saved")
    assert again.fingerprint == tok.fingerprint
    assert again.encode(MULTILINGUAL[0]) == tok.encode(MULTILINGUAL[0])
    with pytest.raises(TokenSequenceError) as err:
        tok.decode([1, 2, n + 1])
    assert err.value.position == 2


def test_gpt2_style_byte_level_pre_tokenizer(trained, tmp_path):
    from tokenizers import Tokenizer

    _, hf_json = trained
    data = json.loads(hf_json.read_text())
    data["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                             "use_regex": True}
    path = tmp_path / "gpt2ish.json"
    path.write_text(json.dumps(data))
    hf = Tokenizer.from_file(str(path))
    tok = TextTokenizer.from_hf_tokenizer_json(path)
    for text in _heldout_texts()[:11]:
        assert tok.encode(text) == hf.encode(text, add_special_tokens=False).ids, text[:40]


def test_unsupported_hf_files_are_config_errors(trained, tmp_path):
    _, hf_json = trained
    data = json.loads(hf_json.read_text())

    wordpiece = dict(data, model={"type": "WordPiece", "vocab": {"a": 0}})
    (tmp_path / "wp.json").write_text(json.dumps(wordpiece))
    with pytest.raises(ConfigError, match="wp.json.*WordPiece"):
        TextTokenizer.from_hf_tokenizer_json(tmp_path / "wp.json")

    normalized = dict(data, normalizer={"type": "BertNormalizer", "lowercase": True})
    (tmp_path / "bert.json").write_text(json.dumps(normalized))
    with pytest.raises(ConfigError, match="normalizer"):
        TextTokenizer.from_hf_tokenizer_json(tmp_path / "bert.json")

    (tmp_path / "cut.json").write_text(hf_json.read_text()[:5000])
    with pytest.raises(ConfigError, match="cut.json"):
        TextTokenizer.from_hf_tokenizer_json(tmp_path / "cut.json")


def test_to_hf_tokenizer_gives_the_same_ids(trained):
    tok, _ = trained
    hf = tok.to_hf_tokenizer()
    for text in _heldout_texts():
        assert hf.encode(text, add_special_tokens=False).ids == tok.encode(text), text[:40]


def test_byte_alphabet_is_a_bijection():
    table = byte_to_unicode(bytes(range(256)))
    assert len(set(table)) == 256 and " " not in table
    assert unicode_to_byte(table) == bytes(range(256))
