"""The mission at full size: ``python -m bench.mission [--takes 75] [--seconds 90]
[--size 1920x1080]``.

Takes (phone-like H.264 + AAC clips at ``--size``, 30 fps, from bench/render/corpus.py)
are submitted to a campaign with a guide, taken in and synced by two `tutti worker`
processes on Redis and PostgreSQL (as in production), approved, then rendered as a 1080p
final grid with the mastered mix, cut into segments both workers draw. It prints minutes for
each stage and in total, against the figure Virtual Choir Maker's author gives for the same
size (about an hour for 75 voices of 90 s; scaled by takes x seconds for smaller runs). The
goal (issue 15) is the render of 75 x 90 s at 1080p in under 5 minutes on two cores.

``--distinct N`` (default: every take) takes only N distinct takes through the real intake
(normalize, proxies at intake, sync), then registers the other takes as copies of those
intake products (bench/mission/copies.py: their own clip rows, normalized files and
proxies, each decoded separately by the render), so the render has the work of all
``--takes`` without the hour of intake. The intake line then counts N takes.

Besides minutes, it prints the CPU seconds of the workers and everything they started
(ffmpeg) in each stage, the load average while the render ran (the machine is shared),
and the render's parts as the workers logged them (plan, segments, sound, join)."""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

from bench.render.corpus import corpus
from tests.integration import harness

DEFAULT_PG = os.environ.get("TUTTI_TEST_PG_URL",
                            "postgresql+psycopg://postgres@127.0.0.1:5432/test")
VCM_MINUTES = 60.0  # Virtual Choir Maker: "about an hour" for 75 voices x 90 s
VCM_SIZE = 75 * 90
TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) of the processes ``pids``, everything below them now
    alive, and every child they have waited for (ffmpeg runs that ended): read before and
    after a stage, the difference is the stage's CPU in those processes."""
    total = 0
    for pid in {p for root in pids for p in (root, *harness.descendants(root))}:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile: its parent counts it once it has waited for it
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def load_average() -> float:
    with open("/proc/loadavg") as handle:
        return float(handle.read().split()[0])


PART = re.compile(r"render \d+: (?:part (-?\d+) drawn|(parts joined)|(planned)) in "
                  r"([\d.]+) s \(([\d.]+) CPU s\)")
PROXIES = re.compile(r"clip \d+: \d+ proxies in ([\d.]+) s \(([\d.]+) CPU s\)")
RENDER_PROXY = re.compile(r"proxy of .* at 1/\d+: ")


def worker_logs(root: Path, since: dict[str, int] | None = None) -> tuple[str, dict[str, int]]:
    """The workers' logs (from the byte offsets ``since`` per file, when given) and the
    offsets they end at now."""
    texts, ends = [], {}
    for path in sorted(root.glob("worker-*.log")):
        data = path.read_bytes()
        ends[path.name] = len(data)
        texts.append(data[(since or {}).get(path.name, 0):].decode(errors="replace"))
    return "\n".join(texts), ends


def render_parts(text: str) -> list[tuple[str, float, float]]:
    """(what, wall s, CPU s) of each part of the render the workers logged, in the
    order they ended (the log lines start with their time)."""
    rows = []
    lines = sorted(line for line in text.splitlines() if PART.search(line))
    for part, joined, planned, wall, cpu in PART.findall("\n".join(lines)):
        what = ("plan" if planned else "join" if joined else
                "sound" if part == "-1" else f"segment {int(part) + 1}")
        rows.append((what, float(wall), float(cpu)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mission", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--takes", type=int, default=75)
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--distinct", type=int, default=None,
                        help="takes through the real intake (default: all); the others "
                             "are copies of their intake products")
    parser.add_argument("--size", default="1920x1080", help="the takes' size")
    parser.add_argument("--canvas", default="1920x1080", help="the final render's size")
    parser.add_argument("--cache", default="bench/out/mission-takes")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work folder (media, logs) and print where it is")
    args = parser.parse_args(argv)
    distinct = args.takes if args.distinct is None else args.distinct
    if not 1 <= distinct <= args.takes:
        parser.error("--distinct must be between 1 and --takes")
    width, height = (int(v) for v in args.size.split("x"))
    cw, ch = (int(v) for v in args.canvas.split("x"))

    made = time.monotonic()
    takes = corpus(args.cache, distinct, width=width, height=height, fps=30,
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
    # the workers' reconciler as deployed (every 15 s), not the fault tests' every second:
    # its queries would be counted in the render's CPU
    stack.env["TUTTI_RECONCILE_SECONDS"] = "15"
    loads: list[float] = []
    copied = None
    try:
        from bench.mission.copies import copy_takes
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
        workers = [stack.start_worker("worker-1", beat=True, concurrency=1).pid,
                   stack.start_worker("worker-2", concurrency=1).pid]
        cpu = tree_cpu(workers)
        settled = ("synced", "needs_sync", "failed", "rejected")

        expected: dict[int, list[str]] = {}  # clip id -> the proxy files intake builds

        def proxies_done(clip_id: int, key: str | None, log_text: str) -> bool:
            """Intake builds a take's proxies after giving the clip back (sync may have
            settled it first): its intake ends with them built, or with their failure
            logged."""
            if key is None:
                return True
            if clip_id not in expected:
                from workers.media.probe import probe
                from workers.media.proxies import likely_scales, proxy_name
                from workers.pipeline import proxy_cache

                with stack.app.app_context():
                    path = str(stack.media_root / key)
                    info = probe(path)
                    cache = proxy_cache(stack.query(lambda s: s.get(Clip, clip_id)
                                                    .campaign_id))
                    expected[clip_id] = [str(cache / proxy_name(path, scale)) for scale in
                                         likely_scales(info.width, info.height, cw, ch)]
            return all(os.path.exists(p) for p in expected[clip_id]) or \
                f"clip {clip_id}: its proxies could not be built" in log_text

        def intake_done() -> bool:
            rows = stack.query(lambda s: list(s.execute(
                db.select(Clip.id, Clip.status, Clip.normalized_key)
                .where(Clip.id.in_(ids)))))
            if not all(status in settled for _i, status, _k in rows):
                return False
            text = worker_logs(work)[0]
            return all(proxies_done(i, k, text) for i, _s, k in rows)

        harness._wait(intake_done, 24 * 3600, "intake and sync", period=2)
        intake = time.monotonic() - started
        intake_cpu = tree_cpu(workers) - cpu
        proxies = [(float(w), float(c)) for w, c in PROXIES.findall(worker_logs(work)[0])]
        copying = time.monotonic()
        if distinct < args.takes:
            with stack.app.app_context():
                copied = copy_takes(ids, args.takes)
        copying = time.monotonic() - copying
        statuses = stack.query(lambda s: [r for r in s.scalars(db.select(Clip.status))])
        with stack.app.app_context():
            for clip in services.get_campaign("mission").clips:
                if clip.status in ("synced", "needs_sync"):
                    services.moderate_clip(clip, "approved")
        _text, before = worker_logs(work)
        cpu = tree_cpu(workers)
        with stack.app.app_context():
            job = services.request_render(services.get_campaign("mission"), "final",
                                          options={"audio": "mix"}).id
        started = time.monotonic()

        def rendered_yet() -> bool:
            loads.append(load_average())
            return stack.query(lambda s: s.get(Render, job).status) in ("done", "failed")

        harness._wait(rendered_yet, 24 * 3600, "the render", period=2)
        rendered = time.monotonic() - started
        render_cpu = tree_cpu(workers) - cpu
        during = worker_logs(work, before)[0]
        final = stack.query(lambda s: (s.get(Render, job).status, s.get(Render, job).reason,
                                       s.get(Render, job).duration,
                                       s.get(Render, job).output_key,
                                       len(s.get(Render, job).clip_ids or [])))
        output = None
        if final[3]:
            from workers.media.probe import probe

            output = probe(str(stack.media_root / final[3]))
    finally:
        stack.close()
    size = args.takes * args.seconds
    vcm = VCM_MINUTES * size / VCM_SIZE
    print(f"\nMission: {args.takes} takes x {args.seconds:g} s at {args.size}"
          + (f" ({distinct} through intake, {args.takes - distinct} copies of them)"
             if distinct < args.takes else "")
          + f" through intake and sync on two `tutti worker -c 1`, then a {args.canvas} grid "
          f"with the mastered mix; {os.cpu_count()} cores, {args.database} (takes made in "
          f"{made / 60:.1f} min, submitted in {submitted / 60:.1f} min"
          + (f", copied in {copying / 60:.1f} min" if copied else "") + ", not counted)")
    print(f"{'stage':<22} {'minutes':>8} {'s per take':>10} {'CPU s':>8} {'CPU s/take':>10}")
    print("-" * 62)
    for name, seconds, cpu_s, count in (
            (f"intake + sync ({distinct})", intake, intake_cpu, distinct),
            ("render (final)", rendered, render_cpu, args.takes)):
        print(f"{name:<22} {seconds / 60:>8.1f} {seconds / count:>10.1f} {cpu_s:>8.0f} "
              f"{cpu_s / count:>10.1f}")
    if distinct == args.takes:
        print(f"{'total':<22} {(intake + rendered) / 60:>8.1f} "
              f"{(intake + rendered) / args.takes:>10.1f}")
    print(f"{'Virtual Choir Maker':<22} {vcm:>8.1f} {'':>10}  (about an hour for 75 x 90 s, "
          f"scaled by takes x seconds)")
    if proxies:
        each_cpu = sum(c for _w, c in proxies) / len(proxies)
        each_wall = sum(w for w, _c in proxies) / len(proxies)
        print(f"\nintake proxies: {len(proxies)} takes, {each_cpu:.1f} CPU s and "
              f"{each_wall:.1f} s each (in the intake CPU above)")
    if copied:
        print(f"copies: {len(copied.ids)} clips, {copied.normalized_bytes / 1e9:.2f} GB of "
              f"normalized files and {copied.proxies} proxies copied")
    if loads:
        print(f"render: wall {rendered:.1f} s, CPU {render_cpu:.1f} s of the workers and their "
              f"ffmpeg ({render_cpu / rendered / (os.cpu_count() or 1):.0%} of "
              f"{os.cpu_count()} cores); load average (1 min) during it "
              f"{min(loads):.1f}-{max(loads):.1f}, mean {sum(loads) / len(loads):.1f}")
    parts = render_parts(during)
    if parts:
        print(f"{'render part':<22} {'wall s':>8} {'CPU s':>8}")
        for what, wall, cpu_s in parts:
            print(f"{what:<22} {wall:>8.1f} {cpu_s:>8.1f}")
        segs = [p for p in parts if p[0].startswith("segment")]
        print(f"{'segments, sum':<22} {sum(p[1] for p in segs):>8.1f} "
              f"{sum(p[2] for p in segs):>8.1f}")
    print(f"proxies the render built itself: {len(RENDER_PROXY.findall(during))}")
    print(f"\nrender: {final[0]} {final[1] or ''} ({final[2] or 0:.1f} s of video, "
          f"{final[4]} clips); clips: "
          + ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses))))
    if output is not None:
        print(f"output: {output.width}x{output.height}, {output.duration:.2f} s, "
              f"{'with' if output.has_audio else 'NO'} sound")
    goal = 5 * size / VCM_SIZE
    print(f"goal: the render in under {goal:.1f} min (5 min for 75 x 90 s): "
          f"{'met' if rendered / 60 < goal else 'not met'} ({rendered / 60:.1f} min)")
    if args.keep:
        print(f"work folder kept: {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0
