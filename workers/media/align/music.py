"""Part evidence: the clip's notes, harmony and phrasing against the guide's, per lag."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

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



#: Part-only: the level, between the local floor and the peak of the onset correlation, at
#: which the main lobe's two sides are read (see :func:`onset_lobe_centre`).
LOBE_LEVEL = 0.5
LOBE_SPAN_S = 0.15
#: The centre is never farther than this from the peak (a lobe wider than that is two notes).
LOBE_MAX_SHIFT_S = 0.03


def _crossings(r: np.ndarray, i: int, level: float) -> tuple[float, float] | None:
    """The fractional indices around peak ``i`` where ``r`` rises through and falls back
    under ``level``; None when the lobe runs off either end."""
    j = i
    while j > 0 and r[j - 1] >= level:
        j -= 1
    k = i
    while k < len(r) - 1 and r[k + 1] >= level:
        k += 1
    if j == 0 or k == len(r) - 1 or r[j] == r[j - 1] or r[k] == r[k + 1]:
        return None
    rise = (j - 1) + float((level - r[j - 1]) / (r[j] - r[j - 1]))
    fall = k + float((r[k] - level) / (r[k] - r[k + 1]))
    return rise, fall


def onset_lobe_centre(fg: Features, fc: Features, off: float) -> float:
    """The part-only offset near ``off`` (seconds): the centre of the onset correlation's main
    lobe at :data:`LOBE_LEVEL` of its height, not its peak.

    A performer's notes land around the guide's, early and late by tens of milliseconds (note
    jitter, rubato): the correlation's main lobe is then a plateau about as wide as that spread,
    and its peak falls anywhere on it, wherever chance piles up a few more notes (issue 9: part-
    only takes 12-39 ms off, a bias of the corpus's one realisation). The lobe's centre is the
    mean of the notes' displacements, which is what a single offset can get right. It is
    measured the same way whichever side has the slow attacks (guide or take), where the early
    edge (:func:`onset_leading_edge`) assumes the take is the smeared side and read takes
    against Choir Aahs, string and organ guides 30-200 ms early (a fresh tester's cases, and
    bench/sync's realistic seed 3); :func:`fine_offset` takes the two halfway. Unwhitened
    correlation: whitening sharpens the peak and so favours one side of the plateau.

    A take whose own attacks swell slowly (80 ms) against a piano guide reads 25-35 ms late:
    its evidence is late, and a listener too hears a swelling note begin late (its perceptual
    attack), which is what a singer times to the guide; the tests bound it, they do not hide
    it.

    Returns ``off`` when the lobe is not clear (it runs off the ±:data:`LOBE_SPAN_S` window).
    """
    span = int(LOBE_SPAN_S / HOP_S)
    centre = int(round(off / HOP_S))
    xc = xcorr(fg.onset, fc.onset, centre - span, centre + span)
    i = int(np.argmax(xc))
    if not 0 < i < len(xc) - 1:
        return off
    floor, peak = float(np.median(xc)), float(xc[i])
    lobe = _crossings(xc, i, floor + LOBE_LEVEL * (peak - floor))
    if lobe is None:
        return off
    mid = (centre - span + 0.5 * (lobe[0] + lobe[1])) * HOP_S
    if abs(mid - off) > LOBE_MAX_SHIFT_S:
        # the onsets' own lobe lies elsewhere: they do not refine this pick (a take whose
        # onsets hardly match, read by its harmony), and :func:`onset_support` says so
        return off
    return float(mid)


def onset_support(co: MusicCurves, off: float) -> float:
    """The onset evidence's robust z at its best within :data:`LOBE_MAX_SHIFT_S` of ``off``:
    without onsets there, a part-only offset rests on harmony and phrasing, 50 ms frames that
    cannot place it within 40 ms."""
    i = int(round((off - co.lags_s[0]) / HOP_S))
    half = int(round(LOBE_MAX_SHIFT_S / HOP_S))
    seg = co.onset_z[max(0, i - half):i + half + 1]
    return float(seg.max()) if len(seg) else -10.0


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


#: The attack curve (:func:`attack_onsets`): the onset strength's rise over this many frames.
ATTACK_RISE_FRAMES = 2


def attack_onsets(onset: np.ndarray) -> np.ndarray:
    """Where notes begin: the rise of the onset strength ``onset`` (10 ms frames, any
    length) over :data:`ATTACK_RISE_FRAMES`, its positive part; same shape, float32.

    The onset strength (log spectral flux) of a note lasts as long as its energy rises: a few
    ms for a piano, 40-300 ms for an organ pipe, a bowed or sung note; its centre comes that
    much after the note begins, and a take and a guide whose attacks differ are read off by
    the difference (issue 9 item 2; ``bench/sync/attack.py``: organ guides 12-17 ms early,
    strings and choir guides against a piano or flute take 6-14 ms early). Its rise is where
    the note begins, whatever the attack lasts, so guide and take are measured the same way:
    the same operator with the same smoothing on both (the onset strength's own 20 ms
    difference and 32 ms frames)."""
    k = ATTACK_RISE_FRAMES
    out = np.zeros(len(onset), dtype=np.float32)
    if len(onset) > k:
        out[k:] = np.maximum(onset[k:] - onset[:-k], 0.0)
    return out


#: The attack curves are smoothed (a Gaussian of this standard deviation, s) before their
#: correlation is read (:func:`fine_offset`): about the spread of a performer's note timing.
ATTACK_SMOOTH_S = 0.02


def smoothed_attacks(onset: np.ndarray) -> np.ndarray:
    """:func:`attack_onsets` of ``onset`` smoothed by a Gaussian of :data:`ATTACK_SMOOTH_S`
    (10 ms frames; same shape, float32).

    The correlation of two attack curves (a few frames wide per note) is a sum of narrow
    spikes, one per matched note at that note's displacement (jitter of +-15-30 ms, a rubato
    curve of +-20-40 ms): a ragged histogram, whose half-height lobe follows whichever few
    notes pile up, so single takes read 20-50 ms off a mean displacement that is near zero.
    Smoothed on both sides by about the timing's own spread, the correlation is the smooth
    density of the displacements, and the centre of its lobe follows their mean (issue 9
    item 2: ``bench/sync.parts``, realistic part-only takes, spread 23 -> 18 ms)."""
    a = attack_onsets(onset)
    return ndimage.gaussian_filter1d(a, ATTACK_SMOOTH_S / HOP_S, mode="constant").astype(
        np.float32)


def fine_offset(fg: Features, fc: Features, off: float) -> float:
    """The part-only offset near the music score's pick ``off`` (seconds): the centre of the
    main lobe of the correlation of the guide's and the take's attack curves
    (:func:`attack_onsets`, read as :func:`onset_lobe_centre` reads the onset curves; at most
    :data:`LOBE_MAX_SHIFT_S` from ``off``, else ``off``).

    The lobe's centre is the mean of the notes' displacements (a performer's jitter and rubato
    spread them early and late); reading it on the attack curves rather than on the onset
    strength removes most of the bias from attacks that differ between guide and take. On
    ``bench/sync/attack.py`` (4 chorales, guides on piano, organ, strings, choir; takes on
    piano, strings, slow strings, choir, flute), median signed errors per pair: before
    (halfway between the onset lobe's centre and its early edge) -16.7 to +20.4 ms, the organ
    guides -12 to -17 ms; after -11 to +20 ms, the organ guides -5 to -11 ms; slow strings
    (programme 49, swells of 200 ms and more) still read 7-20 ms late."""
    return onset_lobe_centre(replace(fg, onset=smoothed_attacks(fg.onset)),
                             replace(fc, onset=smoothed_attacks(fc.onset)), off)


#: Part-only timing spread (:func:`local_timing`): window length and step (s), and how far
#: around the pick each window's own offset is looked for.
LOCAL_WIN_S = 5.0
LOCAL_STEP_S = 2.5
LOCAL_SPAN_S = 0.15


@dataclass(frozen=True)
class LocalTiming:
    """Where the take's notes sit against the guide's, window by window (:func:`local_timing`).

    ``lags``: each window's offset minus the pick (s), for the windows whose onsets match;
    ``median``: their median (s); ``spread``: their robust standard deviation (s, 1.4826 MAD);
    ``se``: the standard error of one offset read from them (``spread / sqrt(n)``, s)."""

    lags: np.ndarray
    median: float
    spread: float
    se: float

    @property
    def n(self) -> int:
        return len(self.lags)


def local_timing(fg: Features, fc: Features, off: float, drift_ppm: float = 0.0,
                 onset: np.ndarray | None = None) -> LocalTiming | None:
    """The take's timing against the guide along the pick ``off`` (s): in windows of
    :data:`LOCAL_WIN_S` every :data:`LOCAL_STEP_S`, the centre of the onset correlation's lobe
    within :data:`LOCAL_SPAN_S` of ``off`` (as :func:`onset_lobe_centre`, per window).

    A performer's rubato (a slow tempo curve: notes tens of ms early for a few seconds, then
    late) and jitter make these local offsets spread; one offset for the whole take is then only
    as sure as their standard error, which the global correlation does not show (issue 9:
    part-only takes 41-57 ms off, trusted, with rubato 1-3 % and +-30 ms jitter). ``onset``
    replaces the guide's onset curve (the count-in masked out). None when fewer than three
    windows hold matching onsets. Method: windowed cross-correlation of onset envelopes, as in
    time-delay estimation over short frames (Knapp & Carter 1976), read at the lobe's centre."""
    g = fg.onset if onset is None else onset
    w, step, span = int(LOCAL_WIN_S / HOP_S), int(LOCAL_STEP_S / HOP_S), int(LOCAL_SPAN_S / HOP_S)
    t_lo = max(0.0, -off)
    t_hi = min(fg.seconds, fc.seconds - off) - LOCAL_WIN_S
    lags = []
    for a in range(int(t_lo / HOP_S), int(t_hi / HOP_S) + 1, step):
        gw = g[a:a + w]
        if len(gw) < w or not fg.active[a:a + w].any() or not np.any(gw > 0):
            continue
        shift = off + drift_ppm * 1e-6 * (a * HOP_S + LOCAL_WIN_S / 2)
        ca = int(round(a + shift / HOP_S)) - span
        if ca < 0 or ca + w + 2 * span > len(fc.onset):
            continue
        cw = fc.onset[ca:ca + w + 2 * span]
        r = np.correlate(cw - cw.mean(), gw - gw.mean(), mode="valid")
        i = int(np.argmax(r))
        if not 0 < i < len(r) - 1:
            continue
        floor, peak = float(np.median(r)), float(r[i])
        if peak <= 0 or peak - floor < LOCAL_MIN_RATIO * float(np.std(r)):
            continue
        lobe = _crossings(r, i, floor + LOBE_LEVEL * (peak - floor))
        mid = 0.5 * (lobe[0] + lobe[1]) if lobe is not None else parabolic(r, i)
        lags.append((ca - a + mid) * HOP_S - shift)  # the pick's own drift taken out
    if len(lags) < 3:
        return None
    arr = np.array(lags)
    med = float(np.median(arr))
    spread = float(1.4826 * np.median(np.abs(arr - med)))
    return LocalTiming(arr, med, spread, spread / np.sqrt(len(arr)))


#: A window's lobe must stand this many standard deviations of its correlation above its median.
LOCAL_MIN_RATIO = 2.0
