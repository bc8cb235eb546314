"""The participant's upload in real Chromium, through the real page, when the network
misbehaves (issue 11): answers lost (the last PATCH's, the creation's), the browser
offline, 423 / 429 / 503 answers, and two different files with the same name, size
and modification time. Every case ends with exactly one clip of the campaign whose
stored original has the chosen file's SHA-256, and the private status page shown.

The network is broken with Playwright's request interception (``page.route``: a
request is passed to the server and its answer dropped, or answered with an error)
and the DevTools protocol's offline emulation (``context.set_offline``)."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from pathlib import Path

import pytest
from sqlalchemy import select

pytestmark = pytest.mark.browser

STATUS_PAGE = re.compile(r".*/clip/[A-Za-z0-9_-]{20,}$")
# every text the page's upload note shows, in order (the note changes quickly)
RECORD_NOTES = """
document.addEventListener("DOMContentLoaded", () => {
  window.__notes = [];
  const note = document.getElementById("upload-note");
  if (!note) return;
  new MutationObserver(() => {
    const text = note.textContent;
    if (text && window.__notes[window.__notes.length - 1] !== text) {
      window.__notes.push(text);
      window.__tuttiNote(text);  // kept on the test's side across page loads
    }
  }).observe(note, {childList: true, characterData: true, subtree: true});
});
"""


@pytest.fixture
def campaign(live):
    """A fresh open campaign per test, so "exactly one clip" is about this test only."""
    from portal.services import create_campaign

    slug = "up-" + secrets.token_hex(4)
    with live["app"].app_context():
        create_campaign(slug, "Upload Choir", parts=["Alto"])
    return slug


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True)
    context.add_init_script(RECORD_NOTES)
    page = context.new_page()
    seen = SEEN[id(page)] = []
    page.expose_function("__tuttiNote", lambda text: seen.append(text))
    yield page
    SEEN.pop(id(page), None)
    context.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def clips_of(live, slug: str) -> list[tuple[str, str]]:
    """(token, SHA-256 of the stored original) of every clip of the campaign."""
    from portal.extensions import db
    from portal.models import Campaign, Clip

    app = live["app"]
    with app.app_context():
        campaign = db.session.scalar(select(Campaign).filter_by(slug=slug))
        clips = db.session.scalars(select(Clip).filter_by(campaign_id=campaign.id)).all()
        store = app.extensions["tutti.storage"]
        found = [(c.token, hashlib.sha256(store.path(c.original_key).read_bytes()).hexdigest())
                 for c in clips]
        db.session.remove()
        return found


def fill_form(page, live, slug: str, video: Path, name: str = "Ana") -> None:
    page.goto(f"{live['base']}/c/{slug}")
    page.set_input_files("input[name=file]", str(video))
    page.fill("input[name=name]", name)
    page.select_option("select[name=part]", "Alto")
    page.check("input[name=consent]")


def landed(page, live, slug: str, video: Path) -> str:
    """Wait for the private status page; check it is the one clip, of this file."""
    page.wait_for_url(STATUS_PAGE, timeout=60_000)
    page.wait_for_selector("#clip-status, .timeline, h1")
    token = page.url.rsplit("/", 1)[1]
    assert clips_of(live, slug) == [(token, sha256(video))]
    return token


SEEN: dict[int, list[str]] = {}


def notes(page) -> list[str]:
    """Every text the upload note showed on this page, across page loads."""
    return list(SEEN[id(page)])


def wait_note(page, pattern: str, timeout: float = 30) -> None:
    """Wait until the upload note has shown text matching ``pattern`` (polled from
    here: the page's CSP forbids the string evaluation wait_for_function uses)."""
    deadline = time.monotonic() + timeout
    while not any(re.search(pattern, t) for t in notes(page)):
        assert time.monotonic() < deadline, f"no note matching {pattern!r}: {notes(page)}"
        page.wait_for_timeout(100)


def no_raw_errors(seen: list[str]) -> None:
    for text in seen:
        assert "Failed to fetch" not in text and "tus:" not in text, seen


def test_stuck_at_100_percent_the_last_answer_lost(live, page, campaign, media_files):
    """The server has the whole file and has made the clip, but the answer to the last
    PATCH never arrives: the page asks (HEAD), learns it is done and opens the link,
    without a loop of empty PATCHes."""
    video = media_files["landscape"]
    sent: list[str] = []
    lost: list[str] = []

    def lose_the_last_answer(route):
        request = route.request
        sent.append(request.method)
        if request.method == "PATCH" and not lost:
            answer = route.fetch()  # the server gets it all and makes the clip ...
            assert "tutti-clip" in answer.headers
            lost.append(answer.headers["tutti-clip"])
            route.abort("connectionreset")  # ... and the phone never hears back
        else:
            route.continue_()

    page.route("**/api/v1/uploads**", lose_the_last_answer)
    fill_form(page, live, campaign, video)
    page.click("button[type=submit]")
    token = landed(page, live, campaign, video)
    assert token == lost[0]
    assert sent.count("PATCH") == 1, sent  # no empty PATCHes after the end
    assert sent.count("HEAD") <= 2, sent
    no_raw_errors(notes(page))


def test_stuck_at_100_percent_then_reload_and_send_the_same_file(live, page, campaign,
                                                                 media_files):
    """The answer was lost and the page closed before it could ask: opening the page
    again and sending the same file opens the same clip's link; nothing is sent twice."""
    video = media_files["landscape"]
    offline = {"on": False}
    made: list[str] = []

    def lose_everything_after_the_end(route):
        if offline["on"]:
            route.abort("internetdisconnected")
        elif route.request.method == "PATCH":
            made.append(route.fetch().headers["tutti-clip"])
            offline["on"] = True
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/v1/uploads**", lose_everything_after_the_end)
    fill_form(page, live, campaign, video)
    page.click("button[type=submit]")
    wait_note(page, "trying again|offline")
    page.unroute("**/api/v1/uploads**")
    methods: list[str] = []
    page.on("request", lambda r: methods.append(r.method) if "/api/v1/uploads" in r.url
            else None)
    fill_form(page, live, campaign, video)
    page.click("button[type=submit]")
    assert landed(page, live, campaign, video) == made[0]
    assert "POST" not in methods and "PATCH" not in methods, methods  # one HEAD said: done


def test_two_files_with_the_same_name_size_and_time_never_mix(live, page, campaign, tmp_path):
    """Start one take, reload, choose another file with the same name, size and
    modification time, and even the same first and last 1.5 MB (an MPEG-TS of null
    packets, padding): it is uploaded whole as a new upload, not appended to the first
    (the fingerprint samples the middle too; a red-team case)."""
    size = 6 * 1024 * 1024  # two chunks of the page's 4 MB
    ends = os.urandom(3 * 1024 * 1024)
    first, second = tmp_path / "a" / "take.mp4", tmp_path / "b" / "take.mp4"
    for path in (first, second):
        path.parent.mkdir()
        middle = os.urandom(size - len(ends))
        path.write_bytes(ends[:len(ends) // 2] + middle + ends[len(ends) // 2:])
        os.utime(path, (1_700_000_000, 1_700_000_000))
    held: list[str] = []

    def stop_after_the_first_chunk(route):
        if route.request.method == "PATCH" and route.request.headers.get("upload-offset") != "0":
            held.append(route.request.url)
            route.abort("internetdisconnected")  # the connection is gone mid-upload
        else:
            route.continue_()

    page.route("**/api/v1/uploads**", stop_after_the_first_chunk)
    fill_form(page, live, campaign, first)
    page.click("button[type=submit]")
    wait_note(page, "trying again|offline")
    assert held
    stored = page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('tus::'))")
    assert len(stored) == 1  # the first take could be resumed ...
    page.unroute("**/api/v1/uploads**")
    created: list[str] = []
    page.on("request", lambda r: created.append(r.url)
            if r.method == "POST" and "/api/v1/uploads" in r.url else None)
    fill_form(page, live, campaign, second)  # ... but this is another take
    page.click("button[type=submit]")
    landed(page, live, campaign, second)
    assert len(created) == 1  # a new upload, not the first one resumed
    no_raw_errors(notes(page))


def test_upload_pressed_while_offline_waits_and_goes_on(live, page, campaign, media_files):
    video = media_files["portrait"]
    fill_form(page, live, campaign, video)
    page.context.set_offline(True)
    page.click("button[type=submit]")
    wait_note(page, "You are offline")
    time.sleep(1.5)
    assert page.url.endswith(f"/c/{campaign}")  # still waiting, not failed
    assert page.locator("#upload-note.error").count() == 0
    page.context.set_offline(False)
    landed(page, live, campaign, video)
    no_raw_errors(notes(page))


def test_423_429_503_and_a_lost_creation_answer_are_retried(live, page, campaign, media_files):
    """The creation's answer is lost once (the server made an upload nobody will use),
    then the creation is throttled (429 with Retry-After), the first PATCH meets a lock
    (423) and the next a 503: the page waits, says so in plain words, and ends with one
    clip, and no empty upload is left behind."""
    video = media_files["landscape"]
    script = {"POST": ["lose", 429], "PATCH": [423, 503]}
    seen: list[tuple[str, str]] = []

    def misbehave(route):
        request = route.request
        plan = script.get(request.method, [])
        if not plan:
            seen.append((request.method, "passed"))
            route.continue_()
            return
        step = plan.pop(0)
        seen.append((request.method, str(step)))
        if step == "lose":
            route.fetch()
            route.abort("connectionreset")
        else:
            route.fulfill(status=step, content_type="application/json",
                          headers={"Tus-Resumable": "1.0.0", "Retry-After": "1"},
                          body='{"error": "busy"}')

    page.route("**/api/v1/uploads**", misbehave)
    fill_form(page, live, campaign, video)
    started = time.monotonic()
    page.click("button[type=submit]")
    landed(page, live, campaign, video)
    assert time.monotonic() - started >= 1.0  # Retry-After was waited for
    shown = notes(page)
    no_raw_errors(shown)
    assert any("Many people are uploading" in t for t in shown), shown
    assert any("busy with your video" in t for t in shown), shown
    assert any("server had a problem" in t for t in shown), shown
    assert not any("refused" in t or "failed" in t for t in shown), shown
    assert ("POST", "lose") in seen and ("PATCH", "503") in seen
    # the creation repeated after its answer was lost got the same upload: none left empty
    import json

    folder = live["app"].extensions["tutti.storage"].tmp_dir / "uploads"
    uploads = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    assert [m for m in uploads if m["meta"]["campaign"] == campaign] != []
    assert [m for m in uploads if m["meta"]["campaign"] == campaign and not m.get("clip")] == []


def test_a_file_over_the_limit_is_refused_before_sending(live, page, campaign, tmp_path):
    """A final answer (413 at creation) is shown in the server's words at once,
    with no retrying and no byte sent."""
    config = live["app"].config
    limit = config["MAX_CONTENT_LENGTH"]
    big = tmp_path / "huge.mp4"
    big.write_bytes(b"\0" * (3 << 20))
    methods: list[str] = []
    page.on("request", lambda r: methods.append(r.method) if "/api/v1/uploads" in r.url
            else None)
    config["MAX_CONTENT_LENGTH"] = 2 << 20  # the limit, scaled down: a 3 MB file is over
    try:
        fill_form(page, live, campaign, big)
        page.click("button[type=submit]")
        page.wait_for_selector("#upload-note.error")
    finally:
        config["MAX_CONTENT_LENGTH"] = limit
    assert "larger than 2 MB" in page.locator("#upload-note").inner_text()
    assert methods == ["POST"] and clips_of(live, campaign) == []


def test_reload_mid_upload_and_send_the_same_file_resumes_it(live, page, campaign, tmp_path):
    """The connection goes after the first 4 MB chunk; the page is reloaded and the same
    file chosen: the upload continues from what arrived (no new upload, no byte twice)."""
    video = tmp_path / "take.mp4"
    video.write_bytes(os.urandom(6 * 1024 * 1024))
    offsets: list[str] = []

    def stop_after_the_first_chunk(route):
        if route.request.method == "PATCH" and route.request.headers.get("upload-offset") != "0":
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.route("**/api/v1/uploads**", stop_after_the_first_chunk)
    fill_form(page, live, campaign, video)
    page.click("button[type=submit]")
    wait_note(page, "trying again|offline")
    page.unroute("**/api/v1/uploads**")
    methods: list[str] = []

    def seen(request):
        if "/api/v1/uploads" in request.url:
            methods.append(request.method)
            if request.method == "PATCH":
                offsets.append(request.headers.get("upload-offset"))

    page.on("request", seen)
    fill_form(page, live, campaign, video)
    page.click("button[type=submit]")
    landed(page, live, campaign, video)
    assert "POST" not in methods and offsets == [str(4 * 1024 * 1024)], (methods, offsets)


def test_an_offline_spell_mid_upload(live, page, campaign, tmp_path):
    video = tmp_path / "take.mp4"
    video.write_bytes(os.urandom(6 * 1024 * 1024))
    gate: list[str] = []

    def go_offline_after_the_first_chunk(route):
        if route.request.method == "PATCH" and not gate:
            gate.append("first")
            answer = route.fetch()
            page.context.set_offline(True)  # the train enters a tunnel
            route.fulfill(response=answer)
        else:
            route.continue_()

    page.route("**/api/v1/uploads**", go_offline_after_the_first_chunk)
    fill_form(page, live, campaign, video)
    page.click("button[type=submit]")
    wait_note(page, "You are offline")
    time.sleep(3)
    page.context.set_offline(False)
    landed(page, live, campaign, video)
    no_raw_errors(notes(page))


def test_double_click_an_emoji_and_right_to_left_name_and_no_extension(live, page, campaign,
                                                                       media_files, tmp_path):
    video = tmp_path / "تسجيل 🎻"  # no extension
    video.write_bytes(media_files["landscape"].read_bytes())
    created: list[str] = []
    page.on("request", lambda r: created.append(r.url)
            if r.method == "POST" and "/api/v1/uploads" in r.url else None)
    fill_form(page, live, campaign, video, name="Ana 🎻 مريم")
    page.dblclick("button[type=submit]")
    landed(page, live, campaign, video)
    assert len(created) == 1
    assert "Ana 🎻 مريم" in page.content()


def test_the_same_video_sent_again_after_it_arrived_opens_the_same_clip(live, page, campaign,
                                                                       media_files):
    """Sent to the end, then the same video and form sent again (a participant unsure it
    worked): the page opens the first clip's link; no second upload, no second clip
    (a red-team case: it made two clips)."""
    video = media_files["landscape"]
    fill_form(page, live, campaign, video)
    page.click("button[type=submit]")
    token = landed(page, live, campaign, video)
    methods: list[str] = []
    page.on("request", lambda r: methods.append(r.method) if "/api/v1/uploads" in r.url
            else None)
    fill_form(page, live, campaign, video)
    page.click("button[type=submit]")
    assert landed(page, live, campaign, video) == token
    assert "POST" not in methods and "PATCH" not in methods, methods
