"""Locate ffmpeg and run it: argv lists only, one runner that owns timeouts,
process-group kill, progress parsing and a typed error with the stderr tail.

The media engine knows nothing of Flask, Celery or the database. The one
environment variable it honours is ``TUTTI_FFMPEG`` (an explicit binary), so the
engine works the same from the portal and from the command line.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 20
REPORT_MAX_LINES = 4000
_PROGRESS_LINE = re.compile(r"^[a-z_0-9]+=\S*$")


class FFmpegError(RuntimeError):
    """ffmpeg failed or timed out. ``stderr_tail`` holds its last lines. ``starved``
    (with ``timed_out``): it was stopped because it got too little CPU time to finish
    (stopped with SIGSTOP, a paused container or VM, a machine overloaded), which says
    nothing about its input: the work is to be tried again, never blamed on the file."""

    def __init__(self, message: str, argv: Sequence[str] = (), returncode: int | None = None,
                 stderr_tail: str = "", timed_out: bool = False,
                 starved: bool = False) -> None:
        super().__init__(message)
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.timed_out = timed_out or starved
        self.starved = starved

    def __str__(self) -> str:  # the tail helps whoever reads a log line
        base = super().__str__()
        if self.stderr_tail:
            last = self.stderr_tail.strip().splitlines()[-1:]
            return f"{base}: {last[0]}" if last else base
        return base


@lru_cache(maxsize=1)
def ffmpeg_path() -> str:
    """The ffmpeg binary: ``TUTTI_FFMPEG``, else the imageio-ffmpeg wheel's, else PATH."""
    explicit = os.environ.get("TUTTI_FFMPEG")
    if explicit:
        return explicit
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # noqa: BLE001 - the wheel may be absent or broken; fall back to PATH
        found = shutil.which("ffmpeg")
        if found:
            return found
    raise FFmpegError("ffmpeg not found: install imageio-ffmpeg or set TUTTI_FFMPEG")


def parse_progress_time(line: str) -> float | None:
    """Seconds of output done, from one ``-progress pipe:`` line (``out_time_us=...``)."""
    if line.startswith("out_time_us=") or line.startswith("out_time_ms="):
        value = line.split("=", 1)[1].strip()
        if value.lstrip("-").isdigit():
            return max(0.0, int(value) / 1_000_000)
    return None


def pin(pid: int, cpus: Collection[int]) -> None:
    """Keep process ``pid`` and its threads on ``cpus``. Called as soon as ffmpeg has
    started: its main thread first (the threads it starts later inherit that), then any
    thread already running. Only a matter of speed, so a process already gone or a
    refusal is ignored."""
    try:
        os.sched_setaffinity(pid, cpus)
        for tid in os.listdir(f"/proc/{pid}/task"):
            if int(tid) != pid:
                os.sched_setaffinity(int(tid), cpus)
    except (OSError, AttributeError) as exc:  # AttributeError: no such call on this OS
        log.debug("cannot pin ffmpeg %d to %s: %s", pid, sorted(cpus), exc)


def run_ffmpeg(
    args: Sequence[str],
    *,
    timeout: float = 600.0,
    duration: float | None = None,
    progress: Callable[[float], None] | None = None,
    stdout: int | None = subprocess.DEVNULL,
    binary: str | None = None,
    cpus: Collection[int] | None = None,
) -> bytes:
    """Run ``ffmpeg ARGS`` and return its stdout (when captured).

    ``args`` excludes the binary. With ``progress`` and ``duration`` the callback
    gets a fraction 0..1 as ffmpeg reports output time. ``cpus`` pins the process to
    those cores (:func:`pin`). On timeout the whole process group is killed. Raises
    :class:`FFmpegError` on any failure.
    """
    outcome = _execute(args, timeout=timeout, duration=duration, progress=progress,
                       stdout=stdout, binary=binary, keep_lines=STDERR_TAIL_LINES,
                       cpus=cpus)
    if outcome.returncode != 0:
        raise FFmpegError(f"ffmpeg exited with status {outcome.returncode}", outcome.argv,
                          outcome.returncode, outcome.stderr)
    return outcome.stdout


def ffmpeg_report(
    args: Sequence[str],
    *,
    timeout: float = 60.0,
    max_lines: int = REPORT_MAX_LINES,
    duration: float | None = None,
    progress: Callable[[float], None] | None = None,
    binary: str | None = None,
) -> tuple[int, str]:
    """Run ``ffmpeg ARGS`` for what it prints: ``(exit status, stderr text)``.

    Used to inspect media (there is no ffprobe) and to read measurements (loudnorm's
    JSON): a non-zero status is returned, not raised, because ``ffmpeg -i FILE``
    without an output exits 1 after describing the input. Only the first and the last
    ``max_lines`` lines are kept, so a hostile file that makes ffmpeg log without end
    cannot exhaust memory. Raises :class:`FFmpegError` on a timeout or when ffmpeg
    cannot start.
    """
    outcome = _execute(args, timeout=timeout, keep_lines=max_lines, keep_head=True,
                       duration=duration, progress=progress, binary=binary)
    return outcome.returncode, outcome.stderr


@dataclass(frozen=True)
class _Outcome:
    argv: list[str]
    returncode: int
    stdout: bytes
    stderr: str


def _execute(
    args: Sequence[str],
    *,
    timeout: float,
    keep_lines: int,
    keep_head: bool = False,
    duration: float | None = None,
    progress: Callable[[float], None] | None = None,
    stdout: int | None = subprocess.DEVNULL,
    binary: str | None = None,
    cpus: Collection[int] | None = None,
) -> _Outcome:
    argv = [binary or ffmpeg_path(), "-hide_banner", "-nostdin", "-y"]
    if progress is not None:
        argv += ["-progress", "pipe:2", "-stats_period", "0.5"]
    argv += [str(a) for a in args]
    log.debug("ffmpeg: %s", " ".join(argv))
    head: list[str] = []  # with keep_head: the first keep_lines lines, then the tail
    lines: deque[str] = deque(maxlen=keep_lines)
    out_chunks: list[bytes] = []
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout is None else stdout,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, so a kill takes its children too
        )
    except OSError as exc:
        raise FFmpegError(f"cannot start ffmpeg: {exc}", argv) from exc
    if cpus:
        pin(proc.pid, cpus)

    def read_stdout() -> None:
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read(1 << 16), b""):
            out_chunks.append(chunk)

    reader = None
    if stdout is None:
        reader = threading.Thread(target=read_stdout, daemon=True)
        reader.start()

    timed_out = threading.Event()
    starved = threading.Event()
    finished = threading.Event()

    def kill_group() -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def on_timeout(why: threading.Event) -> None:
        why.set()
        kill_group()

    threading.Thread(target=_watchdog, args=(proc.pid, timeout, finished, on_timeout,
                                             timed_out, starved),
                     daemon=True, name="ffmpeg-timeout").start()
    abandoned = threading.Event()
    stop = getattr(_watched, "event", None)
    if stop is not None:
        def watch() -> None:
            while proc.poll() is None:
                if stop.wait(0.5):
                    abandoned.set()
                    kill_group()
                    return

        threading.Thread(target=watch, daemon=True, name="ffmpeg-stop-when").start()
    started = time.monotonic()
    last_fraction = -1.0
    try:
        assert proc.stderr is not None
        for raw in proc.stderr:
            # the stats line ends in \r; keep only its last state
            line = raw.decode("utf-8", "replace").rstrip().rsplit("\r", 1)[-1]
            done = parse_progress_time(line) if progress is not None else None
            if done is not None:
                if duration:
                    fraction = min(1.0, done / duration)
                    if fraction > last_fraction:  # never report going backwards
                        last_fraction = fraction
                        progress(fraction)
                continue
            if progress is not None and _PROGRESS_LINE.match(line):
                continue
            if keep_head and len(head) < keep_lines:
                head.append(line)
            else:
                lines.append(line)
        returncode = proc.wait()
    except BaseException:
        kill_group()
        proc.wait()
        raise
    finally:
        finished.set()
    if reader is not None:
        reader.join()
    stderr = "\n".join([*head, *lines])
    if starved.is_set():
        raise FFmpegError(f"ffmpeg got too little CPU time to finish in {timeout:.0f} s "
                          "(stopped, paused or starved)", argv, returncode, stderr,
                          starved=True)
    if timed_out.is_set():
        raise FFmpegError(f"ffmpeg timed out after {timeout:.0f} s", argv, returncode,
                          stderr, timed_out=True)
    if abandoned.is_set():
        raise WorkTakenOver("ffmpeg stopped: another worker took this work over")
    log.debug("ffmpeg exited %s in %.2f s", returncode, time.monotonic() - started)
    return _Outcome(argv, returncode, b"".join(out_chunks), stderr)


#: at its time limit, an ffmpeg that got at least this share of the limit in CPU time
#: (all its threads) is stopped as too slow: the input's fault. One that got less was
#: stopped (SIGSTOP, a paused container, a VM migrated), starved by an overloaded
#: machine, or has finished while this worker was paused: it runs on
STARVED_SHARE = 0.25
#: ... until it gets that share, or until it has run (this worker not paused) this many
#: times its limit, and at least STARVED_GRACE seconds past it (a limit of a fraction of
#: a second is shorter than CPU time is counted in): then it is stopped as starved, the
#: worker's trouble, not the input's
STARVED_LIMIT = 4.0
STARVED_GRACE = 5.0
_PROC = os.path.isdir("/proc/self")


def process_cpu(pid: int) -> tuple[str, float] | None:
    """``(state, CPU seconds)`` of process ``pid`` from ``/proc/PID/stat``: its state
    letter ("R" running, "S" sleeping, "T" stopped, "Z" exited and not yet reaped, ...)
    and the user + system time of all its threads and of the children it has waited
    for. None when there is no such process (or no ``/proc``: not Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    # the fields after the command name, which is in parentheses and may hold spaces
    fields = data.rsplit(b")", 1)[-1].split()
    try:
        ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    except (IndexError, ValueError):
        return None
    return fields[0].decode("ascii", "replace"), ticks / _CLOCK_TICKS


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _watchdog(pid: int, timeout: float, finished: threading.Event,
              on_timeout: Callable[[threading.Event], None], timed_out: threading.Event,
              starved: threading.Event) -> None:
    """Stop ffmpeg ``pid`` when it overruns ``timeout`` seconds, judged by the CPU time
    it got (see :data:`STARVED_SHARE`): ``on_timeout(timed_out)`` when it was running
    and did not finish (the input is too slow or hangs it), ``on_timeout(starved)``
    when it got too little CPU for :data:`STARVED_LIMIT` times the limit (and
    :data:`STARVED_GRACE` seconds past it). Time this
    worker itself did not run (the watchdog's own ticks came late: the worker was
    stopped or frozen) does not count: after a pause, an ffmpeg that finished meanwhile
    is read to its end, not killed. Without ``/proc``: wall time, as a plain timer."""
    tick = min(0.5, max(0.02, timeout / 10))
    started = last = time.monotonic()
    paused = 0.0
    while not finished.wait(tick):
        now = time.monotonic()
        late = now - last - tick
        if late > 1.0:  # this worker did not run: stopped, frozen or starved itself
            paused += late
        last = now
        ran = now - started - paused
        if ran < timeout:
            continue
        seen = process_cpu(pid) if _PROC else ("R", timeout)
        if seen is None or seen[0] in ("Z", "X"):
            continue  # it has exited: its output is read to the end
        state, cpu = seen
        if cpu >= STARVED_SHARE * timeout:
            on_timeout(timed_out)
            return
        if ran >= max(STARVED_LIMIT * timeout, timeout + STARVED_GRACE):
            log.warning("ffmpeg %d got %.1f CPU s in %.0f s (state %s): stopped as starved",
                        pid, cpu, ran, state)
            on_timeout(starved)
            return


_watched = threading.local()


class WorkTakenOver(Exception):
    """Another worker took this work over (this one was presumed dead): stop, record
    nothing. Raised by an ffmpeg run inside :func:`stop_when`, and by the pipeline."""


@contextmanager
def stop_when(event: threading.Event) -> Iterator[None]:
    """Inside the block, every ffmpeg this thread starts is killed (its process group) as
    soon as ``event`` is set, and raises :class:`WorkTakenOver` (not an FFmpegError: the
    file is not at fault, and nothing may be recorded). The lease
    heartbeat sets it when another worker took the work over, so a worker that was paused
    (SIGSTOP, a frozen VM) does not convert on for minutes into a file nobody keeps."""
    previous = getattr(_watched, "event", None)
    _watched.event = event
    try:
        yield
    finally:
        _watched.event = previous


class Fence(Protocol):
    """Who may publish the results of a piece of work: the pipeline passes its lease
    (:class:`workers.leases.Heartbeat`), the engine calls it and knows nothing more.
    Work taken over by another worker (this one presumed dead: paused, starved past
    its lease) stops before converting and never publishes over the new owner's files."""

    def check(self) -> None:
        """Raise :class:`WorkTakenOver` when the work is no longer ours."""

    def holding(self) -> AbstractContextManager[None]:
        """A block run only while the work is ours, and during which no other worker can
        take it over (publish a file inside it); raises :class:`WorkTakenOver` instead of
        running the block when the work was taken over."""


def input_url(path: str) -> str:
    """A local path as an ffmpeg URL: ``file:`` stops a name like ``pipe:1`` or
    ``https://...`` or ``-`` from being read as anything but a local file."""
    return "file:" + os.path.abspath(os.fspath(path))


def remove_quietly(path: str) -> None:
    """Delete a temp file if it exists (cleanup after a failure)."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:  # cleanup must not hide the original error
        log.warning("could not remove %s: %s", path, exc)


def replace_atomically(tmp_path: str, final_path: str) -> None:
    """Publish a finished temp file under its final name (same directory, so rename is atomic)."""
    os.replace(tmp_path, final_path)


def temp_path_for(final_path: str, suffix: str | None = None) -> str:
    """A temp name beside ``final_path`` that keeps its extension (ffmpeg picks the muxer by it)."""
    head, tail = os.path.split(final_path)
    stem, ext = os.path.splitext(tail)
    return os.path.join(head, f".{stem}.{os.getpid()}.{threading.get_ident()}.tmp{suffix or ext}")
