"""Takes that rush or drag, pulled into time: a time map fitted by DTW and the mix
played through it, on generated phrases with known timing errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.signals import write_wav
from workers.media.audio import decode_audio
from workers.media.ffmpeg import ffmpeg_path
from workers.media.plan import plan_render
from workers.media.render import render_audio
from workers.media.spec import SpecError, parse_spec
from workers.media.timemap import RATE as MAP_RATE
from workers.media.timemap import TimeMap, fit_time_map, guide_time_expr, tempo_segments

RATE = 48000
STEPS = (0, 2, 4, 5, 7, 9, 11, 12, 7, 4)
OFFSET = 0.3


def _phrases() -> tuple[list[tuple[float, float]], list[float], float]:
    """Four phrases of eight half-second notes with a half-second breath between."""
    notes, starts, t = [], [], 0.5
    for _ in range(4):
        starts.append(t)
        for _ in range(8):
            notes.append((t, t + 0.45))
            t += 0.5
        t += 0.5
    return notes, starts, t + 0.5


NOTES, STARTS, DURATION = _phrases()


def slow(t: float) -> float:
    """A take 2 % slow: clip time of guide time t."""
    return OFFSET + 1.02 * t


def drifting(t: float) -> float:
    """A take that drags 60 ms late over each phrase and is back in time at the next."""
    for s in reversed(STARTS):
        if t >= s:
            return OFFSET + t + 0.06 * min(1.0, (t - s) / 4.0)
    return OFFSET + t


def rushing(t: float) -> float:
    """A take that rushes 60 ms early over each phrase and waits for the next."""
    return 2 * (OFFSET + t) - drifting(t)


def _sing(events, seconds: float, harmonics, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros(int(seconds * rate))
    for k, (t0, t1) in enumerate(events):
        f = 262.0 * 2 ** (STEPS[k % len(STEPS)] / 12)
        n0, n1 = int(t0 * rate), min(int(t1 * rate), x.size)
        tt = np.arange(max(0, n1 - n0)) / rate
        env = np.minimum(1, tt / 0.03) * np.exp(-tt * 1.5)
        x[n0:n1] += sum(np.sin(2 * np.pi * f * h * tt) / h for h in harmonics) * env * 0.2
    return x + 0.002 * rng.standard_normal(x.size)


def guide_signal(rate: int) -> np.ndarray:
    return _sing(NOTES, DURATION, (1, 2, 3, 4), rate, 1)


def take_signal(warp, rate: int) -> np.ndarray:
    return _sing([(warp(a), warp(b)) for a, b in NOTES], warp(DURATION) + 0.5, (1, 2), rate, 2)


def _mp4(path: Path, x: np.ndarray) -> str:
    wav = path.with_suffix(".wav")
    write_wav(wav, x, RATE)
    subprocess.run([ffmpeg_path(), "-y", "-v", "error", "-f", "lavfi", "-i",
                    f"color=c=gray:s=64x36:r=25:d={x.size / RATE:.3f}", "-i", str(wav),
                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "pcm_s16le",
                    "-ac", "2", "-shortest", "-f", "mov", str(path)],
                   check=True, capture_output=True, timeout=60)
    return str(path)


def phrase_starts(x: np.ndarray, rate: int) -> list[float]:
    """Where each phrase begins in ``x``: the first sample over 10 % of the peak after at
    least 0.3 s under it."""
    env = np.abs(x)
    level = 0.1 * env.max()
    loud = np.flatnonzero(env > level)
    gaps = np.flatnonzero(np.diff(loud) > 0.3 * rate)
    return [loud[0] / rate] + [loud[g + 1] / rate for g in gaps]


@pytest.mark.parametrize("warp", [slow, drifting, rushing],
                         ids=["2% slow", "drags 60 ms a phrase", "rushes 60 ms a phrase"])
def test_the_time_map_finds_every_note_within_10_ms(warp):
    m = fit_time_map(guide_signal(MAP_RATE), take_signal(warp, MAP_RATE), OFFSET)
    errors = [abs(m.clip_time(a) - warp(a)) for a, _ in NOTES]
    assert max(errors) <= 0.010
    # each phrase's entry to a few ms: the path cut a drag's ramp short at both ends and
    # came into the last phrase 8 ms late (12 ms after the render) until entries were
    # placed by their first notes' onsets
    assert max(abs(m.clip_time(s) - warp(s)) for s in STARTS) <= 0.004
    # and without it, one offset is far off somewhere
    assert max(abs(OFFSET + a - warp(a)) for a, _ in NOTES) > 0.05


@pytest.mark.parametrize("warp", [slow, drifting, rushing],
                         ids=["2% slow", "drags 60 ms a phrase", "rushes 60 ms a phrase"])
def test_the_mix_through_the_map_starts_every_phrase_with_the_guide(warp, tmp_path):
    m = fit_time_map(guide_signal(MAP_RATE), take_signal(warp, MAP_RATE), OFFSET)
    path = _mp4(tmp_path / "take.mov", take_signal(warp, RATE))

    def mixed(clip: dict) -> list[float]:
        spec = parse_spec({"version": 1, "canvas": {"width": 64, "height": 36, "fps": 25},
                           "audio": {"mode": "mix"}, "duration": DURATION,
                           "clips": [{"id": "t", "path": path, **clip}]})
        out = str(tmp_path / "mix.wav")
        render_audio(spec, plan_render(spec), out)
        return phrase_starts(decode_audio(out, sample_rate=RATE), RATE)

    truth = phrase_starts(guide_signal(RATE), RATE)
    assert len(truth) == 4
    mapped = mixed({"offset": round(float(m.clip_time(0.0)), 4), "time_map": m.to_list()})
    assert len(mapped) == 4
    # the target: within 10 ms of the guide at every phrase start (the drag's was
    # 11.7 ms while the path's entries were left a frame or two towards the tempo line)
    assert max(abs(a - b) for a, b in zip(mapped, truth, strict=True)) <= 0.010
    if warp is slow:  # one offset: each phrase later than the last (the drag is inside)
        plain = mixed({"offset": OFFSET})
        assert max(abs(a - b) for a, b in zip(plain, truth, strict=True)) > 0.05


def in_time(t: float) -> float:
    """A take exactly in time: clip time of guide time t."""
    return OFFSET + t


def hum(seconds: float, rate: int) -> np.ndarray:
    """A buzzing ground loop: 50 Hz and its harmonics, the odd ones strong, at about
    -32 dBFS (louder than the take's quiet notes)."""
    t = np.arange(int(seconds * rate)) / rate
    levels = {1: 0.0, 2: -10.0, 3: -4.0, 4: -14.0, 5: -8.0, 6: -18.0, 7: -12.0}
    x = sum(10 ** (db / 20) * np.sin(2 * np.pi * 50 * k * t) for k, db in levels.items())
    return 0.025 * x / np.sqrt(np.mean(x * x))


@pytest.mark.parametrize("with_hum", [False, True], ids=["clean", "50 Hz hum, cleaned"])
def test_a_take_in_time_is_left_at_its_offset(with_hum):
    # the map must never make a take worse than its one offset: a take exactly in time
    # keeps a flat map (said as not used), whatever noise the features hold
    from workers.media.sound import remove_hum

    take = take_signal(in_time, MAP_RATE)
    if with_hum:
        take = remove_hum(take + hum(take.size / MAP_RATE, MAP_RATE), MAP_RATE, 50.0)
    m = fit_time_map(guide_signal(MAP_RATE), take, OFFSET)
    assert not m.used
    g, c = np.array(m.guide), np.array(m.clip)
    assert np.abs(c - g - OFFSET).max() <= 1e-6


def test_a_map_that_only_moves_the_take_as_a_whole_is_not_used():
    # a constant shift is sync's to make: between an organ guide and a choir take the onset
    # curves favour their attacks' difference (a rendered chorale take exactly in time was
    # mapped 25 ms late), which the features cannot tell from the take's timing. A take
    # whose notes are all 30 ms late keeps its offset; the map is judged against the offset
    # moved as a whole within the shift limit
    def late(t: float) -> float:
        return OFFSET + 0.03 + t

    m = fit_time_map(guide_signal(MAP_RATE), take_signal(late, MAP_RATE), OFFSET)
    assert not m.used and m.gain <= 0.1
    assert np.abs(np.array(m.clip) - np.array(m.guide) - OFFSET).max() <= 1e-6


@pytest.mark.parametrize("warp", [slow, drifting], ids=["2% slow", "drags 60 ms a phrase"])
def test_a_map_that_helps_is_used(warp):
    m = fit_time_map(guide_signal(MAP_RATE), take_signal(warp, MAP_RATE), OFFSET)
    assert m.used and m.gain > 0.1


def test_a_take_beyond_the_tempo_limit_is_pulled_its_own_way_and_said():
    def five_slow(t: float) -> float:
        return OFFSET + 1.05 * t

    m = fit_time_map(guide_signal(MAP_RATE), take_signal(five_slow, MAP_RATE), OFFSET,
                     max_tempo=0.03)
    assert m.beyond_tempo == pytest.approx(1.05, abs=0.004)
    # the right way, by the limit: later in the take than the offset alone, never more
    end = STARTS[-1]
    assert OFFSET + end < m.clip_time(end) <= five_slow(end) + 0.01


def test_a_silent_take_keeps_its_offset():
    m = fit_time_map(guide_signal(MAP_RATE), np.zeros(int(DURATION * MAP_RATE)), OFFSET)
    assert not m.used and m.beyond_tempo == 0.0
    assert np.abs(np.array(m.clip) - np.array(m.guide) - OFFSET).max() <= 1e-6


def test_limits_hold_the_map():
    m = fit_time_map(guide_signal(MAP_RATE), take_signal(drifting, MAP_RATE), OFFSET,
                     max_shift=0.02, max_tempo=0.0)
    g, c = np.array(m.guide), np.array(m.clip)
    # no tempo: the map stays within ±20 ms of one offset
    assert np.ptp(c - g) <= 2 * 0.02 + 1e-6
    with pytest.raises(ValueError):
        fit_time_map(guide_signal(MAP_RATE), take_signal(slow, MAP_RATE), OFFSET, max_shift=2)


def test_tempo_segments_reach_every_knot():
    m = TimeMap((0.0, 1.0, 2.0, 3.0), (0.5, 1.52, 2.54, 3.54))
    first, segments = tempo_segments(m, 0.5)
    assert first == 0.0
    assert segments == [(pytest.approx(2.04), pytest.approx(1.02)),
                        (pytest.approx(1.0), pytest.approx(1.0))]
    # from inside the map: the guide time of that clip time, and what is left of it
    first, segments = tempo_segments(m, 1.01)
    assert first == pytest.approx(0.5) and segments[0][0] == pytest.approx(1.53)


@pytest.mark.parametrize("value,problem", [
    ([[0, 0]], "2 to"),
    ([[0, 0], [0, 1]], "must increase"),
    ([[0, 0], [1, 2.5]], "times its speed"),
    ("x", "pairs"),
])
def test_spec_checks_time_maps(value, problem):
    with pytest.raises(SpecError) as err:
        parse_spec({"version": 1, "clips": [{"id": "a", "path": "a.mp4", "time_map": value}]})
    assert problem in str(err.value)


# --- the picture follows the map ---------------------------------------------------------

FPS = 25
#: a map that pulls the middle of a take 80 ms later (the organizer's ±80 ms) at ±2.7 %
#: tempo, back in time by the end: guide s -> clip s
WARP_KNOTS = [[0.0, 0.3], [3.0, 3.3], [6.0, 6.38], [9.0, 9.3], [12.0, 12.3]]
#: clip frames where a flash (3 white frames) and a click start together
FLASH_FRAMES = (45, 121, 160, 196, 270)


def _flash_and_click_take(path: Path) -> str:
    """13 s at 25 fps: a grey picture that flashes white for three frames at each of
    FLASH_FRAMES, and a 1 kHz click (30 ms) starting at the same instants."""
    x = 0.001 * np.random.default_rng(3).standard_normal(13 * RATE)
    burst = np.arange(int(0.03 * RATE)) / RATE
    for frame in FLASH_FRAMES:
        n = round(frame / FPS * RATE)
        x[n:n + burst.size] += 0.5 * np.sin(2 * np.pi * 1000 * burst)
    wav = path.with_suffix(".wav")
    write_wav(wav, x, RATE)
    lit = "+".join(f"between(n,{f},{f + 2})" for f in FLASH_FRAMES)
    subprocess.run([ffmpeg_path(), "-y", "-v", "error", "-f", "lavfi", "-i",
                    f"color=c=gray:s=64x36:r={FPS}:d=13,drawbox=c=white:t=fill:enable='{lit}'",
                    "-i", str(wav), "-c:v", "libx264", "-preset", "ultrafast", "-g", "50",
                    "-c:a", "pcm_s16le", "-ac", "2", "-shortest", "-f", "mov", str(path)],
                   check=True, capture_output=True, timeout=60)
    return str(path)


def _flash_starts(path: str) -> list[float]:
    """Timeline seconds of the first bright frame of each flash in the render at ``path``."""
    raw = subprocess.run([ffmpeg_path(), "-v", "error", "-i", path, "-map", "0:v:0",
                          "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                         check=True, capture_output=True, timeout=60).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, 36 * 64).mean(axis=1)
    bright = frames > (frames.min() + frames.max()) / 2
    return [n / FPS for n in np.flatnonzero(bright[1:] & ~bright[:-1]) + 1]


def test_guide_time_expr_is_the_inverse_map_inside_its_window():
    m = TimeMap(*zip(*WARP_KNOTS, strict=True))
    seek = 2.0
    expr = guide_time_expr(m, seek, 2.0, 8.0)
    assert expr.count("max(") == 2  # only the knots inside the window (3.3, 6.38)
    for clip_t in (2.0, 3.3, 5.0, 6.38, 7.0, 8.0):
        value = eval(expr.replace("T", f"({clip_t - seek})"), {"max": max})  # noqa: S307
        assert value == pytest.approx(m.guide_time(clip_t), abs=1e-6)
        assert m.clip_time(m.guide_time(clip_t)) == pytest.approx(clip_t)


def test_the_picture_follows_the_map_with_the_sound_within_one_frame(tmp_path):
    from workers.media.render import render

    take = _flash_and_click_take(tmp_path / "take.mov")
    spec = parse_spec({"version": 1, "canvas": {"width": 64, "height": 36, "fps": FPS},
                       "audio": {"mode": "mix"}, "duration": 12.0,
                       "clips": [{"id": "t", "path": take, "offset": 0.3,
                                  "time_map": WARP_KNOTS}]})
    out = str(tmp_path / "out.mp4")
    render(spec, out, segments=3, jobs=1)  # cuts at 4 and 8 s: each tile's own window
    m = TimeMap(*zip(*WARP_KNOTS, strict=True))
    truth = [float(m.guide_time(f / FPS)) for f in FLASH_FRAMES]
    seen = _flash_starts(out)
    heard = phrase_starts(decode_audio(out, sample_rate=RATE), RATE)
    assert len(seen) == len(heard) == len(truth)
    # the warped sound's click where the map puts it (inside a segment atempo holds it
    # to about its window's grain), each flash within a frame of that click
    assert max(abs(a - b) for a, b in zip(heard, truth, strict=True)) <= 0.020
    assert max(abs(a - b) for a, b in zip(seen, heard, strict=True)) <= 1 / FPS + 1e-6
    # the map's overall tempo alone (one offset, speed 1) would show the middle flash
    # 80 ms (2 frames) early: the test tells the two apart
    assert max(abs(0.3 + t - f / FPS) for t, f in zip(truth, FLASH_FRAMES, strict=True)) \
        > 1.5 / FPS


def test_a_long_mix_graph_goes_to_ffmpeg_in_a_file(tmp_path, monkeypatch):
    """Groups of mapped takes make graphs over one argument's 128 KiB: handed over in a
    file (-/filter_complex), the mix is the same."""
    from workers.media import render as engine

    m = fit_time_map(guide_signal(MAP_RATE), take_signal(slow, MAP_RATE), OFFSET)
    path = _mp4(tmp_path / "take.mov", take_signal(slow, RATE))
    spec = parse_spec({"version": 1, "canvas": {"width": 64, "height": 36, "fps": 25},
                       "audio": {"mode": "mix"}, "duration": DURATION,
                       "clips": [{"id": "t", "path": path, "offset": round(float(
                           m.clip_time(0.0)), 4), "time_map": m.to_list()}]})
    monkeypatch.setattr(engine, "GRAPH_IN_FILE", 0)
    monkeypatch.setattr(engine, "MIX_ENGINE", "ffmpeg")  # the filtergraph mix
    out = str(tmp_path / "mix.wav")
    render_audio(spec, plan_render(spec), out)
    starts = phrase_starts(decode_audio(out, sample_rate=RATE), RATE)
    truth = phrase_starts(guide_signal(RATE), RATE)
    assert max(abs(a - b) for a, b in zip(starts, truth, strict=True)) <= 0.010
    assert not [p for p in tmp_path.iterdir() if "graph" in p.name]  # its file removed


# --- the splice warp (numpy) -------------------------------------------------------------

def _clicks(times: np.ndarray, seconds: float) -> np.ndarray:
    """Mono float32 at RATE: a 300 Hz ping (50 ms, decaying) at each of ``times``, over
    a little noise."""
    x = 0.001 * np.random.default_rng(5).standard_normal(int(seconds * RATE))
    tt = np.arange(int(0.05 * RATE)) / RATE
    ping = 0.5 * np.sin(2 * np.pi * 300 * tt) * np.exp(-tt * 120)
    for t in times:
        n = round(t * RATE)
        x[n:n + ping.size] += ping[: max(0, x.size - n)]
    return x.astype(np.float32)


def test_the_splice_warp_holds_every_ping_on_the_map_within_its_tolerance():
    from workers.media.mixdown import SPLICE_FADE, SPLICE_TOLERANCE, splice_warp

    m = TimeMap(*zip(*WARP_KNOTS, strict=True))
    pings = np.arange(0.5, 12.5, 0.23)
    x = _clicks(pings, 13.0)
    g, c = np.array(m.guide), np.array(m.clip)
    y = splice_warp(x, g * RATE, c * RATE, 12 * RATE, RATE)
    assert y.shape == (12 * RATE,) and y.dtype == np.float32
    truth = [float(m.guide_time(t)) for t in pings if 0.05 < m.guide_time(t) < 11.9]
    heard = [t for t in _onsets(y) if t < 11.9]
    assert len(heard) == len(truth)
    # a ping lands where the map says, within the splices' tolerance (plus what the map
    # moves during a crossfade, at 3 % at most, and a sample or two)
    assert max(abs(a - b) for a, b in zip(heard, truth, strict=True)) <= \
        SPLICE_TOLERANCE + 0.03 * SPLICE_FADE + 2 / RATE
    # the pitch is kept: a steady 440 Hz tone played 2 % slower is still at 440 Hz (a
    # resample would move it to 431 Hz)
    tone = np.sin(2 * np.pi * 440 * np.arange(6 * RATE) / RATE).astype(np.float32)
    slow = splice_warp(tone, [0.0, RATE], [0.0, 0.98 * RATE], 4 * RATE, RATE)
    spectrum = np.abs(np.fft.rfft(slow * np.hanning(slow.size)))
    assert abs(np.fft.rfftfreq(slow.size, 1 / RATE)[np.argmax(spectrum)] - 440) <= 0.5


def _onsets(y: np.ndarray) -> list[float]:
    env = np.abs(y)
    loud = np.flatnonzero(env > 0.1 * env.max())
    gaps = np.flatnonzero(np.diff(loud) > 0.1 * RATE)
    return [loud[0] / RATE] + [loud[k + 1] / RATE for k in gaps]


def test_a_map_of_slope_one_is_a_plain_copy_and_stereo_stays_stereo():
    from workers.media.mixdown import splice_warp

    x = np.random.default_rng(1).standard_normal((RATE, 2)).astype(np.float32)
    y = splice_warp(x, [0.0, RATE], [100.0, RATE + 100.0], RATE // 2, RATE)
    assert y.shape == (RATE // 2, 2)
    assert np.array_equal(y, x[100:100 + RATE // 2])
    # before the take starts (a negative read position): silence, then the take
    y = splice_warp(x, [0.0], [-480.0], 960, RATE)
    assert not y[:480].any() and np.array_equal(y[480:], x[:480])
