"""Production logs (README, Production): with ``TUTTI_LOG_FORMAT=json`` a real ``tutti
worker`` process (Celery's prefork pool, as docker-compose.yml runs it) writes one JSON
object a line, and every line a task logs carries the id of its clip or render."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest

from tests.conftest import DATABASES, PG_URL, reset_postgres
from tests.integration import harness

pytestmark = pytest.mark.integration
SHUTDOWN_NOTICE = re.compile(r"^worker: (Warm|Cold) shutdown \(MainProcess\)$")


def _parent(pid: int) -> int:
    stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - read at once
    return int(stat[stat.rindex(")") + 2:].split()[1])


def test_a_worker_logs_json_lines_that_carry_the_clip_and_render_ids(tmp_path):
    if "postgresql" in DATABASES:
        reset_postgres(PG_URL)
        url = PG_URL
    else:
        url = f"sqlite:///{tmp_path / 'logs.sqlite3'}"
    clip = harness.make_clip(tmp_path / "take.mp4", 3, "320x180")
    stack = harness.Stack(tmp_path / "stack", url)
    stack.env["TUTTI_LOG_FORMAT"] = "json"
    try:
        stack.campaign("logs")
        worker = stack.start_worker("worker", beat=True)
        clip_id = stack.submit("logs", clip)
        outcome = stack.wait_clips([clip_id], timeout=120)
        assert not outcome.lost, stack.logs()
        stack.approve_all("logs")
        from portal import services

        with stack.app.app_context():
            render_id = services.request_render(services.get_campaign("logs")).id
        harness._wait(lambda: stack.renders("logs")[-1][1] in ("done", "failed"), 180,
                      "the render", period=0.5)
        # a pool process that dies: the supervisor's line (Celery's own logger) is JSON too
        children = [pid for pid in harness.descendants(worker.pid)
                    if _parent(pid) == worker.pid]  # the pool's processes (and beat's)
        assert children
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        harness._wait(lambda: "exited with" in (tmp_path / "stack" / "worker.log").read_text(),
                      30, "the pool supervisor's line")
    finally:
        stack.close()
    lines = [line for line in (tmp_path / "stack" / "worker.log").read_text().splitlines()
             if line.strip()]
    records = []
    for line in lines:
        if SHUTDOWN_NOTICE.match(line):
            continue  # Celery prints it itself, to the terminal, not through logging
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a line of the worker's output that is not JSON: {line!r}")
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    intake = [r for r in records if r.get("task") == "intake_clip"]
    assert intake and all(r.get("clip_id") == clip_id for r in intake), records
    rendering = [r for r in records if str(r.get("task", "")).startswith("render")]
    assert rendering and all(r.get("render_id") == render_id for r in rendering), records
    assert any(r["logger"] == "multiprocessing" and "exited with" in r["message"]
               for r in records), records
    # the media engine's lines, logged inside the task, carry the id too
    assert any(r["logger"].startswith("workers.") and r.get("clip_id") == clip_id
               for r in intake), intake
