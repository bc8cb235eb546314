"""Time maps on real music: a Bach chorale's organ guide and Choir Aahs takes with known
timing errors, rendered by FluidSynth; where :func:`workers.media.timemap.fit_time_map`
puts each phrase's first and last note against the truth.

    .venv/bin/python -m bench.sound.timemap_real [--chorale bwv66.6] [--bpm 80] [--diagnose]
        [--guide-program 19]

Needs what ``make bench-sync-deps`` installs (music21, FluidSynth, fluid-soundfont-gm).
The guide: all four parts of the chorale (music21's corpus) on church organ (GM 19, the
soundfont's reverb on), strictly in time, 44.1 kHz, as notation software exports it. Each
take: one part on Choir Aahs (GM 52, dry), velocities swelling 55-95 over 8 s (a soft choir),
rendered from the same score with a known warp ``clip time = w(guide time)``:

- **exact**: ``OFFSET + t`` (clean, and under a 50 Hz buzz that the clean-up notches out
  first, as the pipeline fits it);
- **2 % slow**: ``OFFSET + 1.02 t`` from the music's start;
- **drags 60 ms a phrase**: in time at each phrase start, 60 ms late by its end;
- **shifted phrases**: each phrase starting +-60 ms off (alternately) and ending 30 ms off the
  other way (a tempo of about 1-2 % inside);
- **jittered**: exact but each note +-10 ms (a person in time): the map must not make it worse.

The map is fitted from the true offset (sync's job is not measured here). Errors are
``w(t) - map(t)`` in ms at the part's note onsets (+ = the note plays late after the map):
at each phrase start and at each phrase's last note, and the largest over all notes; the
same for the offset alone. Rendered audio is cached (``bench/out/sync-real-cache``).

``--diagnose`` prints instead what the map's onset curves can see: where the guide's and
each take's curve peak after the take's note-ons (median, ms), and how the *true* warp
scores on them against the one offset (:func:`workers.media.timemap.onset_gain`): as is,
moved by its best constant, and the offset moved by its own (the safeguard's comparison).
A warp the curves cannot see scores no better than the offset.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.sync.real import GUIDE_SR, Event, load_chorale, render_events, to_sr
from workers.media.sound import remove_hum
from workers.media.timemap import RATE, fit_time_map

OFFSET = 1.3  # clip time of the guide's t=0
LEAD = 1.0  # guide time of the first note
ORGAN, CHOIR = 19, 52


def _warps(starts: list[float], end: float) -> dict:
    """Name -> (part, warp guide time -> clip time)."""
    def phrase_of(t: float) -> int:
        return max(0, int(np.searchsorted(starts, t + 1e-9, side="right")) - 1)

    def bounds(i: int) -> tuple[float, float]:
        return starts[i], (starts[i + 1] if i + 1 < len(starts) else end)

    def exact(t):
        return OFFSET + t

    def slow(t):
        return OFFSET + LEAD + 1.02 * (t - LEAD)

    def drag(t):
        a, b = bounds(phrase_of(t))
        return OFFSET + t + 0.06 * np.clip((t - a) / (b - a), 0, 1)

    def shifted(t):
        i = phrase_of(t)
        a, b = bounds(i)
        sign = 1 if i % 2 else -1
        return OFFSET + t + sign * (0.06 - 0.09 * np.clip((t - a) / (b - a), 0, 1))

    return {"exact (S)": ("S", exact), "exact + 50 Hz buzz (B)": ("B", exact),
            "jittered +-10 ms (A)": ("A", exact), "2 % slow (S)": ("S", slow),
            "drags 60 ms a phrase (A)": ("A", drag), "drags 60 ms a phrase (S)": ("S", drag),
            "shifted phrases (T)": ("T", shifted)}


def build(chorale: str, bpm: float, guide_program: int = ORGAN):
    """(guide at RATE, {name: (take at RATE, warp, note onsets, phrase starts, phrase
    last notes)}); the guide on General MIDI program ``guide_program``."""
    ch = load_chorale(chorale)
    beat = 60.0 / bpm

    def t_of(q: float) -> float:
        return LEAD + q * beat

    tracks = [(guide_program, [Event(t_of(n.q), n.dur * beat * 0.98, n.midi,
                                     80 + (10 if v == "S" else 0)) for n in ch.parts[v]])
              for v in "SATB"]
    guide = to_sr(render_events(tracks, reverb=True).astype(np.float64), GUIDE_SR, RATE)
    starts = [t_of(q) for q in ch.phrase_starts]
    end = t_of(ch.length_q)
    takes = {}
    rng = np.random.default_rng(7)
    for name, (voice, warp) in _warps(starts, end).items():
        notes = ch.parts[voice]
        onsets = [t_of(n.q) for n in notes]
        jitter = rng.uniform(-0.01, 0.01, len(notes)) if "jitter" in name else np.zeros(len(notes))
        events = []
        for k, n in enumerate(notes):
            t0, t1 = t_of(n.q), t_of(n.q + n.dur)
            on = float(warp(t0)) + jitter[k]
            off = float(warp(t1)) + (jitter[k + 1] if k + 1 < len(notes) else 0.0)
            vel = int(75 + 20 * np.sin(2 * np.pi * t0 / 8.0))
            events.append(Event(round(on, 5), max(0.05, off - on + 0.02), n.midi, vel))
        x = to_sr(render_events([(CHOIR, events)], reverb=False).astype(np.float64),
                  GUIDE_SR, RATE)
        x = np.pad(x, (0, int(RATE * 1.5)))
        x += 10 ** (-65 / 20) * rng.standard_normal(x.size)  # a quiet room
        if "buzz" in name:
            tt = np.arange(x.size) / RATE
            x += sum(0.02 / k * np.sin(2 * np.pi * 50 * k * tt) for k in (1, 2, 3, 4, 5, 7))
            x = remove_hum(x, RATE, 50.0)  # fitted on what the mix hears
        truth = np.array([float(warp(t)) + jitter[k] for k, t in enumerate(onsets)])
        firsts = [k for k, t in enumerate(onsets) if any(abs(t - s) < 1e-6 for s in starts)]
        lasts = [k - 1 for k in firsts[1:]] + [len(onsets) - 1]
        takes[name] = (x.astype(np.float32), np.array(onsets), truth, firsts, lasts)
    return guide.astype(np.float32), takes


def diagnose(guide: np.ndarray, takes: dict, warps: dict) -> None:
    """Print where the onset curves peak after the note-ons and how the true warps score."""
    from scipy import ndimage

    from workers.media.timemap import HOP, _frames, onset_gain

    fps = RATE / HOP
    go = _frames(guide)[0]
    gt = np.arange(0.0, (go.size - 1) / fps, 0.05)
    shifts = range(-16, 17)  # frames, the map's +-80 ms

    def peak_after(curve: np.ndarray, times: np.ndarray) -> float:
        c = ndimage.gaussian_filter1d(curve, 1.5)
        idx = [int(round(t * fps)) for t in times]
        return float(np.median([(np.argmax(c[i - 16:i + 17]) - 16) * 1000 / fps
                                for i in idx if 16 <= i < c.size - 17]))

    print("take: onset peak after note-on guide / take (median ms); true warp's gain over "
          "the offset: as is, at its best constant (ms); the offset at its best constant")
    for name, (x, onsets, truth, _, _) in takes.items():
        co = _frames(x)[0]
        ct = np.array([float(warps[name][1](t)) for t in gt])
        best = max(shifts, key=lambda k: onset_gain(go, co, gt, ct + k / fps, OFFSET, fps))
        flat = max(onset_gain(go, co, gt, OFFSET + gt + k / fps, OFFSET, fps) for k in shifts)
        print(f"  {name}: {peak_after(go, onsets):+.0f} / {peak_after(co, truth):+.0f}; "
              f"{onset_gain(go, co, gt, ct, OFFSET, fps):+.3f}, "
              f"{onset_gain(go, co, gt, ct + best / fps, OFFSET, fps):+.3f} "
              f"({best * 1000 / fps:+.0f}); {flat:+.3f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chorale", default="bwv66.6")
    ap.add_argument("--bpm", type=float, default=80.0)
    ap.add_argument("--guide-program", type=int, default=ORGAN,
                    help="the guide's General MIDI program (19 church organ, 0 piano)")
    ap.add_argument("--diagnose", action="store_true",
                    help="what the onset curves see of the true warps, instead of the fits")
    args = ap.parse_args(argv)
    guide, takes = build(args.chorale, args.bpm, args.guide_program)
    if args.diagnose:
        ch = load_chorale(args.chorale)
        beat = 60.0 / args.bpm
        starts = [LEAD + q * beat for q in ch.phrase_starts]
        diagnose(guide, takes, _warps(starts, LEAD + ch.length_q * beat))
        return
    print(f"{args.chorale} at {args.bpm:g} bpm, guide on GM {args.guide_program}, Choir Aahs "
          "takes; ms, + = late")
    worst = 0.0
    for name, (x, onsets, truth, firsts, lasts) in takes.items():
        t0 = time.process_time()
        m = fit_time_map(guide, x, OFFSET)
        cpu = time.process_time() - t0
        err = (truth - m.clip_time(onsets)) * 1000
        plain = (truth - (OFFSET + onsets)) * 1000
        print(f"\n{name}: map {'used' if m.used else 'NOT used'} (gain {m.gain:+.2f}), "
              f"{cpu:.2f} CPU s")
        print("  phrase starts  map: " + " ".join(f"{e:+5.0f}" for e in err[firsts])
              + "   | offset alone: " + " ".join(f"{e:+4.0f}" for e in plain[firsts]))
        print("  phrase ends    map: " + " ".join(f"{e:+5.0f}" for e in err[lasts])
              + "   | offset alone: " + " ".join(f"{e:+4.0f}" for e in plain[lasts]))
        print(f"  all notes: map max |{np.abs(err).max():.0f}|, mean |{np.abs(err).mean():.1f}|;"
              f" offset alone max |{np.abs(plain).max():.0f}|, mean |{np.abs(plain).mean():.1f}|")
        worst = max(worst, float(np.abs(np.concatenate([err[firsts], err[lasts]])).max()))
    print(f"\nworst phrase start/end after the map: {worst:.1f} ms")


if __name__ == "__main__":
    main()
