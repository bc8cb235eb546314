"""Organizers: log-in, campaigns, moderation, renders."""

from __future__ import annotations

import os
import tempfile

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import func, select

from .. import services
from ..extensions import db
from ..models import Campaign, Clip, Organizer, Render
from ..states import CLIP_LABELS
from ..upload_files import uploaded_file

bp = Blueprint("organize", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()
        organizer = db.session.scalar(select(Organizer).filter_by(email=email))
        if organizer and organizer.check_password(request.form.get("password", "")):
            login_user(organizer, remember=True)
            target = request.args.get("next", "")
            if not target.startswith("/") or target.startswith("//"):
                target = url_for("organize.campaigns")
            return redirect(target, code=303)
        error = "E-mail or password is wrong. (An administrator creates organizers with " \
                "`tutti organizer create EMAIL`.)"
    return render_template("organize/login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    logout_user()
    return redirect(url_for("participate.index"), code=303)


def _campaign_rows() -> list:
    """Every campaign with its number of clips, newest first."""
    return db.session.execute(
        select(Campaign, func.count(Clip.id))
        .outerjoin(Clip, Clip.campaign_id == Campaign.id)
        .group_by(Campaign.id)
        .order_by(Campaign.created_at.desc())
    ).all()


@bp.get("/")
@login_required
def campaigns():
    return render_template("organize/campaigns.html", rows=_campaign_rows(), error=None,
                           form={})


@bp.post("/campaigns")
@login_required
def create_campaign():
    form = request.form
    parts = [p for p in form.get("parts", "").replace("\n", ",").split(",")]
    guide, spooled = uploaded_file("guide")
    tmp_path = None
    try:
        guide_path = spooled
        if guide is not None and spooled is None:
            fd, tmp_path = tempfile.mkstemp()
            with os.fdopen(fd, "wb") as out:
                guide.save(out)
            guide_path = tmp_path
        campaign = services.create_campaign(
            form.get("slug", ""), form.get("title", ""), description=form.get("description", ""),
            parts=parts if any(p.strip() for p in parts) else services.DEFAULT_PARTS,
            guide_path=guide_path, guide_filename=guide.filename if guide else None,
        )
    except services.ServiceError as exc:
        db.session.rollback()
        return render_template("organize/campaigns.html", rows=_campaign_rows(),
                               error=exc.message, form=form), exc.status
    finally:
        if tmp_path and os.path.exists(tmp_path):
            os.unlink(tmp_path)
    share = url_for("participate.campaign", slug=campaign.slug, _external=True)
    flash(f"Campaign “{campaign.title}” created. Share this link with participants: {share}")
    return redirect(url_for("organize.campaign", slug=campaign.slug), code=303)


@bp.get("/c/<slug>")
@login_required
def campaign(slug: str):
    campaign = services.get_campaign(slug)
    status_filter = request.args.get("status") or None
    query = select(Clip).filter_by(campaign_id=campaign.id).order_by(Clip.id)
    if status_filter:
        query = query.filter_by(status=status_filter)
    clips = db.session.scalars(query).all()
    approved_ids = {c.id for c in campaign.clips if c.status == "approved"}
    published = campaign.published_render
    stale = bool(published and set(published.clip_ids or []) != approved_ids)
    counts = dict(db.session.execute(
        select(Clip.status, func.count()).filter_by(campaign_id=campaign.id).group_by(Clip.status)
    ).all())
    return render_template("organize/campaign.html", campaign=campaign, clips=clips,
                           counts=counts, labels=CLIP_LABELS, status_filter=status_filter,
                           stale=stale)


def _clip_by_id(clip_id: int) -> Clip:
    clip = db.session.get(Clip, clip_id)
    if clip is None:
        abort(404)
    return clip


@bp.post("/clips/<int:clip_id>/moderate")
@login_required
def moderate(clip_id: int):
    clip = _clip_by_id(clip_id)
    try:
        services.moderate_clip(clip, request.form.get("decision", ""),
                               request.form.get("reason") or None)
    except services.ServiceError as exc:
        flash(exc.message)
    return redirect(request.form.get("next") or url_for("organize.campaign",
                                                        slug=clip.campaign.slug), code=303)


@bp.post("/c/<slug>/approve-all")
@login_required
def approve_all(slug: str):
    campaign = services.get_campaign(slug)
    count = 0
    for clip in campaign.clips:
        if clip.status in ("normalized", "synced"):
            services.moderate_clip(clip, "approved")
            count += 1
    flash(f"Approved {count} clip(s).")
    return redirect(url_for("organize.campaign", slug=slug), code=303)


@bp.post("/clips/<int:clip_id>/nudge")
@login_required
def nudge(clip_id: int):
    clip = _clip_by_id(clip_id)
    try:
        value = int(request.form.get("nudge_ms", "0"))
    except ValueError:
        flash("A nudge is a whole number of milliseconds, e.g. -40 or 120.")
    else:
        services.nudge_clip(clip, value)
    return redirect(url_for("organize.clip", clip_id=clip.id), code=303)


@bp.post("/clips/<int:clip_id>/sync-choice")
@login_required
def choose_offset(clip_id: int):
    """The organizer confirmed one of the aligner's candidate offsets (or their own) by ear."""
    clip = _clip_by_id(clip_id)
    try:
        offset = float(request.form.get("offset_seconds", ""))
    except ValueError:
        flash("An offset is a number of seconds, e.g. 7.693.")
    else:
        try:
            services.choose_sync_offset(clip, offset, current_user.email)
        except services.ServiceError as exc:
            flash(exc.message)
        else:
            flash(f"Offset {offset:+.3f} s saved; the clip is synced.")
    return redirect(url_for("organize.clip", clip_id=clip.id), code=303)


@bp.get("/clips/<int:clip_id>/listen.wav")
@login_required
def listen(clip_id: int):
    """The guide in the left ear and the take in the right, the take moved by ``offset``
    (default: the clip's own), from guide time ``start`` for 20 s: to check a sync by ear."""
    from workers.media.audio import NoAudio
    from workers.media.ffmpeg import FFmpegError
    from workers.media.syncplot import sync_listen_wav

    clip = _clip_by_id(clip_id)
    if not clip.campaign.guide_key or not clip.normalized_key:
        abort(404)
    try:
        offset = float(request.args.get("offset", clip.effective_offset))
        start = float(request.args.get("start", 0.0))
    except ValueError:
        abort(400)
    if not (abs(offset) <= 600 and 0 <= start <= 36000):
        abort(400)
    store = services.storage()
    try:
        data = sync_listen_wav(str(store.path(clip.campaign.guide_key)),
                               str(store.path(clip.normalized_key)), offset, start_seconds=start)
    except (NoAudio, FFmpegError):
        abort(404)
    response = current_app.response_class(data, mimetype="audio/wav")
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.post("/clips/<int:clip_id>/retry")
@login_required
def retry(clip_id: int):
    clip = _clip_by_id(clip_id)
    services.retry_clip(clip)
    return redirect(url_for("organize.campaign", slug=clip.campaign.slug), code=303)


@bp.get("/clips/<int:clip_id>")
@login_required
def clip(clip_id: int):
    clip = _clip_by_id(clip_id)
    return render_template("organize/clip.html", clip=clip, labels=CLIP_LABELS)


@bp.post("/c/<slug>/render")
@login_required
def render(slug: str):
    campaign = services.get_campaign(slug)
    kind = request.form.get("kind", "final")
    try:
        job = services.request_render(campaign, kind, options=request.form.to_dict())
        flash(f"{kind.capitalize()} render #{job.id} queued.")
    except services.ServiceError as exc:
        flash(exc.message)
    return redirect(url_for("organize.campaign", slug=slug), code=303)


def _render_by_id(render_id: int) -> Render:
    job = db.session.get(Render, render_id)
    if job is None:
        abort(404)
    return job


@bp.get("/renders/<int:render_id>.json")
@login_required
def render_status(render_id: int):
    job = _render_by_id(render_id)
    return {"id": job.id, "kind": job.kind, "status": job.status, "reason": job.reason,
            "progress": job.progress, "eta_seconds": job.eta_seconds, "duration": job.duration,
            "output_url": url_for("watch.media", key=job.output_key) if job.output_key else None,
            "published": job.campaign.published_render_id == job.id}


@bp.post("/renders/<int:render_id>/cancel")
@login_required
def cancel_render(render_id: int):
    job = _render_by_id(render_id)
    services.cancel_render(job)
    return redirect(url_for("organize.campaign", slug=job.campaign.slug), code=303)


@bp.post("/renders/<int:render_id>/publish")
@login_required
def publish_render(render_id: int):
    job = _render_by_id(render_id)
    try:
        services.publish_render(job)
        flash(f"Render #{job.id} is now on the watch page.")
    except services.ServiceError as exc:
        flash(exc.message)
    return redirect(url_for("organize.campaign", slug=job.campaign.slug), code=303)


@bp.context_processor
def organizer_context() -> dict:
    return {"organizer": current_user if current_user.is_authenticated else None}
