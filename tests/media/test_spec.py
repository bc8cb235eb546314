import copy
import dataclasses
import json

import pytest

from workers.media.spec import (
    AudioSpec,
    Canvas,
    LayoutSpec,
    RenderSpec,
    SpecClip,
    SpecError,
    VideoSpec,
    check_files,
    parse_spec,
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
    ("intro", {"title": "x"}, "intro"),
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


def test_check_files_names_a_missing_guide(tmp_path):
    present = tmp_path / "a.mp4"
    present.write_bytes(b"x")
    spec = parse_spec({"version": 1, "audio": {"mode": "guide", "guide_path": "nope.wav"},
                       "clips": [{"id": "ok", "path": str(present)}]})
    with pytest.raises(SpecError) as caught:
        check_files(spec)
    assert caught.value.field == "audio.guide_path"
    check_files(dataclasses.replace(spec, audio=AudioSpec()))  # mix mode: no guide needed


def test_null_labels_mean_empty():
    spec = parse_spec(_with("clips.0.location", None))
    assert spec.clips[0].location == ""
