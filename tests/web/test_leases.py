"""Leases, takeover and the reconciler without a broker (the pipeline steps run directly),
render requests that arrive together, and a full disk answered with 507. The same faults
with real processes are in tests/integration/test_faults.py."""

from __future__ import annotations

import errno
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from portal import services, waiting
from portal.extensions import db
from portal.models import Clip, Render, RenderPart, utcnow
from workers import leases, pipeline


def _submit(app, slug, path, name="Ana"):
    with app.app_context(), open(path, "rb") as handle:
        return services.submit_clip(services.get_campaign(slug), handle, path.name, name=name,
                                    part="Alto", location="", consent=True).id


def _approved(app, slug, media_files, *names):
    ids = [_submit(app, slug, media_files[n], name=n) for n in names]
    with app.app_context():
        for clip_id in ids:
            pipeline.intake(clip_id)
            services.moderate_clip(db.session.get(Clip, clip_id), "approved")
    return ids


def _dead_worker_held(app, clip_id, temp_name=".normalized.4242.99.tmp.mp4"):
    """The clip as a worker killed mid-intake leaves it: checked, a lease that expired with
    an owner, a half-written temp file beside where the result goes."""
    with app.app_context():
        clip = db.session.get(Clip, clip_id)
        clip.status = "checked"
        clip.lease_owner = "dead-worker"
        clip.lease_until = utcnow() - timedelta(seconds=1)
        clip.attempts = 1
        db.session.commit()
        folder = leases.clip_folder(clip)
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / temp_name
        temp.write_bytes(b"half a video")
        return temp


def test_a_dead_workers_clip_is_taken_over_and_its_temp_file_removed(app, campaign, media_files):
    clip_id = _submit(app, campaign, media_files["landscape"])
    temp = _dead_worker_held(app, clip_id)
    with app.app_context():
        pipeline.intake(clip_id)
        clip = db.session.get(Clip, clip_id)
        assert clip.status == "normalized"
        assert clip.attempts == 2 and clip.lease_owner is None and clip.lease_until is None
        assert [e.status for e in clip.events].count("normalized") == 1
    assert not temp.exists()
    assert not [p for p in temp.parent.iterdir() if p.name.startswith(".")]


def test_a_live_workers_lease_is_respected(app, campaign, media_files):
    clip_id = _submit(app, campaign, media_files["landscape"])
    with app.app_context():
        clip = db.session.get(Clip, clip_id)
        clip.lease_owner, clip.lease_until = "alive", utcnow() + timedelta(seconds=30)
        db.session.commit()
        pipeline.intake(clip_id)
        clip = db.session.get(Clip, clip_id)
        assert clip.status == "received" and clip.lease_owner == "alive"


def test_the_heartbeat_renews_only_its_own_lease(app, campaign, media_files):
    clip_id = _submit(app, campaign, media_files["landscape"])
    with app.app_context():
        clip = db.session.get(Clip, clip_id)
        clip.lease_owner, clip.lease_until = "me", utcnow() + timedelta(seconds=0.6)
        db.session.commit()
        updated = clip.updated_at
        with leases.Heartbeat(Clip, clip_id, "me", seconds=0.6) as beat:
            time.sleep(1.5)  # past the first lease: only the beats keep it
            db.session.expire_all()
            clip = db.session.get(Clip, clip_id)
            assert clip.lease_until > utcnow() and not beat.lost.is_set()
            assert clip.updated_at == updated  # a heartbeat is not progress
            clip.lease_owner = "someone-else"  # taken over
            db.session.commit()
            deadline = time.monotonic() + 5
            while not beat.lost.is_set() and time.monotonic() < deadline:
                time.sleep(0.05)
        assert beat.lost.is_set()


def test_the_heartbeats_lines_carry_the_ids_of_its_work(app, campaign, media_files, caplog):
    """Red team ops3 F7: 'renderpart 21: lease ... lost' carried no render_id: the beat
    thread did not see the task's log context."""
    import logging

    from portal.logs import IdsFilter, log_context

    clip_id = _submit(app, campaign, media_files["landscape"])
    caplog.handler.addFilter(IdsFilter())  # as the app's handlers: ids read at emit time
    with app.app_context():
        clip = db.session.get(Clip, clip_id)
        clip.lease_owner, clip.lease_until = "me", utcnow() + timedelta(seconds=0.6)
        db.session.commit()
        with caplog.at_level(logging.WARNING, logger="workers.leases"), \
                log_context(render_id=4242, task="render_part 3"), \
                leases.Heartbeat(Clip, clip_id, "me", seconds=0.6) as beat:
            clip.lease_owner = "someone-else"  # taken over
            db.session.commit()
            deadline = time.monotonic() + 5
            while not beat.lost.is_set() and time.monotonic() < deadline:
                time.sleep(0.05)
    lost = [r for r in caplog.records if "lost (taken over)" in r.getMessage()]
    assert lost
    assert lost[0].render_id == 4242 and lost[0].task == "render_part 3"


def test_a_taken_over_workers_ffmpeg_is_stopped(app, campaign, media_files):
    """Red team, issue 15: a worker paused past its lease and resumed kept its ffmpeg
    converting for minutes after the heartbeat found the lease lost."""
    from workers.media.ffmpeg import WorkTakenOver, run_ffmpeg

    clip_id = _submit(app, campaign, media_files["landscape"])
    with app.app_context():
        clip = db.session.get(Clip, clip_id)
        clip.lease_owner, clip.lease_until = "me", utcnow() + timedelta(seconds=0.6)
        db.session.commit()
        with pytest.raises(WorkTakenOver), leases.Heartbeat(Clip, clip_id, "me", seconds=0.6):
            clip.lease_owner = "someone-else"  # taken over
            db.session.commit()
            run_ffmpeg(["-re", "-f", "lavfi", "-i", "testsrc2=s=64x36:r=10:d=30", "-f",
                        "null", "-"], timeout=60)  # 30 s of real time, unless stopped


def test_the_reconciler_sends_dead_work_at_once_and_queued_work_late(app, campaign, media_files,
                                                                     monkeypatch):
    sent = []
    monkeypatch.setattr(services, "enqueue", lambda name, *ids: sent.append((name, ids)) or True)
    queued = _submit(app, campaign, media_files["landscape"], name="queued")
    dead = _submit(app, campaign, media_files["portrait"], name="dead")
    _dead_worker_held(app, dead)
    sent.clear()
    with app.app_context():
        services.reconcile()
        assert sent == [("tutti.intake_clip", (dead,))]  # the queued one's message waits
        sent.clear()
        app.config["RESEND_SECONDS"] = 0  # ... until it is old enough to be presumed lost
        services.reconcile()
        assert sorted(i for _n, (i,) in sent) == sorted([queued, dead])


def test_the_sweep_removes_temp_files_only_where_no_one_works(app, campaign, media_files):
    held = _submit(app, campaign, media_files["landscape"], name="held")
    free = _submit(app, campaign, media_files["portrait"], name="free")
    free_temp = _dead_worker_held(app, free)
    held_temp = _dead_worker_held(app, held)
    with app.app_context():
        clip = db.session.get(Clip, held)
        clip.lease_until = utcnow() + timedelta(seconds=30)
        db.session.commit()
        finished = leases.clip_folder(clip) / "normalized.mp4"
        finished.write_bytes(b"a finished file")
        assert leases.sweep_temp_files() == 1
    assert not free_temp.exists() and held_temp.exists() and finished.exists()


def _planned(app, campaign, media_files) -> int:
    """A render of one approved clip, planned as a distributed render (1 s segments) and
    left unheld, as a worker leaves it after sending its parts; returns its id. Call
    inside an app context."""
    app.config["RENDER_SEGMENT_SECONDS"] = 1
    _approved(app, campaign, media_files, "landscape")
    job_id = services.request_render(services.get_campaign(campaign)).id
    waiting.started("tutti.render", (job_id,))  # a worker took its message
    job = pipeline._claim_render(job_id)
    from workers.media.spec import parse_spec

    job.spec = pipeline.build_spec(job.campaign, [c for c in job.campaign.clips],
                                   job.kind, job.options)
    assert pipeline._plan_distributed(job, parse_spec(job.spec))
    job.lease_owner = job.lease_until = None
    db.session.commit()
    return job_id


def test_a_dead_workers_render_part_is_taken_over(app, campaign, media_files, monkeypatch):
    sent = []
    with app.app_context():
        job_id = _planned(app, campaign, media_files)
        job = db.session.get(Render, job_id)
        part = db.session.scalar(select(RenderPart).filter_by(render_id=job_id, part=0))
        part.lease_owner, part.lease_until = "dead", utcnow() - timedelta(seconds=1)
        db.session.commit()
        seg = app.extensions["tutti.storage"].path_for_writing(pipeline._part_key(job, 0))
        temp = seg.with_name(f".{seg.stem}.77.88.tmp.mp4")
        temp.write_bytes(b"half a segment")
        def record(name, *ids):
            sent.append((name, ids))
            return True

        monkeypatch.setattr(services, "enqueue", record)
        monkeypatch.setattr(pipeline, "enqueue", record)
        services.reconcile()  # a part's holder died: the render is sent again at once
        assert ("tutti.render", (job_id,)) in sent
        pipeline.render(job_id)  # which sends the parts nobody holds
        assert ("tutti.render_part", (job_id, 0)) in sent
        pipeline.render_part(job_id, 0)
        assert seg.is_file() and not temp.exists()
        part = db.session.scalar(select(RenderPart).filter_by(render_id=job_id, part=0))
        assert part.attempts == 1 and part.lease_owner is None


def test_the_same_render_asked_twice_is_one_render(app, campaign, media_files):
    _approved(app, campaign, media_files, "landscape")
    with app.app_context():
        first = services.request_render(services.get_campaign(campaign))
        again = services.request_render(services.get_campaign(campaign))
        assert again.id == first.id
        other = services.request_render(services.get_campaign(campaign), kind="preview")
        assert other.id != first.id  # a different render is its own
        pipeline.render(first.id)
        db.session.expire_all()
        assert db.session.get(Render, first.id).status == "done"
        assert db.session.get(Render, first.id).request_key is None
        later = services.request_render(services.get_campaign(campaign))
        assert later.id != first.id  # once finished, asking again renders again


def test_the_newest_request_is_published_whichever_finishes_last(app, campaign, media_files):
    _approved(app, campaign, media_files, "landscape")
    with app.app_context():
        older = services.request_render(services.get_campaign(campaign),
                                        options={"labels": "on"})
        newer = services.request_render(services.get_campaign(campaign))
        db.session.expire_all()
        older = db.session.get(Render, older.id)
        assert older.status == "cancelled" and "newer request" in older.reason
        pipeline.render(newer.id)
        # the older one is asked for again and finishes after the newer one
        older = db.session.get(Render, older.id)
        from portal import states

        states.move_render(older, "queued")
        db.session.commit()
        pipeline.render(older.id)
        db.session.expire_all()
        assert db.session.get(Render, older.id).status == "done"
        assert services.get_campaign(campaign).published_render_id == newer.id


def _probe_limit(monkeypatch, seconds: float) -> None:
    """Intake's probe with a time limit of ``seconds`` (60 s by default)."""
    from functools import partial

    from workers.media import probe

    monkeypatch.setattr(probe, "probe", partial(probe.probe,
                                                limits=probe.ProbeLimits(timeout=seconds)))


def _sent(monkeypatch) -> list:
    sent: list = []
    monkeypatch.setattr(pipeline, "enqueue", lambda name, *args: sent.append((name, args)))
    return sent


def _events(clip_id: int) -> list[str]:
    db.session.expire_all()
    return [e.status for e in db.session.get(Clip, clip_id).events]


def test_a_probe_stopped_past_its_time_limit_ends_normalized(app, campaign, media_files,
                                                             monkeypatch):
    """Red team W1, issue 15: the worker (or its ffmpeg) stopped while the probe read the
    file, past the probe's time limit: the file is not to blame; it is normalized."""
    from tests.stopping import stop_first_ffmpeg

    clip_id = _submit(app, campaign, media_files["landscape"])
    _probe_limit(monkeypatch, 1.0)
    # the probe's read of every packet (measure_streams), stopped twice its time limit
    stopped = stop_first_ffmpeg(monkeypatch, seconds=2.0, match="-c copy")
    with app.app_context():
        pipeline.intake(clip_id)
        assert stopped, "the probe's ffmpeg was not stopped"
        assert db.session.get(Clip, clip_id).status == "normalized"
        assert "rejected" not in _events(clip_id)


def test_a_probe_starved_for_ever_is_tried_again_not_rejected(app, campaign, media_files,
                                                              monkeypatch):
    from tests.stopping import stop_first_ffmpeg

    clip_id = _submit(app, campaign, media_files["landscape"])
    _probe_limit(monkeypatch, 0.5)
    stopped = stop_first_ffmpeg(monkeypatch, seconds=None, match="-c copy")
    sent = _sent(monkeypatch)
    with app.app_context():
        pipeline.intake(clip_id)  # its ffmpeg never runs: stopped as starved
        assert stopped
        clip = db.session.get(Clip, clip_id)
        assert clip.status in ("received", "checked") and clip.lease_owner is None
        assert ("tutti.intake_clip", (clip_id,)) in sent
        assert not {"rejected", "failed"} & set(_events(clip_id))
        pipeline.intake(clip_id)  # the next try, not stopped
        assert db.session.get(Clip, clip_id).status == "normalized"


def test_a_time_out_after_the_lease_ran_out_is_not_a_rejection(app, campaign, media_files,
                                                                monkeypatch):
    """The red team's order of events: the worker paused past its lease, and on resume
    the probe's time limit fired before the heartbeat noticed: the verdict "took too long"
    is the worker's own trouble. The clip is given back and taken in again."""
    from workers.media import probe

    clip_id = _submit(app, campaign, media_files["landscape"])
    real = probe.probe

    def paused_past_the_lease(path, *args, **kwargs):
        with db.engine.begin() as conn:  # no beat came while the worker was stopped
            conn.execute(update(Clip).where(Clip.id == clip_id).values(
                lease_until=leases.lease_now() - timedelta(seconds=5)))
        raise probe._unreadable(True)  # "Tutti took too long to read this video ..."

    monkeypatch.setattr(probe, "probe", paused_past_the_lease)
    sent = _sent(monkeypatch)
    with app.app_context():
        pipeline.intake(clip_id)
        clip = db.session.get(Clip, clip_id)
        assert clip.status == "received" and clip.lease_owner is None
        assert ("tutti.intake_clip", (clip_id,)) in sent
        monkeypatch.setattr(probe, "probe", real)
        pipeline.intake(clip_id)
        assert db.session.get(Clip, clip_id).status == "normalized"
        assert "rejected" not in _events(clip_id)


def test_a_file_that_hangs_the_probe_is_still_rejected(app, campaign, media_files,
                                                       monkeypatch, tmp_path):
    """A read that works on and on (ffmpeg busy, not stopped) past the time limit is the
    file's: rejected with the participant's reason, as before."""
    from workers.media import ffmpeg

    real = ffmpeg.ffmpeg_path()
    hanging = tmp_path / "ffmpeg"  # busy for ever on the probe's read of every packet
    hanging.write_text('#!/bin/sh\ncase "$*" in *"-c copy"*) while :; do :; done ;; esac\n'
                       f'exec "{real}" "$@"\n')
    hanging.chmod(0o755)
    clip_id = _submit(app, campaign, media_files["landscape"])
    _probe_limit(monkeypatch, 1.0)
    monkeypatch.setattr(ffmpeg, "ffmpeg_path", lambda: str(hanging))
    # however loaded this machine is, the busy read gets a quarter of its limit in CPU
    # time before it could be taken for starved
    monkeypatch.setattr(ffmpeg, "STARVED_LIMIT", 60.0)
    with app.app_context():
        pipeline.intake(clip_id)
        clip = db.session.get(Clip, clip_id)
        assert clip.status == "rejected"
        assert "took too long to read" in clip.reason


def _running(render_id: int) -> None:
    """The render as a worker holds it: running, under a live lease."""
    from portal import states

    job = db.session.get(Render, render_id)
    states.move_render(job, "running")
    job.lease_owner = "busy-worker"
    job.lease_until = utcnow() + timedelta(minutes=5)
    db.session.commit()


def test_a_request_while_the_replaced_render_stops_is_the_newest(app, campaign, media_files):
    """Red team W5: grid (A) running, sections (B) replaces it, grid again (C) while A is
    still stopping: C is a render of its own, B gives way to it, and C is published."""
    _approved(app, campaign, media_files, "landscape")
    with app.app_context():
        grid_a = services.request_render(services.get_campaign(campaign)).id
        _running(grid_a)
        sections = services.request_render(services.get_campaign(campaign),
                                           options={"layout": "sections"}).id
        grid_c = services.request_render(services.get_campaign(campaign)).id
        assert grid_c not in (grid_a, sections)
        db.session.expire_all()
        a = db.session.get(Render, grid_a)
        assert a.status == "running" and a.cancel_requested and a.request_key is None
        assert db.session.get(Render, sections).status == "cancelled"
        assert db.session.get(Render, grid_c).request_key is not None
        again = services.request_render(services.get_campaign(campaign)).id
        assert again == grid_c  # C itself is pending and newest: asking again is C
        pipeline.render(grid_c)
        db.session.expire_all()
        assert db.session.get(Render, grid_c).status == "done"
        assert services.get_campaign(campaign).published_render_id == grid_c


def test_a_render_cancelled_while_running_is_not_returned_when_asked_again(
        app, campaign, media_files):
    _approved(app, campaign, media_files, "landscape")
    with app.app_context():
        first = services.request_render(services.get_campaign(campaign), kind="preview").id
        _running(first)
        services.cancel_render(db.session.get(Render, first))
        again = services.request_render(services.get_campaign(campaign), kind="preview").id
        assert again != first
        db.session.expire_all()
        assert db.session.get(Render, first).cancel_requested


def test_a_full_disk_answers_507_and_keeps_nothing(app, client, campaign, media_files,
                                                   monkeypatch):
    from portal.storage import Storage

    def full(self, key, *_args, **_kwargs):
        with self.writer(key) as tmp:
            tmp.write_bytes(b"part of it")
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Storage, "put_stream", full)
    monkeypatch.setattr(Storage, "put_file", full)
    with open(media_files["landscape"], "rb") as handle:
        answer = client.post(f"/api/v1/campaigns/{campaign}/clips",
                             data={"name": "Ana", "part": "Alto", "consent": "yes",
                                   "file": (handle, "take.mp4")})
    assert answer.status_code == 507
    assert "disk space" in answer.get_json()["error"]
    root = app.extensions["tutti.storage"].root
    assert not (root / "clips").exists() or not list((root / "clips").iterdir())
    with app.app_context():
        assert db.session.scalar(select(Clip.id)) is None


@pytest.mark.parametrize("message", ["No space left on device", "Invalid data found"])
def test_intake_on_a_full_disk_waits_instead_of_blaming_the_file(app, campaign, media_files,
                                                                 monkeypatch, message):
    from workers.media import normalize
    from workers.media.ffmpeg import FFmpegError

    def broken(*_a, **_k):
        raise FFmpegError("ffmpeg exited 1", stderr_tail=f"out.mp4: {message}")

    monkeypatch.setattr(normalize, "normalize_clip", broken)
    clip_id = _submit(app, campaign, media_files["landscape"])
    with app.app_context():
        pipeline.intake(clip_id)
        clip = db.session.get(Clip, clip_id)
        if message.startswith("No space"):
            assert clip.status == "checked" and clip.lease_owner is None
            assert clip.lease_until > utcnow() + timedelta(seconds=60)  # retried later
        else:
            assert clip.status == "failed"


def test_a_render_part_that_breaks_every_time_fails_the_render_with_a_reason(
        app, campaign, media_files, monkeypatch):
    """A bug that breaks one part of a distributed render each time (red team, issue 15:
    the sound part raised in the mix's threads) must not leave the render "running" for
    ever while the reconciler sends the part again: after RENDER_PART_ATTEMPTS it fails,
    saying so in plain words."""
    with app.app_context():
        job_id = _planned(app, campaign, media_files)

        def broken(*_args):
            raise RuntimeError("Working outside of application context.")

        monkeypatch.setattr(pipeline, "_draw_part", broken)
        for _attempt in range(pipeline.RENDER_PART_ATTEMPTS - 1):
            with pytest.raises(RuntimeError):  # sent again by the reconciler
                pipeline.render_part(job_id, -1)
            assert db.session.get(Render, job_id).status == "running"
        pipeline.render_part(job_id, -1)
        db.session.expire_all()
        job = db.session.get(Render, job_id)
        assert job.status == "failed"
        assert "internal error while mixing the sound" in job.reason
        assert "Working outside" in job.reason_detail and "Working outside" not in job.reason


def test_a_paused_workers_failure_is_tried_again_not_blamed_on_the_file(
        app, campaign, media_files, monkeypatch):
    """Red team, issue 15: a worker paused (SIGSTOP, a frozen VM) past its lease had its
    temporary file swept as a dead writer's; its ffmpeg then failed and the good clip was
    failed with "We could not convert this video". A failure after the lease ran out is
    ours: the clip is given back and sent again."""
    from workers.media import normalize
    from workers.media.ffmpeg import FFmpegError

    clip_id = _submit(app, campaign, media_files["landscape"])
    sent = []
    monkeypatch.setattr(pipeline, "enqueue", lambda name, *ids: sent.append((name, ids)))
    real = normalize.normalize_clip

    def paused_then_swept(*args, **kwargs):
        with app.app_context():  # the lease ran out while this worker was stopped
            db.session.execute(update(Clip).where(Clip.id == clip_id).values(
                lease_until=utcnow() - timedelta(seconds=5)))
            db.session.commit()
        raise FFmpegError("ffmpeg exited 254", ["ffmpeg"], 254, "Conversion failed!")

    monkeypatch.setattr(normalize, "normalize_clip", paused_then_swept)
    with app.app_context():
        pipeline.intake(clip_id)
        clip = db.session.get(Clip, clip_id)
        assert clip.status != "failed" and clip.lease_owner is None
        assert ("tutti.intake_clip", (clip_id,)) in sent
    monkeypatch.setattr(normalize, "normalize_clip", real)
    with app.app_context():
        pipeline.intake(clip_id)
        assert db.session.get(Clip, clip_id).status == "normalized"


def test_a_bad_file_failing_under_a_live_lease_is_still_blamed(app, campaign, media_files,
                                                             monkeypatch):
    from workers.media import normalize
    from workers.media.ffmpeg import FFmpegError

    clip_id = _submit(app, campaign, media_files["landscape"])

    def broken(*_args, **_kwargs):
        raise FFmpegError("ffmpeg exited 1", ["ffmpeg"], 1, "Invalid data found")

    monkeypatch.setattr(normalize, "normalize_clip", broken)
    with app.app_context():
        pipeline.intake(clip_id)
        assert db.session.get(Clip, clip_id).status == "failed"


def test_leases_are_written_on_the_databases_clock(app, db_kind, monkeypatch):
    """Red team, issue 15: a worker whose clock was 90 s behind wrote leases everyone
    else saw as expired, so the reconciler swept its live temporary file."""
    if db_kind != "postgresql":
        pytest.skip("SQLite is a file on this machine: its clock is this machine's")
    from portal import models

    real = models.utcnow()
    monkeypatch.setattr(models, "utcnow", lambda: datetime.now(UTC).replace(tzinfo=None)
                        - timedelta(seconds=90))
    monkeypatch.setattr(models, "_db_clock", {})
    with app.app_context():
        assert abs((models.lease_now() - real).total_seconds()) < 5
        until = leases.lease_until(30)
        assert abs((until - real).total_seconds() - 30) < 5


def test_a_lost_join_is_sent_again_by_the_reconciler(app, campaign, media_files, monkeypatch):
    """Red team, issue 15: the join's message was lost (Redis refused the write as the last
    part landed) and the render stayed running for ever while the reconciler re-sent
    the render itself."""
    app.config["RENDER_SEGMENT_SECONDS"] = 1
    app.config["DISTRIBUTED_RENDER"] = True
    _approved(app, campaign, media_files, "landscape")
    sent = []

    def record(name, *ids):
        sent.append((name, ids))
        return True

    with app.app_context():
        job_id = services.request_render(services.get_campaign(campaign)).id
        monkeypatch.setattr(services, "enqueue", record)
        monkeypatch.setattr(pipeline, "enqueue", record)
        waiting.started("tutti.render", (job_id,))  # a worker takes its message and ...
        pipeline.render(job_id)  # plans, sends the parts
        parts = [ids[1] for name, ids in sent if name == "tutti.render_part"]
        assert parts
        monkeypatch.setattr(pipeline, "enqueue", lambda *_a: False)  # the broker refuses
        for part in parts:
            pipeline.render_part(job_id, part)
        monkeypatch.setattr(pipeline, "enqueue", record)
        sent.clear()
        db.session.execute(update(Render).where(Render.id == job_id).values(
            updated_at=utcnow() - timedelta(hours=1)))
        db.session.commit()
        services.reconcile()
        for name, ids in list(sent):
            if name == "tutti.render":
                pipeline.render(*ids)
        assert ("tutti.join_render", (job_id,)) in sent, sent
        pipeline.join_render(job_id)
        assert db.session.get(Render, job_id).status == "done"


def test_a_render_cancelled_after_its_last_part_is_never_published(app, campaign, media_files,
                                                                   monkeypatch):
    """Red team, issue 15: a distributed render cancelled by its owner while its join's
    message was lost was published anyway 40 minutes later, when the join finally ran."""
    app.config["RENDER_SEGMENT_SECONDS"] = 1
    app.config["DISTRIBUTED_RENDER"] = True
    _approved(app, campaign, media_files, "landscape")
    sent = []
    with app.app_context():
        job_id = services.request_render(services.get_campaign(campaign)).id
        monkeypatch.setattr(services, "enqueue", lambda name, *ids: sent.append((name, ids)))
        monkeypatch.setattr(pipeline, "enqueue", lambda name, *ids: sent.append((name, ids)))
        pipeline.render(job_id)
        for name, ids in list(sent):
            if name == "tutti.render_part":
                pipeline.render_part(*ids)
        db.session.execute(update(Render).where(Render.id == job_id).values(
            cancel_requested=True))
        db.session.commit()
        pipeline.join_render(job_id)
        db.session.expire_all()
        job = db.session.get(Render, job_id)
        assert job.status == "cancelled" and not job.output_key
        pipeline.render(job_id)  # a resend finds it ended
        assert db.session.get(Render, job_id).status == "cancelled"


def test_two_intakes_of_one_clip_publish_it_once_and_the_stale_one_yields(
        app, campaign, media_files, monkeypatch):
    """Red team F3: conversions doubled under load. Worker A takes a clip; starved past
    its lease (before its heartbeat's next beat), it is presumed dead, and worker B
    takes the clip over and normalizes it to the end. A then carried on: it converted
    the clip a second time and published its normalized file, contact sheet and
    thumbnail over B's (the clip already normalized, perhaps being synced), before its
    result was dropped. Now A yields: its lease is checked (on the database, with the row
    held) before each conversion and each file it publishes. Each file is published
    once, by B, and A converts nothing."""
    import threading

    from workers.media import normalize

    clip_id = _submit(app, campaign, media_files["landscape"])
    real_normalize, real_replace = normalize.normalize_clip, normalize.replace_atomically
    conversions: list[str] = []  # the worker of each normalize pass's ffmpeg
    published: list[tuple[str, str]] = []  # (worker, file name) of each publish
    worker = threading.local()

    def run_ffmpeg_report(*args, **kwargs):
        conversions.append(worker.name)
        return real_report(*args, **kwargs)

    def replace_atomically(tmp, final):
        published.append((worker.name, os.path.basename(final)))
        real_replace(tmp, final)

    def worker_b() -> None:
        worker.name = "B"
        with app.app_context():
            pipeline.intake(clip_id)

    def normalize_clip(*args, **kwargs):
        if worker.name == "A":  # starved past its lease: B takes the clip over, to the end
            with app.app_context():
                db.session.execute(update(Clip).where(Clip.id == clip_id).values(
                    lease_until=utcnow() - timedelta(seconds=5)))
                db.session.commit()
            second = threading.Thread(target=worker_b)
            second.start()
            second.join()
            with app.app_context():
                assert db.session.get(Clip, clip_id).status == "normalized"
        return real_normalize(*args, **kwargs)

    import os

    real_report = normalize.ffmpeg_report
    monkeypatch.setattr(normalize, "ffmpeg_report", run_ffmpeg_report)
    monkeypatch.setattr(normalize, "replace_atomically", replace_atomically)
    monkeypatch.setattr(normalize, "normalize_clip", normalize_clip)
    worker.name = "A"
    with app.app_context():
        pipeline.intake(clip_id)
        clip = db.session.get(Clip, clip_id)
        assert clip.status == "normalized" and clip.lease_owner is None
        assert [e.status for e in clip.events].count("normalized") == 1
        folder = leases.clip_folder(clip)
    assert conversions == ["B"]
    assert sorted(published) == [("B", "normalized.mp4"), ("B", "sheet.jpg"),
                                 ("B", "thumb.jpg")]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp left


def test_work_taken_over_during_its_conversion_publishes_nothing(app, campaign, media_files,
                                                                 monkeypatch):
    """The other order: worker A's lease is taken over while its ffmpeg converts (before
    the heartbeat's next beat could stop it). Its conversion ends, and it publishes
    nothing: the lease is checked, with the row held, as each file is published; the
    new owner's files stay, and A's temporary file goes."""
    import os

    from workers.media import normalize

    clip_id = _submit(app, campaign, media_files["landscape"])
    real_report, real_replace = normalize.ffmpeg_report, normalize.replace_atomically
    published: list[str] = []

    def converted_then_taken_over(*args, **kwargs):
        done = real_report(*args, **kwargs)
        with app.app_context():  # another worker took the clip (this one presumed dead)
            db.session.execute(update(Clip).where(Clip.id == clip_id).values(
                lease_owner="worker-b", lease_until=utcnow() + timedelta(seconds=30)))
            db.session.commit()
        return done

    monkeypatch.setattr(normalize, "ffmpeg_report", converted_then_taken_over)
    monkeypatch.setattr(normalize, "replace_atomically",
                        lambda tmp, final: published.append(final) or real_replace(tmp, final))
    with app.app_context():
        pipeline.intake(clip_id)
        clip = db.session.get(Clip, clip_id)
        assert clip.status == "checked" and clip.lease_owner == "worker-b"
        folder = leases.clip_folder(clip)
    assert published == []
    assert sorted(os.listdir(folder)) == ["original.mp4"]
