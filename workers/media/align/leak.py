"""Leak evidence: the guide itself heard in the clip (headphone spill), found by
whitened cross-correlation (GCC-PHAT) integrated along a line of offset and drift."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from .features import ANALYSIS_RATE, HOP_S, parabolic, robust_z

log = logging.getLogger(__name__)

LEAK_MIN_Z = 10.0
LEAK_MIN_FRAC = 0.5
LEAK_CAP = 3.0
LEAK_LIT_Z = 3.0
LEAK_CHECK_Z = 6.0
LEAK_CHECK_MIN_LIT = 4
LEAK_CHECK_MIN_SHARE = 0.3

LEAK_NEAR_S = 0.05
LEAK_NEAR_Z = 8.0
LEAK_NEAR_FRAC = 0.5
LEAK_NEAR_CHECK_Z = 4.0

# --------------------------------------------------------------------------- leak

def guide_spectrum(gw: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The guide window's spectrum (``n``-point real FFT) and the bins GCC-PHAT uses: within
    :data:`LEAK_BAND` and where the guide has energy (:func:`gcc_phat_curve`)."""
    gs = sfft.rfft(gw, n)
    freqs = np.arange(len(gs)) * ANALYSIS_RATE / n
    band = (freqs >= LEAK_BAND[0]) & (freqs <= LEAK_BAND[1])  # what every phone mic passes
    gp = gs.real ** 2 + gs.imag ** 2
    # only where the guide has energy: a tonal guide fills few bins, and the others would
    # add only the clip's own sound to the whitened sum
    band &= gp > LEAK_GUIDE_FLOOR * np.percentile(gp[band], 99)
    return gs, band


def gcc_phat_curve(gw: np.ndarray, cw: np.ndarray, span: int,
                   spectra: dict | None = None, key: object = None) -> np.ndarray:
    """GCC-PHAT: for L in 0..span, gw[t] against cw[t + L], as a robust z-score curve.
    ``spectra``: :func:`guide_spectrum` results kept by ``key`` (the guide window's place and
    length), so that checks of one guide at several offsets transform each window once."""
    # circular correlation is exact for lags 0..span when cw is span samples longer than gw
    n = sfft.next_fast_len(len(cw), real=True)
    if spectra is None:
        gs, band = guide_spectrum(gw, n)
    else:
        got = spectra.get((key, n))
        if got is None:
            got = spectra[(key, n)] = guide_spectrum(gw, n)
        gs, band = got
    spec = np.conj(gs) * sfft.rfft(cw, n)
    spec[~band] = 0
    mag = np.abs(spec)
    spec = spec / (mag + 1e-3 * mag.mean() + 1e-30)
    r = sfft.irfft(spec, n)
    return robust_z(r[: span + 1])


LEAK_BAND = (300.0, 3400.0)
LEAK_GUIDE_FLOOR = 1e-4  # -40 dB under the guide window's strong bins
MAX_DRIFT_PPM = 250.0  # phones stay within about +-150 ppm
#: Above this drift a leak line is looked for again with the clip read on the guide's clock:
#: 30 ppm over a 3 s window is 1.4 samples at 16 kHz, about a whitened peak's half-width.
LEAK_STRETCH_PPM = 30.0


def clip_window(c: np.ndarray, start: float, length: int, rate: float) -> np.ndarray | None:
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
class LeakFit:
    offset: float
    drift_ppm: float
    z: float  # coherent peak over all windows, in noise standard deviations
    frac: float  # share of windows with a clear peak on the fitted line
    windows: int


def leak_fit(g: np.ndarray, c: np.ndarray, offset_s: float, guide_active: np.ndarray,
              *, search_s: float = 0.08, win_s: float = 3.0, max_win: int = 24,
              stretch_ppm: float = 0.0) -> LeakFit | None:
    """Is the guide itself in the clip near ``offset_s``? Windowed GCC-PHAT, integrated.

    Each window's whitened correlation is a noisy curve; summed over windows along the line
    of each drift hypothesis the true lag adds up coherently while noise grows only as the
    square root, so leaks far below the performed part are found. Each window is then
    re-read near the line for a sub-sample fit of offset and drift. With ``stretch_ppm``
    (a drift found before), each window is read on the guide's clock (:func:`clip_window`)
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
            cw = clip_window(c, (offset_s + t0 * rate) * sr - pad * rate, len(gw) + 2 * pad,
                              rate)
        else:
            cs = int(round((t0 + offset_s) * sr)) - pad
            cw = clip_window(c, cs, len(gw) + 2 * pad, 1.0)
        if cw is None:
            continue
        curves.append(gcc_phat_curve(gw, cw, 2 * pad))  # index pad <-> offset_s
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
    lag_ref = offset_s + (parabolic(total, i0) - pad) / sr
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
            lags.append(offset_s + (parabolic(row, j) - pad) / sr)
    frac = on_line / len(cur)
    offset, drift = lag_ref - d0 * 1e-6 * t_ref, d0
    if len(ts) >= 4 and np.ptp(ts) > 0.3 * np.ptp(tc):
        slope, icpt = np.polyfit(np.array(ts), np.array(lags), 1)
        if abs(slope * 1e6 - d0) < 2 * fine + 5:
            offset, drift = float(icpt), float(slope * 1e6)
    drift += stretch_ppm
    log.debug("leak fit near %.3f s: z %.1f, on-line windows %.0f%%, drift %.1f ppm",
              offset_s, z, 100 * frac, drift)
    return LeakFit(float(offset), float(drift), float(z), frac, len(cur))


@dataclass
class LeakCheck:
    z: float  # capped evidence on the line summed over the windows, in noise deviations
    lit: int  # windows with a clear peak on the line
    windows: int

    def passed(self) -> bool:
        return (self.z >= LEAK_CHECK_Z and self.lit >= LEAK_CHECK_MIN_LIT
                and self.lit >= LEAK_CHECK_MIN_SHARE * self.windows)


def leak_fit_on_clock(g: np.ndarray, c: np.ndarray, offset_s: float,
                      guide_active: np.ndarray, **kw) -> LeakFit | None:
    """:func:`leak_fit`, then, when the line found drifts by more than
    ``LEAK_STRETCH_PPM``, again with each window read on the guide's clock at that drift;
    the stronger of the two."""
    fit = leak_fit(g, c, offset_s, guide_active, **kw)
    if fit is None or abs(fit.drift_ppm) <= LEAK_STRETCH_PPM:
        return fit
    again = leak_fit(g, c, offset_s, guide_active, stretch_ppm=fit.drift_ppm, **kw)
    return again if again is not None and again.z > fit.z else fit


def _short_windows(g: np.ndarray, c: np.ndarray, offset: float, a: float, pad: int,
                   t_lo: float, t_hi: float, guide_active: np.ndarray):
    """The short, disjoint windows of :func:`leak_check` and :func:`leak_scan`: about 12
    over the guide's overlap ``t_lo``..``t_hi`` (s; 0.5 to 3 s each), those where the guide
    sounds (``guide_active``, 30 % of its frames), each as ``(ga, gw, cw)``: the guide
    window's first sample, its samples and the clip's under it read on the guide's clock
    (clock ratio ``a``: a drifting clip's peak is not smeared) with ``pad`` samples of lag
    either side of ``offset`` (s)."""
    sr = ANALYSIS_RATE
    overlap = t_hi - t_lo
    w = float(np.clip(overlap / 12, 0.5, 3.0))
    for k in range(max(0, int(overlap // w))):
        t0 = t_lo + k * w
        fa, fb = int(t0 / HOP_S), int((t0 + w) / HOP_S)
        if guide_active[fa:fb].mean() < 0.3:
            continue
        ga = int(round(t0 * sr))
        gw = g[ga:ga + int(w * sr)]
        cw = clip_window(c, (offset + t0 * a) * sr - pad * a, len(gw) + 2 * pad, a)
        if cw is not None:
            yield ga, gw, cw


def leak_check(g: np.ndarray, c: np.ndarray, offset: float, drift_ppm: float,
                guide_active: np.ndarray, spectra: dict | None = None) -> LeakCheck | None:
    """Independent check of a leak line on short, disjoint windows covering the overlap.

    A real leak is the guide all along the overlap, so every window where the guide sounds
    shows a peak on the line. A coincidence (two tonal lines sharing pitches, or identical
    note attacks) lights a few windows very brightly: each window's peak is capped at
    ``LEAK_CAP`` deviations, so only breadth counts.

    ``spectra`` (a dict, empty at first): the guide windows' spectra kept between the checks
    of one guide and clip at several offsets (the rivals of a leak line: on a 3-minute take
    each check reads 60 windows of 3 s, and the checks were most of its CPU); the windows of
    checks at one drift that start at the guide's t=0 are the same.
    """
    sr = ANALYSIS_RATE
    a = 1.0 + drift_ppm * 1e-6
    pad = int(0.025 * sr)
    t_lo = max(0.0, (-offset + 0.03) / a)
    t_hi = min(len(g) / sr, (len(c) / sr - offset - 0.03) / a)
    rows = [gcc_phat_curve(gw, cw, 2 * pad, spectra, (ga, len(gw))) for ga, gw, cw in
            _short_windows(g, c, offset, a, pad, t_lo, t_hi, guide_active)]
    if len(rows) < 4:
        return None
    # the mean over +-1 sample (the peak's main lobe) stays unbiased under noise, unlike a max
    v = np.array([row[pad - 1:pad + 2].mean() for row in rows])
    z = float(np.clip(v, -LEAK_CAP, LEAK_CAP).sum() / np.sqrt(len(v)))
    return LeakCheck(z, int((v >= LEAK_LIT_Z).sum()), len(v))



def leak_near(g: np.ndarray, c: np.ndarray, off: float,
               guide_active: np.ndarray) -> LeakFit | None:
    """A leak too faint for the leak stage, looked for only near an offset that clap or part
    evidence already gives (their error is under ``LEAK_NEAR_S``).

    The trust stays with that evidence; the line only refines the offset, to a fraction of a
    millisecond instead of the 5-30 ms of note onsets, so a weaker line suffices than the
    leak stage needs to trust a clip on its own.
    """
    fit = leak_fit_on_clock(g, c, off, guide_active, search_s=LEAK_NEAR_S)
    if (fit is None or fit.z < LEAK_NEAR_Z or fit.frac < LEAK_NEAR_FRAC
            or abs(fit.offset - off) > LEAK_NEAR_S):
        return None
    # periodic music repeats the same bar in every window, so a chance line there is as
    # coherent as a real one: it must also show on the independent short windows
    chk = leak_check(g, c, fit.offset, fit.drift_ppm, guide_active)
    log.debug("faint leak near %.3f s: %.4f s, z %.1f, check %s", off, fit.offset, fit.z, chk)
    if chk is None or chk.z < LEAK_NEAR_CHECK_Z:
        return None
    return fit




#: Leak scan (:func:`leak_scan`): how far around the part's offset the short windows' capped
#: evidence is read (s), and the capped sum (noise deviations) a line must reach there to be
#: found; calibration in the decide module's notes.
LEAK_SCAN_S = 0.06
LEAK_SCAN_Z = 6.0


def leak_scan(g: np.ndarray, c: np.ndarray, off: float, drift_ppm: float,
              guide_active: np.ndarray, *, span_s: float = LEAK_SCAN_S) -> LeakFit | None:
    """The guide heard in the clip within ``span_s`` of ``off`` (s), found by the short windows
    of :func:`leak_check` read at every lag there rather than along a fitted line: the lag
    whose capped evidence, summed over the windows, is highest. ``LeakFit.z`` is that sum
    (noise deviations, as :attr:`LeakCheck.z`), ``frac`` the share of windows lit there.

    A guide that never stops sounding (a church organ: held chords, no attacks) leaks as steady
    tones, whose phases in each window are those of the room's response at a few frequencies:
    every window then shows a weak peak on the line (1-3 deviations) and hardly any a clear one,
    so the line is neither found by :func:`leak_fit` (a handful of 3 s windows, a peak each) nor
    passed by the check (windows lit at 3). Summed over 10-12 short windows, the weak peaks of
    a real leak still stand out (issue 9: an organ guide leaking 6 dB down under a sung part
    through a room: 5.8-8.7 at the true offset, against at most 5.0 with no leak). None when
    fewer than four windows lie where the guide sounds.
    """
    sr = ANALYSIS_RATE
    a = 1.0 + drift_ppm * 1e-6
    pad = int(span_s * sr)
    t_lo = max(0.0, (-off + span_s) / a)
    t_hi = min(len(g) / sr, (len(c) / sr - off - span_s) / a)
    rows = [gcc_phat_curve(gw, cw, 2 * pad) for _ga, gw, cw in
            _short_windows(g, c, off, a, pad, t_lo, t_hi, guide_active)]
    if len(rows) < 4:
        return None
    cur = np.array(rows)
    # as leak_check: the mean over +-1 sample (the peak's main lobe), capped per window
    lobe = (cur[:, :-2] + cur[:, 1:-1] + cur[:, 2:]) / 3.0
    total = np.clip(lobe, -LEAK_CAP, LEAK_CAP).sum(axis=0) / np.sqrt(len(cur))
    i = int(np.argmax(total))
    offset = off + (i + 1 - pad + (parabolic(total, i) - i)) / sr
    lit = int((lobe[:, i] >= LEAK_LIT_Z).sum())
    log.debug("leak scan near %.4f s: %.4f s, z %.1f, lit %d of %d", off, offset,
              total[i], lit, len(cur))
    return LeakFit(float(offset), float(drift_ppm), float(total[i]), lit / len(cur), len(cur))
