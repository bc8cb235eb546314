"""The production path on real parts: `tutti worker` (a real Celery worker
process) on the real Redis, the web app served over HTTP in this process, the
database on SQLite and on PostgreSQL, ffmpeg on generated clips."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import REDIS_URL, database_url, ffmpeg_info

pytestmark = pytest.mark.integration


def _redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # CI starts it; say plainly when it is missing
        pytest.fail(f"Redis is not running on {REDIS_URL}: start it (see .ci/run): {exc}")
    return client


@pytest.fixture
def stack(db_kind, tmp_path):
    """Environment shared by the web app here and the worker subprocess."""
    _redis_or_skip().flushdb()
    env = {
        **os.environ,
        "TUTTI_INSTANCE": str(tmp_path / "instance"),
        "TUTTI_DATABASE_URL": database_url(db_kind, tmp_path),
        "TUTTI_BROKER_URL": REDIS_URL,
        "TUTTI_MEDIA_ROOT": str(tmp_path / "media"),
        "TUTTI_SECRET_KEY": "integration",
        "TUTTI_TRUSTED_HOSTS": "127.0.0.1",  # as in production: whole links in the API
        "TUTTI_RECONCILE_SECONDS": "2",
        # 2 s clips in 1 s segments: the render runs as parts on the workers, then a join
        "TUTTI_RENDER_SEGMENT_SECONDS": "1",
    }
    from portal import create_app
    from portal.extensions import db

    config = {key[len("TUTTI_"):]: value for key, value in env.items()
              if key.startswith("TUTTI_") and key != "TUTTI_INSTANCE"}
    config["INSTANCE_PATH"] = env["TUTTI_INSTANCE"]
    config["RECONCILE_SECONDS"] = 2
    config["RENDER_SEGMENT_SECONDS"] = 1
    app = create_app(config)
    assert app.config["EMBEDDED_WORKER"] is False

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    workers: list[subprocess.Popen] = []

    def start_worker(*extra: str) -> subprocess.Popen:
        tutti = Path(sys.executable).with_name("tutti")
        log_file = open(tmp_path / f"worker-{len(workers)}.log", "wb")  # read on failure
        proc = subprocess.Popen([str(tutti), "worker", "--concurrency", "2", *extra],
                                env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log_file.close()
        workers.append(proc)
        return proc

    yield {"app": app, "base": f"http://127.0.0.1:{server.server_port}", "env": env,
           "start_worker": start_worker}
    for proc in workers:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    server.shutdown()
    for log in sorted(tmp_path.glob("worker-*.log")):
        sys.stderr.write(f"--- {log.name} (tail) ---\n")
        sys.stderr.write("\n".join(log.read_text(errors="replace").splitlines()[-40:]) + "\n")
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _wait_settled(base: str, tokens: list[str], timeout: float = 180) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    states: dict[str, dict] = {}
    while time.monotonic() < deadline:
        states = {t: requests.get(f"{base}/api/v1/clips/{t}", timeout=10).json() for t in tokens}
        if all(s["status"] not in ("received", "checked") for s in states.values()):
            return states
        time.sleep(0.5)
    raise AssertionError(f"clips not processed in {timeout} s: "
                         f"{ {t: s['status'] for t, s in states.items()} }")


def _upload(base: str, slug: str, path: Path, name: str, part: str = "Alto") -> str:
    with open(path, "rb") as handle:
        answer = requests.post(f"{base}/api/v1/campaigns/{slug}/clips",
                               data={"name": name, "part": part, "location": "Earth",
                                     "consent": "yes"},
                               files={"file": (path.name, handle)}, timeout=60)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def test_upload_intake_render_through_a_real_worker_on_redis(stack, media_files):
    from portal import services
    from portal.extensions import db
    from portal.models import Render

    app, base = stack["app"], stack["base"]
    with app.app_context():
        services.create_campaign("tutti-live", "Live", parts=["Alto", "Bass"])
    worker = stack["start_worker"]("--no-beat")
    names = ["landscape", "portrait", "silent", "text"]
    tokens = {n: _upload(base, "tutti-live", media_files[n], n) for n in names}
    states = _wait_settled(base, list(tokens.values()))
    assert worker.poll() is None, "the worker died"
    assert states[tokens["text"]]["status"] == "rejected"
    assert "video" in states[tokens["text"]]["reason"].lower()
    for name in ("landscape", "portrait", "silent"):
        body = states[tokens[name]]
        assert body["status"] == "normalized", body
        thumb = requests.get(body["thumbnail_url"], timeout=10)
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"  # a JPEG

    with app.app_context():
        campaign = services.get_campaign("tutti-live")
        for clip in campaign.clips:
            if clip.status == "normalized":
                services.moderate_clip(clip, "approved")
        job_id = services.request_render(campaign).id
        deadline = time.monotonic() + 180
        while True:
            db.session.expire_all()
            job = db.session.get(Render, job_id)
            if job.status in ("done", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert job.status == "done", job.reason
        assert job.plan and len(job.plan["segments"]) == 2  # rendered in parts on the workers
        output = app.extensions["tutti.storage"].path(job.output_key)
    info = ffmpeg_info(output)
    assert re.search(r"Video: h264.*1280x720", info), info
    assert "Audio: aac" in info and "48000 Hz" in info
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", info)
    seconds = int(duration[1]) * 3600 + int(duration[2]) * 60 + float(duration[3])
    assert abs(seconds - 2.0) < 0.2
    page = requests.get(f"{base}/watch/tutti-live", timeout=10)
    assert page.status_code == 200 and "landscape" in page.text and "<video" in page.text
    ranged = requests.get(f"{base}/media/{job.output_key}", headers={"Range": "bytes=0-99"},
                          timeout=10)
    assert ranged.status_code == 206 and len(ranged.content) == 100


def test_a_lost_broker_message_loses_no_clip(stack, media_files):
    """Redis forgets the queue (a restart without persistence): the reconciler
    in the worker's beat finds the clip pending in the database and sends it again."""
    from portal import services

    app, base = stack["app"], stack["base"]
    with app.app_context():
        services.create_campaign("lost-message", "Lost", parts=["Alto"])
    token = _upload(base, "lost-message", media_files["landscape"], "Ana")
    client = redis.Redis.from_url(REDIS_URL)
    assert client.llen("intake") == 1  # the message waits for a worker
    client.flushdb()  # ... and is lost
    stack["start_worker"]()  # with --beat: the reconciler runs every 2 s
    states = _wait_settled(base, [token], timeout=120)
    assert states[token]["status"] == "normalized"


def test_tutti_worker_refuses_the_memory_broker(tmp_path):
    tutti = Path(sys.executable).with_name("tutti")
    done = subprocess.run([str(tutti), "worker"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TUTTI_INSTANCE": str(tmp_path),
                               "TUTTI_BROKER_URL": "memory://"})
    assert done.returncode != 0
    assert "TUTTI_BROKER_URL=redis://" in done.stderr


def test_tutti_serve_and_tutti_worker_as_separate_processes(stack, media_files, tmp_path):
    """The commands a deployment runs: `tutti serve` and `tutti worker` in their own
    processes on Redis; an upload from this (third) process is taken in, and
    `tutti render SLUG --wait` renders through the workers and prints the file."""
    import socket

    from portal import services

    env = stack["env"]
    tutti = str(Path(sys.executable).with_name("tutti"))
    with socket.socket() as probe_port:
        probe_port.bind(("127.0.0.1", 0))
        port = probe_port.getsockname()[1]
    log_file = open(tmp_path / "serve.log", "wb")
    serve = subprocess.Popen([tutti, "serve", "--port", str(port)], env=env, stdout=log_file,
                             stderr=subprocess.STDOUT, start_new_session=True)
    log_file.close()
    try:
        stack["start_worker"]("--no-beat")
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.3)
        with stack["app"].app_context():
            services.create_campaign("two-procs", "Two processes", parts=[])
        token = _upload(base, "two-procs", media_files["portrait"], "Ana", part="")
        assert _wait_settled(base, [token])[token]["status"] == "normalized"
        with stack["app"].app_context():
            for clip in services.get_campaign("two-procs").clips:
                services.moderate_clip(clip, "approved")
        done = subprocess.run([tutti, "render", "two-procs", "--wait"], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        path = done.stdout.strip().splitlines()[-1]
        assert path.endswith("mashup.mp4") and "Video: h264" in ffmpeg_info(path)
        assert requests.get(f"{base}/watch/two-procs", timeout=10).status_code == 200
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=20)


def test_a_guided_campaign_syncs_each_clip_on_a_real_worker(stack, tmp_path):
    """With a guide, intake is followed by the align task on the worker: the clip's page
    says it is synced and the API gives the offset (the guide leaks into the mic, 0.7 s
    of the clip before the guide's start); unrelated music asks for a manual check."""
    import numpy as np
    from scipy.io import wavfile

    from portal import services
    from tests.signals import tone_melody
    from workers.media.ffmpeg import run_ffmpeg

    rate, delay = 48000, 0.7
    guide = tone_melody(8.0, 1, rate)
    wavfile.write(tmp_path / "guide.wav", rate, guide)
    leak = np.concatenate([np.zeros(int(delay * rate), np.float32), 0.3 * guide])
    leak = leak + np.random.default_rng(2).normal(0, 0.01, leak.size).astype(np.float32)
    wavfile.write(tmp_path / "leak.wav", rate, leak.astype(np.float32))
    wavfile.write(tmp_path / "other.wav", rate, tone_melody(8.7, 99, rate))
    for name in ("leak", "other"):
        run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=192x108:rate=25",
                    "-i", str(tmp_path / f"{name}.wav"), "-shortest", "-pix_fmt", "yuv420p",
                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                    str(tmp_path / f"{name}.mp4")], timeout=60)
    app, base = stack["app"], stack["base"]
    with app.app_context():
        services.create_campaign("guided-live", "Guided", parts=["Alto"],
                                 guide_path=str(tmp_path / "guide.wav"))
    stack["start_worker"]("--no-beat")
    tokens = {n: _upload(base, "guided-live", tmp_path / f"{n}.mp4", n)
              for n in ("leak", "other")}
    deadline = time.monotonic() + 180
    while True:
        states = {n: requests.get(f"{base}/api/v1/clips/{t}", timeout=10).json()
                  for n, t in tokens.items()}
        if all(s["status"] in ("synced", "needs_sync", "failed", "rejected")
               for s in states.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert states["leak"]["status"] == "synced", states["leak"]
    assert states["other"]["status"] == "needs_sync", states["other"]
    page = requests.get(f"{base}/clip/{tokens['leak']}", timeout=10)
    assert "Synced to the guide" in page.text
    assert "Needs a manual sync check" in requests.get(f"{base}/clip/{tokens['other']}",
                                                       timeout=10).text
    sync = states["leak"]["sync"]
    assert abs(sync["offset_seconds"] - delay) < 0.02 and sync["confidence"] >= 0.5
    # the worker stored the candidates a person chooses from when sync is not sure
    from portal.extensions import db
    from portal.models import Clip

    with app.app_context():
        other = db.session.scalar(db.select(Clip).filter_by(token=tokens["other"]))
        assert other.sync_candidates and "notes" in other.sync_candidates[0]
