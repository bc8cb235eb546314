"""A sound editor's work on each take and on the sum: measuring, cleaning, placing, a room.

Pure filter builders (numbers in, filtergraph text out: no user text ever), measurements
on decoded samples (numpy/scipy) and the few ffmpeg runs that use them:

- :func:`analyze_take`: a take's integrated loudness (EBU R128, ffmpeg's ebur128), its
  mains hum (50 or 60 Hz, or none) and its noise floor, once per take;
- :func:`match_levels`: the loudness match per part, the level (dB) that brings every
  take to :data:`MATCH_LUFS` (no voice stands out for being recorded hot or far away) and
  balances the parts (:func:`part_balance`: a section of forty is not ten times a part of
  four);
- :func:`cleanup_filter`: notches at the hum and its harmonics, then a reduction of the
  steady noise (afftdn, told the take's measured noise floor);
- :func:`pan_filter`: a mono take placed between the speakers at constant power;
- :func:`write_room_impulse` and :func:`room_filter`: one shared room (a synthetic impulse
  response of exponentially decaying, decorrelated noise, the dry sound at its head)
  convolved with the sum (afir), so takes from a hundred dry rooms sound like one choir.

Levels are dB, loudness LUFS (LU for differences), frequencies Hz, times seconds.
"""

from __future__ import annotations

import logging
import math
import re
import wave
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .audio import NoAudio, decode_audio
from .ffmpeg import ffmpeg_report, input_url, remove_quietly, replace_atomically, temp_path_for
from .normalize import AUDIO_RATE, parse_ebur128_summary
from .probe import MEDIA_DEMUXERS, safe_input

log = logging.getLogger(__name__)

#: the loudness every take is matched to before the sum (the EBU R128 broadcast level);
#: the mastered mix is brought to the render's target afterwards, so only differences count
MATCH_LUFS = -23.0
#: a loudness match never raises a take by more than this (a near-silent take stays quiet
#: rather than having its noise lifted) nor lowers it by more
MAX_MATCH_DB = 24.0
#: quieter than this a take counts as silent and is not matched
SILENT_LUFS = -60.0
#: harmonics of the mains hum notched (50 Hz: 50 .. 500 Hz); buzz holds strong odd ones
HUM_HARMONICS = 10
#: notch quality: 2.5 Hz wide at 50 Hz, wide enough for the mains' own wander (±0.2 Hz,
#: times the harmonic's number) ...
HUM_Q = 20.0
#: ... but never wider than this (Hz): Q 20 was 25 Hz wide at 500 Hz and took 2 dB off a
#: note at 475 Hz, between two harmonics
HUM_MAX_WIDTH_HZ = 8.0
#: each notch is applied this many times (deeper around the line, as narrow)
HUM_NOTCH_PASSES = 2


def hum_notch_width(k: int, hum_hz: float = 50.0) -> float:
    """The notch's width (Hz) at the ``k``-th harmonic of ``hum_hz``."""
    return min(hum_hz * k / HUM_Q, HUM_MAX_WIDTH_HZ)
#: a harmonic stands out as hum when it is this much above the spectrum around it
HUM_PROMINENCE_DB = 12.0
#: ... at this many of its harmonics at least
HUM_MIN_HARMONICS = 3
#: steady-noise reduction: afftdn, at most this many dB of reduction
DENOISE_DB = 18.0
#: afftdn's noise floor for a take whose floor was not measured (dBFS)
DEFAULT_FLOOR_DB = -50.0
#: afftdn's ``nf`` is the full-band floor; the measured one (at ANALYSIS_RATE, quietest
#: frames) reads lower: on white noise 5 dB more gave the most reduction without touching
#: the notes (afftdn's own noise tracking, tn=1, reduced noise 20 dB over the floor by 2 dB)
FLOOR_TO_AFFTDN_DB = 5.0
#: afftdn's output lags its input by this much, at any rate (measured: 1200 samples at
#: 48 kHz, 1102 at 44.1, 400 at 16): compensated in denoise_filter
AFFTDN_LATENCY = 0.025
#: the analysis rate: hum harmonics up to 500 Hz and the noise floor need no more
ANALYSIS_RATE = 16000
#: the frames over which the noise floor is measured (seconds) and the share of the
#: quietest frames that make it
FLOOR_FRAME = 0.05
FLOOR_PERCENTILE = 10.0
#: the room: pre-delay of the first reflections (s) and how far the two ears' tails differ
ROOM_PREDELAY = 0.02


@dataclass(frozen=True)
class TakeSound:
    """What a take's sound measures: integrated loudness (LUFS, ``-inf`` for silence),
    the mains hum found (50.0, 60.0, or 0.0 for none) and how far its strongest harmonic
    stands above its surroundings (dB), the noise floor (dBFS, the RMS of the quietest
    10 % of 50 ms frames, measured after the hum's notches: a hum is no floor to tell the
    steady-noise reduction, it sits at the voice's level)."""

    loudness_lufs: float
    hum_hz: float
    hum_db: float
    noise_floor_db: float
    #: the integrated loudness after the clean-up (hum notches and noise reduction): what
    #: the mix hears of a cleaned take, and what its loudness match uses (NaN: not measured)
    loudness_clean_lufs: float = math.nan

    def to_dict(self) -> dict[str, float | None]:
        def finite(x: float) -> float | None:
            return round(x, 2) if math.isfinite(x) else None
        return {"loudness_lufs": finite(self.loudness_lufs), "hum_hz": self.hum_hz,
                "hum_db": finite(self.hum_db), "noise_floor_db": finite(self.noise_floor_db),
                "loudness_clean_lufs": finite(self.loudness_clean_lufs)}


# --- measuring ---------------------------------------------------------------------------------

def noise_floor_db(samples: np.ndarray, rate: int) -> float:
    """The noise floor of mono ``samples`` (float, full scale 1.0) at ``rate`` Hz: the RMS
    level (dBFS) of the quietest :data:`FLOOR_PERCENTILE` % of :data:`FLOOR_FRAME` frames,
    the breaths and pauses where only the room and the microphone are heard. ``-inf``
    for digital silence; raises ValueError for fewer samples than one frame."""
    frame = max(1, int(rate * FLOOR_FRAME))
    count = samples.size // frame
    if count < 1:
        raise ValueError(f"{samples.size} samples are shorter than one {FLOOR_FRAME} s frame")
    frames = samples[:count * frame].astype(np.float64).reshape(count, frame)
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    level = float(np.percentile(rms, FLOOR_PERCENTILE))
    return 20 * math.log10(level) if level > 0 else -math.inf


def hum_level_db(samples: np.ndarray, rate: int, hum_hz: float,
                 harmonics: int = HUM_HARMONICS) -> float:
    """The power (dB, relative to full scale; a sine at 1.0 reads -3 dB) that ``samples``
    hold at ``hum_hz`` and its harmonics up to ``harmonics`` (a band of ±1 Hz around each),
    summed: what a hum notch should take away."""
    spectrum, freqs = _power_spectrum(samples, rate)
    total = 0.0
    for k in range(1, harmonics + 1):
        f = hum_hz * k
        if f >= rate / 2:
            break
        band = (freqs >= f - 1.0) & (freqs <= f + 1.0)
        total += float(spectrum[band].sum())
    return 10 * math.log10(total) if total > 0 else -math.inf


def _power_spectrum(samples: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Welch's power spectrum of ``samples`` at 0.25 Hz resolution, scaled so a sine of
    amplitude A sums to A²/2 over its peak."""
    from scipy.signal import welch

    nper = min(samples.size, rate * 4)
    freqs, power = welch(samples.astype(np.float64), fs=rate, nperseg=nper,
                         window="hann", scaling="spectrum")
    return power, freqs


def remove_hum(samples: np.ndarray, rate: int, hum_hz: float,
               harmonics: int = HUM_HARMONICS) -> np.ndarray:
    """Mono ``samples`` at ``rate`` Hz with notches (:func:`hum_notch_width` wide, forward
    and back, so nothing moves in time) at ``hum_hz`` and its harmonics up to ``harmonics``, below
    Nyquist: the take as the clean-up's notches leave it, for measuring (its noise floor,
    its loudness, its time map). ``samples`` unchanged for ``hum_hz`` 0."""
    from scipy.signal import filtfilt, iirnotch

    out = samples.astype(np.float64)
    if hum_hz <= 0:
        return out
    for k in range(1, harmonics + 1):
        f = hum_hz * k
        if f >= rate / 2 * 0.95:
            break
        b, a = iirnotch(f, f / hum_notch_width(k, hum_hz), fs=rate)
        out = filtfilt(b, a, out)  # forward and back: the notch twice, as the mix's
    return out


def detect_hum(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """The mains hum in mono ``samples``: (50.0 or 60.0, prominence dB), or (0.0, the best
    prominence) when no family of harmonics stands out. A harmonic's prominence is how far
    its peak (±0.5 Hz) stands above the median of the spectrum 3-15 Hz around it; a
    family is hum when at least :data:`HUM_MIN_HARMONICS` of its first
    :data:`HUM_HARMONICS` harmonics, the first or second among them, stand
    :data:`HUM_PROMINENCE_DB` out (a note stands out at its own frequency and its
    overtones, which share at most one in a few of a hum's); the family's prominence is
    the mean of its three most prominent harmonics."""
    spectrum, freqs = _power_spectrum(samples, rate)
    floor = 1e-12 * max(float(spectrum.max()), 1e-30)  # 120 dB under the loudest line
    best = (0.0, -math.inf)
    for hz in (50.0, 60.0):
        scores = []
        for k in range(1, HUM_HARMONICS + 1):
            f = hz * k
            if f + 15 >= rate / 2:
                break
            peak = spectrum[(freqs >= f - 0.5) & (freqs <= f + 0.5)]
            around = spectrum[((freqs >= f - 15) & (freqs <= f - 3))
                              | ((freqs >= f + 3) & (freqs <= f + 15))]
            if peak.size and around.size:
                scores.append(10 * math.log10((peak.max() + floor)
                                              / (np.median(around) + floor)))
        if len(scores) < HUM_MIN_HARMONICS:
            continue
        score = float(np.mean(sorted(scores)[-3:]))
        strong = sum(x >= HUM_PROMINENCE_DB for x in scores)
        is_hum = strong >= HUM_MIN_HARMONICS and max(scores[:2]) >= HUM_PROMINENCE_DB
        if is_hum and (best[0] == 0.0 or score > best[1]):
            best = (hz, score)
        elif best[0] == 0.0 and score > best[1]:
            best = (0.0, score)
    return best


def measure_integrated(path: str, *, timeout: float = 600, chain: str = "") -> float:
    """The integrated loudness (LUFS, EBU R128; ``-inf`` for silence) of the first sound
    track of ``path``, by ffmpeg's ebur128 filter, after the filters ``chain`` (numbers
    only, ending with a comma: :func:`take_filter`) when given. Raises NoAudio without a
    sound track, FFmpegError when ffmpeg fails."""
    pre = (f"aresample={AUDIO_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo,{chain}"
           if chain else "")
    args = ["-v", "info", *safe_input(path, MEDIA_DEMUXERS), "-map", "0:a:0", "-vn",
            "-af", f"{pre}ebur128=peak=true:framelog=quiet", "-f", "null", "-"]
    status, text = ffmpeg_report(args, timeout=timeout)
    if status != 0 and re.search(r"matches no streams|does not contain any stream", text):
        raise NoAudio()
    return parse_ebur128_summary(status, text).integrated


def analyze_take(path: str, *, timeout: float = 600,
                 loudness_lufs: float | None = None) -> TakeSound:
    """Measure the take at ``path`` (any media file ffmpeg reads): its loudness (measured
    here unless ``loudness_lufs`` is given, e.g. from intake), hum, noise floor (after
    the hum's notches) and its loudness after the clean-up (a second ffmpeg pass). Raises
    NoAudio when it has no sound, FFmpegError when it cannot be decoded."""
    if loudness_lufs is None:
        loudness_lufs = measure_integrated(path, timeout=timeout)
    samples = decode_audio(path, sample_rate=ANALYSIS_RATE, timeout=timeout)
    if samples.size < ANALYSIS_RATE * FLOOR_FRAME:
        raise NoAudio("the sound track is too short to measure")
    hum_hz, hum_db = detect_hum(samples, ANALYSIS_RATE)
    # the floor where the hum's notches leave it: told the hum's level, afftdn takes the
    # voice down with it (a -32 dBFS buzz under a -28 dBFS bass lost 6 LU of the voice)
    floor = noise_floor_db(remove_hum(samples, ANALYSIS_RATE, hum_hz), ANALYSIS_RATE)
    # and the loudness of what the mix hears once the take is cleaned
    clean = measure_integrated(path, timeout=timeout,
                               chain=take_filter(hum_hz, True, 0.0, floor))
    return TakeSound(loudness_lufs, hum_hz, hum_db, floor, clean)


def match_shortfall(loudness_lufs: float | None, target_lufs: float = MATCH_LUFS) -> float:
    """How far (LU, >= 0) a take measured at ``loudness_lufs`` stays from ``target_lufs``
    after :func:`match_gain`, which stops at ±:data:`MAX_MATCH_DB`; 0 for a take the match
    reaches, an unmeasured or a silent one."""
    if not heard_in_match(loudness_lufs):
        return 0.0
    assert loudness_lufs is not None
    return max(0.0, abs(target_lufs - loudness_lufs) - MAX_MATCH_DB)


def match_gain(loudness_lufs: float | None, target_lufs: float = MATCH_LUFS) -> float:
    """The level (dB) that brings a take measured at ``loudness_lufs`` to ``target_lufs``,
    within ±:data:`MAX_MATCH_DB`; 0 for an unmeasured or silent take."""
    if not heard_in_match(loudness_lufs):
        return 0.0
    assert loudness_lufs is not None
    return max(-MAX_MATCH_DB, min(MAX_MATCH_DB, target_lufs - loudness_lufs))


def match_gains(loudness: Mapping[str, float | None],
                target_lufs: float = MATCH_LUFS) -> dict[str, float]:
    """:func:`match_gain` for each take id -> measured loudness (LUFS or None)."""
    return {key: match_gain(value, target_lufs) for key, value in loudness.items()}


#: a part's balance never moves its takes by more than this (dB): a part of one voice
#: against a section of hundreds is raised, not made a hundred times louder
MAX_PART_DB = 12.0


def heard_in_match(loudness_lufs: float | None) -> bool:
    """Whether a take measured at ``loudness_lufs`` is matched (and counts in its part's
    balance): measured, and louder than :data:`SILENT_LUFS`."""
    return loudness_lufs is not None and math.isfinite(loudness_lufs) \
        and loudness_lufs > SILENT_LUFS


def part_balance(counts: Mapping[str, int]) -> dict[str, float]:
    """The level (dB) each part's matched takes get on top of their match, so that every
    part's sum is as loud as every other's whatever its number of takes: for part p of
    n_p takes among N in P parts, ``10 log10(N / (P n_p))`` within ±:data:`MAX_PART_DB`.
    Uncorrelated voices add in power, so a part of n takes each at the match level sums
    to that level + 10 log10(n); the balance evens the parts' sums while the whole mix
    keeps the power of N matched takes (its headroom is unchanged). Parts with no take
    are left out; {} for none."""
    counts = {part: n for part, n in counts.items() if n > 0}
    if not counts:
        return {}
    total, parts = sum(counts.values()), len(counts)
    return {part: max(-MAX_PART_DB, min(MAX_PART_DB, 10 * math.log10(total / (parts * n))))
            for part, n in counts.items()}


def match_levels(takes: Iterable[tuple[str, str, float | None]],
                 target_lufs: float = MATCH_LUFS) -> dict[str, float]:
    """The loudness match per part: take id -> level (dB) for ``(take id, part,
    loudness LUFS or None)``: :func:`match_gain` (the take to ``target_lufs``, so the takes
    of a part match each other) plus its part's :func:`part_balance` (so each part is
    heard as loud as each other), within ±:data:`MAX_MATCH_DB`. Takes not measured or
    silent get 0 dB and do not count in their part."""
    rows = list(takes)
    counts: dict[str, int] = {}
    for _, part, lufs in rows:
        if heard_in_match(lufs):
            counts[part] = counts.get(part, 0) + 1
    balance = part_balance(counts)
    return {key: (max(-MAX_MATCH_DB, min(MAX_MATCH_DB,
                                         match_gain(lufs, target_lufs) + balance[part]))
                  if heard_in_match(lufs) else 0.0)
            for key, part, lufs in rows}


def part_loudness(takes: Iterable[tuple[str, float | None]]) -> dict[str, dict[str, float]]:
    """Per part name, the measured takes' loudness range: ``{"low", "median", "high",
    "count"}`` (LUFS), for a meter of one take against the others of its part."""
    by_part: dict[str, list[float]] = {}
    for part, lufs in takes:
        if lufs is not None and math.isfinite(lufs) and lufs > SILENT_LUFS:
            by_part.setdefault(part, []).append(lufs)
    return {part: {"low": min(v), "median": float(np.median(v)), "high": max(v),
                   "count": len(v)} for part, v in by_part.items()}


# --- filters (numbers only) ---------------------------------------------------------------------

def hum_notch_filter(hum_hz: float, rate: int = AUDIO_RATE) -> str:
    """Notches at ``hum_hz`` and its harmonics (up to :data:`HUM_HARMONICS`, below
    Nyquist); empty for 0."""
    if hum_hz <= 0:
        return ""
    # each notch twice: the hum's line spreads over a fraction of a hertz, where one notch
    # this narrow takes 8 dB and two take 16
    notches = [f"bandreject=f={hum_hz * k:.3f}:width_type=h:width={hum_notch_width(k, hum_hz):.3f}"
               for k in range(1, HUM_HARMONICS + 1) if hum_hz * k < rate / 2
               for _ in range(HUM_NOTCH_PASSES)]
    return ",".join(notches)


def denoise_filter(noise_floor_db: float = DEFAULT_FLOOR_DB, rate: int = AUDIO_RATE) -> str:
    """Steady-noise reduction: afftdn told the take's noise floor (as
    :func:`noise_floor_db` measures it, plus :data:`FLOOR_TO_AFFTDN_DB`; within afftdn's
    -80..-20 dB) and at most :data:`DENOISE_DB` of reduction, so room tone and hiss fall
    and the notes keep their level. afftdn delays its output by :data:`AFFTDN_LATENCY`
    and drops as much at the end: the take is padded by that much, and the delay cut off,
    so the cleaned take stays where it was (at ``rate`` Hz) and as long."""
    nf = DEFAULT_FLOOR_DB if not math.isfinite(noise_floor_db) else noise_floor_db
    nf = max(-80.0, min(-20.0, nf + FLOOR_TO_AFFTDN_DB))
    lag = round(AFFTDN_LATENCY * rate)
    return (f"apad=pad_len={lag},afftdn=nr={DENOISE_DB:g}:nf={nf:.1f},"
            f"atrim=start_sample={lag},asetpts=N/SR/TB")


def cleanup_filter(hum_hz: float, denoise: bool,
                   noise_floor_db: float = DEFAULT_FLOOR_DB) -> str:
    """The clean-up of one take (hum notches, then noise reduction), or ""."""
    return ",".join(f for f in (hum_notch_filter(hum_hz),
                                denoise_filter(noise_floor_db) if denoise else "") if f)


def pan_gains(pan: float) -> tuple[float, float]:
    """(left, right) gains for a mono source at ``pan`` (-1 left .. 1 right): constant
    power, scaled so the centre is 1.0 in each ear (the level of an unpanned take)."""
    pan = max(-1.0, min(1.0, float(pan)))
    angle = (pan + 1) * math.pi / 4
    return math.sqrt(2) * math.cos(angle), math.sqrt(2) * math.sin(angle)


def to_mono_filter() -> str:
    """Both channels of a take averaged: one performer is one point in the room."""
    return "pan=mono|c0=0.5*c0+0.5*c1"


def pan_filter(pan: float) -> str:
    """A mono take to stereo at ``pan`` (see :func:`pan_gains`)."""
    left, right = pan_gains(pan)
    return f"pan=stereo|c0={left:.6f}*c0|c1={right:.6f}*c0"


def take_filter(hum_hz: float = 0.0, denoise: bool = False, pan: float = 0.0,
                noise_floor_db: float = DEFAULT_FLOOR_DB) -> str:
    """What a take's stereo sound goes through before its level and the sum: nothing when
    it is neither cleaned nor panned (today's mix, the take's own stereo); else folded to
    mono, cleaned (:func:`cleanup_filter`) and placed at ``pan``. Ends with a comma when
    not empty, to be prefixed to the next filter."""
    cleanup = cleanup_filter(hum_hz, denoise, noise_floor_db)
    if not cleanup and pan == 0.0:
        return ""
    steps = [to_mono_filter(), cleanup, pan_filter(pan)]
    return ",".join(s for s in steps if s) + ","


def room_impulse(rt60: float, wet_db: float, *, rate: int = AUDIO_RATE,
                 seed: int = 1) -> np.ndarray:
    """The samples (L, 2) int16 of :func:`write_room_impulse`'s file: a unit impulse
    (the dry sound) followed, after :data:`ROOM_PREDELAY`, by exponentially decaying
    noise, different in each ear, whose energy is ``wet_db`` against the dry sound; L =
    ``rate`` × (predelay + ``rt60``). Raises ValueError for a non-positive ``rt60``."""
    if not rt60 > 0:
        raise ValueError(f"rt60 must be more than 0 seconds, not {rt60}")
    rng = np.random.default_rng(seed)
    length = int(rate * (ROOM_PREDELAY + rt60))
    t = np.arange(length - int(rate * ROOM_PREDELAY)) / rate
    decay = np.exp(-6.907755 * t / rt60)  # ln(1000): -60 dB at rt60
    ir = np.zeros((length, 2))
    ir[0, :] = 1.0
    scale = 10 ** (wet_db / 20)
    for ch in range(2):
        tail = rng.standard_normal(t.size) * decay
        tail *= scale / math.sqrt(float(np.sum(tail * tail)))
        ir[int(rate * ROOM_PREDELAY):, ch] = tail
    # 16-bit with headroom: the impulse at 1.0 is kept exact by afir's irnorm=-1 and the
    # wave's scale is undone in room_filter
    peak = float(np.max(np.abs(ir)))
    return np.round(ir / peak * 32767).astype("<i2")


def write_room_impulse(path: str, rt60: float, wet_db: float, *, rate: int = AUDIO_RATE,
                       seed: int = 1) -> str:
    """:func:`room_impulse` as a stereo 16-bit WAV at ``rate`` (reverberation time
    ``rt60`` seconds for 60 dB of decay, the tail ``wet_db`` against the dry sound).
    Written atomically; returns ``path``. Raises ValueError for a non-positive ``rt60``."""
    pcm = room_impulse(rt60, wet_db, rate=rate, seed=seed)
    tmp = temp_path_for(path)
    try:
        with wave.open(tmp, "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm.tobytes())
        replace_atomically(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    return path


def room_filter(ir_input: int, label_in: str, label_out: str) -> str:
    """Filtergraph text convolving [``label_in``] with input ``ir_input`` (a
    :func:`write_room_impulse` file) into [``label_out``]: each ear's dry sound and the
    room's tail of both ears' sum at the levels the impulse holds (the impulse's own
    scale, 1/peak, is not undone: the peak is the unit impulse, so the dry sound stays at
    its level)."""
    # the room hears both ears' sum (mid) and each ear keeps its own dry sound:
    # afir(mid) + (ear - mid), so a take panned hard left rings in the right ear too
    mid = "pan=stereo|c0=0.5*c0+0.5*c1|c1=0.5*c0+0.5*c1"
    side = "pan=stereo|c0=0.5*c0-0.5*c1|c1=0.5*c1-0.5*c0"
    return (f"[{ir_input}:a:0]aformat=sample_fmts=fltp:channel_layouts=stereo[ir];"
            f"[{label_in}]asplit=2[{label_out}m][{label_out}s];[{label_out}m]{mid}[{label_out}mm];"
            f"[{label_out}mm][ir]afir=irnorm=-1:irgain=1:gtype=none:dry=1:wet=1[{label_out}w];"
            f"[{label_out}s]{side}[{label_out}d];"
            f"[{label_out}w][{label_out}d]amix=inputs=2:normalize=0[{label_out}]")


def clean_take(src: str, dst: str, *, hum_hz: float, denoise: bool, pan: float = 0.0,
               noise_floor_db: float = DEFAULT_FLOOR_DB,
               gain_db: float = 0.0, start: float = 0.0, seconds: float | None = None,
               timeout: float = 600) -> str:
    """The take at ``src`` as the mix hears it, alone (a solo for review, or a bench's
    "after"): cleaned, panned and at ``gain_db``, from ``start`` for ``seconds``, as a
    16-bit stereo WAV at :data:`AUDIO_RATE`, written atomically to ``dst``."""
    chain = take_filter(hum_hz, denoise, pan, noise_floor_db)
    args = ["-v", "error"]
    if start > 0:
        args += ["-ss", f"{start:.6f}"]
    args += [*safe_input(src, MEDIA_DEMUXERS), "-map", "0:a:0", "-vn"]
    if seconds is not None:
        args += ["-t", f"{seconds:.6f}"]
    args += ["-af", f"aresample={AUDIO_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo,"
             f"{chain}volume={gain_db:.3f}dB", "-c:a", "pcm_s16le", "-ar", str(AUDIO_RATE),
             "-ac", "2", "-f", "wav"]
    tmp = temp_path_for(dst)
    try:
        status, text = ffmpeg_report([*args, input_url(tmp)], timeout=timeout)
        if status != 0:
            from .ffmpeg import FFmpegError
            raise FFmpegError(f"cleaning the take failed (ffmpeg status {status})", args,
                              status, text[-2000:])
        replace_atomically(tmp, dst)
    except BaseException:
        remove_quietly(tmp)
        raise
    return dst
