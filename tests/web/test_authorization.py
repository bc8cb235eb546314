"""Organizers as a team: campaign membership, roles and the one authorization policy.

The first test walks ``app.url_map``: every organizer route, filled with campaign
B's slug, clip, render, member and invite ids, requested as organizer A (with A's
valid CSRF token) must answer 404 and leave every row and file of B unchanged. A
route added later is covered without anyone remembering to add it here.
"""

from __future__ import annotations

from sqlalchemy import select

from portal import services
from portal.extensions import db
from portal.models import (
    Campaign,
    CampaignInvite,
    CampaignMember,
    Clip,
    ClipEvent,
    Part,
    Render,
)
from tests.conftest import csrf_token_of, log_in

A = ("a@example.org", "password of a")
B = ("b@example.org", "password of b")

# Organizer routes that are about the organizer, not about one campaign: they take
# no campaign, clip or render in their URL (asserted below).
NOT_CAMPAIGN_SCOPED = {
    "organize.login", "organize.logout", "organize.campaigns", "organize.create_campaign",
    "organize.account", "organize.change_password", "organize.logout_everywhere",
}


def _campaign_with_work(app, slug: str, owner_email: str) -> dict:
    """A campaign owned by ``owner_email`` with a processed clip, a finished render,
    a member row, an open invite and files in storage."""
    store = app.extensions["tutti.storage"]
    with app.app_context():
        owner = _organizer(owner_email)
        campaign = services.create_campaign(slug, f"Campaign {slug}", parts=["Alto"],
                                            owner=owner)
        clip = Clip(campaign=campaign, part=campaign.parts[0], display_name="Ana",
                    location="Lisbon", status="normalized",
                    original_key="", normalized_key=None)
        db.session.add(clip)
        db.session.flush()
        clip.original_key = f"clips/{clip.token}/original.mp4"
        clip.normalized_key = f"clips/{clip.token}/normalized.mp4"
        clip.thumbnail_key = f"clips/{clip.token}/thumb.jpg"
        for key in (clip.original_key, clip.normalized_key, clip.thumbnail_key):
            _put(store, key, b"media of " + slug.encode())
        render = Render(campaign=campaign, kind="final", status="done", progress=1.0,
                        clip_ids=[clip.id])
        db.session.add(render)
        db.session.flush()
        render.output_key = f"renders/{slug}/{render.token}/mashup.mp4"
        _put(store, render.output_key, b"mash-up of " + slug.encode())
        preview = Render(campaign=campaign, kind="preview", status="queued")
        db.session.add(preview)
        db.session.commit()
        services.create_invite(campaign, "moderator", by=owner)
        member = db.session.scalar(select(CampaignMember).filter_by(campaign_id=campaign.id))
        invite = db.session.scalar(select(CampaignInvite).filter_by(campaign_id=campaign.id))
        return {"slug": slug, "clip_id": clip.id, "render_id": render.id,
                "preview_id": preview.id, "member_id": member.id, "invite_id": invite.id,
                "campaign_id": campaign.id, "clip_token": clip.token}


def _put(store, key: str, data: bytes) -> None:
    store.path_for_writing(key).write_bytes(data)


def _organizer(email: str):
    from portal.models import Organizer

    return db.session.scalar(select(Organizer).filter_by(email=email))


def _rows(model, **where) -> list[dict]:
    rows = db.session.scalars(select(model).filter_by(**where).order_by(model.id)).all()
    return [{c.name: getattr(r, c.name) for c in model.__table__.columns} for r in rows]


def snapshot(app, ids: dict) -> dict:
    """Every row and file of one campaign, to compare before and after."""
    with app.app_context():
        db.session.expire_all()
        cid = ids["campaign_id"]
        clip_ids = [c["id"] for c in _rows(Clip, campaign_id=cid)]
        media = app.extensions["tutti.storage"].root
        return {
            "campaign": _rows(Campaign, id=cid),
            "parts": _rows(Part, campaign_id=cid),
            "clips": _rows(Clip, campaign_id=cid),
            "events": [e for i in clip_ids for e in _rows(ClipEvent, clip_id=i)],
            "renders": _rows(Render, campaign_id=cid),
            "members": _rows(CampaignMember, campaign_id=cid),
            "invites": _rows(CampaignInvite, campaign_id=cid),
            "files": sorted((str(p.relative_to(media)), p.read_bytes())
                            for p in media.rglob("*") if p.is_file()
                            and ids["slug"] in p.read_bytes().decode("latin-1")),
        }


def _setup(app):
    with app.app_context():
        services.create_organizer(*A)
        services.create_organizer(*B)
    mine = _campaign_with_work(app, "alpha", A[0])
    theirs = _campaign_with_work(app, "bravo", B[0])
    return mine, theirs


def _url_values(rule, ids: dict) -> dict:
    values = {"slug": ids["slug"], "clip_id": ids["clip_id"], "render_id": ids["render_id"],
              "member_id": ids["member_id"], "invite_id": ids["invite_id"],
              "token": "not-a-token-of-anyone-0123"}
    missing = set(rule.arguments) - set(values)
    assert not missing, (f"{rule.rule}: teach this test which of campaign B's ids "
                         f"fills {missing}")
    return {name: values[name] for name in rule.arguments}


def test_every_organizer_route_of_another_campaign_answers_404_and_changes_nothing(csrf_app):
    app = csrf_app
    mine, theirs = _setup(app)
    client = app.test_client()
    assert log_in(client, *A).status_code == 303
    token = csrf_token_of(client, "/organize/")
    form = {"csrf_token": token, "decision": "approved", "reason": "fine", "nudge_ms": "250",
            "kind": "preview", "layout": "grid", "audio": "mix", "email": A[0],
            "role": "owner", "confirm": theirs["slug"], "next": "/organize/",
            "title": "Taken over", "description": "", "is_open": ""}
    before = snapshot(app, theirs)
    tried = []
    with app.test_request_context():
        rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("organize.")]
    for rule in rules:
        if rule.endpoint in NOT_CAMPAIGN_SCOPED:
            assert not rule.arguments, f"{rule.rule} takes {rule.arguments}: remove it from " \
                                       "NOT_CAMPAIGN_SCOPED so that it is tested"
            continue
        with app.test_request_context():
            from flask import url_for

            url = url_for(rule.endpoint, **_url_values(rule, theirs))
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            answer = client.open(url, method=method,
                                 data=form if method != "GET" else None)
            tried.append((method, url, answer.status_code))
            assert answer.status_code == 404, (method, url, answer.status_code)
    assert len(tried) >= 15
    assert snapshot(app, theirs) == before
    # campaign B's own routes for its slug variants (the preview render too)
    for url in (f"/organize/renders/{theirs['preview_id']}.json",
                f"/organize/renders/{theirs['preview_id']}/cancel"):
        method = "POST" if url.endswith("cancel") else "GET"
        assert client.open(url, method=method, data=form).status_code == 404
    assert snapshot(app, theirs) == before
    # A's list shows A's campaign only
    page = client.get("/organize/").get_data(as_text=True)
    assert "Campaign alpha" in page and "Campaign bravo" not in page

    # control: the same token and form work on A's own campaign, so the 404s above
    # came from the policy, not from a broken URL or a refused token
    nudged = client.post(f"/organize/clips/{mine['clip_id']}/nudge", data=form)
    assert nudged.status_code == 303
    with app.app_context():
        assert db.session.get(Clip, mine["clip_id"]).nudge_ms == 250
    assert client.get(f"/organize/c/{mine['slug']}").status_code == 200
    refused = client.post(f"/organize/clips/{mine['clip_id']}/nudge",
                          data={**form, "csrf_token": "forged"})
    assert refused.status_code == 400


def test_roles_owner_moderator_and_administrator(csrf_app):
    app = csrf_app
    _mine, theirs = _setup(app)
    with app.app_context():
        services.create_organizer("mod@example.org", "moderator pw")
        services.create_organizer("root@example.org", "admin password", is_admin=True)
        services.add_member(services.get_campaign("bravo"), "mod@example.org", "moderator")
    moderator = app.test_client()
    assert log_in(moderator, "mod@example.org", "moderator pw").status_code == 303
    token = csrf_token_of(moderator, "/organize/")
    slug = theirs["slug"]
    assert moderator.get(f"/organize/c/{slug}").status_code == 200
    # a moderator reviews clips and makes previews ...
    answer = moderator.post(f"/organize/clips/{theirs['clip_id']}/moderate",
                            data={"csrf_token": token, "decision": "approved"})
    assert answer.status_code == 303
    with app.app_context():
        assert db.session.get(Clip, theirs["clip_id"]).status == "approved"
    assert moderator.post(f"/organize/renders/{theirs['preview_id']}/cancel",
                          data={"csrf_token": token}).status_code == 303
    # ... but neither publishes, renders finals, manages organizers nor deletes
    before = snapshot(app, theirs)
    for url, data in [(f"/organize/renders/{theirs['render_id']}/publish", {}),
                      (f"/organize/c/{slug}/render", {"kind": "final"}),
                      (f"/organize/c/{slug}/members", {"email": "mod@example.org",
                                                       "role": "owner"}),
                      (f"/organize/c/{slug}/invites", {"role": "owner"}),
                      (f"/organize/c/{slug}/settings", {"title": "Mine", "is_open": ""}),
                      (f"/organize/c/{slug}/delete", {"confirm": slug})]:
        assert moderator.post(url, data={"csrf_token": token, **data}).status_code == 403, url
    assert moderator.get(f"/organize/c/{slug}/members").status_code == 403
    assert snapshot(app, theirs) == before

    # the site administrator sees every campaign
    admin = app.test_client()
    assert log_in(admin, "root@example.org", "admin password").status_code == 303
    page = admin.get("/organize/").get_data(as_text=True)
    assert "Campaign alpha" in page and "Campaign bravo" in page
    assert admin.get(f"/organize/c/{slug}/members").status_code == 200

    # an owner changes the settings (and closes the campaign)
    owner = app.test_client()
    log_in(owner, *B)
    saved = owner.post(f"/organize/c/{slug}/settings", data={
        "csrf_token": csrf_token_of(owner, "/organize/"), "title": "Bravo!",
        "description": "Sing", "is_open": ""})
    assert saved.status_code == 303
    with app.app_context():
        changed = services.get_campaign(slug)
        assert (changed.title, changed.description, changed.is_open) == ("Bravo!", "Sing", False)


def test_creator_owns_and_invites_by_email_and_by_single_use_link(csrf_app):
    app = csrf_app
    with app.app_context():
        services.create_organizer(*A)
        services.create_organizer(*B)
        services.create_organizer("c@example.org", "password of c")
    alice = app.test_client()
    log_in(alice, *A)
    token = csrf_token_of(alice, "/organize/")
    created = alice.post("/organize/campaigns", data={
        "csrf_token": token, "slug": "new-choir", "title": "New Choir", "parts": "Alto"})
    assert created.status_code == 303
    with app.app_context():
        campaign = services.get_campaign("new-choir")
        assert [(m.organizer.email, m.role) for m in campaign.members] == [(A[0], "owner")]
    import re

    # by e-mail: an invite link for that address, accepted by its organizer only
    added = alice.post("/organize/c/new-choir/members",
                       data={"csrf_token": token, "email": B[0], "role": "moderator"})
    assert added.status_code == 200
    b_path = re.search(r'<code id="invite-url">([^<]+)</code>',
                       added.get_data(as_text=True)).group(1).split("tutti.test", 1)[1]
    bob = app.test_client()
    log_in(bob, *B)
    assert bob.post(b_path, data={"csrf_token": csrf_token_of(bob, "/organize/")}) \
        .status_code == 303
    # by a single-use link
    page = alice.post("/organize/c/new-choir/invites",
                      data={"csrf_token": token, "role": "owner"}).get_data(as_text=True)

    link = re.search(r'<code id="invite-url">([^<]+)</code>', page).group(1)
    path = link.split("tutti.test", 1)[1]
    carol = app.test_client()
    first = carol.get(path)
    assert first.status_code == 302 and "/organize/login" in first.headers["Location"]
    log_in(carol, "c@example.org", "password of c")
    assert carol.get(path).status_code == 200
    carol_token = csrf_token_of(carol, "/organize/")
    assert carol.post(path, data={"csrf_token": carol_token}).status_code == 303
    with app.app_context():
        roles = {m.organizer.email: m.role
                 for m in services.get_campaign("new-choir").members}
        assert roles == {A[0]: "owner", B[0]: "moderator", "c@example.org": "owner"}
    # used once: a second use is refused
    assert bob.post(path, data={"csrf_token": csrf_token_of(bob, "/organize/")}) \
        .status_code == 410
    # an expired link is refused too
    with app.app_context():
        expired = services.create_invite(services.get_campaign("new-choir"), "owner",
                                         hours=-1)
    assert bob.get(f"/organize/invite/{expired}").status_code == 410
    # a revoked link is refused
    with app.app_context():
        revoked = services.create_invite(services.get_campaign("new-choir"), "owner")
        invite_id = db.session.scalar(select(CampaignInvite.id).order_by(
            CampaignInvite.id.desc()))
    assert alice.post(f"/organize/c/new-choir/invites/{invite_id}/revoke",
                      data={"csrf_token": token}).status_code == 303
    assert bob.get(f"/organize/invite/{revoked}").status_code == 404
    # the last owner cannot leave
    with app.app_context():
        c = services.get_campaign("new-choir")
        for m in list(c.members):
            if m.organizer.email == "c@example.org":
                services.remove_member(c, m.id)
        owner_row = next(m for m in c.members if m.role == "owner")
        try:
            services.remove_member(c, owner_row.id)
        except services.ServiceError as exc:
            assert exc.status == 409
        else:
            raise AssertionError("the last owner was removed")
