"""Tutti's web application: ``create_app(config=None)`` builds it (no app object
at import time)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import regex
from flask import Flask, jsonify, render_template, request
from flask.wrappers import Request
from markupsafe import Markup
from werkzeug.exceptions import HTTPException, SecurityError
from werkzeug.routing import IntegerConverter

from . import config as config_module
from .extensions import csrf, db, limiter, login, migrate

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
log = logging.getLogger(__name__)


class TuttiRequest(Request):
    """Uploads spool to a temp file beside the media store (never held in
    memory), so a finished upload moves into storage by a link, not a copy."""

    def _get_file_stream(self, total_content_length, content_type, filename=None,
                         content_length=None):
        from flask import current_app

        return current_app.extensions["tutti.storage"].new_temp_file()


class RowIdConverter(IntegerConverter):
    """``<int:...>`` in every route: a row id from 1 to 2**31-1 (PostgreSQL's
    ``integer``), so a larger or zero number answers 404 instead of overflowing in
    the database driver (a 500)."""

    def __init__(self, map, *args, **kwargs) -> None:  # noqa: A002 - werkzeug's name
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(map, *args, **kwargs)


def create_app(config: dict | None = None) -> Flask:
    instance_path = (config or {}).get("INSTANCE_PATH") or config_module.instance_path_from_env()
    app = Flask(
        __name__,
        instance_path=str(Path(instance_path).resolve()) if instance_path else None,
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.request_class = TuttiRequest
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(config_module.build_config(app.instance_path, config))
    _configure_logging(app)

    from .storage import Storage

    app.extensions["tutti.storage"] = Storage(app.config["MEDIA_ROOT"])
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS))
    login.init_app(app)
    csrf.init_app(app)
    from .throttle import refund_refused_upload, retry_after_only_to_wait

    # registered before the limiter, so it runs after the limiter adds its headers
    app.after_request(retry_after_only_to_wait)
    limiter.init_app(app)

    app.after_request(refund_refused_upload)  # refused uploads give their count back

    from . import security
    from .auth import load_organizer

    login.user_loader(load_organizer)
    security.init_app(app)

    from .api import bp as api_bp
    from .health import bp as health_bp
    from .organize import bp as organize_bp
    from .participate import bp as participate_bp
    from .uploads import bp as uploads_bp
    from .watch import bp as watch_bp

    app.url_map.converters["int"] = RowIdConverter
    app.register_blueprint(health_bp)
    app.register_blueprint(participate_bp)
    app.register_blueprint(organize_bp, url_prefix="/organize")
    app.register_blueprint(watch_bp)
    app.register_blueprint(api_bp, url_prefix="/api/v1")
    app.register_blueprint(uploads_bp, url_prefix="/api/v1")
    csrf.exempt(api_bp)
    csrf.exempt(uploads_bp)

    from workers.celery_app import celery_init_app

    celery_init_app(app)

    from .cli import register_cli

    register_cli(app)
    _register_errors(app)
    _register_filters(app)
    if app.config.get("AUTO_MIGRATE", True):
        upgrade_database(app)
    return app


_upgrade_lock = threading.Lock()


def upgrade_database(app: Flask) -> None:
    """Apply migrations, so every command works on a fresh database."""
    from flask_migrate import upgrade

    with _upgrade_lock, app.app_context():
        logging.getLogger("alembic").setLevel(logging.WARNING)
        if db.engine.dialect.name == "postgresql":
            # Web and worker processes start together: one migrates, the others wait.
            from sqlalchemy import text

            with db.engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(7472797474)"))
                try:
                    upgrade(directory=str(MIGRATIONS))
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(7472797474)"))
                    conn.commit()
        else:
            upgrade(directory=str(MIGRATIONS))


def _configure_logging(app: Flask) -> None:
    from .logs import configure

    level = getattr(logging, str(app.config["LOG_LEVEL"]).upper(), logging.INFO)
    configure(level, str(app.config["LOG_FORMAT"]).strip().lower())
    logging.getLogger("portal").setLevel(level)
    logging.getLogger("workers").setLevel(level)


def _wants_json() -> bool:
    return request.path.startswith("/api/") or (
        request.accept_mimetypes.best == "application/json"
    )


DISK_FULL_MESSAGE = ("The server has no disk space left for uploads right now, so nothing of "
                     "this upload was kept. Please try again later; the organizers have been "
                     "told.")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is the disk being full (or over quota)."""
    import errno

    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _register_errors(app: Flask) -> None:
    from .services import ServiceError

    @app.errorhandler(OSError)
    def disk_full(exc: OSError):
        """A full media disk is a 507 that says so (uploads keep nothing partial: the
        spooled file and the storage's temp file delete themselves); any other OS error
        stays a 500."""
        if not is_disk_full(exc):
            raise exc
        log.error("disk full while answering %s %s: %s", request.method, request.path, exc)
        if _wants_json():
            return jsonify({"error": DISK_FULL_MESSAGE}), 507
        return render_template("error.html", message=DISK_FULL_MESSAGE, status=507), 507

    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError):
        if _wants_json():
            body = {"error": exc.message}
            if exc.field:
                body["field"] = exc.field
            return jsonify(body), exc.status
        return render_template("error.html", message=exc.message, status=exc.status), exc.status

    @app.errorhandler(SecurityError)
    def untrusted_host(exc: SecurityError):
        # a Host header outside TUTTI_TRUSTED_HOSTS: no URL can be built for it,
        # so the answer is plain text
        return app.response_class(
            "This portal does not answer to that host name.\n", 400, mimetype="text/plain")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        messages = {
            404: "There is nothing at this address. Check the link you were given.",
            413: "The file is larger than this portal accepts "
                 f"({app.config['MAX_UPLOAD_MB']} MB). Please upload a shorter or smaller video.",
            400: exc.description or "The request was not understood.",
            429: "Too many attempts in a short time. Please wait a little and try again"
                 + (f" (in {exc.response.headers['Retry-After']} s)."
                    if exc.response is not None and "Retry-After" in exc.response.headers
                    else "."),
        }
        message = messages.get(exc.code or 500, exc.description or exc.name)
        if _wants_json():
            return jsonify({"error": message}), exc.code
        return render_template("error.html", message=message, status=exc.code), exc.code


# A flood of combining marks (Zalgo) on one letter: the first four are kept (as in the video,
# workers/media/typeset.MAX_MARKS), joiners between them do not restart the count.
_MARK_FLOOD = regex.compile(r"((?:\p{M}[\u200c\u200d]*){4})[\p{M}\u200c\u200d]+")


def shown_text(value):
    """Every value a template prints, before escaping: strings with a combining-mark flood
    capped at four marks per letter, so a name cannot paint over the rows around it;
    anything else (and markup) unchanged."""
    if isinstance(value, str) and not isinstance(value, Markup) and _MARK_FLOOD.search(value):
        return _MARK_FLOOD.sub(r"\1", value)
    return value


def _register_filters(app: Flask) -> None:
    from .links import external_url

    app.jinja_env.finalize = shown_text
    app.jinja_env.globals["external_url"] = external_url

    @app.template_filter("mmss")
    def mmss(seconds: float | None) -> str:
        if seconds is None:
            return "--:--"
        seconds = max(0, int(round(seconds)))
        return f"{seconds // 60:02d}:{seconds % 60:02d}"

    @app.template_filter("media_url")
    def media_url(key: str | None) -> str | None:
        from flask import url_for

        return url_for("watch.media", key=key) if key else None

    @app.template_filter("clip_media")
    def clip_media(clip, column: str) -> str | None:
        """``clip|clip_media("thumbnail_key")``: the file's URL by the clip's media id."""
        from .watch import clip_media_url

        return clip_media_url(clip, column)
