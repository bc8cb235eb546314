"""RenderSpec -> mash-up file, with ffmpeg.

Two ffmpeg runs:

1. audio (mode "mix" only): every clip with sound, trimmed or delayed by its offset
   and its gain applied, summed with headroom into a float WAV beside the output,
   while loudnorm measures the sum (EBU R128);
2. picture and final sound: one filtergraph puts each clip, trimmed or delayed by
   its offset and scaled into its grid tile, over a canvas of the background colour;
   the sound is the measured mix brought to the target loudness (loudnorm, linear
   when the peaks allow, true peak -1 dBTP, then a limiter), or the guide's sound,
   or silence.

Measuring first and applying a linear gain second is what EBU R128 normalisation
means; a single dynamic pass would also squash the choir's dynamics. Only numbers
built here go into filtergraph strings: paths are separate argv items and clip
names, parts and places never reach ffmpeg.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
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
from .layout import Rect, grid_rects
from .normalize import AUDIO_RATE, Loudness, parse_loudnorm_json, thumbnail_argv
from .probe import (
    MEDIA_DEMUXERS,
    InputReport,
    ProbeRejected,
    media_duration,
    read_input_report,
    safe_input,
)
from .spec import RenderSpec, SpecClip, SpecError, check_files

log = logging.getLogger(__name__)

TRUE_PEAK_DBTP = -1.0
LOUDNESS_RANGE_LU = 11.0
LIMITER_DB = -1.5  # a sample-peak limiter a little under the true-peak target
SILENCE_LUFS = -60.0  # quieter than this, a mix is treated as silence (no gain applied)
AUDIO_BITRATE = "192k"
AUDIO_SHARE = 0.15  # the part of progress the audio pass reports
POSTER_AT = 0.4


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


def render(
    spec: RenderSpec,
    out_path: str,
    *,
    poster_path: str | None = None,
    progress: Callable[[float], None] | None = None,
    timeout: float = 3600,
) -> RenderResult:
    """Render ``spec`` to ``out_path`` (MP4) atomically and optionally a JPEG poster.

    Raises SpecError for a missing or unusable input, FFmpegError when ffmpeg fails or
    the render exceeds ``timeout`` seconds; either way ``out_path`` is left untouched
    and no temp file remains.
    """
    deadline = time.monotonic() + timeout
    check_files(spec)
    sources = [_clip_source(i, clip, timeout) for i, clip in enumerate(spec.clips)]
    total = _total_duration(spec, sources, timeout)
    canvas = spec.canvas
    rects = grid_rects(len(sources), canvas.width, canvas.height, gap=spec.layout.gap)
    log.info("render %s: %d clips, %.3f s, %dx%d@%d, audio %s", out_path, len(sources), total,
             canvas.width, canvas.height, canvas.fps, spec.audio.mode)

    tmp_out = temp_path_for(out_path)
    tmp_mix = temp_path_for(out_path, ".mix.wav")
    tmp_poster = temp_path_for(poster_path) if poster_path else None
    report = _progress_reporter(progress)
    try:
        audio: _AudioPlan
        with_sound = [s for s in sources if s.clip.has_audio and s.has_audio
                      and s.visible(total)]
        if spec.audio.mode == "guide":
            audio = _AudioPlan("guide", spec.audio.guide_path)
        elif with_sound:
            loudness = _mix_audio(with_sound, total, tmp_mix, _remaining(deadline),
                                  lambda f: report(AUDIO_SHARE * f))
            audio = _AudioPlan("mix", tmp_mix, loudness)
        else:
            audio = _AudioPlan("silence")
        video_share = 1.0 - (AUDIO_SHARE if audio.kind == "mix" else 0.0)
        args = _video_argv(spec, sources, rects, total, audio, tmp_out)
        run_ffmpeg(args, timeout=_remaining(deadline), duration=total,
                   progress=lambda f: report(1.0 - video_share + video_share * f))
        duration = media_duration(tmp_out, timeout=min(60.0, _remaining(deadline)))
        if poster_path and tmp_poster:
            run_ffmpeg(thumbnail_argv(tmp_out, tmp_poster, POSTER_AT * duration, canvas.width),
                       timeout=_remaining(deadline))
            replace_atomically(tmp_poster, poster_path)
        replace_atomically(tmp_out, out_path)
    except BaseException:
        remove_quietly(tmp_out)
        if tmp_poster:
            remove_quietly(tmp_poster)
        raise
    finally:
        remove_quietly(tmp_mix)
    report(1.0)
    log.info("render %s: done, %.3f s", out_path, duration)
    return RenderResult(out_path, duration, canvas.width, canvas.height, poster_path)


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


def _clip_source(index: int, clip: SpecClip, timeout: float) -> ClipSource:
    where = f"clips[{index}].path"
    try:
        facts: InputReport = read_input_report(clip.path, timeout=min(timeout, 60.0))
        duration = facts.duration
        if duration is None:
            duration = media_duration(clip.path, timeout=min(timeout, 120.0))
    except (FFmpegError, ProbeRejected) as exc:
        raise SpecError(where, f"clip {clip.id!r} cannot be read: {exc}") from exc
    if facts.video is None:
        raise SpecError(where, f"clip {clip.id!r} has no video stream")
    if clip.has_audio and facts.audio is None:
        log.warning("clip %s: spec says it has sound but the file has none", clip.id)
    return ClipSource(index, clip, duration, facts.audio is not None)


def _guide_duration(path: str, timeout: float) -> float:
    try:
        facts = read_input_report(path, timeout=min(timeout, 60.0))
        if facts.audio is None:
            raise SpecError("audio.guide_path", f"the guide {path!r} has no sound")
        if facts.duration is not None:
            return facts.duration
        return media_duration(path, timeout=min(timeout, 120.0))
    except (FFmpegError, ProbeRejected) as exc:
        raise SpecError("audio.guide_path", f"the guide cannot be read: {exc}") from exc


def _total_duration(spec: RenderSpec, sources: list[ClipSource], timeout: float) -> float:
    guide = None
    if spec.audio.mode == "guide" and spec.audio.guide_path:
        guide = _guide_duration(spec.audio.guide_path, timeout)  # also checks it has sound
    if spec.duration is not None:
        return spec.duration
    if guide is not None:
        return guide
    total = max(s.end for s in sources)
    if total <= 0:
        raise SpecError("clips", "every clip ends before the guide starts: check the offsets")
    return total


# --- audio ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _AudioPlan:
    kind: str  # "mix", "guide" or "silence"
    path: str | None = None
    loudness: Loudness | None = None


def _input_args(source: ClipSource) -> list[str]:
    trim = ["-ss", f"{source.trim:.6f}"] if source.trim > 0 else []
    return [*trim, *safe_input(source.clip.path, MEDIA_DEMUXERS)]


def _stereo(rate: int = AUDIO_RATE) -> str:
    return f"aresample={rate},aformat=sample_fmts=fltp:channel_layouts=stereo"


def mix_filter(sources: list[ClipSource], total: float) -> str:
    """Filtergraph summing input k's sound (k = position in ``sources``) into [mix]."""
    parts = []
    for k, s in enumerate(sources):
        delay = round(s.delay * AUDIO_RATE)
        parts.append(f"[{k}:a:0]{_stereo()},adelay=delays={delay}S:all=1,"
                     f"volume={s.clip.gain_db:.3f}dB[a{k}]")
    inputs = "".join(f"[a{k}]" for k in range(len(sources)))
    # uncorrelated voices add in power: 10*log10(K) dB of headroom keeps the sum near
    # the level of one voice; the float WAV cannot clip and loudnorm sets the level later
    headroom = -10 * math.log10(len(sources))
    parts.append(f"{inputs}amix=inputs={len(sources)}:normalize=0:duration=longest:"
                 f"dropout_transition=0,volume={headroom:.3f}dB,apad=whole_dur={total:.6f},"
                 f"atrim=0:{total:.6f},asplit=2[mix][measure]")
    parts.append("[measure]loudnorm=print_format=json,anullsink")
    return ";".join(parts)


def _mix_audio(sources: list[ClipSource], total: float, dst: str, timeout: float,
               progress: Callable[[float], None]) -> Loudness:
    args: list[str] = ["-v", "info"]
    for s in sources:
        args += _input_args(s)
    args += ["-filter_complex", mix_filter(sources, total), "-map", "[mix]",
             "-c:a", "pcm_f32le", "-f", "wav", input_url(dst)]
    status, text = ffmpeg_report(args, timeout=timeout, duration=total, progress=progress)
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


# --- picture ------------------------------------------------------------------------------------

def _video_argv(spec: RenderSpec, sources: list[ClipSource], rects: list[Rect], total: float,
                audio: _AudioPlan, dst: str) -> list[str]:
    canvas = spec.canvas
    shown = [s for s in sources if s.visible(total)]
    args: list[str] = []
    if len(shown) > 8:
        threads = ["-threads", "1"]  # many decoders: one thread each saves memory, not time
    else:
        threads = []
    for s in shown:
        args += [*threads, *_input_args(s)]
    audio_input = len(shown)
    if audio.kind in ("mix", "guide"):
        assert audio.path is not None
        args += safe_input(audio.path, MEDIA_DEMUXERS)
    else:
        args += ["-f", "lavfi", "-t", f"{total:.6f}",
                 "-i", f"anullsrc=channel_layout=stereo:sample_rate={AUDIO_RATE}"]

    graph = [f"color=c={canvas.background_hex}:s={canvas.width}x{canvas.height}:"
             f"r={canvas.fps}:d={total:.6f},format=yuv420p[bg]"]
    last = "bg"
    for k, s in enumerate(shown):
        r = rects[s.index]
        graph.append(
            f"[{k}:v:0]setpts=PTS+{s.delay:.6f}/TB,fps={canvas.fps},"
            f"scale={r.w}:{r.h}:force_original_aspect_ratio=decrease:force_divisible_by=2,"
            f"pad={r.w}:{r.h}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1[t{k}]"
        )
        graph.append(f"[{last}][t{k}]overlay=x={r.x}:y={r.y}:eof_action=pass:"
                     f"repeatlast=0:format=yuv420[o{k}]")
        last = f"o{k}"
    graph.append(f"[{last}]format=yuv420p[vout]")

    sound = f"[{audio_input}:a:0]{_stereo()}"
    if audio.kind == "mix" and audio.loudness is not None:
        sound += f",{loudness_filter(audio.loudness, spec.audio.loudness_lufs)},{_stereo()}"
    # a finite pad: an endless one cut by -t sometimes hangs ffmpeg 9
    graph.append(f"{sound},apad=whole_dur={total:.6f}[aout]")

    return args + [
        "-filter_complex", ";".join(graph),
        "-map", "[vout]", "-map", "[aout]", "-t", f"{total:.6f}",
        "-c:v", "libx264", "-preset", spec.video.preset, "-crf", str(spec.video.crf),
        "-pix_fmt", "yuv420p", "-g", str(2 * canvas.fps), "-r", str(canvas.fps),
        "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", str(AUDIO_RATE), "-ac", "2",
        "-map_metadata", "-1", "-movflags", "+faststart", "-f", "mp4", input_url(dst),
    ]
