"""Normalize a participant's clip to the campaign's tile format; thumbnails; loudness.

Every accepted clip becomes the same kind of file, so alignment and rendering never
meet a surprise: MP4, H.264 yuv420p at a constant frame rate, the picture fitted
inside the tile and padded to its exact size, rotation applied, AAC 48 kHz stereo
(silence when the clip had no sound), no user metadata (phones store GPS there).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
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
from .probe import MEDIA_DEMUXERS, MediaInfo, media_duration, safe_input

log = logging.getLogger(__name__)

AUDIO_RATE = 48000
AUDIO_BITRATE = "160k"


@dataclass(frozen=True)
class TileFormat:
    width: int = 640
    height: int = 360
    fps: int = 30
    sample_rate: int = AUDIO_RATE
    crf: int = 23
    preset: str = "veryfast"

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise ValueError(f"tile size must be positive and even, not {self.width}x{self.height}")
        if not 1 <= self.fps <= 120:
            raise ValueError(f"tile fps must be 1..120, not {self.fps}")


def tile_video_filter(fmt: TileFormat, duration: float) -> str:
    """Constant frame rate from t=0, fitted inside the tile, padded black to its size;
    the last frame is held if the sound runs longer than the picture (``-t`` ends it)."""
    w, h = fmt.width, fmt.height
    return (
        f"fps=fps={fmt.fps}:start_time=0,tpad=stop_mode=clone:stop_duration={duration:.6f},"
        f"scale={w}:{h}:force_original_aspect_ratio=decrease:force_divisible_by=2,"
        f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,format=yuv420p"
    )


def normalize_argv(src: str, dst: str, info: MediaInfo, fmt: TileFormat) -> list[str]:
    """ffmpeg arguments (without the binary) that turn ``src`` into ``dst``."""
    duration = f"{info.duration:.6f}"
    args = [*safe_input(src)]
    if info.has_audio:
        audio_map = "0:a:0"
        # async resampling fills gaps and starts the sound at t=0, as the picture does,
        # and apad + -t makes the sound exactly as long as the clip. Pads are always
        # finite: an endless pad cut by -t or atrim sometimes hangs ffmpeg 9.
        audio_filter = (f"aresample={fmt.sample_rate}:async=1:first_pts=0,"
                        f"aformat=sample_fmts=fltp:channel_layouts=stereo,"
                        f"apad=whole_dur={duration}")
    else:
        args += ["-f", "lavfi", "-t", duration,
                 "-i", f"anullsrc=channel_layout=stereo:sample_rate={fmt.sample_rate}"]
        audio_map = "1:a:0"
        audio_filter = "anull"
    args += [
        "-map", "0:v:0", "-map", audio_map,
        "-map_metadata", "-1", "-map_chapters", "-1", "-sn", "-dn",
        "-t", duration,
        "-vf", tile_video_filter(fmt, info.duration),
        "-c:v", "libx264", "-preset", fmt.preset, "-crf", str(fmt.crf),
        "-pix_fmt", "yuv420p", "-profile:v", "high", "-g", str(2 * fmt.fps),
        "-af", audio_filter,
        "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", str(fmt.sample_rate), "-ac", "2",
        "-movflags", "+faststart", "-f", "mp4", input_url(dst),
    ]
    return args


def normalize_clip(
    src: str,
    dst: str,
    info: MediaInfo,
    fmt: TileFormat,
    *,
    timeout: float = 1800,
    progress: Callable[[float], None] | None = None,
) -> None:
    """Write the normalized clip to ``dst`` atomically (never a half-written ``dst``)."""
    tmp = temp_path_for(dst)
    try:
        run_ffmpeg(normalize_argv(src, tmp, info, fmt), timeout=timeout,
                   duration=info.duration, progress=progress)
        replace_atomically(tmp, dst)
    except BaseException:
        remove_quietly(tmp)
        raise
    log.info("normalized %s -> %s (%dx%d@%d)", src, dst, fmt.width, fmt.height, fmt.fps)


def thumbnail_argv(src: str, dst: str, at: float, width: int) -> list[str]:
    return [
        "-ss", f"{max(0.0, at):.3f}", *safe_input(src),
        "-map", "0:v:0", "-frames:v", "1",
        "-vf", f"scale={width}:-2,format=yuvj420p",
        "-c:v", "mjpeg", "-q:v", "3", "-f", "image2", "-update", "1", input_url(dst),
    ]


def make_thumbnail(src: str, dst: str, *, at: float | None = None, width: int = 320,
                   timeout: float = 60) -> None:
    """A JPEG still of ``src`` at ``at`` seconds (default: min(1 s, a third of the clip))."""
    if width <= 0 or width % 2:
        raise ValueError(f"thumbnail width must be positive and even, not {width}")
    if at is None:
        at = min(1.0, media_duration(src, timeout=timeout) / 3)
    tmp = temp_path_for(dst)
    try:
        try:
            run_ffmpeg(thumbnail_argv(src, tmp, at, width), timeout=timeout)
        except FFmpegError as exc:
            if exc.timed_out:
                raise
        if not _nonempty(tmp):  # a seek past the last frame gives nothing: take the first
            run_ffmpeg(thumbnail_argv(src, tmp, 0.0, width), timeout=timeout)
        if not _nonempty(tmp):
            raise FFmpegError(f"no frame to make a thumbnail from {src}")
        replace_atomically(tmp, dst)
    except BaseException:
        remove_quietly(tmp)
        raise


def _nonempty(path: str) -> bool:
    return os.path.exists(path) and os.path.getsize(path) > 0


@dataclass(frozen=True)
class Loudness:
    """EBU R128 measurement: integrated loudness (LUFS), true peak (dBTP), range (LU)."""

    integrated: float
    true_peak: float
    lra: float
    threshold: float


def measure_loudness(path: str, *, timeout: float = 600) -> Loudness:
    """Measure a file's sound with ffmpeg's loudnorm analysis (EBU R128).

    Silence measures as -inf integrated loudness."""
    args = ["-v", "info", *safe_input(path, MEDIA_DEMUXERS), "-map", "0:a:0", "-vn",
            "-af", "loudnorm=print_format=json", "-f", "null", "-"]
    return parse_loudnorm_json(*ffmpeg_report(args, timeout=timeout))


def parse_loudnorm_json(status: int, text: str) -> Loudness:
    match = re.search(r"\{[^{}]*\"input_i\"[^{}]*\}", text)
    if status != 0 or match is None:
        raise FFmpegError("loudness measurement failed", [], status, text[-2000:])
    data = json.loads(match.group(0))

    def number(key: str) -> float:
        try:
            value = float(data[key])
        except (KeyError, ValueError):
            return -math.inf
        return value if math.isfinite(value) else -math.inf

    return Loudness(number("input_i"), number("input_tp"), max(0.0, number("input_lra")),
                    number("input_thresh"))


def parse_ebur128_summary(status: int, text: str) -> Loudness:
    """The summary that ffmpeg's ``ebur128=peak=true`` filter logs at the end (the same
    EBU R128 measurement as loudnorm's analysis, at a third of its cost: it measures
    only, where loudnorm also normalises, at 192 kHz, into the void)."""
    start = text.rfind("Summary:")
    if status != 0 or start < 0:
        raise FFmpegError("loudness measurement failed", [], status, text[-2000:])
    summary = text[start:]

    def number(label: str, section: str) -> float:
        at = summary.find(section)
        match = re.search(rf"{label}:\s+(-?inf|-?[\d.]+)", summary[at:]) if at >= 0 else None
        if match is None:
            raise FFmpegError(f"loudness measurement has no {section} {label}", [], status,
                              summary[:2000])
        value = float(match.group(1))
        return value if math.isfinite(value) else -math.inf

    return Loudness(number("I", "Integrated loudness"), number("Peak", "True peak"),
                    max(0.0, number("LRA", "Loudness range")),
                    number("Threshold", "Integrated loudness"))
