"""Time maps: a take that rushes or drags, pulled onto the guide's time.

Sync gives one offset per take; a singer who rushes a phrase or drags through a verse is
still early or late inside it. :func:`fit_time_map` finds, from the sound alone, where each
moment of the guide is in the take (guide time -> clip time), within the organizer's
limits: a steady tempo of the take against the guide (at most ``max_tempo``, e.g. 3 %),
plus local corrections of at most ``max_shift`` seconds (e.g. 80 ms) around it, found by
dynamic time warping (DTW) of the two recordings' note onsets and spectra in a band
around that line. The result is a piecewise-linear :class:`TimeMap` with a knot every
``knot_seconds``; the mix plays the take's sound through it
(:func:`workers.media.mixdown.splice_warp`: runs of samples as recorded, so the pitch is
kept, spliced where they get 4 ms off the map; the filtergraph engine's
:func:`warp_filter` used atempo, switched where the tempo changes) and the render its
frames (:func:`guide_time_expr`, a setpts expression of the same map).

Times are seconds; the guide's t=0 is the mash-up's; clip time is the take's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

RATE = 16000  # analysis rate (decode_audio's default)
HOP = 80  # 5 ms frames
N_FFT = 1024
BANDS = 24
MAX_KNOTS = 4000
MAX_TEMPO = 0.03  # the largest tempo limit an organizer may set (3 %)
#: tempo changes smaller than this are not sent to atempo (0.05 %: 2 ms over 4 s)
TEMPO_STEP = 0.0005
#: a segment this close to the take's own speed is copied sample for sample and cut to
#: its length (at most 3 ms per second off inside it, none after): atempo would slide a
#: phrase that starts after a silence by up to its window (about 20 ms)
COPY_TEMPO = 0.003
#: input read past each segment's end, so atempo (a few ms short at times) always has
#: enough to fill the segment's exact length
SEGMENT_OVERLAP = 0.02
#: a segment whose tempo is further than this from 1 is a catch-up in silence (the fit
#: allows no such tempo where the take sounds: its ``max_tempo`` is at most MAX_TEMPO)
SILENT_JUMP = 0.035
#: DTW: the spectra's weight beside the onsets', and the cost of moving one frame off the
#: line (high: the path follows the tempo line unless note onsets say otherwise; tuned on
#: generated takes, tests/media/test_timemap.py)
SPECTRUM_WEIGHT = 0.5
MOVE_PENALTY = 5.0
#: the cost of leaving the tempo line, per frame off it as a share of the band's width
#: (at the band's edge: 0.2 of a frame's similarity): noise in the features does not add
#: up to a warp. Tuned on generated takes and rendered chorale takes (0.3 and more held the
#: 60 ms drag 15 ms off; without it a take in time wandered up to 75 ms)
LINE_PENALTY = 0.2
#: ... except within this many frames of it (10 ms: a tempo line through a drifting take
#: is that far off it at the phrases' starts, where the take is in time)
LINE_FREE = 2
#: a take quieter than this (dB over its floor) is between phrases: a correction may move
#: there faster than the tempo limit, as nothing is heard
QUIET_DB = 12.0
#: a take keeps its map only when the map lines its note onsets up with the guide's this
#: much better (relative onset-correlation score, :func:`onset_gain`) than the one offset
#: does; else it is played at the offset (a map must never make a take worse than its
#: offset: rendered chorale takes exactly in time scored 1-9 % over it, a 2 % slow take
#: 140 %, takes dragging 60 ms a phrase 8 % (rendered) and 40 % (generated))
KEEP_GAIN = 0.10
#: a phrase's entry (the first sounding knot after a breath) is placed by the onsets from
#: ENTRY_BEFORE s before it to ENTRY_AFTER s after it, within ENTRY_RADIUS frames of the
#: DTW path and to a fraction of a frame (:func:`_refine_entries`)
ENTRY_BEFORE = 0.1
ENTRY_AFTER = 0.4
ENTRY_RADIUS = 3
#: how far a take's own tempo is looked for, to tell one beyond the organizer's limit
WIDE_TEMPO = 0.08
#: ... and how far past the limit it must be to count as beyond (0.5 %)
BEYOND_MARGIN = 0.005
#: the onset curves are compared smoothed by this many frames (a choir's soft attack and
#: an organ's hard one peak a few frames apart; the score should not hinge on it)
CHECK_SIGMA = 3.0


@dataclass(frozen=True)
class TimeMap:
    """Guide time -> clip time, piecewise linear through ``(guide[i], clip[i])`` (both
    increasing), extended beyond the ends at the end segments' slopes."""

    guide: tuple[float, ...]
    clip: tuple[float, ...]
    #: False when the fitted map did not line the take's note onsets up with the guide's
    #: clearly better than the one offset did: the map is then flat (the offset alone)
    used: bool = True
    #: how much better (relative onset-correlation score) the fitted map lined the take up
    #: than the offset alone or moved as a whole within the shift limit, whichever lined
    #: it up better (negative: worse)
    gain: float = 0.0
    #: the take's own tempo against the guide (clip seconds per guide second) when it is
    #: beyond the tempo limit (the map then pulls it by the limit only); 0.0 when within
    beyond_tempo: float = 0.0

    def clip_time(self, t: float | np.ndarray) -> float | np.ndarray:
        """The clip time that holds guide time ``t``."""
        g, c = np.asarray(self.guide), np.asarray(self.clip)
        t_arr = np.asarray(t, dtype=float)
        out = np.interp(t_arr, g, c)
        lo = (c[1] - c[0]) / (g[1] - g[0])
        hi = (c[-1] - c[-2]) / (g[-1] - g[-2])
        out = np.where(t_arr < g[0], c[0] + (t_arr - g[0]) * lo, out)
        out = np.where(t_arr > g[-1], c[-1] + (t_arr - g[-1]) * hi, out)
        return float(out) if np.ndim(out) == 0 else out

    def guide_time(self, c: float | np.ndarray) -> float | np.ndarray:
        """The guide time at which clip time ``c`` is heard and seen (the inverse of
        :meth:`clip_time`, extended the same way beyond the ends)."""
        g, k = np.asarray(self.guide), np.asarray(self.clip)
        c_arr = np.asarray(c, dtype=float)
        out = np.interp(c_arr, k, g)
        lo = (g[1] - g[0]) / (k[1] - k[0])
        hi = (g[-1] - g[-2]) / (k[-1] - k[-2])
        out = np.where(c_arr < k[0], g[0] + (c_arr - k[0]) * lo, out)
        out = np.where(c_arr > k[-1], g[-1] + (c_arr - k[-1]) * hi, out)
        return float(out) if np.ndim(out) == 0 else out

    def to_list(self) -> list[list[float]]:
        return [[round(a, 5), round(b, 5)] for a, b in zip(self.guide, self.clip, strict=True)]


def _frames(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(onset strength (T,), band spectrum (T, BANDS), quiet (T,) bool) of mono ``x`` at
    RATE, 5 ms hop."""
    if x.size < N_FFT:
        x = np.pad(x, (0, N_FFT - x.size))
    _, _, z = signal.stft(x.astype(np.float64), fs=RATE, nperseg=N_FFT, noverlap=N_FFT - HOP,
                          boundary="even", padded=True)
    power = np.abs(z.T) ** 2  # (T, F)
    freqs = np.fft.rfftfreq(N_FFT, 1 / RATE)
    edges = np.geomspace(80, 6000, BANDS + 1)
    idx = np.clip(np.digitize(freqs, edges) - 1, -1, BANDS)
    bands = np.zeros((power.shape[0], BANDS))
    for b in range(BANDS):
        sel = idx == b
        if sel.any():
            bands[:, b] = power[:, sel].sum(axis=1)
    loud = float(np.percentile(bands.sum(axis=1), 95)) + 1e-12
    logb = np.log(bands + 1e-4 * loud / BANDS)
    flux = np.maximum(0.0, logb[1:] - logb[:-1]).sum(axis=1)
    onset = np.concatenate([[0.0], flux])
    onset = onset - ndimage.uniform_filter1d(onset, 41, mode="nearest")
    onset = np.maximum(onset, 0)
    onset /= onset.std() + 1e-9
    spec = logb - logb.mean(axis=0)
    spec /= np.linalg.norm(spec, axis=1, keepdims=True) + 1e-9
    level = 10 * np.log10(bands.sum(axis=1) + 1e-12)
    # quiet: near the recording's floor, or a dip well under the sound around it (a
    # breath between phrases, even where a silent lead-in makes the floor far lower)
    quiet = level < np.percentile(level, 10) + QUIET_DB
    return onset, spec, quiet


def _line_fit(go: np.ndarray, co: np.ndarray, offset_frames: float, max_tempo: float,
              search_frames: int) -> tuple[float, float]:
    """(intercept frames, tempo) of the straight line clip = a + s * guide that best lines
    up the onset curves, for s within 1 ± max_tempo and a within offset ± search: a grid
    on 20 ms frames first, then the frame and a finer tempo around the best."""
    g = ndimage.gaussian_filter1d(go, 2.0)
    c = ndimage.gaussian_filter1d(co, 2.0)

    def score(a: float, s: float, gg: np.ndarray, cc: np.ndarray) -> float:
        pos = a + s * np.arange(gg.size, dtype=float)
        return float(np.dot(gg, np.interp(pos, np.arange(cc.size), cc, left=0.0, right=0.0)))

    k = 4  # coarse frames of 20 ms
    gc = g[: g.size // k * k].reshape(-1, k).mean(axis=1)
    cc = c[: c.size // k * k].reshape(-1, k).mean(axis=1)
    steps = max(1, int(round(max_tempo / 0.002)))
    best = (-math.inf, offset_frames, 1.0)
    for s in np.linspace(1 - max_tempo, 1 + max_tempo, 2 * steps + 1):
        for lag in range(-search_frames // k, search_frames // k + 1):
            a = (offset_frames / k) + lag
            value = score(a, s, gc, cc)
            if value > best[0]:
                best = (value, a * k, float(s))
    _, a0, s0 = best
    fine = [(score(a, s, g, c), a, s)
            for s in np.linspace(max(1 - max_tempo, s0 - 0.002),
                                 min(1 + max_tempo, s0 + 0.002), 9)
            for a in np.arange(a0 - 2 * k, a0 + 2 * k + 1)]
    _, a, s = max(fine)
    return float(a), float(s)


def _band_dtw(cost: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """The path through ``cost`` (T, K): one column per row, moving at most one column
    between rows (``penalty[row]`` per move), least total cost. Returns the column per
    row."""
    rows, cols = cost.shape
    acc = np.empty_like(cost)
    back = np.zeros((rows, cols), dtype=np.int8)
    acc[0] = cost[0]
    for i in range(1, rows):
        prev = acc[i - 1]
        stay = prev
        left = np.concatenate([[np.inf], prev[:-1]]) + penalty[i]  # came from k-1
        right = np.concatenate([prev[1:], [np.inf]]) + penalty[i]  # came from k+1
        choice = np.argmin(np.stack([stay, left, right]), axis=0)
        acc[i] = cost[i] + np.choose(choice, [stay, left, right])
        back[i] = choice
    path = np.empty(rows, dtype=int)
    path[-1] = int(np.argmin(acc[-1]))
    for i in range(rows - 1, 0, -1):
        move = back[i, path[i]]
        path[i - 1] = path[i] - (1 if move == 1 else -1 if move == 2 else 0)
    return path


def _refine_entries(go: np.ndarray, co: np.ndarray, base: np.ndarray, knots: np.ndarray,
                    dev: np.ndarray, guide_quiet: np.ndarray) -> np.ndarray:
    """The knots' deviations from the line (frames, (K,)), those at a phrase's entry (the
    first knot that sounds after a breath) moved to where the onset curves (``go``, ``co``
    (T,)) line the phrase's first notes up best: within :data:`ENTRY_RADIUS` frames of the
    path, to a fraction of a frame (a parabola through the best three scores). The path
    holds an entry a frame or two towards the tempo line (each move inside the phrase costs
    it, so it cuts a drag's ramp short at both ends: a take dragging 60 ms a phrase came
    into its phrases 1-8 ms late, 12 ms after the render). ``base`` (T,): the line's take
    frame per guide frame; ``guide_quiet`` (T,) the guide's quiet frames. An entry is a
    knot where the guide sounds after at least half of :data:`ENTRY_BEFORE` of its silence
    (a legato guide, an organ, has few: its first note; the take's own breaths are not
    entries, as a take's onsets alone may pull it towards another timbre's attack)."""
    fps = RATE / HOP
    g = ndimage.gaussian_filter1d(go, CHECK_SIGMA)
    c = ndimage.gaussian_filter1d(co, CHECK_SIGMA)
    grid = np.arange(c.size, dtype=float)
    shifts = np.arange(-ENTRY_RADIUS, ENTRY_RADIUS + 1)
    before, after = int(ENTRY_BEFORE * fps), int(ENTRY_AFTER * fps)
    out = dev.copy()
    for i in range(1, knots.size):
        k = int(knots[i])
        if guide_quiet[k] or guide_quiet[max(0, k - before):k].mean() < 0.5:
            continue  # not an entry
        lo, hi = max(0, k - before), min(go.size, k + after)
        weight = g[lo:hi]
        pos = base[lo:hi] + dev[i]
        scores = np.array([float(np.dot(weight, np.interp(pos + d, grid, c, left=0.0,
                                                          right=0.0))) for d in shifts])
        j = int(np.argmax(scores))
        if scores[j] <= 0:
            continue
        step = float(shifts[j])
        if 0 < j < shifts.size - 1:
            a, b, cc = scores[j - 1], scores[j], scores[j + 1]
            if a - 2 * b + cc < 0:
                step += 0.5 * (a - cc) / (a - 2 * b + cc)
        out[i] = dev[i] + step
    return out


def fit_time_map(guide: np.ndarray, take: np.ndarray, offset: float, *,
                 max_shift: float = 0.08, max_tempo: float = 0.03,
                 knot_seconds: float = 0.25, line_search: float = 0.25) -> TimeMap:
    """The :class:`TimeMap` of ``take`` against ``guide`` (mono float arrays at
    :data:`RATE`) near sync's ``offset`` (clip time at guide t=0): a line of tempo within
    1 ± ``max_tempo`` whose start is within ``line_search`` s of the offset, plus local
    corrections within ± ``max_shift`` s, changing by at most ``max_tempo`` between knots.
    Raises ValueError for limits out of range or recordings too short to map."""
    if not (0 <= max_shift <= 0.5 and 0 <= max_tempo <= MAX_TEMPO and knot_seconds >= 0.1):
        raise ValueError(f"limits out of range: max_shift 0..0.5 s, max_tempo 0..{MAX_TEMPO}, "
                         "knot_seconds >= 0.1")
    go, gs, gq = _frames(guide)
    co, cs, cq = _frames(take)
    if go.size < 40 or co.size < 40:
        raise ValueError("the recordings are too short to map (less than 0.2 s)")
    fps = RATE / HOP
    a, s = _line_fit(go, co, offset * fps, max_tempo, int(line_search * fps))
    ends = np.array([0.0, (go.size - 1) / fps])

    def line_gain(a_: float, s_: float) -> float:
        return onset_gain(go, co, ends, (a_ + s_ * ends * fps) / fps, offset, fps)

    # a take beyond the tempo limit: the best line within the limit may even go the wrong
    # way (a 5 % slow take fitted 1.1 % fast); the line is then the limit, in the take's
    # own direction, from where the take's own tempo line starts, and the map says so
    wide_a, wide_s = _line_fit(go, co, offset * fps, WIDE_TEMPO, int(line_search * fps))
    beyond = 0.0
    if abs(wide_s - 1) > max_tempo + BEYOND_MARGIN and line_gain(wide_a, wide_s) > max(
            KEEP_GAIN, line_gain(a, s) + KEEP_GAIN):
        beyond = wide_s
        a, s = wide_a, 1 + math.copysign(max_tempo, wide_s - 1)
    elif line_gain(a, s) <= KEEP_GAIN:
        # the line too must clearly beat the offset alone (tempo 1 from sync's offset), or
        # the map is built around the offset: a steady take's best line is noise around it
        a, s = offset * fps, 1.0
    w = int(round(max_shift * fps))
    rows = go.size
    base = a + s * np.arange(rows)
    # features of the take along the line, shifted by -w..w frames
    ci = np.clip(np.round(base)[:, None] + np.arange(-w, w + 1)[None, :], 0, co.size - 1) \
        .astype(int)
    inside = (np.round(base)[:, None] + np.arange(-w, w + 1)[None, :] >= 0) & \
             (np.round(base)[:, None] + np.arange(-w, w + 1)[None, :] < co.size)
    gon = ndimage.gaussian_filter1d(go, 1.5)
    con = ndimage.gaussian_filter1d(co, 1.5)
    sim = SPECTRUM_WEIGHT * np.einsum("tb,tkb->tk", gs, cs[ci]) + gon[:, None] * con[ci]
    cost = np.where(inside, -sim, 0.0)
    # moving is cheap where the guide is silent (between phrases): nothing to keep together
    quiet = cq[np.clip(np.round(base).astype(int), 0, co.size - 1)]
    # leaving the line costs in proportion to how far: noise in the features does not
    # add up to a warp, only notes that agree over a stretch move the path
    off_line = np.maximum(np.abs(np.arange(-w, w + 1)) - LINE_FREE, 0)
    cost = cost + LINE_PENALTY * off_line[None, :] / max(w, 1)
    path = _band_dtw(cost, np.where(gq[:rows] | quiet, 0.05, MOVE_PENALTY))
    deviation = (path - w).astype(float)
    # where the take is silent (a breath) the path is not heard: it takes the correction of
    # the next sound, so a catch-up happens in the silence before the phrase, not in its notes
    if quiet.any() and not quiet.all():
        sounding = np.flatnonzero(~quiet)
        nxt = sounding[np.minimum(np.searchsorted(sounding, np.arange(rows)), sounding.size - 1)]
        deviation = deviation[nxt]
    deviation = ndimage.median_filter(deviation, size=int(0.25 * fps) | 1, mode="nearest")
    # knots: the line plus the local deviation, limited in size and in tempo
    step = max(1, int(round(knot_seconds * fps)))
    knots = list(range(0, rows, step))
    if knots[-1] != rows - 1:
        knots.append(rows - 1)
    if len(knots) > MAX_KNOTS:
        raise ValueError("the guide is too long for this knot spacing")
    gt = np.array(knots) / fps
    dev = _refine_entries(go, co, base, np.asarray(knots), deviation[knots].astype(float),
                          gq[:rows]) / fps
    dev = np.clip(dev, -max_shift, max_shift)
    # a change of one analysis frame is noise: held until the deviation moves further (each
    # change is a tempo command, and each costs atempo a little of its timing); not across
    # a silence, where a phrase starts afresh
    for i in range(1, dev.size):
        if abs(dev[i] - dev[i - 1]) <= 1.01 / fps \
                and quiet[knots[i - 1]:knots[i] + 1].mean() <= 0.5:
            dev[i] = dev[i - 1]
    # at most max_tempo of local tempo between knots, except where the take is silent
    for i in range(1, dev.size):
        room = max_tempo * (gt[i] - gt[i - 1])
        if quiet[knots[i - 1]:knots[i] + 1].mean() > 0.5:
            room = 2 * max_shift
        dev[i] = np.clip(dev[i], dev[i - 1] - room, dev[i - 1] + room)
    ct = (a + s * np.array(knots)) / fps + dev
    gain = onset_gain(go, co, gt, ct, offset, fps)
    # judged against the offset moved as a whole too (within the shift limit): a constant
    # shift is sync's to make, and the one that onset curves of different timbres favour
    # is their attacks' difference (an organ guide against Choir Aahs: 25-40 ms), not the
    # take's timing. Rendered chorale takes exactly in time were mapped 25 ms late by that
    # and scored 11-17 % over the offset; over the best constant shift, about nothing
    best_shift = max(onset_gain(go, co, gt, offset + gt + k / fps, offset, fps)
                     for k in range(-w, w + 1))
    gain = (1 + gain) / (1 + max(0.0, best_shift)) - 1
    used = gain > KEEP_GAIN
    if not used:  # never worse than the offset: the map is flat
        ct = offset + gt
    return TimeMap(tuple(float(x) for x in gt), tuple(float(x) for x in ct), used,
                   round(float(gain), 4), round(float(beyond), 4))


def onset_gain(go: np.ndarray, co: np.ndarray, gt: np.ndarray, ct: np.ndarray,
               offset: float, fps: float) -> float:
    """How much better the knots (guide times ``gt``, clip times ``ct``, seconds) line the
    take's note onsets up with the guide's than the one ``offset`` (clip = offset + guide
    time) does: (score(map) - score(offset)) / score(offset), the score being the
    correlation of the two onset curves (``go``, ``co``: :func:`_frames`' onset strength
    at ``fps``, measured the same way in both, smoothed by :data:`CHECK_SIGMA` frames)
    over the guide's whole length. 0 when the offset scores nothing."""
    g = ndimage.gaussian_filter1d(go, CHECK_SIGMA)
    c = ndimage.gaussian_filter1d(co, CHECK_SIGMA)
    t = np.arange(g.size) / fps

    def score(knots: np.ndarray) -> float:
        pos = np.interp(t, gt, knots) * fps
        return float(np.dot(g, np.interp(pos, np.arange(c.size), c, left=0.0, right=0.0)))

    with_offset = score(offset + gt)
    if with_offset <= 0:
        return 0.0
    return (score(ct) - with_offset) / with_offset


def tempo_segments(time_map: TimeMap, start: float) -> tuple[float, list[tuple[float, float]]]:
    """The take from clip time ``start`` as segments played at steady tempi: (the guide
    time its first sample lands on, [(clip seconds of the segment, tempo)]; the last
    segment runs to the take's end). A segment ends where the tempo changes by more than
    :data:`TEMPO_STEP`; each tempo is chosen to reach the next knot's guide time from
    where the output really is, so the small changes left out do not add up."""
    g, c = np.asarray(time_map.guide, float), np.asarray(time_map.clip, float)
    i0 = int(np.clip(np.searchsorted(c, start, side="right") - 1, 0, c.size - 2))
    first = g[i0] + (start - c[i0]) * (g[i0 + 1] - g[i0]) / (c[i0 + 1] - c[i0])
    out, position = first, start
    segments: list[list[float]] = []
    for i in range(i0, c.size - 1):
        ahead, length = g[i + 1] - out, c[i + 1] - position
        if length <= 0:
            continue
        wanted = float(np.clip(length / ahead if ahead > 0 else 2.0, 0.5, 2.0))
        if segments and abs(wanted - segments[-1][1]) <= TEMPO_STEP:
            segments[-1][0] += length
            out += length / segments[-1][1]
        else:
            segments.append([length, wanted])
            out += length / wanted
        position = c[i + 1]
    if not segments:
        segments = [[0.0, float((c[-1] - c[-2]) / (g[-1] - g[-2]))]]
    return float(first), [(a, b) for a, b in segments]


def warp_filter(pad: str, out: str, time_map: TimeMap, start: float, rate: int = 48000,
                tag: str = "w") -> tuple[float, str]:
    """(guide time of the first sample, filtergraph text) playing input pad [``pad``]
    (a take from clip time ``start``: its input seeked there) through ``time_map`` into
    [``out``], stereo float at ``rate``: cut into :func:`tempo_segments` at exact samples,
    each through its own atempo (pitch kept) and cut to its exact output length, joined
    (concat). ``tag`` prefixes the graph's inner labels (unique per take in a graph of
    many). Numbers only in the text."""
    first, segments = tempo_segments(time_map, start)
    stereo = f"aresample={rate},aformat=sample_fmts=flt:channel_layouts=stereo"
    n = len(segments)
    if n == 1:
        return first, f"[{pad}]{stereo},atempo={segments[0][1]:.6f}[{out}]"
    # atempo's output is up to a few ms off length/tempo (its window's grain), so each
    # segment reads SEGMENT_OVERLAP more input and is cut to its exact output length:
    # no drift, no gap
    extra = round(SEGMENT_OVERLAP * rate)
    s, w = f"{tag}s", f"{tag}w"
    parts = [f"[{pad}]{stereo},asplit={n}" + "".join(f"[{s}{k}]" for k in range(n))]
    at_in, done_out, want_out = 0, 0, 0.0
    for k, (length, tempo) in enumerate(segments):
        end_in = at_in + round(length * rate)
        want_out += length / tempo * rate
        out_len = round(want_out) - done_out
        if abs(tempo - 1.0) > SILENT_JUMP and k < n - 1:
            # only made where the take is silent (fit_time_map): the silence is cut
            # short or lengthened at its start, so its end stays joined to the phrase
            # that follows (atempo would slide that phrase by up to its window)
            in_len = end_in - at_in
            if out_len <= in_len:
                parts.append(f"[{s}{k}]atrim=start_sample={end_in - out_len}:"
                             f"end_sample={end_in},asetpts=N/SR/TB[{w}{k}]")
            else:
                parts.append(f"[{s}{k}]atrim=start_sample={at_in}:end_sample={end_in},"
                             f"asetpts=N/SR/TB,adelay=delays={out_len - in_len}S:all=1,"
                             f"apad=whole_len={out_len},atrim=end_sample={out_len},"
                             f"asetpts=N/SR/TB[{w}{k}]")
        else:
            # as recorded (cut to its length), or through atempo; either reads a little
            # past its end so it always fills its exact length
            stretch = "" if abs(tempo - 1.0) <= COPY_TEMPO else f"atempo={tempo:.6f},"
            if k < n - 1:
                parts.append(f"[{s}{k}]atrim=start_sample={at_in}:end_sample={end_in + extra},"
                             f"asetpts=N/SR/TB,{stretch}atrim=end_sample={out_len},"
                             f"asetpts=N/SR/TB[{w}{k}]")
            else:
                parts.append(f"[{s}{k}]atrim=start_sample={at_in},asetpts=N/SR/TB,"
                             f"{stretch}anull[{w}{k}]")
        at_in, done_out = end_in, done_out + out_len
    parts.append("".join(f"[{w}{k}]" for k in range(n)) + f"concat=n={n}:v=0:a=1[{out}]")
    return first, ";".join(parts)


def warp_argv(src: str, dst: str, time_map: TimeMap, start: float,
              rate: int = 48000) -> tuple[float, list[str]]:
    """(guide time of the first sample, ffmpeg arguments) writing the take at ``src`` from
    clip time ``start`` played through ``time_map`` (:func:`warp_filter`) as a float WAV
    (stereo, ``rate``) at ``dst``. Numbers only in the filtergraph; the paths are their
    own arguments."""
    from .ffmpeg import input_url
    from .probe import MEDIA_DEMUXERS, safe_input

    first, graph = warp_filter("0:a:0", "out", time_map, start, rate)
    seek = ["-ss", f"{start:.6f}"] if start > 0 else []
    return first, ["-v", "error", *seek, *safe_input(src, MEDIA_DEMUXERS),
                   "-filter_complex", graph, "-map", "[out]", "-c:a", "pcm_f32le",
                   "-f", "wav", input_url(dst)]


#: slope changes smaller than this (guide seconds per clip second) are left out of
#: :func:`guide_time_expr`: at most 1e-9 × the window's length (microseconds) of error
SLOPE_EPSILON = 1e-9


def guide_time_expr(time_map: TimeMap, shift: float, lo: float, hi: float) -> str:
    """An ffmpeg expression (setpts' ``T``, numbers and ``max`` only) of the guide time
    (seconds) at clip time ``T + shift``, exact for clip times in [``lo``, ``hi``]: the
    map's inverse there, written as a line plus one ramp per knot inside the window,
    ``g(lo) + s0 (x - lo) + Σ (s_i - s_(i-1)) max(x - c_i, 0)`` (a piecewise-linear
    function as a sum of hinges, so the expression is flat: ffmpeg's parser limits how
    deep an expression nests, not how long a sum is). Outside the window it goes on at the
    end segments' slopes. Raises ValueError for an empty window."""
    if not hi > lo:
        raise ValueError(f"empty clip time window [{lo}, {hi}]")
    g, c = np.asarray(time_map.guide, float), np.asarray(time_map.clip, float)
    slopes = np.diff(g) / np.diff(c)  # guide seconds per clip second, per segment
    first = int(np.clip(np.searchsorted(c, lo, side="right") - 1, 0, c.size - 2))
    expr = [f"{float(time_map.guide_time(lo)):.6f}+{slopes[first]:.9f}*(T{shift - lo:+.6f})"]
    for i in range(first + 1, c.size - 1):
        if c[i] >= hi:
            break
        change = slopes[i] - slopes[i - 1]
        if abs(change) > SLOPE_EPSILON:
            expr.append(f"{change:+.9f}*max(T{shift - c[i]:+.6f},0)")
    return "".join(expr)
