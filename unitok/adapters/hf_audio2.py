"""More audio codecs of ``transformers``: WavTokenizer (one codebook, ``WavTokenizerModel``) and
Boson AI's Higgs Audio v2 tokenizer (``HiggsAudioV2TokenizerModel``: semantic HuBERT features and
acoustic DAC features quantized together by residual VQ), each behind
:class:`~unitok.adapters.base.AudioAdapter`. Codes are ``[B, K, T]`` (``K = 1`` for WavTokenizer).

Classes of ``transformers`` looked at and not adapted (see the README's "Public tokenizers"):
VibeVoice's acoustic tokenizer and Pocket TTS's audio tokenizer give continuous latents (no codes);
Qwen2.5-Omni's Token2Wav and Qwen3-Omni's Code2Wav only decode codes that the talker LM produced
(no encoder from audio); GLM-Image's VQ only encodes (no decoder); Cosmos3 holds no tokenizer.
"""

from __future__ import annotations

import torch

from ..checkpoint import register
from .hf_audio import _HFAudio


@register("adapters.wavtokenizer")
class WavTokenizerAdapter(_HFAudio):
    """WavTokenizer (``WavTokenizerModel``): one codebook, a Vocos (ISTFT) decoder; the reference
    pads any length internally and gives ``ceil(N / hop)`` frames."""

    reference_name = "WavTokenizer"
    config_class_name, model_class_name = "WavTokenizerConfig", "WavTokenizerModel"
    levels = 1

    def _encode(self, wav, n):
        return self.model.encode(wav).audio_codes

    def _decode(self, codes):
        return self.model.decode(codes).audio_values


@register("adapters.higgs_audio_v2")
class HiggsAudioV2Adapter(_HFAudio):
    """Higgs Audio v2's tokenizer (``HiggsAudioV2TokenizerModel``). As for X-codec, the input is
    padded with zeros to whole frames, so that the decoded frames cover every input sample. Levels
    are what the highest ``target_bandwidths`` entry gives; ``n_levels`` chooses fewer (residual
    levels: the first n are the same codes)."""

    reference_name = "Higgs Audio v2 tokenizer"
    config_class_name, model_class_name = "HiggsAudioV2TokenizerConfig", "HiggsAudioV2TokenizerModel"

    @property
    def _bandwidth(self) -> float:
        return max(self.model.config.target_bandwidths)

    @property
    def levels(self) -> int:
        return int(self.model.quantizer.get_num_quantizers_for_bandwidth(self._bandwidth))

    def frames_of(self, n: int) -> int:
        # the reference's rule: the acoustic encoder's length, or that of the input padded by half
        # a hop on each side when it differs from the semantic branch's (resampled to the semantic
        # rate as torchaudio does, padded by 160 samples each side, HuBERT, every f-th frame)
        m, c = self.model, self.model.config
        n = -(-n // self.hop) * self.hop
        s = n if c.sample_rate == c.semantic_sample_rate else -(-n * c.semantic_sample_rate // c.sample_rate)
        s = int(m.semantic_model._get_feat_extract_output_lengths(torch.tensor(s + 320)))
        s = m._get_conv1d_output_lengths(-(-s // max(1, c.semantic_downsample_factor)), m.encoder_semantic)
        acoustic = m._get_conv1d_output_lengths(n, m.acoustic_encoder)
        return int(acoustic if acoustic == s else m._get_conv1d_output_lengths(n + 2 * m.pad, m.acoustic_encoder))

    def _encode(self, wav, n):
        wav = torch.nn.functional.pad(wav, (0, -wav.shape[-1] % self.hop))
        return self.model.encode(wav, bandwidth=self._bandwidth, return_dict=True).audio_codes[:, :n]

    def _decode(self, codes):
        return self.model.decode(codes, return_dict=True).audio_values
