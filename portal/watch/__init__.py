"""Viewers: the watch page, and media files served with HTTP range support."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, send_file
from sqlalchemy import select

from .. import services
from ..extensions import db
from ..models import Clip
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


@bp.get("/media/<path:key>")
def media(key: str):
    """Stored media by key. Keys of private files hold an unguessable token, so
    knowing the URL is the permission. Range requests make seeking work."""
    storage = current_app.extensions["tutti.storage"]
    try:
        path = storage.path(key)
    except StorageError:
        abort(404)
    if not path.is_file() or "/original" in key or key.startswith("proxies/"):
        abort(404)
    mimetype = MIME.get(path.suffix.lower(), "application/octet-stream")
    response = send_file(path, mimetype=mimetype, conditional=True, max_age=3600)
    response.headers["Accept-Ranges"] = "bytes"
    return response
