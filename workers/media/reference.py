"""The reference engine: a RenderSpec through moviepy, written to be read, not to be fast.

It draws exactly what the spec and :func:`workers.media.layout.timeline` say, one
moviepy clip per tile per scene, so the ffmpeg engine (``render.py``) can be checked
against it frame by frame. Small renders only (tests, a few seconds at 320x180): every
frame is composited in Python.

The output file: the intro card (silent), the mash-up (mash-up time t is output time
``intro_end + t``, see :func:`workers.media.spec.program_times`), the scrolling credits
(silent). Each tile shows guide time t from clip time ``offset + t * speed`` (drift),
scaled to fit its rectangle (black bars for another aspect, as the ffmpeg engine pads),
and disappears where the clip has no content. Name labels and section captions are
the PNGs of :mod:`workers.media.titles`.

Sound: the clips' audio (hidden clips included), each with its gain and a headroom of
``-10 log10(K)`` dB for K voices, and/or the guide, per ``audio.mode``. Unlike the ffmpeg
engine it does not normalise loudness (EBU R128), clean takes up, pan them or add a
room: it is a reference for picture and timing, not for level. Muted clips are left
out of the sound, as there.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from contextlib import ExitStack

from moviepy import (
    AudioFileClip,
    ColorClip,
    CompositeAudioClip,
    CompositeVideoClip,
    ImageClip,
    VideoFileClip,
)

from .ffmpeg import remove_quietly, replace_atomically, temp_path_for
from .layout import Rect, activity_map, label_box, timeline
from .spec import RenderSpec, SpecClip, SpecError, check_files, program_times
from .titles import caption_image, credits_image, credits_y, intro_card, label_image

log = logging.getLogger(__name__)


def render_reference(spec: RenderSpec, out_path: str, *, duration: float | None = None) -> str:
    """Render ``spec`` to ``out_path`` (MP4, H.264 + AAC) with moviepy; returns the path.

    ``duration`` (mash-up seconds) overrides ``spec.duration``; without either it is
    the guide's length (guide modes) or the end of the last clip."""
    check_files(spec)
    canvas = spec.canvas
    tmp_out = temp_path_for(out_path)
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="tutti-ref-") as work:
        sources = [stack.enter_context(VideoFileClip(c.path, audio=c.has_audio))
                   for c in spec.clips]
        guide = None
        if spec.audio.mode in ("guide", "guide+mix"):
            guide = stack.enter_context(AudioFileClip(spec.audio.guide_path))
        total = _main_duration(spec, sources, guide, duration)
        times = program_times(spec, total)
        shift = times.main_start
        activity = activity_map(spec, total) if spec.layout.follow_audio else None
        log.info("reference %s: %d clips, %.3f s (%.3f with titles), %dx%d", out_path,
                 len(sources), total, times.total, canvas.width, canvas.height)

        layers = [ColorClip((canvas.width, canvas.height), color=_rgb(canvas.background),
                            duration=times.total)]
        if spec.intro is not None:
            card = intro_card(spec, os.path.join(work, "intro.png"))
            layers.append(ImageClip(card).with_start(0).with_duration(spec.intro.seconds))

        images: dict[tuple, str] = {}  # one PNG per distinct label or caption
        for scene in timeline(spec, total, activity):
            for placement in scene.placements:
                clip, video = spec.clips[placement.clip], sources[placement.clip]
                start, end = _content(clip, video, total)
                start, end = max(start, scene.start), min(end, scene.end)
                if end <= start:
                    continue  # no content in this scene: the background shows
                layers += _tile(clip, video, placement.rect, start, end, shift,
                                (scene.start, scene.end))
                start, end = scene.start, scene.end  # held frames: the label stays
                box = label_box(placement.rect)
                if placement.label and box is not None:
                    key = ("label", clip.name, box.w, box.h)
                    if key not in images:
                        path = os.path.join(work, f"label-{len(images)}.png")
                        label_image(clip.name, box.w, box.h, path)
                        images[key] = path
                    layers.append(ImageClip(images[key]).with_position((box.x, box.y))
                                  .with_start(shift + start).with_duration(end - start))
            for caption in scene.captions:
                key = ("caption", caption.text, caption.rect.w, caption.rect.h)
                if key not in images:
                    path = os.path.join(work, f"caption-{len(images)}.png")
                    images[key] = caption_image(caption.text, caption.rect.w, caption.rect.h,
                                                path)
                layers.append(ImageClip(images[key])
                              .with_position((caption.rect.x, caption.rect.y))
                              .with_start(shift + scene.start)
                              .with_duration(scene.end - scene.start))

        if spec.credits is not None:
            path, height = credits_image(spec, os.path.join(work, "credits.png"))
            seconds = spec.credits.seconds
            layers.append(ImageClip(path)
                          .with_position(lambda t: (0, round(credits_y(t, canvas.height,
                                                                       height, seconds))))
                          .with_start(times.main_end).with_duration(seconds))

        sound = _audio(spec, sources, guide, total, shift)
        video = CompositeVideoClip(layers, size=(canvas.width, canvas.height))
        video = video.with_duration(times.total)
        if sound is not None:
            video = video.with_audio(sound.with_duration(times.total))
        try:
            video.write_videofile(
                tmp_out, fps=canvas.fps, codec="libx264", audio=sound is not None,
                audio_codec="aac", audio_fps=48000, preset=spec.video.preset,
                ffmpeg_params=["-crf", str(spec.video.crf)], pixel_format="yuv420p",
                temp_audiofile_path=work, logger=None)
            replace_atomically(tmp_out, out_path)
        except BaseException:
            remove_quietly(tmp_out)
            raise
        finally:
            video.close()
    return out_path


def _rgb(colour: str) -> tuple[int, int, int]:
    digits = colour[1:]
    if len(digits) == 3:
        digits = "".join(ch * 2 for ch in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def _content(clip: SpecClip, video: VideoFileClip, total: float) -> tuple[float, float]:
    """Where the clip has pictures on the mash-up's timeline, clamped to [0, total]."""
    start = max(0.0, clip.guide_time(0.0))
    end = min(total, clip.guide_time(video.duration))
    return start, end


def _main_duration(spec: RenderSpec, sources: list[VideoFileClip], guide: AudioFileClip | None,
                   duration: float | None) -> float:
    if duration is not None:
        return duration
    if spec.duration is not None:
        return spec.duration
    if guide is not None:
        return guide.duration
    total = max(c.guide_time(v.duration) for c, v in zip(spec.clips, sources, strict=True))
    if total <= 0:
        raise SpecError("clips", "every clip ends before the guide starts: check the offsets")
    return total


def _on_guide(clip: SpecClip, media, start: float, end: float):
    """``media`` (a video or audio clip) from guide time ``start`` to ``end``, its own
    time 0 at ``start``: clip time is :meth:`SpecClip.clip_time` (``offset + t * speed``,
    or through the clip's time map)."""
    if clip.drift_ppm == 0 and not clip.time_map:
        return media.subclipped(clip.clip_time(start), clip.clip_time(end))
    return (media.time_transform(lambda t: clip.clip_time(start + t), apply_to=[])
            .with_duration(end - start))


def _tile(clip: SpecClip, video: VideoFileClip, rect: Rect, start: float, end: float,
          shift: float, scene: tuple[float, float]) -> list:
    """The moviepy layers of one tile: the clip scaled to fit ``rect``, centred on black
    when its aspect differs (as the ffmpeg engine's scale + pad), where it has pictures
    (guide times [start, end)); its first frame held from the scene's start and its last
    frame held to the scene's end (no holes, as the ffmpeg engine draws it)."""
    vw, vh = video.size
    scale = min(rect.w / vw, rect.h / vh)
    w = rect.w if rect.w <= vw * scale + 1e-6 else _even_down(vw * scale)
    h = rect.h if rect.h <= vh * scale + 1e-6 else _even_down(vh * scale)
    at = (rect.x + _even_down((rect.w - w) / 2), rect.y + _even_down((rect.h - h) / 2))
    source = video.without_audio()
    picture = (_on_guide(clip, source, start, end).resized(new_size=(w, h))
               .with_position(at).with_start(shift + start))
    layers = [picture]
    fps = video.fps or 30.0
    if scene[0] < start:  # the clip starts late: its first frame waits in the tile
        first = ImageClip(source.get_frame(clip.clip_time(start)))
        layers.append(first.resized(new_size=(w, h)).with_position(at)
                      .with_start(shift + scene[0]).with_duration(start - scene[0]))
    if end < scene[1]:  # the clip ends early: its last frame stays
        last_at = max(0.0, min(clip.clip_time(end), video.duration) - 1.0 / fps)
        last = ImageClip(source.get_frame(last_at))
        layers.append(last.resized(new_size=(w, h)).with_position(at)
                      .with_start(shift + end).with_duration(scene[1] - end))
    if (w, h) == (rect.w, rect.h):
        return layers
    bars = (ColorClip((rect.w, rect.h), color=(0, 0, 0), duration=scene[1] - scene[0])
            .with_position((rect.x, rect.y)).with_start(shift + scene[0]))
    return [bars, *layers]


def _even_down(value: float) -> int:
    return int(math.floor(value / 2)) * 2


def _audio(spec: RenderSpec, sources: list[VideoFileClip], guide: AudioFileClip | None,
           total: float, shift: float):
    parts = []
    if spec.audio.mode in ("mix", "guide+mix"):
        voices = [(c, v) for c, v in zip(spec.clips, sources, strict=True)
                  if c.has_audio and not c.muted and v.audio is not None]
        headroom = -10 * math.log10(len(voices)) if voices else 0.0
        extra = spec.audio.mix_gain_db if spec.audio.mode == "guide+mix" else 0.0
        for clip, video in voices:
            start, end = _content(clip, video, total)
            end = min(end, clip.guide_time(video.audio.duration))
            if end <= start:
                continue
            gain = 10 ** ((clip.gain_db + headroom + extra) / 20)
            parts.append(_on_guide(clip, video.audio, start, end)
                         .with_volume_scaled(gain).with_start(shift + start))
    if guide is not None:
        gain = 10 ** ((spec.audio.guide_gain_db if spec.audio.mode == "guide+mix" else 0) / 20)
        parts.append(guide.subclipped(0, min(total, guide.duration))
                     .with_volume_scaled(gain).with_start(shift))
    return CompositeAudioClip(parts) if parts else None
