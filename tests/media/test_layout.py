import itertools

import pytest

from workers.media.layout import Rect, _tile_size, grid_rects, grid_shape

CANVASES = [(1920, 1080), (1280, 720), (640, 360), (720, 1280), (1080, 1080), (3840, 2160)]


def _check_layout(rects: list[Rect], n: int, width: int, height: int, gap: int,
                  aspect: float) -> None:
    assert len(rects) == n
    w, h = rects[0].w, rects[0].h
    for r in rects:
        assert (r.w, r.h) == (w, h), "all tiles have one size"
        assert r.w % 2 == 0 and r.h % 2 == 0 and r.x % 2 == 0 and r.y % 2 == 0
        assert r.x >= 0 and r.y >= 0 and r.right <= width and r.bottom <= height
    # aspect ratio kept to within the 2-pixel rounding of the height
    assert abs(w / aspect - h) <= 2
    rows: dict[int, list[Rect]] = {}
    for r in rects:
        rows.setdefault(r.y, []).append(r)
    ys = sorted(rows)
    # rows do not overlap and tiles within a row do not overlap (so no two tiles do)
    for upper, lower in itertools.pairwise(ys):
        assert upper + h + gap - 1 <= lower
    for row in rows.values():
        xs = sorted(r.x for r in row)
        for left, right in itertools.pairwise(xs):
            assert left + w + gap - 1 <= right
    # reading order: row by row, left to right
    assert rects == sorted(rects, key=lambda r: (r.y, r.x))
    # the grid is centred, and so is each row (the last, partial one included)
    top, bottom = rects[0].y, rects[-1].bottom
    assert abs(top - (height - bottom)) <= 2
    for row in rows.values():
        left, right = row[0].x, row[-1].right
        assert abs(left - (width - right)) <= 3


@pytest.mark.parametrize("width, height", CANVASES)
@pytest.mark.parametrize("gap", [0, 4, 3])
def test_grid_invariants_for_1_to_500_tiles(width, height, gap):
    aspect = 16 / 9
    for n in range(1, 501):
        _check_layout(grid_rects(n, width, height, gap=gap), n, width, height, gap, aspect)


@pytest.mark.parametrize("aspect", [9 / 16, 4 / 3, 1.0])
def test_other_tile_aspects(aspect):
    for n in range(1, 120):
        rects = grid_rects(n, 1280, 720, tile_aspect=aspect, gap=2)
        _check_layout(rects, n, 1280, 720, 2, aspect)


def test_grid_shape_maximises_the_tile_area():
    for n in range(1, 200):
        rows, cols = grid_shape(n, 1280, 720, gap=4)
        assert rows * cols >= n and (rows - 1) * cols < n
        best = _tile_size(rows, cols, 1280, 720, 16 / 9, 4)
        for c in range(1, n + 1):
            r = -(-n // c)
            other = _tile_size(r, c, 1280, 720, 16 / 9, 4)
            assert best[0] * best[1] >= other[0] * other[1]


@pytest.mark.parametrize("n, canvas, shape", [
    (1, (1280, 720), (1, 1)),
    (2, (1280, 720), (1, 2)),
    (2, (720, 1280), (2, 1)),
    (3, (1280, 720), (2, 2)),
    (4, (1280, 720), (2, 2)),
    (9, (1280, 720), (3, 3)),
    (10, (1280, 720), (3, 4)),
    (5, (720, 1280), (5, 1)),
    (16, (1920, 1080), (4, 4)),
])
def test_known_shapes(n, canvas, shape):
    assert grid_shape(n, *canvas) == shape


def test_one_tile_fills_a_matching_canvas():
    assert grid_rects(1, 1280, 720) == [Rect(0, 0, 1280, 720)]


def test_partial_last_row_is_centred():
    rects = grid_rects(3, 1280, 720)
    assert rects[:2] == [Rect(0, 0, 640, 360), Rect(640, 0, 640, 360)]
    assert rects[2] == Rect(320, 360, 640, 360)


def test_gap_separates_tiles():
    a, b = grid_rects(2, 1280, 720, gap=8)
    assert b.x - a.right >= 8


@pytest.mark.parametrize("args", [(0, 1280, 720), (5, 1, 720), (100000, 64, 36)])
def test_impossible_layouts_raise(args):
    with pytest.raises(ValueError):
        grid_rects(*args)


def test_negative_gap_raises():
    with pytest.raises(ValueError):
        grid_rects(4, 1280, 720, gap=-2)


# --- timelines: every layout type -------------------------------------------------------------

import math  # noqa: E402

import numpy as np  # noqa: E402

from workers.media.layout import (  # noqa: E402
    MIN_TILE,
    LayoutError,
    Scene,
    check_layout,
    label_box,
    montage_shots,
    section_rects,
    spotlight_rects,
    timeline,
)
from workers.media.spec import (  # noqa: E402
    Canvas,
    Featured,
    LayoutSpec,
    RenderSpec,
    SpecClip,
    parse_spec,
)

TIMELINE_CANVASES = [(1920, 1080), (1280, 720), (720, 1280)]
# every small N (where layouts change shape most), then a stride up to 500
SOME_N = [*range(1, 64), *range(64, 500, 9), 500]


def _spec(n: int, layout: dict, *, width: int = 1280, height: int = 720, parts: int = 1,
          hidden=(), offsets=None, names: bool = True) -> RenderSpec:
    """A spec built directly (parse_spec is tested in test_spec; it would dominate here)."""
    clips = tuple(SpecClip(f"c{i}", f"{i}.mp4", offset=(offsets or {}).get(i, 0.0),
                           part=f"part {i % parts}", name=f"Singer {i}" if names else "",
                           hidden=i in hidden) for i in range(n))
    featured = tuple(Featured(**f) for f in layout.get("featured", ()))
    spec = RenderSpec(1, Canvas(width, height), LayoutSpec(**{**layout, "featured": featured}),
                      clips=clips)
    check_layout(spec)
    return spec


def _no_overlap(rects: list[Rect]) -> None:
    box = np.array([(r.x, r.y, r.right, r.bottom) for r in rects]).reshape(-1, 4)
    x, y, right, bottom = box.T
    hit = ((x[:, None] < right[None, :]) & (x[None, :] < right[:, None])
           & (y[:, None] < bottom[None, :]) & (y[None, :] < bottom[:, None]))
    np.fill_diagonal(hit, False)
    assert not hit.any(), f"overlap: {[rects[i] for i in np.argwhere(hit)[0]]}"


def _check_scenes(scenes: list[Scene], spec, duration: float, aspect: float = 16 / 9) -> None:
    width, height = spec.canvas.width, spec.canvas.height
    assert scenes[0].start == 0.0 and scenes[-1].end == duration
    for a, b in itertools.pairwise(scenes):
        assert a.end == b.start
    for scene in scenes:
        assert scene.start < scene.end
        clips = [p.clip for p in scene.placements]
        assert len(clips) == len(set(clips)), "a clip appears once per scene"
        for p in scene.placements:
            r = p.rect
            assert 0 <= p.clip < len(spec.clips) and not spec.clips[p.clip].hidden
            assert r.w % 2 == 0 and r.h % 2 == 0 and r.x % 2 == 0 and r.y % 2 == 0
            assert r.x >= 0 and r.y >= 0 and r.right <= width and r.bottom <= height
            assert abs(r.w / aspect - r.h) < 2, "aspect kept within the rounding"
            assert max(r.w, r.h) >= MIN_TILE
            if p.label:
                box = label_box(r)
                assert box is not None and spec.clips[p.clip].name
                assert r.x <= box.x and box.right <= r.right and box.bottom <= r.bottom
        for c in scene.captions:
            r = c.rect
            assert r.x >= 0 and r.y >= 0 and r.right <= width and r.bottom <= height
            assert r.w % 2 == 0 and r.h % 2 == 0 and r.x % 2 == 0 and r.y % 2 == 0
        _no_overlap([p.rect for p in scene.placements] + [c.rect for c in scene.captions])


def test_grid_timeline_skips_hidden_clips_and_labels_named_tiles():
    spec = _spec(5, {"type": "grid", "labels": True}, hidden={1})
    scenes = timeline(spec, 10.0)
    assert len(scenes) == 1
    assert [p.clip for p in scenes[0].placements] == [0, 2, 3, 4]
    assert all(p.label for p in scenes[0].placements)
    _check_scenes(scenes, spec, 10.0)
    unnamed = _spec(3, {"type": "grid", "labels": True}, names=False)
    assert not any(p.label for p in timeline(unnamed, 1.0)[0].placements)
    assert not any(p.label for p in timeline(_spec(3, {"type": "grid"}), 1.0)[0].placements)


@pytest.mark.parametrize("width, height", TIMELINE_CANVASES)
@pytest.mark.parametrize("parts", [1, 3, 7])
def test_sections_for_1_to_500_tiles(width, height, parts):
    for n in range(1, 501) if (parts, width) == (3, 1280) else SOME_N:
        spec = _spec(n, {"type": "sections", "gap": 4}, width=width, height=height,
                     parts=parts)
        scenes = timeline(spec, 3.0)
        _check_scenes(scenes, spec, 3.0)
        scene = scenes[0]
        assert sorted(p.clip for p in scene.placements) == list(range(n))
        assert [c.text for c in scene.captions] == [f"part {k}" for k in range(min(n, parts))]
        sizes = {(p.rect.w, p.rect.h) for p in scene.placements}
        assert len(sizes) == 1, "one tile size for every section"
        for caption in scene.captions:  # each caption sits right above its part's tiles
            tiles = [p.rect for p in scene.placements
                     if spec.clips[p.clip].part == caption.text]
            assert min(t.y for t in tiles) == caption.rect.bottom
            assert caption.rect.x <= min(t.x for t in tiles)
            assert max(t.right for t in tiles) <= caption.rect.right + 2


def test_sections_share_shelves_and_beat_a_stack_of_bands():
    boxes = section_rects([6, 2, 2, 2], 1280, 720, gap=4)
    stacked = 1280 * 720  # a band per part with one row of at most 6 tiles
    band_h = (720 - 4 * 30 - 3 * 4) / 4
    stacked = min((1280 - 5 * 4) / 6, band_h * 16 / 9)
    assert boxes[0].tiles[0].w > stacked
    assert len({b.caption.y for b in boxes}) < 4, "small parts share a shelf"


def test_sections_keep_part_order_of_first_appearance():
    spec = parse_spec({"version": 1, "layout": {"type": "sections"}, "clips": [
        {"id": "a", "path": "a", "part": "tenor"}, {"id": "b", "path": "b", "part": "alto"},
        {"id": "c", "path": "c", "part": "tenor"}, {"id": "d", "path": "d", "part": ""}]})
    scene = timeline(spec, 1.0)[0]
    assert [c.text for c in scene.captions] == ["tenor", "alto"]  # no caption without a part
    assert [p.clip for p in scene.placements] == [0, 2, 1, 3]


@pytest.mark.parametrize("width, height", TIMELINE_CANVASES)
def test_spotlight_for_1_to_500_tiles(width, height):
    for n in SOME_N:
        featured = [{"clip": "c0", "start": 0, "end": 2}]
        if n > 2:
            featured += [{"clip": "c1", "start": 1, "end": 3}, {"clip": "c2", "start": 1,
                                                                "end": 3}]
        spec = _spec(n, {"type": "spotlight", "gap": 4, "featured": featured,
                         "labels": True}, width=width, height=height)
        scenes = timeline(spec, 4.0)
        _check_scenes(scenes, spec, 4.0)
        expected = [0.0, 1.0, 2.0, 3.0] if n > 2 else [0.0, 2.0]
        assert [s.start for s in scenes] == expected
        for scene in scenes:
            assert sorted(p.clip for p in scene.placements) == list(range(n))
        big = {p.clip: p.rect for p in scenes[1].placements}
        if n > 1:
            others = [r for c, r in big.items() if c not in (0, 1, 2)]
            assert all(big[0].w >= 2 * r.w for r in others), "the featured tile is larger"


def test_spotlight_puts_the_featured_clip_on_top():
    big, small = spotlight_rects(1, 4, 1280, 720, gap=4)
    assert big[0].w >= 900 and all(r.y >= big[0].bottom for r in small)
    assert spotlight_rects(2, 0, 1280, 720)[1] == []


def test_spotlight_scenes_merge_and_clip_to_the_duration():
    spec = _spec(4, {"type": "spotlight", "featured": [
        {"clip": "c1", "start": 0, "end": 2}, {"clip": "c1", "start": 2, "end": 3},
        {"clip": "c2", "start": 5, "end": 60}]})
    scenes = timeline(spec, 6.0)
    assert [(s.start, s.end) for s in scenes] == [(0.0, 3.0), (3.0, 5.0), (5.0, 6.0)]
    assert scenes[1].placements == timeline(_spec(4, {"type": "grid"}), 1.0)[0].placements


@pytest.mark.parametrize("width, height", TIMELINE_CANVASES)
def test_montage_for_1_to_500_clips_shows_everyone(width, height):
    for n in SOME_N:
        spec = _spec(n, {"type": "montage", "shot_seconds": 1.5, "max_tiles": 4, "gap": 2},
                     width=width, height=height)
        duration = 1.5 * math.ceil(n / 4)
        scenes = timeline(spec, duration)
        _check_scenes(scenes, spec, duration)
        assert all(len(s.placements) == min(4, n) for s in scenes)
        seen = {p.clip for s in scenes for p in s.placements}
        assert seen == set(range(n))


def test_montage_shots_and_a_short_last_shot():
    spec = _spec(10, {"type": "montage", "shot_seconds": 4})
    scenes = timeline(spec, 13.0)
    assert [(s.start, s.end) for s in scenes] == [(0, 4), (4, 8), (8, 13.0)]
    assert [p.clip for p in scenes[0].placements] == [0, 1, 2, 3]
    assert [p.clip for p in scenes[1].placements] == [4, 5, 6, 7]
    assert [p.clip for p in scenes[2].placements] == [0, 1, 8, 9]
    assert [(s.start, s.end) for s in timeline(spec, 14.5)][-1] == (12.0, 14.5)
    assert [(s.start, s.end) for s in timeline(spec, 2.0)] == [(0.0, 2.0)]


def test_montage_never_shows_a_clip_before_its_content():
    spec = _spec(3, {"type": "montage", "shot_seconds": 2, "max_tiles": 2},
                 offsets={0: -3.0, 1: -0.5})
    shots = montage_shots(spec, 8.0)
    assert shots[0] == (0.0, 2.0, [2])
    assert 0 not in shots[1][2] and 0 in shots[2][2]
    scenes = timeline(_spec(1, {"type": "montage"}, offsets={0: -3.0}), 8.0)
    assert scenes[0].placements == () and len(scenes[1].placements) == 1


def test_montage_follows_who_is_playing():
    spec = _spec(6, {"type": "montage", "shot_seconds": 2, "max_tiles": 2,
                     "follow_audio": True})
    loud = np.ones(8)
    silent = np.zeros(8)
    late = np.r_[np.zeros(4), np.full(4, 0.01)]  # a quiet microphone: its own peak counts
    activity = {"c0": silent, "c1": loud, "c2": silent, "c3": late, "c4": loud * 0.2,
                "c5": silent}
    shots = montage_shots(spec, 8.0, activity)
    assert shots[0][2] == [1, 4]
    assert shots[2][2] == [1, 3] or shots[2][2] == [3, 4]
    assert all(1 in chosen or 3 in chosen for _, _, chosen in shots)
    without = montage_shots(spec, 8.0)
    assert without[0][2] == [0, 1] and without[1][2] == [2, 3]


def test_label_box_sits_inside_the_tile_bottom():
    tile = Rect(100, 200, 320, 180)
    box = label_box(tile)
    assert box is not None
    assert box.x > tile.x and box.right < tile.right and box.bottom < tile.bottom
    assert box.y > tile.y + tile.h // 2
    assert all(v % 2 == 0 for v in (box.x, box.y, box.w, box.h))
    assert label_box(Rect(0, 0, 48, 26)) is None


def test_check_layout_refuses_tiny_tiles():
    spec = _spec(4, {"type": "grid"}, width=160, height=90)
    check_layout(spec)
    tiny = parse_spec({"version": 1, "canvas": {"width": 64, "height": 36},
                       "layout": {"type": "grid", "gap": 0},
                       "clips": [{"id": "a", "path": "a"}]})
    check_layout(tiny)
    with pytest.raises(LayoutError):
        check_layout(tiny.__class__(**{**tiny.__dict__, "clips": tiny.clips * 40}))


def test_timeline_needs_a_duration():
    with pytest.raises(ValueError):
        timeline(_spec(2, {"type": "grid"}), 0.0)
