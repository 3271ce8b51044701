"""Per-token metadata of a document, derived from its ids, the token space and the codecs' layouts.

Nothing is encoded: each media segment's header is read back from its shape tokens, the codec
rebuilds the layout of that header, and the layout's plan (``unitok.lm.body``) gives every body
token its group, grid cell, positions and the token it refines. Text, header and structural tokens
count like text.

    >>> meta = lm.annotate(seq)            # once per document; every function below also takes seq
    >>> lm.positions(meta, "mrope")        # int64 [N, 3]
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import ConfigError, TokenSequenceError
from ..sequence import TokenSequence
from ..space import BEGIN, END
from ..suiteinfo import retired_advice, space_name
from .body import body

# What a token is, per position (``TokenMeta.role``).
TEXT, SPECIAL, BEGIN_TOKEN, HEADER, CODE, MARKER, END_TOKEN = range(7)
ROLES = ("text", "special", "begin", "header", "code", "marker", "end")


@dataclass
class TokenMeta:
    """Everything ``unitok.lm`` derives for one document of ``N`` tokens (numpy arrays)."""

    ids: np.ndarray        # [N] int64
    role: np.ndarray       # [N] int8, an index into ROLES
    blocks: np.ndarray     # [N] int64 attention blocks: the document's groups, 0-based, non-decreasing
    parents: np.ndarray    # [N] int64 the token in an earlier block that this one refines (-1: none)
    cells: np.ndarray      # [N, 4] int64 (frame, scale, row, col) of visual tokens, -1 elsewhere
    mrope: np.ndarray      # [N, 3] int64 (t, h, w), Qwen2-VL M-RoPE
    uni: np.ndarray        # [N, 3] float64 (t, h, w), ERNIE 5.0 Uni-RoPE
    loss: np.ndarray       # [N] bool, False where the layout forces the token

    def __len__(self) -> int:
        return len(self.ids)


@lru_cache(maxsize=1)
def _bundled():
    from .. import load   # the API root's loader, only when a caller relies on the bundled suite

    return load()


def suite(tok=None):
    """``tok``, or the bundled suite (``unitok.load()``, loaded once per process) when it is None."""
    return _bundled() if tok is None else tok


def _ids_and_fingerprint(seq) -> tuple[np.ndarray, str | None]:
    if isinstance(seq, TokenSequence):
        return np.asarray(seq.ids, dtype=np.int64), seq.fingerprint
    if isinstance(seq, dict) and "ids" in seq:   # a TokenDataset item
        return np.asarray(seq["ids"], dtype=np.int64), seq.get("fingerprint")
    ids = np.asarray(seq)
    if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
        raise TokenSequenceError(f"expected a TokenSequence, a TokenDataset item or a 1-D array of ids, got "
                                 f"{type(seq).__name__} of shape {ids.shape}")
    return ids.astype(np.int64), None


def annotate(seq, *, tok=None) -> TokenMeta:
    """The metadata of one document.

    Args:
        seq: a ``TokenSequence`` (``tok.encode(...)``, ``TokenDataset.sequence(i)``), a
            ``TokenDataset`` item (``ds[i]``) or a 1-D array of ids; ``TokenMeta`` passes through.
        tok: the ``UniTokenizer`` suite that made the ids; ``None`` is the bundled suite
            (``unitok.load()``, loaded once). A sequence that carries a fingerprint must match it.
    Raises:
        ConfigError: the sequence was made with another token space.
        TokenSequenceError: the ids are not a well-formed document (the position is named); the
            metadata is only defined for what ``tok.decode(ids, strict=True)`` accepts.
    """
    if isinstance(seq, TokenMeta):
        return seq
    ids, fingerprint = _ids_and_fingerprint(seq)
    suite_ = suite(tok)
    if fingerprint is not None and fingerprint != suite_.space.fingerprint:
        which = "the bundled suite (tok=None)" if tok is None else "the suite given as tok="
        raise ConfigError(f"the token sequence was made with {space_name(fingerprint)}, but {which} has "
                          f"{suite_.space.fingerprint[:12]}; pass the suite that made the ids, e.g. "
                          f"lm.annotate(seq, tok=unitok.load(folder)){retired_advice(fingerprint)}")
    return _Walk(suite_, ids).run()


class _Walk:
    """One pass over a document; the Python loop visits only non-text tokens and segments."""

    def __init__(self, tok, ids: np.ndarray):
        self.tok, self.ids, self.space = tok, ids, tok.space
        N = len(ids)
        if N and (ids.min() < 0 or ids.max() >= len(self.space)):
            i = int(np.flatnonzero((ids < 0) | (ids >= len(self.space)))[0])
            raise TokenSequenceError(f"id {int(ids[i])} is outside the token space [0, {len(self.space)})", i)
        sp = self.space.special_tokens
        self.begin = {sp[BEGIN[m]]: m for m in tok.media}
        self.plain = {sp[name] for name in ("<|bos|>", "<|eos|>", "<|sep|>", "<|pad|>")}
        self.with_loss = {sp["<|eos|>"], sp["<|sep|>"]}   # chosen by the model; <|bos|> and <|pad|> are not
        self.role = np.full(N, TEXT, dtype=np.int8)
        self.blocks = np.zeros(N, dtype=np.int64)
        self.parents = np.full(N, -2, dtype=np.int64)     # -2: "the token before my group", filled in at the end
        self.cells = np.full((N, 4), -1, dtype=np.int64)
        self.mrope = np.zeros((N, 3), dtype=np.int64)
        self.uni = np.zeros((N, 3), dtype=np.float64)
        self.loss = np.ones(N, dtype=bool)
        self.group = 0                 # next group index
        self.position = [0, 0]         # next (mrope, uni) position
        self.non_text = np.flatnonzero(ids >= self.space.text_vocab_size)

    def run(self) -> TokenMeta:
        ids, N, k = self.ids, len(self.ids), self.tok.text_layout.k
        i = 0
        while i < N:
            nxt = int(np.searchsorted(self.non_text, i))
            j = int(self.non_text[nxt]) if nxt < len(self.non_text) else N
            if j > i:                          # a text part: groups of k tokens
                self.linear(i, j, np.arange(j - i) // k)
                i = j
                continue
            t = int(ids[i])
            if t in self.begin:
                i = self.segment(i, self.begin[t])
                continue
            if t not in self.plain:
                raise TokenSequenceError(f"{self.describe(t)} outside of any media segment", i)
            self.role[i] = SPECIAL
            self.loss[i] = t in self.with_loss
            self.linear(i, i + 1)
            i += 1
        starts = np.searchsorted(self.blocks, self.blocks, side="left")   # blocks are non-decreasing
        parents = np.where(self.parents == -2, starts - 1, self.parents)
        return TokenMeta(self.ids, self.role, self.blocks, parents, self.cells, self.mrope, self.uni, self.loss)

    def describe(self, t: int) -> str:
        modality, level, _ = self.space.describe(t)
        return self.space.token_name(t) if modality == "special" else f"a {modality} level-{level} code"

    def linear(self, a: int, b: int, groups: np.ndarray | None = None) -> None:
        """Tokens [a, b) that count like text; ``groups`` relative (default: one group for all)."""
        n = b - a
        groups = np.zeros(n, dtype=np.int64) if groups is None else groups
        self.blocks[a:b] = self.group + groups
        self.group += int(groups[-1]) + 1 if n else 0
        self.mrope[a:b] = (self.position[0] + np.arange(n))[:, None]
        self.uni[a:b] = (self.position[1] + np.arange(n))[:, None]
        self.position = [self.position[0] + n, self.position[1] + n]

    def segment(self, i: int, modality: str) -> int:
        """The media segment opened at ``i``; returns the position after its end token."""
        ids, space = self.ids, self.space
        codec = self.tok.media[modality]
        widths = codec.header_widths()
        start = i + 1 + sum(widths)        # the body's first token
        try:
            values = space.dims_from_ids(ids[i + 1:start], len(codec.header_fields), widths)
        except TokenSequenceError as e:
            raise TokenSequenceError(f"{modality} header ({', '.join(codec.header_fields)}): {e.reason}",
                                     i + 1 + e.position) from None
        header = dict(zip(codec.header_fields, values))
        try:
            codec.check_header(header)
            layout = codec.layout(header)
        except (TokenSequenceError, ConfigError) as e:
            raise TokenSequenceError(f"impossible {modality} header {header}: {getattr(e, 'reason', e)}", i + 1) from None
        stop = start + len(layout)         # len() before the plan: an absurd header allocates nothing
        end_id = space.special(END[modality])
        if stop >= len(ids) or ids[stop] != end_id:
            early = np.flatnonzero(ids[start:stop] == end_id)
            where = start + int(early[0]) if len(early) else min(stop, len(ids))
            raise TokenSequenceError(f"the {modality} segment opened at position {i} has {where - start} body tokens, "
                                     f"its header asks for {len(layout)} followed by {END[modality]}", where)
        plan = body(layout)
        levels, _ = space.media_codes(modality, ids[start:stop])
        wrong = np.flatnonzero(levels != plan.levels)
        if len(wrong):
            w = int(wrong[0])
            expected = int(plan.levels[w])
            raise TokenSequenceError(f"expected {f'a level-{expected} code' if expected >= 0 else 'a marker'} of the "
                                     f"{modality} layout, got {self.describe(int(ids[start + w]))}", start + w)
        self.role[i], self.role[i + 1:start] = BEGIN_TOKEN, HEADER
        self.linear(i, i + 1)
        self.linear(i + 1, start)          # the header is one group
        self.blocks[start:stop] = self.group + plan.groups
        self.group += int(plan.groups[-1]) + 1 if len(plan) else 0
        self.mrope[start:stop] = self.position[0] + plan.mrope
        self.uni[start:stop] = self.position[1] + plan.uni
        self.position = [self.position[0] + plan.extent[0], self.position[1] + plan.extent[1]]
        self.parents[start:stop] = start + plan.parents
        self.cells[start:stop] = plan.cells
        code = plan.levels >= 0
        self.role[start:stop] = np.where(code, CODE, MARKER)
        self.loss[start:stop] = code       # <|pad|>, <|eol|>, <|eof|>: the layout puts them there
        self.role[stop], self.loss[stop] = END_TOKEN, False   # a complete body can only be closed
        self.linear(stop, stop + 1)
        return stop + 1


# -- the public views -----------------------------------------------------------------------------


def positions(seq, mode: str = "uni", *, tok=None) -> np.ndarray:
    """(t, h, w) of every token: ``"mrope"`` int64 [N, 3], ``"uni"`` float64 [N, 3].

    Both modes: a text, audio, header or structural token has t = h = w = a running index. A media
    body starts at the running index ``p`` reached by the tokens before it; the index then
    continues right after the largest position the body used (Qwen2-VL's rule).

    - ``"mrope"`` (Qwen2-VL M-RoPE, integers): a visual body is one grid per scale, placed one
      after the other: scale ``s`` at ``p_s + (frame, row, col)``, ``p_{s+1} = p_s + max(frames,
      h_s, w_s)``. A single-scale image is exactly Qwen2-VL's image grid.
    - ``"uni"`` (ERNIE 5.0 Uni-RoPE, floats): every scale in the finest scale's ``(H, W)``
      coordinates, a coarse cell at the centre of the fine cells it covers:
      ``h = p + (row + 0.5) * H / h_s - 0.5``; ``t = p + frame``. The mean (h, w) of every scale is
      the grid centre ``p + ((H - 1) / 2, (W - 1) / 2)``.

    ``<|eol|>`` of row r sits at column W of that row; ``<|eof|>`` of frame f at (f, H, W) of the
    finest grid.
    """
    meta = annotate(seq, tok=tok)
    if mode == "mrope":
        return meta.mrope
    if mode == "uni":
        return meta.uni
    raise ConfigError(f"positions: mode must be 'mrope' or 'uni', got {mode!r}")


def blocks(seq, *, tok=None) -> np.ndarray:
    """Attention blocks, int64 [N]: query i may attend key j iff both are in the same document and
    ``blocks[j] <= blocks[i]``. A block is a group: a scale (next-scale), a (frame, scale)
    (next-frame-and-scale), a frame of K codes (codec depth), a header; text tokens are each their
    own block (causal) unless the suite groups them (``text_group_size``)."""
    return annotate(seq, tok=tok).blocks


def loss_mask(seq, *, headers: bool = True, tok=None) -> np.ndarray:
    """bool [N]: False on tokens the layout forces (end tokens after a complete body, ``<|pad|>``
    of the delay pattern, ``<|eol|>``, ``<|eof|>``) and on ``<|bos|>``/``<|pad|>``; True elsewhere.

    ``headers``: a header (the media's shape) is chosen by the model, so it carries a loss by
    default; ``headers=False`` drops it, for a model that is always given the shape (a constraint
    with a fixed shape at generation time)."""
    meta = annotate(seq, tok=tok)
    return meta.loss if headers else meta.loss & (meta.role != HEADER)


def parents(seq, *, tok=None) -> np.ndarray:
    """int64 [N]: for each token, the token of an earlier block it refines or continues (-1 for the
    first token). What a next-group model builds the inputs of a group from, so that they never
    reveal the group itself:

    - a visual token of scale s > 0: the cell of scale s - 1 that contains its centre (VAR feeds
      the upsampled earlier scales there); of the first scale of frame f > 0: the cell of frame
      f - 1's finest scale; of the first scale of the first frame: the token before the body;
    - a multi-level raster cell: the same level of the previous cell (``group="row"``: of the cell
      one row up); an audio code: the same level one frame (delay: one step) earlier;
    - any other token (text, header, structural, a group of one token): the last token of the
      previous block, i.e. ``i - 1`` for plain next-token prediction.
    """
    return annotate(seq, tok=tok).parents


def cells(seq, *, tok=None) -> np.ndarray:
    """int64 [N, 4]: (frame, scale, row, col) of each visual token in its own scale's grid; -1 for
    every other token. Markers: ``<|eol|>`` at (0, 0, r, W), ``<|eof|>`` at (f, S - 1, H, W)."""
    return annotate(seq, tok=tok).cells
