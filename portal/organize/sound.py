"""The sound editor's controls on the clip page: a take's level, loudness match, mute,
hide, pan and clean-up (stored on the clip, used by every render), a meter of its
loudness against the other takes of its part, and a solo to hear it as the mix does.

Routes of the ``organize`` blueprint (registered when that package is imported), each
loading its clip through :mod:`portal.policy` with the ``mix`` action (owners and
moderators; another campaign's clips answer 404)."""

from __future__ import annotations

import math
import os
import tempfile

from flask import abort, flash, redirect, request, url_for
from sqlalchemy import select

from .. import services
from ..extensions import db
from ..models import Clip
from ..policy import clip_for
from ..security import safe_next
from . import _campaign_page, _clip_page, bp, private_wav, refused

#: the solo plays this much of the take, from ``start``
SOLO_SECONDS = 20.0
#: the meter's scale (LUFS): a whisper far from the phone .. a take recorded far too hot
METER_LOW, METER_HIGH = -50.0, -5.0
#: the part's loudness range is read from at most this many of its usable takes
PART_SAMPLE = 2000


def sound_panel(clip: Clip) -> dict:
    """What the clip page's sound card shows: the take's measured sound, the level the mix
    gives it (its match to the others, ``match_db``, and its part's balance,
    ``balance_db``, among the next render's takes), and its part's loudness range
    (``part``: {low, median, high, count} LUFS or None) among the part's usable takes
    (at most :data:`PART_SAMPLE` of them); ``match_short_lu``, how far a take too quiet or
    too loud for the match's cap stays from the others (LU, 0 within it)."""
    from sqlalchemy import func

    from workers.media.sound import (
        MATCH_LUFS,
        MAX_MATCH_DB,
        match_gain,
        match_shortfall,
        part_balance,
        part_loudness,
    )
    from workers.pipeline import (
        clip_level_db,
        heard_loudness,
        heard_loudness_of,
        heard_through_match,
    )

    # the part balance among the next render's takes (the approved ones, and this one as
    # if it were), from one grouped count through the indexes: reading every approved
    # take's sound took a second at 50,000 clips, on every clip page and review view.
    # The count leaves out muted takes and those off the match, not the silent ones the
    # render also leaves out (a take measured silent is rare; the render has the figure)
    counts: dict[int | None, int] = dict(db.session.execute(
        select(Clip.part_id, func.count()).where(
            Clip.campaign_id == clip.campaign_id, Clip.status == "approved",
            Clip.id != clip.id, Clip.loudness_match.is_(True), Clip.muted.is_(False))
        .group_by(Clip.part_id)).all())
    if heard_through_match(clip):
        counts[clip.part_id] = counts.get(clip.part_id, 0) + 1
    balance = part_balance(counts)
    # the clip's part only, at most PART_SAMPLE of its usable takes (through the
    # (campaign, part, status) index)
    same_part = (Clip.part_id.is_(None) if clip.part_id is None
                 else Clip.part_id == clip.part_id)
    rows = db.session.execute(
        select(Clip.part_id, Clip.sound, Clip.cleanup).filter(
            Clip.campaign_id == clip.campaign_id, same_part,
            Clip.status.in_(("normalized", "synced", "needs_sync", "approved")))
        .limit(PART_SAMPLE)).all()
    # each take as the mix hears it (after its clean-up when on), as this take's own
    # figure and the match: measured as recorded, a humming take stood 6 LU over its part
    takes = [(str(part_id), heard_loudness_of(sound, cleanup))
             for part_id, sound, cleanup in rows]
    stats = part_loudness(takes).get(str(clip.part_id))
    sound = clip.sound or {}
    lufs = heard_loudness(clip)  # after the clean-up when it is on (what the mix hears)
    return {
        "sound": sound,
        "loudness": lufs,
        # the figure is the cleaned take's when the clean-up is on and was measured
        "cleaned": bool(clip.cleanup and sound.get("loudness_clean_lufs") is not None),
        "match_db": match_gain(lufs) if clip.loudness_match else 0.0,
        # how far the match falls short of the others at its cap (LU; 0 within it)
        "match_short_lu": match_shortfall(lufs) if clip.loudness_match else 0.0,
        "match_cap_db": MAX_MATCH_DB,
        "too_quiet": lufs is not None and lufs < MATCH_LUFS,
        "balance_db": balance.get(clip.part_id, 0.0) if clip.loudness_match else 0.0,
        "part_takes": counts.get(clip.part_id, 0),
        "level_db": clip_level_db(clip, balance),
        "part": stats,
        "meter": {"low": METER_LOW, "high": METER_HIGH,
                  "value": None if lufs is None else max(METER_LOW, min(METER_HIGH, lufs))},
    }


def time_map_picture(clip: Clip, width: int = 600, height: int = 120) -> dict | None:
    """The clip's time map as an SVG polyline (numbers only): how far the map moves the
    take from its one offset (ms, up: later in the take) over the guide's time, with the
    scale, and whether it was used (``used``; ``gain_pct``: how much better it lined the
    take's note onsets up with the guide's than the offset alone); None without a map."""
    from workers.media.timemap import KEEP_GAIN

    knots = (clip.time_map or {}).get("knots")
    if not knots:
        return None
    offset = (clip.time_map or {}).get("offset", 0.0)
    beyond = float((clip.time_map or {}).get("beyond_tempo") or 0.0)
    g = [k[0] for k in knots]
    shift = [1000 * (k[1] - offset - k[0]) for k in knots]
    span = max(1e-6, g[-1] - g[0])
    top = max(10.0, max(abs(v) for v in shift))
    points = " ".join(f"{(t - g[0]) / span * width:.1f},{height / 2 - v / top * height / 2.2:.1f}"
                      for t, v in zip(g, shift, strict=True))
    return {"points": points, "width": width, "height": height, "top_ms": round(top),
            "seconds": round(g[-1], 1), "largest_ms": round(max(shift, key=abs)),
            "fresh": bool(_current_map(clip)),
            # a map that did not line the notes up clearly better than the offset is not
            # used (flat); older maps carry no verdict and were used
            "used": bool((clip.time_map or {}).get("used", True)),
            "gain_pct": round(100 * float((clip.time_map or {}).get("gain") or 0.0)),
            "keep_pct": round(100 * KEEP_GAIN),
            # a take beyond the tempo limit: its own tempo (%, + slow) and what is left
            "beyond_pct": round(100 * (beyond - 1), 1) if beyond else None,
            "limit_pct": clip.campaign.timing_max_tempo_pct,
            "left_ms": round(1000 * max(0.0, abs(beyond - 1) - clip.campaign.timing_max_tempo_pct
                                        / 100) * g[-1]) if beyond else 0}


def _current_map(clip: Clip) -> bool:
    from workers.pipeline import time_map_is_current

    return time_map_is_current(clip)


@bp.app_template_global("time_map_picture")
def _time_map_picture_global(clip: Clip) -> dict | None:
    return time_map_picture(clip)


@bp.app_template_global("may_do")
def _may_do(action: str, campaign) -> bool:
    from flask_login import current_user

    from ..policy import allowed

    return allowed(current_user, action, campaign)


@bp.post("/c/<slug>/timing")
def timing_limits(slug: str):
    """The campaign's time map limits (owners)."""
    from ..policy import campaign_for

    campaign = campaign_for(slug, "settings")
    back = request.form.get("clip_id", "")
    # the clip page the form was on (a clip of this campaign), else the campaign's console
    clip = (db.session.scalar(select(Clip).filter_by(id=int(back), campaign_id=campaign.id))
            if back.isdigit() and len(back) < 11 else None)
    try:
        services.set_timing_limits(campaign, request.form.to_dict())
    except services.ServiceError as exc:
        page = (lambda: _clip_page(clip)) if clip else (lambda: _campaign_page(campaign))
        return refused(exc.message, exc.status, page)
    flash("Time map limits saved: maps are fitted again at the next render.")
    if clip is not None:
        return redirect(url_for("organize.clip", clip_id=clip.id) + "#timing", code=303)
    return redirect(url_for("organize.campaign", slug=slug), code=303)


@bp.app_template_global("sound_panel")
def _sound_panel_global(clip: Clip) -> dict:
    return sound_panel(clip)


@bp.post("/clips/<int:clip_id>/sound")
def clip_sound(clip_id: int):
    """Save the clip's sound controls (a form; see :func:`services.set_clip_sound`)."""
    clip = clip_for(clip_id, "mix")
    try:
        services.set_clip_sound(clip, request.form.to_dict())
    except services.ServiceError as exc:
        # the clip page with the form again (the review view's form is the same one)
        return refused(exc.message, exc.status, lambda: _clip_page(clip))
    flash("Sound saved: the next render uses it.")
    # back to the page the form was on: the clip page, or the review view (``next``)
    back = safe_next(request.form.get("next"), url_for("organize.clip", clip_id=clip.id))
    return redirect(back + "#sound", code=303)


@bp.get("/clips/<int:clip_id>/solo.wav")
def solo(clip_id: int):
    """The take alone as the mix hears it (level, pan, clean-up), :data:`SOLO_SECONDS`
    from ``start`` (s); ``cleanup=0`` or ``1`` overrides the clip's clean-up switch so the
    organizer hears before and after."""
    from workers.media.audio import NoAudio
    from workers.media.ffmpeg import FFmpegError
    from workers.media.sound import clean_take
    from workers.pipeline import clip_sound as spec_sound

    clip = clip_for(clip_id, "mix")
    if not clip.normalized_key or not (clip.media or {}).get("has_audio", True):
        abort(404)
    try:
        start = float(request.args.get("start", 0.0))
    except ValueError:
        abort(400)
    if not (math.isfinite(start) and 0 <= start <= 36000):
        abort(400)
    duration = (clip.media or {}).get("duration")
    if duration and start >= duration:
        abort(400, description=f"The take is {duration:.1f} s long: start the solo before "
                               "its end.")
    cleanup = request.args.get("cleanup")
    if cleanup not in (None, "0", "1"):
        abort(400)
    fields = spec_sound(clip)
    if cleanup is not None:
        on = cleanup == "1"
        fields["denoise"] = on
        fields["hum_hz"] = float((clip.sound or {}).get("hum_hz") or 0.0) if on else 0.0
    src = str(services.storage().path(clip.normalized_key))
    fd, tmp = tempfile.mkstemp(suffix=".wav", prefix=".tutti-solo-")
    os.close(fd)
    try:
        clean_take(src, tmp, hum_hz=fields["hum_hz"], denoise=fields["denoise"],
                   pan=fields["pan"], gain_db=fields["gain_db"], start=start,
                   noise_floor_db=fields.get("noise_floor_db", -50.0),
                   seconds=SOLO_SECONDS, timeout=120)
        with open(tmp, "rb") as f:
            data = f.read()
    except (NoAudio, FFmpegError):
        abort(404)
    finally:
        os.remove(tmp)
    return private_wav(data)


# --- the hand-off to a video editor ----------------------------------------------

@bp.post("/renders/<int:render_id>/handoff")
def request_handoff(render_id: int):
    """Ask a worker for the render's hand-off ZIP (timeline, clips, mix, stems, credits)."""
    from ..policy import render_for

    job = render_for(render_id, "export")
    try:
        services.request_handoff(job)
    except services.ServiceError as exc:
        return refused(exc.message, exc.status, lambda: _campaign_page(job.campaign))
    flash(f"The hand-off of render #{job.id} is being prepared; reload to download it.")
    return redirect(url_for("organize.campaign", slug=job.campaign.slug), code=303)


@bp.get("/renders/<int:render_id>/handoff.zip")
def handoff(render_id: int):
    """The render's hand-off ZIP, for its campaign's owners only (404 until ready)."""
    from flask import send_file

    from ..policy import render_for

    job = render_for(render_id, "export")
    if job.handoff_state != "done" or not job.handoff_key:
        abort(404)
    path = services.storage().path(job.handoff_key)
    if not path.is_file():
        abort(404)
    response = send_file(path, mimetype="application/zip", as_attachment=True,
                         download_name=f"{job.campaign.slug}-render-{job.id}-handoff.zip",
                         conditional=True, max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response
