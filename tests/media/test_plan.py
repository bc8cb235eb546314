import json

import pytest

from workers.media.layout import Rect, grid_rects
from workers.media.plan import (
    MAX_INPUTS,
    STRIP_TILES,
    ProgressClock,
    RenderPlan,
    Tile,
    group_strips,
    plan_render,
    preview_spec,
    segment_bounds,
)
from workers.media.spec import SpecError, parse_spec


@pytest.mark.parametrize("frames,count", [(1, 1), (7, 3), (300, 1), (301, 4), (3600, 36),
                                          (10, 50)])
def test_segment_bounds_are_contiguous_frame_numbers(frames, count):
    bounds = segment_bounds(frames, count)
    assert bounds[0] == 0 and bounds[-1] == frames
    assert all(isinstance(b, int) for b in bounds)
    assert all(a < b for a, b in zip(bounds, bounds[1:], strict=False))
    assert len(bounds) == min(count, frames) + 1
    sizes = [b - a for a, b in zip(bounds, bounds[1:], strict=False)]
    assert max(sizes) - min(sizes) <= 1


def test_segment_bounds_move_to_nearby_scene_changes():
    assert segment_bounds(300, 3, [95, 170]) == [0, 95, 200, 300]  # 170 is too far from 200
    assert segment_bounds(300, 3, [1, 299]) == [0, 100, 200, 300]


def _tiles(n, w=1920, h=1080, start=0, end=300):
    return [Tile(i, r, start, end) for i, r in enumerate(grid_rects(n, w, h, gap=2))]


def _overlap(a: Rect, b: Rect) -> bool:
    return a.x < b.right and b.x < a.right and a.y < b.bottom and b.y < a.bottom


@pytest.mark.parametrize("n", [21, 100, 500, 1000])
def test_strips_cover_every_tile_once_without_overlap(n):
    tiles = _tiles(n)
    strips = group_strips(tiles)
    assert len(strips) <= MAX_INPUTS - 2
    assert sorted(i for s in strips for i in s.tiles) == list(range(n))
    for s in strips:
        assert len(s.tiles) <= max(STRIP_TILES, MAX_INPUTS)
        for i in s.tiles:
            r = tiles[i].rect
            assert s.rect.x <= r.x and r.right <= s.rect.right
            assert s.rect.y <= r.y and r.bottom <= s.rect.bottom
    for a in range(len(strips)):
        for b in range(a + 1, len(strips)):
            assert not _overlap(strips[a].rect, strips[b].rect)


def test_strips_keep_scenes_apart():
    tiles = _tiles(30, end=100) + _tiles(30, start=100, end=300)
    strips = group_strips(tiles)
    assert {(s.start, s.end) for s in strips} == {(0, 100), (100, 300)}
    for s in strips:
        assert {(tiles[i].start, tiles[i].end) for i in s.tiles} == {(s.start, s.end)}


def test_plan_lists_visible_clips_per_segment_and_round_trips(make_clip):
    spec = parse_spec({"version": 1, "canvas": {"width": 320, "height": 180, "fps": 10},
                       "clips": [{"id": "a", "path": make_clip(duration=2.0)},
                                 {"id": "b", "path": make_clip(duration=1.0, audio=False),
                                  "offset": -2.5},
                                 {"id": "c", "path": make_clip(duration=2.0), "offset": 1.25}]})
    plan = plan_render(spec, segment_seconds=1.0)
    assert plan.frames == 35 and plan.duration == 3.5 and plan.audio == "mix"
    assert [(s.start, s.end) for s in plan.segments] == [(0, 9), (9, 18), (18, 26), (26, 35)]
    shown = [sorted({t.clip for t in s.tiles}) for s in plan.segments]
    # c (0.75 s long on the timeline) ends in segment 0; a at 2 s; b starts at 2.5 s
    assert shown == [[0, 2], [0], [0, 1], [1]]
    assert [c.has_audio for c in plan.clips] == [True, False, True]
    again = RenderPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    assert plan_render(spec, segments=50).segments[-1].end == 35  # at most one per frame


def test_plan_rejects_unknown_version_and_missing_files(tmp_path):
    with pytest.raises(ValueError):
        RenderPlan.from_dict({"version": 99})
    spec = parse_spec({"version": 1, "clips": [{"id": "x", "path": str(tmp_path / "x.mp4")}]})
    with pytest.raises(SpecError):
        plan_render(spec)


def test_preview_spec_is_small_and_fast():
    spec = parse_spec({"version": 1, "canvas": {"width": 1920, "height": 1080},
                       "layout": {"gap": 8}, "clips": [{"id": "a", "path": "a.mp4"}]})
    small = preview_spec(spec)
    assert (small.canvas.width, small.canvas.height) == (640, 360)
    assert small.layout.gap == 2 and small.video.preset == "ultrafast"
    assert small.clips == spec.clips
    tiny = parse_spec({"version": 1, "canvas": {"width": 320, "height": 180},
                       "clips": [{"id": "a", "path": "a.mp4"}]})
    assert preview_spec(tiny).canvas == tiny.canvas  # never scaled up


def test_progress_clock_estimates_time_left():
    clock = ProgressClock(now=100.0)
    assert clock.update(0.0, now=101.0) == (0.0, None)
    percent, left = clock.update(0.25, now=110.0)
    assert percent == 25.0 and left == pytest.approx(30.0)
