"""Logging: every line can say which clip and render it is about, and with
``TUTTI_LOG_FORMAT=json`` each line is one JSON object (for a log collector).

Tasks run inside :func:`log_context` (``clip_id=`` / ``render_id=``), so every line they
log, the media engine's included, carries the id; lines outside a task that name a clip or
render in their message ("clip 12: ...", "render 3: ...") get the id from it."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

_ids: contextvars.ContextVar[dict[str, object] | None] = contextvars.ContextVar(
    "tutti_log_ids", default=None)
_NAMED = re.compile(r"\b(clip|render) (\d+)\b")
FIELDS = ("clip_id", "render_id", "task")


@contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Lines logged inside carry these ids (``clip_id``, ``render_id``, ``task``)."""
    token = _ids.set({**(_ids.get() or {}), **ids})
    try:
        yield
    finally:
        _ids.reset(token)


class IdsFilter(logging.Filter):
    """Put the context's ids (or those a message names) on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = dict(_ids.get() or {})
        if "clip_id" not in ids or "render_id" not in ids:
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format string is logging's to report
                message = str(record.msg)
            for kind, number in _NAMED.findall(message):
                ids.setdefault(f"{kind}_id", int(number))
        for name in FIELDS:
            setattr(record, name, ids.get(name))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the ids,
    and the exception's traceback when there is one."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        body = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") +
                f".{int(record.msecs):03d}Z",
                "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                body[name] = value
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False, default=str)


_format = "text"  # the process's format, set by configure(), used by adopt()


def configure(level: int, fmt: str) -> None:
    """Set up the root logger once per process (text or ``json``); the ids filter goes on
    its handlers, so every library's lines carry them too. In JSON, Python's warnings are
    logged too (a warning printed as text would break the one-object-a-line stream)."""
    global _format
    _format = fmt
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    adopt(root)
    if fmt == "json":
        logging.captureWarnings(True)


def adopt(logger: logging.Logger) -> None:
    """Give ``logger``'s own handlers the ids filter and the process's format. For the
    loggers that do not hand their lines to the root's handlers: Celery's worker sets up
    handlers of its own, in its text format, on the pool supervisor's logger
    (``multiprocessing``: "Process 'ForkPoolWorker-3' pid:25371 exited with 'signal 9'")
    and on ``celery.task`` (``workers.celery_app`` calls this after it does)."""
    for handler in logger.handlers:
        if not any(isinstance(f, IdsFilter) for f in handler.filters):
            handler.addFilter(IdsFilter())
        if _format == "json" and not isinstance(handler.formatter, JsonFormatter):
            handler.setFormatter(JsonFormatter())
