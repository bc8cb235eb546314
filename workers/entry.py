"""Entry module for ``celery -A workers.entry worker``: builds the Flask app from
the environment and exposes its Celery app (``tutti worker`` does the same)."""

from portal import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
