"""/healthz answers while the process runs; /readyz only when the database and the
broker answer too (503 naming what fails)."""

from __future__ import annotations

import time

from tests.conftest import REDIS_URL, dispose, make_app


def test_healthz_and_readyz_on_a_working_stack(tmp_path):
    app = make_app("sqlite", tmp_path, BROKER_URL=REDIS_URL)
    try:
        client = app.test_client()
        assert client.get("/healthz").get_json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.get_json() == {"status": "ready"}
    finally:
        dispose(app)


def test_readyz_says_which_part_is_down(tmp_path):
    from tests.integration.harness import free_port

    app = make_app("sqlite", tmp_path, BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    try:
        client = app.test_client()
        started = time.monotonic()
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.get_json()["failing"] == ["broker: OperationalError"]
        assert time.monotonic() - started < 15
        assert client.get("/healthz").status_code == 200  # alive, just not ready
        from portal.extensions import db

        with app.app_context():
            db.engine.dispose()
        (tmp_path / "test.sqlite3").unlink()
        (tmp_path / "test.sqlite3").mkdir()  # the database file is gone: a folder is there
        failing = client.get("/readyz").get_json()["failing"]
        assert failing[0].startswith("database:")
    finally:
        dispose(app)
