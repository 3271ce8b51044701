"""Audio tokenizer: ``AudioTokenizer`` (checkpoint type ``"audio.codec"``) and its config.

    >>> from unitok.audio import load_default
    >>> model = load_default()                  # the bundled 24 kHz codec (1.5 / 3 / 6 kbps)
    >>> codes = model.encode(wav)               # wav: [B, 1, N] float in [-1, 1] at 24 kHz
    >>> model.set_bitrate(3.0)                  # 4 levels: codes [B, 4, T]
    >>> recon = model.decode(codes, length=wav.shape[-1])
    >>> dec = model.stream_decoder()            # frame by frame, for a generating model
    >>> chunk = dec.push(codes[0, :, :1])       # the samples now final ([hop] once past the latency)
    >>> tail = dec.flush()                      # at the end: what the decoder held back
"""

from __future__ import annotations

from pathlib import Path

from ..quantize import ResidualQuantizerConfig
from .model import (AudioTokenizer, AudioTokenizerConfig, Decoder, Encoder, ISTFTDecoder, STFTEncoder, StreamDecoder,
                    resample_blocks)

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "assets" / "audio"


def load_default(device: str = "cpu") -> AudioTokenizer:
    """The bundled default audio tokenizer (``unitok/assets/audio``)."""
    from ..errors import ConfigError

    if not (DEFAULT_DIR / "config.json").exists():
        raise ConfigError(f"{DEFAULT_DIR}: the bundled audio tokenizer is missing; reinstall unitok or train "
                          f"one with `unitok train audio --config recipes/configs/audio_default.yaml`")
    return AudioTokenizer.from_pretrained(DEFAULT_DIR, device=device)


__all__ = [
    "AudioTokenizer",
    "AudioTokenizerConfig",
    "Decoder",
    "Encoder",
    "ISTFTDecoder",
    "ResidualQuantizerConfig",
    "STFTEncoder",
    "StreamDecoder",
    "load_default",
    "resample_blocks",
]
