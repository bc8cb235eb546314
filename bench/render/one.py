"""One benchmark run, in its own process (so its memory and CPU are measured alone).

    python -m bench.render.one ENGINE N CACHE OUT

ENGINE: tutti, moviepy, xstack, floor, seg1 (two segments, one worker on one core),
seg2 (two segments, two workers each on its own core), proxies (a render that builds
cell-size proxies into an empty cache, then a re-render that finds them: both timed).
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
        "layout": {"labels": True},  # the goal: ahead of the peers while doing more
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


_WORKER: dict = {}


def _start_worker(cores, everyone, spec: RenderSpec, plan_dict: dict) -> None:
    """A pool process standing in for a Celery worker on a machine of one core: it takes
    a core of its own and keeps the spec and plan, as a worker reads them from the job;
    then it waits until every worker has started."""
    from workers.media.plan import RenderPlan

    os.sched_setaffinity(0, {cores.get()})
    _WORKER.update(spec=spec, plan=RenderPlan.from_dict(plan_dict))
    everyone.wait(120)


def _part(part: int, path: str) -> tuple[int, float]:
    import time

    from workers.media.render import render_audio, render_segment

    spec, plan = _WORKER["spec"], _WORKER["plan"]
    if part < 0:
        render_audio(spec, plan, path)
    else:
        render_segment(spec, plan, part, path)
    return part, time.monotonic()


def run_segments(paths: list[str], out: str, workers: int) -> dict:
    """A distributed render of two segments, as the portal runs one: the plan, then its
    parts (the segments, longest first, then the sound) on a pool of ``workers`` already
    running, each on a core of its own (one or two "machines"), then the join. The time
    starts at the plan: the workers' start-up is not a render's cost."""
    import multiprocessing
    import time

    from workers.media.plan import plan_render
    from workers.media.render import join_segments

    spec = bench_spec(paths)
    ctx = multiprocessing.get_context("spawn")
    cores = ctx.Queue()
    for k in range(workers):
        cores.put(k % os.cpu_count())
    started = time.monotonic()
    plan = plan_render(spec, segments=2)
    planned = time.monotonic() - started
    everyone = ctx.Barrier(workers)
    with ctx.Pool(workers, _start_worker, (cores, everyone, spec, plan.to_dict())) as pool:
        pool.apply(os.getpid)  # runs once every worker is up
        audio = out + ".audio.m4a"
        parts = [f"{out}.seg{k}.mp4" for k in range(2)]
        order = sorted(range(2), key=lambda k: -plan.segments[k].frames) + [-1]
        started = time.monotonic()
        done = dict(pool.starmap(_part, [(k, audio if k < 0 else parts[k]) for k in order],
                                 chunksize=1))
    segments_s = max(done[k] for k in range(2)) - started
    join_segments(plan, parts, audio, out)
    render_s = planned + time.monotonic() - started
    for path in [audio, *parts]:
        os.remove(path)
    return {"segments_s": segments_s, "render_s": render_s}


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
    else:
        raise SystemExit(f"unknown engine {engine}")
    if extra:
        print(json.dumps(extra))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
