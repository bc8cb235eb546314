"""Pure layout: N tiles + a canvas + options -> rectangles, and a spec -> scenes.

Tiles keep the clips' aspect ratio (16:9 by default), have even sizes and positions
(H.264 yuv420p needs even dimensions; even offsets keep chroma aligned), fit inside
the canvas without overlapping, and the grid is centred, its last row too.

Four layout types become a timeline of piecewise-constant scenes (see :func:`timeline`):

- ``grid``: every shown clip in one auto grid, for the whole mash-up;
- ``sections``: tiles grouped by part (parts in the order they first appear among the
  clips), each section a sub-grid under a caption band with the part's name; one tile
  size for all, the packing chosen to make it as large as possible;
- ``spotlight``: the clips featured at a time are large on top, the others in a grid
  below; the scene changes at every featured start and end;
- ``montage``: shots of ``shot_seconds``, each showing up to ``max_tiles`` performers,
  rotating through everyone (least recently shown first); with ``follow_audio`` the
  performers playing in that shot come first. A clip is never chosen for a shot that
  starts before its content does.

Everything here is pure except :func:`audio_activity` (and :func:`activity_map`), which
decode sound with ffmpeg for ``follow_audio``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_TILE = 16  # a layout whose tiles' long side is shorter than this is refused
SPOTLIGHT_SHARES = (0.75, 0.7, 0.65, 0.6, 0.55, 0.5, 0.45, 0.4, 0.35, 0.3)


FINAL_GAP = 4  # pixels between tiles in a final render
PREVIEW_GAP = 2  # ... and in a 640x360 preview


class LayoutError(ValueError):
    """The tiles do not fit the canvas (text for a person)."""


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
        raise LayoutError(f"{n} tiles do not fit on a {width}x{height} canvas with gap {gap}")
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
    """A text (a section's name, say) drawn as an image into ``rect``, never put into a
    filtergraph string."""

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
    """The scenes of ``spec`` (a RenderSpec) over ``duration`` seconds of mash-up time.

    Scenes are contiguous, cover [0, duration) and never hold two overlapping tiles.
    Placement ``clip`` indexes ``spec.clips``; hidden clips never get one. ``activity``
    (optional, montage with ``follow_audio``) maps a clip id to a per-second
    audio-activity array on the mash-up's timeline (:func:`audio_activity`)."""
    if not duration > 0:
        raise LayoutError(f"a timeline needs a positive duration, not {duration}")
    layout = spec.layout
    canvas = spec.canvas
    shown = [i for i, c in enumerate(spec.clips) if not getattr(c, "hidden", False)]
    if not shown:
        raise LayoutError("every clip is hidden")
    labels = bool(getattr(layout, "labels", False))
    named = {i for i in shown if spec.clips[i].name.strip()}

    def place(indices: Sequence[int], rects: Sequence[Rect]) -> tuple[Placement, ...]:
        return tuple(Placement(i, r, labels and i in named and label_box(r) is not None)
                     for i, r in zip(indices, rects, strict=True))

    size = (canvas.width, canvas.height)
    if layout.type == "grid":
        rects = grid_rects(len(shown), *size, gap=layout.gap)
        return [Scene(0.0, duration, place(shown, rects))]
    if layout.type == "sections":
        groups = part_groups(spec.clips, shown)
        boxes = section_rects([len(g) for _, g in groups], *size, gap=layout.gap)
        placements: list[Placement] = []
        captions: list[Caption] = []
        for (part, members), box in zip(groups, boxes, strict=True):
            placements += place(members, box.tiles)
            if part.strip():
                captions.append(Caption(part, box.caption))
        return [Scene(0.0, duration, tuple(placements), tuple(captions))]
    if layout.type == "spotlight":
        scenes = []
        for start, end, featured in spotlight_intervals(spec, duration):
            rest = [i for i in shown if i not in featured]
            big, small = spotlight_rects(len(featured), len(rest), *size, gap=layout.gap)
            scenes.append(Scene(start, end, place(featured, big) + place(rest, small)))
        return scenes
    if layout.type == "montage":
        scenes = []
        for start, end, chosen in montage_shots(spec, duration, activity):
            rects = grid_rects(len(chosen), *size, gap=layout.gap) if chosen else []
            scenes.append(Scene(start, end, place(chosen, rects)))
        return scenes
    raise LayoutError(f"layout {layout.type!r} is not known")


# --- labels --------------------------------------------------------------------------------------

def label_box(tile: Rect) -> Rect | None:
    """Where a tile's name label may go: a band along its bottom edge (the label image is
    drawn at the box's top-left, as wide as its text needs up to ``box.w``). None when the
    tile is too small for readable text."""
    if tile.h < 36 or tile.w < 64:
        return None
    height = max(12, min(40, _even_down(tile.h * 0.16)))
    margin = max(2, _even_down(tile.h * 0.04))
    return Rect(tile.x + margin, tile.bottom - margin - height, tile.w - 2 * margin, height)


def caption_height(canvas_height: int) -> int:
    """The height of a section's caption band on a canvas this tall."""
    return max(10, min(40, _even_down(canvas_height / 24)))


# --- sections ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SectionBox:
    caption: Rect  # the band above the section's tiles, as wide as the section
    tiles: tuple[Rect, ...]


def part_groups(clips: Sequence, shown: Sequence[int]) -> list[tuple[str, list[int]]]:
    """The shown clips grouped by part: parts in order of first appearance, clips in
    spec order within each part."""
    groups: dict[str, list[int]] = {}
    for i in shown:
        groups.setdefault(clips[i].part.strip(), []).append(i)
    return list(groups.items())


def section_rects(counts: Sequence[int], width: int, height: int, *,
                  tile_aspect: float = 16 / 9, gap: int = 0) -> list[SectionBox]:
    """One box per section (``counts[k]`` tiles each), all tiles one size.

    Sections are packed in order onto shelves (rows of sections) of ``cols`` tile
    columns; every section takes ``min(count, cols)`` columns. The ``cols`` giving the
    largest tile wins, so a big part spans the width and small parts share a shelf.
    """
    if not counts or min(counts) < 1:
        raise LayoutError(f"every section needs at least one tile, not {list(counts)}")
    _check(sum(counts), width, height, tile_aspect, gap)
    cap = caption_height(height)
    best: tuple[int, int, list[list[int]]] | None = None  # (w, cols, shelves)
    for cols in range(1, max(counts) + 1 if len(counts) == 1 else sum(counts) + 1):
        room_w = (width - (cols - 1) * gap) / cols
        if room_w < 2 or (best is not None and _even_down(room_w) <= best[0]):
            break  # wider grids only make tiles narrower
        shelves = _shelves(counts, cols)
        rows = sum(max(-(-counts[k] // min(counts[k], cols)) for k in shelf)
                   for shelf in shelves)
        room_h = (height - len(shelves) * cap - (rows - 1) * gap) / rows
        if room_h < 2:
            continue
        w = _even_down(min(room_w, room_h * tile_aspect))
        h = _even_down(w / tile_aspect)
        if w < 2 or h < 2:
            continue
        if best is None or w > best[0]:
            best = (w, cols, shelves)
    if best is None:
        raise LayoutError(f"{len(counts)} sections of {sum(counts)} tiles do not fit on a "
                          f"{width}x{height} canvas with gap {gap}")
    w, cols, shelves = best
    h = _even_down(w / tile_aspect)
    shelf_rows = [max(-(-counts[k] // min(counts[k], cols)) for k in shelf) for shelf in shelves]
    total_h = len(shelves) * cap + sum(shelf_rows) * h + (sum(shelf_rows) - 1) * gap
    y = (height - total_h) / 2
    boxes: dict[int, SectionBox] = {}
    for shelf, rows in zip(shelves, shelf_rows, strict=True):
        widths = [min(counts[k], cols) * (w + gap) - gap for k in shelf]
        x = (width - (sum(widths) + (len(shelf) - 1) * gap)) / 2
        for k, block_w in zip(shelf, widths, strict=True):
            n, c = counts[k], min(counts[k], cols)
            caption = Rect(_even_down(x), _even_down(y), _even_down(block_w), cap)
            tiles = []
            for row in range(-(-n // c)):
                in_row = min(c, n - row * c)
                left = x + (block_w - (in_row * (w + gap) - gap)) / 2
                top = _even_down(y + cap + row * (h + gap))
                tiles.extend(Rect(_even_down(left + col * (w + gap)), top, w, h)
                             for col in range(in_row))
            boxes[k] = SectionBox(caption, tuple(tiles))
            x += block_w + gap
        y += cap + rows * (h + gap)
    return [boxes[k] for k in range(len(counts))]


def _shelves(counts: Sequence[int], cols: int) -> list[list[int]]:
    """Sections in order onto shelves of ``cols`` tile columns (first fit, no reordering)."""
    shelves: list[list[int]] = []
    used = cols
    for k, n in enumerate(counts):
        need = min(n, cols)
        if used + need > cols:
            shelves.append([])
            used = 0
        shelves[-1].append(k)
        used += need
    return shelves


# --- spotlight -----------------------------------------------------------------------------------

def spotlight_rects(n_featured: int, n_rest: int, width: int, height: int, *,
                    tile_aspect: float = 16 / 9, gap: int = 0) -> tuple[list[Rect], list[Rect]]:
    """(featured rects, rest rects): the featured clips in a grid on top taking the
    largest share of the height (75 % down to 30 %) that still leaves the others tiles
    of at least :data:`MIN_TILE` pixels, the others in a grid below, their tiles at most
    half as wide as a featured one; centred together."""
    if n_featured < 0 or n_rest < 0 or n_featured + n_rest < 1:
        raise LayoutError(f"a spotlight needs tiles, not {n_featured} + {n_rest}")
    if n_rest == 0:
        return grid_rects(n_featured, width, height, tile_aspect=tile_aspect, gap=gap), []
    if n_featured == 0:
        return [], grid_rects(n_rest, width, height, tile_aspect=tile_aspect, gap=gap)
    step = gap + gap % 2  # keeps the rest's rows on even positions
    for share in SPOTLIGHT_SHARES:
        try:
            big = grid_rects(n_featured, width, _even_down(height * share),
                             tile_aspect=tile_aspect, gap=gap)
            big_top = min(r.y for r in big)
            big_h = max(r.bottom for r in big) - big_top
            small = _grid_at_most(n_rest, width, height - big_h - step, big[0].w // 2,
                                  tile_aspect, gap)
        except LayoutError:
            continue
        if max(small[0].w, small[0].h) < MIN_TILE:
            continue
        small_top = min(r.y for r in small)
        small_h = max(r.bottom for r in small) - small_top
        top = _even_down((height - big_h - step - small_h) / 2)
        big = [Rect(r.x, r.y - big_top + top, r.w, r.h) for r in big]
        below = top + big_h + step
        return big, [Rect(r.x, r.y - small_top + below, r.w, r.h) for r in small]
    raise LayoutError(f"{n_featured} featured and {n_rest} other tiles do not fit on a "
                      f"{width}x{height} canvas with gap {gap}")


def _grid_at_most(n: int, width: int, height: int, max_w: int, tile_aspect: float,
                  gap: int) -> list[Rect]:
    """A centred grid whose tiles are at most ``max_w`` wide (the grid of a smaller
    region, when the whole one would make them wider)."""
    rects = grid_rects(n, width, height, tile_aspect=tile_aspect, gap=gap)
    scale = 1.0
    while rects[0].w > max(max_w, 2):
        scale *= max(0.5, min(0.98, max_w / rects[0].w))
        w, h = _even_down(width * scale), _even_down(height * scale)
        rects = grid_rects(n, w, h, tile_aspect=tile_aspect, gap=gap)
        dx, dy = _even_down((width - w) / 2), _even_down((height - h) / 2)
        rects = [Rect(r.x + dx, r.y + dy, r.w, r.h) for r in rects]
    return rects


def spotlight_intervals(spec, duration: float) -> list[tuple[float, float, list[int]]]:
    """(start, end, featured clip indices) covering [0, duration), merged where equal."""
    index = {c.id: i for i, c in enumerate(spec.clips)}
    featured = [(f.start, f.end, index[f.clip]) for f in spec.layout.featured
                if f.clip in index and not getattr(spec.clips[index[f.clip]], "hidden", False)]
    cuts = sorted({0.0, duration, *(t for s, e, _ in featured for t in (s, e)
                                    if 0.0 < t < duration)})
    out: list[tuple[float, float, list[int]]] = []
    for start, end in zip(cuts, cuts[1:], strict=False):
        mid = (start + end) / 2
        chosen = sorted({i for s, e, i in featured if s <= mid < e})
        if out and out[-1][2] == chosen:
            out[-1] = (out[-1][0], end, chosen)
        else:
            out.append((start, end, chosen))
    return out


# --- montage -------------------------------------------------------------------------------------

def montage_shots(spec, duration: float,
                  activity: dict | None = None) -> list[tuple[float, float, list[int]]]:
    """(start, end, chosen clip indices) per shot. A last shot shorter than half a shot
    joins the one before. Choice: among clips whose content has started, those not shown
    for longest first (spec order breaks ties), so everyone appears once there are enough
    shots; with ``follow_audio`` and ``activity``, clips playing in the shot (mean activity
    at least half the most active one's, each clip's activity scaled to its own peak so a
    quiet microphone is not penalised) come before the rest."""
    layout = spec.layout
    shot = layout.shot_seconds
    cuts = [k * shot for k in range(int(math.ceil(duration / shot - 1e-9)))] + [duration]
    if len(cuts) > 2 and cuts[-1] - cuts[-2] < shot / 2:
        del cuts[-2]
    shown = [i for i, c in enumerate(spec.clips) if not getattr(c, "hidden", False)]
    starts = {i: max(0.0, spec.clips[i].guide_time(0.0)) for i in shown}
    levels: dict[int, np.ndarray] = {}
    if layout.follow_audio and activity:
        for i in shown:
            values = activity.get(spec.clips[i].id)
            if values is not None and len(values):
                arr = np.nan_to_num(np.asarray(values, dtype=float))
                peak = float(arr.max())
                levels[i] = arr / peak if peak > 0 else np.zeros_like(arr)
    last_shown = {i: -1 for i in shown}
    order = {i: k for k, i in enumerate(shown)}
    shots: list[tuple[float, float, list[int]]] = []
    for number, (start, end) in enumerate(zip(cuts, cuts[1:], strict=False)):
        eligible = [i for i in shown if starts[i] <= start + 1e-6]
        level = {i: _mean_level(levels[i], start, end) for i in eligible if i in levels}
        loudest = max(level.values(), default=0.0)
        playing = {i for i, v in level.items() if loudest > 0 and v >= loudest / 2}
        chosen = sorted(heapq.nsmallest(
            layout.max_tiles, eligible,
            key=lambda i: (i not in playing, last_shown[i], -level.get(i, 0.0), order[i])))
        for i in chosen:
            last_shown[i] = number
        shots.append((start, end, chosen))
    return shots


def _mean_level(values: np.ndarray, start: float, end: float) -> float:
    first, last = int(math.floor(start)), max(int(math.ceil(end)), int(math.floor(start)) + 1)
    part = values[first:last]
    return float(part.mean()) if part.size else 0.0


# --- checks and audio activity -------------------------------------------------------------------

def check_layout(spec) -> None:
    """LayoutError when some scene of ``spec`` cannot give every tile :data:`MIN_TILE`
    pixels (on its long side). Needs no duration: every distinct arrangement is tried."""
    layout = spec.layout
    size = (spec.canvas.width, spec.canvas.height)
    shown = [i for i, c in enumerate(spec.clips) if not getattr(c, "hidden", False)]
    n = len(shown)
    arrangements: list[list[Rect]] = []
    if layout.type == "grid":
        arrangements.append(grid_rects(n, *size, gap=layout.gap))
    elif layout.type == "sections":
        groups = part_groups(spec.clips, shown)
        boxes = section_rects([len(g) for _, g in groups], *size, gap=layout.gap)
        arrangements.append([r for b in boxes for r in b.tiles])
    elif layout.type == "spotlight":
        horizon = max([f.end for f in layout.featured], default=0.0) + 1.0
        sizes = {len(f) for _, _, f in spotlight_intervals(spec, horizon)}
        for k in sizes:
            big, small = spotlight_rects(k, n - k, *size, gap=layout.gap)
            arrangements.append(big + small)
    elif layout.type == "montage":
        arrangements.append(grid_rects(min(layout.max_tiles, n), *size, gap=layout.gap))
    for rects in arrangements:
        smallest = min(rects, key=lambda r: max(r.w, r.h))
        if max(smallest.w, smallest.h) < MIN_TILE:
            raise LayoutError(
                f"{layout.type} layout of {n} clips on a {size[0]}x{size[1]} canvas makes "
                f"{smallest.w}x{smallest.h} tiles, smaller than {MIN_TILE} px: use a larger "
                f"canvas, a smaller gap or fewer clips")


def audio_activity(path: str, offset: float, duration: float, *, drift_ppm: float = 0.0,
                   sample_rate: int = 8000, timeout: float = 300) -> np.ndarray:
    """Per-second RMS of a clip's sound on the mash-up's timeline: element s covers
    guide seconds [s, s+1) (clip time ``offset + t * (1 + drift_ppm / 1e6)``); zero
    where the clip has no sound, and everywhere when it has no sound track."""
    from .audio import NoAudio, decode_audio  # the only part of this module that runs ffmpeg

    seconds = int(math.ceil(duration))
    out = np.zeros(seconds, dtype=np.float32)
    speed = 1.0 + drift_ppm / 1e6
    try:
        samples = decode_audio(path, sample_rate=sample_rate,
                               max_seconds=max(0.0, offset + (seconds + 1) * speed),
                               timeout=timeout)
    except NoAudio:
        return out
    for s in range(seconds):
        a = int(round((offset + s * speed) * sample_rate))
        b = int(round((offset + (s + 1) * speed) * sample_rate))
        part = samples[max(0, a):max(0, b)]
        if part.size:
            out[s] = float(np.sqrt(np.mean(np.square(part, dtype=np.float64))))
    return out


def activity_map(spec, duration: float) -> dict[str, np.ndarray]:
    """:func:`audio_activity` of every shown clip with sound, by clip id (for montage with
    ``follow_audio``; ffmpeg decodes each clip once)."""
    return {c.id: audio_activity(c.path, c.offset, duration,
                                 drift_ppm=getattr(c, "drift_ppm", 0.0))
            for c in spec.clips if c.has_audio and not getattr(c, "hidden", False)}
