"""The review view driven by the keyboard, in real Chromium (issue 14): J/K walk the
filtered list, A approves and goes on, D opens the reason box and Enter declines
with it (the participant then reads it), P plays the clip; the list's "select all"
and "Approve selected" decide a page at once."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.browser.conftest import organizer_page
from tests.conftest import ensure_organizer

pytestmark = pytest.mark.browser


def _campaign_with_clips(app, media_files: dict[str, Path]) -> list[int]:
    from portal.extensions import db
    from portal.models import Clip
    from portal.services import create_campaign

    store = app.extensions["tutti.storage"]
    with app.app_context():
        campaign = create_campaign("keys", "Keyboard Choir", parts=["Alto"],
                                   owner=ensure_organizer())
        ids = []
        for name in ("Ana", "Bea", "Cai", "Dov", "Eli"):
            clip = Clip(campaign=campaign, part=campaign.parts[0], display_name=name,
                        status="synced", original_key="", sync_confidence=0.9,
                        checks=[{"code": "quiet", "severity": "warning",
                                 "message": f"{name}: your sound is quiet."}])
            db.session.add(clip)
            db.session.flush()
            clip.original_key = f"clips/{clip.media_id}/original.mp4"
            clip.normalized_key = f"clips/{clip.media_id}/normalized.mp4"
            shutil.copyfile(media_files["landscape"], store.path_for_writing(clip.normalized_key))
            ids.append(clip.id)
        db.session.commit()
        return ids


def _status(app, clip_id: int) -> tuple[str, str | None, str]:
    from portal.extensions import db
    from portal.models import Clip

    with app.app_context():
        db.session.expire_all()
        clip = db.session.get(Clip, clip_id)
        return clip.status, clip.reason, clip.token


def test_review_with_the_keyboard(live, browser, media_files):  # noqa: F811
    app, base = live["app"], live["base"]
    ids = _campaign_with_clips(app, media_files)
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    organizer_page(page, base)
    # the campaign list says what awaits review; its link opens the filtered list
    page.click("a:has-text('5 to review')")
    page.wait_for_url(re.compile(r".*/organize/c/keys\?status=awaiting$"))
    page.click("#start-review")
    review = re.compile(r".*/organize/clips/(\d+)/review\?status=awaiting$")

    def current() -> int:
        page.wait_for_url(review)
        return int(review.match(page.url).group(1))

    assert current() == ids[0]
    assert "Ana: your sound is quiet." in page.locator("#review-checks").inner_text()
    page.keyboard.press("j")
    page.wait_for_url(f"**/clips/{ids[1]}/review?status=awaiting")
    page.keyboard.press("ArrowRight")
    page.wait_for_url(f"**/clips/{ids[2]}/review?status=awaiting")
    page.keyboard.press("k")
    page.wait_for_url(f"**/clips/{ids[1]}/review?status=awaiting")
    # P plays the clip (a keypress is the user's gesture the browser asks for)
    page.evaluate("document.getElementById('review-player').muted = true")
    page.keyboard.press("p")
    page.wait_for_function("() => !document.getElementById('review-player').paused && "
                           "document.getElementById('review-player').currentTime > 0.1",
                           timeout=30_000)
    page.keyboard.press("p")
    page.wait_for_function("() => document.getElementById('review-player').paused")
    # A approves Bea and goes on to the next clip awaiting review
    page.keyboard.press("a")
    page.wait_for_url(f"**/clips/{ids[2]}/review?status=awaiting")
    assert _status(app, ids[1])[0] == "approved"
    # D: the reason box; typing does not trigger shortcuts; Enter declines with it
    page.keyboard.press("d")
    assert page.evaluate("document.activeElement.id") == "decline-reason"
    reason = "Just a touch out of tune: please record again with headphones"
    page.keyboard.type(reason)
    assert page.url.endswith(f"/clips/{ids[2]}/review?status=awaiting")  # "j" in the text
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/clips/{ids[3]}/review?status=awaiting")
    status, said, token = _status(app, ids[2])
    assert (status, said) == ("declined", reason)
    # no guide: N offers no nudge box, and pressing it changes nothing
    assert page.locator("#nudge-form").count() == 0
    page.keyboard.press("n")
    assert page.url.endswith(f"/clips/{ids[3]}/review?status=awaiting")
    # U: back to the list, where Bea and Cai have left "awaiting review"
    page.keyboard.press("u")
    page.wait_for_url(re.compile(r".*/organize/c/keys\?status=awaiting$"))
    assert page.locator("tr.clip").count() == 3
    # bulk: select all on the page, approve selected
    page.check("#select-all")
    assert page.locator("#selected-count").inner_text() == "3 selected"
    page.click("button:has-text('Approve selected')")
    page.wait_for_selector("text=Approved 3 clip(s).")
    assert [_status(app, i)[0] for i in ids] == ["approved", "approved", "declined",
                                                 "approved", "approved"]
    # the parts roster counts them
    page.goto(f"{base}/organize/c/keys")
    assert page.locator("table.roster tr[data-part] .approved").first.inner_text() == "4"
    # the participant reads the reason on their private page
    page.goto(f"{base}/clip/{token}")
    assert reason in page.locator("#clip-status").inner_text()
    assert "did not include this clip" in page.locator("#next-step").inner_text()
    page.context.close()
