"""SNAC (``snac`` package, Hubert Siuzdak): a multi-scale codec whose levels run at different
rates (for example 12, 23 and 47 Hz at 24 kHz: rates 1x, 2x, 4x of the coarsest). Codes are a list
over levels of ``[B, T * rate_k]`` (``T`` coarse frames), laid out with
:class:`unitok.layout.MultiRate` (one group per coarse frame; ``order="tree"`` is the depth-first
order Orpheus uses).

The reference decoder adds noise drawn from torch's generator; the adapter draws it from a
generator seeded with 0 for every decode, so decoding is deterministic (the reference's own
``decode`` gives the same output after ``torch.manual_seed(0)``).

A SNAC folder holds ``config.json`` (the ``SNAC(...)`` arguments) and the weights; the
published ``pytorch_model.bin`` is a pickle: convert it first with ``unitok convert FOLDER -o OUT``.
"""

from __future__ import annotations

import math

import torch

from ..checkpoint import register
from ..errors import ConfigError
from ..layout import MISSING, MultiRate
from .base import AudioAdapter, AudioAdapterConfig


@register("adapters.snac")
class SnacAdapter(AudioAdapter):
    reference_name = "SNAC"

    @classmethod
    def build_reference(cls, cfg: AudioAdapterConfig):
        try:
            from snac import SNAC      # an optional extra: pip install 'unitok[hf]'
        except ModuleNotFoundError:
            raise ConfigError("this tokenizer adapts SNAC, whose package `snac` is not installed; install the "
                              "extra: pip install 'unitok[hf]'") from None
        try:
            return SNAC(**cfg.reference).float().eval()
        except TypeError as e:
            raise ConfigError(f"cannot build SNAC from its config: {e}") from None

    def check_layout(self) -> None:
        if self.cfg.layout != "multi_rate" or self.cfg.order not in ("level", "tree"):
            raise ConfigError(f"SNAC codes use layout 'multi_rate' (order 'level' or 'tree'), got "
                              f"{self.cfg.layout!r} / {self.cfg.order!r}")

    @property
    def sample_rate(self) -> int:
        return int(self.model.sampling_rate)

    @property
    def levels(self) -> int:
        return len(self.model.vq_strides)

    @property
    def rates(self) -> tuple[int, ...]:
        strides = self.model.vq_strides
        return tuple(strides[0] // s for s in strides)

    @property
    def hop(self) -> int:
        """Samples per coarse frame."""
        return int(self.model.hop_length) * self.model.vq_strides[0]

    @property
    def _unit(self) -> int:
        """Coarse frames per block of the reference's padding (its local attention window)."""
        return math.lcm(self.model.vq_strides[0], self.model.attn_window_size or 1) // self.model.vq_strides[0]

    @property
    def codebook_sizes(self) -> list[int]:
        return [int(self.model.codebook_size)] * self.levels

    def frames_of(self, n: int) -> int:
        block = self.hop * self._unit
        return -(-n // block) * self._unit

    @property
    def _window(self) -> tuple[int, int]:
        chunk, ctx = super()._window
        u = self._unit
        return max(u, chunk // u * u), -(-ctx // u) * u

    def layout(self, header):
        return MultiRate(self.frames(header), self.rates[:header["levels"]], self.cfg.order)

    def _encode(self, wav, n):
        return self.model.encode(wav)[:n]

    def _decode(self, codes):
        q = self.model.quantizer
        z = 0.0
        for i, c in enumerate(codes):       # the reference's from_codes, for any number of levels
            z_i = q.quantizers[i].out_proj(q.quantizers[i].decode_code(c))
            z = z + z_i.repeat_interleave(q.quantizers[i].stride, dim=-1)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(0)
            return self.model.decoder(z)

    # -- codes are a list over levels ----------------------------------------------------------------

    def _frames_in(self, codes) -> int:
        return codes[0].shape[-1]

    def _slice(self, codes, a, b):
        return [c[..., a * r:b * r] for c, r in zip(codes, self.rates)]

    def _cat(self, parts):
        return [torch.cat([p[k] for p in parts], -1) for k in range(len(parts[0]))]

    def _slice_batch(self, codes, j):
        return [c[j:j + 1] for c in codes]

    def _item_codes(self, codes):
        return [c[0].cpu().numpy() for c in codes]

    def _batch_codes(self, codes):
        return [torch.as_tensor(c).reshape(1, -1).to(self.device) for c in codes]

    def _present(self, codes):
        codes = [c.clone() for c in codes]
        T = codes[0].shape[-1]
        alive = codes[0][0] != MISSING                                               # [T]
        k = 0
        for c, r in zip(codes, self.rates):
            if not bool((c[0].view(T, r)[alive] != MISSING).all()):
                break
            k += 1
        codes = codes[:max(k, 1)]
        for c in codes:
            c[c == MISSING] = 0
        return codes, alive
