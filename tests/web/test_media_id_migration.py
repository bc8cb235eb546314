"""The media-id migration gives every existing clip its own random media id (not its
token), on SQLite and on PostgreSQL."""

from __future__ import annotations

from flask_migrate import upgrade
from sqlalchemy import text

from portal import MIGRATIONS, create_app
from portal.extensions import db
from tests.conftest import database_url


def test_existing_clips_get_a_media_id_that_is_not_their_token(db_kind, tmp_path):
    app = create_app({"AUTO_MIGRATE": False, "DATABASE_URL": database_url(db_kind, tmp_path),
                      "INSTANCE_PATH": str(tmp_path / "instance"),
                      "MEDIA_ROOT": str(tmp_path / "media"), "SECRET_KEY": "test",
                      "BROKER_URL": "memory://", "EMBEDDED_WORKER": "false"})
    with app.app_context():
        upgrade(directory=str(MIGRATIONS), revision="a0e933b04080")  # before media ids
        db.session.execute(text(
            "INSERT INTO campaigns (slug, title, description, licence, is_open, canvas_width, "
            "canvas_height, fps, tile_width, tile_height, created_at) VALUES "
            "('s', 't', '', '', true, 1280, 720, 30, 640, 360, '2026-01-01')"))
        for token in ("token-a", "token-b"):
            db.session.execute(text(
                "INSERT INTO clips (token, campaign_id, display_name, location, consent_at, "
                "status, attempts, original_key, original_filename, size_bytes, nudge_ms, "
                "created_at, updated_at) VALUES (:t, 1, 'Ana', '', '2026-01-01', 'received', 0, "
                ":key, '', 0, 0, '2026-01-01', '2026-01-01')"),
                {"t": token, "key": f"clips/{token}/original.mp4"})
        db.session.commit()
        upgrade(directory=str(MIGRATIONS))
        rows = db.session.execute(text("SELECT token, media_id FROM clips")).all()
        assert len(rows) == 2
        assert all(media_id and len(media_id) >= 20 and media_id != token
                   for token, media_id in rows)
        assert rows[0][1] != rows[1][1]
        db.session.remove()
        db.engine.dispose()
