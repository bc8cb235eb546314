"""Celery bound to the Flask app once (the Flask docs' ``celery_init_app``
pattern): every task runs inside an app context, settings come from the
``CELERY`` config key, tasks are ``@shared_task`` in :mod:`workers.tasks`."""

from __future__ import annotations

import logging
import threading
import time

from celery import Celery, Task
from celery.worker.consumer import Consumer
from flask import Flask

from portal import waiting

log = logging.getLogger(__name__)


def _adopt_celerys_loggers(**kwargs: object) -> None:
    """After ``tutti worker`` (Celery) has set up its logging: its own handlers, on the
    loggers that do not pass lines up to the root's, take Tutti's format too (JSON with
    ``TUTTI_LOG_FORMAT=json``), so every line of a worker's output is one."""
    from celery.utils.log import get_multiprocessing_logger

    from portal.logs import adopt

    adopt(get_multiprocessing_logger())
    if isinstance(kwargs.get("logger"), logging.Logger):
        adopt(kwargs["logger"])


def _connect_logging_signals() -> None:
    from celery.signals import after_setup_logger, after_setup_task_logger

    after_setup_logger.connect(_adopt_celerys_loggers, weak=False,
                               dispatch_uid="tutti-adopt-loggers")
    after_setup_task_logger.connect(_adopt_celerys_loggers, weak=False,
                                    dispatch_uid="tutti-adopt-task-logger")


_connect_logging_signals()


class PatientConsumer(Consumer):
    """Celery's consumer, which waits longer and longer while the broker refuses commands.

    Redis out of memory (``maxmemory`` with ``noeviction``) answers writes with an error
    that kombu calls a channel error. Celery's consumer used to die of it ("Unrecoverable
    error": a worker starting, or taking a message, writes to Redis); with
    ``broker_channel_error_retry`` it reconnects instead, but at once and forever, five
    times a second with a traceback each. This one waits between attempts: 1 s, 2 s, 4 s
    ... at most :attr:`backoff_max`, one warning line each, and goes on as before once a
    connection works (the database says what is pending: the reconciler sends again any
    message lost while Redis refused it). Connection errors keep kombu's own retries."""

    backoff_max = 15.0

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.refusals = 0

    def connect(self):  # noqa: ANN201 - kombu's Connection
        conn = super().connect()
        if self.refusals:
            log.warning("the broker takes commands again after %d refusal(s)", self.refusals)
        self.refusals = 0
        return conn

    def on_connection_error_before_connected(self, exc: BaseException) -> None:
        super().on_connection_error_before_connected(exc)
        self._wait_if_refused(exc)

    def on_connection_error_after_connected(self, exc: BaseException) -> None:
        super().on_connection_error_after_connected(exc)
        self._wait_if_refused(exc)

    def _wait_if_refused(self, exc: BaseException) -> None:
        if not isinstance(exc, tuple(self.channel_errors)) or isinstance(
                exc, tuple(self.connection_errors)):
            return
        from celery.worker.state import maybe_shutdown

        self.refusals += 1
        delay = min(self.backoff_max, 2.0 ** (self.refusals - 1))
        log.warning("the broker refused a command (%s): out of memory? consuming again in "
                    "%.0f s (refusal %d)", exc, delay, self.refusals)
        until = time.monotonic() + delay
        while time.monotonic() < until:  # a shutdown asked for meanwhile is not kept waiting
            maybe_shutdown()
            time.sleep(min(0.5, max(0.0, until - time.monotonic())))


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                if self.name != "tutti.reconcile":
                    # its message waits no more: the next send of this work may go
                    waiting.started(self.name, args, app)
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    if str(app.config["CELERY"]["broker_url"]).startswith("memory"):
        celery_app.conf.broker_transport_options = {"polling_interval": 0.2}
    celery_app.set_default()
    app.extensions["celery"] = celery_app

    from celery.signals import worker_process_init

    @worker_process_init.connect(weak=False)
    def fresh_connections_after_fork(**_kwargs: object) -> None:
        # A forked pool process must not share the parent's database sockets.
        from portal.extensions import db

        with app.app_context():
            db.engine.dispose(close=False)

    import workers.tasks  # noqa: F401 - registers the shared tasks on this app

    return celery_app


class EmbeddedWorker:
    """A real Celery worker (WorkController) in a thread of the web process:
    the embedded default, where the broker is kombu's in-memory transport. It
    runs the same tasks as a production worker; only the transport differs."""

    def __init__(self, celery_app: Celery, concurrency: int = 2) -> None:
        from celery.worker import WorkController

        self.controller = WorkController(
            app=celery_app,
            hostname=f"embedded-{threading.get_ident()}@localhost",
            pool_cls="threads",
            concurrency=concurrency,
            queues=["intake", "render"],
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel=logging.INFO,
        )
        self.thread = threading.Thread(target=self.controller.start, name="tutti-worker",
                                       daemon=True)

    def start(self) -> EmbeddedWorker:
        self.thread.start()
        log.info("embedded Celery worker started (memory transport)")
        return self

    def stop(self) -> None:
        self.controller.stop(in_sighandler=False)
        self.thread.join(timeout=10)
