"""The state machines: the allowed paths, the refused ones, the timeline."""

from __future__ import annotations

import pytest

from portal import states
from portal.models import Clip, Render


def _clip(status: str = "received") -> Clip:
    clip = Clip(status=status, display_name="Ana", original_key="k")
    clip.events = []
    return clip


def test_the_happy_path_of_a_clip_writes_a_timeline():
    clip = _clip()
    for new in ("checked", "normalized", "synced", "approved"):
        states.move_clip(clip, new)
    assert clip.status == "approved"
    assert [e.status for e in clip.events] == ["checked", "normalized", "synced", "approved"]


def test_a_rejection_keeps_its_reason():
    clip = _clip()
    states.move_clip(clip, "rejected", "This file is a PNG image, not a video.")
    assert clip.reason == "This file is a PNG image, not a video."
    assert clip.events[-1].reason == clip.reason


@pytest.mark.parametrize("start, new", [
    ("received", "approved"),      # nothing is approved before it is processed
    ("rejected", "approved"),
    ("withdrawn", "received"),     # withdrawn is final
    ("approved", "normalized"),
    ("received", "bogus"),
])
def test_refused_clip_transitions(start, new):
    clip = _clip(start)
    with pytest.raises(states.InvalidTransition):
        states.move_clip(clip, new)
    assert clip.status == start and clip.events == []


def test_every_clip_state_has_a_label_and_a_transition_entry():
    assert set(states.CLIP_STATES) == set(states.CLIP_TRANSITIONS) == set(states.CLIP_LABELS)


def test_render_lifecycle_stamps_times_and_resets_on_requeue():
    render = Render(status="queued", progress=0.0, cancel_requested=False)
    states.move_render(render, "running")
    assert render.started_at is not None
    render.progress = 0.5
    states.move_render(render, "failed", "ffmpeg failed")
    assert render.finished_at is not None and render.reason == "ffmpeg failed"
    states.move_render(render, "queued")
    assert render.progress == 0.0
    with pytest.raises(states.InvalidTransition):
        states.move_render(Render(status="done"), "running")
