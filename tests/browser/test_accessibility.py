"""axe-core (through axe-playwright-python) on the main pages in Chromium (issue 14): the
organizer's campaign list, console, review view and settings, the watch page, the
participant's campaign and status pages. No violation of impact "serious" or
"critical" is allowed."""

from __future__ import annotations

import shutil

import pytest

from tests.browser.conftest import organizer_page
from tests.conftest import ensure_organizer

pytestmark = pytest.mark.browser


def _campaign(app, media_files) -> dict:
    from portal.extensions import db
    from portal.models import Clip, Render
    from portal.services import create_campaign, update_settings

    store = app.extensions["tutti.storage"]
    with app.app_context():
        campaign = create_campaign("axe", "Accessible Choir", parts=["Alto", "Bass"],
                                   description="Sing along.", owner=ensure_organizer())
        update_settings(campaign, {"parts": "Alto: 4\nBass: 2", "is_open": "yes"})
        clips = []
        for i, status in enumerate(["synced", "needs_sync", "approved", "approved"]):
            clip = Clip(campaign=campaign, part=campaign.parts[i % 2], display_name=f"Ana {i}",
                        location="Lisbon", status=status, original_key="",
                        sync_confidence=0.3 + 0.2 * i,
                        checks=[{"code": "quiet", "severity": "warning",
                                 "message": "Your sound is quiet."}])
            db.session.add(clip)
            db.session.flush()
            clip.original_key = f"clips/{clip.media_id}/original.mp4"
            clip.normalized_key = f"clips/{clip.media_id}/normalized.mp4"
            clip.thumbnail_key = f"clips/{clip.media_id}/thumb.png"
            shutil.copyfile(media_files["landscape"], store.path_for_writing(clip.normalized_key))
            shutil.copyfile(media_files["image"], store.path_for_writing(clip.thumbnail_key))
            clips.append(clip)
        render = Render(campaign=campaign, kind="final", status="done", progress=1.0,
                        duration=2.0, output_key=clips[2].normalized_key,
                        clip_ids=[c.id for c in clips[2:]],
                        appearances={c.token: 0.0 for c in clips[2:]},
                        options={"layout": "grid", "audio": "mix"})
        db.session.add(render)
        db.session.flush()
        campaign.published_render_id = render.id
        db.session.commit()
        return {"review": clips[0].id, "token": clips[2].token}


def test_main_pages_have_no_serious_accessibility_violation(live, browser,  # noqa: F811
                                                            media_files):
    app, base = live["app"], live["base"]
    ids = _campaign(app, media_files)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    organizer_page(page, base)
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    found = {}
    for path in ["/organize/", "/organize/c/axe", f"/organize/clips/{ids['review']}/review",
                 "/organize/c/axe/settings", "/watch/axe", "/watch/axe?q=ana", "/c/axe",
                 f"/clip/{ids['token']}"]:
        page.goto(base + path)
        results = axe.run(page)
        serious = [(v["id"], v["impact"], len(v["nodes"]))
                   for v in results.response["violations"]
                   if v["impact"] in ("serious", "critical")]
        if serious:
            found[path] = serious
    context.close()
    assert not found, found
