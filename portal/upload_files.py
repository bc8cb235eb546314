"""Reading an uploaded file out of a request without holding it in memory."""

from __future__ import annotations

from flask import request
from werkzeug.datastructures import FileStorage


def uploaded_file(field: str = "file") -> tuple[FileStorage | None, str | None]:
    """The upload in ``field`` and, when it spooled to a named temp file, its path."""
    upload = request.files.get(field)
    if upload is None or not upload.filename:
        return None, None
    stream = upload.stream
    path = getattr(stream, "name", None)
    if isinstance(path, str):
        stream.flush()
        return upload, path
    return upload, None


def form_consent() -> bool:
    return (request.form.get("consent") or "").strip().lower() in {"yes", "on", "true", "1"}


def submit_from_request(campaign):
    """A contribution from a multipart request (the HTML form and the JSON API)."""
    from . import services

    upload, spooled = uploaded_file("file")
    return services.submit_clip(
        campaign,
        upload.stream if upload else None,
        upload.filename if upload else "",
        name=request.form.get("name", ""),
        part=request.form.get("part", ""),
        location=request.form.get("location", ""),
        consent=form_consent(),
        spooled_path=spooled,
    )
