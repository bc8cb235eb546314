"""Races between organizers on the real PostgreSQL: a single-use invite accepted by
several at once joins exactly one; two owners removing each other at once leave the
campaign with an owner."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from portal import services
from portal.extensions import db
from portal.models import CampaignInvite, CampaignMember
from tests.conftest import DATABASES, dispose, ensure_organizer, make_app

pytestmark = pytest.mark.skipif("postgresql" not in DATABASES, reason="needs PostgreSQL")


@pytest.fixture
def pg_app(tmp_path):
    app = make_app("postgresql", tmp_path)
    yield app
    dispose(app)


def _client(app, email: str):
    client = app.test_client()
    answer = client.post("/organize/login", data={"email": email, "password": "pw " + email})
    assert answer.status_code == 303
    return client


def _all_at_once(calls):
    """Run the callables together (a barrier releases them at the same moment)."""
    start = threading.Barrier(len(calls))

    def run(call):
        start.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def test_a_single_use_invite_joins_exactly_one_of_many_at_once(pg_app):
    emails = [f"o{i}@example.org" for i in range(6)]
    with pg_app.app_context():
        owner = ensure_organizer("owner@example.org", "pw owner@example.org")
        for email in emails:
            ensure_organizer(email, "pw " + email)
        campaign = services.create_campaign("race", "Race", parts=["Alto"], owner=owner)
        token = services.create_invite(campaign, "moderator", by=owner)
        campaign_id = campaign.id
    clients = [_client(pg_app, email) for email in emails]
    codes = _all_at_once([lambda c=c: c.post(f"/organize/invite/{token}").status_code
                          for c in clients])
    assert sorted(codes) == [303] + [410] * (len(emails) - 1), codes
    with pg_app.app_context():
        members = db.session.scalars(select(CampaignMember).filter_by(
            campaign_id=campaign_id, role="moderator")).all()
        assert len(members) == 1
        invite = db.session.scalar(select(CampaignInvite))
        assert invite.used_by_id == members[0].organizer_id


def test_two_owners_removing_each_other_at_once_leave_an_owner(pg_app):
    for _ in range(3):  # a race may go either way; each round must keep an owner
        with pg_app.app_context():
            ann = ensure_organizer("ann@example.org", "pw ann@example.org")
            bob = ensure_organizer("bob@example.org", "pw bob@example.org")
            slug = f"duo-{_}"
            campaign = services.create_campaign(slug, "Duo", parts=["Alto"], owner=ann)
            services.add_member(campaign, "bob@example.org", "owner")
            ids = {m.organizer_id: m.id for m in campaign.members}
            ann_member, bob_member = ids[ann.id], ids[bob.id]
            campaign_id = campaign.id
        a, b = _client(pg_app, "ann@example.org"), _client(pg_app, "bob@example.org")
        urls = [(a, f"/organize/c/{slug}/members/{bob_member}/remove"),
                (b, f"/organize/c/{slug}/members/{ann_member}/remove")]
        codes = _all_at_once([lambda c=c, u=u: c.post(u).status_code for c, u in urls])
        assert all(code < 500 for code in codes), codes
        with pg_app.app_context():
            owners = db.session.scalars(select(CampaignMember).filter_by(
                campaign_id=campaign_id, role="owner")).all()
            assert len(owners) == 1


def test_eight_approves_of_one_clip_at_once_write_one_event(pg_app):
    """A double click, or two moderators: the clip is approved once, and the participant's
    timeline says so once (a red-team case: 8 at once wrote 4 "approved" events)."""
    from portal.models import Clip, ClipEvent

    with pg_app.app_context():
        owner = ensure_organizer("owner@example.org", "pw owner@example.org")
        campaign = services.create_campaign("race", "Race", parts=["Alto"], owner=owner)
        clip = Clip(campaign=campaign, part=campaign.parts[0], display_name="Ana",
                    status="normalized", original_key="clips/x/original.mp4")
        db.session.add(clip)
        db.session.commit()
        clip_id = clip.id
    clients = [_client(pg_app, "owner@example.org") for _ in range(8)]
    codes = _all_at_once([lambda c=c: c.post(f"/organize/clips/{clip_id}/moderate",
                                             data={"decision": "approved"}).status_code
                          for c in clients])
    assert codes == [303] * 8, codes
    with pg_app.app_context():
        events = db.session.scalars(select(ClipEvent.status).filter_by(clip_id=clip_id)).all()
        assert events.count("approved") == 1, events
