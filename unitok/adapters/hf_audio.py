"""Audio codecs of ``transformers``: Mimi (Kyutai), EnCodec (Meta), DAC (Descript) and X-codec,
each its reference class (``MimiModel``, ``EncodecModel``, ``DacModel``, ``XcodecModel``) behind
:class:`~unitok.adapters.base.AudioAdapter`. Codes are ``[B, K, T]`` residual levels.
"""

from __future__ import annotations

import torch

from ..checkpoint import register
from ..errors import ConfigError
from .base import AudioAdapter, AudioAdapterConfig, build_hf


class _HFAudio(AudioAdapter):
    config_class_name: str
    model_class_name: str

    @classmethod
    def build_reference(cls, cfg: AudioAdapterConfig):
        return build_hf(cls.config_class_name, cls.model_class_name, cfg.reference)

    @property
    def sample_rate(self) -> int:
        c = self.model.config
        return int(getattr(c, "sampling_rate", None) or c.sample_rate)

    @property
    def hop(self) -> int:
        return int(self.model.config.hop_length)

    @property
    def codebook_sizes(self) -> list[int]:
        return [int(self.model.config.codebook_size)] * self.levels


@register("adapters.mimi")
class MimiAdapter(_HFAudio):
    """Kyutai's Mimi (``MimiModel``): 12.5 Hz at 24 kHz, a semantic level then acoustic ones. Moshi
    delays the acoustic levels behind the semantic one: ``layout="level_delay"`` with
    ``delays=(0, 1, 1, ...)`` (or 2)."""

    reference_name = "Mimi"
    config_class_name, model_class_name = "MimiConfig", "MimiModel"

    @property
    def levels(self) -> int:
        return int(self.model.config.num_quantizers)

    @property
    def hop(self) -> int:
        return round(self.sample_rate / self.model.config.frame_rate)

    def frames_of(self, n: int) -> int:
        return int(self.model.get_encoded_length(torch.tensor(n)))

    def _encode(self, wav, n):
        return self.model.encode(wav, num_quantizers=n).audio_codes

    def _decode(self, codes):
        return self.model.decode(codes).audio_values


@register("adapters.encodec")
class EncodecAdapter(_HFAudio):
    """Meta's EnCodec (``EncodecModel``), the 24 kHz mono family (the 48 kHz stereo model scales
    each second by a float that tokens cannot carry: refused). Levels are what the highest
    ``target_bandwidths`` entry gives; ``n_levels`` chooses fewer."""

    reference_name = "EnCodec"
    config_class_name, model_class_name = "EncodecConfig", "EncodecModel"

    def __init__(self, cfg, model=None):
        super().__init__(cfg, model)
        c = self.model.config
        if c.normalize or c.chunk_length_s is not None or c.audio_channels != 1:
            raise ConfigError("EnCodec: only the mono models without normalisation or chunking (the 24 kHz family) "
                              "can be adapted; the 48 kHz model's per-chunk scales are floats, not codes")

    @property
    def levels(self) -> int:
        return int(self.model.config.num_quantizers)

    def _encode(self, wav, n):
        bandwidth = max(self.model.config.target_bandwidths)
        return self.model.encode(wav, bandwidth=bandwidth).audio_codes[0][:, :n]

    def _decode(self, codes):
        return self.model.decode(codes[None], [None]).audio_values


@register("adapters.dac")
class DacAdapter(_HFAudio):
    """Descript's DAC (``DacModel``). Like the original package, the input is padded with zeros to
    whole frames (the reference's encoder drops a partial last frame). Dia uses DAC's 9 levels
    with ``layout="level_delay", delays=(0, 8, 9, 10, 11, 12, 13, 14, 15)``."""

    reference_name = "DAC"
    config_class_name, model_class_name = "DacConfig", "DacModel"

    @property
    def levels(self) -> int:
        return int(self.model.config.n_codebooks)

    def _encode(self, wav, n):
        wav = torch.nn.functional.pad(wav, (0, -wav.shape[-1] % self.hop))
        return self.model.encode(wav, n_quantizers=n).audio_codes[:, :n]

    def _decode(self, codes):
        return self.model.decode(audio_codes=codes).audio_values[:, None]


@register("adapters.xcodec")
class XcodecAdapter(_HFAudio):
    """X-codec (``XcodecModel``): semantic (HuBERT) and acoustic (DAC) features quantized together."""

    reference_name = "X-codec"
    # the input is padded with zeros to whole frames, as for DAC (its acoustic half), so that the
    # decoded frames cover every input sample
    config_class_name, model_class_name = "XcodecConfig", "XcodecModel"

    @property
    def levels(self) -> int:
        return int(self.model.config.num_quantizers)

    def frames_of(self, n: int) -> int:
        # the reference's rule: the acoustic encoder's length, or that of the input padded by half
        # a hop on each side when it differs from the semantic model's
        m = self.model
        n = -(-n // self.hop) * self.hop
        semantic = int(m.semantic_model._get_feat_extract_output_lengths(torch.tensor(n + 2 * m.pad)))
        acoustic = m._get_conv1d_output_lengths(n, m.acoustic_encoder)
        return int(acoustic if acoustic == semantic else m._get_conv1d_output_lengths(n + 2 * m.pad, m.acoustic_encoder))

    def _encode(self, wav, n):
        wav = torch.nn.functional.pad(wav, (0, -wav.shape[-1] % self.hop))
        return self.model.encode(wav, bandwidth=max(self.model.config.target_bandwidths)).audio_codes[:, :n]

    def _decode(self, codes):
        return self.model.decode(codes).audio_values
