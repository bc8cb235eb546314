"""docker-compose.yml has what README's "Production" section says (issue 15): gunicorn for
the pages and the uploads, intake workers, render workers at concurrency 1, one beat, Redis
that never evicts and keeps its queue (append-only), PostgreSQL, one media volume shared by
every Tutti service, JSON logs, /readyz as the page server's health check. Read as text
(CI checks the syntax with `docker compose config`; PyYAML is not a dependency)."""

from __future__ import annotations

import re
from pathlib import Path

COMPOSE = (Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text()


def _service(name: str) -> str:
    """The text of one service's block (up to the next service or top-level key)."""
    start = COMPOSE.index(f"\n  {name}:\n")
    ends = [m.start() for m in re.finditer(r"\n  [a-z][a-z-]*:\n|\n[a-z]", COMPOSE)
            if m.start() > start]
    return COMPOSE[start:min(ends) if ends else len(COMPOSE)]


def test_the_production_services_are_what_the_readme_says():
    shared = COMPOSE[COMPOSE.index("x-tutti: &tutti"):COMPOSE.index("\nservices:")]
    assert "volumes: [media:/data]" in shared  # one volume for every Tutti service
    assert "TUTTI_MEDIA_ROOT: /data/media" in COMPOSE
    assert "TUTTI_LOG_FORMAT: json" in COMPOSE
    for name in ("web", "uploads", "worker-intake", "worker-render", "beat"):
        assert "<<: *tutti" in _service(name), name
    for name in ("web", "uploads"):
        assert '"gunicorn", "-c", "python:portal.gunicorn_conf"' in _service(name), name
    assert "/readyz" in _service("web")
    intake = _service("worker-intake")
    assert '"--queues", "intake"' in intake and '"--no-beat"' in intake
    render = _service("worker-render")
    assert '"--queues", "render", "--concurrency", "1"' in render and '"--no-beat"' in render
    assert 'command: ["tutti", "beat"]' in _service("beat")
    redis = _service("redis")
    assert '"--appendonly", "yes"' in redis
    assert '"--maxmemory-policy", "noeviction"' in redis
    db = _service("db")
    assert "image: postgres:" in db
    assert "postgresql+psycopg://" in COMPOSE and "@db:5432/" in COMPOSE
    proxy = _service("proxy")
    assert "- media:/data:ro" in proxy  # nginx sends media files from the same volume
    assert "TUTTI_PROXY_RESOLVER: 127.0.0.11" in proxy  # scaled services found by name
