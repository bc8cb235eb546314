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
    poster_frame,
    preview_spec,
    program_bounds,
    segment_bounds,
    tile_map,
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
    # c (0.75 s long on the timeline) ends in segment 0; a at 2 s; b starts at 2.5 s:
    # each keeps its tile in every segment (its first or last frame held), no holes
    assert shown == [[0, 1, 2]] * 4
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


def test_program_bounds_keep_the_titles_apart():
    assert program_bounds(0, 100, 0, 3) == [0, 33, 67, 100]
    assert program_bounds(25, 50, 30, 1) == [0, 25, 75, 105]  # at least one segment each
    assert program_bounds(25, 100, 30, 4, [48]) == [0, 25, 73, 125, 155]  # scene cut
    assert program_bounds(0, 100, 30, 1) == [0, 100, 130]


def test_plan_carries_titles_labels_and_captions_through_json(make_clip):
    spec = parse_spec({"version": 1, "canvas": {"width": 320, "height": 180, "fps": 10},
                       "layout": {"type": "sections", "labels": True}, "duration": 2.0,
                       "intro": {"title": "T", "seconds": 1.0}, "credits": {"seconds": 1.5},
                       "clips": [{"id": "a", "path": make_clip(duration=2.0), "name": "Ana",
                                  "part": "alto"},
                                 {"id": "b", "path": make_clip(duration=1.0), "name": "Bo",
                                  "part": "bass", "offset": -0.5},
                                 {"id": "h", "path": make_clip(duration=2.0), "hidden": True}]})
    plan = plan_render(spec, segments=3)
    assert (plan.frames, plan.intro_frames, plan.credits_frames) == (45, 10, 15)
    assert (plan.main_start, plan.main_end, plan.duration) == (10, 30, 4.5)
    assert [(s.start, s.end) for s in plan.segments] == [(0, 10), (10, 30), (30, 45)]
    intro, main, credits = plan.segments
    assert not intro.tiles and not credits.tiles and not intro.captions
    assert {c.text for c in main.captions} == {"alto", "bass"}
    assert {t.clip for t in main.tiles} == {0, 1}  # the hidden clip has no tile
    late = next(t for t in main.tiles if t.clip == 1)
    # it plays from frame 15 to 25 and is held (first and last frame) the rest of its
    # scene, under its name the whole time
    assert (late.start, late.end) == (10, 30)
    assert late.label is not None and (late.label_start, late.label_end) == (10, 30)
    assert RenderPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_montage_follows_the_audio(make_clip):
    clips = [{"id": "quiet", "path": make_clip(color="red", audio=False)},
             {"id": "mute", "path": make_clip(color="lime", audio=False)},
             {"id": "loud", "path": make_clip(color="blue", volume_db=-6)}]
    layout = {"type": "montage", "shot_seconds": 1.0, "max_tiles": 1}

    def first_shot(follow):
        spec = parse_spec({"version": 1, "canvas": {"width": 320, "height": 180, "fps": 10},
                           "layout": {**layout, "follow_audio": follow}, "clips": clips})
        plan = plan_render(spec, segments=2)
        assert [s.start for s in plan.segments] == [0, 10]  # cut at the shot change
        return [t.clip for t in plan.segments[0].tiles]

    assert first_shot(False) == [0]
    assert first_shot(True) == [2]


def test_tile_map_and_poster_frame(make_clip):
    spec = parse_spec({"version": 1, "canvas": {"width": 320, "height": 180, "fps": 10},
                       "intro": {"title": "T", "seconds": 1.0},
                       "clips": [{"id": "a", "path": make_clip(duration=2.0)},
                                 {"id": "b", "path": make_clip(duration=1.0), "offset": -0.5},
                                 {"id": "c", "path": make_clip(duration=1.0)}]})
    plan = plan_render(spec, segment_seconds=0.5)
    spans = tile_map(plan)
    # one span per clip across all the segments, the whole mash-up (after the intro)
    assert [(t.clip, t.start, t.end) for t in spans] == [(0, 1.0, 3.0), (1, 1.0, 3.0),
                                                        (2, 1.0, 3.0)]
    rects = {t.clip: t.rect for t in spans}
    assert len(set(rects.values())) == 3
    assert rects[1] == next(t.rect for s in plan.segments for t in s.tiles if t.clip == 1)
    # b plays from 0.5 s of the mash-up (1.5 s of the file), the others at once
    assert [t.live for t in spans] == [1.0, 1.5, 1.0]
    # every tile is always on screen; all three play their own pictures in [1.5, 2.0)
    frame = poster_frame(plan)
    assert 15 <= frame < 20
