"""Throttling with Flask-Limiter: the limits that keep one address or one campaign
from flooding the portal. Limits come from the configuration (``TUTTI_*_LIMIT_*``)
and are counted in Redis whenever the broker is Redis (so every web process
shares them), in memory in the embedded default. A request over a limit gets
429 with ``Retry-After``.

Uploads count only when they are accepted: a request refused for bad input, a
file over the size limit, a closed campaign or a wrong tus version gives its
count back (per address and per campaign), so errors lock nobody out and nobody
can fill a campaign's quota with refused requests. Refused requests are counted
on their own, per address (``TUTTI_UPLOAD_LIMIT_REJECTED_ADDRESS``), so that a
flood of them still ends in 429."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable

from flask import Response, current_app, g, has_request_context, request
from limits.strategies import FixedWindowRateLimiter

from .extensions import limiter

log = logging.getLogger(__name__)


def _upload_campaign() -> str:
    """The campaign an upload is for: the URL's slug, or the tus ``campaign`` metadata."""
    args = request.view_args or {}
    slug = args.get("slug")
    if slug is None and "token" in args:  # a participant replacing their clip's file
        from .services import TOKEN_RE

        slug = ""
        if TOKEN_RE.match(args["token"]):
            from sqlalchemy import select

            from .extensions import db
            from .models import Campaign, Clip

            slug = db.session.scalar(select(Campaign.slug).join(Clip).where(
                Clip.token == args["token"])) or ""
    if slug is None:
        for pair in request.headers.get("Upload-Metadata", "").split(","):
            key, _, value = pair.strip().partition(" ")
            if key == "campaign":
                try:
                    slug = base64.b64decode(value, validate=True).decode("utf-8", "replace")
                except (binascii.Error, ValueError):
                    slug = ""
    return "upload-campaign:" + (slug or "")[:64]


UPLOAD_SCOPES = ("uploads-per-address", "uploads-per-campaign")


def upload_accepted() -> None:
    """Mark this request's upload as accepted (a clip was received or replaced, or a
    resumable upload was created): its count is kept. Called by the services; does
    nothing outside a request (the command line)."""
    if has_request_context():
        g.tutti_upload_accepted = True


def _refused(response: Response) -> bool:
    return not g.get("tutti_upload_accepted") and response.status_code != 429


def refund_refused_upload(response: Response) -> Response:
    """After an upload request that was not accepted, give back what it was counted
    for per address and per campaign (counted atomically before the view, so that
    parallel requests cannot all pass a check made before any was counted; only the
    fixed-window strategy, the default, can give a count back)."""
    if g.get("tutti_upload_accepted"):
        return response
    strategy = limiter.limiter
    if not isinstance(strategy, FixedWindowRateLimiter):
        return response
    for applied in limiter.current_limits:
        if applied.request_args[-1] in UPLOAD_SCOPES and not applied.breached:
            give_back(strategy, applied)
    return response


def give_back(strategy: FixedWindowRateLimiter, applied) -> None:
    """Give back one count of ``applied`` (a Flask-Limiter ``RequestLimit``). The count's
    storage may be unreachable, full or read-only (Redis down): the request has been
    answered already, so that is logged, never raised."""
    try:
        strategy.storage.incr(applied.key, applied.limit.get_expiry(), amount=-1)
    except Exception:  # noqa: BLE001 - redis, OOM, read-only: a count not given back
        log.warning("rate limit: could not give back a count of %s (storage unavailable)",
                    applied.key, exc_info=True)


#: answers where ``Retry-After`` means something (RFC 9110 10.2.3, RFC 6585 4; tus 423)
WAIT_STATUSES = frozenset({423, 429, 503})


def retry_after_only_to_wait(response: Response) -> Response:
    """Drop the ``Retry-After`` Flask-Limiter adds to every answer of a limited route
    (its header injection is all or nothing): on a 201 or a 400 a client could read it
    as "wait an hour". The ``X-RateLimit-*`` headers stay."""
    if response.status_code not in WAIT_STATUSES:
        response.headers.pop("Retry-After", None)
    return response


def upload_limits(view: Callable) -> Callable:
    """New uploads (plain, API, resumable creation and a participant's replacement
    file) per client address and per campaign, shared across these routes; refused
    ones per client address on their own (see the module's docstring)."""
    view = limiter.shared_limit(lambda: current_app.config["UPLOAD_LIMIT_REJECTED_ADDRESS"],
                                scope="uploads-refused-per-address", methods=["POST"],
                                deduct_when=_refused)(view)
    view = limiter.shared_limit(lambda: current_app.config["UPLOAD_LIMIT_CAMPAIGN"],
                                scope="uploads-per-campaign", key_func=_upload_campaign,
                                methods=["POST"])(view)
    return limiter.shared_limit(lambda: current_app.config["UPLOAD_LIMIT_ADDRESS"],
                                scope="uploads-per-address", methods=["POST"])(view)


#: what a log-in (or password change) answers while the shared count store refuses writes
SIGN_IN_PAUSED_MESSAGE = ("Sign-in is paused for a minute while the server recovers. Please "
                          "try again in a minute.")
#: ``Retry-After`` of that answer (s): Flask-Limiter looks at the store again within ~32 s
SIGN_IN_PAUSED_SECONDS = 60
_PROBE_KEY = "tutti/shared-counts-writable"


def password_guesses_counted() -> bool:
    """Whether this request's attempt at a password (a log-in, a password change) was
    counted where every web process sees it. False while the limits' shared store (Redis)
    cannot take writes: down, full under ``noeviction``, or read-only after a failover.

    Why the caller then refuses (fails closed, 503) instead of checking the password:
    Flask-Limiter's in-memory fallback (``RATELIMIT_IN_MEMORY_FALLBACK_ENABLED``, kept for
    the other limits) counts in each process's own memory, so N gunicorn workers times M
    containers would each allow the full ``TUTTI_LOGIN_LIMIT_*`` of guesses per account
    (red team ops3, W3: 2x with 2 workers, 48x on a scaled host). A minute without
    sign-in while /readyz already says the broker is failing costs less than a password
    guessed; sessions already open keep working. Uploads keep the fallback: a take on its
    way at a deadline matters more than a flood limit loosened N-fold for a while.

    Two checks, both public Flask-Limiter / limits API: the limiter is not on its
    fallback (``Limiter.limiter`` is the fallback strategy while the store is marked
    dead), and the store takes a write now (``Storage.incr`` on a probe key): a
    read-only or full Redis still answers PING, so Flask-Limiter's own recovery check
    (PING) would otherwise put it back between two requests."""
    primary = limiter.storage
    if limiter.limiter.storage is not primary:
        return False
    try:
        primary.incr(_PROBE_KEY, SIGN_IN_PAUSED_SECONDS)
    except Exception:  # noqa: BLE001 - redis down, OOM, read-only: not counted
        log.warning("rate limit store refuses writes: sign-in paused", exc_info=True)
        return False
    return True
