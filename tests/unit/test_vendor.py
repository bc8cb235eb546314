"""The vendored tus-js-client is the file its VERSION names (the one `make vendor-tus`
fetched from the npm registry), with its licence, and the participant's page loads it."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "static" / "vendor" / "tus-js-client"


def test_the_vendored_tus_js_client_is_the_version_and_file_recorded():
    version = (VENDOR / "VERSION").read_text()
    found = re.search(r"^tus-js-client (\S+) .*\nsha256 ([0-9a-f]{64})$", version.strip(), re.M)
    assert found, version
    makefile = (ROOT / "Makefile").read_text()
    assert f"TUS_JS_CLIENT_VERSION := {found.group(1)}" in makefile
    assert hashlib.sha256((VENDOR / "tus.min.js").read_bytes()).hexdigest() == found.group(2)
    assert "MIT License" in (VENDOR / "LICENSE").read_text()
    page = (ROOT / "templates" / "participate" / "campaign.html").read_text()
    assert page.index("vendor/tus-js-client/tus.min.js") < page.index("upload.js")
