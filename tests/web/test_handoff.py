"""The hand-off of a render to a video editor through the portal and the command line:
organizers only, never on the public media route, positions read back with OTIO."""

from __future__ import annotations

import io
import zipfile

import opentimelineio as otio
from sqlalchemy import select

from portal import services
from portal.extensions import db
from portal.models import Clip, Render
from tests.conftest import ensure_organizer, log_in
from tests.web.test_cli import run
from workers import pipeline


def _rendered(app, campaign, media_files) -> int:
    ids = []
    for name, part in (("landscape", "Alto"), ("portrait", "Soprano")):
        with app.app_context(), open(media_files[name], "rb") as handle:
            clip = services.submit_clip(services.get_campaign(campaign), handle, name,
                                        name=name, part=part, location="Lisbon", consent=True)
            ids.append(clip.id)
    with app.app_context():
        for clip_id in ids:
            pipeline.intake(clip_id)
            clip = db.session.get(Clip, clip_id)
            clip.nudge_ms = 300 if clip_id == ids[0] else -450  # two different positions
            services.moderate_clip(clip, "approved")
        job = services.request_render(services.get_campaign(campaign), "final",
                                      options={"audio": "mix"})
        pipeline.render(job.id)
        db.session.expire_all()
        job = db.session.get(Render, job.id)
        assert job.status == "done", job.reason
        return job.id


def test_an_organizer_hands_a_render_off_and_downloads_the_zip(app, campaign, media_files,
                                                               organizer_client, client):
    render_id = _rendered(app, campaign, media_files)
    page = organizer_client.get(f"/organize/c/{campaign}").get_data(as_text=True)
    assert "hand off to an editor" in page
    assert organizer_client.get(f"/organize/renders/{render_id}/handoff.zip").status_code == 404
    answer = organizer_client.post(f"/organize/renders/{render_id}/handoff")
    assert answer.status_code == 303
    with app.app_context():
        assert db.session.get(Render, render_id).handoff_state == "pending"
        key = pipeline.export_render(render_id)  # what the worker's task runs
        job = db.session.get(Render, render_id)
        assert job.handoff_state == "done" and job.handoff_key == key
        assert key.startswith("handoffs/") and job.token in key
        spec = job.spec
    answer = organizer_client.get(f"/organize/renders/{render_id}/handoff.zip")
    assert answer.status_code == 200 and answer.mimetype == "application/zip"
    assert "attachment" in answer.headers["Content-Disposition"]
    z = zipfile.ZipFile(io.BytesIO(answer.data))
    assert {"timeline.otio", "timeline.xml", "credits.csv", "audio/mix.wav",
            "media/001.mp4", "media/002.mp4"} <= set(z.namelist())
    timeline = otio.adapters.read_from_string(z.read("timeline.otio").decode(), "otio_json")
    fps = spec["canvas"]["fps"]
    placed = {}
    for track in timeline.video_tracks():
        for item in track.find_clips():
            placed[item.media_reference.target_url] = (
                track.range_of_child(item).start_time.to_seconds(),
                item.source_range.start_time.to_seconds())
    # clip 1 is cut 0.3 s in; clip 2 starts 0.45 s late (to the frame)
    offsets = [c["offset"] for c in spec["clips"]]
    assert placed["media/001.mp4"][0] == 0.0
    assert abs(placed["media/001.mp4"][1] - offsets[0]) <= 0.5 / fps
    assert abs(placed["media/002.mp4"][0] + offsets[1]) <= 0.5 / fps
    assert placed["media/002.mp4"][1] == 0.0
    # never through the public media route, whose renders/ files anyone may fetch
    assert client.get(f"/media/{key}").status_code == 404
    page = organizer_client.get(f"/organize/c/{campaign}").get_data(as_text=True)
    assert f"/organize/renders/{render_id}/handoff.zip" in page


def test_only_the_campaigns_organizers_may_hand_off(app, campaign, media_files):
    render_id = _rendered(app, campaign, media_files)
    with app.app_context():
        pipeline.export_render(render_id)
        ensure_organizer("other@example.org", "other pw")
    other = app.test_client()
    assert log_in(other, "other@example.org", "other pw").status_code == 303
    assert other.get(f"/organize/renders/{render_id}/handoff.zip").status_code == 404
    assert other.post(f"/organize/renders/{render_id}/handoff").status_code == 404
    anonymous = app.test_client()
    assert anonymous.get(f"/organize/renders/{render_id}/handoff.zip").status_code in (302, 401)


def test_an_unfinished_render_cannot_be_handed_off(app, campaign, media_files,
                                                   organizer_client):
    with app.app_context(), open(media_files["landscape"], "rb") as handle:
        clip = services.submit_clip(services.get_campaign(campaign), handle, "a.mp4",
                                    name="Ana", part="Alto", location="", consent=True)
        pipeline.intake(clip.id)
        services.moderate_clip(db.session.get(Clip, clip.id), "approved")
        job = services.request_render(services.get_campaign(campaign))
        render_id = job.id
    page = organizer_client.post(f"/organize/renders/{render_id}/handoff",
                                 follow_redirects=True).get_data(as_text=True)
    assert "Only a finished render can be handed off" in page
    with app.app_context():
        assert pipeline.export_render(render_id) is None
        assert db.session.scalar(select(Render.handoff_state).filter_by(id=render_id)) is None


def test_handoff_command_after_the_demo(tmp_path):
    instance = tmp_path / "instance"
    done = run("demo", "--no-serve", "--clips", "3", "--seconds", "2", instance=instance,
               timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "demo-handoff.zip"
    done = run("handoff", "demo", "-o", str(out), "--no-media", instance=instance, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(out)
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        assert not any(n.startswith("media/") for n in names)  # --no-media
        timeline = otio.adapters.read_from_string(z.read("timeline.otio").decode(),
                                                  "otio_json")
        fcp = otio.adapters.read_from_string(z.read("timeline.xml").decode(), "fcp_xml")
    assert len(list(timeline.video_tracks())) == 3
    assert len(list(fcp.video_tracks())) == 3
    missing = run("handoff", "nope", instance=instance)
    assert missing.returncode != 0 and "no campaign" in missing.stderr
    wrong = run("handoff", "demo", "--render", "999", instance=instance)
    assert wrong.returncode != 0 and "no render #999" in wrong.stderr


def test_hand_offs_and_the_contributors_csv_are_the_owners(app, campaign, media_files):
    """Both hold every participant's data at once (every clip, or every name, place and
    consent): a moderator reviews and previews, but exports neither."""
    with app.app_context():  # a finished render's row is enough: the policy answers first
        c = services.get_campaign(campaign)
        job = Render(campaign=c, kind="final", status="done", spec={"clips": []},
                     handoff_state="done")
        db.session.add(job)
        db.session.commit()
        render_id = job.id
        job.output_key = f"renders/{campaign}/{job.token}/mashup.mp4"
        job.handoff_key = f"handoffs/{c.id}/{job.token}.zip"
        app.extensions["tutti.storage"].path_for_writing(job.handoff_key).write_bytes(b"PK")
        db.session.commit()
        ensure_organizer("mod@example.org", "moderator pw")
        services.add_member(services.get_campaign(campaign), "mod@example.org", "moderator")
    moderator = app.test_client()
    assert log_in(moderator, "mod@example.org", "moderator pw").status_code == 303
    assert moderator.get(f"/organize/renders/{render_id}/handoff.zip").status_code == 403
    assert moderator.post(f"/organize/renders/{render_id}/handoff").status_code == 403
    assert moderator.get(f"/organize/c/{campaign}/contributors.csv").status_code == 403
    page = moderator.get(f"/organize/c/{campaign}").get_data(as_text=True)
    assert "hand-off ZIP" not in page and "contributors.csv" not in page


def test_a_withdrawal_deletes_the_hand_off_zips_that_hold_the_clip(app, campaign, media_files,
                                                                  organizer_client, client):
    render_id = _rendered(app, campaign, media_files)
    with app.app_context():
        key = pipeline.export_render(render_id)
        store = app.extensions["tutti.storage"]
        assert store.exists(key)
        token = db.session.scalars(select(Clip.token).order_by(Clip.id)).first()
    assert organizer_client.get(f"/organize/renders/{render_id}/handoff.zip").status_code == 200
    assert client.post(f"/clip/{token}/withdraw", data={"confirm": "yes"}).status_code in (
        200, 303)
    with app.app_context():
        job = db.session.get(Render, render_id)
        assert job.handoff_key is None and job.handoff_state is None
        assert not store.exists(key)  # the file, not only the link to it
    assert organizer_client.get(f"/organize/renders/{render_id}/handoff.zip").status_code == 404
    # and it cannot be made again from the render whose file was deleted
    page = organizer_client.post(f"/organize/renders/{render_id}/handoff",
                                 follow_redirects=True).get_data(as_text=True)
    assert "render again" in page
    with app.app_context():
        assert pipeline.export_render(render_id) is None
        assert not list(store.path("handoffs").rglob("*.zip"))


def test_the_csv_keeps_the_licence_each_participant_consented_to(app, campaign, media_files,
                                                                 organizer_client):
    with app.app_context(), open(media_files["landscape"], "rb") as handle:
        c = services.get_campaign(campaign)
        c.licence = "LICENCE-V1"
        db.session.commit()
        services.submit_clip(c, handle, "a.mp4", name="Early Ana", part="Alto", location="",
                             consent=True)
        c = services.get_campaign(campaign)
        c.licence = "LICENCE-V2 changed after the consent"
        db.session.commit()
    rows = organizer_client.get(f"/organize/c/{campaign}/contributors.csv").get_data(
        as_text=True).splitlines()
    ana = next(r for r in rows if r.startswith("Early Ana"))
    assert "LICENCE-V1" in ana and "LICENCE-V2" not in ana
