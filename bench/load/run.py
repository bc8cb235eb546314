"""Load on the web tier: ``python -m bench.load [--seconds 60] [--viewers 200]
[--participants 50] [--clip-mb 20] [--topologies single,split] [--rounds 1]``.

Two topologies on loopback, one after the other in the same run, against the same
PostgreSQL database and Redis server of its own:

- ``single``, the peer (the set-up before issue 15's production work): one gunicorn
  (``portal.gunicorn_conf``: threaded workers) serving everything, the mash-up's bytes
  copied by Python;
- ``split``, ``docker-compose.yml``'s: nginx (``portal/proxy.conf.template``) in front of
  a page server (gunicorn, ``TUTTI_MEDIA_ACCEL_REDIRECT=/_media/``: nginx sends the media
  files) and an uploads server (the same app in its own gunicorn, run with ``nice -n 19``,
  as compose's ``cpu_shares`` weighs containers) that the proxy sends the tus routes to;
  watch pages kept ``TUTTI_WATCH_CACHE_SECONDS`` by nginx.

Every process runs in the bench's session (the kernel's autogroups make ``nice`` order
processes within a session only), so the niced ones yield to the others, and the whole
bench competes with the machine's other jobs as one group.

locust (at ``nice -n 19`` too, as a load generator on another machine would not compete
with the server) drives participants sending 20 MB clips through tus (5 MB chunks) and
viewers loading the watch page (75 performers in the credits; a repeat visit sends the
page's ETag, as browsers do) and streaming the published mash-up with 1 MB range
requests. Printed, per route and topology: requests, errors, p50, p99; the upload
throughput; peak RSS and CPU seconds of the servers. ``healthz (floor)`` is the cheapest
route, measured in the same run: what any request costs on this machine under this load.
Needs locust (``pip install -e '.[load]'``; ``make bench-load`` does it) and, for the split
topology, nginx (Debian's ``nginx``)."""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import re
import shutil
import signal
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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler(threading.Thread):
    """Peak of the summed RSS of processes and their children, sampled every 0.5 s,
    and the CPU seconds each tree had used when last seen (by root pid)."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak_kb = 0
        self.cpu: dict[int, dict[int, float]] = {pid: {} for pid in pids}
        self.stop = threading.Event()

    def sample(self) -> None:
        total = 0
        for root in self.pids:
            for pid in [root, *harness.descendants(root)]:
                total += _rss_kb(pid)
                seconds = _cpu_seconds(pid)
                if seconds:
                    self.cpu[root][pid] = seconds
        self.peak_kb = max(self.peak_kb, total)

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.sample()

    def cpu_seconds(self, root: int) -> float:
        return sum(self.cpu[root].values())


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


class Probe(threading.Thread):
    """A viewer on a machine of its own: the watch page (as a first visit, without an
    ETag) and ``/healthz`` asked in turn every ``period`` seconds from this process, at
    the servers' priority. locust at nice 19 counts its own waits for a core in its
    times; these do not. Latencies in ms by route; failures counted."""

    def __init__(self, base: str, slug: str, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.urls = {"watch page (probe)": f"{base}/watch/{slug}",
                     "healthz (probe)": f"{base}/healthz"}
        self.period = period
        self.ms: dict[str, list[float]] = {name: [] for name in self.urls}
        self.failures: dict[str, int] = dict.fromkeys(self.urls, 0)
        self.stop = threading.Event()

    def run(self) -> None:
        import requests

        session = requests.Session()
        while not self.stop.is_set():
            for name, url in self.urls.items():
                started = time.perf_counter()
                try:
                    ok = session.get(url, timeout=30).status_code == 200
                except requests.RequestException:
                    ok = False
                self.ms[name].append((time.perf_counter() - started) * 1000)
                self.failures[name] += not ok
            self.stop.wait(self.period)

    def rows(self) -> dict[str, dict[str, str]]:
        """locust's CSV columns for the probe's routes."""
        out = {}
        for name, values in self.ms.items():
            if not values:
                continue
            ordered = sorted(values)
            p50, p99 = (ordered[min(len(ordered) - 1, int(q * len(ordered)))]
                        for q in (0.5, 0.99))
            out[name] = {"Request Count": str(len(values)),
                         "Failure Count": str(self.failures[name]), "50%": f"{p50:.0f}",
                         "99%": f"{p99:.0f}"}
        return out


def render_template_file(template: Path, values: dict[str, str]) -> str:
    """``${TUTTI_*}`` of ``template`` replaced from ``values``, as the nginx image's
    envsubst does (nginx's own ``$variables`` are left alone). KeyError for a missing one."""
    return re.sub(r"\$\{(TUTTI_[A-Z0-9_]+)\}", lambda m: values[m.group(1)],
                  template.read_text())


class Server:
    """One process tree of a topology (gunicorn, nginx), its log in the work folder."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], work: Path,
                 nice: int = 0) -> None:
        self.name = name
        log = open(work / f"{name}.log", "wb")
        prefix = ["nice", "-n", str(nice)] if nice else []
        # a process group of its own (stopped as one), in the bench's session: with the
        # kernel's autogroups (sched_autogroup_enabled) nice only orders processes within
        # one session, as cpu_shares orders containers; a new session would void it
        self.proc = subprocess.Popen([*prefix, *argv], env=env, stdout=log,
                                     stderr=subprocess.STDOUT, process_group=0)
        log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            harness.Stack.kill(self.proc)


GUNICORN = [str(Path(sys.executable).with_name("gunicorn")), "-c", "python:portal.gunicorn_conf",
            "portal:create_app()"]
TEMPLATE = Path(__file__).resolve().parents[2] / "portal" / "proxy.conf.template"


def start_single(stack: harness.Stack, work: Path,
                 args) -> tuple[str, list[Server], list[str]]:
    """The peer: one gunicorn for everything, Python sending the media bytes."""
    port = harness.free_port()
    env = {**stack.env, "GUNICORN_BIND": f"127.0.0.1:{port}"}
    if args.workers:
        env["GUNICORN_WORKERS"] = str(args.workers)
    base = f"http://127.0.0.1:{port}"
    return base, [Server("single-gunicorn", GUNICORN, env, work)], [base]


def start_split(stack: harness.Stack, work: Path,
                args) -> tuple[str, list[Server], list[str]]:
    """docker-compose.yml's topology: nginx, a page server, a lower-priority uploads server."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("the split topology needs nginx (Debian: apt-get install nginx)")
    pages, uploads, proxy = harness.free_port(), harness.free_port(), harness.free_port()
    page_env = {**stack.env, "GUNICORN_BIND": f"127.0.0.1:{pages}",
                "TUTTI_MEDIA_ACCEL_REDIRECT": "/_media/"}
    if args.workers:
        page_env["GUNICORN_WORKERS"] = str(args.workers)
    upload_env = {**stack.env, "GUNICORN_BIND": f"127.0.0.1:{uploads}",
                  "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "32"}
    conf = work / "nginx"
    for sub in ("cache", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (conf / sub).mkdir(parents=True, exist_ok=True)
    (conf / "tutti.conf").write_text(render_template_file(TEMPLATE, {
        "TUTTI_PROXY_CACHE": str(conf / "cache"), "TUTTI_PAGES_UPSTREAM": f"127.0.0.1:{pages}",
        "TUTTI_UPLOADS_UPSTREAM": f"127.0.0.1:{uploads}",
        "TUTTI_PROXY_RESOLVER": "127.0.0.1",  # never asked: the upstreams are addresses
        "TUTTI_PROXY_LISTEN": f"127.0.0.1:{proxy}",
        "TUTTI_MAX_UPLOAD_MB": stack.env.get("TUTTI_MAX_UPLOAD_MB", "1024"),
        "TUTTI_WATCH_CACHE_SECONDS": stack.env.get("TUTTI_WATCH_CACHE_SECONDS", "10"),
        "TUTTI_MEDIA_ROOT": str(stack.media_root)}))
    user = "user root;\n" if os.geteuid() == 0 else ""  # the media folder is root's 0700 tmp
    (conf / "nginx.conf").write_text(
        f"{user}daemon off;\nworker_processes auto;\npid {conf / 'nginx.pid'};\n"
        f"error_log {conf / 'error.log'} warn;\nevents {{ worker_connections 4096; }}\n"
        f"http {{\n  include /etc/nginx/mime.types;\n  default_type application/octet-stream;\n"
        f"  access_log off;\n  client_body_temp_path {conf / 'client_body'};\n"
        f"  proxy_temp_path {conf / 'proxy'};\n  fastcgi_temp_path {conf / 'fastcgi'};\n"
        f"  uwsgi_temp_path {conf / 'uwsgi'};\n  scgi_temp_path {conf / 'scgi'};\n"
        f"  include {conf / 'tutti.conf'};\n}}\n")
    check = subprocess.run([nginx, "-t", "-q", "-c", str(conf / "nginx.conf")],
                           capture_output=True, text=True)
    if check.returncode:
        raise SystemExit(f"nginx rejects the configuration:\n{check.stderr}")
    servers = [Server("split-pages", GUNICORN, page_env, work),
               Server("split-uploads", GUNICORN, upload_env, work, nice=args.uploads_nice),
               Server("split-nginx", [nginx, "-c", str(conf / "nginx.conf")], stack.env, work)]
    return f"http://127.0.0.1:{proxy}", servers, [
        f"http://127.0.0.1:{port}" for port in (pages, uploads, proxy)]


TOPOLOGIES = {"single": start_single, "split": start_split}


def run_topology(name: str, stack: harness.Stack, run: Path, media: str, size: int,
                 args, locust: str) -> dict:
    """Start ``name``'s servers, run locust against them for ``args.seconds``, stop them;
    locust's rows by route, uploads sent, peak RSS and CPU seconds by server."""
    run.mkdir()
    base, servers, probes = TOPOLOGIES[name](stack, run, args)
    sampler = None
    try:
        import requests

        deadline = time.monotonic() + 120
        for probe in probes:  # every server up (a niced one starts slowly), then the proxy
            while True:
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"{probe}/readyz", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline or any(s.proc.poll() is not None
                                                      for s in servers):
                    raise SystemExit(f"{name} did not start:\n" + "\n".join(
                        (run / f"{s.name}.log").read_text()[-2000:] for s in servers))
                time.sleep(0.3)
        # the mash-up as a player asks for it: a range, whole, with the right type
        answer = requests.get(f"{base}{media}", headers={"Range": "bytes=100-1123"}, timeout=30)
        if (answer.status_code != 206 or len(answer.content) != 1024
                or answer.headers.get("Content-Type") != "video/mp4"
                or "X-Accel-Redirect" in answer.headers):
            raise SystemExit(f"{name}: a range of the mash-up came back wrong: "
                             f"{answer.status_code} {dict(answer.headers)}")
        sampler = RssSampler([s.proc.pid for s in servers])
        sampler.start()
        env = {**stack.env, "TUTTI_LOAD_SLUG": "load", "TUTTI_LOAD_MEDIA": media,
               "TUTTI_LOAD_MEDIA_SIZE": str(size), "TUTTI_LOAD_CLIP_MB": str(args.clip_mb),
               "TUTTI_LOAD_PARTICIPANTS": str(args.participants),
               "TUTTI_LOAD_VIEWERS": str(args.viewers),
               "TUTTI_LOAD_UPLOADED": str(run / "uploaded.txt")}
        users = args.participants + args.viewers
        prefix = ["nice", "-n", str(args.locust_nice)] if args.locust_nice else []
        probe = Probe(base, "load")
        started = time.monotonic()
        generator = subprocess.Popen(
            [*prefix, locust, "-f", str(Path(__file__).with_name("locustfile.py")),
             "--headless", "-u", str(users), "-r", str(max(10, users // 5)),
             "-t", f"{args.seconds}s", "--host", base, "--csv", str(run / "stats"),
             "--only-summary", "--loglevel", "ERROR"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(run / "locust.log", "wb"),
            process_group=0)
        time.sleep(min(10, args.seconds / 4))  # the users spawned
        probe.start()
        generator.wait(timeout=args.seconds + 180)
        probe.stop.set()
        probe.join()
        elapsed = time.monotonic() - started
        sampler.stop.set()
        sampler.sample()
    finally:
        if sampler is not None:
            sampler.stop.set()
        for server in servers:
            server.stop()
    rows = {row["Name"]: row for row in csv.DictReader(open(run / "stats_stats.csv"))}
    rows.update(probe.rows())
    sent, clips, revalidated = (int(v) for v in (run / "uploaded.txt").read_text().split())
    # what the uploads left: the bytes would fill the disk over a few runs
    for folder in (stack.media_root / "clips", stack.media_root / ".tmp"):
        shutil.rmtree(folder, ignore_errors=True)
    return {"rows": rows, "mb_s": sent / elapsed / 1024 / 1024, "clips": clips,
            "rss_mb": sampler.peak_kb / 1024, "not_modified": revalidated,
            "cpu": {s.name: sampler.cpu_seconds(s.proc.pid) for s in servers}}


def _cell(row: dict | None) -> str:
    if row is None:
        return f"{'-':>8} {'-':>6} {'-':>7} {'-':>7}"
    return (f"{row['Request Count']:>8} {row['Failure Count']:>6} {row['50%']:>7} "
            f"{row['99%']:>7}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--clip-mb", type=float, default=20)
    parser.add_argument("--workers", type=int, default=0, help="gunicorn workers of the "
                        "(page) server (default from portal.gunicorn_conf: 2 per core)")
    parser.add_argument("--topologies", default="single,split",
                        help="comma-separated, run in this order: single (the peer), split")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the topologies this many times, alternating")
    parser.add_argument("--locust-nice", type=int, default=19,
                        help="locust's nice (0: same priority as the servers)")
    parser.add_argument("--uploads-nice", type=int, default=19,
                        help="the split topology's uploads server's nice")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.topologies.split(",") if n.strip()]
    if set(names) - set(TOPOLOGIES):
        parser.error(f"topologies are: {', '.join(TOPOLOGIES)}")
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
                      "TUTTI_LOG_LEVEL": "WARNING", "GUNICORN_ACCESSLOG": ""})
    media, size = _published_campaign(stack, "load", work)
    results: list[tuple[str, dict]] = []
    loads = []
    try:
        for k in range(args.rounds):
            for name in names:
                loads.append(os.getloadavg()[0])
                results.append((f"{name}" + (f" #{k + 1}" if args.rounds > 1 else ""),
                                run_topology(name, stack, work / f"{name}-{k}", media, size, args,
                                             locust)))
    finally:
        stack.close()
    workers = args.workers or max(2, 2 * os.cpu_count())
    print(f"\nLoad: {args.participants} participants sending {args.clip_mb:g} MB clips by tus, "
          f"{args.viewers} viewers, {args.seconds} s per topology, {os.cpu_count()} cores, "
          f"{args.database}; locust on the same machine at nice {args.locust_nice}")
    print(f"  single: one gunicorn, {workers} workers x 16 threads, Python sends the media")
    print(f"  split:  nginx -> page gunicorn ({workers} x 16, media by X-Accel-Redirect, watch "
          f"page cached {stack.env.get('TUTTI_WATCH_CACHE_SECONDS', '10')} s) + uploads "
          f"gunicorn (2 x 32) at nice {args.uploads_nice}")
    routes = sorted({r for _n, res in results for r in res["rows"] if r != "Aggregated"})
    cells = f"{'requests':>8} {'errors':>6} {'p50 ms':>7} {'p99 ms':>7}"
    head1 = f"{'':<18}" + "".join(f" | {n:<31}" for n, _r in results)
    head2 = f"{'route':<18}" + "".join(f" | {cells}" for _ in results)
    print(head1)
    print(head2)
    print("-" * len(head2))
    for route in routes:
        print(f"{route:<18}" + "".join(f" | {_cell(res['rows'].get(route))}"
                                      for _n, res in results))
    print()
    for (name, res), load in zip(results, loads, strict=True):
        cpu = ", ".join(f"{k.split('-', 1)[1]} {v:.0f}" for k, v in res["cpu"].items())
        print(f"{name:<10} uploads {res['mb_s']:.1f} MB/s ({res['clips']} clips); watch "
              f"pages answered 304: {res['not_modified']}; peak server RSS "
              f"{res['rss_mb']:.0f} MB; server CPU s: {cpu}; load average before {load:.1f}")
    for name, res in results:
        errors = sum(int(r["Failure Count"]) for n, r in res["rows"].items()
                     if n != "Aggregated")
        for route in ("watch page", "watch page (probe)"):
            watch = res["rows"].get(route)
            p99 = float(watch["99%"]) if watch else None
            met = errors == 0 and p99 is not None and p99 <= GOAL_P99_MS
            print(f"goal ({name}, {route}): 0 errors and p99 <= {GOAL_P99_MS} ms: errors "
                  f"{errors}, p99 {p99} ms -> {'met' if met else 'not met'}")
    return 0
