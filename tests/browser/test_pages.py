"""The three users in real Chromium (Debian's, driven by Playwright): a
participant uploads from a phone-sized screen and follows the status page; an
organizer approves and renders; a viewer plays and seeks the mash-up.

The app runs with its embedded default: a real Celery worker thread on the
in-memory transport, SQLite, local storage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser.conftest import organizer_page
from tests.conftest import ensure_organizer

pytestmark = pytest.mark.browser

def test_participant_organizer_viewer(live, browser, media_files: dict[str, Path], tmp_path):
    base = live["base"]
    # participant, on a phone-sized screen
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                has_touch=True)
    page = phone.new_page()
    dropped: list[str] = []

    def drop_first_chunk(route):  # the phone loses its connection once, mid-upload
        if route.request.method == "PATCH" and not dropped:
            dropped.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/v1/uploads/*", drop_first_chunk)
    page.goto(f"{base}/c/choir")
    assert page.locator("h1").inner_text() == "Browser Choir"
    # a forgotten consent box: the browser itself refuses (required), nothing is sent
    page.set_input_files("input[name=file]", str(media_files["landscape"]))
    page.fill("input[name=name]", "Ana from the browser")
    page.select_option("select[name=part]", "Alto")
    page.fill("input[name=location]", "Lisbon")
    page.check("input[name=consent]")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/clip/[A-Za-z0-9_-]{20,}$"))
    status_url = page.url
    assert dropped, "the resumable uploader was not used"
    # the status page follows the clip until it is converted (polling, then reload)
    page.wait_for_selector("text=Converted for the mash-up", timeout=90_000)
    assert page.locator("img.thumb").count() == 1
    page.screenshot(path=str(tmp_path / "status.png"))
    phone.close()

    # organizer: log in, approve, render, see progress finish
    desk = browser.new_context(viewport={"width": 1280, "height": 900})
    page = desk.new_page()
    page.goto(f"{base}/organize/")
    page.fill("input[name=email]", "org@example.org")
    page.fill("input[name=password]", "correct horse")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/organize/")
    page.click("text=Browser Choir")
    page.click("tr.clip button[value=approved]")
    page.wait_for_selector("tr.clip.state-approved")
    page.click("button[value=final]")
    page.wait_for_selector("td.render-status:has-text('done')", timeout=120_000)
    assert "published" in page.locator("td.render-status").first.inner_text()

    # viewer: the player loads, plays and seeks (range requests)
    page.goto(f"{base}/watch/choir")
    assert "Ana from the browser" in page.locator("table.credits").inner_text()
    page.wait_for_function("() => document.querySelector('#mashup').readyState >= 1",
                           timeout=30_000)
    duration = page.evaluate("document.querySelector('#mashup').duration")
    assert 7.5 < duration < 8.5  # 2 s of music, then 6 s of credits (checked by default)
    page.evaluate("v => { const m = document.querySelector('#mashup'); m.muted = true; "
                  "m.currentTime = 1.2; }", None)
    page.wait_for_function("() => document.querySelector('#mashup').readyState >= 2",
                           timeout=30_000)
    assert abs(page.evaluate("document.querySelector('#mashup').currentTime") - 1.2) < 0.3
    page.screenshot(path=str(tmp_path / "watch.png"), full_page=True)
    desk.close()

    # the private status link now says the clip is in the mash-up
    other = browser.new_page()
    other.goto(status_url)
    assert other.locator("text=You are in the mash-up").count() == 1
    other.close()


def test_a_synced_clip_its_picture_and_a_nudge(live, browser, tmp_path):
    """A campaign with a guide: the worker syncs a clip whose mic hears the guide 0.7 s
    into the recording; the participant's page says so; the organizer sees the sync
    picture (it loads) and nudges the offset by +40 ms, which the page then shows."""
    import time

    import numpy as np
    from scipy.io import wavfile

    from portal import services
    from portal.extensions import db
    from portal.models import Clip
    from tests.signals import tone_melody
    from workers.media.ffmpeg import run_ffmpeg

    rate = 48000
    guide = tone_melody(8.0, 1, rate)
    wavfile.write(tmp_path / "guide.wav", rate, guide)
    leak = np.concatenate([np.zeros(int(0.7 * rate), np.float32), 0.3 * guide])
    leak = leak + np.random.default_rng(2).normal(0, 0.01, leak.size).astype(np.float32)
    wavfile.write(tmp_path / "leak.wav", rate, leak.astype(np.float32))
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=192x108:rate=25",
                "-i", str(tmp_path / "leak.wav"), "-shortest", "-pix_fmt", "yuv420p",
                "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                str(tmp_path / "leak.mp4")], timeout=60)
    app, base = live["app"], live["base"]
    with app.app_context():
        campaign = services.create_campaign("guided", "Guided Choir", parts=["Alto"],
                                            guide_path=str(tmp_path / "guide.wav"),
                                            owner=ensure_organizer())
        with open(tmp_path / "leak.mp4", "rb") as handle:
            clip = services.submit_clip(campaign, handle, "leak.mp4", name="Bea", part="Alto",
                                        consent=True)
        clip_id, token = clip.id, clip.token
    deadline = time.monotonic() + 120
    while True:
        with app.app_context():
            status = db.session.get(Clip, clip_id).status
        if status in ("synced", "needs_sync", "failed", "rejected") or \
                time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == "synced"

    page = browser.new_page()
    page.goto(f"{base}/clip/{token}")
    assert page.locator("text=Synced to the guide").first.is_visible()
    organizer_page(page, base)
    page.goto(f"{base}/organize/clips/{clip_id}")
    page.wait_for_function("() => document.querySelector('img.plot').naturalWidth > 0",
                           timeout=30_000)
    page.fill("input[name=nudge_ms]", "40")
    page.click("text=Save nudge")
    page.wait_for_selector("text=nudge 40 ms")
    with app.app_context():
        clip = db.session.get(Clip, clip_id)
        assert clip.nudge_ms == 40
        assert abs(clip.effective_offset - (clip.offset_seconds + 0.04)) < 1e-6
        candidates = clip.sync_candidates
    # check by ear: Listen plays guide (left) against the take (right) at that offset in the
    # page's player; Use this offset keeps it
    assert len(candidates) >= 2
    other = candidates[1]["offset_seconds"]
    page.locator("table.candidates a[data-listen]").nth(1).click()
    page.wait_for_function("() => { const a = document.getElementById('sync-listen');"
                           " return a.readyState >= 1 && a.duration > 5; }", timeout=30_000)
    src = page.eval_on_selector("#sync-listen", "a => a.src")
    assert f"offset={other:.4f}" in src
    assert page.locator("table.candidates tr.listening").count() == 1
    page.locator("table.candidates button", has_text="Use this offset").nth(1).click()
    page.wait_for_selector("text=the clip is synced")
    with app.app_context():
        clip = db.session.get(Clip, clip_id)
        assert clip.sync_method == "manual" and abs(clip.offset_seconds - other) < 1e-3
        assert clip.nudge_ms == 0
    page.close()


_TEXT_X = """([needle, scope]) => {
  const root = document.querySelector(scope);
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const at = node.data.indexOf(needle);
    if (at >= 0) {
      const range = document.createRange();
      range.setStart(node, at);
      range.setEnd(node, at + needle.length);
      return range.getBoundingClientRect().x;
    }
  }
  return null;
}"""


def test_right_to_left_user_text_keeps_its_place(live, browser, media_files: dict[str, Path]):
    """A Latin name with an Arabic part and an Arabic town: each field is isolated, so the
    " · " between the two Arabic fields does not turn right to left and swap them."""
    from portal.services import create_campaign, get_campaign, submit_clip

    with live["app"].app_context():
        create_campaign("world", "جوقة العالم", parts=["Alto", "سوبرانو"])
        with open(media_files["landscape"], "rb") as handle:
            clip = submit_clip(get_campaign("world"), handle, "a.mp4", name="Maria",
                               part="سوبرانو", location="القاهرة", consent=True)
        token = clip.token
    page = browser.new_page()
    page.goto(f"{live['base']}/clip/{token}")
    xs = [page.evaluate(_TEXT_X, [text, "#clip-status"]) for text in
          ("Maria", "سوبرانو", "القاهرة")]
    assert None not in xs and xs[0] < xs[1] < xs[2], xs
    page.goto(f"{live['base']}/c/world")
    assert page.evaluate("document.querySelector('h1').matches(':dir(rtl)')")
    assert page.evaluate("document.querySelector('input[name=name]').getAttribute('dir')") == \
        "auto"
    page.close()


_WIDEST = """() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"""


def test_long_and_zalgo_names_stay_in_their_rows_on_a_phone(live, browser,
                                                            media_files: dict[str, Path]):
    """Issue 13: a 120-letter unbroken name wraps (the page stays 375 px wide on the watch,
    clip, status and organizer pages) and a combining-mark flood is capped at four marks
    per letter where names are shown, so it cannot paint over the rows around it."""
    import time

    import regex

    from portal.extensions import db
    from portal.models import Clip, Render
    from portal.services import create_campaign, get_campaign, submit_clip

    long_name = "W" * 120
    zalgo = "Z" + "\u0301\u0316\u0317" * 25 + "algo"
    with live["app"].app_context():
        create_campaign("wide", "Wide names", parts=["Alto"])
        campaign = get_campaign("wide")
        clips = []
        for name in (long_name, zalgo, "Ana"):
            with open(media_files["landscape"], "rb") as handle:
                clips.append(submit_clip(campaign, handle, "a.mp4", name=name, part="Alto",
                                         location="L" * 60, consent=True))
        ids = [clip.id for clip in clips]
    deadline = time.monotonic() + 120  # the worker has processed them (a thumbnail each)
    while time.monotonic() < deadline:
        with live["app"].app_context():
            if all(db.session.get(Clip, i).status in ("normalized", "synced", "needs_sync")
                   for i in ids):
                break
        time.sleep(0.5)
    with live["app"].app_context():
        campaign = get_campaign("wide")
        clips = [db.session.get(Clip, i) for i in ids]
        for clip in clips:
            clip.status = "approved"  # as the organizer's approval leaves them
        render = Render(campaign=campaign, status="done", output_key="renders/none.mp4",
                        duration=10.0, clip_ids=[clip.id for clip in clips])
        db.session.add(render)
        db.session.flush()
        campaign.published_render = render
        db.session.commit()
        tokens = [clip.token for clip in clips]
    phone = browser.new_context(viewport={"width": 375, "height": 800})
    page = phone.new_page()
    base = live["base"]
    organizer_page(page, base)
    pages = [f"{base}/watch/wide", f"{base}/clip/{tokens[0]}", f"{base}/clip/{tokens[1]}",
             f"{base}/organize/c/wide",
             f"{base}/organize/clips/{ids[0]}", f"{base}/organize/clips/{ids[1]}"]
    for url in pages:
        page.goto(url)
        assert page.evaluate(_WIDEST) <= 375, f"{url} is wider than the phone"
    page.goto(f"{base}/watch/wide")
    assert page.locator("table.credits tbody tr").count() == 3
    assert page.locator(".gallery figcaption").count() == 3
    shown = page.locator("table.credits tbody tr").nth(1).locator("td").first
    text = shown.text_content()
    assert text.startswith("Z") and len(regex.findall(r"\p{M}", text)) <= 4
    row = page.locator("table.credits tbody tr")
    boxes = [row.nth(k).bounding_box() for k in range(3)]
    assert boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"] - 1
    assert boxes[2]["y"] >= boxes[1]["y"] + boxes[1]["height"] - 1
    phone.close()

