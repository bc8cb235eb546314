"""Where the part-only offsets' errors come from: each stage's signed error, per take.

    .venv/bin/python -m bench.sync.parts DIR [DIR...] [--cases part,short-part] [--csv rows.csv]

``DIR`` is a corpus that ``python -m bench.sync --save`` wrote (``--cases part`` makes only the
part-only takes of a realistic seed, the same as a full run's). Each part-only take is aligned
by ``align_files`` as the bench does, and the engine's debug lines say where each stage put it
(``decide.PART_STAGES_LOG`` and the local timing line). Per take (ms, signed: estimated minus
true): the final error, the music score's pick and the fine offset (both read at the take's
centre, so against the truth moved there by the true drift), the error that the drift estimate
adds at guide t=0 ((estimated - true drift) x centre), the median of the 5 s windows' offsets
(relative to the fine offset) and its standard error; the method, confidence and trust; what
the take is (guide instrument, take timbre, rubato and jitter, room, band). Then, per stage,
the signed median (a bias) against the spread (1.4826 x the median absolute deviation around
it): a bias is fixed by measuring guide and take alike, a spread by reading more notes.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import time

import numpy as np

from workers.media.align import AlignError, align_files
from workers.media.align import decide as _decide

PART_CASES = ("part", "excerpt-part", "short-part", "long-part", "periodic-part")


class _Stages(logging.Handler):
    """Keeps the part-only stages' debug lines of one alignment."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.stages: tuple | None = None
        self.timing: tuple | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == _decide.PART_STAGES_LOG:
            self.stages = record.args
        elif isinstance(record.msg, str) and record.msg.startswith("part timing at") \
                and len(record.args or ()) == 5:
            self.timing = record.args


def one(directory: str, t: dict) -> dict:
    """Align one take of ``truth.csv`` row ``t``; its stages' errors (ms) and facts."""
    h = _Stages()
    logger = logging.getLogger(_decide.__name__)
    level = logger.level
    logger.addHandler(h)
    logger.setLevel(logging.DEBUG)
    try:
        cpu = time.process_time()
        try:
            r = align_files(os.path.join(directory, t["guide"]), os.path.join(directory, t["clip"]))
            est, conf, method, trusted = r.offset_seconds, r.confidence, r.method, r.trusted
        except AlignError as exc:
            est, conf, method, trusted = None, 0.0, exc.code, False
        cpu = time.process_time() - cpu
    finally:
        logger.removeHandler(h)
        logger.setLevel(level)
    true, dtrue = float(t["true_offset"]), float(t.get("drift_ppm") or 0.0)
    row = dict(clip=t["clip"].removesuffix(".wav"), case=t["case"],
               err=None if est is None else 1e3 * (est - true), conf=round(conf, 3),
               trusted=trusted, method=method)
    pick = fine = drift_err = lt_med = lt_se = None
    if h.stages is not None:
        p, f, d, centre = (float(v) for v in h.stages)
        at_centre = true + dtrue * 1e-6 * centre  # the pick is the mean lag at the centre
        pick, fine = 1e3 * (p - at_centre), 1e3 * (f - at_centre)
        drift_err = 1e3 * (d - dtrue) * 1e-6 * centre
    if h.timing is not None:
        lt_med, lt_se = float(h.timing[2]), float(h.timing[4])
    row.update(pick=pick, fine=fine, drift_err=drift_err, windows_median=lt_med, windows_se=lt_se,
               guide=t.get("guide_style", "").split("/")[0], timbre=t.get("timbre", ""),
               rubato_ms=t.get("rubato_ms", ""), jitter_ms=t.get("jitter_ms", ""),
               rt60=t.get("rt60", ""), band=t.get("band", ""), cpu=round(cpu, 2))
    return row


def _fmt(v) -> str:
    return "    -" if v is None else f"{v:+6.1f}" if isinstance(v, float) else str(v)


def summary(rows: list[dict]) -> None:
    """Per stage: n, signed median (bias), spread (1.4826 MAD), median |error|."""
    print(f"\n{'stage':16s} {'n':>3s} {'bias':>7s} {'spread':>7s} {'|err| med':>9s} "
          f"{'<=40ms':>6s}")
    for key in ("err", "pick", "fine", "drift_err", "windows_median"):
        v = np.array([r[key] for r in rows if r[key] is not None and abs(r[key]) <= 200])
        if not len(v):
            continue
        med = float(np.median(v))
        print(f"{key:16s} {len(v):3d} {med:+7.1f} {1.4826 * np.median(np.abs(v - med)):7.1f} "
              f"{np.median(np.abs(v)):9.1f} {100 * np.mean(np.abs(v) <= 40):5.0f}%")
    print("  (within 200 ms; err: the final offset at guide t=0; pick, fine: at the take's "
          "centre; drift_err: what the drift estimate adds at t=0; windows_median: the 5 s "
          "windows' median offset relative to the fine one)")
    for key in ("guide", "timbre"):
        print(f"\nfinal signed error by {key}")
        for value in sorted({r[key] for r in rows}):
            v = [r["err"] for r in rows if r[key] == value and r["err"] is not None]
            if v:
                print(f"  {value:14s} n {len(v):2d}  median {np.median(v):+6.1f}  "
                      f"values {' '.join(f'{x:+.0f}' for x in sorted(v))}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sync.parts",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="+", metavar="DIR")
    ap.add_argument("--cases", default=",".join(PART_CASES))
    ap.add_argument("--csv", default=None)
    args = ap.parse_args(argv)
    cases = {c.strip() for c in args.cases.split(",")}
    rows = []
    keys = ("err", "pick", "fine", "drift_err", "windows_median", "windows_se")
    print(f"{'take':22s} " + " ".join(f"{k[:7]:>7s}" for k in keys)
          + "  conf T method guide/timbre")
    for d in args.dirs:
        with open(os.path.join(d, "truth.csv"), newline="") as f:
            truth = [t for t in csv.DictReader(f) if t["case"] in cases and t["true_offset"]]
        for t in truth:
            r = one(d, t)
            r["corpus"] = os.path.basename(os.path.normpath(d))
            rows.append(r)
            print(f"{r['corpus'][-6:] + '/' + r['clip']:22s} "
                  + " ".join(f"{_fmt(r[k]):>7s}" for k in keys)
                  + f"  {r['conf']:.2f} {'T' if r['trusted'] else '-'} {r['method']:5s} "
                    f"{r['guide']}/{r['timbre']}", flush=True)
    if not rows:
        print("no part-only takes")
        return 1
    summary(rows)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
