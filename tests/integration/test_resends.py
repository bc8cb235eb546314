"""The reconciler against a real Redis with no worker consuming: however many passes find
work pending, each work item has at most one message waiting in the broker (red team,
issue 15: a render whose join was lost collected 337 copies of its render message)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
import redis
from sqlalchemy import update

from portal import services, waiting
from portal.extensions import db
from portal.models import Clip, Render, utcnow
from tests.conftest import REDIS_URL, dispose, make_app

pytestmark = pytest.mark.integration

PASSES = 50


@pytest.fixture
def broker():
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not running on {REDIS_URL}: start it (see .ci/run): {exc}")
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def redis_app(db_kind, tmp_path, broker):
    app = make_app(db_kind, tmp_path, BROKER_URL=REDIS_URL)
    yield app
    dispose(app)


def messages(broker: redis.Redis) -> Counter:
    """(task, args) -> how many messages wait for it in the intake and render queues."""
    found = Counter()
    for queue in ("intake", "render"):
        for raw in broker.lrange(queue, 0, -1):
            found[waiting._work_of(raw)] += 1
    return found


def _pending_work(app, media_files) -> tuple[set, tuple]:
    """A clip waiting for intake, a clip waiting for its sync, a render running: all an
    hour old, so every pass of the reconciler finds them due. Returns those three work
    items (task, args), and the intake of the second clip, whose message (sent when it
    was submitted) still waits though the clip is past intake."""
    with app.app_context():
        campaign = services.create_campaign("resend", "Resend", parts=["Alto"])
        ids = []
        for name in ("Ana", "Ben"):
            with open(media_files["landscape"], "rb") as handle:
                ids.append(services.submit_clip(campaign, handle, "take.mp4", name=name,
                                                part="Alto", consent=True).id)
        db.session.execute(update(Clip).where(Clip.id == ids[1])
                           .values(status="normalized", sync_state="pending"))
        job = Render(campaign=campaign, kind="final", status="running")
        db.session.add(job)
        db.session.commit()
        hour_ago = utcnow() - timedelta(hours=1)
        db.session.execute(update(Clip).values(updated_at=hour_ago))
        db.session.execute(update(Render).values(updated_at=hour_ago))
        db.session.commit()
        return ({("tutti.intake_clip", (ids[0],)), ("tutti.align_clip", (ids[1],)),
                 ("tutti.render", (job.id,))}, ("tutti.intake_clip", (ids[1],)))


def test_many_passes_with_no_worker_leave_one_message_per_work_item(redis_app, broker,
                                                                   media_files):
    work, old = _pending_work(redis_app, media_files)
    with redis_app.app_context():
        for _ in range(PASSES):
            services.reconcile()
        assert messages(broker) == Counter({item: 1 for item in {*work, old}})
        assert services.reconcile()["waiting"] == len(work)


def test_an_expired_mark_is_checked_against_the_queue_and_backs_off(redis_app, broker,
                                                                    media_files):
    """The mark of a message that waits longer than its time to live is gone: the
    reconciler finds the message in the queue, sends nothing, and marks it again for
    twice as long."""
    work, old = _pending_work(redis_app, media_files)
    with redis_app.app_context():
        services.reconcile()
        first = {item: broker.ttl(waiting.mark_key(*item)) for item in work}
        for _ in range(3):
            broker.delete(*(waiting.mark_key(*item) for item in work))  # expired
            for _ in range(PASSES // 5):
                services.reconcile()
        assert messages(broker) == Counter({item: 1 for item in {*work, old}})
        for item in work:  # the 1st mark lived RESEND_SECONDS, the 4th 8 times that
            assert first[item] <= redis_app.config["RESEND_SECONDS"]
            assert broker.ttl(waiting.mark_key(*item)) > 4 * redis_app.config["RESEND_SECONDS"]


def test_a_lost_message_is_sent_again_once(redis_app, broker, media_files):
    """Nothing is lost for the throttle: a message gone from the broker (its mark with
    it, as when Redis restarts empty) is sent again, once, whatever the passes."""
    work, _old = _pending_work(redis_app, media_files)
    with redis_app.app_context():
        services.reconcile()
        broker.flushdb()  # the queue and the marks are gone
        for _ in range(PASSES):
            services.reconcile()
        assert messages(broker) == Counter({item: 1 for item in work})


def test_a_started_task_lets_its_work_be_sent_again(redis_app, broker, media_files):
    """A worker that starts the task removes the mark (FlaskTask): a dead worker's work is
    sent again by the next pass, not an hour later."""
    work, _old = _pending_work(redis_app, media_files)
    render_id = next(args[0] for task, args in work if task == "tutti.render")
    celery = redis_app.extensions["celery"]
    with redis_app.app_context():
        services.reconcile()
        broker.delete("render")  # a worker took the message ...
        job = db.session.get(Render, render_id)
        job.status = "cancelled"  # (so that running it here does nothing)
        db.session.commit()
    celery.tasks["tutti.render"].apply(args=[render_id])  # ... and started it
    with redis_app.app_context():
        assert broker.get(waiting.mark_key("tutti.render", (render_id,))) is None
        job = db.session.get(Render, render_id)
        job.status = "running"  # ... and died: its lease ran out
        job.lease_owner, job.lease_until = "dead-worker", utcnow() - timedelta(seconds=1)
        db.session.commit()
        for _ in range(PASSES // 5):
            services.reconcile()
        assert messages(broker)[("tutti.render", (render_id,))] == 1


def test_enqueue_sends_nothing_while_the_same_work_waits(redis_app, broker, media_files):
    """Two parts landing at once both send the join: one message waits."""
    with redis_app.app_context():
        assert services.enqueue("tutti.join_render", 7) is True
        assert services.enqueue("tutti.join_render", 7) is False
        assert services.enqueue("tutti.render_part", 7, 0) is True
        assert services.enqueue("tutti.render_part", 7, 1) is True
    assert messages(broker) == Counter({("tutti.join_render", (7,)): 1,
                                        ("tutti.render_part", (7, 0)): 1,
                                        ("tutti.render_part", (7, 1)): 1})
