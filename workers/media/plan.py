"""The render plan: a RenderSpec cut into frame-exact segments that any worker can render.

:func:`plan_render` probes every clip once (in parallel), fixes the mash-up's length in
frames, asks the layout for its scenes (:func:`layout.timeline`) and splits the frames
into contiguous segments. Each segment lists only the tiles it shows (the clips visible
in it, each with its rectangle and the frames of its scene), so a segment renderer opens
only the inputs it needs. When a segment shows more tiles than one ffmpeg should decode
at once, the plan groups them into strips (whole grid rows, or parts of a row) that are
rendered one after another into intermediate files and then stacked: memory and open
files stay bounded whatever the number of clips.

The frames cover the whole program (:func:`workers.media.spec.program_times`): the
intro card's ``intro_frames`` (silent), the mash-up, then the credits' ``credits_frames``
(silent). Frame numbers are on the output's timeline: frame ``k`` is shown at ``k / fps``
seconds and the guide's t=0 is frame ``intro_frames``. Each tile carries where its name
label goes and when it shows (while the clip has pictures); each segment carries its
section captions. Text is only ever drawn into images by :mod:`workers.media.titles`.

A plan holds plain values and round-trips through JSON (:meth:`RenderPlan.to_dict`,
:meth:`RenderPlan.from_dict`), so a Celery group can carry it to workers on other
machines; the intro card, the credits and the labels are drawn again from the spec by
whichever worker needs them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .ffmpeg import FFmpegError
from .layout import Rect, Scene, activity_map, label_box, timeline
from .probe import InputReport, ProbeRejected, media_duration, read_input_report
from .spec import RenderSpec, SpecError, check_files, program_times

log = logging.getLogger(__name__)

PLAN_VERSION = 2
#: At most this many tiles are decoded by one ffmpeg process; more are split into strips.
DIRECT_TILES = 20
#: Tiles per strip when a segment is split (raised when needed to keep strips <= MAX_INPUTS).
STRIP_TILES = 20
#: Inputs one ffmpeg process may open (file descriptors, decoder memory).
MAX_INPUTS = 64
PROBE_THREADS = 4


@dataclass(frozen=True)
class PlanClip:
    """A spec clip as its file is: ``index`` into ``spec.clips``; ``has_audio`` is true when
    the spec wants its sound and the file has some. ``speed``: clip seconds per guide
    second (:attr:`SpecClip.speed`), or exactly 1 when the drift moves no frame by half a
    frame over the clip's length (then it is not corrected)."""

    index: int
    duration: float
    has_audio: bool
    width: int
    height: int
    offset: float
    speed: float = 1.0

    @property
    def start(self) -> float:
        """Where the clip's first frame falls on the mash-up's timeline (seconds)."""
        return -self.offset / self.speed

    @property
    def end(self) -> float:
        return (self.duration - self.offset) / self.speed


@dataclass(frozen=True)
class Tile:
    """Clip ``clip`` drawn into ``rect`` during timeline frames [start, end) (its first
    frame held before the clip starts, its last frame after it ends); its name label
    (when ``label`` is a box) drawn at the box's top-left during frames
    [label_start, label_end): the whole tile since plans hold frames."""

    clip: int
    rect: Rect
    start: int
    end: int
    label: Rect | None = None
    label_start: int = 0
    label_end: int = 0


@dataclass(frozen=True)
class PlanCaption:
    """A section caption (text drawn as an image) in ``rect`` during frames [start, end)."""

    text: str
    rect: Rect
    start: int
    end: int


@dataclass(frozen=True)
class Strip:
    """Tiles (indices into the segment's ``tiles``) rendered together into ``rect`` for
    timeline frames [start, end), background-filled, as one intermediate picture."""

    rect: Rect
    start: int
    end: int
    tiles: tuple[int, ...]


@dataclass(frozen=True)
class Segment:
    index: int
    start: int  # first timeline frame
    end: int  # one past the last
    tiles: tuple[Tile, ...]
    strips: tuple[Strip, ...] = ()  # empty: every tile is drawn directly
    captions: tuple[PlanCaption, ...] = ()

    @property
    def frames(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class RenderPlan:
    width: int
    height: int
    fps: int
    frames: int  # the whole program: intro + mash-up + credits
    audio: str  # "mix", "guide", "guide+mix" or "silence"
    clips: tuple[PlanClip, ...]
    segments: tuple[Segment, ...]
    intro_frames: int = 0  # the intro card: frames [0, intro_frames)
    credits_frames: int = 0  # the credits: the last credits_frames frames
    version: int = PLAN_VERSION

    @property
    def duration(self) -> float:
        """Exactly ``frames / fps`` seconds: the picture's and the sound's length."""
        return self.frames / self.fps

    @property
    def main_start(self) -> int:
        """The frame showing the guide's t=0."""
        return self.intro_frames

    @property
    def main_end(self) -> int:
        """The first frame of the credits (``frames`` without credits)."""
        return self.frames - self.credits_frames

    @property
    def main_frames(self) -> int:
        return self.main_end - self.main_start

    @property
    def main_duration(self) -> float:
        """The mash-up's length in seconds (the sound's length without the titles)."""
        return self.main_frames / self.fps

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RenderPlan:
        if data.get("version") != PLAN_VERSION:
            raise ValueError(f"render plan version {data.get('version')!r} is not supported")

        def rect(d: dict) -> Rect:
            return Rect(int(d["x"]), int(d["y"]), int(d["w"]), int(d["h"]))

        def tile(t: dict) -> Tile:
            return Tile(int(t["clip"]), rect(t["rect"]), int(t["start"]), int(t["end"]),
                        rect(t["label"]) if t.get("label") else None,
                        int(t.get("label_start", 0)), int(t.get("label_end", 0)))

        segments = tuple(
            Segment(int(s["index"]), int(s["start"]), int(s["end"]),
                    tuple(tile(t) for t in s["tiles"]),
                    tuple(Strip(rect(b["rect"]), int(b["start"]), int(b["end"]),
                                tuple(int(i) for i in b["tiles"])) for b in s["strips"]),
                    tuple(PlanCaption(str(c["text"]), rect(c["rect"]), int(c["start"]),
                                      int(c["end"])) for c in s.get("captions", ())))
            for s in data["segments"])
        clips = tuple(PlanClip(int(c["index"]), float(c["duration"]), bool(c["has_audio"]),
                               int(c["width"]), int(c["height"]), float(c["offset"]),
                               float(c.get("speed", 1.0)))
                      for c in data["clips"])
        return cls(int(data["width"]), int(data["height"]), int(data["fps"]),
                   int(data["frames"]), str(data["audio"]), clips, segments,
                   int(data.get("intro_frames", 0)), int(data.get("credits_frames", 0)))


# --- planning -----------------------------------------------------------------------------------

def plan_render(spec: RenderSpec, *, segments: int | None = None,
                segment_seconds: float = 10.0, timeout: float = 600.0,
                local_jobs: int | None = None) -> RenderPlan:
    """Probe the clips (and the guide) and cut the render into segments.

    ``segments`` fixes their number; otherwise each is about ``segment_seconds`` long.
    ``local_jobs`` plans for one machine drawing that many things at once instead: the
    mash-up is cut into that many segments, unless it is drawn in at least as many strips
    (which are then drawn in parallel), since a cut makes every clip decode again from the
    keyframe before it. Raises SpecError for a missing or unreadable input (naming it)."""
    deadline = time.monotonic() + timeout
    check_files(spec)
    clips = probe_clips(spec, timeout=timeout)
    total = _total_duration(spec, clips, max(1.0, deadline - time.monotonic()))
    fps = spec.canvas.fps
    main = max(1, round(total * fps))
    times = program_times(spec, main / fps)
    intro = round(times.intro_end * fps)
    credits = max(1, round(times.total * fps) - intro - main) if spec.credits is not None else 0
    frames = intro + main + credits
    activity = None
    if spec.layout.type == "montage" and spec.layout.follow_audio:
        activity = activity_map(spec, main / fps)
    scenes = timeline(spec, main / fps, activity)
    if local_jobs is not None:
        whole = _segment(0, intro, intro + main, scenes, clips, fps, intro)
        segments = 1 if len(whole.strips) >= local_jobs else local_jobs
    elif segments is None:
        per = max(1, round(segment_seconds * fps))
        segments = math.ceil(frames / per)
    bounds = program_bounds(intro, main, credits, segments,
                            [round(s.start * fps) for s in scenes[1:]])
    # a muted clip is seen, not heard: it makes no mix
    audible = any(c.has_audio and not spec.clips[c.index].muted and c.start < main / fps
                  and c.end > 0 for c in clips)
    if spec.audio.mode == "guide":
        audio = "guide"
    elif spec.audio.mode == "guide+mix":
        audio = "guide+mix" if audible else "guide"
    else:
        audio = "mix" if audible else "silence"
    planned = tuple(_segment(k, a, b, scenes, clips, fps, intro)
                    for k, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)))
    plan = RenderPlan(spec.canvas.width, spec.canvas.height, fps, frames, audio, clips, planned,
                      intro, credits)
    log.info("plan: %d clips, %d frames at %d fps (%d intro, %d credits), %d segments, "
             "%d with strips", len(clips), frames, fps, intro, credits, len(planned),
             sum(1 for s in planned if s.strips))
    return plan


def segment_bounds(frames: int, count: int, cuts: list[int] | tuple[int, ...] = ()) -> list[int]:
    """``count + 1`` increasing frame numbers from 0 to ``frames``: even cuts, each moved
    to a scene change (``cuts``) within a fifth of a segment, where a renderer would start
    a new filtergraph anyway."""
    count = max(1, min(count, frames))
    bounds = [round(k * frames / count) for k in range(count + 1)]
    reach = frames / count / 5
    for k in range(1, count):
        near = [c for c in cuts if abs(c - bounds[k]) <= reach and bounds[k - 1] < c < frames]
        if near:
            bounds[k] = min(near, key=lambda c: abs(c - bounds[k]))
    for k in range(1, count + 1):  # keep them strictly increasing after the moves
        bounds[k] = max(bounds[k], bounds[k - 1] + 1)
    bounds[count] = frames
    return bounds


def program_bounds(intro: int, main: int, credits: int, count: int,
                   cuts: list[int] | tuple[int, ...] = ()) -> list[int]:
    """Segment bounds over the whole program: the intro and the credits are segments of
    their own (cheap: no clip is decoded), the mash-up's frames are cut into about
    ``count`` segments (:func:`segment_bounds`, ``cuts`` being its scene changes)."""
    frames = intro + main + credits
    titles = (1 if intro else 0) + (1 if credits else 0)
    inner = segment_bounds(main, max(1, min(count - titles, main)), cuts)
    bounds = [0] if intro else []
    bounds += [intro + b for b in inner]
    if credits:
        bounds.append(frames)
    return bounds


def _segment(index: int, start: int, end: int, scenes: list[Scene], clips: tuple[PlanClip, ...],
             fps: int, intro: int = 0) -> Segment:
    """The tiles, labels and captions of frames [start, end); the mash-up's time 0 is
    frame ``intro``."""
    tiles: list[Tile] = []
    captions: list[PlanCaption] = []
    for scene in scenes:
        a = max(start, intro + round(scene.start * fps))
        b = min(end, intro + round(scene.end * fps))
        if a >= b:
            continue
        whole = (intro + round(scene.start * fps), intro + round(scene.end * fps))
        for p in scene.placements:
            clip = clips[p.clip]
            # a clip with pictures anywhere in its scene fills its tile for the whole
            # scene: its first frame is held before it starts and its last frame after
            # it ends (no holes in the mash-up), so it is drawn in every segment of it
            first = max(whole[0], intro + _frame_floor(clip.start * fps))
            last = min(whole[1], intro + _frame_ceil(clip.end * fps))
            if not (first < last and p.rect.w > 0 and p.rect.h > 0):
                continue
            box = label_box(p.rect) if p.label else None
            if box is not None:
                tiles.append(Tile(p.clip, p.rect, a, b, box, a, b))
            else:
                tiles.append(Tile(p.clip, p.rect, a, b))
        captions += [PlanCaption(c.text, c.rect, a, b) for c in scene.captions
                     if c.rect.w > 0 and c.rect.h > 0]
    strips: tuple[Strip, ...] = ()
    if len(tiles) > DIRECT_TILES:
        strips = group_strips(tiles)
    return Segment(index, start, end, tuple(tiles), strips, tuple(captions))


def _frame_floor(x: float) -> int:
    """The first frame a clip starting at ``x`` frames may show in: exact on the grid, one
    frame of slack off it (the frame-rate conversion rounds to the nearest frame)."""
    k = round(x)
    return k if abs(x - k) < 1e-6 else math.floor(x) - 1


def _frame_ceil(x: float) -> int:
    k = round(x)
    return k if abs(x - k) < 1e-6 else math.ceil(x) + 1


def group_strips(tiles: list[Tile] | tuple[Tile, ...], per_strip: int = STRIP_TILES,
                 max_strips: int = MAX_INPUTS - 2) -> tuple[Strip, ...]:
    """Tiles grouped by scene (frame range) and row into strips of at most ``per_strip``
    tiles: whole rows while they fit, a long row cut into pieces. Rows of one scene do not
    overlap, so neither do their strips."""
    while True:
        strips: list[Strip] = []
        by_range: dict[tuple[int, int], list[int]] = {}
        for i, t in enumerate(tiles):
            by_range.setdefault((t.start, t.end), []).append(i)
        for (a, b), members in by_range.items():
            rows: dict[tuple[int, int], list[int]] = {}
            for i in sorted(members, key=lambda i: (tiles[i].rect.y, tiles[i].rect.x)):
                rows.setdefault((tiles[i].rect.y, tiles[i].rect.h), []).append(i)
            pending: list[int] = []
            for row in rows.values():
                if pending and len(pending) + len(row) > per_strip:
                    strips.append(_strip(tiles, pending, a, b))
                    pending = []
                if len(row) > per_strip:  # a long row: in even pieces, alone
                    pieces = math.ceil(len(row) / per_strip)
                    size = math.ceil(len(row) / pieces)
                    strips.extend(_strip(tiles, row[i:i + size], a, b)
                                  for i in range(0, len(row), size))
                else:
                    pending += row
            if pending:
                strips.append(_strip(tiles, pending, a, b))
        if len(strips) <= max_strips:
            return tuple(strips)
        per_strip = math.ceil(per_strip * len(strips) / max_strips) + 1


def _strip(tiles: list[Tile] | tuple[Tile, ...], members: list[int], a: int, b: int) -> Strip:
    x = min(tiles[i].rect.x for i in members)
    y = min(tiles[i].rect.y for i in members)
    right = max(tiles[i].rect.right for i in members)
    bottom = max(tiles[i].rect.bottom for i in members)
    return Strip(Rect(x, y, right - x, bottom - y), a, b, tuple(members))


# --- where each clip is on screen ---------------------------------------------------------------

@dataclass(frozen=True)
class ScreenTile:
    """Clip ``clip`` (an index into ``spec.clips``) on screen in ``rect`` (canvas pixels)
    from ``start`` to ``end`` (seconds of the output file, titles included); ``live`` is
    the first second in that span where its own pictures play (not a held frame)."""

    clip: int
    rect: Rect
    start: float
    end: float
    live: float


def tile_map(plan: RenderPlan) -> tuple[ScreenTile, ...]:
    """Every clip's rectangles and times on screen, from the plan's tiles (contiguous tiles
    of one clip in one rectangle, across segments, are one span): what "find yourself"
    outlines over the player. Ordered by clip, then start."""
    spans: dict[tuple[int, Rect], list[list[int]]] = {}
    for seg in plan.segments:
        for tile in seg.tiles:
            runs = spans.setdefault((tile.clip, tile.rect), [])
            if runs and runs[-1][1] == tile.start:
                runs[-1][1] = tile.end
            else:
                runs.append([tile.start, tile.end])
    fps = plan.fps
    out: list[ScreenTile] = []
    for (index, rect), runs in spans.items():
        clip = plan.clips[index]
        plays = (plan.main_start + clip.start * fps, plan.main_start + clip.end * fps)
        for a, b in runs:
            live = min(max(a, math.ceil(plays[0] - 1e-6)), b - 1)
            out.append(ScreenTile(index, rect, a / fps, b / fps, live / fps))
    return tuple(sorted(out, key=lambda t: (t.clip, t.start, t.rect.y, t.rect.x)))


def poster_frame(plan: RenderPlan, at: float = 0.4, samples: int = 120) -> int:
    """The mash-up frame for the poster: one where the most tiles are on screen (every
    tile, in a grid), then where the most clips play their own pictures (not a held
    frame), then the nearest to ``at`` of the way through the mash-up."""
    first, last = plan.main_start, plan.main_end
    if last <= first:
        return max(0, min(plan.frames - 1, round(at * plan.frames)))
    count = min(samples, last - first)
    frames = sorted({first + (last - first) * (2 * k + 1) // (2 * count) for k in range(count)})
    tiles = [(t.start, t.end, t.clip) for seg in plan.segments for t in seg.tiles]
    fps = plan.fps
    plays = [(first + c.start * fps, first + c.end * fps) for c in plan.clips]
    target = first + at * (last - first)

    def score(f: int) -> tuple[int, int, float]:
        shown = [c for a, b, c in tiles if a <= f < b]
        live = sum(1 for c in shown if plays[c][0] <= f < plays[c][1])
        return len(shown), live, -abs(f - target)

    return max(frames, key=score)


# --- probing ------------------------------------------------------------------------------------

def probe_clips(spec: RenderSpec, *, timeout: float = 600.0) -> tuple[PlanClip, ...]:
    """Every clip's duration, sound and size, probed a few at a time."""
    with ThreadPoolExecutor(PROBE_THREADS) as pool:
        return tuple(pool.map(lambda i: _probe_clip(spec, i, timeout), range(len(spec.clips))))


def _probe_clip(spec: RenderSpec, index: int, timeout: float) -> PlanClip:
    clip = spec.clips[index]
    where = f"clips[{index}].path"
    try:
        facts: InputReport = read_input_report(clip.path, timeout=min(timeout, 60.0))
        duration = facts.duration
        if duration is None:
            duration = media_duration(clip.path, timeout=min(timeout, 120.0))
    except (FFmpegError, ProbeRejected) as exc:
        raise SpecError(where, f"clip {clip.id!r} cannot be read: {exc}") from exc
    video = facts.video
    if video is None:
        raise SpecError(where, f"clip {clip.id!r} has no video stream")
    if clip.has_audio and facts.audio is None:
        log.warning("clip %s: spec says it has sound but the file has none", clip.id)
    return PlanClip(index, duration, clip.has_audio and facts.audio is not None,
                    video.width or 0, video.height or 0, clip.offset,
                    drift_speed(clip.speed, duration, spec.canvas.fps))


def drift_speed(speed: float, duration: float, fps: int) -> float:
    """``speed`` when correcting it moves the clip's last frame by more than half a frame,
    else exactly 1 (no resampling for a drift nobody could see or hear)."""
    return speed if abs(speed - 1.0) * duration > 0.5 / fps else 1.0


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


def _total_duration(spec: RenderSpec, clips: tuple[PlanClip, ...], timeout: float) -> float:
    guide = None
    if spec.audio.mode in ("guide", "guide+mix") and spec.audio.guide_path:
        guide = _guide_duration(spec.audio.guide_path, timeout)  # also checks it has sound
    if spec.duration is not None:
        return spec.duration
    if guide is not None:
        return guide
    total = max(c.end for c in clips)
    if total <= 0:
        raise SpecError("clips", "every clip ends before the guide starts: check the offsets")
    return total


# --- preview and progress -----------------------------------------------------------------------

def preview_spec(spec: RenderSpec, *, width: int = 640, height: int = 360,
                 preset: str = "ultrafast", crf: int = 28) -> RenderSpec:
    """The same mash-up, fast and small: the canvas fitted into ``width``×``height`` (even
    sizes, same aspect), a quick encoder setting. Gaps shrink with the canvas."""
    canvas = spec.canvas
    scale = min(1.0, width / canvas.width, height / canvas.height)
    w = max(16, int(canvas.width * scale) // 2 * 2)
    h = max(16, int(canvas.height * scale) // 2 * 2)
    gap = int(round(spec.layout.gap * scale / 2)) * 2 if spec.layout.gap else 0
    return dataclasses.replace(
        spec,
        canvas=dataclasses.replace(canvas, width=w, height=h),
        layout=dataclasses.replace(spec.layout, gap=gap),
        video=dataclasses.replace(spec.video, preset=preset, crf=crf),
    )


class ProgressClock:
    """Turns progress fractions into (percent, seconds left): ``clock.update(f)``."""

    def __init__(self, now: float | None = None) -> None:
        self.started = time.monotonic() if now is None else now

    def update(self, fraction: float, now: float | None = None) -> tuple[float, float | None]:
        now = time.monotonic() if now is None else now
        fraction = min(1.0, max(0.0, fraction))
        elapsed = now - self.started
        if fraction <= 0.02 or elapsed <= 0:
            return 100 * fraction, None  # too early to tell
        return 100 * fraction, elapsed * (1 - fraction) / fraction
