"""Every layout is exactly invertible, its groups are monotone, and bad token streams are caught
(strict) or repaired to the declared shape (lenient)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unitok.errors import ConfigError, TokenSequenceError
from unitok.layout import EOF, EOL, FOREIGN, MISSING, PAD, CodecDepth, Delay, FrameScale, NextScale, Raster, Sequential

SETTINGS = settings(max_examples=60, deadline=None)


def scales_strategy():
    return st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=4)


@st.composite
def layout_and_codes(draw):
    """A random layout of random shape, and random codes for it."""
    kind = draw(st.sampled_from(["raster", "next_scale", "frame_scale", "codec_depth", "delay"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "raster":
        layout = Raster(draw(st.integers(1, 7)), draw(st.integers(1, 7)), draw(st.integers(1, 3)),
                        group=draw(st.sampled_from(["token", "row"])), eol=draw(st.booleans()))
        codes = rng.integers(0, 1000, (layout.levels, layout.height, layout.width))
    elif kind in ("next_scale", "frame_scale"):
        scales = draw(scales_strategy())
        los = draw(st.sampled_from([None, list(range(len(scales)))]))
        if kind == "next_scale":
            layout = NextScale(scales, los)
            codes = [rng.integers(0, 1000, s) for s in scales]
        else:
            layout = FrameScale(draw(st.integers(1, 4)), scales, los, eof=draw(st.booleans()))
            codes = [[rng.integers(0, 1000, s) for s in scales] for _ in range(layout.frames)]
    else:
        cls = CodecDepth if kind == "codec_depth" else Delay
        layout = cls(draw(st.integers(1, 5)), draw(st.integers(0, 9)))
        codes = rng.integers(0, 1000, (layout.levels, layout.frames))
    return layout, codes


def same(a, b):
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return np.array_equal(np.asarray(a), np.asarray(b))


@SETTINGS
@given(layout_and_codes())
def test_inverse_is_exact_and_groups_monotone(case):
    layout, codes = case
    flat = layout.flatten(codes)
    assert len(flat) == len(layout) == len(flat.codes) == len(flat.groups)
    if len(flat):
        assert flat.groups[0] == 0
        assert np.all(np.diff(flat.groups) >= 0)
        assert np.all(np.diff(flat.groups) <= 1)   # no empty groups
        assert layout.num_groups == flat.groups[-1] + 1
    back, repairs = layout.unflatten(flat.levels, flat.codes)
    assert repairs == []
    assert same(back, codes)


@SETTINGS
@given(layout_and_codes(), st.data())
def test_truncation_strict_names_position_lenient_restores_shape(case, data):
    layout, codes = case
    flat = layout.flatten(codes)
    if len(flat) == 0:
        return
    cut = data.draw(st.integers(0, len(flat) - 1))
    with pytest.raises(TokenSequenceError) as e:
        layout.unflatten(flat.levels[:cut], flat.codes[:cut])
    assert e.value.position == cut
    back, repairs = layout.unflatten(flat.levels[:cut], flat.codes[:cut], strict=False)
    assert [r.action for r in repairs] == ["padded"]
    assert same(layout.flatten(back).levels, flat.levels)   # the declared shape is kept
    full = layout.pack(codes)
    got = layout.pack(back)
    kept = layout._plan[2][:cut]
    kept = kept[kept >= 0]
    assert np.array_equal(got[kept], full[kept])            # what was there is kept


@SETTINGS
@given(layout_and_codes(), st.data())
def test_foreign_ids_strict_raise_lenient_dropped(case, data):
    layout, codes = case
    flat = layout.flatten(codes)
    at = data.draw(st.integers(0, len(flat)))
    levels = np.insert(flat.levels, at, FOREIGN)
    values = np.insert(flat.codes, at, 12345)
    with pytest.raises(TokenSequenceError) as e:
        layout.unflatten(levels, values)
    assert e.value.position == at
    back, repairs = layout.unflatten(levels, values, strict=False)
    assert [r.action for r in repairs] == ["dropped"] and repairs[0].position == at
    assert same(back, codes)


@SETTINGS
@given(layout_and_codes(), st.data())
def test_a_foreign_id_in_a_code_s_place_is_that_code_missing(case, data):
    """A body of its declared length with a foreign id where a code belongs (a model's wrong pick):
    lenient decoding marks that code missing in its place; every other code stays where it was."""
    layout, codes = case
    flat = layout.flatten(codes)
    if not len(flat):
        return
    at = data.draw(st.integers(0, len(flat) - 1))
    levels, values = flat.levels.copy(), flat.codes.copy()
    levels[at], values[at] = FOREIGN, 12345
    back, repairs = layout.unflatten(levels, values, strict=False)
    assert [(r.action, r.position) for r in repairs] == [("replaced", at)]
    want_levels, want_codes = flat.levels.copy(), flat.codes.copy()
    want_codes[at] = MISSING
    expected, _ = layout.unflatten(want_levels, want_codes, strict=False)
    assert same(back, expected)


def test_extra_tokens_and_wrong_levels():
    layout = CodecDepth(2, 3)
    flat = layout.flatten(np.arange(6).reshape(2, 3))
    with pytest.raises(TokenSequenceError, match="more than its shape allows") as e:
        layout.unflatten(np.append(flat.levels, 0), np.append(flat.codes, 1))
    assert e.value.position == 6
    levels = flat.levels.copy()
    levels[3] = 0   # a level-0 code where level 1 belongs
    with pytest.raises(TokenSequenceError, match="expected a level-1 code") as e:
        layout.unflatten(levels, flat.codes)
    assert e.value.position == 3
    back, repairs = layout.unflatten(levels, flat.codes, strict=False)
    assert repairs[0].action == "replaced" and back[1, 1] == MISSING


def test_text_groups():
    assert Sequential().groups(4).tolist() == [0, 1, 2, 3]
    assert Sequential(3).groups(7).tolist() == [0, 0, 0, 1, 1, 1, 2]
    with pytest.raises(ConfigError):
        Sequential(0)


def test_raster_orders():
    r = Raster(2, 2, group="row")
    flat = r.flatten(np.array([[[1, 2], [3, 4]]]))
    assert flat.codes.tolist() == [1, 2, 3, 4] and flat.groups.tolist() == [0, 0, 1, 1]
    r = Raster(2, 2, eol=True)
    flat = r.flatten(np.array([[[1, 2], [3, 4]]]))
    assert flat.levels.tolist() == [0, 0, EOL, 0, 0, EOL]
    assert flat.groups.tolist() == [0, 1, 2, 3, 4, 5]


def test_next_scale_is_coarse_to_fine_one_group_per_scale():
    layout = NextScale([(1, 1), (2, 2)], [0, 1])
    flat = layout.flatten([np.array([[7]]), np.array([[1, 2], [3, 4]])])
    assert flat.codes.tolist() == [7, 1, 2, 3, 4]
    assert flat.levels.tolist() == [0, 1, 1, 1, 1]
    assert flat.groups.tolist() == [0, 1, 1, 1, 1]


def test_frame_scale_groups_per_frame_and_scale():
    layout = FrameScale(2, [(1, 1), (1, 2)], eof=True)
    flat = layout.flatten([[np.array([[1]]), np.array([[2, 3]])], [np.array([[4]]), np.array([[5, 6]])]])
    assert flat.codes.tolist() == [1, 2, 3, 0, 4, 5, 6, 0]
    assert flat.levels.tolist() == [0, 0, 0, EOF, 0, 0, 0, EOF]
    assert flat.groups.tolist() == [0, 1, 1, 2, 3, 4, 4, 5]


def test_codec_depth_and_delay():
    codes = np.array([[1, 2, 3], [4, 5, 6]])   # [K=2, T=3]
    flat = CodecDepth(2, 3).flatten(codes)
    assert flat.codes.tolist() == [1, 4, 2, 5, 3, 6]
    assert flat.groups.tolist() == [0, 0, 1, 1, 2, 2]
    flat = Delay(2, 3).flatten(codes)
    assert flat.levels.tolist() == [0, PAD, 0, 1, 0, 1, PAD, 1]
    assert flat.codes.tolist() == [1, 0, 2, 4, 3, 5, 0, 6]
    assert flat.groups.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_bad_codes_shape_is_config_error():
    with pytest.raises(ConfigError, match="shape"):
        Raster(2, 2).flatten(np.zeros((1, 3, 2)))
    with pytest.raises(ConfigError):
        NextScale([(0, 1)])
