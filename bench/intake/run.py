"""Intake benchmark: seconds per minute of input and peak RSS of Tutti's intake beside
plain ffmpeg doing one transcode of the same file to the same size (for HDR also
"ffmpeg-tm": the same with the exact tone-mapping chain, the fair floor), for 1080p30 H.264,
4K HEVC 10-bit HLG and 720p VFR phone clips, normalized at the campaign canvas; then the
detail a full-frame spotlight keeps (SSIM of a rendered 1080p frame against the source
scaled once), at today's canvas-size clips and at the old 640x360 tiles.

    .venv/bin/python -m bench.intake [--seconds 10] [--canvas 1920x1080] [--repeat 1]
        [--cache DIR] [--no-ssim]

Every run is a fresh subprocess (``bench.intake.one``); runs are interleaved and with
--repeat K the fastest of K is kept (peak RSS: the largest). Wall seconds, CPU seconds
of the process tree (getrusage) and peak RSS of the whole tree (VmRSS summed over it,
sampled every 50 ms). Prints a table; see bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile

from bench.intake.corpus import corpus
from bench.render.run import run_sampled, tree_rss_kb
from workers.media.ffmpeg import ffmpeg_path

ENGINES = ("tutti", "ffmpeg", "ffmpeg-tm")
#: engines run on HDR clips only
HDR_ONLY = {"ffmpeg-tm"}
GOAL_RATIO = 1.15
GOAL_RSS_MB = 600


def measure(engine: str, src: str, out_dir: str, canvas: tuple[int, int], fps: int) -> dict:
    out = os.path.join(out_dir, f"{engine}.mp4")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc, _stdout, wall, peak = run_sampled(
        [sys.executable, "-m", "bench.intake.one", engine, src, out, str(canvas[0]),
         str(canvas[1]), str(fps)], tree_rss_kb)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        return {"engine": engine, "error": f"exit {proc.returncode}"}
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"engine": engine, "wall": wall, "cpu": cpu, "rss_mb": peak.get("rss_kb", 0) / 1024,
            "out": out}


def ssim_of_frame(rendered: str, source: str, canvas: tuple[int, int], at: float) -> float:
    """SSIM (All) of the rendered frame at ``at`` s against the source's frame scaled once
    to the canvas (bicubic; an HDR source tone-mapped in the same step, as a player shows
    it)."""
    from workers.media.normalize import colour_filter
    from workers.media.probe import probe

    info = probe(source)
    reference = (colour_filter(info, canvas, exact=True) if info.colour.hdr
                 else f"scale={canvas[0]}:{canvas[1]}:flags=bicubic")
    done = subprocess.run(
        [ffmpeg_path(), "-hide_banner", "-nostdin", "-ss", f"{at:.3f}", "-i", rendered,
         "-ss", f"{at:.3f}", "-i", source, "-filter_complex",
         f"[1:v]{reference},format=yuv420p[ref];[0:v]format=yuv420p[main];"
         "[main][ref]ssim", "-frames:v", "1", "-f", "null", "-"],
        capture_output=True, text=True, timeout=600)
    found = re.findall(r"All:([\d.]+)", done.stderr)
    return float(found[-1]) if found else float("nan")


def spotlight_ssim(source: str, canvas: tuple[int, int], fps: int, work: str,
                   tile: tuple[int, int] | None) -> float:
    """Normalize ``source`` (at the canvas, or at the old ``tile`` size), render it as a
    full-frame spotlight on the canvas and measure one frame's SSIM."""
    from workers.media.normalize import TileFormat, normalize_clip
    from workers.media.probe import probe
    from workers.media.render import render
    from workers.media.spec import parse_spec

    w, h = tile or canvas
    clip = os.path.join(work, f"clip-{w}x{h}.mp4")
    normalize_clip(source, clip, probe(source), TileFormat(width=w, height=h, fps=fps))
    spec = parse_spec({"version": 1, "canvas": {"width": canvas[0], "height": canvas[1],
                                                "fps": fps},
                       "layout": {"type": "spotlight", "gap": 0,
                                  "featured": [{"clip": "a", "start": 0, "end": 3600}]},
                       "audio": {"mode": "mix"}, "duration": 2.0,
                       "video": {"preset": "veryfast", "crf": 23},
                       "clips": [{"id": "a", "path": clip}]})
    out = os.path.join(work, f"spot-{w}x{h}.mp4")
    render(spec, out)
    return ssim_of_frame(out, source, canvas, at=1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--canvas", default="1920x1080")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(),
                                                        "tutti-bench-intake"))
    parser.add_argument("--no-ssim", action="store_true")
    args = parser.parse_args(argv)
    canvas = tuple(int(v) for v in args.canvas.split("x"))
    clips = corpus(args.cache, args.seconds)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as work:
        for name, src in clips.items():
            best: dict[str, dict] = {}
            for _ in range(args.repeat):
                for engine in ENGINES:  # interleaved
                    if engine in HDR_ONLY and "HLG" not in name:
                        continue
                    row = measure(engine, src, work, canvas, args.fps)
                    if "error" in row:
                        best[engine] = row
                        continue
                    kept = best.get(engine)
                    if kept is None or "error" in kept or row["wall"] < kept["wall"]:
                        row["rss_mb"] = max(row["rss_mb"], (kept or {}).get("rss_mb", 0))
                        best[engine] = row
                    else:
                        kept["rss_mb"] = max(kept["rss_mb"], row["rss_mb"])
            for engine in (e for e in ENGINES if e in best):
                rows.append({"clip": name, **best[engine]})
        print_table(rows, args, canvas)
        if not args.no_ssim:
            print()
            print(f"full-frame spotlight at {canvas[0]}x{canvas[1]}: SSIM of a rendered "
                  "frame against the source scaled once")
            for name in ("1080p30 H.264", "4K HEVC 10-bit HLG"):
                now = spotlight_ssim(clips[name], canvas, args.fps, work, None)
                old = spotlight_ssim(clips[name], canvas, args.fps, work, (640, 360))
                verdict = "PASS" if now >= 0.95 else "FAIL"
                print(f"  {name:<20} canvas-size clip {now:.4f}   old 640x360 tile {old:.4f}"
                      f"   goal >= 0.95: {verdict}")
    return 0


def print_table(rows: list[dict], args: argparse.Namespace, canvas: tuple[int, ...]) -> None:
    print(f"intake at the campaign canvas {canvas[0]}x{canvas[1]}@{args.fps}, "
          f"{args.seconds:g} s clips, best of {args.repeat}, {os.cpu_count()} CPUs")
    print(f"{'clip':<20} {'engine':<8} {'wall s':>7} {'s/min in':>9} {'CPU s':>7} "
          f"{'peak RSS MB':>12} {'x ffmpeg':>9}")
    plain = {r["clip"]: r for r in rows if r["engine"] == "ffmpeg" and "error" not in r}
    verdicts = []
    for r in rows:
        if "error" in r:
            print(f"{r['clip']:<20} {r['engine']:<8} {r['error']}")
            continue
        per_min = r["wall"] / (args.seconds / 60)
        ratio = r["wall"] / plain[r["clip"]]["wall"] if r["clip"] in plain else float("nan")
        print(f"{r['clip']:<20} {r['engine']:<8} {r['wall']:7.2f} {per_min:9.1f} "
              f"{r['cpu']:7.2f} {r['rss_mb']:12.0f} {ratio:9.2f}")
        if r["engine"] == "tutti":
            cpu = r["cpu"] / plain[r["clip"]]["cpu"] if r["clip"] in plain else float("nan")
            verdicts.append(f"  goal {r['clip']}: <= {GOAL_RATIO}x plain ffmpeg: {ratio:.2f}x "
                            f"{'PASS' if ratio <= GOAL_RATIO else 'FAIL'} (CPU {cpu:.2f}x)")
            floor = next((f for f in rows if f["clip"] == r["clip"]
                          and f["engine"] == "ffmpeg-tm" and "error" not in f), None)
            if floor:
                verdicts.append(f"  fair floor {r['clip']}: plain ffmpeg with the same tone "
                                f"mapping: {r['wall'] / floor['wall']:.2f}x wall, "
                                f"{r['cpu'] / floor['cpu']:.2f}x CPU")
            if r["clip"].startswith("4K"):
                verdicts.append(f"  goal peak RSS at 4K <= {GOAL_RSS_MB} MB: "
                                f"{r['rss_mb']:.0f} MB "
                                f"{'PASS' if r['rss_mb'] <= GOAL_RSS_MB else 'FAIL'}")
    print("\n".join(verdicts))
