"""Resumable uploads (tus 1.0.0 core + creation + termination)."""

from __future__ import annotations

import base64

from sqlalchemy import select

from portal.extensions import db
from portal.models import Clip

TUS = {"Tus-Resumable": "1.0.0"}


def _metadata(**fields: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


def _create(client, size: int, **fields: str):
    meta = {"campaign": "ode-to-joy", "name": "Ana", "part": "Alto", "location": "Lisbon",
            "consent": "yes", "filename": "me.mp4"}
    meta.update(fields)
    return client.post("/api/v1/uploads", headers={**TUS, "Upload-Length": str(size),
                                                   "Upload-Metadata": _metadata(**meta)})


def _patch(client, url: str, offset: int, data: bytes):
    return client.patch(url, data=data, headers={
        **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})


def test_an_interrupted_upload_resumes_where_it_stopped(app, client, campaign, media_files):
    data = media_files["landscape"].read_bytes()
    answer = _create(client, len(data))
    assert answer.status_code == 201 and answer.headers["Tus-Resumable"] == "1.0.0"
    url = answer.headers["Location"]
    first = len(data) // 3
    assert _patch(client, url, 0, data[:first]).headers["Upload-Offset"] == str(first)
    # the connection dropped; the client asks where to continue
    head = client.head(url, headers=TUS)
    assert head.status_code == 200 and head.headers["Upload-Offset"] == str(first)
    # a chunk sent from the wrong place is refused and says where to continue
    wrong = _patch(client, url, 0, data[:10])
    assert wrong.status_code == 409 and wrong.headers["Upload-Offset"] == str(first)
    done = _patch(client, url, first, data[first:])
    assert done.status_code == 204 and done.headers["Upload-Offset"] == str(len(data))
    token = done.headers["Tutti-Clip"]
    assert "/clip/" in done.headers["Tutti-Status-Url"]
    with app.app_context():
        clip = db.session.scalar(select(Clip).filter_by(token=token))
        assert clip.status == "received" and clip.display_name == "Ana"
        stored = app.extensions["tutti.storage"].path(clip.original_key).read_bytes()
        assert stored == data
    # a repeated last chunk (its answer was lost) does not create a second clip
    again = _patch(client, url, first, data[first:])
    assert again.status_code == 204 and again.headers["Tutti-Clip"] == token
    with app.app_context():
        assert len(db.session.scalars(select(Clip)).all()) == 1
    assert client.get(url).get_json()["clip"] == token


def test_the_form_is_checked_before_any_byte_is_sent(app, client, campaign):
    answer = _create(client, 1000, consent="")
    assert answer.status_code == 400 and answer.get_json()["field"] == "consent"
    assert _create(client, 1000, campaign="nope").status_code == 404
    app.config["MAX_CONTENT_LENGTH"] = 500
    big = _create(client, 1000)
    assert big.status_code == 413 and "larger" in big.get_json()["error"]


def test_termination_and_unknown_uploads(client, campaign):
    url = _create(client, 100).headers["Location"]
    assert client.delete(url, headers=TUS).status_code == 204
    assert client.head(url, headers=TUS).status_code == 404
    assert client.head("/api/v1/uploads/not-an-upload-id-at-all-x", headers=TUS).status_code \
        == 404
    options = client.options("/api/v1/uploads")
    assert "creation" in options.headers["Tus-Extension"]
