"""Part evidence: the clip's notes, harmony and phrasing against the guide's, per lag."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .features import CHROMA_HOP, HOP_S, Features, parabolic, robust_z, sigmoid, xcorr

log = logging.getLogger(__name__)

CHROMA_WEIGHT = 1.5
ACTIVITY_WEIGHT = 0.5

RHYTHM_BEAT_LO = 0.15
RHYTHM_BEAT_HI = 0.3
PITCH_Z_MID = 4.5
# part-only: the clip's pitch evidence elsewhere (over this far from the peak) may not beat
# the peak's by more than this many deviations (a true peak's own shoulder stays under 0.2)
PITCH_ALT_AWAY_S = 0.5
PITCH_ALT_MARGIN = 1.5

PART_DRIFT_MIN_S = 80.0

@dataclass
class MusicCurves:
    lags_s: np.ndarray
    score: np.ndarray  # combined z-score curve
    onset_z: np.ndarray
    chroma_z: np.ndarray
    act_z: np.ndarray
    pitch_z: np.ndarray  # the clip's main notes sounding in the guide at that moment


def music_curves(fg: Features, fc: Features, lag_lo: int, lag_hi: int) -> MusicCurves:
    on = xcorr(fg.onset, fc.onset, lag_lo, lag_hi, beta=0.5)
    on_z = robust_z(on)
    clo, chi = int(np.floor(lag_lo / CHROMA_HOP)), int(np.ceil(lag_hi / CHROMA_HOP))
    ch = xcorr(fg.chroma, fc.chroma, clo, chi)
    lags = np.arange(lag_lo, lag_hi + 1)
    ch = np.interp(lags / CHROMA_HOP, np.arange(clo, chi + 1), ch)
    ch_z = robust_z(ch)
    ac = xcorr(fg.activity, fc.activity, lag_lo, lag_hi)
    ac_z = robust_z(ac)
    pi = xcorr(fg.chroma, fc.pitch, clo, chi)
    pi_z = robust_z(np.interp(lags / CHROMA_HOP, np.arange(clo, chi + 1), pi))
    # onsets give sharp peaks; harmony and phrasing are broad but tell a bar from the next
    score = on_z + CHROMA_WEIGHT * np.maximum(ch_z, -3) + ACTIVITY_WEIGHT * np.maximum(ac_z, -3)
    return MusicCurves(lags * HOP_S, score, on_z, ch_z, ac_z, pi_z)


def pitch_agreement(pitch_z: np.ndarray, i: int) -> float:
    """0..1: do the clip's notes sound in the guide at lag index ``i`` (``pitch_z``: the
    clip's main notes against the guide's chroma, per lag), and not clearly better elsewhere?

    Better elsewhere (beyond this peak's broad shoulder) means that onsets and chroma have
    locked onto a repeat of the music a bar or two away, not onto the take."""
    harmony = sigmoid((float(pitch_z[i]) - PITCH_Z_MID) / 0.5)
    far = np.abs(np.arange(len(pitch_z)) - i) > int(PITCH_ALT_AWAY_S / HOP_S)
    if far.any():
        here = float(pitch_z[max(0, i - 5):i + 6].max())
        harmony *= sigmoid(-(float(pitch_z[far].max()) - here - PITCH_ALT_MARGIN) / 0.3)
    return harmony



def part_drift(fg: Features, fc: Features, off: float) -> tuple[float, float]:
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
        lags.append((ca + parabolic(r, i) - a) * HOP_S)
    if len(ts) < 4:
        return 0.0, centre
    tt, ll = np.array(ts), np.array(lags)
    slope, icpt = np.polyfit(tt, ll, 1)
    resid = ll - (icpt + slope * tt)
    se = np.sqrt(np.sum(resid ** 2) / (len(tt) - 2) / np.sum((tt - tt.mean()) ** 2))
    if abs(slope) < 3.0 * se or abs(slope) > 400e-6:
        return 0.0, centre
    return float(slope * 1e6), float(tt.mean())



#: Part-only: the level, between the local floor and the peak of the onset correlation, whose
#: crossing on the early side marks where the take's notes begin (see :func:`onset_leading_edge`).
EDGE_LEVEL = 0.3
EDGE_SPAN_S = 0.15


def _rising_crossing(r: np.ndarray, i: int, level: float) -> float | None:
    """The fractional index before peak ``i`` where ``r`` last rises through ``level``."""
    j = i
    while j > 0 and r[j - 1] >= level:
        j -= 1
    if j == 0 or r[j] == r[j - 1]:
        return None
    return (j - 1) + float((level - r[j - 1]) / (r[j] - r[j - 1]))


def onset_leading_edge(fg: Features, fc: Features, off: float) -> float:
    """The part-only offset near ``off`` (seconds) read on the leading edge of the onset
    correlation, not at its peak.

    A sung or bowed note's attack (and the room after it) spreads the take's onset evidence
    over the tens of milliseconds after the note begins, never before it, so the correlation
    with the guide's sharp onsets is the guide's own onset autocorrelation smeared late: its
    peak comes 10-40 ms after the true offset (issue 9: part-only takes 12-39 ms late). Its
    early side still rises where the notes begin. The guide is measured the same way: the
    early-side crossing of its onset autocorrelation at the same level gives the distance from
    edge to peak of an unsmeared correlation, which is added back, so a take with attacks as
    sharp as the guide's keeps the peak. Returns ``off`` when no clear edge is found.
    """
    span = int(EDGE_SPAN_S / HOP_S)
    centre = int(round(off / HOP_S))
    xc = xcorr(fg.onset, fc.onset, centre - span, centre + span, beta=0.5)
    ac = xcorr(fg.onset, fg.onset, -span, span, beta=0.5)
    i = int(np.argmax(xc))
    if not 0 < i < len(xc) - 1:
        return off
    floor, peak = float(np.median(xc)), float(xc[i])
    cross = _rising_crossing(xc, i, floor + EDGE_LEVEL * (peak - floor))
    a_floor, a_peak = float(np.median(ac)), float(ac[span])
    a_cross = _rising_crossing(ac, span, a_floor + EDGE_LEVEL * (a_peak - a_floor))
    if cross is None or a_cross is None:
        return off
    edge = (centre - span + cross + (span - a_cross)) * HOP_S
    peak_at = (centre - span + parabolic(xc, i)) * HOP_S
    # the edge is never later than the peak, and a smear over 100 ms is not an attack
    return float(np.clip(edge, peak_at - 0.1, peak_at))
