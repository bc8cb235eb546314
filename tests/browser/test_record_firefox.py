"""Record along the guide (issue 16) in Debian's Firefox ESR, through the real campaign page
and the real pipeline, as test_record.py does in Chromium (its fixtures and helpers are
reused). Firefox is driven over WebDriver BiDi (tests/browser/firefox.py) with its own fake
camera and microphone (``media.navigator.streams.fake``), and plays its Web Audio into a
private PulseAudio null sink (without an output device Firefox's AudioContext never runs).

Firefox has no ``MediaStreamTrackProcessor``, so the page reads the take's start with the
microphone tap (static/record-tap.js), the fallback these tests exist to check.

Skipped, with the reason, where firefox-esr, PulseAudio or the websockets package are
missing: ``make firefox`` installs them (the main ``make test`` does not need Firefox)."""

from __future__ import annotations

import base64
import re
import time

import pytest

from . import test_record as chromium_record
from .firefox import Firefox, PulseAudio, missing
from .test_record import (
    CHUNKS,
    GUIDE_AT,
    GUIDE_S,
    KEPT,
    LOOP_DELAY_S,
    LOOPBACK,
    NO_OUTPUT,
    SR,
    STATUS_PAGE,
    clip_rows,
    position_in_mic,
    wait_synced,
)

# test_record.py's fixtures: the guide, the fake microphone's WAV, a campaign per test
devices = chromium_record.devices
campaign = chromium_record.campaign

pytestmark = [pytest.mark.browser, pytest.mark.firefox]
BROWSER = "firefox"  # conftest's ``live`` then does not ask for Chromium

why = missing()
if why:
    pytestmark.append(pytest.mark.skip(reason=f"Firefox tests skipped: {why}"))


@pytest.fixture(scope="module")
def firefox():
    pulse = PulseAudio()
    try:
        browser = Firefox(env=pulse.env)
    except Exception:
        pulse.close()
        raise
    print(f"firefox: {browser.version()}")
    yield browser
    browser.close()
    pulse.close()


@pytest.fixture
def context(firefox):
    made = []

    def new(init_script: str | None = None):
        ctx = firefox.new_context(init_script)
        made.append(ctx)
        return ctx

    yield new
    for ctx in made:
        ctx.close()


def note(page) -> str:
    return page.evaluate("document.getElementById('record-note').innerText")


def wait_note(page, pattern: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, note(page)):
        assert time.monotonic() < deadline, f"no note matching {pattern!r}: {note(page)!r}"
        time.sleep(0.1)
    return note(page)


def wait_status_page(page, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while not STATUS_PAGE.match(page.url):
        assert time.monotonic() < deadline, (page.url, note(page))
        time.sleep(0.2)
    return page.url


def fill_in(page) -> None:
    page.fill("input[name=name]", "Ana")
    page.evaluate("() => { const s = document.querySelector('select[name=part]'); "
                  "s.value = [...s.options].find(o => o.text === 'Alto').value; "
                  "s.dispatchEvent(new Event('change', {bubbles: true})); }")
    page.evaluate("() => { const c = document.querySelector('input[name=consent]'); "
                  "c.checked = true; c.dispatchEvent(new Event('change', {bubbles: true})); }")


def record_take(page, live, slug: str) -> float:
    """Open the page, fill in the form, Record, and wait for the take to be offered (the
    guide's end stops it). Returns when the page was opened (time.monotonic())."""
    opened = time.monotonic()
    page.goto(f"{live['base']}/c/{slug}")
    page.wait_for("() => { const b = document.getElementById('record-start'); "
                  "return b && !b.hidden && !document.getElementById('record').hidden; }")
    fill_in(page)
    page.click("#record-start")
    wait_note(page, "Recording")
    wait_note(page, "Listen to your take|only .* s long", timeout=GUIDE_S + 60)
    return opened


# The fake microphone fed from the WAV, as Chromium's --use-file-for-fake-audio-capture:
# Firefox's own fake microphone is a steady tone, so getUserMedia here keeps Firefox's fake
# camera and takes its sound from the WAV, played from its start (looping, as Chromium's
# does) when the page opens the microphone, through a context of its own.
FILE_MIC = """
(() => {
  const wav = '%s';
  const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (c) => {
    const got = await gum(c);
    if (!c.audio) { return got; }
    const ctx = new AudioContext({sampleRate: %d});
    await ctx.resume();
    const bytes = Uint8Array.from(atob(wav), ch => ch.charCodeAt(0));
    const buffer = await ctx.decodeAudioData(bytes.buffer);
    const src = ctx.createBufferSource();
    src.buffer = buffer;
    src.loop = true;
    const out = ctx.createMediaStreamDestination();
    src.connect(out);
    src.start();
    got.getAudioTracks().forEach(t => { got.removeTrack(t); t.stop(); });
    got.addTrack(out.stream.getAudioTracks()[0]);
    return got;
  };
})();
"""


def file_mic(devices) -> str:
    return FILE_MIC % (base64.b64encode(devices["mic_wav"].read_bytes()).decode(), SR)


def test_firefox_records_along_and_the_take_lands_synced(live, context, campaign, devices):
    """The whole flow in Firefox: Record, count-in, the guide through Web Audio, the take
    stopped at the guide's end, kept in IndexedDB, played back, sent through tus-js-client,
    and synced by the pipeline within 20 ms of the truth, trusted. The page read its start by
    the tap (no MediaStreamTrackProcessor here) and sent it stamped."""
    page = context(file_mic(devices)).new_page()
    opened = record_take(page, live, campaign)
    kept = page.evaluate(KEPT)
    assert len(kept) == 1 and kept[0]["state"] == "recorded" and kept[0]["size"] > 10_000, kept
    clock = page.evaluate("""() => new Promise(r => { const q = indexedDB.open('tutti-takes');
      q.onsuccess = () => { const g = q.result.transaction('takes').objectStore('takes')
        .getAll(); g.onsuccess = () => r(g.result[0].clock); }; })""")
    page.click("#record-play")
    time.sleep(1.5)
    assert page.evaluate("document.getElementById('record-review-video').currentTime") > 0.3
    page.evaluate("document.getElementById('record-review-video').pause()")
    page.click("#record-send")
    wait_status_page(page)
    sent_s = time.monotonic() - opened
    row = wait_synced(live, campaign)
    timing = row["record_timing"]
    truth = GUIDE_AT - position_in_mic(live, row, devices["mic"])
    error_ms = (row["offset_seconds"] - truth) * 1000
    print(f"firefox record along: open page -> Sent {sent_s:.1f} s for a "
          f"{GUIDE_S + 3 + 0.5:.1f} s take; truth {truth:.4f} s, aligned "
          f"{row['offset_seconds']:.4f} s ({error_ms:+.1f} ms), method {row['sync_method']}, "
          f"confidence {row['sync_confidence']:.2f}; the page predicted "
          f"{-timing['start_s']:.4f} s (sound - device {row['record_error_ms']:+.1f} ms), "
          f"stamped {timing.get('stamped')} by {timing.get('clock')!r}, mime {timing['mime']}; "
          f"page clock {clock}")
    assert timing["mime"].startswith("video/webm"), timing  # Firefox records WebM (VP8, Opus)
    assert timing["stamped"] is True and timing["clock"] == "tap", timing
    assert abs(error_ms) < 20.0
    assert row["status"] == "synced" and row["sync_confidence"] >= 0.5
    assert page.evaluate(KEPT) == []


def test_firefox_loopback_the_recorded_start_agrees_with_the_sound(live, context, campaign):
    """As test_record.py's loopback, in Firefox: the microphone hears the page's own playback
    (LOOP_DELAY_S late); Measure my delay, then a take. The page's start (the tap: Firefox
    has no MediaStreamTrackProcessor) is checked against the sound's offset on the server."""
    page = context(f"window.__loopDelay = {LOOP_DELAY_S};" + LOOPBACK).new_page()
    page.goto(f"{live['base']}/c/{campaign}")
    page.click("#record-calibrate")
    measured = wait_note(page, "Measured|did not hear", timeout=60)
    assert "Measured" in measured, measured
    calibration = page.evaluate("JSON.parse(localStorage.getItem('tutti-latency'))")
    record_take(page, live, campaign)
    page.click("#record-send")
    wait_status_page(page)
    row = wait_synced(live, campaign)
    timing = row["record_timing"]
    print(f"firefox loopback: sound {row['offset_seconds']:.4f} s, device "
          f"{-timing['start_s']:.4f} s, sound - device {row['record_error_ms']:+.2f} ms "
          f"(loop delay {LOOP_DELAY_S * 1000:.1f} ms), method {row['sync_method']}, "
          f"confidence {row['sync_confidence']:.2f}, calibrated "
          f"{timing['input_latency_s'] * 1000:+.1f} ms ({calibration}), stamped "
          f"{timing.get('stamped')} by {timing.get('clock')!r}")
    assert timing["stamped"] is True and timing["clock"] == "tap", timing
    assert calibration["clock"] == "tap", calibration
    assert row["sync_method"] == "leak" and row["status"] == "synced", row
    assert abs(row["record_error_ms"]) < 150, row


def test_firefox_a_take_cut_off_mid_recording_is_offered_again(live, context, campaign):
    """The tab closed while recording: Firefox kept the chunks (Blobs in IndexedDB) and the
    start found from the first three, and the page opened again offers and sends the take."""
    ctx = context()
    page = ctx.new_page()
    page.goto(f"{live['base']}/c/{campaign}")
    page.click("#record-start")
    wait_note(page, "Recording")
    deadline = time.monotonic() + 60
    while page.evaluate(CHUNKS) < 3:
        assert time.monotonic() < deadline, ("no chunks kept while recording", page.evaluate(KEPT))
        time.sleep(0.2)
    page.close()
    page = ctx.new_page()
    page.goto(f"{live['base']}/c/{campaign}")
    said = wait_note(page, "cut off")
    assert "Send it" in said
    fill_in(page)
    page.click("#record-send")
    wait_status_page(page)
    rows = clip_rows(live, campaign)
    assert len(rows) == 1 and rows[0]["record_timing"]


def test_firefox_a_kept_take_offered_in_two_tabs_is_sent_once(live, context, campaign):
    """Red team W1 in Firefox (Web Locks and BroadcastChannel since Firefox 96 and 38): a
    take kept by one tab is offered by a second tab of the same profile; Send pressed in
    both, one right after the other, sends it once: the second tab says it is being, or
    was, sent from another tab, links the status page, and one clip is made."""
    ctx = context()
    first = ctx.new_page()
    first.goto(f"{live['base']}/c/{campaign}")
    first.wait_for("() => !document.getElementById('record').hidden")
    fill_in(first)
    first.click("#record-start")
    wait_note(first, "Recording")
    time.sleep(4.5)
    first.click("#record-stop")
    wait_note(first, "kept on this device", timeout=60)
    second = ctx.new_page()
    second.goto(f"{live['base']}/c/{campaign}")
    wait_note(second, "recorded earlier")
    first.click("#record-send")
    second.click("#record-send")
    sent = wait_status_page(first)
    said = wait_note(second, "sent from another tab")
    assert "not sent again" in said, said
    assert second.evaluate("document.getElementById('record-sent-link').href") == sent
    assert not second.is_visible("#record-send")
    assert second.evaluate(KEPT) == []
    time.sleep(1)
    assert len(clip_rows(live, campaign)) == 1


def test_firefox_fake_devices_as_they_are(live, context, campaign):
    """Firefox's own fake microphone (a steady tone) and camera, nothing replaced: the page
    records, keeps and sends a take that intake accepts; the sound of a tone cannot place
    the take on the guide, and a start found in a tone is not trusted as stamped."""
    page = context().new_page()
    record_take(page, live, campaign)
    page.click("#record-send")
    wait_status_page(page)
    row = wait_synced(live, campaign)
    assert row["normalized_key"], row
    print(f"firefox fake devices: {row['record_timing']}, {row['sync_method']}, "
          f"{row['sync_state']}")



def test_firefox_without_sound_output_says_so(live, context, campaign):
    """Firefox with no output device keeps its AudioContext suspended (resume() never
    settles: what this module's PulseAudio is for); emulated here in one context, the page
    says no sound output was found and points to the file upload, instead of waiting."""
    page = context(NO_OUTPUT).new_page()
    page.goto(f"{live['base']}/c/{campaign}")
    fill_in(page)
    page.click("#record-start")
    said = wait_note(page, "no sound output", timeout=60)
    assert "upload" in said
    assert page.is_visible("input[name=file]")
