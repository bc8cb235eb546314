"""Features of a recording that sync compares: note onsets, chroma, the main note's pitch
class, activity and level, on a 10 ms (chroma: 50 ms) grid, and the correlation helpers."""

from __future__ import annotations

import logging
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

SILENCE_RMS = 10 ** (-70 / 20)  # digital silence or a muted mic, about -70 dBFS

# --------------------------------------------------------------------------- features

def resample(x: np.ndarray, rate: int) -> np.ndarray:
    if rate == ANALYSIS_RATE:
        return np.asarray(x, dtype=np.float32)
    g = np.gcd(int(rate), ANALYSIS_RATE)
    return signal.resample_poly(np.asarray(x, dtype=np.float32), ANALYSIS_RATE // g,
                                int(rate) // g).astype(np.float32)


def power_frames(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
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


def max_across(x: np.ndarray, half: int) -> np.ndarray:
    """The maximum of each row of ``x`` (frames x bins) over the ``2 * half + 1`` bins around
    each bin (fewer at the edges); same shape and dtype. Equal to
    ``ndimage.maximum_filter1d(x, 2 * half + 1, axis=1)`` (whose edges reflect, which adds no
    new value to a maximum), in a few whole-array maxima of shifted views: that filter was the
    costliest single step of a take's analysis (about a fifth of a 3-minute take's CPU)."""
    out = x.copy()
    for k in range(1, half + 1):
        np.maximum(out[:, k:], x[:, :-k], out=out[:, k:])
        np.maximum(out[:, :-k], x[:, k:], out=out[:, :-k])
    return out


def moving_mean(x: np.ndarray, n: int) -> np.ndarray:
    return ndimage.uniform_filter1d(x, size=max(1, n), axis=0, mode="nearest")


@dataclass
class Features:
    onset: np.ndarray  # (T,) whitened onset strength, 10 ms hop
    chroma: np.ndarray  # (Tc, 12) centred chroma, 50 ms hop
    pitch: np.ndarray  # (Tc, 12) pitch class of the main note (one-hot; 0 where quiet)
    activity: np.ndarray  # (T,) centred soft activity
    active: np.ndarray  # (T,) bool, frame carries sound well above the floor
    seconds: float
    level: np.ndarray  # (T,) frame energy in dB


#: Frames under this level (dB of band energy) are digital silence: notation software exports
#: guides that begin and end in exact zeros, and they must not set the level statistics.
DIGITAL_SILENCE_DB = -100.0
LOG_FLOOR = 1e-5


#: a recording whose quiet frames (10th percentile) stand above this level (dBFS) is sound
#: throughout, not notes over a room's noise floor (phones record rooms at -70 to -50 dBFS)
THROUGHOUT_DBFS = -40.0


def _sounds_throughout(x: np.ndarray, hop: int) -> bool:
    """Whether a recording is never quiet: the 10th percentile of its ``hop``-sample frames'
    RMS level stands above :data:`THROUGHOUT_DBFS` (``x`` full scale at 1.0)."""
    n = len(x) // hop
    if n < 10:
        return False
    frames = x[: n * hop].astype(np.float64).reshape(n, hop)
    level = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-20)
    return float(np.percentile(level, 10)) > THROUGHOUT_DBFS


def compute_features(x: np.ndarray, *, guide: bool = False) -> Features:
    """The features of a mono recording ``x`` at :data:`ANALYSIS_RATE` (float32, any length).

    ``guide``: the recording is a guide, which is music throughout: its active frames are
    those within 10 dB of its loud ones even when its level hardly moves (a church organ),
    where a take's must stand 10 dB above its own floor.
    """
    hop = int(HOP_S * ANALYSIS_RATE)
    p = power_frames(x, N_FFT, hop)
    bands = p @ _BANDS
    loud = float(np.percentile(bands.sum(axis=1), 95)) + 1e-12
    # SuperFlux-style onset strength: log spectral flux over 20 ms against a reference frame
    # max-filtered across frequency, so vibrato and pitch glides do not read as onsets; each
    # band weighs the same and the log makes it gain- and timbre-independent
    logp = np.log(p + LOG_FLOOR * loud / p.shape[1])
    ref = max_across(logp, 2)
    flux = np.maximum(0.0, logp[2:] - ref[:-2]) @ _BAND_WEIGHTS
    onset = np.concatenate([np.zeros(2, np.float32), flux]).astype(np.float32)
    onset = onset - moving_mean(onset, 31)
    # float64 and a floor at zero: the moving mean of squares of float32 values can dip a hair
    # below zero after exact digital silence, and its square root would be NaN
    spread = np.sqrt(np.maximum(moving_mean(onset.astype(np.float64) ** 2, 301), 0.0))
    onset = (onset / (spread + np.percentile(spread, 75) + 1e-9)).astype(np.float32)

    energy = bands.sum(axis=1)
    loge = 10 * np.log10(energy + 1e-12)
    sounding = loge > DIGITAL_SILENCE_DB
    lo, hi = np.percentile(loge, [10, 97])
    act = np.clip((loge - lo - 6) / max(hi - lo - 6, 6.0), 0, 1)
    act = moving_mean(act, 10)
    threshold = lo + max(10.0, 0.4 * (hi - lo))
    if guide or _sounds_throughout(x, hop):
        # a guide, or a take that is never quiet (an organ guide leaking from speakers the
        # whole time): its level hardly moves, so "10 dB over its floor" finds no frame
        threshold = min(threshold, hi - 10.0)
    active = sounding & (loge > threshold)
    activity = act - act.mean()

    pc = power_frames(x, CHROMA_N_FFT, hop * CHROMA_HOP)
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
    return Features(onset, chroma.astype(np.float32), pitch, activity.astype(np.float32),
                     active, len(x) / ANALYSIS_RATE, loge.astype(np.float32))


def xcorr(g: np.ndarray, c: np.ndarray, lag_lo: int, lag_hi: int, *,
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


def robust_z(r: np.ndarray) -> np.ndarray:
    med = np.median(r)
    mad = np.median(np.abs(r - med)) * 1.4826 + 1e-12
    return (r - med) / mad


def peaks(curve: np.ndarray, k: int, min_sep: int) -> list[int]:
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


def parabolic(curve: np.ndarray, i: int) -> float:
    if 0 < i < len(curve) - 1:
        a, b, c = curve[i - 1], curve[i], curve[i + 1]
        den = a - 2 * b + c
        if den < 0:
            return i + float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
    return float(i)



def beat_strength(onset: np.ndarray) -> float:
    """How steady the guide's beat is: its onset curve's normalised autocorrelation at the
    strongest period from 0.3 to 1.5 s (songs with a beat about 0.35-0.85, free melodies 0.1)."""
    o = onset - onset.mean()
    lo, hi = int(0.3 / HOP_S), min(int(1.5 / HOP_S), len(o) // 3)
    if hi <= lo:
        return 0.0
    spec = sfft.rfft(o, sfft.next_fast_len(2 * len(o)))
    ac = sfft.irfft(spec.real ** 2 + spec.imag ** 2)[: hi + 1]
    return float(ac[lo:].max() / ac[0]) if ac[0] > 0 else 0.0



def sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))
