"""The parts an :class:`~unitok.audio.AudioTokenizer` is assembled from, and the one factory that
builds them from an :class:`~unitok.audio.AudioTokenizerConfig` (as EnCodec and DAC assemble
theirs): an encoder, a ``ResidualQuantizer`` and a decoder.

    >>> encoder, quantizer, decoder = build_parts(cfg)
    >>> model = AudioTokenizer(cfg, encoder=encoder, quantizer=quantizer, decoder=decoder)
    >>> model = AudioTokenizer.from_config(cfg)       # the same, in one step

A new design is a class that fulfils :class:`AudioEncoder` or :class:`AudioDecoder` and an entry
in ``ENCODERS`` / ``DECODERS`` (and in the config's list of names). The parts' attribute names
are the checkpoint's state_dict keys (``encoder.*``, ``quantizer.*``, ``decoder.*``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch
from torch import nn

from ..quantize import ResidualQuantizer
from .config import DECODERS as DECODER_NAMES
from .config import ENCODERS as ENCODER_NAMES
from .config import AudioTokenizerConfig
from .seanet import SEANetDecoder, SEANetEncoder
from .spectral import ISTFTDecoder, STFTEncoder


class AudioEncoder(Protocol):
    """wav [B, 1, N] (N a multiple of ``hop``) -> latent [B, dim, N / hop]."""

    dim: int            # latent channels (the quantizer's dim)
    hop: int            # samples per latent frame
    causal: bool        # whether ``stream`` works (and chunked encodes are exact)

    def __call__(self, wav: torch.Tensor) -> torch.Tensor: ...

    def stream(self, wav: torch.Tensor, state: dict) -> torch.Tensor:
        """The next chunk of a signal (a multiple of ``hop``) -> its latent frames."""

    def context(self) -> int:
        """Input samples a frame sees beyond its own hop, both sides together."""


class AudioDecoder(Protocol):
    """latent [B, dim, T] -> wav [B, 1, T * hop] (about [-1, 1], unclamped)."""

    dim: int
    hop: int
    causal: bool
    lookahead: int      # frames after its own that a sample waits for when streaming
    held_samples: int   # samples a stream holds back until later frames (or the flush) arrive

    def __call__(self, z: torch.Tensor) -> torch.Tensor: ...

    def stream(self, z: torch.Tensor, state: dict) -> torch.Tensor:
        """The next frames -> the samples now final."""

    def flush(self, state: dict, batch: int) -> torch.Tensor:
        """The end of a stream: the samples held back, [batch, 1, m]."""

    def context_frames(self) -> int:
        """Latent frames an output sample sees beyond its own frame, both sides together."""

    @property
    def last_layer(self) -> torch.Tensor:
        """The output layer's weight (where a GAN's adaptive weight is measured)."""


def _seanet_args(cfg: AudioTokenizerConfig) -> dict:
    return dict(channels=cfg.channels, ratios=tuple(cfg.ratios), res_units=cfg.res_units,
                dilation_base=cfg.dilation_base, kernel=cfg.kernel, lstm=cfg.lstm, causal=cfg.causal)


ENCODERS: dict[str, Callable[[AudioTokenizerConfig], nn.Module]] = {
    "seanet": lambda cfg: SEANetEncoder(cfg.quantizer.dim, **_seanet_args(cfg)),
    "stft": lambda cfg: STFTEncoder(cfg.quantizer.dim, hop=cfg.spectral_hop, n_fft=cfg.window, width=cfg.encoder_dim,
                                    layers=cfg.encoder_layers, causal=cfg.causal, stride=cfg.frame_stride,
                                    latent_layers=cfg.latent_layers),
}
DECODERS: dict[str, Callable[[AudioTokenizerConfig], nn.Module]] = {
    "seanet": lambda cfg: SEANetDecoder(cfg.quantizer.dim, **_seanet_args(cfg)),
    "istft": lambda cfg: ISTFTDecoder(cfg.quantizer.dim, hop=cfg.spectral_hop, n_fft=cfg.window, width=cfg.decoder_dim,
                                      layers=cfg.decoder_layers, kernel=cfg.kernel, phase=cfg.decoder_phase,
                                      causal=cfg.causal, stride=cfg.frame_stride, latent_layers=cfg.latent_layers),
}
# the config validates names without importing the models
assert set(ENCODERS) == set(ENCODER_NAMES) and set(DECODERS) == set(DECODER_NAMES)


class Parts(NamedTuple):
    encoder: nn.Module
    quantizer: ResidualQuantizer
    decoder: nn.Module


def build_encoder(cfg: AudioTokenizerConfig) -> nn.Module:
    return ENCODERS[cfg.encoder](cfg)


def build_decoder(cfg: AudioTokenizerConfig) -> nn.Module:
    return DECODERS[cfg.decoder](cfg)


def build_parts(cfg: AudioTokenizerConfig) -> Parts:
    """The encoder, quantizer and decoder ``cfg`` describes, built in that order (so that a seeded
    build gives the same weights as ever)."""
    encoder = build_encoder(cfg)
    quantizer = ResidualQuantizer(cfg.quantizer)
    return Parts(encoder, quantizer, build_decoder(cfg))
