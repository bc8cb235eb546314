"""Use cases shared by the views, the JSON API and the CLI.

They validate input, change rows through the state machines, commit, and only
then enqueue work by id (a task never sees a row that is not committed yet).
Errors are :class:`ServiceError` with a message for a person and an HTTP status.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from flask import current_app
from sqlalchemy import delete, func, or_, select, update

from . import states, waiting
from .broker import broker_redis
from .extensions import db
from .models import (
    ROLES,
    Campaign,
    CampaignInvite,
    CampaignMember,
    Clip,
    ClipEvent,
    Organizer,
    Part,
    Render,
    RenderTile,
    lease_now,
    new_token,
    token_digest,
    utcnow,
)
from .storage import Storage, TooLarge
from .throttle import upload_accepted
from .validation import InvalidText, clean_filename, clean_text

log = logging.getLogger(__name__)

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_PARTS = 50
MAX_DESCRIPTION = 5000
VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".3gp", ".3g2", ".ts",
                    ".mts", ".m2ts", ".ogv", ".flv", ".mpg", ".mpeg", ".wmv", ".qt"}
GUIDE_EXTENSIONS = VIDEO_EXTENSIONS | {".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".oga",
                                       ".opus"}
DEFAULT_PARTS = ("Soprano", "Alto", "Tenor", "Bass")


class ServiceError(Exception):
    """A request that cannot be done, with a message that says what to do."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field


def storage() -> Storage:
    return current_app.extensions["tutti.storage"]


def text(value: str | None, field: str, **rules: object) -> str:
    """:func:`portal.validation.clean_text` with its error as a 400 naming the field."""
    try:
        return clean_text(value, field, **rules)
    except InvalidText as exc:
        raise ServiceError(exc.message, 400, exc.field) from exc


# --- organizers --------------------------------------------------------------

def normalize_email(email: str) -> str:
    """An e-mail address as organizers are stored (trimmed, lower case); 400 when it
    is not one."""
    email = text(email, "email", max_length=254, label="e-mail address", name=False).lower()
    if not re.match(r"^[^@\s]+@[^@\s]+$", email):
        raise ServiceError(f"{email!r} is not an e-mail address", field="email")
    return email


def check_password_rules(password: str) -> None:
    """8 to 1024 characters (the upper bound keeps hashing cheap)."""
    if len(password) < 8:
        raise ServiceError("Choose a password of at least 8 characters", field="password")
    if len(password) > 1024:
        raise ServiceError("The password is too long (1024 characters at most)",
                           field="password")


def create_organizer(email: str, password: str, *, is_admin: bool = False) -> Organizer:
    email = normalize_email(email)
    check_password_rules(password)
    if db.session.scalar(select(Organizer).filter_by(email=email)):
        raise ServiceError(f"An organizer {email} exists already", status=409, field="email")
    organizer = Organizer(email=email, is_admin=is_admin)
    organizer.set_password(password)
    db.session.add(organizer)
    db.session.commit()
    return organizer


# --- campaigns -----------------------------------------------------------------

def get_campaign(slug: str) -> Campaign:
    campaign = None
    if SLUG_RE.match(slug or ""):  # anything else cannot be a slug (nor reach the database)
        campaign = db.session.scalar(select(Campaign).filter_by(slug=slug))
    if campaign is None:
        raise ServiceError(f"There is no campaign {slug!r}. Check the link you were given.",
                           status=404)
    return campaign


def create_campaign(
    slug: str,
    title: str,
    *,
    description: str = "",
    parts: Iterable[str] = DEFAULT_PARTS,
    guide_path: str | None = None,
    guide_filename: str | None = None,
    canvas: tuple[int, int] = (1280, 720),
    fps: int = 30,
    owner: Organizer | None = None,
) -> Campaign:
    """A new campaign; ``owner`` (the organizer who creates it) becomes its owner."""
    slug = (slug or "").strip().lower()
    if not SLUG_RE.match(slug):
        raise ServiceError("A campaign slug is 3-64 characters: lower-case letters, digits and "
                           "hyphens, not starting or ending with a hyphen (e.g. ode-to-joy)",
                           field="slug")
    title = text(title, "title", max_length=200)
    description = text(description, "description", max_length=MAX_DESCRIPTION,
                       multiline=True, name=False)
    if not title:
        raise ServiceError("Give the campaign a title", field="title")
    if db.session.scalar(select(Campaign).filter_by(slug=slug)):
        raise ServiceError(f"A campaign {slug!r} exists already", status=409, field="slug")
    width, height = canvas
    if width % 2 or height % 2 or not (160 <= width <= 3840 and 90 <= height <= 2160):
        raise ServiceError("The canvas must be even-sized, between 160×90 and 3840×2160",
                           field="canvas")
    if not 1 <= fps <= 60:
        raise ServiceError("The frame rate must be between 1 and 60", field="fps")
    names = [n for n in (text(p, "parts", max_length=80, label="part name") for p in parts) if n]
    if len(names) > MAX_PARTS:
        raise ServiceError(f"A campaign has at most {MAX_PARTS} parts", field="parts")
    if len({n.lower() for n in names}) != len(names):
        raise ServiceError("Part names must be different from each other", field="parts")
    campaign = Campaign(slug=slug, title=title, description=description,
                        canvas_width=width, canvas_height=height, fps=fps)
    campaign.parts = [Part(name=n, position=i) for i, n in enumerate(names)]
    if owner is not None:
        campaign.members = [CampaignMember(organizer_id=owner.id, role="owner")]
    db.session.add(campaign)
    db.session.flush()
    if guide_path:
        set_guide(campaign, guide_path, filename=guide_filename, commit=False)
    db.session.commit()
    log.info("campaign %s created", slug)
    return campaign


def update_campaign(campaign: Campaign, *, title: str, description: str, is_open: bool) -> None:
    """Change a campaign's title, call for contributions and whether it takes clips."""
    title = text(title, "title", max_length=200)
    if not title:
        raise ServiceError("Give the campaign a title", field="title")
    campaign.title = title
    campaign.description = text(description, "description", max_length=MAX_DESCRIPTION,
                                multiline=True, name=False)
    campaign.is_open = bool(is_open)
    db.session.commit()


#: canvas presets an organizer picks from: key -> (label, width, height)
CANVAS_PRESETS: dict[str, tuple[str, int, int]] = {
    "720p": ("720p landscape (1280×720)", 1280, 720),
    "1080p": ("1080p landscape (1920×1080)", 1920, 1080),
    "square": ("Square (1080×1080)", 1080, 1080),
    "vertical": ("Vertical 9:16 for phones (1080×1920)", 1080, 1920),
}
MAX_TARGET = 100_000
MAX_CLIP_SECONDS = 900  # what intake accepts at all (see workers.media.probe)


def canvas_preset(campaign: Campaign) -> str | None:
    """The key of the preset the campaign's canvas matches, or None for a custom size."""
    for key, (_label, width, height) in CANVAS_PRESETS.items():
        if (campaign.canvas_width, campaign.canvas_height) == (width, height):
            return key
    return None


def parse_parts(lines: str) -> list[tuple[str, int | None]]:
    """Parts as an organizer types them, one a line or comma-separated, each with an
    optional target count after a colon: ``"Soprano: 12"``. Returns (name, target)
    pairs; 400 ``parts`` when a target is not a whole number from 0 to 100000."""
    out = []
    for raw in lines.replace("\r", "").replace(",", "\n").split("\n"):
        name, _, target = raw.partition(":")
        name = text(name, "parts", max_length=80, label="part name")
        if not name:
            continue
        target = target.strip()
        count = None
        if target:
            if not target.isdigit() or int(target) > MAX_TARGET:
                raise ServiceError(f"The target of part {name!r} must be a whole number of "
                                   f"performers (0 to {MAX_TARGET}), as in “{name}: 12”.",
                                   field="parts")
            count = int(target) or None
        out.append((name, count))
    if len(out) > MAX_PARTS:
        raise ServiceError(f"A campaign has at most {MAX_PARTS} parts", field="parts")
    if len({n.lower() for n, _ in out}) != len(out):
        raise ServiceError("Part names must be different from each other", field="parts")
    return out


def parse_deadline(value: str | None) -> datetime | None:
    """A deadline from a form (``YYYY-MM-DDTHH:MM`` or ``YYYY-MM-DD``, in UTC; a UTC offset,
    as in ``2030-06-01T12:00+05:00``, is converted to UTC), or None when empty; 400
    ``deadline`` when it is not a date."""
    value = (value or "").strip()
    if not value:
        return None
    if len(value) <= 40:
        try:  # ISO 8601, with or without seconds and a UTC offset (kept as UTC)
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is not None:
                moment = moment.astimezone(UTC).replace(tzinfo=None)
            return moment.replace(microsecond=0)
        except (ValueError, OverflowError):  # not a date, or beyond year 1 or 9999 in UTC
            pass
    raise ServiceError("Write the deadline as a date and time, e.g. 2027-03-01T18:00 (UTC).",
                       field="deadline")


def update_settings(campaign: Campaign, form: dict) -> None:
    """Change a campaign's settings from a settings form. Fields absent from ``form``
    keep their value, except ``is_open`` (a checkbox: absent means closed).

    Fields: ``title``, ``description``, ``licence``, ``is_open`` ("yes"), ``deadline``
    (see :func:`parse_deadline`), ``canvas`` (a key of :data:`CANVAS_PRESETS`),
    ``max_clip_seconds`` (1-900, empty for no limit), ``parts`` (see
    :func:`parse_parts`). A part that has clips cannot be removed (409): its clips
    would lose their part. Nothing changes when any field is wrong (the caller rolls
    back)."""
    if "title" in form:
        title = text(form.get("title"), "title", max_length=200)
        if not title:
            raise ServiceError("Give the campaign a title", field="title")
        campaign.title = title
    if "description" in form:
        campaign.description = text(form.get("description"), "description",
                                    max_length=MAX_DESCRIPTION, multiline=True, name=False)
    if "licence" in form:
        licence = text(form.get("licence"), "licence", max_length=200, name=False)
        if not licence:
            raise ServiceError("Say under which licence the clips are used (e.g. CC BY 4.0).",
                               field="licence")
        campaign.licence = licence
    campaign.is_open = form.get("is_open") == "yes"
    if "deadline" in form:
        campaign.deadline = parse_deadline(form.get("deadline"))
    if form.get("canvas"):
        preset = CANVAS_PRESETS.get(str(form.get("canvas")))
        if preset is None:
            raise ServiceError(f"The canvas is one of: {', '.join(CANVAS_PRESETS)}",
                               field="canvas")
        _label, campaign.canvas_width, campaign.canvas_height = preset
        campaign.tile_width = campaign.canvas_width // 2 // 2 * 2
        campaign.tile_height = campaign.canvas_height // 2 // 2 * 2
    if "max_clip_seconds" in form:
        raw = str(form.get("max_clip_seconds") or "").strip()
        if not raw:
            campaign.max_clip_seconds = None
        else:
            try:
                seconds = float(raw)
            except ValueError:
                seconds = -1.0
            if not (math.isfinite(seconds) and 1 <= seconds <= MAX_CLIP_SECONDS):
                raise ServiceError(f"The longest clip is a number of seconds from 1 to "
                                   f"{MAX_CLIP_SECONDS}, or empty for no limit.",
                                   field="max_clip_seconds")
            campaign.max_clip_seconds = seconds
    if "parts" in form:
        _set_parts(campaign, parse_parts(str(form.get("parts") or "")))
    db.session.commit()


def _set_parts(campaign: Campaign, wanted: list[tuple[str, int | None]]) -> None:
    """Rename nothing, keep the ids of the parts that stay (their clips keep them), add
    the new ones, remove the ones left out when no clip has them."""
    from sqlalchemy import func

    existing = {p.name.lower(): p for p in campaign.parts}
    keep = {name.lower() for name, _ in wanted}
    for key, part in existing.items():
        if key in keep:
            continue
        used = db.session.scalar(select(func.count(Clip.id)).where(Clip.part_id == part.id))
        if used:
            raise ServiceError(f"The part {part.name!r} has {used} clip(s), so it stays. "
                               "Keep it in the list (you may give it a target of 0).", 409,
                               field="parts")
        campaign.parts.remove(part)
    db.session.flush()
    for position, (name, target) in enumerate(wanted):
        part = existing.get(name.lower())
        if part is None:
            part = Part(name=name, campaign=campaign)
            campaign.parts.append(part)
        part.name = name
        part.position = position
        part.target_count = target


def set_guide(campaign: Campaign, path: str, *, filename: str | None = None,
              commit: bool = True) -> None:
    """Store a guide track (audio or video) and measure it."""
    from workers.media.audio import NoAudio, decode_audio

    ext = os.path.splitext(filename or path)[1].lower()
    if ext not in GUIDE_EXTENSIONS:
        raise ServiceError("The guide must be an audio or video file (WAV, MP3, M4A, FLAC, OGG, "
                           "MP4, MOV, WebM ...)", field="guide")
    try:
        samples = decode_audio(path, sample_rate=8000, max_seconds=3600)
    except NoAudio as exc:
        raise ServiceError(f"The guide has no sound we can read: {exc}", field="guide") from exc
    except Exception as exc:  # noqa: BLE001 - any decoder failure means an unusable guide
        raise ServiceError("The guide could not be read as audio. Upload a WAV, MP3, M4A or "
                           "MP4 file.", field="guide") from exc
    if len(samples) < 8000:
        raise ServiceError("The guide is shorter than one second", field="guide")
    key = f"campaigns/{campaign.slug}/guide{ext}"
    storage().put_file(key, path)
    campaign.guide_key = key
    campaign.guide_duration = len(samples) / 8000.0
    if commit:
        db.session.commit()


# --- members and invites -----------------------------------------------------------

def _check_role(role: str) -> str:
    role = (role or "").strip().lower()
    if role not in ROLES:
        raise ServiceError(f"A role is one of: {', '.join(ROLES)}", field="role")
    return role


def add_member(campaign: Campaign, email: str, role: str) -> CampaignMember:
    """Give the existing organizer with ``email`` a ``role`` in ``campaign`` (or change
    their role). 404 when nobody has that e-mail address. For the command line (an
    administrator's tool): the web form sends an invite instead (see
    :func:`create_invite`), so that it tells nobody which addresses have accounts."""
    role = _check_role(role)
    organizer = db.session.scalar(select(Organizer).filter_by(email=normalize_email(email)))
    if organizer is None:
        raise ServiceError(f"There is no organizer with the e-mail address {email.strip()}. "
                           "Send them an invite link instead, or ask an administrator to "
                           "create their account (`tutti organizer create EMAIL`).", 404, "email")
    return _set_role(campaign, organizer, role)


def _set_role(campaign: Campaign, organizer: Organizer, role: str) -> CampaignMember:
    member = db.session.scalar(select(CampaignMember).filter_by(
        campaign_id=campaign.id, organizer_id=organizer.id))
    if member is None:
        member = CampaignMember(campaign_id=campaign.id, organizer_id=organizer.id, role=role)
        db.session.add(member)
    else:
        if member.role == "owner" and role != "owner":
            _keep_an_owner(campaign, member)
        member.role = role
    db.session.commit()
    log.info("campaign %s: organizer %s is %s", campaign.slug, organizer.id, role)
    return member


def _keep_an_owner(campaign: Campaign, leaving: CampaignMember) -> None:
    """409 unless someone besides ``leaving`` owns ``campaign``. The owners' rows are
    locked (``SELECT ... FOR UPDATE`` on PostgreSQL, in id order) until the caller
    commits, so two owners removing each other at once cannot both pass: the second
    waits, then sees the first's change."""
    owners = [m for m in db.session.scalars(
        select(CampaignMember).where(CampaignMember.campaign_id == campaign.id,
                                     CampaignMember.role == "owner")
        .order_by(CampaignMember.id).with_for_update()
        .execution_options(populate_existing=True))
        if m.id != leaving.id]
    if not owners:
        raise ServiceError("A campaign keeps at least one owner: make someone else an owner "
                           "first.", 409)


def remove_member(campaign: Campaign, member_id: int) -> None:
    member = db.session.get(CampaignMember, member_id)
    if member is None or member.campaign_id != campaign.id:
        raise ServiceError("There is no such member in this campaign.", 404)
    if member.role == "owner":
        _keep_an_owner(campaign, member)
    db.session.delete(member)
    db.session.commit()


def create_invite(campaign: Campaign, role: str, by: Organizer | None = None,
                  hours: float | None = None, email: str | None = None) -> str:
    """A single-use invite to join ``campaign`` with ``role``; returns its secret
    token (the database keeps only its digest). It expires after ``hours``
    (``INVITE_HOURS`` by default). With ``email``, only the organizer logged in
    with that address may accept it; the address is not looked up (whether such an
    organizer exists changes nothing here, nor in the time it takes)."""
    role = _check_role(role)
    if email is not None:
        email = normalize_email(email)
    hours = float(current_app.config["INVITE_HOURS"] if hours is None else hours)
    token = new_token()
    db.session.add(CampaignInvite(campaign_id=campaign.id, token_hash=token_digest(token),
                                  role=role, created_by_id=by.id if by else None,
                                  email=email, expires_at=utcnow() + timedelta(hours=hours)))
    db.session.commit()
    return token


def revoke_invite(campaign: Campaign, invite_id: int) -> None:
    """Delete an invite of ``campaign`` so that its link stops working."""
    invite = db.session.get(CampaignInvite, invite_id)
    if invite is None or invite.campaign_id != campaign.id:
        raise ServiceError("There is no such invite in this campaign.", 404)
    db.session.delete(invite)
    db.session.commit()


def find_invite(token: str) -> CampaignInvite:
    """The open invite with ``token``: 404 when unknown, 410 when used or expired."""
    invite = None
    if TOKEN_RE.match(token or ""):
        invite = db.session.scalar(select(CampaignInvite).filter_by(
            token_hash=token_digest(token)))
    if invite is None:
        raise ServiceError("This invite link is not valid. Ask the campaign's owner for a "
                           "new one.", 404)
    if invite.used_at is not None or invite.expires_at < utcnow():
        raise ServiceError("This invite link was used already or has expired. Ask the "
                           "campaign's owner for a new one.", 410)
    return invite


def accept_invite(token: str, organizer: Organizer) -> CampaignMember:
    """``organizer`` joins the invite's campaign with its role; the invite is spent.
    403 (and the invite kept) when it was sent to another e-mail address."""
    invite = find_invite(token)
    if invite.email is not None and invite.email != organizer.email:
        raise ServiceError("This invite was sent to another e-mail address. Log in with the "
                           "address it was sent to, or ask the campaign's owner for a link "
                           "for yours.", 403)
    # spend the link atomically: of several organizers accepting it at once, the
    # database lets exactly one UPDATE find it unused
    spent = db.session.execute(
        update(CampaignInvite).where(CampaignInvite.id == invite.id,
                                     CampaignInvite.used_at.is_(None))
        .values(used_at=utcnow(), used_by_id=organizer.id)
        .execution_options(synchronize_session=False))
    if spent.rowcount != 1:
        db.session.rollback()
        raise ServiceError("This invite link was used already or has expired. Ask the "
                           "campaign's owner for a new one.", 410)
    current = db.session.scalar(select(CampaignMember).filter_by(
        campaign_id=invite.campaign_id, organizer_id=organizer.id))
    if current is not None and current.role == "owner":
        db.session.commit()  # an owner keeps owning; the link is spent all the same
        return current
    return _set_role(invite.campaign, organizer, invite.role)


def delete_campaign(campaign: Campaign) -> None:
    """Delete ``campaign``, its rows and every file that belongs to it: originals,
    normalized clips, thumbnails, sync pictures, proxies, renders, the guide. The
    participants' private links answer 404 afterwards (hand-off ZIPs too)."""
    store = storage()
    slug, campaign_id = campaign.slug, campaign.id
    prefixes = [f"clips/{folder}" for row in db.session.execute(
        select(Clip.token, Clip.media_id).filter_by(campaign_id=campaign_id))
        for folder in row]  # files from before media ids live under the token
    prefixes += [f"campaigns/{slug}", f"renders/{slug}", f"proxies/{campaign_id}",
                 f"handoffs/{campaign_id}"]
    campaign.published_render_id = None
    # tile maps go first, in one statement (SQLite does not enforce their foreign keys)
    db.session.execute(delete(RenderTile).where(RenderTile.render_id.in_(
        select(Render.id).where(Render.campaign_id == campaign_id))))
    db.session.flush()
    db.session.delete(campaign)
    db.session.commit()
    for prefix in prefixes:
        store.delete_prefix(prefix)
    from .uploads import drop_campaign_uploads

    drop_campaign_uploads(store.tmp_dir, campaign_id, slug)  # unfinished resumable uploads
    log.info("campaign %s deleted with %d file folder(s)", slug, len(prefixes))


# --- clips ---------------------------------------------------------------------

def get_clip(token: str) -> Clip:
    clip = None
    if TOKEN_RE.match(token or ""):
        clip = db.session.scalar(select(Clip).filter_by(token=token))
    if clip is None:
        raise ServiceError("There is no clip at this link. Check that you copied it whole.",
                           status=404)
    return clip


def closed_message(campaign: Campaign) -> str:
    """What a participant reads when ``campaign`` takes no more clips."""
    if campaign.is_open and campaign.deadline is not None:
        return (f"The deadline for this campaign was {campaign.deadline:%Y-%m-%d %H:%M} UTC: "
                "it takes no more contributions.")
    return "This campaign is closed and takes no more contributions."


def validate_submission(campaign: Campaign, *, name: str, part: str = "", location: str = "",
                        consent: bool, check_open: bool = True) -> tuple[str, str, Part | None]:
    """The form checks of a contribution, shared by plain and resumable uploads.
    Returns the cleaned name, location and part. ``check_open=False`` for a resumable
    upload that was started while the campaign took contributions: it may finish after
    the campaign closed (the participant's take is not thrown away mid-upload)."""
    if check_open and not campaign.accepting:
        raise ServiceError(closed_message(campaign), 403)
    name = text(name, "name", max_length=120)
    if not name:
        raise ServiceError("Please give the name to show in the credits.", field="name")
    if not consent:
        raise ServiceError(f"Please agree to the campaign's licence ({campaign.licence}) so that "
                           "your clip can be used in the mash-up.", field="consent")
    location = text(location, "location", max_length=120)
    part = text(part, "part", max_length=80)
    part_row = None
    if part:
        part_row = campaign.part_named(part)
        if part_row is None:
            choices = ", ".join(p.name for p in campaign.parts) or "none"
            raise ServiceError(f"Unknown part {part!r}. Choose one of: {choices}.", field="part")
    elif campaign.parts:
        choices = ", ".join(p.name for p in campaign.parts)
        raise ServiceError(f"Please choose your part ({choices}).", field="part")
    return name, location, part_row


def submit_clip(
    campaign: Campaign,
    stream: BinaryIO | None,
    filename: str,
    *,
    name: str,
    part: str = "",
    location: str = "",
    consent: bool,
    spooled_path: str | None = None,
    record_timing: dict | None = None,
    check_open: bool = True,
    token: str | None = None,
) -> Clip:
    """Accept an upload: validate the form, store the original, record the clip,
    commit, then enqueue intake. ``spooled_path`` is a finished upload on our
    filesystem (moved, not copied); otherwise ``stream`` is copied in chunks.
    ``record_timing``: what the recording page measured (a take recorded along the
    guide; :meth:`workers.media.align.prior.RecordTiming.to_json_dict`), kept on the
    clip for the aligner to check against the sound. ``check_open``: see
    :func:`validate_submission`. ``token``: the clip's private token when it must be
    known before (a resumable upload's, so that it is made once); a new one otherwise.
    Raises IntegrityError when a clip already has that token (nothing is kept)."""
    name, location, part_row = validate_submission(campaign, name=name, part=part,
                                                   location=location, consent=consent,
                                                   check_open=check_open)
    filename = filename_of(filename)
    if stream is None and spooled_path is None:
        raise ServiceError("Please choose a video file to upload.", field="file")
    clip = Clip(token=token or new_token(), media_id=new_token(), campaign=campaign,
                part=part_row,
                display_name=name, location=location, consent_licence=campaign.licence,
                original_filename=filename, original_key="", record_timing=record_timing)
    try:
        key, size = _store_original(clip.media_id, stream, filename, spooled_path)
    except ServiceError:
        storage().delete_prefix(f"clips/{clip.media_id}")
        raise
    if size == 0:
        storage().delete_prefix(f"clips/{clip.media_id}")
        raise ServiceError("The file is empty. Please choose the video again.", field="file")
    clip.original_key = key
    clip.size_bytes = size
    db.session.add(clip)
    clip.events.append(ClipEvent(status="received"))
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        storage().delete_prefix(f"clips/{clip.media_id}")
        raise
    log.info("clip %s received for %s (%d bytes)", clip.id, campaign.slug, size)
    upload_accepted()
    enqueue("tutti.intake_clip", clip.id)
    return clip


def filename_of(filename: str | None) -> str:
    """The client's file name as kept on the clip (400 ``filename`` when unusable)."""
    try:
        return clean_filename(filename)
    except InvalidText as exc:
        raise ServiceError(exc.message, 400, exc.field) from exc


def _store_original(folder: str, stream: BinaryIO | None, filename: str,
                    spooled_path: str | None) -> tuple[str, int]:
    """Store an uploaded file as the clip's original, atomically and within the size
    limit: a finished spooled upload is linked in, a stream is copied in chunks.
    Returns the key and the size; over the limit nothing new is kept (413)."""
    ext = os.path.splitext(filename or "")[1].lower()
    if ext not in VIDEO_EXTENSIONS:
        ext = ".bin"  # probed by content anyway; the extension is only a hint
    key = f"clips/{folder}/original{ext}"
    max_bytes = int(current_app.config["MAX_CONTENT_LENGTH"])
    try:
        if spooled_path is not None:
            if os.path.getsize(spooled_path) > max_bytes:
                raise TooLarge()
            size = storage().put_file(key, spooled_path, move=True)
        else:
            size = storage().put_stream(key, stream, max_bytes=max_bytes)
    except TooLarge as exc:
        raise ServiceError(f"The file is larger than {max_bytes // (1024 * 1024)} MB. Please "
                           "upload a shorter or smaller video.", status=413, field="file") from exc
    except OSError as exc:
        from . import DISK_FULL_MESSAGE, is_disk_full

        if not is_disk_full(exc):
            raise
        log.error("clip file %s: the media disk is full: %s", key, exc)
        raise ServiceError(DISK_FULL_MESSAGE, status=507, field="file") from exc
    return key, size


def replace_clip_file(clip: Clip, stream: BinaryIO | None, filename: str,
                      spooled_path: str | None = None) -> Clip:
    """The participant uploads a new file for the same clip: intake starts again."""
    if clip.status == "withdrawn":
        raise ServiceError("This clip was withdrawn; submit a new one from the campaign page.",
                           409)
    filename = filename_of(filename)
    key, size = _store_original(clip.media_id, stream, filename, spooled_path)
    if key != clip.original_key:
        storage().delete(clip.original_key)
    clip.original_key = key
    clip.original_filename = filename
    clip.size_bytes = size
    for old in (clip.normalized_key, clip.thumbnail_key, clip.sync_plot_key,
                clip.contact_sheet_key):
        storage().delete(old)
    clip.normalized_key = clip.thumbnail_key = clip.sync_plot_key = None
    clip.contact_sheet_key = None
    clip.media = clip.checks = None
    clip.offset_seconds = clip.sync_confidence = clip.drift_ppm = None
    clip.sync_method = clip.sync_state = None
    clip.lease_until = clip.lease_owner = None  # a worker still on the old file records nothing
    clip.attempts = 0
    states.move_clip(clip, "received", "a new file was uploaded")
    db.session.commit()
    upload_accepted()
    enqueue("tutti.intake_clip", clip.id)
    return clip


def withdraw_clip(clip: Clip) -> bool:
    """The participant takes their clip back. Its files are deleted (original,
    normalized, thumbnail, contact sheet, sync picture, render proxies), and so is
    every render file that shows it: a published mash-up with the clip in it is
    taken off the watch page at once (the campaign's ``rerender_reason`` tells the
    organizers why and what to do), older and preview renders with it lose their
    file, and the participant's name and place are removed from those renders'
    specs. A render still running with the clip is not published when it ends
    (see :func:`workers.pipeline._finish_render`). Returns True when the
    published mash-up was taken down."""
    if clip.status == "withdrawn":
        return False
    states.move_clip(clip, "withdrawn", "withdrawn by the participant")
    _drop_proxies(clip)
    for key in (clip.original_key, clip.normalized_key, clip.thumbnail_key, clip.sync_plot_key,
                clip.contact_sheet_key):
        storage().delete(key)
    taken_down = _drop_from_renders(clip)
    db.session.commit()
    return taken_down


def _drop_proxies(clip: Clip) -> None:
    """Delete the cell-size proxies made from ``clip``'s normalized file (named by a
    digest of that file, so this runs before the file goes)."""
    from workers.media.proxies import _source_digest

    if not clip.normalized_key or not storage().exists(clip.normalized_key):
        return
    digest = _source_digest(str(storage().path(clip.normalized_key)))
    folder = storage().path(f"proxies/{clip.campaign_id}")
    for path in folder.glob(f"{digest}*") if folder.is_dir() else []:
        path.unlink(missing_ok=True)


def _drop_from_renders(clip: Clip) -> bool:
    """Remove what the campaign's renders keep of ``clip`` (see :func:`withdraw_clip`);
    the caller commits. True when the published render was one of them."""
    campaign = clip.campaign
    taken_down = False
    renders = db.session.scalars(  # locked: a render finishing now waits, or is seen done
        select(Render).filter_by(campaign_id=campaign.id).order_by(Render.id)
        .with_for_update().execution_options(populate_existing=True)).all()
    db.session.refresh(campaign, attribute_names=["published_render_id"])
    for job in renders:
        if not job.clip_ids or clip.id not in job.clip_ids:
            continue
        if job.status == "done":  # a running one is refused when it finishes
            storage().delete_prefix(f"renders/{campaign.slug}/{job.token}")
            job.output_key = job.poster_key = None
            job.reason = ("Its file was deleted: a performer in it withdrew their clip. "
                          "Render again to make one without them.")
        if job.handoff_key or job.handoff_state:  # the ZIP holds the clip, name and place
            if job.handoff_key:
                storage().delete(job.handoff_key)
            job.handoff_key = job.handoff_state = None
            job.handoff_reason = None
        if job.spec:
            job.spec = {**job.spec, "clips": [
                {**c, "name": "", "location": ""} if c.get("id") == clip.token else c
                for c in job.spec.get("clips", [])]}
        if job.appearances and clip.token in job.appearances:
            job.appearances = {k: v for k, v in job.appearances.items() if k != clip.token}
        db.session.execute(delete(RenderTile).where(RenderTile.render_id == job.id,
                                                    RenderTile.clip_id == clip.id))
        if campaign.published_render_id == job.id:
            campaign.published_render_id = None
            taken_down = True
    if taken_down:
        when = utcnow().strftime("%Y-%m-%d %H:%M")
        campaign.rerender_reason = (
            f"{clip.display_name} ({clip.part_name or 'no part'}) withdrew their clip on "
            f"{when} UTC. It was in the published mash-up, so that mash-up was taken off the "
            "watch page and its file deleted. Render a new final to publish the mash-up "
            "again without them.")
        log.info("campaign %s: published render taken down, clip %s withdrawn", campaign.slug,
                 clip.id)
    return taken_down


def moderate_clip(clip: Clip, decision: str, reason: str | None = None) -> None:
    """Approve or decline ``clip`` (commits). The clip's row is read again under a row lock
    (PostgreSQL), so two moderators or a double click decide once: one event, not one per
    request. Declining a declined clip with another reason replaces the reason (a new
    event), so the participant reads the one the organizer wrote last."""
    if decision not in ("approved", "declined"):
        raise ServiceError("A decision is 'approved' or 'declined'")
    reason = text(reason, "reason", max_length=2000, multiline=True, name=False) or None
    db.session.flush()  # the caller's changes to the clip are kept, then read under the lock
    db.session.refresh(clip, with_for_update=True)
    if not states.is_moderatable(clip):
        raise ServiceError(f"This clip is {clip.status}; only processed clips can be moderated.",
                           409)
    if clip.status != decision:
        states.move_clip(clip, decision, reason)
    elif decision == "declined" and reason and reason != clip.reason:
        clip.reason = reason
        clip.updated_at = utcnow()
        clip.events.append(ClipEvent(status="declined", reason=reason))
    db.session.commit()


def moderate_clips(clips: Iterable[Clip], decision: str, reason: str | None = None) -> int:
    """Approve or decline several clips at once (one commit). Clips that cannot be
    moderated (still processing, rejected, withdrawn) are skipped; returns how many
    were decided."""
    if decision not in ("approved", "declined"):
        raise ServiceError("A decision is 'approved' or 'declined'")
    reason = text(reason, "reason", max_length=2000, multiline=True, name=False) or None
    done = 0
    for clip in clips:
        if not states.is_moderatable(clip):
            continue
        if clip.status != decision:
            states.move_clip(clip, decision, reason)
        done += 1
    db.session.commit()
    return done


def nudge_clip(clip: Clip, nudge_ms: int) -> None:
    if abs(nudge_ms) > 600_000:
        raise ServiceError("A nudge is at most ±600000 ms", field="nudge_ms")
    clip.nudge_ms = int(nudge_ms)
    db.session.commit()


def choose_sync_offset(clip: Clip, offset_seconds: float, who: str = "an organizer") -> None:
    """An organizer confirmed an offset by ear (one of the aligner's candidates, or their
    own): it becomes the clip's offset, the nudge is cleared, and a clip that needed a manual
    sync check is synced (method ``manual``, confidence 1)."""
    if not math.isfinite(offset_seconds) or abs(offset_seconds) > 600:
        raise ServiceError("An offset is a number of seconds between -600 and 600.",
                           field="offset_seconds")
    if not clip.campaign.guide_key:
        raise ServiceError("This campaign has no guide track, so its clips are not synced.",
                           409)
    clip.offset_seconds = float(offset_seconds)
    clip.nudge_ms = 0
    clip.sync_method = "manual"
    clip.sync_confidence = 1.0
    clip.sync_state = "done"
    if clip.status in ("normalized", "needs_sync", "synced"):
        states.move_clip(clip, "synced", f"offset {offset_seconds:+.3f} s chosen by ear by {who}")
    db.session.commit()


MAX_LEVEL_DB = 24.0


def set_clip_sound(clip: Clip, form: dict) -> None:
    """The organizer's sound controls for ``clip`` from a form (strings, as posted):
    ``level_db`` (-60..+24 dB on top of the loudness match), ``pan`` (-1 left .. 1
    right, or -100..100 as the page's slider sends it with ``pan_percent``),
    ``loudness_match``, ``muted``, ``hidden``, ``cleanup``, ``timing`` (the time map)
    (checkboxes: present and "on"/
    "yes"/"1"/"true" is on, absent is off). ServiceError (400, naming the field) for a
    value out of range; nothing is changed then."""
    def number(name: str, lo: float, hi: float, scale: float = 1.0) -> float:
        raw = str(form.get(name, "0")).strip() or "0"
        try:
            value = float(raw) / scale
        except ValueError:
            raise ServiceError(f"{name.replace('_', ' ')} must be a number, e.g. -3.5",
                               field=name) from None
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ServiceError(f"{name.replace('_', ' ')} must be between {lo * scale:g} and "
                               f"{hi * scale:g}", field=name)
        return value

    def flag(name: str) -> bool:
        return str(form.get(name, "")).lower() in ("1", "yes", "on", "true")

    level = number("level_db", -60.0, MAX_LEVEL_DB)
    pan = (number("pan_percent", -1.0, 1.0, 100.0) if "pan_percent" in form
           else number("pan", -1.0, 1.0))
    hidden = flag("hidden")
    if hidden and not clip.hidden:
        others = db.session.scalar(select(func.count(Clip.id)).filter(
            Clip.campaign_id == clip.campaign_id, Clip.status == "approved",
            Clip.id != clip.id, Clip.hidden.is_(False)))
        if clip.status == "approved" and not others:
            raise ServiceError("This is the only approved clip shown: a render needs at least "
                               "one clip in the picture. Approve another first.", 409,
                               field="hidden")
    clip.sound_level_db = round(level, 2)
    clip.pan = round(pan, 3)
    clip.loudness_match = flag("loudness_match")
    clip.muted = flag("muted")
    clip.hidden = hidden
    clip.cleanup = flag("cleanup")
    clip.timing = flag("timing")
    db.session.commit()


def set_timing_limits(campaign: Campaign, form: dict) -> None:
    """How far time maps may pull this campaign's takes: ``max_shift_ms`` (0..300 ms
    around the take's tempo line) and ``max_tempo_pct`` (0..3 % of tempo). ServiceError
    (400, naming the field) otherwise; nothing changed then. Maps fitted under other
    limits are fitted again at the next render."""
    from workers.media.timemap import MAX_TEMPO

    try:
        shift = int(str(form.get("max_shift_ms", "")).strip())
    except ValueError:
        raise ServiceError("The shift is a whole number of milliseconds, e.g. 80.",
                           field="max_shift_ms") from None
    try:
        tempo = float(str(form.get("max_tempo_pct", "")).strip())
    except ValueError:
        raise ServiceError("The tempo limit is a percentage, e.g. 3.", field="max_tempo_pct") \
            from None
    if not 0 <= shift <= 300:
        raise ServiceError("The shift is between 0 and 300 ms.", field="max_shift_ms")
    if not (math.isfinite(tempo) and 0 <= tempo <= MAX_TEMPO * 100):
        raise ServiceError(f"The tempo limit is between 0 and {MAX_TEMPO * 100:g} %.",
                           field="max_tempo_pct")
    campaign.timing_max_shift_ms = shift
    campaign.timing_max_tempo_pct = round(tempo, 2)
    db.session.commit()


def retry_clip(clip: Clip) -> None:
    if clip.status not in ("failed",):
        raise ServiceError("Only a clip whose processing failed can be retried.", 409)
    clip.lease_until = clip.lease_owner = None
    states.move_clip(clip, "received", "retry requested")
    db.session.commit()
    enqueue("tutti.intake_clip", clip.id)


# --- renders -------------------------------------------------------------------

def approved_clips(campaign: Campaign) -> list[Clip]:
    return list(db.session.scalars(
        select(Clip).filter_by(campaign_id=campaign.id, status="approved").order_by(Clip.id)
    ))


RENDER_LAYOUTS = ("grid", "sections", "montage")
RENDER_AUDIO = ("auto", "guide", "mix", "guide+mix")


def render_options(form: dict) -> dict:
    """The organizer's render choices, checked: layout, labels, intro, credits, audio,
    reverb (the mix in one shared room)."""
    layout = (form.get("layout") or "grid").strip()
    if layout not in RENDER_LAYOUTS:
        raise ServiceError(f"Layout is one of {', '.join(RENDER_LAYOUTS)}", field="layout")
    audio = (form.get("audio") or "auto").strip()
    if audio not in RENDER_AUDIO:
        raise ServiceError(f"Audio is one of {', '.join(RENDER_AUDIO)}", field="audio")

    def flag(name: str) -> bool:
        return str(form.get(name, "")).lower() in ("1", "yes", "on", "true")

    options = {"layout": layout, "labels": flag("labels"), "intro": flag("intro"),
               "credits": flag("credits"), "audio": audio}
    if flag("reverb"):  # only when asked: renders made before keep their options' shape
        options["reverb"] = True
    return options


def request_key(campaign: Campaign, kind: str, options: dict, publish: bool) -> str:
    """What a render request asks for, as a digest: the spec it would render now (the
    approved clips, their offsets and names, the options) and whether it publishes. Two
    requests with the same key while one is pending are one render."""
    import hashlib
    import json

    from workers.pipeline import build_spec

    clips = [c for c in approved_clips(campaign) if c.normalized_key]
    spec = build_spec(campaign, clips, kind, options)
    text = json.dumps({"campaign": campaign.id, "spec": spec, "publish": publish},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def request_render(campaign: Campaign, kind: str = "final", publish: bool | None = None,
                   options: dict | None = None) -> Render:
    """Queue a render of the campaign's approved clips (or return the pending one that
    renders the very same thing: asking twice at once gives one render). A render that
    publishes replaces the older ones still pending that would publish: those still queued
    are cancelled, those running are asked to stop; whatever finishes, the newest request
    is what gets published (see ``workers.pipeline._finish_render``)."""
    from sqlalchemy.exc import IntegrityError

    if kind not in ("preview", "final"):
        raise ServiceError("A render is a 'preview' or a 'final'", field="kind")
    options = render_options(options or {})
    if options["audio"] in ("guide", "guide+mix") and not campaign.guide_key:
        raise ServiceError("This campaign has no guide track to put in the sound.", field="audio")
    approved = approved_clips(campaign)
    if not approved:
        raise ServiceError("There are no approved clips yet: approve at least one clip, then "
                           "render.", 409)
    if all(c.hidden for c in approved):
        # the hide form keeps one approved clip shown, but declining the last shown one
        # leaves only hidden ones: refused here, not as a failed render
        raise ServiceError("Every approved clip is hidden (heard, not seen): a render needs "
                           "at least one clip in the picture. Show one on its clip page, or "
                           "approve another.", 409)
    publish = (kind == "final") if publish is None else publish
    key = request_key(campaign, kind, options, publish)
    pending = db.session.scalar(select(Render).filter_by(request_key=key))
    if pending is not None:
        log.info("render %s: asked for again while pending; one render", pending.id)
        return pending
    campaign_id = campaign.id
    render = Render(campaign=campaign, kind=kind, options=options, publish=publish,
                    request_key=key)
    db.session.add(render)
    try:
        db.session.flush()  # its id, for the older renders' reason
        if publish:
            # in the same transaction as the new row: whoever asks next sees both the new
            # render and the older ones let go (their keys freed), or neither
            _supersede(campaign_id, render)
        db.session.commit()
    except IntegrityError:  # the same request, committed a moment before by another process
        db.session.rollback()
        pending = db.session.scalar(select(Render).filter_by(request_key=key))
        if pending is None:
            raise
        log.info("render %s: asked for twice at once; one render", pending.id)
        return pending
    enqueue("tutti.render", render.id)
    return render


def _supersede(campaign_id: int, newer: Render) -> None:
    """Older pending renders of the campaign that would publish give way to ``newer``
    (the caller commits). Each gives up its request key at once, also one still running
    and only asked to stop: a request for the same thing, coming while it stops, is a
    new render (the newest request), never merged into one that ends cancelled."""
    older = db.session.scalars(select(Render).where(
        Render.campaign_id == campaign_id, Render.id < newer.id, Render.publish.is_(True),
        Render.status.in_(states.RENDER_PENDING)).order_by(Render.id).with_for_update())
    reason = f"replaced by a newer request (render {newer.id}) before it finished"
    for job in older:
        if job.status == "queued":
            states.move_render(job, "cancelled", reason)
        else:
            job.cancel_requested = True
            job.reason = reason
            job.request_key = None
        log.info("render %s: %s", job.id, reason)


def request_handoff(render: Render) -> None:
    """Ask for the hand-off ZIP of a finished render (built by a worker:
    ``tutti.export_render``). ServiceError 409 when the render is not done."""
    if render.status in ("failed", "cancelled"):
        raise ServiceError(f"Only a finished render can be handed off: this one is "
                           f"{render.status}. Render again, then hand off the new render.",
                           409)
    if render.status != "done" or not render.spec:
        raise ServiceError("Only a finished render can be handed off: wait for it to finish.",
                           409)
    if not render.output_key:
        raise ServiceError("This render's file was deleted (a performer in it withdrew their "
                           "clip): render again, then hand off the new render.", 409)
    if render.handoff_state == "pending":
        return
    if render.handoff_key:  # never leave an older ZIP behind the new one
        storage().delete(render.handoff_key)
        render.handoff_key = None
    render.handoff_state = "pending"
    render.handoff_reason = None
    db.session.commit()
    enqueue("tutti.export_render", render.id)


def cancel_render(render: Render) -> None:
    """Cancel a render: a queued one at once, a running one is asked to stop (its worker
    ends it). Either gives up its request key now, so asking for the same render again
    makes a new one rather than returning the one being cancelled."""
    if render.status == "queued":
        states.move_render(render, "cancelled", "cancelled by an organizer")
    elif render.status == "running":
        render.cancel_requested = True
        render.request_key = None
    db.session.commit()


def publish_render(render: Render, *, preview_confirmed: bool = False) -> None:
    """Put ``render`` on the watch page. 409 unless it is finished and still has its
    file (a render showing a withdrawn clip has lost it). A preview (small, quick) is
    published only with ``preview_confirmed``: 409 otherwise, so nobody publishes one
    by mistake."""
    if render.status != "done":
        raise ServiceError("Only a finished render can be published.", 409)
    # the campaign's withdrawn clips (few), not an IN list of the render's clips (tens
    # of thousands in a large campaign: more than PostgreSQL takes as parameters)
    withdrawn = set(db.session.scalars(select(Clip.id).where(
        Clip.campaign_id == render.campaign_id, Clip.status == "withdrawn")))
    if not render.output_key or withdrawn & set(render.clip_ids or []):
        raise ServiceError("This render shows a clip that its performer withdrew, so its file "
                           "was deleted. Render again to make one without it.", 409)
    if render.kind == "preview" and not preview_confirmed:
        raise ServiceError("This is a preview (640×360, quick quality). Confirm that you "
                           "want viewers to see a preview, or render a final.", 409)
    render.campaign.published_render_id = render.id
    render.campaign.rerender_reason = None
    db.session.commit()


def unpublish(campaign: Campaign) -> None:
    """Take the published mash-up off the watch page (the render and its file are
    kept, and it can be published again)."""
    campaign.published_render_id = None
    db.session.commit()


#: clips named in the "the published mash-up still shows ..." notice (others counted)
GONE_NAMED = 20


def mashup_changes(campaign: Campaign) -> dict:
    """How the published mash-up differs from what the organizers now approve:
    ``{"gone": [up to GONE_NAMED clips in it that are no longer approved],
    "gone_count": how many such clips in all, "new": number of approved clips not in
    it}`` (empty and 0 when nothing is published). Reads two columns per clip of the
    campaign and whole rows only of the clips it names."""
    published = campaign.published_render
    if published is None:
        return {"gone": [], "gone_count": 0, "new": 0}
    shown = set(published.clip_ids or [])
    rows = db.session.execute(select(Clip.id, Clip.status)
                              .where(Clip.campaign_id == campaign.id)).all()
    approved = {clip_id for clip_id, status in rows if status == "approved"}
    gone_ids = sorted(clip_id for clip_id, status in rows
                      if clip_id in shown and status != "approved")
    gone = list(db.session.scalars(select(Clip).where(Clip.id.in_(gone_ids[:GONE_NAMED]))
                                   .order_by(Clip.id))) if gone_ids else []
    return {"gone": gone, "gone_count": len(gone_ids), "new": len(approved - shown)}


# --- queue ---------------------------------------------------------------------

def enqueue(task_name: str, row_id: int, *more: object) -> bool:
    """Wake a worker for a committed row; True when a message was sent. Nothing is sent
    while a message for the same work (task and arguments) still waits in the broker
    (:mod:`portal.waiting`): the worker that takes it reloads the row and sees what is
    there then. A lost message is not lost work: the reconciler finds the row pending and
    sends it again."""
    celery = current_app.extensions.get("celery")
    if celery is None:
        return False
    args = (row_id, *more)
    if waiting.waiting([(task_name, args)]):
        log.debug("%s%s: a message for it waits already; not sent again", task_name,
                  list(args))
        return False
    waiting.mark(task_name, args)
    try:
        celery.send_task(task_name, args=list(args))
        return True
    except Exception:  # noqa: BLE001 - broker down: the reconciler will retry
        waiting.unmark(task_name, args)
        log.exception("could not enqueue %s(%s); the reconciler will", task_name, row_id)
        return False


def _resend(due: list[tuple[str, str, int]], counts: dict[str, int]) -> None:
    """Send again the ``due`` work (kind for ``counts``, task name, row id) that has no
    message waiting: not while its waiting mark lives, nor, once the mark expired, while
    its message is still in the broker's queue (then it is marked again, for twice as
    long). ``counts[kind]`` adds the messages sent, ``counts["waiting"]`` the work left to
    the message that waits. The first send the broker refuses (down, or out of memory) ends
    the pass: the rest is due again at the next one."""
    live = waiting.waiting((task, (row_id,)) for _kind, task, row_id in due)
    unmarked = [item for item in due if (item[1], (item[2],)) not in live]
    queued: set = set()
    if unmarked:
        routes = current_app.config["CELERY"].get("task_routes", {})
        queues = {routes.get(task, {}).get("queue", "intake") for _k, task, _i in unmarked}
        queued = waiting.in_broker(sorted(queues)) or set()
    counts["waiting"] = len(due) - len(unmarked)
    for index, (kind, task, row_id) in enumerate(unmarked):
        if (task, (row_id,)) in queued:
            waiting.remark(task, (row_id,))
            counts["waiting"] += 1
        elif enqueue(task, row_id):
            counts[kind] += 1
        else:  # refused (broker down, or out of memory): the rest waits for the next pass
            log.warning("reconciler: the broker refused a message; %d more wait for the "
                        "next pass", len(unmarked) - index - 1)
            break


def broker_was_emptied() -> bool:
    """Whether the broker lost its messages since the last look (Redis restarted without
    its data): a key the reconciler keeps there is missing. False for other brokers."""
    import redis

    client = broker_redis(str(current_app.config["BROKER_URL"]))
    if client is None:
        return False
    try:
        with client:
            return bool(client.set("tutti:reconciler:alive", "1", nx=True))
    except redis.RedisError as exc:
        log.warning("reconciler: the broker does not answer or refuses writes (%s); nothing "
                    "can be sent now", exc)
        return False


_last_sweep = [0.0]


def reconcile(stale_after: timedelta | None = None) -> dict[str, int]:
    """Re-enqueue work the database says is pending and nobody holds.

    A row whose lease expired with an owner (its worker died) is sent at once; one
    never started (its message may still wait in the queue) is sent again once it is
    ``stale_after`` old (by default ``RESEND_SECONDS``; at once when the broker was
    restarted empty). A distributed render is sent again when one of its parts' holders
    died. Also removes expired resumable uploads and, every ``LEASE_SECONDS`` * 10 at
    most, the temporary files of writers that died (:func:`workers.leases.sweep_temp_files`).
    Work whose message still waits in the broker is not sent again, however many passes
    find it pending (:func:`_resend`, :mod:`portal.waiting`): a queue no worker consumes
    holds one message per work item. Returns counts per kind (``"waiting"``: work due
    but left to the message that waits)."""
    import time as _time

    from .models import RenderPart

    now = utcnow()
    lease = lease_now()  # leases on the database's clock (see lease_now)
    emptied = broker_was_emptied()
    if stale_after is None:
        stale_after = timedelta(seconds=int(current_app.config["RESEND_SECONDS"]))
    if emptied:
        stale_after = timedelta(0)
        log.warning("reconciler: the broker lost its queue; sending all pending work again")
    cutoff = now - stale_after
    counts = {"intake": 0, "align": 0, "render": 0}
    work: list[tuple[str, str, int]] = []  # (kind, task, row id) due to be sent again
    free = or_(Clip.lease_until.is_(None), Clip.lease_until < lease)
    due = or_(Clip.lease_owner.is_not(None), Clip.updated_at <= cutoff)
    work += [("intake", "tutti.intake_clip", clip_id) for clip_id in db.session.scalars(
        select(Clip.id).where(Clip.status.in_(states.CLIP_INTAKE_PENDING), free, due))]
    work += [("align", "tutti.align_clip", clip_id) for clip_id in db.session.scalars(
        select(Clip.id).where(Clip.sync_state == "pending", free, due,
                              Clip.status.not_in(states.CLIP_INTAKE_PENDING)))]
    rfree = or_(Render.lease_until.is_(None), Render.lease_until < lease)
    dead_part = select(RenderPart.id).where(
        RenderPart.render_id == Render.id, RenderPart.lease_owner.is_not(None),
        RenderPart.lease_until < lease).exists()
    rdue = or_(Render.lease_owner.is_not(None), Render.updated_at <= cutoff, dead_part)
    work += [("render", "tutti.render", render_id) for render_id in db.session.scalars(
        select(Render.id).where(Render.status.in_(states.RENDER_PENDING), rfree, rdue))]
    db.session.rollback()
    _resend(work, counts)
    from .uploads import drop_stale_uploads, finish_whole_uploads

    counts["whole_uploads"] = finish_whole_uploads(storage().tmp_dir)
    counts["stale_uploads"] = drop_stale_uploads(storage().tmp_dir)
    if _time.monotonic() - _last_sweep[0] >= 10 * int(current_app.config["LEASE_SECONDS"]):
        from workers.leases import sweep_temp_files

        _last_sweep[0] = _time.monotonic()
        counts["temp_files"] = sweep_temp_files()
    if any(n for kind, n in counts.items() if kind != "waiting"):
        log.info("reconciler: %s", counts)
    return counts
