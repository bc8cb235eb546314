"""A clip taken back by its performer leaves the published mash-up at once; one
declined by an organizer is named on the campaign page until a new mash-up is out.

Renders here are rows with small stand-in files (the render engine has its own
tests); the finishing step of a real render is called as the pipeline calls it."""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import select

from portal import services
from portal.extensions import db
from portal.models import Clip, Render
from portal.watch import clip_media_url
from workers import pipeline
from workers.media.proxies import proxy_name


def _put(store, key: str, data: bytes = b"media") -> None:
    store.path_for_writing(key).write_bytes(data)


def _clip(campaign, name: str, store) -> Clip:
    clip = Clip(campaign=campaign, part=campaign.parts[0], display_name=name,
                location="Porto", status="approved", original_key="")
    db.session.add(clip)
    db.session.flush()
    folder = f"clips/{clip.media_id}"
    clip.original_key = f"{folder}/original.mp4"
    clip.normalized_key = f"{folder}/normalized.mp4"
    clip.thumbnail_key = f"{folder}/thumb.jpg"
    for key in (clip.original_key, clip.normalized_key, clip.thumbnail_key):
        _put(store, key, f"{name} {key}".encode())
    return clip


def _render(campaign, clips, store, kind: str = "final", status: str = "done") -> Render:
    job = Render(campaign=campaign, kind=kind, status=status, progress=1.0,
                 clip_ids=[c.id for c in clips],
                 spec={"version": 1, "clips": [{"id": c.token, "name": c.display_name,
                                                "location": c.location} for c in clips]},
                 appearances={c.token: 1.0 for c in clips})
    db.session.add(job)
    db.session.flush()
    if status == "done":
        job.output_key = f"renders/{campaign.slug}/{job.token}/mashup.mp4"
        job.poster_key = f"renders/{campaign.slug}/{job.token}/poster.jpg"
        _put(store, job.output_key)
        _put(store, job.poster_key)
    return job


def _setup(app, slug: str) -> dict:
    store = app.extensions["tutti.storage"]
    with app.test_request_context():
        campaign = services.get_campaign(slug)
        ana, bo = _clip(campaign, "Ana", store), _clip(campaign, "Bo", store)
        preview = _render(campaign, [ana], store, kind="preview")
        final = _render(campaign, [ana, bo], store)
        campaign.published_render_id = final.id
        # the render proxies made from each clip
        cache = store.path_for_writing(f"proxies/{campaign.id}/x").parent
        for clip in (ana, bo):
            (cache / proxy_name(str(store.path(clip.normalized_key)), 0.25)).write_bytes(b"p")
        db.session.commit()
        return {"ana": ana.token, "ana_id": ana.id, "bo_id": bo.id,
                "ana_thumb": clip_media_url(ana, "thumbnail_key"),
                "bo_thumb": clip_media_url(bo, "thumbnail_key"),
                "final": final.id, "preview": preview.id,
                "final_file": f"/media/{final.output_key}",
                "final_poster": f"/media/{final.poster_key}",
                "preview_file": f"/media/{preview.output_key}",
                "proxies": cache}


def test_a_withdrawn_clip_takes_the_published_mash_up_down(app, client, organizer_client,
                                                           campaign):
    ids = _setup(app, campaign)
    assert client.get(ids["final_file"]).status_code == 200
    assert b"<video" in client.get(f"/watch/{campaign}").data
    assert len(list(ids["proxies"].iterdir())) == 2

    answer = client.post(f"/clip/{ids['ana']}/withdraw", data={"confirm": "yes"},
                         follow_redirects=True)
    assert answer.status_code == 200
    assert "taken off the watch page" in answer.get_data(as_text=True)

    # nothing that shows Ana is served any more: her files, and every render with her
    for url in (ids["ana_thumb"], ids["final_file"], ids["final_poster"],
                ids["preview_file"]):
        assert client.get(url).status_code == 404, url
    assert client.get(ids["bo_thumb"]).status_code == 200  # Bo's own files stay
    assert len(list(ids["proxies"].iterdir())) == 1  # Ana's proxy went, Bo's stayed
    watch = client.get(f"/watch/{campaign}").get_data(as_text=True)
    assert "<video" not in watch and "being updated" in watch and "Ana" not in watch
    with app.app_context():
        c = services.get_campaign(campaign)
        assert c.published_render_id is None
        final = db.session.get(Render, ids["final"])
        assert final.output_key is None and "withdrew" in final.reason
        assert [x["name"] for x in final.spec["clips"]] == ["", "Bo"]  # her name is gone
        assert ids["ana"] not in final.appearances
    # the organizers are told plainly, and cannot put the old file back
    page = organizer_client.get(f"/organize/c/{campaign}").get_data(as_text=True)
    assert "Ana (Soprano) withdrew their clip" in page
    assert "Render a new final to publish the mash-up again without them" in page
    assert f'/organize/renders/{ids["final"]}/publish' not in page
    refused = organizer_client.post(f"/organize/renders/{ids['final']}/publish")
    assert refused.status_code == 409 and "withdrew" in refused.get_data(as_text=True)
    # a new mash-up without her clears the notice
    store = app.extensions["tutti.storage"]
    with app.app_context():
        c = services.get_campaign(campaign)
        fresh = _render(c, [db.session.get(Clip, ids["bo_id"])], store)
        db.session.commit()
        services.publish_render(fresh)
        assert services.get_campaign(campaign).rerender_reason is None
    assert 'id="rerender"' not in organizer_client.get(
        f"/organize/c/{campaign}").get_data(as_text=True)


def test_a_render_running_while_its_clip_is_withdrawn_is_not_published(app, client, campaign):
    ids = _setup(app, campaign)
    store = app.extensions["tutti.storage"]
    with app.app_context():
        c = services.get_campaign(campaign)
        running = _render(c, [db.session.get(Clip, ids["ana_id"]),
                              db.session.get(Clip, ids["bo_id"])], store, status="running")
        db.session.commit()
        running_id = running.id
    assert client.post(f"/clip/{ids['ana']}/withdraw", data={"confirm": "yes"}) \
        .status_code == 303
    with app.app_context():
        job = db.session.get(Render, running_id)
        job.lease_owner = "worker-1"  # the worker drawing it holds its lease (issue15)
        db.session.commit()
        out_key = f"renders/{campaign}/{job.token}/mashup.mp4"
        poster_key = f"renders/{campaign}/{job.token}/poster.jpg"
        _put(store, out_key)  # what the ffmpeg run wrote, Ana included
        _put(store, poster_key)
        pipeline._finish_render(job, SimpleNamespace(duration=3.0, poster_path="p"),
                                out_key, poster_key, "worker-1")
        job = db.session.get(Render, running_id)
        assert job.status == "failed" and "withdrew their clip while it was running" \
            in job.reason
        assert services.get_campaign(campaign).published_render_id is None
        assert not store.exists(out_key) and not store.exists(poster_key)


def test_a_declined_clip_in_the_published_mash_up_is_named_and_can_be_taken_off(
        app, client, organizer_client, campaign):
    ids = _setup(app, campaign)
    page = organizer_client.get(f"/organize/c/{campaign}").get_data(as_text=True)
    assert 'id="stale"' not in page
    assert organizer_client.post(f"/organize/clips/{ids['bo_id']}/moderate",
                                 data={"decision": "declined"}).status_code == 303
    page = organizer_client.get(f"/organize/c/{campaign}").get_data(as_text=True)
    assert "The published mash-up on the watch page still shows <bdi>Bo</bdi> (not " \
           "included by the organizers)" in page
    assert f'action="/organize/c/{campaign}/unpublish"' in page
    assert b"<video" in client.get(f"/watch/{campaign}").data  # the organizer decides
    assert organizer_client.post(f"/organize/c/{campaign}/unpublish").status_code == 303
    assert b"<video" not in client.get(f"/watch/{campaign}").data
    with app.app_context():
        # kept: it may be published again
        assert db.session.scalar(select(Render.output_key).filter_by(id=ids["final"]))
