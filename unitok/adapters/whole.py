"""The vision tokenizer inside a whole unified model's folder (Emu3, Janus): users have the full
checkpoint (the language model and its VQ, sharded safetensors with ``model.safetensors.index.json``),
not a folder of the VQ alone. The VQ's config is the whole config's ``vq_config``; its weights are
the tensors under the VQ's prefix, read one by one from the shards that hold them (``safe_open``),
so the language model's weights are never loaded. The tokenizer equals the one a standalone VQ
folder gives (same reference config, same weights, same fingerprint).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError
from ..files import MAX_JSON_BYTES, contained, read_json_file
from .base import clean_reference

#: model_type of a whole model -> model_type of its vision tokenizer
WHOLE_MODELS = {"emu3": "emu3_vqgan", "janus": "janus_vqgan", "chameleon": "chameleon_vqgan"}
#: where the VQ's tensors live in a whole checkpoint: ``model.vqmodel.`` as transformers' module
#: tree names them (Janus), ``vqmodel.`` as the published Emu3 checkpoints and transformers'
#: save_pretrained of Emu3 write them (its conversion mapping renames them on load)
PREFIXES = ("model.vqmodel.", "vqmodel.")
INDEX = "model.safetensors.index.json"


def vq_config(folder: Path, config: dict) -> dict:
    """The VQ's reference config inside the whole model's ``config.json``."""
    kind = config.get("model_type")
    vq = config.get("vq_config")
    if not isinstance(vq, dict):
        raise ConfigError(f"{folder / 'config.json'}: a whole {kind} model without a 'vq_config' object; pass "
                          f"the folder of its vision tokenizer instead")
    vq = clean_reference(vq)
    vq.setdefault("model_type", WHOLE_MODELS[kind])
    if vq["model_type"] != WHOLE_MODELS[kind]:
        raise ConfigError(f"{folder / 'config.json'}: vq_config says model_type {vq['model_type']!r}, a whole "
                          f"{kind} model holds a {WHOLE_MODELS[kind]!r}")
    vision = config.get("vision_config")
    if kind == "janus" and isinstance(vision, dict) and "image_size" in vision and "patch_size" in vision:
        # JanusConfig derives the VQ's patch grid from the vision encoder's, whatever vq_config says
        vq["num_patches"] = int(vision["image_size"]) // int(vision["patch_size"])
    return vq


def _shards(folder: Path) -> dict[Path, list[str] | None]:
    """Shard file -> the keys under a VQ prefix it holds (None: unknown, no index: look inside)."""
    index = folder / INDEX
    if not index.exists():
        return {p: None for p in sorted(folder.glob("*.safetensors"))}
    data = read_json_file(index, ConfigError, "safetensors index", MAX_JSON_BYTES)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        raise ConfigError(f"{index}: no 'weight_map' object; the index is damaged")
    out: dict[Path, list[str]] = {}
    for key, name in weight_map.items():
        if isinstance(key, str) and key.startswith(PREFIXES):
            if not isinstance(name, str):
                raise ConfigError(f"{index}: the file of {key!r} is not a name")
            out.setdefault(contained(folder, name, ConfigError, "weights file"), []).append(key)
    return out


def vq_state(folder: Path) -> dict[str, torch.Tensor]:
    """The VQ's tensors of a whole checkpoint, keys without the prefix; only those are read."""
    from safetensors import SafetensorError, safe_open

    found: dict[str, dict[str, torch.Tensor]] = {p: {} for p in PREFIXES}
    for path, keys in _shards(folder).items():
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys() if keys is None else keys:
                    prefix = next((p for p in PREFIXES if key.startswith(p)), None)
                    if prefix is not None:
                        found[prefix][key[len(prefix):]] = f.get_tensor(key)
        except (OSError, SafetensorError) as e:
            raise ConfigError(f"{path}: cannot read these safetensors ({e})") from None
    prefix = max(PREFIXES, key=lambda p: len(found[p]))
    if not found[prefix]:
        raise ConfigError(f"{folder}: no tensors under {' or '.join(repr(p) for p in PREFIXES)}; these weights hold "
                          f"no vision tokenizer")
    return found[prefix]


def load_vq(cls, folder: Path, reference: dict) -> torch.nn.Module:
    """``cls``'s reference model built from ``reference`` and filled with the whole checkpoint's
    VQ tensors; refused if any is missing or left over."""
    model = cls.build_reference(cls.config_class(reference=reference))
    try:
        model.load_state_dict(vq_state(folder), strict=True)
    except RuntimeError as e:
        raise ConfigError(f"{folder}: the VQ tensors do not fill {cls.model_class_name} ({str(e)[:300]})") from None
    return model
