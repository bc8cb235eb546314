"""Probes for an orchestrator: ``/healthz`` (the process answers) and ``/readyz`` (the
database and the broker answer too, so the process can do its work)."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from .broker import broker_redis
from .extensions import db

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 ``{"status": "ok"}`` whenever the process serves requests (liveness)."""
    return jsonify({"status": "ok"})


def _database() -> str | None:
    try:
        db.session.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said plainly
        db.session.rollback()
        return f"database: {exc.__class__.__name__}"
    finally:
        db.session.remove()


def _broker() -> str | None:
    celery = current_app.extensions.get("celery")
    if celery is None or str(current_app.config["BROKER_URL"]).startswith("memory"):
        return None  # the embedded worker's in-process queue is always there
    try:
        with celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # noqa: BLE001
        return f"broker: {exc.__class__.__name__}"
    return _redis_writable(str(current_app.config["BROKER_URL"]))


def _redis_writable(url: str) -> str | None:
    """A Redis broker that answers may still refuse every write: full under
    ``maxmemory-policy noeviction`` (OOM), or read-only (a replica after a failover). Then
    no task can be sent, so the process is not ready: a write with a 10 s expiry tells."""
    client = broker_redis(url, timeout=2)
    if client is None:
        return None
    try:
        with client:
            client.set("tutti:readyz", "1", ex=10)
    except Exception as exc:  # noqa: BLE001 - OutOfMemoryError, ReadOnlyError, ...
        return f"broker: {exc.__class__.__name__} (it refuses writes)"
    return None


@bp.get("/readyz")
def readyz():
    """200 ``{"status": "ready"}`` when the database and the broker answer; 503 with
    ``{"status": "unavailable", "failing": [...]}`` naming the ones that do not."""
    failing = [f for f in (_database(), _broker()) if f]
    if failing:
        log.warning("not ready: %s", ", ".join(failing))
        return jsonify({"status": "unavailable", "failing": failing}), 503
    return jsonify({"status": "ready"})
