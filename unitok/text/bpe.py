"""Byte-level BPE text tokenizer on tiktoken's Rust core.

Ids and ranks. tiktoken merges the adjacent pair whose concatenation has the lowest *rank*, so a
rank file is both the vocabulary and the merge order. Usually a token's id is its rank. A few
foreign vocabularies (HF tokenizer.json files whose ids do not follow merge order) need ids that
differ from ranks; those carry a lookup array, ``rank -> id``, and pay one numpy gather per call.

Lossless. Every byte string round-trips: valid UTF-8 runs go through the regex split and BPE,
invalid bytes go through BPE as one raw piece each run (every single byte is a token, checked at
construction). A ``str`` holding lone surrogates from ``bytes.decode("utf-8", "surrogateescape")``
is turned back into those bytes, so ``decode`` (which decodes with ``surrogateescape``) returns it.
The exception is a vocabulary with a normalizer (some HF files): it round-trips the normalized text.
A vocabulary may run on UTF-16BE code units' bytes instead (``byte_encoding="utf-16-be"``, see
``unitok.text.units``): lossless too, with the regex split in Python and the core's BPE.

Foreign vocabularies may also need what tiktoken's core lacks: a normalizer, several regex splits
applied one after another (DeepSeek-V3), or HF's ``ignore_merges=false`` (a pre-token that is a
token but that no merge builds is split by BPE rather than looked up whole). Those run in Python
around the core; vocabularies without them take the core's fast path unchanged.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import regex
import tiktoken

from unitok.checkpoint import register
from unitok.errors import ConfigError, TokenSequenceError
from unitok.files import contained, read_regular_file

from .merges import merge_plan
from .normalize import Normalizer, parse_normalizer
from .patterns import DEFAULT_PATTERN, split_isolated
from .rankfile import _parse_rank_file, format_rank_file, read_rank_file
from .runtime import as_id_list as _as_id_list
from .runtime import executor as _executor
from .runtime import guarded as _guarded
from .units import ESCAPED_BYTES as _ESCAPED_BYTES
from .units import SURROGATE_ERRORS as _SURROGATE_ERRORS
from .units import UTF8, Utf16Units, decode_units
from .units import byte_encoding as _canonical_encoding

__all__ = ["TextTokenizer", "format_rank_file", "read_rank_file"]

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.tiktoken"
ID_MAP_FILE = "ids.txt"
CONFIG_TYPE = "text.bpe"
FORMAT_VERSION = 3  # 2: a normalizer, pre-splits or ignore_merges=false; 3: UTF-16BE units (only when used)
MAX_VOCAB_BYTES = 1 << 30   # a vocabulary or id map larger than this is refused (the largest real ones are ~10 MB)

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------
# the tokenizer


@register(CONFIG_TYPE)  # so unitok.checkpoint.load_pretrained opens a saved text tokenizer
class TextTokenizer:
    """Byte-level BPE tokenizer: ``str | bytes -> list[int] -> bytes``, lossless for any input.

    Build one with a loader (``from_pretrained``, ``from_tiktoken_file``,
    ``from_hf_tokenizer_json``, ``from_tekken``), ``unitok.text.train_bpe`` or
    ``unitok.text.load_default``. All ids lie in ``[0, n_vocab)``.

    Args:
        mergeable_ranks: token bytes -> rank; lower ranks merge first. Must contain all 256
            single bytes.
        pattern: pre-tokenisation regex (fancy-regex syntax).
        special_tokens: special token string -> id. Their ids must not collide with token ids.
        name: a label for messages and ``config()``; not part of the fingerprint.
        rank_to_id: optional ``[n_ranks]`` int array mapping rank -> id when ids are not ranks
            (ranks must then be ``0..n_ranks-1``).
        normalizer: normalization steps applied to text before splitting, in HF's JSON form
            (see ``unitok.text.normalize``); None for none.
        splits: regexes applied one after another before ``pattern``, each splitting every piece
            into its matches and the runs between them (HF's ``Split(behavior="Isolated")``).
        ignore_merges: True (tiktoken's behaviour): a pre-token that is itself a token is emitted
            whole. False (HF's default): it is split by the merges like any other pre-token,
            which differs for the tokens that no merge builds.
        byte_encoding: the units BPE runs on: ``"utf-8"`` (default) or ``"utf-16-be"`` (see
            ``unitok.text.units``; ranks then hold bytes of UTF-16BE code units).
    """

    def __init__(
        self,
        mergeable_ranks: Mapping[bytes, int],
        pattern: str = DEFAULT_PATTERN,
        special_tokens: Mapping[str, int] | None = None,
        *,
        name: str = "unitok-text",
        rank_to_id: Sequence[int] | np.ndarray | None = None,
        normalizer: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
        splits: Sequence[str] = (),
        ignore_merges: bool = True,
        byte_encoding: str = UTF8,
    ):
        ranks = dict(mergeable_ranks)
        specials = dict(special_tokens or {})
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise ConfigError(
                f"vocabulary {name!r} lacks single-byte tokens for {len(missing)} byte values "
                f"(first: 0x{missing[0]:02x}); a byte-level BPE needs all 256 to encode any input"
            )
        if len(set(ranks.values())) != len(ranks):
            raise ConfigError(f"vocabulary {name!r}: two tokens share one rank")
        if min(ranks.values()) < 0:
            raise ConfigError(f"vocabulary {name!r}: ranks must be non-negative")

        if rank_to_id is not None:
            r2i = np.asarray(rank_to_id, dtype=np.int64)
            if r2i.ndim != 1 or sorted(ranks.values()) != list(range(len(r2i))):
                raise ConfigError(
                    f"vocabulary {name!r}: with an id map, ranks must be 0..{len(ranks) - 1} "
                    f"and the map must have {len(ranks)} entries (has shape {r2i.shape})"
                )
            if len(np.unique(r2i)) != len(r2i) or (len(r2i) and r2i.min() < 0):
                raise ConfigError(f"vocabulary {name!r}: the id map has duplicate or negative ids")
            if np.array_equal(r2i, np.arange(len(r2i))):
                r2i = None
        else:
            r2i = None
        token_ids = r2i.tolist() if r2i is not None else list(ranks.values())
        clash = set(token_ids) & set(specials.values())
        if clash:
            raise ConfigError(
                f"vocabulary {name!r}: special token ids {sorted(clash)[:5]} are also token ids"
            )
        if len(set(specials.values())) != len(specials) or any(v < 0 for v in specials.values()):
            raise ConfigError(f"vocabulary {name!r}: special token ids must be distinct and >= 0")

        self.name = name
        self.pattern = pattern
        self.special_tokens: dict[str, int] = specials
        self._ranks = ranks
        self._rank_to_id = r2i
        self.n_vocab: int = max(max(token_ids), max(specials.values(), default=-1)) + 1
        if r2i is None:
            # ids are ranks: tiktoken's output is final, no translation on the hot path.
            self._internal_to_id = None
            self._id_to_internal = None
            core_specials = specials
        else:
            # tiktoken sees ranks 0..R-1 and specials R..R+S-1; one gather maps them to ids.
            n_ranks = len(r2i)
            core_specials = {s: n_ranks + k for k, s in enumerate(specials)}
            self._internal_to_id = np.concatenate(
                [r2i, np.fromiter(specials.values(), np.int64, len(specials))]
            )
            self._id_to_internal = np.full(self.n_vocab, -1, dtype=np.int64)
            self._id_to_internal[self._internal_to_id] = np.arange(len(self._internal_to_id))

        try:
            self._encoding = tiktoken.Encoding(
                name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=core_specials
            )
        except ValueError as exc:  # tiktoken reports a bad regex as ValueError
            raise ConfigError(f"vocabulary {name!r}: pattern is not a valid regex ({exc})") from None
        self._core = self._encoding._core_bpe
        self._core_specials = core_specials
        self._all_specials = frozenset(specials)

        self.normalizer = Normalizer(parse_normalizer(normalizer, f"vocabulary {name!r}"))
        self.splits = tuple(splits)
        try:
            self._split_res = [regex.compile(s) for s in self.splits]
        except regex.error as exc:
            raise ConfigError(f"vocabulary {name!r}: a split is not a valid regex ({exc})") from None
        self.ignore_merges = bool(ignore_merges)
        # internal id of a token no merge builds -> the internal ids BPE makes of its bytes
        self._expand: dict[int, list[int]] = {}
        if not self.ignore_merges:
            _, unreachable = merge_plan(ranks)
            for token, parts in unreachable.items():
                self._expand[ranks[token]] = [ranks[p] for p in parts]
        self.byte_encoding = _canonical_encoding(byte_encoding, f"vocabulary {name!r}")
        self._utf16 = None
        if self.byte_encoding != UTF8:
            # Python's regex engine splits: the same one as at training time (train_bpe).
            try:
                self._utf16 = Utf16Units(self._core, [*self._split_res, regex.compile(pattern)])
            except regex.error as exc:
                raise ConfigError(f"vocabulary {name!r}: pattern is not a valid regex ({exc})") from None
        self._special_ids = frozenset(specials.values())
        self._dropout_table = None   # built on the first encode with dropout (unitok.text.dropout)
        self._plain = not (self.normalizer or self._split_res or self._expand or self._utf16)
        self._fingerprint: str | None = None
        self._config: dict[str, Any] | None = None

    # -- introspection ---------------------------------------------------------------------------

    @property
    def mergeable_ranks(self) -> dict[bytes, int]:
        """Token bytes -> rank (a copy). Equal to ids unless the vocabulary has an id map."""
        return dict(self._ranks)

    @property
    def rank_to_id(self) -> np.ndarray | None:
        """``[n_ranks]`` rank -> id lookup, or None when ids are ranks."""
        return None if self._rank_to_id is None else self._rank_to_id.copy()

    def __len__(self) -> int:
        return self.n_vocab

    def __repr__(self) -> str:
        return (
            f"TextTokenizer(name={self.name!r}, n_vocab={self.n_vocab}, "
            f"special_tokens={len(self.special_tokens)})"
        )

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one id: its units, so UTF-16BE code-unit bytes in that mode (special
        tokens give their string's UTF-8)."""
        return self._unit_bytes([token_id])

    # -- encode ----------------------------------------------------------------------------------

    def _allowed(self, allowed_special: Iterable[str] | str) -> frozenset[str]:
        if allowed_special == "all":
            return self._all_specials
        if isinstance(allowed_special, str):
            allowed = frozenset([allowed_special])
        else:
            allowed = frozenset(allowed_special)
        unknown = allowed - self._all_specials
        if unknown:
            raise ConfigError(
                f"allowed_special names {sorted(unknown)!r}, which are not special tokens of "
                f"this vocabulary; known: {sorted(self._all_specials)[:20]!r}"
            )
        return allowed

    def encode(self, text: str | bytes, *, allowed_special: Iterable[str] | str = (), dropout: float = 0.0,
               seed: int | Sequence[int] | None = None) -> list[int]:
        """Encode text or raw bytes to ids.

        Special-token strings in ``text`` are ordinary text unless named in ``allowed_special``
        (or ``allowed_special="all"``), so user text can never inject a control token. A text the
        Rust core cannot handle (its regex engine overflows its stack on some pathological inputs,
        such as a million spaces in a row) raises ``MediaError`` for that text alone.

        ``dropout=p`` > 0 is BPE-dropout (``unitok.text.dropout``): each candidate merge is skipped
        with probability ``p``, so the same text gets other, longer segmentations that decode to the
        same text. ``seed`` (an int or a tuple of ints >= 0) makes it reproducible; None draws fresh.
        """
        if dropout:
            from .dropout import encode_with_dropout

            return _guarded(encode_with_dropout, self, text, allowed_special, dropout, seed)
        return _guarded(self._encode, text, allowed_special)

    def _encode(self, text: str | bytes, allowed_special: Iterable[str] | str) -> list[int]:
        if allowed_special:
            return self._encode_allowed(text, self._allowed(allowed_special))
        if not self._plain:
            return self._encode_general(text, None)
        if type(text) is str:
            try:
                ids = self._core.encode_ordinary(text)
            except UnicodeEncodeError:  # lone surrogates: take the lossless bytes path
                return self._encode_raw(text.encode("utf-8", _SURROGATE_ERRORS), None)
        elif isinstance(text, (bytes, bytearray, memoryview)):
            return self._encode_raw(bytes(text), None)
        elif isinstance(text, str):
            return self.encode(str(text))
        else:
            raise TypeError(f"encode expects str or bytes, got {type(text).__name__}")
        if self._internal_to_id is not None:
            return self._internal_to_id[ids].tolist()
        return ids

    def _encode_allowed(self, text: str | bytes, allowed: frozenset[str]) -> list[int]:
        if not self._plain:
            return self._encode_general(text, allowed)
        if isinstance(text, str):
            try:
                ids = self._core.encode(text, allowed)
            except UnicodeEncodeError:
                return self._encode_raw(text.encode("utf-8", _SURROGATE_ERRORS), allowed)
        elif isinstance(text, (bytes, bytearray, memoryview)):
            return self._encode_raw(bytes(text), allowed)
        else:
            raise TypeError(f"encode expects str or bytes, got {type(text).__name__}")
        return self._ids_from_ranks(ids)

    def _ids_from_ranks(self, internal: list[int]) -> list[int]:
        if self._internal_to_id is None:
            return internal
        return self._internal_to_id[internal].tolist()

    def _encode_raw(self, data: bytes, allowed: frozenset[str] | None) -> list[int]:
        """Encode bytes that may not be UTF-8: valid runs via the regex, invalid runs as pieces."""
        return self._ids_from_ranks(self._encode_raw_internal(data, allowed))

    def _encode_raw_internal(self, data: bytes, allowed: frozenset[str] | None) -> list[int]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if allowed:
                return self._core.encode(text, allowed)
            return self._core.encode_ordinary(text)
        text = data.decode("utf-8", "surrogateescape")
        out: list[int] = []
        pos = 0
        core = self._core
        for m in _ESCAPED_BYTES.finditer(text):
            if m.start() > pos:
                chunk = text[pos : m.start()]
                out += core.encode(chunk, allowed) if allowed else core.encode_ordinary(chunk)
            out += core.encode_single_piece(m.group().encode("utf-8", "surrogateescape"))
            pos = m.end()
        if pos < len(text):
            chunk = text[pos:]
            out += core.encode(chunk, allowed) if allowed else core.encode_ordinary(chunk)
        return out

    def _encode_general(self, text: str | bytes, allowed: frozenset[str] | None) -> list[int]:
        """The path for a normalizer, pre-splits or ignore_merges=false: allowed special tokens
        are cut out first (HF matches them on the raw text), every stretch between them is
        normalized, split and encoded on its own."""
        if isinstance(text, (bytes, bytearray, memoryview)):
            text = bytes(text).decode("utf-8", "surrogateescape")
        elif not isinstance(text, str):
            raise TypeError(f"encode expects str or bytes, got {type(text).__name__}")
        internal: list[int] = []
        pos = 0
        if allowed:
            # Longest first, so a special token that starts another one does not cut it short.
            alternatives = sorted(allowed, key=len, reverse=True)
            for m in re.finditer("|".join(map(re.escape, alternatives)), text):
                internal += self._encode_stretch(text[pos : m.start()])
                internal.append(self._core_specials[m.group()])
                pos = m.end()
        internal += self._encode_stretch(text[pos:])
        if self._expand and not self._expand.keys().isdisjoint(internal):
            expanded: list[int] = []
            for i in internal:
                parts = self._expand.get(i)
                if parts is None:
                    expanded.append(i)
                else:
                    expanded += parts
            internal = expanded
        return self._ids_from_ranks(internal)

    def _encode_stretch(self, text: str) -> list[int]:
        if not text:
            return []
        if self.normalizer:
            text = self.normalizer(text)
        if self._utf16 is not None:
            return self._utf16.encode(text)
        out: list[int] = []
        for piece in split_isolated(text, self._split_res) if self._split_res else (text,):
            try:
                out += self._core.encode_ordinary(piece)
            except UnicodeEncodeError:  # lone surrogates: the lossless bytes path
                out += self._encode_raw_internal(piece.encode("utf-8", _SURROGATE_ERRORS), None)
        return out

    def encode_batch(
        self,
        texts: Iterable[str | bytes],
        *,
        num_threads: int = 0,
        allowed_special: Iterable[str] | str = (),
        dropout: float = 0.0,
        seed: int | Sequence[Any] | None = None,
    ) -> list[list[int]]:
        """Encode many texts in parallel threads (``num_threads=0``: one per CPU core).

        With ``dropout``, text ``i`` is encoded with seed ``(seed, i)`` when ``seed`` is an int,
        or with ``seed[i]`` when it is a sequence of one seed per text."""
        texts = list(texts)
        if num_threads < 0:
            raise ValueError(f"num_threads must be >= 0 (0 = all cores), got {num_threads}")
        n = num_threads or os.cpu_count() or 1
        if dropout:
            from .dropout import per_text_seeds

            texts = list(zip(texts, per_text_seeds(seed, len(texts)), strict=True))
            encode = lambda pair: self.encode(pair[0], allowed_special=allowed_special, dropout=dropout,
                                              seed=pair[1])
        elif allowed_special:
            allowed = self._allowed(allowed_special)
            encode = lambda t: _guarded(self._encode_allowed, t, allowed)
        else:
            encode = self.encode
        if n == 1 or len(texts) <= 1:
            return [encode(t) for t in texts]
        # A few chunks per thread: big enough to amortise the future, small enough to balance.
        n_chunks = min(len(texts), n * 4)
        bounds = [len(texts) * i // n_chunks for i in range(n_chunks + 1)]
        chunks = [texts[a:b] for a, b in itertools.pairwise(bounds)]
        out: list[list[int]] = []
        for part in _executor(n).map(lambda chunk: [encode(t) for t in chunk], chunks):
            out += part
        return out

    # -- decode ----------------------------------------------------------------------------------

    def _check_ids(self, ids: list[int]) -> None:
        """Raise TokenSequenceError for the first id that names no token."""
        for i, t in enumerate(ids):
            if not isinstance(t, (int, np.integer)):
                raise TokenSequenceError(f"token ids must be integers, got {type(t).__name__}", i)
            if not 0 <= t < self.n_vocab:
                raise TokenSequenceError(
                    f"id {t} is outside the text vocabulary [0, {self.n_vocab})", i
                )
            if self._id_to_internal is not None:
                if self._id_to_internal[t] < 0:
                    raise TokenSequenceError(f"id {t} names no token in this vocabulary", i)
            else:
                try:
                    self._core.decode_single_token_bytes(int(t))
                except KeyError:
                    raise TokenSequenceError(f"id {t} names no token in this vocabulary", i) from None

    def decode_bytes(self, ids: Sequence[int] | np.ndarray | Any) -> bytes:
        """Decode ids (list, numpy array or torch tensor, 1-D) to the exact original bytes.

        An id outside ``[0, n_vocab)`` (or a hole in a foreign vocabulary) raises
        ``TokenSequenceError`` with its position. In UTF-16BE mode the bytes are the decoded
        text's UTF-8 (with surrogate escapes back to their bytes), so they are still the bytes
        that were encoded.
        """
        if self._utf16 is not None:
            return self.decode(ids).encode("utf-8", _SURROGATE_ERRORS)
        return self._unit_bytes(ids)

    def _unit_bytes(self, ids: Sequence[int] | np.ndarray | Any) -> bytes:
        """The units of ``ids`` concatenated (special tokens as their string's UTF-8)."""
        if type(ids) is not list:
            ids = _as_id_list(ids)
        if self._id_to_internal is not None:
            # Validate first: numpy would wrap negative ids around.
            if ids and (min(ids) < 0 or max(ids) >= self.n_vocab):
                self._check_ids(ids)
            internal = self._id_to_internal[ids].tolist() if ids else ids
            if internal and min(internal) < 0:
                self._check_ids(ids)
            ids = internal
        try:
            # tiktoken knows exactly the ids in [0, n_vocab) (minus holes) and rejects the rest,
            # so validation costs nothing on the success path.
            return self._core.decode_bytes(ids)
        except (KeyError, TypeError, OverflowError):
            self._check_ids(ids)
            raise

    def decode(self, ids: Sequence[int] | np.ndarray | Any) -> str:
        """Decode ids to str. Invalid UTF-8 comes back as surrogate escapes, so nothing is lost:
        ``decode(ids).encode("utf-8", "surrogateescape") == decode_bytes(ids)``."""
        if self._utf16 is None:
            return self._unit_bytes(ids).decode("utf-8", "surrogateescape")
        if type(ids) is not list:
            ids = _as_id_list(ids)
        units = self._unit_bytes(ids)   # validates every id, with its position
        if self._special_ids.isdisjoint(ids):
            return decode_units(units)
        # A special token is text, not units: the runs between them are decoded on their own.
        out, start = [], 0
        for i, t in enumerate(ids):
            if t in self._special_ids:
                out += [decode_units(self._unit_bytes(ids[start:i])), self._unit_bytes([t]).decode("utf-8")]
                start = i + 1
        out.append(decode_units(self._unit_bytes(ids[start:])))
        return "".join(out)

    def decode_batch(self, batch: Iterable[Any]) -> list[str]:
        return [self.decode(ids) for ids in batch]

    # -- identity --------------------------------------------------------------------------------

    def _rank_file(self) -> bytes:
        return format_rank_file(self._ranks)

    def _id_map_file(self) -> bytes | None:
        if self._rank_to_id is None:
            return None
        return "".join(f"{i}\n" for i in self._rank_to_id.tolist()).encode()

    def config(self) -> dict[str, Any]:
        """JSON-serialisable description. ``vocab_sha256`` is the sha256 of ``vocab.tiktoken``."""
        if self._config is None:
            id_map = self._id_map_file()
            self._config = {
                "type": CONFIG_TYPE,
                "format_version": 1,
                "kind": "byte_level_bpe",
                "name": self.name,
                "pattern": self.pattern,
                "n_vocab": self.n_vocab,
                "n_ranks": len(self._ranks),
                "special_tokens": dict(sorted(self.special_tokens.items(), key=lambda kv: kv[1])),
                "vocab_file": VOCAB_FILE,
                "vocab_sha256": _sha256(self._rank_file()),
                "id_map_file": None if id_map is None else ID_MAP_FILE,
                "id_map_sha256": None if id_map is None else _sha256(id_map),
            }
            # Written only when used, so vocabularies without them keep their config and
            # fingerprint; their presence makes the file format 2 (older readers refuse it).
            extras = {
                "normalizer": self.normalizer.steps or None,
                "splits": list(self.splits) or None,
                "ignore_merges": None if self.ignore_merges else False,
                "byte_encoding": None if self.byte_encoding == UTF8 else self.byte_encoding,
            }
            extras = {k: v for k, v in extras.items() if v is not None}
            if extras:
                # 3 only with UTF-16BE units: a reader of format 2 would take them for UTF-8
                version = FORMAT_VERSION if "byte_encoding" in extras else 2
                self._config.update(extras, format_version=version)
        return json.loads(json.dumps(self._config))

    @property
    def fingerprint(self) -> str:
        """sha256 of everything that decides ids: pattern, ranks, id map, special tokens, and
        the normalizer, pre-splits, ``ignore_merges=false`` and UTF-16BE units of vocabularies
        that have them."""
        if self._fingerprint is None:
            cfg = self.config()
            for key in ("name", "vocab_file", "id_map_file", "format_version"):
                cfg.pop(key)
            blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
            self._fingerprint = _sha256(blob.encode())
        return self._fingerprint

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextTokenizer) and self.fingerprint == other.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    # -- persistence -----------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``vocab.tiktoken`` (plus ``ids.txt`` if ids are not ranks)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / VOCAB_FILE).write_bytes(self._rank_file())
        id_map = self._id_map_file()
        if id_map is not None:
            (directory / ID_MAP_FILE).write_bytes(id_map)
        else:
            (directory / ID_MAP_FILE).unlink(missing_ok=True)
        text = json.dumps(self.config(), indent=2, ensure_ascii=False) + "\n"
        (directory / CONFIG_FILE).write_text(text, encoding="utf-8")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> TextTokenizer:
        """Load a folder written by ``save_pretrained``; checks every file against its hash."""
        directory = Path(directory)
        cfg_path = directory / CONFIG_FILE
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{cfg_path}: not found; is {directory} a unitok text tokenizer?") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{cfg_path}: unreadable or not JSON ({exc})") from None
        if not isinstance(cfg, dict) or cfg.get("type") != CONFIG_TYPE:
            found = cfg.get("type") if isinstance(cfg, dict) else type(cfg).__name__
            raise ConfigError(f"{cfg_path}: \"type\" is {found!r}, expected {CONFIG_TYPE!r}")
        for key in ("pattern", "vocab_sha256", "n_vocab"):
            if key not in cfg:
                raise ConfigError(f"{cfg_path}: missing key {key!r}")
        for key, kinds in (("pattern", str), ("vocab_sha256", str), ("n_vocab", int), ("format_version", int),
                           ("vocab_file", str), ("id_map_file", (str, type(None))), ("name", str)):
            if key in cfg and (not isinstance(cfg[key], kinds) or isinstance(cfg[key], bool)):
                raise ConfigError(f"{cfg_path}: {key!r} has the wrong type ({type(cfg[key]).__name__}); the file "
                                  f"was edited or damaged")
        if cfg.get("format_version", 1) > FORMAT_VERSION:
            raise ConfigError(
                f"{cfg_path}: format_version {cfg['format_version']} is newer than this unitok "
                f"reads ({FORMAT_VERSION}); upgrade unitok"
            )

        vocab_path = contained(directory, cfg.get("vocab_file", VOCAB_FILE), ConfigError, "vocab_file")
        if not vocab_path.exists():
            raise ConfigError(f"{vocab_path}: not found (named by {cfg_path})")
        data = read_regular_file(vocab_path, MAX_VOCAB_BYTES, ConfigError, "vocabulary file")
        if _sha256(data) != cfg["vocab_sha256"]:
            raise ConfigError(
                f"{vocab_path}: sha256 does not match {cfg_path}; the file is corrupt or truncated. "
                "Restore it from the original save_pretrained output"
            )
        ranks = _parse_rank_file(data, str(vocab_path))

        rank_to_id = None
        if cfg.get("id_map_file"):
            map_path = contained(directory, cfg["id_map_file"], ConfigError, "id_map_file")
            map_data = read_regular_file(map_path, MAX_VOCAB_BYTES, ConfigError, "id map file")
            if _sha256(map_data) != cfg.get("id_map_sha256"):
                raise ConfigError(f"{map_path}: sha256 does not match {cfg_path}; file is corrupt")
            rank_to_id = np.array([int(x) for x in map_data.split()], dtype=np.int64)

        specials = cfg.get("special_tokens") or {}
        if not isinstance(specials, dict) or not all(isinstance(v, int) for v in specials.values()):
            raise ConfigError(f"{cfg_path}: \"special_tokens\" must map strings to integer ids")
        splits = cfg.get("splits") or []
        if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
            raise ConfigError(f"{cfg_path}: \"splits\" must be a list of regex strings")
        if not isinstance(cfg.get("ignore_merges", True), bool):
            raise ConfigError(f"{cfg_path}: \"ignore_merges\" must be true or false")
        encoding = _canonical_encoding(cfg.get("byte_encoding", UTF8), str(cfg_path))
        tok = cls(
            ranks,
            cfg["pattern"],
            specials,
            name=cfg.get("name", directory.name),
            rank_to_id=rank_to_id,
            normalizer=cfg.get("normalizer"),
            splits=splits,
            ignore_merges=cfg.get("ignore_merges", True),
            byte_encoding=encoding,
        )
        if tok.n_vocab != cfg["n_vocab"]:
            raise ConfigError(
                f"{cfg_path}: n_vocab is {cfg['n_vocab']} but the files define {tok.n_vocab} ids"
            )
        return tok

    # -- foreign formats -------------------------------------------------------------------------

    @classmethod
    def from_tiktoken_file(
        cls,
        path: str | os.PathLike,
        pattern: str,
        special_tokens: Mapping[str, int] | None = None,
        *,
        name: str | None = None,
    ) -> TextTokenizer:
        """Load a tiktoken rank file (``base64 rank`` lines). The file holds no regex, so the
        ``pattern`` that the vocabulary was trained with must be given."""
        ranks = read_rank_file(path)
        return cls(ranks, pattern, special_tokens, name=name or Path(path).stem)

    @classmethod
    def from_hf_tokenizer_json(cls, path: str | os.PathLike) -> TextTokenizer:
        """Load an HF ``tokenizer.json`` holding a byte-level BPE model (GPT-2, Llama-3, Qwen,
        DeepSeek-V3 style): its ``ignore_merges`` flag, a normalizer (Unicode forms, Lowercase,
        Replace, Prepend, Strip) and successive Split pre-tokenizers are reproduced; ids equal
        HF ``tokenizers``' own. What cannot be reproduced exactly raises ``ConfigError``."""
        from .formats import load_hf_tokenizer_json

        return load_hf_tokenizer_json(cls, path)

    @classmethod
    def from_tekken(cls, path: str | os.PathLike) -> TextTokenizer:
        """Load a mistral-common tekken JSON; ids equal mistral-common's ``Tekkenizer``'s."""
        from .formats import load_tekken

        return load_tekken(cls, path)

    def to_hf_tokenizer(self):
        """An equivalent ``tokenizers.Tokenizer`` (BPE with merges recovered from the ranks)."""
        from .formats import to_hf_tokenizer

        return to_hf_tokenizer(self)
