"""unitok.lm: per-token positions, attention blocks, loss mask, labels and parents, derived from the
layouts without re-encoding. Random documents over every layout are assembled here from layout
plans (a duck-typed codec per modality whose header picks the layout), so the property tests run in
milliseconds; the toy codecs and the bundled suite check the same on really encoded documents."""

import hashlib
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import unitok
from unitok import ConfigError, TokenSequence, TokenSequenceError, UniTokenizer, lm
from unitok.layout import CodecDepth, Delay, FrameRaster, FrameScale, MultiRate, NextScale, Raster
from unitok.space import BEGIN, END
from unitok.testing import ToyAudio, ToyImage, ToyImageConfig

VAR_SCALES = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)


def _pyramid(h, w, n):
    """n scales, coarse to fine, the finest (h, w)."""
    return tuple((math.ceil(h / 2 ** k), math.ceil(w / 2 ** k)) for k in reversed(range(n)))


class Plan:
    """A media tokenizer reduced to what the token space and the layouts need; its header picks the
    layout, so one suite covers every layout kind."""

    header_digits = {}

    def __init__(self, modality, fields, sizes, make):
        self.modality, self.header_fields, self.codebook_sizes, self.make = modality, fields, sizes, make
        self.fingerprint = hashlib.sha256(f"{modality}{fields}{sizes}".encode()).hexdigest()

    def header_widths(self):
        return [2] * len(self.header_fields)

    def check_header(self, header):
        pass

    def layout(self, header):
        return self.make(**header)

    def decode_item(self, header, codes):
        return header, codes


def _image(kind, h, w, levels, eol):
    if kind == 0:
        return Raster(h, w, levels, group="token", eol=bool(eol))
    if kind == 1:
        return Raster(h, w, levels, group="row", eol=bool(eol))
    if kind == 2:
        return NextScale(_pyramid(h, w, levels), (0,) * levels)
    if kind in (4, 5):     # Emu3's frames of rows (levels: the frame count)
        return FrameRaster(levels, h, w, eol=bool(eol), eof=True, group="token" if kind == 4 else "row")
    return NextScale(tuple((s, s) for s in VAR_SCALES))


def _video(frames, h, w, scales, eof):
    return FrameScale(frames, _pyramid(h, w, scales), (0,) * scales, eof=bool(eof))


def _audio(levels, frames, delay):
    if delay == 2:         # SNAC: levels at 1x, 2x, 4x the coarsest rate
        return MultiRate(frames, (1, 2, 4)[:levels])
    return (Delay if delay else CodecDepth)(levels, frames)


@pytest.fixture(scope="module")
def text():
    return unitok.text.load_default()


@pytest.fixture(scope="module")
def plans(text):
    return UniTokenizer(text, {
        "image": Plan("image", ("kind", "h", "w", "levels", "eol"), [5, 6, 7], _image),
        "video": Plan("video", ("frames", "h", "w", "scales", "eof"), [9], _video),
        "audio": Plan("audio", ("levels", "frames", "delay"), [4, 4, 4], _audio),
    })


def assemble(tok, parts, *, bos=False, eos=False, seed=0):
    """The ids and groups ``UniTokenizer.encode`` would give, from layouts and random codes.
    ``parts``: lists of text ids, or (modality, header dict)."""
    rng = np.random.default_rng(seed)
    sp, space = tok.space.special_tokens, tok.space
    ids, groups = [], []

    def emit(chunk, rel=None):
        g = groups[-1] + 1 if groups else 0
        ids.extend(int(x) for x in chunk)
        groups.extend((g + (np.zeros(len(chunk), int) if rel is None else rel)).tolist())

    if bos:
        emit([sp["<|bos|>"]])
    previous = None
    for part in parts:
        if isinstance(part, list):
            if previous == "text":
                emit([sp["<|sep|>"]])
            emit(part, tok.text_layout.groups(len(part)))
            previous = "text"
            continue
        modality, header = part
        codec = tok.media[modality]
        layout = codec.layout(header)
        levels = layout.expected_levels
        sizes = np.array(codec.codebook_sizes)
        codes = np.where(levels >= 0, rng.integers(0, 1 << 30, len(levels)) % sizes[np.maximum(levels, 0)], 0)
        emit([sp[BEGIN[modality]]])
        emit(space.dim_ids([header[f] for f in codec.header_fields], codec.header_widths()))
        emit(space.media_ids(modality, levels, codes), layout.groups)
        emit([sp[END[modality]]])
        previous = modality
    if eos:
        emit([sp["<|eos|>"]])
    return TokenSequence(np.array(ids, np.int64), np.array(groups, np.int64), [], space.fingerprint)


headers = {
    "image": st.fixed_dictionaries({"kind": st.integers(0, 5), "h": st.integers(1, 6), "w": st.integers(1, 6),
                                    "levels": st.integers(1, 3), "eol": st.integers(0, 1)}),
    "video": st.fixed_dictionaries({"frames": st.integers(1, 3), "h": st.integers(1, 5), "w": st.integers(1, 5),
                                    "scales": st.integers(1, 3), "eof": st.integers(0, 1)}),
    "audio": st.fixed_dictionaries({"levels": st.integers(1, 3), "frames": st.integers(1, 6),
                                    "delay": st.integers(0, 2)}),
}
part = st.one_of(st.lists(st.integers(0, 40000), min_size=1, max_size=4),
                 *[h.map(lambda hd, m=m: (m, hd)) for m, h in headers.items()])
documents = st.tuples(st.lists(part, min_size=1, max_size=4), st.booleans(), st.booleans(), st.integers(0, 99))


def _doc(plans, drawn):
    parts, bos, eos, seed = drawn
    if any(isinstance(p, tuple) and p[0] == "image" and p[1]["kind"] == 3 for p in parts):
        parts = [p if not (isinstance(p, tuple) and p[1].get("kind") == 3) else ("image", {**p[1], "kind": 2})
                 for p in parts]     # VAR's 680-token pyramid has its own test
    return assemble(plans, parts, bos=bos, eos=eos, seed=seed)


# -- properties over random documents ----------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_blocks_parents_and_no_target_is_visible(plans, drawn):
    seq = _doc(plans, drawn)
    plans.decode(seq, strict=True)                       # the assembled document is a valid one
    meta = lm.annotate(seq, tok=plans)
    blocks, parents = meta.blocks, meta.parents
    assert np.array_equal(blocks, seq.groups)            # a block is a group, derived without the groups
    N = len(seq)
    assert parents[0] == -1
    assert np.all(parents[1:] >= 0) and np.all(blocks[parents[1:]] < blocks[1:])

    mask = lm.dense_mask(blocks)
    assert np.array_equal(mask, blocks[None, :] <= blocks[:, None])
    # the inputs of key j are built from tokens of blocks < blocks[j] (its parent among them)
    revealed = (mask[:, :, None] & (blocks[None, None, :] < blocks[None, :, None])).any(1)   # [query, token]
    revealed |= (mask[:, :, None] & (np.arange(N)[None, None, :] == parents[None, :, None])).any(1)
    for depth in (1, 2, 3):
        target = lm.labels(meta, depth, convention="next_group")
        has = np.flatnonzero(target != lm.IGNORE)
        where = _target_index(meta, depth)
        assert np.array_equal(seq.ids[where[has]], target[has])
        assert not revealed[has, where[has]].any()
    if depth == 1:
        assert np.array_equal(lm.labels(meta, 1, convention="next_group"), seq.ids)
    # next-token labels under a causal mask: the input at j is token j itself
    causal = lm.dense_mask(np.arange(N))
    for depth in (1, 2):
        t = np.arange(N) + depth
        assert not (causal & (np.arange(N)[None, :] >= t[:, None])).any()


def _target_index(meta, depth):
    starts = np.flatnonzero(np.r_[True, meta.blocks[1:] != meta.blocks[:-1]])
    own = np.searchsorted(starts, np.arange(len(meta)), side="right") - 1
    later = np.minimum(own + depth - 1, len(starts) - 1)
    return np.minimum(starts[later] + np.arange(len(meta)) - starts[own], len(meta) - 1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_positions(plans, drawn):
    seq = _doc(plans, drawn)
    meta = lm.annotate(seq, tok=plans)
    mrope, uni = lm.positions(meta, "mrope"), lm.positions(meta, "uni")
    assert mrope.dtype == np.int64 and uni.dtype == np.float64 and mrope.shape == uni.shape == (len(seq), 3)
    linear = meta.cells[:, 0] < 0          # text, header, structural and audio tokens
    for pos in (mrope, uni):
        assert np.all(pos[linear, 0] == pos[linear, 1]) and np.all(pos[linear, 1] == pos[linear, 2])
        run = pos[linear, 0]
        assert np.all(np.diff(run) >= 1)   # the running index never goes back
    starts = np.flatnonzero(meta.role == 2)                         # begin tokens
    for b in starts:
        end = b + np.flatnonzero(meta.role[b:] == 6)[0]
        body = np.arange(b, end)[meta.cells[b:end, 0] >= 0]
        if not len(body):
            continue
        for pos in (mrope, uni):            # the index continues right after the largest position used
            assert pos[end, 0] == np.floor(pos[body].max()) + 1
            assert pos[body].min() == pos[body[0] - 1, 0] + 1
        finest = meta.cells[body, 1].max()
        codes = body[meta.role[body] == 4]
        fine = codes[meta.cells[codes, 1] == finest]
        H, W = meta.cells[fine, 2:].max(0) + 1
        start = uni[body[0] - 1, 0] + 1
        for f, s in {tuple(x) for x in meta.cells[codes][:, :2]}:
            cell = codes[(meta.cells[codes, 0] == f) & (meta.cells[codes, 1] == s)]
            np.testing.assert_allclose(uni[cell, 1:].mean(0), start + (np.array([H, W]) - 1) / 2)  # centre-aligned
            assert np.all(uni[cell, 0] == start + f)
            # M-RoPE: the scale's own grid, (frame, row, col) from one start
            grid_start = mrope[cell] - meta.cells[cell][:, [0, 2, 3]]
            assert len(np.unique(grid_start)) == 1


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_loss_mask_and_next_token_labels(plans, drawn):
    seq = _doc(plans, drawn)
    sp = plans.space.special_tokens
    forced = np.isin(seq.ids, [sp[n] for n in ("<|bos|>", "<|pad|>", "<|eol|>", "<|eof|>", *END.values())])
    mask = lm.loss_mask(seq, tok=plans)
    assert mask.dtype == bool and np.array_equal(mask, ~forced)
    header = lm.annotate(seq, tok=plans).role == 3
    assert np.array_equal(lm.loss_mask(seq, headers=False, tok=plans), ~forced & ~header)
    N = len(seq)
    for depth in (1, 2, 5):
        want = np.full(N, -100)
        want[:max(N - depth, 0)] = seq.ids[depth:]
        got = lm.labels(seq, depth, tok=plans)
        assert got.dtype == np.int64 and np.array_equal(got, want)
        for headers, loss in ((True, mask), (False, mask & ~header)):
            masked = lm.labels(seq, depth, masked=True, headers=headers, tok=plans)
            keep = want != -100
            keep[keep] = loss[np.flatnonzero(keep) + depth]
            assert np.array_equal(masked, np.where(keep, want, -100))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(documents, min_size=1, max_size=3))
def test_flashmask_and_flex_mask_mod_equal_the_dense_mask(plans, drawn):
    metas = [lm.annotate(_doc(plans, d), tok=plans) for d in drawn]
    blocks = np.concatenate([m.blocks for m in metas])
    documents = np.repeat(np.arange(len(metas)), [len(m) for m in metas])
    dense = lm.dense_mask(blocks, documents)
    lts, ute = lm.flashmask(blocks, documents).T
    rows = np.arange(len(blocks))[:, None]
    assert np.array_equal((rows >= ute[None, :]) & (rows < lts[None, :]), dense)
    mod = lm.mask_mod(torch.as_tensor(blocks), torch.as_tensor(documents))
    q = torch.arange(len(blocks))
    got = mod(torch.tensor(0), torch.tensor(0), q[:, None], q[None, :])
    assert np.array_equal(got.numpy(), dense)


# -- the anchors ---------------------------------------------------------------------------------


def test_next_scale_mask_is_vars(plans):
    header = {"kind": 3, "h": 1, "w": 1, "levels": 1, "eol": 0}
    seq = assemble(plans, [[5, 6], ("image", header), [7]])
    meta = lm.annotate(seq, tok=plans)
    body = np.flatnonzero(meta.role == 4)
    assert len(body) == sum(s * s for s in VAR_SCALES) == 680
    # VAR: d = the scale index of each token; a token attends to every token of its own and earlier scales
    d = np.concatenate([np.full(s * s, i) for i, s in enumerate(VAR_SCALES)])[None]
    var = d.T >= d
    assert np.array_equal(lm.dense_mask(meta.blocks)[np.ix_(body, body)], var)
    # the trap: next-token labels under these blocks would show each query its own target
    assert lm.dense_mask(meta.blocks)[body[1], body[2]]
    # every body row sees the whole prefix before the image
    assert lm.dense_mask(meta.blocks)[np.ix_(body, np.arange(body[0]))].all()
    # each cell refines the cell of the previous scale that contains its centre
    cells = meta.cells[body]
    for s in range(1, len(VAR_SCALES)):
        fine = body[cells[:, 1] == s]
        parent = meta.cells[meta.parents[fine]]
        assert np.all(parent[:, 1] == s - 1)
        want = np.floor((meta.cells[fine, 2:] + 0.5) * VAR_SCALES[s - 1] / VAR_SCALES[s])
        assert np.array_equal(parent[:, 2:], want)
    uni = lm.positions(meta, "uni")
    for s in range(len(VAR_SCALES)):   # every scale's mean (h, w) is the 16x16 grid's centre
        np.testing.assert_allclose(uni[body[cells[:, 1] == s], 1:].mean(0), uni[body[0], 0] + 7.5)


def _qwen2_vl():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.Qwen2VLConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=64, bos_token_id=None, eos_token_id=None,
                         rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
        vision_config=dict(depth=1, embed_dim=16, hidden_size=16, num_heads=2, spatial_merge_size=2,
                           patch_size=2, temporal_patch_size=1))
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.Qwen2VLModel(cfg).eval()


def _qwen_positions(model, meta, grids, kind):
    """Qwen2-VL's get_rope_index on the same layout: codes are vision tokens, the rest text."""
    types = torch.as_tensor((meta.role == 4).astype(np.int64) * kind)[None]
    thw = torch.tensor([[t, 2 * h, 2 * w] for t, h, w in grids])     # before the 2x2 spatial merge
    grid = {"image_grid_thw": thw} if kind == 1 else {"video_grid_thw": thw}
    position_ids, _ = model.get_rope_index(torch.zeros_like(types), types, **grid)
    return position_ids[:, 0].T.numpy()


def test_mrope_equals_qwen2_vl_get_rope_index(plans, text):
    model = _qwen2_vl()
    raster = {"kind": 0, "h": 3, "w": 5, "levels": 1, "eol": 0}
    seq = assemble(plans, [[5, 6, 7], ("image", raster), [8, 9], ("image", {**raster, "h": 6, "w": 2}), [1]],
                   bos=True, eos=True)
    meta = lm.annotate(seq, tok=plans)
    assert np.array_equal(lm.positions(meta, "mrope"), _qwen_positions(model, meta, [(1, 3, 5), (1, 6, 2)], 1))
    # a single-scale video: Qwen2-VL's video grid (t = frame), while frames <= max(h, w)
    video = {"frames": 3, "h": 4, "w": 5, "scales": 1, "eof": 0}
    meta = lm.annotate(assemble(plans, [[5], ("video", video), [6]]), tok=plans)
    assert np.array_equal(lm.positions(meta, "mrope"), _qwen_positions(model, meta, [(3, 4, 5)], 2))
    # really encoded: the toy raster codec, text + image + text
    tok = UniTokenizer(text, {"image": ToyImage(ToyImageConfig(layout="raster"))})
    img = unitok.Image.from_array(torch.randint(0, 256, (3, 20, 33), generator=torch.Generator().manual_seed(0),
                                                dtype=torch.uint8))
    meta = lm.annotate(tok.encode(["A cat", img, "sits."]), tok=tok)
    assert np.array_equal(lm.positions(meta, "mrope"), _qwen_positions(model, meta, [(1, 3, 5)], 1))


def test_flex_attention_block_mask_matches_sdpa(plans):
    seq = assemble(plans, [[5, 6], ("image", {"kind": 2, "h": 4, "w": 6, "levels": 3, "eol": 0}), [7],
                           ("audio", {"levels": 2, "frames": 3, "delay": 1})])
    blocks = torch.as_tensor(lm.blocks(seq, tok=plans))
    N = len(blocks)
    bm = lm.block_mask(blocks, block_size=16)
    q, k, v = torch.randn(3, 1, 2, N, 8).unbind(0)
    from torch.nn.attention.flex_attention import flex_attention
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = flex_attention(q, k, v, block_mask=bm)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=lm.dense_mask(blocks))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# -- real suites, inputs and errors -----------------------------------------------------------------


def test_toy_suite_encoded_documents(text):
    tok = UniTokenizer(text, {"image": ToyImage(), "audio": ToyAudio()})
    g = torch.Generator().manual_seed(0)
    img = unitok.Image.from_array(torch.randint(0, 256, (3, 20, 33), generator=g, dtype=torch.uint8))
    seq = tok.encode(["A cat", img, unitok.Audio(torch.rand(1, 400, generator=g) - 0.5, 8000), "end"],
                     bos=True, eos=True)
    meta = lm.annotate(seq, tok=tok)
    assert np.array_equal(meta.blocks, seq.groups)
    as_item = lm.annotate({"ids": seq.ids, "groups": seq.groups, "spans": seq.spans}, tok=tok)   # a dataset item
    assert np.array_equal(as_item.uni, meta.uni) and np.array_equal(as_item.parents, meta.parents)
    assert np.array_equal(lm.annotate(seq.ids, tok=tok).mrope, meta.mrope)


def test_bundled_suite():
    tok = unitok.load()
    img = unitok.Image.from_array(torch.randint(0, 256, (3, 40, 24), generator=torch.Generator().manual_seed(1),
                                                dtype=torch.uint8))
    seq = tok.encode(["a picture", img, "."])
    assert np.array_equal(lm.blocks(seq), seq.groups)            # tok=None: the bundled suite
    meta = lm.annotate(seq)
    body = np.flatnonzero(meta.role == 4)
    uni, scales = lm.positions(meta), meta.cells[body, 1]
    H, W = meta.cells[body][scales == scales.max(), 2:].max(0) + 1
    for s in np.unique(scales):
        np.testing.assert_allclose(uni[body[scales == s], 1:].mean(0), uni[body[0], 0] + (np.array([H, W]) - 1) / 2)
    other = TokenSequence(seq.ids, seq.groups, seq.spans, "0" * 64)
    with pytest.raises(ConfigError, match="bundled suite"):
        lm.positions(other)


def test_malformed_documents_are_refused_with_a_position(plans):
    seq = assemble(plans, [[5], ("audio", {"levels": 2, "frames": 3, "delay": 0}), [6]])
    ids = seq.ids
    end = int(np.flatnonzero(ids == plans.space.special("<|/audio|>"))[0])
    with pytest.raises(TokenSequenceError) as e:
        lm.annotate(np.delete(ids, end - 1), tok=plans)      # a truncated body
    assert e.value.position == end - 1
    with pytest.raises(TokenSequenceError, match="outside of any media segment"):
        lm.annotate(ids[end - 3:], tok=plans)
    swapped = ids.copy()
    swapped[end - 2], swapped[end - 1] = ids[end - 1], ids[end - 2]
    with pytest.raises(TokenSequenceError, match="level-0 code"):
        lm.annotate(swapped, tok=plans)
    with pytest.raises(ConfigError, match="mode"):
        lm.positions(seq, "rope", tok=plans)
    with pytest.raises(ConfigError, match="depth"):
        lm.labels(seq, 0, tok=plans)


def test_emu3_frame_raster_and_snac_multi_rate_bodies():
    """Emu3's frames of rows and SNAC's codes at several rates have token metadata too (the
    property tests above draw them as well): the cells and parents, pinned on small cases."""
    from unitok.lm.body import body

    emu3 = body(FrameRaster(2, 2, 3))          # per frame: 2 rows of 3 codes + <|eol|>, then <|eof|>
    assert len(emu3) == 2 * (2 * 4 + 1)
    assert emu3.cells[3].tolist() == [0, 0, 0, 3]        # <|eol|> of row 0 at column W
    assert emu3.cells[8].tolist() == [0, 0, 2, 3]        # <|eof|> at (H, W)
    assert emu3.cells[9].tolist() == [1, 0, 0, 0] and emu3.mrope[9].tolist() == [1, 0, 0]
    assert emu3.extent == (4, 4)
    assert emu3.parents.tolist() == list(range(-1, len(emu3) - 1))   # one token a group: the previous one
    rows = body(FrameRaster(2, 2, 3, group="row"))
    assert rows.parents[4] == 0 and rows.parents[9] == 4           # one row up; the previous frame's last row
    assert rows.parents[8] == 7                                     # <|eof|>, alone: the token before it
    snac = body(MultiRate(3, (1, 2, 4)))
    assert len(snac) == 21 and snac.mrope[:, 0].tolist() == list(range(21)) and (snac.cells == -1).all()
    assert snac.parents.tolist() == [-1] * 7 + list(range(14))     # the same place one coarse frame earlier
