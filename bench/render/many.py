"""One render of many clips, end to end: does it stay within memory and file descriptors?

    .venv/bin/python -m bench.render.many [--clips 500] [--width 640 --height 360]
        [--seconds 4] [--canvas 1280x720] [--labels] [--cache DIR]

Renders a grid of ``--clips`` clips (the bench corpus at the given size, reused under that
many names) with Tutti's default engine in a fresh process, sampling every 50 ms the
process tree's summed RSS, the largest single process's RSS, the number of live ffmpeg
processes and the most file descriptors any one process holds; checks the output (frames,
duration, sound) and prints a table. Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from bench.render.corpus import corpus
from bench.render.run import _rss_kb, run_sampled, tree_pids


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _is_ffmpeg(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return "ffmpeg" in f.read()
    except OSError:
        return False


def sample_tree(root: int) -> dict[str, int]:
    pids = tree_pids(root)
    rss = [_rss_kb(pid) for pid in pids]
    return {"rss_kb": sum(rss), "proc_rss_kb": max(rss, default=0),
            "fds": max((_fds(pid) for pid in pids), default=0),
            "ffmpegs": sum(_is_ffmpeg(pid) for pid in pids)}


RENDER = """
import json, sys
from workers.media.render import render
from workers.media.spec import parse_spec
spec = parse_spec(json.load(open(sys.argv[1])))
result = render(spec, sys.argv[2])
print(json.dumps({"duration": result.duration}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.render.many")
    parser.add_argument("--clips", type=int, default=500)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--canvas", default="1280x720")
    parser.add_argument("--labels", action="store_true", help="a name label on every tile")
    parser.add_argument("--cache",
                        default=os.path.join(tempfile.gettempdir(), "tutti-bench-render"))
    args = parser.parse_args(argv)
    cw, ch = (int(v) for v in args.canvas.split("x"))
    print(f"preparing {args.clips} clips ({args.width}x{args.height}, {args.fps} fps, "
          f"{args.seconds:g} s) in {args.cache} ...", flush=True)
    paths = corpus(args.cache, args.clips, width=args.width, height=args.height, fps=args.fps,
                   seconds=args.seconds)
    limit = os.sysconf("SC_OPEN_MAX")
    with tempfile.TemporaryDirectory(prefix="tutti-bench-many-") as work:
        spec = {"version": 1, "canvas": {"width": cw, "height": ch, "fps": args.fps},
                "video": {"preset": "veryfast", "crf": 23}, "layout": {"labels": args.labels},
                "clips": [{"id": f"c{i}", "path": p, "name": f"Singer {i}"}
                          for i, p in enumerate(paths)]}
        spec_path, out = os.path.join(work, "spec.json"), os.path.join(work, "mash.mp4")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        proc, _stdout, wall, peak = run_sampled([sys.executable, "-c", RENDER, spec_path, out],
                                                sample_tree)
        if proc.returncode != 0:
            print(f"render failed: exit {proc.returncode}")
            return 1
        from workers.media.probe import probe

        info = probe(out)
    frames = round(info.duration * args.fps)
    print()
    print(f"one render of {args.clips} clips ({args.width}x{args.height}, {args.seconds:g} s) "
          f"into {cw}x{ch}, {os.cpu_count()} cores")
    print(f"  wall                          {wall:8.1f} s")
    print(f"  output                        {info.width}x{info.height}, {frames} frames, "
          f"{info.duration:.3f} s, sound: {info.audio_codec}")
    print(f"  peak RSS, whole process tree  {peak['rss_kb'] / 1024:8.0f} MB")
    print(f"  peak RSS, largest process     {peak['proc_rss_kb'] / 1024:8.0f} MB")
    print(f"  most ffmpeg processes at once {peak['ffmpegs']:8d}")
    print(f"  most open files, one process  {peak['fds']:8d}   (limit {limit})")
    ok = (abs(info.duration - args.seconds) <= 2 / args.fps and info.has_audio
          and (info.width, info.height) == (cw, ch))
    print(f"  output complete               {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
