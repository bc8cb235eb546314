"""Sync accuracy benchmark: Tutti's engine and syncstart (the peer) on two corpora.

    .venv/bin/python -m bench.sync [--corpus real|synthetic|both] [--seed 1,2,3] [--scale 1.0]
                                   [--no-peer] [--csv PATH] [--save DIR [--generate-only]]

``synthetic`` is ``bench/sync/corpus.py`` (numpy synthesis); ``real`` is ``bench/sync/real.py``
(Bach chorales on sampled instruments, real claps, simulated rooms). Prints, per corpus, seed and
case, the median and p95 absolute offset error, the share within 40 ms, how many takes were
trusted and how many were trusted while off by more than 40 ms (the worst outcome), syncstart's
errors side by side; then the goals and CPU seconds per clip and per 3-minute clip.
``--save DIR`` also writes each corpus (guides, clips, truth.csv) so that any aligner can be run
on it. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import resource
import stat
import sys
import tempfile
import time
import wave
from dataclasses import dataclass

import numpy as np

from bench.sync.corpus import SR, build_corpus
from workers.media import align as _align
from workers.media.align import AlignError, align_files
from workers.media.ffmpeg import ffmpeg_path

CONFIDENCE_THRESHOLD = getattr(_align, "CONFIDENCE_THRESHOLD", None)
OFF_S = 0.040  # "right": within 40 ms

SYNTH_NEGATIVE = ("unrelated", "speech", "silence", "short-unrelated", "short-speech",
                  "short-silence", "samekey-piano", "samekey-sine", "samekey-long", "sametempo",
                  "short-sametempo")
SYNTH_LEAK_OR_CLAP = ("leak", "clap", "periodic-clap", "long-leak", "long-clap", "short-leak",
                      "short-clap", "sine-leak")
SYNTH_PART_ONLY = ("part", "periodic-part", "long-part", "short-part")


def write_wav(path: str, x: np.ndarray, sr: int = SR) -> None:
    """16-bit mono WAV (exact zeros stay exact zeros)."""
    pcm = np.round(np.clip(x, -1, 1) * 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


def child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# --------------------------------------------------------------------------- the peer

def peer_tools_dir() -> str:
    """syncstart shells out to `ffmpeg` and `ffprobe`: put ours (and a tiny probe) on PATH."""
    d = tempfile.mkdtemp(prefix="tutti-syncstart-bin-")
    os.symlink(ffmpeg_path(), os.path.join(d, "ffmpeg"))
    probe = os.path.join(d, "ffprobe")
    with open(probe, "w") as f:  # syncstart only asks ffprobe for the audio sample rate
        f.write(f"#!{sys.executable}\nimport sys, wave\n"
                "print('sample_rate=%d' % wave.open(sys.argv[-1]).getframerate())\n")
    os.chmod(probe, os.stat(probe).st_mode | stat.S_IEXEC)
    return d


def run_syncstart(guide_wav: str, clip_wav: str, take: float) -> float | None:
    """Offset by syncstart's own file_offset (FFT cross-correlation), in Tutti's convention."""
    import syncstart

    argv = sys.argv
    sys.argv = ["syncstart"]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            file, offset = syncstart.file_offset(
                in1=guide_wav, in2=clip_wav, take=take, begin=0, show=False, quiet=True,
                video=False, normalize=False, denoise=False, lowpass=0, crop=False)
    except SystemExit:
        return None
    finally:
        sys.argv = argv
    # syncstart names the file to cut at its start: the clip -> positive offset
    return float(offset) if file == clip_wav else -float(offset)


# --------------------------------------------------------------------------- statistics

def stats(errs: list[float]) -> tuple[str, str, str]:
    if not errs:
        return "-", "-", "-"
    a = np.abs(np.array(errs)) * 1000
    return (f"{np.median(a):.1f}", f"{np.percentile(a, 95):.1f}",
            f"{100 * np.mean(a <= 40):.0f}%")


# --------------------------------------------------------------------------- the corpora

def synthetic_groups(seed: int, scale: float, cases: set[str] | None = None):
    """(guide name, guide audio, its sample rate, guide style, clips) of the synthetic corpus
    (``cases``: only the takes of these cases; the corpus is made whole all the same)."""
    for gid, guide, clips in build_corpus(seed, scale):
        clips = [c for c in clips if cases is None or c.case in cases]
        if not clips:
            continue
        for c in clips:
            c.meta["kind"] = ("negative" if c.case in SYNTH_NEGATIVE else
                              "leak-or-clap" if c.case in SYNTH_LEAK_OR_CLAP else "part")
        yield f"guide-{gid:03d}", guide, SR, "", clips


def real_groups(seed: int, scale: float, cases: set[str] | None = None):
    """The same for the realistic corpus (guides at 44.1 kHz); ``cases``: only these cases'
    takes, the same as a full run's, the others not rendered (:func:`build_real_corpus`)."""
    from bench.sync.real import GUIDE_SR, build_real_corpus

    for guide, clips in build_real_corpus(seed, scale, cases):
        yield f"guide-{guide.gid:03d}", guide.audio, GUIDE_SR, guide.style(), clips


TRUTH_COLUMNS = ["clip", "guide", "case", "true_offset", "negative"]


def save_truth(path: str, rows: list[dict]) -> None:
    """truth.csv: clip, guide, case, true_offset (s, empty for negatives), negative (0/1), then
    drift_ppm, kind, guide_style and what the take was made of."""
    extra = sorted({k for r in rows for k in r} - set(TRUTH_COLUMNS))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, TRUTH_COLUMNS + extra)
        w.writeheader()
        w.writerows(rows)


# --------------------------------------------------------------------------- the run

def run_corpus(name: str, seed: int, scale: float, peer: bool, save: str | None,
               align: bool, cases: set[str] | None = None) -> tuple[list[dict], float]:
    """Generate one corpus for one seed, align every take; per-take rows and generation time.
    ``cases``: only the takes of these cases (None: all)."""
    groups = (real_groups if name == "real" else synthetic_groups)(seed, scale, cases)
    rows, truth = [], []
    t_gen = 0.0
    if save:
        os.makedirs(save, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tutti-bench-sync-") as tmp:
        while True:
            t0 = time.monotonic()
            try:
                gname, guide, gsr, gstyle, clips = next(groups)
            except StopIteration:
                break
            t_gen += time.monotonic() - t0
            gpath = os.path.join(save or tmp, f"{gname}.wav")
            write_wav(gpath, guide, gsr)
            ppath = gpath  # syncstart resamples both files to the higher rate: give it 16 kHz
            if peer and gsr != SR:
                from bench.sync.real import to_sr
                ppath = os.path.join(tmp, f"{gname}-16k.wav")
                write_wav(ppath, to_sr(guide.astype(np.float64), gsr, SR), SR)
            for clip in clips:
                cpath = os.path.join(save or tmp, f"{clip.name}.wav")
                write_wav(cpath, clip.audio)
                truth.append({**clip.meta, **dict(
                    clip=os.path.basename(cpath), guide=os.path.basename(gpath), case=clip.case,
                    true_offset="" if clip.offset is None else f"{clip.offset:.5f}",
                    negative=int(clip.offset is None), drift_ppm=f"{clip.drift_ppm:.2f}",
                    guide_style=gstyle)})
                if align:
                    rows.append(align_one(clip, gpath, cpath, ppath, guide, gsr, peer, name,
                                          seed))
                if not save:
                    os.unlink(cpath)
            if save:  # as it goes: a run stopped midway leaves what it made usable
                save_truth(os.path.join(save, "truth.csv"), truth)
    if save:
        save_truth(os.path.join(save, "truth.csv"), truth)
        print(f"  {name} corpus, seed {seed}: {len(truth)} takes saved to {save}", flush=True)
    return rows, t_gen


def align_one(clip, gpath: str, cpath: str, ppath: str, guide: np.ndarray, gsr: int,
              peer: bool, corpus: str, seed: int) -> dict:
    """Align one take by Tutti (and syncstart); the row the report reads."""
    seconds = len(clip.audio) / SR
    cpu0, kid0 = time.process_time(), child_cpu()
    try:
        r = align_files(gpath, cpath)
        est, conf, method, drift, trusted = (r.offset_seconds, r.confidence, r.method,
                                             r.drift_ppm, r.trusted)
    except AlignError as exc:
        est, conf, method, drift, trusted = None, 0.0, exc.code, 0.0, False
    cpu = time.process_time() - cpu0 + child_cpu() - kid0
    p_est, p_cpu = None, None
    if peer:
        cpu0, kid0 = time.process_time(), child_cpu()
        take = max(len(guide) / gsr, seconds) + 1
        p_est = run_syncstart(ppath, cpath, take)
        p_cpu = time.process_time() - cpu0 + child_cpu() - kid0
    err = None if clip.offset is None or est is None else est - clip.offset
    p_err = None if clip.offset is None or p_est is None else p_est - clip.offset
    row = dict(corpus=corpus, seed=seed, name=clip.name, case=clip.case, seconds=seconds,
               true=clip.offset, est=est, err=err, conf=conf, method=method,
               drift_true=clip.drift_ppm, drift=drift, trusted=trusted, cpu=cpu,
               peer_est=p_est, peer_err=p_err, peer_cpu=p_cpu, **clip.meta)
    flag = "T" if trusted else "-"
    bad = "  TRUSTED-WRONG" if trusted and (clip.offset is None or err is None
                                           or abs(err) > OFF_S) else ""
    e = "   n/a" if err is None else f"{err * 1000:7.1f}"
    pe = "" if p_err is None else f"  syncstart {p_err * 1000:9.1f} ms"
    print(f"  {clip.name:18s} err {e} ms conf {conf:.2f} {flag} {method:5s} "
          f"drift {drift:7.1f} (true {clip.drift_ppm:7.1f}) cpu {cpu:.2f}s{pe}{bad}", flush=True)
    return row


def parse_seeds(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sync", description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", choices=("real", "synthetic", "both"), default="both")
    ap.add_argument("--seed", default="1", help="a seed or a list: 1,2,3")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the clips per case")
    ap.add_argument("--no-peer", action="store_true", help="skip syncstart")
    ap.add_argument("--csv", default=None, help="write per-clip rows here")
    ap.add_argument("--save", default=None, metavar="DIR",
                    help="write guides, clips and truth.csv here (a sub-directory "
                         "<corpus>-seed<N> each when several are run)")
    ap.add_argument("--cases", default=None, metavar="A,B",
                    help="only the takes of these cases (e.g. part,short-part,excerpt-part,"
                         "long-part); the realistic corpus renders nothing else, and its takes "
                         "are those of a full run of the seed")
    ap.add_argument("--generate-only", action="store_true",
                    help="with --save: write the corpus, align nothing")
    ap.add_argument("--from-csv", nargs="+", default=None, metavar="CSV",
                    help="print the tables again from rows that --csv wrote; run nothing")
    ap.add_argument("--from-saved", nargs="+", default=None, metavar="DIR",
                    help="align again corpora that --save wrote (DIR/truth.csv; the corpus "
                         "and seed read from a <corpus>-seed<N> name); generate nothing")
    args = ap.parse_args(argv)
    if args.from_saved:
        results = [aligned_saved(d) for d in args.from_saved]
        all_rows = [r for _, _, rows, _ in results for r in rows]
        if args.csv and all_rows:
            write_rows(args.csv, all_rows)
        for name, seed, rows, _ in results:
            report(rows, False, f"{name} corpus, seed {seed}", float("nan"))
        if len(results) > 1:
            summary(results)
        return 0
    if args.from_csv:
        results = rows_from_csv(args.from_csv)
        peer = all(r["peer_err"] is not None or r["kind"] == "negative"
                   for _, _, rows, _ in results for r in rows)
        for name, seed, rows, _ in results:
            report(rows, peer, f"{name} corpus, seed {seed}", float("nan"))
        if len(results) > 1:
            summary(results)
        return 0
    if args.generate_only and not args.save:
        ap.error("--generate-only needs --save DIR")
    seeds = parse_seeds(args.seed)
    cases = {c.strip() for c in args.cases.split(",") if c.strip()} if args.cases else None
    corpora = ["synthetic", "real"] if args.corpus == "both" else [args.corpus]
    if "real" in corpora:
        from bench.sync.real import ToolsMissing, check_tools
        try:
            check_tools()
        except ToolsMissing as exc:
            print(exc, file=sys.stderr)
            return 2

    peer = not args.no_peer and not args.generate_only
    if peer:
        try:
            import syncstart  # noqa: F401
        except ImportError:
            print("syncstart not installed (pip install -e '.[bench]'): peer skipped")
            peer = False
        else:
            os.environ["PATH"] = peer_tools_dir() + os.pathsep + os.environ.get("PATH", "")

    results = []
    all_rows: list[dict] = []
    for name in corpora:
        for seed in seeds:
            save = args.save
            if save and (len(corpora) > 1 or len(seeds) > 1):
                save = os.path.join(save, f"{name}-seed{seed}")
            print(f"{name} corpus, seed {seed}", flush=True)
            rows, t_gen = run_corpus(name, seed, args.scale, peer, save,
                                     align=not args.generate_only, cases=cases)
            all_rows += rows
            if rows:
                results.append((name, seed, rows, t_gen))

    if args.csv and all_rows:
        write_rows(args.csv, all_rows)

    for name, seed, rows, t_gen in results:
        report(rows, peer, f"{name} corpus, seed {seed}", t_gen)
    if len(results) > 1:
        summary(results)
    return 0


def write_rows(path: str, rows: list[dict]) -> None:
    keys = sorted({k for r in rows for k in r})
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)


@dataclass
class _SavedClip:
    name: str
    case: str
    offset: float | None
    drift_ppm: float
    audio: np.ndarray
    meta: dict


def aligned_saved(directory: str) -> tuple[str, int, list[dict], float]:
    """Align every take of a corpus that ``--save`` wrote (``directory``/truth.csv) again: the
    engine on the same files without generating anything. (corpus, seed, rows, nan)."""
    base = os.path.basename(os.path.normpath(directory))
    name, _, seed = base.rpartition("-seed")
    if name not in ("real", "synthetic"):
        name = "real" if "real" in base else "synthetic"
    print(f"{name} corpus, seed {seed or '?'} (saved: {directory})", flush=True)
    rows = []
    with open(os.path.join(directory, "truth.csv"), newline="") as f:
        truth = list(csv.DictReader(f))
    for t in truth:
        cpath = os.path.join(directory, t["clip"])
        gpath = os.path.join(directory, t["guide"])
        with wave.open(cpath) as w:
            n, sr = w.getnframes(), w.getframerate()
        meta = {k: v for k, v in t.items() if k not in TRUTH_COLUMNS and k != "drift_ppm"}
        clip = _SavedClip(t["clip"].removesuffix(".wav"), t["case"],
                          float(t["true_offset"]) if t["true_offset"] else None,
                          float(t["drift_ppm"] or 0), np.zeros(int(n * SR / sr)), meta)
        rows.append(align_one(clip, gpath, cpath, gpath, np.zeros(0), SR, False, name,
                              int(seed) if seed.isdigit() else 0))
    return name, int(seed) if seed.isdigit() else 0, rows, float("nan")


# --------------------------------------------------------------------------- the report

FLOATS = ("seconds", "true", "est", "err", "conf", "drift_true", "drift", "cpu", "peer_est",
          "peer_err", "peer_cpu")


def rows_from_csv(paths: list[str]) -> list[tuple[str, int, list[dict], float]]:
    """Rows that ``--csv`` wrote, typed again and grouped by corpus and seed."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for path in paths:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                for k in FLOATS:
                    r[k] = float(r[k]) if r.get(k) not in (None, "") else None
                r["trusted"] = r["trusted"] == "True"
                groups.setdefault((r["corpus"], int(r["seed"])), []).append(r)
    return [(name, seed, rows, float("nan")) for (name, seed), rows in groups.items()]


def is_wrong_trust(r: dict) -> bool:
    """Trusted, and off by more than 40 ms (a negative has no right offset)."""
    return bool(r["trusted"]) and (r["err"] is None or abs(r["err"]) > OFF_S)


def report(rows: list[dict], peer: bool, title: str, t_gen: float) -> None:
    cases = list(dict.fromkeys(r["case"] for r in rows))
    made = "" if np.isnan(t_gen) else f" (corpus made in {t_gen:.0f} s)"
    print(f"\nsync benchmark, {title}: {len(rows)} takes{made}; "
          f"threshold {CONFIDENCE_THRESHOLD}")
    head = (f"{'case':16s} {'n':>3s} | {'tutti med':>9s} {'p95':>8s} {'<=40ms':>6s} "
            f"{'trusted':>7s} {'T>40ms':>6s}")
    if peer:
        head += f" | {'syncstart med':>13s} {'p95':>8s} {'<=40ms':>6s}"
    print(head)
    print("-" * len(head))
    for case in cases:
        rs = [r for r in rows if r["case"] == case]
        n_tr = sum(bool(r["trusted"]) for r in rs)
        n_bad = sum(is_wrong_trust(r) for r in rs)
        if rs[0]["kind"] == "negative":
            line = f"{case:16s} {len(rs):3d} | {'-':>9s} {'-':>8s} {'-':>6s} {n_tr:7d} {n_bad:6d}"
            if peer:
                line += f" | {'-':>13s} {'-':>8s} {'-':>6s}"
        else:
            med, p95, w40 = stats([r["err"] if r["err"] is not None else 1e3 for r in rs])
            line = (f"{case:16s} {len(rs):3d} | {med:>9s} {p95:>8s} {w40:>6s} {n_tr:7d} "
                    f"{n_bad:6d}")
            if peer:
                pm, pp, pw = stats([r["peer_err"] if r["peer_err"] is not None else 1e3
                                    for r in rs])
                line += f" | {pm:>13s} {pp:>8s} {pw:>6s}"
        print(line)
    n_tr = sum(bool(r["trusted"]) for r in rows)
    n_bad = sum(is_wrong_trust(r) for r in rows)
    print("-" * len(head))
    print(f"{'total':16s} {len(rows):3d} | {'':>9s} {'':>8s} {'':>6s} {n_tr:7d} {n_bad:6d}")
    print("  (T>40ms: trusted and off by more than 40 ms; for a negative, trusted at all)")
    by_guide(rows)
    goals(rows, peer)


def by_guide(rows: list[dict]) -> None:
    """The positives again, by what their guide is like (real corpus: instrument, start, edges);
    excerpts left out (they start beyond the engine's default search window)."""
    pos = [r for r in rows if r["kind"] != "negative" and r.get("guide_style")
           and not r["case"].startswith("excerpt")]
    if not pos:
        return
    print(f"\n{'positives by guide':22s} {'n':>3s} {'<=40ms':>6s} {'trusted':>7s} {'T>40ms':>6s} "
          f"{'none':>5s}")
    for i, label in enumerate(("instrument", "start", "edges")):
        for value in sorted({r["guide_style"].split("/")[i] for r in pos}):
            rs = [r for r in pos if r["guide_style"].split("/")[i] == value]
            w40 = 100 * np.mean([r["err"] is not None and abs(r["err"]) <= OFF_S for r in rs])
            n_tr = sum(bool(r["trusted"]) for r in rs)
            n_bad = sum(is_wrong_trust(r) for r in rs)
            n_none = sum(r["method"] == "none" for r in rs)
            print(f"  {label + ' ' + value:20s} {len(rs):3d} {w40:5.0f}% {n_tr:7d} {n_bad:6d} "
                  f"{n_none:5d}")
    print("  (excerpts left out; none: the engine found no evidence, confidence about 0)")


def goals(rows: list[dict], peer: bool) -> None:
    def errs(kind, key="err"):
        return [abs(r[key]) if r[key] is not None else 1e3 for r in rows if r["kind"] == kind]

    lc, po = errs("leak-or-clap"), errs("part")
    neg = [r for r in rows if r["kind"] == "negative"]
    pos = [r for r in rows if r["kind"] != "negative"]
    long_cpu = [r["cpu"] * 180.0 / r["seconds"] for r in rows if r["case"].startswith("long-")]
    print()
    goal = [
        ("trusted positives off by > 40 ms = 0", sum(is_wrong_trust(r) for r in pos), 0, ""),
        ("p95 error, leak or clap <= 10 ms", np.percentile(lc, 95) * 1000 if lc else 0, 10,
         "ms"),
        ("part-only within 40 ms >= 90 %", 100 * np.mean(np.array(po) <= OFF_S) if po else 100,
         90, "%"),
        ("part-only median error <= 10 ms", np.median(po) * 1000 if po else 0, 10, "ms"),
        ("unrelated/speech/silence trusted = 0", sum(bool(r["trusted"]) for r in neg), 0, ""),
        ("CPU per 3-minute clip <= 2 s", max(long_cpu) if long_cpu else 0, 2, "s"),
    ]
    for label, value, limit, unit in goal:
        ok = value >= limit if "%" in unit else value <= limit
        print(f"  goal {label:40s} tutti {value:7.2f} {unit:2s} {'PASS' if ok else 'FAIL'}")
    if peer:
        plc, ppo = errs("leak-or-clap", "peer_err"), errs("part", "peer_err")
        print(f"  syncstart: p95 leak/clap {np.percentile(plc, 95) * 1000:.0f} ms, part-only "
              f"within 40 ms {100 * np.mean(np.array(ppo) <= OFF_S):.0f} %, negatives trusted "
              f"{len(neg)}/{len(neg)} (no confidence)")
    trusted_pos = [r for r in pos if r["trusted"]]
    print(f"  trusted positives {len(trusted_pos)}/{len(pos)}; highest negative confidence "
          f"{max((r['conf'] for r in neg), default=0):.2f}")
    signed = [r["err"] for r in rows if r["kind"] == "part" and r["err"] is not None
              and abs(r["err"]) <= 0.2]
    if signed:
        print(f"  part-only signed error (within 200 ms): median {np.median(signed) * 1000:+.1f} "
              f"ms over {len(signed)}")
    drift_rows = [r for r in pos if r["method"] == "leak"]
    if drift_rows:
        de = np.array([abs(r["drift"] - r["drift_true"]) for r in drift_rows])
        print(f"  drift error (leak clips): median {np.median(de):.1f} ppm, max {de.max():.1f}")
    methods = {}
    for r in rows:
        methods[r["method"]] = methods.get(r["method"], 0) + 1
    print("  methods: " + ", ".join(f"{k} {v}" for k, v in sorted(methods.items())))
    cpu = np.array([r["cpu"] for r in rows])
    print(f"  CPU per clip (decode + align): mean {cpu.mean():.2f} s, max {cpu.max():.2f} s; "
          f"per 3-minute clip {max(long_cpu) if long_cpu else float('nan'):.2f} s")
    if peer:
        pc = np.array([r["peer_cpu"] for r in rows if r["peer_cpu"] is not None])
        print(f"  syncstart CPU per clip: mean {pc.mean():.2f} s")


def summary(results: list[tuple[str, int, list[dict], float]]) -> None:
    """One line per corpus and seed: the worst outcome and the goals' figures."""
    print("\nsummary")
    print(f"{'corpus':10s} {'seed':>4s} {'takes':>5s} {'trusted':>7s} {'T>40ms':>6s} "
          f"{'neg T':>5s} {'p95 l/c':>8s} {'part<=40':>8s} {'part med':>8s}")
    for name, seed, rows, _ in results:
        pos = [r for r in rows if r["kind"] != "negative"]
        neg = [r for r in rows if r["kind"] == "negative"]
        lc = [abs(r["err"]) if r["err"] is not None else 1e3 for r in pos
              if r["kind"] == "leak-or-clap"]
        po = [abs(r["err"]) if r["err"] is not None else 1e3 for r in pos if r["kind"] == "part"]
        print(f"{name:10s} {seed:4d} {len(rows):5d} {sum(bool(r['trusted']) for r in rows):7d} "
              f"{sum(is_wrong_trust(r) for r in pos):6d} "
              f"{sum(bool(r['trusted']) for r in neg):5d} "
              f"{np.percentile(lc, 95) * 1000 if lc else 0:8.1f} "
              f"{100 * np.mean(np.array(po) <= OFF_S) if po else 0:7.0f}% "
              f"{np.median(po) * 1000 if po else 0:8.1f}")


if __name__ == "__main__":
    raise SystemExit(main())
