import json
import os

import pytest

from workers.media.probe import (
    MediaInfo,
    ProbeLimits,
    ProbeRejected,
    media_duration,
    parse_framecrc,
    parse_input_report,
    probe,
)


def test_landscape_clip(make_clip):
    path = make_clip(width=192, height=108, duration=2.0, fps=25)
    info = probe(path)
    assert isinstance(info, MediaInfo)
    assert info.path == path
    assert "mp4" in info.container.split(",")
    assert info.duration == pytest.approx(2.0, abs=0.05)
    assert (info.width, info.height, info.rotation) == (192, 108, 0)
    assert info.fps == 25
    assert info.video_codec == "h264"
    assert info.has_audio and info.audio_codec == "aac"
    assert info.sample_rate == 48000 and info.channels == 1
    assert info.size_bytes == os.path.getsize(path)
    json.dumps(info.to_dict())
    assert info.to_dict()["width"] == 192


def test_portrait_clip(make_clip):
    info = probe(make_clip(width=108, height=192))
    assert (info.width, info.height, info.rotation) == (108, 192, 0)


@pytest.mark.parametrize("rotation", [90, 270, 180])
def test_phone_rotation_gives_the_displayed_size(make_clip, rotation):
    info = probe(make_clip(width=192, height=108, rotation=rotation))
    assert info.rotation == rotation
    expected = (108, 192) if rotation in (90, 270) else (192, 108)
    assert (info.width, info.height) == expected


def test_clip_without_audio(make_clip):
    info = probe(make_clip(width=192, height=108, audio=False))
    assert not info.has_audio
    assert info.audio_codec is None and info.sample_rate is None and info.channels is None


def test_webm_without_duration_is_measured(make_clip):
    path = make_clip(width=192, height=108, container="webm-live", duration=2.0)
    info = probe(path)
    assert info.container == "matroska,webm"
    assert info.video_codec == "vp8" and info.audio_codec == "opus"
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert media_duration(path) == pytest.approx(2.0, abs=0.1)


def test_mov_container(make_clip):
    info = probe(make_clip(width=192, height=108, container="mov"))
    assert "mov" in info.container.split(",")


@pytest.mark.parametrize("kind, code, words", [
    ("png", "not_video", "PNG image"),
    ("jpeg", "not_video", "JPEG photo"),
    ("text", "not_video", "text file"),
    ("html", "not_video", "text file"),
    ("pdf", "not_video", "PDF document"),
    ("zip", "not_video", "ZIP"),
    ("wav", "not_video", "WAV audio"),
    ("mp3", "not_video", "MP3 audio"),
    ("m4a", "not_video", "M4A audio"),
    ("mka_audio", "no_video_stream", "no picture"),
    ("nut", "unsupported_format", "cannot read this kind of file"),
    ("empty", "empty", "empty"),
    ("truncated_mp4", "unreadable", "damaged or incomplete"),
])
def test_rejections_say_what_is_wrong_and_what_to_do(make_sample, kind, code, words):
    with pytest.raises(ProbeRejected) as caught:
        probe(make_sample(kind))
    exc = caught.value
    assert exc.code == code
    assert words in exc.reason
    assert str(exc) == exc.reason
    assert "upload" in exc.reason.lower()  # tells the participant what to do next


def test_garbage_is_rejected(make_sample):
    with pytest.raises(ProbeRejected) as caught:
        probe(make_sample("garbage"))
    assert caught.value.code in ("unreadable", "unsupported_format")


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(ProbeRejected) as caught:
        probe(str(tmp_path / "gone.mp4"))
    assert caught.value.code == "unreadable"


def test_limits(make_clip):
    path = make_clip(width=192, height=108, duration=2.0)
    with pytest.raises(ProbeRejected) as short:
        probe(path, ProbeLimits(min_duration=3.0))
    assert short.value.code == "too_short" and "2.0 seconds" in short.value.reason
    with pytest.raises(ProbeRejected) as long:
        probe(path, ProbeLimits(max_duration=1.0))
    assert long.value.code == "too_long"
    with pytest.raises(ProbeRejected) as large:
        probe(path, ProbeLimits(max_width=160))
    assert large.value.code == "frame_too_large" and "192×108" in large.value.reason
    with pytest.raises(ProbeRejected) as fast:
        probe(path, ProbeLimits(max_fps=24))
    assert fast.value.code == "unsupported_format"
    # 192x108 at 25 fps is 518,400 pixels per second
    with pytest.raises(ProbeRejected) as heavy:
        probe(path, ProbeLimits(max_pixel_rate=500_000))
    assert heavy.value.code == "too_many_pixels" and "192×108" in heavy.value.reason
    assert probe(path, ProbeLimits(max_pixel_rate=520_000)).width == 192


def test_a_rotated_portrait_within_limits_is_accepted(make_clip):
    # 192x108 turned upright is 108x192: the long side is compared with max_width
    info = probe(make_clip(width=192, height=108, rotation=90),
                 ProbeLimits(max_width=192, max_height=108))
    assert (info.width, info.height) == (108, 192)


def test_file_name_is_never_read_as_a_protocol(make_clip, tmp_path):
    odd = tmp_path / "pipe:0"
    odd.write_bytes(open(make_clip(width=192, height=108), "rb").read())
    assert probe(str(odd)).width == 192


REPORT = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x, from y.mp4':
  Metadata:
    major_brand     : isom
  Duration: 00:01:02.50, start: 0.000000, bitrate: 197 kb/s
  Stream #0:0[0x1](und): Video: hevc (Main) (hvc1 / 0x31637668), yuv420p(tv), 1920x1080, \
8000 kb/s, 29.97 fps, 29.97 tbr, 600 tbn (default)
    Side data:
      Display Matrix: rotation of -90.00 degrees
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 128 kb/s
  Stream #0:2[0x3](und): Video: mjpeg (Baseline), yuvj420p, 300x300, 90k tbr (attached pic)
At least one output file must be specified
"""


def test_parse_input_report():
    report = parse_input_report(REPORT)
    assert report is not None
    assert report.container == "mov,mp4,m4a,3gp,3g2,mj2"
    assert report.duration == pytest.approx(62.5)
    video = report.video
    assert video is not None and video.index == 0
    assert (video.codec, video.width, video.height, video.fps, video.rotation) == (
        "hevc", 1920, 1080, 29.97, 90)
    assert report.audio is not None
    assert (report.audio.sample_rate, report.audio.channels) == (44100, 2)
    assert report.streams[2].attached_pic


def test_parse_input_report_without_input():
    assert parse_input_report("x.mp4: Invalid data found when processing input\n") is None


def test_browser_time_base_is_not_a_frame_rate():
    text = REPORT.replace("29.97 fps, 29.97 tbr", "1k tbr, 1k tbn")
    report = parse_input_report(text)
    assert report is not None and report.video is not None
    assert report.video.fps is None and report.video.tbr == 1000


def test_packets_without_a_pts_end_at_their_dts_plus_the_stream_delay():
    """MPEG-PS: most packets carry only a dts (framecrc prints the pts as -2^63)."""
    nopts = -(1 << 63)
    listing = "\n".join([
        "#tb 0: 1/90000", "#tb 1: 1/90000",
        "0,      -2098,        902,     3000,     4963, 0xa774f525",
        "1,          0,          0,     2160,     1152, 0xe9f690d4",
        "0,        902,       3902,     3000,      327, 0x671652ae, F=0x0",
        f"0,       3902, {nopts},     3000,      229, 0x6e8f2677, F=0x0",
        f"0,       6902, {nopts},     3000,      225, 0x8d2b2572, F=0x0",
        "1,       2160,       2160,     2160,     1152, 0x90f4c7d6",
        f"1, {nopts}, {nopts},     2160,     1152, 0x90f4c7d6",
    ])
    ends = parse_framecrc(listing, audio=True)
    assert ends.video_frames == 4
    # last frame: dts 6902 + delay 3000 + duration 3000 = 12902 ticks, from pts 0
    assert ends.video_end == pytest.approx(12902 / 90000)
    assert ends.audio_end == pytest.approx(4320 / 90000)


def _listing(video: list[int], audio: list[int], *, frame: int = 33, packet: int = 20) -> str:
    """A framecrc listing (1 ms time base) of video and audio packets starting at the
    given times (ms), in time order."""
    rows = [(t, 0, frame) for t in video] + [(t, 1, packet) for t in audio]
    return "\n".join(["#tb 0: 1/1000", "#tb 1: 1/1000"] + [
        f"{s}, {t}, {t}, {d}, 100, 0x00000000" for t, s, d in sorted(rows)])


def test_a_gap_in_the_sound_or_in_both_streams_is_a_hole_a_gap_in_the_picture_is_not():
    """A screen recording sends no frame while nothing moves: the picture's packets jump,
    the sound's go on. A damaged middle the demuxer skipped, or a paused recorder, leaves
    a gap in both (or in the sound): that is missing."""
    frames = [t * 33 for t in range(30)] + [3000 + t * 33 for t in range(30)]
    sound = list(range(0, 4000, 20))
    still = parse_framecrc(_listing(frames, sound), audio=True)
    assert still.hole < 0.05
    both = parse_framecrc(_listing(frames, [t for t in sound if not 1000 <= t < 3000]),
                          audio=True)
    assert both.hole == pytest.approx(2.0, abs=0.05)
    assert both.hole_at == pytest.approx(1.0, abs=0.05)
    steady = [t * 33 for t in range(120)]
    mute = parse_framecrc(_listing(steady, [t for t in sound if not 1000 <= t < 2000]),
                          audio=True)
    assert mute.hole < 0.05
    assert mute.sound_hole == pytest.approx(1.0, abs=0.05)
    assert mute.sound_hole_at == pytest.approx(1.0, abs=0.05)
    # without sound a picture gap cannot be told from a still part: not a hole
    assert parse_framecrc(_listing(frames, []), audio=False).hole == 0.0
