"""Load on the web tier: ``python -m bench.load [--seconds 60] [--viewers 200]
[--participants 50] [--clip-mb 20]``.

gunicorn (``portal.gunicorn_conf``: threaded workers) on loopback with PostgreSQL and a
Redis server of its own; locust drives participants sending 20 MB clips through tus (5 MB
chunks) and viewers loading the watch page (75 performers in the credits) and streaming the
published mash-up with 1 MB range requests. It prints, per route: requests, errors, p50,
p99; the upload throughput; the peak RSS of gunicorn (master and workers). ``healthz
(floor)`` is the cheapest route, measured in the same run: what any request costs on this
machine under this load, so the watch page's overhead is the difference.
Needs locust (``pip install -e '.[load]'``; ``make bench-load`` does it)."""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.integration import harness

DEFAULT_PG = os.environ.get("TUTTI_TEST_PG_URL",
                            "postgresql+psycopg://postgres@127.0.0.1:5432/test")
GOAL_P99_MS = 100


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler(threading.Thread):
    """Peak of the summed RSS of a process and its children, sampled every 0.5 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kb = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            total = sum(_rss_kb(p) for p in [self.pid, *harness.descendants(self.pid)])
            self.peak_kb = max(self.peak_kb, total)


def _published_campaign(stack: harness.Stack, slug: str, work: Path) -> tuple[str, int]:
    """A campaign with 75 approved performers and a published 60 s 720p mash-up."""
    from portal import services
    from portal.extensions import db
    from portal.models import Clip, Render
    from workers.media.ffmpeg import run_ffmpeg

    mashup = work / "mashup.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-f", "lavfi", "-i",
                "sine=frequency=330:sample_rate=48000", "-t", "60", "-pix_fmt", "yuv420p",
                "-c:v", "libx264", "-preset", "ultrafast", "-crf", "28", "-c:a", "aac",
                "-movflags", "+faststart", str(mashup)], timeout=600)
    with stack.app.app_context():
        campaign = services.create_campaign(slug, "Load test", parts=["Alto", "Bass"])
        clips = [Clip(campaign=campaign, display_name=f"Performer {k}", location="Earth",
                      part=campaign.parts[k % 2], status="approved",
                      original_key=f"clips/none{k}/original.mp4") for k in range(75)]
        db.session.add_all(clips)
        db.session.flush()
        job = Render(campaign=campaign, kind="final", status="done", progress=1.0,
                     clip_ids=[c.id for c in clips], duration=60.0)
        db.session.add(job)
        db.session.flush()
        key = f"renders/{slug}/{job.token}/mashup.mp4"
        job.output_key = key
        campaign.published_render_id = job.id
        db.session.commit()
    target = stack.media_root / key
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mashup, target)
    return f"/media/{key}", target.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--clip-mb", type=float, default=20)
    parser.add_argument("--workers", type=int, default=0, help="gunicorn workers (default "
                        "from portal.gunicorn_conf: 2 per core)")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    args = parser.parse_args(argv)
    locust = shutil.which("locust", path=str(Path(sys.executable).parent))
    if locust is None:
        print("locust is not installed: pip install -e '.[load]' (or make bench-load)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="tutti-bench-load-"))
    if args.database == "postgresql":
        from tests.conftest import reset_postgres

        reset_postgres(DEFAULT_PG)
        url = DEFAULT_PG
    else:
        url = f"sqlite:///{work / 'load.sqlite3'}"
    stack = harness.Stack(work, url)
    stack.env.update({"TUTTI_UPLOAD_LIMIT_ADDRESS": "100000 per hour",
                      "TUTTI_UPLOAD_LIMIT_CAMPAIGN": "100000 per hour",
                      "TUTTI_LOG_LEVEL": "WARNING", "GUNICORN_ACCESSLOG": "",
                      "GUNICORN_BIND": f"127.0.0.1:{stack.web_port}"})
    if args.workers:
        stack.env["GUNICORN_WORKERS"] = str(args.workers)
    media, size = _published_campaign(stack, "load", work)
    log = open(work / "gunicorn.log", "wb")
    gunicorn = subprocess.Popen([str(Path(sys.executable).with_name("gunicorn")), "-c",
                                 "python:portal.gunicorn_conf", "portal:create_app()"],
                                env=stack.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    log.close()
    sampler = None
    try:
        import requests

        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{stack.base}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("gunicorn did not start:\n" + (work / "gunicorn.log")
                                 .read_text()[-2000:])
            time.sleep(0.3)
        sampler = RssSampler(gunicorn.pid)
        sampler.start()
        env = {**stack.env, "TUTTI_LOAD_SLUG": "load", "TUTTI_LOAD_MEDIA": media,
               "TUTTI_LOAD_MEDIA_SIZE": str(size), "TUTTI_LOAD_CLIP_MB": str(args.clip_mb),
               "TUTTI_LOAD_PARTICIPANTS": str(args.participants),
               "TUTTI_LOAD_VIEWERS": str(args.viewers),
               "TUTTI_LOAD_UPLOADED": str(work / "uploaded.txt")}
        users = args.participants + args.viewers
        started = time.monotonic()
        subprocess.run([locust, "-f", str(Path(__file__).with_name("locustfile.py")),
                        "--headless", "-u", str(users), "-r", str(max(10, users // 5)),
                        "-t", f"{args.seconds}s", "--host", stack.base, "--csv",
                        str(work / "stats"), "--only-summary", "--loglevel", "ERROR"],
                       env=env, check=False, stdout=subprocess.DEVNULL,
                       stderr=open(work / "locust.log", "wb"), timeout=args.seconds + 120)
        elapsed = time.monotonic() - started
    finally:
        if sampler is not None:
            sampler.stop.set()
        gunicorn.terminate()
        try:
            gunicorn.wait(timeout=30)
        except subprocess.TimeoutExpired:
            harness.Stack.kill(gunicorn)
        stack.close()
    rows = list(csv.DictReader(open(work / "stats_stats.csv")))
    sent, clips = (int(v) for v in (work / "uploaded.txt").read_text().split())
    workers = stack.env.get("GUNICORN_WORKERS") or f"{max(2, 2 * os.cpu_count())}"
    print(f"\nLoad: {args.participants} participants sending {args.clip_mb:g} MB clips by tus, "
          f"{args.viewers} viewers, {args.seconds} s, gunicorn {workers} workers x 16 threads "
          f"on {os.cpu_count()} cores (locust on the same machine), {args.database}")
    header = (f"{'route':<18} {'requests':>8} {'errors':>6} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'max ms':>7}")
    print(header)
    print("-" * len(header))
    watch_p99 = None
    errors = 0
    for row in rows:
        name = row["Name"]
        if name == "Aggregated":
            continue
        p99 = row["99%"]
        errors += int(row["Failure Count"])
        print(f"{name:<18} {row['Request Count']:>8} {row['Failure Count']:>6} "
              f"{row['50%']:>7} {p99:>7} {float(row['Max Response Time']):>7.0f}")
        if name == "watch page":
            watch_p99 = float(p99)
    print(f"\nupload throughput: {sent / elapsed / 1024 / 1024:.1f} MB/s "
          f"({clips} clips of {args.clip_mb:g} MB finished); peak gunicorn RSS "
          f"{sampler.peak_kb / 1024:.0f} MB")
    met = errors == 0 and watch_p99 is not None and watch_p99 <= GOAL_P99_MS
    print(f"goal: 0 errors and watch page p99 <= {GOAL_P99_MS} ms: errors {errors}, "
          f"watch page p99 {watch_p99} ms -> {'met' if met else 'not met'}")
    return 0
