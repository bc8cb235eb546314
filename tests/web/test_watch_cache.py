"""What the production proxy relies on (portal/proxy.conf.template): a watch page that a
shared cache may keep when it is the same for everyone, a repeat viewer's 304, and media
answers that hand the bytes to the proxy (X-Accel-Redirect) only after the app's checks."""

from __future__ import annotations

from tests.conftest import dispose, make_app
from tests.web.test_hardening import _published_campaign


def _app_with_campaign(db_kind, tmp_path, **config):
    from portal.services import create_campaign

    app = make_app(db_kind, tmp_path, **config)
    with app.app_context():
        create_campaign("ode-to-joy", "Ode to Joy", parts=["Soprano", "Alto"])
    return app


def test_anonymous_watch_page_is_shared_cacheable_and_revalidates_to_304(app, campaign):
    ids = _published_campaign(app)
    client = app.test_client()
    first = client.get(f"/watch/{ids['slug']}")
    assert first.status_code == 200
    cache = first.cache_control
    assert cache.public and cache.max_age == 0
    assert cache.s_maxage == app.config["WATCH_CACHE_SECONDS"] > 0
    assert "Set-Cookie" not in first.headers  # a shared cache does not keep a cookie
    etag = first.headers["ETag"]
    again = client.get(f"/watch/{ids['slug']}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    changed = client.get(f"/watch/{ids['slug']}", headers={"If-None-Match": '"other"'})
    assert changed.status_code == 200 and changed.data == first.data


def test_watch_page_of_a_logged_in_organizer_is_private(app, organizer_client, campaign):
    ids = _published_campaign(app)
    page = organizer_client.get(f"/watch/{ids['slug']}")
    assert page.status_code == 200 and b"Log out" in page.data
    assert page.cache_control.private and page.cache_control.no_cache
    assert not page.cache_control.public and page.cache_control.s_maxage is None


def test_no_shared_cache_when_the_setting_is_zero(db_kind, tmp_path):
    app = _app_with_campaign(db_kind, tmp_path, WATCH_CACHE_SECONDS=0)
    ids = _published_campaign(app)
    page = app.test_client().get(f"/watch/{ids['slug']}")
    assert page.cache_control.private and page.cache_control.s_maxage is None
    assert page.headers["ETag"]
    dispose(app)


def test_media_by_x_accel_redirect_after_the_apps_checks(db_kind, tmp_path):
    app = _app_with_campaign(db_kind, tmp_path, MEDIA_ACCEL_REDIRECT="/_media/")
    ids = _published_campaign(app)
    client = app.test_client()
    published = client.get(f"/media/{ids['output']}", headers={"Range": "bytes=0-3"})
    assert published.status_code == 200 and published.data == b""  # the proxy sends it
    assert published.headers["X-Accel-Redirect"] == f"/_media/{ids['output']}"
    assert published.mimetype == "video/mp4"
    assert published.cache_control.public and published.cache_control.max_age == 3600
    # a render that is not published: the proxy sends it, but no shared cache keeps it
    preview = client.get(f"/media/{ids['preview']}")
    assert preview.headers["X-Accel-Redirect"] == f"/_media/{ids['preview']}"
    assert preview.cache_control.private and not preview.cache_control.public
    # what the app refuses is refused before any hand-off
    for refused in (f"/media/{ids['thumb']}", "/media/renders/none/x/mashup.mp4",
                    "/media/../instance/secret_key"):
        answer = client.get(refused)
        assert answer.status_code == 404 and "X-Accel-Redirect" not in answer.headers
    dispose(app)


def test_media_sent_by_the_app_without_the_setting(app, campaign):
    ids = _published_campaign(app)
    answer = app.test_client().get(f"/media/{ids['output']}", headers={"Range": "bytes=0-2"})
    assert answer.status_code == 206 and answer.data == b"mp4"
    assert "X-Accel-Redirect" not in answer.headers


def test_proxy_template_names_only_what_compose_gives_it_and_nginx_accepts_it(tmp_path):
    """Every ``${TUTTI_*}`` of portal/proxy.conf.template is set by docker-compose.yml's
    proxy service (the nginx image leaves a missing one as text: a broken config), and
    nginx, where installed, accepts the file as bench/load fills it in."""
    import re
    import shutil
    import subprocess
    from pathlib import Path

    import pytest

    from bench.load.run import TEMPLATE, render_template_file

    root = Path(__file__).resolve().parents[2]
    compose = (root / "docker-compose.yml").read_text()
    proxy = compose[compose.index("\n  proxy:"):compose.index("\n  worker-intake:")]
    given = set(re.findall(r"^\s+(TUTTI_[A-Z0-9_]+):", proxy, re.M))
    named = set(re.findall(r"\$\{(TUTTI_[A-Z0-9_]+)\}", TEMPLATE.read_text()))
    assert named and named <= given, f"not set for the proxy: {sorted(named - given)}"
    assert "proxy.conf.template:/etc/nginx/templates/" in proxy
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if nginx is None:
        pytest.skip("nginx is not installed")
    (tmp_path / "cache").mkdir()
    server = render_template_file(TEMPLATE, {
        "TUTTI_PROXY_LISTEN": "127.0.0.1:1", "TUTTI_PAGES_UPSTREAM": "127.0.0.1:2",
        "TUTTI_UPLOADS_UPSTREAM": "127.0.0.1:3", "TUTTI_PROXY_RESOLVER": "127.0.0.11",
        "TUTTI_MEDIA_ROOT": str(tmp_path),
        "TUTTI_PROXY_CACHE": str(tmp_path / "cache"), "TUTTI_MAX_UPLOAD_MB": "1024",
        "TUTTI_WATCH_CACHE_SECONDS": "10"})
    (tmp_path / "tutti.conf").write_text(server)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\n"
        f"events {{}}\nhttp {{\n include /etc/nginx/mime.types;\n"
        f" include {tmp_path / 'tutti.conf'};\n}}\n")
    check = subprocess.run([nginx, "-t", "-q", "-c", str(tmp_path / "nginx.conf")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
