"""Render benchmark: Tutti's engine beside moviepy's docs grid, an expert's xstack command
and the floor (decode the inputs, encode one stream), on the same clips.

    .venv/bin/python -m bench.render [--sizes 4,16,36,64,100] [--skip-moviepy]
        [--moviepy-max 16] [--no-parallel] [--cache DIR] [--repeat K]

Every run is a fresh subprocess; wall time, CPU seconds (the process tree's, from
getrusage) and peak RSS of the whole tree (VmRSS summed over the tree, sampled every
50 ms) are recorded; with --repeat K each engine runs K times, interleaved, and the
fastest run is kept (peak RSS: the largest). Prints a table; see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from bench.render.corpus import corpus
from bench.render.one import FPS, HEIGHT, SECONDS, WIDTH

ENGINES = ("floor", "tutti", "xstack", "moviepy", "proxies")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(k) for k in f.read().split()]
    except OSError:
        pass
    return kids


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, IndexError, ValueError):
        return 0


def tree_pids(root: int) -> list[int]:
    """``root`` and every process below it."""
    pids, stack = [], [root]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        stack += _children(pid)
    return pids


def tree_rss_kb(root: int) -> dict[str, int]:
    return {"rss_kb": sum(_rss_kb(pid) for pid in tree_pids(root))}


def run_sampled(argv: list[str], sample: Callable[[int], dict[str, int]],
                every: float = 0.05) -> tuple[subprocess.Popen, str, float, dict[str, int]]:
    """Run ``argv`` (stdout captured), calling ``sample(pid)`` every ``every`` seconds
    meanwhile; returns the finished process, its stdout, the wall seconds and the peak of
    each sampled value."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    peak: dict[str, int] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for key, value in sample(proc.pid).items():
                peak[key] = max(peak.get(key, 0), value)
            done.wait(every)

    sampler = threading.Thread(target=watch, daemon=True)
    sampler.start()
    stdout, _ = proc.communicate()
    wall = time.monotonic() - started
    done.set()
    sampler.join()
    return proc, stdout, wall, peak


def measure(engine: str, n: int, cache: str, out_dir: str) -> dict:
    out = os.path.join(out_dir, f"{engine}-{n}.mp4")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc, stdout, wall, peak = run_sampled(
        [sys.executable, "-m", "bench.render.one", engine, str(n), cache, out], tree_rss_kb)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        return {"engine": engine, "n": n, "error": f"exit {proc.returncode}"}
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row = {"engine": engine, "n": n, "wall": wall, "cpu": cpu,
           "rss_mb": peak.get("rss_kb", 0) / 1024,
           "max_proc_rss_mb": after.ru_maxrss / 1024}
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if lines:
        row.update(json.loads(lines[-1]))
    if os.path.exists(out):
        os.remove(out)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.render")
    parser.add_argument("--sizes", default="4,16,36,64,100")
    parser.add_argument("--skip-moviepy", action="store_true")
    parser.add_argument("--moviepy-max", type=int, default=16,
                        help="largest N given to moviepy (it takes minutes beyond)")
    parser.add_argument("--no-parallel", action="store_true",
                        help="skip the one-core-worker segment runs")
    parser.add_argument("--cache",
                        default=os.path.join(tempfile.gettempdir(), "tutti-bench-render"))
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help="which of floor,tutti,xstack,moviepy,proxies to run")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each engine this many times, interleaved, and keep the "
                             "fastest (the machine's noise only ever adds time)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(f"preparing clips ({WIDTH}x{HEIGHT}, {FPS} fps, {SECONDS:g} s) in {args.cache} ...",
          flush=True)
    corpus(args.cache, max(sizes), width=WIDTH, height=HEIGHT, fps=FPS, seconds=SECONDS)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tutti-bench-out-") as out_dir:
        for n in sizes:
            engines = [e for e in ENGINES if e in args.engines.split(",")]
            if "moviepy" in engines and (args.skip_moviepy or n > args.moviepy_max):
                engines.remove("moviepy")
            if not args.no_parallel:
                engines += ["seg1", "seg2"]
            best: dict[str, dict] = {}
            for _ in range(max(1, args.repeat)):
                for engine in engines:
                    row = measure(engine, n, args.cache, out_dir)
                    print("  " + json.dumps({k: round(v, 2) if isinstance(v, float) else v
                                             for k, v in row.items()}), flush=True)
                    kept = best.get(engine)
                    if kept is None or ("wall" in row and row["wall"] < kept.get("wall", 1e9)):
                        if kept is not None and "rss_mb" in kept:
                            row["rss_mb"] = max(row["rss_mb"], kept["rss_mb"])
                        best[engine] = row
                    elif "rss_mb" in row:
                        kept["rss_mb"] = max(kept["rss_mb"], row["rss_mb"])
            rows += [best[e] for e in engines]
    print_table(rows, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    print()
    print(f"render benchmark: {WIDTH}x{HEIGHT}, {FPS} fps, {SECONDS:g} s clips, libx264 "
          f"veryfast CRF 23; {os.cpu_count()} cores")
    head = (f"{'N':>4} {'engine':<24} {'wall s':>7} {'x floor':>7} {'x rt':>6} {'CPU s':>7} "
            f"{'peak RSS MB':>11}")
    print(head)
    print("-" * len(head))
    names = {"floor": "floor (decode+encode)", "tutti": "tutti render()",
             "xstack": "ffmpeg xstack+amix", "moviepy": "moviepy clips_array",
             "seg1": "2 segments, 1 worker", "seg2": "2 segments, 2 workers",
             "proxies": "tutti, proxies cold+warm"}
    for n in sorted({r["n"] for r in rows}):
        group = [r for r in rows if r["n"] == n]
        floor = next((r["wall"] for r in group if r["engine"] == "floor" and "wall" in r), None)
        for r in group:
            name = names.get(r["engine"], r["engine"])
            if "error" in r:
                print(f"{n:>4} {name:<24} {r['error']}")
                continue
            ratio = f"{r['wall'] / floor:7.2f}" if floor else f"{'-':>7}"
            print(f"{n:>4} {name:<24} {r['wall']:7.1f} {ratio} {SECONDS / r['wall']:6.2f} "
                  f"{r['cpu']:7.1f} {r['rss_mb']:11.0f}")
        cached = next((r for r in group if r["engine"] == "proxies" and "warm_s" in r), None)
        if cached:
            ratio = (f"{cached['cold_s'] / floor:.2f}x / {cached['warm_s'] / floor:.2f}x floor"
                     if floor else "")
            print(f"{'':>4} proxies: first render {cached['cold_s']:.1f} s (building them), "
                  f"re-render {cached['warm_s']:.1f} s  {ratio}")
        one = next((r for r in group if r["engine"] == "seg1" and "wall" in r), None)
        two = next((r for r in group if r["engine"] == "seg2" and "wall" in r), None)
        if one and two:
            print(f"{'':>4} two one-core workers vs one: "
                  f"{one['render_s'] / two['render_s']:.2f}x the render (plan, parts, join), "
                  f"{one['segments_s'] / two['segments_s']:.2f}x the segments")
        if args.skip_moviepy or n > args.moviepy_max:
            print(f"{'':>4} (moviepy not run at N={n}: "
                  f"{'--skip-moviepy' if args.skip_moviepy else f'capped at {args.moviepy_max}'})")
    by = {(r["engine"], r["n"]): r for r in rows if "wall" in r}
    print()
    for n in (16, 64):
        if ("tutti", n) in by and ("floor", n) in by:
            ratio = by[("tutti", n)]["wall"] / by[("floor", n)]["wall"]
            verdict = "PASS" if ratio <= 1.2 else "MISS"
            print(f"  goal N={n}: tutti within 1.2x of the floor: {ratio:.2f}x {verdict}")
    if ("tutti", 16) in by and ("tutti", 100) in by:
        ratio = by[("tutti", 100)]["rss_mb"] / by[("tutti", 16)]["rss_mb"]
        print(f"  goal peak RSS at 100 <= 2x at 16: {ratio:.2f}x "
              f"{'PASS' if ratio <= 2 else 'MISS'}")
    for n in sorted({n for (_, n) in by}):
        if ("seg1", n) in by and ("seg2", n) in by:
            speed = by[("seg1", n)]["render_s"] / by[("seg2", n)]["render_s"]
            print(f"  goal N={n}: two one-core workers >= 1.8x one: {speed:.2f}x "
                  f"{'PASS' if speed >= 1.8 else 'MISS'}")
