"""Viewers: the watch page, and media files served with HTTP range support."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, send_file, url_for
from sqlalchemy import select

from .. import services
from ..extensions import db
from ..models import Campaign, Clip, Render
from ..security import embeddable
from ..services import TOKEN_RE
from ..storage import StorageError

bp = Blueprint("watch", __name__)

MIME = {".mp4": "video/mp4", ".jpg": "image/jpeg", ".png": "image/png", ".webm": "video/webm",
        ".mov": "video/quicktime", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".m4a": "audio/mp4"}


@bp.get("/watch/<slug>")
def watch(slug: str):
    campaign = services.get_campaign(slug)
    render = campaign.published_render
    credits: list[Clip] = []
    if render and render.clip_ids:
        credits = list(db.session.scalars(
            select(Clip).where(Clip.id.in_(render.clip_ids), Clip.status == "approved")
            .order_by(Clip.id)))
    return render_template("watch/watch.html", campaign=campaign, render=render, credits=credits)


@bp.get("/watch/<slug>/embed")
@embeddable
def embed(slug: str):
    """The player alone, for other sites to show in a frame (the only framable page)."""
    campaign = services.get_campaign(slug)
    return render_template("watch/embed.html", campaign=campaign,
                           render=campaign.published_render)


def is_public(key: str) -> bool:
    """Public media (shared caches may keep it): a campaign's guide and the files of
    its published render. Everything else (clips, thumbnails, previews) is private."""
    parts = key.split("/")
    if parts[0] == "campaigns" and len(parts) == 3 and parts[2].startswith("guide"):
        return True
    if parts[0] == "renders" and len(parts) == 4:
        published = db.session.scalar(
            select(Render.id).join(Campaign, Campaign.published_render_id == Render.id)
            .where(Render.token == parts[2], Campaign.slug == parts[1]))
        return published is not None
    return False


#: the clip files a media URL may name, by the column that holds their key
CLIP_MEDIA = ("normalized_key", "thumbnail_key", "contact_sheet_key", "sync_plot_key")


def clip_media_url(clip: Clip, column: str, external: bool = False) -> str | None:
    """URL of one of ``clip``'s files (``column`` in :data:`CLIP_MEDIA`), or None when
    it has none. The URL names the clip by its ``media_id``, never by its private
    status-link token, whatever folder the file is stored in."""
    key = getattr(clip, column) if column in CLIP_MEDIA else None
    if not key:
        return None
    return url_for("watch.clip_media", media_id=clip.media_id, name=key.rsplit("/", 1)[-1],
                   _external=external)


@bp.get("/media/clips/<media_id>/<name>")
def clip_media(media_id: str, name: str):
    """A clip's normalized video, thumbnail, contact sheet or sync picture, found by
    the clip's public ``media_id`` (files stored before media ids existed sit under
    the clip's token; the URL still never shows it). Originals are never served."""
    clip = db.session.scalar(select(Clip).filter_by(media_id=media_id)) \
        if TOKEN_RE.match(media_id) else None
    if clip is None:
        abort(404)
    for column in CLIP_MEDIA:
        key = getattr(clip, column)
        if key and key.rsplit("/", 1)[-1] == name:
            return _send(key)
    abort(404)


@bp.get("/media/<path:key>")
def media(key: str):
    """Stored media by key. Keys of private files hold an unguessable token, so
    knowing the URL is the permission. Range requests make seeking work."""
    if key.startswith("clips/"):
        abort(404)  # clip files only by media id (above), never by the status token
    return _send(key)


def _send(key: str):
    storage = current_app.extensions["tutti.storage"]
    try:
        path = storage.path(key)
    except StorageError:
        abort(404)
    # hand-off ZIPs hold every clip: only organizers download them (organize.handoff)
    if not path.is_file() or "/original" in key or key.startswith(("proxies/", "handoffs/")):
        abort(404)
    mimetype = MIME.get(path.suffix.lower(), "application/octet-stream")
    response = send_file(path, mimetype=mimetype, conditional=True, max_age=3600)
    response.headers["Accept-Ranges"] = "bytes"
    if not is_public(key):
        response.cache_control.public = False
        response.cache_control.private = True
    return response
