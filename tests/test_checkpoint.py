"""Checkpoint folders: config.json + model.safetensors, registry lookup, pickle refused."""

import json

import pytest
import torch

from unitok import ConfigError
from unitok.checkpoint import WEIGHTS_NAME, load_pretrained, register

from unitok.testing import ToyImage, ToyImageConfig


def test_round_trip(tmp_path):
    model = ToyImage(ToyImageConfig(levels=8, layout="raster"))
    model.save_pretrained(tmp_path / "ck")
    again = load_pretrained(tmp_path / "ck")
    assert isinstance(again, ToyImage) and again.cfg == model.cfg
    assert again.fingerprint == model.fingerprint
    data = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert data["type"] == "testing.toy_image" and data["config"]["levels"] == 8


def test_pickle_is_refused(tmp_path):
    folder = tmp_path / "ck"
    ToyImage().save_pretrained(folder)
    (folder / WEIGHTS_NAME).unlink()
    torch.save({"scale": torch.tensor(1.0)}, folder / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="pickle checkpoints are refused"):
        load_pretrained(folder)


def test_truncated_weights(tmp_path):
    folder = tmp_path / "ck"
    ToyImage().save_pretrained(folder)
    data = (folder / WEIGHTS_NAME).read_bytes()
    (folder / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="truncated or corrupted"):
        load_pretrained(folder)


def test_weights_changed_after_saving_are_refused(tmp_path):
    """Same names, shapes and finite values, different numbers: only the recorded digest sees it."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "ck"
    ToyImage().save_pretrained(folder)
    data = json.loads((folder / "config.json").read_text())
    assert len(data["weights_sha256"]) == 64
    state = load_file(str(folder / WEIGHTS_NAME))
    save_file({k: v + 1 if v.is_floating_point() else v for k, v in state.items()}, str(folder / WEIGHTS_NAME))
    with pytest.raises(ConfigError, match="does not match the weights_sha256"):
        load_pretrained(folder)
    del data["weights_sha256"]                     # replaced on purpose: the documented way out
    (folder / "config.json").write_text(json.dumps(data))
    assert isinstance(load_pretrained(folder), ToyImage)


def test_saved_weights_are_readable_by_others(tmp_path):
    import os

    ToyImage().save_pretrained(tmp_path / "ck")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "ck" / WEIGHTS_NAME).stat().st_mode & 0o777 == 0o666 & ~umask


def test_bundled_checkpoints_record_their_digest():
    from pathlib import Path

    import unitok
    from unitok.checkpoint import file_sha256

    assets = Path(unitok.__file__).parent / "assets"
    for name in ("image", "audio", "video"):
        data = json.loads((assets / name / "config.json").read_text())
        assert data["weights_sha256"] == file_sha256(assets / name / WEIGHTS_NAME), name


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(type="nosuch.thing"), "unknown tokenizer type"),
    (lambda d: d.update(type="os.system"), "unknown tokenizer type"),
    (lambda d: d.update(type="../../etc"), "invalid tokenizer type"),
    (lambda d: d.update(format_version=7), "format version"),
    (lambda d: d["config"].update(bogus=1), "unknown ToyImageConfig option"),
])
def test_tampered_config(tmp_path, edit, message):
    folder = tmp_path / "ck"
    ToyImage().save_pretrained(folder)
    data = json.loads((folder / "config.json").read_text())
    edit(data)
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        load_pretrained(folder)


def test_truncated_config_and_missing_folder(tmp_path):
    folder = tmp_path / "ck"
    ToyImage().save_pretrained(folder)
    (folder / "config.json").write_text('{"type": "toyim')
    with pytest.raises(ConfigError, match="config.json"):
        load_pretrained(folder)
    with pytest.raises(ConfigError, match="not found"):
        load_pretrained(tmp_path / "nowhere")


def test_registering_a_taken_name_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        @register("testing.toy_image")
        class Other:  # noqa: F841
            pass
