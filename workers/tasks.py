"""Thin tasks: take an id, run one pipeline step inside the app context, let the
pipeline record the outcome through the state machines. Idempotent: outputs go
to fixed keys via temp file + rename, so a re-delivered message overwrites."""

from __future__ import annotations

from celery import shared_task
from sqlalchemy.exc import OperationalError

from portal.logs import log_context

from . import pipeline

# Database hiccups are retried; media failures are recorded by the pipeline.
_RETRY = {"autoretry_for": (OperationalError,), "retry_backoff": 5, "max_retries": 5}


@shared_task(name="tutti.intake_clip", acks_late=True, **_RETRY)
def intake_clip(clip_id: int) -> None:
    with log_context(clip_id=clip_id, task="intake_clip"):
        pipeline.intake(clip_id)


@shared_task(name="tutti.align_clip", acks_late=True, **_RETRY)
def align_clip(clip_id: int) -> None:
    with log_context(clip_id=clip_id, task="align_clip"):
        pipeline.align(clip_id)


@shared_task(name="tutti.render", acks_late=True, **_RETRY)
def render(render_id: int) -> None:
    with log_context(render_id=render_id, task="render"):
        pipeline.render(render_id)


@shared_task(name="tutti.render_part", acks_late=True, **_RETRY)
def render_part(render_id: int, part: int) -> None:
    with log_context(render_id=render_id, task=f"render_part {part}"):
        pipeline.render_part(render_id, part)


@shared_task(name="tutti.join_render", acks_late=True, **_RETRY)
def join_render(render_id: int) -> None:
    with log_context(render_id=render_id, task="join_render"):
        pipeline.join_render(render_id)


@shared_task(name="tutti.export_render", acks_late=True, **_RETRY)
def export_render(render_id: int) -> None:
    pipeline.export_render(render_id)


#: a reconcile round that finds another begun less than this share of the period ago
#: (on the broker's clock) skips: rounds queued while no worker ran are not run in a row
RECONCILE_GAP_SHARE = 0.5


@shared_task(name="tutti.reconcile", ignore_result=True)
def reconcile() -> dict[str, int]:
    """One round of :func:`portal.services.reconcile`, unless another began less than
    ``RECONCILE_GAP_SHARE`` of ``TUTTI_RECONCILE_SECONDS`` ago. The gap is kept by a key
    with an expiry on the broker (Redis's own clock): the schedule once dropped late rounds
    by a Celery ``expires`` stamped on the sender's clock, and a worker whose clock ran 10
    minutes ahead discarded every round as revoked, so nothing was ever reconciled (red
    team ops3 F3). Returns the round's counts, or ``{"skipped": 1}``."""
    from flask import current_app

    from portal.broker import broker_redis
    from portal.services import reconcile as run

    gap_ms = int(float(current_app.config["RECONCILE_SECONDS"]) * RECONCILE_GAP_SHARE * 1000)
    client = broker_redis(str(current_app.config["BROKER_URL"]))
    if client is not None and gap_ms > 0:
        import redis

        try:
            with client:
                if not client.set("tutti:reconciler:round", "1", nx=True, px=gap_ms):
                    return {"skipped": 1}
        except redis.RedisError:
            pass  # a broker that refuses writes: run the round (it says what it cannot do)
    return run()
