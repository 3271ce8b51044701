"""Train a byte-level BPE vocabulary with HF ``tokenizers`` and hand it to tiktoken.

HF's trainer is fast and multi-threaded; tiktoken's encoder is faster at inference. The trained
merges become tiktoken ranks: the 256 single bytes get ranks 0..255 by byte value, then every new
token gets the next rank in the order its merge was created, which is exactly HF's merge priority.

UTF-16BE units (``byte_encoding="utf-16-be"``): HF's byte-level pre-tokenizer only makes UTF-8, so
the pieces are cut here, in Python, exactly as ``TextTokenizer`` cuts them when encoding, and
handed to the trainer as their unit bytes in GPT-2's printable alphabet.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from unitok.errors import ConfigError

from .bpe import TextTokenizer
from .formats import byte_to_unicode, unicode_to_byte
from .patterns import DEFAULT_PATTERN
from .units import UTF8, Utf16Units, training_text
from .units import byte_encoding as _canonical_encoding

__all__ = ["ranks_from_merges", "train_bpe"]


def _hf_byte_level_bpe(pattern: str):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    hf.decoder = decoders.ByteLevel()
    return hf


def _hf_units_bpe():
    """A trainer-side BPE for pieces cut beforehand: samples are pieces separated by U+3000."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Split("\u3000", behavior="removed")
    return hf


def _utf16_samples(paths: Sequence[Path], texts: Iterable[str] | None, pattern: str) -> Iterable[list[str]]:
    """Training samples in UTF-16BE units (lines of the files, as HF reads files), in batches."""
    import regex

    units = Utf16Units(None, [regex.compile(pattern)])
    table = {b: byte_to_unicode(bytes([b])) for b in range(256)}

    def lines():
        if texts is not None:
            yield from texts
            return
        for p in paths:
            with open(p, "rb") as f:   # lines end at b"\n" only (a text file would also cut at "\r")
                for raw in f:
                    yield raw.decode("utf-8", "surrogateescape")

    batch: list[str] = []
    for line in lines():
        batch.append(training_text(line, units, table))
        if len(batch) == 1024:
            yield batch
            batch = []
    if batch:
        yield batch


def ranks_from_merges(merges: Iterable[tuple[bytes, bytes]]) -> dict[bytes, int]:
    """tiktoken ranks from an ordered merge list: bytes by value, then merges in order.

    A token made by two different merges keeps the rank of the first, which is the one BPE
    reaches first at inference too.
    """
    ranks = {bytes([b]): b for b in range(256)}
    for left, right in merges:
        for part in (left, right):
            if part not in ranks:
                raise ConfigError(f"merge ({left!r}, {right!r}) uses {part!r} before it is made")
        ranks.setdefault(left + right, len(ranks))
    return ranks


def _hf_merges(hf) -> list[tuple[bytes, bytes]]:
    import json

    model = json.loads(hf.to_str())["model"]
    out = []
    for merge in model["merges"]:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        out.append((unicode_to_byte(left), unicode_to_byte(right)))
    return out


def train_bpe(
    files: Sequence[str | os.PathLike] | None,
    vocab_size: int,
    pattern: str = DEFAULT_PATTERN,
    special_tokens: Sequence[str] | Mapping[str, int] | None = None,
    *,
    texts: Iterable[str] | None = None,
    min_frequency: int = 2,
    max_token_length: int | None = 32,
    show_progress: bool = True,
    name: str = "unitok-text",
    save_hf_json: str | os.PathLike | None = None,
    byte_encoding: str = UTF8,
) -> TextTokenizer:
    """Train a byte-level BPE on text files (or an iterable of strings via ``texts``).

    Args:
        files: UTF-8 text files; every line is a training sample (as in HF ``tokenizers``).
        vocab_size: total ids of the result: 256 bytes + merges + special tokens.
        pattern: pre-tokenisation regex; must read the same in fancy-regex and Oniguruma.
        special_tokens: names (given the ids after the merges, in order) or an explicit name -> id
            mapping with ids >= the number of BPE tokens.
        min_frequency: pairs seen fewer times are never merged.
        max_token_length: longest token in characters (None: unlimited).
        save_hf_json: also write HF's own ``tokenizer.json`` here, for comparison (UTF-8 only).
        byte_encoding: the units BPE runs on: ``"utf-8"`` or ``"utf-16-be"`` (the bytes of
            UTF-16BE code units, ``unitok.text.units``); ``max_token_length`` counts these bytes.

    A corpus too small for ``vocab_size`` gives a smaller vocabulary (BPE stops when no pair of
    adjacent tokens is seen ``min_frequency`` times); a warning then says how many ids came out.
    """
    from tokenizers import pre_tokenizers, trainers

    specials = list(special_tokens or ())
    n_bpe = vocab_size - len(specials)
    if n_bpe < 256:
        raise ConfigError(
            f"vocab_size {vocab_size} leaves {n_bpe} BPE tokens after {len(specials)} special "
            "tokens; it must be at least 256 + the number of special tokens"
        )
    if (files is None) == (texts is None):
        raise ValueError("train_bpe needs exactly one of files or texts")
    paths = [Path(f) for f in files or ()]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"training file {p} does not exist")

    encoding = _canonical_encoding(byte_encoding, "train_bpe")
    if encoding != UTF8 and save_hf_json is not None:
        raise ConfigError("train_bpe: save_hf_json needs byte_encoding='utf-8' (HF has no UTF-16BE byte level)")
    hf = _hf_byte_level_bpe(pattern) if encoding == UTF8 else _hf_units_bpe()
    trainer = trainers.BpeTrainer(
        vocab_size=n_bpe,
        min_frequency=min_frequency,
        show_progress=show_progress,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        max_token_length=max_token_length,
    )
    if encoding != UTF8:
        hf.train_from_iterator(_utf16_samples(paths, texts, pattern), trainer)
    elif texts is None:
        hf.train([str(p) for p in paths], trainer)
    else:
        hf.train_from_iterator(texts, trainer)
    if save_hf_json is not None:
        hf.save(str(save_hf_json))

    ranks = ranks_from_merges(_hf_merges(hf))
    if len(ranks) < n_bpe:
        longest = "" if max_token_length is None else f" or no longer than {max_token_length} characters"
        warnings.warn(
            f"train_bpe({name!r}): asked for vocab_size {vocab_size} but the corpus gives only "
            f"{len(ranks)} BPE tokens (256 bytes + {len(ranks) - 256} merges) + {len(specials)} "
            f"special tokens = {len(ranks) + len(specials)} ids: no other pair of adjacent tokens "
            f"occurs at least min_frequency={min_frequency} times within a pre-token{longest}. "
            "Train on more text, lower min_frequency, or ask for a smaller vocab_size",
            UserWarning,
            stacklevel=2,
        )
    if isinstance(special_tokens, Mapping):
        special_ids = {str(k): int(v) for k, v in special_tokens.items()}
    else:
        special_ids = {s: len(ranks) + i for i, s in enumerate(specials)}
    return TextTokenizer(ranks, pattern, special_ids, name=name, byte_encoding=encoding)
