"""Review at scale (issue 14): the paged, filtered review list, the parts roster, the
counts on the campaign list, the one-clip review view with its neighbours, bulk
decisions, the contributors' CSV.

Clips are rows made directly in the database (no media): what is tested is which
rows each page shows and what each action changes."""

from __future__ import annotations

import csv
import io
import re

from sqlalchemy import select

from portal import services
from portal.extensions import db
from portal.models import Campaign, Clip
from tests.conftest import ensure_organizer

WARN = [{"code": "quiet", "severity": "warning", "message": "Your sound is very quiet."}]
INFO = [{"code": "short", "severity": "info", "message": "Shorter than the guide."}]


def _clips(app, slug: str, specs: list[dict]) -> list[int]:
    """Clip rows in campaign ``slug``: each spec gives status, part (name), name,
    confidence, checks."""
    with app.app_context():
        campaign = services.get_campaign(slug)
        ids = []
        for i, spec in enumerate(specs):
            part = campaign.part_named(spec["part"]) if spec.get("part") else None
            clip = Clip(campaign=campaign, part=part, display_name=spec.get("name", f"P{i:03d}"),
                        location=spec.get("location", ""), status=spec.get("status", "synced"),
                        sync_confidence=spec.get("confidence"), checks=spec.get("checks"),
                        original_key=f"clips/x{i}/original.mp4")
            db.session.add(clip)
            db.session.flush()
            ids.append(clip.id)
        db.session.commit()
        return ids


def _names(page: str) -> list[str]:
    """The performers of the review table's rows, in order."""
    table = page.split('id="clip-table"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<a href="[^"]*/review[^"]*" dir="auto">([^<]+)</a>', table)


def test_the_list_is_paged_filtered_and_sorted_on_the_server(app, organizer_client, campaign):
    specs = [{"name": f"P{i:03d}", "part": "Soprano" if i % 2 else "Alto",
              "status": ["synced", "approved", "needs_sync", "declined", "received"][i % 5],
              "confidence": (i % 10) / 10 if i % 5 != 4 else None,
              "checks": WARN if i % 7 == 0 else INFO} for i in range(120)]
    _clips(app, campaign, specs)
    page = organizer_client.get(f"/organize/c/{campaign}").get_data(as_text=True)
    assert _names(page) == [f"P{i:03d}" for i in range(50)]
    assert "Clips 1–50 of 120" in page and "page 1 of 3" in page
    last = organizer_client.get(f"/organize/c/{campaign}?page=3").get_data(as_text=True)
    assert _names(last) == [f"P{i:03d}" for i in range(100, 120)]
    # a page past the end shows the last page; garbage arguments show the default list
    assert _names(organizer_client.get(f"/organize/c/{campaign}?page=99").get_data(
        as_text=True)) == _names(last)
    junk = organizer_client.get(f"/organize/c/{campaign}?page=-4&per_page=7&sort=evil&"
                                "status=nope&part=abc&sync=x&warnings=maybe")
    assert junk.status_code == 200 and _names(junk.get_data(as_text=True))[:2] == ["P000",
                                                                                 "P001"]
    # "awaiting review": normalized, synced and needs_sync, in people's words with a count
    awaiting = [s["name"] for s in specs if s["status"] in ("synced", "needs_sync")]
    assert f"Awaiting review ({len(awaiting)})" in page
    got = organizer_client.get(f"/organize/c/{campaign}?status=awaiting&per_page=100")
    assert _names(got.get_data(as_text=True)) == awaiting
    # part, sync confidence, warnings, name search, combined
    with app.app_context():
        alto = services.get_campaign(campaign).part_named("Alto").id
    want = [s["name"] for s in specs if s["part"] == "Alto" and s["confidence"] is not None
            and s["confidence"] < 0.5 and s["checks"] is WARN]
    got = organizer_client.get(f"/organize/c/{campaign}?part={alto}&sync=low&warnings=1")
    assert want and _names(got.get_data(as_text=True)) == want
    unsynced = organizer_client.get(f"/organize/c/{campaign}?sync=none&per_page=100")
    assert _names(unsynced.get_data(as_text=True)) == [s["name"] for s in specs
                                                       if s["confidence"] is None]
    assert _names(organizer_client.get(f"/organize/c/{campaign}?q=p11").get_data(
        as_text=True)) == [f"P{i}" for i in range(110, 120)]
    # sorting: newest first, and lowest confidence first (unsynced last)
    newest = _names(organizer_client.get(f"/organize/c/{campaign}?sort=newest").get_data(
        as_text=True))
    assert newest[:3] == ["P119", "P118", "P117"]
    low = [name for page in (1, 2) for name in _names(organizer_client.get(
        f"/organize/c/{campaign}?sort=confidence&per_page=100&page={page}").get_data(
            as_text=True))]
    assert len(low) == len(specs)
    confidences = [specs[int(n[1:])]["confidence"] for n in low]
    known = [c for c in confidences if c is not None]
    assert known == sorted(known) and confidences[-1] is None
    # the pager keeps the filters
    pager = organizer_client.get(f"/organize/c/{campaign}?status=awaiting&per_page=25")
    assert 'href="/organize/c/ode-to-joy?status=awaiting&amp;per_page=25&amp;page=2"' in \
        pager.get_data(as_text=True)


def test_parts_roster_counts_approved_against_targets(app, organizer_client, campaign):
    with app.app_context():
        services.update_settings(services.get_campaign(campaign),
                                 {"parts": "Soprano: 4\nAlto: 2\nTenor", "is_open": "yes"})
    _clips(app, campaign, [{"part": "Soprano", "status": "approved"},
                           {"part": "Soprano", "status": "synced"},
                           {"part": "Alto", "status": "approved"},
                           {"part": "Alto", "status": "approved"},
                           {"part": "Alto", "status": "approved"},
                           {"part": "Alto", "status": "withdrawn"},
                           {"status": "needs_sync"}])
    with app.app_context():
        from portal.review import parts_roster

        rows = {r.name: r for r in parts_roster(services.get_campaign(campaign))}
    assert (rows["Soprano"].approved, rows["Soprano"].target, rows["Soprano"].awaiting) == \
        (1, 4, 1)
    assert rows["Soprano"].coverage == 0.25 and rows["Soprano"].missing == 3
    assert rows["Alto"].approved == 3 and rows["Alto"].coverage == 1.0  # capped
    assert rows["Alto"].total == 3  # the withdrawn clip is not counted
    assert rows["Tenor"].coverage is None and rows["Tenor"].total == 0
    assert rows["No part"].awaiting == 1
    page = organizer_client.get(f"/organize/c/{campaign}").get_data(as_text=True)
    roster = page.split('table class="list roster"', 1)[1].split("</table>", 1)[0]
    assert 'value="0.250"' in roster and "3 more wanted" in roster
    assert "target reached" in roster and "no target" in roster
    # the render section draws the layouts a render would make of the 4 approved clips,
    # with the renderer's own layout code (a red-team case: there was no schematic)
    from workers.media.layout import grid_rects, section_rects

    drawn = page.split('id="layout-schematic"', 1)[1].split("</figure>", 1)[0]
    assert "Grid: 4 approved clips in 2 rows of up to 2 on the 1280×720 canvas" in drawn
    grid = drawn.split('data-layout="grid"', 1)[1].split("</svg>", 1)[0]
    tiles = re.findall(r'<rect x="(\d+)" y="(\d+)" width="(\d+)" height="(\d+)"', grid)
    assert [tuple(map(int, t)) for t in tiles] == [(r.x, r.y, r.w, r.h)
                                                   for r in grid_rects(4, 1280, 720, gap=4)]
    sections = drawn.split('data-layout="sections"', 1)[1].split("</svg>", 1)[0]
    assert ">Soprano</text>" in sections and ">Alto</text>" in sections
    assert "Tenor" not in sections  # nobody approved yet
    boxes = section_rects([1, 3], 1280, 720, gap=4)
    assert sections.count("<rect x=") == sum(len(b.tiles) for b in boxes) == 4


def test_campaign_list_shows_what_awaits_review(app, organizer_client, campaign):
    _clips(app, campaign, [{"status": "synced"}, {"status": "needs_sync"},
                           {"status": "normalized"}, {"status": "approved"},
                           {"status": "received"}, {"status": "withdrawn"}])
    page = organizer_client.get("/organize/").get_data(as_text=True)
    row = page.split("ode-to-joy</span>", 1)[1].split("</tr>", 1)[0]
    assert "<strong>3</strong> to review" in row
    assert f"/organize/c/{campaign}?status=awaiting" in row
    cells = re.findall(r"<td>(\d+)</td>", row)
    assert cells == ["1", "5"]  # approved, clips (withdrawn left out)


def test_review_view_walks_the_filtered_list_and_decides(app, client, organizer_client,
                                                         campaign):
    ids = _clips(app, campaign, [{"name": n, "status": s, "checks": WARN if n == "B" else None}
                                 for n, s in [("A", "synced"), ("B", "needs_sync"),
                                              ("C", "approved"), ("D", "synced")]])
    a, b, c, d = ids
    url = f"/organize/clips/{b}/review?status=awaiting"
    page = organizer_client.get(url).get_data(as_text=True)
    # neighbours in the filter "awaiting review": A before, D after (C is approved)
    assert f'data-next="/organize/clips/{d}/review?status=awaiting"' in page
    assert f'data-previous="/organize/clips/{a}/review?status=awaiting"' in page
    assert "Your sound is very quiet." in page
    assert 'id="nudge-form"' not in page  # no guide, so no nudge
    # approve sends on to the next clip of the list
    answer = organizer_client.post(f"/organize/clips/{b}/moderate", data={
        "decision": "approved", "next": f"/organize/clips/{d}/review?status=awaiting"})
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"/organize/clips/{d}/review?status=awaiting")
    # B left the filter, yet its neighbours are still found from where it was
    page = organizer_client.get(url).get_data(as_text=True)
    assert f'data-next="/organize/clips/{d}/review?status=awaiting"' in page
    # the last clip's "next" is the list
    page = organizer_client.get(f"/organize/clips/{d}/review?status=awaiting").get_data(
        as_text=True)
    assert 'data-next="/organize/c/ode-to-joy?status=awaiting"' in page
    # decline with a reason: the participant reads it on their private page
    reason = "The sound is too quiet to use: please record again closer to the phone."
    organizer_client.post(f"/organize/clips/{d}/moderate",
                          data={"decision": "declined", "reason": reason})
    with app.app_context():
        declined = db.session.get(Clip, d)
        token = declined.token
        assert declined.status == "declined" and declined.reason == reason
    status = client.get(f"/clip/{token}").get_data(as_text=True)
    assert reason in status
    # declined again with a better reason: the participant reads the new one (a red-team
    # case: it was silently kept), and declining again with the same reason adds nothing
    better = "Please record again closer to the phone, and with the guide in headphones."
    for _ in range(2):
        organizer_client.post(f"/organize/clips/{d}/moderate",
                              data={"decision": "declined", "reason": better})
    assert client.get(f"/api/v1/clips/{token}").get_json()["reason"] == better
    assert better in client.get(f"/clip/{token}").get_data(as_text=True)
    with app.app_context():
        assert [e.status for e in db.session.get(Clip, d).events].count("declined") == 2
    # the clip in the unfiltered list order: C comes after B
    page = organizer_client.get(f"/organize/clips/{b}/review").get_data(as_text=True)
    assert f'data-next="/organize/clips/{c}/review"' in page
    page = organizer_client.get(f"/organize/clips/{a}/review?sort=newest").get_data(
        as_text=True)
    assert f'data-previous="/organize/clips/{b}/review?sort=newest"' in page
    assert 'data-next="/organize/c/ode-to-joy?sort=newest"' in page


def test_nudge_is_offered_only_with_a_guide(app, organizer_client, campaign, media_files):
    [clip_id] = _clips(app, campaign, [{"status": "synced", "confidence": 0.9}])
    with app.app_context():
        clip = db.session.get(Clip, clip_id)
        clip.normalized_key = "clips/x0/normalized.mp4"
        db.session.commit()
    assert 'id="nudge-form"' not in organizer_client.get(
        f"/organize/clips/{clip_id}/review").get_data(as_text=True)
    with app.app_context():
        services.set_guide(services.get_campaign(campaign), str(media_files["guide"]))
    page = organizer_client.get(f"/organize/clips/{clip_id}/review").get_data(as_text=True)
    assert 'id="nudge-form"' in page
    answer = organizer_client.post(f"/organize/clips/{clip_id}/nudge", data={
        "nudge_ms": "-40", "next": f"/organize/clips/{clip_id}/review"})
    assert answer.headers["Location"].endswith(f"/organize/clips/{clip_id}/review")
    with app.app_context():
        assert db.session.get(Clip, clip_id).nudge_ms == -40


def test_bulk_decisions_touch_only_this_campaigns_clips(app, organizer_client, campaign):
    mine = _clips(app, campaign, [{"status": "synced"}, {"status": "needs_sync"},
                                  {"status": "received"}])
    with app.app_context():
        services.create_campaign("other", "Other", parts=["Alto"], owner=ensure_organizer())
    [theirs] = _clips(app, "other", [{"status": "synced"}])
    answer = organizer_client.post(f"/organize/c/{campaign}/bulk", data={
        "clip": [str(i) for i in [*mine, theirs]] + ["x", "99999999999"],
        "decision": "declined", "reason": "Out of tune", "next": f"/organize/c/{campaign}"},
        follow_redirects=True)
    assert answer.status_code == 200
    assert "Declined 2 clip(s). 2 could not be decided" in answer.get_data(as_text=True)
    with app.app_context():
        got = {c.id: (c.status, c.reason) for c in db.session.scalars(select(Clip))}
    assert got[mine[0]] == ("declined", "Out of tune") and got[mine[1]][0] == "declined"
    assert got[mine[2]][0] == "received"  # still processing: not decided
    # a crafted request with more ids than one decision takes says what it left out
    answer = organizer_client.post(f"/organize/c/{campaign}/bulk", data={
        "clip": [str(mine[0])] + ["123456"] * 1004, "decision": "approved"},
        follow_redirects=True)
    assert "5 more were not looked at: at most 1000 clips" in answer.get_data(as_text=True)
    assert got[theirs][0] == "synced"  # another campaign's clip, though the same owner
    empty = organizer_client.post(f"/organize/c/{campaign}/bulk",
                                  data={"decision": "approved"}, follow_redirects=True)
    assert "Tick the clips" in empty.get_data(as_text=True)
    bad = organizer_client.post(f"/organize/c/{campaign}/bulk",
                                data={"clip": [str(mine[0])], "decision": "maybe"},
                                follow_redirects=True)
    assert bad.status_code == 200 and "approved" in bad.get_data(as_text=True)


def test_contributors_csv_for_credits_and_consent(app, organizer_client, campaign):
    _clips(app, campaign, [{"name": "Ana", "part": "Alto", "location": "Lisbon",
                            "status": "approved"},
                           {"name": "=HYPERLINK(\"http://x\")", "status": "synced"},
                           {"name": "Gone", "status": "withdrawn"}])
    answer = organizer_client.get(f"/organize/c/{campaign}/contributors.csv")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
    assert rows[0] == ["name", "part", "location", "consent_at_utc", "licence", "status"]
    assert rows[1][:3] == ["Ana", "Alto", "Lisbon"] and rows[1][3].endswith("Z")
    assert rows[1][4].startswith("CC BY") and rows[1][5] == "approved"
    assert rows[2][0] == "'=HYPERLINK(\"http://x\")"  # shown as text, never a formula
    assert len(rows) == 3  # the withdrawn clip is not a contributor


def test_campaign_page_does_not_load_every_clip(app, organizer_client, campaign):
    """The page reads one page of rows: 300 clips, one page of 50 in the HTML."""
    _clips(app, campaign, [{"status": "synced"} for _ in range(300)])
    page = organizer_client.get(f"/organize/c/{campaign}").get_data(as_text=True)
    assert page.count('<tr class="clip ') == 50
    with app.app_context():
        assert db.session.scalar(select(Campaign).filter_by(slug=campaign)) is not None


def test_stale_published_render_is_told_exactly(app, organizer_client, campaign):
    """The page says "render again" when the approved clips changed since the
    published render, and only then."""
    from datetime import timedelta

    from portal.models import Render, utcnow

    ids = _clips(app, campaign, [{"status": "synced"} for _ in range(4)])
    with app.app_context():
        for clip_id in ids[:2]:
            services.moderate_clip(db.session.get(Clip, clip_id), "approved")
        c = services.get_campaign(campaign)
        job = Render(campaign=c, kind="final", status="done", clip_ids=ids[:2],
                     created_at=utcnow() + timedelta(milliseconds=5))
        db.session.add(job)
        db.session.flush()
        c.published_render_id = job.id
        db.session.commit()

    def stale() -> bool:
        return 'id="stale"' in organizer_client.get(f"/organize/c/{campaign}").get_data(
            as_text=True)

    import time

    time.sleep(0.01)
    assert not stale()
    # declining a clip that was not in the mash-up changes nothing
    organizer_client.post(f"/organize/clips/{ids[2]}/moderate", data={"decision": "declined"})
    assert not stale()
    # an approved clip leaves: stale
    organizer_client.post(f"/organize/clips/{ids[0]}/moderate", data={"decision": "declined"})
    assert stale()
    # it comes back (approved after the render): still told, the file lacks nothing but
    # the page cannot know it without reading every id, so it errs towards "render again"
    organizer_client.post(f"/organize/clips/{ids[0]}/moderate", data={"decision": "approved"})
    assert stale()
