"""Database models (SQLAlchemy 2.0, typed). The database is the source of truth
for every clip's and render's state; statuses change only through
:mod:`portal.states`."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db


def utcnow() -> datetime:
    """Naive UTC (stored the same way on SQLite and PostgreSQL)."""
    return datetime.now(UTC).replace(tzinfo=None)


#: the database clock's offset from this machine's, and when it was read (monotonic s)
_db_clock: dict[str, tuple[timedelta, float]] = {}
DB_CLOCK_READ_EVERY = 60.0


def lease_now() -> datetime:
    """Now on the database's clock, naive UTC, for leases and their expiry. Every machine
    that shares the database then compares leases on one clock: a worker whose clock is
    90 s behind would otherwise write leases that everyone else sees as expired (red
    team, issue 15). PostgreSQL's ``now()`` is read at most every
    :data:`DB_CLOCK_READ_EVERY` s and its offset from this machine's clock kept in
    between; SQLite is a file on this machine, so its clock is this one. Needs an
    application context; if the database cannot be read, this machine's clock."""
    import time

    from sqlalchemy import text

    engine = db.engine
    if engine.dialect.name != "postgresql":
        return utcnow()
    key = str(engine.url)
    known = _db_clock.get(key)
    if known is None or time.monotonic() - known[1] > DB_CLOCK_READ_EVERY:
        try:
            with engine.connect() as conn:
                theirs = conn.execute(text("SELECT now() AT TIME ZONE 'UTC'")).scalar_one()
            known = (theirs - utcnow(), time.monotonic())
            _db_clock[key] = known
        except Exception:  # noqa: BLE001 - the caller's own query will say what is wrong
            return utcnow()
    return utcnow() + known[0]


def new_token() -> str:
    """An unguessable id for private links (128 bits, URL-safe)."""
    return secrets.token_urlsafe(16)


def token_digest(token: str) -> str:
    """What the database keeps of a secret token (sessions, invites): its SHA-256,
    so a copy of the database opens no session and accepts no invite."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


ROLES = ("owner", "moderator")


def password_hash_method() -> str:
    """werkzeug's hash method for new passwords: ``PASSWORD_HASH_METHOD`` (scrypt by default;
    the tests choose a cheap one). Outside an app, scrypt."""
    from flask import current_app, has_app_context

    if has_app_context():
        return str(current_app.config.get("PASSWORD_HASH_METHOD") or "scrypt")
    return "scrypt"


class Organizer(UserMixin, db.Model):
    __tablename__ = "organizers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # The server-side session this object was loaded through (see OrganizerSession):
    # Flask-Login keeps it in the session cookie and in the remember cookie.
    session_token = None

    def get_id(self) -> str | None:
        return self.session_token

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password, method=password_hash_method())

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class OrganizerSession(db.Model):
    """One log-in: its cookie (session and remember) names it; log-out deletes it,
    so an old cookie opens nothing. A password change and "log out everywhere"
    delete them all."""

    __tablename__ = "organizer_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    organizer_id: Mapped[int] = mapped_column(
        ForeignKey("organizers.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]

    organizer: Mapped[Organizer] = relationship()


class CampaignMember(db.Model):
    """An organizer's role in one campaign: ``owner`` or ``moderator``."""

    __tablename__ = "campaign_members"
    __table_args__ = (UniqueConstraint("campaign_id", "organizer_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    organizer_id: Mapped[int] = mapped_column(
        ForeignKey("organizers.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    campaign: Mapped[Campaign] = relationship(back_populates="members")
    organizer: Mapped[Organizer] = relationship()


class CampaignInvite(db.Model):
    """A single-use invite link to join a campaign with a role; it expires."""

    __tablename__ = "campaign_invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    #: an invite sent to one address works only for the organizer logged in with it
    #: (None: a link for whoever opens it)
    email: Mapped[str | None] = mapped_column(String(254))
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizers.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizers.id", ondelete="SET NULL"))

    campaign: Mapped[Campaign] = relationship(back_populates="invites")


class Campaign(db.Model):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    licence: Mapped[str] = mapped_column(
        String(200), default="CC BY 4.0: the mash-up and credits may be published"
    )
    is_open: Mapped[bool] = mapped_column(default=True)
    deadline: Mapped[datetime | None]  # naive UTC; uploads stop after it
    #: the longest take accepted (seconds); longer ones are rejected at intake
    max_clip_seconds: Mapped[float | None]
    guide_key: Mapped[str | None] = mapped_column(String(300))
    guide_duration: Mapped[float | None]
    canvas_width: Mapped[int] = mapped_column(default=1280)
    canvas_height: Mapped[int] = mapped_column(default=720)
    fps: Mapped[int] = mapped_column(default=30)
    tile_width: Mapped[int] = mapped_column(default=640)
    tile_height: Mapped[int] = mapped_column(default=360)
    # how far a time map may pull a take (workers.media.timemap): shift and tempo
    timing_max_shift_ms: Mapped[int] = mapped_column(default=80, server_default="80")
    timing_max_tempo_pct: Mapped[float] = mapped_column(default=3.0, server_default="3")
    published_render_id: Mapped[int | None] = mapped_column(
        ForeignKey("renders.id", use_alter=True, name="fk_campaign_published_render",
                   ondelete="SET NULL")
    )
    #: why the published mash-up must be rendered again (a clip in it was withdrawn or
    #: declined), for the organizers to read; cleared when a new render is published
    rerender_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    parts: Mapped[list[Part]] = relationship(
        back_populates="campaign", order_by="Part.position", cascade="all, delete-orphan"
    )
    clips: Mapped[list[Clip]] = relationship(
        back_populates="campaign", order_by="Clip.id", cascade="all, delete-orphan"
    )
    renders: Mapped[list[Render]] = relationship(
        back_populates="campaign",
        order_by="Render.id.desc()",
        cascade="all, delete-orphan",
        foreign_keys="Render.campaign_id",
    )
    published_render: Mapped[Render | None] = relationship(
        foreign_keys=[published_render_id], post_update=True
    )
    members: Mapped[list[CampaignMember]] = relationship(
        back_populates="campaign", order_by="CampaignMember.id", cascade="all, delete-orphan"
    )
    invites: Mapped[list[CampaignInvite]] = relationship(
        back_populates="campaign", order_by="CampaignInvite.id", cascade="all, delete-orphan"
    )

    @property
    def accepting(self) -> bool:
        """Whether the campaign takes contributions now: open, and before its deadline."""
        return self.is_open and (self.deadline is None or utcnow() < self.deadline)

    def part_named(self, name: str) -> Part | None:
        wanted = name.strip().lower()
        return next((p for p in self.parts if p.name.lower() == wanted), None)


class Part(db.Model):
    __tablename__ = "parts"
    __table_args__ = (UniqueConstraint("campaign_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(80))
    position: Mapped[int] = mapped_column(default=0)
    #: how many performers the organizers want in this part (None: no target)
    target_count: Mapped[int | None]

    campaign: Mapped[Campaign] = relationship(back_populates="parts")


class Clip(db.Model):
    __tablename__ = "clips"
    __table_args__ = (
        Index("ix_clips_campaign_status_id", "campaign_id", "status", "id"),
        Index("ix_clips_campaign_part_status", "campaign_id", "part_id", "status"),
        Index("ix_clips_campaign_warnings_id", "campaign_id", "warning_count", "id"),
        # the review list's two sorted orders, read a page at a time from the index
        # (the expressions are those of portal.review's order by, literally)
        Index("ix_clips_campaign_confidence", "campaign_id",
              text("coalesce(sync_confidence, 2.0)"), "id"),
        Index("ix_clips_campaign_name", "campaign_id", text("lower(display_name)"), "id"),
        # the sync filters' counts, from the index alone
        Index("ix_clips_campaign_status_sync", "campaign_id", "status", "sync_confidence",
              "sync_state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(40), unique=True, default=new_token)
    #: the id in the clip's media URLs and new storage keys: random and separate from
    #: ``token`` (the private status link), so a thumbnail never hands out the power
    #: to withdraw or replace the clip
    media_id: Mapped[str] = mapped_column(String(40), unique=True, default=new_token)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    part_id: Mapped[int | None] = mapped_column(ForeignKey("parts.id", ondelete="SET NULL"))
    display_name: Mapped[str] = mapped_column(String(120))
    location: Mapped[str] = mapped_column(String(120), default="")
    consent_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: the campaign's licence text as it was when the participant consented (the
    #: contributors' CSV shows this, not the licence as it is now)
    consent_licence: Mapped[str | None] = mapped_column(Text)

    status: Mapped[str] = mapped_column(String(20), default="received", index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    lease_until: Mapped[datetime | None]  # a worker holds this clip until then
    #: who holds the lease (one id per claim): a heartbeat renews only its own lease, and
    #: a lease that expired with an owner marks a worker that died holding the clip
    lease_owner: Mapped[str | None] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(default=0)

    original_key: Mapped[str] = mapped_column(String(300))
    original_filename: Mapped[str] = mapped_column(String(255), default="")
    size_bytes: Mapped[int] = mapped_column(default=0)
    normalized_key: Mapped[str | None] = mapped_column(String(300))
    thumbnail_key: Mapped[str | None] = mapped_column(String(300))
    contact_sheet_key: Mapped[str | None] = mapped_column(String(300))  # 3x3 frames
    media: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # probe facts
    #: what the participant should know about the take: [{code, severity, message}]
    checks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    #: how many of ``checks`` are warnings, kept by an attribute event whenever
    #: ``checks`` is set, so the review list filters on it without reading the JSON
    warning_count: Mapped[int] = mapped_column(default=0, server_default="0")

    sync_state: Mapped[str | None] = mapped_column(String(20))  # pending/done/failed/None
    offset_seconds: Mapped[float | None]
    sync_confidence: Mapped[float | None]
    sync_method: Mapped[str | None] = mapped_column(String(20))
    drift_ppm: Mapped[float | None]
    nudge_ms: Mapped[int] = mapped_column(default=0)
    sync_plot_key: Mapped[str | None] = mapped_column(String(300))
    # the aligner's candidate offsets with their evidence, the chosen one first (list of
    # {offset_seconds, music, notes, claps, leak}); a person picks one by ear when untrusted
    sync_candidates: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    #: a take recorded on the campaign page: its start on the guide's clock and the
    #: latencies the browser measured (workers.media.align.prior.RecordTiming.to_json_dict)
    record_timing: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: the sound's offset minus the one the recording device predicted (ms), once aligned:
    #: large values mark a device whose reported latency is wrong
    record_error_ms: Mapped[float | None]

    # the sound editor's controls, used by every render (workers.pipeline.build_spec):
    # a level in dB on top of the loudness match (when on), seen-not-heard (muted),
    # heard-not-seen (hidden), a place between the speakers, the clean-up switch
    sound_level_db: Mapped[float] = mapped_column(default=0.0, server_default="0")
    loudness_match: Mapped[bool] = mapped_column(default=True, server_default=true())
    muted: Mapped[bool] = mapped_column(default=False, server_default=false())
    hidden: Mapped[bool] = mapped_column(default=False, server_default=false())
    pan: Mapped[float] = mapped_column(default=0.0, server_default="0")
    cleanup: Mapped[bool] = mapped_column(default=True, server_default=true())
    #: the take's sound as measured (workers.media.sound.TakeSound.to_dict): loudness_lufs,
    #: hum_hz, hum_db, noise_floor_db; None until measured
    sound: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: pull the take into time with a time map (workers.media.timemap), and the map as
    #: fitted: {"offset", "max_shift_ms", "max_tempo_pct", "knots": [[guide s, clip s]]}
    #: (stale when the offset or the campaign's limits changed since)
    timing: Mapped[bool] = mapped_column(default=False, server_default=false())
    time_map: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    campaign: Mapped[Campaign] = relationship(back_populates="clips")
    part: Mapped[Part | None] = relationship()
    events: Mapped[list[ClipEvent]] = relationship(
        back_populates="clip", order_by="ClipEvent.id", cascade="all, delete-orphan"
    )

    @property
    def part_name(self) -> str:
        return self.part.name if self.part else ""

    @property
    def effective_offset(self) -> float:
        """The offset renders use: the aligner's plus the organizer's nudge."""
        return (self.offset_seconds or 0.0) + self.nudge_ms / 1000.0


def count_warnings(checks: list[dict[str, Any]] | None) -> int:
    """The number of checks of severity "warning" in a clip's ``checks`` list."""
    return sum(1 for c in checks or () if isinstance(c, dict) and c.get("severity") == "warning")


@event.listens_for(Clip.checks, "set")
def _checks_set(clip: Clip, value: list[dict[str, Any]] | None, _old: Any, _initiator: Any):
    clip.warning_count = count_warnings(value)


@event.listens_for(Clip, "init")
def _clip_init(clip: Clip, _args: Any, kwargs: dict[str, Any]) -> None:
    if "checks" in kwargs:  # the "set" event does not see constructor arguments' order
        kwargs.setdefault("warning_count", count_warnings(kwargs["checks"]))


class ClipEvent(db.Model):
    """One line of a clip's timeline, written by the state machine."""

    __tablename__ = "clip_events"
    __table_args__ = (Index("ix_clip_events_status_at", "status", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    clip: Mapped[Clip] = relationship(back_populates="events")


class Render(db.Model):
    __tablename__ = "renders"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(40), unique=True, default=new_token)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20), default="final")  # preview | final
    publish: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    reason: Mapped[str | None] = mapped_column(Text)  # for the organizer, plain words
    # what went wrong in technical terms (ffmpeg's last lines), for whoever runs Tutti
    reason_detail: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[float] = mapped_column(default=0.0)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(40))  # as Clip.lease_owner
    attempts: Mapped[int] = mapped_column(default=0)
    #: what was asked for (a digest of the spec it would render and whether it publishes)
    #: while the render is queued or running; unique, so the same render requested twice
    #: at once is one render. Cleared when it ends.
    request_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    spec: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # segments, when distributed
    options: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the organizer's choices
    appearances: Mapped[dict[str, float] | None] = mapped_column(JSON)  # clip token -> s
    join_started_at: Mapped[datetime | None]  # unused since joins take the render's lease
    # the hand-off export (workers.pipeline.export_render): None, pending, done, failed
    handoff_state: Mapped[str | None] = mapped_column(String(20))
    handoff_key: Mapped[str | None] = mapped_column(String(300))
    handoff_reason: Mapped[str | None] = mapped_column(Text)
    clip_ids: Mapped[list[int] | None] = mapped_column(JSON)
    output_key: Mapped[str | None] = mapped_column(String(300))
    poster_key: Mapped[str | None] = mapped_column(String(300))
    duration: Mapped[float | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    campaign: Mapped[Campaign] = relationship(back_populates="renders", foreign_keys=[campaign_id])
    part_leases: Mapped[list[RenderPart]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="RenderPart.part")

    def appears_at(self, clip: Clip) -> float | None:
        """Where ``clip`` first shows in this render's file (seconds), if it does."""
        return (self.appearances or {}).get(clip.token)

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left, from the progress so far (None until there is some)."""
        if self.status != "running" or not self.started_at or self.progress <= 0.01:
            return None
        elapsed = (utcnow() - self.started_at).total_seconds()
        return max(0.0, elapsed * (1 - self.progress) / self.progress)


class RenderTile(db.Model):
    """Where a clip is on screen in a finished render (its tile map, one row per span):
    the rectangle ``x, y, w, h`` in canvas pixels (the file's picture size) from
    ``start`` to ``end`` seconds of the file; ``live`` is the first second in that span
    where the clip's own pictures play (before it a held first frame). "Find yourself"
    on the watch page jumps to ``live`` and outlines the rectangle over the player; the
    page reads only the rows of the performers it shows."""

    __tablename__ = "render_tiles"
    __table_args__ = (Index("ix_render_tiles_render_clip", "render_id", "clip_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    render_id: Mapped[int] = mapped_column(ForeignKey("renders.id", ondelete="CASCADE"))
    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"),
                                         index=True)
    x: Mapped[int]
    y: Mapped[int]
    w: Mapped[int]
    h: Mapped[int]
    start: Mapped[float]
    end: Mapped[float]
    live: Mapped[float]


class RenderPart(db.Model):
    """One part of a distributed render (a segment, or the sound: ``part`` -1) and the
    lease of the worker drawing it, so a dead worker's part is taken over at once and a
    live worker's part is never drawn twice. The finished part is its file."""

    __tablename__ = "render_parts"
    __table_args__ = (UniqueConstraint("render_id", "part"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    render_id: Mapped[int] = mapped_column(ForeignKey("renders.id", ondelete="CASCADE"),
                                           index=True)
    part: Mapped[int]
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(default=0)
