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


@shared_task(name="tutti.reconcile", ignore_result=True)
def reconcile() -> dict[str, int]:
    from portal.services import reconcile as run

    return run()
