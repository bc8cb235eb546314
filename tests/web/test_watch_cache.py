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
