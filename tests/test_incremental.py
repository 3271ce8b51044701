"""Incremental decoding (``unitok.lm.incremental``): parts come out as soon as they are defined and
the final items equal what ``tok.decode`` gives for the whole sequence."""

import random

import numpy as np
import pytest
import torch

import unitok
from unitok import TokenSequenceError, UniTokenizer
from unitok.lm.incremental import IncrementalDecoder
from unitok.testing import ToyAudio, ToyImage, ToyImageConfig

from test_constraint import ToyVideo, sample


@pytest.fixture(scope="module")
def text():
    return unitok.text.load_default()


def run(dec, ids):
    updates = [u for t in ids for u in dec.push(t)]
    return updates + dec.close()


def test_previews_per_scale_and_frame_then_the_same_parts_as_decode(text):
    tok = UniTokenizer(text, {"image": ToyImage(ToyImageConfig(scales=(4, 2))), "video": ToyVideo(),
                              "audio": ToyAudio()})
    img = unitok.Image.from_array(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8))
    seq = tok.encode(["a caption", "two", img, "after"], bos=True, eos=True)
    updates = run(IncrementalDecoder(tok), seq.ids)
    finals = [u.item for u in updates if u.final]
    expected = tok.decode(seq)
    assert len(finals) == len(expected) and finals[0] == expected[0] and finals[-1] == expected[-1]
    assert torch.equal(finals[2].pixels, expected[2].pixels)
    previews = [u for u in updates if not u.final]
    assert [u.modality for u in previews] == ["image", "image"] and all(u.index == 2 for u in previews)
    # a video of 3 latent frames: a preview after each of the first two
    g = tok.constraint(video=(3, 16, 16), modalities=["video"], max_text_tokens=0)
    ids = sample(g, random.Random(0), structure=1.0)
    updates = [u for u in run(IncrementalDecoder(tok, g), ids) if u.index == 0]   # the first video
    assert [u.final for u in updates] == [False, False, True]
    final = updates[-1].item
    assert all(np.array_equal(a, b) for f, e in zip(final, tok.decode(ids)[0]) for a, b in zip(f, e))


def test_audio_streams_frame_by_frame():
    tok = unitok.load()
    if not tok.media["audio"].cfg.causal:
        pytest.skip("the bundled audio codec is not causal")
    g = tok.constraint(audio_seconds=0.1, modalities=["audio"], max_text_tokens=0)
    ids = sample(g, random.Random(0), structure=1.0)
    updates = [u for u in run(IncrementalDecoder(tok, g), ids) if u.index == 0]   # the first sound
    chunks = [u.item for u in updates if not u.final]
    assert len(chunks) > 1 and all(c.sample_rate == tok.media["audio"].sample_rate for c in chunks)
    final = updates[-1].item
    assert torch.equal(final.samples, tok.decode(ids)[0].samples)
    streamed = torch.cat([c.samples for c in chunks], -1)
    n = min(streamed.shape[-1], final.samples.shape[-1])
    assert torch.allclose(streamed[..., :n], final.samples[..., :n], atol=1e-4)


def test_refuses_what_the_constraint_refuses(text):
    tok = UniTokenizer(text, {"image": ToyImage()})
    dec = IncrementalDecoder(tok)
    dec.push(tok.space.special("<|image|>"))
    with pytest.raises(TokenSequenceError, match="position 1"):
        dec.push(5)
