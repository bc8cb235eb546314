"""Configuration: defaults, then the environment (``TUTTI_*``).

This is the only module that reads ``os.environ`` for the portal. Every setting
can also be passed to ``create_app(config={...})`` (tests do that).
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

ENV_PREFIX = "TUTTI_"

# name -> (default, type). The environment variable is TUTTI_<NAME>.
SETTINGS: dict[str, tuple[object, type]] = {
    "DATABASE_URL": ("", str),  # default: sqlite file in the instance folder
    "BROKER_URL": ("memory://", str),  # memory:// = embedded worker thread in the web process
    "RESULT_BACKEND": ("", str),
    "MEDIA_ROOT": ("", str),  # default: <instance>/media
    "SECRET_KEY": ("", str),  # default: generated once and kept in the instance folder
    "MAX_UPLOAD_MB": (1024, int),
    "BASE_URL": ("", str),  # public URL: every absolute link (pages, API, CLI) starts with it
    # host names this portal answers to (comma-separated; ".example.org" takes its
    # subdomains): any other Host header is a 400. Unset: links are relative, see portal.links
    "TRUSTED_HOSTS": ("", str),
    "INTAKE_TIMEOUT": (1800, int),  # seconds one normalize may take
    "RENDER_TIMEOUT": (4 * 3600, int),
    "RECONCILE_SECONDS": (15, int),  # how often the reconciler re-enqueues pending work
    # a worker's claim on a clip or render lasts this long and is renewed (heartbeat) every
    # third of it while the work runs: a dead worker's work is free again within it
    "LEASE_SECONDS": (30, int),
    # work queued but never started is sent again after this (a lost broker message);
    # at once when the broker was restarted empty
    "RESEND_SECONDS": (300, int),
    # ... but never while its message still waits in the queue: the check of a waiting
    # message backs off from RESEND_SECONDS, doubling up to this (see portal.waiting)
    "RESEND_MAX_SECONDS": (3600, int),
    # the broker hands an unacknowledged message (its worker died) to another after this
    "VISIBILITY_SECONDS": (300, int),
    "LOG_FORMAT": ("text", str),  # text | json (one JSON object a line, with clip/render ids)
    "EMBEDDED_WORKER": ("auto", str),  # auto: on when the broker is memory://
    "DISTRIBUTED_RENDER": ("auto", str),  # auto: segments on many workers with a shared broker
    "RENDER_SEGMENT_SECONDS": (10, int),  # length of one distributed render segment
    "RENDER_PROXIES": (True, bool),  # cache cell-size proxies: re-renders decode small copies
    # build a clip's proxies at intake for the grids a final render likely draws (16-100
    # clips), so the first render finds them (needs RENDER_PROXIES)
    "INTAKE_PROXIES": (True, bool),
    "LOG_LEVEL": ("INFO", str),
    # security
    "TRUSTED_PROXIES": (0, int),  # reverse proxies in front (X-Forwarded-* read via ProxyFix)
    "SESSION_DAYS": (14, int),  # an organizer's log-in (and remember cookie) lasts this long
    "SESSION_PROTECTION": ("strong", str),  # Flask-Login: basic | strong
    "INVITE_HOURS": (72, int),  # an invite link expires after this
    # a clip file's signed URL (thumbnail, clip, contact sheet) works for this long: a URL
    # copied from a page stops working after a decline, a withdrawal or a removed member
    "MEDIA_URL_HOURS": (6, int),
    # behind the proxy of the production set-up (portal/proxy.conf.template): media answers
    # carry "X-Accel-Redirect: <this prefix><key>" and no body, and nginx sends the file
    # (ranges, sendfile) from its internal location. Empty: the app sends the bytes itself
    "MEDIA_ACCEL_REDIRECT": ("", str),
    # how long a shared cache (the proxy) may keep a watch page asked for without a cookie;
    # browsers revalidate every time (ETag: an unchanged page is a 304). 0: no shared cache
    "WATCH_CACHE_SECONDS": (10, int),
    "LOGIN_LIMIT_ACCOUNT": ("5 per minute; 20 per hour", str),  # failed log-ins per e-mail
    "LOGIN_LIMIT_ADDRESS": ("10 per minute; 50 per hour", str),  # failed log-ins per address
    "UPLOAD_LIMIT_ADDRESS": ("60 per hour", str),  # new uploads per client address
    "UPLOAD_LIMIT_CAMPAIGN": ("1000 per hour", str),  # new uploads per campaign
    # refused upload requests (bad input, too large, ...) per client address, counted
    # apart: the two limits above count accepted uploads only
    "UPLOAD_LIMIT_REJECTED_ADDRESS": ("100 per hour", str),
    "RATELIMIT_STORAGE": ("", str),  # default: the broker when it is Redis, else memory://
    # werkzeug's password hash; the test suite sets a cheap one (scrypt costs 0.1-0.5 s a login)
    "PASSWORD_HASH_METHOD": ("scrypt", str),
    "UPLOAD_EXPIRE_HOURS": (24, int),  # an unfinished resumable upload expires after this
}


def _coerce(value: str, kind: type) -> object:
    if kind is int:
        return int(value)
    if kind is bool:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return value


def from_environment(environ: dict[str, str] | None = None) -> dict[str, object]:
    """Settings read from ``TUTTI_*`` variables (only those that are set)."""
    environ = dict(os.environ) if environ is None else environ
    found: dict[str, object] = {}
    for name, (_default, kind) in SETTINGS.items():
        raw = environ.get(ENV_PREFIX + name)
        if raw is not None and raw != "":
            try:
                found[name] = _coerce(raw, kind)
            except ValueError as exc:
                raise SystemExit(
                    f"{ENV_PREFIX}{name}={raw!r} is not a valid {kind.__name__}") from exc
    return found


def build_config(instance_path: str, overrides: dict | None = None) -> dict[str, object]:
    """Defaults, then environment, then explicit overrides; derived values last."""
    config: dict[str, object] = {name: default for name, (default, _k) in SETTINGS.items()}
    config.update(from_environment())
    config.update(overrides or {})
    instance = Path(instance_path)

    if not config["DATABASE_URL"]:
        config["DATABASE_URL"] = f"sqlite:///{instance / 'tutti.sqlite3'}"
    if not config["MEDIA_ROOT"]:
        config["MEDIA_ROOT"] = str(instance / "media")
    if not config["SECRET_KEY"]:
        config["SECRET_KEY"] = _instance_secret(instance)
    if not config["RESULT_BACKEND"]:
        broker = str(config["BROKER_URL"])
        config["RESULT_BACKEND"] = broker if broker.startswith("redis") else "cache+memory://"
    if config["EMBEDDED_WORKER"] == "auto":
        config["EMBEDDED_WORKER"] = str(config["BROKER_URL"]).startswith("memory")
    else:
        config["EMBEDDED_WORKER"] = _coerce(str(config["EMBEDDED_WORKER"]), bool)

    if config["DISTRIBUTED_RENDER"] == "auto":  # segments need workers that share a broker
        config["DISTRIBUTED_RENDER"] = not str(config["BROKER_URL"]).startswith("memory")
    else:
        config["DISTRIBUTED_RENDER"] = _coerce(str(config["DISTRIBUTED_RENDER"]), bool)

    hosts = config["TRUSTED_HOSTS"]
    if isinstance(hosts, str):
        hosts = [h.strip() for h in hosts.split(",") if h.strip()]
    config["TRUSTED_HOSTS"] = list(hosts) or None  # Flask checks every request's Host

    if not config["RATELIMIT_STORAGE"]:
        broker = str(config["BROKER_URL"])
        config["RATELIMIT_STORAGE"] = broker if broker.startswith("redis") else "memory://"
    config.setdefault("RATELIMIT_STORAGE_URI", config["RATELIMIT_STORAGE"])
    config.setdefault("RATELIMIT_HEADERS_ENABLED", True)  # 429 answers carry Retry-After
    config.setdefault("RATELIMIT_KEY_PREFIX", "tutti")
    config.setdefault("RATELIMIT_STRATEGY", "fixed-window")  # log-in refunds need it
    # Redis down, full (noeviction) or read-only: count in this process's memory meanwhile
    # rather than answer every upload and log-in with a 500 (Flask-Limiter's own fallback;
    # it goes back to Redis when Redis answers again), and never fail a request on a count
    config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    # cookies: never readable by scripts, not sent along cross-site posts; Secure is
    # added per response when the request came over HTTPS (see portal.security)
    config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    config.setdefault("REMEMBER_COOKIE_HTTPONLY", True)
    config.setdefault("REMEMBER_COOKIE_SAMESITE", "Lax")
    config.setdefault("REMEMBER_COOKIE_DURATION", timedelta(days=int(config["SESSION_DAYS"])))
    config.setdefault("SQLALCHEMY_DATABASE_URI", config["DATABASE_URL"])
    config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True})
    config.setdefault("MAX_CONTENT_LENGTH", int(config["MAX_UPLOAD_MB"]) * 1024 * 1024)
    config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    config.setdefault("CELERY", celery_settings(config))
    return config


def celery_settings(config: dict[str, object]) -> dict[str, object]:
    """Celery settings under one key. Reliability: the database says what is
    pending, the broker only wakes workers; late acks re-deliver work a dead
    worker held; the visibility timeout exceeds the longest task."""
    hard_limit = int(config["RENDER_TIMEOUT"]) + 600
    return {
        "broker_url": config["BROKER_URL"],
        "result_backend": config["RESULT_BACKEND"],
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        # Redis refusing a write (out of memory with noeviction, read-only replica) is a
        # "channel error" to kombu: without this a worker dies of it ("Unrecoverable
        # error"); with it the worker reconnects and goes on once Redis takes writes again
        "broker_channel_error_retry": True,
        # ... waiting longer and longer between attempts, not five times a second
        "worker_consumer": "workers.celery_app:PatientConsumer",
        # A message whose worker died comes back after the visibility timeout; one whose
        # worker still runs it comes back too and finds the row leased (a no-op). The
        # reconciler takes dead work over sooner, through the leases (see workers.leases).
        "broker_transport_options": {"visibility_timeout": int(config["VISIBILITY_SECONDS"]),
                                     "unacked_restore_interval": 10,
                                     "unacked_restore_throttle": 1},
        "task_default_queue": "intake",
        "task_routes": {
            "tutti.intake_clip": {"queue": "intake"},
            "tutti.align_clip": {"queue": "intake"},
            "tutti.render": {"queue": "render"},
            "tutti.render_part": {"queue": "render"},
            "tutti.join_render": {"queue": "render"},
            "tutti.export_render": {"queue": "render"},
            "tutti.reconcile": {"queue": "intake"},
        },
        "task_time_limit": hard_limit,
        "worker_hijack_root_logger": False,
    }


def _instance_secret(instance: Path) -> str:
    """A secret key generated once per instance folder, so sessions survive restarts."""
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_hex(32)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(key)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path.read_text().strip()


def instance_path_from_env() -> str | None:
    """``TUTTI_INSTANCE`` picks the instance folder (database, media, secret)."""
    return os.environ.get(ENV_PREFIX + "INSTANCE") or None
