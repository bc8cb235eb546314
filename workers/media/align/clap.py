"""Clap evidence: the participant clapped along the guide's count-in clicks."""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage, signal

from .features import ANALYSIS_RATE, HOP_S, Features

log = logging.getLogger(__name__)

CLAP_GAP_DB = 10.0

# --------------------------------------------------------------------------- clap

def hf_onsets(x: np.ndarray, *, from_silence: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A 2 ms-resolution broadband-transient strength curve (claps, clicks) and its hop (s).

    ``from_silence``: the recording starts out of silence (a guide exported from notation
    software), so a click in its very first frame is a rise too; a take may start in the
    middle of a sound, so its first frames are compared with themselves."""
    sos = signal.butter(4, [1000, 6000], btype="band", fs=ANALYSIS_RATE, output="sos")
    hf = signal.sosfilt(sos, x)
    hop = 32
    e = hf[: len(hf) // hop * hop].reshape(-1, hop)
    e = np.log(np.mean(e ** 2, axis=1) + 1e-10)
    m = ndimage.maximum_filter1d(e, size=10)  # m[i] = max(e[i-5 .. i+4])
    before = float(e.min()) if from_silence else float(e[0])
    prev = np.concatenate([np.full(5, before), m[:-5]])  # max of the previous 20 ms
    rise = np.maximum(0.0, e - prev)
    return rise, np.array(hop / ANALYSIS_RATE)


def count_in(g: np.ndarray, fg: Features) -> list[float]:
    """Times of the guide's count-in clicks: isolated transients before the music starts."""
    rise, hop = hf_onsets(g, from_silence=True)
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
    r = np.concatenate([[0.0], rise[:n]])  # a click in the first frame is a peak too
    thr = max(3.0, 0.3 * float(r.max()))
    peaks, _ = signal.find_peaks(r, height=thr, distance=int(0.2 / hop))
    times = [(p - 1) * hop for p in peaks]
    if len(times) < 2:
        return []
    return times[-8:]


def clap_candidates(rise: np.ndarray, hop: float, clicks: list[float], lo: float,
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


def quiet_count_in(fc: Features, off: float, clicks: list[float]) -> bool:
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




#: Transients after the count-in at least this share of the claps' own strength: a metronome or
#: a beat track goes on into the music; claps on a count-in stop where the music starts.
CLAP_GOES_ON_SHARE = 0.5
CLAP_GOES_ON_MAX = 2


def count_in_goes_on(rise: np.ndarray, hop: float, off: float, clicks: list[float]) -> bool:
    """Do transients as strong as the matched claps go on over the four beats after the
    count-in (or come over the four before it)? Then they are a metronome (or a drum) in the
    take, not claps on the count-in: a metronome at the guide's tempo lines up with the
    count-in clicks at the wrong phase (found by a tester: trusted 230 ms off at 1.0).

    ``rise`` and ``hop`` from :func:`hf_onsets` of the clip; ``off`` the clap offset (s);
    ``clicks`` the guide's count-in times (s)."""
    if len(clicks) < 2:
        return False
    beat = float(np.median(np.diff(clicks)))
    near = int(0.045 / hop)
    strengths = []
    for ck in clicks:
        i = int(round((off + ck) / hop))
        if 0 <= i < len(rise):
            strengths.append(float(rise[max(0, i - near):i + near + 1].max()))
    if not strengths:
        return False
    level = CLAP_GOES_ON_SHARE * float(np.median(strengths))
    # the four beats after the count-in, and the four before it (a metronome started early)
    for lo, hi in ((clicks[-1] + 0.5 * beat, clicks[-1] + 4.5 * beat),
                   (clicks[0] - 4.5 * beat, clicks[0] - 0.5 * beat)):
        a, b = max(0, int((off + lo) / hop)), min(len(rise), int((off + hi) / hop))
        if b - a < 3:
            continue
        peaks, _ = signal.find_peaks(rise[a:b], height=max(level, 1e-9),
                                     distance=int(0.2 / hop))
        if len(peaks) > CLAP_GOES_ON_MAX:
            return True
    return False
