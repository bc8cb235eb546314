"""A failed hand-off export tells the organizer what happened in plain words: never
ffmpeg's last line, a server path or an errno (they stay in the worker's log)."""

from __future__ import annotations

import pytest

from workers.media.ffmpeg import FFmpegError
from workers.media.handoff import HandoffError
from workers.media.spec import SpecError
from workers.pipeline import handoff_failure_reason

RAW = ("ffmpeg", "0x55", "/srv/", "Errno", "No such file", "clips[3]", "status 1")


@pytest.mark.parametrize("exc, says", [
    (FFmpegError("ffmpeg exited with status 1", ["-i", "/srv/media/clips/ab.mp4"], 1,
                 "[in#0 @ 0x55d0c8] Error opening input file /srv/media/clips/ab.mp4.\n"
                 "Error opening input files: No such file or directory"),
     "Render again, then export"),
    (FFmpegError("ffmpeg timed out after 600 s", [], None, "frame= 10", timed_out=True),
     "took too long"),
    (HandoffError("the hand-off could not be written: [Errno 28] No space left on device: "
                  "'/srv/media/handoffs/3/x.zip.tmp'"), "could not be saved"),
    (SpecError("clips[3].path", "no such file /srv/media/clips/ab.mp4"),
     "Render again, then export"),
])
def test_a_failed_hand_off_is_told_in_plain_words(exc, says):
    reason = handoff_failure_reason(exc)
    assert says in reason
    assert not [word for word in RAW if word in reason], reason
    # what the row held before: the exception's own text inside the sentence
    assert str(exc) not in reason
