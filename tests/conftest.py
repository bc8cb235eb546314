"""Shared fixtures: the app on SQLite and on PostgreSQL, generated media.

The ``app`` fixture is parametrized over both databases, so every web and
pipeline test runs against SQLite and against the real PostgreSQL on
127.0.0.1:5432 (database ``test``). Set TUTTI_TEST_DATABASES=sqlite to skip
PostgreSQL locally; CI runs both.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from workers.media.ffmpeg import run_ffmpeg

PG_URL = os.environ.get("TUTTI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TUTTI_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
DATABASES = [d.strip() for d in os.environ.get("TUTTI_TEST_DATABASES",
                                               "sqlite,postgresql").split(",") if d.strip()]


def reset_postgres(url: str) -> None:
    """An empty public schema, so migrations start from nothing."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


ORGANIZER = ("org@example.org", "correct horse")


def database_url(kind: str, tmp_path: Path) -> str:
    """The URL of an EMPTY database of ``kind`` (no tables): for tests that migrate."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    reset_postgres(PG_URL)
    return PG_URL


# Migrating a database from nothing costs 0.5-1.5 s (15 Alembic revisions, SQLite's batch
# table copies), and about 700 tests make an app: most of the suite's time went there. The
# schema is built once per session instead: SQLite tests get a copy of a migrated file,
# PostgreSQL tests a migrated schema with every table emptied. ``make_app`` then skips the
# (no-op) upgrade. A test that needs an empty database uses ``database_url``.
_MIGRATED: dict[str, object] = {}


def _migrated_sqlite_template() -> Path:
    if "sqlite" not in _MIGRATED:
        import tempfile

        from portal import create_app

        root = Path(tempfile.mkdtemp(prefix="tutti-template-"))
        template = root / "template.sqlite3"
        app = create_app({"TESTING": True, "INSTANCE_PATH": str(root / "instance"),
                          "DATABASE_URL": f"sqlite:///{template}", "MEDIA_ROOT": str(root / "m"),
                          "SECRET_KEY": "test", "BROKER_URL": "memory://",
                          "EMBEDDED_WORKER": "false"})
        dispose(app)
        _MIGRATED["sqlite"] = template
    return _MIGRATED["sqlite"]  # type: ignore[return-value]


def _postgres_head_and_tables(engine) -> tuple[str | None, list[str]]:
    from sqlalchemy import inspect, text

    names = inspect(engine).get_table_names(schema="public")
    if "alembic_version" not in names:
        return None, names
    with engine.connect() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return head, [n for n in names if n != "alembic_version"]


def _empty_migrated_postgres() -> None:
    """PostgreSQL at the head revision with every table empty (and ids from 1)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_URL)
    try:
        head, tables = _postgres_head_and_tables(engine)
        if head is None or head != _MIGRATED.get("postgresql"):
            engine.dispose()
            reset_postgres(PG_URL)
            import tempfile

            from portal import create_app

            root = Path(tempfile.mkdtemp(prefix="tutti-pg-template-"))
            app = create_app({"TESTING": True, "INSTANCE_PATH": str(root / "instance"),
                              "DATABASE_URL": PG_URL, "MEDIA_ROOT": str(root / "m"),
                              "SECRET_KEY": "test", "BROKER_URL": "memory://",
                              "EMBEDDED_WORKER": "false"})
            dispose(app)
            engine = create_engine(PG_URL)
            head, tables = _postgres_head_and_tables(engine)
            _MIGRATED["postgresql"] = head
        if tables:
            quoted = ", ".join(f'"{name}"' for name in tables)
            with engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


def migrated_database_url(kind: str, tmp_path: Path) -> str:
    """The URL of a database of ``kind`` at the head revision with no rows.

    SQLite: ``tmp_path/test.sqlite3``, copied from the session's migrated template unless the
    file exists (a second app on the same ``tmp_path`` sees the first one's rows, as before).
    PostgreSQL: the shared test database, its tables emptied.
    """
    if kind == "sqlite":
        target = tmp_path / "test.sqlite3"
        if not target.exists():
            import shutil

            tmp_path.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_migrated_sqlite_template(), target)
        return f"sqlite:///{target}"
    _empty_migrated_postgres()
    return PG_URL


@pytest.fixture(params=DATABASES)
def db_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def make_app(db_kind: str, tmp_path: Path, **overrides: object):
    """A test app on ``db_kind`` in ``tmp_path``; ``overrides`` change its config."""
    from portal import create_app
    from portal.extensions import limiter

    # Flask-Limiter is one extension object per process, made for one app: a test that
    # broke an earlier app's Redis leaves it marked "storage dead" (on its in-memory
    # fallback, where log-ins fail closed), and init_app does not clear that
    limiter._storage_dead = False
    return create_app({
        "TESTING": True,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": migrated_database_url(db_kind, tmp_path),
        "AUTO_MIGRATE": False,
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",  # scrypt costs 0.1-0.5 s a log-in
        "MEDIA_ROOT": str(tmp_path / "media"),
        "SECRET_KEY": "test",
        "WTF_CSRF_ENABLED": False,
        "BROKER_URL": "memory://",
        "EMBEDDED_WORKER": "false",
        "SERVER_NAME": "tutti.test",
        # one more ffmpeg per intake: on in the tests of it (tests/web/test_pipeline.py)
        "INTAKE_PROXIES": False,
        **overrides,
    })


def dispose(app) -> None:
    from portal.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app(db_kind: str, tmp_path: Path):
    app = make_app(db_kind, tmp_path)
    yield app
    dispose(app)


@pytest.fixture
def csrf_app(db_kind: str, tmp_path: Path):
    """The app with CSRF protection on, as in production: every form post needs the
    session's token (see :func:`csrf_token_of`)."""
    app = make_app(db_kind, tmp_path, WTF_CSRF_ENABLED=True)
    yield app
    dispose(app)


def csrf_token_of(client, path: str = "/organize/login") -> str:
    """The CSRF token a page at ``path`` gives this client's session."""
    import re

    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def log_in(client, email: str = ORGANIZER[0], password: str = ORGANIZER[1], **headers):
    """Log ``client`` in through the form, CSRF token included; returns the answer."""
    token = csrf_token_of(client)
    return client.post("/organize/login", data={"email": email, "password": password,
                                                "csrf_token": token}, headers=headers)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def ensure_organizer(email: str = ORGANIZER[0], password: str = ORGANIZER[1], **kw):
    """The organizer with ``email`` (created when missing); call in an app context."""
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import Organizer
    from portal.services import create_organizer

    return (db.session.scalar(select(Organizer).filter_by(email=email))
            or create_organizer(email, password, **kw))


@pytest.fixture
def organizer_client(app, client):
    with app.app_context():
        ensure_organizer()
    answer = client.post("/organize/login", data={"email": ORGANIZER[0],
                                                  "password": ORGANIZER[1]})
    assert answer.status_code == 303
    return client


@pytest.fixture
def campaign(app):
    """The campaign ``ode-to-joy``, owned by the organizer of ``organizer_client``."""
    from portal.services import create_campaign

    with app.app_context():
        created = create_campaign("ode-to-joy", "Ode to Joy", parts=["Soprano", "Alto"],
                                  owner=ensure_organizer())
        return created.slug


# --- generated media (made once per session) ----------------------------------

@pytest.fixture(scope="session")
def media_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny clips: 160×90 for 2 s with a tone, a portrait one, one without audio,
    and files that are not videos."""
    root = tmp_path_factory.mktemp("media")
    made: dict[str, Path] = {}

    def make(name: str, args: list[str]) -> None:
        out = root / name
        run_ffmpeg([*args, str(out)], timeout=60)
        made[name.split(".")[0]] = out

    make("landscape.mp4", ["-f", "lavfi", "-i", "testsrc2=size=192x108:rate=25",
                           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
                           "-t", "2", "-pix_fmt", "yuv420p", "-c:v", "libx264",
                           "-preset", "ultrafast", "-c:a", "aac", "-shortest"])
    make("portrait.mp4", ["-f", "lavfi", "-i", "testsrc=size=108x192:rate=30",
                          "-f", "lavfi", "-i", "sine=frequency=660:sample_rate=48000",
                          "-t", "2", "-pix_fmt", "yuv420p", "-c:v", "libx264",
                          "-preset", "ultrafast", "-c:a", "aac", "-shortest"])
    make("silent.mp4", ["-f", "lavfi", "-i", "color=c=red:size=192x108:rate=24", "-t", "2",
                        "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast"])
    make("guide.wav", ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "3"])
    text = root / "notes.mp4"  # a text file that claims to be a video
    text.write_text("This is not a video, it is a shopping list.\n")
    made["text"] = text
    image = root / "photo.png"
    run_ffmpeg(["-f", "lavfi", "-i", "color=c=blue:size=64x64", "-frames:v", "1", str(image)],
               timeout=30)
    made["image"] = image
    return made


def ffmpeg_info(path: str | Path) -> str:
    """ffmpeg's own description of a file (stderr of ``ffmpeg -i``), for assertions."""
    from workers.media.ffmpeg import ffmpeg_path

    done = subprocess.run([ffmpeg_path(), "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True, timeout=60)
    return done.stderr
