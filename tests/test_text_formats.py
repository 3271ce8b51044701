"""Foreign text vocabularies against the reference: HF ``tokenizers`` itself.

Every tokenizer.json here is built in the test with HF ``tokenizers`` (tiny BPE models trained on a
small multilingual text, with the pre-tokenizers, normalizers and ``ignore_merges`` of real
vocabularies), and unitok's ids must equal HF's on a varied text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unitok.errors import ConfigError
from unitok.text import DEFAULT_PATTERN, TextTokenizer, train_bpe
from unitok.text.formats import byte_to_unicode

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers  # noqa: E402

CL100K = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN = CL100K.replace(r"\p{N}{1,3}", r"\p{N}")
# DeepSeek-V3: digits, then CJK runs, then words/punctuation, then bytes without a regex.
DEEPSEEK_SPLITS = [
    r"\p{N}{1,3}",
    "[一-龥\u3040-ゟ゠-ヿ]+",
    r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
]

CORPUS = [
    "The quick brown fox doesn't jump over the lazy dog; it's 2024 and the fox is 3.5 years old.",
    "We'll see: THEY'RE here, I'M sure, you'VE got 1234567 items and 42 boxes at 12:45.",
    "Die Straßenbahn fährt um 12:45 Uhr ab. Größere Änderungen müssen wir später besprechen.",
    "L'été dernier, nous sommes allés à Besançon ; c'était très agréable, n'est-ce pas ?",
    "東京の天気は晴れです。明日は雨が降るかもしれません。カタカナとひらがなも混ざっています。",
    "今天的天气很好，我们去公园散步吧。這是繁體中文的句子。",
    "Съешь же ещё этих мягких французских булок, да выпей чаю. ΣΟΦΙΑ σοφία ΟΔΟΣ.",
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "Family: 👨‍👩‍👧‍👦, thumbs: 👍🏽, flag: 🇫🇷, heart: ❤️, keycap: 1️⃣",
]
# Held-out text: digit runs, contractions in both cases, CJK, emoji, whitespace runs, control
# characters, compatibility characters (ligatures, full-width, superscripts) and combining marks.
VARIED = [
    "In 2024, 1234567 people paid $3.50 (or 12,345.678 yen); call 555-0199 x12 at 00:07.",
    "It's DON'T we'll I'M they'RE you've He'd ſ'S 'LL 'll",
    "Combining: e\u0301 a\u0300 n\u0303 vs é à ñ; Hangul 한국어 \u1100\u1161; ﬁnance ﬀ Ⅻ ² ½ ＡＢＣ１２３",
    "東京タワー 2024年12月31日 今天很好 這是",
    "tabs\t\tand    spaces\n\n\n  and\r\nCRLF\rends\u2028sep\u00a0nbsp\u3000ideographic   ",
    "control \x00\x01\x1f bytes, bell \x07 and DEL \x7f; emoji 👍🏽🇫🇷❤️1️⃣ and ΟΔΟΣ σοφία",
    "x=[1,22,333,4444,55555]; print(f'{x!r}')  # comment ... --> <== ===",
    "   leading spaces and trailing   ",
    "",
] + CORPUS


def _training_lines() -> list[str]:
    return [f"{line} {i}" for i in range(6) for line in CORPUS]


def _hf_bpe(pre_tokenizer, normalizer=None, vocab_size: int = 700) -> Tokenizer:
    """A tiny HF byte-level BPE trained on CORPUS."""
    hf = Tokenizer(models.BPE())
    if normalizer is not None:
        hf.normalizer = normalizer
    hf.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    hf.train_from_iterator(_training_lines(), trainer)
    return hf


def _split_then_bytes(*regexes: str):
    return pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in regexes]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )


def _save(hf: Tokenizer | dict, path: Path) -> Path:
    data = json.loads(hf.to_str()) if isinstance(hf, Tokenizer) else hf
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _assert_same_ids(ours: TextTokenizer, theirs: Tokenizer, texts=VARIED) -> None:
    for text in texts:
        assert ours.encode(text) == theirs.encode(text, add_special_tokens=False).ids, repr(text[:60])


def _with_whole_piece_tokens(hf: Tokenizer) -> dict:
    """The tokenizer.json of ``hf`` plus, as tokens without merges, every held-out pre-token
    that BPE splits into three or more tokens: no merge can build those (BPE stops short of
    them), so only a whole-piece lookup (``ignore_merges``) ever emits them."""
    data = json.loads(hf.to_str())
    vocab = data["model"]["vocab"]
    for text in VARIED:
        for piece, _ in hf.pre_tokenizer.pre_tokenize_str(text):
            if piece not in vocab and len(hf.model.tokenize(piece)) >= 3:
                vocab[piece] = len(vocab)
    return data


# ------------------------------------------------------------------------------------------------
# ignore_merges


@pytest.fixture(scope="module")
def default_hf() -> Tokenizer:
    return _hf_bpe(_split_then_bytes(DEFAULT_PATTERN))


@pytest.mark.parametrize("ignore_merges", [False, True])
def test_ignore_merges_flag_gives_hf_ids(default_hf, tmp_path, ignore_merges):
    data = _with_whole_piece_tokens(default_hf)
    data["model"]["ignore_merges"] = ignore_merges
    path = _save(data, tmp_path / "tokenizer.json")
    theirs = Tokenizer.from_file(str(path))
    ours = TextTokenizer.from_hf_tokenizer_json(path)
    assert ours.ignore_merges is ignore_merges
    _assert_same_ids(ours, theirs)
    # the flag matters on this vocabulary: the two settings give different ids somewhere
    other = json.loads(path.read_text(encoding="utf-8"))
    other["model"]["ignore_merges"] = not ignore_merges
    flipped = Tokenizer.from_str(json.dumps(other))
    assert any(flipped.encode(t).ids != theirs.encode(t).ids for t in VARIED)

    # saved and reloaded with the flag; the flag is part of the fingerprint
    again = TextTokenizer.from_pretrained(ours.save_pretrained(tmp_path / "saved"))
    assert again.fingerprint == ours.fingerprint and again.ignore_merges is ignore_merges
    _assert_same_ids(again, theirs)
    assert ours.fingerprint != TextTokenizer(
        ours.mergeable_ranks, ours.pattern, ours.special_tokens, ignore_merges=not ignore_merges
    ).fingerprint
    # exported back to HF with the same ids, and lossless on invalid UTF-8
    _assert_same_ids(ours, ours.to_hf_tokenizer())
    raw = bytes(range(256)) + "日本".encode()[:-1]
    assert ours.decode_bytes(ours.encode(raw)) == raw


def _tiktoken_style_json(tok: TextTokenizer) -> dict:
    """A tokenizer.json the way Llama-3's was converted from tiktoken ranks: every split of a
    token into two tokens is a merge, merges grouped by the token's rank, ignore_merges on."""
    ranks = tok.mergeable_ranks
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        local = [(token[:i], token[i:]) for i in range(1, len(token))
                 if token[:i] in ranks and token[i:] in ranks]
        merges += sorted(local, key=lambda lr: (ranks[lr[0]], ranks[lr[1]]))
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": tok.pattern}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": None, "decoder": {"type": "ByteLevel", "add_prefix_space": True,
                                             "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": True,
                  "vocab": {byte_to_unicode(t): r for t, r in ranks.items()},
                  "merges": [[byte_to_unicode(a), byte_to_unicode(b)] for a, b in merges]},
    }


@pytest.fixture(scope="module", params=["cl100k", "qwen"])
def tiktoken_style(request) -> TextTokenizer:
    """A tiktoken-style vocabulary: trained ranks plus tokens that no merge builds (all 3-digit
    groups and some whole words appended at the end, as cl100k and Qwen have them)."""
    pattern = CL100K if request.param == "cl100k" else QWEN
    tok = train_bpe(None, 700, pattern, texts=_training_lines(), show_progress=False)
    ranks = tok.mergeable_ranks
    extra = [f"{n:03d}" for n in range(1000)] + [" jumped", " quickly", "Größere", " булок", "ALLÉS"]
    for word in extra:
        ranks.setdefault(word.encode(), len(ranks))
    return TextTokenizer(ranks, pattern, name=request.param)


def test_tiktoken_converted_json_loads_with_hf_ids(tiktoken_style, tmp_path):
    path = _save(_tiktoken_style_json(tiktoken_style), tmp_path / "tokenizer.json")
    theirs = Tokenizer.from_file(str(path))
    ours = TextTokenizer.from_hf_tokenizer_json(path)
    assert ours.ignore_merges
    _assert_same_ids(ours, theirs)
    _assert_same_ids(tiktoken_style, theirs)


def test_to_hf_tokenizer_same_ids_on_digit_runs_and_words(tiktoken_style):
    hf = tiktoken_style.to_hf_tokenizer()
    _assert_same_ids(tiktoken_style, hf)
    # a whole-piece-only token, emitted by both (Qwen splits digits one by one)
    assert len(tiktoken_style.encode("999")) == (1 if tiktoken_style.name == "cl100k" else 3)


def test_merges_that_rank_based_bpe_cannot_follow_are_refused(default_hf, tmp_path):
    data = json.loads(default_hf.to_str())
    vocab = data["model"]["vocab"]
    # a token whose two halves are tokens but which no merge builds: HF never makes it (without
    # ignore_merges) while tiktoken would merge the halves
    left, right = "Ġthe", "Ġfox"
    assert left in vocab and right in vocab
    vocab[left + right] = len(vocab)
    path = _save(data, tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="bad.json.*not one of its merges"):
        TextTokenizer.from_hf_tokenizer_json(path)


# ------------------------------------------------------------------------------------------------
# normalizers and successive splits


NORMALIZERS = {
    "nfc": normalizers.NFC(),
    "nfkc": normalizers.NFKC(),
    "nfd_lower": normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase()]),
    "nfkd": normalizers.NFKD(),
    "replace_prepend": normalizers.Sequence(
        [normalizers.Replace("  ", " "), normalizers.Replace(Regex(r"\d+"), "#"),
         normalizers.Prepend("\u2581"), normalizers.Strip(left=False, right=True)]
    ),
}


@pytest.mark.parametrize("kind", sorted(NORMALIZERS))
def test_normalizers_give_hf_ids(kind, tmp_path):
    hf = _hf_bpe(_split_then_bytes(DEFAULT_PATTERN), NORMALIZERS[kind])
    path = _save(hf, tmp_path / "tokenizer.json")
    ours = TextTokenizer.from_hf_tokenizer_json(path)
    assert ours.normalizer
    _assert_same_ids(ours, hf)
    _assert_same_ids(ours, ours.to_hf_tokenizer())
    again = TextTokenizer.from_pretrained(ours.save_pretrained(tmp_path / "saved"))
    assert again.fingerprint == ours.fingerprint
    _assert_same_ids(again, hf)
    plain = TextTokenizer(ours.mergeable_ranks, ours.pattern, ours.special_tokens, name=ours.name)
    assert plain.fingerprint != ours.fingerprint  # the normalizer decides ids


def test_normalizer_leaves_allowed_special_tokens_alone(tmp_path):
    hf = _hf_bpe(_split_then_bytes(DEFAULT_PATTERN), normalizers.Lowercase())
    n = hf.get_vocab_size()
    data = json.loads(hf.to_str())
    data["added_tokens"] = [{"id": n, "content": "<|EOT|>", "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": True}]
    hf = Tokenizer.from_str(json.dumps(data))
    ours = TextTokenizer.from_hf_tokenizer_json(_save(data, tmp_path / "tokenizer.json"))
    text = "Hello<|EOT|>WORLD ΟΔΟΣ"
    assert ours.encode(text, allowed_special="all") == hf.encode(text, add_special_tokens=False).ids
    assert n not in ours.encode(text)  # still plain text unless allowed
    assert ours.decode(ours.encode(text, allowed_special="all")) == "hello<|EOT|>world οδοσ"


def test_deepseek_v3_style_successive_splits(tmp_path):
    hf = _hf_bpe(_split_then_bytes(*DEEPSEEK_SPLITS))
    path = _save(hf, tmp_path / "tokenizer.json")
    ours = TextTokenizer.from_hf_tokenizer_json(path)
    assert ours.splits == tuple(DEEPSEEK_SPLITS[:2])
    _assert_same_ids(ours, hf)
    for text in VARIED:  # the runs the last regex skips (digits, control bytes) are kept
        assert ours.decode(ours.encode(text)) == text
    _assert_same_ids(ours, ours.to_hf_tokenizer())
    again = TextTokenizer.from_pretrained(ours.save_pretrained(tmp_path / "saved"))
    assert again.fingerprint == ours.fingerprint
    _assert_same_ids(again, hf)
    assert ours.encode_batch(VARIED, num_threads=2) == [ours.encode(t) for t in VARIED]


def test_splits_before_gpt2_byte_level(tmp_path):
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    hf = _hf_bpe(pre)
    ours = TextTokenizer.from_hf_tokenizer_json(_save(hf, tmp_path / "tokenizer.json"))
    _assert_same_ids(ours, hf)


def test_unsupported_normalizers_and_splits_are_config_errors(default_hf, tmp_path):
    data = json.loads(default_hf.to_str())
    for normalizer in ({"type": "Precompiled", "precompiled_charsmap": ""},
                       {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "BertNormalizer"}]}):
        path = _save(dict(data, normalizer=normalizer), tmp_path / "norm.json")
        with pytest.raises(ConfigError, match="norm.json: normalizer.*not supported"):
            TextTokenizer.from_hf_tokenizer_json(path)
    pre = json.loads(json.dumps(data["pre_tokenizer"]))
    pre["pretokenizers"][0]["behavior"] = "Removed"
    path = _save(dict(data, pre_tokenizer=pre), tmp_path / "split.json")
    with pytest.raises(ConfigError, match="split.json: pre_tokenizer Split.*Removed"):
        TextTokenizer.from_hf_tokenizer_json(path)


def test_existing_vocabularies_keep_their_config_and_fingerprint(tmp_path):
    tok = train_bpe(None, 400, texts=_training_lines(), show_progress=False)
    cfg = tok.config()
    assert cfg["format_version"] == 1
    assert not {"normalizer", "splits", "ignore_merges"} & set(cfg)


# ------------------------------------------------------------------------------------------------
# real vocabularies available offline


def test_tekken_exports_to_hf_with_identical_ids():
    mistral_common = pytest.importorskip("mistral_common")
    path = Path(mistral_common.__file__).parent / "data" / "tekken_240718.json"
    if not path.exists():
        pytest.skip(f"{path} not found")
    ours = TextTokenizer.from_tekken(path)
    _assert_same_ids(ours, ours.to_hf_tokenizer())


# ------------------------------------------------------------------------------------------------
# training


def test_train_bpe_says_when_the_corpus_is_too_small():
    with pytest.warns(UserWarning, match=r"vocab_size 5000 .* gives only \d+ BPE tokens.*min_frequency=2"):
        tok = train_bpe(None, 5000, texts=CORPUS[:2], show_progress=False)
    assert tok.n_vocab < 5000
