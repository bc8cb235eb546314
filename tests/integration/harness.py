"""Real processes for the fault tests and ``bench/faults``: a Redis server on a port of
its own, `tutti serve` and `tutti worker` processes on it, PostgreSQL, and the faults an
operator meets (SIGKILL, ``SHUTDOWN NOSAVE``, a web server restarted mid-upload, a full
disk, one render asked for twice at once).

Each scenario returns a :class:`Outcome` (clips lost, renders doubled, temporary files
left, seconds to recover); the tests assert it is clean once, the bench repeats it and
prints a table. Nothing here mocks: the workers are ``tutti worker`` subprocesses, the
web server is ``tutti serve``, the media is made by ffmpeg."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import redis
import requests

TUTTI = str(Path(sys.executable).with_name("tutti"))
TEMP_NAME = re.compile(r"^\.(?:.+\.tmp(?:\.[A-Za-z0-9.]+)?|tutti-titles-.+|.+\.lnk)$")


def _proxy_being_built(temp: Path) -> bool:
    """Whether ``temp`` is the temp file of a proxy whose lock a live build holds
    (``proxies/<campaign>/.<name>.<pid>.<thread>.tmp.mp4`` beside ``<name>.mp4.lock``)."""
    import fcntl

    if temp.parent.parent.name != "proxies" or not temp.name.startswith("."):
        return False
    lock = temp.parent / f"{temp.name[1:].split('.', 1)[0]}.mp4.lock"
    try:
        with open(lock) as handle:  # never made here: a missing lock is no build
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def free_port() -> int:
    """A TCP port free on 127.0.0.1: any the kernel gives, or one of the range
    ``TUTTI_TEST_PORTS`` (``"5900-5999"``) when set, so that jobs sharing a machine
    keep to the ports they were given. Raises OSError when the range is full."""
    wanted = os.environ.get("TUTTI_TEST_PORTS", "")
    if not wanted:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]
    low, _, high = wanted.partition("-")
    ports = list(range(int(low), int(high or low) + 1))
    random.shuffle(ports)
    for port in ports:
        with socket.socket() as probe, contextlib.suppress(OSError):
            probe.bind(("127.0.0.1", port))
            return port
    raise OSError(f"no free port in TUTTI_TEST_PORTS={wanted}")


def slowdown() -> float:
    """How many times longer than usual every wait of these scenarios may be
    (``TUTTI_TEST_SLOWDOWN``, default 1): on a machine whose cores are taken by jobs of
    higher priority, a worker may need minutes to start, and a wait that runs out counts
    as work lost. The bench's ``--slowdown`` sets it."""
    return max(1.0, float(os.environ.get("TUTTI_TEST_SLOWDOWN") or 1))


class FaultNotMade(TimeoutError):
    """The moment of the fault never came (the first worker never started the work it
    was to be killed in): a void run, which says nothing of what a fault loses."""


def _wait(predicate, timeout: float, what: str, period: float = 0.1,
          error: type[TimeoutError] = TimeoutError):
    timeout *= slowdown()
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"{what} did not happen in {timeout:.0f} s")
        time.sleep(period)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (ffmpeg runs in a session of its own, so a process
    group kill alone would miss it)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class RedisServer:
    """``redis-server`` on its own port, without persistence (so a restart is empty)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

        def answers() -> bool:
            with contextlib.suppress(redis.RedisError):
                return bool(self.client().ping())
            return False

        _wait(answers, 20, "redis-server start")
        return self

    def shutdown_nosave(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self.client().shutdown(nosave=True)
        if self.proc is not None:
            self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@dataclass
class Outcome:
    """What one run of a fault left behind."""

    lost: int = 0  # clips accepted but never processed, renders never finished
    doubled: int = 0  # work done twice: a clip normalized twice, two renders for one ask
    temp_files: int = 0  # temporary files left in the media store
    seconds: float = 0.0  # from the fault to everything done
    void: bool = False  # the fault's moment never came (FaultNotMade): nothing measured
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.doubled or self.temp_files)


class Stack:
    """PostgreSQL (or SQLite), a Redis server of its own, and the Tutti processes."""

    def __init__(self, root: Path, database_url: str, *, media_root: Path | None = None,
                 lease_seconds: int = 3, segment_seconds: int = 2) -> None:
        self.root = root
        self.redis = RedisServer(root / "redis").start()
        self.media_root = media_root or root / "media"
        self.env = {
            **os.environ,
            "TUTTI_INSTANCE": str(root / "instance"),
            "TUTTI_DATABASE_URL": database_url,
            "TUTTI_BROKER_URL": self.redis.url,
            "TUTTI_MEDIA_ROOT": str(self.media_root),
            "TUTTI_SECRET_KEY": "faults",
            # short leases and a reconciler every second: takeovers within seconds
            "TUTTI_LEASE_SECONDS": str(lease_seconds),
            "TUTTI_RECONCILE_SECONDS": "1",
            "TUTTI_RESEND_SECONDS": "30",
            "TUTTI_VISIBILITY_SECONDS": "60",
            "TUTTI_RENDER_SEGMENT_SECONDS": str(segment_seconds),
            "TUTTI_UPLOAD_LIMIT_ADDRESS": "1000 per hour",
        }
        from portal import create_app

        config = {k[len("TUTTI_"):]: v for k, v in self.env.items()
                  if k.startswith("TUTTI_") and k != "TUTTI_INSTANCE"}
        config["INSTANCE_PATH"] = self.env["TUTTI_INSTANCE"]
        self.app = create_app(config)  # this process: inspects the database, sets up
        self.procs: list[subprocess.Popen] = []
        self.web_port = free_port()

    # --- processes -----------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")
        proc = subprocess.Popen([TUTTI, *argv], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def start_worker(self, name: str, *, beat: bool = False, concurrency: int = 2,
                     queues: str = "intake,render") -> subprocess.Popen:
        return self._spawn(name, ["worker", "-Q", queues, "--concurrency", str(concurrency),
                                  "--beat" if beat else "--no-beat"])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start_web(self, name: str = "web") -> subprocess.Popen:
        proc = self._spawn(name, ["serve", "--port", str(self.web_port)])

        def up() -> bool:
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"{self.base}/healthz", timeout=2).status_code == 200
            return False

        _wait(up, 60, "tutti serve start", period=0.2)
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """SIGKILL a process and everything it started (as a machine or container dies)."""
        victims = [proc.pid, *descendants(proc.pid)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=20)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.kill(proc)
        self.redis.stop()
        from portal.extensions import db

        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()

    def logs(self, lines: int = 30) -> str:
        out = []
        for log in sorted(self.root.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name} ---\n" + "\n".join(tail))
        return "\n".join(out)

    # --- the database and the store ------------------------------------------------
    def query(self, fn):
        from portal.extensions import db

        with self.app.app_context():
            try:
                return fn(db.session)
            finally:
                db.session.remove()

    def count_temp_files(self, outcome: Outcome) -> None:
        left = self.temp_files()
        outcome.temp_files = len(left)
        outcome.notes += [f"temp file left: {p.relative_to(self.media_root)}" for p in left]

    def temp_files(self) -> list[Path]:
        """Temporary files left under the media root (spooled uploads included), but not
        those of a proxy a live worker is building now (it holds the proxy's lock: intake
        builds a clip's proxies after the clip is normalized)."""
        found = []
        for dirpath, dirnames, filenames in os.walk(self.media_root):
            if Path(dirpath).name == "uploads":
                continue
            for name in [*filenames, *dirnames]:
                if TEMP_NAME.match(name) or (Path(dirpath) == self.media_root / ".tmp"
                                             and name.startswith("tmp")):
                    if not _proxy_being_built(Path(dirpath) / name):
                        found.append(Path(dirpath) / name)
        return found

    def intake_here(self, ids: list[int]) -> None:
        """Take clips in within this process (the setup of a render fault: the pipeline
        step itself, as a worker runs it), so the fault's workers start on the render."""
        from workers import pipeline

        with self.app.app_context():
            for clip_id in ids:
                pipeline.intake(clip_id)

    def campaign(self, slug: str, *, canvas=(320, 180)) -> None:
        from portal import services

        with self.app.app_context():
            services.create_campaign(slug, slug.title(), parts=["Alto"], canvas=canvas)

    def submit(self, slug: str, path: Path, name: str = "Ana") -> int:
        """A clip accepted by this process (stored, committed, its intake enqueued)."""
        from portal import services

        with self.app.app_context(), open(path, "rb") as handle:
            return services.submit_clip(services.get_campaign(slug), handle, path.name,
                                        name=name, part="Alto", consent=True).id

    def clip_rows(self, ids: list[int]) -> dict[int, tuple[str, str | None, int]]:
        """id -> (status, lease owner, how many times it was normalized)."""
        from sqlalchemy import func, select

        from portal.models import Clip, ClipEvent

        def read(session):
            rows = {}
            for clip in session.scalars(select(Clip).where(Clip.id.in_(ids))):
                normalized = session.scalar(select(func.count(ClipEvent.id)).where(
                    ClipEvent.clip_id == clip.id, ClipEvent.status == "normalized"))
                rows[clip.id] = (clip.status, clip.lease_owner, normalized)
            return rows

        return self.query(read)

    def wait_clips(self, ids: list[int], timeout: float) -> Outcome:
        """Wait until no clip is pending; count the lost and the doubled."""
        started = time.monotonic()
        outcome = Outcome()
        try:
            _wait(lambda: all(s not in ("received", "checked")
                              for s, _o, _n in self.clip_rows(ids).values()), timeout,
                  "intake of every clip", period=0.25)
        except TimeoutError as exc:
            outcome.notes.append(str(exc))
        rows = self.clip_rows(ids)
        outcome.lost = sum(1 for s, _o, _n in rows.values() if s != "normalized")
        outcome.doubled = sum(max(0, n - 1) for _s, _o, n in rows.values())
        outcome.seconds = time.monotonic() - started
        return outcome

    def approve_all(self, slug: str) -> None:
        from portal import services

        with self.app.app_context():
            for clip in services.get_campaign(slug).clips:
                if clip.status == "normalized":
                    services.moderate_clip(clip, "approved")

    def renders(self, slug: str) -> list[tuple[int, str, str | None]]:
        from sqlalchemy import select

        from portal.models import Campaign, Render

        return self.query(lambda s: [(r.id, r.status, r.reason) for r in s.scalars(
            select(Render).join(Campaign, Render.campaign_id == Campaign.id)
            .where(Campaign.slug == slug).order_by(Render.id))])

    def parts_held(self, render_id: int) -> int:
        """How many parts of the render a worker holds now (a live lease)."""
        from sqlalchemy import func, select

        from portal.models import RenderPart, lease_now

        return self.query(lambda session: session.scalar(
            select(func.count()).select_from(RenderPart).where(
                RenderPart.render_id == render_id, RenderPart.lease_until > lease_now())))

    def published(self, slug: str) -> tuple[int | None, Path | None]:
        from sqlalchemy import select

        from portal.models import Campaign, Render

        def read(session):
            campaign = session.scalar(select(Campaign).filter_by(slug=slug))
            if campaign.published_render_id is None:
                return None, None
            job = session.get(Render, campaign.published_render_id)
            return job.id, self.media_root / job.output_key

        return self.query(read)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- media ---------------------------------------------------------------------------

def make_clip(path: Path, seconds: float, size: str = "640x360", rate: int = 30) -> Path:
    """A phone-like take: moving picture, a tone, H.264 + AAC."""
    from workers.media.ffmpeg import run_ffmpeg

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        run_ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                    "-t", str(seconds), "-pix_fmt", "yuv420p", "-c:v", "libx264",
                    "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path)],
                   timeout=120)
    return path


# --- the faults ------------------------------------------------------------------------

def kill_mid_intake(stack: Stack, long_clip: Path, count: int = 2) -> Outcome:
    """A worker killed with SIGKILL while it normalizes ``count`` clips; another worker
    (with the reconciler) finishes them."""
    stack.campaign("kill-intake", canvas=(640, 360))
    first = stack.start_worker("worker-a", queues="intake")
    ids = [stack.submit("kill-intake", long_clip, name=f"take {k}") for k in range(count)]

    def writing() -> bool:
        rows = stack.clip_rows(ids)
        return all(s == "checked" and o for s, o, _n in rows.values()) and any(
            p.name.startswith(".normalized.") for p in stack.temp_files())

    _wait(writing, 90, "both clips being normalized by the first worker", period=0.05,
          error=FaultNotMade)
    stack.kill(first)
    killed_at = time.monotonic()
    stack.start_worker("worker-b", beat=True)
    outcome = stack.wait_clips(ids, timeout=float(os.environ.get("TUTTI_BENCH_WAIT", 120)))
    outcome.seconds = time.monotonic() - killed_at
    stack.count_temp_files(outcome)
    return outcome


def kill_mid_render(stack: Stack, clip: Path) -> Outcome:
    """A render worker killed with SIGKILL while it draws a part of a distributed render;
    another worker finishes the render: one render, one file, no temp file."""
    slug = "kill-render"
    stack.campaign(slug)
    ids = [stack.submit(slug, clip, name=f"voice {k}") for k in range(2)]
    stack.intake_here(ids)
    stack.redis.client().flushdb()  # their intake messages, already done here
    stack.approve_all(slug)
    first = stack.start_worker("worker-a", queues="render", concurrency=1)
    from portal import services

    with stack.app.app_context():
        render_id = services.request_render(services.get_campaign(slug)).id
    from portal.models import RenderPart

    def drawing() -> bool:
        held = stack.query(lambda s: s.query(RenderPart).filter(
            RenderPart.render_id == render_id, RenderPart.lease_owner.is_not(None)).count())
        return held and any(".tmp" in p.name for p in stack.temp_files())

    _wait(drawing, 90, "a part of the render being drawn", period=0.05,
          error=FaultNotMade)
    stack.kill(first)
    killed_at = time.monotonic()
    stack.start_worker("worker-b", beat=True)
    outcome = Outcome()
    try:
        _wait(lambda: all(s in ("done", "failed", "cancelled")
                          for _i, s, _r in stack.renders(slug)),
              float(os.environ.get("TUTTI_BENCH_WAIT", 150)), "the render", period=0.25)
    except TimeoutError as exc:
        outcome.notes.append(str(exc))
    outcome.seconds = time.monotonic() - killed_at
    renders = stack.renders(slug)
    outcome.lost = sum(1 for _i, s, _r in renders if s != "done")
    outcome.notes += [f"render {i}: {s} {r or ''}" for i, s, r in renders if s != "done"]
    files = list((stack.media_root / "renders" / slug).glob("*/mashup.mp4"))
    outcome.doubled = max(0, len(renders) - 1) + max(0, len(files) - 1)
    stack.count_temp_files(outcome)
    return outcome


def redis_restarted_empty(stack: Stack, clip: Path, queued: int = 3) -> Outcome:
    """Redis shut down with SHUTDOWN NOSAVE while clips wait in its queue (and one more
    arrives while it is down), then started empty: the reconciler sends them again."""
    slug = "redis-restart"
    stack.campaign(slug)
    ids = [stack.submit(slug, clip, name=f"take {k}") for k in range(queued)]
    waiting = stack.redis.client().llen("intake")
    stack.redis.shutdown_nosave()
    ids.append(stack.submit(slug, clip, name="while redis is down"))
    stack.redis.start()
    restarted_at = time.monotonic()
    assert stack.redis.client().llen("intake") == 0
    stack.start_worker("worker", beat=True)
    outcome = stack.wait_clips(ids, timeout=120)
    outcome.seconds = time.monotonic() - restarted_at
    stack.count_temp_files(outcome)
    outcome.notes.append(f"{waiting} message(s) were in the queue when Redis went down")
    return outcome


def _fill_redis(client: redis.Redis, headroom: int = 256 * 1024) -> int:
    """Make Redis refuse writes as a full one does: ``maxmemory`` just above what it uses
    now (``noeviction``), then keys of 10 kB until it answers OOM. Returns how many."""
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + headroom)
    made = 0
    with contextlib.suppress(redis.exceptions.OutOfMemoryError):
        while made < 10_000:
            client.set(f"bench:filler:{made}", b"x" * 10_000)
            made += 1
    return made


def _free_redis(client: redis.Redis) -> None:
    keys = list(client.scan_iter("bench:filler:*", count=1000))
    if keys:
        client.delete(*keys)
    client.config_set("maxmemory", 0)


def redis_out_of_memory(stack: Stack, clip: Path) -> Outcome:
    """Redis full (``maxmemory`` reached with ``noeviction``: every write refused) while a
    clip's message waits in its queue and another clip arrives (its message refused),
    and a worker starts then (Celery's consumer used to die of it: "Unrecoverable
    error"). The worker must stay up, waiting, and take both clips once memory frees:
    the waiting message itself, the refused one through the reconciler."""
    slug = "redis-oom"
    stack.campaign(slug)
    ids = [stack.submit(slug, clip, name="queued before")]
    client = stack.redis.client()
    _fill_redis(client)
    ids.append(stack.submit(slug, clip, name="while redis is full"))  # its send is refused
    worker = stack.start_worker("worker", beat=True)
    log = stack.root / "worker.log"
    outcome = Outcome()
    try:
        _wait(lambda: "refused a command" in log.read_text(errors="replace")
              or worker.poll() is not None, 60, "the worker meeting the full Redis",
              error=FaultNotMade)
        time.sleep(2)  # a worker that dies of it does so at once
    finally:
        _free_redis(client)
    freed_at = time.monotonic()
    if worker.poll() is not None:
        outcome.lost = len(ids)
        outcome.notes.append(f"the worker died (exit {worker.returncode}) of a full Redis")
        return outcome
    outcome = stack.wait_clips(ids, timeout=120)
    outcome.seconds = time.monotonic() - freed_at
    if worker.poll() is not None:
        outcome.notes.append(f"the worker died (exit {worker.returncode})")
    stack.count_temp_files(outcome)
    return outcome


TUS = {"Tus-Resumable": "1.0.0"}


def _tus_metadata(slug: str, name: str, filename: str) -> str:
    import base64

    fields = {"campaign": slug, "name": name, "part": "Alto", "consent": "yes",
              "filename": filename}
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


def web_restart_during_upload(stack: Stack, clip: Path) -> Outcome:
    """`tutti serve` killed with SIGKILL half-way through a resumable (tus) upload and
    started again: the client asks where it was and finishes; the clip is taken in."""
    slug = "web-restart"
    stack.campaign(slug)
    web = stack.start_web("web-1")
    stack.start_worker("worker", beat=True)
    data = clip.read_bytes()
    created = requests.post(f"{stack.base}/api/v1/uploads", timeout=10, headers={
        **TUS, "Upload-Length": str(len(data)),
        "Upload-Metadata": _tus_metadata(slug, "Ana", clip.name)})
    assert created.status_code == 201, created.text
    url = urljoin(stack.base, created.headers["Location"])  # a path (links.py)
    half = len(data) // 2
    sent = requests.patch(url, data=data[:half], timeout=30 * slowdown(), headers={
        **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert sent.status_code == 204, sent.text
    stack.kill(web)
    restarted_at = time.monotonic()
    stack.start_web("web-2")
    offset = int(requests.head(url, headers=TUS, timeout=10).headers["Upload-Offset"])
    outcome = Outcome()
    if offset != half:
        outcome.notes.append(f"resumed at {offset}, not {half}")
    done = requests.patch(url, data=data[offset:], timeout=60 * slowdown(), headers={
        **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
    if done.status_code != 204 or "Tutti-Clip" not in done.headers:
        outcome.lost = 1
        outcome.notes.append(f"the last chunk answered {done.status_code}: {done.text[:200]}")
        return outcome
    from sqlalchemy import select

    from portal.models import Clip

    clip_id = stack.query(lambda s: s.scalar(select(Clip.id).filter_by(
        token=done.headers["Tutti-Clip"])))
    outcome = stack.wait_clips([clip_id], timeout=90)
    original = stack.query(lambda s: s.get(Clip, clip_id).original_key)
    if sha256(stack.media_root / original) != hashlib.sha256(data).hexdigest():
        outcome.lost = 1
        outcome.notes.append("the stored original differs from the file sent")
    outcome.seconds = time.monotonic() - restarted_at
    stack.count_temp_files(outcome)
    return outcome


def render_requested_twice(stack: Stack, clip: Path) -> Outcome:
    """Two `tutti render SLUG --wait` processes started at the same moment: one render,
    both print its file."""
    slug = "twice"
    stack.campaign(slug)
    ids = [stack.submit(slug, clip, name=f"voice {k}") for k in range(2)]
    stack.intake_here(ids)
    stack.redis.client().flushdb()
    stack.approve_all(slug)
    stack.start_worker("worker", beat=True)
    started = time.monotonic()
    go = threading.Barrier(2)
    results: list[subprocess.CompletedProcess] = []

    def ask() -> None:
        go.wait()
        results.append(subprocess.run(
            [TUTTI, "render", slug, "--wait", "--timeout", str(round(150 * slowdown()))],
            env=stack.env, capture_output=True, text=True, timeout=200 * slowdown()))

    askers = [threading.Thread(target=ask) for _ in range(2)]
    for thread in askers:
        thread.start()
    for thread in askers:
        thread.join()
    outcome = Outcome(seconds=time.monotonic() - started)
    renders = stack.renders(slug)
    outcome.doubled = max(0, len(renders) - 1)
    paths = {r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "" for r in results}
    if any(r.returncode for r in results) or len(paths) != 1:
        outcome.lost = 1
        outcome.notes += [r.stderr[-300:] for r in results if r.returncode]
    stack.count_temp_files(outcome)
    return outcome


def mount_small_disk(path: Path, megabytes: int) -> bool:
    """A tmpfs of ``megabytes`` at ``path`` (needs root); False when it cannot be made."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs",
                           str(path)], capture_output=True, timeout=30)
    return done.returncode == 0


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(path: Path, leave_bytes: int) -> Path:
    """Fill the filesystem of ``path`` but ``leave_bytes``."""
    filler = path / "filler.bin"
    free = shutil.disk_usage(path).free
    with open(filler, "wb") as out:
        remaining = max(0, free - leave_bytes)
        block = b"\0" * (1 << 20)
        while remaining > 0:
            out.write(block[:min(len(block), remaining)])
            remaining -= min(len(block), remaining)
    return filler


def full_disk(stack: Stack, clip: Path, big_clip: Path) -> Outcome:
    """The media volume fills up: a plain upload and a resumable chunk answer 507 and
    keep nothing partial; a render fails with a reason and the published mash-up stays
    as it was. (``stack`` must have its media root on a small disk of its own.)"""
    slug = "full-disk"
    stack.campaign(slug)
    ids = [stack.submit(slug, clip, name=f"voice {k}") for k in range(2)]
    stack.intake_here(ids)
    stack.redis.client().flushdb()
    outcome = stack.wait_clips(ids, timeout=1)
    stack.approve_all(slug)
    stack.start_web()
    stack.start_worker("worker", beat=True)
    from portal import services

    with stack.app.app_context():
        first = services.request_render(services.get_campaign(slug)).id
    _wait(lambda: all(s in ("done", "failed") for _i, s, _r in stack.renders(slug)), 120,
          "the first render")
    published_id, published_path = stack.published(slug)
    if published_id != first:
        outcome.notes.append(f"the first render did not publish: {stack.renders(slug)}")
        outcome.lost += 1
        return outcome
    before = sha256(published_path)
    filler = fill(stack.media_root, leave_bytes=64 * 1024)
    filled_at = time.monotonic()
    files_before = {p for p in stack.media_root.rglob("*") if p.is_file()}

    # a plain upload larger than the space left
    with open(big_clip, "rb") as handle:
        plain = requests.post(f"{stack.base}/api/v1/campaigns/{slug}/clips",
                              timeout=60 * slowdown(),
                              data={"name": "Bo", "part": "Alto", "consent": "yes"},
                              files={"file": (big_clip.name, handle)})
    if plain.status_code != 507:
        outcome.notes.append(f"plain upload answered {plain.status_code}: {plain.text[:200]}")
        outcome.lost += 1
    # a resumable upload whose chunk does not fit
    data = big_clip.read_bytes()
    created = requests.post(f"{stack.base}/api/v1/uploads", timeout=10, headers={
        **TUS, "Upload-Length": str(len(data)),
        "Upload-Metadata": _tus_metadata(slug, "Cy", big_clip.name)})
    if created.status_code == 201:
        url = urljoin(stack.base, created.headers["Location"])  # a path (links.py)
        chunk = requests.patch(url, data=data, timeout=60 * slowdown(), headers={
            **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
        offset = requests.head(url, headers=TUS, timeout=10).headers.get("Upload-Offset")
        if chunk.status_code != 507 or offset != "0":
            outcome.notes.append(f"tus chunk answered {chunk.status_code}, offset {offset}")
            outcome.lost += 1
    elif created.status_code != 507:
        outcome.notes.append(f"tus create answered {created.status_code}")
        outcome.lost += 1
    # a new render cannot be written
    with stack.app.app_context():
        second = services.request_render(services.get_campaign(slug),
                                         options={"labels": "on"}).id
    _wait(lambda: dict((i, s) for i, s, _r in stack.renders(slug))[second] in
          ("done", "failed"), 120, "the second render")
    outcome.seconds = time.monotonic() - filled_at  # to the failed render's reason
    status, reason = next((s, r) for i, s, r in stack.renders(slug) if i == second)
    if status != "failed" or "disk" not in (reason or "").lower():
        outcome.notes.append(f"second render: {status} {reason}")
        outcome.lost += 1
    if stack.published(slug)[0] != first or sha256(published_path) != before:
        outcome.notes.append("the published mash-up changed")
        outcome.lost += 1
    # what is *left*: the render failed as soon as one part met the full disk, while another
    # part's worker may still be drawing for a moment (it looks at the render's status every
    # 2 s, then removes the render's folder): count once every part's writer let go
    with contextlib.suppress(TimeoutError):
        _wait(lambda: not stack.parts_held(second), 30, "the second render's parts let go",
              period=0.25)
    uploads = stack.media_root / ".tmp" / "uploads"
    partial = [p for p in stack.media_root.rglob("*") if p.is_file() and p not in files_before
               and p.parent != uploads]
    partial += [p for p in uploads.glob("*.part") if p.stat().st_size]
    outcome.temp_files = len(partial) + len(stack.temp_files())
    outcome.notes += [f"left: {p.relative_to(stack.media_root)}" for p in partial]
    filler.unlink()
    return outcome


SCENARIOS = ("kill-intake", "kill-render", "redis-restart", "redis-oom", "web-restart",
             "full-disk", "render-twice")
