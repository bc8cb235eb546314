"""bench/mission/copies.py: takes registered as copies of a taken-in take give a render
the work of separate takes (their own files and proxies), never the source's."""

from __future__ import annotations

import os

from sqlalchemy import select

from portal import services
from portal.extensions import db
from portal.models import Clip, ClipEvent
from workers import pipeline


def test_copies_have_their_own_files_and_proxies_and_a_grid_finds_every_proxy(
        app, campaign, media_files):
    """One take through the real intake, 19 copies: each copy is a clip row of its own
    (own media id, moved through the state machine to its source's status), with its own
    byte copy of the normalized file (not a link) and its own proxies under the names a
    render looks up for the copy's file; their offsets differ; a final grid of the 20
    needs no proxy built."""
    from bench.mission.copies import copy_takes
    from workers.media import proxies as proxies_module
    from workers.media.plan import plan_render
    from workers.media.spec import parse_spec

    app.config["INTAKE_PROXIES"] = True
    path = media_files["landscape"]
    with app.app_context(), open(path, "rb") as handle:
        source_id = services.submit_clip(services.get_campaign(campaign), handle, path.name,
                                         name="Ana", part="Alto", consent=True).id
        pipeline.intake(source_id)
        copied = copy_takes([source_id], 20)
        assert len(copied.ids) == 19 and copied.proxies >= 19 * 2

        db.session.expire_all()
        source = db.session.get(Clip, source_id)
        copies = [db.session.get(Clip, i) for i in copied.ids]
        store = app.extensions["tutti.storage"]
        source_file = store.path(source.normalized_key)
        cache = pipeline.proxy_cache(source.campaign_id)
        source_proxies = {p.name for p in cache.iterdir()
                          if p.name.startswith(proxies_module.source_digest(str(source_file)))
                          and p.suffix == ".mp4"}
        assert len(source_proxies) >= 2
        inodes = {os.stat(source_file).st_ino}
        for k, clip in enumerate(copies, start=1):
            assert clip.status == source.status == "normalized"
            assert clip.display_name == f"Voice {k}" and clip.media_id != source.media_id
            assert clip.media == source.media and clip.sound == source.sound
            mine = store.path(clip.normalized_key)
            assert mine.read_bytes() == source_file.read_bytes()
            inodes.add(os.stat(mine).st_ino)
            own = [p for p in cache.iterdir()
                   if p.name.startswith(proxies_module.source_digest(str(mine)))
                   and p.suffix == ".mp4"]
            assert len(own) == len(source_proxies) and not {p.name for p in own} & \
                source_proxies
            events = db.session.scalars(select(ClipEvent.status).filter_by(clip_id=clip.id)
                                        .order_by(ClipEvent.id)).all()
            assert events == ["received", "checked", "normalized"]
        assert len(inodes) == 20  # twenty files, none a link to another
        assert len({c.offset_seconds for c in copies}) > 1

        for clip in [source, *copies]:
            services.moderate_clip(clip, "approved")
        spec = parse_spec(pipeline.build_spec(source.campaign, [source, *copies], "final"))
        scales = proxies_module.proxy_scales(plan_render(spec))
        assert len(scales) == 20
        assert len({spec.clips[i].path for i in scales}) == 20
        assert proxies_module.missing({i: spec.clips[i].path for i in scales}, scales,
                                      str(cache)) == 0
