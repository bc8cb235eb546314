"""Organizers: log-in, campaigns, members, moderation, renders.

Every view here needs a logged-in organizer (one ``before_request`` for the whole
blueprint, so a new view cannot forget it), and every view that touches a
campaign, clip or render loads it through :mod:`portal.policy` with the action it
is about to do: another campaign's pages and actions answer 404."""

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
from flask_login import current_user
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import func, select

from .. import auth, services
from ..extensions import db, limiter
from ..extensions import login as login_manager
from ..models import Campaign, CampaignInvite, Clip, utcnow
from ..policy import allowed, campaign_for, clip_for, render_action, render_for, role_in
from ..security import safe_next
from ..states import CLIP_LABELS
from ..upload_files import uploaded_file

bp = Blueprint("organize", __name__)

# The views anyone may open; every other view of this blueprint needs a log-in.
PUBLIC_ENDPOINTS = frozenset({"organize.login", "organize.logout"})


@bp.before_request
def require_login():
    if request.endpoint not in PUBLIC_ENDPOINTS and not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


def _login_email() -> str:
    return "login-account:" + request.form.get("email", "").strip().lower()[:254]


def _refund_login_attempt() -> None:
    """Give back the attempt a successful log-in was counted for. Every attempt is
    counted (atomically, in Flask-Limiter's check before the view runs) so parallel
    guesses cannot all pass a check made before any of them failed; only with the
    fixed-window strategy (the default) can a count be given back."""
    strategy = limiter.limiter
    if not isinstance(strategy, FixedWindowRateLimiter):
        return
    for applied in limiter.current_limits:
        strategy.storage.incr(applied.key, applied.limit.get_expiry(), amount=-1)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_ADDRESS"], methods=["POST"])
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_ACCOUNT"], methods=["POST"],
               key_func=_login_email)
def login():
    error = None
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()
        organizer = auth.check_credentials(email, request.form.get("password", ""))
        if organizer is not None:
            _refund_login_attempt()
            auth.start_session(organizer)
            target = safe_next(request.args.get("next"), url_for("organize.campaigns"))
            return redirect(target, code=303)
        error = "E-mail or password is wrong. (An administrator creates organizers with " \
                "`tutti organizer create EMAIL`.)"
    return render_template("organize/login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    auth.end_session()
    return redirect(url_for("participate.index"), code=303)


@bp.get("/account")
def account():
    return render_template("organize/account.html", error=None)


@bp.post("/account/password")
def change_password():
    me = current_user._get_current_object()
    try:
        auth.change_password(me, request.form.get("current_password", ""),
                             request.form.get("new_password", ""))
    except services.ServiceError as exc:
        return render_template("organize/account.html", error=exc.message), exc.status
    auth.start_session(me)
    flash("Password changed. Every other device where you were logged in is logged out.")
    return redirect(url_for("organize.account"), code=303)


@bp.post("/account/logout-everywhere")
def logout_everywhere():
    auth.end_all_sessions(current_user)
    auth.end_session()
    flash("You are logged out on every device.")
    return redirect(url_for("organize.login"), code=303)


def _campaign_rows() -> list:
    """The campaigns this organizer may see, with their number of clips, newest first."""
    visible = select(Campaign.id)
    if not current_user.is_admin:
        from ..models import CampaignMember

        visible = select(CampaignMember.campaign_id).filter_by(organizer_id=current_user.id)
    return db.session.execute(
        select(Campaign, func.count(Clip.id))
        .where(Campaign.id.in_(visible))
        .outerjoin(Clip, Clip.campaign_id == Campaign.id)
        .group_by(Campaign.id)
        .order_by(Campaign.created_at.desc())
    ).all()


@bp.get("/")
def campaigns():
    return render_template("organize/campaigns.html", rows=_campaign_rows(), error=None,
                           form={})


@bp.post("/campaigns")
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
            owner=current_user,
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
def campaign(slug: str):
    campaign = campaign_for(slug, "view")
    status_filter = request.args.get("status") or None
    if status_filter not in CLIP_LABELS:
        status_filter = None
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
                           stale=stale, role=role_in(current_user, campaign),
                           can=lambda action: allowed(current_user, action, campaign))


@bp.post("/clips/<int:clip_id>/moderate")
def moderate(clip_id: int):
    clip = clip_for(clip_id, "moderate")
    try:
        services.moderate_clip(clip, request.form.get("decision", ""),
                               request.form.get("reason") or None)
    except services.ServiceError as exc:
        db.session.rollback()
        flash(exc.message)
    fallback = url_for("organize.campaign", slug=clip.campaign.slug)
    return redirect(safe_next(request.form.get("next"), fallback), code=303)


@bp.post("/c/<slug>/approve-all")
def approve_all(slug: str):
    campaign = campaign_for(slug, "moderate")
    count = 0
    for clip in campaign.clips:
        if clip.status in ("normalized", "synced"):
            services.moderate_clip(clip, "approved")
            count += 1
    flash(f"Approved {count} clip(s).")
    return redirect(url_for("organize.campaign", slug=slug), code=303)


@bp.post("/clips/<int:clip_id>/nudge")
def nudge(clip_id: int):
    clip = clip_for(clip_id, "nudge")
    try:
        value = int(request.form.get("nudge_ms", "0"))
    except ValueError:
        flash("A nudge is a whole number of milliseconds, e.g. -40 or 120.")
    else:
        try:
            services.nudge_clip(clip, value)
        except services.ServiceError as exc:
            flash(exc.message)
    return redirect(url_for("organize.clip", clip_id=clip.id), code=303)


@bp.post("/clips/<int:clip_id>/sync-choice")
def choose_offset(clip_id: int):
    """The organizer confirmed one of the aligner's candidate offsets (or their own) by ear."""
    clip = clip_for(clip_id, "nudge")
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
def listen(clip_id: int):
    """The guide in the left ear and the take in the right, the take moved by ``offset``
    (default: the clip's own), from guide time ``start`` for 20 s: to check a sync by ear."""
    from workers.media.audio import NoAudio
    from workers.media.ffmpeg import FFmpegError
    from workers.media.syncplot import sync_listen_wav

    clip = clip_for(clip_id, "view")
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
def retry(clip_id: int):
    clip = clip_for(clip_id, "moderate")
    try:
        services.retry_clip(clip)
    except services.ServiceError as exc:
        flash(exc.message)
    return redirect(url_for("organize.campaign", slug=clip.campaign.slug), code=303)


@bp.get("/clips/<int:clip_id>")
def clip(clip_id: int):
    clip = clip_for(clip_id, "view")
    return render_template("organize/clip.html", clip=clip, labels=CLIP_LABELS)


@bp.post("/c/<slug>/render")
def render(slug: str):
    kind = request.form.get("kind", "final")
    campaign = campaign_for(slug, render_action(kind))
    try:
        job = services.request_render(campaign, kind, options=request.form.to_dict())
        flash(f"{kind.capitalize()} render #{job.id} queued.")
    except services.ServiceError as exc:
        flash(exc.message)
    return redirect(url_for("organize.campaign", slug=slug), code=303)


@bp.get("/renders/<int:render_id>.json")
def render_status(render_id: int):
    job = render_for(render_id, "view")
    return {"id": job.id, "kind": job.kind, "status": job.status, "reason": job.reason,
            "progress": job.progress, "eta_seconds": job.eta_seconds, "duration": job.duration,
            "output_url": url_for("watch.media", key=job.output_key) if job.output_key else None,
            "published": job.campaign.published_render_id == job.id}


@bp.post("/renders/<int:render_id>/cancel")
def cancel_render(render_id: int):
    job = render_for(render_id, "render")
    services.cancel_render(job)
    return redirect(url_for("organize.campaign", slug=job.campaign.slug), code=303)


@bp.post("/renders/<int:render_id>/publish")
def publish_render(render_id: int):
    job = render_for(render_id, "publish")
    try:
        services.publish_render(job)
        flash(f"Render #{job.id} is now on the watch page.")
    except services.ServiceError as exc:
        flash(exc.message)
    return redirect(url_for("organize.campaign", slug=job.campaign.slug), code=303)


# --- settings, members, invites, deletion (owners) ---------------------------------

@bp.post("/c/<slug>/settings")
def settings(slug: str):
    campaign = campaign_for(slug, "settings")
    try:
        services.update_campaign(campaign, title=request.form.get("title", ""),
                                 description=request.form.get("description", ""),
                                 is_open=request.form.get("is_open") == "yes")
        flash("Campaign settings saved.")
    except services.ServiceError as exc:
        db.session.rollback()
        flash(exc.message)
    return redirect(url_for("organize.campaign", slug=campaign.slug), code=303)


@bp.get("/c/<slug>/members")
def members(slug: str):
    campaign = campaign_for(slug, "members")
    invites = db.session.scalars(select(CampaignInvite).filter(
        CampaignInvite.campaign_id == campaign.id, CampaignInvite.used_at.is_(None),
        CampaignInvite.expires_at > utcnow())).all()
    return render_template("organize/members.html", campaign=campaign, invites=invites,
                           invite_url=None, error=None)


@bp.post("/c/<slug>/members")
def add_member(slug: str):
    campaign = campaign_for(slug, "members")
    try:
        member = services.add_member(campaign, request.form.get("email", ""),
                                     request.form.get("role", ""))
        flash(f"{member.organizer.email} is now {member.role} of this campaign.")
    except services.ServiceError as exc:
        db.session.rollback()
        flash(exc.message)
    return redirect(url_for("organize.members", slug=campaign.slug), code=303)


@bp.post("/c/<slug>/members/<int:member_id>/remove")
def remove_member(slug: str, member_id: int):
    campaign = campaign_for(slug, "members")
    try:
        services.remove_member(campaign, member_id)
        flash("Removed from this campaign.")
    except services.ServiceError as exc:
        db.session.rollback()
        flash(exc.message)
    return redirect(url_for("organize.members", slug=campaign.slug), code=303)


@bp.post("/c/<slug>/invites")
def create_invite(slug: str):
    campaign = campaign_for(slug, "members")
    try:
        token = services.create_invite(campaign, request.form.get("role", ""), by=current_user)
    except services.ServiceError as exc:
        flash(exc.message)
        return redirect(url_for("organize.members", slug=campaign.slug), code=303)
    invites = db.session.scalars(select(CampaignInvite).filter(
        CampaignInvite.campaign_id == campaign.id, CampaignInvite.used_at.is_(None),
        CampaignInvite.expires_at > utcnow())).all()
    url = url_for("organize.invite", token=token, _external=True)
    return render_template("organize/members.html", campaign=campaign, invites=invites,
                           invite_url=url, error=None)


@bp.post("/c/<slug>/invites/<int:invite_id>/revoke")
def revoke_invite(slug: str, invite_id: int):
    campaign = campaign_for(slug, "members")
    try:
        services.revoke_invite(campaign, invite_id)
        flash("The invite link no longer works.")
    except services.ServiceError as exc:
        flash(exc.message)
    return redirect(url_for("organize.members", slug=campaign.slug), code=303)


@bp.route("/invite/<token>", methods=["GET", "POST"])
def invite(token: str):
    found = services.find_invite(token)
    if request.method == "POST":
        member = services.accept_invite(token, current_user)
        flash(f"You are now {member.role} of “{member.campaign.title}”.")
        return redirect(url_for("organize.campaign", slug=member.campaign.slug), code=303)
    return render_template("organize/invite.html", invite=found)


@bp.post("/c/<slug>/delete")
def delete_campaign(slug: str):
    campaign = campaign_for(slug, "delete")
    if request.form.get("confirm", "").strip() != campaign.slug:
        flash(f"To delete the campaign, type its slug ({campaign.slug}) in the box.")
        return redirect(url_for("organize.campaign", slug=campaign.slug), code=303)
    title = campaign.title
    services.delete_campaign(campaign)
    flash(f"The campaign “{title}” and all its files were deleted.")
    return redirect(url_for("organize.campaigns"), code=303)


@bp.context_processor
def organizer_context() -> dict:
    return {"organizer": current_user if current_user.is_authenticated else None}


from . import sound as _sound  # noqa: E402,F401 - its routes join this blueprint
