"""What a fresh attacker tried against the organizer side, after issue 10's first
round, each with the fix's test: a session cookie planted before log-in (session
fixation and its CSRF token), guessing the password through the password-change
form with a stolen session, and forged requests without a valid CSRF token."""

from __future__ import annotations

from portal import services
from portal.extensions import db
from portal.models import Campaign
from tests.conftest import ORGANIZER, csrf_token_of, ensure_organizer, log_in

HOST = "tutti.test"


def _campaign(app) -> None:
    with app.app_context():
        services.create_campaign("choir", "Choir", parts=["Alto"], owner=ensure_organizer())


def test_a_session_planted_before_log_in_gives_the_attacker_nothing(csrf_app):
    """The attacker opens the log-in page, keeps the session cookie and its CSRF
    token, and gets the victim's browser to use that cookie (a sibling subdomain,
    plain HTTP). After the victim logs in, neither the attacker's cookie nor the
    CSRF token the attacker knows is of any use."""
    app = csrf_app
    _campaign(app)
    attacker = app.test_client()
    known_token = csrf_token_of(attacker)
    planted = attacker.get_cookie("session", domain=HOST).value
    victim = app.test_client()
    victim.set_cookie("session", planted, domain=HOST)
    answer = victim.post("/organize/login", data={"email": ORGANIZER[0],
                                                  "password": ORGANIZER[1],
                                                  "csrf_token": known_token})
    assert answer.status_code == 303
    assert victim.get_cookie("session", domain=HOST).value != planted
    # the token the attacker knows no longer passes in the victim's session
    forged = victim.post("/organize/c/choir/settings", data={
        "csrf_token": known_token, "title": "Taken over", "description": "", "is_open": ""})
    assert forged.status_code == 400
    with app.app_context():
        assert db.session.query(Campaign).filter_by(slug="choir").one().title == "Choir"
    # the attacker's own copy of the cookie is not logged in
    assert attacker.get("/organize/").status_code == 302
    # and the victim's real token works
    saved = victim.post("/organize/c/choir/settings", data={
        "csrf_token": csrf_token_of(victim, "/organize/"), "title": "Choir 2",
        "description": "", "is_open": "yes"})
    assert saved.status_code == 303


def test_log_out_starts_a_new_anonymous_session(csrf_app):
    app = csrf_app
    _campaign(app)
    client = app.test_client()
    log_in(client)
    before = csrf_token_of(client, "/organize/")
    client.post("/organize/logout", data={"csrf_token": before})
    log_in(client)  # logging in again on the same browser
    stale = client.post("/organize/c/choir/settings", data={
        "csrf_token": before, "title": "Old token", "description": "", "is_open": "yes"})
    assert stale.status_code == 400


def test_the_password_change_form_is_throttled_like_log_in(app, organizer_client):
    """With a stolen session (no password), the current-password check must not be
    an unlimited guessing oracle."""
    app.config["LOGIN_LIMIT_ACCOUNT"] = "3 per minute"
    for guess in ("123456", "password", "qwerty"):
        wrong = organizer_client.post("/organize/account/password", data={
            "current_password": guess, "new_password": "a new password"})
        assert wrong.status_code == 400
    blocked = organizer_client.post("/organize/account/password", data={
        "current_password": ORGANIZER[1], "new_password": "a new password"})
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    with app.app_context():
        assert ensure_organizer().check_password(ORGANIZER[1])  # unchanged


def test_a_right_password_change_does_not_use_up_the_limit(app, organizer_client):
    app.config["LOGIN_LIMIT_ACCOUNT"] = "2 per minute"
    password = ORGANIZER[1]
    for i in range(4):
        new = f"new password {i}"
        done = organizer_client.post("/organize/account/password", data={
            "current_password": password, "new_password": new})
        assert done.status_code == 303, i
        password = new


def test_every_organizer_post_needs_the_csrf_token(csrf_app):
    """Each organizer form posted from another site (no token, or another session's
    token) is refused with 400 and changes nothing."""
    app = csrf_app
    _campaign(app)
    victim, other = app.test_client(), app.test_client()
    log_in(victim)
    with app.app_context():
        ensure_organizer("other@example.org", "password of other")
    log_in(other, "other@example.org", "password of other")
    foreign = csrf_token_of(other, "/organize/")
    with app.test_request_context():
        rules = [r for r in app.url_map.iter_rules()
                 if r.endpoint.startswith("organize.") and "POST" in r.methods]
    assert len(rules) >= 15
    for rule in rules:
        url = rule.rule.replace("<slug>", "choir")
        for arg in ("<int:clip_id>", "<int:render_id>", "<int:member_id>",
                    "<int:invite_id>", "<token>"):
            url = url.replace(arg, "1")
        for data in ({}, {"csrf_token": foreign}, {"csrf_token": "forged"}):
            answer = victim.post(url, data={**data, "title": "x", "confirm": "choir"})
            assert answer.status_code == 400, (url, data, answer.status_code)
    with app.app_context():
        assert services.get_campaign("choir").title == "Choir"


def test_a_logged_out_visitor_gets_the_log_in_page_on_every_organizer_route(app):
    """Every organizer route but log-in and log-out, with real ids, asked for
    without a session: a redirect to the log-in page, and nothing changes."""
    from flask import url_for

    from portal.organize import PUBLIC_ENDPOINTS

    _campaign(app)
    with app.app_context():
        token = services.create_invite(services.get_campaign("choir"), "owner")
    visitor = app.test_client()
    with app.test_request_context():
        rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("organize.")
                 and r.endpoint not in PUBLIC_ENDPOINTS]
        values = {"slug": "choir", "clip_id": 1, "render_id": 1, "member_id": 1,
                  "invite_id": 1, "token": token}
        urls = [(url_for(r.endpoint, **{a: values[a] for a in r.arguments}), method)
                for r in rules for method in sorted(r.methods - {"HEAD", "OPTIONS"})]
    assert len(urls) >= 25
    for url, method in urls:
        answer = visitor.open(url, method=method, data={"title": "x", "confirm": "choir",
                                                         "role": "owner"})
        assert answer.status_code == 302, (method, url, answer.status_code)
        assert "/organize/login" in answer.headers["Location"]
    with app.app_context():
        c = services.get_campaign("choir")
        assert c.title == "Choir" and len(c.members) == 1
        assert services.find_invite(token).used_at is None
