"""Absolute links never come from an untrusted Host header (host-header injection).

The apps here have no ``SERVER_NAME`` (the other tests' apps have one, which Flask
uses instead of the request's host), as in a production install."""

from __future__ import annotations

import base64
import io
import re
from urllib.parse import urlsplit

import pytest

from portal import services
from tests.conftest import dispose, ensure_organizer, make_app

EVIL = "evil.example"


@pytest.fixture
def bare_app(db_kind, tmp_path):
    app = make_app(db_kind, tmp_path, SERVER_NAME=None)
    yield app
    dispose(app)


def _owner_with_campaign(app):
    with app.app_context():
        owner = ensure_organizer()
        services.create_campaign("ode-to-joy", "Ode", parts=["Alto"], owner=owner)


def _log_in(client, host: str):
    from tests.conftest import ORGANIZER

    answer = client.post("/organize/login", headers={"Host": host},
                         data={"email": ORGANIZER[0], "password": ORGANIZER[1]})
    assert answer.status_code == 303, answer.status_code


def _everything_linked(client, host: str, media_files) -> str:
    """Every answer that carries an absolute link, asked for with ``Host: host``."""
    seen = []
    headers = {"Host": host}
    page = client.post("/organize/c/ode-to-joy/invites", data={"role": "owner"},
                       headers=headers)
    seen.append(page.get_data(as_text=True))
    created = client.post("/organize/campaigns", headers=headers, data={
        "slug": "second", "title": "Second", "parts": "Alto"}, follow_redirects=True)
    seen.append(created.get_data(as_text=True))
    with open(media_files["landscape"], "rb") as handle:
        clip = client.post("/api/v1/campaigns/ode-to-joy/clips", headers=headers,
                           content_type="multipart/form-data",
                           data={"name": "Ana", "part": "Alto", "consent": "yes",
                                 "file": (io.BytesIO(handle.read()), "me.mp4")})
    assert clip.status_code == 201
    seen += [clip.get_data(as_text=True), str(clip.headers)]
    seen.append(client.get(f"/api/v1/clips/{clip.get_json()['id']}", headers=headers)
                .get_data(as_text=True))
    seen.append(client.get("/api/v1/campaigns/ode-to-joy", headers=headers)
                .get_data(as_text=True))
    meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in
                    {"campaign": "ode-to-joy", "name": "Bo", "part": "Alto",
                     "consent": "yes", "filename": "b.mp4"}.items())
    tus = client.post("/api/v1/uploads", headers={**headers, "Tus-Resumable": "1.0.0",
                                                  "Upload-Length": "4",
                                                  "Upload-Metadata": meta})
    assert tus.status_code == 201
    seen.append(str(tus.headers))
    # the site's root path when TUTTI_BASE_URL names one (a proxy strips it)
    location = urlsplit(tus.headers["Location"]).path.removeprefix("/tutti")
    done = client.patch(location, data=b"abcd", headers={
        **headers, "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream"})
    assert done.status_code == 204
    seen.append(str(done.headers))
    seen.append(client.get(location, headers={**headers, "Accept": "application/json"})
                .get_data(as_text=True))
    return "\n".join(seen)


def test_a_forged_host_never_reaches_a_link_without_a_base_url(bare_app, media_files):
    app = bare_app
    _owner_with_campaign(app)
    client = app.test_client()
    _log_in(client, EVIL)
    everything = _everything_linked(client, EVIL, media_files)
    assert EVIL not in everything
    # the links are still there, relative to the site the browser is on
    assert re.search(r'<code id="invite-url">/organize/invite/[\w-]+</code>', everything)
    assert '"status_url":"/clip/' in everything.replace(" ", "")


def test_links_start_with_the_base_url_whatever_the_host(db_kind, tmp_path, media_files):
    app = make_app(db_kind, tmp_path, SERVER_NAME=None,
                   BASE_URL="https://choir.example.org/tutti/")
    try:
        _owner_with_campaign(app)
        client = app.test_client()
        _log_in(client, EVIL)
        everything = _everything_linked(client, EVIL, media_files)
        assert EVIL not in everything
        assert re.search(r'<code id="invite-url">https://choir\.example\.org/tutti/organize/'
                         r'invite/[\w-]+</code>', everything)
        assert "https://choir.example.org/tutti/clip/" in everything
        assert "Location: https://choir.example.org/tutti/api/v1/uploads/" in everything
    finally:
        dispose(app)


def test_trusted_hosts_refuse_any_other_host_and_build_links_from_ours(db_kind, tmp_path,
                                                                       media_files):
    app = make_app(db_kind, tmp_path, SERVER_NAME=None,
                   TRUSTED_HOSTS="choir.example.org, .choirs.example.net")
    try:
        assert app.config["TRUSTED_HOSTS"] == ["choir.example.org", ".choirs.example.net"]
        _owner_with_campaign(app)
        client = app.test_client()
        for path in ("/", "/organize/login", "/api/v1/campaigns/ode-to-joy"):
            assert client.get(path, headers={"Host": EVIL}).status_code == 400, path
        assert client.post("/organize/c/ode-to-joy/invites", data={"role": "owner"},
                           headers={"Host": EVIL}).status_code == 400
        assert client.get("/", headers={"Host": "eu.choirs.example.net"}).status_code == 200
        _log_in(client, "choir.example.org")
        everything = _everything_linked(client, "choir.example.org", media_files)
        assert "http://choir.example.org/organize/invite/" in everything
        assert "http://choir.example.org/clip/" in everything
    finally:
        dispose(app)


def test_the_environment_sets_the_allow_list(monkeypatch, tmp_path):
    from portal.config import build_config

    monkeypatch.setenv("TUTTI_TRUSTED_HOSTS", "a.example.org,b.example.org")
    assert build_config(str(tmp_path))["TRUSTED_HOSTS"] == ["a.example.org", "b.example.org"]
    monkeypatch.delenv("TUTTI_TRUSTED_HOSTS")
    assert build_config(str(tmp_path))["TRUSTED_HOSTS"] is None


def test_served_on_loopback_the_portal_answers_to_loopback_names_only(bare_app):
    from portal.cli import trust_loopback

    app = bare_app
    trust_loopback(app, "0.0.0.0")  # reachable from elsewhere: nothing is assumed
    assert app.config["TRUSTED_HOSTS"] is None
    trust_loopback(app, "127.0.0.1")
    assert app.config["TRUSTED_HOSTS"] == ["127.0.0.1", "localhost"]
    _owner_with_campaign(app)
    client = app.test_client()
    assert client.get("/", headers={"Host": EVIL}).status_code == 400  # DNS rebinding
    answer = client.get("/api/v1/campaigns/ode-to-joy", headers={"Host": "localhost:5000"})
    assert answer.get_json()["watch_url"] == "http://localhost:5000/watch/ode-to-joy"
