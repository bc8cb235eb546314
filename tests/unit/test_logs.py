"""Log lines carry the clip and render ids; TUTTI_LOG_FORMAT=json gives one JSON object
a line."""

from __future__ import annotations

import io
import json
import logging

from portal.logs import IdsFilter, JsonFormatter, log_context


def _logger() -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(IdsFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.logs")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def test_a_tasks_lines_carry_its_ids_as_json():
    logger, out = _logger()
    with log_context(render_id=7, task="render_part 2"):
        logger.info("segment %d drawn", 2)
    logger.info("clip %s: received -> checked", 12)  # outside a task: named in the message
    logger.info("nothing to do with anyone")
    first, second, third = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["render_id"] == 7 and first["task"] == "render_part 2"
    assert first["message"] == "segment 2 drawn" and first["level"] == "INFO"
    assert first["time"].endswith("Z") and "clip_id" not in first
    assert second["clip_id"] == 12
    assert "clip_id" not in third and "render_id" not in third


def test_an_exception_is_kept_in_the_json_line():
    logger, out = _logger()
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("render 3: failed")
    line = json.loads(out.getvalue())
    assert line["render_id"] == 3 and "ValueError: bad" in line["exception"]


CELERY_LOGGING = """
import logging, warnings
from celery import Celery
from celery.utils.log import get_multiprocessing_logger, get_task_logger
from portal.logs import configure, log_context
import workers.celery_app  # noqa: F401 - connects Tutti's logging signals

configure(logging.INFO, "json")  # as create_app does with TUTTI_LOG_FORMAT=json
celery = Celery("t")
celery.conf.worker_hijack_root_logger = False  # as portal.config's Celery settings say
celery.log.setup_logging_subsystem(loglevel=logging.INFO)  # as `tutti worker` does
get_multiprocessing_logger().error("Process %r pid:%r exited with %r", "ForkPoolWorker-3",
                                   25371, "signal 9 (SIGKILL)")
with log_context(clip_id=7, task="intake_clip"):
    get_task_logger("workers.tasks").warning("through Celery's task logger")
    logging.getLogger("workers.pipeline").info("clip 7: normalized in 1.0 s")
warnings.warn("running as root")
"""


def test_a_celery_workers_own_loggers_write_json_too():
    """``tutti worker`` (Celery) sets up handlers of its own, in its text format, on the
    pool supervisor's logger and on its task logger: with TUTTI_LOG_FORMAT=json their
    lines are JSON too (a dead pool process was logged as "[...: ERROR/MainProcess] ...",
    a line a log collector cannot read), and Python's warnings are logged as JSON."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", CELERY_LOGGING], capture_output=True,
                          text=True, timeout=280)
    assert done.returncode == 0, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"a line that is not JSON: {line!r}\n{lines}") from None
    by_message = {r["message"].split(" ")[0]: r for r in records}
    assert by_message["Process"]["level"] == "ERROR"
    assert "ForkPoolWorker-3" in by_message["Process"]["message"]
    assert by_message["through"]["clip_id"] == 7
    assert by_message["through"]["task"] == "intake_clip"
    assert by_message["clip"]["clip_id"] == 7
    assert any("running as root" in r["message"] and r["logger"] == "py.warnings"
               for r in records), records


def test_tutti_worker_leaves_out_celerys_banner_in_json(tmp_path, monkeypatch):
    """Celery's start-up banner (20 lines of text) is not printed with
    TUTTI_LOG_FORMAT=json: ``tutti worker`` passes ``--quiet``; with text logs it stays."""
    from celery import Celery
    from click.testing import CliRunner

    from portal.cli import main

    calls: list[list[str]] = []
    monkeypatch.setattr(Celery, "worker_main", lambda self, argv: calls.append(argv))
    for fmt in ("json", "text"):
        env = {"TUTTI_LOG_FORMAT": fmt, "TUTTI_BROKER_URL": "redis://127.0.0.1:1/0",
               "TUTTI_DATABASE_URL": f"sqlite:///{tmp_path / 'w.sqlite3'}",
               "TUTTI_INSTANCE": str(tmp_path / "instance"),
               "TUTTI_MEDIA_ROOT": str(tmp_path / "media")}
        done = CliRunner().invoke(main, ["worker", "--no-beat"], env=env)
        assert done.exit_code == 0, done.output
    json_argv, text_argv = calls
    assert json_argv[0] == "--quiet" and "worker" in json_argv
    assert "--quiet" not in text_argv
