"""What every adapter of a public tokenizer shares: the reference model held as a submodule, built
from the reference's own config (kept verbatim in unitok's config, so the fingerprint records it),
its origin, and the audio side common to all codecs (resampling, headers, long inputs in windows,
missing codes).

An adapter never re-implements the reference: it calls the reference's encode and decode and
only adds what unitok needs around them (any size in and the same size out, headers, layouts).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from ..checkpoint import state_fingerprint
from ..errors import ConfigError, MediaError, TokenSequenceError
from ..layout import MISSING, CodecDepth, Delay, LevelDelay
from ..media import DEFAULT_LIMITS, Audio
from ..modality import MediaTokenizer

#: keys of a reference config.json that say who wrote it, not what the model is: left out of the
#: stored config so a folder re-saved by another transformers release keeps its fingerprint
VOLATILE_KEYS = ("transformers_version", "_name_or_path", "architectures", "torch_dtype", "dtype",
                 "_commit_hash", "auto_map")

AUDIO_LAYOUTS = ("codec_depth", "delay", "level_delay")
MIN_RATE, MAX_RATE = 1000, 384000


def clean_reference(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in VOLATILE_KEYS}


def transformers_module():
    """``transformers``, imported on first use (an optional extra: ``pip install unitok[hf]``),
    with the hub switched off: nothing an adapter loads may reach the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers
    except ModuleNotFoundError:
        raise ConfigError("this tokenizer adapts a model of the `transformers` package, which is not installed; "
                          "install the extra: pip install 'unitok[hf]'") from None
    return transformers


def build_hf(config_class: str, model_class: str, reference: dict):
    """A ``transformers`` model built (randomly initialised) from its config dict; the caller loads
    the weights."""
    tr = transformers_module()
    try:
        cfg = getattr(tr, config_class).from_dict(dict(reference))
        model = getattr(tr, model_class)(cfg)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise ConfigError(f"cannot build {model_class} from its config: {e}") from None
    return model.float().eval()


class ReferenceTokenizer(MediaTokenizer):
    """Base of the adapters: ``self.model`` is the reference model, ``self.cfg.reference`` its
    config. Subclasses set ``build_reference(cfg)`` and the modality contract."""

    reference_name: ClassVar[str]     # what users call it: "Mimi", "Emu3 VQ", ...

    def __init__(self, cfg, model: torch.nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        self.model = self.build_reference(cfg) if model is None else model.float().eval()
        self.model.requires_grad_(False)

    @classmethod
    def build_reference(cls, cfg) -> torch.nn.Module:
        raise NotImplementedError

    def train(self, mode: bool = True):
        # the reference stays in eval mode: its encode and decode are what the tokens mean
        super().train(mode)
        self.model.eval()
        return self

    @property
    def origin(self) -> dict:
        """Where this tokenizer comes from: its checkpoint type, a digest of the reference's
        config and a digest of its weights (all three are in :attr:`fingerprint` too)."""
        config = json.dumps(self.cfg.reference, sort_keys=True, separators=(",", ":"))
        return {"type": self.checkpoint_type, "reference": self.reference_name,
                "config_sha256": hashlib.sha256(config.encode()).hexdigest(),
                "weights_sha256": state_fingerprint(self.model.state_dict())}


# -- audio ------------------------------------------------------------------------------------------


@dataclass
class AudioAdapterConfig:
    """An adapted audio codec: the reference's config (``reference``) and the unitok layout of its
    codes (``layout``: "codec_depth", "delay" or "level_delay" with one delay per level)."""

    reference: dict = field(default_factory=dict)
    layout: str = "codec_depth"
    delays: tuple[int, ...] = ()
    order: str = "level"                       # SNAC's multi-rate layout: "level" or "tree"

    def __post_init__(self):
        if self.layout not in AUDIO_LAYOUTS + ("multi_rate",):
            raise ConfigError(f"audio adapter config: layout must be one of {AUDIO_LAYOUTS}, got {self.layout!r}")
        if self.order not in ("level", "tree"):
            raise ConfigError(f"audio adapter config: order must be 'level' or 'tree', got {self.order!r}")


class AudioAdapter(ReferenceTokenizer):
    """A public audio codec as a unitok audio tokenizer.

    Header: ``levels``, ``sample_rate`` and ``samples`` (4 shape tokens), as unitok's own codec, so
    any length at any rate round-trips exactly. Audio is downmixed to mono and resampled to the
    model's rate; decoding gives ``output_rate`` (the model's rate, except for a reference that
    decodes at another: NeuCodec, 16 kHz in, 24 kHz out) and the input's duration there,
    ``output_length(header) = ceil(samples * output_rate / sample_rate)`` samples, or the input's
    rate and length with ``resample_to_input``.

    Batched API: ``encode(wav: [B, 1, N]) -> codes`` at the model's rate (``[B, n, T]``, a list
    over levels for multi-rate codecs) and ``decode(codes, length) -> wav [B, 1, length]`` at
    ``output_rate``.
    Items of different lengths are never padded into one batch (padding would leak into the codes
    of a non-causal codec): ``encode_items`` batches the items of equal length only.

    Inputs longer than ``chunk_seconds`` are encoded and decoded in windows of that length with
    ``context_seconds`` of context on each side, so memory is bounded by the window; codes then
    equal a one-shot encode except where the reference's receptive field is wider than the context.
    """

    modality = "audio"
    header_fields = ("levels", "sample_rate", "samples")
    header_digits = {"samples": 4}
    config_class = AudioAdapterConfig
    limits = DEFAULT_LIMITS

    def __init__(self, cfg: AudioAdapterConfig, model: torch.nn.Module | None = None):
        super().__init__(cfg, model)
        self.n_levels = self.levels
        self.resample_to_input = False
        self.chunk_seconds = 30.0
        self.context_seconds = 2.0
        self.check_layout()

    # -- what each codec says about itself ----------------------------------------------------------

    sample_rate: int
    levels: int
    hop: int        # samples per frame at the model's rate

    @property
    def output_rate(self) -> int:
        """The rate ``decode`` gives: the model's rate unless the reference decodes at another."""
        return self.sample_rate

    @property
    def output_hop(self) -> int:
        """Decoded samples per frame, at ``output_rate``."""
        return self.hop

    @property
    def codebook_sizes(self) -> list[int]:
        raise NotImplementedError

    def frames(self, header: dict[str, int]) -> int:
        return self.frames_of(self.model_length(header))

    def frames_of(self, n: int) -> int:
        """Frames the reference gives for ``n`` samples at its rate."""
        return -(-n // self.hop)

    def _encode(self, wav: torch.Tensor, n: int):
        """wav: [B, 1, N] -> codes [B, n, frames_of(N)] (the reference's encode)."""
        raise NotImplementedError

    def _decode(self, codes) -> torch.Tensor:
        """codes [B, n, T] -> wav [B, 1, >= T * hop] (the reference's decode)."""
        raise NotImplementedError

    # -- codes containers (multi-rate codecs override these) ----------------------------------------

    def _slice(self, codes, a: int, b: int):
        return codes[..., a:b]

    def _cat(self, parts):
        return torch.cat(parts, -1)

    def _item_codes(self, codes):
        """Batched codes of one item -> what the layout takes."""
        return codes[0].cpu().numpy()

    def _batch_codes(self, codes) -> torch.Tensor:
        """What the layout gives for one item -> batched codes on the model's device."""
        return torch.as_tensor(np.asarray(codes))[None].to(self.device)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    def bitrate(self, levels: int | None = None) -> float:
        levels = self.n_levels if levels is None else levels
        return sum(math.log2(s) for s in self.codebook_sizes[:levels]) * self.frame_rate

    @property
    def bitrates(self) -> dict[int, float]:
        return {k: self.bitrate(k) / 1000 for k in range(1, self.levels + 1)}

    def check_layout(self) -> None:
        if self.cfg.layout == "level_delay" and len(self.cfg.delays) != self.levels:
            raise ConfigError(f"{self.reference_name}: layout 'level_delay' needs one delay per level "
                              f"({self.levels}), got {list(self.cfg.delays)}")

    def layout(self, header: dict[str, int]):
        K, T = header["levels"], self.frames(header)
        if self.cfg.layout == "delay":
            return Delay(K, T)
        if self.cfg.layout == "level_delay":
            return LevelDelay(K, T, tuple(self.cfg.delays[:K]))
        return CodecDepth(K, T)

    def check_header(self, header: dict[str, int]) -> None:
        if not 1 <= header["levels"] <= self.levels:
            raise TokenSequenceError(f"audio header says {header['levels']} levels; this tokenizer has 1..{self.levels}")
        if not MIN_RATE <= header["sample_rate"] <= MAX_RATE:
            raise TokenSequenceError(f"audio header sample_rate {header['sample_rate']} Hz is outside "
                                     f"{MIN_RATE}..{MAX_RATE} Hz")
        if header["samples"] < 1:
            raise TokenSequenceError("audio header length is 0 samples")
        if header["samples"] / header["sample_rate"] > self.limits.max_seconds:
            raise TokenSequenceError(f"audio header asks for {header['samples'] / header['sample_rate']:.0f} s, over "
                                     f"the limit of {self.limits.max_seconds:g} s (MediaLimits.max_seconds)")

    def model_length(self, header: dict[str, int]) -> int:
        return -(-header["samples"] * self.sample_rate // header["sample_rate"])

    def output_length(self, header: dict[str, int]) -> int:
        """Samples ``decode_item`` gives: the input's duration at ``output_rate`` (``model_length``
        when the reference decodes at its input rate)."""
        return -(-header["samples"] * self.output_rate // header["sample_rate"])

    # -- batched API ----------------------------------------------------------------------------------

    def _levels_arg(self, n_levels: int | None) -> int:
        n = self.n_levels if n_levels is None else n_levels
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= self.levels:
            raise ConfigError(f"n_levels must be an integer in 1..{self.levels}, got {n!r}")
        return int(n)

    @property
    def _window(self) -> tuple[int, int]:
        """(window, context) in frames for long inputs."""
        return (max(1, round(self.chunk_seconds * self.frame_rate)),
                max(0, math.ceil(self.context_seconds * self.frame_rate)))

    def _aligned(self, frames: int) -> bool:
        """Whether windows of ``frames`` frames map to whole frames of the reference (for the
        windowed encode)."""
        return self.frames_of(frames * self.hop) == frames

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, n_levels: int | None = None):
        """wav: [B, 1, N] in [-1, 1] at ``sample_rate`` -> codes [B, n, frames_of(N)] int64."""
        n = self._levels_arg(n_levels)
        if not torch.is_tensor(wav) or wav.ndim != 3 or wav.shape[1] != 1 or wav.shape[-1] < 1:
            raise MediaError(f"{self.reference_name} expects mono samples [B, 1, N] at {self.sample_rate} Hz, got "
                             f"{tuple(wav.shape) if torch.is_tensor(wav) else type(wav).__name__}; use "
                             f"encode_item(Audio) for other rates and channel counts")
        wav = wav.to(self.device, torch.float32)
        N = wav.shape[-1]
        chunk, ctx = self._window
        if N <= (chunk + 2 * ctx) * self.hop or not self._aligned(chunk + 2 * ctx):
            return self._encode(wav, n)
        T, out = self.frames_of(N), []
        for s in range(0, T, chunk):
            a, b = max(0, s - ctx), min(T, s + chunk + ctx)
            codes = self._encode(wav[..., a * self.hop:b * self.hop], n)
            out.append(self._slice(codes, s - a, s - a + min(chunk, T - s)))
            self.report_progress(min(T, s + chunk), T, "frame")
        return self._cat(out)

    @torch.no_grad()
    def decode(self, codes, length: int | None = None) -> torch.Tensor:
        """codes [B, n, T] -> wav [B, 1, T * output_hop] in [-1, 1] at ``output_rate``, cropped to
        ``length``; long inputs in windows (see the class docstring)."""
        T, hop = self._frames_in(codes), self.output_hop
        chunk, ctx = self._window
        if T <= chunk + 2 * ctx:
            wav = self._decode(codes)[..., :T * hop]
        else:
            parts = []
            for s in range(0, T, chunk):
                a, b = max(0, s - ctx), min(T, s + chunk + ctx)
                y = self._decode(self._slice(codes, a, b))
                parts.append(y[..., (s - a) * hop:(s - a + min(chunk, T - s)) * hop])
                self.report_progress(min(T, s + chunk), T, "frame")
            wav = torch.cat(parts, -1)
        wav = wav.float().clamp(-1, 1)
        if length is None:
            return wav
        # a reference whose frames do not reach the end of the input leaves its tail silent
        return torch.nn.functional.pad(wav, (0, max(0, length - wav.shape[-1])))[..., :length]

    def _frames_in(self, codes) -> int:
        return codes.shape[-1]

    # -- MediaTokenizer -------------------------------------------------------------------------------

    def _model_rate_mono(self, item) -> tuple[dict[str, int], torch.Tensor]:
        if not isinstance(item, Audio):
            raise MediaError(f"the {self.reference_name} tokenizer takes an Audio, got {type(item).__name__}")
        if not MIN_RATE <= item.sample_rate <= MAX_RATE:
            raise MediaError(f"sample rate {item.sample_rate} Hz is outside the supported {MIN_RATE}..{MAX_RATE} Hz")
        if item.duration > self.limits.max_seconds:
            raise MediaError(f"audio lasts {item.duration:.0f} s, over the limit of {self.limits.max_seconds:g} s "
                             f"(MediaLimits.max_seconds)")
        from ..audio.streaming import resample_blocks   # unitok's block-wise resampler (bounded memory)
        header = {"levels": self._levels_arg(None), "sample_rate": item.sample_rate, "samples": item.num_samples}
        block = max(1, round(10 * item.sample_rate))
        wav = torch.cat(list(resample_blocks(item.samples, item.sample_rate, self.sample_rate, block)))
        return header, wav[None, None]

    def encode_item(self, item) -> tuple[dict[str, int], object]:
        """Audio -> (header, codes as the layout takes them)."""
        header, wav = self._model_rate_mono(item)
        codes = self.encode(wav, header["levels"])
        if self._frames_in(codes) != self.frames(header):   # an invariant of frames_of
            raise AssertionError(f"{self.reference_name} gave {self._frames_in(codes)} frames, the header implies "
                                 f"{self.frames(header)}")
        return header, self._item_codes(codes)

    def encode_items(self, items) -> list[tuple[dict[str, int], object]]:
        """Many Audio items; those of the same length at the model's rate go through the reference
        as one batch, so no item's codes see another's padding."""
        prepared = [self._model_rate_mono(item) for item in items]
        out: list = [None] * len(items)
        by_length: dict[tuple[int, int], list[int]] = {}
        for i, (header, wav) in enumerate(prepared):
            by_length.setdefault((wav.shape[-1], header["levels"]), []).append(i)
        for (_, n), idx in by_length.items():
            codes = self.encode(torch.cat([prepared[i][1] for i in idx]), n)
            for j, i in enumerate(idx):
                out[i] = (prepared[i][0], self._item_codes(self._slice_batch(codes, j)))
        return out

    def _slice_batch(self, codes, j: int):
        return codes[j:j + 1]

    def _present(self, codes) -> tuple[object, torch.Tensor]:
        """Lenient decoding: codes with ``MISSING`` entries -> (codes the reference can decode,
        keep [T] bool). The reference decodes the leading levels present in every frame that has
        its first level; a frame without it decodes as silence."""
        codes = codes.clone()
        alive = codes[0, 0] != MISSING                                    # [T]
        full = (codes[0][:, alive] != MISSING).all(1) if alive.any() else torch.zeros(codes.shape[1], dtype=torch.bool)
        k = int(full.long().cumprod(0).sum()) or 1
        codes = codes[:, :k]
        codes[codes == MISSING] = 0
        return codes, alive

    def decode_item(self, header: dict[str, int], codes) -> Audio:
        """(header, codes) -> Audio at ``output_rate`` and ``output_length(header)`` samples (or,
        with ``resample_to_input``, at the input's rate and length)."""
        batch = self._batch_codes(codes)
        batch, alive = self._present(batch)
        rate, n_out = self.output_rate, self.output_length(header)
        wav = self.decode(batch, n_out)[0]                                          # [1, n_out]
        if not alive.all():
            keep = alive.repeat_interleave(self.output_hop * self._frames_in(batch) // len(alive))[:wav.shape[-1]]
            wav = wav * keep.to(wav.device, wav.dtype)
        if self.resample_to_input and header["sample_rate"] != rate:
            from ..audio.streaming import resample_blocks
            n_in = header["samples"]
            wav = torch.cat(list(resample_blocks(wav.cpu(), rate, header["sample_rate"], 10 * rate)))[None]
            wav = torch.nn.functional.pad(wav, (0, max(0, n_in - wav.shape[-1])))[..., :n_in]
            return Audio(wav.clamp(-1, 1).contiguous(), header["sample_rate"])
        return Audio(wav.cpu().contiguous(), rate)
