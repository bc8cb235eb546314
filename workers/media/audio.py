"""Decode a media file's sound to a mono float32 array, the only input the sync engine needs.

ffmpeg does the decoding (any container, any codec, any rate) and writes raw little-endian
float samples to a pipe, so no temp file is written and no audio library is needed.
"""

from __future__ import annotations

import logging
import re

import numpy as np

from .ffmpeg import FFmpegError, run_ffmpeg

log = logging.getLogger(__name__)

# Markers in ffmpeg's stderr that mean "this file has no sound track" rather than "ffmpeg broke".
_NO_AUDIO_MARKERS = (
    "matches no streams",
    "does not contain any stream",
    "Output file does not contain any stream",
    "Output file #0 does not contain any stream",
)


class NoAudio(Exception):
    """The file has no decodable sound track. ``reason`` is text for a person."""

    def __init__(self, reason: str = "no audio to sync: the clip has no sound track") -> None:
        super().__init__(reason)
        self.reason = reason


def decode_audio_argv(path: str, *, sample_rate: int = 16000,
                      max_seconds: float | None = None) -> list[str]:
    """ffmpeg arguments that write the first audio stream of ``path`` as f32le mono to stdout."""
    args: list[str] = ["-v", "error", "-i", str(path), "-map", "0:a:0", "-vn", "-sn", "-dn"]
    if max_seconds is not None:
        args += ["-t", f"{max(0.0, float(max_seconds)):.3f}"]
    args += ["-ac", "1", "-ar", str(int(sample_rate)), "-f", "f32le", "-acodec", "pcm_f32le",
             "pipe:1"]
    return args


def decode_audio(path: str, *, sample_rate: int = 16000, max_seconds: float | None = None,
                 timeout: float = 300) -> np.ndarray:
    """The first sound track of ``path`` as float32 mono in [-1, 1] at ``sample_rate``.

    ``max_seconds`` stops decoding early (a guard against hours-long uploads). Raises
    :class:`NoAudio` when the file has no audio stream (or it decodes to nothing), and
    :class:`~workers.media.ffmpeg.FFmpegError` for other failures (unreadable file, timeout).
    """
    try:
        raw = run_ffmpeg(decode_audio_argv(path, sample_rate=sample_rate,
                                           max_seconds=max_seconds),
                         timeout=timeout, stdout=None)
    except FFmpegError as exc:
        tail = exc.stderr_tail or ""
        if not exc.timed_out and any(m in tail for m in _NO_AUDIO_MARKERS):
            raise NoAudio() from exc
        raise
    usable = len(raw) - len(raw) % 4
    samples = np.frombuffer(raw[:usable], dtype="<f4").astype(np.float32, copy=True)
    if samples.size == 0:
        raise NoAudio("no audio to sync: the sound track is empty")
    np.nan_to_num(samples, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    np.clip(samples, -1.0, 1.0, out=samples)
    log.debug("decoded %s: %.2f s at %d Hz", path, samples.size / sample_rate, sample_rate)
    return samples


_FIRST_PTS = re.compile(r"Parsed_ashowinfo.*?\bpts_time:\s*(-?[0-9.]+)")


def audio_start_seconds(path: str, *, timeout: float = 60) -> float:
    """When ``path``'s first audio sample plays on the file's timeline (s; 0.0 when it has no
    sound or this cannot be read): ffmpeg's ``ashowinfo`` on the first decoded frame, with
    the timestamps shifted as every ffmpeg run here shifts them. Normalization pads the sound
    by this much (``aresample=async=1:first_pts=0``), so a time counted from the first audio
    sample (a recording page's) is this much earlier than the normalized file's."""
    from .ffmpeg import ffmpeg_report

    try:
        _status, text = ffmpeg_report(["-hide_banner", "-nostdin", "-i", str(path), "-map",
                                       "0:a:0", "-frames:a", "1", "-af", "ashowinfo", "-f",
                                       "null", "-"], timeout=timeout)
    except FFmpegError:
        return 0.0
    found = _FIRST_PTS.search(text)
    return float(found.group(1)) if found else 0.0
