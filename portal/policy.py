"""Authorization: the one place that answers "may this organizer do this to this
campaign?".

Every organizer view loads its campaign, clip or render through
:func:`campaign_for`, :func:`clip_for` or :func:`render_for` with the action it
is about to do. An organizer who is not a member of the campaign gets a 404 (the
same answer as for a campaign that does not exist, so nobody learns which exist);
a member whose role does not allow the action gets a 403. Site administrators
(``tutti organizer create EMAIL --admin``) act as owners of every campaign.

Roles: *owner* may do everything; *moderator* may view, review clips, nudge
sync, set a clip's sound in the mix (``mix``) and make and cancel preview renders.
Bulk exports of participants' data (``export``: the contributors' CSV with every
name, place and consent, and a render's hand-off ZIP with every clip, the stems and
the credits) are the owners', who answer for the consent records.
"""

from __future__ import annotations

from flask import abort
from flask_login import current_user
from sqlalchemy import Select, select

from .extensions import db
from .models import Campaign, CampaignMember, Clip, Organizer, Render

MODERATOR_ACTIONS = frozenset({"view", "moderate", "nudge", "mix", "render_preview"})
OWNER_ACTIONS = MODERATOR_ACTIONS | frozenset(
    {"render_final", "publish", "settings", "members", "delete", "export"})
ACTIONS: dict[str, frozenset[str]] = {"owner": OWNER_ACTIONS, "moderator": MODERATOR_ACTIONS}


def role_in(organizer: Organizer | None, campaign: Campaign) -> str | None:
    """``"owner"``, ``"moderator"`` or None; administrators are owners everywhere."""
    if organizer is None or not getattr(organizer, "is_authenticated", False):
        return None
    if organizer.is_admin:
        return "owner"
    return db.session.scalar(select(CampaignMember.role).filter_by(
        campaign_id=campaign.id, organizer_id=organizer.id))


def allowed(organizer: Organizer | None, action: str, campaign: Campaign) -> bool:
    """May ``organizer`` do ``action`` (a name from :data:`OWNER_ACTIONS`) to ``campaign``?"""
    if action not in OWNER_ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    role = role_in(organizer, campaign)
    return role is not None and action in ACTIONS[role]


def authorize(action: str, campaign: Campaign | None) -> Campaign:
    """The campaign if the current organizer may do ``action`` to it; 404 when they
    are not one of its organizers (or it does not exist), 403 when their role is
    too small."""
    if campaign is None:
        abort(404)
    role = role_in(current_user, campaign)
    if role is None:
        abort(404)
    if action not in ACTIONS[role]:
        abort(403, f"Only an owner of this campaign may do this ({action}).")
    return campaign


def campaign_for(slug: str, action: str) -> Campaign:
    """The campaign with ``slug``, authorized for ``action`` (404/403 otherwise)."""
    return authorize(action, db.session.scalar(select(Campaign).filter_by(slug=slug)))


def clip_for(clip_id: int, action: str) -> Clip:
    """The clip with ``clip_id``, if the current organizer may do ``action`` to its campaign."""
    clip = db.session.get(Clip, clip_id)
    authorize(action, clip.campaign if clip else None)
    return clip


def render_for(render_id: int, action: str) -> Render:
    """The render with ``render_id``, if the current organizer may do ``action`` to
    its campaign. ``action="render"`` means the right to make (or cancel) this
    render's kind: ``render_preview`` or ``render_final``."""
    job = db.session.get(Render, render_id)
    if action == "render" and job is not None:
        action = render_action(job.kind)
    authorize(action, job.campaign if job else None)
    return job


def render_action(kind: str) -> str:
    """The action that making a render of ``kind`` (preview or final) needs."""
    return "render_preview" if kind == "preview" else "render_final"


def visible_campaigns(organizer: Organizer) -> Select:
    """A query of the campaigns ``organizer`` may see (all of them for an administrator)."""
    query = select(Campaign)
    if not organizer.is_admin:
        query = query.join(CampaignMember).filter(CampaignMember.organizer_id == organizer.id)
    return query
