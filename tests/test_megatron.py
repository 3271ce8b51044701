"""``unitok tokenize``'s shards read by Megatron-LM's own code (``megatron-core``, in the test
extra): its ``IndexedDataset`` gives back every document's ids, and its ``GPTDataset`` builds
training samples from the shards as they are, for both id widths (uint16 when the space fits,
int32 for the bundled suite's larger space)."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import unitok
from unitok import Image, UniTokenizer
from unitok.data import TokenDataset
from unitok.pipeline import Options, TokenizeConfig, tokenize
from unitok.testing import ToyAudio, ToyImage


@pytest.fixture(scope="module")
def megatron():
    """megatron-core's dataset modules, imported by the tests that use them (not at collection,
    so the rest of the session runs without them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SimpleNamespace(
            indexed=pytest.importorskip("megatron.core.datasets.indexed_dataset"),
            gpt=pytest.importorskip("megatron.core.datasets.gpt_dataset"),
            builder=pytest.importorskip("megatron.core.datasets.blended_megatron_dataset_builder"))


TEXTS = ["The quick brown fox jumps over the lazy dog. " * 6, "Ein Satz auf Deutsch, und noch einer.",
         "多言語のテキストも一つの文書です。", "short", "code: def f(x):\n    return x * 2\n" * 4]


@pytest.fixture(scope="module", params=["toy", "bundled"])
def shards(request, tmp_path_factory):
    """A dataset tokenized by the pipeline: text and pictures with the toy codecs (a space under
    65,536 ids: uint16), or text with the bundled suite (int32)."""
    root = tmp_path_factory.mktemp(request.param)
    lines = [{"id": f"t{i}", "content": [{"text": t}]} for i, t in enumerate(TEXTS)]
    plugins: tuple[str, ...] = ()
    if request.param == "toy":
        suite = root / "suite"
        UniTokenizer(unitok.text.load_default(), {"image": ToyImage(), "audio": ToyAudio()}).save_pretrained(suite)
        plugins = ("unitok.testing",)
        for i in range(3):
            g = torch.Generator().manual_seed(i)
            pixels = torch.randint(0, 256, (3, 24, 40), dtype=torch.uint8, generator=g)
            Image.from_array(pixels).save(root / f"p{i}.png")
            lines.append({"id": f"p{i}", "content": [{"text": f"picture {i}"}, {"image": f"p{i}.png"}]})
    else:
        suite = None
    (root / "docs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = root / "out"
    tokenize(TokenizeConfig([str(root / "docs.jsonl")], out, suite=str(suite) if suite else None, plugins=plugins,
                            progress=False, workers=0, shard_size=4, options=Options(eos=True)))
    index = json.loads((out / "index.json").read_text())
    assert index["dtype"] == ("uint16" if request.param == "toy" else "int32")
    return out, index, unitok.load(suite) if suite else unitok.load()


def test_indexed_dataset_reads_every_document(shards, megatron):
    out, index, _ = shards
    ours = TokenDataset(out)
    n = 0
    for name, count in zip(index["shards"], index["documents_per_shard"]):
        theirs = megatron.indexed.IndexedDataset(str(out / name))
        assert len(theirs) == count
        assert np.dtype(theirs.index.dtype) == np.dtype(index["dtype"])
        for i in range(count):
            doc = ours[n]
            assert np.array_equal(theirs[i].astype(np.int64), doc["ids"]), (name, i)
            part = min(2, len(doc["ids"]) - 1)          # a window inside the document
            assert np.array_equal(theirs.get(i, offset=1, length=part).astype(np.int64), doc["ids"][1:1 + part])
            n += 1
    assert n == len(ours) == index["documents"]


def test_gpt_dataset_builds_samples_from_the_shards(shards, megatron, tmp_path):
    out, index, tok = shards
    assert index["vocab_size"] == len(tok.space)

    class Vocabulary:   # what GPTDataset asks of a tokenizer
        vocab_size = index["vocab_size"]
        eod = tok.space.special("<|eos|>")
        pad = tok.space.special("<|pad|>")
        unique_identifiers = {"class": "unitok"}

    prefixes = [str(out / name) for name in index["shards"]]   # several shards: Megatron blends them
    config = megatron.gpt.GPTDatasetConfig(
        random_seed=0, sequence_length=32, blend=(prefixes, None), split="100,0,0",
        path_to_cache=str(tmp_path / "cache"), tokenizer=Vocabulary(),
        reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False)
    # a blend with a cache folder asks for the process group, as in a Megatron job: one process,
    # rendezvous through a file (no network)
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train, _, _ = megatron.builder.BlendedMegatronDatasetBuilder(
                megatron.gpt.GPTDataset, [6, None, None], lambda: True, config).build()
    finally:
        torch.distributed.destroy_process_group()
    ids = np.concatenate([TokenDataset(out)[i]["ids"] for i in range(index["documents"])])
    allowed = set(ids.tolist())
    assert len(train) > 0
    for i in range(len(train)):
        sample = train[i]
        tokens, labels = sample["tokens"].numpy(), sample["labels"].numpy()
        assert tokens.shape == labels.shape == (32,)
        assert np.array_equal(tokens[1:], labels[:-1])                    # next-token targets
        assert set(tokens.tolist()) <= allowed                            # nothing but our ids
