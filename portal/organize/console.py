"""The organizer's review tools: one clip at a time driven by the keyboard, bulk
decisions on a page of the list, and the contributors' CSV.

Every view loads its campaign or clip through :mod:`portal.policy` (404 for other
campaigns); bulk decisions touch only clips of the campaign in the URL."""

from __future__ import annotations

import csv
import io

from flask import Response, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from .. import review, services
from ..extensions import db
from ..models import Clip
from ..policy import allowed, campaign_for, clip_for
from ..security import safe_next
from ..states import CLIP_LABELS, is_moderatable
from . import bp

MAX_BULK = 1000  # ids in one bulk decision (a page holds at most 100)


@bp.get("/clips/<int:clip_id>/review")
def review_clip(clip_id: int):
    """One clip with its player, contact sheet, sync picture and checks, with the
    previous and next clips of the list it was opened from (the same filters and
    order, from the query string). Keys: see ``static/review.js``."""
    from flask_login import current_user

    clip = clip_for(clip_id, "view")
    campaign = clip.campaign
    query = review.ReviewQuery.from_args(request.args, campaign)
    previous_id, next_id = review.neighbours(campaign, query, clip)
    args = query.args(page=1)
    args.pop("page", None)
    list_url = url_for("organize.campaign", slug=campaign.slug, **query.args())
    next_url = (url_for("organize.review_clip", clip_id=next_id, **args) if next_id
                else list_url)
    previous_url = (url_for("organize.review_clip", clip_id=previous_id, **args)
                    if previous_id else None)
    here = url_for("organize.review_clip", clip_id=clip.id, **args)
    return render_template(
        "organize/review.html", clip=clip, campaign=campaign, query=query,
        labels=CLIP_LABELS, words=review.STATUS_WORDS, list_url=list_url,
        next_url=next_url, previous_url=previous_url, has_next=next_id is not None,
        here=here, moderatable=is_moderatable(clip),
        can=lambda action: allowed(current_user, action, campaign))


@bp.post("/c/<slug>/bulk")
def bulk_moderate(slug: str):
    """Approve or decline the ticked clips (form field ``clip``, repeated) of this
    campaign. Ids of other campaigns' clips are ignored."""
    campaign = campaign_for(slug, "moderate")
    ids = []
    ticked = request.form.getlist("clip")
    beyond = max(0, len(ticked) - MAX_BULK)
    for value in ticked[:MAX_BULK]:
        if value.isdigit() and len(value) <= 10:
            ids.append(int(value))
    decision = request.form.get("decision", "")
    fallback = url_for("organize.campaign", slug=campaign.slug)
    if not ids:
        flash("Tick the clips to decide on first.")
        return redirect(safe_next(request.form.get("next"), fallback), code=303)
    try:
        done = services.moderate_clips(review.clips_of(campaign, ids), decision,
                                       request.form.get("reason") or None)
    except services.ServiceError as exc:
        db.session.rollback()
        flash(exc.message)
    else:
        word = "Approved" if decision == "approved" else "Declined"
        skipped = len(ids) - done
        flash(f"{word} {done} clip(s)." + (f" {skipped} could not be decided (still "
                                            "processing, unusable, or not of this "
                                            "campaign)." if skipped else "")
              + (f" {beyond} more were not looked at: at most {MAX_BULK} clips are "
                 "decided at once." if beyond else ""))
    return redirect(safe_next(request.form.get("next"), fallback), code=303)


def _cell(value: object) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        text = "'" + text
    return text


@bp.get("/c/<slug>/contributors.csv")
def contributors_csv(slug: str):
    """Every contribution that was not withdrawn: name, part, location, consent time
    (UTC), the licence text they consented to, status, for credits and consent records.
    Owners only: it is every participant's personal data at once."""
    campaign = campaign_for(slug, "export")
    parts = {p.id: p.name for p in campaign.parts}

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "part", "location", "consent_at_utc", "licence", "status"])
    for clip in db.session.scalars(
            select(Clip).where(Clip.campaign_id == campaign.id, Clip.status != "withdrawn")
            .order_by(Clip.id).execution_options(yield_per=500)):
        writer.writerow([_cell(clip.display_name), _cell(parts.get(clip.part_id, "")),
                         _cell(clip.location), clip.consent_at.isoformat() + "Z",
                         _cell(clip.consent_licence if clip.consent_licence is not None
                               else campaign.licence), clip.status])
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = \
        f'attachment; filename="{campaign.slug}-contributors.csv"'
    response.headers["Cache-Control"] = "private, no-store"
    return response

