"""Organizer log-in with sessions that end on the server.

Each log-in creates an :class:`~portal.models.OrganizerSession` row with a new
random token. Flask-Login keeps that token (not the organizer's id) in the
session cookie and in the remember cookie, and :func:`load_organizer` only
accepts a token whose row still exists. So log-out (which deletes the row)
makes both old cookies worthless, every log-in has a new remember token, and a
password change or "log out everywhere" (which delete all of the organizer's
rows) ends every session at once.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from flask import current_app, session
from flask_login import current_user, login_user, logout_user
from sqlalchemy import delete, select
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db
from .models import Organizer, OrganizerSession, password_hash_method, token_digest, utcnow

log = logging.getLogger(__name__)

_dummy_hash: str | None = None


def _session_lifetime() -> timedelta:
    return timedelta(days=int(current_app.config["SESSION_DAYS"]))


def load_organizer(session_token: str) -> Organizer | None:
    """The organizer whose live session has ``session_token`` (Flask-Login's user
    loader, for the session and the remember cookie alike); None when that session
    was ended or has expired."""
    if not session_token or len(session_token) > 100:
        return None
    row = db.session.scalar(select(OrganizerSession).filter_by(
        token_hash=token_digest(session_token)))
    if row is None or row.expires_at < utcnow():
        return None
    organizer = row.organizer
    organizer.session_token = session_token
    return organizer


def check_credentials(email: str, password: str) -> Organizer | None:
    """The organizer if ``password`` is theirs. An unknown e-mail costs the same
    password hashing as a known one, so the answer's timing tells nobody which
    organizers exist."""
    global _dummy_hash
    organizer = db.session.scalar(select(Organizer).filter_by(email=email))
    if organizer is None:
        if _dummy_hash is None:
            _dummy_hash = generate_password_hash(secrets.token_hex(16),
                                                 method=password_hash_method())
        check_password_hash(_dummy_hash, password)
        return None
    return organizer if organizer.check_password(password) else None


def start_session(organizer: Organizer) -> None:
    """Log ``organizer`` in with a new server-side session (and remember cookie)."""
    token = secrets.token_urlsafe(32)
    lifetime = _session_lifetime()
    db.session.add(OrganizerSession(organizer_id=organizer.id, token_hash=token_digest(token),
                                    expires_at=utcnow() + lifetime))
    db.session.execute(delete(OrganizerSession).where(
        OrganizerSession.organizer_id == organizer.id,
        OrganizerSession.expires_at < utcnow()))
    db.session.commit()
    organizer.session_token = token
    # a fresh cookie session: nothing from before the log-in (above all the CSRF
    # token, which whoever planted a session cookie in this browser would know) is kept
    session.clear()
    login_user(organizer, remember=True, duration=lifetime)
    log.info("organizer %s logged in", organizer.id)


def end_session() -> None:
    """Log the current organizer out and delete their session on the server."""
    token = getattr(current_user, "session_token", None)
    if token:
        db.session.execute(delete(OrganizerSession).filter_by(token_hash=token_digest(token)))
        db.session.commit()
    logout_user()
    session.clear()


def end_all_sessions(organizer: Organizer) -> int:
    """Delete every session of ``organizer`` (all their devices); returns how many."""
    done = db.session.execute(delete(OrganizerSession).filter_by(organizer_id=organizer.id))
    db.session.commit()
    log.info("organizer %s: %d session(s) ended", organizer.id, done.rowcount)
    return done.rowcount


def change_password(organizer: Organizer, current: str, new: str) -> None:
    """Set a new password (checked like a new organizer's) and end every session of
    the organizer; the caller starts a fresh one for the browser that asked."""
    from .services import ServiceError, check_password_rules

    if not organizer.check_password(current):
        raise ServiceError("The current password is wrong.", 400, "current_password")
    check_password_rules(new)
    organizer.set_password(new)
    db.session.commit()
    end_all_sessions(organizer)
