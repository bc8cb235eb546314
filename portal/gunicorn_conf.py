"""gunicorn settings for production: ``gunicorn -c python:portal.gunicorn_conf
'portal:create_app()'`` (the Dockerfile's and docker-compose.yml's command).

Threaded workers (``gthread``): a viewer streaming the mash-up with range requests or a
participant sending a tus chunk holds a thread, not a whole process, so a few processes
serve hundreds of viewers. Read from the environment: ``GUNICORN_BIND`` (0.0.0.0:8000),
``GUNICORN_WORKERS`` (2 per core, at least 2), ``GUNICORN_THREADS`` (16)."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", max(2, 2 * multiprocessing.cpu_count())))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 16))
# a tus chunk on a slow phone connection may take a while; the mash-up streams in ranges
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 300))
graceful_timeout = 30
# idle keep-alive connections stay open longer than clients leave them idle (players and
# phones reuse them between range requests and chunks): closing first races their next request
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", 75))
# heartbeat files in memory, not on a container's overlay filesystem
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None  # "": no access log
preload_app = False  # each worker opens its own database and broker connections
