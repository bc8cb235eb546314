"""A portal safe on the open internet: redirects stay on the site, every response
carries the security headers, private media is not cached by shared caches, bad
input is a 400 naming the field on SQLite and PostgreSQL alike (never a 5xx),
and user text is escaped on every page that shows it."""

from __future__ import annotations

import base64
import io
from urllib.parse import quote, urlsplit

import pytest
from flask import url_for
from sqlalchemy import select

from portal import services
from portal.extensions import db
from portal.models import Clip, Render
from portal.security import safe_next
from tests.conftest import ORGANIZER, ensure_organizer

OPEN_REDIRECTS = [
    "/%09/evil.example/", "//evil.example/", "https://evil.example/", "/\\evil.example/",
    "\\/evil.example/", "/%5Cevil.example/", "http:evil.example", "javascript:alert(1)",
    "/%0D%0A/evil.example/", "%2F%2Fevil.example", "///evil.example/", " //evil.example/",
    "/%E2%80%8B/evil.example/", "https:/evil.example", "//evil.example@tutti.test/",
]


def _offsite(location: str) -> bool:
    parts = urlsplit(location)
    return bool(parts.scheme and parts.scheme not in ("http", "https")) or \
        parts.netloc not in ("", "tutti.test") or location.startswith("//") or \
        "evil" in location


@pytest.mark.parametrize("payload", OPEN_REDIRECTS)
def test_log_in_never_redirects_off_the_site(app, client, payload):
    with app.app_context():
        ensure_organizer()
    answer = client.post(f"/organize/login?next={payload}",
                         data={"email": ORGANIZER[0], "password": ORGANIZER[1]})
    assert answer.status_code == 303
    assert not _offsite(answer.headers["Location"]), answer.headers["Location"]
    assert answer.headers["Location"].endswith("/organize/")


def test_the_moderate_form_next_stays_on_the_site(app, organizer_client, campaign):
    with app.app_context():
        clip = Clip(campaign=services.get_campaign(campaign), display_name="Ana",
                    original_key="x", status="normalized")
        db.session.add(clip)
        db.session.commit()
        clip_id = clip.id
    for payload in ["//evil.example/", "/\t/evil.example/", "https://evil.example/x"]:
        answer = organizer_client.post(f"/organize/clips/{clip_id}/moderate",
                                       data={"decision": "approved", "next": payload})
        assert answer.status_code == 303 and not _offsite(answer.headers["Location"])
    kept = organizer_client.post(f"/organize/clips/{clip_id}/moderate",
                                 data={"decision": "declined", "next": "/organize/?x=1"})
    assert kept.headers["Location"] == "/organize/?x=1"


def test_safe_next_keeps_paths_of_this_site():
    assert safe_next("/organize/c/a?status=approved", "/") == "/organize/c/a?status=approved"
    for payload in OPEN_REDIRECTS:
        from urllib.parse import unquote

        assert safe_next(unquote(payload), "/fallback") in ("/fallback",) or \
            not _offsite(safe_next(unquote(payload), "/fallback"))
    assert safe_next(None, "/f") == "/f" and safe_next("relative/path", "/f") == "/f"


# --- headers ------------------------------------------------------------------------

SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy")


def _check_headers(answer, where: str) -> None:
    for name in SECURITY_HEADERS:
        assert name in answer.headers, f"{where}: no {name}"
    csp = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp, where
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    if "/embed" in where:
        assert "frame-ancestors *" in csp and "X-Frame-Options" not in answer.headers
    else:
        assert "frame-ancestors 'none'" in csp, where
        assert answer.headers["X-Frame-Options"] == "DENY", where


def _published_campaign(app, slug: str = "ode-to-joy"):
    """A clip with a thumbnail and a published render with a file, for media checks."""
    store = app.extensions["tutti.storage"]
    with app.app_context():
        campaign = services.get_campaign(slug)
        clip = Clip(campaign=campaign, part=campaign.parts[0], display_name="Ana",
                    location="Lisbon", original_key="x", status="approved")
        db.session.add(clip)
        db.session.flush()
        clip.thumbnail_key = f"clips/{clip.media_id}/thumb.jpg"
        store.path_for_writing(clip.thumbnail_key).write_bytes(b"\xff\xd8jpeg")
        job = Render(campaign=campaign, kind="final", status="done", clip_ids=[clip.id])
        preview = Render(campaign=campaign, kind="preview", status="done")
        db.session.add_all([job, preview])
        db.session.flush()
        job.output_key = f"renders/{slug}/{job.token}/mashup.mp4"
        preview.output_key = f"renders/{slug}/{preview.token}/mashup.mp4"
        for key in (job.output_key, preview.output_key):
            store.path_for_writing(key).write_bytes(b"mp4 bytes")
        campaign.published_render_id = job.id
        db.session.commit()
        return {"slug": slug, "clip_id": clip.id, "token": clip.token, "render_id": job.id,
                "thumb": clip.thumbnail_key, "output": job.output_key,
                "preview": preview.output_key}


def test_every_get_route_answers_with_the_security_headers(app, organizer_client, campaign):
    ids = _published_campaign(app)
    with app.app_context():
        invite = services.create_invite(services.get_campaign(campaign), "moderator")
    values = {"slug": ids["slug"], "token": ids["token"], "clip_id": ids["clip_id"],
              "render_id": ids["render_id"], "key": ids["output"], "filename": "app.js",
              "media_id": ids["thumb"].split("/")[1], "name": "thumb.jpg",
              "upload_id": "x" * 32}
    checked = set()
    with app.test_request_context():
        rules = list(app.url_map.iter_rules())
    for rule in rules:
        if "GET" not in rule.methods:
            continue
        args = {name: values[name] for name in rule.arguments}
        if rule.endpoint == "organize.invite":
            args["token"] = invite
        with app.test_request_context():
            url = url_for(rule.endpoint, **args)
        answer = organizer_client.get(url)
        assert answer.status_code < 500, url
        _check_headers(answer, url)
        checked.add(rule.endpoint.split(".")[0])
    assert checked >= {"participate", "organize", "watch", "api", "uploads", "static"}
    # error pages, posts and other methods too
    _check_headers(organizer_client.get("/no/such/page"), "404")
    _check_headers(organizer_client.options("/api/v1/uploads"), "OPTIONS")
    _check_headers(organizer_client.post("/api/v1/campaigns/nope/clips"), "POST 404")
    _check_headers(organizer_client.post(f"/organize/c/{campaign}/render",
                                         data={"kind": "preview"}), "POST redirect")


def test_private_media_is_not_kept_by_shared_caches(app, client, campaign):
    from portal.watch import clip_media_url

    ids = _published_campaign(app)
    with app.test_request_context():  # a clip's file by the signed URL its pages give
        thumb = client.get(clip_media_url(db.session.get(Clip, ids["clip_id"]),
                                          "thumbnail_key"))
    assert thumb.status_code == 200
    assert "private" in thumb.headers["Cache-Control"]
    assert "public" not in thumb.headers["Cache-Control"]
    _check_headers(thumb, "media")
    status_page = client.get(f"/clip/{ids['token']}")
    assert "no-store" in status_page.headers["Cache-Control"]
    status_json = client.get(f"/api/v1/clips/{ids['token']}")  # name, place, media URLs
    assert status_json.status_code == 200
    assert "no-store" in status_json.headers["Cache-Control"]
    assert "no-store" in client.get("/api/v1/clips/no-such-clip").headers["Cache-Control"]
    tus = client.options("/api/v1/uploads")
    assert "no-store" in tus.headers["Cache-Control"]
    preview = client.get(f"/media/{ids['preview']}")
    assert "private" in preview.headers["Cache-Control"]
    published = client.get(f"/media/{ids['output']}", headers={"Range": "bytes=0-3"})
    assert published.status_code == 206
    assert "private" not in published.headers["Cache-Control"]
    assert published.headers["X-Content-Type-Options"] == "nosniff"


def test_only_the_embed_route_may_be_framed(app, client, campaign):
    _published_campaign(app)
    embed = client.get(f"/watch/{campaign}/embed")
    assert embed.status_code == 200 and b"<video" in embed.data
    _check_headers(embed, "/embed")
    _check_headers(client.get(f"/watch/{campaign}"), "/watch")


def test_pages_have_no_inline_script(app, organizer_client, campaign):
    ids = _published_campaign(app)
    for url in ["/", f"/c/{campaign}", f"/clip/{ids['token']}", f"/watch/{campaign}",
                f"/watch/{campaign}/embed", "/organize/", f"/organize/c/{campaign}",
                f"/organize/clips/{ids['clip_id']}", f"/organize/c/{campaign}/members",
                "/organize/account", "/organize/login"]:
        page = organizer_client.get(url).get_data(as_text=True)
        import re

        for tag in re.findall(r"<script[^>]*>", page):
            assert "src=" in tag, (url, tag)
        assert not re.search(r"<script[^>]*>\s*[^<\s]", page), url
        assert not re.search(r"\son[a-z]+=", page), url
        assert " style=" not in page, url


# --- bad input --------------------------------------------------------------------------

def _tus_create(client, **fields):
    meta = {"campaign": "ode-to-joy", "name": "Ana", "part": "Alto", "location": "Lisbon",
            "consent": "yes", "filename": "me.mp4"}
    meta.update(fields)
    header = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in meta.items())
    return client.post("/api/v1/uploads", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": "100", "Upload-Metadata": header})


def _upload(client, slug="ode-to-joy", filename="me.mp4", **fields):
    data = {"name": "Ana", "part": "Alto", "location": "Lisbon", "consent": "yes"}
    data.update(fields)
    data["file"] = (io.BytesIO(b"not really a video"), filename)
    return client.post(f"/api/v1/campaigns/{slug}/clips", data=data,
                       content_type="multipart/form-data")


LONG = "x" * 10_000


def test_the_bad_input_corpus_is_a_400_naming_the_field_never_a_5xx(app, organizer_client,
                                                                     campaign):
    client = organizer_client
    expected = [
        # campaign form
        (lambda: client.post("/organize/campaigns", data={"slug": "long-title", "title": LONG}),
         "title"),
        (lambda: client.post("/organize/campaigns", data={"slug": "long-part", "title": "T",
                                                          "parts": "A" * 200}), "parts"),
        (lambda: client.post("/organize/campaigns", data={"slug": "nul-title",
                                                          "title": "Ode\x00"}), "title"),
        (lambda: client.post("/organize/campaigns", data={"slug": "ctl-title",
                                                          "title": "Ode\x1b[31m"}), "title"),
        (lambda: client.post("/organize/campaigns", data={"slug": "long-desc", "title": "T",
                                                          "description": LONG}), "description"),
        # uploads (multipart)
        (lambda: _upload(client, name="Ana\x00"), "name"),
        (lambda: _upload(client, name=LONG), "name"),
        (lambda: _upload(client, location="Lisbon\x00"), "location"),
        (lambda: _upload(client, location="L" * 200), "location"),
        (lambda: _upload(client, filename="me\x00.mp4"), "filename"),
        (lambda: _upload(client, part="Alto\x00"), "part"),
        (lambda: _upload(client, part="P" * 200), "part"),
        # resumable uploads: refused at creation, before any byte is sent
        (lambda: _tus_create(client, name="Ana\x00"), "name"),
        (lambda: _tus_create(client, location="\x00"), "location"),
        (lambda: _tus_create(client, location=LONG), "location"),
        (lambda: _tus_create(client, filename="a\x00b.mp4"), "filename"),
        (lambda: _tus_create(client, name=LONG), "name"),
        # log-in and query strings
        (lambda: client.post("/organize/login", data={"email": "a\x00@b", "password": "x"}),
         "email"),
        (lambda: client.get(f"/organize/c/{campaign}?status=%00"), "status"),
    ]
    for send, field in expected:
        answer = send()
        assert answer.status_code == 400, (field, answer.status_code, answer.data[:300])
        if answer.is_json:
            assert answer.get_json()["field"] == field
        else:
            assert field in answer.get_data(as_text=True) or answer.status_code == 400
    # never a 5xx, whatever the answer
    others = [
        client.get("/c/%00"), client.get("/clip/%00"), client.get("/api/v1/clips/%00"),
        client.get("/api/v1/campaigns/%00"), client.get("/watch/%00"), client.get("/media/%00"),
        client.get("/organize/c/%00"), client.get(f"/c/{LONG}"), client.get(f"/clip/{LONG}"),
        client.post("/organize/login", data={"email": LONG, "password": LONG}),
        _tus_create(client, campaign="ode\x00"), _tus_create(client, campaign=LONG),
        _upload(client, filename="n" * 1000 + ".mp4"),
        client.post(f"/organize/c/{campaign}/members", data={"email": "\x00", "role": "owner"}),
        client.post(f"/organize/c/{campaign}/members", data={"email": LONG, "role": "owner"}),
        client.post(f"/organize/c/{campaign}/invites", data={"role": "x\x00"}),
        client.get(f"/organize/invite/{LONG}"), client.get("/organize/invite/%00"),
        client.post(f"/organize/c/{campaign}/render", data={"kind": "final\x00"}),
        client.post(f"/organize/c/{campaign}/render", data={"kind": LONG, "layout": LONG}),
        client.get(f"/organize/c/{campaign}?status={LONG}"),
    ]
    for answer in others:
        assert answer.status_code < 500, (answer.request.path[:80], answer.data[:300])
    # a long file name is kept, shortened, with its extension
    with app.app_context():
        names = [c.original_filename for c in db.session.scalars(select(Clip))]
        assert any(len(n) == 255 and n.endswith(".mp4") for n in names)
        assert services.get_campaign(campaign).title == "Ode to Joy"


def test_bidi_overrides_are_removed_from_names(app, client, campaign):
    answer = _upload(client, name="\u202eAna\u202c", location="\u2067Lisbon\u2069")
    assert answer.status_code == 201
    with app.app_context():
        clip = services.get_clip(answer.get_json()["id"])
        assert (clip.display_name, clip.location) == ("Ana", "Lisbon")


XSS = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def test_user_text_is_escaped_on_every_page(app, organizer_client, campaign):
    client = organizer_client
    with app.app_context():
        services.create_campaign("xss-choir", XSS[:190], description=XSS, parts=[XSS[:80]],
                                 owner=ensure_organizer())
    answer = _upload(client, slug="xss-choir", name=XSS[:120], location=XSS[:120],
                     part=XSS[:80], filename=XSS + ".mp4")
    assert answer.status_code == 201, answer.data
    token = answer.get_json()["id"]
    with app.app_context():
        clip = services.get_clip(token)
        clip.status = "approved"
        job = Render(campaign=clip.campaign, kind="final", status="done", clip_ids=[clip.id],
                     output_key="renders/xss-choir/t/mashup.mp4")
        db.session.add(job)
        db.session.flush()
        clip.campaign.published_render_id = job.id
        db.session.commit()
        clip_id = clip.id
    pages = ["/", "/c/xss-choir", f"/clip/{token}", "/watch/xss-choir", "/watch/xss-choir/embed",
             "/organize/", "/organize/c/xss-choir", f"/organize/clips/{clip_id}"]
    for url in pages:
        page = client.get(url)
        assert page.status_code == 200, url
        text = page.get_data(as_text=True)
        assert "<script>alert(1)" not in text and "<img src=x" not in text, url
    assert "&lt;script&gt;" in client.get(f"/organize/clips/{clip_id}").get_data(as_text=True)
    api = client.get(f"/api/v1/clips/{token}")
    assert api.is_json and api.get_json()["name"] == XSS[:120]  # JSON keeps it, as data
    quoted = client.get(f"/organize/login?next={quote(XSS)}")
    assert "<script>alert(1)" not in quoted.get_data(as_text=True)


def test_out_of_range_ids_in_urls_answer_404(app, organizer_client, campaign):
    """Every route with a number in its URL, with numbers no row can have (over
    PostgreSQL's integer, over SQLite's 64 bits, zero): 404, never a 500."""
    from werkzeug.routing import IntegerConverter

    with app.test_request_context():
        rules = [r for r in app.url_map.iter_rules()
                 if any(isinstance(c, IntegerConverter) for c in r._converters.values())]
    assert len(rules) >= 10
    fill = {"slug": campaign, "token": "x" * 22, "filename": "app.js"}
    for rule in rules:
        for number in (2**31, 2**63, 2**64, 0):
            url = rule.rule
            for name in rule.arguments:
                value = fill.get(name, number)
                url = url.replace(f"<int:{name}>", str(value)).replace(f"<{name}>", str(value))
            method = "GET" if "GET" in rule.methods else "POST"
            answer = organizer_client.open(url, method=method)
            assert answer.status_code == 404, (url, answer.status_code)
