import copy
import dataclasses
import json

import pytest

from workers.media.spec import (
    AudioSpec,
    Canvas,
    CreditsSpec,
    Featured,
    IntroSpec,
    LayoutSpec,
    ProgramTimes,
    RenderSpec,
    SpecClip,
    SpecError,
    VideoSpec,
    check_files,
    parse_spec,
    program_times,
    spec_to_dict,
)

MINIMAL = {"version": 1, "clips": [{"id": "c1", "path": "clips/c1.mp4"}]}

FULL = {
    "version": 1,
    "canvas": {"width": 1920, "height": 1080, "fps": 25, "background": "#000"},
    "layout": {"type": "grid", "gap": 8},
    "audio": {"mode": "guide", "guide_path": "guide.wav", "loudness_lufs": -23},
    "video": {"preset": "medium", "crf": 20},
    "clips": [
        {"id": "c1", "path": "a.mp4", "offset": 1.234, "part": "alto", "name": "Ana",
         "location": "Lisboa", "gain_db": -3, "has_audio": True},
        {"id": "c2", "path": "b.mp4", "offset": -0.5, "has_audio": False},
    ],
    "duration": 61.5,
}


def test_defaults_are_merged():
    spec = parse_spec(MINIMAL)
    assert spec == RenderSpec(1, Canvas(), LayoutSpec(), AudioSpec(), VideoSpec(),
                              (SpecClip("c1", "clips/c1.mp4"),), None)
    assert spec.canvas == Canvas(1280, 720, 30, "#101010")
    assert spec.layout.gap == 4 and spec.audio.mode == "mix"
    assert spec.audio.loudness_lufs == -16.0
    assert (spec.video.preset, spec.video.crf) == ("veryfast", 23)
    clip = spec.clips[0]
    assert (clip.offset, clip.gain_db, clip.has_audio, clip.part) == (0.0, 0.0, True, "")


def test_full_spec():
    spec = parse_spec(FULL)
    assert spec.canvas.fps == 25 and spec.canvas.background_hex == "0x000000"
    assert spec.audio == AudioSpec("guide", "guide.wav", -23.0)
    assert spec.clips[0].offset == 1.234 and spec.clips[0].name == "Ana"
    assert spec.clips[1].offset == -0.5 and not spec.clips[1].has_audio
    assert spec.duration == 61.5
    assert isinstance(spec.clips, tuple)


@pytest.mark.parametrize("data", [MINIMAL, FULL])
def test_round_trip_through_json(data):
    spec = parse_spec(data)
    again = parse_spec(json.loads(json.dumps(spec_to_dict(spec))))
    assert again == spec


def test_values_are_frozen():
    spec = parse_spec(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.canvas.width = 10  # type: ignore[misc]


def _with(path: str, value):
    data = copy.deepcopy(FULL)
    target = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    last = keys[-1]
    if value is DELETE:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return data


DELETE = object()


@pytest.mark.parametrize("path, value, field", [
    ("version", 2, "version"),
    ("version", "1", "version"),
    ("version", DELETE, "version"),
    ("clips", [], "clips"),
    ("clips", "a.mp4", "clips"),
    ("clips", DELETE, "clips"),
    ("clips.1", "b.mp4", "clips[1]"),
    ("clips.1.id", "c1", "clips[1].id"),
    ("clips.1.id", "", "clips[1].id"),
    ("clips.1.id", DELETE, "clips[1].id"),
    ("clips.1.path", DELETE, "clips[1].path"),
    ("clips.1.path", 7, "clips[1].path"),
    ("clips.1.offset", "0.5", "clips[1].offset"),
    ("clips.1.offset", float("nan"), "clips[1].offset"),
    ("clips.1.offset", True, "clips[1].offset"),
    ("clips.0.gain_db", 100, "clips[0].gain_db"),
    ("clips.0.has_audio", 1, "clips[0].has_audio"),
    ("clips.0.name", "x" * 500, "clips[0].name"),
    ("clips.0.colour", "red", "clips[0].colour"),
    ("canvas.width", 1281, "canvas.width"),
    ("canvas.height", 721, "canvas.height"),
    ("canvas.width", 4096, "canvas.width"),
    ("canvas.width", 8, "canvas.width"),
    ("canvas.width", 1280.5, "canvas.width"),
    ("canvas.fps", 0, "canvas.fps"),
    ("canvas.fps", 121, "canvas.fps"),
    ("canvas.background", "red", "canvas.background"),
    ("canvas.background", "#12345g", "canvas.background"),
    ("canvas.background", "#fff'[x]", "canvas.background"),
    ("canvas", [1280, 720], "canvas"),
    ("layout.type", "mosaic", "layout.type"),
    ("layout.gap", -1, "layout.gap"),
    ("audio.mode", "stems", "audio.mode"),
    ("audio.guide_path", DELETE, "audio.guide_path"),
    ("audio.loudness_lufs", 0, "audio.loudness_lufs"),
    ("video.preset", "ludicrous", "video.preset"),
    ("video.crf", 60, "video.crf"),
    ("duration", 0, "duration"),
    ("duration", "60", "duration"),
    ("intro", {"title": "x", "colour": "red"}, "intro.colour"),
    ("intro", {"subtitle": "x"}, "intro.title"),
    ("intro", {"title": " "}, "intro.title"),
    ("intro", {"title": "two\nlines"}, "intro.title"),
    ("intro", {"title": "x", "seconds": 0}, "intro.seconds"),
    ("intro", "Ode to Joy", "intro"),
    ("credits", {"seconds": 1000}, "credits.seconds"),
    ("credits", "yes", "credits"),
    ("credits", {"title": 3}, "credits.title"),
    ("layout.labels", "yes", "layout.labels"),
    ("layout.shot_seconds", 0, "layout.shot_seconds"),
    ("layout.max_tiles", 0, "layout.max_tiles"),
    ("layout.follow_audio", 1, "layout.follow_audio"),
    ("layout.featured", {"clip": "c1"}, "layout.featured"),
    ("layout.featured", [{"clip": "c1", "start": 0, "end": 1}], "layout.featured"),
    ("audio.mode", "mix+guide", "audio.mode"),
    ("audio.guide_gain_db", 100, "audio.guide_gain_db"),
    ("audio.mix_gain_db", "loud", "audio.mix_gain_db"),
    ("clips.0.drift_ppm", 5000, "clips[0].drift_ppm"),
    ("clips.1.hidden", "no", "clips[1].hidden"),
])
def test_errors_name_the_field(path, value, field):
    with pytest.raises(SpecError) as caught:
        parse_spec(_with(path, value))
    assert caught.value.field == field
    assert str(caught.value).startswith(field)


def test_canvas_limits():
    ok = parse_spec(_with("canvas", {"width": 3840, "height": 2160}))
    assert (ok.canvas.width, ok.canvas.height) == (3840, 2160)
    portrait = parse_spec(_with("canvas", {"width": 1080, "height": 1920}))
    assert portrait.canvas.height == 1920
    with pytest.raises(SpecError) as caught:
        parse_spec(_with("canvas", {"width": 3840, "height": 3840}))
    assert caught.value.field == "canvas"


def test_whole_number_floats_are_accepted_for_integers():
    assert parse_spec(_with("canvas.fps", 30.0)).canvas.fps == 30


def test_not_an_object():
    with pytest.raises(SpecError):
        parse_spec([])  # type: ignore[arg-type]


def test_check_files_names_the_missing_clip(tmp_path):
    present = tmp_path / "a.mp4"
    present.write_bytes(b"x")
    spec = parse_spec({"version": 1, "clips": [
        {"id": "ok", "path": str(present)},
        {"id": "lost", "path": str(tmp_path / "b.mp4")},
    ]})
    with pytest.raises(SpecError) as caught:
        check_files(spec)
    assert caught.value.field == "clips[1].path"
    assert "'lost'" in str(caught.value)


@pytest.mark.parametrize("mode", ["guide", "guide+mix"])
def test_check_files_names_a_missing_guide(tmp_path, mode):
    present = tmp_path / "a.mp4"
    present.write_bytes(b"x")
    spec = parse_spec({"version": 1, "audio": {"mode": mode, "guide_path": "nope.wav"},
                       "clips": [{"id": "ok", "path": str(present)}]})
    with pytest.raises(SpecError) as caught:
        check_files(spec)
    assert caught.value.field == "audio.guide_path"
    check_files(dataclasses.replace(spec, audio=AudioSpec()))  # mix mode: no guide needed


def test_null_labels_mean_empty():
    spec = parse_spec(_with("clips.0.location", None))
    assert spec.clips[0].location == ""


SPOTLIGHT = {
    "version": 1,
    "canvas": {"width": 640, "height": 360},
    "layout": {"type": "spotlight", "gap": 2, "labels": True,
               "featured": [{"clip": "c1", "start": 0, "end": 5},
                            {"clip": "c2", "start": 3, "end": 8.5}]},
    "audio": {"mode": "guide+mix", "guide_path": "guide.wav", "guide_gain_db": -6,
              "mix_gain_db": 1.5},
    "intro": {"title": "Ode to Joy", "subtitle": "Tutti choir", "seconds": 3},
    "credits": {"seconds": 12, "title": "Thank you"},
    "clips": [
        {"id": "c1", "path": "a.mp4", "drift_ppm": 42.5, "name": "Zoë"},
        {"id": "c2", "path": "b.mp4", "offset": -1},
        {"id": "c3", "path": "c.mp4", "hidden": True},
    ],
}


def _spot(path: str, value):
    data = copy.deepcopy(SPOTLIGHT)
    target = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if isinstance(target, list):
        target[int(keys[-1])] = value
    else:
        target[keys[-1]] = value
    return data


def test_new_settings_default_to_the_old_behaviour():
    spec = parse_spec(MINIMAL)
    assert spec.layout == LayoutSpec("grid", 4, False, (), 4.0, False, 4)
    assert spec.intro is None and spec.credits is None
    assert (spec.audio.guide_gain_db, spec.audio.mix_gain_db) == (0.0, 0.0)
    clip = spec.clips[0]
    assert (clip.drift_ppm, clip.hidden, clip.speed) == (0.0, False, 1.0)
    assert spec.visible == (0,)


def test_spotlight_spec_with_titles_and_guide_mix():
    spec = parse_spec(SPOTLIGHT)
    assert spec.layout.featured == (Featured("c1", 0.0, 5.0), Featured("c2", 3.0, 8.5))
    assert spec.layout.labels
    assert spec.intro == IntroSpec("Ode to Joy", "Tutti choir", 3.0)
    assert spec.credits == CreditsSpec(12.0, "Thank you")
    assert spec.audio.mode == "guide+mix" and spec.audio.guide_gain_db == -6.0
    assert spec.clips[2].hidden and spec.visible == (0, 1)
    assert isinstance(spec.layout.featured, tuple)
    again = parse_spec(json.loads(json.dumps(spec_to_dict(spec))))
    assert again == spec


def test_credits_true_means_defaults_and_false_or_null_none():
    assert parse_spec({**MINIMAL, "credits": True}).credits == CreditsSpec()
    assert parse_spec({**MINIMAL, "credits": False}).credits is None
    assert parse_spec({**MINIMAL, "intro": None}).intro is None
    assert parse_spec({**MINIMAL, "intro": {"title": "Hi"}}).intro == IntroSpec("Hi", "", 4.0)


def test_drift_convention():
    spec = parse_spec(_spot("clips.0.offset", 2.0))
    clip = spec.clips[0]
    assert clip.speed == pytest.approx(1.0000425)
    assert clip.clip_time(100.0) == pytest.approx(2.0 + 100.0 * 1.0000425)
    assert clip.guide_time(clip.clip_time(37.0)) == pytest.approx(37.0)


def test_program_times():
    spec = parse_spec(SPOTLIGHT)
    assert program_times(spec, 60.0) == ProgramTimes(3.0, 63.0, 75.0)
    assert program_times(spec, 60.0).main_start == 3.0
    assert program_times(parse_spec(MINIMAL), 10.0) == ProgramTimes(0.0, 10.0, 10.0)


@pytest.mark.parametrize("path, value, field", [
    ("layout.featured.0.clip", "nobody", "layout.featured[0].clip"),
    ("layout.featured.0.clip", "c3", "layout.featured[0].clip"),  # hidden
    ("layout.featured.1.end", 3, "layout.featured[1].end"),
    ("layout.featured.1.start", -1, "layout.featured[1].start"),
    ("layout.featured.1", {"clip": "c2", "start": 1}, "layout.featured[1].end"),
    ("layout.featured.1", {"clip": "c2", "start": 1, "end": 2, "x": 0},
     "layout.featured[1].x"),
    ("audio.guide_path", None, "audio.guide_path"),
    ("clips.1.hidden", True, "layout.featured[1].clip"),
    ("clips", [{"id": "c1", "path": "a", "hidden": True}], "clips"),
])
def test_layout_specific_errors(path, value, field):
    data = _spot(path, value)
    if path == "clips":
        data["layout"] = {"type": "grid"}
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    assert caught.value.field == field


@pytest.mark.parametrize("layout", [
    {"type": "grid"}, {"type": "sections"}, {"type": "montage", "max_tiles": 64},
    {"type": "spotlight", "featured": [{"clip": "c0", "start": 0, "end": 1}]},
])
def test_impossible_layout_fails_before_encoding(layout):
    clips = [{"id": f"c{i}", "path": f"{i}.mp4", "part": f"p{i % 5}"} for i in range(300)]
    data = {"version": 1, "canvas": {"width": 160, "height": 90}, "layout": layout,
            "clips": clips}
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    assert caught.value.field == "layout"
    assert "16 px" in str(caught.value) or "do not fit" in str(caught.value)
    data["canvas"] = {"width": 1920, "height": 1080}
    assert len(parse_spec(data).clips) == 300
