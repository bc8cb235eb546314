"""The sound editor's work on takes with known faults: measured and fixed in the mix.

Takes are generated here (numpy tones with pauses, mains hum and its harmonics, steady
noise, a level) and muxed with a tiny picture, then mixed by the ffmpeg engine
(render_audio) as a render does; the results are measured on the rendered WAV.
"""

from __future__ import annotations

import math
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.signals import write_wav
from workers.media.audio import decode_audio
from workers.media.ffmpeg import ffmpeg_path
from workers.media.plan import plan_render
from workers.media.render import render_audio
from workers.media.sound import (
    ANALYSIS_RATE,
    analyze_take,
    clean_take,
    detect_hum,
    hum_level_db,
    match_gain,
    match_levels,
    noise_floor_db,
    pan_gains,
    part_balance,
    part_loudness,
    take_filter,
)
from workers.media.spec import SpecError, parse_spec

RATE = 48000
SECONDS = 4.0


def tone_power_db(samples: np.ndarray, rate: int, freq: float) -> float:
    """Power (dB) of ``samples`` within ±2 Hz of ``freq``."""
    from scipy.signal import welch

    f, p = welch(samples.astype(np.float64), fs=rate, nperseg=min(samples.size, rate * 2),
                 scaling="spectrum")
    band = (f >= freq - 2) & (f <= freq + 2)
    return 10 * math.log10(float(p[band].sum()) + 1e-30)


def write_take(path: Path, *, freq: float = 440.0, level: float = 0.2, hum_hz: float = 0.0,
               hum: float = 0.0, noise: float = 0.0, seconds: float = SECONDS,
               until: float | None = None) -> str:
    """A take: a tone of ``freq`` Hz sung in notes (0.7 s on, 0.3 s off) at amplitude
    ``level``, with mains hum (``hum`` amplitude, harmonics falling as 1/k), white noise,
    silent after ``until`` s; muxed with a 64x36 picture as an MP4."""
    if path.exists():
        return str(path)
    t = np.arange(int(RATE * seconds)) / RATE
    notes = ((t % 1.0) < 0.7).astype(float)
    if until is not None:
        notes *= t < until
    x = level * np.sin(2 * np.pi * freq * t) * notes
    if hum_hz:
        for k in range(1, 11):
            x += hum / k * np.sin(2 * np.pi * hum_hz * k * t + k)
    if noise:
        x += noise * np.random.default_rng(7).standard_normal(t.size)
    wav = path.with_suffix(".wav")
    write_wav(wav, x, RATE)
    subprocess.run([ffmpeg_path(), "-y", "-v", "error", "-f", "lavfi", "-i",
                    f"color=c=gray:s=64x36:r=25:d={seconds}", "-i", str(wav),
                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-b:a", "256k",
                    "-ac", "2", "-ar", str(RATE), "-shortest", str(path)],
                   check=True, capture_output=True, timeout=60)
    return str(path)


@pytest.fixture(scope="module")
def takes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("takes")
    return {
        "clean": write_take(d / "clean.mp4", freq=440.0),
        "hum50": write_take(d / "hum50.mp4", freq=440.0, hum_hz=50.0, hum=0.03),
        "hum60": write_take(d / "hum60.mp4", freq=523.25, hum_hz=60.0, hum=0.03),
        "loud": write_take(d / "loud.mp4", freq=660.0, level=0.2 * 10 ** (12 / 20) / 2.5),
        "quiet": write_take(d / "quiet.mp4", freq=550.0, level=0.2 / 2.5),
        "noisy": write_take(d / "noisy.mp4", freq=330.0, noise=0.01),
        "short": write_take(d / "short.mp4", freq=440.0, until=2.0),
        "bass": write_take(d / "bass.mp4", freq=220.0, level=0.2 * 10 ** (6 / 20) / 2.5),
    }


def mix(tmp_path: Path, clips: list[dict], **audio) -> str:
    spec = parse_spec({"version": 1, "canvas": {"width": 64, "height": 36, "fps": 25},
                       "audio": {"mode": "mix", **audio}, "clips": clips,
                       "duration": SECONDS})
    out = str(tmp_path / "mix.wav")
    render_audio(spec, plan_render(spec), out)
    return out


def stereo(path: str) -> np.ndarray:
    with wave.open(path) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data.reshape(-1, 2).astype(np.float64) / 32768


# --- measuring -------------------------------------------------------------------------------

def test_hum_is_found_at_its_mains_frequency_and_not_in_a_clean_take(takes):
    assert analyze_take(takes["hum50"]).hum_hz == 50.0
    assert analyze_take(takes["hum60"]).hum_hz == 60.0
    assert analyze_take(takes["clean"]).hum_hz == 0.0


def test_a_tone_at_a_multiple_of_50_hz_alone_is_not_hum():
    t = np.arange(ANALYSIS_RATE * 4) / ANALYSIS_RATE
    note = 0.3 * np.sin(2 * np.pi * 200.0 * t)  # G3-ish at exactly 200 Hz: one harmonic
    assert detect_hum(note.astype(np.float32), ANALYSIS_RATE)[0] == 0.0


def test_noise_floor_is_the_level_of_the_pauses():
    rng = np.random.default_rng(1)
    rate = 16000
    x = 0.001 * rng.standard_normal(rate * 4)  # -60 dBFS RMS noise
    x[: rate * 2] += 0.5 * np.sin(2 * np.pi * 440 * np.arange(rate * 2) / rate)
    assert noise_floor_db(x, rate) == pytest.approx(-60.0, abs=1.0)
    with pytest.raises(ValueError):
        noise_floor_db(np.zeros(10), rate)


def test_take_loudness_is_measured_in_lufs(takes):
    loud = analyze_take(takes["loud"]).loudness_lufs
    quiet = analyze_take(takes["quiet"]).loudness_lufs
    assert loud - quiet == pytest.approx(12.0, abs=1.0)


def test_match_gain_brings_takes_to_the_reference_within_limits():
    assert match_gain(-35.0) == pytest.approx(12.0)
    assert match_gain(-11.0) == pytest.approx(-12.0)
    assert match_gain(-90.0) == 0.0  # silent: never lift the noise
    assert match_gain(None) == 0.0
    assert match_gain(-55.0) == 24.0  # capped
    stats = part_loudness([("alto", -20.0), ("alto", -30.0), ("alto", None), ("bass", -25.0)])
    assert stats["alto"] == {"low": -30.0, "median": -25.0, "high": -20.0, "count": 2}


def test_part_balance_evens_the_parts_sums_and_keeps_the_whole():
    balance = part_balance({"alto": 3, "bass": 1})
    # each part's sum (n takes add in power) as loud as the other's ...
    assert 10 * math.log10(3) + balance["alto"] == pytest.approx(balance["bass"])
    # ... and the whole mix as loud as its four takes at the match level
    assert 3 * 10 ** (balance["alto"] / 10) + 10 ** (balance["bass"] / 10) == pytest.approx(4)
    assert part_balance({"solo": 1, "tutti": 10_000})["solo"] == 12.0  # limited
    assert part_balance({}) == {}
    levels = match_levels([("a", "alto", -20.0), ("b", "alto", -30.0), ("c", "bass", -26.0),
                           ("d", "bass", None), ("e", "bass", -90.0)])
    assert levels["a"] - levels["b"] == pytest.approx(-10.0)  # matched inside the part
    assert levels["d"] == levels["e"] == 0.0  # unmeasured, silent: left alone, not counted
    assert levels["c"] == pytest.approx(match_gain(-26.0) + part_balance(
        {"alto": 2, "bass": 1})["bass"])


# --- the mix ---------------------------------------------------------------------------------

def test_loudness_match_per_part_evens_the_takes_and_the_parts_within_1_lu(takes, tmp_path):
    """Three altos recorded 12 dB and 8 dB apart, one bass 6 dB hot: after the match each
    alto is as loud as the others and the bass as loud as the three altos together."""
    parts = {"loud": "alto", "quiet": "alto", "clean": "alto", "bass": "bass"}
    tones = {"loud": 660.0, "quiet": 550.0, "clean": 440.0, "bass": 220.0}
    levels = match_levels((k, part, analyze_take(takes[k]).loudness_lufs)
                          for k, part in parts.items())
    out = mix(tmp_path, [{"id": k, "path": takes[k], "part": parts[k], "gain_db": levels[k]}
                         for k in parts])
    m = decode_audio(out, sample_rate=RATE)
    power = {k: tone_power_db(m, RATE, f) for k, f in tones.items()}
    altos = [power[k] for k in ("loud", "quiet", "clean")]
    assert max(altos) - min(altos) <= 1.0
    alto_sum = 10 * math.log10(sum(10 ** (p / 10) for p in altos))
    assert abs(power["bass"] - alto_sum) <= 1.0
    # a match of each take alone (no part balance) leaves the bass 4.8 dB under its
    # section's partner
    alone = mix(tmp_path, [{"id": k, "path": takes[k], "part": parts[k],
                            "gain_db": match_gain(analyze_take(takes[k]).loudness_lufs)}
                           for k in parts])
    a = decode_audio(alone, sample_rate=RATE)
    assert 10 * math.log10(sum(10 ** (tone_power_db(a, RATE, tones[k]) / 10)
                               for k in ("loud", "quiet", "clean"))) \
        - tone_power_db(a, RATE, 220.0) > 3.5


def test_loudness_match_evens_a_take_12_db_too_loud_within_1_lu(takes, tmp_path):
    gains = {k: match_gain(analyze_take(takes[k]).loudness_lufs) for k in ("loud", "quiet")}
    out = mix(tmp_path, [{"id": k, "path": takes[k], "gain_db": gains[k]}
                         for k in ("loud", "quiet")])
    m = decode_audio(out, sample_rate=RATE)
    loud, quiet = tone_power_db(m, RATE, 660.0), tone_power_db(m, RATE, 550.0)
    # K-weighting rises by a fraction of a dB between 550 and 660 Hz: the same loudness
    assert abs(loud - quiet) <= 1.0
    # without the match the loud take stands 12 dB out
    plain = mix(tmp_path, [{"id": k, "path": takes[k]} for k in ("loud", "quiet")])
    p = decode_audio(plain, sample_rate=RATE)
    assert tone_power_db(p, RATE, 660.0) - tone_power_db(p, RATE, 550.0) > 10.0


def test_hum_and_its_harmonics_are_20_db_lower_after_clean_up(takes, tmp_path):
    hum = analyze_take(takes["hum50"]).hum_hz
    before = decode_audio(takes["hum50"], sample_rate=ANALYSIS_RATE)
    out = mix(tmp_path, [{"id": "h", "path": takes["hum50"], "hum_hz": hum, "denoise": True}])
    after = decode_audio(out, sample_rate=ANALYSIS_RATE)
    # relative to the notes, so the mastering's gain does not count
    rel_before = (hum_level_db(before, ANALYSIS_RATE, 50.0)
                  - tone_power_db(before, ANALYSIS_RATE, 440.0))
    rel_after = (hum_level_db(after, ANALYSIS_RATE, 50.0)
                 - tone_power_db(after, ANALYSIS_RATE, 440.0))
    assert rel_before - rel_after >= 20.0
    # switched off per clip: the hum stays
    off = decode_audio(mix(tmp_path, [{"id": "h", "path": takes["hum50"]}]),
                       sample_rate=ANALYSIS_RATE)
    rel_off = hum_level_db(off, ANALYSIS_RATE, 50.0) - tone_power_db(off, ANALYSIS_RATE, 440.0)
    assert abs(rel_off - rel_before) < 3.0


def test_noise_reduction_lowers_the_noise_floor(takes, tmp_path):
    before = analyze_take(takes["noisy"]).noise_floor_db
    cleaned = clean_take(takes["noisy"], str(tmp_path / "n.wav"), hum_hz=0.0, denoise=True,
                         noise_floor_db=before)
    after = noise_floor_db(decode_audio(cleaned, sample_rate=ANALYSIS_RATE), ANALYSIS_RATE)
    assert before - after >= 6.0
    # the notes themselves keep their level (within 1.5 dB)
    a = decode_audio(takes["noisy"], sample_rate=ANALYSIS_RATE)
    b = decode_audio(cleaned, sample_rate=ANALYSIS_RATE)
    assert tone_power_db(b, ANALYSIS_RATE, 330.0) == pytest.approx(
        tone_power_db(a, ANALYSIS_RATE, 330.0), abs=1.5)


def test_a_muted_take_is_not_heard_and_a_hidden_one_is(takes, tmp_path):
    def levels(muted: bool) -> tuple[float, float]:
        out = mix(tmp_path, [{"id": "a", "path": takes["loud"], "muted": muted},
                             {"id": "b", "path": takes["quiet"], "hidden": True},
                             {"id": "c", "path": takes["clean"]}])
        m = decode_audio(out, sample_rate=RATE)
        return tone_power_db(m, RATE, 660.0), tone_power_db(m, RATE, 550.0)

    muted_a, hidden_b = levels(True)
    heard_a, _ = levels(False)
    assert muted_a < heard_a - 30.0  # only the other notes' splatter is left at 660 Hz
    assert hidden_b > muted_a + 30.0  # hidden: still in the mix


def test_every_take_muted_renders_silence(takes, tmp_path):
    out = mix(tmp_path, [{"id": "a", "path": takes["clean"], "muted": True}])
    assert np.abs(decode_audio(out, sample_rate=RATE)).max() < 1e-3


def test_pan_places_a_take_between_the_speakers(takes, tmp_path):
    out = stereo(mix(tmp_path, [{"id": "l", "path": takes["loud"], "pan": -1.0},
                                {"id": "r", "path": takes["quiet"], "pan": 0.5}]))
    left, right = out[:, 0], out[:, 1]
    assert tone_power_db(right, RATE, 660.0) < tone_power_db(left, RATE, 660.0) - 40.0
    gl, gr = pan_gains(0.5)
    expected = 20 * math.log10(gr / gl)
    measured = tone_power_db(right, RATE, 550.0) - tone_power_db(left, RATE, 550.0)
    assert measured == pytest.approx(expected, abs=0.5)
    assert pan_gains(0.0) == pytest.approx((1.0, 1.0))


def test_the_room_adds_a_tail_after_the_last_note(takes, tmp_path):
    dry = decode_audio(mix(tmp_path, [{"id": "s", "path": takes["short"]}]), sample_rate=RATE)
    wet = decode_audio(mix(tmp_path, [{"id": "s", "path": takes["short"]}],
                           reverb_seconds=1.5), sample_rate=RATE)

    def rms_db(x: np.ndarray) -> float:
        return 20 * math.log10(float(np.sqrt(np.mean(x * x))) + 1e-12)

    # the last note ends at 1.7 s; 0.4 s later the dry mix is silent, the room still rings
    after = slice(int(2.1 * RATE), int(2.5 * RATE))
    assert rms_db(wet[after]) > rms_db(dry[after]) + 30.0
    assert rms_db(wet[after]) > -60.0


def test_the_room_rings_in_both_ears_for_a_take_panned_to_one(takes, tmp_path):
    # a room, not a reverb per channel: a take hard left is heard in the right ear only
    # through the room's tail (red team: the right ear was digital silence)
    def ears(**audio) -> tuple[float, float]:
        x = stereo(mix(tmp_path, [{"id": "l", "path": takes["clean"], "pan": -1.0}],
                       **audio)).astype(np.float64)
        return tuple(20 * math.log10(float(np.sqrt(np.mean(x[:, c] ** 2))) + 1e-12)
                     for c in (0, 1))

    left_dry, right_dry = ears()
    left_wet, right_wet = ears(reverb_seconds=1.5)
    assert right_dry < left_dry - 60.0
    assert right_wet > left_wet - 25.0  # the tail, about 14 dB under the dry, 3 dB less
    assert abs(left_wet - left_dry) < 1.0  # the mastering holds the level


def test_take_filter_is_empty_for_an_untouched_take():
    assert take_filter() == ""
    assert "bandreject=f=50.000" in take_filter(50.0, False)
    assert "afftdn" in take_filter(0.0, True)


@pytest.mark.parametrize("field,value,problem", [
    ("hum_hz", 55.0, "must be 0 (none), 50 or 60"),
    ("pan", 1.5, "must be between -1 and 1"),
    ("muted", "yes", "must be true or false"),
])
def test_spec_rejects_bad_sound_fields(field, value, problem):
    with pytest.raises(SpecError) as err:
        parse_spec({"version": 1, "clips": [{"id": "a", "path": "a.mp4", field: value}]})
    assert err.value.field == f"clips[0].{field}"
    assert problem in str(err.value)


def test_spec_rejects_a_room_longer_than_a_cathedral():
    with pytest.raises(SpecError) as err:
        parse_spec({"version": 1, "audio": {"reverb_seconds": 9},
                    "clips": [{"id": "a", "path": "a.mp4"}]})
    assert err.value.field == "audio.reverb_seconds"


def test_the_mastered_mix_is_not_late_against_its_take(takes, tmp_path):
    """The limiter's look-ahead is compensated: the mix lines up with the picture."""
    from scipy.signal import correlate

    out = decode_audio(mix(tmp_path, [{"id": "n", "path": takes["noisy"]}]), sample_rate=RATE)
    src = decode_audio(takes["noisy"], sample_rate=RATE)[: out.size]
    c = correlate(out, src, mode="full", method="fft")
    assert abs(int(np.argmax(np.abs(c))) - (src.size - 1)) <= 1


def test_a_cleaned_take_stays_where_it_was(takes, tmp_path):
    """afftdn's 25 ms delay is compensated: clean-up moves no take off the beat."""
    from scipy.signal import correlate

    src = decode_audio(takes["hum50"], sample_rate=RATE)
    out = decode_audio(mix(tmp_path, [{"id": "h", "path": takes["hum50"], "hum_hz": 50.0,
                                       "denoise": True}]), sample_rate=RATE)
    n = min(src.size, out.size)
    assert abs(out.size - round(SECONDS * RATE)) <= 1
    c = correlate(out[:n], src[:n], mode="full", method="fft")
    # within 1 ms (the notches' own phase moves the hum a few samples; afftdn alone: 1200)
    assert abs(int(np.argmax(np.abs(c))) - (n - 1)) <= RATE // 1000


def test_a_mix_summed_in_groups_side_by_side_equals_one_pass(takes, tmp_path):
    """Many takes are pre-summed in groups, one per core: the same sum as one ffmpeg."""
    from workers.media.render import ClipSource, _mix_audio, mix_groups

    names = ["clean", "hum50", "hum60", "loud", "quiet", "noisy", "short", "clean", "loud"]
    spec = parse_spec({"version": 1, "canvas": {"width": 640, "height": 360, "fps": 25},
                       "duration": SECONDS,
                       "clips": [{"id": f"c{i}", "path": takes[n], "offset": 0.1 * i,
                                  "pan": (i - 4) / 4, "denoise": i % 2 == 0,
                                  "hum_hz": 50.0 if n == "hum50" else 0.0}
                                 for i, n in enumerate(names)]})
    plan = plan_render(spec)
    sources = [ClipSource(c.index, spec.clips[c.index], c.duration, c.has_audio, c.speed)
               for c in plan.clips]
    assert [len(g) for g in mix_groups(sources, 2)] == [5, 4]
    assert len(mix_groups(sources, 1)) == 1 and len(mix_groups(sources[:3], 2)) == 1
    one = _mix_audio(sources, SECONDS, str(tmp_path / "one.wav"), 300, lambda f: None, jobs=1)
    two = _mix_audio(sources, SECONDS, str(tmp_path / "two.wav"), 300, lambda f: None, jobs=2)
    assert two.integrated == pytest.approx(one.integrated, abs=0.05)
    a = decode_audio(str(tmp_path / "one.wav"), sample_rate=RATE)
    b = decode_audio(str(tmp_path / "two.wav"), sample_rate=RATE)
    assert np.max(np.abs(a - b)) < 1e-4


def test_the_numpy_mix_is_the_filtergraph_mix(takes, tmp_path, monkeypatch):
    """mixdown.py (ffmpeg decodes and cleans, numpy places, sums and adds the room) gives
    the sum the filtergraphs gave: clean-up, pan, levels, offsets, the room."""
    from workers.media import render as engine
    from workers.media.render import ClipSource, _mix_audio

    names = ["clean", "hum50", "noisy", "loud", "short"]
    spec = parse_spec({"version": 1, "canvas": {"width": 64, "height": 36, "fps": 25},
                       "duration": SECONDS,
                       "audio": {"mode": "mix", "reverb_seconds": 0.8},
                       "clips": [{"id": f"c{i}", "path": takes[n], "offset": 0.15 * i - 0.3,
                                  "pan": (i - 2) / 2, "denoise": i in (2, 4),
                                  "gain_db": -2.0 * i,
                                  "hum_hz": 50.0 if n == "hum50" else 0.0}
                                 for i, n in enumerate(names)]})
    plan = plan_render(spec)
    sources = [ClipSource(c.index, spec.clips[c.index], c.duration, c.has_audio, c.speed)
               for c in plan.clips]
    room = (spec.audio.reverb_seconds, spec.audio.reverb_wet_db)
    out = {}
    for kind in ("ffmpeg", "numpy"):
        monkeypatch.setattr(engine, "MIX_ENGINE", kind)
        out[kind] = _mix_audio(sources, SECONDS, str(tmp_path / f"{kind}.wav"), 300,
                               lambda f: None, room=room, jobs=2)
    assert out["numpy"].integrated == pytest.approx(out["ffmpeg"].integrated, abs=0.05)
    a, b = (stereo_float(str(tmp_path / f"{k}.wav")) for k in ("ffmpeg", "numpy"))
    assert b.shape == (round(SECONDS * RATE), 2)
    # the filtergraphs cut the room's tail where the longest take ends (the mastering
    # pass pads the rest); numpy lets it ring to the end: compared up to there
    end = a.shape[0] - round(0.05 * RATE)
    assert end > RATE * 3
    assert np.max(np.abs(a[:end] - b[:end])) < 1e-4


def test_a_denoised_take_that_starts_late_is_heard_when_it_starts(takes, tmp_path):
    """A take that starts 0.3 s into the mash-up (offset -0.3), cleaned: heard from
    0.3 s on, as without the clean-up (the filtergraph mix played it from 0: with
    afftdn in its chain the delay was lost)."""
    starts = []
    for denoise in (False, True):
        x = stereo(mix(tmp_path, [{"id": "c", "path": takes["clean"], "offset": -0.3,
                                   "denoise": denoise}]))[:, 0]
        starts.append(np.flatnonzero(np.abs(x) > 0.05)[0] / RATE)
    assert starts[0] == pytest.approx(0.3, abs=0.002)
    assert starts[1] == pytest.approx(starts[0], abs=0.001)


def stereo_float(path: str) -> np.ndarray:
    from scipy.io import wavfile

    return wavfile.read(path)[1].astype(np.float64)


def test_a_cleaned_take_is_kept_for_the_next_mix(takes, tmp_path, monkeypatch):
    """With a cache folder, the second mix (other levels, pan, offset) reads the cleaned
    take back instead of decoding and cleaning it again; the same take as decoded."""
    from workers.media import mixdown

    cache = tmp_path / "cache"
    cache.mkdir()
    decodes = []
    real = mixdown._decode
    monkeypatch.setattr(mixdown, "_decode", lambda *a: decodes.append(a) or real(*a))

    def mixed(clip: dict, kept: bool = True) -> np.ndarray:
        spec = parse_spec({"version": 1, "canvas": {"width": 64, "height": 36, "fps": 25},
                           "audio": {"mode": "mix"}, "duration": SECONDS,
                           "clips": [{"id": "h", "path": takes["hum50"], "hum_hz": 50.0,
                                      "denoise": True, **clip}]})
        out = str(tmp_path / "mix.wav")
        render_audio(spec, plan_render(spec), out, cache_dir=str(cache) if kept else None)
        return stereo(out)

    first = mixed({"offset": 0.2})
    assert len(decodes) == 1 and len(list(cache.glob("*-sound-*.npy"))) == 1
    again = mixed({"offset": 0.2})
    moved = mixed({"offset": 0.1, "gain_db": -3.0, "pan": 0.5})
    assert len(decodes) == 1  # read back twice
    assert np.array_equal(first, again)
    left, right = (float(np.sqrt(np.mean(moved[:, ch] ** 2))) for ch in (0, 1))
    assert right > left
    # as the mix without the cache, which seeks to the offset before cleaning (so its
    # filters start there, cold: its first 0.1 s differ; and the mastering gain follows
    # the measured loudness), within -30 dB after
    fresh = mixed({"offset": 0.2}, kept=False)[RATE // 10:]
    assert len(decodes) == 2
    rms = float(np.sqrt(np.mean(fresh ** 2)))
    assert float(np.sqrt(np.mean((fresh - first[RATE // 10:]) ** 2))) < 0.03 * rms


def test_a_humming_take_is_matched_as_the_mix_hears_it_within_1_lu(takes, tmp_path):
    """A quiet voice under a buzz as loud as itself (issue 17's red team: matched with its
    hum, it sat 6 LU under the others once cleaned, and the noise reduction, told the
    hum's level as the floor, took the voice down too)."""
    buzz = write_take(tmp_path / "buzz.mp4", freq=475.0, level=0.03, hum_hz=50.0, hum=0.03)
    hummed, plain = analyze_take(buzz), analyze_take(takes["clean"])
    assert hummed.hum_hz == 50.0
    # measured with its hum the take reads louder than the mix will hear it
    assert hummed.loudness_lufs - hummed.loudness_clean_lufs > 1.0
    # the floor told to the noise reduction is under the voice, not at the hum's level
    assert hummed.noise_floor_db < -50.0
    voice_before = tone_power_db(decode_audio(buzz, sample_rate=RATE), RATE, 475.0)
    alone = clean_take(buzz, str(tmp_path / "alone.wav"), hum_hz=50.0, denoise=True,
                       noise_floor_db=hummed.noise_floor_db)
    assert tone_power_db(decode_audio(alone, sample_rate=RATE), RATE, 475.0) \
        == pytest.approx(voice_before, abs=1.5)
    out = mix(tmp_path, [
        {"id": "b", "path": buzz, "hum_hz": 50.0, "denoise": True,
         "noise_floor_db": hummed.noise_floor_db,
         "gain_db": match_gain(hummed.loudness_clean_lufs)},
        {"id": "c", "path": takes["clean"], "denoise": True,
         "gain_db": match_gain(plain.loudness_clean_lufs)}])
    m = decode_audio(out, sample_rate=RATE)
    assert abs(tone_power_db(m, RATE, 475.0) - tone_power_db(m, RATE, 440.0)) <= 1.0


def test_the_mix_reports_progress_from_the_callers_thread_only(takes, tmp_path, monkeypatch):
    """The render's progress callback reads the database through the task's application
    context, which the mix's decode threads lack (red team, issue 15: every distributed
    render with the performers' mix failed "Working outside of application context")."""
    import threading

    from workers.media import mixdown

    called = []
    real = mixdown.mix_to_wav
    monkeypatch.setattr(mixdown, "mix_to_wav", lambda *a, **k: called.append(1) or real(*a, **k))
    threads = set()
    spec = parse_spec({"version": 1, "canvas": {"width": 64, "height": 36, "fps": 25},
                       "audio": {"mode": "mix"}, "duration": SECONDS,
                       "clips": [{"id": k, "path": takes[k]} for k in ("clean", "loud", "quiet")]})
    render_audio(spec, plan_render(spec), str(tmp_path / "mix.wav"),
                 progress=lambda _f: threads.add(threading.get_ident()))
    assert called, "the threaded mix was not used"
    assert threads == {threading.get_ident()}
