"""Celery bound to the Flask app once (the Flask docs' ``celery_init_app``
pattern): every task runs inside an app context, settings come from the
``CELERY`` config key, tasks are ``@shared_task`` in :mod:`workers.tasks`."""

from __future__ import annotations

import logging
import threading

from celery import Celery, Task
from flask import Flask

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


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
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
