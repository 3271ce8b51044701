"""Readers and writers for foreign vocabulary formats: HF tokenizer.json and mistral tekken JSON.

Everything here runs offline on a local file and ends in a ``TextTokenizer``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import regex

from unitok.errors import ConfigError

from .merges import check_hf_merges, recover_merges
from .normalize import parse_normalizer
from .patterns import GPT2_PATTERN, covers_all_text, keep_unmatched

if TYPE_CHECKING:
    from .bpe import TextTokenizer

__all__ = [
    "byte_to_unicode",
    "load_hf_tokenizer_json",
    "load_tekken",
    "recover_merges",
    "to_hf_tokenizer",
    "unicode_to_byte",
]


# ------------------------------------------------------------------------------------------------
# GPT-2's byte <-> printable-character table (used by every HF byte-level BPE)


def _build_byte_table() -> list[str]:
    # Bytes that are already printable, non-space Latin-1 characters stand for themselves; the
    # other 68 bytes are assigned code points from 256 upwards, in byte order.
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    keep = set(printable)
    table = [""] * 256
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_BYTE_TO_CHAR = _build_byte_table()
_CHAR_TO_BYTE = {c: b for b, c in enumerate(_BYTE_TO_CHAR)}


def byte_to_unicode(token: bytes) -> str:
    """Token bytes -> the printable string HF byte-level vocabularies store."""
    return "".join(_BYTE_TO_CHAR[b] for b in token)


def unicode_to_byte(token: str) -> bytes:
    """Inverse of ``byte_to_unicode``; KeyError if ``token`` uses a character outside the table."""
    return bytes(_CHAR_TO_BYTE[c] for c in token)


# ------------------------------------------------------------------------------------------------
# HF tokenizer.json


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable or not JSON ({exc}); is it a complete {what}?") from None


def _hf_splits(pre: Any, path: Path) -> tuple[list[str], str]:
    """``(splits, pattern)`` of a byte-level pre-tokenizer: the regexes applied one after another
    before the last, and the last one (tiktoken's pattern). ConfigError for what we cannot
    reproduce."""

    def unsupported(detail: str) -> ConfigError:
        return ConfigError(
            f"{path}: pre_tokenizer {detail} is not supported; unitok reads byte-level BPE "
            "tokenizers whose pre-tokenizer is ByteLevel, or a Sequence of Split(Regex or String, "
            "behavior='Isolated') steps ending in ByteLevel"
        )

    if not isinstance(pre, dict):
        raise unsupported(repr(pre))
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    if not steps or not all(isinstance(s, dict) for s in steps) or steps[-1].get("type") != "ByteLevel":
        kinds = [s.get("type") if isinstance(s, dict) else s for s in steps or []]
        raise unsupported(f"{kinds!r} (it must end in ByteLevel)")
    byte_level = steps[-1]
    if byte_level.get("add_prefix_space", False):
        raise unsupported("ByteLevel(add_prefix_space=true) (it changes the text)")
    regexes = []
    for split in steps[:-1]:
        if split.get("type") != "Split":
            raise unsupported(f"{split.get('type')!r} before ByteLevel")
        if split.get("behavior") != "Isolated" or split.get("invert", False):
            raise unsupported(f"Split(behavior={split.get('behavior')!r}, invert={split.get('invert')})")
        pattern = split.get("pattern") or {}
        if isinstance(pattern.get("Regex"), str):
            regexes.append(pattern["Regex"])
        elif isinstance(pattern.get("String"), str) and pattern["String"]:
            regexes.append(regex.escape(pattern["String"]))
        else:
            raise unsupported(f"Split with pattern {pattern!r}")
    if byte_level.get("use_regex", True):
        return regexes, GPT2_PATTERN
    if not regexes:
        raise unsupported("ByteLevel(use_regex=false) without a Split before it")
    last = regexes.pop()
    try:
        # tiktoken drops text its regex skips; HF keeps each skipped run as a piece.
        pattern = last if covers_all_text(last) else keep_unmatched(last)
    except ValueError as exc:
        raise ConfigError(f"{path}: split regex {last!r} is not valid for tiktoken ({exc})") from None
    return regexes, pattern


def load_hf_tokenizer_json(cls: type[TextTokenizer], path: str | os.PathLike) -> TextTokenizer:
    path = Path(path)
    data = _load_json(path, "HF tokenizer.json")
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ConfigError(f"{path}: no \"model\" object; not an HF tokenizer.json")
    model = data["model"]
    if model.get("type", "BPE") != "BPE":
        raise ConfigError(
            f"{path}: model type {model.get('type')!r} is not supported; only byte-level BPE "
            "vocabularies can be loaded (WordPiece, Unigram and WordLevel cannot round-trip bytes)"
        )
    if model.get("byte_fallback"):
        raise ConfigError(
            f"{path}: a BPE with byte_fallback (SentencePiece style) is not byte-level; not supported"
        )
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise ConfigError(f"{path}: subword prefixes/suffixes are not supported in byte-level BPE")
    normalizer = parse_normalizer(data.get("normalizer"), str(path))
    splits, pattern = _hf_splits(data.get("pre_tokenizer"), path)
    ignore_merges = model.get("ignore_merges", False)
    if not isinstance(ignore_merges, bool):
        raise ConfigError(f"{path}: model.ignore_merges must be true or false")

    vocab = model.get("vocab")
    merges = model.get("merges")
    if not isinstance(vocab, dict) or not isinstance(merges, list):
        raise ConfigError(f"{path}: model.vocab must be an object and model.merges a list")

    specials: dict[str, int] = {}
    for entry in data.get("added_tokens") or []:
        try:
            specials[str(entry["content"])] = int(entry["id"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: malformed added_tokens entry {entry!r}") from None

    id_of: dict[bytes, int] = {}
    for token, idx in vocab.items():
        if token in specials:
            continue
        try:
            raw = unicode_to_byte(token)
        except KeyError:
            raise ConfigError(
                f"{path}: vocabulary token {token!r} is not in GPT-2's byte alphabet; "
                "this is not a byte-level BPE vocabulary"
            ) from None
        if raw in id_of:
            raise ConfigError(f"{path}: tokens {id_of[raw]} and {idx} have the same bytes {raw!r}")
        id_of[raw] = int(idx)

    first_merge: dict[bytes, int] = {}
    merge_pairs: list[tuple[bytes, bytes]] = []
    for i, merge in enumerate(merges):
        if isinstance(merge, str):
            left, sep, right = merge.partition(" ")
            if not sep:
                raise ConfigError(f"{path}: merge {i} ({merge!r}) is not 'left right'")
        elif isinstance(merge, list) and len(merge) == 2:
            left, right = merge
        else:
            raise ConfigError(f"{path}: merge {i} ({merge!r}) is malformed")
        try:
            merge_pairs.append((unicode_to_byte(left), unicode_to_byte(right)))
            merged = merge_pairs[-1][0] + merge_pairs[-1][1]
        except KeyError:
            raise ConfigError(f"{path}: merge {i} ({merge!r}) uses characters outside the byte alphabet") from None
        if merged not in id_of:
            raise ConfigError(f"{path}: merge {i} ({merge!r}) makes a token that is not in the vocabulary")
        first_merge.setdefault(merged, i)

    multi = [raw for raw in id_of if len(raw) > 1]
    # tiktoken merges by the rank of the merged token. Single-byte ranks never compete (no pair
    # concatenates to one byte), so ids can serve as ranks whenever they follow merge order.
    # Tokens no merge makes go last: BPE can only reach them as a whole piece.
    never = len(merges)
    by_merge = sorted(multi, key=lambda raw: (first_merge.get(raw, never), id_of[raw]))
    by_id = sorted(multi, key=id_of.__getitem__)
    name = path.parent.name or path.stem
    options = dict(name=name, normalizer=normalizer, splits=splits, ignore_merges=ignore_merges)
    if by_merge == by_id:
        ranks, rank_to_id = id_of, None
    else:
        singles = sorted((raw for raw in id_of if len(raw) == 1), key=lambda raw: raw[0])
        ordered = singles + by_merge
        ranks = {raw: r for r, raw in enumerate(ordered)}
        rank_to_id = [id_of[raw] for raw in ordered]
    check_hf_merges(ranks, merge_pairs, str(path))
    return cls(ranks, pattern, specials, rank_to_id=rank_to_id, **options)


# ------------------------------------------------------------------------------------------------
# mistral-common tekken JSON

# Special tokens that older tekken files (without a "special_tokens" list) imply, in id order.
_TEKKEN_DEFAULT_SPECIALS = (
    "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]",
    "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]",
    "[TOOL_CONTENT]",
)


def load_tekken(cls: type[TextTokenizer], path: str | os.PathLike) -> TextTokenizer:
    """Tekken layout: special tokens take ids ``0..S-1``, then token of rank r has id ``r + S``;
    the vocabulary is cut to ``default_vocab_size`` ids in total."""
    path = Path(path)
    data = _load_json(path, "tekken JSON")
    try:
        cfg = data["config"]
        pattern = str(cfg["pattern"])
        n_special = int(cfg["default_num_special_tokens"])
        vocab_size = int(cfg.get("default_vocab_size") or cfg["num_vocab_tokens"] + n_special)
        vocab = data["vocab"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a tekken file (missing or bad field {exc})") from None
    n_inner = vocab_size - n_special
    if n_inner <= 0 or n_inner > len(vocab):
        raise ConfigError(
            f"{path}: default_vocab_size {vocab_size} does not fit {len(vocab)} tokens "
            f"+ {n_special} special tokens"
        )
    ranks: dict[bytes, int] = {}
    for i, entry in enumerate(vocab[:n_inner]):
        try:
            if int(entry["rank"]) != i:
                raise ValueError(f"rank {entry['rank']} at position {i}")
            raw = base64.b64decode(entry["token_bytes"], validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise ConfigError(f"{path}: vocab entry {i} is malformed ({exc})") from None
        ranks[raw] = i + n_special

    listed = data.get("special_tokens")
    if listed is None:
        names = list(_TEKKEN_DEFAULT_SPECIALS)
    else:
        try:
            by_rank = sorted(listed, key=lambda t: int(t["rank"]))
            names = [str(t["token_str"]) for t in by_rank]
            if [int(t["rank"]) for t in by_rank] != list(range(len(by_rank))):
                raise ValueError("special token ranks must be 0..n-1")
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: special_tokens list is malformed ({exc})") from None
    if len(names) > n_special or len(set(names)) != len(names):
        raise ConfigError(f"{path}: {len(names)} special tokens (some repeated?) for {n_special} slots")
    names += [f"<SPECIAL_{i}>" for i in range(len(names), n_special)]
    specials = {s: i for i, s in enumerate(names)}
    return cls(ranks, pattern, specials, name=path.stem)


# ------------------------------------------------------------------------------------------------
# tiktoken ranks -> HF tokenizer


def _hf_normalizer(steps: list[dict[str, Any]]):
    from tokenizers import Regex, normalizers

    out = []
    for step in steps:
        kind = step["type"]
        if kind == "Prepend":
            out.append(normalizers.Prepend(step["prepend"]))
        elif kind == "Strip":
            out.append(normalizers.Strip(left=step["strip_left"], right=step["strip_right"]))
        elif kind == "Replace":
            (how, what), = step["pattern"].items()
            out.append(normalizers.Replace(Regex(what) if how == "Regex" else what, step["content"]))
        else:  # NFC, NFD, NFKC, NFKD, Lowercase take no arguments
            out.append(getattr(normalizers, kind)())
    return normalizers.Sequence(out)


def to_hf_tokenizer(tok: TextTokenizer):
    """Build a ``tokenizers.Tokenizer`` with the same vocabulary, ids, merges, normalizer and
    splits. ``ignore_merges`` follows the vocabulary (true for tiktoken's own behaviour): without
    it, HF would split the pre-tokens that are tokens no merge builds (digit groups and words in
    cl100k- or Llama-3-style vocabularies)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    if tok.byte_encoding != "utf-8":
        raise ConfigError(f"vocabulary {tok.name!r} runs on {tok.byte_encoding} units; HF tokenizers' "
                          "byte-level BPE reads UTF-8 bytes only, so it has no equivalent")
    ranks = tok.mergeable_ranks
    r2i = tok.rank_to_id
    id_of = {raw: (rank if r2i is None else int(r2i[rank])) for raw, rank in ranks.items()}
    vocab = {byte_to_unicode(raw): idx for raw, idx in id_of.items()}
    merges = [(byte_to_unicode(a), byte_to_unicode(b)) for a, b in recover_merges(ranks)]
    for s, idx in tok.special_tokens.items():
        vocab[s] = idx
    hf = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=tok.ignore_merges))
    if tok.normalizer:
        hf.normalizer = _hf_normalizer(tok.normalizer.steps)
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(p), behavior="isolated") for p in (*tok.splits, tok.pattern)]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    hf.decoder = decoders.ByteLevel()
    if tok.special_tokens:
        hf.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in tok.special_tokens])
    return hf
