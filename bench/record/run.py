"""From opening the campaign page to "Sent" for a take recorded along the guide (issue 16's
goal: under a minute for a 30 s take), through the real page in Debian's Chromium.

    python -m bench.record [--guide-s 30] [--repeat 1] [--no-sync]

The portal runs as ``tutti serve`` does without services (SQLite, local storage, the
embedded worker); Chromium has fake devices (a y4m camera, a WAV microphone that holds a
part and the guide's leak, as ``tests/browser/test_record.py``). Per run the bench prints
each stage's wall time and the running total:

- **page**: ``/c/<slug>`` opened until Record shows (scripts loaded);
- **ready**: Record pressed until the page says "Recording" (camera, microphone, the
  guide fetched and decoded, the microphone tap);
- **recorded**: until the take is under review (count-in, the guide, the tail, the take
  decoded and its first sample found on the guide's clock);
- **kept**: until the page says the take is kept on this device (IndexedDB);
- **sent**: Send pressed until the private status page opens (the fingerprint hashed,
  the tus upload, the clip made);
- **synced** (unless ``--no-sync``): until the server has aligned the clip (intake and
  sync on the embedded worker; the participant does not wait for it).

The form is filled by the bench before Record (a person's typing is not counted: it can
happen during the count-in or the review). The machine's load average is printed with
the figures: on a shared machine they are upper bounds.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import tempfile
import threading
import time
from pathlib import Path

SR = 48000
COUNT_IN = 3.0
TAIL = 0.5


def _devices(root: Path, guide_s: float) -> dict:
    from tests.signals import tone_melody, write_wav
    from workers.media.ffmpeg import run_ffmpeg

    guide = tone_melody(guide_s, 1, SR)
    mic = 0.6 * tone_melody(guide_s + 8.0, 7, SR)
    at = int(2.0 * SR)
    mic[at:at + len(guide)] += 0.4 * guide
    write_wav(root / "guide.wav", guide, SR)
    write_wav(root / "mic.wav", mic, SR)
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-t", "2",
                "-pix_fmt", "yuv420p", str(root / "cam.y4m")], timeout=60)
    return {"guide": root / "guide.wav", "mic": root / "mic.wav", "cam": root / "cam.y4m"}


def _serve(root: Path):
    from werkzeug.serving import make_server

    from portal import create_app
    from portal.cli import Background

    app = create_app({
        "INSTANCE_PATH": str(root / "instance"), "DATABASE_URL": f"sqlite:///{root / 'b.sqlite3'}",
        "MEDIA_ROOT": str(root / "media"), "SECRET_KEY": "bench", "BROKER_URL": "memory://",
        "EMBEDDED_WORKER": "true",
    })
    background = Background(app).start()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return app, server, background, f"http://127.0.0.1:{server.server_port}"


def _wait_note(page, pattern: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, page.locator("#record-note").inner_text()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no note matching {pattern!r}: "
                               f"{page.locator('#record-note').inner_text()!r}")
        page.wait_for_timeout(20)


def _sync_state(app, slug: str) -> str | None:
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import Campaign, Clip

    with app.app_context():
        campaign = db.session.scalar(select(Campaign).filter_by(slug=slug))
        clip = db.session.scalar(select(Clip).filter_by(campaign_id=campaign.id))
        state = clip.sync_state if clip else None
        db.session.remove()
        return state


def one_run(playwright, app, base: str, devices: dict, guide_s: float, sync: bool) -> list:
    from portal.services import create_campaign
    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    slug = "bench-" + secrets.token_hex(4)
    with app.app_context():
        create_campaign(slug, "Bench Choir", parts=["Alto"], guide_path=str(devices["guide"]),
                        guide_filename="guide.wav")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
        *CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={devices['cam']}",
        f"--use-file-for-fake-audio-capture={devices['mic']}",
        "--autoplay-policy=no-user-gesture-required"])
    stages = []
    try:
        page = browser.new_page()
        t0 = time.monotonic()
        mark = t0

        def stage(name: str) -> None:
            nonlocal mark
            now = time.monotonic()
            stages.append((name, now - mark, now - t0))
            mark = now

        page.goto(f"{base}/c/{slug}")
        page.wait_for_selector("#record-start:visible")
        stage("page")
        page.fill("input[name=name]", "Ana")
        page.select_option("select[name=part]", "Alto")
        page.check("input[name=consent]")
        mark = time.monotonic()  # the form: a person's time, not counted
        filled = mark - t0 - stages[-1][2]
        t0 += filled
        page.click("#record-start")
        _wait_note(page, "Recording", 60)
        stage("ready")
        _wait_note(page, "Listen to your take", guide_s + 60)
        stage("recorded")
        _wait_note(page, "kept on this device", 30)
        stage("kept")
        requests = []
        for event in ("request", "requestfinished"):
            page.on(event, lambda r, e=event: requests.append(
                (e, r.method, r.url.rsplit("/", 1)[-1][:12], time.monotonic() - mark))
                if "/api/v1/uploads" in r.url or "/clip/" in r.url else None)
        page.click("#record-send")
        page.wait_for_url(re.compile(r".*/clip/[A-Za-z0-9_-]{20,}$"), timeout=120_000)
        stage("sent")
        stages[-1] += (", ".join(f"{m} {u} {'done' if e == 'requestfinished' else 'sent'} at "
                                 f"{t:.2f} s" for e, m, u, t in requests),)
        if sync:
            deadline = time.monotonic() + 300
            while _sync_state(app, slug) not in ("done", "failed"):
                if time.monotonic() > deadline:
                    raise TimeoutError("the clip was not synced within 5 minutes")
                time.sleep(0.2)
            stage("synced")
    finally:
        browser.close()
    return stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.record",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--guide-s", type=float, default=30.0, help="the guide's length (s)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-sync", action="store_true", help="stop at Sent")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="tutti-bench-record-"))
    devices = _devices(root, args.guide_s)
    app, server, background, base = _serve(root)
    floor = COUNT_IN + args.guide_s + TAIL
    try:
        with sync_playwright() as playwright:
            for run in range(1, args.repeat + 1):
                stages = one_run(playwright, app, base, devices, args.guide_s, not args.no_sync)
                load = os.getloadavg()
                print(f"\nrun {run}: a {args.guide_s:.0f} s guide (count-in {COUNT_IN:.0f} s and "
                      f"tail {TAIL} s: {floor:.1f} s of recording at least); load average "
                      f"{load[0]:.1f} on {os.cpu_count()} cores")
                print(f"{'stage':<10}{'s':>8}{'total s':>10}")
                for name, took, total, *detail in stages:
                    print(f"{name:<10}{took:>8.2f}{total:>10.2f}  {' '.join(detail)}")
                sent = next(total for name, _, total, *_ in stages if name == "sent")
                print(f"open -> Sent: {sent:.1f} s ({sent - floor:.1f} s beyond the recording "
                      f"itself); goal < 60 s: {'met' if sent < 60 else 'NOT met'}")
    finally:
        server.shutdown()
        background.stop()
    return 0
