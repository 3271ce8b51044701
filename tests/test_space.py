"""TokenSpace: the id layout contract, describe/bits, shape tokens, manifest and fingerprint."""

import json
import math

import numpy as np
import pytest

from unitok.errors import ConfigError, TokenSequenceError
from unitok.layout import EOL, FOREIGN, PAD
from unitok.space import DIM_BASE, MAX_DIM, NAMED_SLOTS, SPECIAL_BLOCK, SPECIAL_TOKENS, TokenSpace


@pytest.fixture
def space():
    return TokenSpace(1000, {"audio": [8, 8], "image": [16]}, {"text": "abc"})


def test_layout_of_ids(space):
    assert [(r.modality, r.level, r.start, r.stop) for r in space.ranges] == [
        ("text", 0, 0, 1000),
        ("special", 0, 1000, 1000 + SPECIAL_BLOCK),
        ("image", 0, 3048, 3064),        # image before video before audio, whatever the dict order
        ("audio", 0, 3064, 3072),
        ("audio", 1, 3072, 3080),
    ]
    assert len(space) == 3080


def test_text_ids_are_unchanged_and_specials_are_fixed(space):
    assert space.describe(0) == ("text", 0, 0)
    assert space.describe(999) == ("text", 0, 999)
    for slot, name in enumerate(SPECIAL_TOKENS):
        assert space.special(name) == 1000 + slot
        assert space.token_name(1000 + slot) == name
    # adding a modality never moves text or special ids
    bigger = TokenSpace(1000, {"audio": [8, 8], "image": [16], "video": [32]})
    assert bigger.special_tokens == space.special_tokens


def test_describe_and_bits(space):
    assert space.describe(3048 + 5) == ("image", 0, 5)
    assert space.describe(3072 + 7) == ("audio", 1, 7)
    assert space.bits(3050) == 4.0
    assert space.bits(10) == pytest.approx(math.log2(1000))
    assert space.bits_of(np.array([3050, 3065, 3073])) == pytest.approx(4 + 3 + 3)
    for bad in (-1, len(space)):
        with pytest.raises(TokenSequenceError, match="outside the token space"):
            space.describe(bad)


def test_media_ids_round_trip_and_structural_markers(space):
    levels = np.array([0, 1, 0, PAD, 1])
    codes = np.array([3, 7, 0, 0, 1])
    ids = space.media_ids("audio", levels, codes)
    assert ids.tolist() == [3067, 3079, 3064, space.special("<|pad|>"), 3073]
    back_levels, back_codes = space.media_codes("audio", np.append(ids, [5, 3050]))
    assert back_levels.tolist() == [0, 1, 0, PAD, 1, FOREIGN, FOREIGN]   # text and image ids are foreign here
    assert back_codes[:5].tolist() == [3, 7, 0, 0, 1]
    assert space.media_codes("image", [space.special("<|eol|>")])[0].tolist() == [EOL]
    with pytest.raises(ConfigError, match="out of range"):
        space.media_ids("audio", np.array([0]), np.array([8]))
    with pytest.raises(ConfigError, match="no video codes"):
        space.media_ids("video", np.array([0]), np.array([0]))


def test_shape_tokens(space):
    for value in (0, 1, 333, DIM_BASE, MAX_DIM):
        ids = space.dim_ids([value])
        assert all(space.token_name(i).startswith("<|dim:") for i in ids)
        assert space.dims_from_ids(np.array(ids), 1) == [value]
    assert space.dim_ids([1]) == [1000 + NAMED_SLOTS, 1000 + NAMED_SLOTS + 1]
    with pytest.raises(ConfigError):
        space.dim_ids([MAX_DIM + 1])
    with pytest.raises(TokenSequenceError) as e:
        space.dims_from_ids(np.array(space.dim_ids([5])[:1] + [7]), 1)
    assert e.value.position == 1


def test_manifest_round_trip_and_fingerprint(space, tmp_path):
    again = TokenSpace.from_json(space.to_json())
    assert again == space and again.fingerprint == space.fingerprint
    space.save(tmp_path / "space.json")
    assert TokenSpace.load(tmp_path / "space.json").ranges == space.ranges
    # any component change changes the fingerprint
    assert TokenSpace(1000, {"audio": [8, 8], "image": [16]}, {"text": "abd"}).fingerprint != space.fingerprint
    assert TokenSpace(1000, {"audio": [8, 8], "image": [32]}, {"text": "abc"}).fingerprint != space.fingerprint


def test_mismatched_fingerprint_is_an_error(space):
    other = TokenSpace(1001)
    space.check_fingerprint(space.fingerprint)
    with pytest.raises(ConfigError, match="decode them with the tokenizer suite that encoded them"):
        space.check_fingerprint(other.fingerprint)


@pytest.mark.parametrize("edit", [
    lambda d: d.update(text_vocab_size=999),              # tampered: content no longer matches its fingerprint
    lambda d: d.update(version=99),                        # another version
    lambda d: d.update(special_block=4096),                # another special layout
])
def test_bad_manifests(space, edit):
    data = json.loads(space.to_json())
    edit(data)
    with pytest.raises(ConfigError):
        TokenSpace.from_json(json.dumps(data))


def test_truncated_manifest(space, tmp_path):
    path = tmp_path / "space.json"
    path.write_text(space.to_json()[:50])
    with pytest.raises(ConfigError, match="space.json"):
        TokenSpace.load(path)


def test_table_lists_every_range(space):
    table = space.table()
    assert "image" in table and "audio" in table and space.fingerprint[:16] in table
