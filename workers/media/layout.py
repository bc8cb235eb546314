"""Pure layout: N tiles + a canvas + options -> rectangles.

Tiles keep the clips' aspect ratio (16:9 by default), have even sizes and positions
(H.264 yuv420p needs even dimensions; even offsets keep chroma aligned), fit inside
the canvas without overlapping, and the grid is centred, its last row too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        return self.x + self.w

    @property
    def bottom(self) -> int:
        return self.y + self.h


def _even_down(value: float) -> int:
    return int(math.floor(value / 2)) * 2


def _tile_size(rows: int, cols: int, width: int, height: int, tile_aspect: float,
               gap: int) -> tuple[int, int]:
    """The largest even tile of ``tile_aspect`` for a rows×cols grid (0×0 if none fits)."""
    room_w = (width - (cols - 1) * gap) / cols
    room_h = (height - (rows - 1) * gap) / rows
    if room_w < 2 or room_h < 2:
        return 0, 0
    w = _even_down(min(room_w, room_h * tile_aspect))
    h = _even_down(w / tile_aspect)
    return (w, h) if w >= 2 and h >= 2 else (0, 0)


def _check(n: int, width: int, height: int, tile_aspect: float, gap: int) -> None:
    if n < 1:
        raise ValueError(f"need at least one tile, not {n}")
    if width < 2 or height < 2:
        raise ValueError(f"canvas {width}x{height} is too small")
    if not (tile_aspect > 0 and math.isfinite(tile_aspect)):
        raise ValueError(f"tile aspect must be a positive number, not {tile_aspect}")
    if gap < 0:
        raise ValueError(f"gap must not be negative, not {gap}")


def grid_shape(n: int, width: int, height: int, tile_aspect: float = 16 / 9,
               gap: int = 0) -> tuple[int, int]:
    """(rows, cols) giving ``n`` tiles the largest area on the canvas.

    Ties go to the grid with fewer empty cells, then to fewer rows. Raises ValueError
    when even the best grid leaves tiles smaller than 2×2 pixels.
    """
    _check(n, width, height, tile_aspect, gap)
    best: tuple[tuple[int, int, int], tuple[int, int]] | None = None
    for cols in range(1, n + 1):
        rows = math.ceil(n / cols)
        if cols > 1 and math.ceil(n / (cols - 1)) == rows:
            continue  # same rows with fewer columns is never worse
        w, h = _tile_size(rows, cols, width, height, tile_aspect, gap)
        if w == 0:
            continue
        score = (w * h, -(rows * cols - n), -rows)
        if best is None or score > best[0]:
            best = (score, (rows, cols))
    if best is None:
        raise ValueError(f"{n} tiles do not fit on a {width}x{height} canvas with gap {gap}")
    return best[1]


def grid_rects(n: int, width: int, height: int, *, tile_aspect: float = 16 / 9,
               gap: int = 0) -> list[Rect]:
    """Rectangles for ``n`` tiles in reading order (row by row, left to right)."""
    rows, cols = grid_shape(n, width, height, tile_aspect, gap)
    w, h = _tile_size(rows, cols, width, height, tile_aspect, gap)
    grid_h = rows * h + (rows - 1) * gap
    top = (height - grid_h) / 2
    rects: list[Rect] = []
    for row in range(rows):
        in_row = min(cols, n - row * cols)
        row_w = in_row * w + (in_row - 1) * gap
        left = (width - row_w) / 2
        # flooring each position to even never makes neighbours overlap: the step is
        # w + gap with w even, so floored steps are at least w
        y = _even_down(top + row * (h + gap))
        rects.extend(Rect(_even_down(left + col * (w + gap)), y, w, h) for col in range(in_row))
    return rects


# --- the timeline: layouts as piecewise-constant scenes ---------------------------
# Every layout type (grid, sections, spotlight, montage) becomes a list of scenes:
# within a scene nothing moves, so an engine draws each scene with a fixed
# filtergraph and a segment planner may cut the render at scene boundaries.


@dataclass(frozen=True)
class Placement:
    """Clip ``clip`` (an index into ``spec.clips``) drawn into ``rect``."""

    clip: int
    rect: Rect
    label: bool = False  # draw the clip's name label inside the tile


@dataclass(frozen=True)
class Caption:
    """A text (a section's name, say) drawn as an image into ``rect``; never a filtergraph string."""

    text: str
    rect: Rect


@dataclass(frozen=True)
class Scene:
    start: float  # seconds on the mash-up's timeline (0 = the guide's t=0)
    end: float
    placements: tuple[Placement, ...]
    captions: tuple[Caption, ...] = ()


def grid_timeline(n: int, duration: float, width: int, height: int, *,
                  tile_aspect: float = 16 / 9, gap: int = 0, labels: bool = False) -> list[Scene]:
    """The auto grid: one scene for the whole duration."""
    rects = grid_rects(n, width, height, tile_aspect=tile_aspect, gap=gap)
    return [Scene(0.0, duration, tuple(Placement(i, r, labels) for i, r in enumerate(rects)))]


def timeline(spec, duration: float, activity: dict | None = None) -> list[Scene]:
    """The scenes of ``spec`` (a RenderSpec) over ``duration`` seconds.

    ``activity`` (optional) maps a clip id to a per-second audio-activity array,
    for layouts that follow who is playing."""
    canvas = spec.canvas
    if spec.layout.type == "grid":
        return grid_timeline(len(spec.clips), duration, canvas.width, canvas.height,
                             gap=spec.layout.gap,
                             labels=bool(getattr(spec.layout, "labels", False)))
    raise ValueError(f"layout {spec.layout.type!r} has no timeline yet")
