"""The slow-attack study (issue 9, item 2): part-only takes whose notes begin slowly (strings,
choir aahs, flute) or sharply (piano) against guides of either kind, with known offsets.

Everything else is held still so that only the attacks differ: the same chorale part, the
score's timing (a few ms of jitter), no room, no clock drift, a little noise, the full band.
The signed error (estimated minus true offset, ms) per guide instrument and take timbre is
the bias the part-only offset has from the attacks alone; the bench's realistic corpus adds
rooms, phones and human timing on top.

    .venv/bin/python -m bench.sync.attack [--chorales 4] [--csv rows.csv]

Needs what ``make bench-sync-deps`` installs (FluidSynth, fluid-soundfont-gm, music21).
Renders are cached with the realistic corpus's (``bench/out/sync-real-cache``).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time

import numpy as np

from bench.sync.real import (
    CHORALES,
    GUIDE_SR,
    SR,
    Event,
    check_tools,
    load_chorale,
    render_events,
    score_events,
    to_sr,
)
from workers.media.align import align_signals, analyse_guide

#: guide instruments (General MIDI programme, 0-based)
GUIDES = {"piano": 0, "organ": 19, "strings": 48, "choir": 52}
#: take timbres: the slow ones the issue names and piano as the control
TAKES = {"piano": 0, "strings": 48, "slow-strings": 49, "choir": 52, "flute": 73}
#: voice of the take per chorale index (a spread of registers)
VOICE_CYCLE = "SATB"


def take_events(ch, voice: str, t0: float, beat: float, rng: np.random.Generator,
                jitter: float) -> list[Event]:
    """The part in score time from ``t0``, legato (sung/bowed), a few ms of jitter."""
    notes = ch.parts[voice]
    out = []
    for i, n in enumerate(notes):
        on = t0 + n.q * beat + float(rng.uniform(-jitter, jitter))
        d = n.dur * beat + 0.03
        if i + 1 < len(notes):
            d = min(d, t0 + notes[i + 1].q * beat - on + 0.02)
        out.append(Event(round(on, 5), max(0.05, d), n.midi, int(rng.integers(70, 100))))
    return out


def build(n_chorales: int, seed: int = 1):
    """Yield (guide name, guide audio at GUIDE_SR, take name, take audio at SR, true offset)."""
    check_tools()
    rng = np.random.default_rng(seed)
    for k, name in enumerate(CHORALES[:n_chorales]):
        ch = load_chorale(name)
        bpm = float(rng.uniform(60, 90))
        beat = 60.0 / bpm
        lead = float(rng.uniform(0.3, 1.5))
        guides = {}
        for gname, prog in GUIDES.items():
            tracks = [(prog, score_events(ch, v, lead, beat)) for v in "SATB"]
            x = render_events(tracks, reverb=True)
            x = x / (np.abs(x).max() + 1e-12) * 0.9
            x = x + 10 ** (-70 / 20) * rng.standard_normal(len(x)).astype(np.float32)
            guides[gname] = x.astype(np.float32)
        voice = VOICE_CYCLE[k % 4]
        for tname, prog in TAKES.items():
            offset = float(rng.uniform(0.5, 6.0))  # clip time of guide t=0
            ev = take_events(ch, voice, lead + offset, beat, rng, 0.005)
            x = to_sr(render_events([(prog, ev)], reverb=False).astype(np.float64), GUIDE_SR, SR)
            x = x / (np.abs(x).max() + 1e-12) * 0.5
            x = x + 10 ** (-50 / 20) * rng.standard_normal(len(x))
            take = x.astype(np.float32)
            for gname, g in guides.items():
                yield f"{name}/{gname}", gname, g, f"{name}/{voice}/{tname}", tname, take, offset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chorales", type=int, default=4)
    ap.add_argument("--csv")
    args = ap.parse_args(argv)
    rows = []
    cache: dict[str, object] = {}
    for gkey, gname, g, tkey, tname, take, offset in build(args.chorales):
        if gkey not in cache:
            cache.clear()
            cache[gkey] = analyse_guide(g, GUIDE_SR)
        t = time.process_time()
        res = align_signals(cache[gkey], take, SR)
        cpu = time.process_time() - t
        err = res.offset_seconds - offset
        rows.append(dict(guide=gname, take=tname, clip=tkey, err_ms=round(err * 1000, 1),
                         conf=round(res.confidence, 3), trusted=res.trusted, method=res.method,
                         cpu=round(cpu, 2)))
        print(f"{tkey:28s} on {gname:8s} err {err * 1000:+8.1f} ms conf {res.confidence:.2f}"
              f" {'T' if res.trusted else ' '} {res.method}", flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    report(rows)
    return 0


def report(rows: list[dict]) -> None:
    """Median signed error (ms) per guide instrument x take timbre, within 200 ms; and counts."""
    print("\nmedian signed error, ms (n within 200 ms; trusted; trusted >40 ms)")
    print(f"{'take/guide':14s}" + "".join(f"{g:>22s}" for g in GUIDES))
    for t in TAKES:
        line = f"{t:14s}"
        for g in GUIDES:
            rs = [r for r in rows if r["guide"] == g and r["take"] == t]
            e = [r["err_ms"] for r in rs if abs(r["err_ms"]) <= 200]
            tr = sum(r["trusted"] for r in rs)
            bad = sum(r["trusted"] and abs(r["err_ms"]) > 40 for r in rs)
            med = f"{np.median(e):+.1f}" if e else "-"
            line += f"{med:>10s} ({len(e)};{tr};{bad})".rjust(22)
        print(line)
    e = [r["err_ms"] for r in rows if abs(r["err_ms"]) <= 200]
    w40 = np.mean([abs(r["err_ms"]) <= 40 for r in rows]) * 100
    print(f"all: n {len(rows)}, within 40 ms {w40:.0f} %, median |err| "
          f"{np.median(np.abs(e)):.1f} ms, signed median {np.median(e):+.1f} ms, trusted "
          f"{sum(r['trusted'] for r in rows)}, trusted >40 ms "
          f"{sum(r['trusted'] and abs(r['err_ms']) > 40 for r in rows)}")


if __name__ == "__main__":
    sys.exit(main())
