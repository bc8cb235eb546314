"""Participant flows through the test client: upload, validation, status."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Clip


def _post_clip(client, slug, path: Path | None, **fields):
    data = {"name": "Ana", "part": "Alto", "location": "Lisbon", "consent": "yes"}
    data.update(fields)
    data = {k: v for k, v in data.items() if v is not None}
    if path is not None:
        data["file"] = (open(path, "rb"), path.name)
    return client.post(f"/api/v1/campaigns/{slug}/clips", data=data,
                       content_type="multipart/form-data")


def _media_files(app) -> list[Path]:
    root = Path(app.config["MEDIA_ROOT"])
    return [p for p in root.rglob("*") if p.is_file()]


def test_api_upload_answers_201_with_token_and_stores_the_original(app, client, campaign,
                                                                   media_files):
    answer = _post_clip(client, campaign, media_files["landscape"])
    assert answer.status_code == 201
    body = answer.get_json()
    assert set(body) >= {"id", "status", "status_url"}
    assert body["status"] == "received"
    assert len(body["id"]) >= 20  # unguessable token, not a row number
    with app.app_context():
        clip = db.session.scalar(select(Clip).filter_by(token=body["id"]))
        assert clip.display_name == "Ana" and clip.part_name == "Alto"
        stored = app.extensions["tutti.storage"].path(clip.original_key)
        assert stored.read_bytes() == media_files["landscape"].read_bytes()
    status = client.get(f"/api/v1/clips/{body['id']}").get_json()
    assert status["status"] == "received" and status["reason"] is None
    page = client.get(body["status_url"])
    assert page.status_code == 200 and b"Received" in page.data


@pytest.mark.parametrize("fields, field, words", [
    ({"consent": None}, "consent", b"licence"),
    ({"name": "  "}, "name", b"name"),
    ({"part": "Kazoo"}, "part", b"Unknown part"),
    ({"part": ""}, "part", b"choose your part"),
])
def test_api_refuses_incomplete_forms_with_a_message(app, client, campaign, media_files, fields,
                                                     field, words):
    answer = _post_clip(client, campaign, media_files["landscape"], **fields)
    assert answer.status_code == 400
    body = answer.get_json()
    assert body["field"] == field
    assert words.lower() in body["error"].encode().lower()
    assert _media_files(app) == []  # nothing kept of a refused upload
    with app.app_context():
        assert db.session.scalar(select(Clip)) is None


def test_api_without_a_file(client, campaign):
    answer = _post_clip(client, campaign, None)
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "file"


def test_unknown_campaign_is_404_in_api_and_pages(client, media_files):
    answer = _post_clip(client, "no-such-campaign", media_files["landscape"])
    assert answer.status_code == 404
    assert "no campaign" in answer.get_json()["error"]
    assert client.get("/c/no-such-campaign").status_code == 404
    assert client.get("/watch/no-such-campaign").status_code == 404
    assert client.get("/api/v1/clips/not-a-token").status_code == 404


def test_over_the_size_limit_is_413_and_leaves_no_file(app, client, campaign):
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    big = io.BytesIO(b"\0" * (200 * 1024))
    answer = client.post(f"/api/v1/campaigns/{campaign}/clips",
                         data={"name": "Ana", "part": "Alto", "consent": "yes",
                               "file": (big, "big.mp4")},
                         content_type="multipart/form-data")
    assert answer.status_code == 413
    assert "larger" in answer.get_json()["error"]
    assert _media_files(app) == []
    with app.app_context():
        assert db.session.scalar(select(Clip)) is None


def test_html_form_upload_redirects_to_the_private_status_page(client, campaign, media_files):
    with open(media_files["portrait"], "rb") as handle:
        answer = client.post(f"/c/{campaign}/upload", data={
            "name": "Ben", "part": "Soprano", "location": "", "consent": "yes",
            "file": (handle, "me.mp4")}, content_type="multipart/form-data")
    assert answer.status_code == 303
    assert "/clip/" in answer.headers["Location"]
    page = client.get(answer.headers["Location"])
    assert b"Ben" in page.data and b"private" in page.data


def test_html_form_error_keeps_the_form_and_says_why(client, campaign, media_files):
    with open(media_files["portrait"], "rb") as handle:
        answer = client.post(f"/c/{campaign}/upload", data={
            "name": "Ben", "part": "Soprano", "file": (handle, "me.mp4")},
            content_type="multipart/form-data")
    assert answer.status_code == 400
    assert b"licence" in answer.data and b'value="Ben"' in answer.data


def test_campaign_page_lists_parts_and_the_form(client, campaign):
    page = client.get(f"/c/{campaign}")
    assert page.status_code == 200
    assert b"Soprano" in page.data and b'name="consent"' in page.data


def test_record_along_is_offered_only_with_a_guide_while_open(app, client, campaign,
                                                             media_files):
    """Issue 16: the campaign page records along the guide when there is one to play."""
    page = client.get(f"/c/{campaign}").data
    assert b'id="record"' not in page and b"record.js" not in page  # no guide yet
    from portal import services
    from portal.extensions import db

    with app.app_context():
        services.set_guide(services.get_campaign(campaign), str(media_files["guide"]))
    page = client.get(f"/c/{campaign}").data.decode()
    assert 'id="record"' in page and "record.js" in page and "record-tap.js" in page
    for label in (">Record<", ">Stop<", ">Send<"):
        assert label in page
    assert "cannot record here" in page and "upload the file below" in page  # for old browsers
    with app.app_context():
        services.get_campaign(campaign).is_open = False
        db.session.commit()
    assert b'id="record"' not in client.get(f"/c/{campaign}").data


def test_withdraw_deletes_files_and_is_final(app, client, campaign, media_files):
    token = _post_clip(client, campaign, media_files["landscape"]).get_json()["id"]
    assert client.post(f"/clip/{token}/withdraw").status_code == 400  # needs the confirmation
    assert client.post(f"/clip/{token}/withdraw", data={"confirm": "yes"}).status_code == 303
    assert client.get(f"/api/v1/clips/{token}").get_json()["status"] == "withdrawn"
    assert _media_files(app) == []
