"""RenderSpec: a render described by data, versioned and validated.

Validation here is pure (no file system, no ffmpeg); :func:`check_files` is the one
separate step that looks at the disk. Defaults live in one place, the dataclass
field defaults below, and :func:`parse_spec` merges the given values over them
section by section. Unknown keys are errors, so a typo never silently falls back
to a default.

Offset convention: ``clip.offset`` is the clip time (seconds) at which the guide's
t=0 occurs. Positive: that much is trimmed from the clip's start. Negative: the clip
starts late, after ``-offset`` seconds of background and silence.

Drift convention: a clip recorded on a clock that runs ``drift_ppm`` parts per million
fast holds guide time t at clip time ``offset + t * (1 + drift_ppm / 1e6)``
(:meth:`SpecClip.clip_time`); an engine plays it at :attr:`SpecClip.speed`. A clip with a
``time_map`` (knots of guide time -> clip time) is played through it instead, sound and
picture alike.

Hidden clips (``"hidden": true``) are heard but not seen: they stay in the audio mix,
the intro's count and the credits, and get no tile in any layout. Muted clips
(``"muted": true``) are seen but not heard: they keep their tile and are left out of
the mix. ``gain_db`` and ``pan`` place a clip's sound in the mix; ``hum_hz`` and
``denoise`` clean it first (:mod:`workers.media.sound`); ``audio.reverb_seconds`` puts
the sum of the clips in one shared room.

The program: an optional intro card (silent), then the mash-up itself (``duration``
seconds, t=0 = the guide's t=0, the times every layout scene uses), then optional
scrolling credits (silent). :func:`program_times` gives the boundaries.

Layout-specific checks (featured clips exist, the canvas has room for every tile at
:data:`MIN_TILE` pixels) run in :func:`parse_spec`, so an impossible render fails before
any encoding.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

SPEC_VERSION = 1
MAX_CANVAS_LONG = 3840
MAX_CANVAS_SHORT = 2160
MIN_CANVAS = 16
MAX_CLIPS = 1000
MAX_TEXT = 200
MAX_SECONDS = 6 * 3600.0
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow")
LAYOUT_TYPES = ("grid", "sections", "spotlight", "montage")
AUDIO_MODES = ("mix", "guide", "guide+mix")
MIN_TILE = 16  # the long side of the smallest tile a layout may produce, in pixels
MAX_DRIFT_PPM = 2000.0  # phones and cameras drift tens of ppm; more is a wrong measurement
MAX_FEATURED = 200
MAX_TITLE_SECONDS = 60.0
MAX_REVERB_SECONDS = 4.0  # a cathedral; more is an echo chamber, not a room
HUM_FREQUENCIES = (0.0, 50.0, 60.0)  # mains frequencies (0: no hum notch)
_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


class SpecError(ValueError):
    """A render spec is invalid. ``field`` names where, e.g. ``clips[3].offset``."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Canvas:
    width: int = 1280
    height: int = 720
    fps: int = 30
    background: str = "#101010"

    @property
    def background_hex(self) -> str:
        """The background as ffmpeg's ``0xRRGGBB`` (validated, safe in a filtergraph)."""
        digits = self.background[1:]
        if len(digits) == 3:
            digits = "".join(ch * 2 for ch in digits)
        return "0x" + digits.lower()


@dataclass(frozen=True)
class Featured:
    """Spotlight: clip ``clip`` (an id) is shown large from ``start`` to ``end`` (mash-up s)."""

    clip: str
    start: float
    end: float


@dataclass(frozen=True)
class LayoutSpec:
    type: str = "grid"
    gap: int = 4
    labels: bool = False  # a name label inside every tile whose clip has a name
    featured: tuple[Featured, ...] = ()  # spotlight only; overlapping ranges are allowed
    shot_seconds: float = 4.0  # montage: length of a shot
    follow_audio: bool = False  # montage: pick the performers who are playing
    max_tiles: int = 4  # montage: performers on screen per shot


@dataclass(frozen=True)
class AudioSpec:
    mode: str = "mix"  # "mix", "guide" or "guide+mix" (the guide under the mix)
    guide_path: str | None = None
    loudness_lufs: float = -16.0
    guide_gain_db: float = 0.0  # guide+mix: the guide's level in the sum
    mix_gain_db: float = 0.0  # guide+mix: the clips' mix level in the sum
    #: one shared room on the sum of the clips (not the guide): its reverberation time
    #: (RT60, seconds; 0: no room) and the level of the reverberated sound against the dry
    reverb_seconds: float = 0.0
    reverb_wet_db: float = -14.0


@dataclass(frozen=True)
class IntroSpec:
    """A title card before the mash-up (silent)."""

    title: str
    subtitle: str = ""
    seconds: float = 4.0


@dataclass(frozen=True)
class CreditsSpec:
    """Credits scrolling after the mash-up (silent): every clip's name, part, location."""

    seconds: float = 10.0
    title: str = "Performers"


@dataclass(frozen=True)
class VideoSpec:
    preset: str = "veryfast"
    crf: int = 23


@dataclass(frozen=True)
class SpecClip:
    id: str
    path: str
    offset: float = 0.0
    part: str = ""
    name: str = ""
    location: str = ""
    gain_db: float = 0.0
    has_audio: bool = True
    drift_ppm: float = 0.0
    hidden: bool = False  # heard (mix, intro count, credits) but given no tile
    muted: bool = False  # seen but not heard: left out of the mix
    pan: float = 0.0  # -1 (left) .. 0 (centre) .. 1 (right), constant power
    #: clean-up of the take's sound before the mix: notches at the mains hum (50 or 60 Hz,
    #: 0: none) and its harmonics, and a reduction of steady noise (afftdn)
    hum_hz: float = 0.0
    denoise: bool = False
    noise_floor_db: float = -50.0  # the take's measured noise floor (dBFS), for denoise
    #: a take that rushes or drags pulled into time (workers.media.timemap): knots
    #: (guide s, clip s), both increasing. The sound and the picture follow it piece by
    #: piece (:meth:`clip_time`); :attr:`speed` is its overall tempo, which the plan
    #: uses for where the clip starts and ends
    time_map: tuple[tuple[float, float], ...] = ()

    @property
    def speed(self) -> float:
        """Clip seconds per guide second (1 + drift, or the time map's overall tempo)."""
        if self.time_map:
            (g0, c0), (g1, c1) = self.time_map[0], self.time_map[-1]
            return (c1 - c0) / (g1 - g0)
        return 1.0 + self.drift_ppm / 1e6

    def clip_time(self, t: float) -> float:
        """The clip time that holds guide time ``t``: through the time map when there is
        one (piecewise linear, its end segments extended), else ``offset + t * speed``."""
        if self.time_map:
            return _through(self.time_map, t, 0, 1)
        return self.offset + t * self.speed

    def guide_time(self, clip_t: float) -> float:
        """The guide time at clip time ``clip_t`` (the inverse of :meth:`clip_time`)."""
        if self.time_map:
            return _through(self.time_map, clip_t, 1, 0)
        return (clip_t - self.offset) / self.speed


def _through(knots: tuple[tuple[float, float], ...], x: float, a: int, b: int) -> float:
    """Piecewise-linear interpolation through ``knots`` from coordinate ``a`` to ``b``
    (both increasing), extended beyond the ends at the end segments' slopes."""
    xs = [k[a] for k in knots]
    i = min(max(bisect.bisect_right(xs, x) - 1, 0), len(knots) - 2)
    (x0, y0), (x1, y1) = (knots[i][a], knots[i][b]), (knots[i + 1][a], knots[i + 1][b])
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


@dataclass(frozen=True)
class RenderSpec:
    version: int
    canvas: Canvas = field(default_factory=Canvas)
    layout: LayoutSpec = field(default_factory=LayoutSpec)
    audio: AudioSpec = field(default_factory=AudioSpec)
    video: VideoSpec = field(default_factory=VideoSpec)
    clips: tuple[SpecClip, ...] = ()
    duration: float | None = None
    intro: IntroSpec | None = None
    credits: CreditsSpec | None = None

    @property
    def visible(self) -> tuple[int, ...]:
        """Indices (into ``clips``) of the clips that get a tile."""
        return tuple(i for i, c in enumerate(self.clips) if not c.hidden)


@dataclass(frozen=True)
class ProgramTimes:
    """Where the intro, the mash-up and the credits sit in the output file (seconds)."""

    intro_end: float  # the mash-up starts here (0 without an intro)
    main_end: float  # the credits start here
    total: float  # the output's length

    @property
    def main_start(self) -> float:
        return self.intro_end


def program_times(spec: RenderSpec, duration: float) -> ProgramTimes:
    """The output's sections for a mash-up of ``duration`` seconds: mash-up time t is
    output time ``intro_end + t``."""
    intro = spec.intro.seconds if spec.intro else 0.0
    credits = spec.credits.seconds if spec.credits else 0.0
    return ProgramTimes(intro, intro + duration, intro + duration + credits)


# --- field readers: each takes the raw value and the field's name for errors ------------------

def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON writers sometimes emit 30.0
        else:
            raise SpecError(name, f"must be a whole number, not {_shown(value)}")
    if not lo <= value <= hi:
        raise SpecError(name, f"must be between {lo} and {hi}, not {value}")
    return value


def _float(value: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(name, f"must be a number, not {_shown(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise SpecError(name, "must be a finite number")
    if not lo <= value <= hi:
        raise SpecError(name, f"must be between {lo:g} and {hi:g}, not {value:g}")
    return value


def _str(value: Any, name: str, *, max_len: int = MAX_TEXT, required: bool = False) -> str:
    if not isinstance(value, str):
        raise SpecError(name, f"must be text, not {_shown(value)}")
    if required and not value.strip():
        raise SpecError(name, "must not be empty")
    if len(value) > max_len:
        raise SpecError(name, f"must be at most {max_len} characters")
    return value


def _label(value: Any, name: str) -> str:
    """Optional display text: null (an empty database column) means none."""
    return "" if value is None else _str(value, name)


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SpecError(name, f"must be one of {', '.join(choices)}, not {_shown(value)}")
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(name, f"must be true or false, not {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _section(data: Any, name: str, cls: type) -> dict[str, Any]:
    """The section's values merged over the dataclass defaults (the one place defaults
    are merged). Unknown keys are errors."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(name, f"must be an object, not {_shown(data)}")
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            prefix = f"{name}." if name else ""
            raise SpecError(f"{prefix}{key}", "is not a known setting")
    merged: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            merged[f.name] = data[f.name]
        elif f.default is not dataclasses.MISSING:
            merged[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            merged[f.name] = None  # a nested section: its own defaults apply
        else:
            prefix = f"{name}." if name else ""
            raise SpecError(f"{prefix}{f.name}", "is required")
    return merged


# --- parsing ------------------------------------------------------------------------------------

def parse_spec(data: dict) -> RenderSpec:
    """Validate ``data`` (e.g. decoded JSON) into a :class:`RenderSpec` or raise SpecError."""
    if not isinstance(data, dict):
        raise SpecError("", f"a render spec must be an object, not {_shown(data)}")
    if "version" not in data:
        raise SpecError("version", "is required")
    version = data["version"]
    if isinstance(version, bool) or version != SPEC_VERSION:
        raise SpecError("version", f"{_shown(version)} is not supported (expected {SPEC_VERSION})")
    top = _section(data, "", RenderSpec)

    canvas = _parse_canvas(top["canvas"])
    layout = _parse_layout(top["layout"])
    audio = _parse_audio(top["audio"])
    video_values = _section(top["video"], "video", VideoSpec)
    video = VideoSpec(
        preset=_choice(video_values["preset"], "video.preset", X264_PRESETS),
        crf=_int(video_values["crf"], "video.crf", 0, 51),
    )
    clips = _parse_clips(top["clips"])
    duration = top["duration"]
    if duration is not None:
        duration = _float(duration, "duration", 0.0, MAX_SECONDS)
        if duration <= 0:
            raise SpecError("duration", "must be more than 0 seconds")
    intro = _parse_intro(top["intro"])
    credits = _parse_credits(top["credits"])
    spec = RenderSpec(SPEC_VERSION, canvas, layout, audio, video, clips, duration, intro,
                      credits)
    _check_layout(spec)
    return spec


def _parse_layout(data: Any) -> LayoutSpec:
    values = _section(data, "layout", LayoutSpec)
    featured_data = values["featured"]
    if not isinstance(featured_data, (list, tuple)):
        raise SpecError("layout.featured", f"must be a list, not {_shown(featured_data)}")
    if len(featured_data) > MAX_FEATURED:
        raise SpecError("layout.featured", f"must hold at most {MAX_FEATURED} entries")
    featured = []
    for i, raw in enumerate(featured_data):
        where = f"layout.featured[{i}]"
        item = _section(raw, where, Featured)
        entry = Featured(
            clip=_str(item["clip"], f"{where}.clip", required=True),
            start=_float(item["start"], f"{where}.start", 0.0, MAX_SECONDS),
            end=_float(item["end"], f"{where}.end", 0.0, MAX_SECONDS),
        )
        if entry.end <= entry.start:
            raise SpecError(f"{where}.end", f"must be after start ({entry.start:g} s), "
                            f"not {entry.end:g} s")
        featured.append(entry)
    return LayoutSpec(
        type=_choice(values["type"], "layout.type", LAYOUT_TYPES),
        gap=_int(values["gap"], "layout.gap", 0, 256),
        labels=_bool(values["labels"], "layout.labels"),
        featured=tuple(featured),
        shot_seconds=_float(values["shot_seconds"], "layout.shot_seconds", 0.5, 600.0),
        follow_audio=_bool(values["follow_audio"], "layout.follow_audio"),
        max_tiles=_int(values["max_tiles"], "layout.max_tiles", 1, 64),
    )


def _parse_intro(data: Any) -> IntroSpec | None:
    if data is None or data is False:
        return None
    values = _section(data, "intro", IntroSpec)
    return IntroSpec(
        title=_text(values["title"], "intro.title", required=True),
        subtitle=_text(values["subtitle"], "intro.subtitle"),
        seconds=_seconds(values["seconds"], "intro.seconds"),
    )


def _parse_credits(data: Any) -> CreditsSpec | None:
    if data is None or data is False:
        return None
    if data is True:  # "credits": true asks for the defaults
        data = {}
    values = _section(data, "credits", CreditsSpec)
    return CreditsSpec(
        seconds=_seconds(values["seconds"], "credits.seconds"),
        title=_text(values["title"], "credits.title"),
    )


def _seconds(value: Any, name: str) -> float:
    seconds = _float(value, name, 0.0, MAX_TITLE_SECONDS)
    if seconds < 0.5:
        raise SpecError(name, f"must be at least 0.5 seconds, not {seconds:g}")
    return seconds


def _text(value: Any, name: str, *, required: bool = False) -> str:
    """Display text on one line: control characters (newlines, escapes) are refused."""
    text = _str(value, name, required=required)
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise SpecError(name, "must be one line of text without control characters")
    return text


def _check_layout(spec: RenderSpec) -> None:
    """Layout-specific checks: featured clips exist and are shown, every tile fits."""
    from .layout import LayoutError, check_layout  # layout is pure and never imports spec

    ids = {c.id: i for i, c in enumerate(spec.clips)}
    for i, entry in enumerate(spec.layout.featured):
        where = f"layout.featured[{i}].clip"
        if entry.clip not in ids:
            raise SpecError(where, f"there is no clip with id {entry.clip!r}")
        if spec.clips[ids[entry.clip]].hidden:
            raise SpecError(where, f"clip {entry.clip!r} is hidden")
    if spec.layout.featured and spec.layout.type != "spotlight":
        raise SpecError("layout.featured", 'is only used by layout.type "spotlight"')
    if not spec.visible:
        raise SpecError("clips", "every clip is hidden: at least one must be shown")
    try:
        check_layout(spec)
    except LayoutError as exc:
        raise SpecError("layout", str(exc)) from exc


def _parse_canvas(data: Any) -> Canvas:
    values = _section(data, "canvas", Canvas)
    width = _int(values["width"], "canvas.width", MIN_CANVAS, MAX_CANVAS_LONG)
    height = _int(values["height"], "canvas.height", MIN_CANVAS, MAX_CANVAS_LONG)
    for name, value in (("canvas.width", width), ("canvas.height", height)):
        if value % 2:
            raise SpecError(name, f"must be even (H.264 needs even sizes), not {value}")
    if min(width, height) > MAX_CANVAS_SHORT:
        raise SpecError("canvas", f"{width}x{height} is larger than "
                        f"{MAX_CANVAS_LONG}x{MAX_CANVAS_SHORT}")
    background = _str(values["background"], "canvas.background", max_len=7)
    if not _COLOUR.match(background):
        raise SpecError("canvas.background",
                        f"must be a colour like #101010, not {_shown(background)}")
    return Canvas(width, height, _int(values["fps"], "canvas.fps", 1, 120), background)


def _parse_audio(data: Any) -> AudioSpec:
    values = _section(data, "audio", AudioSpec)
    mode = _choice(values["mode"], "audio.mode", AUDIO_MODES)
    guide_path = values["guide_path"]
    if guide_path is not None:
        guide_path = _str(guide_path, "audio.guide_path", max_len=4096, required=True)
    if mode in ("guide", "guide+mix") and guide_path is None:
        raise SpecError("audio.guide_path", f'is required when audio.mode is "{mode}"')
    loudness = _float(values["loudness_lufs"], "audio.loudness_lufs", -40.0, -5.0)
    guide_gain = _float(values["guide_gain_db"], "audio.guide_gain_db", -60.0, 24.0)
    mix_gain = _float(values["mix_gain_db"], "audio.mix_gain_db", -60.0, 24.0)
    reverb = _float(values["reverb_seconds"], "audio.reverb_seconds", 0.0, MAX_REVERB_SECONDS)
    wet = _float(values["reverb_wet_db"], "audio.reverb_wet_db", -60.0, 0.0)
    return AudioSpec(mode, guide_path, loudness, guide_gain, mix_gain, reverb, wet)


def _parse_clips(data: Any) -> tuple[SpecClip, ...]:
    if not isinstance(data, (list, tuple)):
        raise SpecError("clips", f"must be a list, not {_shown(data)}")
    if not data:
        raise SpecError("clips", "must contain at least one clip")
    if len(data) > MAX_CLIPS:
        raise SpecError("clips", f"must contain at most {MAX_CLIPS} clips, not {len(data)}")
    clips: list[SpecClip] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(data):
        where = f"clips[{i}]"
        values = _section(raw, where, SpecClip)
        clip = SpecClip(
            id=_str(values["id"], f"{where}.id", required=True),
            path=_str(values["path"], f"{where}.path", max_len=4096, required=True),
            offset=_float(values["offset"], f"{where}.offset", -MAX_SECONDS, MAX_SECONDS),
            part=_label(values["part"], f"{where}.part"),
            name=_label(values["name"], f"{where}.name"),
            location=_label(values["location"], f"{where}.location"),
            gain_db=_float(values["gain_db"], f"{where}.gain_db", -60.0, 24.0),
            has_audio=_bool(values["has_audio"], f"{where}.has_audio"),
            drift_ppm=_float(values["drift_ppm"], f"{where}.drift_ppm", -MAX_DRIFT_PPM,
                             MAX_DRIFT_PPM),
            hidden=_bool(values["hidden"], f"{where}.hidden"),
            muted=_bool(values["muted"], f"{where}.muted"),
            pan=_float(values["pan"], f"{where}.pan", -1.0, 1.0),
            hum_hz=_float(values["hum_hz"], f"{where}.hum_hz", 0.0, 60.0),
            denoise=_bool(values["denoise"], f"{where}.denoise"),
            noise_floor_db=_float(values["noise_floor_db"], f"{where}.noise_floor_db",
                                  -150.0, 0.0),
            time_map=_time_map(values["time_map"], f"{where}.time_map"),
        )
        if clip.time_map and clip.drift_ppm:
            raise SpecError(f"{where}.time_map", "replaces drift_ppm: give one or the other")
        if clip.hum_hz not in HUM_FREQUENCIES:
            raise SpecError(f"{where}.hum_hz", f"must be 0 (none), 50 or 60, not {clip.hum_hz:g}")
        if clip.id in seen:
            raise SpecError(f"{where}.id", f"{clip.id!r} is already used by clips[{seen[clip.id]}]")
        seen[clip.id] = i
        clips.append(clip)
    return tuple(clips)


MAX_TIME_MAP_KNOTS = 4000
#: a time map's segments play at 0.5..2 times the take's speed (atempo's range): the fit
#: keeps sounding parts within the organizer's tempo limit, and moves faster only in the
#: silence between phrases
MAP_SPEEDS = (0.5, 2.0)


def _time_map(value: Any, name: str) -> tuple[tuple[float, float], ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise SpecError(name, f"must be a list of [guide s, clip s] pairs, not {_shown(value)}")
    if len(value) == 1 or len(value) > MAX_TIME_MAP_KNOTS:
        raise SpecError(name, f"must hold 2 to {MAX_TIME_MAP_KNOTS} knots, not {len(value)}")
    knots = []
    for i, pair in enumerate(value):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise SpecError(f"{name}[{i}]", "must be a [guide s, clip s] pair")
        knots.append((_float(pair[0], f"{name}[{i}][0]", -MAX_SECONDS, MAX_SECONDS),
                      _float(pair[1], f"{name}[{i}][1]", -MAX_SECONDS, MAX_SECONDS)))
    for i in range(1, len(knots)):
        dg = knots[i][0] - knots[i - 1][0]
        dc = knots[i][1] - knots[i - 1][1]
        if dg <= 0:
            raise SpecError(f"{name}[{i}][0]", "guide times must increase")
        if not MAP_SPEEDS[0] <= dc / dg <= MAP_SPEEDS[1]:
            raise SpecError(f"{name}[{i}]", f"plays the take at {dc / dg:.3f} times its speed "
                            f"(between {MAP_SPEEDS[0]:g} and {MAP_SPEEDS[1]:g})")
    return tuple(knots)


def spec_to_dict(spec: RenderSpec) -> dict:
    """A JSON-serialisable dict that :func:`parse_spec` turns back into ``spec``."""
    data = dataclasses.asdict(spec)
    data["clips"] = [{**c, "time_map": [list(k) for k in c["time_map"]]}
                     for c in data["clips"]]
    data["layout"]["featured"] = [dict(f) for f in data["layout"]["featured"]]
    return data


def check_files(spec: RenderSpec) -> None:
    """SpecError naming the first clip (or the guide) whose file is missing."""
    if spec.audio.mode in ("guide", "guide+mix") and spec.audio.guide_path is not None:
        if not os.path.isfile(spec.audio.guide_path):
            raise SpecError("audio.guide_path",
                            f"the guide file {spec.audio.guide_path!r} does not exist")
    for i, clip in enumerate(spec.clips):
        if not os.path.isfile(clip.path):
            raise SpecError(f"clips[{i}].path",
                            f"the file for clip {clip.id!r} does not exist: {clip.path!r}")
