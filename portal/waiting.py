"""Which pieces of work have a message waiting in the broker, so that none is sent twice.

The database says what is pending; the broker only wakes workers. The reconciler sends
pending work again when its message may have been lost, and before this module it did so
on every pass: a render whose join was lost, with no render worker up, collected 337
copies of its message in an hour (red team, issue 15). Now every send through
:func:`portal.services.enqueue` first leaves a *waiting mark* for its work (task name and
arguments): ``tutti:waiting:<task>:<args as JSON>``, with a time to live. A worker removes
the mark when it starts the task (:func:`started`, from ``FlaskTask.__call__``), and a
send finds the mark and sends nothing while the message it stands for still waits.

The mark's time to live backs off: the n-th send of the same work since a worker last
started it lives ``RESEND_SECONDS * 2**(n-1)`` seconds, at most ``RESEND_MAX_SECONDS``
(``tutti:sends:<task>:<args>`` counts the sends). When a mark expired while no worker
took its message, the reconciler looks in the broker's queue itself (Redis lists; see
:func:`in_broker`) before sending again: the message found there is marked again with
the next, longer, time to live, and only a message truly gone is sent again. So a work
item has at most one message waiting, however long no worker consumes its queue.

The marks live in the broker's Redis (same URL, same database; a few hundred bytes a
pending item, gone with its work). With the in-memory broker of the embedded default
they live in this process, beside the worker thread that removes them. A Redis that
does not answer or refuses writes (out of memory) never stops a send: the mark is then
skipped, and the send itself fails or succeeds on its own.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence

from flask import Flask, current_app

from .broker import broker_redis

log = logging.getLogger(__name__)

#: kombu's Redis transport keeps messages of priority p (not 0) in ``<queue>\x06\x16<p>``
PRIORITY_SEP = "\x06\x16"
#: a count of sends outlives any mark (a day), so the back-off goes on across marks
COUNT_SECONDS = 24 * 3600

Work = tuple[str, tuple]


def _args_key(args: Sequence[object]) -> str:
    return json.dumps(list(args), separators=(",", ":"))


def mark_key(task: str, args: Sequence[object]) -> str:
    """The waiting mark's Redis key: ``tutti:waiting:tutti.render:[12]``."""
    return f"tutti:waiting:{task}:{_args_key(args)}"


def count_key(task: str, args: Sequence[object]) -> str:
    return f"tutti:sends:{task}:{_args_key(args)}"


def mark_seconds(sends: int, app: Flask | None = None) -> int:
    """How long the mark of the ``sends``-th send (1 = the first) lives, in seconds:
    ``RESEND_SECONDS * 2**(sends-1)``, at least 1, at most ``RESEND_MAX_SECONDS``."""
    config = (app or current_app).config
    base = max(1, int(config["RESEND_SECONDS"]))
    cap = max(base, int(config["RESEND_MAX_SECONDS"]))
    return min(cap, base * 2 ** min(max(sends - 1, 0), 30))


class _MemoryMarks:
    """The marks of the in-memory broker: in this process, with expiry."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.until: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def waiting(self, keys: list[str]) -> list[bool]:
        now = time.monotonic()
        with self.lock:
            return [self.until.get(k, 0.0) > now for k in keys]

    def mark(self, key: str, counter: str, app: Flask) -> int:
        with self.lock:
            sends = self.counts[counter] = self.counts.get(counter, 0) + 1
            self.until[key] = time.monotonic() + mark_seconds(sends, app)
            return sends

    def clear(self, *keys: str) -> None:
        with self.lock:
            for key in keys:
                self.until.pop(key, None)
                self.counts.pop(key, None)


def _store(app: Flask):
    """The app's marks: a Redis client on the broker, or a :class:`_MemoryMarks`."""
    store = app.extensions.get("tutti.waiting")
    if store is None:
        store = broker_redis(str(app.config["BROKER_URL"]))
        if store is None:
            store = _MemoryMarks()
        app.extensions["tutti.waiting"] = store
    return store


def _app() -> Flask:
    return current_app._get_current_object()  # type: ignore[attr-defined]


def waiting(items: Iterable[Work]) -> set[Work]:
    """Of ``items`` (task name, args), those whose waiting mark is live (one Redis round
    trip for all). A Redis error answers "none" (sending twice is harmless; not sending
    could lose work)."""
    items = list(items)
    if not items:
        return set()
    app = _app()
    store = _store(app)
    keys = [mark_key(task, args) for task, args in items]
    try:
        found = store.waiting(keys) if isinstance(store, _MemoryMarks) else store.mget(keys)
    except Exception as exc:  # noqa: BLE001 - redis.RedisError and socket errors
        log.warning("waiting marks: the broker does not answer (%s); sending anyway", exc)
        return set()
    return {item for item, live in zip(items, found, strict=True) if live}


def mark(task: str, args: Sequence[object]) -> int:
    """Leave the waiting mark of one send (before the send: a worker that starts the task
    at once removes it after). Returns which send of this work it is since a worker last
    started it (1 = the first), or 0 when the mark could not be written."""
    app = _app()
    store = _store(app)
    key, counter = mark_key(task, args), count_key(task, args)
    if isinstance(store, _MemoryMarks):
        return store.mark(key, counter, app)
    try:
        with store.pipeline() as pipe:
            pipe.incr(counter)
            pipe.expire(counter, COUNT_SECONDS)
            sends = int(pipe.execute()[0])
        store.set(key, str(sends), ex=mark_seconds(sends, app))
        return sends
    except Exception as exc:  # noqa: BLE001 - out of memory, or down: the send decides
        log.warning("waiting mark of %s%s not written (%s)", task, list(args), exc)
        return 0


def unmark(task: str, args: Sequence[object]) -> None:
    """Remove the mark of a send that failed (and the count it added)."""
    _clear(_app(), task, args)


def started(task: str, args: Sequence[object], app: Flask | None = None) -> None:
    """A worker starts the task: its message no longer waits, and the back-off starts
    again from the first send."""
    _clear(app or _app(), task, args)


def _clear(app: Flask, task: str, args: Sequence[object]) -> None:
    store = _store(app)
    keys = (mark_key(task, args), count_key(task, args))
    try:
        store.clear(*keys) if isinstance(store, _MemoryMarks) else store.delete(*keys)
    except Exception as exc:  # noqa: BLE001 - the mark then expires by itself
        log.warning("waiting mark of %s%s not removed (%s)", task, list(args), exc)


def in_broker(queues: Iterable[str], *, batch: int = 500) -> set[Work] | None:
    """The work whose messages wait in the broker's ``queues`` now (Redis lists, priority
    lists included; messages a worker took but has not acknowledged are not waiting).
    None when the broker cannot be read (not Redis, or it does not answer): the caller
    then trusts the marks alone. Reads every waiting message once, ``batch`` at a time."""
    app = _app()
    store = _store(app)
    if isinstance(store, _MemoryMarks):
        return None
    found: set[Work] = set()
    try:
        for queue in queues:
            for name in (queue, *(f"{queue}{PRIORITY_SEP}{p}" for p in range(1, 10))):
                start = 0
                while True:
                    chunk = store.lrange(name, start, start + batch - 1)
                    for raw in chunk:
                        work = _work_of(raw)
                        if work is not None:
                            found.add(work)
                    if len(chunk) < batch:
                        break
                    start += batch
    except Exception as exc:  # noqa: BLE001 - redis.RedisError and socket errors
        log.warning("waiting messages: the broker cannot be read (%s)", exc)
        return None
    return found


def _work_of(raw: bytes) -> Work | None:
    """(task name, args) of one kombu message on Redis (Celery's message protocol 2:
    the task name in the headers, ``[args, kwargs, embed]`` in the body)."""
    try:
        message = json.loads(raw)
        task = message["headers"]["task"]
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return task, tuple(args)
    except Exception:  # noqa: BLE001 - a message not of ours (or another protocol)
        return None


def remark(task: str, args: Sequence[object]) -> None:
    """Its message was found waiting after the mark expired: mark it again, with the next
    (longer) time to live, without sending."""
    mark(task, args)
