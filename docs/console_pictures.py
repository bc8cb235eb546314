"""Make the console screenshots in docs/ (campaign list, review list with the parts
roster, keyboard review view, settings, watch page, status page) from a campaign of
600 clip rows made directly in the database, in Debian's Chromium.

    .venv/bin/python docs/console_pictures.py [docs]
"""

from __future__ import annotations

import random
import sys
import tempfile
import threading
from pathlib import Path

from workers.media.ffmpeg import run_ffmpeg

COLOURS = ["0x3b6ea5", "0xa53b5e", "0x3ba56b", "0xa5853b", "0x6b3ba5", "0x3ba5a0"]


def _pictures(root: Path) -> list[Path]:
    made = []
    for k, colour in enumerate(COLOURS):
        out = root / f"thumb{k}.jpg"
        run_ffmpeg(["-f", "lavfi", "-i", f"color=c={colour}:size=320x180", "-vf",
                    "drawbox=x=120:y=40:w=80:h=100:color=white@0.6:t=fill", "-frames:v", "1",
                    str(out)], timeout=30)
        made.append(out)
    return made


def main(out_dir: str = "docs") -> None:
    import shutil

    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from portal import create_app
    from portal.extensions import db
    from portal.models import Clip, Render
    from portal.services import create_campaign, create_organizer, update_settings

    out = Path(out_dir)
    root = Path(tempfile.mkdtemp(prefix="tutti-docs-"))
    app = create_app({"INSTANCE_PATH": str(root / "instance"),
                      "DATABASE_URL": f"sqlite:///{root / 'docs.sqlite3'}",
                      "MEDIA_ROOT": str(root / "media"), "SECRET_KEY": "docs",
                      "BROKER_URL": "memory://", "EMBEDDED_WORKER": "false"})
    thumbs = _pictures(root)
    store = app.extensions["tutti.storage"]
    rng = random.Random(3)
    names = ["Ana", "Bea", "Chidi", "Dmitri", "Eun-ji", "Farah", "Gabriel", "Hana", "Ivo",
             "Jun", "Kofi", "Lena", "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa"]
    places = ["Lisbon", "Osaka", "Lagos", "Quito", "Oslo", "Pune", "Lyon", ""]
    with app.app_context():
        owner = create_organizer("org@example.org", "correct horse")
        campaign = create_campaign("ode-to-joy", "Ode to Joy", owner=owner,
                                   description="Sing the last movement with choirs all "
                                               "over the world.",
                                   parts=["Soprano", "Alto", "Tenor", "Bass"])
        update_settings(campaign, {"parts": "Soprano: 160\nAlto: 150\nTenor: 120\nBass: 120",
                                   "is_open": "yes", "deadline": "2027-03-01T18:00"})
        create_campaign("messiah", "Hallelujah chorus", owner=owner, parts=["Choir"])
        warn = [{"code": "quiet", "severity": "warning",
                 "message": "Your sound is very quiet: the mash-up raises it, with its noise."}]
        statuses = ["synced"] * 5 + ["needs_sync"] * 2 + ["approved"] * 6 + ["declined",
                                                                               "received"]
        clips = []
        for i in range(600):
            clip = Clip(campaign=campaign, part=rng.choice(campaign.parts),
                        display_name=f"{rng.choice(names)} {chr(65 + i % 26)}.",
                        location=rng.choice(places), status=rng.choice(statuses),
                        original_key="", sync_confidence=round(rng.random(), 2),
                        offset_seconds=round(rng.uniform(0, 3), 3),
                        checks=warn if rng.random() < 0.2 else None)
            db.session.add(clip)
            db.session.flush()
            clip.original_key = f"clips/{clip.media_id}/original.mp4"
            clip.thumbnail_key = f"clips/{clip.media_id}/thumb.jpg"
            clip.contact_sheet_key = f"clips/{clip.media_id}/sheet.jpg"
            picture = thumbs[i % len(thumbs)]
            shutil.copyfile(picture, store.path_for_writing(clip.thumbnail_key))
            shutil.copyfile(picture, store.path_for_writing(clip.contact_sheet_key))
            clips.append(clip)
        approved = [c for c in clips if c.status == "approved"]
        render = Render(campaign=campaign, kind="final", status="done", progress=1.0,
                        duration=215.0, output_key="renders/ode-to-joy/r/mashup.mp4",
                        poster_key="renders/ode-to-joy/r/poster.jpg",
                        clip_ids=[c.id for c in approved],
                        appearances={c.token: 4.0 + 3 * (k % 60) for k, c in
                                     enumerate(approved)},
                        options={"layout": "sections", "audio": "guide+mix", "labels": True,
                                 "credits": True})
        running = Render(campaign=campaign, kind="preview", status="running", progress=0.42,
                         options={"layout": "grid", "audio": "mix", "labels": True})
        db.session.add_all([render, running])
        db.session.flush()
        shutil.copyfile(thumbs[0], store.path_for_writing(render.poster_key))
        campaign.published_render_id = render.id
        db.session.commit()
        review_id = next(c.id for c in clips if c.status == "needs_sync")
        token = next(c.token for c in clips if c.status == "approved")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/organize/login")
        page.fill("input[name=email]", "org@example.org")
        page.fill("input[name=password]", "correct horse")
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/organize/")
        shots = [("console-campaigns.png", "/organize/", False),
                 ("console-review-list.png", "/organize/c/ode-to-joy?status=awaiting", False),
                 ("console-review-view.png",
                  f"/organize/clips/{review_id}/review?status=awaiting", False),
                 ("console-settings.png", "/organize/c/ode-to-joy/settings", False),
                 ("console-watch.png", "/watch/ode-to-joy?q=ana", False),
                 ("console-status.png", f"/clip/{token}", False)]
        for name, path, full in shots:
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
            if name == "console-review-list.png":
                page.evaluate("window.scrollTo(0, document.getElementById('roster-h')"
                              ".getBoundingClientRect().top + window.scrollY - 10)")
            page.screenshot(path=str(out / name), full_page=full)
            print(out / name)
        browser.close()
    server.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
