"""Locust users for ``bench/load``: participants sending 20 MB clips through tus while
viewers open the watch page (again with its ETag, as a browser does) and stream the mash-up
with range requests. Settings come
from the environment the bench sets: TUTTI_LOAD_SLUG, TUTTI_LOAD_MEDIA (the mash-up's
URL path), TUTTI_LOAD_MEDIA_SIZE, TUTTI_LOAD_CLIP_MB, TUTTI_LOAD_CHUNK_MB."""

from __future__ import annotations

import base64
import os
import random

from locust import HttpUser, between, events, task

SLUG = os.environ.get("TUTTI_LOAD_SLUG", "load")
MEDIA = os.environ.get("TUTTI_LOAD_MEDIA", "")
MEDIA_SIZE = int(os.environ.get("TUTTI_LOAD_MEDIA_SIZE", "1"))
CLIP_BYTES = int(float(os.environ.get("TUTTI_LOAD_CLIP_MB", "20")) * 1024 * 1024)
CHUNK = int(float(os.environ.get("TUTTI_LOAD_CHUNK_MB", "5")) * 1024 * 1024)
RANGE = 1024 * 1024  # what a player asks for at a time
TUS = {"Tus-Resumable": "1.0.0"}
PAYLOAD = os.urandom(CHUNK)  # the same bytes for every chunk: the server only stores them
uploaded = {"bytes": 0, "clips": 0, "not_modified": 0}


def _metadata(name: str) -> str:
    fields = {"campaign": SLUG, "name": name, "part": "Alto", "consent": "yes",
              "filename": "take.mp4"}
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


class Participant(HttpUser):
    """Sends one 20 MB clip after another, in tus chunks."""

    fixed_count = int(os.environ.get("TUTTI_LOAD_PARTICIPANTS", "50"))
    wait_time = between(1, 3)

    @task
    def upload(self) -> None:
        created = self.client.post("/api/v1/uploads", name="tus create", headers={
            **TUS, "Upload-Length": str(CLIP_BYTES),
            "Upload-Metadata": _metadata(f"P{random.randrange(10**6)}")})
        if created.status_code != 201:
            return
        url = created.headers["Location"]
        offset = 0
        while offset < CLIP_BYTES:
            size = min(CHUNK, CLIP_BYTES - offset)
            answer = self.client.patch(url, data=PAYLOAD[:size], name="tus patch", headers={
                **TUS, "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream"})
            if answer.status_code != 204:
                return
            offset += size
            uploaded["bytes"] += size
        uploaded["clips"] += 1


class Viewer(HttpUser):
    """Opens the watch page, then plays: range requests along the mash-up."""

    fixed_count = int(os.environ.get("TUTTI_LOAD_VIEWERS", "200"))
    wait_time = between(1, 3)

    etag = ""  # the watch page's, from this viewer's last visit

    @task(3)
    def watch(self) -> None:
        """A browser asks again with the ETag it was given (``If-None-Match``)."""
        headers = {"If-None-Match": self.etag} if self.etag else {}
        answer = self.client.get(f"/watch/{SLUG}", name="watch page", headers=headers)
        if answer.status_code == 304:
            uploaded["not_modified"] += 1
        elif answer.headers.get("ETag"):
            self.etag = answer.headers["ETag"]

    @task(6)
    def stream(self) -> None:
        start = random.randrange(0, max(1, MEDIA_SIZE - RANGE))
        self.client.get(MEDIA, name="mash-up range",
                        headers={"Range": f"bytes={start}-{start + RANGE - 1}"})

    @task(1)
    def floor(self) -> None:
        self.client.get("/healthz", name="healthz (floor)")


@events.quitting.add_listener
def _report(environment, **_kwargs) -> None:
    path = os.environ.get("TUTTI_LOAD_UPLOADED")
    if path:
        with open(path, "w") as out:
            out.write(f"{uploaded['bytes']} {uploaded['clips']} {uploaded['not_modified']}\n")
