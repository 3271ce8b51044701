"""Generation constraints (``tok.constraint()``, ``unitok.lm.constraint``): every document the
automaton allows and calls done decodes with ``strict=True``, for every layout, for interleaved
documents, with fixed and free headers, and through the ``transformers`` adapters."""

import random
import time

import numpy as np
import pytest
import torch

import unitok
from unitok import ConfigError, TokenSequenceError, UniTokenizer
from unitok.layout import FrameScale, Raster
from unitok.lm.constraint import mask_logits
from unitok.testing import ToyAudio, ToyAudioConfig, ToyImage, ToyImageConfig


class RowImage(ToyImage):
    """ToyImage laid out in rows ending with <|eol|> (Raster with eol, one group per row)."""

    def layout(self, header):
        return Raster(*self._grid(header), group="row", eol=True)


class ToyVideo(ToyImage):
    """A toy video: two scales per latent frame, frames ending with <|eof|>; decodes to its codes."""

    modality = "video"
    header_fields = ("frames", "height", "width")

    @property
    def codebook_sizes(self):
        return [8, 8]

    def layout(self, header):
        h, w = self._grid(header)
        return FrameScale(header["frames"], ((1, 1), (h, w)), (0, 1), eof=True)

    def decode_item(self, header, codes):
        return codes


@pytest.fixture(scope="module")
def text():
    return unitok.text.load_default()


def sample(g, rng, *, structure=0.5, limit=100_000):
    """One document drawn uniformly from the allowed ids (what uniform random logits give), but
    choosing a non-text id with probability ``structure`` when one is allowed (else documents are
    nearly all text). ``rng``: a ``random.Random``."""
    s, ids = g.start(), []
    text_size = g.space.text_vocab_size
    while len(ids) < limit:
        ranges = g.allowed_ranges(s)
        if not ranges:
            break
        other = [r for r in ranges if r[0] >= text_size]
        if other and rng.random() < structure:
            ranges = other
        a, b = ranges[0] if len(ranges) == 1 else rng.choices(ranges, weights=[b - a for a, b in ranges])[0]
        t = rng.randrange(a, b)
        ids.append(t)
        s = g.advance(s, t)
        if t == g.eos_id:
            break
    assert g.done(s), f"sampling stopped in an open state: {s}"
    return ids


def check_many(tok, g, n, seed=0, **kw):
    rng = random.Random(seed)
    kinds = set()
    for _ in range(n):
        ids = sample(g, rng, **kw)
        parts = tok.decode(ids, strict=True)
        assert parts.repairs == []
        assert len(ids) <= g.max_tokens
        kinds.update(type(p).__name__ for p in parts)
    return kinds


LAYOUTS = {
    "next_scale": {"image": ToyImage(ToyImageConfig(scales=(1, 2)))},
    "raster": {"image": ToyImage(ToyImageConfig(layout="raster"))},
    "raster_eol": {"image": RowImage(ToyImageConfig(layout="raster"))},
    "frame_scale": {"video": ToyVideo()},
    "codec_depth": {"audio": ToyAudio()},
    "delay": {"audio": ToyAudio(ToyAudioConfig(layout="delay"))},
}
SHAPES = {"image": (20, 30), "video": (3, 16, 24), "audio": {"frames": 4}}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_layout_decodes_strictly(text, name):
    media = LAYOUTS[name]
    tok = UniTokenizer(text, media)
    g = tok.constraint(**{m: SHAPES[m] for m in media}, max_text_tokens=2)
    kinds = check_many(tok, g, 1000)
    assert {"Image", "Audio", "list"} & kinds   # media came out, not only text


def test_interleaved_documents_decode_strictly(text):
    tok = UniTokenizer(text, {"image": ToyImage(), "video": ToyVideo(),
                              "audio": ToyAudio(ToyAudioConfig(layout="delay"))})
    g = tok.constraint(image=(16, 16), video=(2, 8, 8), audio={"frames": 3}, max_text_tokens=6, max_tokens=120)
    kinds = check_many(tok, g, 1000, structure=0.3)
    assert {"str", "Image", "Audio", "list"} <= kinds


def test_free_headers_stay_within_the_limits(text):
    tok = UniTokenizer(text, {"image": ToyImage(), "audio": ToyAudio()})
    g = tok.constraint(max_text_tokens=3, max_tokens=150)
    rng = random.Random(1)
    sizes = set()
    for _ in range(200):
        ids = sample(g, rng)
        assert len(ids) <= 150
        for p in tok.decode(ids, strict=True):
            if isinstance(p, unitok.Image):
                sizes.add((p.height, p.width))
    assert len(sizes) > 5   # the shapes vary


def test_bundled_suite_small_shapes():
    tok = unitok.load()
    g = tok.constraint(image=(32, 32), video=(3, 32, 32, 24, 1), audio_seconds=0.1, max_text_tokens=3, max_tokens=300)
    assert check_many(tok, g, 12, structure=0.7) >= {"Image", "Video", "Audio"}
    # free headers under the codecs' own limits (small MediaLimits keep the sampled media small)
    small = tok.with_limits(unitok.media.MediaLimits(max_pixels=64 * 64, max_frames=4, max_seconds=0.2))
    g = small.constraint(max_text_tokens=2, max_tokens=400)
    for ids in (sample(g, random.Random(seed), structure=0.7) for seed in range(8)):
        small.decode(ids, strict=True)


def test_audio_seconds_must_be_a_positive_finite_number():
    tok = unitok.load()
    for bad in (0, -1, float("nan"), float("inf"), "3", True):
        with pytest.raises(ConfigError, match="audio_seconds must be a positive, finite number"):
            tok.constraint(audio_seconds=bad)


def test_fixed_shape_forces_the_header_and_the_body(text):
    tok = UniTokenizer(text, {"image": ToyImage()})
    g = tok.constraint(image=(20, 30))
    s = g.advance(g.start(), tok.space.special("<|image|>"))
    header = tok.space.dim_ids([20, 30], tok.media["image"].header_widths())
    for t in header:
        assert np.flatnonzero(g.allowed(s)).tolist() == [t]
        s = g.advance(s, t)
    layout = tok.media["image"].layout({"height": 20, "width": 30})
    for level in layout.expected_levels:
        r = next(r for r in tok.space.ranges if r.modality == "image" and r.level == level)
        assert g.allowed_ranges(s) == [(r.start, r.stop)]
        s = g.advance(s, r.start)
    assert g.allowed_ids(s).tolist() == [tok.space.special("<|/image|>")]


def test_encoded_documents_are_accepted(text):
    tok = UniTokenizer(text, {"image": ToyImage(), "audio": ToyAudio()})
    img = unitok.Image.from_array(torch.randint(0, 256, (3, 20, 33), dtype=torch.uint8))
    aud = unitok.Audio(torch.randn(1, 400) * 0.1, 8000)
    seq = tok.encode(["a caption", "more", img, aud, "end"], bos=True, eos=True)
    g = tok.constraint()
    s = g.feed(seq.ids)
    assert g.done(s) and not g.allowed(s).any()


def test_refused_ids_name_the_position(text):
    tok = UniTokenizer(text, {"image": ToyImage()})
    g = tok.constraint(image=(8, 8))
    sp = tok.space.special_tokens
    s = g.feed([5, 6])
    with pytest.raises(TokenSequenceError, match="at position 2.*<\\|/image\\|>"):
        g.advance(s, sp["<|/image|>"])
    s = g.advance(s, sp["<|sep|>"])
    assert not g.done(s)
    with pytest.raises(TokenSequenceError, match="after <\\|sep\\|>"):
        g.advance(s, sp["<|eos|>"])
    s = g.feed([sp["<|image|>"]] + tok.space.dim_ids([8, 8], [2, 2]))
    with pytest.raises(TokenSequenceError, match="level-0"):
        g.advance(s, 7)
    with pytest.raises(ConfigError, match="no valid image header"):
        tok.constraint(image=(0, 8))
    with pytest.raises(ConfigError, match="no audio tokenizer"):
        tok.constraint(modalities=["audio"])


def test_mask_equals_ranges_and_is_allowed(text):
    tok = UniTokenizer(text, {"image": ToyImage(), "audio": ToyAudio()})
    g = tok.constraint(max_text_tokens=4, max_tokens=80)
    rng = np.random.default_rng(3)
    s = g.start()
    for _ in range(60):
        mask = g.allowed(s)
        ranges = np.zeros_like(mask)
        for a, b in g.allowed_ranges(s):
            ranges[a:b] = True
        assert np.array_equal(mask, ranges)
        probe = rng.integers(0, len(tok.space), 50)
        assert [g.is_allowed(s, int(t)) for t in probe] == mask[probe].tolist()
        if not mask.any():
            break
        s = g.advance(s, int(rng.choice(np.flatnonzero(mask))))


def test_whole_group_steps(text):
    tok = UniTokenizer(text, {"image": ToyImage(ToyImageConfig(scales=(4, 2)))})
    g = tok.constraint(image=(32, 32), max_text_tokens=0)
    s = g.feed([tok.space.special("<|image|>")] + tok.space.dim_ids([32, 32], [2, 2]))
    rng = np.random.default_rng(0)
    sizes = []
    while g.allowed_ids(s).tolist() != [tok.space.special("<|/image|>")]:
        lo, hi = g.group_ranges(s)
        mask = g.group_allowed(s)
        assert mask.shape == (len(lo), len(tok.space)) and mask.sum(1).tolist() == (hi - lo).tolist()
        group = rng.integers(lo, hi)
        sizes.append(len(group))
        s = g.advance_all(s, group)
    assert sizes == [1, 4, 16]   # one group per scale: 1x1, 2x2, 4x4


def test_mask_logits_and_finished_rows(text):
    tok = UniTokenizer(text, {"audio": ToyAudio()})
    g = tok.constraint(audio={"frames": 2})
    s_open = g.feed([tok.space.special("<|audio|>")])
    s_end = g.feed([tok.space.special("<|eos|>")])
    out = mask_logits(g, [s_open, s_end], torch.zeros(2, len(tok.space) + 5))
    assert torch.isfinite(out[0]).sum() == 1 and torch.isfinite(out[1]).nonzero().flatten().tolist() == [g.eos_id]


def test_step_cost_does_not_grow_with_the_prefix(text):
    tok = UniTokenizer(text, {"audio": ToyAudio()})
    g = tok.constraint(audio={"frames": 20_000}, max_text_tokens=0)
    s = g.feed([tok.space.special("<|audio|>")] + tok.space.dim_ids([20_000, 1], [2, 2]))
    lo = tok.space.ranges[2].start   # audio level 0

    def steps(s, n):
        t0 = time.perf_counter()
        for _ in range(n):
            s = g.advance(s, lo + (s.pos % 3) * 8)   # levels 0, 1, 2 of 8 codes each
        return s, time.perf_counter() - t0

    s, early = steps(s, 2000)
    s, _ = steps(s, 50_000)
    s, late = steps(s, 2000)
    assert late < 3 * early + 0.01   # loose: timing on a shared machine


def _tiny_model(vocab):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def test_transformers_generate_decodes_strictly(text):
    tok = UniTokenizer(text, {"image": ToyImage(), "audio": ToyAudio(ToyAudioConfig(layout="delay"))})
    model = _tiny_model(len(tok.space))
    g = tok.constraint(image=(16, 16), audio={"frames": 3}, max_tokens=60)
    sp = tok.space.special_tokens
    prompt = torch.tensor([[sp["<|bos|>"]]] * 4)
    with torch.no_grad():
        out = model.generate(prompt, do_sample=True, max_length=60, logits_processor=[g.logits_processor()],
                             eos_token_id=sp["<|eos|>"], pad_token_id=sp["<|pad|>"])
    for row in out.tolist():
        ids = row[:row.index(sp["<|eos|>"]) + 1] if sp["<|eos|>"] in row else row
        tok.decode(ids, strict=True)
        assert g.done(g.feed(ids))
    # beam search goes through prefix_allowed_tokens_fn (beams change rows)
    g = tok.constraint(image=(16, 16), audio={"frames": 3}, max_tokens=40)
    with torch.no_grad():
        out = model.generate(prompt[:1], num_beams=2, max_length=40, eos_token_id=sp["<|eos|>"],
                             pad_token_id=sp["<|pad|>"], prefix_allowed_tokens_fn=g.prefix_allowed_tokens_fn())
    row = out[0].tolist()
    ids = row[:row.index(sp["<|eos|>"]) + 1]   # the reserve for <|eos|> makes it come by max_tokens
    assert g.done(g.feed(ids))
    tok.decode(ids, strict=True)
