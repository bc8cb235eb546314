"""Musical checks a participant reads while they can still record again.

Each check is a :class:`Check` (``code`` for machines, ``severity`` "warning" or "info",
``message`` in plain words with what to do). None of them rejects a clip: a take that
clips or stops early may still be the best one someone can make. The sound is measured
on the track a player plays, from the original upload (before any re-encoding):
EBU R128 integrated loudness and true peak (ffmpeg's ``ebur128``) and how many samples
sit at full scale (``astats``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from .ffmpeg import FFmpegError, ffmpeg_report
from .normalize import (
    SoundStats,
    meter_channels,
    parse_sound_stats,
    sound_meter,
    source_sound_filter,
)
from .probe import MEDIA_DEMUXERS, MediaInfo, safe_input

log = logging.getLogger(__name__)

#: true peak at or above this is clipping (dBTP), as the issue and EBU R128 practice say
CLIP_TRUE_PEAK = -0.1
#: a sample this close to full scale (dBFS) counts as "at full scale"
FULL_SCALE_DB = -0.01
#: this many full-scale occasions make "many samples at full scale"
CLIP_PEAK_COUNT = 8
#: integrated loudness (LUFS) below which a take is too quiet, and silent
QUIET_LUFS = -38.0
SILENT_LUFS = -60.0
#: the picture and the sound may end this far apart (seconds) before we say so
STREAM_GAP = 0.5
#: the first two channels mixed to mono this much quieter (dB) than the channels are
#: cancel each other (opposite phase); two unrelated channels lose 3 dB, equal ones none
ANTIPHASE_DB = 12.0
#: song / take length ratios: shorter than this much of the guide is "much shorter"
MUCH_SHORTER = 0.8
#: longer than the guide by this many seconds (and by half) is "far longer"
FAR_LONGER_SECONDS = 60.0


@dataclass(frozen=True)
class Check:
    """One finding about a take, for the participant and the organizer."""

    code: str
    severity: str  # "warning" (worth recording again) or "info"
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def measure_sound(path: str, stream: int | str = "a:0", *, timeout: float = 600,
                  channels: int | None = None, decode: str = "") -> SoundStats:
    """Measure one audio stream of ``path`` (an input stream index, or a specifier like
    "a:0") on its own; intake measures in its normalize pass instead. Decodes the sound
    only; with ``channels`` >= 2 (after ``decode``, a filter ending in a comma such as
    :func:`~workers.media.normalize.source_sound_filter`'s) also the level mixed to
    mono. Raises :class:`FFmpegError` on failure."""
    args = ["-v", "info", *safe_input(path, MEDIA_DEMUXERS), "-map", f"0:{stream}", "-vn",
            "-af", decode + sound_meter(channels), "-f", "null", "-"]
    return parse_sound_stats(*ffmpeg_report(args, timeout=timeout))


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


def sound_checks(stats: SoundStats | None, has_audio: bool) -> list[Check]:
    """Clipping, too quiet, silent, left and right cancelling in mono (antiphase)."""
    if not has_audio:
        return [Check("silent", "warning", "This video has no sound. Please record again "
                      "with the microphone on, so your part can be heard in the mash-up.")]
    if stats is None:
        return []
    found: list[Check] = []
    if not math.isfinite(stats.integrated) or stats.integrated < SILENT_LUFS:
        found.append(Check("silent", "warning", "We could not hear anything in this take: "
                           "it is silent. Check that the microphone is on and not covered, "
                           "then record again."))
    elif stats.integrated < QUIET_LUFS:
        found.append(Check("too_quiet", "warning", f"Your sound is very quiet "
                           f"({stats.integrated:.0f} LUFS). Move closer to the phone or "
                           "microphone and record again if you can."))
    mono = stats.mono_rms_level
    if (mono is not None and found == [] and math.isfinite(stats.rms_level)
            and stats.rms_level - mono >= ANTIPHASE_DB):
        found.append(Check("antiphase", "warning", "Your left and right channels cancel each "
                           "other out: where the sound is mixed to one speaker (most phones, "
                           "and often the mash-up), your part almost disappears. One "
                           "channel of your microphone or recording app is reversed "
                           "(out of phase). Record in mono, or fix that setting, and record "
                           "again."))
    many_at_full_scale = stats.peak_level >= FULL_SCALE_DB and stats.peak_count >= CLIP_PEAK_COUNT
    if many_at_full_scale or stats.true_peak >= CLIP_TRUE_PEAK:
        found.append(Check("clipping", "warning", "Your sound is distorted in places: it "
                           "hits the maximum level (clipping). Record again a little further "
                           "from the microphone, or sing or play a little softer at the loud "
                           "moments."))
    return found


def length_checks(info: MediaInfo, guide_duration: float | None) -> list[Check]:
    """A file that states no length ending abruptly (``info.ends_abruptly``: cut off
    after ``info.duration``); the picture or the sound stopping early; much shorter or
    far longer than the guide (seconds)."""
    found: list[Check] = []
    if info.ends_abruptly:
        found.append(Check("ends_abruptly", "warning",
                           f"Your video stops abruptly at {_clock(info.duration)}: its "
                           "last part is broken, so the upload or the recording was "
                           "probably cut off there. If your performance goes on after "
                           f"{_clock(info.duration)}, please upload the video again (on a "
                           "steady connection)."))
    video_end, audio_end = info.video_end, info.audio_end
    if info.has_audio and video_end is not None and audio_end is not None:
        if audio_end - video_end > STREAM_GAP:
            found.append(Check("picture_stops_early", "warning",
                               f"The picture stops at {_clock(video_end)} while the sound "
                               f"goes on to {_clock(audio_end)}; the last picture is held "
                               "still until the end. Please record again or check the file."))
        elif video_end - audio_end > STREAM_GAP:
            found.append(Check("sound_stops_early", "warning",
                               f"The sound stops at {_clock(audio_end)} while the picture "
                               f"goes on to {_clock(video_end)}; the rest is silent. Please "
                               "record again or check the file."))
    if guide_duration and guide_duration > 0:
        if info.duration < MUCH_SHORTER * guide_duration:
            found.append(Check("shorter_than_guide", "warning",
                               f"Your video is {_clock(info.duration)} long but the song lasts "
                               f"{_clock(guide_duration)}: part of your performance may be "
                               "missing. Please record the whole song if you can."))
        elif info.duration > guide_duration + max(FAR_LONGER_SECONDS, 0.5 * guide_duration):
            found.append(Check("longer_than_guide", "info",
                               f"Your video is {_clock(info.duration)} long, much longer "
                               f"than the song ({_clock(guide_duration)}). That is fine; "
                               "trimming it to your performance helps the sync."))
    return found


def orientation_checks(info: MediaInfo, canvas: tuple[int, int]) -> list[Check]:
    """A portrait take in a landscape campaign (still accepted)."""
    cw, ch = canvas
    if cw > ch and info.height > info.width:
        return [Check("portrait", "warning", "You filmed upright (portrait), but the mash-up "
                      "is landscape, so your video will have black bars at its sides. Next "
                      "time, turn your phone sideways.")]
    return []


def sync_checks(method: str | None, confidence: float | None) -> list[Check]:
    """"We could not hear the song in this take" when the sync found no evidence."""
    if method == "none" or (confidence is not None and confidence <= 0.0):
        return [Check("song_not_heard", "warning", "We could not hear the song in this take. "
                      "Check that you performed along with the guide and that the microphone "
                      "picked you up; an organizer will place your video by hand.")]
    return []


def intake_checks(info: MediaInfo, *, canvas: tuple[int, int], guide_duration: float | None,
                  sound: SoundStats | None = None, measure: bool = True,
                  timeout: float = 600) -> list[Check]:
    """All checks intake can make of an accepted upload. ``sound`` as the normalize pass
    measured it; without it (and with ``measure``) the sound is measured here."""
    if sound is None and measure and info.has_audio and info.audio_stream is not None:
        try:
            sound = measure_sound(info.path, info.audio_stream, timeout=timeout,
                                  channels=meter_channels(info),
                                  decode=source_sound_filter(info))
        except FFmpegError as exc:  # the checks help; the clip itself is fine
            log.warning("sound checks of %s failed: %s", info.path, exc)
    return [*sound_checks(sound, info.has_audio), *length_checks(info, guide_duration),
            *orientation_checks(info, canvas)]


def merge(checks: Iterable[dict], new: Iterable[Check], *, replace: Iterable[str] = ()) -> list[
        dict]:
    """Stored checks (dicts) with those of codes in ``replace`` dropped and ``new`` added."""
    dropped = set(replace)
    kept = [c for c in checks if c.get("code") not in dropped]
    return [*kept, *(c.to_dict() for c in new)]
