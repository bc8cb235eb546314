"""Console benchmark: server time and HTML size of the organizer's and viewer's pages
with thousands of clips in a campaign, beside the old one-page-of-every-clip
campaign page (its template and query as they were before issue 14) in the same run.

    .venv/bin/python -m bench.console [--sizes 5000,50000] [--databases sqlite,postgresql]
        [--repeat 30] [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/tutti_bench]
        [--legacy-max 50000]

Rows are made directly in the database (one bulk INSERT): a campaign with four parts,
clips in every status (40 % awaiting review, 40 % approved), sync confidences, checks
with and without warnings, thumbnails and contact sheets by key, and a published
render of the approved clips. Each page is requested ``--repeat`` times through
Flask's test client (the whole server path: routing, session, policy, queries,
template), after two warm-up requests; p50 and p95 of the wall time and the HTML
size are printed. Goal (issue 14): p95 <= 150 ms and <= 200 KB per page, the same at
50,000 clips as at 5,000. PostgreSQL's database (``--pg-url``) is emptied first; when
it cannot be reached, that database is skipped with a note.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOAL_MS = 150.0
GOAL_KB = 200.0

PAGES = [
    ("review list", "/organize/c/bench"),
    ("review list: awaiting, low sync, page 40", "/organize/c/bench?status=awaiting&sync=low"
                                                 "&sort=confidence&page=40"),
    ("review list: has warnings, name sort", "/organize/c/bench?warnings=1&sort=name&page=7"),
    ("review view (one clip)", "/organize/clips/{mid}/review?status=awaiting"),
    ("campaign list", "/organize/"),
    ("watch page", "/watch/bench"),
    ("watch page: find yourself", "/watch/bench?q=singer%2004"),
    ("old campaign page (peer)", "LEGACY"),
]


def _make_app(kind: str, root: Path, pg_url: str):
    from portal import create_app

    if kind == "sqlite":
        url = f"sqlite:///{root / 'bench.sqlite3'}"
    else:
        from sqlalchemy import create_engine, text

        engine = create_engine(pg_url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        url = pg_url
    return create_app({"INSTANCE_PATH": str(root / "instance"), "DATABASE_URL": url,
                       "MEDIA_ROOT": str(root / "media"), "SECRET_KEY": "bench",
                       "WTF_CSRF_ENABLED": False, "BROKER_URL": "memory://",
                       "EMBEDDED_WORKER": "false", "SERVER_NAME": "tutti.bench"})


def _populate(app, n: int, seed: int = 1) -> int:
    """A campaign ``bench`` with ``n`` clips and a published render; returns the id of a
    clip in the middle of the "awaiting review" list."""
    from sqlalchemy import insert, select

    from portal.extensions import db
    from portal.models import Campaign, Clip, Render, RenderTile, new_token, utcnow
    from portal.services import create_campaign, create_organizer

    rng = random.Random(seed)
    warn = [{"code": "quiet", "severity": "warning", "message": "Your sound is very quiet."}]
    info = [{"code": "short", "severity": "info", "message": "Shorter than the guide."}]
    statuses = (["synced"] * 25 + ["needs_sync"] * 10 + ["normalized"] * 5 + ["approved"] * 40
                + ["declined"] * 10 + ["received"] * 5 + ["rejected"] * 3 + ["withdrawn"] * 2)
    with app.app_context():
        owner = create_organizer("bench@example.org", "bench password")
        campaign = create_campaign("bench", "Bench Choir", owner=owner,
                                   parts=["Soprano", "Alto", "Tenor", "Bass"])
        for part, target in zip(campaign.parts, (n // 4, n // 5, n // 6, n // 8), strict=True):
            part.target_count = target
        db.session.commit()
        part_ids = [p.id for p in campaign.parts]
        now = utcnow()
        rows = []
        for i in range(n):
            token, media = new_token(), new_token()
            status = rng.choice(statuses)
            processed = status not in ("received", "rejected")
            checks = (warn if rng.random() < 0.15 else info) if processed else None
            rows.append({
                "token": token, "media_id": media, "campaign_id": campaign.id,
                "part_id": rng.choice(part_ids), "display_name": f"Singer {i:05d}",
                "location": rng.choice(["Lisbon", "Osaka", "Lagos", "Quito", ""]),
                "consent_at": now, "status": status, "attempts": 1,
                "original_key": f"clips/{media}/original.mp4", "original_filename": "take.mp4",
                "size_bytes": 12_000_000,
                "normalized_key": f"clips/{media}/normalized.mp4" if processed else None,
                "thumbnail_key": f"clips/{media}/thumb.jpg" if processed else None,
                "contact_sheet_key": f"clips/{media}/sheet.jpg" if processed else None,
                "checks": checks, "warning_count": 1 if checks is warn else 0,
                "sync_state": "done" if processed else None,
                "sync_confidence": round(rng.random(), 3) if processed else None,
                "offset_seconds": round(rng.uniform(-2, 6), 3) if processed else None,
                "nudge_ms": 0, "created_at": now, "updated_at": now,
            })
        for start in range(0, n, 5000):
            db.session.execute(insert(Clip), rows[start:start + 5000])
        db.session.commit()
        approved = list(db.session.execute(select(Clip.id, Clip.token).where(
            Clip.campaign_id == campaign.id, Clip.status == "approved").order_by(Clip.id)))
        render = Render(campaign_id=campaign.id, kind="final", status="done", progress=1.0,
                        duration=240.0, output_key="renders/bench/r/mashup.mp4",
                        poster_key="renders/bench/r/poster.jpg",
                        clip_ids=[cid for cid, _ in approved],
                        appearances={tok: 4.0 + (k % 200) for k, (_, tok) in
                                     enumerate(approved)},
                        options={"layout": "grid", "audio": "auto"})
        db.session.add(render)
        db.session.flush()
        # its tile map: every approved clip in a grid cell for the whole mash-up
        side = max(1, math.ceil(math.sqrt(len(approved))))
        w, h = max(2, 1920 // side), max(2, 1080 // side)
        tiles = [{"render_id": render.id, "clip_id": cid, "x": (k % side) * w,
                  "y": (k // side) * h, "w": w, "h": h, "start": 4.0, "end": 236.0,
                  "live": 4.0 + (k % 200)} for k, (cid, _) in enumerate(approved)]
        for start in range(0, len(tiles), 5000):
            db.session.execute(insert(RenderTile), tiles[start:start + 5000])
        db.session.get(Campaign, campaign.id).published_render_id = render.id
        db.session.commit()
        _vacuum_analyze(db)
        awaiting = list(db.session.scalars(select(Clip.id).where(
            Clip.campaign_id == campaign.id, Clip.status.in_(("synced", "needs_sync",
                                                              "normalized")))
            .order_by(Clip.id)))
        return awaiting[len(awaiting) // 2]


def _vacuum_analyze(db) -> None:
    """What a running database has done by itself long before a campaign reaches 50,000
    clips (PostgreSQL's autovacuum; SQLite's ``PRAGMA optimize``): table statistics for
    the planner and, on PostgreSQL, the visibility map that lets the counts read the
    indexes alone. Rows bulk-inserted a second ago have neither."""
    from sqlalchemy import text

    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        db.session.execute(text("ANALYZE"))
        db.session.commit()


def _legacy_view(app):
    """The campaign page as it was: every clip of the campaign in one page."""
    from flask import render_template_string
    from flask_login import current_user
    from sqlalchemy import func, select

    from portal.extensions import db
    from portal.models import Clip
    from portal.policy import allowed, campaign_for, role_in
    from portal.states import CLIP_LABELS

    source = (HERE / "legacy_campaign.html").read_text()

    def legacy(slug: str):
        campaign = campaign_for(slug, "view")
        clips = db.session.scalars(select(Clip).filter_by(campaign_id=campaign.id)
                                   .order_by(Clip.id)).all()
        approved_ids = {c.id for c in campaign.clips if c.status == "approved"}
        published = campaign.published_render
        stale = bool(published and set(published.clip_ids or []) != approved_ids)
        counts = dict(db.session.execute(
            select(Clip.status, func.count()).filter_by(campaign_id=campaign.id)
            .group_by(Clip.status)).all())
        return render_template_string(
            source, campaign=campaign, clips=clips, counts=counts, labels=CLIP_LABELS,
            status_filter=None, stale=stale, role=role_in(current_user, campaign),
            can=lambda action: allowed(current_user, action, campaign))

    app.add_url_rule("/bench-legacy/<slug>", "bench_legacy", legacy)


def _measure(client, url: str, repeat: int) -> tuple[float, float, int, int, float]:
    """(p50 ms, p95 ms, bytes, status, p50 CPU ms) of ``repeat`` GETs after two
    warm-ups. The CPU time is this process's (the whole server path on SQLite; without
    the database server's share on PostgreSQL): on a machine shared with other jobs
    the wall time waits for a core, the CPU time does not."""
    for _ in range(2):
        answer = client.get(url)
    times, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        answer = client.get(url)
        body = answer.get_data()
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, max(0, round(0.95 * len(times)) - 1))]
    return statistics.median(times), p95, len(body), answer.status_code, statistics.median(cpu)


def run_one(kind: str, n: int, repeat: int, pg_url: str, legacy_max: int) -> list[tuple]:
    from portal.extensions import db

    rows = []
    with tempfile.TemporaryDirectory(prefix="tutti-bench-console-") as tmp:
        app = _make_app(kind, Path(tmp), pg_url)
        started = time.perf_counter()
        middle = _populate(app, n)
        made = time.perf_counter() - started
        print(f"# {kind}, {n} clips: rows made in {made:.1f} s", file=sys.stderr)
        _legacy_view(app)
        client = app.test_client()
        client.post("/organize/login", data={"email": "bench@example.org",
                                             "password": "bench password"})
        for name, url in PAGES:
            if url == "LEGACY":
                if n > legacy_max:
                    rows.append((kind, n, name, None, None, None, None))
                    continue
                url = "/bench-legacy/bench"
            url = url.format(mid=middle)
            reps = repeat if url != "/bench-legacy/bench" else max(3, repeat // 6)
            p50, p95, size, status, cpu = _measure(client, url, reps)
            if status != 200:
                raise SystemExit(f"{url} answered {status}")
            rows.append((kind, n, name, p50, p95, size, cpu))
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    return rows


def _table(rows: list[tuple]) -> str:
    lines = [f"{'db':10} {'clips':>6}  {'page':42} {'p50 ms':>8} {'p95 ms':>8} {'KB':>8} "
             f"{'CPU ms':>7}  goal", "-" * 104]
    for kind, n, name, p50, p95, size, cpu in rows:
        if p50 is None:
            lines.append(f"{kind:10} {n:>6}  {name:42} {'skipped (--legacy-max)':>26}")
            continue
        kb = size / 1024
        ok = "ok" if p95 <= GOAL_MS and kb <= GOAL_KB else "MISSED"
        if name.startswith("old"):
            ok = "(peer)"
        lines.append(f"{kind:10} {n:>6}  {name:42} {p50:8.1f} {p95:8.1f} {kb:8.1f} "
                     f"{cpu:7.1f}  {ok}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5000,50000")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--legacy-max", type=int, default=50000,
                        help="skip the old page above this many clips (it takes seconds)")
    parser.add_argument("--pg-url",
                        default="postgresql+psycopg://postgres@127.0.0.1:5432/tutti_bench")
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.INFO)
    rows: list[tuple] = []
    for kind in [k.strip() for k in args.databases.split(",") if k.strip()]:
        if kind == "postgresql" and not _pg_ready(args.pg_url):
            print(f"# PostgreSQL at {args.pg_url} cannot be reached: skipped "
                  "(createdb -h 127.0.0.1 -U postgres tutti_bench)", file=sys.stderr)
            continue
        for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
            rows += run_one(kind, n, args.repeat, args.pg_url, args.legacy_max)
            print(_table(rows), file=sys.stderr)
    print(_table(rows))
    print(f"\ngoal: p95 <= {GOAL_MS:.0f} ms and <= {GOAL_KB:.0f} KB of HTML per page, the same "
          "at every size; the old page is the peer (every clip on one page).")
    return 0


def _pg_ready(url: str) -> bool:
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable here"
        return False
