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
from sqlalchemy import select
from sqlalchemy.orm import defer

from .. import auth, review, services
from ..extensions import db, limiter
from ..extensions import login as login_manager
from ..links import external_url
from ..models import Campaign, CampaignInvite, Clip, Render, utcnow
from ..policy import allowed, campaign_for, clip_for, render_action, render_for, role_in
from ..security import safe_next
from ..states import CLIP_LABELS
from ..throttle import (
    SIGN_IN_PAUSED_MESSAGE,
    SIGN_IN_PAUSED_SECONDS,
    give_back,
    password_guesses_counted,
)
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
        give_back(strategy, applied)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_ADDRESS"], methods=["POST"])
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_ACCOUNT"], methods=["POST"],
               key_func=_login_email)
def login():
    error = None
    if request.method == "POST":
        if not password_guesses_counted():  # fail closed: see portal.throttle
            return render_template("organize/login.html", error=SIGN_IN_PAUSED_MESSAGE), 503, \
                {"Retry-After": str(SIGN_IN_PAUSED_SECONDS)}
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


def _password_change_account() -> str:
    return f"password-change:{getattr(current_user, 'id', '')}"


@bp.post("/account/password")
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_ACCOUNT"], key_func=_password_change_account)
def change_password():
    """A new password; the current one is checked, with the same limit as log-ins
    (someone holding a stolen session cannot guess the password here either)."""
    me = current_user._get_current_object()
    if not password_guesses_counted():  # fail closed: see portal.throttle
        return render_template("organize/account.html", error=SIGN_IN_PAUSED_MESSAGE), 503, \
            {"Retry-After": str(SIGN_IN_PAUSED_SECONDS)}
    try:
        auth.change_password(me, request.form.get("current_password", ""),
                             request.form.get("new_password", ""))
    except services.ServiceError as exc:
        return render_template("organize/account.html", error=exc.message), exc.status
    _refund_login_attempt()
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
    """The campaigns this organizer may see, newest first, each with its counts:
    (campaign, clips, awaiting review, approved)."""
    visible = select(Campaign.id)
    if not current_user.is_admin:
        from ..models import CampaignMember

        visible = select(CampaignMember.campaign_id).filter_by(organizer_id=current_user.id)
    found = db.session.scalars(select(Campaign).where(Campaign.id.in_(visible))
                               .order_by(Campaign.created_at.desc())).all()
    counts = review.campaign_counts([c.id for c in found])
    return [(c, *counts.get(c.id, (0, 0, 0))) for c in found]


@bp.get("/")
def campaigns():
    return render_template("organize/campaigns.html", rows=_campaign_rows(), error=None,
                           form={})


@bp.post("/campaigns")
def create_campaign():
    form = request.form
    guide, spooled = uploaded_file("guide")
    tmp_path = None
    try:
        parsed = services.parse_parts(form.get("parts", ""))  # "Soprano: 12, Alto: 10"
        parts = [name for name, _target in parsed]
        guide_path = spooled
        if guide is not None and spooled is None:
            fd, tmp_path = tempfile.mkstemp()
            with os.fdopen(fd, "wb") as out:
                guide.save(out)
            guide_path = tmp_path
        campaign = services.create_campaign(
            form.get("slug", ""), form.get("title", ""), description=form.get("description", ""),
            parts=parts or services.DEFAULT_PARTS,
            guide_path=guide_path, guide_filename=guide.filename if guide else None,
            owner=current_user,
        )
        targets = dict(parsed)
        for part in campaign.parts:
            part.target_count = targets.get(part.name)
        db.session.commit()
    except services.ServiceError as exc:
        db.session.rollback()
        return render_template("organize/campaigns.html", rows=_campaign_rows(),
                               error=exc.message, form=form), exc.status
    finally:
        if tmp_path and os.path.exists(tmp_path):
            os.unlink(tmp_path)
    share = external_url("participate.campaign", slug=campaign.slug)
    flash(f"Campaign “{campaign.title}” created. Share this link with participants: {share}")
    return redirect(url_for("organize.campaign", slug=campaign.slug), code=303)


@bp.get("/c/<slug>")
def campaign(slug: str):
    """The campaign's console: parts roster, renders, and one page of the review list
    (filters, sorting and paging in the query string; see :mod:`portal.review`)."""
    return _campaign_page(campaign_for(slug, "view"))


def refused(message: str, status: int, page):
    """A form that could not be done: the page with the form again (``page``, a
    callable returning its HTML), the message on it, and a 4xx status (never a
    redirect that hides the failure)."""
    db.session.rollback()
    flash(message)
    return page(), status


def _campaign_page(campaign: Campaign) -> str:
    """The campaign's console (see :func:`campaign`) for the current organizer."""
    query = review.ReviewQuery.from_args(request.args, campaign)
    counts = review.status_counts(campaign)
    page = review.clip_page(campaign, query, counts)
    # the render list leaves out what it does not show: plans, specs and the per-clip
    # lists (tens of thousands of entries in a large campaign)
    renders = db.session.scalars(
        select(Render).filter_by(campaign_id=campaign.id)
        .options(defer(Render.spec), defer(Render.plan), defer(Render.appearances),
                 defer(Render.clip_ids))
        .order_by(Render.id.desc()).limit(RENDERS_SHOWN)).all()
    stale = review.published_is_stale(campaign)
    roster = review.parts_roster(campaign)
    return render_template(
        "organize/campaign.html", campaign=campaign, page=page, query=query,
        counts=counts, roster=roster, schematic=review.layout_schematic(campaign, roster),
        groups=review.STATUS_GROUPS, words=review.STATUS_WORDS, sorts=review.SORTS,
        sync_filters=review.SYNC_FILTERS, per_page_choices=review.PER_PAGE_CHOICES,
        part_options=review.part_options(campaign), renders=renders,
        stale=stale, changes=services.mashup_changes(campaign) if stale else None,
        labels=CLIP_LABELS,
        links=review.Links(url_for, query),
        role=role_in(current_user, campaign), layouts=LAYOUT_WORDS, sounds=SOUND_WORDS,
        can=lambda action: allowed(current_user, action, campaign))


RENDERS_SHOWN = 20
LAYOUT_WORDS = {"grid": "grid", "sections": "sections by part", "montage": "montage"}
SOUND_WORDS = {"auto": "automatic", "guide": "the guide", "mix": "performers mixed",
               "guide+mix": "guide under the performers"}


@bp.post("/clips/<int:clip_id>/moderate")
def moderate(clip_id: int):
    clip = clip_for(clip_id, "moderate")
    try:
        services.moderate_clip(clip, request.form.get("decision", ""),
                               request.form.get("reason") or None)
    except services.ServiceError as exc:
        return refused(exc.message, exc.status, lambda: _campaign_page(clip.campaign))
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
        return refused("A nudge is a whole number of milliseconds, e.g. -40 or 120.", 400,
                       lambda: _clip_page(clip))
    try:
        services.nudge_clip(clip, value)
    except services.ServiceError as exc:
        return refused(exc.message, exc.status, lambda: _clip_page(clip))
    fallback = url_for("organize.clip", clip_id=clip.id)
    return redirect(safe_next(request.form.get("next"), fallback), code=303)


@bp.post("/clips/<int:clip_id>/sync-choice")
def choose_offset(clip_id: int):
    """The organizer confirmed one of the aligner's candidate offsets (or their own) by ear."""
    clip = clip_for(clip_id, "nudge")
    try:
        offset = float(request.form.get("offset_seconds", ""))
    except ValueError:
        return refused("An offset is a number of seconds, e.g. 7.693.", 400,
                       lambda: _clip_page(clip))
    try:
        services.choose_sync_offset(clip, offset, current_user.email)
    except services.ServiceError as exc:
        return refused(exc.message, exc.status, lambda: _clip_page(clip))
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
    return private_wav(data)


def private_wav(data: bytes):
    """A WAV answer that no cache keeps: a take's sound is private to its campaign."""
    response = current_app.response_class(data, mimetype="audio/wav")
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.post("/clips/<int:clip_id>/retry")
def retry(clip_id: int):
    clip = clip_for(clip_id, "moderate")
    try:
        services.retry_clip(clip)
    except services.ServiceError as exc:
        return refused(exc.message, exc.status, lambda: _campaign_page(clip.campaign))
    return redirect(url_for("organize.campaign", slug=clip.campaign.slug), code=303)


@bp.get("/clips/<int:clip_id>")
def clip(clip_id: int):
    return _clip_page(clip_for(clip_id, "view"))


def _clip_page(clip: Clip) -> str:
    return render_template("organize/clip.html", clip=clip, labels=CLIP_LABELS)


@bp.post("/c/<slug>/render")
def render(slug: str):
    kind = request.form.get("kind", "final")
    campaign = campaign_for(slug, render_action(kind))
    try:
        job = services.request_render(campaign, kind, options=request.form.to_dict())
    except services.ServiceError as exc:
        return refused(exc.message, exc.status, lambda: _campaign_page(campaign))
    flash(f"{kind.capitalize()} render #{job.id} queued.")
    return redirect(url_for("organize.campaign", slug=slug), code=303)


@bp.get("/renders/<int:render_id>.json")
def render_status(render_id: int):
    job = render_for(render_id, "view")
    shown = "running" if job.status == "queued" and job.progress > 0 else job.status
    return {"id": job.id, "kind": job.kind, "status": job.status, "status_label": shown,
            "reason": job.reason, "reason_detail": job.reason_detail,
            "options": job.options or {},
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
    """Publish a finished render. A preview needs ``confirm=preview``: without it the
    answer is a page that says it is a preview and asks again."""
    job = render_for(render_id, "publish")
    confirmed = request.form.get("confirm") == "preview"
    if job.kind == "preview" and not confirmed and job.status == "done" and job.output_key:
        return render_template("organize/publish_preview.html", job=job,
                               campaign=job.campaign), 409
    try:
        services.publish_render(job, preview_confirmed=confirmed)
    except services.ServiceError as exc:
        return refused(exc.message, exc.status, lambda: _campaign_page(job.campaign))
    flash(f"Render #{job.id} is now on the watch page.")
    return redirect(url_for("organize.campaign", slug=job.campaign.slug), code=303)


@bp.post("/c/<slug>/unpublish")
def unpublish(slug: str):
    """Take the published mash-up off the watch page now (e.g. it shows a clip that
    was declined since); its render and file are kept and it may be published again.
    Owners only (the ``publish`` action)."""
    campaign = campaign_for(slug, "publish")
    services.unpublish(campaign)
    flash("The mash-up is off the watch page. Its render is kept: publish it again any time.")
    return redirect(url_for("organize.campaign", slug=campaign.slug), code=303)


# --- settings, members, invites, deletion (owners) ---------------------------------

@bp.get("/c/<slug>/settings")
def settings_page(slug: str):
    return _settings_page(campaign_for(slug, "settings"))


def _settings_page(campaign: Campaign) -> str:
    """The settings page (settings form, deletion) with the campaign's values."""
    return render_template("organize/settings.html", campaign=campaign, error=None,
                           form=None, presets=services.CANVAS_PRESETS,
                           preset=services.canvas_preset(campaign))


@bp.post("/c/<slug>/settings")
def settings(slug: str):
    """Save the settings form (title, description, licence, open, deadline, canvas,
    longest clip, parts with targets, and a new guide when one is sent)."""
    campaign = campaign_for(slug, "settings")
    guide, spooled = uploaded_file("guide")
    tmp_path = None
    try:
        services.update_settings(campaign, request.form.to_dict())
        if guide is not None and (guide.filename or spooled):
            guide_path = spooled
            if spooled is None:
                fd, tmp_path = tempfile.mkstemp()
                with os.fdopen(fd, "wb") as out:
                    guide.save(out)
                guide_path = tmp_path
            services.set_guide(campaign, guide_path, filename=guide.filename)
    except services.ServiceError as exc:
        db.session.rollback()
        return render_template("organize/settings.html", campaign=campaign, error=exc.message,
                               field=exc.field, form=request.form,
                               presets=services.CANVAS_PRESETS,
                               preset=request.form.get("canvas")), exc.status
    finally:
        if tmp_path and os.path.exists(tmp_path):
            os.unlink(tmp_path)
    flash("Campaign settings saved." + ("" if campaign.accepting else
                                        " The campaign takes no new clips now."))
    return redirect(url_for("organize.campaign", slug=campaign.slug), code=303)


@bp.get("/c/<slug>/members")
def members(slug: str):
    return _members_page(campaign_for(slug, "members"))


def _members_page(campaign: Campaign, invite_url: str | None = None,
                  invite_email: str | None = None) -> str:
    invites = db.session.scalars(select(CampaignInvite).filter(
        CampaignInvite.campaign_id == campaign.id, CampaignInvite.used_at.is_(None),
        CampaignInvite.expires_at > utcnow())).all()
    return render_template("organize/members.html", campaign=campaign, invites=invites,
                           invite_url=invite_url, invite_email=invite_email,
                           form=request.form if request.method == "POST" and not invite_url
                           else {})


@bp.post("/c/<slug>/members")
def add_member(slug: str):
    """Invite an organizer by e-mail address. The answer is the same whether an
    organizer with that address exists or not (an invite link bound to the address,
    made without looking the address up), so the form tells nobody who has an
    account; the person accepts it once logged in with that address."""
    campaign = campaign_for(slug, "members")
    try:
        email = services.normalize_email(request.form.get("email", ""))
        token = services.create_invite(campaign, request.form.get("role", ""),
                                       by=current_user, email=email)
    except services.ServiceError as exc:
        return refused(exc.message, exc.status, lambda: _members_page(campaign))
    return _members_page(campaign, external_url("organize.invite", token=token), email)


@bp.post("/c/<slug>/members/<int:member_id>/remove")
def remove_member(slug: str, member_id: int):
    campaign = campaign_for(slug, "members")
    try:
        services.remove_member(campaign, member_id)
    except services.ServiceError as exc:
        return refused(exc.message, exc.status, lambda: _members_page(campaign))
    flash("Removed from this campaign.")
    return redirect(url_for("organize.members", slug=campaign.slug), code=303)


@bp.post("/c/<slug>/invites")
def create_invite(slug: str):
    campaign = campaign_for(slug, "members")
    try:
        token = services.create_invite(campaign, request.form.get("role", ""), by=current_user)
    except services.ServiceError as exc:
        return refused(exc.message, exc.status, lambda: _members_page(campaign))
    return _members_page(campaign, external_url("organize.invite", token=token))


@bp.post("/c/<slug>/invites/<int:invite_id>/revoke")
def revoke_invite(slug: str, invite_id: int):
    campaign = campaign_for(slug, "members")
    try:
        services.revoke_invite(campaign, invite_id)
    except services.ServiceError as exc:
        return refused(exc.message, exc.status, lambda: _members_page(campaign))
    flash("The invite link no longer works.")
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
        return refused(f"To delete the campaign, type its slug ({campaign.slug}) in the box.",
                       400, lambda: _settings_page(campaign))
    title = campaign.title
    services.delete_campaign(campaign)
    flash(f"The campaign “{title}” and all its files were deleted.")
    return redirect(url_for("organize.campaigns"), code=303)


@bp.context_processor
def organizer_context() -> dict:
    return {"organizer": current_user if current_user.is_authenticated else None}


from . import console  # noqa: E402,F401 - the review view, bulk moderation, CSV export
from . import sound as _sound  # noqa: E402,F401 - its routes join this blueprint
