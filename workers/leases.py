"""Leases with a heartbeat, and the temporary files of writers that died.

A worker that takes a row (a clip, a render, a part of a render) writes a lease on it:
``lease_owner`` (a fresh id for this claim) and ``lease_until`` (now + ``LEASE_SECONDS``).
While the work runs, a :class:`Heartbeat` thread renews the lease every third of that
time, only while the row still names this owner. A worker killed with SIGKILL stops
renewing, its lease expires within ``LEASE_SECONDS``, and the reconciler hands the row to
another worker, which first removes the dead writer's temporary files
(:func:`remove_temp_files`). The reconciler's periodic sweep (:func:`sweep_temp_files`)
removes those of rows nobody holds.

Temporary files are the media engine's (``workers.media.ffmpeg.temp_path_for``:
``.<stem>.<pid>.<thread>.tmp<ext>`` beside the final file), the storage's
(``.<stem>.<random>.tmp<ext>``) and the title cards' work folders (``.tutti-titles-*``).
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path

from flask import Flask, current_app
from sqlalchemy import select, update

from portal.extensions import db
from portal.models import Clip, Render, RenderPart, lease_now

log = logging.getLogger(__name__)

#: names of temporary files and folders left by a writer (never a finished file's name)
TEMP_NAME = re.compile(r"^\.(?:.+\.tmp(?:\.[A-Za-z0-9.]+)?|tutti-titles-.+|.+\.lnk)$")


def new_owner() -> str:
    """A lease owner id: unique per claim (host and pid help reading logs)."""
    host = os.uname().nodename[:12]
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"[:40]


def lease_seconds() -> float:
    return float(current_app.config["LEASE_SECONDS"])


def lease_until(seconds: float | None = None) -> object:
    """The end of a lease taken or renewed now."""
    return lease_now() + timedelta(seconds=lease_seconds() if seconds is None else seconds)


class Heartbeat:
    """Renew a lease in a thread while the work runs (``with Heartbeat(...):``).

    ``model`` is Clip, Render or RenderPart; the row is the one with ``row_id`` that
    ``owner`` holds. Each beat is one UPDATE in its own connection (``updated_at`` is left
    as it was: a heartbeat is not progress). When the row no longer names ``owner`` (the
    lease was taken over, or the row is gone), :attr:`lost` is set and the beats stop; the
    worker checks it before recording its result."""

    def __init__(self, model: type, row_id: int, owner: str,
                 seconds: float | None = None, app: Flask | None = None) -> None:
        self.app = app or current_app._get_current_object()
        self.model = model
        self.row_id = row_id
        self.owner = owner
        self.seconds = float(seconds or self.app.config["LEASE_SECONDS"])
        self.lost = threading.Event()
        self._lapsed = threading.Event()
        self._stop = threading.Event()
        # the beat thread logs with the ids of the work (render_id, clip_id: log_context)
        self._thread = threading.Thread(target=contextvars.copy_context().run,
                                        args=(self._run,), daemon=True,
                                        name=f"lease-{model.__name__}-{row_id}")

    def lapsed(self) -> bool:
        """Whether the lease ran out at some moment while the work ran (the worker was
        paused or starved past ``seconds``) even if no one took it over: the reconciler's
        sweep may then have removed this writer's temporary files, so a failure now is
        ours, not the input's, and the work is to be tried again, never blamed on a
        participant's file (red team, issue 15)."""
        if not (self._lapsed.is_set() or self.lost.is_set()):
            try:  # the beat thread may not have run since a pause ended: ask now
                if not self.beat():
                    self.lost.set()
            except Exception:  # noqa: BLE001 - the database cannot say: assume the worst
                return True
        return self._lapsed.is_set() or self.lost.is_set()

    def __enter__(self) -> Heartbeat:
        from workers.media.ffmpeg import stop_when

        _current.beat = self
        self._thread.start()
        # the ffmpeg runs of this thread stop when the lease is lost (see stop_when)
        self._exits = ExitStack()
        self._exits.enter_context(stop_when(self.lost))
        return self

    def __exit__(self, *_exc: object) -> None:
        _current.beat = None
        self._exits.close()
        self._stop.set()
        self._thread.join(timeout=self.seconds)

    def check(self) -> None:
        """Renew the lease now; raise :class:`~workers.media.ffmpeg.WorkTakenOver` (and
        set :attr:`lost`) when it is no longer ours: the engine asks before each
        conversion, so a worker presumed dead and taken over does not convert again."""
        from workers.media.ffmpeg import WorkTakenOver

        if self.lost.is_set() or not self.beat():
            self.lost.set()
            raise WorkTakenOver(f"{self.model.__name__.lower()} {self.row_id}: taken over "
                                f"from {self.owner}")

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Run the block only while the lease is ours, with the row held: the lease is
        renewed by an UPDATE whose row lock (the database's write lock on SQLite) lasts
        until the block ends, so a takeover (``SELECT ... FOR UPDATE`` of the claim)
        waits for it, and a file published inside can never land after another worker
        took the work over (a fencing check, not a race with the heartbeat's next beat).
        Raises :class:`~workers.media.ffmpeg.WorkTakenOver`, setting :attr:`lost`, when
        the lease is no longer ours."""
        from workers.media.ffmpeg import WorkTakenOver

        model = self.model
        with self.app.app_context():
            now = lease_now()
            values = {"lease_until": now + timedelta(seconds=self.seconds)}
            if hasattr(model, "updated_at"):
                values["updated_at"] = model.updated_at  # a publish is not yet progress
            with db.engine.begin() as conn:
                done = conn.execute(update(model).where(model.id == self.row_id,
                                                        model.lease_owner == self.owner)
                                    .values(**values).execution_options(
                                        synchronize_session=False))
                if done.rowcount != 1:
                    self.lost.set()
                    log.warning("%s %s: lease %s lost before publishing; nothing published",
                                model.__name__.lower(), self.row_id, self.owner)
                    raise WorkTakenOver(f"{model.__name__.lower()} {self.row_id}: taken "
                                        f"over from {self.owner}")
                yield

    def beat(self) -> bool:
        """Renew the lease once; False when it is no longer ours."""
        model = self.model
        with self.app.app_context():
            now = lease_now()
            values = {"lease_until": now + timedelta(seconds=self.seconds)}
            if hasattr(model, "updated_at"):
                values["updated_at"] = model.updated_at  # a heartbeat is not progress
            with db.engine.begin() as conn:
                until = conn.execute(select(model.lease_until).where(
                    model.id == self.row_id, model.lease_owner == self.owner)).scalar()
                if until is not None and until < now:
                    # it ran out before this beat (the worker was paused, or starved): a
                    # sweep may have removed this writer's temporary files meanwhile
                    self._lapsed.set()
                done = conn.execute(update(model).where(model.id == self.row_id,
                                                        model.lease_owner == self.owner)
                                    .values(**values).execution_options(
                                        synchronize_session=False))
        return done.rowcount == 1

    def _run(self) -> None:
        period = max(0.2, self.seconds / 3)
        while not self._stop.wait(period):
            try:
                if not self.beat():
                    log.warning("%s %s: lease %s lost (taken over); stopping the heartbeat",
                                self.model.__name__.lower(), self.row_id, self.owner)
                    self.lost.set()
                    return
            except Exception:  # noqa: BLE001 - a missed beat is retried; the lease is 3 beats
                log.exception("%s %s: heartbeat failed", self.model.__name__.lower(),
                              self.row_id)


_current = threading.local()


def current_heartbeat() -> Heartbeat | None:
    """The :class:`Heartbeat` running in this thread (the lease of the work it does), or
    None outside one."""
    return getattr(_current, "beat", None)


def lease_lapsed() -> bool:
    """Whether the lease of the :class:`Heartbeat` running in this thread ran out at some
    moment (see :meth:`Heartbeat.lapsed`); False outside one."""
    beat = getattr(_current, "beat", None)
    return beat is not None and beat.lapsed()


def remove_temp_files(folder: Path, recursive: bool = True) -> int:
    """Delete the temporary files (and title work folders) under ``folder``; finished
    files stay. Returns how many went. Call it only when no live writer uses the folder
    (its row's lease expired, or is ours)."""
    removed = 0
    if not folder.is_dir():
        return 0
    for entry in list(folder.iterdir()):
        if TEMP_NAME.match(entry.name):
            try:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
                removed += 1
            except FileNotFoundError:
                pass
        elif recursive and entry.is_dir() and not entry.is_symlink():
            removed += remove_temp_files(entry, recursive=True)
    if removed:
        log.info("removed %d temporary file(s) of a writer that died under %s", removed, folder)
    return removed


def clip_folder(clip: Clip) -> Path:
    from portal.services import storage

    return storage().path(f"clips/{clip.media_id}")


def render_folder(job: Render) -> Path:
    from portal.services import storage

    return storage().path(f"renders/{job.campaign.slug}/{job.token}")


def sweep_temp_files(max_age: float = 3600.0) -> int:
    """The periodic sweep: remove temporary files under the folders of clips and renders
    that no worker holds (no lease, or an expired one, on the row and its parts), those
    of proxy builds whose lock no one holds, and anything temporary untouched for
    ``max_age`` seconds (spooled uploads of a web process that died). Returns how many
    went."""
    from portal.services import storage

    store = storage()
    now = lease_now()
    removed = 0
    busy_clips = set(db.session.scalars(select(Clip.media_id).where(Clip.lease_until > now)))
    clips_root = store.root / "clips"
    if clips_root.is_dir():
        for folder in clips_root.iterdir():
            if folder.name not in busy_clips and _has_temp(folder):
                removed += remove_temp_files(folder)
    busy_renders = set(db.session.scalars(
        select(Render.token).where(Render.lease_until > now)))
    busy_renders |= set(db.session.scalars(
        select(Render.token).join(RenderPart, RenderPart.render_id == Render.id)
        .where(RenderPart.lease_until > now)))
    renders_root = store.root / "renders"
    if renders_root.is_dir():
        for campaign in renders_root.iterdir():
            for folder in campaign.iterdir() if campaign.is_dir() else []:
                if folder.name not in busy_renders and _has_temp(folder):
                    removed += remove_temp_files(folder)
    from workers.media.proxies import sweep_dead_temps

    proxies = store.root / "proxies"
    for folder in proxies.iterdir() if proxies.is_dir() else []:
        removed += sweep_dead_temps(str(folder))
    cutoff = time.time() - max_age
    for root in (proxies, store.tmp_dir):
        removed += _remove_old(root, cutoff)
    db.session.rollback()
    return removed


def _has_temp(folder: Path) -> bool:
    try:
        return any(TEMP_NAME.match(e.name) or (e.is_dir() and _has_temp(e))
                   for e in folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return False


def _remove_old(root: Path, cutoff: float) -> int:
    """Temporary files under ``root`` not modified since ``cutoff`` (the resumable uploads'
    own folder has its own expiry and is left alone)."""
    removed = 0
    if not root.is_dir():
        return 0
    for entry in list(root.iterdir()):
        if entry.name == "uploads":
            continue
        try:
            if entry.is_dir():
                removed += _remove_old(entry, cutoff)
            elif (TEMP_NAME.match(entry.name) or entry.name.startswith("tmp")) \
                    and entry.stat().st_mtime < cutoff:
                entry.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed
