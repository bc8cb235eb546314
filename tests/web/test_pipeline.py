"""The pipeline steps run directly (no broker): intake, moderation, render."""

from __future__ import annotations

import json
import os
import time
from urllib.parse import urlsplit

import pytest
from PIL import Image
from sqlalchemy import select

from portal import services
from portal.extensions import db
from portal.models import Clip, Render, RenderTile
from tests.conftest import ffmpeg_info
from workers import pipeline


def _submit(app, slug, path, name="Ana", part="Alto"):
    with app.app_context(), open(path, "rb") as handle:
        clip = services.submit_clip(services.get_campaign(slug), handle, path.name, name=name,
                                    part=part, location="Lisbon", consent=True)
        return clip.id


def _approved(app, campaign, media_files, *names: str) -> list[int]:
    """Submit the named generated clips, take them in, approve them."""
    ids = [_submit(app, campaign, media_files[n], name=n) for n in names]
    with app.app_context():
        for clip_id in ids:
            pipeline.intake(clip_id)
            services.moderate_clip(_clip(app, clip_id), "approved")
    return ids


def _clip(app, clip_id) -> Clip:
    db.session.expire_all()
    return db.session.get(Clip, clip_id)


def test_intake_rejects_a_text_file_with_a_reason_and_nothing_else_moves(app, client, campaign,
                                                                         media_files):
    bad = _submit(app, campaign, media_files["text"])
    good = _submit(app, campaign, media_files["landscape"])
    with app.app_context():
        pipeline.intake(bad)
        clip = _clip(app, bad)
        assert clip.status == "rejected"
        assert "video" in clip.reason.lower()
        assert clip.normalized_key is None
        assert _clip(app, good).status == "received"
        token = clip.token
    body = client.get(f"/api/v1/clips/{token}").get_json()
    assert body["status"] == "rejected" and body["reason"]
    page = client.get(f"/clip/{token}")
    assert body["reason"].split(".")[0].encode() in page.data


def test_intake_rejects_a_picture_that_grows_past_the_caps_partway(app, campaign, tmp_path):
    """The probe sees the first, small picture; the capped normalize decode refuses the
    8K ones after it: the clip is rejected with the size reason, and nothing is stored."""
    from workers.media.ffmpeg import run_ffmpeg

    parts = []
    for k, (size, seconds) in enumerate((("192x108", 1), ("7680x4320", 0.1))):
        part = tmp_path / f"part{k}.ts"
        run_ffmpeg(["-f", "lavfi", "-i", f"color=c=gray:s={size}:r=30:d={seconds}",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                    str(part)], timeout=120)
        parts.append(part)
    listing = tmp_path / "parts.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    grows = tmp_path / "grows.mkv"
    run_ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(grows)],
               timeout=60)
    clip_id = _submit(app, campaign, grows)
    with app.app_context():
        pipeline.intake(clip_id)
        clip = _clip(app, clip_id)
        assert clip.status == "rejected", clip.reason
        assert "larger than Tutti accepts" in clip.reason and "again" in clip.reason
        assert clip.normalized_key is None
        store = app.extensions["tutti.storage"]
        assert not store.path(f"clips/{clip.media_id}/normalized.mp4").exists()


def test_intake_normalizes_to_the_tile_format_with_a_thumbnail(app, campaign, media_files,
                                                               organizer_client):
    clip_id = _submit(app, campaign, media_files["portrait"])
    with app.app_context():
        pipeline.intake(clip_id)
        clip = _clip(app, clip_id)
        assert clip.status == "normalized", clip.reason
        assert [e.status for e in clip.events] == ["received", "checked", "normalized"]
        store = app.extensions["tutti.storage"]
        info = ffmpeg_info(store.path(clip.normalized_key))
        assert "640x360" in info and "h264" in info and "48000 Hz" in info and "stereo" in info
        assert "30 fps" in info
        assert store.path(clip.thumbnail_key).stat().st_size > 0
        assert clip.media["width"] == 108 and clip.media["height"] == 192
        # portrait in a landscape campaign: accepted, with a warning the participant reads
        assert [c["code"] for c in clip.checks] == ["portrait"]
        assert clip.checks[0]["severity"] == "warning"
        with Image.open(store.path(clip.contact_sheet_key)) as sheet:
            assert sheet.format == "JPEG" and sheet.size == (964, 544)
        token, media_id = clip.token, clip.media_id
    page = app.test_client().get(f"/clip/{token}").data.decode()
    assert "You filmed upright (portrait)" in page
    api = app.test_client().get(f"/api/v1/clips/{token}").get_json()
    assert api["checks"] == [{"code": "portrait", "severity": "warning",
                              "message": api["checks"][0]["message"]}]
    assert urlsplit(api["contact_sheet_url"]).path.endswith("/sheet.jpg")
    # what the probe found, but not where the file lies on the server (a red-team case)
    assert api["media"]["width"] == 108 and "path" not in api["media"]
    assert str(app.config["MEDIA_ROOT"]) not in json.dumps(api)
    # moderation: the contact sheet beside the thumbnail, and the checks
    queue = organizer_client.get(f"/organize/c/{campaign}").data.decode()
    assert f"clips/{media_id}/sheet.jpg" in queue and token not in queue
    assert "You filmed upright" in queue
    assert organizer_client.get(api["contact_sheet_url"]).status_code == 200
    with app.app_context():
        # a re-delivered message finds the work done and changes nothing
        pipeline.intake(clip_id)
        assert len(_clip(app, clip_id).events) == 3


def test_a_conversion_that_runs_out_of_time_says_why_in_plain_words(app, client, campaign,
                                                                    media_files):
    """The reason names the video's size and length and what to upload instead: not
    "export it as an MP4 (H.264)" (it may be one) and no ffmpeg log."""
    clip_id = _submit(app, campaign, media_files["landscape"])
    app.config["INTAKE_TIMEOUT"] = 0.001  # the probe has its own limit; normalize has this
    with app.app_context():
        pipeline.intake(clip_id)
        clip = _clip(app, clip_id)
        assert clip.status == "failed"
        reason = clip.reason
        width, height = clip.media["width"], clip.media["height"]
        token = clip.token
    assert f"{width}×{height} pixels" in reason and "too big or too long" in reason
    assert "shorter clip" in reason and "lower resolution" in reason
    assert "ffmpeg" not in reason.lower() and "Details" not in reason and "MP4" not in reason
    assert client.get(f"/api/v1/clips/{token}").get_json()["reason"] == reason


@pytest.mark.parametrize("tail, words", [
    # ffmpeg's own words for each kind of failure (its last log lines)
    ("[hevc @ 0x55] Invalid NAL unit size (12345 > 678).\n[hevc @ 0x55] Error parsing NAL "
     "unit #2.\nError while decoding stream #0:0: Invalid data found when processing input",
     "damaged"),
    ("[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55] moov atom not found", "damaged"),
    ("[vist#0:0/prores @ 0x55] Decoder (codec apv) not found for input stream #0:0",
     "cannot read"),
    ("[vist#0:0/av1 @ 0x55] Could not find codec parameters for stream 0 (Video: av1)",
     "cannot read"),
    ("[libx264 @ 0x55] malloc of size 8294400 failed\nCannot allocate memory",
     "too big or too long"),
    ("[fc#0 @ 0x55] Error reinitializing filters!\nFailed to inject frame into filter "
     "network: Invalid argument", "changes its picture format"),
    ("something ffmpeg has never said", "could not convert"),
])
def test_a_conversion_failure_says_what_to_do_in_plain_words(tail, words):
    """Each kind of failure we recognise gets its own advice; no ffmpeg text, no
    "Details", whatever the log said."""
    from workers.media.ffmpeg import FFmpegError

    exc = FFmpegError("ffmpeg exited with status 1", ["-i", "x"], 1, tail)
    reason = pipeline.conversion_failure_reason(
        exc, {"width": 3840, "height": 2160, "duration": 75.0})
    assert words in reason
    assert "ffmpeg" not in reason.lower() and "Details" not in reason
    assert not any(line.strip() and line.strip() in reason for line in tail.splitlines())


def test_intake_of_a_vanished_clip_returns_quietly(app):
    with app.app_context():
        pipeline.intake(987654)
        pipeline.render(987654)


def test_render_of_approved_clips_publishes_a_playable_mashup(app, client, organizer_client,
                                                              campaign, media_files):
    ids = [_submit(app, campaign, media_files[n], name=n) for n in
           ("landscape", "portrait", "silent")]
    with app.app_context():
        for clip_id in ids:
            pipeline.intake(clip_id)
    # moderation through the organizer's pages
    for clip_id in ids[:2]:
        answer = organizer_client.post(f"/organize/clips/{clip_id}/moderate",
                                       data={"decision": "approved"})
        assert answer.status_code == 303
    organizer_client.post(f"/organize/clips/{ids[2]}/moderate", data={"decision": "declined"})
    answer = organizer_client.post(f"/organize/c/{campaign}/render", data={"kind": "final"})
    assert answer.status_code == 303
    with app.app_context():
        job = db.session.scalar(select(Render))
        assert job.status == "queued"
        pipeline.render(job.id)
        db.session.expire_all()
        job = db.session.get(Render, job.id)
        assert job.status == "done", job.reason
        assert job.progress == 1.0 and sorted(job.clip_ids) == sorted(ids[:2])
        assert job.campaign.published_render_id == job.id
        store = app.extensions["tutti.storage"]
        info = ffmpeg_info(store.path(job.output_key))
        assert "1280x720" in info and "Audio: aac" in info
        assert store.path(job.poster_key).stat().st_size > 0
        output_key = job.output_key
    page = client.get(f"/watch/{campaign}")
    assert page.status_code == 200
    assert b"<video" in page.data and b"landscape" in page.data and b"silent" not in page.data
    # the player can seek: range requests answer 206 with the asked bytes
    url = f"/media/{output_key}"
    part = client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and len(part.data) == 100
    assert part.headers["Content-Range"].startswith("bytes 100-199/")
    # organizers see the render's outcome, and that a clip change calls for a re-render
    with app.app_context():
        render_id = db.session.scalar(select(Render)).id
    status = organizer_client.get(f"/organize/renders/{render_id}.json").get_json()
    assert status["status"] == "done" and status["published"] is True
    assert "eta_seconds" in status
    assert b'id="stale"' not in organizer_client.get(f"/organize/c/{campaign}").data
    organizer_client.post(f"/organize/clips/{ids[2]}/moderate", data={"decision": "approved"})
    assert b'id="stale"' in organizer_client.get(f"/organize/c/{campaign}").data


def test_render_without_approved_clips_is_a_clear_error(app, organizer_client, campaign):
    with app.app_context():
        with pytest.raises(services.ServiceError) as caught:
            services.request_render(services.get_campaign(campaign))
        assert caught.value.status == 409 and "approve" in caught.value.message
    page = organizer_client.post(f"/organize/c/{campaign}/render", data={"kind": "final"},
                                 follow_redirects=True)
    assert b"no approved clips" in page.data


def test_failed_render_keeps_the_published_mashup(app, campaign, media_files):
    [clip_id] = _approved(app, campaign, media_files, "landscape")
    with app.app_context():
        first = services.request_render(services.get_campaign(campaign))
        pipeline.render(first.id)
        db.session.expire_all()
        published = services.get_campaign(campaign).published_render_id
        assert published == first.id
        # the normalized file disappears: the next render fails and says why
        store = app.extensions["tutti.storage"]
        store.path(_clip(app, clip_id).normalized_key).unlink()
        second = services.request_render(services.get_campaign(campaign))
        pipeline.render(second.id)
        db.session.expire_all()
        second = db.session.get(Render, second.id)
        assert second.status == "failed" and second.reason
        # whose clip, what is wrong with it, what to do; no ffmpeg words in the headline
        assert "The clip by landscape" in second.reason and "missing" in second.reason
        assert "Decline that clip" in second.reason and "unchanged" in second.reason
        assert "ffmpeg" not in second.reason.lower() and "/" not in second.reason
        assert services.get_campaign(campaign).published_render_id == first.id
        assert store.path(db.session.get(Render, first.id).output_key).is_file()


def _ffmpeg_error(tail: str, status: int = 1, timed_out: bool = False):
    from workers.media.ffmpeg import FFmpegError

    return FFmpegError(f"ffmpeg exited with status {status}", ["-i", "x"], status, tail,
                       timed_out=timed_out)


@pytest.mark.parametrize("tail, status, timed_out, words", [
    ("[out#0/mp4 @ 0x55] Error writing trailer: No space left on device", 1, False,
     "media disk is full"),
    ("Conversion failed!", 228, False, "media disk is full"),  # AVERROR(ENOSPC) as a byte
    ("[libx264 @ 0x55] malloc of size 8294400 failed\nCannot allocate memory", 1, False,
     "ran out of memory"),
    ("frame= 100 fps=3.0", 255, True, "longer than its time limit"),
    ("[h264 @ 0x55] Assertion ref->f failed at libavcodec/h264_refs.c:123\nAborted", -6,
     False, "The video engine stopped with an error while making part 2 of the video"),
])
def test_a_render_failure_says_what_happened_and_what_to_do(app, tail, status, timed_out,
                                                            words):
    """The organizer reads plain words with the next step; ffmpeg's own words are kept
    as the technical detail, never in the reason."""
    exc = _ffmpeg_error(tail, status, timed_out)
    with app.app_context():
        reason, detail = pipeline.render_failure(exc, {"clips": []},
                                                 what="while making part 2 of the video")
    assert words in reason and "The published mash-up is unchanged." in reason
    assert "ffmpeg" not in reason.lower() and "status" not in reason
    assert not any(line.strip() and line.strip() in reason for line in tail.splitlines())
    assert tail.splitlines()[-1] in detail and "ffmpeg exited" in detail


def test_a_render_failure_names_the_clip_whose_file_is_damaged(app, tmp_path):
    """A clip's file (or its cell-size proxy, named by digest) that ffmpeg could not read
    is named by who sent it; the storage root is cut from the detail."""
    from workers.media.proxies import proxy_name

    with app.app_context():
        root = app.extensions["tutti.storage"].root
        good, bad = root / "clips" / "g.mp4", root / "clips" / "b.mp4"
        good.parent.mkdir(parents=True, exist_ok=True)
        good.write_bytes(b"fine"), bad.write_bytes(b"broken")
        spec = {"clips": [{"id": "g", "path": str(good), "name": "Ana", "part": "Alto"},
                          {"id": "b", "path": str(bad), "name": "Rui", "part": "Tenor"}]}
        for named in (str(bad), f"/cache/proxies/1/{proxy_name(str(bad), 0.25)}"):
            exc = _ffmpeg_error(f"[mov,mp4 @ 0x55] moov atom not found\n{named}: Invalid "
                                "data found when processing input")
            reason, detail = pipeline.render_failure(exc, spec, what="while making the video")
            assert reason.startswith("The clip by Rui (Tenor) could not be read")
            assert "damaged" in reason and "Decline that clip" in reason
            assert "Invalid data" not in reason and "moov" not in reason
            assert "Invalid data found" in detail and str(root) not in detail
        # a read error naming no clip's file is not blamed on a clip
        exc = _ffmpeg_error("/elsewhere/x.mp4: Invalid data found when processing input")
        reason, _ = pipeline.render_failure(exc, spec)
        assert "Rui" not in reason and "Ana" not in reason
        assert reason.startswith("The video engine stopped with an error")


def test_the_organizer_sees_a_failed_render_in_plain_words_with_details_apart(
        app, organizer_client, campaign, media_files):
    _approved(app, campaign, media_files, "landscape")
    with app.app_context():
        job = services.request_render(services.get_campaign(campaign))
        job_id = job.id
        exc = _ffmpeg_error("[aost#0:1/aac @ 0x55] Error submitting audio frame to the "
                            "encoder\nConversion failed!", 187)
        with pytest.MonkeyPatch.context() as mp:
            from workers.media import render as engine

            def broken(*_args, **_kwargs):
                raise exc

            mp.setattr(engine, "render", broken)
            pipeline.render(job_id)
        db.session.expire_all()
        job = db.session.get(Render, job_id)
        assert job.status == "failed"
        assert job.reason.startswith("The video engine stopped with an error")
        assert "Conversion failed!" in job.reason_detail
    page = organizer_client.get(f"/organize/c/{campaign}").data.decode()
    headline = page.split('class="render-reason">', 1)[1].split("</span>", 1)[0]
    assert "Render again" in headline and "Conversion failed" not in headline
    details = page.split('<details class="render-detail">', 1)[1].split("</details>", 1)[0]
    assert "<summary>details</summary>" in details and "Conversion failed!" in details
    status = organizer_client.get(f"/organize/renders/{job_id}.json").get_json()
    assert "Conversion failed!" not in status["reason"]
    assert "Conversion failed!" in status["reason_detail"]


def test_media_route_never_serves_originals_or_escapes(app, client, campaign, media_files):
    clip_id = _submit(app, campaign, media_files["landscape"])
    with app.app_context():
        key = _clip(app, clip_id).original_key
    assert client.get(f"/media/{key}").status_code == 404
    assert client.get("/media/../secret_key").status_code == 404
    assert client.get("/media/.tmp/x").status_code == 404


def _distributed_with_two_approved(app, campaign, media_files, monkeypatch) -> list[tuple]:
    """Renders cut into 1-s segments sent as tasks, two approved clips; returns the list
    the tasks sent are noted in (name, *args), in order."""
    sent: list[tuple] = []
    monkeypatch.setattr(services, "enqueue", lambda name, *args: sent.append((name, *args)))
    monkeypatch.setattr(pipeline, "enqueue", lambda name, *args: sent.append((name, *args)))
    app.config["DISTRIBUTED_RENDER"] = True
    app.config["RENDER_SEGMENT_SECONDS"] = 1
    _approved(app, campaign, media_files, "landscape", "portrait")
    return sent


def test_a_part_that_lands_after_its_render_failed_is_removed(app, campaign, media_files,
                                                              monkeypatch):
    """bench/faults (full disk, 1 run in 20): one part failed on the full disk and the
    render's folder was removed while another worker was still drawing its segment; that
    segment then landed in the failed render's folder and stayed there for ever."""
    sent = _distributed_with_two_approved(app, campaign, media_files, monkeypatch)
    store = app.extensions["tutti.storage"]

    def late_writer(job, part, _beat):
        # the other part's worker fails the render (disk full) and removes its folder...
        pipeline._fail_render(job, "The media disk is full")
        # ...while this one's segment is written in full just after
        store.path_for_writing(pipeline._part_key(job, part)).write_bytes(b"segment")
        return True

    with app.app_context():
        job_id = services.request_render(services.get_campaign(campaign)).id
        pipeline.render(job_id)
        job = db.session.get(Render, job_id)
        folder = store.path(pipeline._keys(job)[0])
        monkeypatch.setattr(pipeline, "_draw_part", late_writer)
        pipeline.render_part(job_id, 0)
        db.session.expire_all()
        assert db.session.get(Render, job_id).status == "failed"
        assert not folder.exists(), sorted(folder.rglob("*"))
        assert not any(s[0] == "tutti.join_render" for s in sent)


def test_distributed_render_runs_parts_then_joins(app, campaign, media_files, monkeypatch):
    """Segments and the sound as separate tasks, in any order, joined without
    re-encoding; a duplicated part message changes nothing."""
    sent = _distributed_with_two_approved(app, campaign, media_files, monkeypatch)
    with app.app_context():
        job_id = services.request_render(services.get_campaign(campaign)).id
        sent.clear()
        pipeline.render(job_id)
        sent_order = [s[2] for s in sent if s[0] == "tutti.render_part"]
        parts = sorted(sent_order)
        assert parts[0] == -1 and len(parts) >= 3  # the sound and at least two segments
        # the most drawing first, the sound last: early finishers take the short parts
        segments = db.session.get(Render, job_id).plan["segments"]
        work = [(segments[k]["end"] - segments[k]["start"]) * (1 + len(segments[k]["tiles"]))
                for k in sent_order[:-1]]
        assert sent_order[-1] == -1 and work == sorted(work, reverse=True)
        for part in reversed(parts):  # any order
            pipeline.render_part(job_id, part)
        pipeline.render_part(job_id, parts[1])  # a re-delivered message
        assert sent[-1] == ("tutti.join_render", job_id)
        pipeline.join_render(job_id)
        db.session.expire_all()
        job = db.session.get(Render, job_id)
        assert job.status == "done", job.reason
        store = app.extensions["tutti.storage"]
        info = ffmpeg_info(store.path(job.output_key))
        assert "1280x720" in info and "Audio: aac" in info
        assert abs(job.duration - 2.0) < 0.05
        assert not store.path(f"renders/{campaign}/{job.token}/parts").exists()
        pipeline.join_render(job_id)  # a late duplicate join finds the render done
        assert db.session.get(Render, job_id).status == "done"


def test_a_distributed_render_joins_its_segments_in_plan_order(app, campaign, media_files,
                                                               monkeypatch):
    """Parts are sent with the most drawing first, but the join must take the segments in
    the plan's order: with an intro card and credits (segments with no tile, drawing more
    or less than the performers' by their length), the order sent is not the film's, and
    the join was given them in the order sent (the credits inside the film, each segment
    timed as another)."""
    from workers.media import render as render_module

    sent = _distributed_with_two_approved(app, campaign, media_files, monkeypatch)
    joined: list[list[str]] = []

    def capture(plan, paths, *args, **kwargs):
        joined.append(list(paths))
        raise pipeline.FFmpegError("stopped here: only the order is tested")

    monkeypatch.setattr(render_module, "join_segments", capture)
    with app.app_context():
        job_id = services.request_render(services.get_campaign(campaign),
                                         options={"intro": "yes", "credits": "yes"}).id
        pipeline.render(job_id)
        job = db.session.get(Render, job_id)
        sent_order = [s[2] for s in sent if s[0] == "tutti.render_part" and s[2] >= 0]
        assert sent_order != sorted(sent_order)  # the credits are sent before the film
        store = app.extensions["tutti.storage"]
        for part in pipeline._parts(job):
            store.path_for_writing(pipeline._part_key(job, part)).write_bytes(b"part")
        pipeline.join_render(job_id)
        in_plan_order = [str(store.path(pipeline._part_key(job, k)))
                         for k in range(len(job.plan["segments"]))]
        assert joined == [in_plan_order]


def test_render_options_reach_the_spec(app, organizer_client, campaign, media_files):
    ids = _approved(app, campaign, media_files, "landscape", "portrait")
    answer = organizer_client.post(f"/organize/c/{campaign}/render", data={
        "kind": "preview", "layout": "sections", "labels": "yes", "intro": "yes",
        "credits": "yes", "audio": "mix"})
    assert answer.status_code == 303
    with app.app_context():
        job = db.session.scalar(select(Render))
        assert job.options == {"layout": "sections", "labels": True, "intro": True,
                               "credits": True, "audio": "mix"}
        clips = [_clip(app, i) for i in ids]
        spec = pipeline.build_spec(job.campaign, clips, job.kind, job.options)
        assert spec["layout"]["type"] == "sections" and spec["layout"]["labels"] is True
        assert spec["intro"]["title"] == "Ode to Joy" and spec["credits"]
        assert spec["canvas"]["width"] == 640 and spec["audio"]["mode"] == "mix"
        from workers.media.spec import parse_spec

        parse_spec(spec)  # valid for the engine
    bad = organizer_client.post(f"/organize/c/{campaign}/render", data={
        "kind": "final", "audio": "guide"}, follow_redirects=True)
    assert b"no guide track" in bad.data


def test_find_yourself_times_follow_the_intro_and_the_montage(app, client, campaign,
                                                              media_files):
    ids = _approved(app, campaign, media_files, "landscape", "portrait")
    with app.app_context():
        job = services.request_render(services.get_campaign(campaign), "preview", publish=True,
                                      options={"intro": "yes", "labels": "yes"})
        pipeline.render(job.id)
        db.session.expire_all()
        job = db.session.get(Render, job.id)
        assert job.status == "done", job.reason
        assert abs(job.duration - 6.0) < 0.1  # a 4 s title card, then 2 s of music
        tokens = [_clip(app, i).token for i in ids]
        assert job.appearances == {tokens[0]: 4.0, tokens[1]: 4.0}
        # the tile map: each clip's rectangle on the 640x360 canvas, after the title card
        tiles = db.session.scalars(select(RenderTile).filter_by(render_id=job.id)
                                   .order_by(RenderTile.clip_id)).all()
        assert [t.clip_id for t in tiles] == sorted(ids)
        assert all(t.start == 4.0 and t.live == 4.0 and abs(t.end - 6.0) < 0.1
                   for t in tiles)
        assert all(0 <= t.x and t.x + t.w <= 640 and 0 <= t.y and t.y + t.h <= 360
                   and t.w > 100 for t in tiles)
        assert tiles[0].x != tiles[1].x or tiles[0].y != tiles[1].y
        first = tiles[0]
    page = client.get(f"/watch/{campaign}")
    credits = page.data.split(b'class="list credits"', 1)[1].split(b"</table>", 1)[0]
    assert credits.count(b'data-seek="4.0"') == 2 and b"00:04" in credits
    rect = f"[[{first.x}, {first.y}, {first.w}, {first.h}, 4.0, ".encode()
    assert rect in credits  # the outline's rectangle, for the player
    status = client.get(f"/clip/{tokens[0]}")
    assert b"In the mash-up at" in status.data and b"00:04" in status.data

    from workers.media.spec import parse_spec

    spec = parse_spec({"version": 1, "layout": {"type": "montage", "shot_seconds": 2,
                                                 "max_tiles": 2},
                       "clips": [{"id": f"c{i}", "path": "/x.mp4"} for i in range(6)]})
    seen = pipeline.appearances(spec, 12.0)
    assert set(seen) == {f"c{i}" for i in range(6)}  # everyone appears
    assert sorted(seen.values()) == [0.0, 0.0, 2.0, 2.0, 4.0, 4.0]


def test_a_cancelled_running_render_stops_and_publishes_nothing(app, campaign, media_files):
    [clip_id] = _approved(app, campaign, media_files, "landscape")
    with app.app_context():
        job = services.request_render(services.get_campaign(campaign))
        # a worker had started it (and died); the organizer pressed cancel meanwhile
        from portal import states

        states.move_render(job, "running")
        db.session.commit()
        services.cancel_render(job)
        assert job.cancel_requested is True and job.status == "running"
        pipeline.render(job.id)  # picked up again: it must see the cancel and stop
        db.session.expire_all()
        job = db.session.get(Render, job.id)
        assert job.status == "cancelled" and "cancel" in job.reason
        assert job.output_key is None
        assert services.get_campaign(campaign).published_render_id is None
        folder = app.extensions["tutti.storage"].root / "renders" / campaign / job.token
        assert not folder.exists() or not any(p.is_file() for p in folder.rglob("*"))


def test_renders_cache_cell_size_proxies_and_reuse_them(app, client, campaign, media_files,
                                                        monkeypatch):
    """A preview draws each clip at half its size: the first render builds a proxy per clip
    under proxies/<campaign>, the next one (here distributed, in segments) reuses them; they
    are never served."""
    _approved(app, campaign, media_files, "landscape", "portrait")
    with app.app_context():
        first = services.request_render(services.get_campaign(campaign), kind="preview")
        pipeline.render(first.id)
        db.session.expire_all()
        assert db.session.get(Render, first.id).status == "done"
        store = app.extensions["tutti.storage"]
        cache = store.path(f"proxies/{services.get_campaign(campaign).id}")
        proxies = sorted(p for p in cache.iterdir() if p.suffix == ".mp4")
        assert len(proxies) == 2
        built = {p.name: p.stat().st_ino for p in proxies}
        info = ffmpeg_info(proxies[0])
        assert "320x180" in info and "Audio" not in info  # half of the 640x360 tile format
        proxy_key = str(proxies[0].relative_to(store.root))

        sent: list[tuple] = []
        monkeypatch.setattr(pipeline, "enqueue", lambda name, *args: sent.append((name, *args)))
        app.config["DISTRIBUTED_RENDER"] = True
        app.config["RENDER_SEGMENT_SECONDS"] = 1
        second = services.request_render(services.get_campaign(campaign), kind="preview")
        pipeline.render(second.id)
        for name, *args in list(sent):
            if name == "tutti.render_part":
                pipeline.render_part(*args)
        pipeline.join_render(second.id)
        db.session.expire_all()
        job = db.session.get(Render, second.id)
        assert job.status == "done", job.reason
        assert "640x360" in ffmpeg_info(store.path(job.output_key))
        assert {p.name: p.stat().st_ino for p in cache.iterdir() if p.suffix == ".mp4"} == built
    assert client.get(f"/media/{proxy_key}").status_code == 404


# --- proxies built at intake -------------------------------------------------------------

def _intake_proxies(app, clip_id) -> tuple[str, tuple[float, ...], list]:
    """A taken-in clip's normalized file, the scales intake builds proxies at, and the
    proxy paths under the names a render looks up."""
    from workers.media.probe import probe
    from workers.media.proxies import likely_scales, proxy_name

    clip = _clip(app, clip_id)
    path = str(app.extensions["tutti.storage"].path(clip.normalized_key))
    info = probe(path)
    scales = likely_scales(info.width, info.height, clip.campaign.canvas_width,
                           clip.campaign.canvas_height)
    cache = pipeline.proxy_cache(clip.campaign_id)
    return path, scales, [cache / proxy_name(path, s) for s in scales]


def _packet_times(path) -> list[str]:
    """Each video packet's time base, dts, pts and duration, as ffmpeg's framecrc muxer
    lists them (ffprobe's frame times; imageio-ffmpeg ships no ffprobe)."""
    import subprocess

    from workers.media.ffmpeg import ffmpeg_path

    done = subprocess.run([ffmpeg_path(), "-hide_banner", "-nostdin", "-v", "error", "-i",
                           str(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"],
                          capture_output=True, text=True, timeout=60, check=True)
    return [line if line.startswith("#") else ",".join(line.split(",")[:4])
            for line in done.stdout.splitlines() if not line.startswith(("#extradata",
                                                                         "#software"))]


def test_intake_builds_the_proxies_a_big_grid_render_looks_up(app, campaign, media_files,
                                                             monkeypatch):
    """A taken-in clip's proxies for grids of 16-100 clips are built at intake, from one
    ffmpeg, under the names the render looks up: a 20-tile final grid of the campaign's
    clips then builds none; and an intake-built proxy's frame times are a render-built
    one's (a segment seeks and times it the same)."""
    from workers.media import proxies as proxies_module
    from workers.media.plan import plan_render
    from workers.media.render import render
    from workers.media.spec import parse_spec

    app.config["INTAKE_PROXIES"] = True
    runs: list[list] = []
    real_run = proxies_module.run_ffmpeg
    monkeypatch.setattr(proxies_module, "run_ffmpeg",
                        lambda args, **kw: runs.append(args) or real_run(args, **kw))
    ids = _approved(app, campaign, media_files, "landscape", "portrait")
    with app.app_context():
        assert len(runs) == 2  # one decode per clip, whatever the number of scales
        for clip_id in ids:
            assert _clip(app, clip_id).status == "approved"
            _path, scales, paths = _intake_proxies(app, clip_id)
            assert len(scales) >= 2 and all(p.is_file() for p in paths), scales
        # a final grid of 20 tiles (each clip 10 times) finds every proxy it needs
        camp = services.get_campaign(campaign)
        data = pipeline.build_spec(camp, [_clip(app, i) for i in ids], "final")
        data["clips"] = [dict(c, id=f"{c['id']}-{k}") for k in range(10) for c in data["clips"]]
        data["duration"] = 1.0
        spec = parse_spec(data)
        plan = plan_render(spec)
        scales = proxies_module.proxy_scales(plan)
        assert len(scales) == 20
        cache = str(pipeline.proxy_cache(camp.id))
        assert proxies_module.missing({i: spec.clips[i].path for i in scales}, scales,
                                      cache) == 0
        built: list = []
        monkeypatch.setattr(proxies_module, "render_proxy", lambda *a, **k: built.append(a))
        render(spec, str(app.extensions["tutti.storage"].path("grid.mp4")), proxy_dir=cache,
               jobs=1)
        assert built == []
        # frame for frame, the times of a proxy the render would have built
        path, scales, paths = _intake_proxies(app, ids[0])
        monkeypatch.undo()
        alone = app.extensions["tutti.storage"].path("alone.mp4")
        proxies_module.render_proxy(path, str(alone), scales[0], keyint=camp.fps)
        times = _packet_times(paths[0])
        assert len(times) > 50 and times == _packet_times(alone)


def test_intake_proxies_follow_the_configuration(app, campaign, media_files):
    """``INTAKE_PROXIES`` off (or ``RENDER_PROXIES`` off): intake builds none; on: it does."""
    clip_ids = [_submit(app, campaign, media_files[n], name=n)
                for n in ("landscape", "portrait", "silent")]
    with app.app_context():
        app.config["INTAKE_PROXIES"] = False
        pipeline.intake(clip_ids[0])
        app.config["INTAKE_PROXIES"], app.config["RENDER_PROXIES"] = True, False
        pipeline.intake(clip_ids[1])
        for clip_id in clip_ids[:2]:
            assert _clip(app, clip_id).status == "normalized"
            assert not any(p.exists() for p in _intake_proxies(app, clip_id)[2])
        app.config["RENDER_PROXIES"] = True
        pipeline.intake(clip_ids[2])
        assert all(p.is_file() for p in _intake_proxies(app, clip_ids[2])[2])


def test_a_proxy_build_failure_leaves_the_clip_normalized(app, campaign, media_files,
                                                         monkeypatch, caplog):
    """Proxies are a cache: ffmpeg failing on them (or the disk) is logged, the clip is
    normalized all the same and goes on to moderation; nothing half-built is left."""
    from workers.media import proxies as proxies_module

    app.config["INTAKE_PROXIES"] = True
    tried: list = []

    def broken(args, **_kw):
        tried.append(args)
        raise pipeline.FFmpegError("proxy encoder broke", stderr_tail="Conversion failed!")

    monkeypatch.setattr(proxies_module, "run_ffmpeg", broken)
    clip_id = _submit(app, campaign, media_files["landscape"])
    with app.app_context(), caplog.at_level("WARNING"):
        pipeline.intake(clip_id)
        clip = _clip(app, clip_id)
        assert clip.status == "normalized" and clip.reason is None
        assert len(tried) == 1  # it was tried
        assert "proxies could not be built" in caplog.text
        cache = pipeline.proxy_cache(clip.campaign_id)
        assert not [p for p in cache.iterdir() if not p.name.endswith(".lock")]


def test_a_render_keeps_the_intake_proxies_of_takes_awaiting_moderation(app, campaign,
                                                                       media_files):
    """A render prunes the proxies of files the campaign no longer draws; those intake
    built for takes not yet moderated stay, however old, for the render that includes
    them."""
    app.config["INTAKE_PROXIES"] = True
    approved = _approved(app, campaign, media_files, "landscape")
    waiting = _submit(app, campaign, media_files["portrait"], name="portrait")
    with app.app_context():
        pipeline.intake(waiting)
        paths = _intake_proxies(app, waiting)[2]
        hours_ago = time.time() - 3 * 3600
        for p in paths:
            os.utime(p, (hours_ago, hours_ago))
        job = services.request_render(services.get_campaign(campaign), kind="preview")
        pipeline.render(job.id)
        db.session.expire_all()
        assert db.session.get(Render, job.id).status == "done"
        assert all(p.is_file() for p in paths)
        assert _clip(app, approved[0]).status == "approved"


def test_a_clip_withdrawn_while_its_proxies_are_built_leaves_none(app, campaign, media_files,
                                                                 monkeypatch):
    """The participant withdraws while intake builds the proxies (the withdrawal deletes
    those it finds): the ones finished after it are deleted too."""
    from workers.media import proxies as proxies_module

    app.config["INTAKE_PROXIES"] = True
    real = proxies_module.run_ffmpeg
    clip_id = _submit(app, campaign, media_files["landscape"])

    def then_withdrawn(*args, **kwargs):  # encoded, not yet in place: the drop misses them
        real(*args, **kwargs)
        services.withdraw_clip(_clip(app, clip_id))

    monkeypatch.setattr(proxies_module, "run_ffmpeg", then_withdrawn)
    with app.app_context():
        pipeline.intake(clip_id)
        clip = _clip(app, clip_id)
        assert clip.status == "withdrawn"
        cache = pipeline.proxy_cache(clip.campaign_id)
        assert not [p for p in cache.iterdir() if p.suffix == ".mp4"]


def test_an_upload_that_ends_abruptly_is_kept_and_the_participant_is_told(app, campaign,
                                                                          tmp_path):
    """Red team F2, end to end: an MPEG-TS (which states no length) cut partway through a
    packet is normalized at the length that decodes, and the status page and the API
    tell the participant it stops abruptly and to upload again if the take went on."""
    from workers.media.ffmpeg import run_ffmpeg

    whole = tmp_path / "whole.ts"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=s=192x108:r=25:d=4", "-f", "lavfi", "-i",
                "sine=frequency=440:sample_rate=48000:duration=4", "-c:v", "libx264",
                "-preset", "ultrafast", "-c:a", "aac", "-f", "mpegts", str(whole)], timeout=60)
    cut = tmp_path / "take.ts"
    data = whole.read_bytes()
    cut.write_bytes(data[:len(data) * 6 // 10 + 7])
    clip_id = _submit(app, campaign, cut)
    with app.app_context():
        pipeline.intake(clip_id)
        clip = _clip(app, clip_id)
        assert clip.status == "normalized", clip.reason
        assert clip.media["ends_abruptly"] and clip.media["duration"] < 3.5
        token = clip.token
    api = app.test_client().get(f"/api/v1/clips/{token}").get_json()
    abrupt = [c for c in api["checks"] if c["code"] == "ends_abruptly"]
    assert len(abrupt) == 1 and abrupt[0]["severity"] == "warning"
    page = app.test_client().get(f"/clip/{token}").data.decode()
    assert "stops abruptly" in page
