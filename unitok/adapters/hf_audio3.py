"""Codecs of ``transformers`` whose encoder reads filterbank features beside the samples: X-codec2
(``Xcodec2Model``) and NeuCodec (``NeuCodecModel``, X-codec2's family, encoding at 16 kHz and
decoding at 24 kHz). Each is its reference class behind
:class:`~unitok.adapters.base.AudioAdapter`, with the reference's own feature extractor
(``Xcodec2FeatureExtractor``, ``NeuCodecFeatureExtractor``: Kaldi fbank through ``torchaudio``)
computing what the encoder reads. Codes are ``[B, 1, T]``: one finite-scalar (FSQ) codebook of
``prod(quantization_levels)`` codes.
"""

from __future__ import annotations

import math

import torch

from ..checkpoint import register
from ..errors import ConfigError
from .base import transformers_module
from .hf_audio import _HFAudio


@register("adapters.xcodec2")
class Xcodec2Adapter(_HFAudio):
    """X-codec2 (``Xcodec2Model``): semantic (Wav2Vec2-BERT on fbank features) and acoustic
    features quantized by one FSQ codebook, a Vocos (ISTFT) decoder.

    The feature extractor is built from the model's config (its rate and hop; the rest of it is
    fixed in the class), so a folder needs no ``preprocessor_config.json``. It pads the input by
    one sample and then to whole frames, so ``N`` samples give ``ceil((N + 1) / hop)`` frames,
    which cover every sample. Its fbank features are normalized over the whole input, so in
    windows (inputs over ``chunk_seconds``) they are normalized per window.
    """

    reference_name = "X-codec2"
    config_class_name, model_class_name = "Xcodec2Config", "Xcodec2Model"
    feature_class_name = "Xcodec2FeatureExtractor"
    levels = 1

    def __init__(self, cfg, model=None):
        super().__init__(cfg, model)
        try:
            self.features = getattr(transformers_module(), self.feature_class_name)(
                sampling_rate=self.sample_rate, hop_length=self.hop)
        except ImportError as e:      # the extractor's fbank needs torchaudio, which unitok installs
            raise ConfigError(f"{self.reference_name}: its feature extractor cannot run ({e}); install "
                              f"torchaudio") from None

    @property
    def codebook_sizes(self) -> list[int]:
        return [math.prod(self.model.config.quantization_levels)]

    def frames_of(self, n: int) -> int:
        return -(-(n + 1) // self.hop)

    def _aligned(self, frames: int) -> bool:
        # a window of whole frames gives one frame more (the extractor's extra sample); the
        # windowed encode keeps the frames it needs and drops that one
        return self.frames_of(frames * self.hop) >= frames

    def _features(self, wav: torch.Tensor) -> dict:
        """wav [B, 1, N] -> the reference encoder's inputs, computed by its feature extractor on the
        CPU item by item (as it always does), on the model's device."""
        items = list(wav[:, 0].detach().cpu())
        batch = self.features(items, sampling_rate=self.sample_rate, return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items()}

    def _encode(self, wav, n):
        return self.model.encode(**self._features(wav), return_dict=True).audio_codes.long()

    def _decode(self, codes):
        return self.model.decode(codes, return_dict=True).audio_values


@register("adapters.neucodec")
class NeuCodecAdapter(Xcodec2Adapter):
    """NeuCodec (``NeuCodecModel``): X-codec2's design, encoding at ``input_sampling_rate`` (16 kHz)
    and decoding at ``output_sampling_rate`` (24 kHz), so ``output_rate`` differs from
    ``sample_rate``: a decoded item lasts as long as the input, ``ceil(samples * output_rate /
    sample_rate)`` samples at ``output_rate`` (the header keeps the input's rate and length; with
    ``resample_to_input`` the input's rate and length come back).

    The reference keeps ``floor(N / hop)`` frames (its semantic branch drops the last partial
    frame) and fails under one frame, so the input is padded with zeros to whole frames (and to
    the shortest the semantic branch accepts), as for DAC: ``ceil(N / hop)`` frames cover every
    sample.
    """

    reference_name = "NeuCodec"
    config_class_name, model_class_name = "NeuCodecConfig", "NeuCodecModel"
    feature_class_name = "NeuCodecFeatureExtractor"

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.input_sampling_rate)

    @property
    def output_rate(self) -> int:
        return int(self.model.config.output_sampling_rate)

    @property
    def hop(self) -> int:
        return int(self.model.config.encoder_hop_length)

    @property
    def output_hop(self) -> int:
        # the ISTFT head's hop, the encoder's hop at the output rate
        return int(self.model.config.hop_length)

    def _reference_frames(self, n: int) -> int:
        """Frames the reference gives for ``n`` samples, ``n`` a multiple of ``hop``: the shorter of
        its acoustic branch (the extractor pads to ``n + hop``) and its semantic one (fbank frames
        of that, ``snip_edges``, pairs of them)."""
        f, padded = self.features, n + self.hop
        fbank = 1 + (padded - f.frame_length) // f.frame_shift if padded >= f.frame_length else 0
        return min(padded // self.hop, fbank // f.stride)

    def _padded_length(self, n: int) -> int:
        n = -(-n // self.hop) * self.hop
        while self._reference_frames(n) < 1:
            n += self.hop
        return n

    def frames_of(self, n: int) -> int:
        return self._reference_frames(self._padded_length(n))

    def _encode(self, wav, n):
        wav = torch.nn.functional.pad(wav, (0, self._padded_length(wav.shape[-1]) - wav.shape[-1]))
        return super()._encode(wav, n)
