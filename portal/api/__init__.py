"""JSON API, version 1. Errors are ``{"error": "...", "field": "..."}`` with the
HTTP status that fits (400, 404, 409, 413)."""

from __future__ import annotations

from flask import Blueprint, request

from .. import services
from ..links import external_url
from ..models import Clip
from ..states import CLIP_LABELS
from ..throttle import upload_limits
from ..upload_files import submit_from_request
from ..watch import clip_media_url

bp = Blueprint("api", __name__)


def _media(key: str | None) -> str | None:
    return external_url("watch.media", key=key) if key else None


def clip_json(clip: Clip) -> dict:
    from workers.media.record_timing import PRIOR_AGREE_MS  # light: no aligner imported

    published = clip.campaign.published_render
    return {
        "id": clip.token,
        "campaign": clip.campaign.slug,
        "status": clip.status,
        "label": CLIP_LABELS.get(clip.status, clip.status),
        "reason": clip.reason,
        "name": clip.display_name,
        "part": clip.part_name,
        "location": clip.location,
        "thumbnail_url": clip_media_url(clip, "thumbnail_key", external=True),
        "contact_sheet_url": clip_media_url(clip, "contact_sheet_key", external=True),
        "normalized_url": clip_media_url(clip, "normalized_key", external=True),
        "status_url": external_url("participate.status", token=clip.token),
        # what the probe found, without where the file lies on the server
        "media": ({k: v for k, v in clip.media.items() if k != "path"}
                  if clip.media else clip.media),
        "checks": clip.checks or [],
        "sync": {
            "state": clip.sync_state,
            "offset_seconds": clip.offset_seconds,
            "confidence": clip.sync_confidence,
            "method": clip.sync_method,
            "drift_ppm": clip.drift_ppm,
            "nudge_ms": clip.nudge_ms,
            # a take recorded on the page: the sound's offset minus the one its device
            # predicted (ms; None until aligned, or when the sound found nothing to compare
            # with, or for a file), and whether the two agree (within PRIOR_AGREE_MS, as
            # the aligner decided): the keys `tutti align --record-start` prints
            "record_error_ms": clip.record_error_ms,
            "record_agrees": (None if clip.record_error_ms is None
                              else abs(clip.record_error_ms) <= PRIOR_AGREE_MS),
        },
        "in_mashup": bool(published and published.clip_ids and clip.id in published.clip_ids),
        "events": [{"status": e.status, "reason": e.reason, "at": e.at.isoformat() + "Z"}
                   for e in clip.events],
    }


@bp.get("/campaigns/<slug>")
def campaign(slug: str):
    c = services.get_campaign(slug)
    published = c.published_render
    return {
        "slug": c.slug, "title": c.title, "description": c.description, "open": c.is_open,
        "licence": c.licence, "parts": [p.name for p in c.parts],
        "guide_url": _media(c.guide_key),
        "upload_url": external_url("api.submit", slug=c.slug),
        "watch_url": external_url("watch.watch", slug=c.slug),
        "published": _media(published.output_key) if published else None,
    }


@bp.post("/campaigns/<slug>/clips")
@upload_limits
def submit(slug: str):
    campaign = services.get_campaign(slug)
    clip = submit_from_request(campaign)
    api_url = external_url("api.clip", token=clip.token)
    status_url = external_url("participate.status", token=clip.token)
    body = {"id": clip.token, "status": clip.status, "status_url": status_url, "api_url": api_url}
    return body, 201, {"Location": api_url}


@bp.get("/clips/<token>")
def clip(token: str):
    """The clip behind a private status link: name, place, signed media URLs."""
    return clip_json(services.get_clip(token))


#: a private answer (a participant's clip, their upload): no shared cache keeps it
PRIVATE = "private, no-store"


@bp.after_request
def private_by_default(response):
    """Every answer of the API but a campaign's public description is private: a clip,
    an upload, an error naming them. (The status page already sends ``no-store``.)"""
    if "Cache-Control" not in response.headers and request.endpoint != "api.campaign":
        response.headers["Cache-Control"] = PRIVATE
    return response
