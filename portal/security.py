"""What every response carries, and what every request is checked for.

- Headers on every response: a Content-Security-Policy with no inline script
  (all scripts are files under ``static/``), ``X-Content-Type-Options: nosniff``,
  ``frame-ancestors 'none'`` (and ``X-Frame-Options: DENY``) except on routes
  marked :func:`embeddable`, a ``Referrer-Policy`` that keeps private links
  (``/clip/<token>``) from leaking to other sites, and HSTS over HTTPS.
- Cookies: ``HttpOnly`` and ``SameSite=Lax`` by configuration; ``Secure`` is
  added to every cookie of a response to an HTTPS request (behind a proxy, set
  ``TUTTI_TRUSTED_PROXIES`` so that Werkzeug's ProxyFix tells HTTPS apart).
- :func:`safe_next`: the one helper through which every ``next`` is read.
- A NUL character in any query or form field is a 400 naming the field, before
  any view (PostgreSQL refuses NUL in text; SQLite takes it).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Flask, Response, abort, request
from werkzeug.middleware.proxy_fix import ProxyFix

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
EMBED_CSP = CSP.replace("frame-ancestors 'none'", "frame-ancestors *")
HSTS = "max-age=31536000; includeSubDomains"
_EMBEDDABLE = "_tutti_embeddable"


def embeddable(view: Callable) -> Callable:
    """Mark a view whose page other sites may show in a frame (the watch player)."""
    setattr(view, _EMBEDDABLE, True)
    return view


def safe_next(target: str | None, fallback: str) -> str:
    """``target`` when it is a path on this site, else ``fallback``.

    Refused: anything with a scheme or a host, ``//host`` and ``/\\host`` (browsers
    read both as another host), and any control character or backslash (browsers
    drop tabs and line breaks, so ``/\\t/evil.example/`` becomes ``//evil.example/``).
    """
    if not target or len(target) > 2000:
        return fallback
    if "\\" in target or any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")
                             or ch.isspace() for ch in target):
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return fallback
    return target


def init_app(app: Flask) -> None:
    """Install the proxy fix, the request checks and the response headers on ``app``."""
    app.wsgi_app = SecureCookies(app.wsgi_app)
    proxies = int(app.config["TRUSTED_PROXIES"])
    if proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies,
                                x_host=proxies, x_port=proxies)

    @app.before_request
    def refuse_nul() -> None:
        for value in (request.view_args or {}).values():
            if isinstance(value, str) and "\x00" in value:
                abort(404)
        fields = list(request.args.items(multi=True))
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            fields += list(request.form.items(multi=True))
        for field, value in fields:
            if "\x00" in value or "\x00" in field:
                from .services import ServiceError

                raise ServiceError(f"The field {field.strip(chr(0))!r} contains a NUL "
                                   "character; please type it again without it.",
                                   400, field.replace("\x00", ""))

    @app.after_request
    def security_headers(response: Response) -> Response:
        view = app.view_functions.get(request.endpoint) if request.endpoint else None
        framed = bool(view is not None and getattr(view, _EMBEDDABLE, False))
        headers = response.headers
        headers.setdefault("Content-Security-Policy", EMBED_CSP if framed else CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if not framed:
            headers.setdefault("X-Frame-Options", "DENY")
        if request.blueprint == "organize" or request.endpoint == "participate.status":
            # organizer pages and a participant's private page: no copy in any cache
            response.cache_control.no_store = True
            response.cache_control.private = True
        if request.is_secure:
            headers.setdefault("Strict-Transport-Security", HSTS)
        return response


class SecureCookies:
    """WSGI middleware: over HTTPS, every cookie gets ``Secure`` (the session cookie
    and Flask-Login's remember cookie are set after the app's own hooks have run, so
    this is done on the way out of the app). Behind a proxy it sits inside ProxyFix,
    which tells it the client's scheme."""

    def __init__(self, wsgi_app) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        if environ.get("wsgi.url_scheme") != "https":
            return self.wsgi_app(environ, start_response)

        def secure_start_response(status, headers, exc_info=None):
            headers = [(name, value + "; Secure")
                       if name.lower() == "set-cookie" and "; secure" not in value.lower()
                       else (name, value) for name, value in headers]
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, secure_start_response)
