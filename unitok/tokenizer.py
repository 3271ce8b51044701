"""``UniTokenizer``: one text tokenizer and any media tokenizers composed over one ``TokenSpace``.

A document is a list of parts in order: ``str``/``bytes`` (text), ``Image``, ``Video``, ``Audio``
(or a ``pathlib.Path`` to a media file). It encodes to one ``TokenSequence``::

    [<|bos|>] text... [<|sep|> text...] <|image|> <|dim:..|>... codes... <|/image|> text... [<|eos|>]

- a text part is its token ids (the text vocabulary's own ids, unchanged); two text parts in a row
  are separated by ``<|sep|>`` so they decode as two parts;
- a media part is its begin token, its header (shape tokens for each of the codec's
  ``header_fields``), its codes in the codec's layout, and its end token;
- a ``Video`` with a sound track is a video part followed by an audio part (when the suite has an
  audio tokenizer; otherwise the sound is dropped), so it decodes as a ``Video`` and an ``Audio``.

Groups: every text token is a group (or ``text_group_size`` tokens per group); each structural
token (bos, eos, sep, begin, end) is a group, the header is one group, and a media body brings the
groups of its layout.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import checkpoint
from .errors import ConfigError, LimitError, MediaError, TokenSequenceError
from .files import read_json_file
from .layout import FOREIGN, Sequential
from .media import DEFAULT_LIMITS, Audio, Image, MediaLimits, Preprocess, Video, check_document_bytes, open_media
from .sequence import Decoded, Repair, Span, TokenSequence
from .space import BEGIN, END, MEDIA_MODALITIES, TokenSpace
from .suiteinfo import SUITE_CONFIG, write_suite_files
from .text.dropout import part_seed, per_text_seeds

DEFAULT_MAX_SEGMENT_TOKENS = 1 << 24   # a decoded header may not ask for more tokens than this
DEFAULT_MAX_TOKENS = 1 << 24           # tokens per document, encoded or decoded (padding included)
_DIGITS = re.compile(r"\d+")            # what differs between alike repairs (ids, positions, sizes)


def _modality_of_item(item) -> str:
    if isinstance(item, (str, bytes, bytearray)):
        return "text"
    for cls, name in ((Image, "image"), (Video, "video"), (Audio, "audio")):
        if isinstance(item, cls):
            return name
    raise MediaError(f"cannot tokenize an object of type {type(item).__name__}; expected str, bytes, "
                     f"Image, Video, Audio or a pathlib.Path to a media file")


class UniTokenizer:
    """Text and media tokenizers over one shared token space.

    Args:
        text: the text tokenizer (``unitok.text.TextTokenizer``).
        media: media tokenizers by modality (``"image"``, ``"video"``, ``"audio"``).
        text_group_size: text tokens per group (1 = next-token prediction).
        max_segment_tokens: decoding refuses a media header that asks for more tokens.
        max_tokens: most tokens in one document: ``encode`` refuses a longer document and
            ``decode`` a longer sequence, or segments whose headers together ask for more (what
            lenient decoding would pad them to). Change it later with ``tok.max_tokens = n``.
        limits: ``MediaLimits`` for the media files ``encode`` opens (``pathlib.Path`` parts) and
            for the size a decoded header may ask for; see :attr:`limits`.
        preprocess: ``unitok.media.Preprocess``: the size, frame rate and duration media are
            brought to before they are encoded (resize policies, none by default; a video is split
            at its scene cuts, one segment per shot, unless ``split_shots=False``). Settable later
            (``tok.preprocess = Preprocess(max_pixels=...)``).
    """

    def __init__(self, text, media: dict | None = None, *, text_group_size: int = 1,
                 max_segment_tokens: int = DEFAULT_MAX_SEGMENT_TOKENS, max_tokens: int = DEFAULT_MAX_TOKENS,
                 limits=None, preprocess: Preprocess | None = None):
        media = dict(media or {})
        for name, codec in media.items():
            if name not in MEDIA_MODALITIES:
                raise ConfigError(f"unknown modality {name!r}; expected one of {MEDIA_MODALITIES}")
            if getattr(codec, "modality", None) != name:
                raise ConfigError(f"the tokenizer given for {name!r} declares modality "
                                  f"{getattr(codec, 'modality', None)!r}")
        self.text = text
        self.media = {m: media[m] for m in MEDIA_MODALITIES if m in media}
        self.text_layout = Sequential(text_group_size)
        self.max_segment_tokens = max_segment_tokens
        self.max_tokens = max_tokens
        if limits is not None:
            self.limits = limits
        self.preprocess = preprocess or Preprocess()
        components = {"text": text.fingerprint, "text_layout": json.dumps(self.text_layout.config())}
        components.update({m: c.fingerprint for m, c in self.media.items()})
        self.space = TokenSpace(text.n_vocab, {m: c.codebook_sizes for m, c in self.media.items()}, components)
        self._sp = self.space.special_tokens

    def __repr__(self) -> str:
        return f"UniTokenizer({', '.join(self.modalities)}; {len(self.space)} ids)"

    @property
    def modalities(self) -> list[str]:
        return ["text", *self.media]

    @property
    def limits(self):
        """The ``MediaLimits`` in force: files opened by ``encode`` are read under them, a document's
        media together may not decode to more than ``max_decoded_bytes``, and ``decode`` refuses
        headers that ask for more pixels, frames or seconds. Setting it also sets the ``limits`` of
        every media tokenizer that has one."""
        return getattr(self, "_limits", DEFAULT_LIMITS)

    @property
    def preprocess(self) -> Preprocess:
        """The ``Preprocess`` policy ``encode`` applies to pictures, video and audio first."""
        return self._preprocess

    @preprocess.setter
    def preprocess(self, value) -> None:
        if not isinstance(value, Preprocess):
            raise ConfigError(f"preprocess must be a unitok.media.Preprocess, got {type(value).__name__} "
                              f"(Preprocess(**fields) builds one from a dict)")
        self._preprocess = value

    @limits.setter
    def limits(self, value) -> None:
        if not isinstance(value, MediaLimits):
            raise ConfigError(f"limits must be a unitok.media.MediaLimits, got {type(value).__name__}")
        self._limits = value
        for codec in self.media.values():
            if hasattr(codec, "limits"):
                codec.limits = value

    def with_limits(self, limits=None, *, max_tokens: int | None = None,
                    preprocess: Preprocess | None = None) -> "UniTokenizer":
        """A copy with other ``limits``, ``max_tokens`` and/or ``preprocess`` that shares this
        suite's models (and leaves this one as it is)."""
        other = copy.copy(self)
        other.media = {m: copy.copy(c) for m, c in self.media.items()}   # new attributes, same weights
        if limits is not None:
            other.limits = limits
        if max_tokens is not None:
            other.max_tokens = max_tokens
        if preprocess is not None:
            other.preprocess = preprocess
        return other

    def segment_tokens(self, modality: str, header: dict[str, int]) -> int:
        """Tokens of one media part with this header (begin, shape tokens, body, end), computed
        from the layout alone: nothing is encoded."""
        codec = self.media[modality]
        return 2 + sum(codec.header_widths()) + len(codec.layout(header))

    def constraint(self, *, image=None, video=None, audio=None, audio_seconds: float | None = None,
                   modalities: Sequence[str] | None = None, max_text_tokens: int | None = None,
                   max_tokens: int | None = None, bos: bool = True):
        """The automaton of single documents this suite decodes strictly (``unitok.lm.constraint``):
        after any valid prefix, the ids that may come next. It is stricter than ``decode``, which
        also takes several documents in a row and stray ``<|bos|>``/``<|eos|>``/``<|pad|>``
        between parts. ``image=(H, W)``, ``video=(frames, H,
        W)``, ``audio={...}`` (a tuple in ``header_fields`` order or a dict) and ``audio_seconds``
        fix media shapes in advance; ``modalities``, ``max_text_tokens`` and ``max_tokens`` bound
        what may be generated."""
        from .lm.constraint import Constraint   # lm/ builds on this module: imported on use (no cycle)

        shapes = {m: v for m, v in (("image", image), ("video", video), ("audio", audio)) if v is not None}
        return Constraint(self, shapes, audio_seconds=audio_seconds, modalities=modalities,
                          max_text_tokens=max_text_tokens, max_tokens=max_tokens, bos=bos)

    # -- encode ------------------------------------------------------------------------------------

    def encode(self, x, *, bos: bool = False, eos: bool = False, allowed_special=(), dropout: float = 0.0,
               seed=None) -> TokenSequence:
        """Encode one item or an interleaved document (a list of items) to a ``TokenSequence``.

        ``encode(x)`` and ``encode([x])`` give the same ids. Special-token strings inside text are
        plain text unless named in ``allowed_special`` (text-vocabulary specials only).
        ``dropout``/``seed``: BPE-dropout of the text parts (``TextTokenizer.encode``); part ``j > 0``
        of the document is encoded with seed ``(*seed, j)``.
        """
        parts = self._parts(x)
        texts = [self._encode_text(p, allowed_special, dropout, part_seed(seed, j)) if m == "text" else None
                 for j, (m, p) in enumerate(parts)]
        return self._assemble(parts, texts, bos=bos, eos=eos)

    def _encode_text(self, text, allowed_special, dropout, seed) -> list[int]:
        if not dropout:   # a suite's own text tokenizer need not know about dropout
            return self.text.encode(text, allowed_special=allowed_special)
        return self.text.encode(text, allowed_special=allowed_special, dropout=dropout, seed=seed)

    def encode_batch(self, docs: Sequence, *, bos: bool = False, eos: bool = False, allowed_special=(),
                     num_threads: int = 0, dropout: float = 0.0, seed=None) -> list[TokenSequence]:
        """Encode many documents; the text parts of all of them are encoded in parallel threads.
        With ``dropout``, document ``i`` gets the seed ``(seed, i)`` (or ``seed[i]`` for a sequence),
        as ``encode`` would with it."""
        parts_per_doc = [self._parts(d) for d in docs]
        flat = [p for parts in parts_per_doc for m, p in parts if m == "text"]
        noise = {}
        if dropout:
            seeds = [part_seed(s, j) for s, parts in zip(per_text_seeds(seed, len(docs)), parts_per_doc)
                     for j, (m, _) in enumerate(parts) if m == "text"]
            noise = {"dropout": dropout, "seed": seeds}
        encoded = iter(self.text.encode_batch(flat, num_threads=num_threads, allowed_special=allowed_special,
                                              **noise) if flat else [])
        out = []
        for parts in parts_per_doc:
            texts = [next(encoded) if m == "text" else None for m, _ in parts]
            out.append(self._assemble(parts, texts, bos=bos, eos=eos))
        return out

    def _parts(self, x) -> list[tuple[str, object]]:
        items = list(x) if isinstance(x, (list, tuple)) else [x]
        parts = []
        opened = 0   # bytes of the media this call decoded from files
        for i, item in enumerate(items):
            if isinstance(item, Path):
                path, item = item, open_media(item, limits=self.limits)
                opened = check_document_bytes(opened, item, self.limits, str(path))
            modality = _modality_of_item(item)
            if modality == "text":
                if len(item) == 0:
                    continue  # an empty text part has no tokens and could not be told apart on decode
            elif modality not in self.media:
                raise ConfigError(f"part {i} is {'an' if modality[0] in 'aeiou' else 'a'} {modality}, but this "
                                  f"suite has no {modality} tokenizer (it has: {', '.join(self.modalities)})")
            else:
                item = self.preprocess.apply(item, self.media[modality].pixel_stride)
            # split_shots: a video is one segment per shot (its sound track one audio segment after them)
            pieces = self.preprocess.shots(item) if modality == "video" else [item]
            parts += [(modality, piece) for piece in pieces]
            if modality == "video" and item.audio is not None and "audio" in self.media:
                # the sound track becomes its own audio segment right after the video; without an
                # audio tokenizer it is dropped (the video segment holds pictures only)
                parts.append(("audio", item.audio))
        return parts

    def _assemble(self, parts, texts, *, bos: bool, eos: bool) -> TokenSequence:
        ids: list[np.ndarray] = []
        groups: list[np.ndarray] = []
        spans: list[Span] = []
        n = 0   # tokens so far
        g = 0   # groups so far

        def emit(chunk, chunk_groups=None):
            nonlocal n, g
            chunk = np.asarray(chunk, dtype=np.int64)
            if not len(chunk):
                return
            if chunk_groups is None:   # one group for the whole chunk
                chunk_groups = np.zeros(len(chunk), dtype=np.int64)
            ids.append(chunk)
            groups.append(g + chunk_groups)
            n += len(chunk)
            g += int(chunk_groups[-1]) + 1

        if bos:
            emit([self._sp["<|bos|>"]])
        previous = None
        for i, ((modality, item), text_ids) in enumerate(zip(parts, texts)):
            if modality == "text":
                if previous == "text":
                    emit([self._sp["<|sep|>"]])
                start = n
                emit(text_ids, self.text_layout.groups(len(text_ids)))
            else:
                start = n
                codec = self.media[modality]
                header, codes = codec.encode_item(item)
                flat = codec.layout(header).flatten(codes)
                emit([self._sp[BEGIN[modality]]])
                emit(self.space.dim_ids([header[f] for f in codec.header_fields], codec.header_widths()))
                emit(self.space.media_ids(modality, flat.levels, flat.codes), flat.groups)
                emit([self._sp[END[modality]]])
            spans.append(Span(modality, start, n))
            previous = modality
            if n + eos > self.max_tokens:
                raise LimitError(f"the document has more than {self.max_tokens} tokens ({n + eos} once part {i}, "
                                 f"{'an' if modality[0] in 'aeiou' else 'a'} {modality}, is in); raise "
                                 f"UniTokenizer.max_tokens for longer documents")
        if eos:
            emit([self._sp["<|eos|>"]])
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, dtype=np.int64)  # noqa: E731
        return TokenSequence(cat(ids), cat(groups), spans, self.space.fingerprint)

    # -- decode ------------------------------------------------------------------------------------

    def decode(self, ids, *, strict: bool = True, fingerprint: str | None = None) -> Decoded:
        """Token ids (or a ``TokenSequence``) -> the parts they encode, in order.

        ``strict=True`` raises ``TokenSequenceError`` naming the position and the reason of the
        first problem (unknown id, truncated group, missing end token, wrong-modality id inside a
        segment, ...). ``strict=False`` repairs what it can and lists each repair in
        ``result.repairs``. Ids made with another token space raise ``ConfigError``. Nothing is
        allocated for a header before it is checked: ``max_tokens``, ``max_segment_tokens`` and the
        codecs' ``limits`` bound what a sequence may ask for, in both modes.
        """
        if isinstance(ids, TokenSequence):
            fingerprint = fingerprint or ids.fingerprint
            ids = ids.ids
        self.space.check_fingerprint(fingerprint)
        ids = _as_id_array(ids)
        repairs = []
        if len(ids) > self.max_tokens:
            reason = f"the sequence has {len(ids)} ids, more than the limit of {self.max_tokens} (max_tokens)"
            if strict:
                raise TokenSequenceError(reason, self.max_tokens)
            repairs.append(Repair(self.max_tokens, "dropped", f"{reason}; dropped the ids beyond it"))
            ids = ids[:self.max_tokens]
        return _Decoder(self, ids, strict, repairs).run()

    # -- persistence -------------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path) -> None:
        """Write the suite: ``text/``, one folder per media tokenizer, ``suite.json`` and the
        token-space manifest ``space.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.text.save_pretrained(folder / "text")
        for m, codec in self.media.items():
            codec.save_pretrained(folder / m)
        write_suite_files(self, folder)

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, device: str = "cpu") -> "UniTokenizer":
        checkpoint.check_device(device)     # before anything is read: a bad device is the user's first error
        folder = Path(folder)
        if not folder.is_dir():
            raise ConfigError(f"{folder}: tokenizer suite folder not found")
        suite = _read_suite_config(folder / SUITE_CONFIG)
        if not (folder / "text").is_dir():
            single = (" (this is one tokenizer's checkpoint, not a suite)"
                      if (folder / checkpoint.CONFIG_NAME).exists() else "")
            raise ConfigError(f"{folder}: not a tokenizer suite folder{single}: a suite holds text/ and a folder per "
                              f"modality (UniTokenizer(...).save_pretrained(folder) writes one)")
        text = checkpoint.load_pretrained(folder / "text")
        names = suite.get("modalities")
        if names is None:  # a folder without suite.json: every modality folder that is there
            names = [m for m in MEDIA_MODALITIES if (folder / m / checkpoint.CONFIG_NAME).exists()]
        media = {m: checkpoint.load_pretrained(folder / m, device=device) for m in names}
        tok = cls(text, media, text_group_size=suite.get("text_group_size", 1))
        manifest = folder / "space.json"
        if manifest.exists():
            saved = TokenSpace.load(manifest)
            if saved.fingerprint != tok.space.fingerprint:
                raise ConfigError(f"{manifest}: the suite's components do not match its token-space manifest "
                                  f"(fingerprint {saved.fingerprint[:12]} vs {tok.space.fingerprint[:12]}); a "
                                  f"component was changed after the suite was saved")
        return tok


def _read_suite_config(path: Path) -> dict:
    """``suite.json`` checked field by field (a missing file is an empty suite config)."""
    if not path.exists():
        return {}
    suite = read_json_file(path, ConfigError, "suite configuration")
    if not isinstance(suite, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    names = suite.get("modalities")
    if names is not None and (not isinstance(names, list) or not all(m in MEDIA_MODALITIES for m in names)
                              or len(set(names)) != len(names)):
        raise ConfigError(f"{path}: 'modalities' must be a list of distinct names out of {list(MEDIA_MODALITIES)}, "
                          f"got {names!r:.80}")
    size = suite.get("text_group_size", 1)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"{path}: 'text_group_size' must be a positive integer, got {size!r:.80}")
    return suite


def _as_id_array(ids) -> np.ndarray:
    if hasattr(ids, "detach"):  # torch tensor
        ids = ids.detach().cpu().numpy()
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise TokenSequenceError(f"expected a 1-D sequence of ids, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        if arr.dtype.kind != "f":
            raise TokenSequenceError(f"ids must be integers, got {arr.dtype}")
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise TokenSequenceError(f"id {arr[i]!r} is not an integer", i)
        huge = np.abs(arr) >= 2.0**63   # would wrap around when cast to int64
        if huge.any():
            i = int(np.flatnonzero(huge)[0])
            raise TokenSequenceError(f"id {arr[i]!r} is beyond the int64 range", i)
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise TokenSequenceError("ids beyond the int64 range")
    return arr.astype(np.int64)


class _Decoder:
    """One pass over an id sequence. Text runs and media bodies are found with numpy searches so
    the Python loop only visits structural tokens."""

    def __init__(self, tok: UniTokenizer, ids: np.ndarray, strict: bool, repairs: Iterable[Repair] = ()):
        self.tok, self.ids, self.strict = tok, ids, strict
        self.space = tok.space
        self.items: list = []
        self.repairs: list[Repair] = list(repairs)
        # tokens the media segments decoded so far declared: lenient decoding pads a segment to its
        # header, so a few ids could otherwise ask for unbounded output
        self.declared = 0
        sp = tok._sp
        self.begin = {sp[BEGIN[m]]: m for m in MEDIA_MODALITIES}
        self.end = {sp[END[m]]: m for m in MEDIA_MODALITIES}
        marks = np.fromiter(list(self.begin) + list(self.end), dtype=np.int64)
        # positions of every begin/end token and of every id that is not text, found once: the loop
        # jumps between them by binary search, so decoding stays linear in the number of ids
        self.mark_pos = np.flatnonzero(np.isin(ids, marks))
        self.non_text = np.flatnonzero((ids < 0) | (ids >= self.space.text_vocab_size))
        self._run: list | None = None   # [first, last, action, template, first reason, count]: alike repairs
        self._gap = 0                   # how far past a run's last repair the next alike one may start

    def problem(self, position: int, reason: str, action: str = "skipped") -> None:
        if self.strict:
            raise TokenSequenceError(reason, position)
        self.repair(position, action, reason)

    def repair(self, position: int, action: str, reason: str) -> None:
        """Record a repair; a run of alike repairs at consecutive places (a million stray ids, a
        thousand broken segments in a row) becomes one, so their memory stays bounded."""
        template = _DIGITS.sub("#", reason)
        run = self._run
        if run is not None and run[2] == action and run[3] == template and position <= run[1] + 1 + self._gap:
            run[1], run[5] = position, run[5] + 1
            return
        self._flush()
        self._run = [position, position, action, template, reason, 1]
        self._gap = 0

    def _flush(self) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        first, last, action, _, reason, count = run
        if count > 1:
            reason = f"{count} alike, positions {first}..{last}; the first: {reason}"
        self.repairs.append(Repair(first, action, reason))

    def next_non_text(self, pos: int) -> int:
        k = int(np.searchsorted(self.non_text, pos))
        return int(self.non_text[k]) if k < len(self.non_text) else len(self.ids)

    def run(self) -> Decoded:
        ids, sp, text_size = self.ids, self.tok._sp, self.space.text_vocab_size
        pos, n = 0, len(ids)
        while pos < n:
            stop = self.next_non_text(pos)
            if stop > pos:
                self.items.append(self.tok.text.decode(ids[pos:stop]))
                pos = stop
                continue
            t = int(ids[pos])
            if t in self.begin:
                pos = self.segment(pos, self.begin[t])
                continue
            if t in (sp["<|bos|>"], sp["<|eos|>"], sp["<|pad|>"]):
                pass
            elif t == sp["<|sep|>"]:
                if not (0 < pos < n - 1 and 0 <= ids[pos - 1] < text_size and 0 <= ids[pos + 1] < text_size):
                    self.problem(pos, "<|sep|> must stand between two text parts")
            elif t in self.end:
                self.problem(pos, f"{self.space.token_name(t)} without a matching begin token")
            elif not 0 <= t < len(self.space):
                self.problem(pos, f"unknown id {t} (the token space has ids 0..{len(self.space) - 1})")
            else:
                modality, level, _ = self.space.describe(t)
                what = self.space.token_name(t) if modality == "special" else f"a {modality} level-{level} code"
                self.problem(pos, f"{what} outside of any media segment")
            pos += 1
        self._flush()
        return Decoded(self.items, self.repairs)

    def segment(self, begin: int, modality: str) -> int:
        """Decode the media segment opened at ``begin``; return the position after it."""
        ids = self.ids
        codec = self.tok.media.get(modality)
        end_id = self.tok._sp[END[modality]]
        if codec is None:
            return self._drop(begin, begin, modality, f"a {modality} segment, but this suite has no {modality} "
                                                      f"tokenizer")
        width = sum(codec.header_widths())
        try:
            values = self.space.dims_from_ids(ids[begin + 1:begin + 1 + width], len(codec.header_fields),
                                             codec.header_widths())
        except TokenSequenceError as e:
            return self._drop(begin, begin + 1 + e.position, modality,
                              f"{modality} header ({', '.join(codec.header_fields)}): {e.reason}")
        header = dict(zip(codec.header_fields, values))
        try:
            codec.check_header(header)
            layout = codec.layout(header)
            if len(layout) > self.tok.max_segment_tokens:
                raise TokenSequenceError(f"asks for {len(layout)} tokens, more than the limit of "
                                         f"{self.tok.max_segment_tokens}")
            if self.declared + len(layout) > self.tok.max_tokens:
                raise TokenSequenceError(f"asks for {len(layout)} tokens, which would bring the document's media "
                                         f"to {self.declared + len(layout)}, more than the limit of "
                                         f"{self.tok.max_tokens} (max_tokens)")
        except (TokenSequenceError, ConfigError) as e:
            return self._drop(begin, begin + 1, modality,
                              f"impossible {modality} header {header}: {getattr(e, 'reason', e)}")
        self.declared += len(layout)
        body_start = begin + 1 + width
        body_stop, close = self._body_end(begin, body_start, end_id, modality, len(layout))
        levels, codes = self.space.media_codes(modality, ids[body_start:body_stop])
        positions = np.arange(body_start, body_stop + 1, dtype=np.int64)
        codes_struct, repairs = layout.unflatten(levels, codes, positions=positions, strict=self.strict,
                                                 what=f"{modality} segment")
        self._flush()
        self.repairs.extend(repairs)
        self.items.append(codec.decode_item(header, codes_struct))
        return close + 1 if close is not None else body_stop

    def _next_mark(self, start: int) -> int:
        """Position of the first begin or end token at or after ``start`` (or the sequence end)."""
        k = int(np.searchsorted(self.mark_pos, start))
        return int(self.mark_pos[k]) if k < len(self.mark_pos) else len(self.ids)

    def _body_end(self, begin: int, start: int, end_id: int, modality: str,
                  expected: int) -> tuple[int, int | None]:
        """(stop of the body, position of its end token or None when it is missing)."""
        ids, n = self.ids, len(self.ids)
        first = self._next_mark(start)
        closed = first < n and ids[first] == end_id
        if self.strict:
            if closed:
                return first, first
            if first < n:
                raise TokenSequenceError(f"{self.space.token_name(int(ids[first]))} inside the {modality} segment "
                                         f"opened at position {begin} (missing {END[modality]})", first)
            raise TokenSequenceError(f"the {modality} segment opened at position {begin} is never closed "
                                     f"(missing {END[modality]})", n)
        # lenient: the body also ends once it holds `expected` tokens of this modality, so a missing
        # end token does not swallow the text that follows
        levels, _ = self.space.media_codes(modality, ids[start:first])
        full = np.flatnonzero(np.cumsum(levels != FOREIGN) >= expected) if expected else np.array([-1])
        stop = min(first, start + int(full[0]) + 1) if len(full) else first
        if stop < n and ids[stop] == end_id:
            return stop, stop
        self._flush()
        self.repairs.append(Repair(stop, "closed", f"the {modality} segment opened at position {begin} was not "
                                                   f"closed; closed it here"))
        return stop, None

    def _drop(self, begin: int, where: int, modality: str, reason: str) -> int:
        """Strict: raise. Lenient: skip the segment up to and including its end token (or up to the
        next begin token) and report it."""
        if self.strict:
            raise TokenSequenceError(reason, where)
        nxt = self._next_mark(begin + 1)
        after = nxt + 1 if nxt < len(self.ids) and int(self.ids[nxt]) in self.end else nxt
        self.repair(where, "dropped", f"{reason}; dropped the segment")
        self._gap = after - where       # the next broken segment right after this one continues the run
        return after


def load(path: str | Path | None = None, *, device: str = "cpu") -> UniTokenizer:
    """Load a tokenizer suite: the bundled defaults (``unitok/assets``) or a suite folder."""
    if path is None:
        path = checkpoint.ASSETS
    return UniTokenizer.from_pretrained(path, device=device)
