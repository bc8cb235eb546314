"""The gunicorn floor of bench/upload: the least a tus server under gunicorn can do
(read each PATCH body in 1 MiB pieces and append it to a file; offsets kept in
memory, no checks, no fsync, no clip). ``gunicorn --workers 1 bench.upload.sink:app``"""

from __future__ import annotations

import os
import secrets
import tempfile

FOLDER = tempfile.mkdtemp(prefix="tus-sink-")
OFFSETS: dict[str, int] = {}


def app(environ, start_response):
    method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
    if method == "POST":
        upload_id = secrets.token_hex(8)
        OFFSETS[upload_id] = 0
        start_response("201 Created", [("Location", f"/files/{upload_id}"),
                                       ("Tus-Resumable", "1.0.0"), ("Content-Length", "0")])
        return [b""]
    upload_id = path.rsplit("/", 1)[1]
    stream, left = environ["wsgi.input"], int(environ.get("CONTENT_LENGTH") or 0)
    target = os.path.join(FOLDER, upload_id)
    with open(target, "ab") as out:
        while left:
            data = stream.read(min(left, 1 << 20))
            if not data:
                break
            out.write(data)
            left -= len(data)
    OFFSETS[upload_id] = os.path.getsize(target)
    start_response("204 No Content", [("Upload-Offset", str(OFFSETS[upload_id])),
                                      ("Tus-Resumable", "1.0.0")])
    return [b""]
