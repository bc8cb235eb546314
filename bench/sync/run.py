"""Sync accuracy benchmark: Tutti's engine and syncstart (the peer) on one synthetic corpus.

    .venv/bin/python -m bench.sync [--seed 1] [--scale 1.0] [--no-peer] [--csv PATH]

Prints, per case type, the median and p95 absolute offset error, the share within 40 ms and how
many clips were trusted, for both tools side by side; then the goals, the negatives that were
trusted, and CPU seconds per clip and per 3-minute clip. See bench/README.md.
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

import numpy as np

from bench.sync.corpus import SR, build_corpus
from workers.media.align import CONFIDENCE_THRESHOLD, AlignError, align_files
from workers.media.ffmpeg import ffmpeg_path

NEGATIVE = ("unrelated", "speech", "silence", "short-unrelated", "short-speech", "short-silence",
            "samekey-piano", "samekey-sine", "samekey-long", "sametempo", "short-sametempo")
LEAK_OR_CLAP = ("leak", "clap", "periodic-clap", "long-leak", "long-clap", "short-leak",
                "short-clap", "sine-leak")
PART_ONLY = ("part", "periodic-part", "long-part", "short-part")


def write_wav(path: str, x: np.ndarray) -> None:
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
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


# --------------------------------------------------------------------------- the run

def stats(errs: list[float]) -> tuple[str, str, str]:
    if not errs:
        return "-", "-", "-"
    a = np.abs(np.array(errs)) * 1000
    return (f"{np.median(a):.1f}", f"{np.percentile(a, 95):.1f}",
            f"{100 * np.mean(a <= 40):.0f}%")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sync", description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the clips per case")
    ap.add_argument("--no-peer", action="store_true", help="skip syncstart")
    ap.add_argument("--csv", default=None, help="write per-clip rows here")
    args = ap.parse_args(argv)

    peer = not args.no_peer
    if peer:
        try:
            import syncstart  # noqa: F401
        except ImportError:
            print("syncstart not installed (pip install -e '.[bench]'): peer skipped")
            peer = False
        else:
            os.environ["PATH"] = peer_tools_dir() + os.pathsep + os.environ.get("PATH", "")

    rows = []
    t_gen = 0.0
    with tempfile.TemporaryDirectory(prefix="tutti-bench-sync-") as tmp:
        corpus = build_corpus(args.seed, args.scale)
        while True:
            t0 = time.monotonic()
            try:
                gid, guide, clips = next(corpus)
            except StopIteration:
                break
            t_gen += time.monotonic() - t0
            gpath = os.path.join(tmp, f"guide-{gid}.wav")
            write_wav(gpath, guide)
            for clip in clips:
                cpath = os.path.join(tmp, f"{clip.name}.wav")
                write_wav(cpath, clip.audio)
                seconds = len(clip.audio) / SR
                cpu0, kid0 = time.process_time(), child_cpu()
                try:
                    r = align_files(gpath, cpath)
                    est, conf, method, drift, trusted = (r.offset_seconds, r.confidence,
                                                         r.method, r.drift_ppm, r.trusted)
                except AlignError as exc:
                    est, conf, method, drift, trusted = None, 0.0, exc.code, 0.0, False
                cpu = time.process_time() - cpu0 + child_cpu() - kid0
                p_est, p_cpu = None, None
                if peer:
                    cpu0, kid0 = time.process_time(), child_cpu()
                    take = max(len(guide), len(clip.audio)) / SR + 1
                    p_est = run_syncstart(gpath, cpath, take)
                    p_cpu = time.process_time() - cpu0 + child_cpu() - kid0
                err = None if clip.offset is None or est is None else est - clip.offset
                p_err = None if clip.offset is None or p_est is None else p_est - clip.offset
                rows.append(dict(name=clip.name, case=clip.case, seconds=seconds,
                                 true=clip.offset, est=est, err=err, conf=conf, method=method,
                                 drift_true=clip.drift_ppm, drift=drift, trusted=trusted,
                                 cpu=cpu, peer_est=p_est, peer_err=p_err, peer_cpu=p_cpu,
                                 **{k: v for k, v in clip.meta.items()}))
                flag = "T" if trusted else "-"
                e = "   n/a" if err is None else f"{err * 1000:7.1f}"
                pe = "" if p_err is None else f"  syncstart {p_err * 1000:9.1f} ms"
                print(f"  {clip.name:18s} err {e} ms conf {conf:.2f} {flag} {method:5s} "
                      f"drift {drift:7.1f} (true {clip.drift_ppm:7.1f}) cpu {cpu:.2f}s{pe}",
                      flush=True)
                os.unlink(cpath)

    if args.csv:
        keys = sorted({k for r in rows for k in r})
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, keys)
            w.writeheader()
            w.writerows(rows)

    report(rows, peer, args.seed, t_gen)
    return 0


def report(rows: list[dict], peer: bool, seed: int, t_gen: float) -> None:
    cases = list(dict.fromkeys(r["case"] for r in rows))
    print(f"\nsync benchmark, seed {seed}: {len(rows)} clips "
          f"(corpus synthesised in {t_gen:.0f} s); threshold {CONFIDENCE_THRESHOLD}")
    head = (f"{'case':16s} {'n':>3s} | {'tutti med':>9s} {'p95':>8s} {'<=40ms':>6s} "
            f"{'trusted':>7s}")
    if peer:
        head += f" | {'syncstart med':>13s} {'p95':>8s} {'<=40ms':>6s} {'trusted':>7s}"
    print(head)
    print("-" * len(head))
    for case in cases:
        rs = [r for r in rows if r["case"] == case]
        n_tr = sum(r["trusted"] for r in rs)
        if case in NEGATIVE:
            line = f"{case:16s} {len(rs):3d} | {'-':>9s} {'-':>8s} {'-':>6s} {n_tr:7d}"
            if peer:
                line += f" | {'-':>13s} {'-':>8s} {'-':>6s} {len(rs):7d}"
        else:
            med, p95, w40 = stats([r["err"] if r["err"] is not None else 1e3 for r in rs])
            line = f"{case:16s} {len(rs):3d} | {med:>9s} {p95:>8s} {w40:>6s} {n_tr:7d}"
            if peer:
                pm, pp, pw = stats([r["peer_err"] if r["peer_err"] is not None else 1e3
                                    for r in rs])
                line += f" | {pm:>13s} {pp:>8s} {pw:>6s} {len(rs):7d}"
        print(line)

    def errs(sel, key="err"):
        return [abs(r[key]) if r[key] is not None else 1e3 for r in rows if r["case"] in sel]

    lc, po = errs(LEAK_OR_CLAP), errs(PART_ONLY)
    neg = [r for r in rows if r["case"] in NEGATIVE]
    long_cpu = [r["cpu"] * 180.0 / r["seconds"] for r in rows
                if r["case"] in ("long-leak", "long-clap", "long-part")]
    pos = [r for r in rows if r["case"] not in NEGATIVE]
    print()
    goal = [
        ("p95 error, leak or clap <= 10 ms", np.percentile(lc, 95) * 1000 if lc else 0, 10,
         "ms"),
        ("part-only within 40 ms >= 90 %", 100 * np.mean(np.array(po) <= 0.040) if po else 100,
         90, "%"),
        ("unrelated/speech/silence trusted = 0", sum(r["trusted"] for r in neg), 0, ""),
        ("CPU per 3-minute clip <= 2 s", max(long_cpu) if long_cpu else 0, 2, "s"),
    ]
    for label, value, limit, unit in goal:
        ok = value >= limit if "%" in unit else value <= limit
        print(f"  goal {label:40s} tutti {value:7.2f} {unit:2s} {'PASS' if ok else 'FAIL'}")
    if peer:
        plc, ppo = errs(LEAK_OR_CLAP, "peer_err"), errs(PART_ONLY, "peer_err")
        print(f"  syncstart: p95 leak/clap {np.percentile(plc, 95) * 1000:.0f} ms, part-only "
              f"within 40 ms {100 * np.mean(np.array(ppo) <= 0.040):.0f} %, negatives trusted "
              f"{len(neg)}/{len(neg)} (no confidence)")
    trusted_pos = [r for r in pos if r["trusted"]]
    bad_trust = [r for r in trusted_pos if r["err"] is None or abs(r["err"]) > 0.040]
    print(f"  trusted positives {len(trusted_pos)}/{len(pos)}; trusted but off by > 40 ms: "
          f"{len(bad_trust)}; highest negative confidence "
          f"{max((r['conf'] for r in neg), default=0):.2f}")
    drift_rows = [r for r in pos if r["method"] == "leak"]
    if drift_rows:
        de = np.array([abs(r["drift"] - r["drift_true"]) for r in drift_rows])
        print(f"  drift error (leak clips): median {np.median(de):.1f} ppm, max {de.max():.1f}")
    cpu = np.array([r["cpu"] for r in rows])
    print(f"  CPU per clip (decode + align): mean {cpu.mean():.2f} s, max {cpu.max():.2f} s; "
          f"per 3-minute clip {max(long_cpu) if long_cpu else float('nan'):.2f} s")
    if peer:
        pc = np.array([r["peer_cpu"] for r in rows if r["peer_cpu"] is not None])
        print(f"  syncstart CPU per clip: mean {pc.mean():.2f} s")


if __name__ == "__main__":
    raise SystemExit(main())
