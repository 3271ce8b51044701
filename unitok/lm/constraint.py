"""Generation constraints: an automaton over the token space and the layouts that says, after any
valid prefix, which ids keep a generated document decodable with ``UniTokenizer.decode(strict=True)``.

    >>> g = tok.constraint(image=(256, 256), max_text_tokens=64)
    >>> s = g.start()
    >>> mask = g.allowed(s)                   # bool [len(tok.space)]
    >>> s = g.advance(s, token_id)            # TokenSequenceError on an id that is not allowed
    >>> g.done(s)                             # True where the document may end

What it enforces, part by part (the grammar ``UniTokenizer`` writes and its decoder reads):

- between parts: any text id (holes of a foreign vocabulary excluded), a begin token, ``<|eos|>``;
  ``<|bos|>`` only first; ``<|sep|>`` only between two text tokens (so it is followed by text);
- a media header: only shape tokens, digit by digit, such that the decoded header passes the codec's
  ``check_header`` (its ``limits``) and its body fits ``max_segment_tokens`` and the room left under
  ``max_tokens``. Fields may be fixed in advance (``image=(256, 256)``), which forces their digits;
- a media body: at each position exactly the id range of the level the layout's plan expects there
  (or the structural token it forces: ``<|pad|>``, ``<|eol|>``, ``<|eof|>``), then the end token.

One id is always kept in reserve for ``<|eos|>``: a constrained document can always be finished
within ``max_tokens`` (the tokenizer's, or the one given here), so ``generate(max_length=max_tokens)``
never cuts a segment.

Cost: states are small immutable values (header values so far, a position in a body, counters) and
``advance`` is O(1) in the prefix length. A body's plan is turned into per-position id ranges once
per distinct header (cached). A free header field's valid values are found when the field starts,
by a bounded search over ``check_header`` (assumption: given the fields before it, a field's valid
values form an interval, as with every bundled codec, whose limits are bounds and products).

Adapters: :meth:`Constraint.logits_processor` (``transformers``), :meth:`Constraint.prefix_allowed_tokens_fn`
(``generate(prefix_allowed_tokens_fn=...)``, also right for beam search) and :func:`mask_logits`
(plain torch).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from ..errors import ConfigError, TokenSequenceError
from ..layout import Layout, _runs
from ..space import BEGIN, DIM_BASE, END

# phases of a state
START, GAP, TEXT, SEP, HEADER, BODY, END_OF_DOC = range(7)
_OPEN = (START, GAP, TEXT)   # phases where the document may end

# values tried for a free header field when looking for a header that completes a prefix (common
# sizes, rates and frame counts); a field's own interval is then found by bisection
_PROBES = (1, 2, 3, 4, 8, 16, 24, 25, 30, 32, 64, 256, 1000, 1001, 8000, 16000, 22050, 24000, 44100, 48000)
_SEARCH_CALLS = 20_000   # header checks one feasibility question may spend before it answers "no"


class _Body:
    """A media body's plan as id ranges: position p takes an id in ``[lo[p], hi[p])``.

    ``stop[p]`` is the position after the last one of p's group (for whole-group steps)."""

    def __init__(self, space, modality: str, layout: Layout):
        levels = np.asarray(layout.expected_levels, dtype=np.int64)
        groups = np.asarray(layout.groups, dtype=np.int64)
        sizes = np.asarray(space.codebook_sizes[modality], dtype=np.int64)
        self.lo = space.media_ids(modality, levels, np.zeros_like(levels))   # structural markers: their id
        self.hi = self.lo + np.where(levels >= 0, sizes[np.maximum(levels, 0)], 1)
        self.stop = np.searchsorted(groups, groups, side="right")
        self.size = len(levels)


class _Header:
    """The valid headers of one modality: field intervals given the fields before them."""

    def __init__(self, constraint: "Constraint", modality: str, fixed: Mapping[str, int]):
        self.c = constraint
        self.modality = modality
        self.codec = constraint.tok.media[modality]
        self.fields = tuple(self.codec.header_fields)
        self.widths = tuple(self.codec.header_widths())
        self.fixed = tuple(fixed.get(f) for f in self.fields)
        self.width = sum(self.widths)
        self._valid: dict = {}
        self._feasible: dict = {}
        self._intervals: OrderedDict = OrderedDict()
        self._bodies: OrderedDict = OrderedDict()
        self.ref = self._complete((), constraint.max_segment_tokens)   # a header of few tokens
        if self.ref is None:
            what = f"fixed to {dict(fixed)}" if fixed else "within its limits"
            raise ConfigError(f"no valid {modality} header {what}: the codec's check_header, max_segment_tokens "
                              f"({constraint.max_segment_tokens}) or max_tokens ({constraint.max_tokens}) refuse "
                              f"it; fix another shape or raise the limits")
        self.min_body = self.length(self.ref)
        # each field's range with the others at ``ref``: its ends are what a completion search tries
        # (with monotone limits, a field's most permissive value is one end of its own range)
        self.probes = [self._probes(j) for j in range(len(self.fields))]

    def length(self, values: tuple) -> int:
        return len(self.codec.layout(dict(zip(self.fields, values))))

    def _probes(self, j: int) -> tuple:
        """Values of field j a completion search tries, most promising first."""
        if self.fixed[j] is not None:
            return (self.fixed[j],)
        top = DIM_BASE ** self.widths[j] - 1
        if getattr(self, "ref", None) is None:   # looking for a first valid header: common values
            return tuple(v for v in _PROBES if v <= top) + (top,)
        ok = lambda v: self.valid(self.ref[:j] + (v,) + self.ref[j + 1:], self.c.max_segment_tokens)  # noqa: E731
        lo, hi = _bisect(ok, 0, self.ref[j], first=True), _bisect(ok, self.ref[j], top, first=False)
        return tuple(dict.fromkeys((self.ref[j], lo, hi, 1, top)))

    def valid(self, values: tuple, budget: int) -> bool:
        """Whether a whole header decodes strictly and its body takes at most ``budget`` tokens."""
        key = (values, budget)
        if key not in self._valid:
            header = dict(zip(self.fields, values))
            try:
                self.codec.check_header(header)
                ok = len(self.codec.layout(header)) <= min(budget, self.c.max_segment_tokens)
            except (TokenSequenceError, ConfigError, ValueError, ArithmeticError):
                ok = False
            if len(self._valid) > 200_000:
                self._valid.clear()
            self._valid[key] = ok
        return self._valid[key]

    def _complete(self, prefix: tuple, budget: int, calls: list | None = None) -> tuple | None:
        """A valid header starting with ``prefix`` (later fields from the probes), or None."""
        calls = [_SEARCH_CALLS] if calls is None else calls
        j = len(prefix)
        if j == len(self.fields):
            calls[0] -= 1
            return prefix if self.valid(prefix, budget) else None
        for v in (self.probes[j] if hasattr(self, "probes") else self._probes(j)):
            if calls[0] <= 0:
                return None
            found = self._complete(prefix + (v,), budget, calls)
            if found is not None:
                return found
        return None

    def feasible(self, prefix: tuple, budget: int) -> bool:
        key = (prefix, budget)
        if key not in self._feasible:
            if len(self._feasible) > 200_000:
                self._feasible.clear()
            self._feasible[key] = self._complete(prefix, budget) is not None
        return self._feasible[key]

    def interval(self, prefix: tuple, budget: int) -> tuple[int, int] | None:
        """``(lo, hi)``: the values field ``len(prefix)`` may take so that the header can still be
        completed; None if none can."""
        key = (prefix, budget)
        if key in self._intervals:
            self._intervals.move_to_end(key)
            return self._intervals[key]
        j = len(prefix)
        ok = lambda v: self.feasible(prefix + (v,), budget)  # noqa: E731
        point = next((v for v in self.probes[j] if ok(v)), None)
        if point is None:
            found = None
        elif self.fixed[j] is not None:
            found = (point, point)
        else:
            found = (_bisect(ok, 0, point, first=True), _bisect(ok, point, DIM_BASE ** self.widths[j] - 1, first=False))
        self._intervals[key] = found
        if len(self._intervals) > 4096:
            self._intervals.popitem(last=False)
        return found

    def body(self, values: tuple) -> _Body:
        if values in self._bodies:
            self._bodies.move_to_end(values)
            return self._bodies[values]
        body = _Body(self.c.tok.space, self.modality, self.codec.layout(dict(zip(self.fields, values))))
        self._bodies[values] = body
        if len(self._bodies) > 16:
            self._bodies.popitem(last=False)
        return body


@dataclass(frozen=True, slots=True)
class State:
    """Where a document stands; immutable, so beams and samples may share and branch states."""

    phase: int = START
    n: int = 0                      # ids so far
    text: int = 0                   # text ids so far
    modality: str | None = None     # the open media segment
    values: tuple = ()              # header: values of the finished fields
    value: int = 0                  # header: the current field's digits so far, as a number
    digit: int = 0                  # header: digits of the current field so far
    bounds: tuple = (0, 0)          # header: the interval of the current field
    budget: int = 0                 # header and body: most body tokens the segment may take
    body: _Body | None = None       # body: the plan as id ranges
    pos: int = 0                    # body: tokens of the body so far


class Constraint:
    """The automaton of valid documents of one ``UniTokenizer``; build it with ``tok.constraint()``.

    Args:
        tok: the tokenizer suite.
        shapes: per modality, header fields fixed in advance: a tuple in ``header_fields`` order
            (a prefix of them; ``image=(H, W)``, ``video=(frames, H, W)``) or a dict by field name.
        audio_seconds: fix the audio length: with a codec whose header has ``sample_rate`` and
            ``samples``, the rate defaults to the codec's and ``levels`` to all of them.
        modalities: the media that may appear (default: every media of the suite).
        max_text_tokens: most text ids in the document (None: no limit; 0: no text).
        max_tokens: most ids in the document, ``<|eos|>`` included (default: ``tok.max_tokens``).
        bos: ``<|bos|>`` may open the document.
    """

    def __init__(self, tok, shapes: Mapping[str, object] | None = None, *, audio_seconds: float | None = None,
                 modalities: Sequence[str] | None = None, max_text_tokens: int | None = None,
                 max_tokens: int | None = None, bos: bool = True):
        self.tok = tok
        space = self.space = tok.space
        self.max_tokens = tok.max_tokens if max_tokens is None else min(int(max_tokens), tok.max_tokens)
        self.max_segment_tokens = tok.max_segment_tokens
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1 (room for <|eos|>), got {max_tokens}")
        self.max_text_tokens = math.inf if max_text_tokens is None else int(max_text_tokens)
        self.bos = bos
        sp = space.special_tokens
        self.bos_id, self.eos_id, self.sep_id = sp["<|bos|>"], sp["<|eos|>"], sp["<|sep|>"]
        self.dim0 = space.dim_ids([0], 1)[0]
        self.text_mask = _text_mask(tok.text, space.text_vocab_size, len(space))
        self.text_ok = bool(self.text_mask.any()) and self.max_text_tokens > 0
        self.text_runs = _runs(self.text_mask)
        shapes = dict(shapes or {})
        names = list(tok.media) if modalities is None else list(modalities)
        for m in list(names) + list(shapes):
            if m not in tok.media:
                raise ConfigError(f"constraint: this suite has no {m} tokenizer (it has: {', '.join(tok.modalities)})")
        if audio_seconds is not None:
            shapes["audio"] = _audio_header(tok.media.get("audio"), shapes.get("audio"), audio_seconds)
        self.headers = {m: _Header(self, m, _fields(tok.media[m], m, shapes.get(m))) for m in names}
        self.begin = {sp[BEGIN[m]]: m for m in names}
        self.end = {m: sp[END[m]] for m in names}

    def __repr__(self) -> str:
        return f"Constraint({', '.join(self.headers) or 'text'}; max_tokens={self.max_tokens})"

    # -- the automaton -----------------------------------------------------------------------------

    def start(self) -> State:
        """The state at the beginning of a document."""
        return State()

    def done(self, s: State) -> bool:
        """True when the document may end here (outside any media segment, not after ``<|sep|>``)."""
        return s.phase in _OPEN or s.phase == END_OF_DOC

    def _room(self, s: State) -> int:
        """Ids that may still come before the ``<|eos|>`` kept in reserve."""
        return self.max_tokens - 1 - s.n

    def _ranges(self, s: State) -> tuple[bool, list[tuple[int, int]]]:
        """(text ids allowed, [start, stop) id ranges allowed): ``allowed`` without the mask."""
        if s.phase == BODY:
            if s.pos < s.body.size:
                return False, [(int(s.body.lo[s.pos]), int(s.body.hi[s.pos]))]
            return False, [(self.end[s.modality], self.end[s.modality] + 1)]
        if s.phase == HEADER:
            lo, hi = self._digits(s)
            return False, [(self.dim0 + lo, self.dim0 + hi + 1)] if lo <= hi else []
        if s.phase == END_OF_DOC:
            return False, []
        room = self._room(s)
        text = self.text_ok and s.text < self.max_text_tokens and room >= 1
        if s.phase == SEP:
            return text, []
        out = [(self.eos_id, self.eos_id + 1)]
        if s.phase == START and self.bos and room >= 1:
            out.append((self.bos_id, self.bos_id + 1))
        if s.phase == TEXT and s.text < self.max_text_tokens and room >= 2:   # room for the text after it
            out.append((self.sep_id, self.sep_id + 1))
        for token, m in self.begin.items():
            h = self.headers[m]
            if room >= 2 + h.width + h.min_body:
                out.append((token, token + 1))
        return text, out

    def _digits(self, s: State) -> tuple[int, int]:
        """The digits the next shape token may carry: [lo, hi]."""
        h = self.headers[s.modality]
        rest = DIM_BASE ** (h.widths[len(s.values)] - s.digit - 1)
        lo, hi = s.bounds
        base = s.value * DIM_BASE
        return max(0, lo // rest - base), min(DIM_BASE - 1, hi // rest - base)

    def allowed(self, s: State) -> np.ndarray:
        """bool [len(space)]: the ids that may come next."""
        text, ranges = self._ranges(s)
        mask = self.text_mask.copy() if text else np.zeros(len(self.space), dtype=bool)
        for a, b in ranges:
            mask[a:b] = True
        return mask

    def allowed_ranges(self, s: State) -> list[tuple[int, int]]:
        """The allowed ids as sorted ``[start, stop)`` ranges, without building a mask (a sampler
        may draw from them directly)."""
        text, ranges = self._ranges(s)
        return sorted((self.text_runs if text else []) + ranges)

    def allowed_ids(self, s: State) -> np.ndarray:
        """int64 [k]: the ids that may come next (sorted)."""
        return np.flatnonzero(self.allowed(s))

    def is_allowed(self, s: State, token_id: int) -> bool:
        """Whether ``token_id`` may come next (O(1), no mask is built)."""
        text, ranges = self._ranges(s)
        if 0 <= token_id < self.space.text_vocab_size:
            return text and bool(self.text_mask[token_id])
        return any(a <= token_id < b for a, b in ranges)

    def advance(self, s: State, token_id: int) -> State:
        """The state after ``token_id``; ``TokenSequenceError`` (at position ``s.n``) if it is not allowed."""
        t = int(token_id)
        if not self.is_allowed(s, t):
            raise TokenSequenceError(f"id {t} ({self._describe(t)}) may not come here ({self._where(s)})", s.n)
        n = s.n + 1
        if s.phase == BODY:
            if s.pos < s.body.size:   # the hot path: a plain constructor call, not replace()
                return State(BODY, n, s.text, s.modality, s.values, 0, 0, s.bounds, s.budget, s.body, s.pos + 1)
            return State(GAP, n, s.text)
        if s.phase == HEADER:
            return self._header_step(s, t - self.dim0)
        if t < self.space.text_vocab_size:
            return State(TEXT, n, s.text + 1)
        if t == self.sep_id:
            return State(SEP, n, s.text)
        if t == self.eos_id:
            return State(END_OF_DOC, n, s.text)
        if t == self.bos_id:
            return State(GAP, n, s.text)
        m = self.begin[t]
        h = self.headers[m]
        budget = self._room(s) - 2 - h.width   # the begin and end tokens, the header
        return State(HEADER, n, s.text, m, bounds=h.interval((), budget), budget=budget)

    def _header_step(self, s: State, d: int) -> State:
        h = self.headers[s.modality]
        value, digit = s.value * DIM_BASE + d, s.digit + 1
        if digit < h.widths[len(s.values)]:
            return replace(s, n=s.n + 1, value=value, digit=digit)
        values = s.values + (value,)
        if len(values) < len(h.fields):
            bounds = h.interval(values, s.budget)
            assert bounds is not None, f"{s.modality} header {values}: a value the search allowed has no completion"
            return replace(s, n=s.n + 1, values=values, value=0, digit=0, bounds=bounds)
        assert h.valid(values, s.budget), f"{s.modality} header {values} was allowed but is not valid"
        return replace(s, phase=BODY, n=s.n + 1, values=values, value=0, digit=0, body=h.body(values), pos=0)

    def advance_all(self, s: State, ids) -> State:
        """The state after each of ``ids`` in turn."""
        for t in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            s = self.advance(s, t)
        return s

    def feed(self, ids) -> State:
        """The state after a whole prefix (from :meth:`start`)."""
        return self.advance_all(self.start(), ids)

    # -- whole groups ------------------------------------------------------------------------------

    def group_ranges(self, s: State) -> tuple[np.ndarray, np.ndarray]:
        """The next group at once: ``(lo, hi)``, int64 [n] each; position i of the group takes an id
        in ``[lo[i], hi[i])``. Inside a media body the group is the rest of the layout's group
        (its ids do not depend on one another); elsewhere it is the next id alone, and a
        position whose allowed ids are not one range (text) raises ``ConfigError``: use
        :meth:`allowed` there."""
        if s.phase == BODY and s.pos < s.body.size:
            stop = int(s.body.stop[s.pos])
            return s.body.lo[s.pos:stop].copy(), s.body.hi[s.pos:stop].copy()
        text, ranges = self._ranges(s)
        if text or len(ranges) != 1:
            raise ConfigError(f"the next id is not a group of single ranges here ({self._where(s)}); use allowed()")
        return np.array([ranges[0][0]]), np.array([ranges[0][1]])

    def group_allowed(self, s: State) -> np.ndarray:
        """bool [n, len(space)]: the allowed ids of every position of the next group (see
        :meth:`group_ranges`; outside a body, one row: :meth:`allowed`)."""
        if s.phase == BODY and s.pos < s.body.size:
            lo, hi = self.group_ranges(s)
            ids = np.arange(len(self.space))
            return (ids >= lo[:, None]) & (ids < hi[:, None])
        return self.allowed(s)[None]

    # -- messages ----------------------------------------------------------------------------------

    def _describe(self, t: int) -> str:
        if 0 <= t < self.space.text_vocab_size:
            return "a text id"
        if not 0 <= t < len(self.space):
            return "outside the token space"
        modality, level, _ = self.space.describe(t)
        if modality == "special":
            return self.space.token_name(t)
        return f"{'an' if modality[0] in 'aeiou' else 'a'} {modality} level-{level} code"

    def _where(self, s: State) -> str:
        if s.phase == HEADER:
            h = self.headers[s.modality]
            lo, hi = self._digits(s)
            return (f"{s.modality} header field {h.fields[len(s.values)]!r}, digit {s.digit}: expected "
                    f"<|dim:{lo}|>..<|dim:{hi}|>")
        if s.phase == BODY:
            if s.pos == s.body.size:
                return f"end of the {s.modality} body: expected {END[s.modality]}"
            a, b = int(s.body.lo[s.pos]), int(s.body.hi[s.pos])
            return f"token {s.pos} of the {s.modality} body: expected {self._describe(a)}" + (
                f" (ids {a}..{b - 1})" if b - a > 1 else "")
        if s.phase == END_OF_DOC:
            return "after <|eos|>"
        if s.phase == SEP:
            return "after <|sep|>: expected a text id"
        if self._room(s) < 1:
            return f"the document reached max_tokens={self.max_tokens} (only <|eos|> fits)"
        return "between parts"

    # -- adapters ----------------------------------------------------------------------------------

    def logits_processor(self):
        """A ``transformers`` ``LogitsProcessor`` that masks every id the automaton does not allow
        (the prompt must be a valid prefix). One automaton state per row, advanced by the ids
        appended since the last call: O(1) per step. Rows must keep their identity (greedy search,
        sampling); for beam search use :meth:`prefix_allowed_tokens_fn`."""
        return _processor_class()(self)

    def prefix_allowed_tokens_fn(self):
        """``fn(batch_id, input_ids) -> list[int]`` for ``generate(prefix_allowed_tokens_fn=fn)``.
        States are cached by prefix, so every beam finds its own (hashing a prefix is O(length),
        the automaton step is O(1))."""
        cache: OrderedDict = OrderedDict()

        def fn(batch_id: int, input_ids) -> list[int]:
            ids = np.asarray(input_ids.detach().cpu() if hasattr(input_ids, "detach") else input_ids,
                             dtype=np.int64)
            key = ids.tobytes()
            s = cache.get(key)
            if s is None:
                parent = cache.get(ids[:-1].tobytes()) if len(ids) else None
                s = self.advance(parent, ids[-1]) if parent is not None else self.feed(ids)
                cache[key] = s
                if len(cache) > 4096:
                    cache.popitem(last=False)
            if s.phase == END_OF_DOC:
                return [self.eos_id]   # finished rows get padding appended; keep the scores finite
            return self.allowed_ids(s).tolist()

        return fn


def mask_logits(constraint: Constraint, states: Sequence[State], logits):
    """Plain torch: ``logits`` [B, V] (V >= len(space); ids beyond the space are masked) with every
    id the automaton does not allow after ``states[b]`` set to ``-inf``. A finished state
    (``<|eos|>`` seen) keeps ``<|eos|>`` only, so sampling never sees a row of ``-inf``."""
    import torch   # keeps this module importable without torch for the automaton alone

    V = logits.shape[-1]
    mask = np.zeros((len(states), V), dtype=bool)
    for b, s in enumerate(states):
        row = constraint.allowed(s) if s.phase != END_OF_DOC else None
        if row is None or not row.any():
            mask[b, constraint.eos_id] = True
        else:
            mask[b, :min(V, len(row))] = row[:V]
    return logits.masked_fill(~torch.from_numpy(mask).to(logits.device), float("-inf"))


def _processor_class():
    from transformers import LogitsProcessor   # an optional dependency

    class ConstraintLogitsProcessor(LogitsProcessor):
        """``transformers`` adapter of a :class:`Constraint` (see ``Constraint.logits_processor``)."""

        def __init__(self, constraint: Constraint):
            self.constraint = constraint
            self.states: list[State] | None = None
            self.seen, self.last = 0, None   # ids per row and [B] last ids at the previous call

        def __call__(self, input_ids, scores):
            g = self.constraint
            B, L = input_ids.shape
            if (self.states is None or L < 2 or self.last.shape != (B,) or L != self.seen + 1
                    or not bool((input_ids[:, -2] == self.last).all())):
                # a new generate call: read the prompt
                self.states = [g.feed(row) for row in input_ids.cpu().numpy()]
            else:
                last = input_ids[:, -1].tolist()
                self.states = [s if s.phase == END_OF_DOC else g.advance(s, t) for s, t in zip(self.states, last)]
            self.seen, self.last = L, input_ids[:, -1].clone()
            return mask_logits(g, self.states, scores)

    return ConstraintLogitsProcessor


# -- helpers -----------------------------------------------------------------------------------------


def _bisect(ok, lo: int, hi: int, *, first: bool) -> int:
    """``first``: the smallest v in [lo, hi] with ok(v), given ok(hi); else the largest, given ok(lo)
    (ok is assumed monotone over the range)."""
    while lo < hi:
        if first:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if ok(mid) else (mid + 1, hi)
        else:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
    return lo


def _text_mask(text, size: int, total: int) -> np.ndarray:
    """bool [total]: the text ids (below ``size``) that decode (a foreign vocabulary may have holes)."""
    mask = np.zeros(total, dtype=bool)
    ranks = getattr(text, "mergeable_ranks", None)
    if ranks is None:
        mask[:size] = True
        return mask
    r2i = getattr(text, "rank_to_id", None)
    ids = np.asarray(list(ranks.values()) if r2i is None else r2i, dtype=np.int64)
    specials = np.asarray(list(getattr(text, "special_tokens", {}).values()), dtype=np.int64)
    mask[ids[(ids >= 0) & (ids < size)]] = True
    mask[specials[(specials >= 0) & (specials < size)]] = True
    return mask


def _fields(codec, modality: str, shape) -> dict[str, int]:
    """Fixed header fields from a tuple (in ``header_fields`` order) or a dict."""
    if shape is None:
        return {}
    fields = tuple(codec.header_fields)
    if isinstance(shape, Mapping):
        unknown = set(shape) - set(fields)
        if unknown:
            raise ConfigError(f"{modality} shape: unknown header fields {sorted(unknown)}; the {modality} header "
                              f"has {list(fields)}")
        out = dict(shape)
    else:
        shape = tuple(shape)
        if len(shape) > len(fields):
            raise ConfigError(f"{modality} shape {shape}: the {modality} header has {len(fields)} fields "
                              f"{list(fields)}")
        out = dict(zip(fields, shape))
    for name, v in out.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ConfigError(f"{modality} shape: {name} must be a non-negative integer, got {v!r}")
    return {k: int(v) for k, v in out.items()}


def _audio_header(codec, shape, seconds: float) -> dict[str, int]:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.integer, np.floating)) \
            or not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"audio_seconds must be a positive, finite number of seconds, got {seconds!r}")
    if codec is None:
        raise ConfigError("audio_seconds: this suite has no audio tokenizer")
    fields = tuple(codec.header_fields)
    if not {"sample_rate", "samples"} <= set(fields):
        raise ConfigError(f"audio_seconds needs an audio header with sample_rate and samples; this one has "
                          f"{list(fields)}: fix it with audio={{...}} instead")
    out = _fields(codec, "audio", shape)
    out.setdefault("sample_rate", int(codec.sample_rate))
    if "levels" in fields and hasattr(codec, "levels"):
        out.setdefault("levels", int(codec.levels))
    out["samples"] = max(1, round(seconds * out["sample_rate"]))
    return out
