"""Audio tokenizer: ``AudioTokenizer`` (checkpoint type ``"audio.codec"``), assembled from an
encoder, a residual quantizer and a decoder that :func:`build_parts` makes from an
``AudioTokenizerConfig``.

    >>> from unitok.audio import load_default
    >>> model = load_default()                  # the bundled 24 kHz codec (1.5 / 3 / 6 kbps)
    >>> codes = model.encode(wav)               # wav: [B, 1, N] float in [-1, 1] at 24 kHz
    >>> model.set_bitrate(3.0)                  # 4 levels: codes [B, 4, T]
    >>> recon = model.decode(codes, length=wav.shape[-1])
    >>> dec = model.stream_decoder()            # frame by frame, for a generating model
    >>> chunk = dec.push(codes[0, :, :1])       # the samples now final ([hop] once past the latency)
    >>> tail = dec.flush()                      # at the end: what the decoder held back

Files: ``config.py`` (the config), ``seanet.py`` (SEANet encoder and decoder), ``spectral.py``
(STFT encoder, iSTFT decoder), ``parts.py`` (what a part provides, and the factory),
``streaming.py`` (chunked and windowed encode/decode, block resampling, ``StreamDecoder``),
``model.py`` (``AudioTokenizer``).
"""

from __future__ import annotations

from ..checkpoint import ASSETS, load_bundled
from ..quantize import RFSQConfig, RVQConfig
from .config import AudioTokenizerConfig
from .model import AudioTokenizer
from .parts import AudioDecoder, AudioEncoder, Parts, build_parts
from .seanet import SEANetDecoder, SEANetEncoder
from .spectral import ISTFTDecoder, STFTEncoder
from .streaming import StreamDecoder, resample_blocks

DEFAULT_DIR = ASSETS / "audio"


def load_default(device: str = "cpu") -> AudioTokenizer:
    """The bundled default audio tokenizer (``unitok/assets/audio``)."""
    return load_bundled(AudioTokenizer, "audio", device)


__all__ = [
    "AudioDecoder",
    "AudioEncoder",
    "AudioTokenizer",
    "AudioTokenizerConfig",
    "ISTFTDecoder",
    "Parts",
    "RFSQConfig",
    "RVQConfig",
    "SEANetDecoder",
    "SEANetEncoder",
    "STFTEncoder",
    "StreamDecoder",
    "build_parts",
    "load_default",
    "resample_blocks",
]
