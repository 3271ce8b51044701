"""Public pretrained tokenizers in unitok's shared token space, built on their reference
implementations (``transformers``, ``snac``: the optional extra ``unitok[hf]``).

    >>> tok = unitok.from_hf("weights/mimi")          # a local folder: config.json + safetensors

| folder (``config.json``)              | adapter (checkpoint type)                   | modality |
|---------------------------------------|---------------------------------------------|----------|
| ``model_type: mimi``                  | :class:`MimiAdapter` (``adapters.mimi``)    | audio    |
| ``model_type: encodec`` (24 kHz)      | :class:`EncodecAdapter` (``adapters.encodec``) | audio |
| ``model_type: dac``                   | :class:`DacAdapter` (``adapters.dac``)      | audio    |
| ``model_type: xcodec``                | :class:`XcodecAdapter` (``adapters.xcodec``) | audio   |
| ``model_type: emu3_vqgan``            | :class:`Emu3ImageAdapter` / ``modality="video"``: :class:`Emu3VideoAdapter` | image / video |
| ``model_type: janus_vqgan``           | :class:`JanusAdapter` (``adapters.janus``)  | image    |
| SNAC's ``config.json`` (``vq_strides``) | :class:`SnacAdapter` (``adapters.snac``)  | audio    |
| ``model_type: wavtokenizer``          | :class:`WavTokenizerAdapter` (``adapters.wavtokenizer``) | audio |
| ``model_type: higgs_audio_v2_tokenizer`` | :class:`HiggsAudioV2Adapter` (``adapters.higgs_audio_v2``) | audio |
| ``model_type: xcodec2``               | :class:`Xcodec2Adapter` (``adapters.xcodec2``) | audio |
| ``model_type: neucodec``              | :class:`NeuCodecAdapter` (``adapters.neucodec``): 16 kHz in, 24 kHz out | audio |
| ``model_type: emu3`` / ``janus`` (a whole model) | its VQ, as ``emu3_vqgan`` / ``janus_vqgan`` | image (video) |

A whole Emu3 or Janus checkpoint (``model_type: emu3`` / ``janus``, sharded safetensors) gives its
vision tokenizer: the VQ's config is read from ``vq_config`` and only the VQ's tensors from the
shards (:mod:`unitok.adapters.whole`); the result equals that of a folder of the VQ alone.

Nothing is downloaded: the hub is switched off and only the folder is read. Weights must be
safetensors; pickles (``.bin``, ``.pth``, ``.th``, ``.ckpt``) are converted only by the explicit
``unitok convert`` (:mod:`unitok.adapters.convert`). ``transformers``' Chameleon VQ has no decoder
and is not adapted (nor the other classes listed in :mod:`unitok.adapters.hf_audio2`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..checkpoint import MAX_CONFIG_BYTES, check_device
from ..errors import ConfigError
from .base import AudioAdapter, AudioAdapterConfig, ReferenceTokenizer, clean_reference, transformers_module
from .hf_audio import DacAdapter, EncodecAdapter, MimiAdapter, XcodecAdapter
from .hf_audio2 import HiggsAudioV2Adapter, WavTokenizerAdapter
from .hf_audio3 import NeuCodecAdapter, Xcodec2Adapter
from .hf_image import Emu3ImageAdapter, Emu3VideoAdapter, ImageAdapterConfig, JanusAdapter
from .snac import SnacAdapter
from .whole import WHOLE_MODELS, load_vq, vq_config

__all__ = ["from_hf", "ReferenceTokenizer", "AudioAdapter", "AudioAdapterConfig", "ImageAdapterConfig",
           "MimiAdapter", "EncodecAdapter", "DacAdapter", "XcodecAdapter", "Emu3ImageAdapter", "Emu3VideoAdapter",
           "JanusAdapter", "SnacAdapter", "WavTokenizerAdapter", "HiggsAudioV2Adapter", "Xcodec2Adapter",
           "NeuCodecAdapter", "ADAPTERS"]

#: model_type of a reference config.json -> adapter class
ADAPTERS = {"mimi": MimiAdapter, "encodec": EncodecAdapter, "dac": DacAdapter, "xcodec": XcodecAdapter,
            "emu3_vqgan": Emu3ImageAdapter, "janus_vqgan": JanusAdapter, "wavtokenizer": WavTokenizerAdapter,
            "higgs_audio_v2_tokenizer": HiggsAudioV2Adapter, "xcodec2": Xcodec2Adapter, "neucodec": NeuCodecAdapter}
NO_DECODER = {"chameleon_vqgan": "Chameleon's VQ in transformers has no decoder (it only encodes), so it cannot "
                                 "be a unitok tokenizer"}
PICKLES = (".bin", ".pt", ".pth", ".th", ".ckpt", ".pkl")


def read_reference_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder; from_hf reads a local folder holding config.json and weights")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: too large to be a config")
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing; a Hugging Face-format folder holds config.json and safetensors") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def _weights(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLES)
        hint = (f"it holds {', '.join(pickles)}, pickle files that loading could run code from; convert them "
                f"once with `unitok convert {folder} -o OUT` (weights only, in a separate process)"
                if pickles else "no weights found")
        raise ConfigError(f"{folder}: no .safetensors weights; {hint}")
    return files


def _image_processor(folder: Path) -> dict:
    """image_mean / image_std of the folder's preprocessor_config.json, if it has one."""
    path = folder / "preprocessor_config.json"
    try:
        data = json.loads(path.read_bytes()) if path.is_file() and path.stat().st_size < MAX_CONFIG_BYTES else {}
    except (OSError, ValueError):
        raise ConfigError(f"{path}: not valid JSON") from None
    out = {}
    for key in ("image_mean", "image_std"):
        value = data.get(key)
        if isinstance(value, (int, float)):
            value = [value] * 3
        if isinstance(value, list) and len(value) == 3:
            out[key] = tuple(float(v) for v in value)
    return out


def _load_hf(cls, folder: Path):
    """The reference model, loaded by its own ``from_pretrained`` from the folder alone (no hub,
    safetensors only); refused if the weights leave any parameter uninitialised."""
    tr = transformers_module()
    os.environ["HF_HUB_OFFLINE"] = "1"
    model_class = getattr(tr, cls.model_class_name)
    from safetensors import SafetensorError

    try:
        model, info = model_class.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                                  output_loading_info=True)
    except SafetensorError as e:     # a truncated or corrupted weights file
        raise ConfigError(f"{folder}: cannot read its safetensors ({e}); a file is truncated or corrupted") from None
    except (OSError, ValueError, RuntimeError) as e:
        raise ConfigError(f"{folder}: {cls.model_class_name} cannot load it: {e}") from None
    if info.get("missing_keys") or info.get("mismatched_keys"):
        raise ConfigError(f"{folder}: the weights do not fill {cls.model_class_name} (missing "
                          f"{sorted(info.get('missing_keys', []))[:5]}, mismatched "
                          f"{[k[0] if isinstance(k, tuple) else k for k in info.get('mismatched_keys', [])][:5]})")
    return model


def _load_snac(folder: Path, config: dict):
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    model = SnacAdapter.build_reference(AudioAdapterConfig(reference=config, layout="multi_rate"))
    state = {}
    for path in _weights(folder):
        try:
            state.update(load_file(str(path)))
        except (SafetensorError, OSError) as e:
            raise ConfigError(f"{path}: cannot read safetensors ({e}); the file is truncated or corrupted") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(f"{folder}: the weights do not match SNAC's config ({str(e)[:300]})") from None
    return model


def _delays(delays, layout) -> tuple[int, ...]:
    """``delays=`` as whole numbers >= 0, given with ``layout="level_delay"`` only."""
    if not delays:
        return ()
    if layout != "level_delay":
        raise ConfigError(f"delays apply to layout='level_delay' (one per level), not to layout={layout!r}")
    try:
        out = tuple(int(d) for d in delays)
    except (TypeError, ValueError):
        raise ConfigError(f"delays must be whole numbers, got {delays!r}") from None
    if min(out) < 0 or any(isinstance(d, float) and d != int(d) for d in delays):
        raise ConfigError(f"delays must be whole numbers >= 0 (one per level), got {list(delays)}")
    return out


def from_hf(folder, *, modality: str | None = None, layout: str | None = None, delays=None,
            order: str = "level", group: str = "token", device: str = "cpu") -> ReferenceTokenizer:
    """A unitok tokenizer from a local folder of a supported public tokenizer (see the module
    docstring). Nothing is downloaded.

    Args:
        folder: holds ``config.json`` and ``*.safetensors`` (as ``save_pretrained`` writes them);
            a whole Emu3 or Janus model's folder gives its vision tokenizer.
        modality: "video" makes an Emu3 folder a video tokenizer (default: its image tokenizer).
        layout, delays: audio codes' layout: "codec_depth" (default), "delay" (MusicGen) or
            "level_delay" with one delay per level (Dia: ``(0, 8, 9, ..., 15)``).
        order: SNAC's order within a coarse frame: "level" or "tree" (Orpheus).
        group: image codes: one group per "token" or per "row".
    """
    device = check_device(device)
    folder = Path(folder)
    config = read_reference_config(folder)
    kind = config.get("model_type")
    if kind is not None and not isinstance(kind, str):
        raise ConfigError(f"{folder / 'config.json'}: model_type must be a string, got {kind!r}")
    whole = kind in WHOLE_MODELS
    if WHOLE_MODELS.get(kind, kind) in NO_DECODER:
        raise ConfigError(f"{folder}: {NO_DECODER[WHOLE_MODELS.get(kind, kind)]}")
    if whole:       # the vision tokenizer of a whole unified model: its vq_config and VQ tensors only
        config = vq_config(folder, config)
        kind = config["model_type"]
    audio = dict(layout=layout or "codec_depth", delays=_delays(delays, layout))
    snac = kind is None and "vq_strides" in config
    if snac:
        if layout not in (None, "multi_rate") or delays:
            raise ConfigError(f"{folder}: SNAC's codes are laid out multi_rate (choose their order with order=); "
                              f"layout and delays do not apply")
        cfg = AudioAdapterConfig(reference=clean_reference(config), layout="multi_rate", order=order)
        return SnacAdapter(cfg, model=_load_snac(folder, config)).to(device)
    if order != "level":
        raise ConfigError(f"{folder}: order={order!r} is SNAC's option; this is not a SNAC folder")
    if kind not in ADAPTERS:
        known = ", ".join(sorted(ADAPTERS)) + ", and SNAC"
        raise ConfigError(f"{folder}: model_type {kind!r} is not a supported tokenizer (supported: {known})")
    cls = ADAPTERS[kind]
    if modality == "video":
        if cls is not Emu3ImageAdapter:
            raise ConfigError(f"{folder}: {cls.reference_name} is not a video tokenizer")
        cls = Emu3VideoAdapter
    elif modality not in (None, cls.modality):
        raise ConfigError(f"{folder}: {cls.reference_name} is a {cls.modality} tokenizer, not {modality}")
    if issubclass(cls, AudioAdapter) and group != "token":
        raise ConfigError(f"{folder}: group={group!r} applies to image codes; {cls.reference_name} is an audio codec")
    if not issubclass(cls, AudioAdapter) and (layout is not None or delays):
        raise ConfigError(f"{folder}: layout and delays apply to audio codes; {cls.reference_name} is a "
                          f"{cls.modality} tokenizer (its codes' grouping is group=)")
    _weights(folder)
    model = load_vq(cls, folder, clean_reference(config)) if whole else _load_hf(cls, folder)
    if issubclass(cls, AudioAdapter):
        cfg = AudioAdapterConfig(reference=clean_reference(config), **audio)
    else:
        cfg = ImageAdapterConfig(reference=clean_reference(config), group=group, **_image_processor(folder))
    return cls(cfg, model=model).to(device)
