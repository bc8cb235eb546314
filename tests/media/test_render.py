import dataclasses
import json
import os
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from workers.media import render as render_module
from workers.media.audio import decode_audio
from workers.media.ffmpeg import FFmpegError, ffmpeg_path, ffmpeg_report, pin, run_ffmpeg
from workers.media.layout import grid_rects, timeline
from workers.media.normalize import (
    Loudness,
    measure_loudness,
    parse_ebur128_summary,
)
from workers.media.plan import DIRECT_TILES, MAX_INPUTS, RenderPlan, drift_speed, plan_render
from workers.media.probe import probe
from workers.media.render import (
    Cores,
    RenderResult,
    join_segments,
    loudness_filter,
    render,
    render_audio,
    render_segment,
    usable_cores,
)
from workers.media.spec import SpecError, parse_spec
from workers.media.titles import intro_card

W, H, FPS = 320, 180, 25
BACKGROUND = (16, 16, 16)  # the default #101010
COLOURS = ["red", "lime", "blue", "yellow"]


def _spec(clips, **extra):
    data = {"version": 1, "canvas": {"width": W, "height": H, "fps": FPS},
            "video": {"preset": "ultrafast"}, "clips": clips}
    data.update(extra)
    return parse_spec(data)


def _tiles(n):
    return grid_rects(n, W, H, gap=4)


def _only_expected_files(directory, *names):
    assert sorted(os.listdir(directory)) == sorted(names)


def test_grid_mix_poster_and_progress(make_clip, tmp_path, read_frame, colour_of, close_to):
    clips = [
        {"id": f"c{i}", "path": make_clip(color=colour, freq=440 + 110 * i),
         "name": "Ana ' ; [x] \\ %{n}", "part": "alto:1", "location": "São Paulo, BR"}
        for i, colour in enumerate(COLOURS)
    ]
    out, poster = tmp_path / "mash.mp4", tmp_path / "poster.jpg"
    seen: list[float] = []
    result = render(_spec(clips), str(out), poster_path=str(poster), progress=seen.append)

    assert result == RenderResult(str(out), result.duration, W, H, str(poster), result.tiles)
    info = probe(str(out))
    assert (info.width, info.height, info.fps) == (W, H, FPS)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert (info.sample_rate, info.channels) == (48000, 2)
    assert info.duration == pytest.approx(2.0, abs=2 / FPS)
    assert result.duration == pytest.approx(info.duration, abs=0.01)

    frame = read_frame(str(out), 1.0)
    for rect, colour in zip(_tiles(4), COLOURS, strict=True):
        assert close_to(colour_of(frame, rect.x, rect.y, rect.w, rect.h), colour), colour
    assert close_to(tuple(int(v) for v in frame[0, W // 2]), BACKGROUND, tol=12)  # the gap

    assert measure_loudness(str(out)).integrated == pytest.approx(-16.0, abs=1.0)
    assert measure_loudness(str(out)).true_peak <= -0.5
    assert poster.read_bytes()[:3] == b"\xff\xd8\xff"
    assert seen and seen == sorted(seen) and seen[-1] == 1.0
    _only_expected_files(tmp_path, "mash.mp4", "poster.jpg")


def test_offsets_shift_content(make_clip, tmp_path, read_frame, colour_of, close_to):
    switching = make_clip(color="red", color_after="blue", switch_at=1.0)
    late = make_clip(color="lime")
    spec = _spec([{"id": "early", "path": switching, "offset": 0.5},
                  {"id": "late", "path": late, "offset": -0.5}])
    out = tmp_path / "o.mp4"
    result = render(spec, str(out))
    # the late clip ends at 0.5 + 2.0 on the guide's timeline
    assert result.duration == pytest.approx(2.5, abs=2 / FPS)
    left, right = _tiles(2)

    at_03 = read_frame(str(out), 0.3)  # the late clip has not started: its first frame waits
    assert close_to(colour_of(at_03, left.x, left.y, left.w, left.h), "red")
    assert close_to(colour_of(at_03, right.x, right.y, right.w, right.h), "lime")

    at_07 = read_frame(str(out), 0.7)  # clip time 1.2: after the switch
    assert close_to(colour_of(at_07, left.x, left.y, left.w, left.h), "blue")
    assert close_to(colour_of(at_07, right.x, right.y, right.w, right.h), "lime")

    # the early clip has ended, the late one has not: no hole, its last frame stays
    at_23 = read_frame(str(out), 2.3)
    assert close_to(colour_of(at_23, left.x, left.y, left.w, left.h), "blue")
    assert close_to(colour_of(at_23, right.x, right.y, right.w, right.h), "lime")


def test_short_clips_leave_no_hole_and_the_poster_shows_every_tile(
        make_clip, tmp_path, read_frame, colour_of, close_to):
    # "short" plays for the first half second of a 3 s mash-up, "late" from 2 s on
    spec = _spec([{"id": "long", "path": make_clip(color="red", duration=3.0)},
                  {"id": "short", "path": make_clip(color="lime", duration=0.5)},
                  {"id": "late", "path": make_clip(color="blue", duration=1.0),
                   "offset": -2.0}])
    out, poster = tmp_path / "o.mp4", tmp_path / "poster.jpg"
    result = render(spec, str(out), poster_path=str(poster), segments=3, jobs=1)
    rects = _tiles(3)
    for t in (0.2, 1.2, 2.5):
        frame = read_frame(str(out), t)
        for rect, colour in zip(rects, ["red", "lime", "blue"], strict=True):
            assert close_to(colour_of(frame, rect.x, rect.y, rect.w, rect.h), colour), (t, colour)
    with Image.open(poster) as image:
        picture = np.asarray(image.convert("RGB"))
    for rect, colour in zip(rects, ["red", "lime", "blue"], strict=True):
        assert close_to(colour_of(picture, rect.x, rect.y, rect.w, rect.h), colour), colour
    # the tile map: each clip's rectangle for the whole mash-up
    assert [(t.clip, t.rect, t.start) for t in result.tiles] == [
        (k, rect, 0.0) for k, rect in enumerate(rects)]
    assert all(t.end == pytest.approx(3.0) for t in result.tiles)
    assert [t.live for t in result.tiles] == [0.0, 0.0, 2.0]


def test_guide_audio_sets_duration_and_sound(make_clip, tmp_path):
    guide = str(tmp_path / "guide.wav")
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=880:sample_rate=44100:duration=3",
                "-af", "volume=-20dB", guide])
    spec = _spec([{"id": "a", "path": make_clip(color="red")}],
                 audio={"mode": "guide", "guide_path": guide})
    out = tmp_path / "g.mp4"
    result = render(spec, str(out))
    assert result.duration == pytest.approx(3.0, abs=2 / FPS)
    assert probe(str(out)).has_audio
    assert measure_loudness(str(out)).integrated == pytest.approx(
        measure_loudness(guide).integrated, abs=1.0)


def test_silence_and_explicit_duration(make_clip, tmp_path, read_frame, colour_of, close_to):
    spec = _spec([
        {"id": "mute", "path": make_clip(color="red", audio=False)},
        {"id": "muted", "path": make_clip(color="blue"), "has_audio": False},
    ], duration=1.0)
    out = tmp_path / "s.mp4"
    result = render(spec, str(out))
    info = probe(str(out))
    assert info.has_audio and info.channels == 2
    assert result.duration == pytest.approx(1.0, abs=2 / FPS)
    assert measure_loudness(str(out)).integrated == float("-inf")
    left, right = _tiles(2)
    frame = read_frame(str(out), 0.5)
    assert close_to(colour_of(frame, left.x, left.y, left.w, left.h), "red")
    assert close_to(colour_of(frame, right.x, right.y, right.w, right.h), "blue")


def test_mastering_is_a_linear_gain_when_the_peaks_allow():
    master = loudness_filter(Loudness(-20.0, -8.0, 3.0, -30.0), -16.0)
    assert master.startswith("volume=4.000dB,alimiter=")
    # +14 dB would put a -3 dBTP peak at +11: loudnorm's dynamic mode instead
    master = loudness_filter(Loudness(-30.0, -3.0, 3.0, -40.0), -16.0)
    assert master.startswith("loudnorm=I=-16.00:TP=-1.00:") and "alimiter=" in master
    # silence is not amplified
    assert loudness_filter(Loudness(-70.0, float("-inf"), 0.0, 0.0), -16.0).startswith("alimiter")


def test_the_mix_measurement_agrees_with_loudnorm(tmp_path):
    wav = str(tmp_path / "tone.wav")
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000:duration=3",
                "-af", "volume=-7dB,aformat=channel_layouts=stereo", wav])
    status, text = ffmpeg_report(["-v", "info", "-i", wav, "-af",
                                  "ebur128=peak=true:framelog=quiet", "-f", "null", "-"])
    ours, theirs = parse_ebur128_summary(status, text), measure_loudness(wav)
    assert ours.integrated == pytest.approx(theirs.integrated, abs=0.3)
    assert ours.true_peak == pytest.approx(theirs.true_peak, abs=0.3)
    with pytest.raises(FFmpegError):
        parse_ebur128_summary(0, "no summary here")


def test_peaky_mix_keeps_its_true_peak_under_the_target(tmp_path):
    """Clicks: quiet on average, loud at their peaks. The gain to -16 LUFS would clip, so
    the mastering goes dynamic and the true peak stays under -1 dBTP."""
    clip = str(tmp_path / "clicks.mp4")
    run_ffmpeg(["-f", "lavfi", "-i", f"color=c=red:s={W}x{H}:r={FPS}:d=2",
                "-f", "lavfi", "-i",
                "aevalsrc='if(lt(mod(t\\,0.25)\\,0.002)\\,0.9\\,0)':s=48000:d=2",
                "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", clip])
    before = measure_loudness(clip)
    assert before.true_peak + (-16.0 - before.integrated) > 3  # a linear gain would clip
    out = tmp_path / "clicks-mash.mp4"
    render(_spec([{"id": "a", "path": clip}]), str(out))
    assert measure_loudness(str(out)).true_peak <= -0.9


def test_many_inputs_and_another_loudness_target(make_clip, tmp_path, read_frame, colour_of,
                                                 close_to):
    n = 12
    clips = [{"id": f"c{i}", "path": make_clip(color=COLOURS[i % 4], freq=440 + 110 * (i % 4)),
              "gain_db": -6.0 if i % 2 else 0.0}
             for i in range(n)]
    spec = _spec(clips, audio={"loudness_lufs": -23}, duration=1.0,
                 canvas={"width": W, "height": H, "fps": FPS, "background": "#ffffff"})
    out = tmp_path / "m.mp4"
    render(spec, str(out))
    frame = read_frame(str(out), 0.5)
    for i, rect in enumerate(_tiles(n)):
        assert close_to(colour_of(frame, rect.x, rect.y, rect.w, rect.h, margin=2),
                        COLOURS[i % 4]), i
    assert close_to(tuple(int(v) for v in frame[1, 1]), "white", tol=12)
    assert measure_loudness(str(out)).integrated == pytest.approx(-23.0, abs=1.0)


def test_failed_render_leaves_no_file_and_no_temp(make_clip, tmp_path):
    out, poster = tmp_path / "final.mp4", tmp_path / "poster.jpg"
    out.write_bytes(b"previous render")
    spec = parse_spec({"version": 1, "canvas": {"width": 640, "height": 360},
                       "video": {"preset": "veryslow"},
                       "clips": [{"id": "a", "path": make_clip()}], "duration": 600})
    with pytest.raises(FFmpegError) as caught:
        render(spec, str(out), poster_path=str(poster), timeout=1.5)
    assert caught.value.timed_out
    assert out.read_bytes() == b"previous render"  # never replaced by a half-written file
    _only_expected_files(tmp_path, "final.mp4")


def test_broken_clip_fails_before_writing(make_sample, make_clip, tmp_path):
    spec = _spec([{"id": "good", "path": make_clip()},
                  {"id": "bad", "path": make_sample("truncated_mp4")}])
    with pytest.raises(SpecError) as caught:
        render(spec, str(tmp_path / "x.mp4"))
    assert caught.value.field == "clips[1].path" and "'bad'" in str(caught.value)
    _only_expected_files(tmp_path)


def test_missing_clip_is_a_spec_error(make_clip, tmp_path):
    spec = _spec([{"id": "gone", "path": str(tmp_path / "gone.mp4")}])
    with pytest.raises(SpecError) as caught:
        render(spec, str(tmp_path / "x.mp4"))
    assert caught.value.field == "clips[0].path"
    _only_expected_files(tmp_path)


def test_guide_without_sound_is_a_spec_error(make_clip, tmp_path):
    spec = _spec([{"id": "a", "path": make_clip()}],
                 audio={"mode": "guide", "guide_path": make_clip(audio=False)})
    with pytest.raises(SpecError) as caught:
        render(spec, str(tmp_path / "x.mp4"))
    assert caught.value.field == "audio.guide_path"
    _only_expected_files(tmp_path)


class Cancelled(Exception):
    pass


def test_progress_callback_can_cancel_and_nothing_is_left(make_clip, tmp_path):
    spec = parse_spec({"version": 1, "canvas": {"width": 640, "height": 360},
                       "video": {"preset": "veryslow"},
                       "clips": [{"id": "a", "path": make_clip(), "has_audio": False}],
                       "duration": 600})
    calls: list[float] = []

    def cancel(fraction: float) -> None:
        calls.append(fraction)
        if fraction > 0:  # once the picture pass is under way
            raise Cancelled()

    with pytest.raises(Cancelled):
        render(spec, str(tmp_path / "c.mp4"), poster_path=str(tmp_path / "c.jpg"),
               progress=cancel, timeout=60)
    assert calls
    _only_expected_files(tmp_path)


def test_parts_raise_the_first_failure_not_the_stops_it_caused():
    from concurrent.futures import ThreadPoolExecutor

    class Cancelled(Exception):
        pass

    parts = render_module._Parts(lambda fraction: None, {"a": 0.5, "b": 0.5})

    def first():  # listed first, stops because the second failed
        assert parts.failed.wait(10)
        parts.progress("a")(0.5)

    def second():
        raise Cancelled()

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(parts.run, first), pool.submit(parts.run, second)]
        with pytest.raises(Cancelled):
            parts.wait(futures)
    with pytest.raises(FFmpegError, match="another part"):
        futures[0].result()


# --- segments, join, many clips -----------------------------------------------------------------

def _counter_clip(directory, ffmpeg_exe, *, fps, seconds, step=3):
    """A grey clip whose luma tells its frame number: 60 + step * n (the background is ~30)."""
    path = os.path.join(directory, f"counter-{fps}-{seconds}-{step}.mp4")
    if not os.path.exists(path):
        subprocess.run(
            [ffmpeg_exe, "-hide_banner", "-nostdin", "-y", "-v", "error",
             "-f", "lavfi", "-i", f"color=c=black:s=160x90:r={fps}:d={seconds}",
             "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={seconds}",
             "-vf", f"geq=lum=60+{step}*N:cb=128:cr=128", "-c:v", "libx264",
             "-preset", "ultrafast", "-crf", "4", "-pix_fmt", "yuv420p", "-g", str(fps),
             "-c:a", "aac", "-shortest", path],
            check=True, capture_output=True, timeout=60)
    return path


@pytest.fixture(scope="module")
def counter_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("counters"))


def _frames_gray(ffmpeg_exe, path, width, height):
    done = subprocess.run([ffmpeg_exe, "-hide_banner", "-nostdin", "-v", "error", "-i", path,
                           "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
                          capture_output=True, timeout=60, check=True)
    frames = np.frombuffer(done.stdout, np.uint8).reshape(-1, height * width * 3 // 2)
    return frames[:, :height * width].reshape(-1, height, width)  # the luma planes, as coded


def _audio_seconds(ffmpeg_exe, path):
    done = subprocess.run([ffmpeg_exe, "-hide_banner", "-nostdin", "-v", "error", "-i", path,
                           "-map", "0:a:0", "-f", "s16le", "-ac", "1", "-ar", "48000", "-"],
                          capture_output=True, timeout=60, check=True)
    return len(done.stdout) / 2 / 48000


def _counter_values(frames, rect, step=3):
    """Per frame, the counter shown in ``rect`` (None where the background shows)."""
    inner = frames[:, rect.y + 6: rect.bottom - 6, rect.x + 6: rect.right - 6]
    means = inner.reshape(len(frames), -1).mean(axis=1)
    return [None if m < 45 else round((m - 60) / step) for m in means]


def test_segments_join_without_gap_or_repeat(counter_dir, ffmpeg_exe, tmp_path):
    clip = _counter_clip(counter_dir, ffmpeg_exe, fps=FPS, seconds=2)
    spec = _spec([{"id": "n", "path": clip}], video={"preset": "ultrafast", "crf": 12})
    single, split = tmp_path / "one.mp4", tmp_path / "three.mp4"
    render(spec, str(single))
    result = render(spec, str(split), segments=3, jobs=2)
    rect = _tiles(1)[0]
    one = _counter_values(_frames_gray(ffmpeg_exe, str(single), W, H), rect)
    three = _counter_values(_frames_gray(ffmpeg_exe, str(split), W, H), rect)
    assert one == list(range(2 * FPS))  # every clip frame once, in order
    assert three == one
    audio = _audio_seconds(ffmpeg_exe, str(split))
    assert abs(audio - len(three) / FPS) <= 1 / FPS
    assert result.duration == pytest.approx(2.0, abs=1 / FPS)
    _only_expected_files(tmp_path, "one.mp4", "three.mp4")


two_cores = pytest.mark.skipif(usable_cores() < 2, reason="pinning needs two cores")


def test_usable_cores_heed_a_cgroup_quota(tmp_path):
    allowed = len(os.sched_getaffinity(0))
    limit = tmp_path / "cpu.max"
    limit.write_text("max 100000\n")  # no quota: the affinity decides
    assert usable_cores(str(limit)) == allowed
    limit.write_text("100000 100000\n")  # docker --cpus 1
    assert usable_cores(str(limit)) == 1
    limit.write_text("50000 100000\n")  # half a core still runs one process
    assert usable_cores(str(limit)) == 1
    limit.write_text(f"{200000 * allowed} 100000\n")  # a quota above the cores: the cores
    assert usable_cores(str(limit)) == allowed
    assert usable_cores(str(tmp_path / "none")) == allowed  # no cgroup v2 file


@two_cores
def test_cores_lends_each_core_to_one_process_at_a_time():
    allowed = os.sched_getaffinity(0)
    cores = Cores(len(allowed))
    with cores.take() as first, cores.take() as second:
        assert len(first) == len(second) == 1 and first != second
        assert first | second <= allowed
    with cores.take() as again:  # given back
        assert again <= first | second
    # one process, fewer than all cores (which are free?) or more than there are: none
    for jobs in {1, len(allowed) - 1, len(allowed) + 1}:
        with Cores(jobs).take() as none:
            assert none is None


@two_cores
def test_segments_side_by_side_each_keep_a_core(counter_dir, ffmpeg_exe, tmp_path,
                                                monkeypatch):
    seen = []
    real = render_module.run_ffmpeg

    def spy(args, **kw):
        seen.append((str(args[-1]), kw.get("cpus")))
        return real(args, **kw)

    monkeypatch.setattr(render_module, "run_ffmpeg", spy)
    clip = _counter_clip(counter_dir, ffmpeg_exe, fps=FPS, seconds=2)
    spec = _spec([{"id": "n", "path": clip}], video={"preset": "ultrafast", "crf": 12})
    render(spec, str(tmp_path / "two.mp4"), segments=2, jobs=usable_cores())
    pinned = [cpus for out, cpus in seen if ".seg" in out]
    assert len(pinned) == 2 and all(c is not None and len(c) == 1 for c in pinned)
    assert not any(cpus for out, cpus in seen if ".seg" not in out)  # sound, join: free
    seen.clear()
    render(spec, str(tmp_path / "free.mp4"), segments=2, jobs=usable_cores(), pin=False)
    assert seen and not any(cpus for _, cpus in seen)
    seen.clear()
    render(spec, str(tmp_path / "one.mp4"), segments=1, jobs=usable_cores())  # alone: every core
    assert seen and not any(cpus for _, cpus in seen)


@two_cores
def test_pinned_ffmpeg_and_all_its_threads_stay_on_the_core(ffmpeg_exe):
    cpu = max(os.sched_getaffinity(0))
    # a run long enough to be looked at, with decoding, filtering and encoding threads
    proc = subprocess.Popen([ffmpeg_exe, "-hide_banner", "-nostdin", "-v", "error", "-re",
                             "-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=4",
                             "-c:v", "libx264", "-preset", "ultrafast", "-f", "null", "-"])
    try:
        pin(proc.pid, {cpu})
        deadline = time.monotonic() + 10
        while len(os.listdir(f"/proc/{proc.pid}/task")) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        tids = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task")]
        assert len(tids) >= 3
        assert all(os.sched_getaffinity(t) == {cpu} for t in tids)
    finally:
        proc.kill()
        proc.wait()


def test_segments_match_single_render_across_frame_rates(counter_dir, ffmpeg_exe, tmp_path):
    fast = _counter_clip(counter_dir, ffmpeg_exe, fps=30, seconds=3, step=2)  # 30 fps on 25
    spec = _spec([{"id": "early", "path": fast, "offset": 0.37},
                  {"id": "late", "path": fast, "offset": -0.61}],
                 video={"preset": "ultrafast", "crf": 12})
    single, split = tmp_path / "one.mp4", tmp_path / "four.mp4"
    render(spec, str(single))
    render(spec, str(split), segments=4)
    a = _frames_gray(ffmpeg_exe, str(single), W, H)
    b = _frames_gray(ffmpeg_exe, str(split), W, H)
    assert len(a) == len(b) == round((3 + 0.61) * FPS)
    for rect in _tiles(2):
        assert _counter_values(a, rect, step=2) == _counter_values(b, rect, step=2)
    late = _counter_values(b, _tiles(2)[1], step=2)
    # it plays from 0.61 s: its first frame (counter 0) is held until then, no hole
    assert late[:16] == [0] * 16 and late[20] > 0 and None not in late
    early = _counter_values(b, _tiles(2)[0], step=2)
    # it ends at 2.63 s: its last frame is held to the end
    assert None not in early and len(set(early[-20:])) == 1 and early[-1] > early[0]


def test_distributed_steps_through_json(counter_dir, ffmpeg_exe, make_clip, tmp_path):
    clips = [{"id": "n", "path": _counter_clip(counter_dir, ffmpeg_exe, fps=FPS, seconds=2)},
             {"id": "r", "path": make_clip(color="red"), "offset": -1.0}]
    spec = _spec(clips, video={"preset": "ultrafast", "crf": 12})
    plan = RenderPlan.from_dict(json.loads(json.dumps(plan_render(spec, segments=3).to_dict())))
    assert [s.start for s in plan.segments] == [0, 25, 50] and plan.frames == 75
    # both tiles in every segment: n's last frame and r's first frame are held (no holes)
    assert [sorted({t.clip for t in s.tiles}) for s in plan.segments] == [[0, 1]] * 3
    audio = str(tmp_path / "sound.m4a")
    render_audio(spec, plan, audio, timeout=60)
    parts = []
    for k in reversed(range(len(plan.segments))):  # any order, any worker
        parts.insert(0, str(tmp_path / f"seg{k}.mp4"))
        render_segment(spec, plan, k, parts[0], timeout=60)
        assert len(_frames_gray(ffmpeg_exe, parts[0], W, H)) == plan.segments[k].frames
    out, poster = tmp_path / "out.mp4", tmp_path / "poster.jpg"
    result = join_segments(plan, parts, audio, str(out), poster_path=str(poster), timeout=60)
    assert result == RenderResult(str(out), result.duration, W, H, str(poster), result.tiles)
    frames = _frames_gray(ffmpeg_exe, str(out), W, H)
    assert len(frames) == 75
    # the last segment, drawn on its own after n has ended, holds n's last frame
    assert _counter_values(frames, _tiles(2)[0]) == list(range(50)) + [49] * 25
    assert abs(_audio_seconds(ffmpeg_exe, str(out)) - 3.0) <= 1 / FPS
    assert measure_loudness(str(out)).integrated == pytest.approx(-16.0, abs=1.0)
    assert poster.read_bytes()[:3] == b"\xff\xd8\xff"


def test_many_clips_are_drawn_in_strips(make_clip, tmp_path, read_frame, colour_of, close_to):
    n = 150
    paths = [make_clip(width=64, height=36, duration=1.0, color=c, freq=300 + 100 * k)
             for k, c in enumerate(COLOURS)]
    w, h = 640, 360
    spec = parse_spec({"version": 1, "canvas": {"width": w, "height": h, "fps": 10},
                       "video": {"preset": "ultrafast"}, "layout": {"gap": 2},
                       "clips": [{"id": f"c{i}", "path": paths[i % 4]} for i in range(n)]})
    plan = plan_render(spec)
    (seg,) = plan.segments
    assert len(seg.tiles) == n and 2 <= len(seg.strips) <= MAX_INPUTS - 2
    assert sorted(i for s in seg.strips for i in s.tiles) == list(range(n))
    assert max(len(s.tiles) for s in seg.strips) <= DIRECT_TILES
    out, serial = tmp_path / "many.mp4", tmp_path / "serial.mp4"
    render(spec, str(out), jobs=2)  # one segment, its strips drawn two at a time
    render(spec, str(serial), jobs=1)
    frame = read_frame(str(out), 0.5)
    assert _psnr(frame, read_frame(str(serial), 0.5)) >= 40
    assert probe(str(out)).duration == pytest.approx(1.0, abs=0.11)
    rects = grid_rects(n, w, h, gap=2)
    for i in (0, 1, 17, 74, 75, 148, 149):
        r = rects[i]
        assert close_to(colour_of(frame, r.x, r.y, r.w, r.h, margin=3), COLOURS[i % 4]), i
    assert measure_loudness(str(out)).integrated == pytest.approx(-16.0, abs=1.0)
    _only_expected_files(tmp_path, "many.mp4", "serial.mp4")


# --- titles, drift, guide+mix, time-varying layouts ---------------------------------------------

def _sound(path, rate=8000):
    return decode_audio(str(path), sample_rate=rate)


def _rms(samples, a, b, rate=8000):
    part = samples[int(a * rate):int(b * rate)]
    return float(np.sqrt(np.mean(np.square(part, dtype=np.float64))))


def _psnr(a, b):
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _text_top(frame):
    """The first row holding bright (text) pixels."""
    return int(np.nonzero(frame.max(axis=(1, 2)) > 200)[0].min())


def test_intro_and_credits_frame_the_mash_up(make_clip, tmp_path, read_frame, colour_of,
                                             close_to):
    clips = [{"id": c, "path": make_clip(color=c, freq=440 + 110 * k), "name": c.title(),
              "part": "alto"} for k, c in enumerate(COLOURS[:2])]
    spec = _spec(clips, duration=2.0, intro={"title": "Ode to Joy", "seconds": 1},
                 credits={"seconds": 1.2}, layout={"type": "grid", "gap": 4, "labels": True},
                 canvas={"width": W, "height": H, "fps": FPS, "background": "#000"})
    plan = plan_render(spec, segments=4)
    assert (plan.frames, plan.intro_frames, plan.credits_frames) == (105, 25, 30)
    assert plan.segments[0].end == 25 and plan.segments[-1].start == 75  # titles apart
    card = np.asarray(Image.open(intro_card(spec, str(tmp_path / "card.png"))).convert("RGB"))
    for segments in (1, 4):
        out = tmp_path / f"titled{segments}.mp4"
        result = render(spec, str(out), segments=segments, jobs=2)
        assert result.duration == pytest.approx(1 + 2 + 1.2, abs=1 / FPS)
        assert len(_frames_gray(ffmpeg_path(), str(out), W, H)) == 105
        intro = read_frame(str(out), 0.5)
        assert _psnr(intro, card) >= 35, "the intro shows the card"
        main = read_frame(str(out), 2.0)
        for rect, colour in zip(_tiles(2), COLOURS[:2], strict=True):
            assert close_to(colour_of(main, rect.x, rect.y, rect.w // 2, rect.h // 2), colour)
        early, late = read_frame(str(out), 3.3), read_frame(str(out), 3.9)
        assert early.max() > 200 and late.max() > 200, "the credits are drawn"
        assert _text_top(late) < _text_top(early), "the credits scroll up"
        assert colour_of(early, 0, 0, 20, 20) == (0, 0, 0)
        sound = _sound(out)
        assert len(sound) / 8000 == pytest.approx(4.2, abs=1 / FPS)
        assert _rms(sound, 0.05, 0.95) < 1e-3 and _rms(sound, 3.05, 4.15) < 1e-3  # silent
        assert _rms(sound, 1.2, 2.8) > 0.05
    _only_expected_files(tmp_path, "card.png", "titled1.mp4", "titled4.mp4")


def test_drift_maps_the_clip_clock_onto_the_guide(counter_dir, ffmpeg_exe, make_clip, tmp_path):
    counter = _counter_clip(counter_dir, ffmpeg_exe, fps=FPS, seconds=3, step=2)
    spec = _spec([{"id": "fast", "path": counter},
                  {"id": "long", "path": make_clip(color="red", duration=3.2, audio=False)}],
                 video={"preset": "ultrafast", "crf": 12})
    speed = 1.04  # 40000 ppm: far beyond a real clock, to make the mapping measurable
    spec = dataclasses.replace(spec, clips=(
        dataclasses.replace(spec.clips[0], drift_ppm=(speed - 1) * 1e6), spec.clips[1]))
    plan = plan_render(spec)
    assert plan.clips[0].speed == pytest.approx(speed)
    assert plan.clips[0].end == pytest.approx(3 / speed)
    out = tmp_path / "drift.mp4"
    render(spec, str(out), segments=2)
    values = _counter_values(_frames_gray(ffmpeg_exe, str(out), W, H), _tiles(2)[0], step=2)
    assert None not in values  # the tile is never empty: its last frame is held
    end = next(k for k, v in enumerate(values) if v == values[-1])
    assert all(abs(v - k * speed) <= 1 for k, v in enumerate(values[:end + 1])), values
    assert end == pytest.approx(3 * FPS / speed, abs=1.5)  # ends at 2.885 s, not 3
    sound = _sound(out)
    assert _rms(sound, 2.6, 2.84) > 0.05 and _rms(sound, 2.93, 3.15) < 1e-3


def test_a_small_drift_is_not_corrected():
    assert drift_speed(1 + 20e-6, 3.0, 25) == 1.0  # 60 µs over the clip: nothing to see
    assert drift_speed(1 + 20e-6, 3600.0, 25) == 1 + 20e-6  # 72 ms over an hour


def test_guide_plus_mix_is_normalised(make_clip, tmp_path):
    guide = str(tmp_path / "guide.wav")
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=880:sample_rate=44100:duration=2",
                "-af", "volume=-30dB", guide])
    spec = _spec([{"id": "a", "path": make_clip(color="red", freq=440, volume_db=-12)}],
                 audio={"mode": "guide+mix", "guide_path": guide, "guide_gain_db": 6.0,
                        "mix_gain_db": -12.0, "loudness_lufs": -20})
    out = tmp_path / "gm.mp4"
    result = render(spec, str(out))
    assert result.duration == pytest.approx(2.0, abs=1 / FPS)
    assert measure_loudness(str(out)).integrated == pytest.approx(-20.0, abs=1.0)
    sound = _sound(out, rate=8000)[4000:12000]
    spectrum = np.abs(np.fft.rfft(sound))
    guide_level, mix_level = spectrum[880], spectrum[440]  # 1 Hz bins
    # the guide at -30 + 6 dB, the mix at -12 - 12 dB: equal within a few dB
    assert 0.5 < guide_level / mix_level < 2.0


def test_spotlight_switches_and_hidden_clips_are_heard(make_clip, tmp_path, read_frame,
                                                        colour_of, close_to):
    clips = [{"id": c, "path": make_clip(color=c), "has_audio": False} for c in COLOURS[:3]]
    clips.append({"id": "yellow", "path": make_clip(color="yellow"), "hidden": True})
    spec = _spec(clips, duration=2.0, layout={"type": "spotlight", "gap": 4,
                                              "featured": [{"clip": "blue", "start": 1,
                                                            "end": 2}]})
    first, second = timeline(spec, 2.0)
    plan = plan_render(spec, segments=2)
    assert [s.start for s in plan.segments] == [0, 25]  # cut at the switch
    assert all(t.clip != 3 for s in plan.segments for t in s.tiles)
    out = tmp_path / "spot.mp4"
    render(spec, str(out), segments=2)
    for scene, t in ((first, 0.5), (second, 1.5)):
        frame = read_frame(str(out), t)
        for p in scene.placements:
            r = p.rect
            assert close_to(colour_of(frame, r.x, r.y, r.w, r.h), COLOURS[p.clip]), (t, p)
    big = max(second.placements, key=lambda p: p.rect.w)
    assert big.clip == 2 and big.rect.w > max(p.rect.w for p in first.placements)
    assert measure_loudness(str(out)).integrated == pytest.approx(-16.0, abs=1.0)  # heard
