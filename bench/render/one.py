"""One benchmark run, in its own process (so its memory and CPU are measured alone).

    python -m bench.render.one ENGINE N CACHE OUT

ENGINE: tutti, moviepy, xstack, floor, seg1 (two segments, one worker on one core),
seg2 (two segments, two workers each on its own core), proxies (a render that builds
cell-size proxies into an empty cache, then a re-render that finds them: both timed),
segment (internal: one segment).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from bench.render.corpus import corpus
from workers.media.ffmpeg import ffmpeg_path
from workers.media.layout import grid_rects
from workers.media.spec import RenderSpec, parse_spec

WIDTH, HEIGHT, FPS, SECONDS = 1280, 720, 30, 12.0
PRESET, CRF = "veryfast", 23


def bench_spec(paths: list[str]) -> RenderSpec:
    return parse_spec({
        "version": 1, "canvas": {"width": WIDTH, "height": HEIGHT, "fps": FPS},
        "video": {"preset": PRESET, "crf": CRF},
        "clips": [{"id": f"c{i}", "path": p, "name": f"Singer {i}"} for i, p in enumerate(paths)],
    })


def run_tutti(paths: list[str], out: str) -> None:
    from workers.media.render import render

    render(bench_spec(paths), out)


def run_proxies(paths: list[str], out: str) -> dict:
    """A first render with an empty proxy cache, then the same render again (as after a
    nudge, a replaced clip or one more approval): the re-render decodes only proxies."""
    import shutil
    import time

    from workers.media.render import render

    cache = out + ".proxies"
    try:
        started = time.monotonic()
        render(bench_spec(paths), out, proxy_dir=cache)
        cold = time.monotonic() - started
        started = time.monotonic()
        render(bench_spec(paths), out, proxy_dir=cache)
        warm = time.monotonic() - started
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"cold_s": cold, "warm_s": warm}


def run_moviepy(paths: list[str], out: str) -> None:
    """The grid as moviepy's docs teach it: clips_array of resized clips."""
    from moviepy import VideoFileClip, clips_array

    cols = math.ceil(math.sqrt(len(paths)))
    tile_w = WIDTH // cols
    clips = [VideoFileClip(p).resized(width=tile_w) for p in paths]
    rows = [clips[i:i + cols] for i in range(0, len(clips), cols)]
    final = clips_array(rows)
    final.write_videofile(out, fps=FPS, codec="libx264", preset=PRESET, audio_codec="aac",
                          ffmpeg_params=["-crf", str(CRF)], logger=None)
    final.close()
    for c in clips:
        c.close()


def _ffmpeg(args: list[str]) -> None:
    subprocess.run([ffmpeg_path(), "-hide_banner", "-nostdin", "-y", "-v", "error", *args],
                   check=True, stdin=subprocess.DEVNULL)


def run_xstack(paths: list[str], out: str) -> None:
    """An expert's single command: scale every input, xstack them, amix the sound."""
    rects = grid_rects(len(paths), WIDTH, HEIGHT, gap=4)
    args: list[str] = []
    for p in paths:
        args += ["-i", p]
    graph = [f"[{i}:v]scale={r.w}:{r.h},setsar=1[v{i}]" for i, r in enumerate(rects)]
    layout = "|".join(f"{r.x}_{r.y}" for r in rects)
    graph.append("".join(f"[v{i}]" for i in range(len(paths)))
                 + f"xstack=inputs={len(paths)}:layout={layout}:fill=0x101010,"
                 f"pad={WIDTH}:{HEIGHT}:0:0:color=0x101010[v]")
    graph.append("".join(f"[{i}:a]" for i in range(len(paths)))
                 + f"amix=inputs={len(paths)}[a]")
    _ffmpeg([*args, "-filter_complex", ";".join(graph), "-map", "[v]", "-map", "[a]",
             "-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), "-c:a", "aac",
             "-movflags", "+faststart", out])


def run_floor(paths: list[str], out: str) -> None:
    """Decode every input's picture and encode one output stream; nothing else."""
    args: list[str] = []
    for p in paths:
        args += ["-threads", "1", "-i", p] if len(paths) >= 8 else ["-i", p]
    args += ["-map", "0:v", "-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), out]
    args += [a for i in range(1, len(paths)) for a in ("-map", f"{i}:v")] + ["-f", "null", "-"]
    _ffmpeg(args)


def run_segments(paths: list[str], out: str, workers: int) -> dict:
    """Two segments: rendered by one worker (pinned to core 0) or two (one core each)."""
    import time

    from workers.media.plan import plan_render
    from workers.media.render import join_segments, render_audio, render_segment

    os.sched_setaffinity(0, {0})
    spec = bench_spec(paths)
    plan = plan_render(spec, segments=2)
    audio = out + ".audio.m4a"
    parts = [f"{out}.seg{k}.mp4" for k in range(2)]
    render_audio(spec, plan, audio)
    started = time.monotonic()
    if workers == 1:
        for k in range(2):
            render_segment(spec, plan, k, parts[k])
    else:
        plan_file = out + ".plan.json"
        with open(plan_file, "w") as f:
            json.dump(plan.to_dict(), f)
        procs = [subprocess.Popen([sys.executable, "-m", "bench.render.one", "segment",
                                   str(len(paths)), os.path.dirname(paths[0]), parts[k],
                                   plan_file, str(k)]) for k in range(2)]
        if any(p.wait() != 0 for p in procs):
            raise SystemExit("a segment worker failed")
        os.remove(plan_file)
    segments_s = time.monotonic() - started
    join_segments(plan, parts, audio, out)
    for path in [audio, *parts]:
        os.remove(path)
    return {"segments_s": segments_s}


def run_one_segment(paths: list[str], out: str, plan_file: str, index: int) -> None:
    from workers.media.plan import RenderPlan
    from workers.media.render import render_segment

    os.sched_setaffinity(0, {index % os.cpu_count()})  # one core per "machine"
    with open(plan_file) as f:
        plan = RenderPlan.from_dict(json.load(f))
    render_segment(bench_spec(paths), plan, index, out)


def main(argv: list[str]) -> int:
    engine, n, cache, out = argv[0], int(argv[1]), argv[2], argv[3]
    paths = corpus(cache, n, width=WIDTH, height=HEIGHT, fps=FPS, seconds=SECONDS)
    extra: dict = {}
    if engine == "tutti":
        run_tutti(paths, out)
    elif engine == "moviepy":
        run_moviepy(paths, out)
    elif engine == "xstack":
        run_xstack(paths, out)
    elif engine == "floor":
        run_floor(paths, out)
    elif engine == "proxies":
        extra = run_proxies(paths, out)
    elif engine in ("seg1", "seg2"):
        extra = run_segments(paths, out, 1 if engine == "seg1" else 2)
    elif engine == "segment":
        run_one_segment(paths, out, argv[4], int(argv[5]))
    else:
        raise SystemExit(f"unknown engine {engine}")
    if extra:
        print(json.dumps(extra))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
