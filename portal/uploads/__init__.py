"""Resumable uploads: the core of the tus 1.0.0 protocol (with the creation and
termination extensions), so a phone on a bad connection resumes where it
stopped instead of starting again.

    POST   /api/v1/uploads          Upload-Length + Upload-Metadata (campaign, name, part,
                                    location, consent, filename): the form is checked
                                    here, before a single byte is sent
    HEAD   /api/v1/uploads/<id>     Upload-Offset: how much arrived
    PATCH  /api/v1/uploads/<id>     Upload-Offset + bytes (application/offset+octet-stream)
    DELETE /api/v1/uploads/<id>     give up
    GET    /api/v1/uploads/<id>     JSON: progress, and the clip once the upload is complete

State lives beside the media (``.tmp/uploads/<id>.part`` and ``.json``), so every
web process that shares the media volume can continue any upload. The last
PATCH hands the finished file to :func:`portal.services.submit_clip`.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import logging
import os
import re
import secrets
import time
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from .. import services
from ..throttle import upload_limits

log = logging.getLogger(__name__)
bp = Blueprint("uploads", __name__)

TUS_VERSION = "1.0.0"
CHUNK = 1 << 20
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
STALE_AFTER = 24 * 3600  # unfinished uploads are dropped after a day


def _dir() -> Path:
    path = current_app.extensions["tutti.storage"].tmp_dir / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _paths(upload_id: str) -> tuple[Path, Path]:
    if not _ID_RE.match(upload_id):
        raise services.ServiceError("There is no upload at this address.", 404)
    base = _dir() / upload_id
    return base.with_suffix(".part"), base.with_suffix(".json")


def _tus(response: Response, **headers: str) -> Response:
    response.headers["Tus-Resumable"] = TUS_VERSION
    response.headers["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def _empty(status: int, **headers: str) -> Response:
    return _tus(Response(status=status), **headers)


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


def _load(upload_id: str) -> tuple[Path, Path, dict]:
    part, meta_path = _paths(upload_id)
    if not meta_path.exists():
        raise services.ServiceError("There is no upload at this address (it may have expired "
                                    "after a day unfinished). Please start the upload again.",
                                    404)
    return part, meta_path, json.loads(meta_path.read_text())


def _save(meta_path: Path, meta: dict) -> None:
    tmp = meta_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, meta_path)


@bp.route("/uploads", methods=["OPTIONS"])
def options():
    max_size = str(current_app.config["MAX_CONTENT_LENGTH"])
    return _empty(204, Tus_Version=TUS_VERSION, Tus_Extension="creation,termination",
                  Tus_Max_Size=max_size)


@bp.post("/uploads")
@upload_limits
def create():
    try:
        length = int(request.headers.get("Upload-Length", ""))
    except ValueError as exc:
        raise services.ServiceError("Upload-Length is required (the file's size in bytes).") \
            from exc
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
    upload_id = secrets.token_urlsafe(24)
    part, meta_path = _paths(upload_id)
    part.touch()
    _save(meta_path, {"length": length, "meta": meta, "created": time.time(), "clip": None})
    location = url_for("uploads.upload", upload_id=upload_id, _external=True)
    log.info("upload %s created for %s (%d bytes)", upload_id, campaign.slug, length)
    return _empty(201, Location=location, Upload_Offset="0")


@bp.route("/uploads/<upload_id>", methods=["HEAD"])
def head(upload_id: str):
    part, _meta_path, meta = _load(upload_id)
    offset = meta["length"] if meta.get("clip") else part.stat().st_size
    return _empty(200, Upload_Offset=str(offset), Upload_Length=str(meta["length"]))


@bp.get("/uploads/<upload_id>")
def upload(upload_id: str):
    part, _meta_path, meta = _load(upload_id)
    body = {"length": meta["length"],
            "offset": meta["length"] if meta.get("clip") else part.stat().st_size,
            "clip": meta.get("clip")}
    if meta.get("clip"):
        body["status_url"] = url_for("participate.status", token=meta["clip"], _external=True)
    return _tus(jsonify(body))


@bp.patch("/uploads/<upload_id>")
def patch(upload_id: str):
    if request.mimetype != "application/offset+octet-stream":
        raise services.ServiceError("Content-Type must be application/offset+octet-stream", 415)
    part, meta_path, meta = _load(upload_id)
    try:
        claimed = int(request.headers.get("Upload-Offset", ""))
    except ValueError as exc:
        raise services.ServiceError("Upload-Offset is required.") from exc
    with open(part, "ab") as out:
        fcntl.flock(out, fcntl.LOCK_EX)  # one writer per upload, across processes
        meta = json.loads(meta_path.read_text())  # as the previous writer left it
        offset = out.seek(0, os.SEEK_END)
        if meta.get("clip"):
            return _empty(204, Upload_Offset=str(meta["length"]), Tutti_Clip=meta["clip"])
        if claimed != offset:
            return _tus(jsonify({"error": f"Upload-Offset is {claimed} but {offset} bytes have "
                                          "arrived: ask with HEAD and continue from there"}),
                        Upload_Offset=str(offset)), 409
        stream = request.stream
        try:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                if offset + len(chunk) > meta["length"]:
                    out.write(chunk[: meta["length"] - offset])
                    offset = meta["length"]
                    break
                out.write(chunk)
                offset += len(chunk)
        except OSError:  # the client went away: keep what arrived, it resumes from there
            log.info("upload %s interrupted at %d bytes", upload_id, offset)
        out.flush()
        os.fsync(out.fileno())
        if offset < meta["length"]:
            return _empty(204, Upload_Offset=str(offset))
        clip = _finish(part, meta)
        meta["clip"] = clip.token
        _save(meta_path, meta)
    part.unlink(missing_ok=True)
    status_url = url_for("participate.status", token=clip.token, _external=True)
    return _empty(204, Upload_Offset=str(meta["length"]), Tutti_Clip=clip.token,
                  Tutti_Status_Url=status_url)


def _finish(part: Path, meta: dict):
    info = meta["meta"]
    campaign = services.get_campaign(info.get("campaign", ""))
    return services.submit_clip(
        campaign, None, info.get("filename", "upload"), name=info.get("name", ""),
        part=info.get("part", ""), location=info.get("location", ""),
        consent=info.get("consent", "") in ("yes", "on", "true", "1"), spooled_path=str(part))


@bp.delete("/uploads/<upload_id>")
def delete(upload_id: str):
    part, meta_path, _meta = _load(upload_id)
    part.unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)
    return _empty(204)


def drop_stale_uploads(root: Path, max_age: float = STALE_AFTER) -> int:
    """Remove unfinished uploads older than ``max_age`` seconds (the reconciler calls it)."""
    folder = root / "uploads"
    if not folder.is_dir():
        return 0
    dropped = 0
    cutoff = time.time() - max_age
    for meta_path in folder.glob("*.json"):
        if meta_path.stat().st_mtime < cutoff:
            meta_path.with_suffix(".part").unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            dropped += 1
    return dropped
