"""Campaign settings (issue 14): every field saved, mistakes refused with nothing
changed, closing and the deadline refusing uploads with a clear page; the render
list's settings and status, and the confirmation before publishing a preview."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from portal import services
from portal.extensions import db
from portal.models import Campaign, Clip, Render, utcnow


def _campaign(app, slug: str) -> Campaign:
    db.session.expire_all()
    return db.session.scalar(select(Campaign).filter_by(slug=slug))


def test_owner_saves_every_setting(app, organizer_client, campaign, media_files):
    assert organizer_client.get(f"/organize/c/{campaign}/settings").status_code == 200
    with open(media_files["guide"], "rb") as guide:
        answer = organizer_client.post(f"/organize/c/{campaign}/settings", data={
            "title": "Ode to Joy 2027", "description": "Sing with us",
            "parts": "Soprano: 12\nAlto: 10\nTenor: 8\nBass", "deadline": "2030-03-01T18:00",
            "is_open": "yes", "canvas": "vertical", "licence": "CC BY-SA 4.0",
            "max_clip_seconds": "240", "guide": (guide, "guide.wav")},
            content_type="multipart/form-data")
    assert answer.status_code == 303
    with app.app_context():
        c = _campaign(app, campaign)
        assert (c.title, c.description, c.licence) == ("Ode to Joy 2027", "Sing with us",
                                                       "CC BY-SA 4.0")
        assert [(p.name, p.target_count) for p in c.parts] == [
            ("Soprano", 12), ("Alto", 10), ("Tenor", 8), ("Bass", None)]
        assert c.deadline.isoformat() == "2030-03-01T18:00:00" and c.accepting
        assert (c.canvas_width, c.canvas_height) == (1080, 1920)
        assert c.max_clip_seconds == 240
        assert c.guide_key and 2.5 < c.guide_duration < 3.5
    page = organizer_client.get(f"/organize/c/{campaign}/settings").get_data(as_text=True)
    assert "Soprano: 12" in page and 'value="2030-03-01T18:00"' in page
    assert '<option value="vertical" selected>' in page


def test_wrong_settings_change_nothing_and_say_what_to_do(app, organizer_client, campaign):
    with app.app_context():
        c = _campaign(app, campaign)
        db.session.add(Clip(campaign=c, part=c.part_named("Alto"), display_name="Ana",
                            status="approved", original_key="clips/a/original.mp4"))
        db.session.commit()
    cases = [({"parts": "Soprano"}, 409, "has 1 clip(s), so it stays"),
             ({"parts": "Soprano: lots\nAlto"}, 400, "whole number"),
             ({"deadline": "next friday"}, 400, "2027-03-01T18:00"),
             ({"canvas": "imax"}, 400, "canvas is one of"),
             ({"max_clip_seconds": "-5"}, 400, "from 1 to 900"),
             ({"max_clip_seconds": "nan"}, 400, "from 1 to 900"),
             ({"title": ""}, 400, "title"),
             ({"licence": ""}, 400, "licence")]
    for fields, status, words in cases:
        form = {"title": "Changed", "is_open": "", **fields}
        answer = organizer_client.post(f"/organize/c/{campaign}/settings", data=form)
        assert answer.status_code == status, fields
        page = answer.get_data(as_text=True)
        assert words in page and 'id="settings-error"' in page, fields
        with app.app_context():
            c = _campaign(app, campaign)
            assert c.title == "Ode to Joy" and c.is_open, fields  # rolled back whole
            assert [p.name for p in c.parts] == ["Soprano", "Alto"]


def test_closing_refuses_uploads_with_a_clear_page(app, client, organizer_client, campaign,
                                                   media_files):
    organizer_client.post(f"/organize/c/{campaign}/settings",
                          data={"title": "Ode to Joy", "is_open": ""})
    page = client.get(f"/c/{campaign}").get_data(as_text=True)
    assert "closed and takes no more contributions" in page and "upload-form" not in page
    with open(media_files["landscape"], "rb") as video:
        answer = client.post(f"/c/{campaign}/upload", data={
            "file": (video, "a.mp4"), "name": "Ana", "part": "Alto", "consent": "yes"},
            content_type="multipart/form-data")
    assert answer.status_code == 403
    assert "closed and takes no more contributions" in answer.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(Clip)) is None
    # the organizers' list says it is closed
    assert "· closed" in organizer_client.get("/organize/").get_data(as_text=True)


def test_a_past_deadline_closes_the_campaign(app, client, campaign, media_files):
    with app.app_context():
        c = _campaign(app, campaign)
        c.deadline = utcnow() - timedelta(minutes=1)
        db.session.commit()
    with open(media_files["landscape"], "rb") as video:
        answer = client.post(f"/api/v1/campaigns/{campaign}/clips", data={
            "file": (video, "a.mp4"), "name": "Ana", "part": "Alto", "consent": "yes"},
            content_type="multipart/form-data")
    assert answer.status_code == 403
    assert "The deadline for this campaign was" in answer.get_json()["error"]
    page = client.get(f"/c/{campaign}").get_data(as_text=True)
    assert "upload-form" not in page


def test_a_clip_longer_than_the_campaign_allows_is_rejected(app, campaign, media_files):
    from workers import pipeline

    with app.app_context():
        services.update_settings(_campaign(app, campaign), {"max_clip_seconds": "1",
                                                            "is_open": "yes"})
        with open(media_files["landscape"], "rb") as video:
            clip = services.submit_clip(_campaign(app, campaign), video, "a.mp4", name="Ana",
                                        part="Alto", consent=True)
        pipeline.intake(clip.id)
        db.session.expire_all()
        clip = db.session.get(Clip, clip.id)
        assert clip.status == "rejected"
        assert "up to 1 s" in clip.reason and "Trim it" in clip.reason


def _done_render(app, slug: str, kind: str, options: dict | None = None) -> int:
    with app.app_context():
        job = Render(campaign=_campaign(app, slug), kind=kind, status="done", progress=1.0,
                     output_key=f"renders/{slug}/x/mashup.mp4", clip_ids=[1], publish=False,
                     options=options)
        db.session.add(job)
        db.session.commit()
        return job.id


def test_publishing_a_preview_asks_first(app, organizer_client, campaign):
    preview = _done_render(app, campaign, "preview")
    asked = organizer_client.post(f"/organize/renders/{preview}/publish")
    assert asked.status_code == 409
    page = asked.get_data(as_text=True)
    assert "Publish a preview?" in page and "640×360" in page and 'value="preview"' in page
    with app.app_context():
        assert _campaign(app, campaign).published_render_id is None
    done = organizer_client.post(f"/organize/renders/{preview}/publish",
                                 data={"confirm": "preview"})
    assert done.status_code == 303
    with app.app_context():
        assert _campaign(app, campaign).published_render_id == preview
    # a final needs no confirmation; unpublish takes it off the watch page
    final = _done_render(app, campaign, "final")
    assert organizer_client.post(f"/organize/renders/{final}/publish").status_code == 303
    with app.app_context():
        assert _campaign(app, campaign).published_render_id == final
    assert organizer_client.post(f"/organize/c/{campaign}/unpublish").status_code == 303
    with app.app_context():
        assert _campaign(app, campaign).published_render_id is None
    with app.app_context():  # the service itself refuses an unconfirmed preview
        job = db.session.get(Render, preview)
        try:
            services.publish_render(job)
        except services.ServiceError as exc:
            assert exc.status == 409
        else:
            raise AssertionError("an unconfirmed preview was published")


def test_render_list_shows_settings_and_a_status_that_agrees_with_progress(
        app, organizer_client, campaign):
    _done_render(app, campaign, "final", {"layout": "sections", "audio": "guide+mix",
                                          "labels": True, "intro": True, "credits": False})
    with app.app_context():
        job = Render(campaign=_campaign(app, campaign), kind="final", status="queued",
                     progress=0.33, options={"layout": "montage", "audio": "mix"})
        db.session.add(job)
        db.session.commit()
        moving = job.id
    page = organizer_client.get(f"/organize/c/{campaign}").get_data(as_text=True)
    table = page.split('class="list renders"', 1)[1]
    assert "sections by part · sound: guide under the performers · names · title card" in table
    assert "montage · sound: performers mixed" in table
    row = table.split(f'/organize/renders/{moving}.json', 1)[1].split("</tr>", 1)[0]
    assert '<span class="state-word">running</span>' in row and "33%" in row
    status = organizer_client.get(f"/organize/renders/{moving}.json").get_json()
    assert status["status_label"] == "running" and status["options"]["layout"] == "montage"


def test_settings_page_needs_an_owner(app, campaign):
    with app.app_context():
        services.create_organizer("mod@example.org", "moderator pw")
        services.add_member(_campaign(app, campaign), "mod@example.org", "moderator")
    moderator = app.test_client()
    moderator.post("/organize/login", data={"email": "mod@example.org",
                                            "password": "moderator pw"})
    assert moderator.get(f"/organize/c/{campaign}").status_code == 200
    assert moderator.get(f"/organize/c/{campaign}/settings").status_code == 403
    assert moderator.post(f"/organize/c/{campaign}/unpublish").status_code == 403
    # the contributors' list (every name, place and consent) is the owners' export
    assert moderator.get(f"/organize/c/{campaign}/contributors.csv").status_code == 403


def test_a_new_campaign_takes_part_targets(app, organizer_client):
    answer = organizer_client.post("/organize/campaigns", data={
        "title": "Targets", "slug": "targets", "parts": "Soprano: 12, Alto: 10, Tenor"})
    assert answer.status_code == 303
    with app.app_context():
        c = _campaign(app, "targets")
        assert [(p.name, p.target_count) for p in c.parts] == [
            ("Soprano", 12), ("Alto", 10), ("Tenor", None)]
    bad = organizer_client.post("/organize/campaigns", data={
        "title": "Bad", "slug": "bad-targets", "parts": "Soprano: many"})
    assert bad.status_code == 400 and "whole number" in bad.get_data(as_text=True)


def test_a_deadline_with_a_utc_offset_is_kept_in_utc():
    """A scripted client may send an offset: it is converted, never dropped (a red-team
    case stored 12:00+05:00 as 12:00 UTC); a year that UTC cannot hold is a 400, not a 500."""
    from datetime import datetime

    assert services.parse_deadline("2030-06-01T12:00:00+05:00") == datetime(2030, 6, 1, 7)
    assert services.parse_deadline("2030-06-01T12:00Z") == datetime(2030, 6, 1, 12)
    assert services.parse_deadline("2030-06-01T12:00") == datetime(2030, 6, 1, 12)
    assert services.parse_deadline("2030-06-01") == datetime(2030, 6, 1)
    for bad in ("0001-01-01T00:00+05:00", "2030-13-01", "next friday"):
        try:
            services.parse_deadline(bad)
        except services.ServiceError as exc:
            assert exc.field == "deadline"
        else:
            raise AssertionError(bad)
