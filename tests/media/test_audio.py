"""decode_audio on tiny files that ffmpeg generates here."""

from __future__ import annotations

import numpy as np
import pytest

from workers.media.audio import NoAudio, decode_audio
from workers.media.ffmpeg import FFmpegError, run_ffmpeg


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    tone = d / "tone.m4a"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2",
                "-ac", "2", "-c:a", "aac", "-b:a", "96k", str(tone)], timeout=60)
    mute_video = d / "mute.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "color=c=blue:size=64x64:rate=10:duration=1",
                "-c:v", "mpeg4", str(mute_video)], timeout=60)
    junk = d / "junk.mp4"
    junk.write_bytes(b"this is not a media file" * 10)
    return {"tone": str(tone), "mute": str(mute_video), "junk": str(junk)}


def test_decodes_to_mono_float32_at_the_requested_rate(media):
    x = decode_audio(media["tone"], sample_rate=16000)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 32000) < 1600  # 2 s, give or take the codec's priming
    assert 0.05 < float(np.abs(x).max()) <= 1.0
    spectrum = np.abs(np.fft.rfft(x[4000:20000]))
    peak_hz = np.argmax(spectrum) * 16000 / 16000
    assert abs(peak_hz - 440) < 3


def test_max_seconds_stops_early(media):
    x = decode_audio(media["tone"], sample_rate=8000, max_seconds=0.5)
    assert abs(len(x) - 4000) <= 80


def test_file_without_sound_track_raises_no_audio(media):
    with pytest.raises(NoAudio) as info:
        decode_audio(media["mute"])
    assert "no audio to sync" in info.value.reason


def test_unreadable_file_is_an_ffmpeg_error_not_no_audio(media):
    with pytest.raises(FFmpegError):
        decode_audio(media["junk"])
