"""The phone and camera files of ``../shared/cases/media`` (beside the clone), as they
are: three that came out wrong and six that must stay right. Each sound carries a 1 kHz
beep at 0.5 s into every second, so the normalized output is checked for what it shows
(the displayed shape), what it plays (which track, the beeps where the source plays them)
and its length.
Skipped when the folder is absent."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from workers.media.ffmpeg import ffmpeg_path
from workers.media.normalize import TileFormat, normalize_clip
from workers.media.probe import ProbeLimits, ProbeRejected, parse_input_report, probe

from .measures import decode_sound, dominant_frequency, mean_saturation_and_luma

CASES = Path(__file__).resolve().parents[2].parent / "shared" / "cases" / "media"
pytestmark = pytest.mark.skipif(not CASES.is_dir(), reason=f"no shared cases at {CASES}")

TILE = TileFormat(width=320, height=180, fps=30)
ANY = ProbeLimits(min_side=2)


def _normalized(name: str, tmp_path: Path) -> str:
    src = str(CASES / name)
    out = str(tmp_path / (name + ".mp4"))
    normalize_clip(src, out, probe(src), TILE)
    return out


def _beep_times(path: str, stream: str = "a:0") -> np.ndarray:
    """Times (s) at which the 1 kHz beeps start (10 ms windows)."""
    sound = decode_sound(path, stream=stream)
    energy = np.sqrt((sound[: sound.size // 480 * 480].reshape(-1, 480) ** 2).mean(axis=1))
    loud = energy > energy.max() / 3
    starts = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
    return starts * 0.01


def _picture_box(path: str, t: float = 0.2) -> tuple[int, int]:
    """Width and height of the non-black part of the frame at ``t``."""
    raw = subprocess.run(
        [ffmpeg_path(), "-v", "error", "-ss", str(t), "-i", path, "-frames:v", "1",
         "-vf", "format=gray", "-f", "rawvideo", "-"],
        capture_output=True, timeout=60, check=True).stdout
    gray = np.frombuffer(raw, np.uint8).reshape(TILE.height, TILE.width)
    lit = gray > 24
    cols, rows = np.flatnonzero(lit.any(axis=0)), np.flatnonzero(lit.any(axis=1))
    return int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def _frame(path: str, t: float) -> np.ndarray:
    raw = subprocess.run(
        [ffmpeg_path(), "-v", "error", "-ss", str(t), "-i", path, "-frames:v", "1",
         "-vf", f"scale={TILE.width}:{TILE.height},format=rgb24", "-f", "rawvideo", "-"],
        capture_output=True, timeout=60, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(TILE.height, TILE.width, 3)


# --- wrong before, right now ------------------------------------------------------------------

def test_iphone_hlg_looks_like_its_sdr_twin_and_is_tagged_bt709(tmp_path):
    out = _normalized("hdr-hlg-iphone.mov", tmp_path)
    twin = _normalized("hdr-hlg-iphone.sdr-twin.mp4", tmp_path)
    text = subprocess.run([ffmpeg_path(), "-hide_banner", "-i", out], capture_output=True,
                          text=True).stderr
    colour = parse_input_report(text).video.colour
    assert (colour.matrix, colour.primaries, colour.transfer) == ("bt709",) * 3
    for t in (0.2, 1.2, 2.2):
        sat, luma = mean_saturation_and_luma(_frame(out, t))
        twin_sat, twin_luma = mean_saturation_and_luma(_frame(twin, t))
        assert sat == pytest.approx(twin_sat, rel=0.15), t
        assert luma == pytest.approx(twin_luma, rel=0.2), t


def test_upload_cut_at_half_is_rejected_as_incomplete():
    with pytest.raises(ProbeRejected) as caught:
        probe(str(CASES / "cut-half-faststart.mp4"))
    assert caught.value.code == "incomplete"
    assert "upload the video again" in caught.value.reason


def test_disabled_first_audio_track_is_not_the_one_played(tmp_path):
    out = _normalized("disabled-first-audio.mov", tmp_path)
    sound = decode_sound(out)
    assert 20 * np.log10(np.abs(sound).max()) > -20  # it was mute: peak -91 dB
    assert dominant_frequency(out) == pytest.approx(1000, abs=15)


# --- right before, still right ----------------------------------------------------------------

@pytest.mark.parametrize("name, box, duration", [
    ("ok-rot90_portrait.mov", (101, 180), 3.0),  # upright: 180x320 in a 320x180 tile
    ("ok-vfr_screenrec.mp4", (83, 180), 4.0),  # 296x640
    ("ok-slomo_240fps.mov", (320, 180), 3.0),
    ("ok-mediarecorder_noduration.webm", (240, 180), 4.0),  # 4:3
    ("ok-editlist_negative_ts.mp4", (320, 180), 3.1),
    ("ok-av1_audio_first.mp4", (320, 180), 3.0),
    ("disabled-first-audio.mov", (320, 180), 3.0),
    ("hdr-hlg-iphone.mov", (320, 180), 3.0),
])
def test_shown_and_played_as_a_player_does(tmp_path, name, box, duration):
    out = _normalized(name, tmp_path)
    info = probe(out, ANY)
    assert info.duration == pytest.approx(duration, abs=0.08)
    w, h = _picture_box(out)
    assert w == pytest.approx(box[0], abs=4) and h == pytest.approx(box[1], abs=4)
    # the sound keeps its timing: the beeps fall where they do when the source plays
    played = probe(str(CASES / name)).audio_stream
    expected = _beep_times(str(CASES / name), str(played))
    beeps = _beep_times(out)
    assert len(beeps) == len(expected) >= 3
    assert np.abs(beeps - expected).max() <= 0.03, (list(beeps), list(expected))
