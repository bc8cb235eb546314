"""Takes registered as copies of takes that went through the real intake
(``python -m bench.mission --distinct N``): the render stage at full size without
taking 75 takes in.

A copy is what intake and sync would have left for a take identical to its source: a clip
row of its own (new token and media id, its own name, the source's probe facts, checks,
measured sound and sync, moved through the clip state machine as intake moves it), its
own byte copy of the source's normalized file under its own key, and its own copy of each
of the source's cell-size proxies under the name the render looks up for the COPY's file
(the proxy name is a digest of the file's path, size and modification time:
:func:`workers.media.proxies.proxy_name`). So a render decodes every copy's files
separately, as it would 75 takes taken in one by one; nothing is shared that separate
takes would not share. The original upload is hard-linked (the render never reads it).

Each copy's offset is its source's moved by a few frames (:func:`copy_offset`), so that the
copies of one source are not cut at the same instants: a real choir's takes each start
at their own moment.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: the clip fields a copy takes from its source as they are: what intake and sync found
#: for a take identical to it, and the sound editor's defaults
COPIED_FIELDS = (
    "part_id", "location", "consent_licence", "original_filename", "size_bytes", "media",
    "checks", "sync_state", "sync_confidence", "sync_method", "drift_ppm", "nudge_ms",
    "sync_candidates", "record_timing", "record_error_ms", "sound", "sound_level_db",
    "loudness_match", "muted", "hidden", "pan", "cleanup", "timing", "time_map",
)


@dataclass(frozen=True)
class Copied:
    """What :func:`copy_takes` made: clip ids, bytes and proxies copied."""

    ids: list[int]
    normalized_bytes: int
    proxies: int


def copy_offset(source_offset: float | None, index: int, fps: int) -> float:
    """The offset (s) of copy ``index``: its source's moved by -3..+3 frames at ``fps``
    (a fixed pattern by index), so two copies of one take start apart as real takes do."""
    return round((source_offset or 0.0) + ((index * 5) % 7 - 3) / fps, 6)


def copy_takes(source_ids: list[int], total: int, *, name: str = "Voice {index}") -> Copied:
    """Register takes ``len(source_ids)`` .. ``total - 1`` of a campaign as copies: take
    ``i`` copies ``source_ids[i % len(source_ids)]`` (each a clip that finished intake:
    normalized, and synced or left to an organizer when the campaign has a guide; with
    its proxies built at intake).
    Runs in an app context; commits once per copy. Returns the copies' ids (in take
    order), the normalized bytes and the proxy files copied. Raises ValueError when a
    source is not taken in or lacks a proxy it should have (then the render would build
    proxies the real run would not have to, and the bench would measure something else)."""
    from portal import states
    from portal.extensions import db
    from portal.models import Clip, ClipEvent
    from portal.services import storage
    from workers.media.probe import probe
    from workers.media.proxies import likely_scales, proxy_name
    from workers.pipeline import proxy_cache

    store = storage()
    sources = [db.session.get(Clip, clip_id) for clip_id in source_ids]
    for source in sources:
        if source is None or not source.normalized_key or source.status not in (
                "normalized", "synced", "needs_sync"):
            raise ValueError(f"take {source and source.id} is not taken in: "
                             f"{source and source.status}")
    ids: list[int] = []
    copied_bytes = proxies = 0
    for index in range(len(sources), total):
        source = sources[index % len(sources)]
        campaign = source.campaign
        clip = Clip(campaign=campaign, display_name=name.format(index=index),
                    original_key="", status="received")
        for field in COPIED_FIELDS:
            setattr(clip, field, getattr(source, field))
        clip.offset_seconds = copy_offset(source.offset_seconds, index, campaign.fps)
        clip.sync_plot_key = None  # drawn for the source's offset, not this one
        clip.events.append(ClipEvent(status="received"))
        db.session.add(clip)
        db.session.flush()  # its media id

        folder = f"clips/{clip.media_id}"
        original = store.path_for_writing(f"{folder}/{os.path.basename(source.original_key)}")
        os.link(store.path(source.original_key), original)
        clip.original_key = f"{folder}/{original.name}"
        for key_field in ("normalized_key", "thumbnail_key", "contact_sheet_key"):
            key = getattr(source, key_field)
            if not key:
                continue
            mine = f"{folder}/{os.path.basename(key)}"
            shutil.copyfile(store.path(key), store.path_for_writing(mine))  # new mtime
            setattr(clip, key_field, mine)
        source_file = str(store.path(source.normalized_key))
        copy_file = str(store.path(clip.normalized_key))
        copied_bytes += os.path.getsize(copy_file)

        info = probe(copy_file)  # as intake sizes them: by the normalized file
        cache = str(proxy_cache(campaign.id))
        for scale in likely_scales(info.width, info.height, campaign.canvas_width,
                                   campaign.canvas_height):
            built = os.path.join(cache, proxy_name(source_file, scale))
            if not os.path.exists(built):
                raise ValueError(f"clip {source.id} has no proxy at 1/{round(1 / scale)} "
                                 f"({built}): intake did not build it")
            shutil.copyfile(built, os.path.join(cache, proxy_name(copy_file, scale)))
            proxies += 1

        # as intake and sync move a take (one state machine), to where its source is
        for status in dict.fromkeys(("checked", "normalized", source.status)):
            states.move_clip(clip, status, source.reason if status == source.status else None)
        db.session.commit()
        ids.append(clip.id)
        log.info("clip %s: a copy of clip %s (offset %+.3f s)", clip.id, source.id,
                 clip.offset_seconds)
    return Copied(ids=ids, normalized_bytes=copied_bytes, proxies=proxies)
