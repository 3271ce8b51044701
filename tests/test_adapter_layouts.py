"""The layouts public codecs need (per-level delays, multi-rate levels, Emu3's raster with
end-of-line and end-of-frame tokens): exact inverses, monotone groups, strict and lenient
decoding of broken streams, as tests/test_layout.py checks for the others."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unitok.errors import ConfigError, TokenSequenceError
from unitok.layout import EOF, EOL, LAYOUTS, MISSING, PAD, Delay, FrameRaster, LevelDelay, MultiRate

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def layout_and_codes(draw):
    kind = draw(st.sampled_from(["level_delay", "multi_rate", "frame_raster"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "level_delay":
        K = draw(st.integers(1, 5))
        layout = LevelDelay(K, draw(st.integers(0, 9)), tuple(draw(st.lists(st.integers(0, 6), min_size=K, max_size=K))))
        return layout, rng.integers(0, 1000, (K, layout.frames))
    if kind == "multi_rate":
        rates = [1]
        for _ in range(draw(st.integers(0, 3))):
            rates.append(rates[-1] * draw(st.integers(1, 3)))
        layout = MultiRate(draw(st.integers(0, 6)), tuple(rates), draw(st.sampled_from(["level", "tree"])))
        return layout, [rng.integers(0, 1000, layout.frames * r) for r in rates]
    layout = FrameRaster(draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5)),
                         eol=draw(st.booleans()), eof=draw(st.booleans()), group=draw(st.sampled_from(["token", "row"])))
    return layout, rng.integers(0, 1000, (layout.frames, layout.height, layout.width))


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
        assert np.all(np.diff(flat.groups) >= 0) and np.all(np.diff(flat.groups) <= 1)
        assert layout.num_groups == flat.groups[-1] + 1
    back, repairs = layout.unflatten(flat.levels, flat.codes)
    assert repairs == [] and same(back, codes)


@SETTINGS
@given(layout_and_codes(), st.data())
def test_truncation_strict_names_position_lenient_marks_missing(case, data):
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
    full, got = layout.pack(codes), layout.pack(back)
    kept = got != MISSING
    assert np.array_equal(got[kept], full[kept])          # what is present is what was encoded
    assert int((~kept).sum()) == int((layout._plan[2][cut:] >= 0).sum())


def test_level_delay_matches_delay_and_dia():
    codes = np.arange(12).reshape(3, 4)
    a, b = Delay(3, 4).flatten(codes), LevelDelay(3, 4, (0, 1, 2)).flatten(codes)
    assert same(a.levels, b.levels) and same(a.codes, b.codes) and same(a.groups, b.groups)
    dia = LevelDelay(9, 2, (0, 8, 9, 10, 11, 12, 13, 14, 15))
    flat = dia.flatten(np.ones((9, 2), dtype=np.int64))
    assert dia.num_groups == 2 + 15 and len(flat) == 9 * 17
    step8 = flat.levels[8 * 9:9 * 9]       # at step 8 level 0 is done, level 1 starts
    assert step8[0] == PAD and step8[1] == 1 and all(step8[2:] == PAD)
    with pytest.raises(ConfigError):
        LevelDelay(2, 3, (0,))


def test_multi_rate_tree_order_is_orpheus():
    layout = MultiRate(2, (1, 2, 4), "tree")
    codes = [np.array([0, 1]), np.array([10, 11, 12, 13]), np.arange(100, 108)]
    flat = layout.flatten(codes)
    assert flat.codes[:7].tolist() == [0, 10, 100, 101, 11, 102, 103]
    assert flat.levels[:7].tolist() == [0, 1, 2, 2, 1, 2, 2]
    assert flat.groups.tolist() == [0] * 7 + [1] * 7
    assert MultiRate(2, (1, 2, 4)).flatten(codes).codes[:7].tolist() == [0, 10, 11, 100, 101, 102, 103]
    with pytest.raises(ConfigError):
        MultiRate(2, (1, 3, 4))


def test_frame_raster_is_emu3_order():
    layout = FrameRaster(1, 2, 3)
    flat = layout.flatten(np.arange(6).reshape(1, 2, 3))
    assert flat.levels.tolist() == [0, 0, 0, EOL, 0, 0, 0, EOL, EOF]
    assert len(layout) == 2 * (3 + 1) + 1     # Emu3: height * (width + 1) tokens, then <|eof|>
    rows = FrameRaster(2, 2, 3, group="row").flatten(np.zeros((2, 2, 3)))
    assert rows.groups.tolist() == [0] * 4 + [1] * 4 + [2] + [3] * 4 + [4] * 4 + [5]


def test_registered_by_name():
    for cls in (LevelDelay, MultiRate, FrameRaster):
        assert LAYOUTS[cls.name] is cls
