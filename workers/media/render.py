"""RenderSpec -> mash-up file, with ffmpeg, in segments that any worker can render.

The steps, each a plain function of paths and values (a Celery group can run the
segments on any machines; :func:`render` runs them all here):

1. :func:`workers.media.plan.plan_render` probes the clips and cuts the timeline into
   frame-exact segments, listing per segment only the tiles it shows;
2. :func:`render_audio`, once for the whole mash-up: every clip with sound, trimmed or
   delayed by its offset and its gain applied, summed with headroom into a float WAV
   while loudnorm measures the sum (EBU R128), then brought to the target loudness
   (loudnorm, linear when the peaks allow, true peak -1 dBTP, then a limiter); or the
   guide's sound, or silence; padded or cut to exactly the picture's length;
3. :func:`render_segment`, per segment: each visible clip, seeked near the segment's
   start, put on the mash-up's frame grid, scaled into its tile and overlaid on the
   background; a video-only H.264 file of exactly the segment's frames, starting on a
   keyframe. A segment with many tiles is drawn strip by strip (a few grid rows each,
   into intermediate files) and the strips stacked, so no ffmpeg opens more than
   :data:`plan.MAX_INPUTS` files and memory does not grow with the number of clips;
4. :func:`join_segments`: the concat demuxer joins the segments without re-encoding,
   the sound is muxed in, the result published atomically, with a poster.

Every segment maps the same clip frame to the same timeline frame as a single render
would (the mapping depends on absolute times only), so joins have no gap and no repeated
frame. Measuring first and applying a linear gain second is what EBU R128 normalisation
means; a single dynamic pass would also squash the choir's dynamics. Only numbers built
here go into filtergraph strings: paths are separate argv items and clip names, parts
and places never reach ffmpeg.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .ffmpeg import (
    FFmpegError,
    ffmpeg_report,
    input_url,
    remove_quietly,
    replace_atomically,
    run_ffmpeg,
    temp_path_for,
)
from .normalize import AUDIO_RATE, Loudness, parse_loudnorm_json, thumbnail_argv
from .plan import PlanClip, RenderPlan, Segment, Tile, plan_render
from .probe import MEDIA_DEMUXERS, media_duration, safe_input
from .spec import RenderSpec, SpecClip

log = logging.getLogger(__name__)

TRUE_PEAK_DBTP = -1.0
LOUDNESS_RANGE_LU = 11.0
LIMITER_DB = -1.5  # a sample-peak limiter a little under the true-peak target
SILENCE_LUFS = -60.0  # quieter than this, a mix is treated as silence (no gain applied)
AUDIO_BITRATE = "192k"
AUDIO_SHARE = 0.15  # the part of progress the audio pass reports
JOIN_SHARE = 0.03
POSTER_AT = 0.4
#: Seek this long before a segment's first frame, so the frame held at its start is decoded.
SEEK_MARGIN = 0.5
#: Strips are kept near-lossless: they are encoded once more in the final picture.
STRIP_PRESET, STRIP_CRF = "ultrafast", 12
#: A tile at most this share of its clip's width skips the deblocking filter while decoding
#: (about 15 % of the decode time): its blocking is scaled away with the picture.
SKIP_DEBLOCK_BELOW = 0.5
#: Sounds summed by one ffmpeg process; more are summed in groups first.
MAX_AUDIO_INPUTS = 48


@dataclass(frozen=True)
class RenderResult:
    path: str
    duration: float
    width: int
    height: int
    poster_path: str | None


@dataclass(frozen=True)
class ClipSource:
    """A spec clip with what its file holds, placed on the guide's timeline."""

    index: int
    clip: SpecClip
    duration: float
    has_audio: bool

    @property
    def trim(self) -> float:
        """Seconds cut from the clip's start."""
        return max(0.0, self.clip.offset)

    @property
    def delay(self) -> float:
        """Seconds of background/silence before the clip appears."""
        return max(0.0, -self.clip.offset)

    @property
    def end(self) -> float:
        """Where the clip ends on the guide's timeline."""
        return self.duration - self.clip.offset

    def visible(self, total: float) -> bool:
        return self.trim < self.duration and self.delay < total


# --- the whole render, here -----------------------------------------------------------------

def render(
    spec: RenderSpec,
    out_path: str,
    *,
    poster_path: str | None = None,
    progress: Callable[[float], None] | None = None,
    timeout: float = 3600,
    segments: int = 1,
    jobs: int = 1,
) -> RenderResult:
    """Render ``spec`` to ``out_path`` (MP4) atomically and optionally a JPEG poster.

    ``segments`` > 1 cuts the picture into that many segments, rendered by ``jobs``
    threads (each drives its own ffmpeg) and joined without re-encoding. Raises SpecError
    for a missing or unusable input, FFmpegError when ffmpeg fails or the render exceeds
    ``timeout`` seconds; either way ``out_path`` is left untouched and no temp file remains.
    """
    deadline = time.monotonic() + timeout
    plan = plan_render(spec, segments=segments, timeout=timeout)
    canvas = spec.canvas
    log.info("render %s: %d clips, %.3f s, %dx%d@%d, audio %s, %d segments", out_path,
             len(plan.clips), plan.duration, canvas.width, canvas.height, canvas.fps,
             plan.audio, len(plan.segments))
    report = _progress_reporter(progress)
    audio_share = AUDIO_SHARE if plan.audio == "mix" else 0.02
    video_share = 1.0 - audio_share - JOIN_SHARE
    tmp_audio = temp_path_for(out_path, ".audio.m4a")
    tmp_segments = [temp_path_for(out_path, f".seg{k}.mp4") for k in range(len(plan.segments))]
    try:
        render_audio(spec, plan, tmp_audio, timeout=_remaining(deadline),
                     progress=lambda f: report(audio_share * f))
        done = [0.0] * len(plan.segments)
        lock = threading.Lock()
        failed = threading.Event()

        def segment_progress(k: int) -> Callable[[float], None]:
            def on(fraction: float) -> None:
                if failed.is_set():
                    raise FFmpegError("another segment failed")
                with lock:
                    done[k] = fraction * plan.segments[k].frames
                    report(audio_share + video_share * sum(done) / plan.frames)
            return on

        def one(k: int) -> None:
            try:
                render_segment(spec, plan, k, tmp_segments[k], progress=segment_progress(k),
                               timeout=_remaining(deadline))
            except BaseException:
                failed.set()
                raise

        if jobs > 1 and len(plan.segments) > 1:
            with ThreadPoolExecutor(min(jobs, len(plan.segments))) as pool:
                for future in [pool.submit(one, k) for k in range(len(plan.segments))]:
                    future.result()
        else:
            for k in range(len(plan.segments)):
                one(k)
        result = join_segments(plan, tmp_segments, tmp_audio, out_path,
                               poster_path=poster_path, timeout=_remaining(deadline))
    finally:
        for path in [tmp_audio, *tmp_segments]:
            remove_quietly(path)
    report(1.0)
    log.info("render %s: done, %.3f s", out_path, result.duration)
    return result


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FFmpegError("render timed out", timed_out=True)
    return left


def _progress_reporter(progress: Callable[[float], None] | None) -> Callable[[float], None]:
    last = -1.0

    def report(fraction: float) -> None:
        nonlocal last
        fraction = min(1.0, max(0.0, fraction))
        if progress is not None and fraction > last:
            last = fraction
            progress(fraction)

    return report


def _sources(spec: RenderSpec, plan: RenderPlan) -> list[ClipSource]:
    return [ClipSource(c.index, spec.clips[c.index], c.duration, c.has_audio)
            for c in plan.clips]


# --- audio ------------------------------------------------------------------------------------

def _input_args(source: ClipSource) -> list[str]:
    trim = ["-ss", f"{source.trim:.6f}"] if source.trim > 0 else []
    return [*trim, *safe_input(source.clip.path, MEDIA_DEMUXERS)]


def _stereo(rate: int = AUDIO_RATE) -> str:
    return f"aresample={rate},aformat=sample_fmts=fltp:channel_layouts=stereo"


def mix_filter(sources: list[ClipSource], total: float, *, voices: int | None = None,
               measure: bool = True) -> str:
    """Filtergraph summing input k's sound (k = position in ``sources``) into [mix] (and
    measuring it, with ``measure``). ``voices``: how many voices the sum stands for."""
    parts = []
    for k, s in enumerate(sources):
        delay = round(s.delay * AUDIO_RATE)
        parts.append(f"[{k}:a:0]{_stereo()},adelay=delays={delay}S:all=1,"
                     f"volume={s.clip.gain_db:.3f}dB[a{k}]")
    inputs = "".join(f"[a{k}]" for k in range(len(sources)))
    # uncorrelated voices add in power: 10*log10(K) dB of headroom keeps the sum near
    # the level of one voice; the float WAV cannot clip and loudnorm sets the level later
    headroom = -10 * math.log10(voices or len(sources)) if measure else 0.0
    tail = ",asplit=2[mix][measure]" if measure else "[mix]"
    parts.append(f"{inputs}amix=inputs={len(sources)}:normalize=0:duration=longest:"
                 f"dropout_transition=0,volume={headroom:.3f}dB,apad=whole_dur={total:.6f},"
                 f"atrim=0:{total:.6f}{tail}")
    if measure:
        parts.append("[measure]loudnorm=print_format=json,anullsink")
    return ";".join(parts)


def _mix_audio(sources: list[ClipSource], total: float, dst: str, timeout: float,
               progress: Callable[[float], None]) -> Loudness:
    """Sum the sources into a float WAV and measure it. More than MAX_AUDIO_INPUTS sources
    are summed in groups first (float WAVs beside ``dst``), so no ffmpeg opens them all."""
    deadline = time.monotonic() + timeout
    groups = [sources[i:i + MAX_AUDIO_INPUTS] for i in range(0, len(sources), MAX_AUDIO_INPUTS)]
    partial = [temp_path_for(dst, f".part{j}.wav") for j in range(len(groups))]
    steps = len(groups) + 1 if len(groups) > 1 else 1
    try:
        if len(groups) > 1:
            for j, group in enumerate(groups):
                args = ["-v", "error"]
                for s in group:
                    args += _input_args(s)
                args += ["-filter_complex", mix_filter(group, total, measure=False),
                         "-map", "[mix]", "-c:a", "pcm_f32le", "-f", "wav", input_url(partial[j])]
                run_ffmpeg(args, timeout=_remaining(deadline), duration=total,
                           progress=lambda f, j=j: progress((j + f) / steps))
            sums = [ClipSource(-1, SpecClip(id=f"part{j}", path=p), total, True)
                    for j, p in enumerate(partial)]
            graph = mix_filter(sums, total, voices=len(sources))
            inputs = sums
        else:
            graph = mix_filter(sources, total)
            inputs = sources
        args = ["-v", "info"]
        for s in inputs:
            args += _input_args(s)
        args += ["-filter_complex", graph, "-map", "[mix]",
                 "-c:a", "pcm_f32le", "-f", "wav", input_url(dst)]
        status, text = ffmpeg_report(args, timeout=_remaining(deadline), duration=total,
                                     progress=lambda f: progress((steps - 1 + f) / steps))
    finally:
        for path in partial:
            remove_quietly(path)
    if status != 0:
        raise FFmpegError(f"audio mix failed (ffmpeg status {status})", args, status,
                          "\n".join(text.splitlines()[-20:]))
    loudness = parse_loudnorm_json(status, text)
    log.info("mix of %d clips: %.1f LUFS, %.1f dBTP", len(sources), loudness.integrated,
             loudness.true_peak)
    return loudness


def loudness_filter(loudness: Loudness, target_lufs: float) -> str:
    """Bring a measured mix to ``target_lufs`` (linear gain when the true peak allows)."""
    limiter = f"alimiter=limit={10 ** (LIMITER_DB / 20):.4f}:level=false"
    if not loudness.integrated > SILENCE_LUFS:
        return limiter  # silence or near silence: do not amplify the noise floor
    return (
        f"loudnorm=I={target_lufs:.2f}:TP={TRUE_PEAK_DBTP:.2f}:LRA={LOUDNESS_RANGE_LU:.1f}:"
        f"measured_I={loudness.integrated:.2f}:measured_TP={loudness.true_peak:.2f}:"
        f"measured_LRA={loudness.lra:.2f}:measured_thresh={loudness.threshold:.2f}:"
        f"linear=true,{limiter}"
    )


def _sound_codec(out_path: str) -> list[str]:
    if out_path.lower().endswith(".wav"):
        return ["-c:a", "pcm_s16le", "-f", "wav"]
    return ["-c:a", "aac", "-b:a", AUDIO_BITRATE, "-f", "mp4"]


def render_audio(spec: RenderSpec, plan: RenderPlan, out_path: str, *, timeout: float = 3600,
                 progress: Callable[[float], None] | None = None) -> None:
    """The whole mash-up's sound, once, to ``out_path`` (.m4a: AAC; .wav: PCM), exactly
    ``plan.duration`` long: the mastered mix, the guide, or silence. Atomic."""
    deadline = time.monotonic() + timeout
    total = plan.duration
    report = _progress_reporter(progress)
    samples = round(total * AUDIO_RATE)
    fit = f"apad=whole_dur={total:.6f},atrim=end_sample={samples}"  # finite pad, then exact
    tmp_mix = temp_path_for(out_path, ".mix.wav")
    tmp_out = temp_path_for(out_path)
    try:
        if plan.audio == "mix":
            sources = [s for s in _sources(spec, plan) if s.has_audio and s.visible(total)]
            loudness = _mix_audio(sources, total, tmp_mix, _remaining(deadline),
                                  lambda f: report(0.9 * f))
            args = [*safe_input(tmp_mix, MEDIA_DEMUXERS), "-af",
                    f"{_stereo()},{loudness_filter(loudness, spec.audio.loudness_lufs)},"
                    f"{_stereo()},{fit}"]
        elif plan.audio == "guide":
            assert spec.audio.guide_path is not None
            args = [*safe_input(spec.audio.guide_path, MEDIA_DEMUXERS), "-af",
                    f"{_stereo()},{fit}"]
        else:
            args = ["-f", "lavfi", "-t", f"{total:.6f}",
                    "-i", f"anullsrc=channel_layout=stereo:sample_rate={AUDIO_RATE}",
                    "-af", fit]
        args += ["-map", "0:a:0", "-vn", "-ar", str(AUDIO_RATE), "-ac", "2",
                 *_sound_codec(out_path), "-map_metadata", "-1", input_url(tmp_out)]
        run_ffmpeg(args, timeout=_remaining(deadline), duration=total,
                   progress=lambda f: report(0.9 + 0.1 * f) if plan.audio == "mix" else report(f))
        replace_atomically(tmp_out, out_path)
    except BaseException:
        remove_quietly(tmp_out)
        raise
    finally:
        remove_quietly(tmp_mix)
    report(1.0)


# --- picture ------------------------------------------------------------------------------------

def render_segment(spec: RenderSpec, plan: RenderPlan, index: int, out_path: str, *,
                   progress: Callable[[float], None] | None = None, timeout: float = 3600,
                   proxies: Mapping[int, str] | None = None) -> None:
    """Segment ``index`` of ``plan`` as a video-only MP4 (H.264, starts on a keyframe,
    exactly ``segment.frames`` frames), written atomically to ``out_path``.

    ``proxies`` maps a clip index to a copy already scaled to its tile
    (:func:`render_proxy`), decoded instead of the clip."""
    deadline = time.monotonic() + timeout
    seg = plan.segments[index]
    report = _progress_reporter(progress)
    tmp_out = temp_path_for(out_path)
    strip_paths = [temp_path_for(out_path, f".strip{j}.mp4") for j in range(len(seg.strips))]
    duration = seg.frames / plan.fps
    weights = [len(s.tiles) * (s.end - s.start) for s in seg.strips]
    whole = sum(weights) * 1.15 or 1  # the final stacking costs about as much as 15 % of it
    try:
        done = 0.0
        for j, strip in enumerate(seg.strips):
            tiles = [seg.tiles[i] for i in strip.tiles]
            args = _picture_argv(spec, plan, tiles, strip.rect.x, strip.rect.y, strip.rect.w,
                                 strip.rect.h, strip.start, strip.end - strip.start, proxies)
            args += _encode_args(STRIP_PRESET, STRIP_CRF, plan.fps, strip_paths[j])
            run_ffmpeg(args, timeout=_remaining(deadline),
                       duration=(strip.end - strip.start) / plan.fps,
                       progress=lambda f, d=done, w=weights[j]: report((d + w * f) / whole))
            done += weights[j]
        if seg.strips:
            args = _stack_argv(spec, plan, seg, strip_paths)
        else:
            args = _picture_argv(spec, plan, list(seg.tiles), 0, 0, plan.width, plan.height,
                                 seg.start, seg.frames, proxies)
        args += _encode_args(spec.video.preset, spec.video.crf, plan.fps, tmp_out)
        run_ffmpeg(args, timeout=_remaining(deadline), duration=duration,
                   progress=lambda f: report((done + (whole - done) * f) / whole))
        replace_atomically(tmp_out, out_path)
    except BaseException:
        remove_quietly(tmp_out)
        raise
    finally:
        for path in strip_paths:
            remove_quietly(path)
    report(1.0)


def _encode_args(preset: str, crf: int, fps: int, dst: str) -> list[str]:
    return ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-g", str(2 * fps), "-r", str(fps), "-an", "-map_metadata", "-1",
            "-f", "mp4", input_url(dst)]


def _background(spec: RenderSpec, w: int, h: int, fps: int, frames: int) -> str:
    return (f"color=c={spec.canvas.background_hex}:s={w}x{h}:r={fps}:"
            f"d={(frames + 1) / fps:.6f},trim=end_frame={frames},format=yuv420p[bg]")


def _picture_argv(spec: RenderSpec, plan: RenderPlan, tiles: Sequence[Tile], ox: int, oy: int,
                  w: int, h: int, origin: int, frames: int,
                  proxies: Mapping[int, str] | None) -> list[str]:
    """Inputs and filtergraph drawing ``tiles`` on a ``w``×``h`` background whose top-left
    is the canvas point (ox, oy), for ``frames`` frames from timeline frame ``origin``;
    the picture is labelled [vout]."""
    fps = plan.fps
    args: list[str] = []
    graph = [_background(spec, w, h, fps, frames)]
    last = "bg"
    threads = ["-threads", "1"] if len(tiles) > 2 else []  # many decoders: one thread each
    for k, tile in enumerate(tiles):
        clip: PlanClip = plan.clips[tile.clip]
        path = spec.clips[tile.clip].path
        src_w = clip.width
        if proxies and tile.clip in proxies:
            path, src_w = proxies[tile.clip], tile.rect.w
        # clip time at the tile's first frame; seek a little before it, decode from there
        at = tile.start / fps + clip.offset
        seek = max(0.0, at - SEEK_MARGIN)
        decode = [*threads]
        if src_w and tile.rect.w <= SKIP_DEBLOCK_BELOW * src_w:
            decode += ["-skip_loop_filter", "all"]
        if seek > 0:
            decode += ["-ss", f"{seek:.6f}"]
        args += [*decode, *safe_input(path, MEDIA_DEMUXERS)]
        r = tile.rect
        # after the seek a frame's time is (clip time - seek); on this picture's clock it is
        # (timeline time - origin / fps), so the same clip frame lands on the same timeline
        # frame whatever the segment
        shift = seek - clip.offset - origin / fps
        flags = ":flags=bilinear" if src_w and r.w * 2 <= src_w else ""
        graph.append(
            f"[{k}:v:0]setpts=PTS+{shift:.6f}/TB,fps={fps},"
            f"trim=start_pts={tile.start - origin}:end_pts={tile.end - origin},"
            f"scale={r.w}:{r.h}:force_original_aspect_ratio=decrease:force_divisible_by=2"
            f"{flags},pad={r.w}:{r.h}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1[t{k}]"
        )
        graph.append(f"[{last}][t{k}]overlay=x={r.x - ox}:y={r.y - oy}:eof_action=pass:"
                     f"repeatlast=0:format=yuv420[o{k}]")
        last = f"o{k}"
    graph.append(f"[{last}]format=yuv420p,setsar=1[vout]")
    return args + ["-filter_complex", ";".join(graph), "-map", "[vout]",
                   "-frames:v", str(frames)]


def _stack_argv(spec: RenderSpec, plan: RenderPlan, seg: Segment,
                strip_paths: list[str]) -> list[str]:
    fps = plan.fps
    args: list[str] = []
    graph = [_background(spec, plan.width, plan.height, fps, seg.frames)]
    last = "bg"
    for k, (strip, path) in enumerate(zip(seg.strips, strip_paths, strict=True)):
        args += ["-threads", "1", *safe_input(path, MEDIA_DEMUXERS)]
        r = strip.rect
        graph.append(f"[{k}:v:0]setpts=PTS-STARTPTS+{strip.start - seg.start}/({fps}*TB)[s{k}]")
        graph.append(f"[{last}][s{k}]overlay=x={r.x}:y={r.y}:eof_action=pass:repeatlast=0:"
                     f"format=yuv420[o{k}]")
        last = f"o{k}"
    graph.append(f"[{last}]format=yuv420p,setsar=1[vout]")
    return args + ["-filter_complex", ";".join(graph), "-map", "[vout]",
                   "-frames:v", str(seg.frames)]


def render_proxy(clip_path: str, out_path: str, width: int, height: int, fps: int, *,
                 timeout: float = 1800) -> None:
    """A picture-only copy of a clip fitted into ``width``×``height`` (a tile's size) with
    its frame times kept, for :func:`render_segment`'s ``proxies``. Cache it per clip and
    size: decoding a tile-sized copy costs a fraction of decoding the clip. Atomic."""
    tmp = temp_path_for(out_path)
    try:
        run_ffmpeg([
            "-threads", "1", *safe_input(clip_path, MEDIA_DEMUXERS), "-map", "0:v:0", "-an",
            "-vf", f"scale={width}:{height}:force_original_aspect_ratio=decrease:"
                   f"force_divisible_by=2,pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:"
                   f"color=black,setsar=1,format=yuv420p",
            "-fps_mode", "passthrough", "-c:v", "libx264", "-preset", STRIP_PRESET,
            "-crf", str(STRIP_CRF), "-g", str(fps), "-map_metadata", "-1",
            "-f", "mp4", input_url(tmp)], timeout=timeout)
        replace_atomically(tmp, out_path)
    except BaseException:
        remove_quietly(tmp)
        raise


# --- join ---------------------------------------------------------------------------------------

def _concat_list(plan: RenderPlan, segment_paths: Sequence[str]) -> str:
    lines = ["ffconcat version 1.0"]
    for seg, path in zip(plan.segments, segment_paths, strict=True):
        url = input_url(path).replace("'", "'\\''")
        lines += [f"file '{url}'", f"duration {seg.frames / plan.fps:.6f}"]
    return "\n".join(lines) + "\n"


def join_segments(plan: RenderPlan, segment_paths: Sequence[str], audio_path: str,
                  out_path: str, *, poster_path: str | None = None,
                  timeout: float = 600) -> RenderResult:
    """Join the segments (in plan order) without re-encoding, mux the sound, publish
    ``out_path`` (MP4, +faststart) and the optional JPEG poster atomically."""
    if len(segment_paths) != len(plan.segments):
        raise ValueError(f"{len(plan.segments)} segments planned, {len(segment_paths)} given")
    deadline = time.monotonic() + timeout
    tmp_list = temp_path_for(out_path, ".concat.txt")
    tmp_out = temp_path_for(out_path)
    tmp_poster = temp_path_for(poster_path) if poster_path else None
    audio_codec = ["-c:a", "copy"]
    if audio_path.lower().endswith(".wav"):
        audio_codec = ["-c:a", "aac", "-b:a", AUDIO_BITRATE]
    try:
        with open(tmp_list, "w", encoding="utf-8") as f:
            f.write(_concat_list(plan, segment_paths))
        run_ffmpeg([
            "-f", "concat", "-safe", "0", "-protocol_whitelist", "file",
            "-format_whitelist", ",".join(("concat", *MEDIA_DEMUXERS)), "-i", input_url(tmp_list),
            *safe_input(audio_path, MEDIA_DEMUXERS),
            "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *audio_codec,
            "-map_metadata", "-1", "-movflags", "+faststart", "-f", "mp4", input_url(tmp_out),
        ], timeout=_remaining(deadline))
        duration = media_duration(tmp_out, timeout=min(60.0, _remaining(deadline)))
        if poster_path and tmp_poster:
            run_ffmpeg(thumbnail_argv(tmp_out, tmp_poster, POSTER_AT * duration, plan.width),
                       timeout=_remaining(deadline))
            replace_atomically(tmp_poster, poster_path)
        replace_atomically(tmp_out, out_path)
    except BaseException:
        remove_quietly(tmp_out)
        if tmp_poster:
            remove_quietly(tmp_poster)
        raise
    finally:
        remove_quietly(tmp_list)
    return RenderResult(out_path, duration, plan.width, plan.height, poster_path)

