"""Record along the guide on the campaign page (issue 16), in real Chromium with its fake
devices: the camera is a y4m file and the microphone a WAV file (``--use-file-for-fake-
audio-capture``) that holds a part and, from a known second, the guide itself, as a phone's
microphone hears the guide leak from headphones. The take goes through the real page
(Record, the guide played by Web Audio, Stop at the guide's end, Send through tus) into the
real pipeline (intake, align on the embedded worker).

The truth: the fake microphone plays the WAV from its start when the page opens it, so the
recorded take begins somewhere in that file. Where is found here from the sound, by
correlating the normalized take with the WAV itself (not with the guide, which is what the
aligner uses); the guide's t=0 then lies at ``GUIDE_AT - position`` in the take."""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from tests.signals import tone_melody

from .conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser

SR = 48000
GUIDE_S = 8.0
GUIDE_AT = 2.0  # the guide's t=0 in the fake microphone's file (s)
STATUS_PAGE = re.compile(r".*/clip/[A-Za-z0-9_-]{20,}$")


def write_wav(path: Path, x: np.ndarray) -> None:
    from scipy.io import wavfile

    wavfile.write(path, SR, (np.clip(x, -1, 1) * 32767).astype(np.int16))


@pytest.fixture(scope="module")
def devices(tmp_path_factory):
    """The guide, the fake microphone's WAV (part + guide from GUIDE_AT s) and camera y4m."""
    from workers.media.ffmpeg import run_ffmpeg

    root = tmp_path_factory.mktemp("record")
    guide = tone_melody(GUIDE_S, 1, SR)
    part = 0.6 * tone_melody(GUIDE_S + GUIDE_AT + 6.0, 7, SR)
    mic = part.copy()
    at = int(GUIDE_AT * SR)
    mic[at:at + len(guide)] += 0.4 * guide
    mic += np.random.default_rng(3).normal(0, 0.003, len(mic)).astype(np.float32)
    write_wav(root / "guide.wav", guide)
    write_wav(root / "take.wav", mic)
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15", "-t", "2",
                "-pix_fmt", "yuv420p", str(root / "take.y4m")], timeout=60)
    return {"guide": root / "guide.wav", "mic_wav": root / "take.wav", "mic": mic,
            "video": root / "take.y4m"}


def launch(playwright, devices, *extra: str):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        *CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={devices['video']}",
        f"--use-file-for-fake-audio-capture={devices['mic_wav']}",
        "--autoplay-policy=no-user-gesture-required", *extra])


@pytest.fixture(scope="module")
def playwright_session():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def chromium(playwright_session, devices):
    browser = launch(playwright_session, devices)
    yield browser
    browser.close()


@pytest.fixture
def campaign(live, devices):
    from portal.services import create_campaign

    slug = "rec-" + secrets.token_hex(4)
    with live["app"].app_context():
        create_campaign(slug, "Record Choir", parts=["Alto"], guide_path=str(devices["guide"]),
                        guide_filename="guide.wav")
    return slug


@pytest.fixture
def page(chromium):
    context = chromium.new_context()
    page = context.new_page()
    yield page
    context.close()


def fill_in(page) -> None:
    page.fill("input[name=name]", "Ana")
    page.select_option("select[name=part]", "Alto")
    page.check("input[name=consent]")


def note(page) -> str:
    return page.locator("#record-note").inner_text()


def wait_note(page, pattern: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, note(page)):
        assert time.monotonic() < deadline, f"no note matching {pattern!r}: {note(page)!r}"
        page.wait_for_timeout(100)
    return note(page)


def clip_rows(live, slug: str) -> list:
    from portal.extensions import db
    from portal.models import Campaign, Clip

    with live["app"].app_context():
        campaign = db.session.scalar(select(Campaign).filter_by(slug=slug))
        rows = db.session.scalars(select(Clip).filter_by(campaign_id=campaign.id)).all()
        out = [{c: getattr(r, c) for c in ("id", "token", "status", "offset_seconds",
                                           "sync_confidence", "sync_method", "sync_state",
                                           "record_timing", "record_error_ms",
                                           "normalized_key", "original_key")} for r in rows]
        db.session.remove()
        return out


def wait_synced(live, slug: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        rows = clip_rows(live, slug)
        if rows and rows[0]["sync_state"] in ("done", "failed"):
            return rows[0]
        assert time.monotonic() < deadline, rows
        time.sleep(0.5)


def position_in_mic(live, row: dict, mic: np.ndarray) -> float:
    """Where (s) in the fake microphone's file the normalized take begins: the peak of
    the whitened cross-correlation of the take's first seconds with the file."""
    from workers.media.audio import decode_audio

    path = live["app"].extensions["tutti.storage"].path(row["normalized_key"])
    take = decode_audio(str(path), sample_rate=SR, max_seconds=6.0)
    ref = np.concatenate([mic, mic])  # the fake device loops its file
    n = len(ref) + len(take)
    spec = np.fft.rfft(ref, n) * np.conj(np.fft.rfft(take, n))
    corr = np.fft.irfft(spec / (np.abs(spec) + 1e-9), n)[:len(ref)]
    lag = int(np.argmax(corr)) % len(mic)
    if lag > len(mic) // 2:  # a take that began a hair before the file's start
        lag -= len(mic)
    return lag / SR


# The takes kept in the browser (static/record.js: a row per take, its bytes as chunks); a
# sent take's row stays, marked sent and without bytes (SENT_ROWS), and is not a kept take
KEPT = """() => new Promise(r => { const q = indexedDB.open('tutti-takes');
  q.onsuccess = () => { const tx = q.result.transaction(['takes', 'chunks']);
    const g = tx.objectStore('takes').getAll(); const c = tx.objectStore('chunks').getAll();
    tx.oncomplete = () => r(g.result.filter(t => t.state !== 'sent').map(t => ({
      id: t.id, campaign: t.campaign, state: t.state,
      stamped: (t.timing || {}).start_stamped,
      size: c.result.filter(k => k.take === t.id).reduce((n, k) => n + k.blob.size, 0)}))); }; })"""
SENT_ROWS = """() => new Promise(r => { const q = indexedDB.open('tutti-takes');
  q.onsuccess = () => { const g = q.result.transaction('takes').objectStore('takes').getAll();
    g.onsuccess = () => r(g.result.filter(t => t.state === 'sent')); }; })"""
# the first bytes of the kept take, base64
KEPT_HEAD = """n => new Promise(r => { const q = indexedDB.open('tutti-takes');
  q.onsuccess = () => { const g = q.result.transaction('chunks').objectStore('chunks').getAll();
    g.onsuccess = () => { const f = new FileReader(); f.onload = () => r(f.result.split(',')[1]);
      f.readAsDataURL(new Blob(g.result.map(k => k.blob)).slice(0, n)); }; }; })"""


def settled(page, script: str):
    """``page.evaluate(script)`` on a page that may be reloading itself (the status page
    does as the clip moves on): asked again once the new page has loaded."""
    from playwright.sync_api import Error

    for _ in range(5):
        try:
            return page.evaluate(script)
        except Error as exc:
            if "context was destroyed" not in str(exc):
                raise
            page.wait_for_load_state()
    return page.evaluate(script)


def record_take(page, live, slug: str) -> None:
    page.goto(f"{live['base']}/c/{slug}")
    page.wait_for_selector("#record-start:visible")
    fill_in(page)
    page.click("#record-start")
    wait_note(page, "Recording")
    # the guide plays to its end and the take stops by itself
    wait_note(page, "Listen to your take|only .* s long", timeout=GUIDE_S + 30)


def test_record_along_send_and_the_take_lands_synced(live, page, campaign, devices):
    record_take(page, live, campaign)
    assert page.locator("#record-preview").evaluate(
        "v => getComputedStyle(v).transform") != "none"  # the preview is mirrored
    kept = page.evaluate(KEPT)
    assert len(kept) == 1 and kept[0]["campaign"] == campaign and kept[0]["size"] > 10_000, kept
    assert kept[0]["state"] == "recorded"
    # review: the take plays back (with the guide through Web Audio) before it is sent
    page.click("#record-play")
    page.wait_for_timeout(1500)
    assert page.locator("#record-review-video").evaluate("v => v.currentTime") > 0.3
    page.locator("#record-review-video").evaluate("v => v.pause()")
    page.click("#record-send")
    page.wait_for_url(STATUS_PAGE, timeout=60_000)
    row = wait_synced(live, campaign)
    timing = row["record_timing"]
    assert timing and timing["mime"].startswith(("video/webm", "video/mp4")), timing
    truth = GUIDE_AT - position_in_mic(live, row, devices["mic"])
    error_ms = (row["offset_seconds"] - truth) * 1000
    print(f"record along: truth {truth:.4f} s, aligned {row['offset_seconds']:.4f} s "
          f"({error_ms:+.1f} ms), method {row['sync_method']}, confidence "
          f"{row['sync_confidence']:.2f}; the device predicted {-timing['start_s']:.4f} s "
          f"(sound - device {row['record_error_ms']:+.1f} ms)")
    assert abs(error_ms) < 20.0
    assert row["status"] == "synced" and row["sync_confidence"] >= 0.5
    # the difference between the device's prediction and the sound is kept on the clip
    assert row["record_error_ms"] == pytest.approx(
        (row["offset_seconds"] + timing["start_s"] - timing.get("audio_start_s", 0.0)) * 1000,
        abs=0.01)
    # the sent take is no longer kept in the browser: its bytes are gone, its row says
    # it was sent and where its clip is
    assert settled(page, KEPT) == [] and settled(page, CHUNKS) == 0
    sent = settled(page, SENT_ROWS)
    assert len(sent) == 1 and sent[0]["status_url"] == page.url


# The page's own clock against the sound. Chromium's file-fed microphone does not hear the
# page's playback, so this test makes the microphone a loopback of the page's own
# AudioContext (what it plays, as a phone's microphone hears headphones leak), plus the
# fake camera: the take's sound then holds the guide where the device's clock put it, plus
# the loopback's own fixed delay (LOOP_DELAY_S, in place from the context's creation: a
# device whose output-to-microphone path the page does not know). The page's calibration
# ("Measure my delay") runs first, on the same loopback, as a participant's would through
# speakers, and must measure that delay. (An earlier loop set its delay from
# getOutputTimestamp at the first getUserMedia; the calibration then read the same -22 to
# -31 ms whether that delay was 0 or 19 ms, while the take carried it: about half the runs
# were off by it. Measured 2026-12-03.)
LOOP_DELAY_S = 0.02
LOOPBACK = """
(() => {
  const Orig = window.AudioContext;
  let made = null;
  window.AudioContext = function (options) {
    const ctx = new Orig(options);
    const delay = ctx.createDelay(1.0);
    const loop = ctx.createMediaStreamDestination();
    delay.connect(loop);
    ctx.__loop = delay;
    ctx.__stream = loop.stream;
    // a microphone hears context time x when the output says x is heard
    delay.delayTime.value = window.__loopDelay;
    made = ctx;
    return ctx;
  };
  window.AudioContext.prototype = Orig.prototype;
  const connect = AudioNode.prototype.connect;
  AudioNode.prototype.connect = function (target, ...rest) {
    const ctx = target && target.context;
    if (ctx && target === ctx.destination && ctx.__loop) { connect.call(this, ctx.__loop); }
    return connect.call(this, target, ...rest);
  };
  const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (c) => {
    const tracks = c.video ? (await gum({video: c.video, audio: false})).getVideoTracks() : [];
    tracks.push(made.__stream.getAudioTracks()[0].clone());
    return new MediaStream(tracks);
  };
})();
"""


@pytest.mark.parametrize("clock", ["track", "tap"])
def test_the_recorded_start_is_checked_against_the_sound_on_a_loopback(live, chromium,
                                                                     campaign, clock):
    """The device's prediction (the take's start on the guide's clock, after the page's
    calibration) against the sound's offset, when the microphone hears the guide as the page
    played it. The sound's offset always stays, the difference is kept on the clip, and
    the prior lifts nothing it does not agree with (README, "Record along the guide", has
    the figures this prints).

    ``track``: Chromium as it is, the start read from the microphone's capture times
    (MediaStreamTrackProcessor): within 10 ms of the sound (issue 16's goal; measured: 14
    runs from -7.9 to +0.7 ms, 12 of them within 1 ms). ``tap``: a browser without the
    processor (it is removed), the start read where the microphone enters the
    AudioContext: still a stamped start, within a fraction of a beat (measured: -7.2 to
    +8.4 ms in 7 runs)."""
    from workers.media.align.prior import PRIOR_AGREE_MS

    context = chromium.new_context()
    without = "" if clock == "track" else "delete window.MediaStreamTrackProcessor;"
    context.add_init_script(f"window.__loopDelay = {LOOP_DELAY_S};" + LOOPBACK + without)
    page = context.new_page()
    try:
        page.goto(f"{live['base']}/c/{campaign}")
        page.click("#record-calibrate")
        measured = wait_note(page, "Measured|did not hear", timeout=30)
        assert "Measured" in measured, measured
        record_take(page, live, campaign)
        delay = page.evaluate("window.__loopDelay")
        how = page.evaluate("""() => new Promise(r => { const q = indexedDB.open('tutti-takes');
          q.onsuccess = () => { const g = q.result.transaction('takes').objectStore('takes')
            .getAll(); g.onsuccess = () => r(g.result[0].clock); }; })""")
        calibration = page.evaluate("JSON.parse(localStorage.getItem('tutti-latency'))")
        print(f"loopback clock: take {how}, calibration {calibration}")
        page.click("#record-send")
        page.wait_for_url(STATUS_PAGE, timeout=60_000)
    finally:
        context.close()
    row = wait_synced(live, campaign)
    print(f"loopback: sound {row['offset_seconds']:.4f} s, device "
          f"{-row['record_timing']['start_s']:.4f} s, sound - device "
          f"{row['record_error_ms']:+.2f} ms (loop delay {delay * 1000:.1f} ms), method "
          f"{row['sync_method']}, confidence {row['sync_confidence']:.2f}, calibrated "
          f"{row['record_timing']['input_latency_s'] * 1000:+.1f} ms, stamped "
          f"{row['record_timing'].get('stamped')} by {row['record_timing'].get('clock')!r}, "
          f"audio starts at "
          f"{row['record_timing'].get('audio_start_s', 0) * 1000:.1f} ms")
    timing = row["record_timing"]
    # the take's start was found from its sound, the way this browser offers
    assert timing["stamped"] is True and timing["clock"] == clock, timing
    assert calibration["clock"] == clock, calibration
    assert row["record_error_ms"] == pytest.approx(
        (row["offset_seconds"] + timing["start_s"] - timing.get("audio_start_s", 0.0)) * 1000,
        abs=0.01)
    if row["sync_method"] == "leak":
        # the device's clock is right to a fraction of a beat: a take that started a
        # count-in early or late, or a sign error, would be a second away
        assert abs(row["record_error_ms"]) < 150, row
        if clock == "track":  # issue 16's goal for the page's own timing
            assert abs(row["record_error_ms"]) < 10.0, row
    if abs(row["record_error_ms"]) > PRIOR_AGREE_MS:
        # no lift: what the clip says is the sound's own confidence
        assert row["sync_confidence"] != pytest.approx(0.6)




def cut_off_after_creation(page, created: list[str], metadata: list[str] | None = None):
    """The tus creation (POST) goes through and its location is noted in ``created``
    (its Upload-Metadata in ``metadata``); every other upload request fails as if the
    connection were gone."""

    def cut_off(route):
        request = route.request
        if request.method == "POST":
            if metadata is not None:
                metadata.append(request.headers["upload-metadata"])
            answer = route.fetch()
            created.append(answer.headers["location"])
            route.fulfill(response=answer)
        else:
            route.abort("internetdisconnected")

    page.route("**/api/v1/uploads**", cut_off)


def test_a_reload_mid_upload_resumes_from_indexeddb(live, page, campaign):
    """The connection goes while the take is being sent, after part of it arrived; the page
    is reloaded: the take comes back from IndexedDB and its upload goes on by itself from
    where the server is (one creation, the next PATCH from the offset that arrived)."""
    import base64
    import urllib.request

    record_take(page, live, campaign)
    created: list[str] = []
    metadata: list[str] = []
    cut_off_after_creation(page, created, metadata)
    page.click("#record-send")
    wait_note(page, "Sending")
    deadline = time.monotonic() + 20
    while not created:
        assert time.monotonic() < deadline
        page.wait_for_timeout(100)
    # the resume key's content fingerprint travels too: the server checks the bytes it
    # holds against it, so a resume is only ever this take
    assert re.search(r"(^|,)head_sha256 \S+", metadata[0]), metadata
    assert re.search(r"(^|,)tail_sha256 \S+", metadata[0]), metadata
    # what had arrived before the tab closed: the take's first 300 kB
    data = base64.b64decode(page.evaluate(KEPT_HEAD, 300000))
    url = created[0] if created[0].startswith("http") else live["base"] + created[0]
    urllib.request.urlopen(urllib.request.Request(url, data=data, method="PATCH", headers={
        "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream"}), timeout=30)
    assert page.evaluate(KEPT)[0]["state"] == "sending"
    page.unroute("**/api/v1/uploads**")
    sent: list[tuple[str, str | None]] = []
    page.on("request", lambda r: sent.append((r.method, r.headers.get("upload-offset")))
            if "/api/v1/uploads" in r.url else None)
    page.reload()
    page.wait_for_url(STATUS_PAGE, timeout=60_000)
    assert ("POST", None) not in sent and ("PATCH", "300000") in sent, sent
    rows = clip_rows(live, campaign)
    assert len(rows) == 1 and rows[0]["record_timing"]


def test_a_recording_stopped_after_a_second_is_kept_and_said(live, page, campaign):
    """Stopped during the count-in (red team F12): kept (nothing recorded is lost), said
    plainly to hold no singing, and not offered for Send; one stopped at once is no take."""
    page.goto(f"{live['base']}/c/{campaign}")
    page.click("#record-start")
    wait_note(page, "Recording")
    page.wait_for_timeout(1000)
    page.click("#record-stop")
    said = wait_note(page, "count-in")
    assert "no singing" in said and "Record again" in said
    page.wait_for_timeout(500)
    kept = page.evaluate(KEPT)
    assert len(kept) == 1 and kept[0]["size"] > 0
    assert not page.locator("#record-send").is_visible()
    assert page.locator("#record-retake").is_visible()
    assert page.locator("#record-discard").is_visible()
    # the page opened again offers the kept take, still without Send
    page.reload()
    wait_note(page, "recorded earlier is kept")
    assert page.locator("#record-play").is_visible()
    assert not page.locator("#record-send").is_visible()
    page.click("#record-discard")
    wait_note(page, "discarded")
    # stopped at once: under a second, no take at all, said so
    page.click("#record-start")
    wait_note(page, "Recording")
    page.click("#record-stop")
    said = wait_note(page, "less than a second")
    assert "no take" in said
    assert page.locator("#record-start").is_visible()
    assert not page.locator("#record-send").is_visible()
    page.wait_for_timeout(500)
    assert page.evaluate(KEPT) == []


CHUNKS = """() => new Promise(r => { const q = indexedDB.open('tutti-takes');
  q.onsuccess = () => { const g = q.result.transaction('chunks').objectStore('chunks').count();
  g.onsuccess = () => r(g.result); }; })"""


def test_a_take_cut_off_mid_recording_is_offered_and_sends_as_one_clip(live, chromium, campaign):
    """The tab is closed while recording: the chunks the recorder handed over every second
    were kept in IndexedDB (which the browser process holds: a crashed renderer leaves the
    same), so the page opened again offers the take (play, send, discard), and Send makes
    one clip of it that intake accepts."""
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(f"{live['base']}/c/{campaign}")
        page.click("#record-start")
        wait_note(page, "Recording")
        deadline = time.monotonic() + 20
        # three chunks kept, and the take's start found on the guide's clock from them
        while page.evaluate(CHUNKS) < 3 or page.evaluate(KEPT)[0]["stamped"] != "yes":
            assert time.monotonic() < deadline, ("no chunks or start kept while recording",
                                                 page.evaluate(KEPT))
            page.wait_for_timeout(200)
        page.close()
        page = context.new_page()
        page.goto(f"{live['base']}/c/{campaign}")
        said = wait_note(page, "cut off")
        assert "Send it" in said and "Discard it" in said
        for button in ("#record-send", "#record-play", "#record-discard"):
            assert page.locator(button).is_visible()
        for button in ("#record-start", "#record-stop"):  # hidden means hidden (style.css)
            assert not page.locator(button).is_visible()
        assert page.locator("#record-review-video").evaluate(
            "v => new Promise(r => { v.onloadedmetadata = () => r(v.videoWidth); "
            "if (v.readyState) { r(v.videoWidth); } })") > 0
        fill_in(page)
        page.click("#record-send")
        page.wait_for_url(STATUS_PAGE, timeout=60_000)
        assert page.evaluate(KEPT) == [] and page.evaluate(CHUNKS) == 0
    finally:
        context.close()
    rows = clip_rows(live, campaign)
    assert len(rows) == 1 and rows[0]["record_timing"]["stamped"] is True
    deadline = time.monotonic() + 120
    while not rows[0]["normalized_key"]:  # intake makes a clip of the cut-off take
        assert rows[0]["status"] not in ("rejected", "failed"), rows
        assert time.monotonic() < deadline, rows
        time.sleep(0.5)
        rows = clip_rows(live, campaign)


def crash(page) -> None:
    """Crash ``page``'s renderer (Chromium's chrome://crash: as a tab killed by the system
    or a renderer bug), and wait until Playwright has seen it."""
    from playwright.sync_api import Error as PlaywrightError

    with page.expect_event("crash", timeout=20_000):
        try:
            page.goto("chrome://crash", timeout=20_000)
        except PlaywrightError:  # "page crashed": what was asked for
            pass


def form_values(page) -> dict:
    return page.evaluate("""() => { const f = n => document.getElementById('upload-form')
        .elements.namedItem(n);
      const s = f('part');
      return {name: f('name').value, location: f('location').value,
              part: s.options[s.selectedIndex].text, consent: f('consent').checked}; }""")


# the whole kept take (its chunks in order), base64
KEPT_ALL = """() => new Promise(r => { const q = indexedDB.open('tutti-takes');
  q.onsuccess = () => { const g = q.result.transaction('chunks').objectStore('chunks').getAll();
    g.onsuccess = () => { const f = new FileReader(); f.onload = () => r(f.result.split(',')[1]);
      f.readAsDataURL(new Blob(g.result.map(k => k.blob))); }; }; })"""


def test_a_renderer_crash_mid_recording_offers_the_take_with_its_form(live, chromium,
                                                                       campaign):
    """The tab's renderer crashes while it records: the page opened again offers the take
    that was cut off, every chunk kept before the crash in it, and the form as the
    participant left it (name, part and consent typed before Record, the place typed while
    recording), so Send sends it with nothing asked again; the clip is the kept bytes."""
    import base64
    import hashlib

    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(f"{live['base']}/c/{campaign}")
        fill_in(page)
        page.click("#record-start")
        wait_note(page, "Recording")
        page.fill("input[name=location]", "Lyon")  # typed while the take records
        deadline = time.monotonic() + 20
        while page.evaluate(CHUNKS) < 3:
            assert time.monotonic() < deadline, "no chunks kept while recording"
            page.wait_for_timeout(200)
        page.wait_for_timeout(500)  # the place's write lands (it is written as typed)
        before = page.evaluate(KEPT)[0]["size"]
        crash(page)
        page = context.new_page()
        page.goto(f"{live['base']}/c/{campaign}")
        said = wait_note(page, "cut off")
        assert "Send it" in said
        assert form_values(page) == {"name": "Ana", "location": "Lyon", "part": "Alto",
                                     "consent": True}
        kept = page.evaluate(KEPT)
        assert len(kept) == 1 and kept[0]["size"] >= before > 0, (kept, before)
        sent = hashlib.sha256(base64.b64decode(page.evaluate(KEPT_ALL))).hexdigest()
        page.click("#record-send")  # nothing filled in again
        page.wait_for_url(STATUS_PAGE, timeout=60_000)
    finally:
        context.close()
    rows = clip_rows(live, campaign)
    assert len(rows) == 1
    with live["app"].app_context():
        from portal.extensions import db
        from portal.models import Clip

        clip = db.session.get(Clip, rows[0]["id"])
        assert (clip.display_name, clip.location) == ("Ana", "Lyon")
        db.session.remove()
    original = live["app"].extensions["tutti.storage"].path(rows[0]["original_key"])
    assert hashlib.sha256(Path(original).read_bytes()).hexdigest() == sent


def test_a_renderer_crash_mid_upload_resumes_and_loses_nothing(live, chromium, campaign):
    """The renderer crashes while the take is being sent, after part of it arrived: the
    page opened again finds the take in IndexedDB and the upload goes on from where the
    server is (no new creation, the next PATCH from the offset that arrived), and the clip's
    original is the take's bytes, every one."""
    import base64
    import hashlib
    import urllib.request

    context = chromium.new_context()
    try:
        page = context.new_page()
        record_take(page, live, campaign)
        whole = base64.b64decode(page.evaluate(KEPT_ALL))
        created: list[str] = []
        cut_off_after_creation(page, created)
        page.click("#record-send")
        deadline = time.monotonic() + 20
        while not created:
            assert time.monotonic() < deadline
            page.wait_for_timeout(100)
        url = created[0] if created[0].startswith("http") else live["base"] + created[0]
        urllib.request.urlopen(urllib.request.Request(url, data=whole[:300000], method="PATCH",
                               headers={"Tus-Resumable": "1.0.0", "Upload-Offset": "0",
                                        "Content-Type": "application/offset+octet-stream"}),
                               timeout=30)
        assert page.evaluate(KEPT)[0]["state"] == "sending"
        crash(page)
        page = context.new_page()
        sent: list[tuple[str, str | None]] = []
        page.on("request", lambda r: sent.append((r.method, r.headers.get("upload-offset")))
                if "/api/v1/uploads" in r.url else None)
        page.goto(f"{live['base']}/c/{campaign}")
        page.wait_for_url(STATUS_PAGE, timeout=60_000)
        assert ("POST", None) not in sent and ("PATCH", "300000") in sent, sent
        assert page.evaluate(KEPT) == [] and page.evaluate(CHUNKS) == 0
    finally:
        context.close()
    rows = clip_rows(live, campaign)
    assert len(rows) == 1 and rows[0]["record_timing"]
    original = live["app"].extensions["tutti.storage"].path(rows[0]["original_key"])
    assert hashlib.sha256(Path(original).read_bytes()).digest() == hashlib.sha256(whole).digest()


def test_a_kept_take_can_be_discarded(live, page, campaign):
    page.goto(f"{live['base']}/c/{campaign}")
    page.click("#record-start")
    wait_note(page, "Recording")
    page.wait_for_timeout(1500)
    page.click("#record-stop")
    wait_note(page, "count-in")
    page.wait_for_timeout(500)  # its row written (the count-in take is kept, not sendable)
    page.reload()
    wait_note(page, "recorded earlier")
    page.click("#record-discard")
    wait_note(page, "discarded")
    assert page.evaluate(KEPT) == [] and page.evaluate(CHUNKS) == 0
    assert page.locator("#record-start").is_visible()
    page.reload()
    page.wait_for_selector("#record-start:visible")
    assert note(page) == ""


def test_storage_full_keeps_the_take_on_the_page_and_it_can_be_sent(live, page, campaign):
    """The browser has no room to keep the take (a 1 kB quota through the DevTools
    protocol): the page says so plainly, and Send still sends what is on the page."""
    page.goto(f"{live['base']}/c/{campaign}")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Storage.overrideQuotaForOrigin", {"origin": live["base"], "quotaSize": 1024})
    fill_in(page)
    page.click("#record-start")
    wait_note(page, "Recording")
    page.wait_for_timeout(4000)
    page.click("#record-stop")
    said = wait_note(page, "no room left|could not be kept")
    assert "no room left" in said and "Send now" in said
    # the take in memory can also be saved as a file
    link = page.locator("#record-download")
    assert link.is_visible() and link.get_attribute("href").startswith("blob:")
    assert re.fullmatch(r"take-[0-9-]+\.(webm|mp4)", link.get_attribute("download"))
    page.click("#record-send")
    page.wait_for_url(STATUS_PAGE, timeout=60_000)
    assert len(clip_rows(live, campaign)) == 1


def test_a_browser_without_mediarecorder_offers_the_file_upload(live, chromium, campaign):
    context = chromium.new_context()
    context.add_init_script("delete window.MediaRecorder;")
    page = context.new_page()
    try:
        page.goto(f"{live['base']}/c/{campaign}")
        assert page.locator("#record-unsupported").is_visible()
        assert "cannot record here" in page.locator("#record-unsupported").inner_text()
        assert not page.locator("#record").is_visible()
        assert page.locator("input[name=file]").is_visible()
    finally:
        context.close()


@pytest.mark.parametrize("flags, words", [
    # permission refused: no fake UI accepting for us, and every prompt denied
    (["--use-fake-device-for-media-stream", "--deny-permission-prompts"], "not allowed"),
    # a machine without camera or microphone
    (["--deny-permission-prompts=false", "--use-fake-ui-for-media-stream"],
     "No camera or microphone"),
])
def test_no_devices_or_permission_refused_say_what_to_do(live, playwright_session, campaign,
                                                        flags, words):
    browser = playwright_session.chromium.launch(executable_path=CHROMIUM,
                                                 args=[*CHROMIUM_ARGS, *flags])
    try:
        page = browser.new_page()
        page.goto(f"{live['base']}/c/{campaign}")
        fill_in(page)
        page.click("#record-start")
        said = wait_note(page, words, timeout=30)
        assert "upload" in said.lower()
        assert page.locator("#record-start").is_visible()  # try again, or upload
        assert page.locator("#record-note.error").count() == 1
    finally:
        browser.close()


# --- red team findings on the record page (W2, F3, F4, F7, F8, F9, F10, F11) -------------

def record_for(page, seconds: float) -> None:
    """Record from the page as it is, for ``seconds`` after "Recording" shows, then Stop
    and wait for the take to be offered."""
    page.click("#record-start")
    wait_note(page, "Recording")
    page.wait_for_timeout(seconds * 1000)
    page.click("#record-stop")
    wait_note(page, "Listen to your take|only .* s long")


def kept_ids(page) -> list:
    return sorted(t["id"] for t in page.evaluate(KEPT))


def test_record_again_keeps_the_take_when_the_camera_cannot_start(live, page, campaign):
    """W2: "Record again" with the camera gone (another app took it) keeps the take under
    review and offers it again; nothing recorded is lost, also after a reload."""
    page.goto(f"{live['base']}/c/{campaign}")
    fill_in(page)
    record_for(page, 5)
    assert page.evaluate("document.activeElement.id") == "record-send"  # F10
    wait_note(page, "kept on this device")
    first = kept_ids(page)
    assert len(first) == 1
    page.evaluate("""() => { navigator.mediaDevices.getUserMedia = () => Promise.reject(
        new DOMException('taken', 'NotReadableError')); }""")
    page.click("#record-retake")
    said = wait_note(page, "previous take is still here")
    assert "No camera or microphone" in said
    assert page.locator("#record-send").is_visible()
    assert kept_ids(page) == first and page.evaluate(CHUNKS) > 0
    page.reload()
    wait_note(page, "recorded earlier is kept")
    assert kept_ids(page) == first
    page.click("#record-send")
    page.wait_for_url(STATUS_PAGE, timeout=60_000)
    assert len(clip_rows(live, campaign)) == 1


def test_record_again_at_once_records_and_replaces_the_take_once_it_holds_singing(live, page,
                                                                                campaign):
    """F3: Record again pressed as soon as the take is offered records on (the stopped
    take's guide no longer stops the next recorder); W2: the previous take is forgotten
    only once the new one is kept past the count-in. F10: focus follows the buttons."""
    page.goto(f"{live['base']}/c/{campaign}")
    fill_in(page)
    page.focus("#record-start")
    page.keyboard.press("Enter")
    wait_note(page, "Recording")
    assert page.evaluate("document.activeElement.id") == "record-stop"
    page.wait_for_timeout(4500)
    page.keyboard.press("Space")
    page.wait_for_selector("#record-send:visible")
    first = kept_ids(page)
    page.click("#record-retake")  # at once: the stopped guide's end comes 0.5 s later
    wait_note(page, "Recording")
    page.wait_for_timeout(1500)
    assert page.locator("#record-stop").is_visible(), note(page)
    assert "Recording" in note(page)
    # still in the count-in: the previous take is kept beside the new one
    assert set(first) <= set(kept_ids(page))
    page.wait_for_timeout(4000)
    assert page.locator("#record-stop").is_visible(), note(page)
    now = kept_ids(page)
    assert len(now) == 1 and now != first  # the new take holds singing: it replaces the old
    page.click("#record-stop")
    wait_note(page, "Listen to your take")


def test_record_activated_twice_starts_one_recorder(live, page, campaign):
    """F4: two activations of Record in one task (script clicks) start one recording."""
    page.goto(f"{live['base']}/c/{campaign}")
    page.evaluate("() => { const b = document.getElementById('record-start'); "
                  "b.click(); b.click(); }")
    wait_note(page, "Recording")
    page.wait_for_timeout(2500)
    assert len(page.evaluate(KEPT)) == 1
    page.click("#record-stop")
    wait_note(page, "count-in")
    page.wait_for_timeout(500)
    assert len(page.evaluate(KEPT)) == 1


def test_a_damaged_calibration_is_dropped_and_the_take_is_sent(live, page, campaign):
    """F7: a stored delay no measurement gives (5 s) is forgotten: the take is sent,
    uncalibrated, instead of being refused on every Send."""
    page.goto(f"{live['base']}/c/{campaign}")
    clock = page.evaluate("window.MediaStreamTrackProcessor ? 'track' : 'tap'")
    page.evaluate("c => localStorage.setItem('tutti-latency', JSON.stringify("
                  "{input_latency_s: 5, clock: c}))", clock)
    fill_in(page)
    record_for(page, 5)
    page.click("#record-send")
    page.wait_for_url(STATUS_PAGE, timeout=60_000)
    assert page.evaluate("localStorage.getItem('tutti-latency')") is None
    timing = clip_rows(live, campaign)[0]["record_timing"]
    assert timing["calibrated"] is False and timing["input_latency_s"] == 0.0


def test_measure_my_delay_without_the_clicks_heard_stores_nothing(live, page, campaign):
    """F8: the fake microphone plays its file (a melody and noise) and never hears the
    page's clicks: nothing is stored and the page says the clicks were not heard."""
    page.goto(f"{live['base']}/c/{campaign}")
    page.click("#record-calibrate")
    said = wait_note(page, "Measured|did not hear", timeout=40)
    assert "did not hear the clicks" in said, said
    assert page.evaluate("localStorage.getItem('tutti-latency')") is None
    assert page.evaluate("document.activeElement.id") == "record-calibrate"


def test_offline_mid_upload_says_the_connection_is_gone(live, page, campaign):
    """F9: the connection drops while the take is being sent: the page says so, and that
    sending goes on by itself; it does when the connection is back."""
    held = []
    page.route("**/api/v1/uploads/**", lambda route: held.append(route)
               if route.request.method == "PATCH" and not held else route.continue_())
    page.goto(f"{live['base']}/c/{campaign}")
    fill_in(page)
    record_for(page, 5)
    page.click("#record-send")
    deadline = time.monotonic() + 30
    while not held:
        assert time.monotonic() < deadline
        page.wait_for_timeout(100)
    page.context.set_offline(True)
    said = wait_note(page, "connection is gone")
    assert "goes on by itself" in said
    page.context.set_offline(False)
    held[0].continue_()
    page.wait_for_url(STATUS_PAGE, timeout=90_000)


# A browser with no sound output, as Firefox is without a PulseAudio or ALSA device (measured
# headless, Firefox ESR 153): the AudioContext stays "suspended" and resume() never settles.
NO_OUTPUT = """
Object.defineProperty(BaseAudioContext.prototype, 'state', {get() { return 'suspended'; }});
AudioContext.prototype.resume = function () { return new Promise(() => {}); };
"""


def test_no_sound_output_is_said_instead_of_waiting_silently(live, chromium, campaign):
    """Record on a browser whose Web Audio never starts: the page used to wait on "Getting
    the camera, the microphone and the guide ready…" for ever; it now says that no sound
    output was found and points to the file upload."""
    context = chromium.new_context()
    context.add_init_script(NO_OUTPUT)
    page = context.new_page()
    try:
        page.goto(f"{live['base']}/c/{campaign}")
        fill_in(page)
        page.click("#record-start")
        said = wait_note(page, "no sound output", timeout=30)
        assert "upload" in said and page.locator("#record-note.error").count() == 1
        assert page.locator("input[name=file]").is_visible()
    finally:
        context.close()


def test_a_campaign_without_a_guide_says_why_there_is_no_recording(live, page):
    from portal.services import create_campaign

    slug = "noguide-" + secrets.token_hex(4)
    with live["app"].app_context():
        create_campaign(slug, "No Guide Choir", parts=["Alto"])
    page.goto(f"{live['base']}/c/{slug}")
    assert not page.locator("#record").count()
    said = page.locator("#record-no-guide").inner_text()
    assert "no guide track" in said and "upload" in said


def test_takes_kept_from_two_tabs_are_both_offered_in_turn(live, page, campaign):
    """F4: two tabs each recorded a take: the page offers the newest, says another is
    kept, and offers it once the newest is discarded."""
    page.goto(f"{live['base']}/c/{campaign}")
    record_for(page, 4.5)
    other = page.context.new_page()
    other.goto(f"{live['base']}/c/{campaign}")
    wait_note(other, "recorded earlier")
    # a second take beside the first, as another tab that recorded at the same time made
    other.evaluate("document.getElementById('record-start').click()")
    wait_note(other, "Recording")
    other.wait_for_timeout(4500)
    other.click("#record-stop")
    wait_note(other, "kept on this device")
    other.close()
    page.reload()
    said = wait_note(page, "1 more take is kept")
    assert "offered once this one is sent or discarded" in said
    page.click("#record-discard")
    wait_note(page, "The take was discarded. A take you recorded earlier")
    assert page.locator("#record-send").is_visible()
    assert len(page.evaluate(KEPT)) == 1


def two_tabs_with_one_kept_take(context, live, slug: str, second_init: str = ""):
    """A take recorded in one tab and kept; a second tab of the same browser profile
    opened on the page (``second_init``: a script run first in it), which offers the same
    kept take. Returns (first, second)."""
    first = context.new_page()
    first.goto(f"{live['base']}/c/{slug}")
    fill_in(first)
    record_for(first, 4.5)
    wait_note(first, "kept on this device")
    second = context.new_page()
    if second_init:
        second.add_init_script(second_init)
    second.goto(f"{live['base']}/c/{slug}")
    wait_note(second, "recorded earlier")
    assert second.locator("#record-send").is_visible()
    assert kept_ids(first) == kept_ids(second) and len(kept_ids(first)) == 1
    return first, second


def held_patches(page) -> list:
    """Hold ``page``'s upload PATCHes (the creation goes through): the take is then being
    sent from that tab until they are let go (``route.continue_()``)."""
    held: list = []
    page.route("**/api/v1/uploads**", lambda route: held.append(route)
               if route.request.method == "PATCH" else route.continue_())
    return held


def send_held(page) -> list:
    """Press Send in ``page`` with its upload PATCHes held (:func:`held_patches`) and wait
    until the first is held: the take is then being sent from that tab. Returns them."""
    held = held_patches(page)
    page.click("#record-send")
    deadline = time.monotonic() + 30
    while not held:
        assert time.monotonic() < deadline, note(page)
        page.wait_for_timeout(100)
    return held


def release(page, held: list) -> None:
    """Let ``page``'s held PATCHes go on (:func:`held_patches`), and hold no more."""
    page.route("**/api/v1/uploads**", lambda route: route.continue_())
    for route in held:
        route.continue_()


def test_a_kept_take_offered_in_two_tabs_is_sent_once(live, chromium, campaign):
    """Red team W1: two tabs of one browser profile offered the same kept take, Send in
    both made two clips. Now the tab that sends holds the take's Web Lock: Send in the
    other says the take is being sent from another tab and sends nothing; once it has
    arrived, that tab says it was sent from another tab, links its status page, and no
    tab offers it again."""
    context = chromium.new_context()
    try:
        first, second = two_tabs_with_one_kept_take(context, live, campaign)
        asked: list[str] = []
        second.on("request", lambda r: asked.append(f"{r.method} {r.url}")
                  if "/api/v1/uploads" in r.url else None)
        held = send_held(first)
        second.click("#record-send")
        said = wait_note(second, "being sent from another tab")
        assert "sent once" in said
        assert not second.locator("#record-send").is_visible()
        second.wait_for_timeout(1500)
        assert asked == []  # it waits: no upload of its own
        release(first, held)
        first.wait_for_url(STATUS_PAGE, timeout=60_000)
        said = wait_note(second, "sent from another tab")
        assert "not sent again" in said and "status page" in said
        assert second.locator("#record-sent-link").get_attribute("href") == first.url
        assert second.locator("#record-start").is_visible()
        assert not second.locator("#record-send").is_visible()
        second.wait_for_timeout(1000)
        assert asked == []
        # the take's row says it was sent; a tab opened now offers nothing
        third = context.new_page()
        third.goto(f"{live['base']}/c/{campaign}")
        third.wait_for_selector("#record-start:visible")
        third.wait_for_timeout(1000)
        assert note(third) == "" and not third.locator("#record-send").is_visible()
        assert third.evaluate(KEPT) == []
        assert [r["status_url"] for r in third.evaluate(SENT_ROWS)] == [first.url]
    finally:
        context.close()
    rows = clip_rows(live, campaign)
    assert len(rows) == 1, rows


def test_a_tab_showing_a_take_sent_elsewhere_never_sends_it_again(live, chromium, campaign):
    """W1, a tab left open on the take (no word from the other tab reaches it: no
    BroadcastChannel) and Send pressed after the other tab sent it: the take's row is
    marked sent, so Send says so and sends nothing; typing into the form does not make
    it a take to send again."""
    context = chromium.new_context()
    try:
        first, second = two_tabs_with_one_kept_take(  # it hears nothing from the first
            context, live, campaign, second_init="delete window.BroadcastChannel;")
        assert second.evaluate("window.BroadcastChannel === undefined")
        first.click("#record-send")
        first.wait_for_url(STATUS_PAGE, timeout=60_000)
        asked: list[str] = []
        second.on("request", lambda r: asked.append(r.method)
                  if "/api/v1/uploads" in r.url else None)
        second.fill("input[name=location]", "Porto")  # keeps the form with the take
        second.wait_for_timeout(500)
        assert second.evaluate(KEPT) == []  # the sent mark stays
        second.click("#record-send")
        wait_note(second, "sent from another tab")
        assert second.locator("#record-sent-link").get_attribute("href") == first.url
        second.wait_for_timeout(1000)
        assert asked == [], asked
    finally:
        context.close()
    assert len(clip_rows(live, campaign)) == 1


NO_LOCKS = "delete Navigator.prototype.locks; delete window.BroadcastChannel;"


def test_two_tabs_without_web_locks_sending_one_take_make_one_clip(live, chromium, campaign):
    """W1 on the server: where the browser has no Web Locks (and the tabs hear nothing of
    each other), both tabs send the take at once, the second with another name typed:
    its creation names the same take (take_id and the same bytes), so the server hands
    it the first tab's upload; whichever finishes first makes the clip, the other is
    answered with it. Both tabs end on the same status page; one clip."""
    context = chromium.new_context()
    context.add_init_script(NO_LOCKS)
    try:
        first, second = two_tabs_with_one_kept_take(context, live, campaign)
        assert first.evaluate("navigator.locks === undefined")
        created: list[str] = []
        second.on("response", lambda r: created.append(r.headers.get("location"))
                  if r.request.method == "POST" and "/api/v1/uploads" in r.url else None)
        held = send_held(first)
        second.fill("input[name=name]", "Ana Maria")  # another form: another tus key
        second.click("#record-send")
        second.wait_for_url(STATUS_PAGE, timeout=60_000)
        assert len(created) == 1 and held[0].request.url.endswith(created[0])
        release(first, held)
        first.wait_for_url(STATUS_PAGE, timeout=60_000)
        assert first.url == second.url
    finally:
        context.close()
    rows = clip_rows(live, campaign)
    assert len(rows) == 1, rows
