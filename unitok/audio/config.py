"""``AudioTokenizerConfig``: what :func:`unitok.audio.parts.build_parts` builds an audio codec from.

Which design each side uses is a config choice (``encoder``: "seanet" or "stft"; ``decoder``:
"seanet" or "istft"); a field's comment names the design that reads it when only one does.
Every field here can change ids or decoded audio, so none is training-only (the quantizer's
training settings, such as its dropout, live in its own config).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..quantize import RFSQConfig, RVQConfig, quantizer_config

MIN_RATE, MAX_RATE = 1000, 384_000  # accepted input sample rates (as MediaLimits)
LAYOUTS = ("codec_depth", "delay")
ENCODERS = ("seanet", "stft")
DECODERS = ("seanet", "istft")
MAX_DILATION = 1 << 16              # largest dilation of a residual unit's convolution


@dataclass
class AudioTokenizerConfig:
    sample_rate: int = 24_000                   # the model's rate; inputs are resampled to it
    channels: int = 16                          # width of the first conv; doubled at every downsampling
    ratios: tuple[int, ...] = (8, 5, 4, 2)      # decoder upsampling factors (the encoder uses them reversed);
                                                # stft/istft: their product is the STFT hop
    res_units: int = 1                          # residual units per resolution (dilations 1, base, base^2...)
    dilation_base: int = 2
    kernel: int = 7                             # first and last convs (istft: its first conv)
    lstm: int = 1                               # LSTM layers at the bottleneck (0: none)
    causal: bool = True                         # causal convs: streaming and exact chunking
    quantizer: RVQConfig | RFSQConfig = field(default_factory=RVQConfig)   # ``unitok.quantize.residual``
    layout: str = "codec_depth"                 # "codec_depth" (next-codec) or "delay" (MusicGen)
    encoder: str = "seanet"                     # "seanet" (strided convs) or "stft" (log spectra + ConvNeXt)
    encoder_dim: int = 256                      # stft: width of the ConvNeXt blocks over frames
    encoder_layers: int = 4                     # stft: ConvNeXt blocks
    decoder: str = "seanet"                     # "seanet" (the encoder's mirror) or "istft" (Vocos)
    decoder_dim: int = 256                      # istft: width of the ConvNeXt backbone over frames
    decoder_layers: int = 4                     # istft: ConvNeXt blocks
    n_fft: int = 0                              # stft/istft: window, a multiple of the hop (0: 4 hops)
    decoder_phase: str = "absolute"             # istft: predict each frame's phase, or its "increment"
    frame_stride: int = 1                       # stft/istft: one latent frame per frame_stride STFT frames
                                                # (12.5 Hz at 24 kHz: hop 320 x 6)
    latent_layers: int = 2                      # stft/istft with frame_stride > 1: ConvNeXt blocks at the
                                                # latent rate, on each side

    def __post_init__(self):
        self.quantizer = quantizer_config(self.quantizer, source="audio config: quantizer")
        if not isinstance(self.quantizer, (RVQConfig, RFSQConfig)):
            raise ConfigError(f"audio config: the quantizer must be residual (kind 'rvq' or 'rfsq'), got "
                              f"{self.quantizer.kind!r}")
        if not MIN_RATE <= self.sample_rate <= MAX_RATE:
            raise ConfigError(f"audio config: sample_rate must be in {MIN_RATE}..{MAX_RATE} Hz, got {self.sample_rate}")
        if self.channels < 1 or not self.ratios or min(self.ratios) < 1:
            raise ConfigError("audio config: channels and every entry of ratios must be >= 1")
        if self.res_units < 0 or self.dilation_base < 1 or self.lstm < 0:
            raise ConfigError("audio config: res_units and lstm must be >= 0, dilation_base >= 1")
        if self.res_units > 1 and (self.res_units - 1) * math.log2(self.dilation_base) > math.log2(MAX_DILATION):
            # the convolutions pad by the dilation: a damaged config must not make every encode
            # allocate gigabytes of padding
            raise ConfigError(f"audio config: dilation_base ** (res_units - 1) must be at most {MAX_DILATION}, got "
                              f"{self.dilation_base} ** {self.res_units - 1}")
        if self.kernel < 1 or (not self.causal and self.kernel % 2 == 0):
            raise ConfigError(f"audio config: kernel must be >= 1 (odd for a non-causal model), got {self.kernel}")
        if self.encoder not in ENCODERS:
            raise ConfigError(f"audio config: encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.encoder_dim < 1 or not 0 <= self.encoder_layers <= 64:
            raise ConfigError("audio config: encoder_dim must be >= 1 and encoder_layers in 0..64")
        if self.decoder_phase not in ("absolute", "increment"):
            raise ConfigError(f"audio config: decoder_phase must be 'absolute' or 'increment', got {self.decoder_phase!r}")
        if self.decoder not in DECODERS:
            raise ConfigError(f"audio config: decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.decoder_dim < 1 or not 0 <= self.decoder_layers <= 64:
            raise ConfigError("audio config: decoder_dim must be >= 1 and decoder_layers in 0..64")
        if not 1 <= self.frame_stride <= 64 or not 0 <= self.latent_layers <= 64:
            raise ConfigError(f"audio config: frame_stride must be in 1..64 and latent_layers in 0..64, got "
                              f"{self.frame_stride} and {self.latent_layers}")
        if self.frame_stride > 1 and (self.encoder, self.decoder) != ("stft", "istft"):
            raise ConfigError("audio config: frame_stride > 1 needs the spectral design (encoder: stft, decoder: "
                              "istft); a SEANet side sets its frame rate with ratios")
        step = self.spectral_hop
        if self.n_fft and (self.n_fft % step or not step <= self.n_fft <= 16 * step):
            raise ConfigError(f"audio config: n_fft must be 0 or a multiple of the STFT hop ({step}) up to 16 hops, "
                              f"got {self.n_fft}")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"audio config: layout must be one of {LAYOUTS}, got {self.layout!r}")

    @property
    def hop(self) -> int:
        """Samples per latent frame (one frame of codes)."""
        return math.prod(self.ratios) * self.frame_stride

    @property
    def spectral_hop(self) -> int:
        """stft/istft: samples per STFT frame (the hop when ``frame_stride`` is 1)."""
        return math.prod(self.ratios)

    @property
    def window(self) -> int:
        """stft/istft: the STFT window in samples (``n_fft``, or 4 STFT hops when it is 0)."""
        return self.n_fft or 4 * self.spectral_hop
