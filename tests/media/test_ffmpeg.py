import os
import time

import pytest

from tests.stopping import stop_first_ffmpeg
from workers.media.ffmpeg import (
    FFmpegError,
    WorkTakenOver,
    ffmpeg_report,
    input_url,
    parse_progress_time,
    remove_quietly,
    run_ffmpeg,
    stop_when,
    temp_path_for,
)


def test_failure_raises_with_the_stderr_tail():
    with pytest.raises(FFmpegError) as caught:
        run_ffmpeg(["-i", "file:/nonexistent/clip.mp4", "-f", "null", "-"], timeout=30)
    err = caught.value
    assert err.returncode not in (0, None)
    assert "No such file" in err.stderr_tail
    assert "No such file" in str(err)
    assert not err.timed_out


def test_timeout_kills_the_process_group():
    from workers.media import ffmpeg

    started = time.monotonic()
    with pytest.raises(FFmpegError) as caught:
        # at its own pace (-re), it uses little CPU: stopped as starved after the grace
        run_ffmpeg(["-re", "-f", "lavfi", "-i", "testsrc2=s=64x36:r=10", "-f", "null", "-"],
                   timeout=0.5)
    assert caught.value.timed_out
    assert time.monotonic() - started < 0.5 + ffmpeg.STARVED_GRACE + 5


def test_a_run_stops_when_its_work_is_taken_over():
    """Red team, issue 15: a worker resumed after its lease was taken over converted on
    for 4 minutes into a file nobody keeps, beside the worker doing the real work."""
    import threading

    lost = threading.Event()
    threading.Timer(0.5, lost.set).start()
    with stop_when(lost), pytest.raises(WorkTakenOver) as caught:  # 30 s of real time
        run_ffmpeg(["-re", "-f", "lavfi", "-i", "testsrc2=s=64x36:r=10:d=30", "-f", "null",
                    "-"], timeout=60)
    assert "took this work over" in str(caught.value)
    # outside the block, nothing watches: a run ends as it would
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=s=64x36:r=10:d=1", "-f", "null", "-"],
               timeout=60)


def test_progress_is_monotonic_and_reaches_the_end():
    seen: list[float] = []
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=s=64x36:r=25:d=3", "-f", "null", "-"],
               timeout=30, duration=3.0, progress=seen.append)
    assert seen, "no progress reported"
    assert seen == sorted(seen)
    assert seen[-1] == pytest.approx(1.0, abs=0.05)


def test_stdout_can_be_captured():
    out = run_ffmpeg(["-f", "lavfi", "-i", "color=c=red:s=4x2", "-frames:v", "1",
                      "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"], stdout=None)
    assert len(out) == 4 * 2 * 3
    assert out[0] > 240 and out[1] < 10 and out[2] < 10


def test_report_returns_status_and_text_without_raising(tmp_path):
    status, text = ffmpeg_report(["-f", "lavfi", "-i", "testsrc2=s=64x36:d=1"])
    assert status != 0  # no output file given
    assert "Input #0, lavfi" in text


def test_parse_progress_time():
    assert parse_progress_time("out_time_us=1500000") == 1.5
    assert parse_progress_time("out_time_us=N/A") is None
    assert parse_progress_time("frame=12") is None


def test_temp_path_is_hidden_beside_the_final_and_keeps_the_extension(tmp_path):
    final = str(tmp_path / "render.mp4")
    tmp = temp_path_for(final)
    assert os.path.dirname(tmp) == str(tmp_path)
    assert os.path.basename(tmp).startswith(".render.")
    assert tmp.endswith(".mp4") and tmp != final
    assert temp_path_for(final, ".wav").endswith(".wav")


def test_input_url_never_reads_a_name_as_a_protocol(tmp_path):
    assert input_url("pipe:1") == "file:" + os.path.abspath("pipe:1")
    assert input_url(str(tmp_path / "a.mp4")) == f"file:{tmp_path}/a.mp4"


def test_remove_quietly(tmp_path):
    path = tmp_path / "x"
    path.write_text("x")
    remove_quietly(str(path))
    remove_quietly(str(path))  # already gone: no error
    assert not path.exists()


def test_a_run_stopped_past_its_timeout_is_not_timed_out(monkeypatch):
    """Red team W1, issue 15: an ffmpeg that got no CPU during its time limit (stopped,
    paused, starved) has not shown that its input is slow: it runs on and finishes."""
    from workers.media import ffmpeg

    # stopped past its limit (1 s), not past the cap
    stopped = stop_first_ffmpeg(monkeypatch, seconds=1.0 + ffmpeg.STARVED_GRACE / 2)
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=s=64x36:r=10:d=1", "-f", "null", "-"],
               timeout=1.0)
    assert stopped, "the run was not stopped"


def test_a_run_stopped_for_ever_ends_as_starved_not_as_slow(monkeypatch):
    stopped = stop_first_ffmpeg(monkeypatch, seconds=None)
    with pytest.raises(FFmpegError) as caught:
        run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=s=64x36:r=10:d=1", "-f", "null", "-"],
                   timeout=0.5)
    assert stopped
    assert caught.value.starved and caught.value.timed_out
    assert "too little CPU" in str(caught.value)


def test_a_busy_run_past_its_timeout_is_timed_out_not_starved(monkeypatch):
    """The time limit still stops an ffmpeg that works on and on (a hostile or huge
    input): it got its CPU, so the verdict is the input's."""
    from workers.media import ffmpeg

    monkeypatch.setattr(ffmpeg, "STARVED_LIMIT", 60.0)  # however loaded this machine is
    with pytest.raises(FFmpegError) as caught:
        run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=s=640x360:r=30", "-f", "null", "-"],
                   timeout=1.0)
    assert caught.value.timed_out and not caught.value.starved


def test_a_run_that_exited_while_unread_is_not_killed():
    """After a pause of the worker, the time limit is past but ffmpeg finished meanwhile
    (exited, not yet reaped): the watchdog leaves it to be read to its end."""
    import subprocess
    import threading

    from workers.media.ffmpeg import _watchdog, process_cpu

    proc = subprocess.Popen(["true"])
    while (process_cpu(proc.pid) or ("?",))[0] != "Z":
        time.sleep(0.01)
    calls: list[threading.Event] = []
    finished = threading.Event()
    timed_out, starved = threading.Event(), threading.Event()
    watch = threading.Thread(target=_watchdog, args=(proc.pid, 0.05, finished, calls.append,
                                                     timed_out, starved))
    watch.start()
    time.sleep(0.5)  # ten times its limit
    finished.set()
    watch.join()
    proc.wait()
    assert calls == []
