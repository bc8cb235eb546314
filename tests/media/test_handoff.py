"""The hand-off ZIP read back with OpenTimelineIO: every clip where the render plan puts
it, the FCP XML the same, the mix and stems as WAV, credits safe in a spreadsheet."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest

from tests.conftest import ffmpeg_info
from tests.media.test_sound import RATE, write_take
from workers.media.ffmpeg import run_ffmpeg
from workers.media.handoff import export_handoff
from workers.media.plan import plan_render
from workers.media.spec import parse_spec

FPS = 25
HALF_FRAME = 0.5 / FPS + 1e-9


@pytest.fixture(scope="module")
def handoff(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("handoff")
    a = write_take(d / "a.mp4", freq=440.0, seconds=4.0)
    b = write_take(d / "b.mp4", freq=550.0, seconds=4.0)
    c = write_take(d / "c.mp4", freq=660.0, seconds=3.0)
    data = {"version": 1, "canvas": {"width": 64, "height": 36, "fps": FPS},
            "audio": {"mode": "mix", "reverb_seconds": 0.8},
            "intro": {"title": "Ode", "seconds": 1.0}, "credits": True,
            "duration": 4.0,
            "clips": [
                {"id": "secret-token-1", "path": a, "offset": 0.37, "part": "Alto",
                 "name": "=HYPERLINK(\"x\")", "location": "Lisbon"},
                {"id": "secret-token-2", "path": b, "offset": -0.61, "part": "Bass",
                 "name": "Bo", "drift_ppm": 800.0, "pan": 0.5},
                {"id": "secret-token-3", "path": c, "offset": 0.0, "part": "Bass",
                 "name": "Cy", "hidden": True},
                {"id": "secret-token-4", "path": a, "offset": 1.04, "part": "Alto",
                 "name": "Dee", "muted": True},
            ]}
    spec = parse_spec(data)
    out = export_handoff(spec, str(d / "handoff.zip"), appearances={"secret-token-1": 1.0},
                         title="Ode to Joy")
    main = parse_spec({**data, "intro": None, "credits": None})
    return spec, plan_render(main, segments=1), zipfile.ZipFile(out)


def _clips(timeline) -> dict[str, tuple]:
    """Video clip name -> (start on the timeline, source start, duration), seconds."""
    found = {}
    for track in timeline.tracks:
        if track.kind != otio.schema.TrackKind.Video:
            continue
        for item in track:
            if isinstance(item, otio.schema.Clip):
                at = track.range_of_child(item)
                found[item.name] = (at.start_time.to_seconds(),
                                    item.source_range.start_time.to_seconds(),
                                    item.source_range.duration.to_seconds(),
                                    item.media_reference.target_url)
    return found


def _expected(spec, plan) -> dict[str, tuple]:
    main = plan.main_duration
    wanted = {}
    for c in plan.clips:
        clip = spec.clips[c.index]
        if clip.hidden:
            continue
        start = max(0.0, c.start)
        name = f"{clip.name} ({clip.part})"
        wanted[name] = (start, max(0.0, c.offset + start * c.speed), min(main, c.end) - start,
                        f"media/{c.index + 1:03d}.mp4")
    return wanted


def test_the_otio_timeline_holds_every_shown_clip_where_the_plan_puts_it(handoff):
    spec, plan, z = handoff
    timeline = otio.adapters.read_from_string(z.read("timeline.otio").decode(), "otio_json")
    got, wanted = _clips(timeline), _expected(spec, plan)
    assert set(got) == set(wanted)  # the hidden clip has no picture
    for name, (start, source, duration, url) in wanted.items():
        g = got[name]
        assert g[0] == pytest.approx(start, abs=HALF_FRAME), name
        assert g[1] == pytest.approx(source, abs=HALF_FRAME), name
        assert g[2] == pytest.approx(duration, abs=2 * HALF_FRAME), name
        assert g[3] == url and url in z.namelist()
    # exact seconds beside the frames; a drift too small to move a frame is not warped
    # (as the render does not correct it either)
    bo = next(i for t in timeline.tracks for i in t
              if isinstance(i, otio.schema.Clip) and i.name == "Bo (Bass)")
    assert bo.metadata["tutti"]["offset_seconds"] == -0.61
    assert bo.metadata["tutti"]["speed"] == plan.clips[1].speed == 1.0
    assert len(bo.effects) == 0


def test_the_fcp_xml_reads_back_with_the_same_positions(handoff):
    spec, plan, z = handoff
    timeline = otio.adapters.read_from_string(z.read("timeline.xml").decode(), "fcp_xml")
    got = sorted(v for v in _clips_by_url(timeline).items())
    wanted = sorted((v[3], v[:3]) for v in _expected(spec, plan).values())
    assert [g[0] for g in got] == [w[0] for w in wanted]
    for (_, g), (_, w) in zip(got, wanted, strict=True):
        assert g == pytest.approx(w, abs=2 * HALF_FRAME)


def _clips_by_url(timeline) -> dict[str, tuple]:
    found = {}
    for track in timeline.tracks:
        if track.kind != otio.schema.TrackKind.Video:
            continue
        for item in track:
            if isinstance(item, otio.schema.Clip):
                at = track.range_of_child(item)
                found[item.media_reference.target_url.rsplit("/", 2)[-2] + "/"
                      + item.media_reference.target_url.rsplit("/", 1)[-1]] = (
                    at.start_time.to_seconds(), item.source_range.start_time.to_seconds(),
                    item.source_range.duration.to_seconds())
    return found


def _wav(z: zipfile.ZipFile, name: str, tmp: Path) -> np.ndarray:
    """A WAV of the ZIP as (samples, 2) floats, checked to be 24-bit stereo at 48 kHz."""
    path = tmp / name.replace("/", "_")
    path.write_bytes(z.read(name))
    info = ffmpeg_info(path)
    assert "pcm_s24le" in info and "48000 Hz" in info and "stereo" in info, info
    raw = run_ffmpeg(["-v", "error", "-i", str(path), "-f", "f32le", "-ac", "2",
                      "pipe:1"], stdout=None)
    return np.frombuffer(raw, dtype="<f4").astype(np.float64).reshape(-1, 2)


def test_mix_and_stems_are_wav_of_the_mash_up_and_add_up_to_the_mix(handoff, tmp_path):
    spec, plan, z = handoff
    names = z.namelist()
    stems = sorted(n for n in names if n.startswith("audio/stems/"))
    assert stems == ["audio/stems/01-alto.wav", "audio/stems/02-bass.wav"]
    mix = _wav(z, "audio/mix.wav", tmp_path)
    assert mix.shape[0] == round(plan.main_duration * RATE)
    total = sum(_wav(z, n, tmp_path) for n in stems)
    # the limiter may touch the mix's peaks only
    error = np.sqrt(np.mean((total - mix) ** 2)) / np.sqrt(np.mean(mix ** 2))
    assert error < 0.05
    # the muted clip is in no stem: Alto holds Ana's 440 Hz only
    timeline = otio.adapters.read_from_string(z.read("timeline.otio").decode(), "otio_json")
    audio = [t.name for t in timeline.tracks if t.kind == otio.schema.TrackKind.Audio]
    assert audio == ["Mix", "Stem Alto", "Stem Bass"]


def test_credits_csv_and_no_private_token_anywhere(handoff):
    spec, plan, z = handoff
    rows = list(csv.DictReader(io.StringIO(z.read("credits.csv").decode())))
    assert [r["name"] for r in rows] == ["'=HYPERLINK(\"x\")", "Bo", "Cy", "Dee"]
    assert rows[0]["first_seen_seconds"] == "1.00" and rows[0]["location"] == "Lisbon"
    for name in z.namelist():
        if not name.endswith((".mp4", ".wav")):
            assert b"secret-token" not in z.read(name), name
    assert "README.txt" in z.namelist()


def test_a_missing_clip_is_a_clear_error_and_no_zip(tmp_path: Path):
    from workers.media.spec import SpecError

    spec = parse_spec({"version": 1, "clips": [{"id": "a", "path": str(tmp_path / "gone.mp4")}]})
    with pytest.raises(SpecError):
        export_handoff(spec, str(tmp_path / "h.zip"))
    assert list(tmp_path.iterdir()) == []


def _source_time(timeline, t: float) -> float | None:
    """Read back from a timeline: the source seconds its (one) video clip shows at
    timeline second ``t``: the piece's source start plus the time since the piece's
    start times its LinearTimeWarp, as an editor's timeline plays it."""
    for track in timeline.tracks:
        if track.kind != otio.schema.TrackKind.Video:
            continue
        for item in track:
            if not isinstance(item, otio.schema.Clip):
                continue
            at = track.range_of_child(item)
            start, length = at.start_time.to_seconds(), at.duration.to_seconds()
            if start <= t < start + length:
                scalar = 1.0
                for effect in item.effects:
                    if isinstance(effect, otio.schema.LinearTimeWarp):
                        scalar *= effect.time_scalar
                return item.source_range.start_time.to_seconds() + (t - start) * scalar
    return None


def test_a_time_mapped_clip_reads_back_where_the_render_shows_it(tmp_path):
    """The hand-off's timeline follows the time map piece by piece: at each phrase start
    (and every quarter second) the source time it shows is the render's within half a
    frame; the overall tempo alone is two frames off in the middle."""
    from tests.media.test_timemap import WARP_KNOTS
    from workers.media.handoff import build_timeline

    take = write_take(tmp_path / "take.mp4", seconds=13.0)
    spec = parse_spec({"version": 1, "canvas": {"width": 64, "height": 36, "fps": FPS},
                       "audio": {"mode": "mix"}, "duration": 12.0,
                       "clips": [{"id": "t", "path": take, "offset": 0.3, "name": "Ty",
                                  "part": "Tenor", "time_map": WARP_KNOTS}]})
    plan = plan_render(spec, segments=1)
    built = build_timeline(spec, plan, media={0: "media/001.mp4"}, stems={}, mix=None,
                           guide=None)
    timeline = otio.adapters.read_from_string(
        otio.adapters.write_to_string(built, "otio_json"), "otio_json")
    clip = spec.clips[0]
    pieces = [i for t in timeline.tracks for i in t if isinstance(i, otio.schema.Clip)]
    assert 2 <= len(pieces) <= len(WARP_KNOTS) + 1  # split at the map's bends only
    times = [0.5, 2.0, 3.0, 4.5, 6.0, 7.2, 9.0, 11.5, *np.arange(0.0, 11.9, 0.25)]
    errors = [abs(_source_time(timeline, t) - clip.clip_time(t)) for t in times]
    assert max(errors) <= HALF_FRAME + 1e-3
    # the clip's overall tempo alone (one piece) is off by two frames at the bend
    tempo = [abs(clip.offset + t * clip.speed - clip.clip_time(t)) for t in times]
    assert max(tempo) > 1.5 / FPS
    # the map is kept once, in the first piece
    maps = [p.metadata["tutti"].get("time_map") for p in pieces]
    assert [[float(a), float(b)] for a, b in maps[0]] == \
        [[float(a), float(b)] for a, b in WARP_KNOTS]
    assert not any(maps[1:])
    # the FCP XML has no speed (the adapter drops a LinearTimeWarp): read back, every
    # clipitem plays at speed 1 and the picture it shows at every frame is the render's
    # within a frame (half of rounding at a cut, half of drift inside one); the pieces
    # written as they are drift further (the test fails without speedless_timeline)
    from workers.media.handoff import speedless_timeline

    def xml_errors(tl) -> list[float]:
        xml = otio.adapters.read_from_string(otio.adapters.write_to_string(tl, "fcp_xml"),
                                             "fcp_xml")
        frames = np.arange(round(0.3 * FPS), round(11.8 * FPS)) / FPS
        return [abs(_source_time(xml, t) - clip.clip_time(t)) * FPS
                for t in frames]

    assert max(xml_errors(speedless_timeline(built, FPS))) <= 1.0 + 1e-6
    assert max(xml_errors(built)) > 1.0
