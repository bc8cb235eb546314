"""Throttling (Flask-Limiter): log-in per account and per address, uploads per
address and per campaign; 429 with Retry-After; Redis storage with a Redis broker."""

from __future__ import annotations

import io
import secrets

import pytest

from portal import services
from tests.conftest import REDIS_URL, dispose, ensure_organizer, make_app


def _login(client, email: str, password: str = "wrong password", address: str = "198.51.100.1"):
    return client.post("/organize/login", data={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def test_log_in_is_throttled_per_account_and_per_address(app, client):
    with app.app_context():
        ensure_organizer("victim@example.org", "the right one")
    # per account: 5 wrong passwords, then even the right one waits
    for _ in range(5):
        assert _login(client, "victim@example.org").status_code == 401
    blocked = _login(client, "victim@example.org", "the right one", address="198.51.100.2")
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert "try again" in blocked.get_data(as_text=True)
    # per address: 10 failures over many accounts, then that address waits
    for i in range(10):
        assert _login(client, f"guess{i}@example.org", address="203.0.113.7").status_code == 401
    over = _login(client, "guess-more@example.org", address="203.0.113.7")
    assert over.status_code == 429 and "Retry-After" in over.headers
    # another address and account is not affected
    assert _login(client, "other@example.org", address="203.0.113.8").status_code == 401


def test_successful_log_ins_do_not_use_up_the_limit(app, client):
    with app.app_context():
        ensure_organizer("busy@example.org", "the right one")
    for _ in range(12):
        client.post("/organize/logout")
        assert _login(client, "busy@example.org", "the right one").status_code == 303


def test_an_unknown_e_mail_costs_the_same_password_check(app, client, monkeypatch):
    import portal.auth as auth

    calls = []
    real = auth.check_password_hash
    monkeypatch.setattr(auth, "check_password_hash",
                        lambda stored, given: calls.append(stored) or real(stored, given))
    with app.app_context():
        organizer = ensure_organizer("known@example.org", "the right one")
        method = organizer.password_hash.split("$", 1)[0]
    assert _login(client, "nobody@example.org").status_code == 401
    assert len(calls) == 1 and calls[0].split("$", 1)[0] == method  # same hashing work


def _upload(client, slug: str, address: str):
    data = {"name": "Ana", "part": "Alto", "consent": "yes",
            "file": (io.BytesIO(b"bytes"), "me.mp4")}
    return client.post(f"/api/v1/campaigns/{slug}/clips", data=data,
                       content_type="multipart/form-data", environ_base={"REMOTE_ADDR": address})


def _tus_create(client, slug: str, address: str):
    import base64

    meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in
                    {"campaign": slug, "name": "Ana", "part": "Alto", "consent": "yes"}.items())
    return client.post("/api/v1/uploads", environ_base={"REMOTE_ADDR": address}, headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": "10", "Upload-Metadata": meta})


def test_uploads_are_throttled_per_address_and_per_campaign(app, client, campaign):
    app.config.update(UPLOAD_LIMIT_ADDRESS="3 per hour", UPLOAD_LIMIT_CAMPAIGN="5 per hour")
    with app.app_context():
        services.create_campaign("other", "Other", parts=["Alto"])
    # per address, across the plain, API and resumable routes
    first = _upload(client, campaign, "192.0.2.1")
    assert first.status_code == 201
    created = _tus_create(client, campaign, "192.0.2.1")
    assert created.status_code == 201
    # "Retry-After" only where there is something to wait for (not "wait an hour" on a 201)
    assert "Retry-After" not in first.headers and "Retry-After" not in created.headers
    assert client.post(f"/c/{campaign}/upload", environ_base={"REMOTE_ADDR": "192.0.2.1"},
                       data={"name": "Ana", "part": "Alto", "consent": "yes",
                             "file": (io.BytesIO(b"x"), "a.mp4")},
                       content_type="multipart/form-data").status_code == 303
    over = _upload(client, "other", "192.0.2.1")
    assert over.status_code == 429 and int(over.headers["Retry-After"]) > 0
    assert "error" in over.get_json()
    # per campaign: other addresses fill ode-to-joy's 5, the other campaign still takes clips
    assert _upload(client, campaign, "192.0.2.2").status_code == 201
    assert _tus_create(client, campaign, "192.0.2.3").status_code == 201
    crowded = _upload(client, campaign, "192.0.2.4")
    assert crowded.status_code == 429 and "Retry-After" in crowded.headers
    assert _tus_create(client, campaign, "192.0.2.5").status_code == 429
    other = _upload(client, "other", "192.0.2.6")
    assert other.status_code == 201
    # replacing a clip's file counts as an upload of its campaign
    token = other.get_json()["id"]
    replaced = client.post(f"/clip/{token}/replace", environ_base={"REMOTE_ADDR": "192.0.2.1"},
                           data={"file": (io.BytesIO(b"y"), "b.mp4")},
                           content_type="multipart/form-data")
    assert replaced.status_code == 429  # that address used its 3 already


@pytest.mark.integration
def test_limits_are_counted_in_redis_when_the_broker_is_redis(tmp_path):
    import redis

    app = make_app("sqlite", tmp_path, BROKER_URL=REDIS_URL)
    email = f"x-{secrets.token_hex(4)}@example.org"
    server = redis.Redis.from_url(REDIS_URL)
    try:
        assert app.config["RATELIMIT_STORAGE_URI"] == REDIS_URL
        client = app.test_client()
        for _ in range(5):
            assert _login(client, email, address="192.0.2.50").status_code == 401
        assert _login(client, email, address="192.0.2.51").status_code == 429
        keys = server.keys(f"*login-account:{email}*")
        assert keys, "no limiter counters in Redis"
        # the counters live in Redis (shared by every web process): without them,
        # the account may try again
        server.delete(*keys)
        assert _login(client, email, address="192.0.2.52").status_code == 401
    finally:
        leftovers = server.keys(f"*{email}*") + server.keys("*192.0.2.5*")
        if leftovers:
            server.delete(*leftovers)
        dispose(app)


def _burst(app, attempts: list[tuple[str, str, str]]) -> list[int]:
    """Post the log-ins ``(email, password, address)`` all at once from 16 threads."""
    from concurrent.futures import ThreadPoolExecutor

    start = __import__("threading").Barrier(len(attempts))

    def one(attempt):
        client = app.test_client()
        start.wait(timeout=30)
        return _login(client, *attempt).status_code

    with ThreadPoolExecutor(max_workers=len(attempts)) as pool:
        return list(pool.map(one, attempts))


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_parallel_guesses_cannot_pass_the_log_in_limits(tmp_path, storage):
    extra = {"BROKER_URL": REDIS_URL} if storage == "redis" else {}
    app = make_app("sqlite", tmp_path, **extra)
    email = f"target-{secrets.token_hex(4)}@example.org"
    address = f"192.0.2.{secrets.randbelow(200) + 20}"
    try:
        with app.app_context():
            ensure_organizer(email, "the right one")
        # per account ("5 per minute"): 30 wrong and, in the middle, the right password
        attempts = [(email, "wrong", f"198.18.{i}.1") for i in range(30)]
        attempts.insert(20, (email, "the right one", "198.18.99.1"))
        codes = _burst(app, attempts)
        assert codes.count(429) >= len(codes) - 5, codes
        assert set(codes) <= {401, 429, 303}
        # per address ("10 per minute"): 30 accounts guessed from one address at once
        codes = _burst(app, [(f"g{i}-{email}", "wrong", address) for i in range(30)])
        assert codes.count(401) <= 10 and codes.count(429) >= 20, codes
    finally:
        if storage == "redis":
            import redis

            server = redis.Redis.from_url(REDIS_URL)
            leftovers = server.keys(f"*{email}*") + server.keys(f"*{address}*") \
                + server.keys("*198.18.*")
            if leftovers:
                server.delete(*leftovers)
        dispose(app)


def test_refused_uploads_neither_use_up_the_campaign_nor_lock_the_participant_out(
        app, client, campaign, media_files):
    import base64

    app.config.update(UPLOAD_LIMIT_ADDRESS="2 per hour", UPLOAD_LIMIT_CAMPAIGN="3 per hour",
                      UPLOAD_LIMIT_REJECTED_ADDRESS="8 per hour")
    meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in
                    {"campaign": campaign, "name": "Ana", "part": "Alto"}.items())  # no consent
    refused = [
        # the form without consent, the API without a file, tus with a bad version,
        # over the size limit, and without consent
        lambda a: client.post(f"/c/{campaign}/upload", environ_base={"REMOTE_ADDR": a},
                              data={"name": "Ana", "part": "Alto",
                                    "file": (io.BytesIO(b"x"), "a.mp4")},
                              content_type="multipart/form-data"),
        lambda a: client.post(f"/api/v1/campaigns/{campaign}/clips",
                              environ_base={"REMOTE_ADDR": a},
                              data={"name": "Ana", "part": "Alto", "consent": "yes"}),
        lambda a: client.post("/api/v1/uploads", environ_base={"REMOTE_ADDR": a}, headers={
            "Tus-Resumable": "0.2.2", "Upload-Length": "10", "Upload-Metadata": meta}),
        lambda a: client.post("/api/v1/uploads", environ_base={"REMOTE_ADDR": a}, headers={
            "Tus-Resumable": "1.0.0", "Upload-Length": str(10 ** 12),
            "Upload-Metadata": meta}),
        lambda a: client.post("/api/v1/uploads", environ_base={"REMOTE_ADDR": a}, headers={
            "Tus-Resumable": "1.0.0", "Upload-Length": "10", "Upload-Metadata": meta}),
    ]
    # ten addresses send refused uploads, far more than the campaign's quota of 3
    for i in range(10):
        for send in refused:
            assert send(f"192.0.2.{100 + i}").status_code in (400, 412, 413)
    # a participant who made five mistakes still uploads, and the campaign takes 3
    for send in refused:
        send("198.51.100.7")
    with open(media_files["landscape"], "rb") as handle:
        data = handle.read()

    def good(address: str):
        return client.post(f"/api/v1/campaigns/{campaign}/clips",
                           environ_base={"REMOTE_ADDR": address},
                           content_type="multipart/form-data",
                           data={"name": "Ana", "part": "Alto", "consent": "yes",
                                 "file": (io.BytesIO(data), "me.mp4")})

    assert good("198.51.100.7").status_code == 201
    assert _tus_create(client, campaign, "198.51.100.7").status_code == 201
    # accepted uploads do count: that address has used its 2, the campaign 2 of 3
    assert good("198.51.100.7").status_code == 429
    assert good("198.51.100.8").status_code == 201
    assert good("198.51.100.9").status_code == 429  # the campaign's 3
    # a refused request answered 429 by the campaign's limit did not use the address's count
    app.config.update(UPLOAD_LIMIT_CAMPAIGN="5 per hour")
    assert good("198.51.100.9").status_code == 201
    assert good("198.51.100.9").status_code == 201  # its 2, the 429 not among them
    # refused requests are counted on their own: a flood from one address ends in 429
    codes = [refused[1]("203.0.113.50").status_code for _ in range(10)]
    assert codes[:8] == [400] * 8 and codes[8:] == [429, 429], codes


@pytest.mark.integration
@pytest.mark.parametrize("how", ["read-only", "full"])
def test_no_password_is_checked_while_the_shared_count_store_refuses_writes(
        tmp_path, monkeypatch, how):
    """Red team ops3, W3: while Redis refused writes, Flask-Limiter's in-memory fallback
    counted log-ins per process, so every gunicorn worker allowed the full limit of
    guesses per account (2x with 2 workers). Now no password is checked at all while
    the shared store cannot count the attempt: 503 with Retry-After and a plain message
    (so the number of web processes no longer matters), log-ins and password changes
    alike; once Redis takes writes again the limit is counted there as before."""
    import portal.auth as auth
    from tests.integration.harness import RedisServer, free_port

    server = RedisServer(tmp_path / "redis").start()
    app = make_app("sqlite", tmp_path, BROKER_URL=server.url)
    checked = []
    real = auth.check_credentials
    monkeypatch.setattr(auth, "check_credentials",
                        lambda *a, **k: checked.append(a[0]) or real(*a, **k))
    try:
        with app.app_context():
            ensure_organizer("victim@example.org", "the right one")
        client = app.test_client()
        opened = client.post("/organize/login", data={"email": "victim@example.org",
                                                      "password": "the right one"})
        assert opened.status_code == 303
        redis = server.client()
        if how == "full":  # maxmemory reached under noeviction, as docker-compose.yml runs it
            redis.config_set("maxmemory-policy", "noeviction")
            redis.config_set("maxmemory", 1)
        else:  # a replica of a primary that is gone: answers PING, refuses writes
            redis.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        checked.clear()
        # a password change (someone holding a session guesses here) is paused too
        change = client.post("/organize/account/password", data={
            "current_password": "a guess", "new_password": "another long password"})
        assert change.status_code == 503 and "Sign-in is paused" in change.get_data(as_text=True)
        client.post("/organize/logout")
        answers = [_login(client, "victim@example.org", address=f"198.51.100.{i + 10}")
                   for i in range(12)]  # more than the per-account limit, fresh addresses
        first = answers[0]
        assert first.status_code == 503 and first.headers["Retry-After"] == "60"
        assert "Sign-in is paused for a minute" in first.get_data(as_text=True)
        # paused, or over the limit counted in this process meanwhile: refused either way
        assert {a.status_code for a in answers} <= {503, 429}
        assert checked == []  # not one password was checked
        # the store takes writes again: counted there, 5 per minute per account
        if how == "full":
            redis.config_set("maxmemory", 0)
        else:
            redis.execute_command("REPLICAOF", "NO", "ONE")
        codes = []
        for i in range(70):  # Flask-Limiter looks at the store again within ~32 s
            codes.append(_login(client, "victim@example.org", address=f"198.51.101.{i}")
                         .status_code)
            if codes[-1] not in (503, 429):  # still on the fallback: paused or counted here
                break
            __import__("time").sleep(1)
        assert codes[-1] == 401
        codes = [_login(client, "victim@example.org", address=f"198.51.102.{i}").status_code
                 for i in range(6)]
        assert codes == [401, 401, 401, 401, 429, 429]  # 5 in the minute, one above
    finally:
        dispose(app)
        server.stop()
