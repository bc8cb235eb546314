"""The clip and render state machines: the only way a status changes.

Every change, failures included, goes through :func:`move_clip` or
:func:`move_render`, which check the transition, store the reason for people to
read, and (for clips) append a timeline event.
"""

from __future__ import annotations

import logging

from .models import Clip, ClipEvent, Render, utcnow

log = logging.getLogger(__name__)


class InvalidTransition(ValueError):
    pass


# --- clips -----------------------------------------------------------------
# received   the original is stored, waiting for intake
# checked    probe passed (it is a usable video), normalizing
# normalized the tile-format file and thumbnail exist; syncing when there is a guide
# synced     aligned to the guide with confidence
# needs_sync aligned without confidence (or could not be): an organizer should look
# approved / declined   moderation
# rejected   not a usable video (reason says why); the participant may replace it
# failed     processing broke on our side; retried by the reconciler or an organizer
# withdrawn  the participant took it back
CLIP_STATES = (
    "received", "checked", "normalized", "synced", "needs_sync",
    "approved", "declined", "rejected", "failed", "withdrawn",
)
_MODERATABLE = {"normalized", "synced", "needs_sync", "approved", "declined"}
CLIP_TRANSITIONS: dict[str, set[str]] = {
    "received": {"checked", "rejected", "failed", "withdrawn", "received"},
    "checked": {"normalized", "rejected", "failed", "withdrawn", "received"},
    "normalized": {"synced", "needs_sync", "approved", "declined", "failed", "withdrawn",
                   "received"},
    "synced": {"needs_sync", "synced", "approved", "declined", "withdrawn", "received"},
    "needs_sync": {"synced", "needs_sync", "approved", "declined", "withdrawn", "received"},
    "approved": {"declined", "withdrawn", "received"},
    "declined": {"approved", "withdrawn", "received"},
    "rejected": {"received", "withdrawn"},
    "failed": {"received", "withdrawn"},
    "withdrawn": set(),
}
# Statuses in which intake work is pending (the reconciler re-enqueues these).
CLIP_INTAKE_PENDING = ("received", "checked")

# What a participant reads for each status.
CLIP_LABELS = {
    "received": "Received",
    "checked": "Checked: it is a usable video",
    "normalized": "Converted for the mash-up",
    "synced": "Synced to the guide",
    "needs_sync": "Needs a manual sync check",
    "approved": "Approved for the mash-up",
    "declined": "Not included by the organizers",
    "rejected": "Rejected",
    "failed": "Processing failed",
    "withdrawn": "Withdrawn",
}


def can_move_clip(clip: Clip, new: str) -> bool:
    return new in CLIP_TRANSITIONS.get(clip.status, set())


def move_clip(clip: Clip, new: str, reason: str | None = None) -> None:
    """Change a clip's status (the caller commits)."""
    if new not in CLIP_TRANSITIONS:
        raise InvalidTransition(f"unknown clip status {new!r}")
    if not can_move_clip(clip, new):
        raise InvalidTransition(f"clip {clip.id}: cannot go from {clip.status} to {new}")
    log.info("clip %s: %s -> %s%s", clip.id, clip.status, new, f" ({reason})" if reason else "")
    clip.status = new
    clip.reason = reason
    clip.updated_at = utcnow()
    clip.events.append(ClipEvent(status=new, reason=reason))


def is_moderatable(clip: Clip) -> bool:
    return clip.status in _MODERATABLE


# --- renders ---------------------------------------------------------------
RENDER_STATES = ("queued", "running", "done", "failed", "cancelled")
RENDER_TRANSITIONS: dict[str, set[str]] = {
    "queued": {"running", "failed", "cancelled"},
    "running": {"running", "done", "failed", "cancelled", "queued"},
    "done": set(),
    "failed": {"queued"},
    "cancelled": {"queued"},
}
RENDER_PENDING = ("queued", "running")


def move_render(render: Render, new: str, reason: str | None = None, *,
                detail: str | None = None) -> None:
    """Change a render's status (the caller commits). ``reason`` is for the organizer, in
    plain words; ``detail`` the technical cause (ffmpeg's last lines), shown apart."""
    if new not in RENDER_TRANSITIONS:
        raise InvalidTransition(f"unknown render status {new!r}")
    if new not in RENDER_TRANSITIONS[render.status]:
        raise InvalidTransition(f"render {render.id}: cannot go from {render.status} to {new}")
    log.info("render %s: %s -> %s%s", render.id, render.status, new,
             f" ({reason})" if reason else "")
    render.status = new
    render.reason = reason
    render.reason_detail = detail
    now = utcnow()
    render.updated_at = now
    if new == "running" and render.started_at is None:
        render.started_at = now
    if new in ("done", "failed", "cancelled"):
        render.finished_at = now
        render.lease_until = None
        render.lease_owner = None
        render.request_key = None  # the same render may be asked for again
    if new == "queued":
        render.progress = 0.0
        render.cancel_requested = False
