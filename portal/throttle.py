"""Throttling with Flask-Limiter: the limits that keep one address or one campaign
from flooding the portal. Limits come from the configuration (``TUTTI_*_LIMIT_*``)
and are counted in Redis whenever the broker is Redis (so every web process
shares them), in memory in the embedded default. A request over a limit gets
429 with ``Retry-After``."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from flask import current_app, request

from .extensions import limiter


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


def upload_limits(view: Callable) -> Callable:
    """New uploads (plain, API, resumable creation and a participant's replacement
    file) per client address and per campaign, shared across these routes."""
    view = limiter.shared_limit(lambda: current_app.config["UPLOAD_LIMIT_CAMPAIGN"],
                                scope="uploads-per-campaign", key_func=_upload_campaign,
                                methods=["POST"])(view)
    return limiter.shared_limit(lambda: current_app.config["UPLOAD_LIMIT_ADDRESS"],
                                scope="uploads-per-address", methods=["POST"])(view)
