"""Fingerprints cover exactly what decides ids and decoding, and files of another manifest version
are refused with the reason and the way out."""

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import unitok
from unitok import TokenSequence, UniTokenizer
from unitok.checkpoint import TRAINING_ONLY, config_from_dict, id_config, load_pretrained, read_config, resolve
from unitok.errors import ConfigError
from unitok.space import MANIFEST_VERSION, TokenSpace
from unitok.testing import ToyImage

VARIANTS = Path(__file__).parent / "fixtures" / "stable" / "variants"


@pytest.fixture(scope="module")
def suite():
    return unitok.load()


def _training_only_fields(cfg, path=()):
    """(path, value) of every training-only field of a (nested) config dataclass."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.metadata.get(TRAINING_ONLY):
            yield (*path, f.name), value
        elif dataclasses.is_dataclass(value):
            yield from _training_only_fields(value, (*path, f.name))


def _replaced(cfg, path, value):
    if len(path) == 1:
        return dataclasses.replace(cfg, **{path[0]: value})
    return dataclasses.replace(cfg, **{path[0]: _replaced(getattr(cfg, path[0]), path[1:], value)})


def _other(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.5 + 0.125
    raise AssertionError(f"no test value for {value!r}")


def _with_config(codec, cfg):
    """A tokenizer of ``codec``'s class built from ``cfg``, holding ``codec``'s weights."""
    other = type(codec).from_config(cfg)
    other.load_state_dict(codec.state_dict())
    return other


@pytest.mark.parametrize("name", ["image_vq", "image_bsq_multiscale", "audio_seanet_rvq", "audio_seanet_rfsq_delay",
                                  "bundled audio"])
def test_training_only_fields_leave_the_fingerprint(suite, name):
    codec = suite.media["audio"] if name == "bundled audio" else load_pretrained(VARIANTS / name)
    fields = list(_training_only_fields(codec.cfg))
    assert fields, f"{name}: its config marks no field as training-only"
    for path, value in fields:
        changed = _with_config(codec, _replaced(codec.cfg, path, _other(value)))
        assert changed.fingerprint == codec.fingerprint, ".".join(path)


def test_the_suite_fingerprint_survives_a_training_only_change(suite):
    codec = suite.media["audio"]
    path, value = next(_training_only_fields(codec.cfg))
    media = dict(suite.media, audio=_with_config(codec, _replaced(codec.cfg, path, _other(value))))
    assert UniTokenizer(suite.text, media).space.fingerprint == suite.space.fingerprint


def test_a_field_added_later_counts_only_off_its_default(suite):
    cfg = suite.media["image"].cfg
    Later = dataclasses.make_dataclass("Later", [("new_knob", int, dataclasses.field(default=3))],
                                       bases=(type(cfg),))
    kwargs = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init}
    assert id_config(Later(**kwargs)) == id_config(cfg)
    assert id_config(Later(**kwargs, new_knob=4)) == {**id_config(cfg), "new_knob": 4}


def _variant(name, edit=None):
    """A seeded variant checkpoint, its config.json's ``config`` edited by ``edit`` (old keys load)."""
    data = read_config(VARIANTS / name)
    cls = resolve(data["type"])
    raw = copy.deepcopy(data["config"])
    if edit:
        edit(raw)
    torch.manual_seed(0)
    return cls.from_config(config_from_dict(cls.config_class, raw))


@pytest.mark.parametrize("name, edit", [
    ("image_vq", lambda c: c["quantizer"].update(codebook_size=32)),           # a codebook size
    ("audio_seanet_rvq", lambda c: c["quantizer"].update(codebook_size=32)),
    ("image_fsq_raster_row", lambda c: c.update(raster_group="token")),        # a layout
    ("audio_seanet_rvq", lambda c: c.update(layout="delay")),
    ("video_fsq", lambda c: c.update(eof=False)),
    ("image_bsq_multiscale", lambda c: c["quantizer"].update(scales=[2, 1])),  # the scales
])
def test_what_decides_ids_changes_the_fingerprint(name, edit):
    assert _variant(name, edit).fingerprint != _variant(name).fingerprint


def test_one_weight_changes_the_fingerprint(suite):
    codec = suite.media["audio"]
    changed = copy.deepcopy(codec)
    with torch.no_grad():
        next(changed.parameters()).view(-1)[0] += 1e-3
    assert changed.fingerprint != codec.fingerprint
    assert copy.deepcopy(codec).fingerprint == codec.fingerprint


def test_fingerprint_is_an_attribute_on_every_tokenizer(suite):
    for component in (suite.text, *suite.media.values(), ToyImage()):
        assert isinstance(component.fingerprint, str) and len(component.fingerprint) == 64


# -- files of another manifest version ----------------------------------------------------------------

def test_token_files_record_the_manifest_version(suite, tmp_path):
    seq = suite.encode("hello")
    seq.save(tmp_path / "t.json")
    assert json.loads((tmp_path / "t.json").read_text())["space_version"] == MANIFEST_VERSION
    assert TokenSequence.load(tmp_path / "t.json") == seq


def test_a_version_1_token_file_is_refused_with_the_way_out(suite, tmp_path):
    data = suite.encode("hello").to_dict()
    del data["space_version"]                          # as unitok 0.1 wrote them
    (tmp_path / "old.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"old.json: made under token-space manifest version 1.*encode the source"):
        TokenSequence.load(tmp_path / "old.json")
    # bare ids (a model's output) make no claim about a space, so they still load
    (tmp_path / "bare.json").write_text(json.dumps(data["ids"]))
    assert TokenSequence.load(tmp_path / "bare.json").ids.tolist() == data["ids"]


def test_a_version_1_manifest_is_refused(suite):
    data = json.loads(suite.space.to_json())
    data["version"] = 1
    with pytest.raises(ConfigError, match="manifest version 1"):
        TokenSpace.from_json(json.dumps(data))
    data["version"] = MANIFEST_VERSION + 1
    with pytest.raises(ConfigError, match="upgrade"):
        TokenSpace.from_json(json.dumps(data))


def test_a_version_1_dataset_is_refused_by_reader_verify_and_resume(tmp_path):
    from unitok.data import TokenDataset
    from unitok.pipeline import TokenizeConfig, tokenize
    from unitok.pipeline.verify import verify

    tok = UniTokenizer(unitok.text.load_default(), {})
    suite = tmp_path / "suite"
    tok.save_pretrained(suite)
    (tmp_path / "in").mkdir()
    for i in range(3):
        (tmp_path / "in" / f"{i}.txt").write_text(f"document {i}")
    out = tmp_path / "out"
    cfg = TokenizeConfig([str(tmp_path / "in")], out, suite=str(suite), workers=0, progress=False)
    tokenize(cfg)
    assert len(TokenDataset(out)) == 3
    for name in ("index.json", "run.json", *[p.name for p in out.glob("*.json") if p.name.startswith("shard")]):
        data = json.loads((out / name).read_text())
        data.pop("space_version", None)
        (out / name).write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="manifest version 1"):
        TokenDataset(out)
    assert any("manifest version 1" in p for p in verify(out, tok).problems)
    with pytest.raises(ConfigError, match=r"cannot resume .*manifest version 1"):
        tokenize(dataclasses.replace(cfg, resume=True))


def test_ids_do_not_depend_on_the_fingerprint_scheme(suite):
    """The manifest version changed the fingerprint, not the ids (tests/test_stable.py pins them)."""
    seq = suite.encode(["a", unitok.Image.from_array(np.zeros((16, 16, 3), np.uint8))])
    assert seq.fingerprint == suite.space.fingerprint


# -- files of an earlier bundled suite -----------------------------------------------------------------

def test_the_bundled_suite_is_not_a_retired_one(suite):
    """A retrained bundled component changes the fingerprint; its predecessor must then be listed
    in RETIRED_SUITES and the suite version bumped, so old files get a message that names them."""
    from unitok.suiteinfo import BUNDLED_SUITE_VERSION, RETIRED_SUITES

    assert suite.space.fingerprint not in RETIRED_SUITES
    assert all(version < BUNDLED_SUITE_VERSION for version, _, _ in RETIRED_SUITES.values())


def test_ids_of_a_retired_bundled_suite_are_refused_with_the_way_out(suite, tmp_path):
    from unitok.suiteinfo import RETIRED_SUITES

    old = next(iter(RETIRED_SUITES))
    version, release, _ = RETIRED_SUITES[old]
    data = suite.encode("hello").to_dict()
    data["fingerprint"] = old
    (tmp_path / "old.json").write_text(json.dumps(data))
    loaded = TokenSequence.load(tmp_path / "old.json")
    now = UniTokenizer(unitok.text.load_default(), {})      # any suite but the retired one
    way_out = rf"bundled suite version {version}, unitok {release}.*Encode the media again.*unitok=={release}"
    with pytest.raises(ConfigError, match=way_out):
        now.decode(loaded)
    with pytest.raises(ConfigError, match=way_out):
        now.space.check_fingerprint(old, source="the ids in out/")


def test_a_run_of_a_retired_bundled_suite_is_not_resumed_silently(tmp_path):
    from unitok.pipeline import TokenizeConfig, tokenize
    from unitok.suiteinfo import RETIRED_SUITES

    tok = UniTokenizer(unitok.text.load_default(), {})
    tok.save_pretrained(tmp_path / "suite")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a document")
    out = tmp_path / "out"
    cfg = TokenizeConfig([str(tmp_path / "in")], out, suite=str(tmp_path / "suite"), workers=0, progress=False,
                         shard_size=1)
    tokenize(cfg)
    run = json.loads((out / "run.json").read_text())
    run["fingerprint"] = next(iter(RETIRED_SUITES))        # as if the bundled suite 2 had made it
    (out / "run.json").write_text(json.dumps(run))
    with pytest.raises(ConfigError, match=r"cannot resume.*bundled suite version 2.*Encode the media again"):
        tokenize(dataclasses.replace(cfg, resume=True))
