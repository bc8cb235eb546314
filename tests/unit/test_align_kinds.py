"""Sync on the kinds of take that were trusted wrong (issue 9): slow attacks on one side only,
claps alone or ahead of the clicks, a second singer in the room. Small generated signals with
known offsets; each test asserts the signed error (estimated minus true offset)."""

from __future__ import annotations

import numpy as np

from tests.media.test_align import claps_audio, clicks_audio, render, room_and_phone, song, take
from workers.media.align import align_signals, features, music
from workers.media.align.decide import RIVAL_S, _Evidence, _onsets_near
from workers.media.align.music import MusicCurves

SR = 16000


def notes(seed: int, n: int = 60) -> tuple[list[tuple[float, float, int]], float]:
    """A melody of ``n`` notes of 0.3-0.9 s: (start s, duration s, MIDI), and its length."""
    rng = np.random.default_rng(seed)
    t, out = 0.5, []
    for _ in range(n):
        d = float(rng.choice([0.3, 0.45, 0.6, 0.9]))
        out.append((t, d, int(rng.integers(55, 75))))
        t += d
    return out, t + 0.5


def voice(ns, seconds: float, *, attack: float, decays: bool) -> np.ndarray:
    """The notes on six harmonics: a linear rise over ``attack`` s, then a piano's decay
    (``decays``) or a held level (bowed, sung, an organ pipe)."""
    out = np.zeros(int(seconds * SR) + SR)
    for s, d, m in ns:
        n = int(d * SR)
        t = np.arange(n) / SR
        f = 440.0 * 2 ** ((m - 69) / 12)
        x = sum(np.sin(2 * np.pi * f * h * t) / h for h in range(1, 7))
        env = np.minimum(1.0, t / attack) * (np.exp(-3 * t) if decays else 1.0)
        env *= np.clip((d - t) / 0.03, 0, 1)
        i = int(s * SR)
        out[i:i + n] += x * env
    rng = np.random.default_rng(0)
    return (out + 1e-3 * rng.standard_normal(len(out))).astype(np.float32)


def fine_error_ms(seed: int, guide_attack: float, take_attack: float) -> float:
    """The part-only fine offset's signed error (ms) for one guide/take attack pair."""
    ns, seconds = notes(seed)
    guide = voice(ns, seconds, attack=guide_attack, decays=guide_attack < 0.01)
    clip = np.concatenate([np.zeros(2 * SR, np.float32),
                           voice(ns, seconds, attack=take_attack, decays=take_attack < 0.01)])
    fg = features.compute_features(guide, guide=True)
    fc = features.compute_features(clip)
    return (music.fine_offset(fg, fc, 2.005) - 2.0) * 1000


def test_slow_attacks_in_the_guide_or_the_take_are_measured_the_same_way():
    """Sharp notes (3 ms) against swells (80-150 ms), either way round: the fine offset reads
    the notes' beginnings on both sides. The onset strength's own lobe read a slow guide
    against a sharp take 12-14 ms early and the reverse 8-10 ms late; the attack curves read
    both within 9 ms, and the same attacks on both sides within 1 ms."""
    for seed in (1, 2, 3):
        assert abs(fine_error_ms(seed, 0.003, 0.003)) < 1.0
        assert abs(fine_error_ms(seed, 0.12, 0.15)) < 1.5
        slow_guide = fine_error_ms(seed, 0.12, 0.003)
        slow_take = fine_error_ms(seed, 0.003, 0.15)
        assert -9.5 < slow_guide < 0.0, slow_guide
        assert 0.0 < slow_take < 9.5, slow_take


def test_attack_curve_marks_where_a_note_begins_whatever_its_attack():
    """The rise of the onset strength peaks within a frame or two of the note's start for a
    3 ms and a 150 ms attack alike (the onset strength itself spreads over the swell)."""
    ns = [(1.0, 1.0, 60), (2.5, 1.0, 64), (4.0, 1.0, 67)]
    for attack in (0.003, 0.15):
        f = features.compute_features(voice(ns, 5.5, attack=attack, decays=False))
        a = music.attack_onsets(f.onset)
        for start, _, _ in ns:
            i = int(start / features.HOP_S)
            assert -1 <= int(np.argmax(a[i - 10:i + 20])) - 10 <= 3, (attack, start)


def test_a_near_peak_with_stronger_onsets_is_reported():
    """Two peaks of the music score 0.2 s apart, as good as each other; the onsets clearly
    stronger at the second: the first, picked on harmony, is named with the excess."""
    lags = np.arange(-200, 201) * features.HOP_S
    bump = lambda at, h, w: h * np.exp(-0.5 * ((lags - at) / w) ** 2)  # noqa: E731
    score = bump(0.0, 40.0, 0.05) + bump(0.2, 38.0, 0.05)
    onset = bump(0.0, 6.0, 0.01) + bump(0.2, 9.5, 0.01)
    zero = np.zeros_like(lags)
    ev = _Evidence(MusicCurves(lags, score, onset, zero, zero, zero))
    off = ev.coarse[0][0]
    near = _onsets_near(ev, off, ev.music(off))
    assert near is not None and abs(near[0] - 0.2) < 0.02 and 3.0 < near[1] < 4.0
    assert 0.2 < RIVAL_S
    # the other way round: the pick holds the stronger onsets, nothing is named
    ev2 = _Evidence(MusicCurves(lags, score, bump(0.0, 9.5, 0.01) + bump(0.2, 6.0, 0.01),
                                zero, zero, zero))
    assert _onsets_near(ev2, ev2.coarse[0][0], ev2.music(ev2.coarse[0][0])) is None


def guide_and_part(seed: int):
    rng = np.random.default_rng(seed)
    clicks, gnotes, pnotes = song(seed, 24.0)
    guide = (render(gnotes, 24.0, piano=True, rng=rng) + clicks_audio(clicks, 24.0))
    part = render(pnotes, 24.0, piano=False, rng=rng, jitter=0.015)
    return rng, clicks, gnotes, guide.astype(np.float32), part


def test_claps_alone_are_never_trusted():
    """Claps on the count-in and nothing else (no part, no leak): periodic evidence alone."""
    for seed in (91, 92, 93):
        rng, clicks, _, guide, _ = guide_and_part(seed)
        clip = room_and_phone(take(claps_audio(clicks, 24.0, rng), 3.0), rng)
        r = align_signals(guide, clip, SR)
        assert not r.trusted, (seed, r)


def test_claps_ahead_of_the_clicks_do_not_move_a_trusted_offset():
    """The count-in clapped 40 ms ahead (people anticipate a metronome), the part on time:
    read 34-51 ms early on the claps, so never trusted; the part's offset is a candidate."""
    for seed in (91, 92, 93, 94):
        rng, clicks, _, guide, part = guide_and_part(seed)
        perf = part + claps_audio([c - 0.04 for c in clicks], 24.0, rng)
        r = align_signals(guide, room_and_phone(take(perf, 3.0), rng), SR)
        err = (r.offset_seconds - 3.0) * 1000
        assert not (r.trusted and abs(err) > 20.0), (seed, err, r)


def test_a_second_singer_in_the_room_does_not_pull_the_offset():
    """Another part of the guide sung in the room 120 ms late, 6 dB under the take's own:
    the offset stays with the take's part (signed error +9 to +17 ms, never 120)."""
    for seed in (91, 92, 93, 94):
        rng, _, gnotes, guide, part = guide_and_part(seed)
        other = render([(s + 0.12, d, m + 12) for s, d, m in gnotes[::4]], 24.0, piano=False,
                       rng=rng)
        r = align_signals(guide, room_and_phone(take(part + 0.5 * other, 3.0), rng), SR)
        err = (r.offset_seconds - 3.0) * 1000
        assert -10.0 < err < 30.0, (seed, err, r)


def test_the_maximum_across_bins_is_the_ndimage_filter_s():
    """The onset strength's reference frame (the maximum over +-2 bins) by shifted views, as
    ``ndimage.maximum_filter1d`` gave it, edges included; and a clean recording passes
    through ``finite`` uncopied, a NaN or an infinity is replaced."""
    from scipy import ndimage

    from workers.media.align.decide import finite

    rng = np.random.default_rng(3)
    for shape, half in (((7, 257), 2), ((3, 4), 2), ((5, 9), 1), ((2, 3), 3)):
        x = rng.standard_normal(shape).astype(np.float32)
        got = features.max_across(x, half)
        assert got.dtype == x.dtype
        np.testing.assert_array_equal(got, ndimage.maximum_filter1d(x, 2 * half + 1, axis=1))
    clean = rng.standard_normal(100).astype(np.float32)
    assert finite(clean) is clean
    dirty = clean.copy()
    dirty[[3, 5]] = [np.nan, np.inf]
    fixed = finite(dirty)
    assert np.isfinite(fixed).all() and fixed[3] == 0.0 and np.isnan(dirty[3])


def test_leak_checks_share_the_guide_windows_spectra_exactly():
    """The checks of a leak line's rivals transform each guide window once (``spectra``):
    the same check, to the bit, as without, and a second offset adds no window."""
    from tests.media.test_align import case
    from workers.media.align import leak

    guide, clip = case(11, offset=4.0, mode="leak", seconds=40.0)
    fg = features.compute_features(guide, guide=True)
    plain = leak.leak_check(guide, clip, 4.0, 0.0, fg.active)
    spectra: dict = {}
    shared = leak.leak_check(guide, clip, 4.0, 0.0, fg.active, spectra)
    assert plain is not None and plain.passed() and shared == plain
    kept = len(spectra)
    other = leak.leak_check(guide, clip, 6.5, 0.0, fg.active, spectra)
    assert other == leak.leak_check(guide, clip, 6.5, 0.0, fg.active)
    assert len(spectra) == kept


def timing_error_ms(seed: int) -> float:
    """The fine offset's signed error (ms) for a take of 80 sharp notes each displaced by a
    slow rubato curve (+-30 ms, a 4-12 s period) and jitter (+-25 ms), of mean zero."""
    ns, seconds = notes(seed, 80)
    rng = np.random.default_rng(seed + 100)
    starts = np.array([s for s, _, _ in ns])
    d = 0.03 * np.sin(2 * np.pi * starts / rng.uniform(4, 12) + rng.uniform(0, 2 * np.pi))
    d = d + rng.uniform(-0.025, 0.025, len(ns))
    d -= d.mean()
    moved = [(s + x, dur, m) for (s, dur, m), x in zip(ns, d, strict=True)]
    guide = voice(ns, seconds, attack=0.003, decays=True)
    clip = np.concatenate([np.zeros(2 * SR, np.float32),
                           voice(moved, seconds, attack=0.003, decays=True)])
    fg = features.compute_features(guide, guide=True)
    return (music.fine_offset(fg, features.compute_features(clip), 2.0) - 2.0) * 1000


def test_the_fine_offset_follows_the_mean_of_the_notes_timing():
    """The correlation of raw attack curves is a ragged histogram of the notes' displacements,
    and its lobe follows the few that pile up (-4.6, +6.4, +12.8, -4.0 ms on these takes);
    smoothed by about the timing's spread, its centre follows their mean (within 8.5 ms, the
    mean error under 4 ms)."""
    errs = [timing_error_ms(seed) for seed in (1, 2, 3, 7)]
    assert max(abs(e) for e in errs) < 8.5, errs
    assert np.mean(np.abs(errs)) < 4.0, errs
