"""Participants: the campaign page with its upload form, and the private status page."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from .. import services
from ..extensions import db
from ..models import Campaign, Clip, Render
from ..states import CLIP_LABELS
from ..throttle import upload_limits
from ..upload_files import submit_from_request, uploaded_file

bp = Blueprint("participate", __name__)


@bp.get("/")
def index():
    campaigns = db.session.scalars(select(Campaign).order_by(Campaign.created_at.desc())).all()
    return render_template("participate/index.html", campaigns=campaigns)


@bp.context_processor
def closed_context() -> dict:
    return {"closed_message": services.closed_message}


@bp.get("/c/<slug>")
def campaign(slug: str):
    campaign = services.get_campaign(slug)
    return render_template("participate/campaign.html", campaign=campaign, form={}, error=None)


@bp.post("/c/<slug>/upload")
@upload_limits
def upload(slug: str):
    campaign = services.get_campaign(slug)
    try:
        clip = submit_from_request(campaign)
    except services.ServiceError as exc:
        if request.accept_mimetypes.best == "application/json":
            raise
        return render_template("participate/campaign.html", campaign=campaign,
                               form=request.form, error=exc.message, field=exc.field), exc.status
    if request.accept_mimetypes.best == "application/json":
        return {"id": clip.token, "status": clip.status,
                "status_url": url_for("participate.status", token=clip.token)}, 201
    return redirect(url_for("participate.status", token=clip.token), code=303)


@bp.get("/clip/<token>")
def status(token: str):
    clip = services.get_clip(token)
    published = clip.campaign.published_render
    in_mashup = bool(published and published.clip_ids and clip.id in published.clip_ids)
    return render_template("participate/status.html", clip=clip, labels=CLIP_LABELS,
                           in_mashup=in_mashup, published=published,
                           next_step=next_step(clip, in_mashup, published))


def next_step(clip: Clip, in_mashup: bool, published: Render | None) -> str:
    """What happens next to ``clip``, in plain words for its participant."""
    status = clip.status
    campaign = clip.campaign
    if status in ("received", "checked"):
        return ("We are checking and converting your clip. This usually takes a minute or "
                "two; this page updates by itself.")
    if status in ("normalized", "synced", "needs_sync"):
        return ("Your clip is ready and waiting for the organizers to review it. You need "
                "not do anything: keep this page's link and come back later.")
    if status == "approved":
        if in_mashup and published is not None:
            at = published.appears_at(clip)
            when = f" at {_mmss(at)}" if at is not None else ""
            return f"You are in the published mash-up{when}. Thank you for taking part!"
        return ("Approved: you will be in the next mash-up the organizers make. This page "
                "will say when it is published.")
    if status == "declined":
        again = (" You may upload a new take below." if campaign.accepting else "")
        return "The organizers did not include this clip in the mash-up." + again
    if status == "rejected":
        return ("This file could not be used (the reason is above). Please upload a new file "
                "below." if campaign.accepting else
                "This file could not be used, and the campaign takes no new clips now.")
    if status == "failed":
        return ("Processing broke on our side, not yours. The organizers see it and can try "
                "again; you need not upload again.")
    return "You withdrew this clip and its files were deleted. Nothing more will happen."


def _mmss(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 60:02d}:{whole % 60:02d}"


@bp.post("/clip/<token>/replace")
@upload_limits
def replace(token: str):
    clip = services.get_clip(token)
    upload, spooled = uploaded_file("file")
    if upload is None:
        flash("Choose a video file to replace your clip.")
        return redirect(url_for("participate.status", token=token), code=303)
    services.replace_clip_file(clip, upload.stream, upload.filename or "", spooled_path=spooled)
    flash("Thank you: your new file is being checked.")
    return redirect(url_for("participate.status", token=token), code=303)


@bp.post("/clip/<token>/withdraw")
def withdraw(token: str):
    clip = services.get_clip(token)
    if request.form.get("confirm") != "yes":
        abort(400, "Tick the box to confirm that you want to withdraw your clip.")
    taken_down = services.withdraw_clip(clip)
    flash("Your clip was withdrawn and its files deleted."
          + (" The published mash-up showed it, so it was taken off the watch page until the "
             "organizers make a new one without you." if taken_down else ""))
    return redirect(url_for("participate.status", token=token), code=303)
