"""Offset, clock drift and a calibrated confidence of a clip against the guide.

Participants mostly wear headphones, so a clip rarely holds the guide itself: it holds their own
part, in their own timbre, maybe a clap along the count-in, maybe some guide leaking out of the
headphones. The engine therefore looks for three kinds of evidence and says which one it used:

``leak``  the guide is audible in the clip: whitened cross-correlation (GCC-PHAT) of the raw
          audio gives a sharp peak; fitted over several windows it gives offset and drift to
          well under a millisecond.
``clap``  the participant clapped the guide's count-in: broadband transients in the clip that
          line up with the guide's count-in clicks, one beat apart.
``part``  only the performed part: the clip's note onsets (band-wise log spectral flux),
          harmony (chroma) and phrasing (activity) correlated with the guide's, whitened; when
          the guide has a steady beat, the clip's main notes must also sound in the guide.
``none``  nothing convincing (unrelated music, speech, silence): confidence stays low.

A coarse search over the whole lag window on 10 ms feature envelopes finds candidates (its top
peaks: in periodic music the truth and its neighbours a beat or a bar away); leak evidence is
checked at each, clap evidence is searched on its own and must agree with the music. Harmony
and phrasing weigh in so that the next bar, which has the same rhythm, loses to the truth.
When clap or part evidence decides, a leak too faint to be trusted on its own is still looked
for near that offset: if a line is there, it gives the offset (method ``leak``, confidence
still the clap's or the part's).

Convention: ``offset_seconds`` is the clip time at which the guide's t=0 occurs (trim that much
from the clip's start; negative: the clip started late, pad it). ``drift_ppm`` is the clip
clock's rate error: guide time ``t`` is heard at clip time ``offset + t * (1 + drift_ppm/1e6)``
(positive: the clip's clock runs fast, the clip is too long).

Confidence is in 0..1; below :data:`CONFIDENCE_THRESHOLD` (0.5) a clip needs a manual check.
How the evidence maps to it was calibrated on the ``bench/sync`` corpus, seeds 1 to 3 (414
clips: 30-180 s takes, 5-15 s takes of every case, same-key negatives: another song on the
guide's own pitch set in its own timbre, piano or pure sines, and same-tempo negatives: another
song on the guide's own beat grid; see ``bench/README.md``). To re-calibrate, run the bench on
the seeds with debug logging and read, per negative, the leak check, the part score and margin
against the overlap and the pitch z, then place each threshold in the gap:

- part-only: the combined score (robust z of the onset curve plus weighted chroma and activity
  z at the peak) reached at most 12.1 on unrelated music, speech and silence overlapping 30 s
  or more, and at least 17.0 at the true offset of any such positive; ``PART_SCORE_MID`` = 14.5
  sits between the two. A runner-up peak within ``PART_MARGIN_MID`` of the best (periodic
  music: a beat or a bar away) pulls confidence down, because then the pick is a coin toss.
  Short overlaps hold few notes and a short curve's robust z is less robust: on 5-15 s clips
  unrelated music reached 21.4 (margin 1.5) and 17.3 (margin 3.7), so from ``PART_FULL_S``
  down to ``PART_SHORT_S`` the score needed grows by up to ``PART_SHORT_EXTRA`` and the margin
  by up to ``PART_SHORT_MARGIN_EXTRA``.
- part-only on a steady beat: another song at exactly the guide's tempo, its attacks on the
  guide's beats, reached onset z 66 and part confidence 1.0 on 19 of 36 such takes (its
  rhythm, drawn from the same few bar patterns, can match the guide's for bars on end; the
  chroma z was no help: real parts as low as 0.1, same-tempo takes up to 8.3). What tells them
  apart is the note: the clip's main pitch class per 50 ms frame (harmonic summation, so that a
  low voice whose fundamental the phone cut is not read as its fifth) correlated with the
  guide's centred chroma, as a robust z over the lags. Same-tempo and other negatives that the
  onsets alone would trust reached a pitch z of 3.6; most real parts at the truth 4-22, some
  2-4, and periodic songs on one or two chords -2 to 5, inner voices of short takes -1 to 5.
  So when
  the guide's beat strength (:func:`_beat_strength`: songs 0.34-0.85, free pure-tone melodies
  0.08-0.13) passes ``RHYTHM_BEAT_HI``, confidence is multiplied by a sigmoid of the pitch z
  around ``PITCH_Z_MID`` = 4.5. The cost: about a third of the part-only takes that onsets
  alone trusted now ask for a manual check (nearly all periodic ones, half the short ones).
  The pitch z must also not be beaten elsewhere: a short take trusted at 0.94 while 4.1 s
  off had onsets and chroma locked onto a repeat two bars away (pitch z 6.0 there, 9.5 at
  the truth); correct peaks stay within +0.13 of their best beyond 0.5 s, so more than
  ``PITCH_ALT_MARGIN`` = 1.5 above the peak's own (:func:`_harmony`) takes the trust away.
- leak: a line (offset and drift) is found by GCC-PHAT integrated over windows (``LEAK_MIN_Z``
  = 10 noise deviations), restricted to the bins where the guide window has energy. On tonal
  music that alone is fooled: two pure-tone lines on the same semitones, or notes with the same
  attack, give a few perfect chance peaks (z up to 65 on 8 s clips). So the line must then pass
  :func:`_leak_check`: on about 12 short disjoint windows (0.5-3 s), each window's value on the
  line is capped at ``LEAK_CAP`` deviations and summed, so only breadth counts. No corpus
  negative got a line through the first stage; 190 pairs of unrelated pure-tone lines on the same 24
  semitones (5-30 s, ``tests/media/test_align.py``'s ``melody``) did, and reached a capped sum
  of 4.3 with at most 2 windows lit; real leaks, 5 s to 3 min, 6.1 or more with at least 4
  windows and 33 % lit: ``LEAK_CHECK_Z`` = 6, ``LEAK_CHECK_MIN_LIT`` = 4,
  ``LEAK_CHECK_MIN_SHARE`` = 0.3 (before the check, 4 of 5 such 8 s pairs were "leaks").
  Every leak that passed was right to 5 ms, so a passing leak starts at the threshold.
  The windows lie where the guide sounds: on a 9 s guide with a 3 s count-in and a silent
  tail, three windows spread over the whole guide left one on the music, and faint leaks in
  short takes were not found at all. The drift grid misses no window by more than 0.1 ms (the
  main lobe of a whitened peak): a 0.25 ms miss once let a 59 s, -12 dB leak pick a chance line.
  Within a window the same holds: a clock 150 ppm off smears a 3 s window's peak over 7
  samples, so a line drifting by more than ``LEAK_STRETCH_PPM`` = 30 is looked for again with
  every window read at its rate (:func:`_clip_window`); a 48 s take leaking 28 dB under a
  flute at 144 ppm was missed until then (bench seed 1).
- faint leak near clap or part evidence (:func:`_leak_near`, within ``LEAK_NEAR_S``): the line
  only refines an offset that other evidence already gives, so it may be weaker than one that
  is trusted on its own: ``LEAK_NEAR_Z`` = 8 and ``LEAK_NEAR_FRAC`` = 0.5 of the windows on
  the line, and the short-window check at ``LEAK_NEAR_CHECK_Z`` = 4. Near the clap or part
  offsets of the three seeds, chance lines reached z 8.6 (with 36 % of windows on it) and
  7.4 (with 67 %); one periodic take gave z 11 with 69 % (every window holds the same bar)
  but a check of 0.6; the faint real leaks found this way had checks of 4.8-9.2 and are right
  to 1.3 ms.
- clap: four claps on the count-in beats add to the music score at that offset, and between
  the claps the clip must be quiet (``CLAP_GAP_DB`` under its loud frames): another song at
  about the guide's tempo has attacks on the count-in beats too, but it also sounds between them.
Result on seeds 1-3: no negative trusted (highest confidence 0.07); no trusted clip off by more
than 40 ms (an 18 s part-only take of seed 3 was trusted 4.1 s off until the pitch check at other
lags, :func:`_harmony`).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import ndimage, signal

log = logging.getLogger(__name__)

ANALYSIS_RATE = 16000
HOP_S = 0.010  # coarse feature hop
N_FFT = 512
CHROMA_N_FFT = 2048
CHROMA_HOP = 5  # chroma hop in coarse hops (50 ms)

CONFIDENCE_THRESHOLD = 0.5
"""Below this a clip is flagged "needs a manual check" (calibration: the module docstring)."""

SILENCE_RMS = 10 ** (-70 / 20)  # digital silence or a muted mic, about -70 dBFS
MIN_OVERLAP_S = 4.0
CLIP_TOO_LONG_MARGIN_S = 120.0
LEAK_MIN_Z = 10.0
LEAK_MIN_FRAC = 0.5
LEAK_CAP = 3.0
LEAK_LIT_Z = 3.0
LEAK_CHECK_Z = 6.0
LEAK_CHECK_MIN_LIT = 4
LEAK_CHECK_MIN_SHARE = 0.3
CLAP_GAP_DB = 10.0
CHROMA_WEIGHT = 1.5
ACTIVITY_WEIGHT = 0.5
# part-only evidence: combined score of the best peak at which confidence is 0.5, and the
# lead over the runner-up peak (periodic music: the next beat or bar) at which it halves
PART_SCORE_MID = 14.5
PART_MARGIN_MID = 1.0
PART_DRIFT_MIN_S = 80.0
# overlaps of PART_SHORT_S or less need PART_SHORT_EXTRA more score and PART_SHORT_MARGIN_EXTRA
# more lead; from PART_FULL_S on, the thresholds above; linear in between
PART_SHORT_S = 10.0
PART_FULL_S = 30.0
PART_SHORT_EXTRA = 8.0
PART_SHORT_MARGIN_EXTRA = 2.0
# a guide whose beat strength (see _beat_strength) reaches RHYTHM_BEAT_HI has a steady beat:
# part-only evidence then also needs the clip's notes in the guide (pitch z about PITCH_Z_MID)
RHYTHM_BEAT_LO = 0.15
RHYTHM_BEAT_HI = 0.3
PITCH_Z_MID = 4.5
# part-only: the clip's pitch evidence elsewhere (over this far from the peak) may not beat
# the peak's by more than this many deviations (a true peak's own shoulder stays under 0.2)
PITCH_ALT_AWAY_S = 0.5
PITCH_ALT_MARGIN = 1.5
# a faint leak near the clap or part offset: how far to look, and how clear the line must be
LEAK_NEAR_S = 0.05
LEAK_NEAR_Z = 8.0
LEAK_NEAR_FRAC = 0.5
LEAK_NEAR_CHECK_Z = 4.0


class AlignError(Exception):
    """The pair cannot be aligned at all. ``code`` for machines, ``reason`` for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class AlignResult:
    offset_seconds: float
    confidence: float
    method: str  # "leak", "clap", "part" or "none"
    drift_ppm: float
    trusted: bool

    def to_json_dict(self) -> dict:
        return {
            "offset_seconds": round(float(self.offset_seconds), 4),
            "confidence": round(float(self.confidence), 3),
            "method": self.method,
            "drift_ppm": round(float(self.drift_ppm), 1),
            "trusted": bool(self.trusted),
        }


def max_clip_seconds(guide_seconds: float, *, max_lead: float = 60.0,
                     max_lag: float = 10.0) -> float:
    """The longest clip worth analysing for a guide; longer clips are refused as too long."""
    return guide_seconds + max_lead + max_lag + CLIP_TOO_LONG_MARGIN_S


# --------------------------------------------------------------------------- features

def _resample(x: np.ndarray, rate: int) -> np.ndarray:
    if rate == ANALYSIS_RATE:
        return np.asarray(x, dtype=np.float32)
    g = np.gcd(int(rate), ANALYSIS_RATE)
    return signal.resample_poly(np.asarray(x, dtype=np.float32), ANALYSIS_RATE // g,
                                int(rate) // g).astype(np.float32)


def _power_frames(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """|STFT|^2, frames centred on multiples of ``hop`` (frame i at i * hop samples)."""
    pad = np.pad(np.asarray(x, dtype=np.float32), (n_fft // 2, n_fft // 2 + hop))
    n = 1 + (len(x) - 1) // hop + 1
    frames = np.lib.stride_tricks.sliding_window_view(pad, n_fft)[::hop][:n]
    window = np.hanning(n_fft).astype(np.float32)
    out = np.empty((n, n_fft // 2 + 1), dtype=np.float32)
    block = 8192  # bounded memory for long guides
    for a in range(0, n, block):
        spec = sfft.rfft(frames[a:a + block] * window, axis=1)
        out[a:a + block] = spec.real ** 2 + spec.imag ** 2
    return out


def _band_matrix(n_fft: int, edges: np.ndarray) -> np.ndarray:
    freqs = np.arange(n_fft // 2 + 1) * ANALYSIS_RATE / n_fft
    m = np.zeros((len(freqs), len(edges) - 1), dtype=np.float32)
    for k in range(len(edges) - 1):
        m[(freqs >= edges[k]) & (freqs < edges[k + 1]), k] = 1.0
    return m


_BANDS = _band_matrix(N_FFT, np.geomspace(100, 7500, 17))
_BAND_WEIGHTS = (_BANDS / np.maximum(_BANDS.sum(axis=0), 1)).sum(axis=1).astype(np.float32)


def _chroma_matrix() -> np.ndarray:
    freqs = np.arange(CHROMA_N_FFT // 2 + 1) * ANALYSIS_RATE / CHROMA_N_FFT
    m = np.zeros((len(freqs), 12), dtype=np.float32)
    ok = (freqs >= 110) & (freqs <= 3500)
    midi = 69 + 12 * np.log2(np.maximum(freqs, 1) / 440.0)
    pc = np.round(midi).astype(int) % 12
    near = np.abs(midi - np.round(midi))  # weight bins near a semitone centre
    w = np.clip(1.0 - 2.0 * near, 0, 1)
    m[np.nonzero(ok)[0], pc[ok]] = w[ok]
    return m


_CHROMA = _chroma_matrix()


def _pitch_matrix(lo: int = 36, hi: int = 84, harmonics: int = 8) -> np.ndarray:
    """Harmonic summation: each semitone from ``lo`` to ``hi`` (MIDI) collects the bins within a
    quarter tone of its first harmonics, weighted down the series."""
    freqs = np.arange(CHROMA_N_FFT // 2 + 1) * ANALYSIS_RATE / CHROMA_N_FFT
    semis = 12 * np.log2(np.maximum(freqs, 1.0) / 440.0) + 69
    m = np.zeros((len(freqs), hi - lo + 1), dtype=np.float32)
    for j, midi in enumerate(range(lo, hi + 1)):
        for h in range(1, harmonics + 1):
            f = 440.0 * 2 ** ((midi - 69) / 12) * h
            if f > 3800:  # what a phone passes
                break
            near = np.abs(semis - midi - 12 * np.log2(h)) < 0.5
            near[int(round(f * CHROMA_N_FFT / ANALYSIS_RATE))] = True  # low notes: the bin
            m[near, j] = np.maximum(m[near, j], 0.85 ** (h - 1))
    return m


_PITCH = _pitch_matrix()
_PITCH_LO = 36


def _moving_mean(x: np.ndarray, n: int) -> np.ndarray:
    return ndimage.uniform_filter1d(x, size=max(1, n), axis=0, mode="nearest")


@dataclass
class _Features:
    onset: np.ndarray  # (T,) whitened onset strength, 10 ms hop
    chroma: np.ndarray  # (Tc, 12) centred chroma, 50 ms hop
    pitch: np.ndarray  # (Tc, 12) pitch class of the main note (one-hot; 0 where quiet)
    activity: np.ndarray  # (T,) centred soft activity
    active: np.ndarray  # (T,) bool, frame carries sound well above the floor
    seconds: float
    level: np.ndarray  # (T,) frame energy in dB


def _features(x: np.ndarray) -> _Features:
    hop = int(HOP_S * ANALYSIS_RATE)
    p = _power_frames(x, N_FFT, hop)
    bands = p @ _BANDS
    loud = float(np.percentile(bands.sum(axis=1), 95)) + 1e-12
    # SuperFlux-style onset strength: log spectral flux over 20 ms against a reference frame
    # max-filtered across frequency, so vibrato and pitch glides do not read as onsets; each
    # band weighs the same and the log makes it gain- and timbre-independent
    logp = np.log(p + 1e-5 * loud / p.shape[1])
    ref = ndimage.maximum_filter1d(logp, size=5, axis=1)
    flux = np.maximum(0.0, logp[2:] - ref[:-2]) @ _BAND_WEIGHTS
    onset = np.concatenate([np.zeros(2, np.float32), flux]).astype(np.float32)
    onset = onset - _moving_mean(onset, 31)
    spread = np.sqrt(_moving_mean(onset ** 2, 301))
    onset = onset / (spread + np.percentile(spread, 75) + 1e-9)

    energy = bands.sum(axis=1)
    loge = 10 * np.log10(energy + 1e-12)
    lo, hi = np.percentile(loge, [10, 97])
    act = np.clip((loge - lo - 6) / max(hi - lo - 6, 6.0), 0, 1)
    act = _moving_mean(act, 10)
    active = loge > lo + max(10.0, 0.4 * (hi - lo))
    activity = act - act.mean()

    pc = _power_frames(x, CHROMA_N_FFT, hop * CHROMA_HOP)
    chroma = np.sqrt(pc) @ _CHROMA
    chroma = np.log1p(100 * chroma / (chroma.max() + 1e-12))
    norms = np.linalg.norm(chroma, axis=1, keepdims=True)
    chroma = chroma / (norms + 1e-9)
    cact = active[:: CHROMA_HOP][: len(chroma)]
    if len(cact) < len(chroma):
        cact = np.pad(cact, (0, len(chroma) - len(cact)))
    if cact.any():
        chroma = chroma - chroma[cact].mean(axis=0)
    chroma[~cact] = 0.0
    # the main note's pitch class by harmonic summation: a chroma vector of one note also holds
    # its harmonics' classes (a fifth, a third), and a phone's low cut can remove a low voice's
    # fundamental, so the strongest chroma class is often not the note sung
    salience = np.sqrt(pc) @ _PITCH
    pitch = np.zeros_like(chroma)
    pitch[np.arange(len(pitch)), (np.argmax(salience, axis=1) + _PITCH_LO) % 12] = 1.0
    pitch[~cact] = 0.0
    return _Features(onset, chroma.astype(np.float32), pitch, activity.astype(np.float32),
                     active, len(x) / ANALYSIS_RATE, loge.astype(np.float32))


def _xcorr(g: np.ndarray, c: np.ndarray, lag_lo: int, lag_hi: int, *,
           beta: float = 0.0) -> np.ndarray:
    """sum_t g[t] c[t + L] for L in lag_lo..lag_hi (frames); optional PHAT-beta whitening."""
    if g.ndim == 1:
        g = g[:, None]
        c = c[:, None]
    n = sfft.next_fast_len(len(g) + len(c) + abs(lag_lo) + abs(lag_hi))
    spec = (np.conj(sfft.rfft(g, n, axis=0)) * sfft.rfft(c, n, axis=0)).sum(axis=1)
    if beta > 0:
        spec = spec / (np.abs(spec) ** beta + 1e-9 * np.abs(spec).max() + 1e-30)
    r = sfft.irfft(spec, n)
    lags = np.arange(lag_lo, lag_hi + 1)
    return r[lags % n]


def _robust_z(r: np.ndarray) -> np.ndarray:
    med = np.median(r)
    mad = np.median(np.abs(r - med)) * 1.4826 + 1e-12
    return (r - med) / mad


def _peaks(curve: np.ndarray, k: int, min_sep: int) -> list[int]:
    order = np.argsort(curve)[::-1]
    chosen: list[int] = []
    for i in order:
        if all(abs(int(i) - j) >= min_sep for j in chosen):
            if 0 < i < len(curve) - 1 and curve[i] >= curve[i - 1] and curve[i] >= curve[i + 1]:
                chosen.append(int(i))
            elif i in (0, len(curve) - 1):
                continue
        if len(chosen) >= k:
            break
    return chosen


def _parabolic(curve: np.ndarray, i: int) -> float:
    if 0 < i < len(curve) - 1:
        a, b, c = curve[i - 1], curve[i], curve[i + 1]
        den = a - 2 * b + c
        if den < 0:
            return i + float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
    return float(i)


@dataclass
class _Coarse:
    lags_s: np.ndarray
    score: np.ndarray  # combined z-score curve
    onset_z: np.ndarray
    chroma_z: np.ndarray
    act_z: np.ndarray
    pitch_z: np.ndarray  # the clip's main notes sounding in the guide at that moment


def _coarse(fg: _Features, fc: _Features, lag_lo: int, lag_hi: int) -> _Coarse:
    on = _xcorr(fg.onset, fc.onset, lag_lo, lag_hi, beta=0.5)
    on_z = _robust_z(on)
    clo, chi = int(np.floor(lag_lo / CHROMA_HOP)), int(np.ceil(lag_hi / CHROMA_HOP))
    ch = _xcorr(fg.chroma, fc.chroma, clo, chi)
    lags = np.arange(lag_lo, lag_hi + 1)
    ch = np.interp(lags / CHROMA_HOP, np.arange(clo, chi + 1), ch)
    ch_z = _robust_z(ch)
    ac = _xcorr(fg.activity, fc.activity, lag_lo, lag_hi)
    ac_z = _robust_z(ac)
    pi = _xcorr(fg.chroma, fc.pitch, clo, chi)
    pi_z = _robust_z(np.interp(lags / CHROMA_HOP, np.arange(clo, chi + 1), pi))
    # onsets give sharp peaks; harmony and phrasing are broad but tell a bar from the next
    score = on_z + CHROMA_WEIGHT * np.maximum(ch_z, -3) + ACTIVITY_WEIGHT * np.maximum(ac_z, -3)
    return _Coarse(lags * HOP_S, score, on_z, ch_z, ac_z, pi_z)


def _harmony(pitch_z: np.ndarray, i: int) -> float:
    """0..1: do the clip's notes sound in the guide at lag index ``i`` (``pitch_z``: the
    clip's main notes against the guide's chroma, per lag), and not clearly better elsewhere?

    Better elsewhere (beyond this peak's broad shoulder) means that onsets and chroma have
    locked onto a repeat of the music a bar or two away, not onto the take."""
    harmony = _sigmoid((float(pitch_z[i]) - PITCH_Z_MID) / 0.5)
    far = np.abs(np.arange(len(pitch_z)) - i) > int(PITCH_ALT_AWAY_S / HOP_S)
    if far.any():
        here = float(pitch_z[max(0, i - 5):i + 6].max())
        harmony *= _sigmoid(-(float(pitch_z[far].max()) - here - PITCH_ALT_MARGIN) / 0.3)
    return harmony


def _beat_strength(onset: np.ndarray) -> float:
    """How steady the guide's beat is: its onset curve's normalised autocorrelation at the
    strongest period from 0.3 to 1.5 s (songs with a beat about 0.35-0.85, free melodies 0.1)."""
    o = onset - onset.mean()
    lo, hi = int(0.3 / HOP_S), min(int(1.5 / HOP_S), len(o) // 3)
    if hi <= lo:
        return 0.0
    spec = sfft.rfft(o, sfft.next_fast_len(2 * len(o)))
    ac = sfft.irfft(spec.real ** 2 + spec.imag ** 2)[: hi + 1]
    return float(ac[lo:].max() / ac[0]) if ac[0] > 0 else 0.0


# --------------------------------------------------------------------------- leak

def _gcc_phat_curve(gw: np.ndarray, cw: np.ndarray, span: int) -> np.ndarray:
    """GCC-PHAT: for L in 0..span, gw[t] against cw[t + L], as a robust z-score curve."""
    # circular correlation is exact for lags 0..span when cw is span samples longer than gw
    n = sfft.next_fast_len(len(cw), real=True)
    gs = sfft.rfft(gw, n)
    spec = np.conj(gs) * sfft.rfft(cw, n)
    freqs = np.arange(len(spec)) * ANALYSIS_RATE / n
    band = (freqs >= LEAK_BAND[0]) & (freqs <= LEAK_BAND[1])  # what every phone mic passes
    gp = gs.real ** 2 + gs.imag ** 2
    # only where the guide has energy: a tonal guide fills few bins, and the others would
    # add only the clip's own sound to the whitened sum
    band &= gp > LEAK_GUIDE_FLOOR * np.percentile(gp[band], 99)
    spec[~band] = 0
    mag = np.abs(spec)
    spec = spec / (mag + 1e-3 * mag.mean() + 1e-30)
    r = sfft.irfft(spec, n)
    return _robust_z(r[: span + 1])


LEAK_BAND = (300.0, 3400.0)
LEAK_GUIDE_FLOOR = 1e-4  # -40 dB under the guide window's strong bins
MAX_DRIFT_PPM = 250.0  # phones stay within about +-150 ppm
#: Above this drift a leak line is looked for again with the clip read on the guide's clock:
#: 30 ppm over a 3 s window is 1.4 samples at 16 kHz, about a whitened peak's half-width.
LEAK_STRETCH_PPM = 30.0


def _clip_window(c: np.ndarray, start: float, length: int, rate: float) -> np.ndarray | None:
    """``length`` samples of ``c`` from sample position ``start`` taken every ``rate``
    samples (linear interpolation): a window of a drifting clip on the guide's clock, so
    that its correlation peak is not smeared (150 ppm over 3 s is 7 samples at 16 kHz,
    wider than a whitened peak). None when it would reach outside the clip."""
    end = start + (length - 1) * rate
    if start < 0 or end > len(c) - 1:
        return None
    if rate == 1.0 and start == int(start):
        return c[int(start):int(start) + length]
    pos = start + np.arange(length) * rate
    i = pos.astype(np.int64)
    frac = (pos - i).astype(np.float32)
    nxt = np.minimum(i + 1, len(c) - 1)
    return c[i] * (1 - frac) + c[nxt] * frac


@dataclass
class _LeakFit:
    offset: float
    drift_ppm: float
    z: float  # coherent peak over all windows, in noise standard deviations
    frac: float  # share of windows with a clear peak on the fitted line
    windows: int


def _leak_fit(g: np.ndarray, c: np.ndarray, offset_s: float, guide_active: np.ndarray,
              *, search_s: float = 0.08, win_s: float = 3.0, max_win: int = 24,
              stretch_ppm: float = 0.0) -> _LeakFit | None:
    """Is the guide itself in the clip near ``offset_s``? Windowed GCC-PHAT, integrated.

    Each window's whitened correlation is a noisy curve; summed over windows along the line
    of each drift hypothesis the true lag adds up coherently while noise grows only as the
    square root, so leaks far below the performed part are found. Each window is then
    re-read near the line for a sub-sample fit of offset and drift. With ``stretch_ppm``
    (a drift found before), each window is read on the guide's clock (:func:`_clip_window`)
    and the lines are searched around that drift.
    """
    sr = ANALYSIS_RATE
    gdur, cdur = len(g) / sr, len(c) / sr
    t_lo = max(0.0, -offset_s + search_s)
    avail = min(gdur, cdur - offset_s - search_s) - t_lo
    # only where the guide sounds: a short guide's count-in and final reverb would otherwise
    # take up whole windows, and leave too few for a line
    act = np.nonzero(guide_active[int(t_lo / HOP_S):int((t_lo + avail) / HOP_S)])[0]
    if len(act) == 0:
        return None
    t_lo, avail = t_lo + act[0] * HOP_S, (act[-1] + 1 - act[0]) * HOP_S
    win_s = min(win_s, max(1.0, avail / 3))  # short clips: at least three windows
    t_hi = t_lo + avail - win_s
    if t_hi - t_lo < win_s:
        return None
    pad = int(search_s * sr)
    curves, centres = [], []
    n_win = int(np.clip((t_hi - t_lo) / win_s + 1, 3, max_win))
    for t0 in np.linspace(t_lo, t_hi, n_win):
        fa, fb = int(t0 / HOP_S), int((t0 + win_s) / HOP_S)
        if guide_active[fa:fb].mean() < 0.3:
            continue
        a = int(t0 * sr)
        gw = g[a:a + int(win_s * sr)]
        if stretch_ppm:
            rate = 1.0 + stretch_ppm * 1e-6
            cw = _clip_window(c, (offset_s + t0 * rate) * sr - pad * rate, len(gw) + 2 * pad,
                              rate)
        else:
            cs = int(round((t0 + offset_s) * sr)) - pad
            cw = _clip_window(c, cs, len(gw) + 2 * pad, 1.0)
        if cw is None:
            continue
        curves.append(_gcc_phat_curve(gw, cw, 2 * pad))  # index pad <-> offset_s
        centres.append(t0 + win_s / 2)
    if len(curves) < 3:
        return None
    cur = np.array(curves)
    tc = np.array(centres)
    t_ref = float(tc.mean())
    half_span = max(1.0, float(np.ptp(tc)) / 2)

    dt = tc - t_ref
    reach = int(np.ceil(np.abs(dt).max() * (MAX_DRIFT_PPM + 50.0) * 1e-6 * sr)) + 2
    padded = np.pad(cur, ((0, 0), (reach, reach)))
    cols = reach + np.arange(cur.shape[1])

    def coherent(drifts: np.ndarray) -> tuple[float, float, int, np.ndarray]:
        # total[k] = sum over windows of row[k + shift], each row shifted along the line
        shifts = np.round(np.outer(drifts, dt) * 1e-6 * sr).astype(int)
        best = (-np.inf, 0.0, 0, cur[0])
        for d, sh in zip(drifts, shifts, strict=True):
            total = np.take_along_axis(padded, cols[None, :] + sh[:, None], axis=1).sum(axis=0)
            i = int(np.argmax(total))
            if total[i] > best[0]:
                best = (float(total[i]), float(d), i, total)
        return best

    # a drift grid fine enough that the line misses no window by more than 0.1 ms (the main
    # lobe of a whitened peak is about that wide, so a coarser grid can miss the true line
    # and pick a chance one), then a finer one (~0.05 ms) around the winner: tonal music
    # gives every window side peaks a period away, and only the true line collects all the
    # windows' main peaks
    step = min(25.0, 0.0002 / half_span * 1e6)
    peak, d0, i0, _ = coherent(np.arange(-MAX_DRIFT_PPM, MAX_DRIFT_PPM + step / 2, step))
    fine = max(0.5, 0.00005 / half_span * 1e6)
    peak, d0, i0, total = coherent(np.arange(d0 - step, d0 + step + fine / 2, fine))
    z = peak / np.sqrt(len(cur))
    lag_ref = offset_s + (_parabolic(total, i0) - pad) / sr
    # windows whose own peak sits on the line: the share says how clean the leak is, and
    # their sub-sample peaks refine the line
    ts, lags, on_line = [], [], 0
    for row, t in zip(cur, tc, strict=True):
        centre = i0 + (t - t_ref) * d0 * 1e-6 * sr
        lo = int(max(1, np.floor(centre - 0.0004 * sr)))
        hi = int(min(len(row) - 2, np.ceil(centre + 0.0004 * sr)))
        if hi <= lo:
            continue
        j = lo + int(np.argmax(row[lo:hi + 1]))
        if row[j] < 4.0:
            continue
        on_line += 1
        if row[j] >= 0.8 * row.max():  # unambiguous in its own window: use it for the fit
            ts.append(t)
            lags.append(offset_s + (_parabolic(row, j) - pad) / sr)
    frac = on_line / len(cur)
    offset, drift = lag_ref - d0 * 1e-6 * t_ref, d0
    if len(ts) >= 4 and np.ptp(ts) > 0.3 * np.ptp(tc):
        slope, icpt = np.polyfit(np.array(ts), np.array(lags), 1)
        if abs(slope * 1e6 - d0) < 2 * fine + 5:
            offset, drift = float(icpt), float(slope * 1e6)
    drift += stretch_ppm
    log.debug("leak fit near %.3f s: z %.1f, on-line windows %.0f%%, drift %.1f ppm",
              offset_s, z, 100 * frac, drift)
    return _LeakFit(float(offset), float(drift), float(z), frac, len(cur))


@dataclass
class _LeakCheck:
    z: float  # capped evidence on the line summed over the windows, in noise deviations
    lit: int  # windows with a clear peak on the line
    windows: int

    def passed(self) -> bool:
        return (self.z >= LEAK_CHECK_Z and self.lit >= LEAK_CHECK_MIN_LIT
                and self.lit >= LEAK_CHECK_MIN_SHARE * self.windows)


def _leak_fit_on_clock(g: np.ndarray, c: np.ndarray, offset_s: float,
                      guide_active: np.ndarray, **kw) -> _LeakFit | None:
    """:func:`_leak_fit`, then, when the line found drifts by more than
    ``LEAK_STRETCH_PPM``, again with each window read on the guide's clock at that drift;
    the stronger of the two."""
    fit = _leak_fit(g, c, offset_s, guide_active, **kw)
    if fit is None or abs(fit.drift_ppm) <= LEAK_STRETCH_PPM:
        return fit
    again = _leak_fit(g, c, offset_s, guide_active, stretch_ppm=fit.drift_ppm, **kw)
    return again if again is not None and again.z > fit.z else fit


def _leak_check(g: np.ndarray, c: np.ndarray, offset: float, drift_ppm: float,
                guide_active: np.ndarray) -> _LeakCheck | None:
    """Independent check of a leak line on short, disjoint windows covering the overlap.

    A real leak is the guide all along the overlap, so every window where the guide sounds
    shows a peak on the line. A coincidence (two tonal lines sharing pitches, or identical
    note attacks) lights a few windows very brightly: each window's peak is capped at
    ``LEAK_CAP`` deviations, so only breadth counts.
    """
    sr = ANALYSIS_RATE
    a = 1.0 + drift_ppm * 1e-6
    pad = int(0.025 * sr)
    t_lo = max(0.0, (-offset + 0.03) / a)
    t_hi = min(len(g) / sr, (len(c) / sr - offset - 0.03) / a)
    overlap = t_hi - t_lo
    w = float(np.clip(overlap / 12, 0.5, 3.0))
    n = int(overlap // w)
    if n < 4:
        return None
    rows = []
    for k in range(n):
        t0 = t_lo + k * w
        fa, fb = int(t0 / HOP_S), int((t0 + w) / HOP_S)
        if guide_active[fa:fb].mean() < 0.3:
            continue
        ga = int(round(t0 * sr))
        gw = g[ga:ga + int(w * sr)]
        # the window read on the guide's clock: a drifting clip's peak is not smeared
        cw = _clip_window(c, (offset + t0 * a) * sr - pad * a, len(gw) + 2 * pad, a)
        if cw is None:
            continue
        rows.append(_gcc_phat_curve(gw, cw, 2 * pad))
    if len(rows) < 4:
        return None
    # the mean over +-1 sample (the peak's main lobe) stays unbiased under noise, unlike a max
    v = np.array([row[pad - 1:pad + 2].mean() for row in rows])
    z = float(np.clip(v, -LEAK_CAP, LEAK_CAP).sum() / np.sqrt(len(v)))
    return _LeakCheck(z, int((v >= LEAK_LIT_Z).sum()), len(v))


# --------------------------------------------------------------------------- clap

def _hf_onsets(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 2 ms-resolution broadband-transient strength curve (claps, clicks) and its hop (s)."""
    sos = signal.butter(4, [1000, 6000], btype="band", fs=ANALYSIS_RATE, output="sos")
    hf = signal.sosfilt(sos, x)
    hop = 32
    e = hf[: len(hf) // hop * hop].reshape(-1, hop)
    e = np.log(np.mean(e ** 2, axis=1) + 1e-10)
    m = ndimage.maximum_filter1d(e, size=10)  # m[i] = max(e[i-5 .. i+4])
    prev = np.concatenate([np.full(5, e[0]), m[:-5]])  # max of the previous 20 ms
    rise = np.maximum(0.0, e - prev)
    return rise, np.array(hop / ANALYSIS_RATE)


def _count_in(g: np.ndarray, fg: _Features) -> list[float]:
    """Times of the guide's count-in clicks: isolated transients before the music starts."""
    rise, hop = _hf_onsets(g)
    hop = float(hop)
    act = fg.active
    # music start: first 400 ms of continuous activity
    run = np.convolve(act.astype(float), np.ones(40), mode="valid")
    starts = np.nonzero(run >= 39)[0]
    music = starts[0] * HOP_S if len(starts) else fg.seconds
    limit = min(music - 0.06, 20.0)  # the first music note is not part of the count-in
    n = int(limit / hop)
    if n < 10:
        return []
    r = rise[:n]
    thr = max(3.0, 0.3 * float(r.max()))
    peaks, _ = signal.find_peaks(r, height=thr, distance=int(0.2 / hop))
    times = [p * hop for p in peaks]
    if len(times) < 2:
        return []
    return times[-8:]


def _clap_candidates(rise: np.ndarray, hop: float, clicks: list[float], lo: float,
                     hi: float) -> list[tuple[float, int, float]]:
    """Offsets where >= 3 clip transients line up with the count-in (offset, matched, spread)."""
    if len(clicks) < 3:
        return []
    thr = max(3.0, float(np.percentile(rise, 99.5)) * 0.5)
    peaks, props = signal.find_peaks(rise, height=thr, distance=int(0.1 / hop))
    if len(peaks) == 0:
        return []
    order = np.argsort(props["peak_heights"])[::-1][:60]
    tp = np.sort(peaks[order] * hop)
    out = []
    for t in tp:
        for anchor in clicks[:2]:
            off = t - anchor
            if not lo <= off <= hi:
                continue
            devs = []
            for ck in clicks:
                j = np.searchsorted(tp, off + ck)
                best = min((abs(tp[q] - off - ck) for q in (j - 1, j) if 0 <= q < len(tp)),
                           default=1.0)
                if best < 0.045:
                    q = min((q for q in (j - 1, j) if 0 <= q < len(tp)),
                            key=lambda q: abs(tp[q] - off - ck))
                    devs.append(tp[q] - off - ck)
            if len(devs) >= 3:
                out.append((off + float(np.mean(devs)), len(devs), float(np.std(devs))))
    return out


def _quiet_count_in(fc: _Features, off: float, clicks: list[float]) -> bool:
    """Between the claps of a count-in the participant is not playing yet.

    Music that merely has attacks on the same beats (another song at about the same tempo)
    sounds all through the count-in; claps leave only their reverb and the room between them.
    """
    a, b = int((off + clicks[0]) / HOP_S), int((off + clicks[-1]) / HOP_S)
    if a < 0 or b > len(fc.level) or b - a < 10:
        return True
    gap = np.ones(b - a, bool)
    for ck in clicks:
        k = int((off + ck) / HOP_S) - a
        gap[max(0, k - 3):max(0, k + 20)] = False  # the clap and 200 ms of its reverb
    if gap.sum() < 5:
        return True
    level = float(np.median(fc.level[a:b][gap]))
    return level < float(np.percentile(fc.level, 90)) - CLAP_GAP_DB


# --------------------------------------------------------------------------- the engine

def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def correlation_curve(guide: np.ndarray, clip: np.ndarray, sample_rate: int, *,
                      max_lead: float = 60.0, max_lag: float = 10.0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Lags (offset candidates, seconds) and the combined coarse evidence score at each."""
    g = _resample(guide, sample_rate)
    c = _resample(clip, sample_rate)
    fg, fc = _features(g), _features(c)
    lag_lo, lag_hi = _lag_range(fg.seconds, fc.seconds, max_lead, max_lag)
    co = _coarse(fg, fc, lag_lo, lag_hi)
    return co.lags_s, co.score


def _lag_range(gsec: float, csec: float, max_lead: float, max_lag: float) -> tuple[int, int]:
    min_overlap = min(MIN_OVERLAP_S, 0.5 * min(gsec, csec))
    hi = min(max_lead, csec - min_overlap)
    lo = max(-max_lag, -(gsec - min_overlap))
    if hi < lo:
        hi = lo
    return int(np.floor(lo / HOP_S)), int(np.ceil(hi / HOP_S))


def _check_inputs(g: np.ndarray, c: np.ndarray, max_lead: float, max_lag: float) -> None:
    if g.size == 0 or float(np.sqrt(np.mean(g.astype(np.float64) ** 2))) < SILENCE_RMS:
        raise AlignError("silent_guide", "the guide is silent: there is nothing to sync to")
    if c.size < ANALYSIS_RATE // 2:
        raise AlignError("silent_clip", "no audio to sync: the clip's sound is too short")
    if float(np.sqrt(np.mean(c.astype(np.float64) ** 2))) < SILENCE_RMS:
        raise AlignError("silent_clip", "no audio to sync: the clip is silent")
    limit = max_clip_seconds(len(g) / ANALYSIS_RATE, max_lead=max_lead, max_lag=max_lag)
    if len(c) / ANALYSIS_RATE > limit:
        raise AlignError("clip_too_long",
                         f"the clip is far longer than the guide ({len(c) / ANALYSIS_RATE:.0f} s;"
                         f" at most {limit:.0f} s can be synced): trim it and upload again")


@dataclass(frozen=True)
class GuideAnalysis:
    """A guide resampled for analysis with its features: the same for every clip of a
    campaign, so :func:`align_files` keeps the last few (:func:`analyse_guide`)."""

    samples: np.ndarray
    features: _Features


def analyse_guide(guide: np.ndarray, sample_rate: int) -> GuideAnalysis:
    g = _resample(np.nan_to_num(np.asarray(guide, dtype=np.float32)), sample_rate)
    return GuideAnalysis(g, _features(g))


def align_signals(guide: np.ndarray | GuideAnalysis, clip: np.ndarray, sample_rate: int, *,
                  max_lead: float = 60.0, max_lag: float = 10.0) -> AlignResult:
    """Align ``clip`` to ``guide`` (mono float arrays at ``sample_rate``; the guide may
    also be given analysed already)."""
    if not isinstance(guide, GuideAnalysis):
        guide = analyse_guide(guide, sample_rate)
    g, fg = guide.samples, guide.features
    c = _resample(np.nan_to_num(np.asarray(clip, dtype=np.float32)), sample_rate)
    _check_inputs(g, c, max_lead, max_lag)
    fc = _features(c)
    if not fc.active.any():
        return AlignResult(0.0, 0.0, "none", 0.0, False)
    lag_lo, lag_hi = _lag_range(fg.seconds, fc.seconds, max_lead, max_lag)
    co = _coarse(fg, fc, lag_lo, lag_hi)
    lo_s, hi_s = lag_lo * HOP_S, lag_hi * HOP_S

    cand_idx = _peaks(co.score, 6, int(0.06 / HOP_S))
    cands = [(co.lags_s[0] + _parabolic(co.score, i) * HOP_S, float(co.score[i]))
             for i in cand_idx]
    best_score = cands[0][1] if cands else 0.0
    second = cands[1][1] if len(cands) > 1 else 0.0

    def score_at(off: float) -> float:
        i = int(round((off - co.lags_s[0]) / HOP_S))
        if 0 <= i < len(co.score):
            return float(co.score[max(0, i - 2):i + 3].max())
        return -10.0

    # 1. leak: the guide itself in the clip, looked for at the best coarse candidates; a line
    # found there must then pass the independent check on short disjoint windows
    fits: list[_LeakFit] = []
    for off, _ in cands[:4]:
        fit = _leak_fit(g, c, off, fg.active, max_win=8)  # a quick look first
        if fit is not None and fit.z >= 0.5 * LEAK_MIN_Z and fit.windows == 8:
            fit = _leak_fit_on_clock(g, c, off, fg.active)
        if fit is not None and fit.z >= LEAK_MIN_Z and fit.frac >= LEAK_MIN_FRAC:
            fits.append(fit)
    for leak in sorted(fits, key=lambda f: -f.z):
        chk = _leak_check(g, c, leak.offset, leak.drift_ppm, fg.active)
        log.debug("leak line %.4f s %.1f ppm: z %.1f, check %s", leak.offset, leak.drift_ppm,
                  leak.z, chk)
        if chk is not None and chk.passed():
            # a leak that passes the check is right to the sample, so confidence starts at
            # the threshold and grows with the breadth of the evidence
            conf = 0.5 + 0.5 * (1.0 - np.exp(-(chk.z - LEAK_CHECK_Z + 1.0) / 3.0)) * min(
                1.0, chk.lit / chk.windows / 0.6) ** 0.5
            return _result(leak.offset, conf, "leak", leak.drift_ppm)

    # 2. clap: transients lining up with the guide's count-in
    clicks = _count_in(g, fg)
    rise, hop = _hf_onsets(c)
    claps = _clap_candidates(rise, float(hop), clicks, lo_s, hi_s)
    if claps:
        scored = [(n, score_at(off), -sd, off) for off, n, sd in claps]
        scored.sort(reverse=True)
        n, s_at, neg_sd, off = scored[0]
        if s_at >= 0.5 * best_score and s_at > 5.0 and _quiet_count_in(fc, off, clicks):
            drift, _ = _part_drift(fg, fc, off)
            # claps on every count-in beat plus music agreeing there: the count-in
            # pins the beat, so a lower music score suffices than for part-only
            conf = _sigmoid((s_at + 3.0 * (n - 3) - PART_SCORE_MID) / 1.5)
            near = _leak_near(g, c, off, fg.active)
            if near is not None:
                return _result(near.offset, conf, "leak", near.drift_ppm)
            return _result(off, conf, "clap", drift)

    # 3. part: the coarse onset/harmony/phrasing evidence
    if not cands:
        return AlignResult(0.0, 0.0, "none", 0.0, False)
    off = cands[0][0]
    margin = best_score - second
    # a short overlap holds few notes: chance alignments of unrelated music score higher
    # there (and the robust z of a short curve is less robust), so more is asked of it
    overlap = min(fg.seconds, fc.seconds - off) - max(0.0, -off)
    short = float(np.clip((PART_FULL_S - overlap) / (PART_FULL_S - PART_SHORT_S), 0.0, 1.0))
    mid = PART_SCORE_MID + short * PART_SHORT_EXTRA
    margin_mid = PART_MARGIN_MID + short * PART_SHORT_MARGIN_EXTRA
    conf = _sigmoid(best_score - mid) * _sigmoid((margin - margin_mid) / 0.5)
    # another song at the guide's tempo has attacks on the guide's beats, at every beat, and
    # its rhythm can match the guide's for bars on end; so when the guide has a steady beat,
    # onsets alone prove little, and the clip's notes must also sound in the guide there
    rhythm = float(np.clip((_beat_strength(fg.onset) - RHYTHM_BEAT_LO)
                           / (RHYTHM_BEAT_HI - RHYTHM_BEAT_LO), 0.0, 1.0))
    if rhythm > 0:
        conf *= 1.0 - rhythm * (1.0 - _harmony(co.pitch_z, cand_idx[0]))
    drift, centre = _part_drift(fg, fc, off)
    off -= drift * 1e-6 * centre  # the coarse peak is the mean lag; report it at guide t=0
    if conf < 0.1:
        return _result(off, conf, "none", drift)
    near = _leak_near(g, c, off, fg.active)
    if near is not None:
        return _result(near.offset, conf, "leak", near.drift_ppm)
    return _result(off, conf, "part", drift)


def _leak_near(g: np.ndarray, c: np.ndarray, off: float,
               guide_active: np.ndarray) -> _LeakFit | None:
    """A leak too faint for the leak stage, looked for only near an offset that clap or part
    evidence already gives (their error is under ``LEAK_NEAR_S``).

    The trust stays with that evidence; the line only refines the offset, to a fraction of a
    millisecond instead of the 5-30 ms of note onsets, so a weaker line suffices than the
    leak stage needs to trust a clip on its own.
    """
    fit = _leak_fit_on_clock(g, c, off, guide_active, search_s=LEAK_NEAR_S)
    if (fit is None or fit.z < LEAK_NEAR_Z or fit.frac < LEAK_NEAR_FRAC
            or abs(fit.offset - off) > LEAK_NEAR_S):
        return None
    # periodic music repeats the same bar in every window, so a chance line there is as
    # coherent as a real one: it must also show on the independent short windows
    chk = _leak_check(g, c, fit.offset, fit.drift_ppm, guide_active)
    log.debug("faint leak near %.3f s: %.4f s, z %.1f, check %s", off, fit.offset, fit.z, chk)
    if chk is None or chk.z < LEAK_NEAR_CHECK_Z:
        return None
    return fit


def _part_drift(fg: _Features, fc: _Features, off: float) -> tuple[float, float]:
    """(drift_ppm, centre time) from onset correlation in windows along ``off``.

    The drift is 0 when the fit is not significant: note-level jitter makes a part-only
    estimate noisy, and a wrong drift would do more harm in a render than none.
    """
    win = 12.0
    t_lo = max(0.0, -off)
    t_hi = min(fg.seconds, fc.seconds - off) - win
    centre = max(0.0, (t_lo + t_hi + win) / 2)
    if t_hi - t_lo < PART_DRIFT_MIN_S:  # too short: +-150 ppm is then below note jitter
        return 0.0, centre
    n = int(min(10, max(4, (t_hi - t_lo) // 6)))
    ts, lags = [], []
    for t0 in np.linspace(t_lo, t_hi, n):
        a = int(t0 / HOP_S)
        gw = fg.onset[a:a + int(win / HOP_S)]
        if not fg.active[a:a + len(gw)].any():
            continue
        ca = int(round((t0 + off) / HOP_S)) - 6
        if ca < 0:
            continue
        cw = fc.onset[ca:ca + len(gw) + 12]
        if len(cw) < len(gw) + 12:
            continue
        r = np.correlate(cw, gw, mode="valid")
        i = int(np.argmax(r))
        ts.append(a * HOP_S + win / 2)
        lags.append((ca + _parabolic(r, i) - a) * HOP_S)
    if len(ts) < 4:
        return 0.0, centre
    tt, ll = np.array(ts), np.array(lags)
    slope, icpt = np.polyfit(tt, ll, 1)
    resid = ll - (icpt + slope * tt)
    se = np.sqrt(np.sum(resid ** 2) / (len(tt) - 2) / np.sum((tt - tt.mean()) ** 2))
    if abs(slope) < 3.0 * se or abs(slope) > 400e-6:
        return 0.0, centre
    return float(slope * 1e6), float(tt.mean())


def _result(offset: float, conf: float, method: str, drift: float) -> AlignResult:
    conf = float(np.clip(conf, 0.0, 1.0))
    return AlignResult(float(offset), conf, method, float(drift), conf >= CONFIDENCE_THRESHOLD)


#: Guides analysed by :func:`align_files`, newest last, keyed by path, size and mtime (a
#: replaced guide is analysed again): a worker aligns a campaign's clips one after another.
GUIDES_KEPT = 4
_GUIDES: dict[tuple[str, int, int], GuideAnalysis] = {}
_GUIDES_LOCK = threading.Lock()


def align_files(guide_path: str, clip_path: str, **kw) -> AlignResult:
    """Decode both files and align them; :class:`AlignError` with a clear reason otherwise.
    The guide's decoding and analysis are kept for the next clip (:data:`GUIDES_KEPT`)."""
    from .audio import NoAudio, decode_audio

    timeout = float(kw.pop("timeout", 300))
    max_lead = float(kw.get("max_lead", 60.0))
    max_lag = float(kw.get("max_lag", 10.0))
    st = os.stat(guide_path)
    key = (os.path.realpath(guide_path), st.st_size, st.st_mtime_ns)
    with _GUIDES_LOCK:
        guide = _GUIDES.get(key)
    if guide is None:
        try:
            samples = decode_audio(guide_path, sample_rate=ANALYSIS_RATE, timeout=timeout)
        except NoAudio as exc:
            raise AlignError("silent_guide", "the guide has no sound track to sync to") from exc
        guide = analyse_guide(samples, ANALYSIS_RATE)
        with _GUIDES_LOCK:
            _GUIDES[key] = guide
            while len(_GUIDES) > GUIDES_KEPT:
                _GUIDES.pop(next(iter(_GUIDES)))
    limit = max_clip_seconds(guide.features.seconds, max_lead=max_lead, max_lag=max_lag)
    try:
        clip = decode_audio(clip_path, sample_rate=ANALYSIS_RATE, max_seconds=limit + 1.0,
                            timeout=timeout)
    except NoAudio as exc:
        raise AlignError("no_audio", exc.reason) from exc
    return align_signals(guide, clip, ANALYSIS_RATE, **kw)
