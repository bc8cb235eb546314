"""A clip's media URLs never reveal its private status-link token (the token is the
power to withdraw or replace the clip): the watch page, the embed, the API and the
organizer pages name clip files by a separate random media id, and they still load."""

from __future__ import annotations

import html as html_lib
import re
import shutil

from sqlalchemy import select

from portal import services
from portal.extensions import db
from portal.models import Clip, Render
from workers import pipeline

from .test_pipeline import _approved, _clip


def _urls(html: str) -> list[str]:
    return [html_lib.unescape(u) for u in re.findall(r'(?:src|href|poster)="(/media/[^"]+)"', html)]


def test_public_and_organizer_pages_never_show_a_clip_token(app, client, organizer_client,
                                                            campaign, media_files):
    ids = _approved(app, campaign, media_files, "landscape", "portrait")
    with app.app_context():
        job = services.request_render(services.get_campaign(campaign), "final", publish=True)
        pipeline.render(job.id)
        db.session.expire_all()
        assert db.session.get(Render, job.id).status == "done"
        clips = [_clip(app, i) for i in ids]
        tokens = [c.token for c in clips]
        assert all(c.thumbnail_key and c.normalized_key for c in clips)
        render_id = job.id

    pages = {
        "watch": client.get(f"/watch/{campaign}"),
        "embed": client.get(f"/watch/{campaign}/embed"),
        "campaign api": client.get(f"/api/v1/campaigns/{campaign}"),
        "organizer campaign": organizer_client.get(f"/organize/c/{campaign}"),
        "organizer clip": organizer_client.get(f"/organize/clips/{ids[0]}"),
        "render json": organizer_client.get(f"/organize/renders/{render_id}.json"),
    }
    watch = pages["watch"].get_data(as_text=True)
    thumbs = [u for u in _urls(watch) if "/thumb.jpg?" in u and "k=" in u]
    assert len(thumbs) == 2, watch  # the gallery shows both performers
    media = {u for name in ("watch", "embed", "organizer campaign", "organizer clip")
             for u in _urls(pages[name].get_data(as_text=True))}
    for name, answer in pages.items():
        assert answer.status_code == 200, name
        for token in tokens:
            assert token not in answer.get_data(as_text=True), f"{name} shows a clip token"
    for url in media:
        loaded = client.get(url)  # anyone with the URL, no session needed
        assert loaded.status_code == 200 and loaded.data, url
        assert not any(token in url for token in tokens)

    # the participant's own status page and API name the media by the media id as well
    status = client.get(f"/api/v1/clips/{tokens[0]}").get_json()
    for field in ("thumbnail_url", "normalized_url", "contact_sheet_url"):
        assert status[field] and tokens[0] not in status[field], field
        assert client.get(status[field].replace("http://tutti.test", "")).status_code == 200
    page = client.get(f"/clip/{tokens[0]}").get_data(as_text=True)
    assert _urls(page) and all(tokens[0] not in u for u in _urls(page))
    # the old URL shape with the token serves nothing
    assert client.get(f"/media/clips/{tokens[0]}/thumb.jpg").status_code == 404
    # an unknown or malformed media id is a plain 404
    assert client.get("/media/clips/nobody/thumb.jpg").status_code == 404
    assert client.get("/media/clips/a.b/thumb.jpg").status_code == 404


def test_files_stored_under_the_token_before_media_ids_still_load(app, client, campaign,
                                                                  media_files):
    [clip_id] = _approved(app, campaign, media_files, "landscape")
    with app.app_context():
        clip = _clip(app, clip_id)
        store = app.extensions["tutti.storage"]
        # as a clip taken in before the migration: its files under clips/<token>/
        old = store.path(f"clips/{clip.media_id}")
        shutil.move(old, store.path(f"clips/{clip.token}"))
        for column in ("normalized_key", "thumbnail_key", "contact_sheet_key", "original_key"):
            setattr(clip, column, getattr(clip, column).replace(clip.media_id, clip.token))
        db.session.commit()
        token = clip.token
    answer = client.get(f"/api/v1/clips/{token}").get_json()
    assert token not in answer["thumbnail_url"]
    thumb = client.get(answer["thumbnail_url"].replace("http://tutti.test", ""))
    assert thumb.status_code == 200 and thumb.data[:2] == b"\xff\xd8"  # a JPEG
    # deleting the campaign removes the old folder too
    with app.app_context():
        services.delete_campaign(services.get_campaign(campaign))
        assert not store.path(f"clips/{token}").exists()
        assert db.session.scalar(select(Clip)) is None


def _clip_with_files(app, campaign: str, files: dict[str, str]) -> dict[str, str]:
    """An approved clip whose files (column -> file name) each hold their own name;
    the signed URL of each file, as the pages hand them out."""
    from portal.models import Clip
    from portal.watch import clip_media_url

    store = app.extensions["tutti.storage"]
    with app.test_request_context():
        c = services.get_campaign(campaign)
        clip = Clip(campaign=c, part=c.parts[0], display_name="Ana", status="approved",
                    original_key="")
        db.session.add(clip)
        db.session.flush()
        for column, name in files.items():
            key = f"clips/{clip.media_id}/{name}"
            store.path_for_writing(key).write_bytes(name.encode())
            setattr(clip, column, key)
        db.session.commit()
        return {column: clip_media_url(clip, column) for column in files}


def test_a_clip_file_url_cannot_be_turned_into_another_files(app, client, campaign,
                                                              media_files):
    """The watch page shows each performer's thumbnail; its URL must not open the
    performer's whole clip (or contact sheet) by changing the file name, nor work
    without the signature the page gave it."""
    from urllib.parse import parse_qs, urlsplit

    urls = _clip_with_files(app, campaign, {"thumbnail_key": "thumb.jpg",
                                            "normalized_key": "normalized.mp4",
                                            "contact_sheet_key": "sheet.jpg"})
    thumb, whole = urls["thumbnail_key"], urls["normalized_key"]
    assert client.get(thumb).data == b"thumb.jpg"
    assert client.get(whole).data == b"normalized.mp4"  # with its own URL: yes
    path, query = urlsplit(thumb).path, urlsplit(thumb).query
    signature = parse_qs(query)["k"][0]
    # one character changed (the first: the last carries only 2 bits, so it is one of
    # 4 letters and "A" was the real one a quarter of the time)
    wrong = ("B" if signature[0] != "B" else "C") + signature[1:]
    for forged in (path.replace("thumb.jpg", "normalized.mp4") + "?" + query,
                   path.replace("thumb.jpg", "sheet.jpg") + "?" + query,
                   path, path + "?k=", path + "?k=" + signature,
                   path + "?" + query.replace("k=" + signature, "k=" + wrong)):
        assert client.get(forged).status_code == 404, forged
    # the expiry is signed: pushing it later breaks the signature
    expires = int(parse_qs(query)["e"][0])
    later = path + "?" + query.replace(f"e={expires}", f"e={expires + 3600}")
    assert client.get(later).status_code == 404


def test_a_clip_file_url_stops_working_after_it_expires(app, client, campaign, monkeypatch):
    """A thumbnail URL copied from the watch page (or a moderator's page) while the clip
    was shown does not open it for ever: after ``TUTTI_MEDIA_URL_HOURS`` (rounded up to
    the hour) it answers 404, so a decline, a withdrawal or a removed member ends the
    access of every URL handed out before."""
    import time as clock

    thumb = _clip_with_files(app, campaign, {"thumbnail_key": "thumb.jpg"})["thumbnail_key"]
    assert client.get(thumb).data == b"thumb.jpg"
    hours = app.config["MEDIA_URL_HOURS"]
    now = clock.time()
    monkeypatch.setattr(clock, "time", lambda: now + (hours - 0.1) * 3600)
    assert client.get(thumb).status_code == 200  # still within its hours
    monkeypatch.setattr(clock, "time", lambda: now + (hours + 1.01) * 3600)
    assert client.get(thumb).status_code == 404
