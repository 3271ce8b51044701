"""Group-of-tokens layouts: the order in which a modality's codes become tokens, and which tokens a
model predicts together in one step (a *group*). Every layout has an exact inverse.

A media layout is bound to one shape (a header) and is a fixed *plan*: for each token position,
the level it must carry (or a structural marker such as ``PAD``), its group, and the index of its
code in a canonical flat buffer. ``flatten`` gathers codes through the plan; ``unflatten``
scatters them back, so the inverse is exact by construction. Validation and repair of
model-generated tokens happen against the same plan.

Layouts know nothing of global ids: ``unitok.space`` turns ``(level, code)`` into ids and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar, Sequence

import numpy as np

from .errors import ConfigError, TokenSequenceError
from .sequence import Repair

# Structural markers a layout may put where a level index would go. They become special ids.
PAD = -1   # "no code here" (delay pattern); <|pad|>
MISSING = -1   # in an unflattened codes container: a code lenient decoding did not find (codecs decode what is present)
EOL = -2   # end of a raster row; <|eol|>
EOF = -3   # end of a frame; <|eof|>
FOREIGN = -9  # an id that belongs to neither this modality nor its structural tokens
STRUCTURAL = {PAD: "<|pad|>", EOL: "<|eol|>", EOF: "<|eof|>"}


@dataclass
class Flat:
    """A laid-out segment body. All arrays are [N] int64."""

    levels: np.ndarray   # level per token, or a structural marker (< 0)
    codes: np.ndarray    # code within the level's codebook (0 for structural tokens)
    groups: np.ndarray   # group per token, 0-based, non-decreasing

    def __len__(self) -> int:
        return len(self.levels)


def _describe_level(level: int) -> str:
    if level >= 0:
        return f"a level-{level} code"
    if level == FOREIGN:
        return "an id of another modality or text"
    return STRUCTURAL[level]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a 1-D bool array."""
    if not mask.any():
        return []
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


# -- text ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sequential:
    """Text: ``k`` tokens per group (``k=1`` is classic next-token prediction)."""

    k: int = 1
    name: ClassVar[str] = "sequential"

    def __post_init__(self):
        if self.k < 1:
            raise ConfigError(f"Sequential layout needs k >= 1, got {self.k}")

    def groups(self, n: int) -> np.ndarray:
        return np.arange(n, dtype=np.int64) // self.k

    def config(self) -> dict:
        return {"name": self.name, "k": self.k}


# -- media --------------------------------------------------------------------------------------


class Layout:
    """Base of the media layouts. Subclasses define ``_build_plan`` and the codes container."""

    name: ClassVar[str]

    # subclasses: return (levels [N], groups [N], index [N]) with index -1 for structural tokens
    def _build_plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def pack(self, codes) -> np.ndarray:
        """Codes container -> canonical flat buffer [num_codes]."""
        raise NotImplementedError

    def unpack(self, buffer: np.ndarray):
        """Canonical flat buffer [num_codes] -> codes container."""
        raise NotImplementedError

    def config(self) -> dict:
        raise NotImplementedError

    @cached_property
    def _plan(self):
        levels, groups, index = (np.asarray(a, dtype=np.int64) for a in self._build_plan())
        levels.flags.writeable = groups.flags.writeable = index.flags.writeable = False
        return levels, groups, index

    @property
    def expected_levels(self) -> np.ndarray:
        return self._plan[0]

    @property
    def groups(self) -> np.ndarray:
        return self._plan[1]

    @property
    def num_groups(self) -> int:
        g = self.groups
        return int(g[-1]) + 1 if len(g) else 0

    def __len__(self) -> int:
        """Number of tokens in a body laid out this way, computed without building the plan (so
        an absurd header from a generated sequence can be refused before any allocation)."""
        raise NotImplementedError

    def flatten(self, codes) -> Flat:
        levels, groups, index = self._plan
        buffer = self.pack(codes)
        out = np.zeros(len(levels), dtype=np.int64)
        is_code = index >= 0
        out[is_code] = buffer[index[is_code]]
        return Flat(levels.copy(), out, groups.copy())

    def unflatten(self, levels: np.ndarray, codes: np.ndarray, *, positions: np.ndarray | None = None,
                  strict: bool = True, what: str = "segment") -> tuple[object, list[Repair]]:
        """Tokens of one body -> codes container, exactly inverting :meth:`flatten`.

        Args:
            levels: [n] level per token as parsed by the token space (``FOREIGN`` for ids that do
                not belong here, structural markers for <|pad|> etc.).
            codes: [n] code per token.
            positions: [n] index of each token in the whole id sequence (for messages); defaults
                to 0..n-1. ``positions`` may carry one extra trailing entry: the position right
                after the body, used to report truncation.
            strict: raise ``TokenSequenceError`` on the first problem; otherwise repair (drop
                foreign ids, or mark them ``MISSING`` in place when the body has exactly its declared
                length with them; mark wrong-level tokens and the codes of a truncated body ``MISSING``,
                drop tokens beyond the declared length) and report each repair. A codec decodes
                ``MISSING`` as "not there": the levels or scales present, or its most neutral code.
        Returns:
            (codes container, repairs)
        """
        levels = np.asarray(levels, dtype=np.int64)
        codes = np.asarray(codes, dtype=np.int64)
        n = len(levels)
        positions = np.arange(n + 1, dtype=np.int64) if positions is None else np.asarray(positions, dtype=np.int64)
        end_position = int(positions[n]) if len(positions) > n else (int(positions[-1]) + 1 if n else 0)
        exp_levels, exp_groups, index = self._plan
        N = len(exp_levels)
        repairs: list[Repair] = []

        foreign = levels == FOREIGN
        if foreign.any():
            first = int(np.flatnonzero(foreign)[0])
            if strict:
                raise TokenSequenceError(f"{_describe_level(FOREIGN)} inside a {what}", int(positions[first]))
            if n == N:
                # exactly the declared length: the foreign ids stand where codes belong (a model's
                # wrong pick), so each is a missing code in its own place; dropping them would move
                # every later code one place early
                for a, b in _runs(foreign):
                    repairs.append(Repair(int(positions[a]), "replaced",
                                          f"{b - a} foreign id(s) inside a {what} marked missing in place"))
                levels, codes = levels.copy(), codes.copy()
                levels[foreign], codes[foreign] = exp_levels[foreign], MISSING
            else:       # ids inserted into the body: without them, the rest is where it belongs
                for a, b in _runs(foreign):
                    repairs.append(Repair(int(positions[a]), "dropped", f"{b - a} foreign id(s) inside a {what}"))
                keep = ~foreign
                levels, codes, positions = levels[keep], codes[keep], np.append(positions[:n][keep], end_position)
                n = len(levels)

        m = min(n, N)
        wrong = levels[:m] != exp_levels[:m]
        if wrong.any():
            first = int(np.flatnonzero(wrong)[0])
            if strict:
                raise TokenSequenceError(
                    f"expected {_describe_level(int(exp_levels[first]))} (token {first} of the {what}, group "
                    f"{int(exp_groups[first])}), got {_describe_level(int(levels[first]))}", int(positions[first]))
            for a, b in _runs(wrong):
                repairs.append(Repair(int(positions[a]), "replaced",
                                      f"{b - a} token(s) of the wrong level in a {what} marked missing"))
            codes = codes.copy()
            codes[:m][wrong] = MISSING
        if n < N:
            group = int(exp_groups[n])
            reason = (f"{what} truncated after {n} of {N} tokens (group {group} of {self.num_groups} "
                      f"is incomplete)")
            if strict:
                raise TokenSequenceError(reason, end_position)
            repairs.append(Repair(end_position, "padded", f"{reason}; {N - n} missing code(s): the {what} is decoded "
                                                          f"from what is present"))
        elif n > N:
            if strict:
                raise TokenSequenceError(f"{what} has {n - N} token(s) more than its shape allows ({N})",
                                         int(positions[N]))
            repairs.append(Repair(int(positions[N]), "dropped",
                                  f"{n - N} token(s) beyond the {N} the {what}'s shape allows"))

        buffer = np.full(self.num_codes, MISSING, dtype=np.int64)
        is_code = index[:m] >= 0
        buffer[index[:m][is_code]] = codes[:m][is_code]
        return self.unpack(buffer), repairs

    @property
    def num_codes(self) -> int:
        raise NotImplementedError


def _check_grid(arr, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.shape != shape:
        raise ConfigError(f"{what}: expected codes of shape {shape}, got {arr.shape}")
    return arr.astype(np.int64).reshape(-1)


def _check_scales(scales: Sequence[Sequence[int]], level_of_scale: Sequence[int] | None):
    scales = tuple((int(h), int(w)) for h, w in scales)
    if not scales or any(h < 1 or w < 1 for h, w in scales):
        raise ConfigError(f"scales must be a non-empty list of positive (h, w), got {scales}")
    if level_of_scale is None:
        level_of_scale = (0,) * len(scales)
    level_of_scale = tuple(int(x) for x in level_of_scale)
    if len(level_of_scale) != len(scales) or min(level_of_scale) < 0:
        raise ConfigError(f"level_of_scale must give one level >= 0 per scale, got {level_of_scale}")
    return scales, level_of_scale


@dataclass(frozen=True, eq=True)
class Raster(Layout):
    """Single-scale grid, raster order. ``codes: [L, H, W]`` (L levels per position, e.g. residual
    codebooks; L=1 for a plain VQ). ``group="token"``: one group per position (its L codes);
    ``group="row"``: one group per row. ``eol=True`` ends each row with ``<|eol|>`` (own group)."""

    height: int
    width: int
    levels: int = 1
    group: str = "token"
    eol: bool = False
    name: ClassVar[str] = "raster"

    def __post_init__(self):
        if min(self.height, self.width, self.levels) < 1:
            raise ConfigError(f"Raster layout needs positive sizes, got {self.height}x{self.width}x{self.levels}")
        if self.group not in ("token", "row"):
            raise ConfigError(f"Raster group must be 'token' or 'row', got {self.group!r}")

    @property
    def num_codes(self) -> int:
        return self.levels * self.height * self.width

    def __len__(self) -> int:
        return self.height * (self.width * self.levels + self.eol)

    def _build_plan(self):
        L, H, W = self.levels, self.height, self.width
        h, w, l = np.meshgrid(np.arange(H), np.arange(W), np.arange(L), indexing="ij")  # [H, W, L]
        index = (l * H * W + h * W + w).reshape(H, W * L)
        levels = l.reshape(H, W * L)
        if self.group == "token":
            groups = (h * (W + self.eol) + w).reshape(H, W * L)
        else:
            groups = (h * (1 + self.eol)).reshape(H, W * L)
        if self.eol:
            row_group = groups[:, -1:] + 1
            index = np.concatenate([index, np.full((H, 1), -1)], axis=1)
            levels = np.concatenate([levels, np.full((H, 1), EOL)], axis=1)
            groups = np.concatenate([groups, row_group], axis=1)
        return levels.reshape(-1), groups.reshape(-1), index.reshape(-1)

    def pack(self, codes) -> np.ndarray:
        return _check_grid(codes, (self.levels, self.height, self.width), "raster layout")

    def unpack(self, buffer):
        return buffer.reshape(self.levels, self.height, self.width)

    def config(self) -> dict:
        return {"name": self.name, "group": self.group, "eol": self.eol}


@dataclass(frozen=True, eq=True)
class NextScale(Layout):
    """Multi-scale residual codes, coarse to fine, one group per scale (VAR / Infinity).
    ``codes``: list over scales of ``[h_s, w_s]``. ``level_of_scale[s]`` is the codebook level the
    codes of scale ``s`` use (all 0 for one shared codebook)."""

    scales: tuple[tuple[int, int], ...]
    level_of_scale: tuple[int, ...] | None = None
    name: ClassVar[str] = "next_scale"

    def __post_init__(self):
        scales, los = _check_scales(self.scales, self.level_of_scale)
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "level_of_scale", los)

    @property
    def num_codes(self) -> int:
        return sum(h * w for h, w in self.scales)

    def __len__(self) -> int:
        return self.num_codes

    def _build_plan(self):
        sizes = [h * w for h, w in self.scales]
        levels = np.repeat(self.level_of_scale, sizes)
        groups = np.repeat(np.arange(len(sizes)), sizes)
        return levels, groups, np.arange(sum(sizes))

    def pack(self, codes) -> np.ndarray:
        if len(codes) != len(self.scales):
            raise ConfigError(f"next-scale layout: expected {len(self.scales)} scales, got {len(codes)}")
        return np.concatenate([_check_grid(c, s, f"scale {i}") for i, (c, s) in enumerate(zip(codes, self.scales))])

    def unpack(self, buffer):
        out, start = [], 0
        for h, w in self.scales:
            out.append(buffer[start:start + h * w].reshape(h, w))
            start += h * w
        return out

    def config(self) -> dict:
        return {"name": self.name, "scales": [list(s) for s in self.scales], "level_of_scale": list(self.level_of_scale)}


@dataclass(frozen=True, eq=True)
class FrameScale(Layout):
    """Video: one group per (latent frame, scale), frames in time order, scales coarse to fine
    (next-frame-and-scale). ``codes``: list over frames of lists over scales of ``[h_s, w_s]``.
    A single-scale video is ``scales=((h, w),)``. ``eof=True`` ends each frame with ``<|eof|>``
    (own group)."""

    frames: int
    scales: tuple[tuple[int, int], ...]
    level_of_scale: tuple[int, ...] | None = None
    eof: bool = False
    name: ClassVar[str] = "frame_scale"

    def __post_init__(self):
        if self.frames < 1:
            raise ConfigError(f"FrameScale layout needs at least one frame, got {self.frames}")
        scales, los = _check_scales(self.scales, self.level_of_scale)
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "level_of_scale", los)

    @property
    def _frame(self) -> NextScale:
        return NextScale(self.scales, self.level_of_scale)

    @property
    def num_codes(self) -> int:
        return self.frames * self._frame.num_codes

    def __len__(self) -> int:
        return self.frames * (self._frame.num_codes + self.eof)

    def _build_plan(self):
        f_levels, f_groups, f_index = self._frame._plan
        per_frame, S = len(f_levels), len(self.scales)
        if self.eof:
            f_levels = np.append(f_levels, EOF)
            f_groups = np.append(f_groups, S)
            f_index = np.append(f_index, -1)
            S += 1
        t = np.arange(self.frames)[:, None]
        levels = np.broadcast_to(f_levels, (self.frames, len(f_levels)))
        groups = t * S + f_groups
        index = np.where(f_index >= 0, t * per_frame + f_index, -1)
        return levels.reshape(-1), groups.reshape(-1), index.reshape(-1)

    def pack(self, codes) -> np.ndarray:
        if len(codes) != self.frames:
            raise ConfigError(f"frame-scale layout: expected {self.frames} frames, got {len(codes)}")
        return np.concatenate([self._frame.pack(f) for f in codes])

    def unpack(self, buffer):
        n = self._frame.num_codes
        return [self._frame.unpack(buffer[t * n:(t + 1) * n]) for t in range(self.frames)]

    def config(self) -> dict:
        return {"name": self.name, "scales": [list(s) for s in self.scales],
                "level_of_scale": list(self.level_of_scale), "eof": self.eof}


@dataclass(frozen=True, eq=True)
class CodecDepth(Layout):
    """Audio residual codes ``[K, T]``: one group per frame holding its K codes, coarse to fine
    (next-codec prediction)."""

    levels: int
    frames: int
    name: ClassVar[str] = "codec_depth"

    def __post_init__(self):
        if self.levels < 1 or self.frames < 0:
            raise ConfigError(f"{self.name} layout needs levels >= 1 and frames >= 0")

    @property
    def num_codes(self) -> int:
        return self.levels * self.frames

    def __len__(self) -> int:
        return self.levels * self.frames

    def _build_plan(self):
        K, T = self.levels, self.frames
        t, k = np.meshgrid(np.arange(T), np.arange(K), indexing="ij")  # [T, K]
        return k.reshape(-1), t.reshape(-1), (k * T + t).reshape(-1)

    def pack(self, codes) -> np.ndarray:
        return _check_grid(codes, (self.levels, self.frames), f"{self.name} layout")

    def unpack(self, buffer):
        return buffer.reshape(self.levels, self.frames)

    def config(self) -> dict:
        return {"name": self.name}


@dataclass(frozen=True, eq=True)
class Delay(CodecDepth):
    """MusicGen's delay pattern over ``[K, T]``: level k is shifted right by k steps, giving
    ``T + K - 1`` groups of K tokens; positions with no code hold ``<|pad|>``."""

    name: ClassVar[str] = "delay"

    def __len__(self) -> int:
        return self.levels * (self.frames + self.levels - 1) if self.frames else 0

    def _build_plan(self):
        K, T = self.levels, self.frames
        steps = T + K - 1 if T else 0
        s, k = np.meshgrid(np.arange(steps), np.arange(K), indexing="ij")  # [steps, K]
        t = s - k
        valid = (t >= 0) & (t < T)
        levels = np.where(valid, k, PAD)
        index = np.where(valid, k * T + t, -1)
        return levels.reshape(-1), s.reshape(-1), index.reshape(-1)


LAYOUTS = {cls.name: cls for cls in (Raster, NextScale, FrameScale, CodecDepth, Delay)}


# -- layouts of public codecs (unitok.adapters) ---------------------------------------------------


@dataclass(frozen=True, eq=True)
class LevelDelay(CodecDepth):
    """Per-level delays over ``[K, T]``: level k is shifted right by ``delays[k]`` steps, giving
    ``T + max(delays)`` groups (steps) of K tokens; positions with no code hold ``<|pad|>``.
    ``delays=(0, 1, ..., K-1)`` is MusicGen's :class:`Delay`; Dia uses ``(0, 8, 9, ..., 15)``,
    Moshi delays the acoustic levels of Mimi by one or two steps after the semantic one."""

    delays: tuple[int, ...] = ()
    name: ClassVar[str] = "level_delay"

    def __post_init__(self):
        super().__post_init__()
        delays = tuple(int(d) for d in self.delays)
        if len(delays) != self.levels or min(delays) < 0:
            raise ConfigError(f"level_delay layout needs one delay >= 0 per level ({self.levels}), got {delays}")
        object.__setattr__(self, "delays", delays)

    def __len__(self) -> int:
        return self.levels * (self.frames + max(self.delays)) if self.frames else 0

    def _build_plan(self):
        K, T = self.levels, self.frames
        steps = T + max(self.delays) if T else 0
        s, k = np.meshgrid(np.arange(steps), np.arange(K), indexing="ij")  # [steps, K]
        t = s - np.asarray(self.delays)[k]
        valid = (t >= 0) & (t < T)
        return (np.where(valid, k, PAD).reshape(-1), s.reshape(-1),
                np.where(valid, k * T + t, -1).reshape(-1))

    def config(self) -> dict:
        return {"name": self.name, "delays": list(self.delays)}


@dataclass(frozen=True, eq=True)
class MultiRate(Layout):
    """Codecs whose levels run at different rates (SNAC: 3-4 levels at 1x, 2x, 4x, 8x the
    coarsest). ``codes``: list over levels of ``[frames * rates[k]]``. One group per coarse
    frame holding its ``sum(rates)`` codes. ``order="level"``: coarse to fine within a group
    (level 0's code, then level 1's, ...); ``order="tree"``: depth first, each code followed by
    the finer codes under it (Orpheus's SNAC order: l0, l1, l2, l2, l1, l2, l2 for rates 1, 2, 4).
    Each rate must divide the next."""

    frames: int
    rates: tuple[int, ...]
    order: str = "level"
    name: ClassVar[str] = "multi_rate"

    def __post_init__(self):
        rates = tuple(int(r) for r in self.rates)
        if self.frames < 0 or not rates or rates[0] < 1 or any(b % a for a, b in zip(rates, rates[1:])):
            raise ConfigError(f"multi_rate layout needs frames >= 0 and rates >= 1 each dividing the next, got "
                              f"{self.frames} frames, rates {rates}")
        if self.order not in ("level", "tree"):
            raise ConfigError(f"multi_rate order must be 'level' or 'tree', got {self.order!r}")
        object.__setattr__(self, "rates", rates)

    @property
    def num_codes(self) -> int:
        return self.frames * sum(self.rates)

    def __len__(self) -> int:
        return self.num_codes

    def _frame_plan(self) -> tuple[np.ndarray, np.ndarray]:
        """(level, index within the level's codes of one coarse frame) per token of a group."""
        if self.order == "level":
            levels = np.repeat(np.arange(len(self.rates)), self.rates)
            return levels, np.concatenate([np.arange(r) for r in self.rates])
        out: list[tuple[int, int]] = []

        def visit(level: int, i: int):
            out.append((level, i))
            if level + 1 < len(self.rates):
                f = self.rates[level + 1] // self.rates[level]
                for j in range(f):
                    visit(level + 1, i * f + j)

        for i in range(self.rates[0]):
            visit(0, i)
        return np.array([a for a, _ in out]), np.array([b for _, b in out])

    def _build_plan(self):
        f_levels, f_pos = self._frame_plan()
        rates = np.asarray(self.rates)
        offsets = np.concatenate([[0], np.cumsum(rates * self.frames)[:-1]])   # start of each level's codes
        t = np.arange(self.frames)[:, None]
        index = offsets[f_levels] + t * rates[f_levels] + f_pos
        groups = np.broadcast_to(t, index.shape)
        levels = np.broadcast_to(f_levels, index.shape)
        return levels.reshape(-1), groups.reshape(-1), index.reshape(-1)

    def pack(self, codes) -> np.ndarray:
        if len(codes) != len(self.rates):
            raise ConfigError(f"multi-rate layout: expected {len(self.rates)} levels, got {len(codes)}")
        parts = [_check_grid(c, (self.frames * r,), f"multi-rate level {k}") for k, (c, r) in
                 enumerate(zip(codes, self.rates))]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def unpack(self, buffer):
        out, start = [], 0
        for r in self.rates:
            out.append(buffer[start:start + self.frames * r])
            start += self.frames * r
        return out

    def config(self) -> dict:
        return {"name": self.name, "rates": list(self.rates), "order": self.order}


@dataclass(frozen=True, eq=True)
class FrameRaster(Layout):
    """Emu3's order: frames in time, each a raster of ``[height, width]`` codes whose rows end
    with ``<|eol|>`` (``eol=True``) and which ends with ``<|eof|>`` (``eof=True``). ``codes:
    [frames, height, width]``; an image is one frame. ``group="token"``: one group per code (and
    per structural token); ``group="row"``: one group per row (its end-of-line included), the
    ``<|eof|>`` its own group."""

    frames: int
    height: int
    width: int
    eol: bool = True
    eof: bool = True
    group: str = "token"
    name: ClassVar[str] = "frame_raster"

    def __post_init__(self):
        if min(self.frames, self.height, self.width) < 1:
            raise ConfigError(f"frame_raster layout needs positive sizes, got {self.frames}x{self.height}x{self.width}")
        if self.group not in ("token", "row"):
            raise ConfigError(f"frame_raster group must be 'token' or 'row', got {self.group!r}")

    @property
    def num_codes(self) -> int:
        return self.frames * self.height * self.width

    def __len__(self) -> int:
        return self.frames * (self.height * (self.width + self.eol) + self.eof)

    def _build_plan(self):
        F, H, W = self.frames, self.height, self.width
        row_index = np.arange(H * W).reshape(H, W)
        row_levels = np.zeros((H, W), dtype=np.int64)
        if self.eol:
            row_index = np.concatenate([row_index, np.full((H, 1), -1)], 1)
            row_levels = np.concatenate([row_levels, np.full((H, 1), EOL)], 1)
        index, levels = row_index.reshape(-1), row_levels.reshape(-1)
        if self.group == "token":
            groups = np.arange(len(index))
        else:
            groups = np.repeat(np.arange(H), W + self.eol)
        if self.eof:
            index, levels = np.append(index, -1), np.append(levels, EOF)
            groups = np.append(groups, groups[-1] + 1)
        per = int(groups[-1]) + 1
        t = np.arange(F)[:, None]
        return (np.broadcast_to(levels, (F, len(levels))).reshape(-1), (t * per + groups).reshape(-1),
                np.where(index >= 0, t * H * W + index, -1).reshape(-1))

    def pack(self, codes) -> np.ndarray:
        return _check_grid(codes, (self.frames, self.height, self.width), "frame-raster layout")

    def unpack(self, buffer):
        return buffer.reshape(self.frames, self.height, self.width)

    def config(self) -> dict:
        return {"name": self.name, "eol": self.eol, "eof": self.eof, "group": self.group}


LAYOUTS.update({cls.name: cls for cls in (LevelDelay, MultiRate, FrameRaster)})
