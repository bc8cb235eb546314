"""The mission at full size: ``python -m bench.mission [--takes 75] [--seconds 90]
[--size 1920x1080]``.

Takes (phone-like H.264 + AAC clips at ``--size``, 30 fps, from bench/render/corpus.py)
are submitted to a campaign with a guide, taken in and synced by two `tutti worker`
processes on Redis and PostgreSQL (as in production), approved, then rendered as a 1080p
final grid with the mastered mix, cut into segments both workers draw. It prints minutes for
each stage and in total, against the figure Virtual Choir Maker's author gives for the same
size (about an hour for 75 voices of 90 s; scaled by takes x seconds for smaller runs). The
goal (issue 15) is the render of 75 x 90 s at 1080p in under 5 minutes on two cores."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.render.corpus import corpus
from tests.integration import harness

DEFAULT_PG = os.environ.get("TUTTI_TEST_PG_URL",
                            "postgresql+psycopg://postgres@127.0.0.1:5432/test")
VCM_MINUTES = 60.0  # Virtual Choir Maker: "about an hour" for 75 voices x 90 s
VCM_SIZE = 75 * 90


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mission", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--takes", type=int, default=75)
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--size", default="1920x1080", help="the takes' size")
    parser.add_argument("--canvas", default="1920x1080", help="the final render's size")
    parser.add_argument("--cache", default="bench/out/mission-takes")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    cw, ch = (int(v) for v in args.canvas.split("x"))

    made = time.monotonic()
    takes = corpus(args.cache, args.takes, width=width, height=height, fps=30,
                   seconds=args.seconds)
    made = time.monotonic() - made
    work = Path(tempfile.mkdtemp(prefix="tutti-bench-mission-"))
    if args.database == "postgresql":
        from tests.conftest import reset_postgres

        reset_postgres(DEFAULT_PG)
        url = DEFAULT_PG
    else:
        url = f"sqlite:///{work / 'mission.sqlite3'}"
    stack = harness.Stack(work, url, lease_seconds=30, segment_seconds=10)
    stack.env["TUTTI_RESEND_SECONDS"] = "600"
    try:
        from portal import services
        from portal.extensions import db
        from portal.models import Clip, Render
        from workers.media.ffmpeg import run_ffmpeg

        guide = work / "guide.wav"  # the tone of the first distinct take
        run_ffmpeg(["-f", "lavfi", "-i", f"sine=frequency=220:sample_rate=48000:d={args.seconds}",
                    str(guide)], timeout=120)
        with stack.app.app_context():
            services.create_campaign("mission", "Mission", parts=["Alto"], canvas=(cw, ch),
                                     guide_path=str(guide))
        submitted = time.monotonic()
        ids = [stack.submit("mission", Path(p), name=f"Voice {k}") for k, p in enumerate(takes)]
        submitted = time.monotonic() - submitted
        started = time.monotonic()
        stack.start_worker("worker-1", beat=True, concurrency=1)
        stack.start_worker("worker-2", concurrency=1)
        settled = ("synced", "needs_sync", "failed", "rejected")

        def intake_done() -> bool:
            rows = stack.query(lambda s: list(s.scalars(db.select(Clip.status)
                                                        .where(Clip.id.in_(ids)))))
            return all(r in settled for r in rows)

        harness._wait(intake_done, 24 * 3600, "intake and sync", period=2)
        intake = time.monotonic() - started
        statuses = stack.query(lambda s: [r for r in s.scalars(db.select(Clip.status))])
        with stack.app.app_context():
            for clip in services.get_campaign("mission").clips:
                if clip.status in ("synced", "needs_sync"):
                    services.moderate_clip(clip, "approved")
            job = services.request_render(services.get_campaign("mission"), "final",
                                          options={"audio": "mix"}).id
        started = time.monotonic()
        harness._wait(lambda: stack.query(lambda s: s.get(Render, job).status) in
                      ("done", "failed"), 24 * 3600, "the render", period=2)
        rendered = time.monotonic() - started
        final = stack.query(lambda s: (s.get(Render, job).status, s.get(Render, job).reason,
                                       s.get(Render, job).duration))
    finally:
        stack.close()
    size = args.takes * args.seconds
    vcm = VCM_MINUTES * size / VCM_SIZE
    print(f"\nMission: {args.takes} takes x {args.seconds:g} s at {args.size} through intake "
          f"and sync on two `tutti worker -c 1`, then a {args.canvas} grid with the mastered "
          f"mix; {os.cpu_count()} cores, {args.database} (takes made in {made / 60:.1f} min, "
          f"submitted in {submitted / 60:.1f} min, not counted)")
    print(f"{'stage':<22} {'minutes':>8} {'s per take':>10}")
    print("-" * 42)
    for name, seconds in (("intake + sync", intake), ("render (final)", rendered),
                          ("total", intake + rendered)):
        print(f"{name:<22} {seconds / 60:>8.1f} {seconds / args.takes:>10.1f}")
    print(f"{'Virtual Choir Maker':<22} {vcm:>8.1f} {'':>10}  (about an hour for 75 x 90 s, "
          f"scaled by takes x seconds)")
    print(f"\nrender: {final[0]} {final[1] or ''} ({final[2] or 0:.1f} s of video); clips: "
          + ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses))))
    goal = 5 * size / VCM_SIZE
    print(f"goal: the render in under {goal:.1f} min (5 min for 75 x 90 s): "
          f"{'met' if rendered / 60 < goal else 'not met'} ({rendered / 60:.1f} min)")
    return 0
