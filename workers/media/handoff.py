"""The hand-off to a video editor: a render's clips on an editable timeline, in one ZIP.

:func:`export_handoff` takes a RenderSpec (as a render used it) and writes::

    timeline.otio        OpenTimelineIO: one video track per shown clip (its normalized
                         file at its synced position), audio tracks for the mix, the
                         stems and the guide
    timeline.xml         the same timeline as FCP 7 XML (the maintained OTIO adapter,
                         otio-fcp-adapter), which Premiere, Resolve and Final Cut import
    media/NNN.mp4        the normalized clips (unless ``include_media`` is false; the
                         timeline then still names them so, for the editor to relink)
    audio/mix.wav        the clips' mix as Tutti masters it (24-bit, 48 kHz, from the
                         guide's t=0 for the mash-up's length)
    audio/stems/NN-part.wav  one stem per part at the mix's gain, before its limiter:
                         the stems add up to the mix
    audio/guide.wav      the guide, when the campaign has one
    credits.csv          name, part, location (and where each first appears)
    README.txt           what is where

Positions: the timeline's t=0 is the guide's t=0 (the mash-up's first frame, after any
intro). A clip with offset ``o`` and drift speed ``s`` starts on the timeline at
``max(0, -o / s)`` and is cut from clip time ``max(0, o)``: the same numbers the render's
plan uses (:class:`workers.media.plan.PlanClip`), rounded to the canvas's frames, which
is what an editor's timeline holds. The exact seconds are kept in each clip's metadata
(``metadata["tutti"]``). A clip pulled into time by a time map is cut at the map's bends
into pieces of steady speed (:func:`map_pieces`), each with its LinearTimeWarp, so the
timeline shows the render's source frame at every point within half a frame; the FCP XML
keeps the pieces where they are but not their speeds (the adapter writes no time remap:
inside a piece, an editor's import plays at speed 1, at most 3 % off). Clip files are
named by their position in the spec, never by the clip's private token; people's names
go only into the timeline's clip names and the credits, through the libraries' own
writers (OTIO JSON, XML, csv).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import os
import re
import shutil
import tempfile
import time
import unicodedata
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .ffmpeg import input_url, remove_quietly, replace_atomically, run_ffmpeg, temp_path_for
from .normalize import AUDIO_RATE
from .plan import RenderPlan, plan_render
from .probe import MEDIA_DEMUXERS, safe_input
from .render import (
    SILENCE_LUFS,
    _mix_audio,
    _remaining,
    _stereo,
    loudness_filter,
    mixed_sources,
    room_of,
)
from .spec import RenderSpec

log = logging.getLogger(__name__)

TIMELINE_OTIO = "timeline.otio"
TIMELINE_FCP = "timeline.xml"
MIX_WAV = "audio/mix.wav"
GUIDE_WAV = "audio/guide.wav"
CREDITS_CSV = "credits.csv"
WAV_CODEC = ["-c:a", "pcm_s24le", "-ar", str(AUDIO_RATE), "-ac", "2", "-f", "wav"]


class HandoffError(Exception):
    """The hand-off cannot be made (e.g. the export cannot be written); text for a person."""


@dataclass(frozen=True)
class Placement:
    """Where one clip sits on the hand-off timeline (seconds of guide time for
    ``start``/``duration``; ``source_start`` in clip time)."""

    index: int  # into spec.clips
    start: float
    source_start: float
    duration: float
    speed: float


def placements(spec: RenderSpec, plan: RenderPlan) -> list[Placement]:
    """Each clip's place on the mash-up's timeline (t=0 = the guide's t=0, as long as the
    mash-up), from the render plan: clips that play no part of it are left out."""
    main = plan.main_duration
    found = []
    for c in plan.clips:
        start = max(0.0, c.start)
        end = min(main, c.end)
        if end - start <= 0:
            continue
        found.append(Placement(c.index, start, max(0.0, c.offset + start * c.speed),
                               end - start, c.speed))
    return found


def _slug(text: str, fallback: str) -> str:
    """ASCII letters, digits and hyphens only (a file name inside the ZIP)."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", plain).strip("-").lower()[:40]
    return slug or fallback


def _csv_cell(text: str) -> str:
    """A cell a spreadsheet shows as text: a leading =, +, -, @ (a formula) is quoted."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def build_timeline(spec: RenderSpec, plan: RenderPlan, *, media: Mapping[int, str],
                   stems: Mapping[str, str], mix: str | None, guide: str | None,
                   name: str = "Tutti mash-up"):
    """The OpenTimelineIO timeline of the hand-off: ``media`` maps a clip index to its
    file's path inside the ZIP, ``stems`` a part name to its stem's; ``mix`` and ``guide``
    are paths inside the ZIP or None. Rates: the canvas's frames per second."""
    import opentimelineio as otio

    fps = float(plan.fps)
    main = plan.main_duration

    def frames(seconds: float) -> otio.opentime.RationalTime:
        return otio.opentime.RationalTime(round(seconds * fps), fps)

    def rng(start: float, duration: float) -> otio.opentime.TimeRange:
        first = round(start * fps)
        return otio.opentime.TimeRange(otio.opentime.RationalTime(first, fps),
                                       otio.opentime.RationalTime(
                                           round((start + duration) * fps) - first, fps))

    timeline = otio.schema.Timeline(name=name, global_start_time=frames(0.0))
    timeline.metadata["tutti"] = {"fps": plan.fps, "width": plan.width, "height": plan.height,
                                  "duration_seconds": round(main, 6),
                                  "t0": "the guide's t=0, the mash-up's first frame"}
    durations = {c.index: c.duration for c in plan.clips}
    for place in placements(spec, plan):
        if spec.clips[place.index].hidden or place.index not in media:
            continue
        clip = spec.clips[place.index]
        label = clip.name or f"clip {place.index + 1}"
        if clip.part:
            label += f" ({clip.part})"
        track = otio.schema.Track(name=f"V{place.index + 1:03d} {label}",
                                  kind=otio.schema.TrackKind.Video)
        start_frame = round(place.start * fps)
        if start_frame > 0:
            track.append(otio.schema.Gap(source_range=otio.opentime.TimeRange(
                frames(0.0), otio.opentime.RationalTime(start_frame, fps))))
        end_frame = round((place.start + place.duration) * fps)
        if clip.time_map:  # pulled into time: one piece per stretch of the map
            pieces = map_pieces(clip, start_frame, end_frame, fps)
        else:
            pieces = [(start_frame, end_frame - start_frame, place.source_start, place.speed)]
        for number, (first, length, source, scalar) in enumerate(pieces):
            item = otio.schema.Clip(
                name=label,
                media_reference=otio.schema.ExternalReference(
                    target_url=media[place.index],
                    available_range=otio.opentime.TimeRange(
                        frames(0.0), frames(durations[place.index]))),
                source_range=otio.opentime.TimeRange(
                    otio.opentime.RationalTime(round(source * fps), fps),
                    otio.opentime.RationalTime(length, fps)))
            if scalar != 1.0:  # the drift, or the map's tempo here, as the render plays it
                item.effects.append(otio.schema.LinearTimeWarp(
                    name="time map" if clip.time_map else "drift", time_scalar=scalar))
            item.metadata["tutti"] = {
                "index": place.index, "part": clip.part, "offset_seconds": clip.offset,
                "start_seconds": round(place.start, 6),
                "source_start_seconds": round(place.source_start, 6),
                "duration_seconds": round(place.duration, 6), "speed": place.speed,
                "gain_db": clip.gain_db, "muted": clip.muted, "pan": clip.pan}
            if clip.time_map:
                # the map once per clip, in its first piece (every piece repeating it made
                # 5.9 MB of OTIO for four 37 s takes)
                if number == 0:
                    item.metadata["tutti"]["time_map"] = [list(k) for k in clip.time_map]
                item.metadata["tutti"].update(
                    piece=number, pieces=len(pieces),
                    piece_start_seconds=round(first / fps, 6),
                    piece_source_start_seconds=round(source, 6))
            track.append(item)
        timeline.tracks.append(track)

    def audio_track(title: str, path: str) -> None:
        track = otio.schema.Track(name=title, kind=otio.schema.TrackKind.Audio)
        track.append(otio.schema.Clip(
            name=title,
            media_reference=otio.schema.ExternalReference(target_url=path,
                                                          available_range=rng(0.0, main)),
            source_range=rng(0.0, main)))
        timeline.tracks.append(track)

    if mix:
        audio_track("Mix", mix)
    for part, path in stems.items():
        audio_track(f"Stem {part or 'no part'}", path)
    if guide:
        audio_track("Guide", guide)
    return timeline


#: the most a cut of the FCP XML's timeline may drift from the speed it stands for (frames)
FCP_DRIFT_FRAMES = 0.5


def speedless_timeline(timeline, fps: float):
    """A copy of ``timeline`` whose video clips play at speed 1, for FCP 7 XML: the
    otio-fcp-adapter writes no speed (a LinearTimeWarp is dropped, so a piece at 1.02 of
    230 frames ended 4.6 frames behind the sound). Each clip with a time scalar ``s`` is
    cut into runs of at most ``0.5 / |s - 1|`` frames, each starting at the source frame
    nearest the render's (from the piece's exact source seconds in its metadata), so the
    picture is within :data:`FCP_DRIFT_FRAMES` of the render's inside a run, plus half a
    frame of rounding at its start. Clips at speed 1 and other tracks are unchanged."""
    import copy

    import opentimelineio as otio

    out = copy.deepcopy(timeline)
    for track in out.video_tracks():
        items = list(track)
        rebuilt = []
        for item in items:
            warps = [e for e in getattr(item, "effects", [])
                     if isinstance(e, otio.schema.LinearTimeWarp)]
            if not isinstance(item, otio.schema.Clip) or not warps:
                rebuilt.append(item)
                continue
            scalar = float(math.prod(w.time_scalar for w in warps))
            meta = dict(item.metadata.get("tutti", {}))
            source = float(meta.get("piece_source_start_seconds",
                                    meta.get("source_start_seconds",
                                             item.source_range.start_time.to_seconds())))
            length = round(item.source_range.duration.to_seconds() * fps)
            run = max(1, int(FCP_DRIFT_FRAMES / max(abs(scalar - 1.0), 1e-9)))
            for j in range(0, length, run):
                n = min(run, length - j)
                part = otio.schema.Clip(
                    name=item.name, media_reference=copy.deepcopy(item.media_reference),
                    source_range=otio.opentime.TimeRange(
                        otio.opentime.RationalTime(round((source + j / fps * scalar) * fps),
                                                   fps),
                        otio.opentime.RationalTime(n, fps)))
                part.metadata["tutti"] = {k: v for k, v in meta.items() if k != "time_map"}
                part.metadata["tutti"]["speed_as_cuts"] = round(scalar, 9)
                rebuilt.append(part)
        track.clear()
        track.extend(rebuilt)
    return out


#: a time map's knots closer than this (frames of source time) to a straight line
#: between their neighbours do not start a piece of their own
MAP_PIECE_TOLERANCE = 0.1


def map_pieces(clip, first_frame: int, end_frame: int, fps: float,
               tolerance: float = MAP_PIECE_TOLERANCE) -> list[tuple[int, int, float, float]]:
    """A time-mapped clip (``SpecClip`` with ``time_map``) on timeline frames
    [``first_frame``, ``end_frame``) as pieces of steady speed, for an editor's timeline:
    [(first timeline frame, frames, source start seconds, time scalar)], the scalar the
    clip seconds per timeline second of the piece (an OTIO LinearTimeWarp). A piece runs
    between two of the map's knots rounded to frames, knots that lie within
    ``tolerance`` frames of the line through their neighbours merged away (greedy, left
    to right); each piece's source start and scalar are the map's at its two ends, so a
    frame at a piece's start is the render's exactly and inside one it is off by at most
    ``tolerance`` frames (before the editor rounds the source start to a frame)."""
    if end_frame <= first_frame:
        return []
    knots = clip.time_map
    inside = [k for k in knots if first_frame / fps < k[0] < end_frame / fps]
    bounds = [(first_frame / fps, clip.clip_time(first_frame / fps)), *inside,
              (end_frame / fps, clip.clip_time(end_frame / fps))]
    kept = [0]
    at = 0
    while at < len(bounds) - 1:
        reach = at + 1
        for j in range(at + 2, len(bounds)):
            (g0, c0), (g1, c1) = bounds[at], bounds[j]
            slope = (c1 - c0) / (g1 - g0)
            if any(abs(c0 + (g - g0) * slope - c) * fps > tolerance
                   for g, c in bounds[at + 1:j]):
                break
            reach = j
        kept.append(reach)
        at = reach
    cut = sorted({round(bounds[k][0] * fps) for k in kept} | {first_frame, end_frame})
    pieces = []
    for a, b in zip(cut, cut[1:], strict=False):
        source = clip.clip_time(a / fps)
        scalar = (clip.clip_time(b / fps) - source) / ((b - a) / fps)
        pieces.append((a, b - a, max(0.0, source), round(scalar, 9)))
    return pieces


def _main_only(spec: RenderSpec) -> RenderSpec:
    """The spec without intro and credits: the mash-up alone, from the guide's t=0."""
    return dataclasses.replace(spec, intro=None, credits=None)


def render_mix_and_stems(spec: RenderSpec, plan: RenderPlan, folder: str, *,
                         timeout: float = 3600,
                         progress: Callable[[float], None] | None = None
                         ) -> tuple[str | None, dict[str, str]]:
    """Write ``folder/audio/mix.wav`` (the clips' mix, mastered as a render masters it)
    and one stem per part under ``folder/audio/stems/`` (the part's takes with the same
    gains, pans, clean-up, headroom and room as in the mix, times the mix's mastering
    gain, so they add up to the mix before its limiter). Returns (mix path or None when
    no take is heard, {part: stem path}) relative to ``folder``."""
    deadline = time.monotonic() + timeout
    main = plan.main_duration
    sources = mixed_sources(spec, plan)
    if not sources:
        return None, {}
    os.makedirs(os.path.join(folder, "audio", "stems"), exist_ok=True)
    room = room_of(spec)
    parts: dict[str, list] = {}
    for s in sources:
        parts.setdefault(s.clip.part, []).append(s)
    steps = 1 + len(parts)
    report = progress or (lambda _f: None)
    samples = round(main * AUDIO_RATE)
    fit = f"apad=whole_dur={main:.6f},atrim=end_sample={samples}"
    tmp = os.path.join(folder, ".sum.wav")
    # the cleaned takes of the mix kept for the stems: each take is cleaned once
    kept = tempfile.mkdtemp(prefix=".takes", dir=folder)
    try:
        loudness = _mix_audio(sources, main, tmp, _remaining(deadline),
                              lambda f: report(0.8 * f / steps), room=room, cache_dir=kept)
        mix_rel = MIX_WAV
        run_ffmpeg([*safe_input(tmp, ("wav",)), "-af",
                    f"{_stereo()},{loudness_filter(loudness, spec.audio.loudness_lufs)},"
                    f"{_stereo()},{fit}", *WAV_CODEC, input_url(os.path.join(folder, mix_rel))],
                   timeout=_remaining(deadline))
        gain = 0.0
        if loudness.integrated > SILENCE_LUFS and math.isfinite(loudness.integrated):
            gain = spec.audio.loudness_lufs - loudness.integrated
        stems: dict[str, str] = {}
        for n, (part, members) in enumerate(sorted(parts.items()), start=1):
            _mix_audio(members, main, tmp, _remaining(deadline),
                       lambda f, n=n: report((n + 0.8 * f) / steps), room=room,
                       voices=len(sources), cache_dir=kept)
            rel = f"audio/stems/{n:02d}-{_slug(part, 'no-part')}.wav"
            run_ffmpeg([*safe_input(tmp, ("wav",)), "-af",
                        f"{_stereo()},volume={gain:.3f}dB,{fit}", *WAV_CODEC,
                        input_url(os.path.join(folder, rel))], timeout=_remaining(deadline))
            stems[part] = rel
    finally:
        remove_quietly(tmp)
        shutil.rmtree(kept, ignore_errors=True)
    report(1.0)
    return mix_rel, stems


def credits_csv(spec: RenderSpec, appearances: Mapping[str, float] | None = None) -> str:
    """The credits as CSV text: name, part, location, first_seen_seconds (where the clip
    first shows in the rendered file, when known). ``appearances`` maps a spec clip id to
    seconds."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "part", "location", "first_seen_seconds"])
    for clip in spec.clips:
        seen = (appearances or {}).get(clip.id)
        writer.writerow([_csv_cell(clip.name), _csv_cell(clip.part), _csv_cell(clip.location),
                         "" if seen is None else f"{seen:.2f}"])
    return out.getvalue()


README = """Tutti hand-off
==============

timeline.otio   OpenTimelineIO timeline (open with OTIO tools, or import where supported)
timeline.xml    the same timeline as FCP 7 XML (Premiere Pro, DaVinci Resolve, Final Cut)
media/          the normalized clips ({fps} fps, {width}x{height} at most, AAC 48 kHz)
audio/mix.wav   the performers' mix, mastered to {lufs:g} LUFS
audio/stems/    one stem per part, at the mix's gain (they add up to the mix)
audio/guide.wav the guide track (when the campaign has one)
credits.csv     performers: name, part, location, first time seen in the render

Time 0 on the timeline is the guide's time 0. Each performer has a video track of their
own, cut and placed where Tutti synced them (rounded to the frame; the exact seconds are
in the OTIO clip metadata under "tutti"; a take pulled into time has its time map there
once, in its first piece).

A take played faster or slower than recorded (a drift corrected, or a time map) is a
speed change per piece in timeline.otio (LinearTimeWarp). FCP 7 XML as written here has
no speed: in timeline.xml such a piece is cut into short runs at normal speed, each
starting at the frame the render shows, so the picture stays within a frame of the mix.
"""


def export_handoff(spec: RenderSpec, out_zip: str, *, include_media: bool = True,
                   appearances: Mapping[str, float] | None = None, title: str = "Tutti",
                   timeout: float = 3600,
                   progress: Callable[[float], None] | None = None) -> str:
    """Write the hand-off ZIP of ``spec`` to ``out_zip`` atomically and return its path.
    See the module's docstring for the contents. Raises SpecError for a clip that cannot
    be read, FFmpegError when a mix fails, HandoffError when the ZIP cannot be written."""
    import opentimelineio as otio

    deadline = time.monotonic() + timeout
    report = progress or (lambda _f: None)
    main_spec = _main_only(spec)
    plan = plan_render(main_spec, segments=1, timeout=_remaining(deadline))
    work = tempfile.mkdtemp(prefix=".tutti-handoff-",
                            dir=os.path.dirname(os.path.abspath(out_zip)))
    tmp_zip = temp_path_for(out_zip)
    try:
        mix, stems = render_mix_and_stems(main_spec, plan, work, timeout=_remaining(deadline),
                                          progress=lambda f: report(0.8 * f))
        guide = None
        if spec.audio.guide_path:
            guide = GUIDE_WAV
            os.makedirs(os.path.join(work, "audio"), exist_ok=True)
            main = plan.main_duration
            run_ffmpeg([*safe_input(spec.audio.guide_path, MEDIA_DEMUXERS), "-map", "0:a:0",
                        "-vn", "-af", f"{_stereo()},apad=whole_dur={main:.6f},"
                        f"atrim=end_sample={round(main * AUDIO_RATE)}", *WAV_CODEC,
                        input_url(os.path.join(work, guide))], timeout=_remaining(deadline))
        media = {c.index: f"media/{c.index + 1:03d}.mp4" for c in plan.clips}
        timeline = build_timeline(main_spec, plan, media=media, stems=stems, mix=mix,
                                  guide=guide, name=title)
        otio.adapters.write_to_file(timeline, os.path.join(work, TIMELINE_OTIO))
        otio.adapters.write_to_file(speedless_timeline(timeline, plan.fps),
                                    os.path.join(work, TIMELINE_FCP), adapter_name="fcp_xml")
        report(0.85)
        with zipfile.ZipFile(tmp_zip, "w", allowZip64=True) as z:
            for name in (TIMELINE_OTIO, TIMELINE_FCP):
                z.write(os.path.join(work, name), name, compress_type=zipfile.ZIP_DEFLATED)
            z.writestr("README.txt", README.format(fps=plan.fps, width=plan.width,
                                                   height=plan.height,
                                                   lufs=spec.audio.loudness_lufs),
                       compress_type=zipfile.ZIP_DEFLATED)
            z.writestr(CREDITS_CSV, credits_csv(spec, appearances),
                       compress_type=zipfile.ZIP_DEFLATED)
            for rel in [p for p in (mix, guide) if p] + list(stems.values()):
                z.write(os.path.join(work, rel), rel, compress_type=zipfile.ZIP_STORED)
            if include_media:
                for index, rel in media.items():
                    z.write(spec.clips[index].path, rel, compress_type=zipfile.ZIP_STORED)
                    _remaining(deadline)
        replace_atomically(tmp_zip, out_zip)
    except OSError as exc:
        remove_quietly(tmp_zip)
        raise HandoffError(f"the hand-off could not be written: {exc}") from exc
    except BaseException:
        remove_quietly(tmp_zip)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(1.0)
    log.info("hand-off %s: %d clips, %d stems", out_zip, len(plan.clips), len(stems))
    return out_zip
