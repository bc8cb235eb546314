"""Sessions that end on the server: old cookies are refused after log-out, remember
tokens are new at each log-in and revoked by a password change and by "log out
everywhere"; cookies are HttpOnly, SameSite=Lax and Secure over HTTPS."""

from __future__ import annotations

from portal import services
from portal.extensions import db
from portal.models import Clip
from tests.conftest import ORGANIZER, csrf_token_of, ensure_organizer, log_in

HOST = "tutti.test"


def _cookies(client) -> dict[str, str]:
    found = {}
    for name in ("session", "remember_token"):
        cookie = client.get_cookie(name, domain=HOST)
        if cookie is not None:
            found[name] = cookie.value
    return found


def _replay(app, cookies: dict[str, str]):
    """A fresh browser that only has ``cookies``."""
    other = app.test_client()
    for name, value in cookies.items():
        other.set_cookie(name, value, domain=HOST)
    return other


def _logged_in(client) -> bool:
    answer = client.get("/organize/")
    return answer.status_code == 200


def _setup(app):
    with app.app_context():
        owner = ensure_organizer()
        campaign = services.create_campaign("choir", "Choir", parts=[], owner=owner)
        clip = Clip(campaign=campaign, display_name="Ana", original_key="x",
                    status="normalized")
        db.session.add(clip)
        db.session.commit()
        return clip.id


def test_old_session_and_remember_cookies_are_refused_after_log_out(csrf_app):
    app = csrf_app
    clip_id = _setup(app)
    client = app.test_client()
    assert log_in(client).status_code == 303
    token = csrf_token_of(client, "/organize/")  # log-in starts a new session: a new token
    old = _cookies(client)
    assert set(old) == {"session", "remember_token"}
    # while the session lives, each cookie alone opens the organizer pages
    assert _logged_in(_replay(app, {"session": old["session"]}))
    assert _logged_in(_replay(app, {"remember_token": old["remember_token"]}))

    assert client.post("/organize/logout", data={"csrf_token": token}).status_code == 303
    for cookies in ({"session": old["session"]}, {"remember_token": old["remember_token"]},
                    old):
        replay = _replay(app, cookies)
        assert not _logged_in(replay), cookies.keys()
        # nor can they post
        answer = replay.post(f"/organize/clips/{clip_id}/nudge",
                             data={"csrf_token": token, "nudge_ms": "500"})
        if "session" in cookies:  # the CSRF token still matches: the log-in is what fails
            assert answer.status_code == 302
            assert "/organize/login" in answer.headers["Location"]
        else:  # no session, no CSRF secret to match the token
            assert answer.status_code == 400
    with app.app_context():
        assert db.session.get(Clip, clip_id).nudge_ms == 0


def test_remember_tokens_are_new_per_log_in_and_revoked_by_password_and_everywhere(csrf_app):
    app = csrf_app
    _setup(app)
    laptop, phone = app.test_client(), app.test_client()
    log_in(laptop)
    log_in(phone)
    first, second = _cookies(laptop)["remember_token"], _cookies(phone)["remember_token"]
    assert first != second
    again = app.test_client()
    log_in(again)
    assert _cookies(again)["remember_token"] not in (first, second)

    # "log out everywhere" from the laptop ends the phone's session too
    token = csrf_token_of(laptop, "/organize/account")
    done = laptop.post("/organize/account/logout-everywhere", data={"csrf_token": token})
    assert done.status_code == 303
    assert not _logged_in(phone)
    assert not _logged_in(_replay(app, {"remember_token": second}))
    assert not _logged_in(laptop)

    # a password change ends every other session; the browser that changed it stays in
    desk, tablet = app.test_client(), app.test_client()
    log_in(desk)
    log_in(tablet)
    old_tablet = _cookies(tablet)
    token = csrf_token_of(desk, "/organize/account")
    wrong = desk.post("/organize/account/password", data={
        "csrf_token": token, "current_password": "nope", "new_password": "a new password"})
    assert wrong.status_code == 400 and _logged_in(tablet)
    changed = desk.post("/organize/account/password", data={
        "csrf_token": token, "current_password": ORGANIZER[1],
        "new_password": "a new password"})
    assert changed.status_code == 303
    assert _logged_in(desk)
    assert not _logged_in(tablet)
    assert not _logged_in(_replay(app, {"remember_token": old_tablet["remember_token"]}))
    assert log_in(app.test_client(), ORGANIZER[0], ORGANIZER[1]).status_code == 401
    assert log_in(app.test_client(), ORGANIZER[0], "a new password").status_code == 303


def test_session_protection_drops_a_cookie_used_from_another_browser(csrf_app):
    app = csrf_app
    _setup(app)
    client = app.test_client()
    log_in(client, **{"User-Agent": "Firefox/1"})
    assert client.get("/organize/", headers={"User-Agent": "Firefox/1"}).status_code == 200
    stolen = _replay(app, _cookies(client))
    assert stolen.get("/organize/", headers={"User-Agent": "curl/8"}).status_code == 302


def test_cookie_flags_and_https(csrf_app):
    app = csrf_app
    _setup(app)
    plain = app.test_client()
    answer = log_in(plain)
    cookies = answer.headers.getlist("Set-Cookie")
    assert cookies and all("HttpOnly" in c and "SameSite=Lax" in c for c in cookies)
    assert not any("Secure" in c for c in cookies)
    assert "Strict-Transport-Security" not in answer.headers

    secure = app.test_client()
    token = csrf_token_of(secure, "https://tutti.test/organize/login")
    answer = secure.post("https://tutti.test/organize/login", data={
        "email": ORGANIZER[0], "password": ORGANIZER[1], "csrf_token": token},
        headers={"Referer": "https://tutti.test/organize/login"})  # CSRF over HTTPS checks it
    assert answer.status_code == 303
    cookies = answer.headers.getlist("Set-Cookie")
    assert cookies and all("; Secure" in c and "HttpOnly" in c for c in cookies)
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=")


def test_behind_a_trusted_proxy_https_is_read_from_x_forwarded_proto(db_kind, tmp_path):
    from tests.conftest import dispose, make_app

    app = make_app(db_kind, tmp_path, TRUSTED_PROXIES=1)
    try:
        client = app.test_client()
        answer = client.get("/", headers={"X-Forwarded-Proto": "https",
                                          "X-Forwarded-For": "203.0.113.9"})
        assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
    finally:
        dispose(app)
    untrusted = make_app(db_kind, tmp_path / "b")
    try:
        answer = untrusted.test_client().get("/", headers={"X-Forwarded-Proto": "https"})
        assert "Strict-Transport-Security" not in answer.headers
    finally:
        dispose(untrusted)
