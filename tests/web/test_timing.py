"""Time maps in the portal: a switch per clip, limits per campaign (owners), fitted at the
render, used by its spec while fresh, drawn on the clip page."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import wavfile

from portal import services
from portal.extensions import db
from portal.models import Clip, Render
from tests.conftest import ensure_organizer, log_in
from tests.media.test_timemap import OFFSET, guide_signal, slow, take_signal
from workers import pipeline
from workers.media.ffmpeg import run_ffmpeg

RATE = 48000


@pytest.fixture(scope="module")
def timing_media(tmp_path_factory):
    root = tmp_path_factory.mktemp("timing")
    wavfile.write(root / "guide.wav", RATE, guide_signal(RATE).astype(np.float32))
    wavfile.write(root / "slow.wav", RATE, take_signal(slow, RATE).astype(np.float32))
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=192x108:rate=25", "-i",
                str(root / "slow.wav"), "-shortest", "-pix_fmt", "yuv420p", "-c:v", "libx264",
                "-preset", "ultrafast", "-c:a", "aac", "-b:a", "192k",
                str(root / "slow.mp4")], timeout=120)
    return {"guide": root / "guide.wav", "slow": root / "slow.mp4"}


@pytest.fixture
def slow_clip(app, timing_media) -> int:
    with app.app_context():
        campaign = services.create_campaign("timed", "Timed", parts=["Alto"],
                                            guide_path=str(timing_media["guide"]),
                                            owner=ensure_organizer())
        with open(timing_media["slow"], "rb") as handle:
            clip = services.submit_clip(campaign, handle, "slow.mp4", name="Ana", part="Alto",
                                        consent=True)
        clip_id = clip.id
        pipeline.intake(clip_id)
        clip = db.session.get(Clip, clip_id)
        clip.offset_seconds = OFFSET  # the sync's one offset (tested elsewhere)
        clip.sync_state = "done"
        services.moderate_clip(clip, "approved")
    return clip_id


def test_switch_fit_render_and_picture(app, organizer_client, slow_clip):
    answer = organizer_client.post(f"/organize/clips/{slow_clip}/sound",
                                   data={"timing": "yes", "loudness_match": "yes"})
    assert answer.status_code == 303
    with app.app_context():
        job = services.request_render(services.get_campaign("timed"), "preview",
                                      options={"audio": "mix"})
        pipeline.render(job.id)
        db.session.expire_all()
        job = db.session.get(Render, job.id)
        assert job.status == "done", job.reason
        clip = db.session.get(Clip, slow_clip)
        knots = clip.time_map["knots"]
        assert clip.time_map["max_shift_ms"] == 80 and clip.time_map["max_tempo_pct"] == 3.0
        # the map found the 2 % slow take: at the last knot the take is 2 % on
        g, c = knots[-1]
        assert abs(c - slow(g)) <= 0.010
        spec_clip = job.spec["clips"][0]
        assert spec_clip["time_map"] == knots and spec_clip["drift_ppm"] == 0.0
        assert clip.time_map["used"] is True and clip.time_map["gain"] > 0.1
    page = organizer_client.get(f"/organize/clips/{slow_clip}").get_data(as_text=True)
    assert '<svg class="timemap"' in page and "<polyline points=" in page
    assert "Time map not used" not in page
    # a nudge makes the map stale: the next spec has none until it is fitted again
    organizer_client.post(f"/organize/clips/{slow_clip}/nudge", data={"nudge_ms": "20"})
    with app.app_context():
        clip = db.session.get(Clip, slow_clip)
        assert pipeline.current_time_map(clip) is None
        spec = pipeline.build_spec(clip.campaign, [clip], "final", {"audio": "mix"})
        assert "time_map" not in spec["clips"][0]
    page = organizer_client.get(f"/organize/clips/{slow_clip}").get_data(as_text=True)
    assert "fitted again at the next render" in page


def test_a_map_not_used_is_said_and_the_take_plays_at_its_offset(app, organizer_client,
                                                                  slow_clip):
    with app.app_context():
        clip = db.session.get(Clip, slow_clip)
        clip.time_map = {"offset": clip.effective_offset, "max_shift_ms": 80,
                         "max_tempo_pct": 3.0, "used": False, "gain": 0.03,
                         "knots": [[0.0, clip.effective_offset],
                                   [10.0, clip.effective_offset + 10.0]]}
        clip.timing = True
        db.session.commit()
        assert pipeline.time_map_is_current(clip)  # not fitted again at each render
        spec_clip = pipeline.build_spec(clip.campaign, [clip], "final")["clips"][0]
        assert "time_map" not in spec_clip
        assert spec_clip["offset"] == round(clip.effective_offset, 4)
    page = organizer_client.get(f"/organize/clips/{slow_clip}").get_data(as_text=True)
    assert 'id="timemap-unused"' in page and "+3 %, 10 % needed" in page
    assert "fitted again at the next render" not in page


def test_a_take_beyond_the_tempo_limit_is_said(app, organizer_client, slow_clip):
    with app.app_context():
        clip = db.session.get(Clip, slow_clip)
        o = clip.effective_offset
        clip.time_map = {"offset": o, "max_shift_ms": 80, "max_tempo_pct": 3.0,
                         "used": True, "gain": 0.3, "beyond_tempo": 1.05,
                         "knots": [[0.0, o], [10.0, o + 10.3]]}
        clip.timing = True
        db.session.commit()
    page = organizer_client.get(f"/organize/clips/{slow_clip}").get_data(as_text=True)
    assert 'id="timemap-beyond"' in page and "about 5.0 % slow" in page
    assert "up to about 200 ms by the end" in page  # (5 % - 3 %) x 10 s


def test_switched_off_no_map_in_the_spec(app, slow_clip):
    with app.app_context():
        clip = db.session.get(Clip, slow_clip)
        clip.time_map = {"offset": OFFSET, "max_shift_ms": 80, "max_tempo_pct": 3.0,
                         "knots": [[0.0, OFFSET], [10.0, OFFSET + 10.2]]}
        clip.timing = True
        db.session.commit()
        assert pipeline.build_spec(clip.campaign, [clip], "final")["clips"][0]["time_map"]
        clip.timing = False
        db.session.commit()
        assert "time_map" not in pipeline.build_spec(clip.campaign, [clip], "final")["clips"][0]


@pytest.mark.parametrize("form,problem", [
    ({"max_shift_ms": "500", "max_tempo_pct": "3"}, "between 0 and 300 ms"),
    ({"max_shift_ms": "80", "max_tempo_pct": "9"}, "between 0 and 3 %"),
    ({"max_shift_ms": "lots", "max_tempo_pct": "3"}, "whole number"),
    ({"max_shift_ms": "80", "max_tempo_pct": "nan"}, "between 0 and 3 %"),
])
def test_limits_are_checked(app, organizer_client, slow_clip, form, problem):
    answer = organizer_client.post("/organize/c/timed/timing",
                                   data={**form, "clip_id": str(slow_clip)})
    assert answer.status_code == 400  # the clip page with the limits' form, and the reason
    page = answer.get_data(as_text=True)
    assert problem in page and 'action="/organize/c/timed/timing"' in page
    with app.app_context():
        campaign = services.get_campaign("timed")
        assert (campaign.timing_max_shift_ms, campaign.timing_max_tempo_pct) == (80, 3.0)


def test_owners_set_limits_moderators_may_not(app, organizer_client, slow_clip):
    answer = organizer_client.post("/organize/c/timed/timing",
                                   data={"max_shift_ms": "40", "max_tempo_pct": "1.5"})
    assert answer.status_code == 303
    with app.app_context():
        campaign = services.get_campaign("timed")
        assert (campaign.timing_max_shift_ms, campaign.timing_max_tempo_pct) == (40, 1.5)
        ensure_organizer("mod@example.org", "moderator pw")
        services.add_member(campaign, "mod@example.org", "moderator")
    moderator = app.test_client()
    assert log_in(moderator, "mod@example.org", "moderator pw").status_code == 303
    assert moderator.post("/organize/c/timed/timing",
                          data={"max_shift_ms": "10", "max_tempo_pct": "0"}).status_code == 403
    page = moderator.get(f"/organize/clips/{slow_clip}").get_data(as_text=True)
    assert "Save limits" not in page and "Pull into time" in page
