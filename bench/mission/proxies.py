"""The final render's stage with its cell-size proxies built at intake, against cold.

    .venv/bin/python -m bench.mission.proxies [--takes 16] [--seconds 20] [--size 1920x1080]
        [--canvas 1920x1080] [--cache bench/out/mission-takes]

Takes from bench/render/corpus.py stand for normalized clips (H.264 at ``--size``, 30 fps,
as intake writes them for a canvas that size). In one run: the final grid rendered with an
empty proxy cache (cold: the render builds every proxy, decoding each take whole at full
size, as the first render did before intake built them); then each take's proxies built
as intake now does (``build_proxies`` at ``likely_scales``: one decode, several scales),
its CPU seconds per take; then the same render with that cache (it builds none); then one
take normalized as intake does (what intake already spends per take). Wall and CPU seconds
(this process's ffmpeg children). Making the takes is not counted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from bench.render.corpus import corpus
from workers.media.layout import FINAL_GAP
from workers.media.normalize import TileFormat, normalize_clip
from workers.media.plan import plan_render
from workers.media.probe import probe
from workers.media.proxies import build_proxies, likely_scales, missing, proxy_scales
from workers.media.render import render
from workers.media.spec import parse_spec

FPS = 30


def _cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--takes", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--size", default="1920x1080", help="the takes' (normalized) size")
    parser.add_argument("--canvas", default="1920x1080", help="the final render's size")
    parser.add_argument("--cache", default="bench/out/mission-takes")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    cw, ch = (int(v) for v in args.canvas.split("x"))
    made = time.monotonic()
    paths = corpus(args.cache, args.takes, width=width, height=height, fps=FPS,
                   seconds=args.seconds)
    print(f"takes: {args.takes} x {args.seconds:g} s at {args.size} "
          f"(made in {time.monotonic() - made:.0f} s, not counted)")
    spec = parse_spec({
        "version": 1, "canvas": {"width": cw, "height": ch, "fps": FPS},
        "layout": {"type": "grid", "gap": FINAL_GAP, "labels": True},
        "video": {"preset": "veryfast", "crf": 23},
        "clips": [{"id": f"c{i}", "path": p, "name": f"Singer {i}"}
                  for i, p in enumerate(paths)],
    })
    plan = plan_render(spec)
    scales = proxy_scales(plan)
    grid_scales = sorted({round(1 / s) for s in scales.values()})
    rows = []
    with tempfile.TemporaryDirectory(prefix="mission-proxies-") as work:
        out = os.path.join(work, "mashup.mp4")
        cold_cache, intake_cache = os.path.join(work, "cold"), os.path.join(work, "intake")

        started, cpu = time.monotonic(), _cpu()
        render(spec, out, proxy_dir=cold_cache)
        rows.append(("render, cold (builds its proxies)", time.monotonic() - started,
                     _cpu() - cpu))
        shutil.rmtree(cold_cache)

        info = probe(paths[0])
        at = likely_scales(info.width, info.height, cw, ch)
        started, cpu = time.monotonic(), _cpu()
        for path in paths:
            build_proxies(path, intake_cache, at, keyint=FPS)
        intake_wall, intake_cpu = time.monotonic() - started, _cpu() - cpu
        left = missing({i: spec.clips[i].path for i in scales}, scales, intake_cache)

        started, cpu = time.monotonic(), _cpu()
        render(spec, out, proxy_dir=intake_cache)
        rows.append(("render, proxies built at intake", time.monotonic() - started,
                     _cpu() - cpu))

        # what intake spends on a take already: its normalize (one take, as intake runs it)
        started, cpu = time.monotonic(), _cpu()
        normalize_clip(paths[0], os.path.join(work, "normalized.mp4"), probe(paths[0]),
                       TileFormat(width=cw, height=ch, fps=FPS),
                       sheet=os.path.join(work, "sheet.jpg"),
                       thumbnail=os.path.join(work, "thumb.jpg"), meter=True)
        normalize_wall, normalize_cpu = time.monotonic() - started, _cpu() - cpu
    print(f"grid: {len(paths)} tiles on {args.canvas}, proxies at 1/"
          + ", 1/".join(map(str, grid_scales)) + "; intake builds 1/"
          + ", 1/".join(str(round(1 / s)) for s in at)
          + f"; missing before the second render: {left}")
    print(f"{'stage':<36} {'wall s':>8} {'CPU s':>8}")
    for name, wall, cpu in rows:
        print(f"{name:<36} {wall:8.1f} {cpu:8.1f}")
    print(f"{'intake proxies, per take':<36} {intake_wall / len(paths):8.1f} "
          f"{intake_cpu / len(paths):8.1f}")
    print(f"{'intake normalize, one take':<36} {normalize_wall:8.1f} {normalize_cpu:8.1f}")
    (_, cold_wall, cold_cpu), (_, warm_wall, warm_cpu) = rows
    print(f"render with intake proxies / cold: wall {warm_wall / cold_wall:.2f}, "
          f"CPU {warm_cpu / cold_cpu:.2f}; intake proxies / normalize, CPU: "
          f"{intake_cpu / len(paths) / normalize_cpu:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
