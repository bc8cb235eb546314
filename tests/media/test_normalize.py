import os

import pytest

from workers.media.ffmpeg import FFmpegError, ffmpeg_report
from workers.media.normalize import (
    TileFormat,
    make_thumbnail,
    measure_loudness,
    normalize_argv,
    normalize_clip,
)
from workers.media.probe import MediaInfo, parse_input_report, probe

TILE = TileFormat(width=320, height=180, fps=30)


def _normalized(src: str, dst: str) -> MediaInfo:
    normalize_clip(src, dst, probe(src), TILE)
    return probe(dst)


def test_landscape_clip_fills_the_tile(make_clip, tmp_path, read_frame, colour_of, close_to):
    src = make_clip(width=192, height=108, fps=25, color="red", duration=2.0)
    out = _normalized(src, str(tmp_path / "n.mp4"))
    assert (out.width, out.height, out.rotation) == (320, 180, 0)
    assert out.fps == 30
    assert out.video_codec == "h264" and out.audio_codec == "aac"
    assert (out.sample_rate, out.channels) == (48000, 2)
    assert out.duration == pytest.approx(2.0, abs=0.05)
    frame = read_frame(out.path, 1.0)
    assert close_to(colour_of(frame, 0, 0, 320, 180), "red")


def test_constant_frame_rate_and_yuv420p(make_clip, tmp_path):
    dst = str(tmp_path / "n.mp4")
    _normalized(make_clip(width=192, height=108, fps=25, duration=2.0), dst)
    status, text = ffmpeg_report(["-i", dst, "-map", "0:v", "-c", "copy", "-f", "null", "-"])
    assert status == 0
    assert "yuv420p" in text
    frames = int(text.rsplit("frame=", 1)[1].split()[0])
    assert frames == 60  # 2 s at 30 fps, from a 25 fps source


def test_portrait_clip_is_pillarboxed(make_clip, tmp_path, read_frame, colour_of, close_to):
    src = make_clip(width=108, height=192, color="lime")
    out = _normalized(src, str(tmp_path / "p.mp4"))
    assert (out.width, out.height) == (320, 180)
    frame = read_frame(out.path, 0.5)
    assert close_to(colour_of(frame, 140, 40, 40, 100), "lime")  # centre
    assert close_to(colour_of(frame, 0, 0, 100, 180, margin=0), "black")  # left bar
    assert close_to(colour_of(frame, 220, 0, 100, 180, margin=0), "black")  # right bar


def test_rotation_is_applied_and_not_left_in_metadata(make_clip, tmp_path, read_frame,
                                                      colour_of, close_to):
    src = make_clip(width=192, height=108, color="blue", rotation=90)
    dst = str(tmp_path / "r.mp4")
    out = _normalized(src, dst)
    assert out.rotation == 0
    _, text = ffmpeg_report(["-i", dst])
    assert "rotation of" not in text and "Display Matrix" not in text
    report = parse_input_report(text)
    assert report is not None and report.video is not None
    assert (report.video.width, report.video.height) == (320, 180)
    frame = read_frame(dst, 0.5)  # upright 9:16 picture, pillarboxed in the 16:9 tile
    assert close_to(colour_of(frame, 140, 40, 40, 100), "blue")
    assert close_to(colour_of(frame, 0, 0, 100, 180, margin=0), "black")


def test_clip_without_audio_gets_silence_of_the_same_length(make_clip, tmp_path):
    src = make_clip(width=192, height=108, audio=False, duration=2.0)
    out = _normalized(src, str(tmp_path / "s.mp4"))
    assert out.has_audio and out.audio_codec == "aac" and out.channels == 2
    assert out.duration == pytest.approx(2.0, abs=0.05)
    assert measure_loudness(out.path).integrated == float("-inf")


def test_webm_from_a_browser(make_clip, tmp_path):
    out = _normalized(make_clip(width=192, height=108, container="webm-live"),
                      str(tmp_path / "w.mp4"))
    assert (out.width, out.height, out.fps) == (320, 180, 30)
    assert out.duration == pytest.approx(2.0, abs=0.1)


def test_sound_keeps_its_level(make_clip, tmp_path):
    src = make_clip(width=192, height=108, volume_db=-12.0)
    out = _normalized(src, str(tmp_path / "l.mp4"))
    # mono becomes stereo at -3 dB a channel, so the loudness stays the same
    assert measure_loudness(out.path).integrated == pytest.approx(
        measure_loudness(src).integrated, abs=1.0)


def test_argv_is_a_list_of_plain_arguments(make_clip, tmp_path):
    src = make_clip(width=192, height=108)
    argv = normalize_argv(src, str(tmp_path / "x.mp4"), probe(src), TILE)
    assert all(isinstance(a, str) for a in argv)
    assert argv[argv.index("-i") + 1] == f"file:{os.path.abspath(src)}"
    assert "-format_whitelist" in argv and "+faststart" in argv


def test_failure_leaves_no_output_and_no_temp(make_sample, make_clip, tmp_path):
    info = probe(make_clip(width=192, height=108))
    broken = make_sample("truncated_mp4")
    dst = tmp_path / "n.mp4"
    with pytest.raises(FFmpegError):
        normalize_clip(broken, str(dst), info, TILE)
    assert list(tmp_path.iterdir()) == []


def test_thumbnail(make_clip, tmp_path):
    src = make_clip(width=192, height=108)
    dst = tmp_path / "t.jpg"
    make_thumbnail(src, str(dst))
    data = dst.read_bytes()
    assert data[:3] == b"\xff\xd8\xff"
    from PIL import Image

    with Image.open(dst) as image:
        assert image.size == (320, 180)
    assert [p.name for p in tmp_path.iterdir()] == ["t.jpg"]


def test_thumbnail_after_the_end_falls_back_to_the_first_frame(make_clip, tmp_path):
    dst = tmp_path / "t.jpg"
    make_thumbnail(make_clip(), str(dst), at=60.0, width=64)
    assert dst.read_bytes()[:3] == b"\xff\xd8\xff"


def test_tile_format_is_checked():
    with pytest.raises(ValueError):
        TileFormat(width=321)
    with pytest.raises(ValueError):
        TileFormat(fps=0)
