"""Organizer forms: a refused form answers 4xx with the form shown again and the
reason on it (never a 303 that hides the failure), and inviting by e-mail tells
nobody which addresses have organizer accounts."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event, select

from portal import services
from portal.extensions import db
from portal.models import Campaign, CampaignMember, Clip, Organizer, Render
from tests.conftest import csrf_token_of, ensure_organizer, log_in


def _clip_and_render(app, slug: str) -> tuple[int, int]:
    """A processed clip and a queued render in campaign ``slug``."""
    with app.app_context():
        campaign = services.get_campaign(slug)
        clip = Clip(campaign=campaign, part=campaign.parts[0], display_name="Ana",
                    status="normalized", original_key="clips/x/original.mp4")
        render = Render(campaign=campaign, kind="final", status="queued")
        db.session.add_all([clip, render])
        db.session.commit()
        return clip.id, render.id


def _cases(slug: str, clip_id: int, render_id: int):
    """(url, form, status, message, what shows that the page with the form is back:
    the form's action, or the clip's page (whose sync forms need a guide track))."""
    c = f"/organize/c/{slug}"
    k = f"/organize/clips/{clip_id}"
    return [
        (f"{c}/settings", {"title": "  ", "description": "", "is_open": "yes"}, 400,
         "Give the campaign a title", f'action="{c}/settings"'),
        (f"{c}/settings", {"title": "x" * 201, "description": ""}, 400, "title",
         f'action="{c}/settings"'),
        (f"{k}/nudge", {"nudge_ms": "soon"}, 400, "whole number of milliseconds",
         "Ana</h1>"),
        (f"{k}/nudge", {"nudge_ms": "9999999"}, 400, "at most", "Ana</h1>"),
        (f"{k}/sync-choice", {"offset_seconds": "later"}, 400, "number of seconds",
         "Ana</h1>"),
        (f"{k}/moderate", {"decision": "maybe"}, 400, "approved", f'action="{k}/moderate"'),
        (f"{k}/retry", {}, 409, "Only a clip whose processing failed", f'action="{c}/render"'),
        (f"{c}/render", {"kind": "final", "layout": "spiral"}, 400, "Layout is one of",
         f'action="{c}/render"'),
        (f"{c}/render", {"kind": "final"}, 409, "no approved clips", f'action="{c}/render"'),
        (f"/organize/renders/{render_id}/publish", {}, 409, "Only a finished render",
         f'action="{c}/render"'),
        (f"{c}/delete", {"confirm": "not-the-slug"}, 400, "type its slug",
         f'action="{c}/delete"'),
        (f"{c}/members", {"email": "not an address", "role": "owner"}, 400,
         "is not an e-mail address", f'action="{c}/members"'),
        (f"{c}/members", {"email": "x@example.org", "role": "king"}, 400, "A role is one of",
         f'action="{c}/members"'),
        (f"{c}/invites", {"role": "king"}, 400, "A role is one of", f'action="{c}/invites"'),
        (f"{c}/members/999/remove", {}, 404, "no such member", f'action="{c}/members"'),
        (f"{c}/invites/999/revoke", {}, 404, "no such invite", f'action="{c}/invites"'),
        # the sound editor's forms (issue 17)
        (f"{k}/sound", {"level_db": "99", "muted": "yes"}, 400, "must be between -60 and 24",
         "Ana</h1>"),
        (f"{k}/sound", {"pan_percent": "left"}, 400, "must be a number", "Ana</h1>"),
        (f"{c}/timing", {"max_shift_ms": "500", "max_tempo_pct": "3", "clip_id": str(clip_id)},
         400, "between 0 and 300 ms", "Ana</h1>"),
        (f"{c}/timing", {"max_shift_ms": "80", "max_tempo_pct": "9"}, 400,
         "between 0 and 3 %", f'action="{c}/render"'),
        (f"/organize/renders/{render_id}/handoff", {}, 409,
         "Only a finished render can be handed off", f'action="{c}/render"'),
    ]


def test_a_refused_organizer_form_is_a_4xx_with_the_form_and_the_reason(app, organizer_client,
                                                                        campaign):
    clip_id, render_id = _clip_and_render(app, campaign)
    for url, form, status, message, action in _cases(campaign, clip_id, render_id):
        answer = organizer_client.post(url, data=form)
        page = answer.get_data(as_text=True)
        assert answer.status_code == status, (url, form, answer.status_code)
        assert message in page, (url, message)
        assert action in page, (url, action)
    # nothing was changed by the refused forms, and the message was shown once only
    with app.app_context():
        c = services.get_campaign(campaign)
        assert c.title == "Ode to Joy" and c.is_open
        assert db.session.get(Clip, clip_id).nudge_ms == 0
        assert not db.session.get(Clip, clip_id).muted
        assert (c.timing_max_shift_ms, c.timing_max_tempo_pct) == (80, 3.0)
        assert db.session.get(Render, render_id).handoff_state is None
        assert db.session.get(Clip, clip_id).status == "normalized"
    assert "Give the campaign a title" not in organizer_client.get(
        f"/organize/c/{campaign}").get_data(as_text=True)


def test_the_typed_address_is_kept_in_the_form(organizer_client, campaign):
    answer = organizer_client.post(f"/organize/c/{campaign}/members",
                                   data={"email": "ana@@example", "role": "owner"})
    assert answer.status_code == 400
    assert 'value="ana@@example"' in answer.get_data(as_text=True)


def _statements(app):
    """Collect the SQL statements the app runs (text only, no parameters)."""
    seen: list[str] = []
    with app.app_context():
        engine = db.engine

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return seen, lambda: event.remove(engine, "before_cursor_execute", record)


def test_inviting_by_e_mail_answers_the_same_for_known_and_unknown_addresses(app,
                                                                           organizer_client,
                                                                           campaign):
    with app.app_context():
        ensure_organizer("known@example.org", "password of known")
    url = f"/organize/c/{campaign}/members"
    organizer_client.get(f"/organize/c/{campaign}/members")  # warm up
    answers = {}
    for email in ("known@example.org", "nobody@example.org"):
        seen, stop = _statements(app)
        try:
            answer = organizer_client.post(url, data={"email": email, "role": "moderator"})
        finally:
            stop()
        page = answer.get_data(as_text=True)
        page = re.sub(r"/organize/invite/[\w-]+", "/organize/invite/TOKEN", page)
        page = page.replace(email, "EMAIL")
        page = re.sub(r'name="csrf_token" value="[^"]*"', "", page)
        page = re.sub(r"\d+ unused invite link.*?</ul>", "", page, flags=re.S)  # grows by one
        answers[email] = (answer.status_code, page, seen)
    known, unknown = answers["known@example.org"], answers["nobody@example.org"]
    assert known[0] == unknown[0] == 200
    assert known[1] == unknown[1]  # the same page, but for the address and the link
    # the same work in the database (so the same time): the address is never looked up
    assert known[2] == unknown[2]
    assert not any("WHERE organizers.email" in s for s in known[2])
    # nobody joined yet: the invite waits for its organizer
    with app.app_context():
        members = db.session.scalars(select(CampaignMember).join(Campaign)
                                     .where(Campaign.slug == campaign)).all()
        assert [m.organizer.email for m in members] == ["org@example.org"]


def test_an_invite_for_an_address_works_only_for_that_organizer(csrf_app):
    app = csrf_app
    with app.app_context():
        owner = services.create_organizer("owner@example.org", "password of owner")
        services.create_organizer("ana@example.org", "password of ana")
        services.create_organizer("eve@example.org", "password of eve")
        services.create_campaign("choir", "Choir", parts=["Alto"], owner=owner)
    alice = app.test_client()
    log_in(alice, "owner@example.org", "password of owner")
    page = alice.post("/organize/c/choir/members", data={
        "csrf_token": csrf_token_of(alice, "/organize/"), "email": "Ana@Example.org ",
        "role": "moderator"}).get_data(as_text=True)
    path = re.search(r'<code id="invite-url">([^<]+)</code>', page).group(1) \
        .split("tutti.test", 1)[1]
    eve = app.test_client()
    log_in(eve, "eve@example.org", "password of eve")
    refused = eve.post(path, data={"csrf_token": csrf_token_of(eve, "/organize/")})
    assert refused.status_code == 403
    assert "another e-mail address" in refused.get_data(as_text=True)
    ana = app.test_client()
    log_in(ana, "ana@example.org", "password of ana")
    assert ana.post(path, data={"csrf_token": csrf_token_of(ana, "/organize/")}) \
        .status_code == 303
    with app.app_context():
        roles = {m.organizer.email: m.role for m in services.get_campaign("choir").members}
        assert roles == {"owner@example.org": "owner", "ana@example.org": "moderator"}
        assert db.session.scalar(select(Organizer.id).filter_by(email="eve@example.org"))


@pytest.mark.parametrize("field", ["email"])
def test_the_command_line_still_adds_an_existing_organizer_directly(app, field):
    with app.app_context():
        owner = ensure_organizer()
        campaign = services.create_campaign("cli-choir", "CLI", parts=["Alto"], owner=owner)
        ensure_organizer("mod@example.org", "password of mod")
        member = services.add_member(campaign, "mod@example.org", "moderator")
        assert member.role == "moderator"
        with pytest.raises(services.ServiceError) as missing:
            services.add_member(campaign, "ghost@example.org", "moderator")
        assert missing.value.field == field and missing.value.status == 404
