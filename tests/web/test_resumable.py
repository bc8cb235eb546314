"""Resumable uploads (tus 1.0.0 core + creation + termination)."""

from __future__ import annotations

import base64
from urllib.parse import urljoin

import pytest
from sqlalchemy import func, select

from portal import services
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


# --- tus 1.0.0 completed: version, 413, checksum, expiration, GET after completion -------

def _part_size(app, url: str) -> int:
    upload_id = url.rstrip("/").rsplit("/", 1)[1]
    part = app.extensions["tutti.storage"].tmp_dir / "uploads" / f"{upload_id}.part"
    return part.stat().st_size if part.exists() else -1


def _upload_files(app) -> list[str]:
    folder = app.extensions["tutti.storage"].tmp_dir / "uploads"
    return sorted(p.name for p in folder.glob("*") if p.is_file() and p.suffix != ".lock") \
        if folder.exists() else []


def test_an_unsupported_tus_version_is_412(client, campaign):
    old = {"Tus-Resumable": "0.2.2"}
    answer = client.post("/api/v1/uploads", headers={**old, "Upload-Length": "10"})
    assert answer.status_code == 412 and answer.headers["Tus-Version"] == "1.0.0"
    url = _create(client, 10).headers["Location"]
    assert client.head(url, headers=old).status_code == 412
    assert client.patch(url, data=b"x", headers={
        "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}) \
        .status_code == 412  # no version at all
    assert client.delete(url, headers=old).status_code == 412
    assert client.head(url, headers=TUS).status_code == 200  # nothing happened to it
    assert client.options("/api/v1/uploads").status_code == 204  # OPTIONS needs no version
    assert client.get(url).status_code == 200  # nor does a browser opening the URL


def test_a_patch_beyond_upload_length_is_413_keeps_nothing_and_stays_resumable(app, client,
                                                                              campaign):
    data = bytes(range(256)) * 4  # 1024 bytes
    url = _create(client, 100).headers["Location"]
    over = _patch(client, url, 0, data[:150])
    assert over.status_code == 413 and over.headers["Upload-Offset"] == "0"
    assert _part_size(app, url) == 0
    assert _patch(client, url, 0, data[:60]).headers["Upload-Offset"] == "60"
    over = _patch(client, url, 60, data[60:120])
    assert over.status_code == 413 and "60" in over.get_json()["error"]
    assert _part_size(app, url) == 60
    assert client.head(url, headers=TUS).headers["Upload-Offset"] == "60"
    done = _patch(client, url, 60, data[60:100])
    assert done.status_code == 204 and "Tutti-Clip" in done.headers
    with app.app_context():
        clip = db.session.scalar(select(Clip).filter_by(token=done.headers["Tutti-Clip"]))
        assert app.extensions["tutti.storage"].path(clip.original_key).read_bytes() == data[:100]


def test_checksums_sha1_and_sha256_and_460_on_a_mismatch(app, client, campaign):
    import hashlib

    options = client.options("/api/v1/uploads")
    assert {"checksum", "expiration", "creation", "termination"} <= \
        set(options.headers["Tus-Extension"].split(","))
    assert set(options.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "sha256"}
    data = b"0123456789" * 10
    url = _create(client, len(data)).headers["Location"]

    def checksum(algorithm: str, chunk: bytes) -> str:
        return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, chunk).digest()).decode()}"

    good = client.patch(url, data=data[:40], headers={
        **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
        "Upload-Checksum": checksum("sha1", data[:40])})
    assert good.status_code == 204 and good.headers["Upload-Offset"] == "40"
    bad = client.patch(url, data=data[40:80], headers={
        **TUS, "Upload-Offset": "40", "Content-Type": "application/offset+octet-stream",
        "Upload-Checksum": checksum("sha256", b"something else")})
    assert bad.status_code == 460 and bad.headers["Upload-Offset"] == "40"
    assert _part_size(app, url) == 40  # the chunk was discarded
    unknown = client.patch(url, data=data[40:80], headers={
        **TUS, "Upload-Offset": "40", "Content-Type": "application/offset+octet-stream",
        "Upload-Checksum": checksum("md5", data[40:80])})
    assert unknown.status_code == 400 and _part_size(app, url) == 40
    done = client.patch(url, data=data[40:], headers={
        **TUS, "Upload-Offset": "40", "Content-Type": "application/offset+octet-stream",
        "Upload-Checksum": checksum("sha256", data[40:])})
    assert done.status_code == 204 and "Tutti-Clip" in done.headers


@pytest.mark.parametrize("length", ["-1", "1e6", "+5", "0x10", "ten"])
def test_an_invalid_upload_length_is_400_saying_what_a_length_is(client, campaign, length):
    """Red team, issue 15: ``Upload-Length: -1`` was answered "The file is empty"."""
    answer = client.post("/api/v1/uploads", headers={
        **TUS, "Upload-Length": length, "Upload-Metadata": _metadata(campaign=campaign)})
    assert answer.status_code == 400
    message = answer.get_json()["error"]
    assert "invalid" in message and "non-negative integer" in message, message
    assert "empty" not in message


def test_an_empty_file_and_a_missing_length_keep_their_own_answers(client, campaign):
    assert "empty" in _create(client, 0).get_json()["error"]
    missing = client.post("/api/v1/uploads", headers={**TUS, "Upload-Metadata": "x eA=="})
    assert missing.status_code == 400 and "required" in missing.get_json()["error"]


@pytest.mark.parametrize("header", ["sha1", "sha1 ", "sha256  ", "sha1 QUJD",
                                    "sha256 !!notbase64!!"])
def test_a_malformed_checksum_header_is_400_not_a_mismatch(app, client, campaign, header):
    """Red team, issue 15: ``Upload-Checksum: sha1`` (no digest) was answered 460, as if
    the bytes had been damaged on the way."""
    data = b"0123456789" * 10
    url = _create(client, len(data)).headers["Location"]
    answer = client.patch(url, data=data[:40], headers={
        **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
        "Upload-Checksum": header})
    assert answer.status_code == 400, answer.get_json()
    assert '"<algorithm> <base64 digest>"' in answer.get_json()["error"]
    assert _part_size(app, url) == 0  # nothing of the chunk was kept


def test_uploads_expire_and_are_cleaned_up(app, client, campaign):
    import time
    from email.utils import parsedate_to_datetime

    from portal.services import reconcile

    answer = _create(client, 100)
    expires = parsedate_to_datetime(answer.headers["Upload-Expires"]).timestamp()
    # nothing arrived yet (a lost creation answer leaves such a one): gone within the hour
    assert 0.9 * 3600 < expires - time.time() <= 3600
    url = answer.headers["Location"]
    patched = _patch(client, url, 0, b"x" * 10)
    # once bytes arrive, it waits TUTTI_UPLOAD_EXPIRE_HOURS for the rest
    assert 23.9 * 3600 < parsedate_to_datetime(patched.headers["Upload-Expires"]).timestamp() \
        - time.time() <= 24 * 3600
    assert "Upload-Expires" in client.head(url, headers=TUS).headers

    app.config["UPLOAD_EXPIRE_HOURS"] = 0
    stale = _create(client, 100).headers["Location"]
    time.sleep(0.05)
    assert client.head(stale, headers=TUS).status_code == 410
    assert _patch(client, stale, 0, b"x").status_code == 410
    with app.app_context():
        counts = reconcile()  # the periodic clean-up
    assert counts["stale_uploads"] == 1
    assert client.head(stale, headers=TUS).status_code == 404
    assert client.head(url, headers=TUS).status_code == 200  # the live one stays


def test_chunks_within_a_minute_keep_the_stored_expiry_and_the_body_stops_at_its_length(
        app, client, campaign):
    import io
    import time
    from email.utils import parsedate_to_datetime

    from portal.uploads import _Body

    url = _create(client, 100).headers["Location"]
    first = _patch(client, url, 0, b"x" * 10)
    upload_id = url.rstrip("/").rsplit("/", 1)[1]
    state = app.extensions["tutti.storage"].tmp_dir / "uploads" / f"{upload_id}.json"
    written = state.read_text()
    second = _patch(client, url, 10, b"y" * 10)
    assert second.status_code == 204 and second.headers["Upload-Offset"] == "20"
    # the state is not rewritten for every chunk (bench/README.md), and the expiry the
    # client is told is the stored one, a day away
    assert state.read_text() == written
    assert second.headers["Upload-Expires"] == first.headers["Upload-Expires"]
    assert 23.9 * 3600 < parsedate_to_datetime(second.headers["Upload-Expires"]).timestamp() \
        - time.time() <= 24 * 3600

    body = _Body(io.BytesIO(b"abcdefgh"), 5)  # never past Content-Length
    assert (body.read(3), body.read(3), body.read(3), body.short) == (b"abc", b"de", b"", False)
    cut = _Body(io.BytesIO(b"abc"), 5)  # the client went away after 3 bytes
    assert (cut.read(8), cut.read(8), cut.short) == (b"abc", b"", True)


def test_get_after_completion_gives_the_clip_and_its_status_url(client, campaign):
    data = b"v" * 50
    url = _create(client, len(data)).headers["Location"]
    progress = client.get(url, headers={"Accept": "application/json"}).get_json()
    assert progress["offset"] == 0 and progress["complete"] is False
    token = _patch(client, url, 0, data).headers["Tutti-Clip"]
    body = client.get(url, headers={"Accept": "application/json"}).get_json()
    assert body["id"] == token and body["complete"] is True
    assert body["status_url"].endswith(f"/clip/{token}")
    assert client.get(body["api_url"]).get_json()["id"] == token


# --- against a real HTTP server: tuspy, chunked bodies, a DELETE during a PATCH ---------

@pytest.fixture
def live(db_kind, tmp_path):
    import threading

    from werkzeug.serving import make_server

    from portal import services
    from tests.conftest import dispose, make_app

    app = make_app(db_kind, tmp_path, SERVER_NAME=None)
    with app.app_context():
        services.create_campaign("ode-to-joy", "Ode to Joy", parts=["Soprano", "Alto"])
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    dispose(app)


METADATA = {"campaign": "ode-to-joy", "name": "Ana", "part": "Alto", "location": "Lisbon",
            "consent": "yes", "filename": "me.mp4"}


def test_tuspy_uploads_with_checksums_and_resumes(live, media_files):
    from tusclient.client import TusClient

    app, base = live
    data = media_files["landscape"].read_bytes()
    client = TusClient(f"{base}/api/v1/uploads")
    first = client.uploader(file_path=str(media_files["landscape"]), chunk_size=16 * 1024,
                            metadata=METADATA, upload_checksum=True)
    first.upload_chunk()  # one chunk, then the "connection drops"
    assert first.offset == 16 * 1024
    again = client.uploader(file_path=str(media_files["landscape"]), url=first.url,
                            chunk_size=32 * 1024, metadata=METADATA, upload_checksum=True)
    assert again.offset == 16 * 1024  # asked the server with HEAD
    again.upload()
    import requests

    body = requests.get(first.url, headers={"Accept": "application/json"}, timeout=10).json()
    with app.app_context():
        clip = db.session.scalar(select(Clip).filter_by(token=body["id"]))
        assert clip.display_name == "Ana"
        assert app.extensions["tutti.storage"].path(clip.original_key).read_bytes() == data


def test_a_chunked_patch_beyond_the_length_is_413_over_http(live):
    import requests

    app, base = live
    answer = requests.post(f"{base}/api/v1/uploads", timeout=10, headers={
        **TUS, "Upload-Length": "100", "Upload-Metadata": _metadata(**METADATA)})
    url = urljoin(base + "/", answer.headers["Location"])  # relative without a base URL

    def body():  # no Content-Length: the server only finds out while reading
        yield b"a" * 60
        yield b"b" * 60

    over = requests.patch(url, data=body(), timeout=30, headers={
        **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert over.status_code == 413
    head = requests.head(url, headers=TUS, timeout=10)
    assert head.headers["Upload-Offset"] == "0" and _part_size(app, url) == 0


def test_a_delete_during_a_patch_ends_that_patch_with_410_and_leaves_no_file(live):
    import threading

    import requests

    app, base = live
    size = 8 << 20
    answer = requests.post(f"{base}/api/v1/uploads", timeout=10, headers={
        **TUS, "Upload-Length": str(size), "Upload-Metadata": _metadata(**METADATA)})
    url = urljoin(base + "/", answer.headers["Location"])
    deleted = threading.Event()
    result = {}

    def body():
        yield b"a" * (1 << 20)
        yield b"a" * (1 << 20)
        deleted.wait(30)
        for _ in range(6):
            yield b"b" * (1 << 20)

    def send():
        result["answer"] = requests.patch(url, data=body(), timeout=60, headers={
            **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})

    sender = threading.Thread(target=send)
    sender.start()
    import time

    deadline = time.monotonic() + 20
    while _part_size(app, url) < (1 << 20) and time.monotonic() < deadline:
        time.sleep(0.02)  # the PATCH is under way
    assert requests.delete(url, headers=TUS, timeout=10).status_code == 204
    deleted.set()
    sender.join(60)
    assert result["answer"].status_code in (404, 410)
    assert _upload_files(app) == []
    assert requests.head(url, headers=TUS, timeout=10).status_code == 404
    with app.app_context():
        assert db.session.scalars(select(Clip)).all() == []


def test_deleting_a_campaign_deletes_its_unfinished_uploads(app, organizer_client, client,
                                                            campaign, media_files):
    data = media_files["landscape"].read_bytes()
    url = _create(client, len(data)).headers["Location"]
    assert _patch(client, url, 0, data[:1000]).status_code == 204
    assert any(name.endswith(".part") for name in _upload_files(app))
    answer = organizer_client.post(f"/organize/c/{campaign}/delete", data={"confirm": campaign})
    assert answer.status_code == 303
    assert _upload_files(app) == []  # the .part and .json went with the campaign
    assert _patch(client, url, 1000, data[1000:]).status_code in (404, 410)


def test_an_upload_never_completes_into_a_new_campaign_with_the_same_slug(app, client,
                                                                          campaign, media_files):
    import shutil

    data = media_files["landscape"].read_bytes()
    url = _create(client, len(data)).headers["Location"]
    assert _patch(client, url, 0, data[:1000]).status_code == 204
    folder = app.extensions["tutti.storage"].tmp_dir / "uploads"
    saved = folder.parent / "saved"
    shutil.copytree(folder, saved)  # as if the upload's state outlived the deletion
    with app.app_context():
        services.delete_campaign(services.get_campaign(campaign))
        shutil.rmtree(folder)
        shutil.copytree(saved, folder)
        services.create_campaign(campaign, "Someone else's choir", parts=["Alto"])
    answer = _patch(client, url, 1000, data[1000:])
    assert answer.status_code == 410 and "deleted" in answer.get_json()["error"]
    with app.app_context():
        assert db.session.scalar(select(func.count(Clip.id))) == 0
    assert _upload_files(app) == []


# --- completion never lost; same file, same submission; any deployment -----------------

def test_every_answer_about_a_finished_upload_carries_the_clip_and_its_status_url(client,
                                                                                   campaign):
    data = b"w" * 70
    url = _create(client, len(data)).headers["Location"]
    assert url.startswith("/api/v1/uploads/")  # a path: right behind any proxy
    done = _patch(client, url, 0, data)
    token = done.headers["Tutti-Clip"]
    status_path = f"/clip/{token}"
    assert done.headers["Tutti-Status-Url"] == status_path
    # the answer to that PATCH was lost: the client asks with HEAD ...
    head = client.head(url, headers=TUS)
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(data))
    assert head.headers["Tutti-Clip"] == token and head.headers["Tutti-Status-Url"] == status_path
    # ... or sends the last chunk again, or an empty PATCH at the end: the same answer
    for offset, chunk in ((0, data), (len(data), b"")):
        again = _patch(client, url, offset, chunk)
        assert again.status_code == 204 and again.headers["Tutti-Clip"] == token
        assert again.headers["Tutti-Status-Url"] == status_path
        assert again.headers["Upload-Offset"] == str(len(data))
    body = client.get(url, headers={"Accept": "application/json"}).get_json()
    assert body["id"] == token and body["status_url"].endswith(status_path)
    assert client.get(status_path).status_code == 200


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _ends(data: bytes, span: int) -> dict[str, str]:
    span = min(span, len(data))
    return {"head_sha256": _sha(data[:span]), "tail_sha256": _sha(data[-span:])}


def test_a_resume_with_another_file_of_the_same_name_and_size_makes_no_clip(app, client,
                                                                           campaign):
    from portal.uploads import FINGERPRINT_BYTES

    size = FINGERPRINT_BYTES + 4096
    first = bytes([1]) * size
    second = bytes([2]) * size
    # the head of the first file arrived, then the page was reloaded with the second one
    url = _create(client, size, **_ends(first, FINGERPRINT_BYTES)).headers["Location"]
    half = FINGERPRINT_BYTES + 1000
    assert _patch(client, url, 0, first[:half]).status_code == 204
    hybrid = _patch(client, url, half, second[half:])
    assert hybrid.status_code == 460 and "another file" in hybrid.get_json()["error"]
    assert "Tutti-Clip" not in hybrid.headers
    assert client.head(url, headers=TUS).status_code == 404  # removed: start again
    assert _upload_files(app) == []
    # the second file's bytes sent into an upload made for the first: caught at the head
    url = _create(client, size, **_ends(first, FINGERPRINT_BYTES)).headers["Location"]
    wrong = _patch(client, url, 0, second[:FINGERPRINT_BYTES])
    assert wrong.status_code == 460
    with app.app_context():
        assert db.session.scalar(select(func.count(Clip.id))) == 0
    # the right file with its own fingerprint goes through, small files hash whole
    url = _create(client, size, **_ends(second, FINGERPRINT_BYTES)).headers["Location"]
    assert _patch(client, url, 0, second).status_code == 204
    small = b"tiny take"
    url = _create(client, len(small), **_ends(small, FINGERPRINT_BYTES)).headers["Location"]
    assert "Tutti-Clip" in _patch(client, url, 0, small).headers
    with app.app_context():
        assert db.session.scalar(select(func.count(Clip.id))) == 2
    bad = _create(client, 10, head_sha256="not-hex")
    assert bad.status_code == 400 and "head_sha256" in bad.get_json()["error"]


def _samples(data: bytes) -> str:
    from portal.uploads import SAMPLE_BYTES, sample_starts

    return _sha(b"".join(data[s:s + SAMPLE_BYTES] for s in sample_starts(len(data))))


def test_the_same_ends_with_another_middle_never_make_a_mixed_clip(app, client, campaign):
    """Two files with the same size and the same first and last megabyte (padding, a
    long constant header) but another middle: a resume with the second is caught by
    ``samples_sha256`` when the last byte arrives, and no clip is made (a red-team
    case: the hybrid was accepted and normalized)."""
    from portal.uploads import FINGERPRINT_BYTES, sample_starts

    size = 3 * FINGERPRINT_BYTES
    ends = bytes([7]) * FINGERPRINT_BYTES
    first = ends + bytes([1]) * (size - 2 * len(ends)) + ends
    second = ends + bytes([2]) * (size - 2 * len(ends)) + ends
    assert len(sample_starts(size)) == 16 and _ends(first, FINGERPRINT_BYTES) == _ends(
        second, FINGERPRINT_BYTES)
    url = _create(client, size, **_ends(second, FINGERPRINT_BYTES),
                  samples_sha256=_samples(second)).headers["Location"]
    half = size // 2
    assert _patch(client, url, 0, first[:half]).status_code == 204  # the first file's bytes
    mixed = _patch(client, url, half, second[half:])
    assert mixed.status_code == 460 and "Tutti-Clip" not in mixed.headers
    assert client.head(url, headers=TUS).status_code == 404
    with app.app_context():
        assert db.session.scalar(select(func.count(Clip.id))) == 0
    url = _create(client, size, **_ends(second, FINGERPRINT_BYTES),
                  samples_sha256=_samples(second)).headers["Location"]
    assert "Tutti-Clip" in _patch(client, url, 0, second).headers
    assert sample_starts(2 * FINGERPRINT_BYTES) == []  # the ends cover a small file
    bad = _create(client, 10, samples_sha256="0" * 63)
    assert bad.status_code == 400 and "samples_sha256" in bad.get_json()["error"]


def test_urls_behind_a_tls_proxy_with_trusted_proxies(db_kind, tmp_path):
    from tests.conftest import dispose, make_app

    # absolute links are built from a host only when it is trusted (portal.links)
    app = make_app(db_kind, tmp_path, SERVER_NAME=None, TRUSTED_PROXIES=1,
                   TRUSTED_HOSTS="choir.example.org")
    try:
        with app.app_context():
            services.create_campaign("ode-to-joy", "Ode to Joy", parts=["Alto"])
        client = app.test_client()
        proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "choir.example.org",
                 "X-Forwarded-For": "203.0.113.9"}
        answer = client.post("/api/v1/uploads", headers={
            **TUS, **proxy, "Upload-Length": "5",
            "Upload-Metadata": _metadata(campaign="ode-to-joy", name="Ana", part="Alto",
                                         consent="yes", filename="a.mp4")})
        url = answer.headers["Location"]
        assert not url.startswith("http:")
        assert "Strict-Transport-Security" in answer.headers  # it saw HTTPS
        client.patch(url, data=b"12345", headers={
            **TUS, **proxy, "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream"})
        body = client.get(url, headers={**proxy, "Accept": "application/json"}).get_json()
        assert body["status_url"].startswith("https://choir.example.org/clip/")
        assert body["api_url"].startswith("https://choir.example.org/api/v1/clips/")
    finally:
        dispose(app)


def test_a_creation_repeated_after_its_answer_was_lost_gets_the_same_upload(app, client,
                                                                             campaign):
    from portal.uploads import drop_stale_uploads

    data = b"a take" * 100
    ends = _ends(data, 1 << 20)
    first = _create(client, len(data), **ends).headers["Location"]
    again = _create(client, len(data), **ends)  # the first answer never arrived
    assert again.status_code == 201 and again.headers["Location"] == first
    assert len([n for n in _upload_files(app) if n.endswith(".json")]) == 1  # none left empty
    # another form (or file) is another upload; so is any creation once bytes arrived
    assert _create(client, len(data), name="Bo", **ends).headers["Location"] != first
    assert _patch(client, first, 0, data[:10]).status_code == 204
    later = _create(client, len(data), **ends).headers["Location"]
    assert later != first
    assert "Tutti-Clip" in _patch(client, first, 10, data[10:]).headers
    # without the fingerprint, no twin is looked for
    plain = _create(client, 5).headers["Location"]
    assert _create(client, 5).headers["Location"] != plain
    # the sweep forgets creation keys whose upload is gone
    keys = app.extensions["tutti.storage"].tmp_dir / "uploads" / "keys"
    assert client.delete(later, headers=TUS).status_code == 204
    before = len(list(keys.iterdir()))
    drop_stale_uploads(app.extensions["tutti.storage"].tmp_dir)
    assert len(list(keys.iterdir())) == before - 1


def test_an_upload_under_way_when_the_campaign_closes_still_becomes_a_clip(app, client,
                                                                         campaign):
    """Closing stops new uploads, not the ones on their way: a take half sent when the
    organizer closes the campaign is finished into a clip (a red-team note: the last
    PATCH answered 403 and the take was lost), while a new upload is refused."""
    data = b"half a take, then the rest" * 100
    url = _create(client, len(data)).headers["Location"]
    assert _patch(client, url, 0, data[:1000]).status_code == 204
    with app.app_context():
        services.get_campaign(campaign).is_open = False
        db.session.commit()
    refused = _create(client, 10)
    assert refused.status_code == 403 and "closed" in refused.get_json()["error"]
    done = _patch(client, url, 1000, data[1000:])
    assert done.status_code == 204 and "Tutti-Clip" in done.headers
    with app.app_context():
        assert db.session.scalar(select(func.count(Clip.id))) == 1


@pytest.mark.parametrize("crash", ["before the clip", "before its state names it"])
def test_a_server_killed_after_the_last_byte_still_makes_exactly_one_clip(
        app, client, campaign, media_files, monkeypatch, crash):
    """Red team, issue 15: the web process SIGKILLed just after an upload's last byte left
    the bytes whole and no clip (HEAD said offset = length and no Tutti-Clip, and
    tus-js-client then sends nothing more), or a clip the upload did not name, which an
    empty PATCH then doubled. Now HEAD, GET and the reconciler finish such an upload, once."""
    from portal import uploads

    data = media_files["landscape"].read_bytes()
    url = _create(client, len(data)).headers["Location"]

    class Killed(BaseException):
        pass

    def die(*_args, **_kwargs):
        raise Killed()

    if crash == "before the clip":
        monkeypatch.setattr(uploads, "_finish", die)
    else:
        monkeypatch.setattr(uploads, "_commit_state", die)
    with pytest.raises(Killed):
        _patch(client, url, 0, data)
    monkeypatch.undo()
    head = client.head(url, headers=TUS)  # how a client resumes
    assert head.headers["Upload-Offset"] == str(len(data))
    token = head.headers["Tutti-Clip"]
    assert client.get(url).get_json()["clip"] == token
    again = _patch(client, url, len(data), b"")  # a client that sends an empty last PATCH
    assert again.status_code == 204 and again.headers["Tutti-Clip"] == token
    with app.app_context():
        clips = db.session.scalars(select(Clip)).all()
        assert [c.token for c in clips] == [token]
        assert app.extensions["tutti.storage"].path(clips[0].original_key).read_bytes() == data


def test_the_reconciler_finishes_a_whole_upload_nobody_asks_about(app, client, campaign,
                                                                  media_files, monkeypatch):
    import os
    import time

    from portal import uploads

    data = media_files["landscape"].read_bytes()
    url = _create(client, len(data)).headers["Location"]

    def die(*_args, **_kwargs):
        raise SystemExit()

    monkeypatch.setattr(uploads, "_finish", die)
    with pytest.raises(SystemExit):
        _patch(client, url, 0, data)
    monkeypatch.undo()
    part = app.extensions["tutti.storage"].tmp_dir / "uploads" / (url.rsplit("/", 1)[1] + ".part")
    old = time.time() - 120
    os.utime(part, (old, old))
    with app.app_context():
        assert services.reconcile()["whole_uploads"] == 1
        assert services.reconcile()["whole_uploads"] == 0
        assert db.session.scalar(select(func.count(Clip.id))) == 1
    assert client.head(url, headers=TUS).headers["Tutti-Clip"]


def test_two_uploads_of_one_take_make_one_clip(app, client, campaign):
    """Red team W1: two tabs of one browser sent the same kept take and made two clips.
    The page names the take (``take_id``, kept with it in IndexedDB) beside its ends'
    SHA-256: a second creation of the take continues the first upload (under way) or is
    told it is complete, with its clip; two uploads that raced past that (or one sent
    after the first's state was swept) finish into the same clip, whose token derives
    from the take. The bytes are part of the take's key: a take id with other bytes is
    another take, so an id alone never leads to someone's clip."""
    from portal.uploads import FINGERPRINT_BYTES, drop_stale_uploads

    size = FINGERPRINT_BYTES + 5000
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    take = {"take_id": "take-3f9a1c0e5b7d4e21", **_ends(data, FINGERPRINT_BYTES)}

    def clips() -> list[str]:
        with app.app_context():
            return list(db.session.scalars(select(Clip.token)))

    first = _create(client, size, **take).headers["Location"]
    assert _patch(client, first, 0, data[:1000]).status_code == 204
    # the second tab asks (another name typed there): the same upload, resumed from the
    # server's offset (its PATCH at 0 is told where the upload is)
    again = _create(client, size, name="Ana M.", **take)
    assert again.status_code == 201 and again.headers["Location"] == first
    assert again.headers["Upload-Offset"] == "1000"
    conflict = _patch(client, first, 0, data)
    assert conflict.status_code == 409 and conflict.headers["Upload-Offset"] == "1000"
    done = _patch(client, first, 1000, data[1000:])
    token = done.headers["Tutti-Clip"]
    # after it arrived: the same upload, and a PATCH there answers with the clip
    late = _create(client, size, **take)
    assert late.headers["Location"] == first
    assert _patch(client, first, 0, data).headers["Tutti-Clip"] == token
    # raced: the take's key gone (as two creations at once each found none), or the
    # upload's state swept a day after: a new upload, which still finishes into that clip
    drop_stale_uploads(app.extensions["tutti.storage"].tmp_dir, max_age=0)
    raced = _create(client, size, **take).headers["Location"]
    assert raced != first
    answer = _patch(client, raced, 0, data)
    assert answer.status_code == 204 and answer.headers["Tutti-Clip"] == token
    assert clips() == [token]
    assert [n for n in _upload_files(app) if n.endswith(".part")] == []  # its bytes dropped
    # another take (another id), or other bytes under this id: another clip
    other = {"take_id": "take-77aa00bb11cc22dd", **_ends(data, FINGERPRINT_BYTES)}
    url = _create(client, size, **other).headers["Location"]
    assert _patch(client, url, 0, data).headers["Tutti-Clip"] != token
    changed = data[:-1] + b"y"
    url = _create(client, size, **{**take, **_ends(changed, FINGERPRINT_BYTES)}).headers[
        "Location"]
    assert url != first
    assert _patch(client, url, 0, changed).headers["Tutti-Clip"] not in (token,)
    assert len(clips()) == 3
    # the take's clip deleted by an organizer: the take sent again is a new clip (with
    # the take's token again), not an answer naming a clip that is gone
    with app.app_context():
        db.session.delete(db.session.scalar(select(Clip).filter_by(token=token)))
        db.session.commit()
    anew = _create(client, size, **take).headers["Location"]
    assert anew not in (first, raced)
    assert _patch(client, anew, 0, data).headers["Tutti-Clip"] == token
    assert len(clips()) == 3
    # a take id the page never makes, or one without the bytes' ends, is refused
    odd = _create(client, size, take_id="a b", **_ends(data, FINGERPRINT_BYTES))
    assert odd.status_code == 400 and "take_id" in odd.get_json()["error"]
    bare = _create(client, size, take_id="take-3f9a1c0e5b7d4e21")
    assert bare.status_code == 400 and "head_sha256" in bare.get_json()["error"]


def test_a_take_token_is_not_derived_from_the_take_alone(app, client, campaign):
    """The token of a take's clip is keyed by the app's secret: the same take sent to
    two portals (other SECRET_KEYs) gets two unrelated tokens, so an old page's take id
    of about 30 random bits and the take's bytes do not give its private link."""
    from portal.uploads import take_clip_token

    with app.app_context():
        mine = take_clip_token("0" * 64)
        app.config["SECRET_KEY"] = "another portal"
        theirs = take_clip_token("0" * 64)
    assert mine != theirs and len(mine) == 22


# --- a full disk while an upload finishes; DELETE of an upload that is a clip -------------

def _clip_tokens(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(Clip.token)))


def _temporaries(app) -> list[str]:
    """Temporary files left beside the uploads or in the clips' folders."""
    storage = app.extensions["tutti.storage"]
    found = [p.name for p in (storage.tmp_dir / "uploads").glob("*.tmp")]
    clips = storage.root / "clips"
    found += [p.name for p in clips.rglob(".*")] if clips.exists() else []
    return found


def _full_disk_at(monkeypatch, step: str) -> None:
    """ENOSPC where the media disk would first refuse, at ``step`` of the last chunk:
    ``chunk`` (the .part's fsync), ``state`` (the fsync of the state that names the
    clip), ``original`` (linking the original into the clip's folder: its mkdir),
    ``rename`` (putting the state in place)."""
    import errno
    import os

    from portal import uploads
    from portal.storage import Storage

    def full():
        return OSError(errno.ENOSPC, "No space left on device")

    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        suffix = {"chunk": ".part", "state": ".json.tmp"}.get(step)
        if suffix and os.readlink(f"/proc/self/fd/{fd}").endswith(suffix):
            raise full()
        return real_fsync(fd)

    def replace(src, dst, **kwargs):
        if step == "rename" and str(src).endswith(".json.tmp"):
            raise full()
        return real_replace(src, dst, **kwargs)

    def put_file(self, key, src, move=False):
        raise full()

    monkeypatch.setattr(uploads.os, "fsync", fsync)
    monkeypatch.setattr(uploads.os, "replace", replace)
    if step == "original":
        monkeypatch.setattr(Storage, "put_file", put_file)


@pytest.mark.parametrize("step", ["chunk", "state", "original"])
def test_a_full_disk_before_the_clip_is_made_answers_507_and_makes_no_clip(
        app, client, campaign, monkeypatch, step):
    """Red team ops3, W2: the last chunk answered 507 "nothing of this upload was kept"
    while the clip had been made (the state naming it could not be written), and doing
    as told made a second clip. Now a full disk at any step before the clip exists
    answers 507 with the offset to resume from, makes no clip and leaves no temporary
    file; resuming later makes exactly one clip."""
    data = bytes(range(256)) * 40
    url = _create(client, len(data)).headers["Location"]
    half = len(data) // 2
    assert _patch(client, url, 0, data[:half]).status_code == 204
    _full_disk_at(monkeypatch, step)
    last = _patch(client, url, half, data[half:])
    assert last.status_code == 507
    assert last.headers["Upload-Offset"] == str(half) and "Tutti-Clip" not in last.headers
    assert f"resume from byte {half}" in last.get_json()["error"]
    assert "nothing of this upload" not in last.get_json()["error"]
    head = client.head(url, headers=TUS)
    assert head.status_code == 200 and head.headers["Upload-Offset"] == str(half)
    assert "Tutti-Clip" not in head.headers
    assert _clip_tokens(app) == [] and _temporaries(app) == []
    monkeypatch.undo()  # space freed: the client resumes as told
    done = _patch(client, url, half, data[half:])
    assert done.status_code == 204 and _clip_tokens(app) == [done.headers["Tutti-Clip"]]
    assert _temporaries(app) == []


def test_a_clip_whose_state_cannot_be_written_is_named_in_every_answer(app, client, campaign,
                                                                       monkeypatch):
    """The clip was made and the state naming it could not be put in place: the PATCH,
    HEAD, GET, a repeated PATCH and DELETE all name the clip (never "not kept", never a
    second clip), no .tmp is left, and the reconciler writes the state once it can."""
    import os
    import time

    data = b"a whole take" * 50
    url = _create(client, len(data)).headers["Location"]
    _full_disk_at(monkeypatch, "rename")
    done = _patch(client, url, 0, data)
    assert done.status_code == 204 and done.headers["Upload-Offset"] == str(len(data))
    token = done.headers["Tutti-Clip"]
    head = client.head(url, headers=TUS)
    assert head.status_code == 200 and head.headers["Tutti-Clip"] == token
    assert client.get(url, headers={"Accept": "application/json"}).get_json()["id"] == token
    assert _patch(client, url, len(data), b"").headers["Tutti-Clip"] == token
    assert client.delete(url, headers=TUS).status_code == 409
    assert _clip_tokens(app) == [token] and _temporaries(app) == []
    monkeypatch.undo()
    uploads_dir = app.extensions["tutti.storage"].tmp_dir / "uploads"
    for path in uploads_dir.glob("*.part"):  # kept until the state names the clip
        os.utime(path, (time.time() - 120, time.time() - 120))
    with app.app_context():
        services.reconcile()
    import json

    states = [json.loads(p.read_text()) for p in uploads_dir.glob("*.json")]
    assert [s["clip"] for s in states] == [token]
    assert list(uploads_dir.glob("*.part")) == []
    assert _clip_tokens(app) == [token]


def test_a_full_disk_at_creation_leaves_no_upload(app, client, campaign, monkeypatch):
    _full_disk_at(monkeypatch, "state")
    created = _create(client, 100)
    assert created.status_code == 507
    assert _upload_files(app) == [] and _temporaries(app) == []


def test_deleting_an_upload_that_is_a_clip_is_409_naming_the_clip(app, client, campaign):
    """Red team ops3, W4: DELETE of a finished upload answered 204 ("terminated") while
    its clip went on to moderation. Now 409, naming the clip and the status page where
    the participant withdraws it; the clip and the upload's answers stay."""
    data = b"finished take" * 20
    url = _create(client, len(data)).headers["Location"]
    token = _patch(client, url, 0, data).headers["Tutti-Clip"]
    refused = client.delete(url, headers=TUS)
    assert refused.status_code == 409
    assert refused.headers["Tutti-Clip"] == token
    assert refused.headers["Tutti-Status-Url"] == f"/clip/{token}"
    body = refused.get_json()
    assert body["id"] == token and body["status_url"].endswith(f"/clip/{token}")
    assert "withdraw" in body["error"] and f"/clip/{token}" in body["error"]
    assert client.head(url, headers=TUS).headers["Tutti-Clip"] == token
    assert _clip_tokens(app) == [token]


def test_a_delete_during_the_last_patch_is_410_for_the_patch_never_500(app, client, campaign,
                                                                       monkeypatch):
    """Red team ops3, W4: a DELETE that removed the .part while the last PATCH checked
    the file's tail answered that PATCH with 500 (FileNotFoundError). Now the PATCH
    answers 410, the DELETE 204, and there is no clip and no file."""
    from portal import uploads

    data = bytes(range(256)) * 20
    url = _create(client, len(data), **_ends(data, 1 << 20)).headers["Location"]
    real = uploads._fingerprint_mismatch
    answers = []

    def deleted_meanwhile(*args, **kwargs):
        answers.append(client.delete(url, headers=TUS).status_code)
        return real(*args, **kwargs)

    monkeypatch.setattr(uploads, "_fingerprint_mismatch", deleted_meanwhile)
    last = _patch(client, url, 0, data)
    assert answers == [204] and last.status_code == 410
    assert _clip_tokens(app) == [] and _upload_files(app) == []
