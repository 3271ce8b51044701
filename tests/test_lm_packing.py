"""unitok.data.Packer: documents packed into fixed-length torch rows whose labels, positions and
attention structure are those of each document, never crossing a document boundary."""

import numpy as np
import pytest
import torch

import unitok
from unitok import ConfigError, UniTokenizer, lm
from unitok.data import Packer
from unitok.testing import ToyAudio, ToyAudioConfig, ToyImage


@pytest.fixture(scope="module")
def tok():
    return UniTokenizer(unitok.text.load_default(), {"image": ToyImage(), "audio": ToyAudio(ToyAudioConfig(layout="delay"))})


@pytest.fixture(scope="module")
def items(tok):
    g = torch.Generator().manual_seed(0)
    out = []
    for k in range(6):
        img = unitok.Image.from_array(torch.randint(0, 256, (3, 8 + 4 * k, 16), generator=g, dtype=torch.uint8))
        seq = tok.encode([f"doc {k}", img, unitok.Audio(torch.rand(1, 100 + 80 * k, generator=g) - 0.5, 8000)],
                         bos=True, eos=True)
        out.append({"id": str(k), "ids": seq.ids, "groups": seq.groups, "spans": seq.spans})   # as TokenDataset gives
    return out


def _docs(batch):
    """(row, start, stop) of every document piece in a packed batch."""
    for r, row in enumerate(batch["documents"].numpy()):
        for d in np.unique(row[row >= 0]):
            where = np.flatnonzero(row == d)
            yield r, where[0], where[-1] + 1


def test_mtp_labels_are_a_shift_that_stops_at_document_boundaries(tok, items):
    batch = Packer(64, tok=tok, depth=3, masked=False)(items)
    ids, docs, labels = batch["ids"].numpy(), batch["documents"].numpy(), batch["labels"].numpy()
    assert ids.shape[1] == 64 and labels.shape == (len(ids), 3, 64)
    for k in (1, 2, 3):     # Megatron's MTP shift: roll by k, -100 where the target is in another document
        same = (np.roll(docs, -k, axis=1) == docs) & (docs >= 0)
        same[:, -k:] = False
        assert np.array_equal(np.where(same, np.roll(ids, -k, axis=1), -100), labels[:, k - 1])


def test_a_long_document_continues_on_the_next_row(tok, items):
    batch = Packer(16, tok=tok)(items[:1])
    meta = lm.annotate(items[0], tok=tok)
    n = len(meta)
    assert batch["ids"].shape == (-(-n // 16), 16)
    assert np.array_equal(batch["ids"].numpy().reshape(-1)[:n], meta.ids)
    assert np.array_equal(batch["labels"].numpy().reshape(-1)[:n], lm.labels(meta, masked=True))


def test_headers_false_drops_header_targets_and_their_loss(tok, items):
    """headers=False: a model always given the shape learns no header tokens: neither the loss mask
    nor the (masked) labels ask it to predict them."""
    meta = lm.annotate(items[0], tok=tok)
    header = np.flatnonzero(meta.role == 3)
    assert len(header)
    for headers in (True, False):
        batch = Packer(512, tok=tok, headers=headers)(items[:1])
        labels, loss = batch["labels"][0].numpy(), batch["loss_mask"][0].numpy()
        assert loss[header].all() == headers
        assert (labels[header - 1] != -100).all() == headers and ((labels[header - 1] == -100).all() != headers)
        assert np.array_equal(labels[:len(meta)], lm.labels(meta, masked=True, headers=headers, tok=tok))


def test_rows_hold_each_documents_metadata(tok, items):
    packer = Packer(200, tok=tok, convention="next_group", mode="mrope")
    batch = packer(items)
    assert batch["positions"].dtype == torch.int64 and batch["ids"].shape[1] == 200
    pieces = list(_docs(batch))
    assert len(pieces) == len(items)      # every document fits whole here
    for (r, a, b), item in zip(pieces, items):
        meta = lm.annotate(item, tok=tok)
        assert np.array_equal(batch["ids"][r, a:b].numpy(), meta.ids)
        assert np.array_equal(batch["blocks"][r, a:b].numpy(), meta.blocks)
        assert np.array_equal(batch["positions"][r, a:b].numpy(), lm.positions(meta, "mrope"))
        assert np.array_equal(batch["labels"][r, a:b].numpy(), lm.labels(meta, convention="next_group", masked=True))
        assert np.array_equal(batch["loss_mask"][r, a:b].numpy(), lm.loss_mask(meta))
        parents = batch["parents"][r, a:b].numpy()
        assert np.array_equal(parents, np.where(meta.parents >= 0, meta.parents + a, -1))
    # block-diagonal over documents: nothing crosses a boundary
    mask = lm.dense_mask(batch["blocks"], batch["documents"])
    r, a, b = pieces[1]
    assert not mask[r, a:b, :a].any() and mask[r, a:b, a:b].any()
    pad = batch["documents"] < 0
    assert (batch["labels"][pad] == -100).all() and not batch["loss_mask"][pad].any()


def test_works_in_dataloader_workers(tok, items):
    loader = torch.utils.data.DataLoader(items, batch_size=3, num_workers=1, collate_fn=Packer(128, tok=tok))
    batches = list(loader)
    direct = [Packer(128, tok=tok)(items[:3]), Packer(128, tok=tok)(items[3:])]
    for got, want in zip(batches, direct):
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


def test_bad_settings():
    with pytest.raises(ConfigError, match="length"):
        Packer(0)
    with pytest.raises(ConfigError, match="mode"):
        Packer(8, mode="rope")
