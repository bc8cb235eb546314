"""Deleting a campaign deletes every file that belongs to it, and the
participants' private links answer 404 afterwards."""

from __future__ import annotations

from sqlalchemy import func, select

from portal import services
from portal.extensions import db
from portal.models import Clip, Render
from tests.conftest import ensure_organizer


def _with_files(app, slug: str, media_files) -> dict:
    store = app.extensions["tutti.storage"]
    with app.app_context():
        campaign = services.create_campaign(slug, slug.title(), parts=["Alto"],
                                            guide_path=str(media_files["guide"]),
                                            guide_filename="guide.wav", owner=ensure_organizer())
        with open(media_files["landscape"], "rb") as handle:
            clip = services.submit_clip(campaign, handle, "me.mp4", name="Ana", part="Alto",
                                        consent=True)
        keys = [clip.original_key]
        for name in ("normalized.mp4", "thumb.jpg", "sync.png"):
            key = f"clips/{clip.token}/{name}"
            store.path_for_writing(key).write_bytes(b"x")
            keys.append(key)
        clip.thumbnail_key = keys[2]
        job = Render(campaign=campaign, kind="final", status="done", clip_ids=[clip.id])
        db.session.add(job)
        db.session.flush()
        job.output_key = f"renders/{slug}/{job.token}/mashup.mp4"
        store.path_for_writing(job.output_key).write_bytes(b"mp4")
        campaign.published_render_id = job.id
        proxy = f"proxies/{campaign.id}/abc.mp4"
        store.path_for_writing(proxy).write_bytes(b"proxy")
        keys += [job.output_key, proxy, campaign.guide_key]
        db.session.commit()
        return {"token": clip.token, "keys": keys, "thumb": clip.thumbnail_key,
                "output": job.output_key}


def test_deleting_a_campaign_deletes_its_files_and_private_links(app, organizer_client,
                                                                 media_files):
    client = organizer_client
    doomed = _with_files(app, "doomed", media_files)
    kept = _with_files(app, "kept", media_files)
    store = app.extensions["tutti.storage"]
    assert all(store.path(k).is_file() for k in doomed["keys"] + kept["keys"])
    assert client.get(f"/clip/{doomed['token']}").status_code == 200

    # without the typed confirmation nothing happens
    assert client.post("/organize/c/doomed/delete", data={"confirm": "no"}).status_code == 400
    assert all(store.path(k).is_file() for k in doomed["keys"])

    answer = client.post("/organize/c/doomed/delete", data={"confirm": "doomed"})
    assert answer.status_code == 303
    assert not any(store.path(k).exists() for k in doomed["keys"])
    leftovers = [p for p in store.root.rglob("*") if p.is_file() and
                 ("doomed" in str(p) or doomed["token"] in str(p))]
    assert leftovers == []
    for url in (f"/clip/{doomed['token']}", f"/api/v1/clips/{doomed['token']}",
                f"/media/{doomed['thumb']}", f"/media/{doomed['output']}", "/watch/doomed",
                "/c/doomed", "/organize/c/doomed"):
        assert client.get(url).status_code == 404, url
    # the other campaign is untouched
    assert all(store.path(k).is_file() for k in kept["keys"])
    assert client.get(f"/clip/{kept['token']}").status_code == 200
    with app.app_context():
        assert db.session.scalar(select(func.count(Clip.id))) == 1
        assert db.session.scalar(select(func.count(Render.id))) == 1


def test_a_render_running_when_its_campaign_is_deleted_leaves_no_file(app, media_files,
                                                                      monkeypatch):
    import workers.media.render as engine
    from workers import pipeline

    ids = _with_files(app, "busy", media_files)
    with app.app_context():
        clip = services.get_clip(ids["token"])
        clip.status, clip.normalized_key = "approved", ids["keys"][1]
        job = Render(campaign=clip.campaign, kind="final")
        db.session.add(job)
        db.session.commit()
        render_id, folder = job.id, f"renders/busy/{job.token}"

    def slow_render(spec, output, poster_path=None, progress=None, **_kw):
        with open(output, "wb") as out:
            out.write(b"half a mash-up")
        with app.app_context():  # an owner deletes the campaign meanwhile
            services.delete_campaign(services.get_campaign("busy"))
        progress(0.5)
        raise AssertionError("the render went on after its campaign was deleted")

    monkeypatch.setattr(engine, "render", slow_render)
    with app.app_context():
        pipeline.render(render_id)
    store = app.extensions["tutti.storage"]
    assert not store.path(folder).exists()
    assert [p for p in store.root.rglob("*") if p.is_file() and "busy" in str(p)] == []
