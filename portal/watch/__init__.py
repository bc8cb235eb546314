"""Viewers: the watch page, and media files served with HTTP range support."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import quote

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    get_flashed_messages,
    make_response,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import defer, selectinload

from .. import services
from ..extensions import db
from ..models import Campaign, Clip, Render, RenderTile
from ..security import embeddable
from ..services import TOKEN_RE
from ..storage import StorageError

bp = Blueprint("watch", __name__)

MIME = {".mp4": "video/mp4", ".jpg": "image/jpeg", ".png": "image/png", ".webm": "video/webm",
        ".mov": "video/quicktime", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".m4a": "audio/mp4"}


#: performers in one page of the watch page's credits and gallery
CREDITS_PER_PAGE = 60
#: at most this many performers answer a "find yourself" search
FOUND_SHOWN = 20


@bp.get("/watch/<slug>")
def watch(slug: str):
    """The published mash-up, its credits and gallery a page at a time
    (``?page=``), and "find yourself" by name (``?q=``): whatever the number of
    performers, the page holds at most :data:`CREDITS_PER_PAGE` of them, and reads
    only their rows and tile maps (never a list of every performer)."""
    campaign = services.get_campaign(slug)
    render = published_render(campaign)
    credits: list[Clip] = []
    found: list[Clip] | None = None
    # clip id -> {"at": second to jump to, "tiles": [[x, y, w, h, start, end], ...]}
    spots: dict[int, dict] = {}
    q = (request.args.get("q") or "").strip()[:80]
    performers, page, pages = 0, 1, 1
    if render is not None:
        has_map = db.session.scalar(select(RenderTile.id).where(
            RenderTile.render_id == render.id).limit(1)) is not None
        approved = (Clip.campaign_id == campaign.id, Clip.status == "approved")
        if has_map:  # the render's tile map says who is in it (read from its index)
            in_map = select(RenderTile.clip_id).where(RenderTile.render_id == render.id)
            performers = db.session.scalar(
                select(func.count(func.distinct(RenderTile.clip_id)))
                .where(RenderTile.render_id == render.id)) or 0
        else:  # a render from before tile maps: its list of clip ids, read whole
            ids = sorted(db.session.scalar(select(Render.clip_ids)
                                           .where(Render.id == render.id)) or [])
            performers = len(ids)
        pages = max(1, -(-performers // CREDITS_PER_PAGE))
        try:
            page = min(max(1, int(request.args.get("page", 1))), pages)
        except ValueError:
            page = 1
        if has_map:
            wanted_ids = list(db.session.scalars(
                in_map.distinct().order_by(RenderTile.clip_id).limit(CREDITS_PER_PAGE)
                .offset((page - 1) * CREDITS_PER_PAGE)))
            credits = list(db.session.scalars(
                select(Clip).where(*approved, Clip.id.in_(wanted_ids))
                .options(selectinload(Clip.part)).order_by(Clip.id)))
        else:
            wanted_ids = ids[(page - 1) * CREDITS_PER_PAGE:page * CREDITS_PER_PAGE]
            credits = list(db.session.scalars(
                select(Clip).where(*approved, Clip.id.in_(wanted_ids)).order_by(Clip.id)))
        if q:
            pattern = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%") \
                .replace("_", "\\_") + "%"
            named = select(Clip).where(
                *approved, func.lower(Clip.display_name).like(pattern, escape="\\"))
            if has_map:  # the first matches, then those in the map (below)
                found = list(db.session.scalars(named.options(selectinload(Clip.part))
                                                .order_by(Clip.id).limit(FOUND_SHOWN)))
            else:
                listed = set(ids)
                found = [c for c in db.session.scalars(named.order_by(Clip.id).limit(500))
                         if c.id in listed][:FOUND_SHOWN]
        wanted = {c.id for c in credits} | {c.id for c in found or ()}
        if has_map and wanted:
            for tile in db.session.scalars(
                    select(RenderTile).where(RenderTile.render_id == render.id,
                                             RenderTile.clip_id.in_(wanted))
                    .order_by(RenderTile.clip_id, RenderTile.start)):
                spot = spots.setdefault(tile.clip_id, {"at": tile.live, "tiles": []})
                spot["tiles"].append([tile.x, tile.y, tile.w, tile.h, tile.start, tile.end])
            if found:  # approved since the render: not in it
                found = [c for c in found if c.id in spots]
        elif wanted:  # no tile map: the first moments, from the render's JSON
            seen = db.session.scalar(select(Render.appearances)
                                     .where(Render.id == render.id)) or {}
            spots = {c.id: {"at": float(seen[c.token]), "tiles": []}
                     for c in [*credits, *(found or ())] if c.token in seen}
    # the thumbnails' URLs from one built URL (url_for for each of 60 was a third of
    # the page's time), signed as clip_media_url signs them
    base = url_for("watch.clip_media", media_id="m", name="n")[:-len("m/n")]
    expires = media_url_expiry()
    thumbs = {}
    for clip in credits:
        if clip.thumbnail_key:
            name = clip.thumbnail_key.rsplit("/", 1)[-1]
            thumbs[clip.id] = (f"{base}{clip.media_id}/{name}?e={expires}"
                               f"&k={media_signature(clip.media_id, name, expires)}")
    page_html = render_template("watch/watch.html", campaign=campaign, render=render,
                                credits=credits, performers=performers, page=page,
                                pages=pages, q=q, found=found, per_page=CREDITS_PER_PAGE,
                                spots=spots, thumbs=thumbs)
    return revalidated(make_response(page_html))


def revalidated(response: Response) -> Response:
    """The watch page with an ETag (the body's digest: a viewer's browser asking again
    with ``If-None-Match`` gets a 304 without the body) and its Cache-Control: the
    same page for everyone (no organizer logged in, no message to show) may be kept by
    a shared cache, the proxy, for ``TUTTI_WATCH_CACHE_SECONDS`` (``s-maxage``), and
    browsers revalidate it each time (``max-age=0``); a page shown to one person is
    ``private, no-cache``. Between two requests the page changes only when the
    campaign, its published render or a performer's details change, so a viewer may
    see the previous page for at most those seconds."""
    response.add_etag()
    # peek at the messages without taking them: the page just rendered showed them
    personal = current_user.is_authenticated or bool(get_flashed_messages())
    seconds = int(current_app.config.get("WATCH_CACHE_SECONDS", 0))
    if personal or seconds <= 0:
        response.cache_control.private = True
        response.cache_control.no_cache = True
    else:
        response.cache_control.public = True
        response.cache_control.max_age = 0
        response.cache_control.s_maxage = seconds
    return response.make_conditional(request)


def published_render(campaign: Campaign) -> Render | None:
    """The campaign's published render without its per-clip columns (spec, plan, clip
    ids, appearances: tens of thousands of entries in a large campaign)."""
    if campaign.published_render_id is None:
        return None
    return db.session.scalar(
        select(Render).where(Render.id == campaign.published_render_id)
        .options(defer(Render.spec), defer(Render.plan), defer(Render.appearances),
                 defer(Render.clip_ids)))


@bp.get("/watch/<slug>/embed")
@embeddable
def embed(slug: str):
    """The player alone, for other sites to show in a frame (the only framable page)."""
    campaign = services.get_campaign(slug)
    return render_template("watch/embed.html", campaign=campaign,
                           render=published_render(campaign))


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
    name = key.rsplit("/", 1)[-1]
    expires = media_url_expiry()
    values = {"media_id": clip.media_id, "name": name, "e": expires,
              "k": media_signature(clip.media_id, name, expires)}
    if external:
        from ..links import external_url

        return external_url("watch.clip_media", **values)
    return url_for("watch.clip_media", **values)


def media_url_expiry(now: float | None = None) -> int:
    """When a clip file's URL handed out now stops working: Unix time in seconds,
    ``TUTTI_MEDIA_URL_HOURS`` ahead, rounded up to the next whole hour so that a page
    shown twice in one hour names the same URLs (browsers and caches reuse them)."""
    now = time.time() if now is None else now
    hours = int(current_app.config.get("MEDIA_URL_HOURS", 6))
    return (int(now + hours * 3600) // 3600 + 1) * 3600


def media_signature(media_id: str, name: str, expires: int) -> str:
    """The ``k`` a clip file's URL must carry: an HMAC-SHA256 of the media id, the file
    name and the expiry ``expires`` (Unix seconds) under the app's secret key (128
    bits, URL-safe), as in S3's pre-signed URLs. Only the pages allowed to show a file
    hand out its URL; a URL for one file (the thumbnail on the watch page) cannot be
    turned into another's (the performer's whole clip), nor made to last longer."""
    mac = hmac.new(str(current_app.config["SECRET_KEY"]).encode(),
                   f"clip-media:{media_id}/{name}@{int(expires)}".encode(),
                   hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:16]).decode().rstrip("=")


@bp.get("/media/clips/<media_id>/<name>")
def clip_media(media_id: str, name: str):
    """A clip's normalized video, thumbnail, contact sheet or sync picture, found by
    the clip's public ``media_id`` (files stored before media ids existed sit under
    the clip's token; the URL still never shows it). Originals are never served."""
    given = request.args.get("k", "")
    expires = request.args.get("e", "")
    if not expires.isdigit() or len(expires) > 12 or int(expires) < time.time():
        abort(404)  # expired (or no page handed it out): the page shows a fresh one
    if not hmac.compare_digest(given.encode(),
                               media_signature(media_id, name, int(expires)).encode()):
        abort(404)  # a URL no page handed out
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
    accel = current_app.config.get("MEDIA_ACCEL_REDIRECT")
    if accel:
        # the proxy sends the file (ranges, conditional requests, sendfile): Python
        # decides only whether it may be seen, and copies no bytes
        response = current_app.response_class(mimetype=mimetype)
        response.headers["X-Accel-Redirect"] = accel.rstrip("/") + "/" + quote(key)
        response.cache_control.public = True
        response.cache_control.max_age = 3600
    else:
        response = send_file(path, mimetype=mimetype, conditional=True, max_age=3600)
        response.headers["Accept-Ranges"] = "bytes"
    if not is_public(key):
        response.cache_control.public = False
        response.cache_control.private = True
    return response
