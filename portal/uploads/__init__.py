"""Resumable uploads: the tus 1.0.0 protocol with the creation, termination,
checksum and expiration extensions, so a phone on a bad connection resumes where
it stopped instead of starting again.

    OPTIONS /api/v1/uploads         what this server offers (versions, extensions, sizes)
    POST    /api/v1/uploads         Upload-Length + Upload-Metadata (campaign, name, part,
                                    location, consent, filename; a take recorded on the
                                    page adds its timing: record_start_s, output_latency_s,
                                    input_latency_s, base_latency_s, latency_calibrated,
                                    recorder_mime, start_stamped, start_clock; and
                                    take_id): the form is checked here, before a
                                    single byte is sent
    HEAD    /api/v1/uploads/<id>    Upload-Offset: how much arrived; Upload-Expires
    PATCH   /api/v1/uploads/<id>    Upload-Offset + bytes (application/offset+octet-stream),
                                    optionally Upload-Checksum (sha1 or sha256)
    DELETE  /api/v1/uploads/<id>    give up: the bytes are deleted, a PATCH still
                                    sending ends with 410; 409 naming the clip (and
                                    its status page, to withdraw it) once it is one
    GET     /api/v1/uploads/<id>    JSON: progress, and the clip (id, status URL) once complete

Every answer about a finished upload (HEAD, PATCH, and GET with ``Accept:
application/json``) carries the clip: ``Tutti-Clip`` (its id) and
``Tutti-Status-Url`` (its private page) as headers, ``id`` and ``status_url`` in the
JSON, with ``Upload-Offset`` equal to ``Upload-Length``. So a client whose answer to
the last PATCH was lost finds out with one HEAD that it is done, and where to go.

``Location`` and ``Tutti-Status-Url`` are paths on this host (relative references,
RFC 9110 §10.2.2), so they stay right behind a TLS proxy whatever it forwards, or
start with ``TUTTI_BASE_URL`` when it is set. The URLs in the JSON are built by
:func:`portal.links.external_url`: on ``TUTTI_BASE_URL``; else absolute from the
request as ProxyFix corrected it (``TUTTI_TRUSTED_PROXIES``) when its host is one of
``TUTTI_TRUSTED_HOSTS``; else paths (a forged ``Host`` never reaches a link).

Same file, same submission: a client may send ``head_sha256`` and ``tail_sha256``
in Upload-Metadata (hex SHA-256 of the file's first and last
:data:`FINGERPRINT_BYTES`, or of the whole file when it is smaller). The server then
checks the bytes it holds against them (the head as soon as it has arrived, the tail
when the last byte arrives): an upload whose bytes are not of that file (a resume
with another file of the same name and size) is removed and answered 460, and no
clip is made of it. ``samples_sha256`` (optional) covers the middle: the SHA-256 of
:data:`SAMPLE_COUNT` slices of :data:`SAMPLE_BYTES` spread evenly over the file (see
:func:`sample_starts`), checked when the last byte arrives, so two files with the same
ends but another middle are never mixed into one. With the fingerprint, a creation
repeated because its answer was lost gets the same upload back while no byte has
arrived (the same campaign, length, ends, samples and form), so no empty upload is
left behind; without it, an upload that never got a byte expires within the hour
(:data:`EMPTY_EXPIRES_AFTER`).

Same take, one clip: a take recorded on the page names itself (``take_id``, with its
ends' SHA-256). A creation of a take that already has an upload is answered with that
upload (under way: the client continues it; finished: its first PATCH gets the clip),
and the clip's token is derived from the take (:func:`take_clip_token`), so two uploads
of one take that both arrive (two tabs at once) make one clip (red team W1).

Answers: 400 for an ``Upload-Length`` that is not a non-negative integer, and for an
``Upload-Checksum`` that is not ``<algorithm> <base64 digest>`` (no digest, not base64,
not the algorithm's size: a malformed header, not a damaged chunk); 412 for a
``Tus-Resumable`` other than 1.0.0; 409 when Upload-Offset is
not what arrived, and for a DELETE of an upload that became a clip; 413 when a PATCH
goes beyond Upload-Length (nothing of it is kept; the upload stays resumable); 507
when the disk is full (the chunk is cut back, ``Upload-Offset`` says where to resume,
and no clip is made: see :func:`_make_clip`); 460 when the chunk's checksum does not match
(the chunk is discarded); 404 for an unknown upload, 410 for one that was deleted
or expired.

State lives beside the media (``.tmp/uploads/<id>.part``, ``.json`` and ``.lock``),
so every web process that shares the media volume can continue any upload. Two
locks: the ``.part`` file's lock gives one writer per upload; the ``.lock``
file's guards the state (the ``.json``) between a PATCH, a DELETE and the
finishing step, so a deleted upload is never re-created nor turned into a clip.
The last PATCH hands the finished file to :func:`portal.services.submit_clip`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ctypes
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import is_disk_full, services
from ..extensions import db
from ..links import external_url, path_or_base_url
from ..models import Clip
from ..storage import fsync_dir
from ..throttle import upload_accepted, upload_limits

log = logging.getLogger(__name__)
bp = Blueprint("uploads", __name__)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,checksum,expiration"
CHECKSUMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
CHUNK = 1 << 20
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
_LENGTH_RE = re.compile(r"^[0-9]{1,20}$")  # tus: Upload-Length is a non-negative integer
STALE_AFTER = 24 * 3600  # unfinished uploads without an expiry time are dropped after a day
# an upload that never got a byte (its creation answer was lost, the page was closed)
# expires sooner than one under way: the sweep removes it within the hour
EMPTY_EXPIRES_AFTER = 3600
FINGERPRINT_BYTES = 1 << 20  # head_sha256 / tail_sha256 cover this much of each end
SAMPLE_COUNT = 16  # samples_sha256: this many slices spread over the file
SAMPLE_BYTES = 1 << 16  # of this many bytes each


def sample_starts(length: int) -> list[int]:
    """Where the ``samples_sha256`` slices start in a file of ``length`` bytes:
    ``floor(i * (length - SAMPLE_BYTES) / (SAMPLE_COUNT - 1))`` for i in 0..15, each
    :data:`SAMPLE_BYTES` long; empty when both ends' megabytes already cover the file
    (``length <= 2 * FINGERPRINT_BYTES``). static/upload.js computes the same."""
    if length <= 2 * FINGERPRINT_BYTES:
        return []
    return [i * (length - SAMPLE_BYTES) // (SAMPLE_COUNT - 1) for i in range(SAMPLE_COUNT)]


_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# a PATCH moves the upload's expiry forward (it stays resumable for TUTTI_UPLOAD_EXPIRE_HOURS
# after its last chunk), but writes the state for it only when that moves it by more than
# this: one small write a minute instead of one per chunk (bench/README.md, issue 11)
EXPIRES_STEP = 60
# bytes written before the kernel is asked to start writing them to disk (see _writeback)
WRITEBACK_STEP = 8 << 20


def _dir() -> Path:
    path = current_app.extensions["tutti.storage"].tmp_dir / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _paths(upload_id: str) -> tuple[Path, Path]:
    if not _ID_RE.match(upload_id):
        raise services.ServiceError("There is no upload at this address.", 404)
    base = _dir() / upload_id
    return base.with_suffix(".part"), base.with_suffix(".json")


@contextlib.contextmanager
def _state_lock(meta_path: Path) -> Iterator[None]:
    """Hold the upload's state lock (across processes) while reading or changing
    its ``.json``, deleting it or finishing it."""
    with open(meta_path.with_suffix(".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _tus(response: Response, **headers: str) -> Response:
    response.headers["Tus-Resumable"] = TUS_VERSION
    response.headers["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def _empty(status: int, **headers: str) -> Response:
    return _tus(Response(status=status), **headers)


def _error(status: int, message: str, **headers: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return _tus(response, **headers)


def _http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


def _expires_at(meta: dict) -> float:
    return float(meta.get("expires") or meta.get("created", 0) + STALE_AFTER)


def _lifetime() -> float:
    return float(current_app.config["UPLOAD_EXPIRE_HOURS"]) * 3600


@bp.after_request
def tus_header(response: Response) -> Response:
    """Every tus answer names the protocol, and none is kept by a cache: an upload's
    offset changes with every PATCH and its JSON names the participant's clip."""
    response.headers["Tus-Resumable"] = TUS_VERSION
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.before_request
def check_version():
    """tus: every request but OPTIONS names the protocol version; GET may leave it
    out (a browser opening the URL does)."""
    if request.method == "OPTIONS":
        return None
    version = request.headers.get("Tus-Resumable")
    if version is None and request.method == "GET":
        return None
    if version != TUS_VERSION:
        return _error(412, f"This server speaks tus {TUS_VERSION}: send Tus-Resumable: "
                           f"{TUS_VERSION}.", Tus_Version=TUS_VERSION)
    return None


def parse_metadata(header: str) -> dict[str, str]:
    """``key base64value,key2 base64value2`` -> dict (tus Upload-Metadata)."""
    found: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, value = pair.partition(" ")
        try:
            found[key] = base64.b64decode(value, validate=True).decode("utf-8") if value else ""
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise services.ServiceError(f"Upload-Metadata: {key!r} is not base64 UTF-8") from exc
    return found


class Gone(Exception):
    """The upload was deleted (or expired) while this request was working on it."""


def _read_meta(meta_path: Path) -> dict:
    try:
        return json.loads(meta_path.read_text())
    except FileNotFoundError as exc:
        raise Gone() from exc


def _load(upload_id: str) -> tuple[Path, Path, dict]:
    """The upload's paths and state; 404 when unknown, 410 when it has expired."""
    part, meta_path = _paths(upload_id)
    try:
        meta = _read_meta(meta_path)
    except Gone:
        raise services.ServiceError("There is no upload at this address (it was deleted, or "
                                    "expired unfinished). Please start the upload again.",
                                    404) from None
    if not meta.get("clip") and _expires_at(meta) < time.time():
        raise services.ServiceError("This upload expired unfinished. Please start the upload "
                                    "again.", 410)
    return part, meta_path, meta


def _write_tmp(meta_path: Path, meta: dict) -> Path:
    """Write ``meta`` to the state's ``.json.tmp`` and fsync it; returns its path. On any
    error (a full disk) the ``.tmp`` is removed and the error raised: no half-written
    state is ever left beside the upload."""
    tmp = meta_path.with_suffix(".json.tmp")
    try:
        with open(tmp, "w") as handle:
            handle.write(json.dumps(meta))
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _commit_state(tmp: Path, meta_path: Path) -> None:
    """Put a state written by :func:`_write_tmp` in place (a rename: it needs no new
    space, so a full disk cannot stop it once the ``.tmp`` is written). On an error the
    ``.tmp`` is removed (the old state stays) and the error raised."""
    try:
        os.replace(tmp, meta_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # durability of the name; the content is synced
        fsync_dir(meta_path.parent)


def _save(meta_path: Path, meta: dict) -> None:
    """Write the state; only under the state lock, and never re-creating a deleted one.
    Raises OSError (a full disk) with nothing left behind: the old state stays."""
    if not meta_path.exists():
        raise Gone()
    _commit_state(_write_tmp(meta_path, meta), meta_path)


@bp.route("/uploads", methods=["OPTIONS"])
def options():
    max_size = str(current_app.config["MAX_CONTENT_LENGTH"])
    return _empty(204, Tus_Version=TUS_VERSION, Tus_Extension=TUS_EXTENSIONS,
                  Tus_Max_Size=max_size, Tus_Checksum_Algorithm=",".join(CHECKSUMS))


@bp.post("/uploads")
@upload_limits
def create():
    given = request.headers.get("Upload-Length", "").strip()
    if not given:
        raise services.ServiceError("Upload-Length is required (the file's size in bytes).")
    if not _LENGTH_RE.match(given):  # "-1", "1e6", "+5", "0x10": not a size
        raise services.ServiceError(f"Upload-Length {given[:40]!r} is invalid: it must be the "
                                    "file's size in bytes, a non-negative integer.")
    length = int(given)
    max_bytes = int(current_app.config["MAX_CONTENT_LENGTH"])
    if length > max_bytes:
        raise services.ServiceError(f"The file is larger than {max_bytes // (1024 * 1024)} MB. "
                                    "Please upload a shorter or smaller video.", 413, "file")
    if length <= 0:
        raise services.ServiceError("The file is empty. Please choose the video again.",
                                    field="file")
    meta = parse_metadata(request.headers.get("Upload-Metadata", ""))
    campaign = services.get_campaign(meta.get("campaign", ""))
    # the same checks as a plain upload, before any byte travels
    services.validate_submission(campaign, name=meta.get("name", ""), part=meta.get("part", ""),
                                 location=meta.get("location", ""),
                                 consent=meta.get("consent", "") in ("yes", "on", "true", "1"))
    services.filename_of(meta.get("filename", ""))
    for key in ("head_sha256", "tail_sha256", "samples_sha256"):
        if key in meta and meta[key] and not _SHA256_HEX.match(meta[key]):
            raise services.ServiceError(f"Upload-Metadata: {key} must be a SHA-256 (see the "
                                        "tus API notes), as 64 lowercase hex digits.")
    # a take recorded on the page: 400 when its timing is unusable (its start bounded by
    # the guide's length)
    _record_timing(meta, campaign.guide_duration if campaign.guide_key else None)
    take = _take_key(campaign.id, length, meta)
    sending = _take_upload(take) if take else None
    if sending:  # this take is already on its way (another tab), or arrived: one upload
        upload_id, state = sending
        log.info("upload %s asked for again for take %s of %s (sent %s)", upload_id,
                 meta.get("take_id"), campaign.slug,
                 "already" if state.get("clip") else "from elsewhere, under way")
        return _empty(201, Location=path_or_base_url("uploads.upload", upload_id=upload_id),
                      Upload_Offset=str(_offset(_dir() / f"{upload_id}.part", state)),
                      Upload_Expires=_http_date(_expires_at(state)))
    key = _creation_key(campaign.id, length, meta)
    twin = _unsent_twin(key) if key else None
    if twin:  # the answer to the first creation was lost, and the client asks again
        upload_id, state = twin
        log.info("upload %s created again for %s (the first answer was lost)", upload_id,
                 campaign.slug)
        return _empty(201, Location=path_or_base_url("uploads.upload", upload_id=upload_id),
                      Upload_Offset="0", Upload_Expires=_http_date(_expires_at(state)))
    upload_id = secrets.token_urlsafe(24)
    part, meta_path = _paths(upload_id)
    now = time.time()
    state = {"length": length, "meta": meta, "created": now,
             "expires": now + min(_lifetime(), EMPTY_EXPIRES_AFTER),
             "clip": None, "campaign_id": campaign.id,
             # with the id (SQLite may give a deleted campaign's id again): this campaign
             "campaign_created": campaign.created_at.isoformat(), "key": key, "take": take}
    try:
        part.touch()
        _commit_state(_write_tmp(meta_path, state), meta_path)
    except OSError:  # a full disk (507): no upload, nothing of it left
        _remove(meta_path)
        raise
    for folder, name in (("keys", key), ("takes", take)):
        if not name:
            continue
        keys = _dir() / folder
        try:
            keys.mkdir(exist_ok=True)
            (keys / f"{name}.tmp").write_text(upload_id)
            os.replace(keys / f"{name}.tmp", keys / name)
        except OSError as exc:  # the key only serves a lost creation answer: not needed
            (keys / f"{name}.tmp").unlink(missing_ok=True)
            if not is_disk_full(exc):
                raise
    # a path unless TUTTI_BASE_URL says where we are (tus clients resolve a path
    # against the creation URL, so it is right behind any proxy)
    location = path_or_base_url("uploads.upload", upload_id=upload_id)
    log.info("upload %s created for %s (%d bytes)", upload_id, campaign.slug, length)
    upload_accepted()
    return _empty(201, Location=location, Upload_Offset="0",
                  Upload_Expires=_http_date(state["expires"]))


def _record_timing(meta: dict[str, str], guide_s: float | None = None) -> dict | None:
    """The timing a take recorded along the guide carries in its Upload-Metadata
    (``record_start_s``, ``output_latency_s``, ``input_latency_s``, ``base_latency_s``,
    ``latency_calibrated``, ``recorder_mime``) as stored on the clip; None for a file
    chosen from the device. ``guide_s``: the campaign's guide length (s), which bounds
    ``record_start_s`` (:func:`workers.media.record_timing.start_range`). 400 naming the
    key, and saying what to do, when a value is unusable: not a plain number, out of
    range, a ``recorder_mime`` that is not an audio or video type."""
    from workers.media.record_timing import RecordTiming, start_range

    try:
        timing = RecordTiming.from_metadata(meta, guide_s=guide_s)
    except ValueError as exc:
        key = str(exc)
        if key == "record_start_s":
            low, high = start_range(guide_s)
            guide = f"this campaign's {guide_s:.1f} s guide" if guide_s else "the guide"
            what = (f"the guide time at the take's first sample, a plain decimal number of "
                    f"seconds such as -3.0125, from {low:g} to {high:g} for {guide} "
                    f"({meta.get('record_start_s', '')[:20]!r} was sent). Record the take "
                    "again on the campaign page, or send it without its timing")
        elif key == "recorder_mime":
            what = ("the recorder's audio or video type, such as video/webm;codecs=vp8,opus "
                    f"or audio/mp4 ({meta.get('recorder_mime', '')[:40]!r} is not a "
                    "recording). Send the take from the campaign page, or leave "
                    "recorder_mime out")
        else:
            what = {"start_stamped": "yes or nothing", "latency_calibrated": "yes or nothing",
                    "start_clock": "track, tap or nothing"}.get(
                key, "a plain decimal number of seconds such as -3.0125 (latencies within a "
                     "second)")
        raise services.ServiceError(f"Upload-Metadata: {key} must be {what}.") from None
    return timing.to_json_dict() if timing else None


def _creation_key(campaign_id: int, length: int, meta: dict[str, str]) -> str | None:
    """What makes two creations the same upload: the campaign, the length, both ends'
    SHA-256 and every field of the form; None without the fingerprint."""
    if "head_sha256" not in meta or "tail_sha256" not in meta:
        return None
    fields = [str(campaign_id), str(length)] + [meta.get(name, "") for name in (
        "head_sha256", "tail_sha256", "name", "part", "location", "consent", "filename",
        "samples_sha256")]
    return hashlib.sha256("\x00".join(fields).encode()).hexdigest()


_TAKE_ID = re.compile(r"^[A-Za-z0-9_-]{8,100}$")


def _take_key(campaign_id: int, length: int, meta: dict[str, str]) -> str | None:
    """What makes two uploads the same take recorded on the page (red team W1: two tabs
    of one browser sent one kept take and made two clips): the campaign, the take's id
    (``take_id``: made by the browser that recorded it, kept with the take in its
    IndexedDB) and the take's bytes (length, ``head_sha256``, ``tail_sha256``). Not the
    form: a name typed differently in the second tab does not make another take. The
    bytes are part of it so that knowing a take's id alone never leads to its clip. None
    for an upload that names no take; 400 for a malformed ``take_id``, or one without
    both ends' SHA-256."""
    take_id = meta.get("take_id", "")
    if not take_id:
        return None
    if not _TAKE_ID.match(take_id):
        raise services.ServiceError("Upload-Metadata: take_id must be the take's id as the "
                                    "recording page makes it: 8 to 100 letters, digits, "
                                    "'-' or '_'.")
    if not meta.get("head_sha256") or not meta.get("tail_sha256"):
        raise services.ServiceError("Upload-Metadata: a take_id goes with the take's "
                                    "head_sha256 and tail_sha256 (see the tus API notes); "
                                    "send them, or leave take_id out.")
    fields = ["take", str(campaign_id), take_id, str(length), meta["head_sha256"],
              meta["tail_sha256"]]
    return hashlib.sha256("\x00".join(fields).encode()).hexdigest()


def _take_upload(take: str) -> tuple[str, dict] | None:
    """The upload already made for the take ``take`` (:func:`_take_key`), under way or
    finished into its clip, as (id, state); None when there is none (or it was deleted,
    or expired unfinished, or its clip was deleted). A second upload of the take
    continues that one, or is told at once that it is complete, with its clip."""
    try:
        upload_id = (_dir() / "takes" / take).read_text().strip()
        _part, _meta_path, meta = _load(upload_id)
    except (FileNotFoundError, services.ServiceError):
        return None
    if meta.get("take") != take:
        return None
    if meta.get("clip") and db.session.scalar(select(Clip.id).filter_by(
            token=meta["clip"])) is None:
        return None  # its clip was deleted since: the take may be sent again, as new
    return upload_id, meta


def _unsent_twin(key: str) -> tuple[str, dict] | None:
    """The upload created with ``key`` that has not received a byte yet (its creation
    answer was lost, so its client asks again), as (id, state); else None. Once bytes
    arrive an upload is only ever continued through its own URL."""
    try:
        upload_id = (_dir() / "keys" / key).read_text().strip()
        part, _meta_path, meta = _load(upload_id)
    except (FileNotFoundError, services.ServiceError):
        return None
    if meta.get("clip") or meta.get("key") != key or _offset(part, meta) != 0 \
            or not part.exists():
        return None
    return upload_id, meta


def _offset(part: Path, meta: dict) -> int:
    if meta.get("clip"):
        return int(meta["length"])
    try:
        return part.stat().st_size
    except FileNotFoundError:
        return 0


def _done(status: int, meta: dict) -> Response:
    """The answer about a finished upload: the whole length arrived, and the clip it
    made (``Tutti-Clip``) with its private page (``Tutti-Status-Url``, a path, or on
    ``TUTTI_BASE_URL`` when it is set: see :func:`portal.links.path_or_base_url`)."""
    return _empty(status, Upload_Offset=str(meta["length"]), Upload_Length=str(meta["length"]),
                  Tutti_Clip=meta["clip"],
                  Tutti_Status_Url=path_or_base_url("participate.status", token=meta["clip"]))


WHOLE_NO_ROOM_MESSAGE = ("All of your video arrived and is kept, but the server has no disk "
                         "space to take it in right now. Please ask again in a few minutes: "
                         "it is taken in as soon as there is room; the organizers have been "
                         "told.")


def _finished(part: Path, meta_path: Path, meta: dict) -> dict:
    """:func:`_finish_if_whole` for HEAD and GET: 507 (saying the bytes are kept) when
    the disk is too full to make the clip of a whole upload now."""
    try:
        return _finish_if_whole(part, meta_path, meta)
    except NoRoom:
        raise services.ServiceError(WHOLE_NO_ROOM_MESSAGE, 507) from None


@bp.route("/uploads/<upload_id>", methods=["HEAD"])
def head(upload_id: str):
    part, meta_path, meta = _load(upload_id)
    meta = _finished(part, meta_path, meta)
    if meta.get("clip"):
        return _done(200, meta)
    return _empty(200, Upload_Offset=str(_offset(part, meta)), Upload_Length=str(meta["length"]),
                  Upload_Expires=_http_date(_expires_at(meta)))


@bp.get("/uploads/<upload_id>")
def upload(upload_id: str):
    """Progress as JSON; once complete, the clip's ``id``, ``status_url`` and ``api_url``."""
    part, meta_path, meta = _load(upload_id)
    meta = _finished(part, meta_path, meta)
    body = {"length": meta["length"], "offset": _offset(part, meta), "clip": meta.get("clip"),
            "complete": bool(meta.get("clip"))}
    if meta.get("clip"):
        body["id"] = meta["clip"]
        body["status_url"] = external_url("participate.status", token=meta["clip"])
        body["api_url"] = external_url("api.clip", token=meta["clip"])
    else:
        body["expires"] = _http_date(_expires_at(meta))
    return _tus(jsonify(body))


def _checksum() -> tuple[str, bytes] | None:
    """The ``Upload-Checksum`` header as (algorithm, digest), or None; 400 when unusable."""
    header = request.headers.get("Upload-Checksum")
    if header is None:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    if algorithm not in CHECKSUMS:
        raise services.ServiceError(f"Upload-Checksum: {algorithm!r} is not supported; use "
                                    f"one of {', '.join(CHECKSUMS)}.")
    shape = ('the header must be "<algorithm> <base64 digest>", e.g. "sha1 '
             f'{base64.b64encode(CHECKSUMS["sha1"](b"").digest()).decode()}"')
    if not encoded.strip():  # no digest at all: a malformed header, not a mismatch (460)
        raise services.ServiceError(f"Upload-Checksum: the digest is missing; {shape}.")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error as exc:
        raise services.ServiceError(f"Upload-Checksum: the digest is not base64; {shape}.") \
            from exc
    size = CHECKSUMS[algorithm]().digest_size
    if len(digest) != size:
        raise services.ServiceError(f"Upload-Checksum: a {algorithm} digest is {size} bytes, "
                                    f"this one is {len(digest)}; {shape}.")
    return algorithm, digest


class _Body:
    """A PATCH body read straight from the server's ``wsgi.input``, never past its
    ``Content-Length`` (PEP 3333 lets an application read that much and no more).
    werkzeug's ``request.stream`` wraps the same stream in a ``LimitedStream`` that
    copies every piece twice (into a new buffer, then into new bytes): a third of the
    PATCH handler's own time in a profile of a 1 GiB upload (bench/README.md).

    ``read(size)`` -> at most ``size`` bytes, ``b""`` at the end; ``short`` is True
    when the body ended before ``Content-Length`` (the client went away)."""

    def __init__(self, stream, length: int) -> None:
        self._stream, self.left = stream, length
        self.short = False

    def read(self, size: int) -> bytes:
        size = min(size, self.left)
        if size <= 0:
            return b""
        data = self._stream.read(size)
        if not data:
            self.short = True
        self.left -= len(data)
        return data


def _body():
    """The PATCH body to read: :class:`_Body` when ``Content-Length`` says how long
    it is, else (``Transfer-Encoding: chunked``) werkzeug's stream, which the server
    ends."""
    if request.content_length is not None:
        return _Body(request.environ["wsgi.input"], request.content_length)
    return request.stream


def _sync_file_range():
    """libc's ``sync_file_range(fd, offset, nbytes, flags)`` (Linux), or None."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_SYNC_FILE_RANGE = _sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writing out the range's dirty pages, no wait
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _writeback(fd: int, start: int, end: int) -> int:
    """Ask the kernel to start writing bytes ``start``..``end`` of ``fd`` to disk now,
    without waiting (Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``, the way
    PostgreSQL's ``pg_flush_data`` does). Only whole pages are pushed (a page still
    being appended to is left for the next call, so no later write waits on it).
    Returns where the next call starts. Nothing elsewhere.

    Durability does not change: nothing is durable before the fsync of the finished
    upload, as before. But a finished upload of a gigabyte no longer starts writing
    its gigabyte only at that fsync (with lots of RAM the kernel's own write-back
    starts only after 30 s or when a tenth of memory is dirty): the disk writes while
    the network delivers, and the fsync finds little left (bench/README.md, issue 11)."""
    end -= end % _PAGE
    if _SYNC_FILE_RANGE is None or end <= start:
        return start
    # advice: an error here (none expected) shows again at the fsync that matters
    _SYNC_FILE_RANGE(fd, start, end - start, _SYNC_FILE_RANGE_WRITE)
    return end


def _drain(stream, limit: int = 64 << 20) -> None:
    """Read (and drop) what the client still sends, so that it gets to read our answer."""
    with contextlib.suppress(OSError):
        while limit > 0:
            chunk = stream.read(min(CHUNK, limit))
            if not chunk:
                break
            limit -= len(chunk)


@bp.patch("/uploads/<upload_id>")
def patch(upload_id: str):
    if request.mimetype != "application/offset+octet-stream":
        raise services.ServiceError("Content-Type must be application/offset+octet-stream", 415)
    part, meta_path, meta = _load(upload_id)
    try:
        claimed = int(request.headers.get("Upload-Offset", ""))
    except ValueError as exc:
        raise services.ServiceError("Upload-Offset is required.") from exc
    checksum = _checksum()
    gone = ("This upload was deleted while the chunk was arriving; nothing of it was kept. "
            "Start the upload again to send the file.")
    try:
        fd = os.open(part, os.O_RDWR | os.O_APPEND)  # never re-creates a deleted upload
    except FileNotFoundError:
        if meta.get("clip"):
            return _done(204, meta)
        return _error(410, gone)
    with os.fdopen(fd, "ab", buffering=0) as out:  # unbuffered: nothing written on close
        fcntl.flock(out, fcntl.LOCK_EX)  # one writer per upload, across processes
        try:
            meta = _read_meta(meta_path)  # as the previous writer left it
        except Gone:
            return _error(410, gone)
        if meta.get("clip"):
            return _done(204, meta)
        length = int(meta["length"])
        start = offset = out.seek(0, os.SEEK_END)
        if claimed != offset:
            return _error(409, f"Upload-Offset is {claimed} but {offset} bytes have arrived: "
                               "ask with HEAD and continue from there",
                          Upload_Offset=str(offset))
        too_long = _error(413, f"This chunk goes beyond the file's length ({length} bytes); "
                               f"nothing of it was kept. Continue from byte {start}.",
                          Upload_Offset=str(start))
        if request.content_length is not None and start + request.content_length > length:
            return too_long
        digest = CHECKSUMS[checksum[0]]() if checksum else None
        stream = _body()
        interrupted = False
        pushed = start  # bytes from here on have not been handed to _writeback yet
        try:
            while True:
                try:
                    chunk = stream.read(CHUNK)
                except OSError:  # the client went away: keep what arrived, it resumes
                    interrupted = True
                    log.info("upload %s interrupted at %d bytes", upload_id, offset)
                    break
                if not chunk:
                    if getattr(stream, "short", False):  # it went away between reads
                        interrupted = True
                        log.info("upload %s interrupted at %d bytes", upload_id, offset)
                    break
                if offset + len(chunk) > length:
                    out.truncate(start)
                    return too_long
                view = memoryview(chunk)
                while view:  # an unbuffered write may take part of it
                    view = view[out.write(view):]
                offset += len(chunk)
                if digest is not None:
                    digest.update(chunk)
                if offset - pushed >= WRITEBACK_STEP:
                    pushed = _writeback(out.fileno(), pushed, offset)
                if not meta_path.exists():  # deleted while we were receiving
                    _drain(stream)
                    return _error(410, gone)
            out.flush()
            if offset < length:
                _writeback(out.fileno(), pushed, offset)
            else:
                # durable before it becomes a clip; a chunk in between needs no fsync: after
                # a crash the .part is as long as what reached the disk, HEAD says so, and
                # the client resumes from there (the fingerprint check covers the ends).
                # Inside the try: a full disk may first show at fsync
                os.fsync(out.fileno())
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            return _disk_full(out, start, stream, upload_id)
        if checksum and (interrupted or digest.digest() != checksum[1]):
            out.truncate(start)  # a chunk we cannot verify is not kept
            if interrupted:
                return _empty(204, Upload_Offset=str(start))
            return _error(460, "The chunk's checksum does not match what arrived; nothing of "
                               f"it was kept. Send it again from byte {start}.",
                          Upload_Offset=str(start))
        mismatch = _fingerprint_mismatch(out.fileno(), meta, start, offset)
        if mismatch:
            with _state_lock(meta_path):
                _remove(meta_path)
            meta_path.with_suffix(".lock").unlink(missing_ok=True)
            log.warning("upload %s removed: its %s does not match the file it was created for",
                        upload_id, mismatch)
            return _error(460, "These bytes are not from the video this upload was started "
                               "with (another file of the same name?), so nothing of it was "
                               "kept. Choose your video again and press Upload.")
        with _state_lock(meta_path):
            try:
                meta = _read_meta(meta_path)
                if offset < length:
                    expires = time.time() + _lifetime()
                    if abs(expires - _expires_at(meta)) > EXPIRES_STEP:
                        try:
                            _save(meta_path, dict(meta, expires=expires))
                            meta["expires"] = expires
                        except OSError as exc:  # the chunk is kept; its expiry is not moved
                            if not is_disk_full(exc):
                                raise
                            log.error("upload %s: expiry not moved (the disk is full)",
                                      upload_id)
                    return _empty(204, Upload_Offset=str(offset),
                                  Upload_Expires=_http_date(_expires_at(meta)))
                named = _make_clip(part, meta_path, meta)
            except Gone:
                return _error(410, gone)
            except NoRoom:
                return _disk_full(out, start, None, upload_id)
    if named:  # else the .part stays for the reconciler to write the state naming the clip
        part.unlink(missing_ok=True)
    return _done(204, meta)


class NoRoom(Exception):
    """The disk is full before the upload's clip could be made: no clip was made, the
    state is as it was, nothing temporary is left."""


def _clip_token(upload_id: str, meta: dict | None) -> str:
    """The token the clip of this upload has or will have: derived from the take when the
    upload names one (:func:`take_clip_token`), else from the upload's id
    (:func:`upload_clip_token`)."""
    take = (meta or {}).get("take")
    return take_clip_token(take) if take else upload_clip_token(upload_id)


def _existing_clip(upload_id: str, meta: dict | None = None) -> str | None:
    """The token of the clip this upload (with its state ``meta``) already became, found in
    the database by its derived token (:func:`_clip_token`), or None."""
    token = _clip_token(upload_id, meta)
    return db.session.scalar(select(Clip.token).filter_by(token=token))


def _name_clip(meta_path: Path, meta: dict, token: str) -> bool:
    """Record in the upload's state that it became clip ``token`` (``meta`` is changed
    in place either way, so the answer names the clip). Returns whether the state was
    written: on a full disk it is not (logged), and the clip is found again by its
    token in the database by the next HEAD, GET, PATCH, DELETE or reconciler pass."""
    meta["clip"] = token
    try:
        _save(meta_path, meta)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        log.error("upload %s is clip %s, but its state cannot be written (the disk is full); "
                  "it is found again by its token", meta_path.stem, token)
        return False
    return True


def _make_clip(part: Path, meta_path: Path, meta: dict) -> bool:
    """The clip of a whole upload, made once, named in its state (under the state lock;
    ``meta`` gets ``clip``). Returns whether the state naming it was written.

    The clip's token is derived from the upload's id (:func:`upload_clip_token`): a web
    process killed between the clip's commit and the state's write leaves a clip that is
    found again here, never a second one (red team, issue 15). A take recorded on the
    page derives it from the take instead (:func:`take_clip_token`), so two uploads of
    one take (two tabs, a creation raced, a take sent again after its upload's state was
    swept) become its one clip: the second is answered with the first's clip, and its
    bytes (the same, by their fingerprint) are dropped. The state naming the clip
    is written (to ``.json.tmp``, fsynced) before the clip is made and only renamed into
    place after: a full disk stops the upload before there is a clip (:class:`NoRoom`;
    the rename needs no space), so an answer never says "not kept" of a clip that was
    made (red team ops3, W2)."""
    token = _existing_clip(part.stem, meta)
    if token is not None:
        if meta.get("take"):
            log.info("upload %s: take %s was already sent as clip %s; answered with it",
                     part.stem, meta.get("meta", {}).get("take_id"), token)
        return _name_clip(meta_path, meta, token)
    token = _clip_token(part.stem, meta)
    try:
        tmp = _write_tmp(meta_path, dict(meta, clip=token))
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise NoRoom() from exc
    try:
        _finish(part, meta, token)
    except IntegrityError:  # made meanwhile by a process that does not hold our lock
        db.session.rollback()
        if _existing_clip(part.stem, meta) is None:
            tmp.unlink(missing_ok=True)
            raise
    except services.ServiceError as exc:
        tmp.unlink(missing_ok=True)
        if exc.status == 507:  # the original could not be linked in: no clip
            raise NoRoom() from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    meta["clip"] = token
    try:
        _commit_state(tmp, meta_path)
    except OSError:
        log.exception("upload %s is clip %s, but its state could not be put in place; it is "
                      "found again by its token", part.stem, token)
        return False
    return True


def upload_clip_token(upload_id: str) -> str:
    """The private token of the clip an upload becomes: 128 bits of SHA-256 over the
    upload's id (itself 192 secret bits that only the uploader holds), URL-safe."""
    digest = hashlib.sha256(b"tutti-upload-clip:" + upload_id.encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def take_clip_token(take: str) -> str:
    """The private token of the clip a take recorded on the page becomes (``take``: its
    :func:`_take_key`): 128 bits of HMAC-SHA256 keyed by the app's ``SECRET_KEY``, so it
    cannot be worked out from the take's id and bytes alone (an older page made ids of
    about 30 random bits), URL-safe."""
    secret = str(current_app.config["SECRET_KEY"]).encode()
    digest = hmac.new(secret, b"tutti-take-clip:" + take.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def _finish_if_whole(part: Path, meta_path: Path, meta: dict) -> dict:
    """An upload whose bytes have all arrived but that names no clip (the web process
    died after the last byte, before the clip was made or named): make its clip now,
    once, as the PATCH would have (its fingerprint checked first). Returns the state
    as it is after. Called by HEAD and GET (a client resuming asks so; tus-js-client
    then sends nothing more) and by the reconciler (:func:`finish_whole_uploads`).
    An upload that is a clip its state does not name (the state could not be written:
    a full disk) is named again from the database. Raises :class:`NoRoom` when the
    disk is too full to make the clip now (nothing made; asked again later)."""
    if meta.get("clip"):
        return meta
    token = _existing_clip(part.stem, meta)
    if token is not None:
        with _state_lock(meta_path):
            try:
                meta = _read_meta(meta_path)
            except Gone:
                return dict(meta, clip=token)
            if not meta.get("clip") and not _name_clip(meta_path, meta, token):
                return meta  # the .part stays until the state names the clip
        part.unlink(missing_ok=True)
        return meta
    if _offset(part, meta) != int(meta["length"]):
        return meta
    try:
        fd = os.open(part, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        return meta
    with os.fdopen(fd, "ab", buffering=0) as out:
        fcntl.flock(out, fcntl.LOCK_EX)  # after any PATCH still writing
        try:
            meta = _read_meta(meta_path)
        except Gone:
            return meta
        length = int(meta["length"])
        if meta.get("clip") or out.seek(0, os.SEEK_END) != length:
            return meta
        os.fsync(out.fileno())
        mismatch = _fingerprint_mismatch(out.fileno(), meta, 0, length)
        if mismatch:
            log.warning("upload %s: whole but its %s does not match; left for the client",
                        part.stem, mismatch)
            return meta
        with _state_lock(meta_path):
            try:
                meta = _read_meta(meta_path)
                if not meta.get("clip"):
                    log.warning("upload %s: whole but without its clip (the server stopped "
                                "after the last byte); making it now", part.stem)
                    if not _make_clip(part, meta_path, meta):
                        return meta
            except Gone:
                return meta
    part.unlink(missing_ok=True)
    return meta


def finish_whole_uploads(root: Path, min_age: float = 30.0) -> int:
    """The reconciler's pass: make the clips of uploads that are whole but name none
    (see :func:`_finish_if_whole`), untouched for ``min_age`` s. ``root`` is the
    storage's ``.tmp``. Returns how many clips were made."""
    folder = root / "uploads"
    made = 0
    now = time.time()
    for meta_path in folder.glob("*.json") if folder.is_dir() else []:
        part = meta_path.with_suffix(".part")
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("clip") or part.stat().st_size != int(meta["length"]) \
                    or part.stat().st_mtime > now - min_age:
                continue
        except (FileNotFoundError, ValueError, KeyError):
            continue
        try:
            made += bool(_finish_if_whole(part, meta_path, meta).get("clip"))
        except services.ServiceError as exc:  # its campaign was deleted, say
            log.warning("upload %s: whole, but no clip can be made: %s", part.stem, exc)
        except NoRoom:
            log.error("upload %s: whole, but the disk is too full to make its clip; "
                      "tried again on the next pass", part.stem)
    return made


def _sha256_of(fd: int, start: int, size: int) -> str:
    """SHA-256 (hex) of ``size`` bytes from ``start`` of the open file ``fd``; read
    through the descriptor, so a DELETE that unlinks the ``.part`` meanwhile does not
    break the check (the state lock then answers 410)."""
    digest = hashlib.sha256()
    while size > 0:
        chunk = os.pread(fd, min(CHUNK, size), start)
        if not chunk:
            break
        digest.update(chunk)
        start += len(chunk)
        size -= len(chunk)
    return digest.hexdigest()


def _fingerprint_mismatch(fd: int, meta: dict, before: int, now: int) -> str | None:
    """Which part of the file (``"head"``, ``"tail"`` or ``"middle"``) the bytes held contradict, or
    None. ``fd``: the ``.part`` file, open (read through it, never by its path). The head is
    checked by the PATCH that completes it, the tail by the one that completes the file;
    uploads created without the fingerprint are not checked."""
    info = meta.get("meta", {})
    length = int(meta["length"])
    span = min(FINGERPRINT_BYTES, length)
    if "head_sha256" in info and before < span <= now:
        if _sha256_of(fd, 0, span) != info["head_sha256"]:
            return "head"
    if "tail_sha256" in info and now == length:
        if _sha256_of(fd, length - span, span) != info["tail_sha256"]:
            return "tail"
    if info.get("samples_sha256") and now == length:
        digest = hashlib.sha256()
        for start in sample_starts(length):
            digest.update(os.pread(fd, SAMPLE_BYTES, start))
        if digest.hexdigest() != info["samples_sha256"]:
            return "middle"
    return None


CHUNK_DISK_FULL_MESSAGE = ("The server has no disk space left for uploads right now, so "
                           "this chunk was not kept (the {start} bytes before it are). Please "
                           "resume from byte {start} later; the organizers have been told.")


def _disk_full(out, start: int, stream, upload_id: str) -> Response:
    """The media disk filled up during a chunk, or before the last chunk could become a
    clip (:class:`NoRoom`: no clip was made): nothing of the chunk is kept (the file is
    cut back to where it started), the client is told 507 with ``Upload-Offset`` and may
    resume from there later. ``stream``: the body still to drain, or None."""
    log.error("upload %s: the media disk is full; the chunk from byte %d was not kept",
              upload_id, start)
    os.ftruncate(out.fileno(), start)
    if stream is not None:
        _drain(stream)
    return _error(507, CHUNK_DISK_FULL_MESSAGE.format(start=start), Upload_Offset=str(start))


def _finish(part: Path, meta: dict, token: str):
    """Turn the finished upload into a clip of the campaign it was created for; 410
    (and the upload removed) when that campaign was deleted, even if a new campaign
    took its slug since."""
    info = meta["meta"]
    try:
        campaign = services.get_campaign(info.get("campaign", ""))
    except services.ServiceError:
        campaign = None
    if campaign is None or campaign.id != meta.get("campaign_id", campaign.id) or \
            campaign.created_at.isoformat() != meta.get("campaign_created",
                                                        campaign.created_at.isoformat()):
        _remove(part.with_suffix(".json"))
        raise services.ServiceError("The campaign this upload was for has been deleted; "
                                    "nothing was kept.", 410)
    return services.submit_clip(
        campaign, None, info.get("filename", "upload"), name=info.get("name", ""),
        part=info.get("part", ""), location=info.get("location", ""),
        consent=info.get("consent", "") in ("yes", "on", "true", "1"), spooled_path=str(part),
        # a campaign without a guide has no page to record along: a timing is not its own
        record_timing=_finished_timing(info, campaign),
        # it was open when this upload was created: a take on its way is not thrown away
        check_open=False, token=token)


def _finished_timing(info: dict[str, str], campaign) -> dict | None:
    """The timing kept on the clip of a finished upload: as checked on its creation, or
    None when the campaign has no guide (a timing is not its own) or its guide changed
    since so that the timing no longer fits (the sound syncs the take alone: a take on
    its way is never refused at its last byte)."""
    if not campaign.guide_key:
        return None
    try:
        return _record_timing(info, campaign.guide_duration)
    except services.ServiceError as exc:
        log.warning("campaign %s: a take's timing no longer fits its guide, not kept: %s",
                    campaign.slug, exc)
        return None


def _remove(meta_path: Path) -> None:
    meta_path.unlink(missing_ok=True)
    meta_path.with_suffix(".part").unlink(missing_ok=True)
    meta_path.with_suffix(".json.tmp").unlink(missing_ok=True)


CLIP_NOT_DELETED_MESSAGE = ("This upload is complete and is already your clip, so it was not "
                            "deleted. To take your clip back, withdraw it on its status page: "
                            "{status_url}")


@bp.delete("/uploads/<upload_id>")
def delete(upload_id: str):
    """tus termination of an unfinished upload: 204, its bytes deleted. An upload that
    already became a clip is not an upload to end any more: 409, naming the clip
    (``Tutti-Clip``, ``Tutti-Status-Url``; ``id`` and ``status_url`` in the JSON) and
    its status page, where the participant withdraws it (red team ops3, W4). Under the
    state lock, so a DELETE and the last PATCH never both succeed: either the upload is
    gone first (the PATCH answers 410, no clip) or the clip is made first (409 here)."""
    _part, meta_path = _paths(upload_id)
    with _state_lock(meta_path):
        try:
            meta = _read_meta(meta_path)
        except Gone:
            meta = None
        token = (meta or {}).get("clip") or _existing_clip(upload_id, meta)
        if token:
            status_url = path_or_base_url("participate.status", token=token)
            response = jsonify({
                "error": CLIP_NOT_DELETED_MESSAGE.format(
                    status_url=external_url("participate.status", token=token)),
                "id": token, "status_url": external_url("participate.status", token=token),
                "api_url": external_url("api.clip", token=token)})
            response.status_code = 409
            return _tus(response, Tutti_Clip=token, Tutti_Status_Url=status_url)
        if meta is None:
            meta_path.with_suffix(".lock").unlink(missing_ok=True)
            raise services.ServiceError("There is no upload at this address.", 404)
        _remove(meta_path)
    meta_path.with_suffix(".lock").unlink(missing_ok=True)
    log.info("upload %s deleted", upload_id)
    return _empty(204)


def drop_campaign_uploads(root: Path, campaign_id: int, slug: str) -> int:
    """Remove the unfinished uploads for a campaign being deleted (``root`` is the
    storage's ``.tmp``); uploads from before the campaign id was kept are matched by
    slug. Returns how many went."""
    folder = root / "uploads"
    dropped = 0
    for meta_path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            meta = json.loads(meta_path.read_text())
        except (FileNotFoundError, ValueError):
            continue
        if meta.get("clip"):
            continue
        owner = meta.get("campaign_id")
        if owner == campaign_id or (owner is None and meta.get("meta", {}).get("campaign") == slug):
            with _state_lock(meta_path):
                _remove(meta_path)
            meta_path.with_suffix(".lock").unlink(missing_ok=True)
            dropped += 1
    return dropped


def drop_stale_uploads(root: Path, max_age: float = STALE_AFTER) -> int:
    """Remove unfinished uploads past their ``Upload-Expires`` (or older than
    ``max_age`` seconds when they have none), and finished ones a day after they
    finished; the reconciler calls it periodically. Returns how many went."""
    folder = root / "uploads"
    if not folder.is_dir():
        return 0
    dropped = 0
    now = time.time()
    for meta_path in folder.glob("*.json"):
        try:
            modified = meta_path.stat().st_mtime
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            continue  # deleted meanwhile
        except ValueError:
            meta = {}
        if meta and not meta.get("clip"):
            expires = _expires_at(meta)
        else:
            expires = modified + max_age
        if expires < now:
            with _state_lock(meta_path):
                _remove(meta_path)
            meta_path.with_suffix(".lock").unlink(missing_ok=True)
            dropped += 1
    for orphan in list(folder.glob("*.lock")) + list(folder.glob("*.part")):
        if not orphan.with_suffix(".json").exists() and orphan.stat().st_mtime < now - 3600:
            orphan.unlink(missing_ok=True)
    for tmp in folder.glob("*.json.tmp"):  # a state write a killed process left unfinished
        with contextlib.suppress(FileNotFoundError):
            if tmp.stat().st_mtime < now - 3600:
                tmp.unlink()
    keys = folder / "keys"
    for key in keys.iterdir() if keys.is_dir() else []:
        # a creation key only serves a lost creation answer, within the first hour
        with contextlib.suppress(FileNotFoundError):
            if key.stat().st_mtime < now - EMPTY_EXPIRES_AFTER or \
                    not (folder / f"{key.read_text().strip()}.json").exists():
                key.unlink()
    takes = folder / "takes"
    for take in takes.iterdir() if takes.is_dir() else []:
        # a take's key serves as long as its upload is kept (its clip's token, derived
        # from the take, still finds the clip once the upload is swept)
        with contextlib.suppress(FileNotFoundError):
            if take.suffix == ".tmp":
                if take.stat().st_mtime < now - EMPTY_EXPIRES_AFTER:
                    take.unlink()  # left by a process that died while writing it
            elif not (folder / f"{take.read_text().strip()}.json").exists():
                take.unlink()
    return dropped
