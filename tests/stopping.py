"""Stop an ffmpeg run as a paused worker, container or VM would (SIGSTOP), for the tests
of what a run that got no CPU time means (red team W1, issue 15)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading


def stop_first_ffmpeg(monkeypatch, seconds: float | None, match: str = "") -> list[int]:
    """Stop (SIGSTOP) the first ffmpeg started whose argv contains ``match``, as soon as
    it runs, and let it go on (SIGCONT) after ``seconds`` (never with None): a paused
    container or VM, a debugger, a machine that gives it no CPU. Returns a list that holds
    its pid once it has started."""
    from workers.media import ffmpeg

    real = subprocess.Popen
    stopped: list[int] = []

    def go_on(pid: int) -> None:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass

    class Stopping(real):
        def __init__(self, argv, *args, **kwargs):
            super().__init__(argv, *args, **kwargs)
            if not stopped and match in " ".join(map(str, argv)):
                os.kill(self.pid, signal.SIGSTOP)
                stopped.append(self.pid)
                if seconds is not None:
                    threading.Timer(seconds, go_on, (self.pid,)).start()

    monkeypatch.setattr(ffmpeg.subprocess, "Popen", Stopping)
    return stopped
