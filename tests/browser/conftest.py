"""The browser tests' shared fixtures: the app served on a free port (embedded
default: a real Celery worker thread on the in-memory transport, SQLite, local
storage) and Debian's Chromium driven by Playwright. A module that drives another browser
(``BROWSER = "firefox"``: test_record_firefox.py) does not need Chromium for ``live``."""

from __future__ import annotations

import os
import threading

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def live(request, tmp_path_factory):
    chromium = getattr(request.module, "BROWSER", "chromium") == "chromium"
    if chromium and not os.path.exists(CHROMIUM):
        pytest.fail("Debian chromium is missing: `make setup` installs it (apt-get install "
                    "chromium)")
    from werkzeug.serving import make_server

    from portal import create_app
    from portal.cli import Background
    from portal.services import create_campaign, create_organizer

    root = tmp_path_factory.mktemp("live")
    app = create_app({
        "INSTANCE_PATH": str(root / "instance"),
        "DATABASE_URL": f"sqlite:///{root / 'live.sqlite3'}",
        "MEDIA_ROOT": str(root / "media"),
        "SECRET_KEY": "browser",
        "BROKER_URL": "memory://",
        "EMBEDDED_WORKER": "true",
    })
    with app.app_context():
        owner = create_organizer("org@example.org", "correct horse")
        create_campaign("choir", "Browser Choir", parts=["Alto", "Bass"],
                        description="Sing along!", owner=owner)
    background = Background(app).start()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"app": app, "base": f"http://127.0.0.1:{server.server_port}"}
    server.shutdown()
    background.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def organizer_page(page, base: str) -> None:
    """Open the organizer console in ``page``, logging in as the live portal's organizer
    (org@example.org) when the log-in form shows."""
    page.goto(f"{base}/organize/")
    if page.locator("input[name=email]").count():
        page.fill("input[name=email]", "org@example.org")
        page.fill("input[name=password]", "correct horse")
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/organize/")
