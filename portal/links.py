"""Absolute links (invite links, status links, API URLs, tus ``Location``) that a
forged ``Host`` header cannot point at another site.

- ``TUTTI_BASE_URL`` set: every absolute link starts with it, whatever ``Host``
  the request carried.
- Otherwise, when the host is known to be ours (``TUTTI_TRUSTED_HOSTS``, which
  Flask checks on every request and answers 400 for any other ``Host``; or
  Flask's ``SERVER_NAME``), the link is built from the request as usual.
- Otherwise the link is relative (``/clip/<token>``): a browser or a tus client
  resolves it against the address it actually used, and nothing a client put in
  ``Host`` (or ``X-Forwarded-Host`` without a trusted proxy) ever reaches a page,
  a JSON answer or a header.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, has_request_context, request, url_for


def host_is_trusted() -> bool:
    """True when absolute URLs built from the request's host are safe: the app has
    an allow-list of hosts (checked by Flask) or a fixed ``SERVER_NAME``."""
    config = current_app.config
    return bool(config.get("TRUSTED_HOSTS") or config.get("SERVER_NAME"))


def external_url(endpoint: str, **values: object) -> str:
    """The URL of ``endpoint`` to give out (pages, JSON, headers): on
    ``TUTTI_BASE_URL`` when it is set, from the request when its host is trusted
    (see :func:`host_is_trusted`), else a path relative to this site's root.
    Raises what ``url_for`` raises for a bad endpoint or values."""
    base = str(current_app.config.get("BASE_URL") or "").strip()
    if base:
        path = url_for(endpoint, **values)
        root = request.script_root if has_request_context() else ""
        if root and path.startswith(root):
            path = path[len(root):]
        parts = urlsplit(base)
        return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}{path}"
    if host_is_trusted() or not has_request_context():
        return url_for(endpoint, _external=True, **values)
    return url_for(endpoint, **values)


def path_or_base_url(endpoint: str, **values: object) -> str:
    """The URL of ``endpoint`` for a header a client resolves against the URL it
    asked (the tus ``Location``, ``Tutti-Status-Url``): on ``TUTTI_BASE_URL`` when
    it is set (see :func:`external_url`), else a path from the site's root, never
    built from the request's host or scheme, so that it is right behind any proxy
    even with trusted hosts. Raises what ``url_for`` raises."""
    if str(current_app.config.get("BASE_URL") or "").strip():
        return external_url(endpoint, **values)
    return url_for(endpoint, **values)
