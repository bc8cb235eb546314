"""A Redis client on the Celery broker's URL, for the few things Tutti keeps there itself
(the reconciler's marks, the readiness probe's write).

Only a Redis broker has one: the embedded default (``memory://``) and other brokers give
None, and each caller says what it does then."""

from __future__ import annotations

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def broker_redis(url: str, timeout: float = 5.0):
    """A ``redis.Redis`` on the broker ``url`` (socket and connect timeouts ``timeout`` s),
    or None when the broker is not Redis. Use it in a ``with`` block: it is closed there."""
    if not url.startswith(REDIS_SCHEMES):
        return None
    import redis

    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
