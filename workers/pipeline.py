"""The pipeline steps: database in, database out.

Each step claims its row with a lease (so a duplicate message or a second
worker does not run it twice at once), calls the media engine with paths and
plain values, and records the outcome through the state machines. Expected
failures (a file that is not a video, an ffmpeg error) become a status with a
reason a person can read; nothing is swallowed silently.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from flask import current_app
from sqlalchemy import delete, insert, or_, select, update

from portal import states
from portal.extensions import db
from portal.models import Campaign, Clip, Render, RenderPart, RenderTile, lease_now
from portal.services import enqueue, storage
from workers.leases import (
    Heartbeat,
    clip_folder,
    current_heartbeat,
    lease_lapsed,
    lease_until,
    new_owner,
    remove_temp_files,
    render_folder,
)
from workers.media.ffmpeg import FFmpegError, WorkTakenOver
from workers.media.layout import FINAL_GAP, PREVIEW_GAP
from workers.media.normalize import TileFormat

log = logging.getLogger(__name__)

_held = threading.local()  # the lease owner id of the row this thread works on


def _claim_clip(clip_id: int, *, statuses: tuple[str, ...] | None = None,
                sync_pending: bool = False) -> Clip | None:
    """Take the clip for this worker with a short lease (renewed by a :class:`Heartbeat`
    while the work runs), or return None (gone, done, or held by a live worker). A lease
    that expired with an owner was a worker that died: its temporary files go first."""
    clip = db.session.get(Clip, clip_id, with_for_update=True)
    if clip is None:
        log.info("clip %s: gone, nothing to do", clip_id)
        return None
    if statuses is not None and clip.status not in statuses:
        log.info("clip %s: is %s, nothing to do", clip_id, clip.status)
        db.session.rollback()
        return None
    if sync_pending and clip.sync_state != "pending":
        db.session.rollback()
        return None
    if clip.lease_until is not None and clip.lease_until > lease_now():
        log.info("clip %s: held by %s until %s", clip_id, clip.lease_owner, clip.lease_until)
        db.session.rollback()
        return None
    if clip.lease_owner is not None:
        log.warning("clip %s: taking over from %s, whose lease expired (attempt %s)",
                    clip_id, clip.lease_owner, clip.attempts + 1)
        remove_temp_files(clip_folder(clip))
    clip.lease_owner = _held.owner = new_owner()
    clip.lease_until = lease_until()
    clip.attempts += 1
    db.session.commit()
    return clip


def _still_ours(model: type, row_id: int, owner: str) -> bool:
    """Whether ``owner`` still holds the row's lease; on PostgreSQL the row stays locked
    until the caller commits, so no one takes it over between this check and the result."""
    current = db.session.scalar(select(model.lease_owner).where(model.id == row_id)
                                .with_for_update())
    if current != owner:
        log.warning("%s %s: the lease went to %s while %s worked; its result is dropped",
                    model.__name__.lower(), row_id, current, owner)
        db.session.rollback()
        return False
    return True


def _release(row: Clip | Render) -> None:
    row.lease_until = None
    row.lease_owner = None


@contextmanager
def _release_on_error(model: type, row_id: int) -> Iterator[None]:
    """If a step breaks unexpectedly (database hiccup, bug), give the row's lease
    back (when it is still ours) so the retry or the reconciler can take it at once,
    then re-raise."""
    _held.owner = None
    try:
        yield
    except BaseException:
        db.session.rollback()
        try:
            row = db.session.get(model, row_id)
            if row is not None and _held.owner is not None and row.lease_owner == _held.owner:
                _release(row)
                db.session.commit()
        except Exception:  # noqa: BLE001 - the lease then expires by itself
            db.session.rollback()
            log.exception("%s %s: could not release the lease", model.__name__, row_id)
        raise
    finally:
        _held.owner = None


def disk_full(exc: BaseException) -> bool:
    """Whether an error is the media disk being full (or over quota): our side, not the
    participant's file."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, FFmpegError):
        # ffmpeg exits with its AVERROR code masked to a byte: AVERROR(ENOSPC) = -28 gives
        # 228. Its stderr may say so too, but the tail we keep can end in "Conversion
        # failed!" alone (seen on CI), so the status decides as well.
        if exc.returncode is not None and exc.returncode in (
                (-errno.ENOSPC) & 0xFF, (-errno.EDQUOT) & 0xFF):
            return True
        text = f"{exc} {exc.stderr_tail}"
        return "No space left on device" in text or "Disk quota exceeded" in text
    return False


# --- intake ----------------------------------------------------------------------

def intake(clip_id: int) -> None:
    """Probe, normalize to the campaign's tile format, thumbnail; then, the clip given
    back, its cell-size proxies for a big final grid (:func:`build_intake_proxies`)."""
    with _release_on_error(Clip, clip_id):
        _intake(clip_id)


def clip_format(campaign: Campaign) -> TileFormat:
    """The normalized clip format of a campaign: its canvas size at most (a performer
    shown full frame keeps the detail), the grid tile's size at least, in the canvas's
    shape."""
    from workers.media.normalize import TileFormat

    cw, ch = campaign.canvas_width, campaign.canvas_height
    shrink = min(1.0, max(campaign.tile_width / cw, campaign.tile_height / ch))
    return TileFormat(width=cw, height=ch, fps=campaign.fps,
                      min_width=max(2, int(cw * shrink / 2) * 2),
                      min_height=max(2, int(ch * shrink / 2) * 2))


def _intake(clip_id: int) -> None:
    clip = _claim_clip(clip_id, statuses=states.CLIP_INTAKE_PENDING)
    if clip is None:
        return
    owner = clip.lease_owner
    try:
        with Heartbeat(Clip, clip_id, owner):
            normalized = _intake_claimed(clip, owner)
    except LeaseLost:
        db.session.rollback()
        log.warning("clip %s: taken over by another worker; this one stops", clip_id)
        return
    if not normalized:
        return
    # after the lease is given back (a heartbeat would stop the ffmpeg of a lease released);
    # sync, sent already, may have moved the clip on meanwhile
    db.session.expire_all()
    clip = db.session.get(Clip, clip_id)
    if clip is not None and clip.normalized_key and clip.status in CURRENT_CLIP_STATES:
        build_intake_proxies(clip)


#: the clips a render draws or may draw once moderated: their proxies are worth keeping
CURRENT_CLIP_STATES = ("normalized", "synced", "needs_sync", "approved")


def build_intake_proxies(clip: Clip) -> list[str]:
    """Build a newly normalized clip's cell-size proxies now, for the grids a final render
    of its campaign is likely to draw (:func:`workers.media.proxies.likely_scales`), all
    from one decode, into the cache the render looks in (:func:`_proxy_dir`): the decode
    the first render of a big grid would spend on them (most of its time) is spread over
    the weeks the takes arrive. Off with ``RENDER_PROXIES`` or ``INTAKE_PROXIES`` off.
    Never fails the clip: an error is logged and the render builds what is missing.
    Returns the proxies built."""
    from workers.media.probe import probe
    from workers.media.proxies import build_proxies, likely_scales

    config = current_app.config
    if not (config["RENDER_PROXIES"] and config["INTAKE_PROXIES"]):
        return []
    campaign = clip.campaign
    path = str(storage().path(clip.normalized_key))
    started, cpu = time.monotonic(), _children_cpu()
    try:
        info = probe(path)
        scales = likely_scales(info.width, info.height, campaign.canvas_width,
                               campaign.canvas_height)
        built = build_proxies(path, str(proxy_cache(campaign.id)), scales,
                              keyint=campaign.fps, timeout=float(config["INTAKE_TIMEOUT"]))
    except Exception:  # noqa: BLE001 - a cache: the render builds what is missing
        log.warning("clip %s: its proxies could not be built now; the render will build "
                    "them", clip.id, exc_info=True)
        return []
    # withdrawn (its proxies deleted) or sent again while they were being built: none of
    # the participant's pictures may stay behind
    db.session.expire_all()
    now = db.session.get(Clip, clip.id)
    if now is None or now.status == "withdrawn" or now.normalized_key is None or not \
            os.path.exists(path):
        for built_path in built:
            with contextlib.suppress(OSError):
                os.remove(built_path)
        log.info("clip %s: withdrawn or replaced while its proxies were built; removed",
                 clip.id)
        return []
    if built:
        log.info("clip %s: %d proxies in %.1f s (%.1f CPU s)", clip.id, len(built),
                 time.monotonic() - started, _children_cpu() - cpu)
    return built


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished child processes (ffmpeg)."""
    times = os.times()
    return times.children_user + times.children_system


def _process_cpu() -> float:
    """CPU seconds (user + system) of this process (all its threads: a mix in numpy) and
    of its finished child processes (ffmpeg)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _reject(clip: Clip, owner: str, reason: str, when: str) -> None:
    """Reject a clip being taken in with ``reason`` (the participant's words), if this
    worker still holds it; ``when`` completes the log line. Not when its lease ran out
    meanwhile (asked on the database's clock): the worker was paused or starved, so the
    verdict (a read that "took too long") may be its own trouble, not the file's: the clip
    is given back and taken in again (red team W1, issue 15)."""
    clip_id = clip.id
    if lease_lapsed():
        _retry_now(clip_id, owner, RuntimeError(f"not rejected ({reason})"))
        return
    log.info("clip %s: rejected%s: %s", clip_id, when, reason)
    if _still_ours(Clip, clip_id, owner):
        _release(clip)
        states.move_clip(clip, "rejected", reason)
        db.session.commit()


def _intake_claimed(clip: Clip, owner: str) -> bool:
    """Take a claimed clip in; True when it was normalized (False: rejected, failed, to be
    retried, or taken over)."""
    from workers.media.checks import intake_checks
    from workers.media.normalize import make_thumbnail, normalize_clip
    from workers.media.probe import ProbeRejected, probe

    timeout = float(current_app.config["INTAKE_TIMEOUT"])
    clip_id = clip.id
    store = storage()
    campaign = clip.campaign
    started = time.monotonic()
    try:
        try:
            info = probe(str(store.path(clip.original_key)))
        except ProbeRejected as exc:
            _reject(clip, owner, exc.reason, "")
            return False
        clip.media = info.to_dict()
        longest = campaign.max_clip_seconds
        if longest and info.duration > longest + 0.5:
            clip.lease_until = None
            states.move_clip(clip, "rejected", f"Your clip is {info.duration:.0f} s long; this "
                             f"campaign takes clips up to {longest:.0f} s. Trim it and upload "
                             "it again.")
            db.session.commit()
            return False
        if clip.status == "received":
            states.move_clip(clip, "checked")
        db.session.commit()

        fmt = clip_format(campaign)
        normalized_key = f"clips/{clip.media_id}/normalized.mp4"
        thumb_key = f"clips/{clip.media_id}/thumb.jpg"
        sheet_key = f"clips/{clip.media_id}/sheet.jpg"
        sheet_path = store.path(sheet_key)
        # one decode: the clip, its contact sheet, its thumbnail, its sound measured
        # the lease fences the work: taken over (this worker presumed dead), it neither
        # converts again nor publishes over the new owner's files (red team F3)
        fence = current_heartbeat()
        done = normalize_clip(str(store.path(clip.original_key)),
                              str(store.path(normalized_key)), info, fmt, timeout=timeout,
                              sheet=str(sheet_path), thumbnail=str(store.path(thumb_key)),
                              meter=True, fence=fence)
        if done.thumbnail is None:
            make_thumbnail(str(store.path(normalized_key)), str(store.path(thumb_key)),
                           fence=fence)
        clip.normalized_key = normalized_key
        clip.sound = None
        # the loudness intake measured on the way (EBU R128), the rest from the new file
        measure_sound(clip, timeout=timeout,
                      loudness_lufs=done.sound.integrated if done.sound else None)
        checks = intake_checks(info, canvas=(campaign.canvas_width, campaign.canvas_height),
                               guide_duration=campaign.guide_duration if campaign.guide_key
                               else None, sound=done.sound, timeout=timeout)
    except ProbeRejected as exc:  # grew past the caps, did not decode, or its sound drifts
        _reject(clip, owner, exc.reason, " while normalizing")
        return False
    except (FFmpegError, OSError) as exc:
        if disk_full(exc):
            _retry_later(clip_id, owner, exc)
            return False
        if lease_lapsed():  # paused past the lease: a sweep may have taken our files
            _retry_now(clip_id, owner, exc)
            return False
        if isinstance(exc, FFmpegError) and exc.starved:
            # ffmpeg got too little CPU to finish (stopped, paused, an overloaded
            # machine): the worker's trouble, not the file's (red team W1, issue 15)
            _retry_now(clip_id, owner, exc)
            return False
        if isinstance(exc, OSError):
            raise
        if isinstance(exc, FFmpegError) and exc.timed_out:
            _fail_clip(clip, too_slow_reason(clip.media), exc, owner)
            return False
        _fail_clip(clip, conversion_failure_reason(exc, clip.media), exc, owner)
        return False
    if not _still_ours(Clip, clip_id, owner):
        return False
    clip.normalized_key = normalized_key
    clip.thumbnail_key = thumb_key
    clip.contact_sheet_key = sheet_key if sheet_path.is_file() else None
    clip.checks = [c.to_dict() for c in checks]
    _release(clip)
    clip.sync_state = "pending" if campaign.guide_key else None
    states.move_clip(clip, "normalized")
    db.session.commit()
    log.info("clip %s: normalized in %.1f s", clip.id, time.monotonic() - started)
    if clip.sync_state == "pending":
        enqueue("tutti.align_clip", clip.id)
    return True


def too_slow_reason(media: dict | None) -> str:
    """The reason a participant reads when converting their video took longer than the
    intake timeout: its size and length, and what to upload instead (no ffmpeg log)."""
    media = media or {}
    width, height, seconds = media.get("width"), media.get("height"), media.get("duration")
    what = "This video"
    if width and height and seconds:
        what = f"This video ({width}×{height} pixels, {_clock(seconds)} long)"
    return (f"{what} is too big or too long for Tutti to convert in time. Please upload "
            "a shorter clip (just your performance), or export it at a lower resolution "
            "(1080p or 720p), and upload it again.")


#: what ffmpeg says (the last lines of its log) -> what kind of failure it is, first match
_FAILURE_KINDS = (
    ("memory", re.compile(r"cannot allocate memory|out of memory|\bENOMEM\b", re.I)),
    ("codec", re.compile(r"decoder .*not found|no decoder|unsupported codec|codec not "
                         r"(?:currently )?supported|could not find codec parameters|"
                         r"unknown codec|is not implemented", re.I)),
    ("changes", re.compile(r"changing video frame properties on the fly|error reinitializing "
                           r"filters|failed to inject frame into filter network", re.I)),
    ("damaged", re.compile(r"invalid data found|error while decoding|corrupt|invalid nal|"
                           r"concealing|moov atom not found|partial file|truncat|"
                           r"error splitting the input|end of file|invalid frame", re.I)),
    # last, so the kinds above win when a log says both (intake does not advise on it)
    ("missing", re.compile(r"no such file or directory|permission denied|"
                           r"error opening input", re.I)),
)


def failure_kind(exc: FFmpegError) -> str | None:
    """What kind of failure ffmpeg's log shows (its message and last lines, first match
    of :data:`_FAILURE_KINDS`): "memory", "codec", "changes", "damaged", "missing", or
    None when unrecognised. Shared by intake's and the render's reasons."""
    text = f"{exc.stderr_tail}\n{exc}"
    return next((k for k, pattern in _FAILURE_KINDS if pattern.search(text)), None)


_EXPORT_AGAIN = ("Please save or export it again as an ordinary video (on a phone: share it "
                 "from the gallery, or export it as MP4), and upload that.")


def conversion_failure_reason(exc: FFmpegError, media: dict | None = None) -> str:
    """The reason a participant reads when ffmpeg could not convert their upload: what
    to do about the kind of failure its log shows (damaged data, a format ffmpeg cannot
    decode, not enough memory, a picture that changes format partway), never ffmpeg's
    own words (those go to the worker's log). ``media`` is the probe's
    :meth:`MediaInfo.to_dict` (for the size and length), or None."""
    kind = failure_kind(exc)
    log.warning("conversion failed (%s): %s\n%s", kind or "unrecognised", exc,
                exc.stderr_tail[-2000:])
    if kind == "memory":
        return too_slow_reason(media).replace("to convert in time", "to convert")
    if kind == "codec":
        return "This video is stored in a format Tutti cannot read. " + _EXPORT_AGAIN
    if kind == "changes":
        return ("This video changes its picture format partway through, and Tutti could not "
                "follow. " + _EXPORT_AGAIN)
    if kind == "damaged":
        return ("Part of this video could not be read: the file seems damaged or did not "
                "arrive whole. Please upload it again from your phone or computer; if the "
                "same happens, play it there to check, and record it again if it does not "
                "play to the end.")
    return ("We could not convert this video. Please export it as an ordinary video (MP4) "
            "and upload it again; if that fails too, an organizer can look at it.")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _retry_later(clip_id: int, owner: str, exc: BaseException) -> None:
    """The media disk is full: the clip is not the participant's fault and is not lost.
    It stays pending, free again after ``RESEND_SECONDS``, when the reconciler retries it
    (an operator who frees space can run ``tutti reconcile`` to retry at once)."""
    from datetime import timedelta

    log.error("clip %s: the media disk is full; intake will be retried: %s", clip_id, exc)
    db.session.rollback()
    remove_temp_files(clip_folder(db.session.get(Clip, clip_id)))
    if _still_ours(Clip, clip_id, owner):
        clip = db.session.get(Clip, clip_id)
        clip.lease_owner = None
        clip.lease_until = lease_now() + timedelta(
            seconds=int(current_app.config["RESEND_SECONDS"]))
        db.session.commit()


def _retry_now(clip_id: int, owner: str, exc: BaseException) -> None:
    """Intake failed after this worker's lease ran out, or its ffmpeg was starved (the
    worker was paused or overloaded): the reconciler may have removed its temporary files
    as a dead writer's, or the time limit was spent waiting, so the failure is ours, not
    the file's. Give the clip back and send it again at once."""
    log.warning("clip %s: intake failed while this worker was paused or starved; trying "
                "again: %s", clip_id, exc)
    db.session.rollback()
    if _still_ours(Clip, clip_id, owner):
        _release(db.session.get(Clip, clip_id))
        db.session.commit()
        enqueue("tutti.intake_clip", clip_id)
    else:
        db.session.rollback()


def _fail_clip(clip: Clip, reason: str, exc: Exception, owner: str) -> None:
    log.warning("clip %s: intake failed (attempt %s): %s", clip.id, clip.attempts, exc)
    clip_id = clip.id
    db.session.rollback()
    if not _still_ours(Clip, clip_id, owner):
        return
    clip = db.session.get(Clip, clip_id)
    if clip is None:
        return
    _release(clip)
    states.move_clip(clip, "failed", reason)
    db.session.commit()


# --- align -----------------------------------------------------------------------

def align(clip_id: int) -> None:
    """Find the clip's offset against the campaign's guide."""
    with _release_on_error(Clip, clip_id):
        _align(clip_id)


def _align(clip_id: int) -> None:
    from workers.media.align import AlignError, align_files
    from workers.media.checks import merge as merge_checks
    from workers.media.checks import sync_checks

    clip = _claim_clip(clip_id, sync_pending=True)
    if clip is None:
        return
    owner = clip.lease_owner
    store = storage()
    campaign = clip.campaign
    if not campaign.guide_key or not clip.normalized_key:
        clip.sync_state = None
        _release(clip)
        db.session.commit()
        return
    guide = str(store.path(campaign.guide_key))
    media = str(store.path(clip.normalized_key))
    try:
        with Heartbeat(Clip, clip_id, owner):
            timing = _record_prior(clip)
            result = align_files(guide, media, prior_offset=None if timing is None
                                 else timing.expected_offset)
    except LeaseLost:
        db.session.rollback()
        log.warning("clip %s: sync taken over by another worker; this one stops", clip_id)
        return
    except AlignError as exc:
        if not _still_ours(Clip, clip_id, owner):
            return
        clip.sync_state = "failed"
        clip.sync_method = "none"
        clip.offset_seconds = clip.offset_seconds or 0.0
        clip.sync_confidence = 0.0
        clip.sync_candidates = None
        _release(clip)
        if clip.status in ("normalized", "synced", "needs_sync"):
            states.move_clip(clip, "needs_sync", f"{exc.reason}. An organizer will set the "
                             "offset by hand.")
        db.session.commit()
        return
    if not _still_ours(Clip, clip_id, owner):
        return
    result, check = _check_record_timing(clip, result, timing)
    clip.offset_seconds = float(result.offset_seconds)
    clip.sync_confidence = float(result.confidence)
    clip.sync_method = result.method
    clip.sync_candidates = [k.to_json_dict() for k in result.candidates]
    clip.checks = merge_checks(clip.checks or [], sync_checks(result.method, result.confidence),
                               replace=["song_not_heard"])
    clip.drift_ppm = float(result.drift_ppm)
    clip.sync_state = "done"
    _release(clip)
    try:
        from workers.media.syncplot import render_sync_plot

        plot_key = f"clips/{clip.media_id}/sync.png"
        render_sync_plot(guide, media, clip.effective_offset,
                         str(store.path_for_writing(plot_key)))
        clip.sync_plot_key = plot_key
    except Exception:  # noqa: BLE001 - the picture is a help, not a step to fail on
        log.exception("clip %s: sync picture failed", clip.id)
    if clip.status in ("normalized", "synced", "needs_sync"):
        if result.trusted:
            states.move_clip(clip, "synced")
        elif check is not None and check.conflict:
            states.move_clip(clip, "needs_sync", "The page's recorded start and the sound "
                             f"disagree by {abs(check.error_ms) / 1000:.1f} s (a repeated "
                             "passage can fool the sound); an organizer will choose by ear "
                             "between the offsets offered.")
        else:
            states.move_clip(clip, "needs_sync", f"Sync confidence is low "
                             f"({result.confidence:.2f}); an organizer will check it by ear.")
    db.session.commit()


#: the longest late start of a take's sound kept out of its recorded start (s): Chromium's
#: capture was measured delivering its first audio 0.02-1.25 s after the picture (red team,
#: F13); a longer one is not a late start but a take that is silent at first
MAX_AUDIO_LEAD_S = 10.0


def _record_prior(clip: Clip):
    """The device's own timing of a take recorded on the page, on the normalized file's
    timeline (the original's late audio start, if any, taken out and noted on the clip), or
    None for a file chosen from the device or an unreadable timing."""
    from dataclasses import replace

    from workers.media.align.prior import RecordTiming
    from workers.media.audio import audio_start_seconds

    stored = clip.record_timing
    if not stored or "start_s" not in stored:
        return None
    try:
        timing = RecordTiming(**{k: stored[k] for k in (
            "start_s", "output_latency_s", "input_latency_s", "base_latency_s", "calibrated",
            "mime", "stamped", "clock") if k in stored})
    except TypeError:
        log.warning("clip %s: unreadable record timing %r", clip.id, stored)
        return None
    # the page counts from the take's first audio sample; the normalized file, which the
    # offset is about, from the original's timeline, on which the sound may start later
    lead = audio_start_seconds(str(storage().path(clip.original_key)))
    if 0.0 < lead < MAX_AUDIO_LEAD_S:
        timing = replace(timing, start_s=timing.start_s - lead)
        clip.record_timing = {**stored, "audio_start_s": round(lead, 6)}
    return timing


def _check_record_timing(clip: Clip, result, timing):
    """A take recorded on the page: check the device's own timing against the sound
    (:func:`workers.media.align.prior.check_prior`: the sound's offset stays, an agreeing
    prior may lift the confidence, a far disagreement with a sound not strong on its own
    leaves the take to an organizer with both places offered) and keep the difference on the
    clip (None when the sound found nothing to compare with). Returns (result, check)."""
    from workers.media.align.prior import check_prior

    if timing is None:
        return result, None
    check = check_prior(result, timing)
    clip.record_error_ms = (None if check.error_ms is None
                            else round(float(check.error_ms), 3))
    if check.error_ms is not None:
        log.info("clip %s: recorded start %s the sound (%+.1f ms)%s%s", clip.id,
                 "agrees with" if check.agrees else "disagrees with", check.error_ms,
                 ", confidence lifted" if check.lifted else "",
                 ", not trusted: an organizer chooses" if check.conflict else "")
    return check.result, check


# --- render ----------------------------------------------------------------------

class RenderCancelled(Exception):
    pass


#: the shared room a render's "room" option puts the mix in: a church's reverberation
#: time, its tail 14 dB under the dry sound
ROOM_SECONDS = 1.5
ROOM_WET_DB = -14.0


def heard_through_match(clip: Clip) -> bool:
    """Whether ``clip`` is heard in the mix through the loudness match (and so counts in
    its part's balance): match on, not muted, with sound measured above silence."""
    from workers.media.sound import heard_in_match

    return (bool(clip.loudness_match) and not clip.muted
            and bool((clip.media or {}).get("has_audio", True))
            and heard_in_match(heard_loudness(clip)))


def part_balance_of(clips: Iterable[Clip]) -> dict[int | None, float]:
    """Per part id, the balance (dB) the loudness match adds to its matched takes among
    ``clips`` (the takes of one mix; :func:`workers.media.sound.part_balance`)."""
    from workers.media.sound import part_balance

    counts: dict[int | None, int] = {}
    for clip in clips:
        if heard_through_match(clip):
            counts[clip.part_id] = counts.get(clip.part_id, 0) + 1
    return part_balance(counts)


def heard_loudness(clip: Clip) -> float | None:
    """The take's integrated loudness (LUFS) as the mix hears it: after the clean-up when
    it is on and that was measured (a humming take measured with its hum reads louder
    than its voice; matched so, it sat 6 LU under the others once cleaned), else as
    recorded; None when not measured."""
    return heard_loudness_of(clip.sound, clip.cleanup)


def heard_loudness_of(sound: Mapping | None, cleanup: bool) -> float | None:
    """:func:`heard_loudness` from a clip's ``sound`` measurements and its clean-up
    switch (for rows read without their clip: the part meter's other takes)."""
    sound = sound or {}
    if cleanup and sound.get("loudness_clean_lufs") is not None:
        return sound["loudness_clean_lufs"]
    return sound.get("loudness_lufs")


def clip_level_db(clip: Clip, balance: Mapping[int | None, float] | None = None) -> float:
    """The level (dB) the mix gives ``clip``: its loudness match when on (the take to the
    match level, :func:`workers.media.sound.match_gain`, plus its part's ``balance``
    among the mix's takes, :func:`part_balance_of`; none given: the take alone) plus the
    organizer's level, within the spec's -60..+24 dB."""
    from workers.media.sound import MAX_MATCH_DB, match_gain

    level = clip.sound_level_db or 0.0
    if clip.loudness_match:
        match = match_gain(heard_loudness(clip))
        if balance and heard_through_match(clip):
            match += balance.get(clip.part_id, 0.0)
        level += max(-MAX_MATCH_DB, min(MAX_MATCH_DB, match))
    return round(max(-60.0, min(24.0, level)), 3)


def clip_sound(clip: Clip, balance: Mapping[int | None, float] | None = None) -> dict:
    """The sound fields of ``clip``'s spec entry: gain (with its part's ``balance`` in the
    mix, :func:`clip_level_db`), mute, hide, pan, clean-up."""
    cleanup = bool(clip.cleanup)
    sound = clip.sound or {}
    floor = sound.get("noise_floor_db")
    fields = {"gain_db": clip_level_db(clip, balance), "muted": bool(clip.muted),
              "hidden": bool(clip.hidden), "pan": round(max(-1.0, min(1.0, clip.pan or 0.0)), 3),
              "hum_hz": float(sound.get("hum_hz") or 0.0) if cleanup else 0.0,
              "denoise": cleanup}
    if isinstance(floor, (int, float)) and -150.0 <= floor <= 0.0:
        fields["noise_floor_db"] = round(float(floor), 2)
    return fields


def measure_sound(clip: Clip, *, timeout: float = 600,
                  loudness_lufs: float | None = None) -> None:
    """Measure the take's sound (loudness, hum, noise floor) into ``clip.sound`` when it has
    a normalized file with sound and no measurement yet (``loudness_lufs``: already
    measured, e.g. by intake's meter). A take that cannot be measured
    keeps None (its loudness match is then 0 dB) and is logged; never raises for media."""
    from workers.media.audio import NoAudio
    from workers.media.sound import analyze_take

    if clip.sound is not None or not clip.normalized_key:
        return
    if not (clip.media or {}).get("has_audio", True):
        return
    try:
        clip.sound = analyze_take(str(storage().path(clip.normalized_key)), timeout=timeout,
                                  loudness_lufs=loudness_lufs).to_dict()
    except (NoAudio, FFmpegError, ValueError) as exc:
        log.warning("clip %s: sound not measured: %s", clip.id, exc)


def time_map_is_current(clip: Clip) -> bool:
    """Whether the clip's switch is on and its time map was fitted for its present offset
    and its campaign's present limits (used or not)."""
    found = clip.time_map or {}
    campaign = clip.campaign
    if not clip.timing or not found.get("knots"):
        return False
    return not (abs(found.get("offset", math.inf) - clip.effective_offset) > 1e-4
                or found.get("max_shift_ms") != campaign.timing_max_shift_ms
                or found.get("max_tempo_pct") != campaign.timing_max_tempo_pct)


def current_time_map(clip: Clip) -> list[list[float]] | None:
    """The clip's time map knots when :func:`time_map_is_current` and the map is used
    (it lined the take up clearly better than its offset; a map that did not is flat and
    the take is rendered at its one offset, as cheaply); else None."""
    if not time_map_is_current(clip) or (clip.time_map or {}).get("used") is False:
        return None
    return clip.time_map["knots"]


def fit_time_maps(campaign: Campaign, clips: list[Clip], *, timeout: float = 600) -> None:
    """Fit a time map for each clip whose switch is on and whose map is missing or stale
    (the guide decoded once). A take that cannot be mapped keeps none (logged): it is
    rendered with its one offset."""
    from workers.media.audio import NoAudio, decode_audio
    from workers.media.sound import remove_hum
    from workers.media.timemap import RATE, fit_time_map

    todo = [c for c in clips if c.timing and c.normalized_key and not time_map_is_current(c)]
    if not todo or not campaign.guide_key:
        return
    store = storage()
    try:
        guide = decode_audio(str(store.path(campaign.guide_key)), sample_rate=RATE,
                             timeout=timeout)
    except (NoAudio, FFmpegError) as exc:
        log.warning("campaign %s: guide not decoded for time maps: %s", campaign.id, exc)
        return
    for clip in todo:
        offset = clip.effective_offset
        try:
            take = decode_audio(str(store.path(clip.normalized_key)), sample_rate=RATE,
                                timeout=timeout)
            hum = float((clip.sound or {}).get("hum_hz") or 0.0) if clip.cleanup else 0.0
            if hum:  # fitted on what the mix hears: the hum the clean-up removes is no cue
                take = remove_hum(take, RATE, hum)
            found = fit_time_map(guide, take, offset,
                                 max_shift=campaign.timing_max_shift_ms / 1000,
                                 max_tempo=campaign.timing_max_tempo_pct / 100)
        except (NoAudio, FFmpegError, ValueError) as exc:
            log.warning("clip %s: no time map: %s", clip.id, exc)
            continue
        clip.time_map = {"offset": round(offset, 6),
                         "max_shift_ms": campaign.timing_max_shift_ms,
                         "max_tempo_pct": campaign.timing_max_tempo_pct,
                         "knots": found.to_list(), "used": found.used,
                         "gain": found.gain, "beyond_tempo": found.beyond_tempo}
        log.info("clip %s: time map of %d knots (%s, onset gain %+.3f)", clip.id,
                 len(found.guide), "used" if found.used else "flat: not clearly better",
                 found.gain)


def _offset_and_map(clip: Clip) -> dict:
    """The spec's offset, drift and time map of ``clip``."""
    knots = current_time_map(clip)
    if knots is None:
        return {"offset": round(clip.effective_offset, 4),
                "drift_ppm": round(clip.drift_ppm or 0.0, 3)}
    from workers.media.timemap import TimeMap

    g, c = zip(*knots, strict=True)
    return {"offset": round(float(TimeMap(g, c).clip_time(0.0)), 4), "drift_ppm": 0.0,
            "time_map": knots}


def build_spec(campaign: Campaign, clips: list[Clip], kind: str,
               options: dict | None = None) -> dict:
    """The RenderSpec (as data) for a campaign render of these clips, with the
    organizer's options (layout, labels, intro, credits, audio)."""
    options = options or {}
    store = storage()
    width, height = campaign.canvas_width, campaign.canvas_height
    if kind == "preview" and width > 640:
        height = int(round(height * 640 / width / 2)) * 2
        width = 640
    has_guide = bool(campaign.guide_key)
    balance = part_balance_of(clips)  # the loudness match per part, among these takes
    spec = {
        "version": 1,
        "canvas": {"width": width, "height": height, "fps": campaign.fps,
                   "background": "#101010"},
        "layout": {"type": options.get("layout", "grid"),
                   "gap": FINAL_GAP if kind == "final" else PREVIEW_GAP,
                   "labels": bool(options.get("labels"))},
        "audio": {"mode": _audio_mode(options.get("audio", "auto"), has_guide),
                  "guide_path": str(store.path(campaign.guide_key)) if has_guide else None,
                  "loudness_lufs": -16.0},
        "video": {"preset": "veryfast", "crf": 23 if kind == "final" else 28},
        "clips": [
            {"id": c.token, "path": str(store.path(c.normalized_key)),
             "part": c.part_name, "name": c.display_name, "location": c.location,
             "has_audio": bool((c.media or {}).get("has_audio", True)),
             **_offset_and_map(c), **clip_sound(c, balance)}
            for c in clips
        ],
    }
    if options.get("reverb"):
        spec["audio"]["reverb_seconds"] = ROOM_SECONDS
        spec["audio"]["reverb_wet_db"] = ROOM_WET_DB
    if options.get("intro"):
        # no subtitle: the card's own last line counts the performers and parts
        spec["intro"] = {"title": campaign.title[:200], "seconds": 4}
    if options.get("credits"):
        spec["credits"] = {"title": "Performers", "seconds": max(6, min(60, len(clips) * 0.5))}
    if has_guide and campaign.guide_duration:
        spec["duration"] = round(campaign.guide_duration, 3)
    return spec


#: another worker took the row over (this one was presumed dead): stop, record nothing
LeaseLost = WorkTakenOver


def _claim_render(render_id: int, *, planned: bool | None = None) -> Render | None:
    """Take a queued or running render with a short lease (as :func:`_claim_clip`), or
    None. ``planned``: only a render that has (True) or has not (False) a distributed
    plan. A dead holder's temporary files in the render's folder go first (its parts'
    folder is left to the parts' own leases)."""
    job = db.session.get(Render, render_id, with_for_update=True)
    if job is None:
        log.info("render %s: gone, nothing to do", render_id)
        return None
    if job.status not in states.RENDER_PENDING or (
            planned is not None and bool(job.plan) != planned):
        db.session.rollback()
        return None
    if job.lease_until is not None and job.lease_until > lease_now():
        log.info("render %s: held by %s until %s", render_id, job.lease_owner, job.lease_until)
        db.session.rollback()
        return None
    if job.lease_owner is not None:
        log.warning("render %s: taking over from %s, whose lease expired", render_id,
                    job.lease_owner)
        remove_temp_files(render_folder(job), recursive=False)
    job.lease_owner = _held.owner = new_owner()
    job.lease_until = lease_until()
    job.attempts += 1
    if job.status == "queued":
        states.move_render(job, "running")
    db.session.commit()
    return job


def render(render_id: int) -> None:
    """Render a campaign's approved clips and publish the file atomically."""
    with _release_on_error(Render, render_id):
        _render(render_id)


def _render(render_id: int) -> None:
    from workers.media.spec import SpecError, parse_spec

    timeout = float(current_app.config["RENDER_TIMEOUT"])
    job = _claim_render(render_id)
    if job is None:
        return
    owner = job.lease_owner
    started, cpu = time.monotonic(), _process_cpu()
    if job.plan:  # a distributed render picked up again (reconciler): send what is missing
        if job.cancel_requested:  # no part is drawing to see the cancel: end it here
            _cancelled(job)
            return
        _release(job)  # first: the join it may send takes this lease
        db.session.commit()
        _dispatch_parts(job)
        return
    campaign = job.campaign
    clips = [c for c in db.session.scalars(
        select(Clip).filter_by(campaign_id=campaign.id, status="approved").order_by(Clip.id)
    ) if c.normalized_key]
    if not clips:
        states.move_render(job, "failed", "There are no approved clips to render: approve at "
                           "least one clip, then render again.")
        db.session.commit()
        return
    # decoding takes for their sound and time maps may outlast a short lease: renew it
    with Heartbeat(Render, job.id, owner):
        for clip in clips:  # takes from before sound measuring, or whose measure failed
            measure_sound(clip)
        fit_time_maps(campaign, clips)
    db.session.commit()
    data = build_spec(campaign, clips, job.kind, job.options)
    job.spec = data
    job.clip_ids = [c.id for c in clips]
    db.session.commit()
    try:
        spec = parse_spec(data)
        if current_app.config["DISTRIBUTED_RENDER"] and _plan_distributed(job, spec):
            _release(job)
            db.session.commit()
            log.info("render %s: planned in %.1f s (%.1f CPU s)", render_id,
                     time.monotonic() - started, _process_cpu() - cpu)
            _dispatch_parts(job)
            return
    except SpecError as exc:
        _fail_render(job, f"The render settings are invalid: {exc}")
        return
    except FFmpegError as exc:
        _fail_render_on(job, exc, "while reading the clips")
        return
    with Heartbeat(Render, job.id, owner) as beat:
        _render_here(job, spec, timeout, owner, beat)


def _audio_mode(choice: str, has_guide: bool) -> str:
    if choice == "auto" or (choice != "mix" and not has_guide):
        return "guide" if has_guide else "mix"
    return choice


def _keys(job: Render) -> tuple[str, str, str]:
    folder = f"renders/{job.campaign.slug}/{job.token}"
    return folder, f"{folder}/mashup.mp4", f"{folder}/poster.jpg"


def _proxy_dir(job: Render) -> str | None:
    """Where this campaign's cell-size proxies are cached (None: proxies are off). Keys
    under proxies/ are never served."""
    if not current_app.config["RENDER_PROXIES"]:
        return None
    path = proxy_cache(job.campaign.id)
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def proxy_cache(campaign_id: int):
    """The folder of a campaign's cell-size proxies (renders and intake share it)."""
    return storage().path(f"proxies/{campaign_id}")


def _part_key(job: Render, part: int) -> str:
    folder = _keys(job)[0]
    return f"{folder}/parts/audio.m4a" if part < 0 else f"{folder}/parts/seg-{part:05d}.mp4"


def _fail_render(job: Render, reason: str, detail: str | None = None) -> None:
    """Record a failed render with its reason (plain words for the organizer) and its
    technical ``detail``, and remove its files (the render's own folder: nothing of it was
    published, the published mash-up is another render's)."""
    db.session.rollback()
    db.session.refresh(job)
    if job.status in states.RENDER_PENDING:
        states.move_render(job, "failed", reason, detail=detail)
        db.session.commit()
    storage().delete_prefix(_keys(job)[0])


def _fail_render_on(job: Render, exc: BaseException, what: str) -> None:
    _fail_render(job, *render_failure(exc, job.spec, what=what))


def _cancelled(job: Render) -> None:
    db.session.rollback()
    db.session.refresh(job)
    if job.status in states.RENDER_PENDING:
        states.move_render(job, "cancelled", job.reason if job.cancel_requested and job.reason
                           else "cancelled by an organizer")
        db.session.commit()
    storage().delete_prefix(_keys(job)[0])


_UNCHANGED = "The published mash-up is unchanged."
#: the lines of ffmpeg's log a failed render keeps as its technical detail
_DETAIL_LINES = 12


def render_failure(exc: BaseException, spec: Mapping | None,
                   what: str = "while making the video") -> tuple[str, str]:
    """Why a render failed, as ``(reason, detail)``: the reason in plain words for the
    organizer (what happened, and what to do next: free disk space, leave out or replace
    a clip whose file is missing or damaged, render again), never ffmpeg's own words; the
    detail is the technical cause (the error and ffmpeg's last lines, storage paths made
    relative), shown apart and logged. ``spec`` is the render's spec as stored (its
    ``clips`` name the files, to say whose clip it was); ``what`` says at which step
    ("while mixing the sound")."""
    from workers.media.spec import SpecError

    detail = _failure_detail(exc)
    kind = failure_kind(exc) if isinstance(exc, FFmpegError) else None
    log.warning("render failed %s (%s): %s", what, kind or "unrecognised", detail)
    if disk_full(exc):
        return ("The media disk is full, so the render could not be written. Free some space "
                "on the media volume (or ask whoever runs Tutti to), then render again. "
                + _UNCHANGED, detail)
    clip, state = _clip_at_fault(exc, spec, kind)
    if clip is not None:
        who = clip.get("name") or "a participant"
        part = f" ({clip['part']})" if clip.get("part") else ""
        return (f"The clip by {who}{part} could not be read for the render: its converted "
                f"file is {state}. Decline that clip to leave it out and render again, or "
                "ask the participant to upload it again. " + _UNCHANGED, detail)
    if not isinstance(exc, (FFmpegError, OSError, SpecError)):  # our own bug
        return (f"Tutti stopped with an internal error {what}. Render again; if it fails the "
                "same way, tell whoever runs Tutti and give them the details shown here. "
                + _UNCHANGED, detail)
    if isinstance(exc, SpecError):  # the engine refused a clip
        return ("A clip could not be used for the render (the details say which and why). "
                "Open the approved clips, decline any that does not play, and render again. "
                + _UNCHANGED, detail)
    if isinstance(exc, FFmpegError) and exc.timed_out:
        return ("The render took longer than its time limit and was stopped. Try a preview "
                "first, or fewer clips, or ask whoever runs Tutti to allow renders more time "
                "(TUTTI_RENDER_TIMEOUT). " + _UNCHANGED, detail)
    if kind == "memory":
        return ("The render ran out of memory and stopped. Render again when no other render "
                "is running, or ask whoever runs Tutti to give the render workers more "
                "memory. " + _UNCHANGED, detail)
    return (f"The video engine stopped with an error {what}. Render again; if it fails the "
            "same way, tell whoever runs Tutti and give them the details shown here. "
            + _UNCHANGED, detail)


def _failure_detail(exc: BaseException) -> str:
    lines = [str(exc)]
    if isinstance(exc, FFmpegError) and exc.stderr_tail:
        lines += exc.stderr_tail.strip().splitlines()[-_DETAIL_LINES:]
    text = "\n".join(lines)
    try:
        root = str(storage().root)
    except RuntimeError:  # no app context: nothing to shorten
        return text
    return text.replace(root + "/", "").replace(root, "")


def _clip_at_fault(exc: BaseException, spec: Mapping | None,
                   kind: str | None) -> tuple[dict | None, str]:
    """The spec's clip whose file the failure is about, and what is wrong with it
    ("missing" or "damaged"): a clip's file that is not there, or a clip's file (or its
    cell-size proxy) that ffmpeg names in its log beside a read error."""
    from workers.media.proxies import source_digest

    clips = [c for c in (spec or {}).get("clips", []) if isinstance(c, dict) and c.get("path")]
    for clip in clips:
        if not os.path.isfile(clip["path"]):
            return clip, "missing"
    if not isinstance(exc, FFmpegError) or kind not in ("damaged", "missing", "codec"):
        return None, ""
    text = f"{exc}\n{exc.stderr_tail}"
    for clip in clips:
        try:
            names = (clip["path"], source_digest(clip["path"]))
        except OSError:
            names = (clip["path"],)
        if any(name in text for name in names):
            return clip, "missing or unreadable" if kind == "missing" else "damaged"
    return None, ""


def _render_here(job: Render, spec, timeout: float, owner: str, beat: Heartbeat) -> None:
    """The whole render in this worker (the embedded default, and small renders), under
    the render's lease (``owner``, renewed by ``beat``)."""

    from workers.media.render import render as render_spec
    from workers.media.spec import SpecError

    store = storage()
    folder, out_key, poster_key = _keys(job)
    app = current_app._get_current_object()
    render_id = job.id
    last = [0.0]
    lock = threading.Lock()

    def on_progress(fraction: float) -> None:
        # called from the engine's segment threads: its own app context and session
        if beat.lost.is_set():
            raise LeaseLost()
        with lock:
            now = time.monotonic()
            if now - last[0] < 1.0 and fraction < 1.0:
                return
            last[0] = now
            with app.app_context():
                row = db.session.get(Render, render_id)
                cancel = row is None  # its campaign was deleted meanwhile
                if row is not None:
                    row.progress = round(fraction, 4)
                    cancel = row.cancel_requested
                    db.session.commit()
                db.session.remove()
        if cancel:
            raise RenderCancelled()

    try:
        result = render_spec(spec, str(store.path_for_writing(out_key)),
                             poster_path=str(store.path_for_writing(poster_key)),
                             progress=on_progress, timeout=timeout, proxy_dir=_proxy_dir(job))
    except LeaseLost:
        db.session.rollback()
        log.warning("render %s: taken over by another worker; this one stops", render_id)
        return
    except RenderCancelled:
        db.session.rollback()
        if db.session.scalar(select(Render.id).where(Render.id == render_id)) is None:
            store.delete_prefix(folder)  # the campaign was deleted: leave no file behind
            log.info("render %s: its campaign was deleted, render dropped", render_id)
            return
        _cancelled(job)
        return
    except SpecError as exc:
        _fail_render_on(job, exc, "while making the video")
        return
    except (FFmpegError, OSError) as exc:
        if isinstance(exc, OSError) and not disk_full(exc):
            raise
        db.session.rollback()
        db.session.refresh(job)
        if job.cancel_requested:  # a sibling segment saw the cancel first
            _cancelled(job)
            return
        _fail_render_on(job, exc, "while making the video")
        return
    _finish_render(job, result, out_key, poster_key, owner)


def appearances(spec, total: float) -> dict[str, float]:
    """Where each clip first shows in the output file ("find yourself"), from the
    same timeline the engine draws: mash-up time plus the intro."""
    from workers.media.layout import activity_map, timeline
    from workers.media.spec import program_times

    intro = spec.intro.seconds if spec.intro else 0.0
    credits = spec.credits.seconds if spec.credits else 0.0
    main = max(total - intro - credits, 1.0 / spec.canvas.fps)
    activity = None
    if spec.layout.type == "montage" and spec.layout.follow_audio:
        activity = activity_map(spec, main)
    start = program_times(spec, main).main_start
    found: dict[str, float] = {}
    for scene in timeline(spec, main, activity):
        for placement in scene.placements:
            clip_id = spec.clips[placement.clip].id
            found.setdefault(clip_id, round(start + scene.start, 2))
    return found


def _store_tiles(job: Render, spec, tiles) -> dict[str, float]:
    """Write the render's tile map (:class:`portal.models.RenderTile`, from the engine's
    :func:`workers.media.plan.tile_map`) in bulk, replacing any earlier one; returns
    clip token -> the first second its own pictures play on screen (for "find
    yourself" on the status page). The caller commits."""
    ids = dict(db.session.execute(select(Clip.token, Clip.id)
                                  .where(Clip.campaign_id == job.campaign_id)).all())
    db.session.execute(delete(RenderTile).where(RenderTile.render_id == job.id))
    rows, first = [], {}
    for tile in tiles:
        token = spec.clips[tile.clip].id
        clip_id = ids.get(token)
        if clip_id is None:
            continue
        rows.append({"render_id": job.id, "clip_id": clip_id, "x": tile.rect.x,
                     "y": tile.rect.y, "w": tile.rect.w, "h": tile.rect.h,
                     "start": round(tile.start, 3), "end": round(tile.end, 3),
                     "live": round(tile.live, 3)})
        first[token] = min(first.get(token, tile.live), tile.live)
    for at in range(0, len(rows), 5000):
        db.session.execute(insert(RenderTile), rows[at:at + 5000])
    return {token: round(t, 2) for token, t in first.items()}


def _finish_render(job: Render, result, out_key: str, poster_key: str, owner: str) -> None:
    """Record a finished render (the file is whole: the engine wrote it under a temp name
    and renamed it). It is published when it asked to be and no newer request's render is
    published already: of renders requested one after the other, the newest request is
    what viewers see, whichever finishes last."""
    from workers.media.spec import parse_spec

    render_id = job.id
    # _still_ours locks the render's row until the commit below: a withdrawal (which
    # locks the campaign's renders) either comes first and is seen here, or waits and
    # then finds this render done (and published) and takes it down
    if not _still_ours(Render, render_id, owner):
        return
    job = db.session.get(Render, render_id)
    if job.status not in states.RENDER_PENDING:
        db.session.rollback()
        return
    # the campaign's withdrawn clips (few), not an IN list of the render's clips
    # (tens of thousands in a large campaign: more than PostgreSQL takes as parameters)
    withdrawn = sorted(set(db.session.scalars(select(Clip.id).where(
        Clip.campaign_id == job.campaign_id, Clip.status == "withdrawn")))
        & set(job.clip_ids or []))
    if withdrawn:  # a performer took their clip back while this render was running
        store = storage()
        store.delete(out_key)
        store.delete(poster_key)
        _fail_render(job, "A performer in this render withdrew their clip while it was "
                          "running, so its file was deleted and it was not published. Render "
                          "again to make one without them.")
        log.info("render %s: not kept, clip(s) %s withdrawn meanwhile", job.id, withdrawn)
        return
    try:
        spec = parse_spec(job.spec)
        job.appearances = appearances(spec, result.duration)
        if result.tiles:
            job.appearances.update(_store_tiles(job, spec, result.tiles))
    except Exception:  # noqa: BLE001 - timestamps are a help; the render itself is fine
        log.exception("render %s: could not work out where each clip appears", job.id)
    job.output_key = out_key
    job.poster_key = poster_key if result.poster_path else None
    job.duration = result.duration
    job.progress = 1.0
    states.move_render(job, "done")
    if job.publish:
        # the campaign row is locked (PostgreSQL) so two renders finishing together
        # compare against each other's choice, not a stale one
        campaign = db.session.get(Campaign, job.campaign_id, with_for_update=True,
                                  populate_existing=True)
        current = campaign.published_render_id
        if current is None or current < job.id:
            campaign.published_render_id = job.id
            campaign.rerender_reason = None
        else:
            log.info("render %s: render %s, requested later, is published; this one stays "
                     "in the history", job.id, current)
    db.session.commit()
    log.info("render %s: done, %s (%.1f s)", job.id, out_key, result.duration)
    cache = _proxy_dir(job)
    if cache is not None:
        from workers.media.proxies import prune, sweep_dead_temps

        # replaced takes and clips no longer approved or awaiting moderation leave proxies
        # nothing will draw; those intake built for takes not yet approved stay
        store = storage()
        waiting = [str(store.path(key)) for key in db.session.scalars(
            select(Clip.normalized_key).filter(
                Clip.campaign_id == job.campaign_id, Clip.normalized_key.is_not(None),
                Clip.status.in_(CURRENT_CLIP_STATES)))]
        prune(cache, current=[clip.path for clip in parse_spec(job.spec).clips] + waiting)
        sweep_dead_temps(cache)  # builds a dead worker left half-done


# --- the hand-off to a video editor ---------------------------------------------

def handoff_key(job: Render) -> str:
    """Where a render's hand-off ZIP is stored: a fixed key (a re-run overwrites it) out
    of the public ``renders/`` folder, whose files anyone with the mash-up's URL can
    fetch; never served by the watch blueprint."""
    return f"handoffs/{job.campaign_id}/{job.token}.zip"


def handoff_failure_reason(exc: Exception) -> str:
    """What an organizer reads when a hand-off export fails (``Render.handoff_reason``),
    in plain words and with what to do, from the exception :func:`export_render` caught
    (:class:`~workers.media.spec.SpecError`, :class:`~workers.media.ffmpeg.FFmpegError`,
    :class:`~workers.media.handoff.HandoffError`); never ffmpeg's text, a path or an
    errno, which stay in the worker's log."""
    from workers.media.ffmpeg import FFmpegError
    from workers.media.spec import SpecError

    if isinstance(exc, SpecError):
        return ("The hand-off could not be made: a clip of this render is no longer "
                "usable (it may have been deleted since the render). Render again, then "
                "export.")
    if isinstance(exc, FFmpegError) and exc.timed_out:
        return ("The hand-off took too long to make. Try again later, or export it "
                "without the clips' media.")
    if isinstance(exc, FFmpegError):
        return ("The hand-off's sound could not be made from the clips (a clip may have "
                "been deleted or damaged since the render). Render again, then export; if "
                "it fails again, tell whoever runs Tutti.")
    return ("The hand-off could not be saved on the server (its storage may be full). "
            "Try again later; if it fails again, tell whoever runs Tutti.")


def export_render(render_id: int, *, include_media: bool = True) -> str | None:
    """Build the hand-off ZIP of a finished render (:mod:`workers.media.handoff`) from the
    spec it was rendered with, record it on the row (``handoff_state`` done, or failed with
    a reason for people) and return its key; None when the render is gone or not done."""
    from workers.media.handoff import HandoffError, export_handoff
    from workers.media.spec import SpecError, parse_spec

    job = db.session.get(Render, render_id)
    if job is None or job.status != "done" or not job.spec or not job.output_key:
        log.info("render %s: no finished render to hand off", render_id)
        return None
    key = handoff_key(job)
    store = storage()
    try:
        export_handoff(parse_spec(job.spec), str(store.path_for_writing(key)),
                       include_media=include_media, appearances=job.appearances,
                       title=job.campaign.title,
                       timeout=float(current_app.config["RENDER_TIMEOUT"]))
    except (SpecError, FFmpegError, HandoffError) as exc:
        db.session.rollback()
        job = db.session.get(Render, render_id)
        if job is not None:
            job.handoff_state = "failed"
            # plain words for the organizer; ffmpeg's or the system's own text stays in
            # the worker's log (the warning below)
            job.handoff_reason = handoff_failure_reason(exc)
            db.session.commit()
        log.warning("render %s: hand-off failed: %s", render_id, exc)
        return None
    db.session.rollback()  # see the row as it is now: a withdrawal may have come meanwhile
    job = db.session.get(Render, render_id)
    if job is None or not job.output_key:
        store.delete(key)  # a performer withdrew while it was built: their clip is in it
        log.info("render %s: hand-off dropped, the render changed while it was built",
                 render_id)
        return None
    job.handoff_state = "done"
    job.handoff_key = key
    job.handoff_reason = None
    db.session.commit()
    log.info("render %s: hand-off ready, %s", render_id, key)
    return key


# --- distributed rendering: segments on any workers, audio once, join -------------

def _plan_distributed(job: Render, spec) -> bool:
    """Plan segments; when there are several, record them (and the audio) as parts with
    their own leases and return True (the caller sends them to the render queue). The
    database holds the plan, so any worker can take any part, and a lost message is
    re-sent by the reconciler."""
    from workers.media.plan import plan_render

    plan = plan_render(spec, segment_seconds=float(current_app.config["RENDER_SEGMENT_SECONDS"]))
    if len(plan.segments) < 2:
        return False
    job.plan = plan.to_dict()
    job.part_leases = [RenderPart(part=p) for p in _parts(job)]
    db.session.commit()
    log.info("render %s: %d segments of about %s s, on any workers", job.id, len(plan.segments),
             current_app.config["RENDER_SEGMENT_SECONDS"])
    return True


def _parts(job: Render) -> list[int]:
    """The parts of a distributed render in the order they are sent: the segments with the
    most drawing first and the sound (part -1, a small one) last, so that workers that
    finish early take the short parts and all finish near the same time."""
    segments = job.plan["segments"]

    def work(k: int) -> int:
        s = segments[k]
        return (s["end"] - s["start"]) * (1 + len(s["tiles"]))

    return [*sorted(range(len(segments)), key=lambda k: (-work(k), k)), -1]


def _dispatch_parts(job: Render) -> None:
    """Send the parts that are neither finished nor held by a live worker (or the join,
    when every part is there)."""
    store = storage()
    missing = [p for p in _parts(job) if not store.exists(_part_key(job, p))]
    if not missing:
        enqueue("tutti.join_render", job.id)
        return
    now = lease_now()
    held = {row.part for row in job.part_leases
            if row.lease_until is not None and row.lease_until > now}
    for part in missing:
        if part not in held:
            enqueue("tutti.render_part", job.id, part)


def _claim_part(job: Render, part: int) -> tuple[RenderPart, str] | None:
    """Take one part of a distributed render with a short lease, or None when a live
    worker holds it. A part whose holder died has its temporary files removed first."""
    from sqlalchemy.exc import IntegrityError

    row = db.session.scalar(select(RenderPart).filter_by(render_id=job.id, part=part))
    if row is None:  # planned before parts had leases
        try:
            db.session.add(RenderPart(render_id=job.id, part=part))
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
        row = db.session.scalar(select(RenderPart).filter_by(render_id=job.id, part=part))
    now = lease_now()
    previous = row.lease_owner
    owner = new_owner()
    taken = db.session.execute(
        update(RenderPart).where(RenderPart.id == row.id,
                                 or_(RenderPart.lease_until.is_(None),
                                     RenderPart.lease_until < now))
        .values(lease_owner=owner, lease_until=lease_until(),
                attempts=RenderPart.attempts + 1)
        .execution_options(synchronize_session=False))
    if taken.rowcount != 1:
        db.session.rollback()
        log.info("render %s: part %s is held by a live worker", job.id, part)
        return None
    db.session.commit()
    if previous is not None:
        log.warning("render %s: part %s taken over from %s, whose lease expired", job.id,
                    part, previous)
        path = storage().path(_part_key(job, part))
        stem = path.stem
        for entry in path.parent.glob(f".{stem}.*") if path.parent.is_dir() else []:
            _remove_temp_named(entry)
    return db.session.get(RenderPart, row.id), owner


def _remove_temp_named(entry) -> None:
    from workers.leases import TEMP_NAME

    if TEMP_NAME.match(entry.name):
        entry.unlink(missing_ok=True)


def _release_part(part_id: int, owner: str) -> None:
    db.session.execute(update(RenderPart).where(RenderPart.id == part_id,
                                                RenderPart.lease_owner == owner)
                       .values(lease_owner=None, lease_until=None)
                       .execution_options(synchronize_session=False))
    db.session.commit()


def render_part(render_id: int, part: int) -> None:
    """One segment (``part`` >= 0) or the audio (``part`` == -1) of a distributed render."""
    job = db.session.get(Render, render_id)
    if job is None or job.status != "running" or not job.plan:
        return
    if job.cancel_requested:
        _cancelled(job)
        return
    if storage().exists(_part_key(job, part)):
        _after_part(render_id)
        return
    claimed = _claim_part(job, part)
    if claimed is None:
        return
    row, owner = claimed
    attempts = row.attempts
    beat = None
    started, cpu = time.monotonic(), _process_cpu()
    try:
        with Heartbeat(RenderPart, row.id, owner) as beat:
            drawn = _draw_part(job, part, beat)
    except BaseException as exc:
        db.session.rollback()
        _release_part(row.id, owner)
        if isinstance(exc, Exception) and beat is not None and beat.lost.is_set():
            # another worker took the part over (this one was paused or starved past its
            # lease, and the sweep may have removed its files): a takeover, not an error
            log.info("render %s part %s: taken over by another worker (%s); stopped",
                     render_id, part, exc.__class__.__name__)
            return
        if (isinstance(exc, Exception) and not isinstance(exc, LeaseLost)
                and attempts >= RENDER_PART_ATTEMPTS):
            # the same part broke every time (a bug, not a passing fault): say so,
            # rather than leave the render "running" while the reconciler resends it
            job = db.session.get(Render, render_id)
            if job is not None:
                _fail_render_on(job, exc, _part_step(part) + f" ({attempts} attempts)")
            return
        raise
    if drawn:
        log.info("render %s: part %s drawn in %.1f s (%.1f CPU s)", render_id, part,
                 time.monotonic() - started, _process_cpu() - cpu)
        _after_part(render_id)
    _release_part(row.id, owner)


#: how many times one part of a distributed render is tried (a worker that died, or an
#: unexpected error) before the render fails with a reason instead of being sent again
RENDER_PART_ATTEMPTS = 3


def _part_step(part: int) -> str:
    """The step a part is, in the organizer's words (for a failure reason)."""
    return ("while mixing the sound" if part < 0
            else f"while making part {part + 1} of the video")


def _draw_part(job: Render, part: int, beat: Heartbeat) -> bool:
    """Draw one part into its fixed key; False when the render ended (cancelled, failed,
    or the part was taken over)."""
    from workers.media.plan import RenderPlan
    from workers.media.proxies import ensure_proxies, proxy_scales
    from workers.media.render import render_audio, render_segment
    from workers.media.spec import SpecError, parse_spec

    store = storage()
    key = _part_key(job, part)
    spec = parse_spec(job.spec)
    plan = RenderPlan.from_dict(job.plan)
    timeout = float(current_app.config["RENDER_TIMEOUT"])
    last = [time.monotonic()]

    def check_cancel(_fraction: float) -> None:
        if beat.lost.is_set():
            raise LeaseLost()
        if time.monotonic() - last[0] < 2.0:
            return
        last[0] = time.monotonic()
        db.session.expire(job)
        if job.cancel_requested or job.status != "running":
            raise RenderCancelled()

    path = str(store.path_for_writing(key))
    try:
        if part < 0:
            render_audio(spec, plan, path, timeout=timeout, progress=check_cancel,
                         cache_dir=_proxy_dir(job))
        else:
            proxies = {}
            cache = _proxy_dir(job)
            if cache is not None:
                # what this segment draws; other segments' workers build the rest,
                # starting elsewhere in the list (a proxy is built once, under a lock)
                scales = proxy_scales(plan)
                shown = {t.clip for t in plan.segments[part].tiles}
                proxies = ensure_proxies({i: spec.clips[i].path for i in scales}, scales,
                                         cache, clips=shown, keyint=plan.fps,
                                         timeout=timeout, progress=check_cancel,
                                         start=part * max(1, len(scales)) // len(
                                             plan.segments))
            render_segment(spec, plan, part, path, timeout=timeout, progress=check_cancel,
                           proxies=proxies)
    except LeaseLost:
        log.warning("render %s: part %s taken over by another worker", job.id, part)
        return False
    except RenderCancelled:
        _cancelled(job)
        return False
    except (FFmpegError, SpecError, OSError) as exc:
        if isinstance(exc, OSError) and not disk_full(exc):
            raise
        _fail_render_on(job, exc, _part_step(part))
        return False
    return True


def _after_part(render_id: int) -> None:
    """A part landed: record the progress and, with every part there, send the join. A
    part that lands after its render failed or was cancelled (another part's worker
    removed the folder while this one was still drawing) is removed with the folder."""
    db.session.expire_all()
    job = db.session.get(Render, render_id, with_for_update=True)
    if job is None or job.status != "running":
        ended = job is not None and job.status in ("failed", "cancelled")
        folder = _keys(job)[0] if ended else None
        db.session.rollback()
        if folder is not None:
            storage().delete_prefix(folder)
        return
    store = storage()
    parts = _parts(job)
    present = sum(store.exists(_part_key(job, p)) for p in parts)
    job.progress = round(0.95 * present / len(parts), 4)
    db.session.commit()
    if present == len(parts):
        enqueue("tutti.join_render", job.id)


def join_render(render_id: int) -> None:
    """Join the segments without re-encoding, mux the sound, publish."""
    with _release_on_error(Render, render_id):
        _join_render(render_id)


def _join_render(render_id: int) -> None:
    from workers.media.plan import RenderPlan
    from workers.media.render import join_segments

    job = _claim_render(render_id, planned=True)
    if job is None:
        return
    owner = job.lease_owner
    store = storage()
    parts = _parts(job)
    if job.cancel_requested:  # cancelled while its last part landed: never published
        _cancelled(job)
        return
    if job.status != "running" or not all(store.exists(_part_key(job, p)) for p in parts):
        _release(job)
        db.session.commit()
        return
    _folder, out_key, poster_key = _keys(job)
    plan = RenderPlan.from_dict(job.plan)
    started, cpu = time.monotonic(), _process_cpu()
    try:
        with Heartbeat(Render, job.id, owner):
            # in the film's order (parts are sent by work: the order of ``parts`` is not it)
            result = join_segments(
                plan, [str(store.path(_part_key(job, k))) for k in range(len(plan.segments))],
                str(store.path(_part_key(job, -1))), str(store.path_for_writing(out_key)),
                poster_path=str(store.path_for_writing(poster_key)),
                timeout=float(current_app.config["RENDER_TIMEOUT"]))
    except (FFmpegError, OSError) as exc:
        if isinstance(exc, OSError) and not disk_full(exc):
            raise
        _fail_render_on(job, exc, "while joining the parts of the video")
        return
    log.info("render %s: parts joined in %.1f s (%.1f CPU s)", render_id,
             time.monotonic() - started, _process_cpu() - cpu)
    _finish_render(job, result, out_key, poster_key, owner)
    db.session.expire_all()
    done = db.session.get(Render, render_id)
    if done is not None and done.status == "done":
        store.delete_prefix(f"{_keys(done)[0]}/parts")
