"""BPE-dropout (``encode(text, dropout=p, seed=s)``): p=0 is plain BPE (and HF ``tokenizers``), every
sample decodes back to its text, a seed fixes the ids, and ``unitok tokenize --bpe-dropout`` writes
the same shards whatever the worker count."""

from __future__ import annotations

import json

import numpy as np
import pytest

import unitok
from test_text import HARD_BYTES, MULTILINGUAL, SPECIAL_LOOKALIKES, _corpus_texts
from unitok import UniTokenizer
from unitok.errors import ConfigError
from unitok.pipeline import Options, TokenizeConfig, tokenize, verify
from unitok.text import TextTokenizer, load_default
from unitok.text.dropout import MergeTable, make_rng, merge_with_dropout, pieces


@pytest.fixture(scope="module")
def tok() -> TextTokenizer:
    return load_default()


def _samples() -> list:
    return MULTILINGUAL + SPECIAL_LOOKALIKES + HARD_BYTES + _corpus_texts()[:2] + [
        "\ud800 lone \udc80 escaped \ud83d\ude00 pair", "nul\x00\x00"]


def _loop(tok, text, p, seed=0, allowed=frozenset()):
    table = MergeTable.of(tok)
    return merge_with_dropout(pieces(tok, text, allowed, table), table, p, make_rng(seed)).tolist()


def test_p0_is_plain_bpe_and_hf_tokenizers(tok):
    hf = tok.to_hf_tokenizer()
    for text in _samples():
        plain = tok.encode(text)
        assert tok.encode(text, dropout=0.0, seed=3) == plain
        assert _loop(tok, text, 0.0) == plain   # the dropout merge loop itself, at p=0
        if isinstance(text, str) and text.isprintable():
            assert hf.encode(text).ids == plain


def test_every_sample_decodes_to_its_text_and_a_seed_fixes_the_ids(tok):
    changed = 0
    for text in _samples():
        ids = tok.encode(text, dropout=0.2, seed=11)
        if isinstance(text, bytes):
            assert tok.decode_bytes(ids) == text
        else:
            assert tok.decode(ids) == tok.decode(tok.encode(text))
        assert tok.encode(text, dropout=0.2, seed=11) == ids
        changed += ids != tok.encode(text)
    assert changed >= len(_samples()) // 2
    text = MULTILINGUAL[0]
    assert len({tuple(tok.encode(text, dropout=0.2, seed=s)) for s in range(10)}) > 3
    assert tok.encode(text, dropout=0.1, seed=(4, 2)) == tok.encode(text, dropout=0.1, seed=(4, 2))
    # p=1 removes every merge: single bytes
    assert tok.encode(text, dropout=1.0, seed=0) == [tok.mergeable_ranks[bytes([b])] for b in text.encode()]


def test_more_dropout_gives_more_tokens(tok):
    text = " ".join(MULTILINGUAL)
    counts = [np.mean([len(tok.encode(text, dropout=p, seed=s)) for s in range(3)]) for p in (0.0, 0.1, 0.3, 0.6)]
    assert counts == sorted(counts) and counts[-1] > 1.5 * counts[0]


def test_special_tokens_stay_whole(tok):
    n = tok.n_vocab
    special = TextTokenizer(tok.mergeable_ranks, tok.pattern, {"<|eos|>": n}, name="s")
    text = "one<|eos|>two <|eos|>"
    ids = special.encode(text, allowed_special="all", dropout=0.5, seed=1)
    assert ids.count(n) == 2 and special.decode(ids) == text
    assert n not in special.encode(text, dropout=0.5, seed=1)


def test_tokens_no_merge_builds_are_kept_whole_with_probability_1_minus_p():
    ranks = {bytes([b]): b for b in range(256)} | {b"abc": 256}   # "abc": only a whole pre-token
    tok = TextTokenizer(ranks, name="whole")
    assert tok.encode("abc") == [256] and tok.encode("abc", dropout=0.0) == [256]
    whole = sum(tok.encode("abc", dropout=0.5, seed=s) == [256] for s in range(200))
    assert 70 < whole < 130
    assert tok.encode("abc", dropout=1.0, seed=0) == [97, 98, 99]


def test_id_maps_are_applied(tok):
    ranks = tok.mergeable_ranks
    r2i = np.arange(len(ranks))[::-1].copy()   # ids are reversed ranks
    mapped = TextTokenizer(ranks, tok.pattern, rank_to_id=r2i, name="mapped")
    text = MULTILINGUAL[1]
    assert mapped.encode(text, dropout=0.0) == mapped.encode(text)
    ids = mapped.encode(text, dropout=0.3, seed=5)
    assert mapped.decode(ids) == text
    assert ids == [int(r2i[r]) for r in tok.encode(text, dropout=0.3, seed=5)]


def test_bad_arguments_are_refused(tok):
    for p in (-0.1, 1.5, "0.1"):
        with pytest.raises(ConfigError, match="dropout"):
            tok.encode("abc", dropout=p, seed=0)
    with pytest.raises(ConfigError, match="seed"):
        tok.encode("abc", dropout=0.1, seed=-1)
    with pytest.raises(ConfigError, match="seeds for"):
        tok.encode_batch(["a", "b"], dropout=0.1, seed=[1])
    with pytest.raises(ConfigError, match="bpe_dropout"):
        Options(bpe_dropout=2.0)


def test_batches_and_suites_use_the_seed_of_each_text(tok):
    texts = MULTILINGUAL[:5]
    batch = tok.encode_batch(texts, dropout=0.2, seed=9, num_threads=2)
    assert batch == [tok.encode(t, dropout=0.2, seed=(9, i)) for i, t in enumerate(texts)]
    suite = UniTokenizer(tok, {})
    docs = [[texts[0], texts[1]], texts[2]]
    seqs = suite.encode_batch(docs, dropout=0.2, seed=9)
    for i, (doc, seq) in enumerate(zip(docs, seqs)):
        again = suite.encode(doc, dropout=0.2, seed=(9, i))
        assert np.array_equal(seq.ids, again.ids)
        assert suite.decode(seq) == (doc if isinstance(doc, list) else [doc])
    # a one-text document takes the seed as it is: its text ids are TextTokenizer.encode's
    text_ids = tok.encode(texts[2], dropout=0.2, seed=4)
    assert suite.text.decode(text_ids) == texts[2]
    assert len(suite.encode(texts[2], dropout=0.2, seed=4).ids) == len(suite.encode(texts[2]).ids) - len(
        tok.encode(texts[2])) + len(text_ids)
    assert not np.array_equal(suite.encode(texts[0], dropout=0.3, seed=1).ids, suite.encode(texts[0]).ids)


def test_tokenize_shards_are_reproducible_whatever_the_worker_count(tmp_path, tok):
    suite = tmp_path / "suite"
    UniTokenizer(tok, {}).save_pretrained(suite)
    texts = tmp_path / "texts"
    texts.mkdir()
    for i, t in enumerate(MULTILINGUAL):
        (texts / f"t{i:02d}.txt").write_text(t, encoding="utf-8")

    def run(out, workers, **options):
        tokenize(TokenizeConfig([str(texts)], tmp_path / out, suite=str(suite), shard_size=4, workers=workers,
                                options=Options(**options), progress=False))
        return {p.name: p.read_bytes() for p in sorted((tmp_path / out).iterdir())
                if p.suffix in (".bin", ".idx", ".npy")}

    one = run("one", 0, bpe_dropout=0.2, seed=5)
    assert one == run("two", 2, bpe_dropout=0.2, seed=5)
    assert one != run("other_seed", 0, bpe_dropout=0.2, seed=6)
    assert one != run("plain", 0)
    run_json = json.loads((tmp_path / "one" / "run.json").read_text())
    assert run_json["options"]["bpe_dropout"] == 0.2 and run_json["options"]["seed"] == 5
    assert "bpe_dropout" not in json.loads((tmp_path / "plain" / "run.json").read_text())["options"]
    report = verify(tmp_path / "one", unitok.load(suite), sample=-1)
    assert report.ok, report.problems
