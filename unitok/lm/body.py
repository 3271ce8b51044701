"""Per-token metadata of one media body, read off its layout's plan (nothing is encoded).

A ``Body`` is a template relative to the body's first token: positions relative to the segment's
start position, parents relative to the body's first token (``-1`` is the token right before the
body, the last header token). ``unitok.lm.meta`` places the templates into documents.

Visual layouts (``Raster``, ``NextScale``, ``FrameScale``, ``FrameRaster``) are grids: every token
has a cell ``(frame, scale, row, col)``. Structural markers sit just outside the grid they close:
``<|eol|>`` of row ``r`` at ``(r, W)``, ``<|eof|>`` of frame ``f`` at ``(H, W)`` of the finest
scale. Audio layouts (``CodecDepth``, ``Delay``, ``MultiRate``) have no grid: their tokens count
like text.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import ConfigError
from ..layout import CodecDepth, FrameRaster, FrameScale, Layout, MultiRate, NextScale, Raster


@dataclass(frozen=True)
class Body:
    """Template of one laid-out body of ``n`` tokens. Arrays are read-only."""

    levels: np.ndarray       # [n] expected level (or a structural marker < 0), the layout's plan
    groups: np.ndarray       # [n] the layout's groups, 0-based
    cells: np.ndarray        # [n, 4] (frame, scale, row, col); -1 everywhere for a layout without a grid
    mrope: np.ndarray        # [n, 3] int64 (t, h, w) relative to the segment's start position
    uni: np.ndarray          # [n, 3] float64 (t, h, w) relative to the segment's start position
    extent: tuple[int, int]  # positions the body takes in (mrope, uni): the next token's is start + extent
    parents: np.ndarray      # [n] body-relative index of the token this one refines; -1: the token before

    def __len__(self) -> int:
        return len(self.levels)


def _frozen(*arrays):
    for a in arrays:
        a.flags.writeable = False
    return arrays


def _scale_cells(scales) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scale, row, col) of every cell of a next-scale pyramid, coarse to fine, row-major."""
    scale, row, col = [], [], []
    for s, (h, w) in enumerate(scales):
        r, c = np.divmod(np.arange(h * w), w)
        scale.append(np.full(h * w, s))
        row.append(r)
        col.append(c)
    return np.concatenate(scale), np.concatenate(row), np.concatenate(col)


def _grid(layout: Layout) -> tuple[np.ndarray, tuple[tuple[int, int], ...], int]:
    """cells [n, 4] (frame, scale, row, col), the scales (h, w) coarse to fine, the frames."""
    if isinstance(layout, FrameRaster):   # Emu3: frames of one scale, rows ending in <|eol|>, <|eof|>
        H, W, eol, eof = layout.height, layout.width, int(layout.eol), int(layout.eof)
        frame, rest = np.divmod(np.arange(len(layout)), H * (W + eol) + eof)
        row, col = np.divmod(rest, W + eol)
        col = np.where(row == H, W, col)               # <|eof|>: one row below, one column right
        return np.stack([frame, np.zeros_like(row), row, col], 1), ((H, W),), layout.frames
    if isinstance(layout, Raster):
        H, W, L = layout.height, layout.width, layout.levels
        row = np.repeat(np.arange(H), W * L + layout.eol)
        col = np.tile(np.concatenate([np.repeat(np.arange(W), L), np.full(int(layout.eol), W)]), H)
        zero = np.zeros_like(row)
        return np.stack([zero, zero, row, col], 1), ((H, W),), 1
    scales = layout.scales
    scale, row, col = _scale_cells(scales)
    if isinstance(layout, NextScale):
        return np.stack([np.zeros_like(row), scale, row, col], 1), scales, 1
    H, W = scales[-1]
    if layout.eof:   # the frame's end marker sits one past the finest scale's last cell
        scale, row, col = np.append(scale, len(scales) - 1), np.append(row, H), np.append(col, W)
    F = layout.frames
    frame = np.repeat(np.arange(F), len(row))
    cells = np.stack([frame, np.tile(scale, F), np.tile(row, F), np.tile(col, F)], 1)
    return cells, scales, F


def _grid_positions(cells: np.ndarray, scales) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """M-RoPE: one grid per scale (t = frame), each placed after the previous one. Uni-RoPE: every
    scale in the finest scale's coordinates, a coarse cell at the centre of the fine cells it covers."""
    frame, scale, row, col = cells.T
    sizes = np.array(scales, dtype=np.float64)                       # [S, 2]
    extent = np.zeros(len(scales), dtype=np.int64)                   # positions each scale's grid spans
    np.maximum.at(extent, scale, np.maximum(frame, np.maximum(row, col)) + 1)
    offset = np.concatenate([[0], np.cumsum(extent)[:-1]])
    mrope = offset[scale][:, None] + np.stack([frame, row, col], 1)
    H, W = sizes[-1]
    h = (row + 0.5) * H / sizes[scale, 0] - 0.5
    w = (col + 0.5) * W / sizes[scale, 1] - 0.5
    uni = np.stack([frame.astype(np.float64), h, w], 1)
    return mrope, uni, (int(extent.sum()), int(np.floor(uni.max())) + 1)


def _refined_cell(row, col, src, dst):
    """Row/col in grid ``dst`` of the cell containing the centre of (row, col) of grid ``src``."""
    r = np.floor((row + 0.5) * dst[0] / src[0]).astype(np.int64)
    c = np.floor((col + 0.5) * dst[1] / src[1]).astype(np.int64)
    return r, c


def _grid_parents(layout: Layout, cells: np.ndarray, scales) -> np.ndarray:
    n = len(cells)
    parents = np.full(n, -1, dtype=np.int64)
    k = np.arange(n)
    frame, scale, row, col = cells.T
    if isinstance(layout, FrameRaster):   # group="row": the same column one row up (across frames)
        per_row = layout.width + int(layout.eol)
        return np.where(row > 0, k - per_row, np.where(frame > 0, k - per_row - int(layout.eof), -1))
    if isinstance(layout, Raster):
        W, L, eol = layout.width, layout.levels, int(layout.eol)
        level = np.where(col < W, k % (W * L + eol) % L, 0)
        if layout.group == "row":    # the same cell and level one row up
            return np.where(row > 0, k - (W * L + eol), -1)
        prev = row * W + col - 1      # the previous cell in raster order, same level
        pr, pc = np.divmod(np.maximum(prev, 0), W)
        return np.where(prev >= 0, pr * (W * L + eol) + pc * L + level, -1)
    sizes = np.array([h * w for h, w in scales])
    scale_start = np.concatenate([[0], np.cumsum(sizes)])
    frame_len = int(scale_start[-1]) + int(getattr(layout, "eof", False))
    in_grid = row < np.array(scales)[scale, 0]
    for s in range(len(scales)):
        here = in_grid & (scale == s)
        if s > 0:     # the cell of the next coarser scale, same frame
            r, c = _refined_cell(row[here], col[here], scales[s], scales[s - 1])
            parents[here] = frame[here] * frame_len + scale_start[s - 1] + r * scales[s - 1][1] + c
        else:         # the first scale of a frame refines the previous frame's finest scale
            later = here & (frame > 0)
            r, c = _refined_cell(row[later], col[later], scales[0], scales[-1])
            parents[later] = (frame[later] - 1) * frame_len + scale_start[-2] + r * scales[-1][1] + c
    return parents


def _audio(n: int, K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int], np.ndarray]:
    """``n`` tokens in groups of ``K`` (a frame's levels; a delay step; a coarse frame of codes at
    several rates), counted like text."""
    k = np.arange(n)
    cells = np.full((n, 4), -1, dtype=np.int64)
    mrope = np.repeat(k[:, None], 3, 1)
    parents = np.where(k >= K, k - K, -1)    # the same place one group earlier
    return cells, mrope, mrope.astype(np.float64), (n, n), parents


@lru_cache(maxsize=1024)
def body(layout: Layout) -> Body:
    """The template of a body laid out with ``layout`` (cached: a shape seen once costs nothing)."""
    levels, groups, _ = layout._plan
    if isinstance(layout, (Raster, NextScale, FrameScale, FrameRaster)):
        cells, scales, _ = _grid(layout)
        mrope, uni, extent = _grid_positions(cells, scales)
        parents = _grid_parents(layout, cells, scales)
    elif isinstance(layout, CodecDepth):     # Delay too
        cells, mrope, uni, extent, parents = _audio(len(layout), layout.levels)
    elif isinstance(layout, MultiRate):
        cells, mrope, uni, extent, parents = _audio(len(layout), sum(layout.rates))
    else:
        raise ConfigError(f"unitok.lm has no token metadata for the {type(layout).__name__} layout; add its "
                          f"cells and positions to unitok/lm/body.py")
    # a token alone in its group follows the plain next-token convention: it continues from the token
    # right before it (for example each <|eol|> and <|eof|>, and every token of a raster of single codes)
    alone = np.bincount(groups)[groups] == 1
    parents = np.where(alone, np.arange(len(levels)) - 1, parents)
    ok = parents < 0
    ok[~ok] = groups[parents[~ok]] < groups[~ok]
    assert ok.all(), f"{layout}: a parent is not in an earlier group"
    arrays = _frozen(np.asarray(cells, np.int64), np.asarray(mrope, np.int64), np.asarray(uni, np.float64),
                     np.asarray(parents, np.int64))
    return Body(levels, groups, *arrays[:3], extent, arrays[3])
