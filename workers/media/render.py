"""RenderSpec -> mash-up file, with ffmpeg, in segments that any worker can render.

The steps, each a plain function of paths and values (a Celery group can run the
segments on any machines; :func:`render` runs them all here):

1. :func:`workers.media.plan.plan_render` probes the clips and cuts the program (intro
   card, mash-up, credits) into frame-exact segments, listing per segment only the tiles
   (with their name labels) and captions it shows;
2. :func:`render_audio`, once for the whole program: every clip with sound (hidden ones
   too), trimmed or delayed by its offset, stretched by its drift, its gain applied,
   summed with headroom (and, in "guide+mix", added to the guide at their two gains)
   into a float WAV while ebur128 measures the sum (EBU R128), then brought to the
   target loudness (a linear gain when the peaks allow, else loudnorm; true peak
   -1 dBTP, then a limiter); or the guide's sound, or silence; silent under the intro
   and the credits, padded or cut to exactly the picture's length;
3. :func:`render_segment`, per segment: each visible clip, seeked near the segment's
   start, put on the mash-up's frame grid (its drift corrected), scaled into its tile
   and overlaid on the background, then the PNGs of :mod:`workers.media.titles` (name
   labels, section captions, the intro card, the scrolling credits) overlaid by path and
   numeric position; a video-only H.264 file of exactly the segment's frames, starting
   on a keyframe. A segment with many tiles is drawn in strips (a few grid rows each,
   with their labels, into intermediate files; a few strips at a time) and the strips
   stacked, so no ffmpeg opens more than :data:`plan.MAX_INPUTS` files and memory does
   not grow with the number of clips;
4. :func:`join_segments`: the concat demuxer joins the segments without re-encoding,
   the sound is muxed in, the result published atomically, with a poster.

Every segment maps the same clip frame to the same timeline frame as a single render
would (the mapping depends on absolute times only), so joins have no gap and no repeated
frame. Measuring first and applying a linear gain second is what EBU R128 normalisation
means; a single dynamic pass would also squash the choir's dynamics. Only numbers built
here go into filtergraph strings: paths are separate argv items and clip names, parts
and places never reach ffmpeg (they are drawn into PNGs with Pillow).

Drift: a clip whose clock runs ``drift_ppm`` fast holds guide time t at clip time
``offset + t * speed``; its frames are retimed (setpts) and its sound stretched (atempo,
which keeps the pitch) by that speed, when it moves the clip by more than half a frame.

Time maps: a take pulled into time (:mod:`workers.media.timemap`) is played through its
map piece by piece, its sound by :func:`mixdown.splice_warp` (runs of samples as
recorded, spliced where they get 4 ms off the map; the filtergraph engine used
exact-length atempo segments, :func:`timemap.warp_filter`), its frames by a setpts
expression of the same map (:func:`timemap.guide_time_expr`), so each frame is shown
where its sound is heard.

The mix itself (:data:`MIX_ENGINE`) is summed in numpy by :mod:`workers.media.mixdown`:
ffmpeg decodes and cleans each take into a pipe, ``jobs`` side by side, numpy reads it
through its map or drift, sets its level and place, sums, and adds the room by FFT
convolution. The filtergraph mix (:func:`_mix_audio_ffmpeg`) is kept for comparison.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from contextlib import contextmanager
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
from .normalize import AUDIO_RATE, Loudness, parse_ebur128_summary, thumbnail_argv
from .plan import (
    PlanCaption,
    PlanClip,
    RenderPlan,
    ScreenTile,
    Segment,
    Tile,
    plan_render,
    poster_frame,
    tile_map,
)
from .probe import MEDIA_DEMUXERS, media_duration, safe_input
from .proxies import ensure_proxies, missing, proxy_scales
from .sound import room_filter, take_filter, write_room_impulse
from .spec import RenderSpec, SpecClip
from .timemap import TimeMap, guide_time_expr
from .titles import caption_image, credits_image, credits_y_expr, intro_card, label_image

log = logging.getLogger(__name__)

TRUE_PEAK_DBTP = -1.0
LOUDNESS_RANGE_LU = 11.0
LIMITER_DB = -1.5  # a sample-peak limiter a little under the true-peak target
SILENCE_LUFS = -60.0  # quieter than this, a mix is treated as silence (no gain applied)
AUDIO_BITRATE = "192k"
AUDIO_SHARE = 0.15  # the part of progress the audio pass reports
JOIN_SHARE = 0.03
POSTER_AT = 0.4
#: Seek this long before a segment's first frame, so the frame held at its start is decoded
#: (sources of 5 fps and more). A margin costs its length in decoding on average (when it
#: reaches over a keyframe, decoding starts a GOP earlier), per clip and cut.
SEEK_MARGIN = 0.2
#: A tile that only holds a clip's last frame decodes this many seconds of its end.
HOLD_DECODE = 1.0
#: Strips are kept near-lossless: they are encoded once more in the final picture.
STRIP_PRESET, STRIP_CRF = "ultrafast", 12
#: A tile at most this share of its clip's width skips the deblocking filter while decoding
#: (about 15 % of the decode time): its blocking is scaled away with the picture.
SKIP_DEBLOCK_BELOW = 0.5
#: Tiles smaller than their clip are scaled by area averaging (a box filter): as sharp as
#: bilinear and half its cost, which matters as every input frame of every clip is scaled.
#: Tiles as large as the clip or larger are scaled with swscale's default (bicubic).
DOWNSCALE_FLAGS = ":flags=area"
#: Sounds summed by one ffmpeg process; more are summed in groups first.
MAX_AUDIO_INPUTS = 48


@dataclass(frozen=True)
class RenderResult:
    path: str
    duration: float
    width: int
    height: int
    poster_path: str | None
    #: where each clip is on screen (:func:`workers.media.plan.tile_map`)
    tiles: tuple[ScreenTile, ...] = ()


@dataclass(frozen=True)
class ClipSource:
    """A spec clip with what its file holds, placed on the guide's timeline."""

    index: int
    clip: SpecClip
    duration: float
    has_audio: bool
    speed: float = 1.0  # clip seconds per guide second (1: no drift correction)

    @property
    def trim(self) -> float:
        """Seconds cut from the clip's start (clip time)."""
        return max(0.0, self.clip.offset)

    @property
    def delay(self) -> float:
        """Seconds of background/silence before the clip appears (guide time)."""
        return max(0.0, -self.clip.offset) / self.speed

    @property
    def end(self) -> float:
        """Where the clip ends on the guide's timeline."""
        return (self.duration - self.clip.offset) / self.speed

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
    segments: int | None = None,
    jobs: int | None = None,
    proxy_dir: str | None = None,
    pin: bool = True,
) -> RenderResult:
    """Render ``spec`` to ``out_path`` (MP4) atomically and optionally a JPEG poster.

    ``segments`` > 1 cuts the picture into that many segments, rendered by ``jobs``
    threads (each drives its own ffmpeg; the sound is made by one more, beside them) and
    joined without re-encoding. By default both are the number of cores: one ffmpeg feeds
    its filtergraph from one input at a time, so a single process drawing 16 clips keeps
    only about 1.6 of 2 cores busy. When no ``segments`` are given and the picture is drawn
    in strips, it is not cut: its strips are drawn ``jobs`` at a time instead, so that no
    clip is decoded twice around a cut (from the keyframe before it). With ``proxy_dir`` (a
    cache directory), clips drawn at half their size or less are decoded from cell-size
    proxies kept there (:mod:`workers.media.proxies`), built first where missing. With
    ``pin`` (and ``jobs`` > 1), each picture-drawing ffmpeg that runs beside others keeps a
    core of its own (:class:`Cores`). Raises SpecError for a missing or unusable input,
    FFmpegError when ffmpeg fails or the render exceeds
    ``timeout`` seconds; either way ``out_path`` is left untouched and no temp file remains.
    """
    deadline = time.monotonic() + timeout
    if jobs is None:
        jobs = usable_cores()
    strip_jobs = 1
    if segments is None:
        plan = plan_render(spec, local_jobs=jobs, timeout=timeout)
        # a picture left whole because it has enough strips draws them in parallel
        if any(len(s.strips) >= jobs > 1 for s in plan.segments):
            strip_jobs = jobs
    else:
        plan = plan_render(spec, segments=segments, timeout=timeout)
    # processes side by side each keep a core; one alone keeps them all
    cores = Cores(jobs) if pin and (len(plan.segments) > 1 or strip_jobs > 1) else _UNPINNED
    canvas = spec.canvas
    log.info("render %s: %d clips, %.3f s, %dx%d@%d, audio %s, %d segments", out_path,
             len(plan.clips), plan.duration, canvas.width, canvas.height, canvas.fps,
             plan.audio, len(plan.segments))
    report = _progress_reporter(progress)
    audio_share = AUDIO_SHARE if plan.audio in ("mix", "guide+mix") else 0.02
    scales = proxy_scales(plan) if proxy_dir else {}
    paths = {i: spec.clips[i].path for i in scales}
    building = missing(paths, scales, proxy_dir) if proxy_dir and scales else 0
    # building a proxy decodes its clip: most of what drawing it would cost
    proxy_share = 0.6 * (1.0 - audio_share - JOIN_SHARE) * building / len(plan.clips)
    video_share = 1.0 - audio_share - JOIN_SHARE - proxy_share
    tmp_audio = temp_path_for(out_path, ".audio.m4a")
    tmp_segments = [temp_path_for(out_path, f".seg{k}.mp4") for k in range(len(plan.segments))]
    try:
        weights: dict[object, float] = {"sound": audio_share, "proxies": proxy_share}
        weights.update({k: video_share * seg.frames / plan.frames
                        for k, seg in enumerate(plan.segments)})
        parts = _Parts(report, weights)
        proxies: dict[int, str] = {}

        def sound_step() -> None:
            render_audio(spec, plan, tmp_audio, timeout=_remaining(deadline),
                         progress=parts.progress("sound"), cache_dir=proxy_dir)

        def proxies_step() -> None:
            if scales:
                assert proxy_dir is not None
                proxies.update(ensure_proxies(paths, scales, proxy_dir, jobs=jobs,
                                              keyint=plan.fps, timeout=_remaining(deadline),
                                              progress=parts.progress("proxies")))

        segment_steps = [lambda k=k: render_segment(spec, plan, k, tmp_segments[k],
                                                    progress=parts.progress(k),
                                                    timeout=_remaining(deadline),
                                                    proxies=proxies, jobs=strip_jobs,
                                                    cores=cores)
                         for k in range(len(plan.segments))]
        if jobs > 1:
            # the sound is one single-threaded ffmpeg: it runs beside the pictures
            with ThreadPoolExecutor(min(jobs, len(plan.segments)) + 1) as pool:
                futures = [pool.submit(parts.run, sound_step)]
                parts.run(proxies_step)
                futures += [pool.submit(parts.run, step) for step in segment_steps]
                parts.wait(futures)
        else:
            for step in [sound_step, proxies_step, *segment_steps]:
                step()
        result = join_segments(plan, tmp_segments, tmp_audio, out_path,
                               poster_path=poster_path, timeout=_remaining(deadline))
    finally:
        for path in [tmp_audio, *tmp_segments]:
            remove_quietly(path)
    report(1.0)
    log.info("render %s: done, %.3f s", out_path, result.duration)
    return result


def _affinity() -> list[int]:
    """The cores this process may run on (e.g. a container's cpuset); [] where the OS
    has no affinity calls."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return []


def usable_cores(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The cores this process may use: those of its affinity, and no more than a cgroup
    CPU quota allows (``docker run --cpus 2`` on a larger host: ``cpu.max`` then reads
    "200000 100000")."""
    cores = len(_affinity()) or os.cpu_count() or 1
    try:
        with open(cpu_max) as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return cores


class Cores:
    """Cores lent to the ffmpeg processes of one render, one each, for as long as each runs.

    A picture ffmpeg runs a decoder thread per clip, a filtergraph and the encoder's threads;
    left to roam, two of them side by side keep trading their working sets (every clip's
    reference frames) between the cores' caches. On the render benchmark (16 clips, two
    segments on two cores) that cost about a fifth more CPU time than the same two pinned.
    Only a render given every core this process may use (``jobs`` equal to their number,
    at least 2) pins: one given fewer cannot know which of them are free, so :meth:`take`
    then lends none and the processes are left to the OS (as with ``Cores(0)``)."""

    def __init__(self, jobs: int) -> None:
        allowed = _affinity()
        self.free: queue.SimpleQueue[int] | None = None
        if 2 <= jobs == len(allowed):
            self.free = queue.SimpleQueue()
            for cpu in allowed:
                self.free.put(cpu)

    @contextmanager
    def take(self) -> Iterator[set[int] | None]:
        """One free core (as a set for :func:`run_ffmpeg`'s ``cpus``) until the block
        ends, or None when this render does not pin. Waits while all are lent."""
        if self.free is None:
            yield None
            return
        cpu = self.free.get()
        try:
            yield {cpu}
        finally:
            self.free.put(cpu)


_UNPINNED = Cores(0)


class _Parts:
    """Progress of parts of one job that run side by side, each ``weights[part]`` of the
    whole; the first part to fail (:meth:`run`) stops the others at their next report."""

    def __init__(self, report: Callable[[float], None], weights: Mapping[object, float]):
        self.report = report
        self.weights = dict(weights)
        self.done = dict.fromkeys(self.weights, 0.0)
        self.lock = threading.Lock()
        self.failed = threading.Event()
        self.error: BaseException | None = None

    def progress(self, part: object) -> Callable[[float], None]:
        def on(fraction: float) -> None:
            if self.failed.is_set():
                raise FFmpegError("another part of the render failed")
            with self.lock:
                self.done[part] = fraction
                self.report(sum(w * self.done[p] for p, w in self.weights.items()))
        return on

    def run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:
            with self.lock:
                if self.error is None:
                    self.error = exc
            self.failed.set()
            raise

    def wait(self, futures: Sequence[Future]) -> None:
        """Wait for every part, then raise the first failure (a cancel, say), not the
        "another part failed" it made the others stop with."""
        wait_for(futures)
        if self.error is not None:
            raise self.error
        for future in futures:
            future.result()


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
    return [ClipSource(c.index, spec.clips[c.index], c.duration, c.has_audio, c.speed)
            for c in plan.clips]


# --- audio ------------------------------------------------------------------------------------

def _input_args(source: ClipSource) -> list[str]:
    trim = ["-ss", f"{source.trim:.6f}"] if source.trim > 0 else []
    return [*trim, *safe_input(source.clip.path, MEDIA_DEMUXERS)]


def _stereo(rate: int = AUDIO_RATE) -> str:
    return f"aresample={rate},aformat=sample_fmts=fltp:channel_layouts=stereo"


def _tempo(speed: float) -> str:
    """Stretch a clip's sound from its clock onto the guide's (``speed`` clip seconds per
    guide second), keeping the pitch; nothing when there is no drift to correct."""
    return "" if speed == 1.0 else f"atempo={speed:.9f},"


def mix_filter(sources: list[ClipSource], total: float, *, voices: int | None = None,
               measure: bool = True, guide_gain_db: float | None = None,
               mix_gain_db: float = 0.0, room: int | None = None,
               headroom: bool | None = None) -> str:
    """Filtergraph summing input k's sound (k = position in ``sources``) into [mix] (and
    measuring it, with ``measure``). ``voices``: how many voices the sum stands for. Each
    take is first cleaned and panned as its spec clip says
    (:func:`sound.take_filter`), then delayed and set to its ``gain_db``.

    With ``guide_gain_db`` (audio mode "guide+mix"), input ``len(sources)`` is the guide:
    the sum is ``guide * 10^(guide_gain_db/20) + mix * 10^(mix_gain_db/20)``. With
    ``room``, input ``room`` is a room's impulse response
    (:func:`sound.write_room_impulse`) convolved with the clips' sum (not the guide).
    ``headroom`` (default: ``measure``) applies the ``-10 log10(voices)`` dB."""
    parts = []
    for k, s in enumerate(sources):
        c = s.clip
        take = take_filter(c.hum_hz, c.denoise, c.pan, c.noise_floor_db)
        delay = round(s.delay * AUDIO_RATE)
        parts.append(f"[{k}:a:0]{_stereo()},{_tempo(s.speed)}{take}"
                     f"adelay=delays={delay}S:all=1,volume={c.gain_db:.3f}dB[a{k}]")
    inputs = "".join(f"[a{k}]" for k in range(len(sources)))
    # uncorrelated voices add in power: 10*log10(K) dB of headroom keeps the sum near
    # the level of one voice; the float WAV cannot clip and the level is set later
    if headroom is None:
        headroom = measure
    gain = -10 * math.log10(voices or len(sources)) if headroom else 0.0
    tail = ",asplit=2[mix][measure]" if measure else "[mix]"
    fit = f"apad=whole_dur={total:.6f},atrim=0:{total:.6f}"
    amix = f"amix=inputs={len(sources)}:normalize=0:duration=longest:dropout_transition=0"
    if guide_gain_db is None:
        if room is None:
            parts.append(f"{inputs}{amix},volume={gain:.3f}dB,{fit}{tail}")
        else:
            parts.append(f"{inputs}{amix},volume={gain:.3f}dB[dry]")
            parts.append(room_filter(room, "dry", "wet"))
            parts.append(f"[wet]{fit}{tail}")
    else:
        g = len(sources)
        if room is None:
            parts.append(f"{inputs}{amix},volume={gain + mix_gain_db:.3f}dB[clips]")
        else:
            parts.append(f"{inputs}{amix},volume={gain + mix_gain_db:.3f}dB[dry]")
            parts.append(room_filter(room, "dry", "clips"))
        parts.append(f"[{g}:a:0]{_stereo()},volume={guide_gain_db:.3f}dB[guide]")
        parts.append(f"[guide][clips]amix=inputs=2:normalize=0:duration=longest:"
                     f"dropout_transition=0,{fit}{tail}")
    if measure:
        parts.append("[measure]ebur128=peak=true:framelog=quiet,anullsink")
    return ";".join(parts)


def _warp_sources(sources: list[ClipSource], folder_of: str, deadline: float, jobs: int
                  ) -> tuple[list[ClipSource], list[str]]:
    """Sources with a time map played through it first (:func:`timemap.warp_argv`), each
    into a float WAV beside ``folder_of`` that the mix then reads from guide time on, like
    a take without a map, ``jobs`` at a time; returns (sources, the WAVs to delete).
    (In the groups' own graphs, a hundred segments per take made graphs of thousands of
    filters that ffmpeg schedules far slower.)"""
    import dataclasses

    from .timemap import warp_argv

    made = {s.index: temp_path_for(folder_of, f".map{s.index}.wav")
            for s in sources if s.clip.time_map}

    def warp(s: ClipSource) -> ClipSource:
        if not s.clip.time_map:
            return s
        g, c = zip(*s.clip.time_map, strict=True)
        wav = made[s.index]
        first, args = warp_argv(s.clip.path, wav, TimeMap(g, c), s.trim, AUDIO_RATE)
        run_ffmpeg(args, timeout=_remaining(deadline))
        # starts at guide time ``first``: an offset of -first, no drift left to correct
        clip = dataclasses.replace(s.clip, path=wav, offset=-first, time_map=(),
                                   drift_ppm=0.0)
        return ClipSource(s.index, clip, media_duration(wav, timeout=60), True)

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        out = list(pool.map(warp, sources))
    return out, list(made.values())


#: from this many sources on, a mix is summed in groups side by side (one per core)
PARALLEL_MIX_MIN = 8


def mix_groups(sources: list[ClipSource], jobs: int) -> list[list[ClipSource]]:
    """The sources cut into groups summed first: one group (no pre-sum) for a few, else at
    least one per core (``jobs``) and none larger than :data:`MAX_AUDIO_INPUTS`, of sizes
    differing by one at most."""
    count = len(sources)
    groups = math.ceil(count / MAX_AUDIO_INPUTS) if count else 1
    if jobs > 1 and count >= PARALLEL_MIX_MIN:
        groups = max(groups, jobs)
    if groups <= 1:
        return [sources]
    size, extra = divmod(count, groups)
    out, at = [], 0
    for j in range(groups):
        n = size + (j < extra)
        out.append(sources[at:at + n])
        at += n
    return out


#: how the takes are summed: "numpy" (:mod:`workers.media.mixdown`: ffmpeg decodes and
#: cleans each take, numpy pulls it into time, places, sums and adds the room) or
#: "ffmpeg" (the filtergraphs of :func:`_mix_audio_ffmpeg`, kept for comparison: the
#: bench runs both)
MIX_ENGINE = "numpy"


def _mix_audio(sources: list[ClipSource], total: float, dst: str, timeout: float,
               progress: Callable[[float], None],
               guide: tuple[str, float, float] | None = None,
               room: tuple[float, float] | None = None,
               voices: int | None = None, jobs: int | None = None,
               cache_dir: str | None = None) -> Loudness:
    """Sum the sources into a float WAV at ``dst`` and measure it (EBU R128), by
    :data:`MIX_ENGINE`. ``guide``: (path, guide_gain_db, mix_gain_db), the guide added
    under the sum. ``room``: (reverberation time s, wet dB), one room for the sum of the
    sources. ``voices``: the headroom's count (default: the sources'; a stem gives the
    whole mix's so that the stems add up to it). ``jobs``: takes decoded side by side
    (default: the usable cores). ``cache_dir``: the numpy engine keeps each cleaned take
    there for the next mix (:func:`mixdown.cached_decode`)."""
    if jobs is None:
        jobs = usable_cores()
    if MIX_ENGINE == "ffmpeg":
        return _mix_audio_ffmpeg(sources, total, dst, timeout, progress, guide, room,
                                 voices, jobs)
    from .mixdown import mix_to_wav

    loudness = mix_to_wav(sources, total, dst, timeout, progress, guide=guide, room=room,
                          voices=voices, jobs=jobs, cache_dir=cache_dir)
    log.info("mix of %d clips: %.1f LUFS, %.1f dBTP", len(sources), loudness.integrated,
             loudness.true_peak)
    return loudness


def _mix_audio_ffmpeg(sources: list[ClipSource], total: float, dst: str, timeout: float,
                      progress: Callable[[float], None],
                      guide: tuple[str, float, float] | None = None,
                      room: tuple[float, float] | None = None,
                      voices: int | None = None, jobs: int | None = None) -> Loudness:
    """Sum the sources into a float WAV and measure it. Many sources are summed in groups
    first (:func:`mix_groups`; float WAVs beside ``dst``), ``jobs`` at a time (default:
    the usable cores), so no ffmpeg opens them all and the takes' filters (clean-up, pan)
    use every core; the last pass sums the groups, adds the room and measures.
    ``guide``: (path, guide_gain_db, mix_gain_db), the guide added under the sum.
    ``room``: (reverberation time s, wet dB), one room for the sum of the sources.
    ``voices``: the headroom's count (default: the sources'; a stem gives the whole mix's
    so that the stems add up to it)."""
    deadline = time.monotonic() + timeout
    if jobs is None:
        jobs = usable_cores()
    groups = mix_groups(sources, jobs)
    partial = [temp_path_for(dst, f".part{j}.wav") for j in range(len(groups))]
    scripts = [temp_path_for(dst, f".graph{j}.txt") for j in range(len(groups) + 1)]
    steps = len(groups) + 1 if len(groups) > 1 else 1
    room_ir = temp_path_for(dst, ".room.wav") if room is not None else None
    warped: list[str] = []
    lock = threading.Lock()
    done = [0.0] * len(groups)

    def report(j: int, fraction: float) -> None:
        with lock:  # the groups report from their threads
            done[j] = fraction
            progress(sum(done) / steps)

    try:
        if any(s.clip.time_map for s in sources):
            sources, warped = _warp_sources(sources, dst, deadline, jobs)
            groups = mix_groups(sources, jobs)
        if room is not None and room_ir is not None:
            write_room_impulse(room_ir, room[0], room[1])
        if len(groups) > 1:
            def sum_group(j: int) -> None:
                args = ["-v", "error"]
                for s in groups[j]:
                    args += _input_args(s)
                args += [*_graph_args(mix_filter(groups[j], total, measure=False),
                                      scripts[j]),
                         "-map", "[mix]", "-c:a", "pcm_f32le", "-f", "wav",
                         input_url(partial[j])]
                run_ffmpeg(args, timeout=_remaining(deadline), duration=total,
                           progress=lambda f: report(j, f))

            # each group is one single-threaded ffmpeg (a filter per take): side by side
            with ThreadPoolExecutor(max(1, min(jobs, len(groups)))) as pool:
                for future in [pool.submit(sum_group, j) for j in range(len(groups))]:
                    future.result()
            sums = [ClipSource(-1, SpecClip(id=f"part{j}", path=p), total, True)
                    for j, p in enumerate(partial)]
            inputs = sums
        else:
            inputs = sources
        gains = {} if guide is None else {"guide_gain_db": guide[1], "mix_gain_db": guide[2]}
        room_input = len(inputs) + (guide is not None) if room_ir else None
        graph = mix_filter(inputs, total, voices=voices or len(sources), room=room_input,
                           **gains)
        args = ["-v", "info"]
        for s in inputs:
            args += _input_args(s)
        if guide is not None:
            args += safe_input(guide[0], MEDIA_DEMUXERS)
        if room_ir is not None:
            args += safe_input(room_ir, ("wav",))
        args += [*_graph_args(graph, scripts[-1]), "-map", "[mix]",
                 "-c:a", "pcm_f32le", "-f", "wav", input_url(dst)]
        status, text = ffmpeg_report(args, timeout=_remaining(deadline), duration=total,
                                     progress=lambda f: progress((steps - 1 + f) / steps))
    finally:
        for path in [*partial, *scripts, *warped, *([room_ir] if room_ir else [])]:
            remove_quietly(path)
    if status != 0:
        raise FFmpegError(f"audio mix failed (ffmpeg status {status})", args, status,
                          "\n".join(text.splitlines()[-20:]))
    loudness = parse_ebur128_summary(status, text)
    log.info("mix of %d clips: %.1f LUFS, %.1f dBTP", len(sources), loudness.integrated,
             loudness.true_peak)
    return loudness


#: a filtergraph longer than this is handed to ffmpeg in a file (``-/filter_complex``):
#: one argument may hold at most 128 KiB (Linux's MAX_ARG_STRLEN), and a group of takes
#: with time maps of a hundred segments each holds more
GRAPH_IN_FILE = 32 * 1024


def _graph_args(graph: str, script: str) -> list[str]:
    """``-filter_complex GRAPH``, or for a long graph, the graph written to ``script`` (a
    temp path the caller removes) and ``-/filter_complex SCRIPT`` (ffmpeg reads the
    option's value from that file)."""
    if len(graph) <= GRAPH_IN_FILE:
        return ["-filter_complex", graph]
    with open(script, "w", encoding="utf-8") as f:
        f.write(graph)
    return ["-/filter_complex", script]


def loudness_filter(loudness: Loudness, target_lufs: float) -> str:
    """Bring a measured mix to ``target_lufs``: a linear gain when the true peak stays
    under the target with it (EBU R128 normalisation proper; loudnorm's linear mode does
    the same, at 192 kHz), else loudnorm's dynamic mode; then a limiter."""
    # latency=true: the limiter's 5 ms look-ahead would otherwise put the sound 240
    # samples behind the picture (and behind the hand-off's stems)
    limiter = f"alimiter=limit={10 ** (LIMITER_DB / 20):.4f}:level=false:latency=true"
    if not loudness.integrated > SILENCE_LUFS:
        return limiter  # silence or near silence: do not amplify the noise floor
    gain = target_lufs - loudness.integrated
    if math.isfinite(loudness.true_peak) and loudness.true_peak + gain <= TRUE_PEAK_DBTP:
        return f"volume={gain:.3f}dB,{limiter}"
    return (
        f"loudnorm=I={target_lufs:.2f}:TP={TRUE_PEAK_DBTP:.2f}:LRA={LOUDNESS_RANGE_LU:.1f}:"
        f"measured_I={loudness.integrated:.2f}:measured_TP={loudness.true_peak:.2f}:"
        f"measured_LRA={loudness.lra:.2f}:measured_thresh={loudness.threshold:.2f}:"
        f"linear=true,{limiter}"
    )


def mixed_sources(spec: RenderSpec, plan: RenderPlan) -> list[ClipSource]:
    """The clips heard in the mix: with sound, not muted, playing within the mash-up."""
    main = plan.main_duration
    return [s for s in _sources(spec, plan)
            if s.has_audio and not s.clip.muted and s.visible(main)]


def room_of(spec: RenderSpec) -> tuple[float, float] | None:
    """The spec's shared room as (reverberation time s, wet dB), or None."""
    if spec.audio.reverb_seconds <= 0:
        return None
    return spec.audio.reverb_seconds, spec.audio.reverb_wet_db


def _sound_codec(out_path: str) -> list[str]:
    if out_path.lower().endswith(".wav"):
        return ["-c:a", "pcm_s16le", "-f", "wav"]
    return ["-c:a", "aac", "-b:a", AUDIO_BITRATE, "-f", "mp4"]


def render_audio(spec: RenderSpec, plan: RenderPlan, out_path: str, *, timeout: float = 3600,
                 progress: Callable[[float], None] | None = None,
                 cache_dir: str | None = None) -> None:
    """The whole program's sound, once, to ``out_path`` (.m4a: AAC; .wav: PCM), exactly
    ``plan.duration`` long: the mastered mix (with the guide under it in "guide+mix"),
    the guide, or silence, for the mash-up; silence under the intro and the credits.
    ``cache_dir``: where the cleaned takes are kept between renders (the proxies'
    folder). Atomic."""
    deadline = time.monotonic() + timeout
    total = plan.duration
    main = plan.main_duration
    report = _progress_reporter(progress)
    samples = round(total * AUDIO_RATE)
    # the mash-up cut to its length, after the intro's silence, padded to the end (finite
    # pad, then exact)
    lead = round(plan.main_start / plan.fps * AUDIO_RATE)
    fit = (f"apad=whole_dur={main:.6f},atrim=end_sample={round(main * AUDIO_RATE)},"
           + (f"adelay=delays={lead}S:all=1," if lead else "")
           + f"apad=whole_dur={total:.6f},atrim=end_sample={samples}")
    tmp_mix = temp_path_for(out_path, ".mix.wav")
    tmp_out = temp_path_for(out_path)
    try:
        if plan.audio in ("mix", "guide+mix"):
            sources = mixed_sources(spec, plan)
            guide = None
            if plan.audio == "guide+mix":
                assert spec.audio.guide_path is not None
                guide = (spec.audio.guide_path, spec.audio.guide_gain_db,
                         spec.audio.mix_gain_db)
            loudness = _mix_audio(sources, main, tmp_mix, _remaining(deadline),
                                  lambda f: report(0.9 * f), guide, room_of(spec),
                                  cache_dir=cache_dir)
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
        mixed = plan.audio in ("mix", "guide+mix")
        run_ffmpeg(args, timeout=_remaining(deadline), duration=total,
                   progress=lambda f: report(0.9 + 0.1 * f) if mixed else report(f))
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
                   proxies: Mapping[int, str] | None = None, jobs: int = 1,
                   cores: Cores | None = None) -> None:
    """Segment ``index`` of ``plan`` as a video-only MP4 (H.264, starts on a keyframe,
    exactly ``segment.frames`` frames), written atomically to ``out_path``.

    A segment drawn in strips draws ``jobs`` of them at a time (each in its own ffmpeg).
    With ``cores``, each strip's ffmpeg runs on a core it takes from there, and so does
    the final picture's when this segment runs beside others (``jobs`` 1); drawn alone
    after its strips, it keeps every core for its encoder.
    ``proxies`` maps a clip index to a smaller copy of it (:mod:`workers.media.proxies`),
    decoded instead of the clip. Labels, captions, the intro card and the credits are
    drawn into PNGs in a temp directory beside ``out_path``."""
    deadline = time.monotonic() + timeout
    seg = plan.segments[index]
    report = _progress_reporter(progress)
    tmp_out = temp_path_for(out_path)
    strip_paths = [temp_path_for(out_path, f".strip{j}.mp4") for j in range(len(seg.strips))]
    duration = seg.frames / plan.fps
    sizes = [len(s.tiles) * (s.end - s.start) for s in seg.strips]
    whole = sum(sizes) * 1.15 or 1  # the final stacking costs about as much as 15 % of it
    parts = _Parts(report, {**{j: size / whole for j, size in enumerate(sizes)},
                            "stack": 1 - sum(sizes) / whole})
    titles = _Titles(spec, os.path.dirname(os.path.abspath(out_path)))

    def draw_strip(j: int) -> None:
        strip = seg.strips[j]
        tiles = [seg.tiles[i] for i in strip.tiles]
        args = _picture_argv(spec, plan, tiles, strip.rect.x, strip.rect.y, strip.rect.w,
                             strip.rect.h, strip.start, strip.end - strip.start, proxies, titles)
        args += _encode_args(STRIP_PRESET, STRIP_CRF, plan.fps, strip_paths[j])
        with (cores or _UNPINNED).take() as cpus:
            run_ffmpeg(args, timeout=_remaining(deadline), cpus=cpus,
                       duration=(strip.end - strip.start) / plan.fps, progress=parts.progress(j))

    try:
        if jobs > 1 and len(seg.strips) > 1:
            with ThreadPoolExecutor(min(jobs, len(seg.strips))) as pool:
                steps = [lambda j=j: draw_strip(j) for j in range(len(seg.strips))]
                parts.wait([pool.submit(parts.run, step) for step in steps])
        else:
            for j in range(len(seg.strips)):
                draw_strip(j)
        layers = _segment_layers(plan, seg, titles)
        if seg.strips:
            args = _stack_argv(spec, plan, seg, strip_paths, layers)
        else:
            args = _picture_argv(spec, plan, list(seg.tiles), 0, 0, plan.width, plan.height,
                                 seg.start, seg.frames, proxies, titles, layers)
        args += _encode_args(spec.video.preset, spec.video.crf, plan.fps, tmp_out)
        with (cores if cores and jobs <= 1 else _UNPINNED).take() as cpus:
            run_ffmpeg(args, timeout=_remaining(deadline), duration=duration, cpus=cpus,
                       progress=parts.progress("stack"))
        replace_atomically(tmp_out, out_path)
    except BaseException:
        remove_quietly(tmp_out)
        raise
    finally:
        for path in strip_paths:
            remove_quietly(path)
        titles.close()
    report(1.0)


@dataclass(frozen=True)
class _Layer:
    """A PNG overlaid at (x, y) (canvas pixels, or for ``y`` an expression of the time t
    made of numbers only) during timeline frames [start, end)."""

    path: str
    x: int
    y: int | str
    start: int
    end: int
    exact: bool = False  # blend in 4:4:4, so an odd ``y`` is kept (yuv420 rounds it to even)


class _Titles:
    """The PNGs a segment overlays, drawn on first use (one per distinct label or caption
    group) into a temp directory that :meth:`close` removes."""

    def __init__(self, spec: RenderSpec, directory: str) -> None:
        self.spec = spec
        self.directory = directory
        self._work: str | None = None
        self._paths: dict[tuple, str] = {}
        self.credits_height = 0
        self._lock = threading.Lock()  # strips are drawn from several threads

    def _path(self, name: str) -> str:
        if self._work is None:
            self._work = tempfile.mkdtemp(prefix=".tutti-titles-", dir=self.directory)
        return os.path.join(self._work, f"{name}-{len(self._paths)}.png")

    def label(self, clip: int, box) -> str:
        name = self.spec.clips[clip].name
        key = ("label", name, box.w, box.h)
        with self._lock:
            if key not in self._paths:
                path = self._path("label")
                label_image(name, box.w, box.h, path)
                self._paths[key] = path
            return self._paths[key]

    def captions(self, captions: Sequence[PlanCaption]) -> tuple[str, int, int]:
        """One transparent PNG holding ``captions`` (which never overlap), cropped to
        their bounding box; returns (path, x, y)."""
        from PIL import Image

        x0 = min(c.rect.x for c in captions)
        y0 = min(c.rect.y for c in captions)
        x1 = max(c.rect.right for c in captions)
        y1 = max(c.rect.bottom for c in captions)
        key = ("captions", tuple((c.text, c.rect) for c in captions))
        if key not in self._paths:
            sheet = Image.new("RGBA", (x1 - x0, y1 - y0), (0, 0, 0, 0))
            for c in captions:
                one = self._path("caption")
                caption_image(c.text, c.rect.w, c.rect.h, one)
                with Image.open(one) as image:
                    sheet.alpha_composite(image.convert("RGBA"), (c.rect.x - x0, c.rect.y - y0))
                os.remove(one)
            path = self._path("captions")
            sheet.save(path, format="PNG")
            self._paths[key] = path
        return self._paths[key], x0, y0

    def intro(self) -> str:
        if ("intro",) not in self._paths:
            self._paths[("intro",)] = intro_card(self.spec, self._path("intro"))
        return self._paths[("intro",)]

    def credits(self) -> tuple[str, int]:
        if ("credits",) not in self._paths:
            path, self.credits_height = credits_image(self.spec, self._path("credits"))
            self._paths[("credits",)] = path
        return self._paths[("credits",)], self.credits_height

    def close(self) -> None:
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None
        self._paths.clear()


def _segment_layers(plan: RenderPlan, seg: Segment, titles: _Titles) -> list[_Layer]:
    """What the final pass of a segment draws over its tiles: the section captions (one
    image per scene), the intro card and the scrolling credits, each where it shows."""
    layers: list[_Layer] = []
    scenes: dict[tuple[int, int], list[PlanCaption]] = {}
    for c in seg.captions:
        scenes.setdefault((c.start, c.end), []).append(c)
    for (a, b), captions in scenes.items():
        path, x, y = titles.captions(captions)
        layers.append(_Layer(path, x, y, a, b))
    a, b = max(seg.start, 0), min(seg.end, plan.main_start)
    if a < b:
        layers.append(_Layer(titles.intro(), 0, 0, a, b))
    a, b = max(seg.start, plan.main_end), min(seg.end, plan.frames)
    if a < b:
        path, height = titles.credits()
        # the scroll speed of the reference (the spec's seconds), whatever the rounding
        credits = titles.spec.credits
        seconds = credits.seconds if credits is not None else plan.credits_frames / plan.fps
        # t is the segment's own clock: the credits started at (main_end - start) / fps
        y = credits_y_expr(plan.height, height, seconds,
                           start=(plan.main_end - seg.start) / plan.fps)
        # rounded to the pixel as the reference does (overlay truncates towards zero)
        layers.append(_Layer(path, 0, f"floor({y}+0.5)", a, b, exact=True))
    return layers


def _encode_args(preset: str, crf: int, fps: int, dst: str) -> list[str]:
    return ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-g", str(2 * fps), "-r", str(fps), "-an", "-map_metadata", "-1",
            "-f", "mp4", input_url(dst)]


def _background(spec: RenderSpec, w: int, h: int, fps: int, frames: int) -> str:
    return (f"color=c={spec.canvas.background_hex}:s={w}x{h}:r={fps}:"
            f"d={(frames + 1) / fps:.6f},trim=end_frame={frames},format=yuv420p[bg]")


def _image_input(path: str) -> list[str]:
    return ["-f", "png_pipe", *safe_input(path, ("png_pipe",))]


def _layer_graph(k: int, layer: _Layer, last: str, ox: int, oy: int, origin: int, fps: int,
                 out: str) -> list[str]:
    """Input ``k`` (a still image) held for the layer's frames, overlaid on [last]."""
    first = max(layer.start, origin)
    y = f"{layer.y - oy}" if isinstance(layer.y, int) else f"{layer.y}-{oy}"
    return [
        f"[{k}:v:0]loop=loop={layer.end - first - 1}:size=1:start=0,"
        f"setpts=N/({fps}*TB)+{first - origin}/({fps}*TB)[l{k}]",
        f"[{last}][l{k}]overlay=x={layer.x - ox}:y={y}:eof_action=pass:repeatlast=0:"
        f"format={'yuv444' if layer.exact else 'yuv420'}[{out}]",
    ]


#: a tile's time map expression covers the clip times it decodes, and this much more
MAP_WINDOW_MARGIN = 1.0


def _tile_setpts(clip: PlanClip, seek: float, intro: int, origin: int, fps: int,
                 time_map: TimeMap | None = None, until: float = 0.0) -> str:
    """After the seek a frame's time is (clip time - seek); its guide time is
    (clip time - offset) / speed, shown at (guide time + intro / fps) on the output, which
    is (that - origin / fps) on this picture's clock. So the same clip frame lands on the
    same timeline frame whatever the segment.

    With a ``time_map`` the guide time is the map's, piece by piece
    (:func:`timemap.guide_time_expr` over the clip times from ``seek`` to ``until``), so
    the picture follows the same map as the sound and lips stay on the warped voice."""
    lead = (intro - origin) / fps
    if time_map is not None:
        expr = guide_time_expr(time_map, seek, seek, max(until, seek) + MAP_WINDOW_MARGIN)
        # max(a,b): its comma escaped from the filtergraph's own commas
        return f"setpts=({expr.replace(',', chr(92) + ',')}{lead:+.6f})/TB"
    if clip.speed == 1.0:
        return f"setpts=PTS+{seek - clip.offset + lead:.6f}/TB"
    return f"setpts=(PTS+{seek - clip.offset:.6f}/TB)/{clip.speed:.9f}+{lead:.6f}/TB"


def _time_map_of(clip: SpecClip) -> TimeMap | None:
    """The clip's time map, or None (one offset, maybe a drift)."""
    if not clip.time_map:
        return None
    g, c = zip(*clip.time_map, strict=True)
    return TimeMap(g, c)


def _clip_time(clip: PlanClip, time_map: TimeMap | None, t: float) -> float:
    """The clip time shown at guide time ``t``: the time map's, or offset + t * speed."""
    if time_map is not None:
        return float(time_map.clip_time(t))
    return clip.offset + t * clip.speed


def _fit(w: int, h: int, flags: str = "") -> str:
    """Scale a picture to fit ``w``×``h`` keeping its aspect, both sides floored to even,
    centred on black bars at an even offset (as the reference engine draws it)."""
    s = f"min({w}/iw\\,{h}/ih)"
    return (f"scale=w='2*floor({s}*iw/2+0.000001)':h='2*floor({s}*ih/2+0.000001)'{flags},"
            f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=black")


def _picture_argv(spec: RenderSpec, plan: RenderPlan, tiles: Sequence[Tile], ox: int, oy: int,
                  w: int, h: int, origin: int, frames: int,
                  proxies: Mapping[int, str] | None, titles: _Titles | None = None,
                  layers: Sequence[_Layer] = ()) -> list[str]:
    """Inputs and filtergraph drawing ``tiles`` (and their name labels, with ``titles``),
    then ``layers``, on a ``w``×``h`` background whose top-left is the canvas point
    (ox, oy), for ``frames`` frames from timeline frame ``origin``; the picture is
    labelled [vout]."""
    fps = plan.fps
    args: list[str] = []
    graph = [_background(spec, w, h, fps, frames)]
    last = "bg"
    labels: list[_Layer] = []
    threads = ["-threads", "1"] if len(tiles) > 2 else []  # many decoders: one thread each
    k = 0
    for tile in tiles:
        clip: PlanClip = plan.clips[tile.clip]
        path = spec.clips[tile.clip].path
        src_w = clip.width
        if proxies and tile.clip in proxies:
            path, src_w = proxies[tile.clip], 0  # already about the tile's size
        # clip time at the tile's first frame; seek a little before it, decode from there
        time_map = _time_map_of(spec.clips[tile.clip])
        at = _clip_time(clip, time_map, (tile.start - plan.main_start) / fps)
        # a tile after the clip's end shows its last frame, held: decode the last second
        ended = plan.main_start + clip.end * fps <= tile.start
        seek = max(0.0, (clip.duration - HOLD_DECODE if ended else at) - SEEK_MARGIN)
        until = _clip_time(clip, time_map, (tile.end - plan.main_start) / fps)
        decode = [*threads]
        if src_w and tile.rect.w <= SKIP_DEBLOCK_BELOW * src_w:
            decode += ["-skip_loop_filter", "all"]
        if seek > 0:
            decode += ["-ss", f"{seek:.6f}"]
        args += [*decode, *safe_input(path, MEDIA_DEMUXERS)]
        r = tile.rect
        flags = DOWNSCALE_FLAGS if src_w and r.w < src_w else ""
        a, b = tile.start - origin, tile.end - origin
        # no holes: fps's start_time repeats the clip's first frame from the tile's
        # start until the clip begins, tpad repeats its last (scaled) frame after it
        # ends; a held frame costs no decoding
        if ended:
            chain = (f"fps={fps},{_fit(r.w, r.h, flags)},setsar=1,"
                     f"tpad=stop_mode=clone:stop=-1,trim=start_pts={a}:end_pts={b}")
        else:
            chain = (f"fps={fps}:start_time={a / fps:.6f},trim=start_pts={a}:end_pts={b},"
                     f"{_fit(r.w, r.h, flags)},setsar=1,"
                     f"tpad=stop_mode=clone:stop=-1,trim=end_pts={b}")
        graph.append(
            f"[{k}:v:0]{_tile_setpts(clip, seek, plan.main_start, origin, fps, time_map, until)},"
            f"{chain}[t{k}]")
        graph.append(f"[{last}][t{k}]overlay=x={r.x - ox}:y={r.y - oy}:eof_action=pass:"
                     f"repeatlast=0:format=yuv420[o{k}]")
        last = f"o{k}"
        k += 1
        if titles is not None and tile.label is not None and tile.label_start < tile.label_end:
            box = tile.label
            labels.append(_Layer(titles.label(tile.clip, box), box.x, box.y,
                                 tile.label_start, tile.label_end))
    for layer in [*labels, *layers]:
        args += _image_input(layer.path)
        graph += _layer_graph(k, layer, last, ox, oy, origin, fps, f"o{k}")
        last = f"o{k}"
        k += 1
    graph.append(f"[{last}]format=yuv420p,setsar=1[vout]")
    return args + ["-filter_complex", ";".join(graph), "-map", "[vout]",
                   "-frames:v", str(frames)]


def _stack_argv(spec: RenderSpec, plan: RenderPlan, seg: Segment,
                strip_paths: list[str], layers: Sequence[_Layer] = ()) -> list[str]:
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
    for k, layer in enumerate(layers, start=len(seg.strips)):
        args += _image_input(layer.path)
        graph += _layer_graph(k, layer, last, 0, 0, seg.start, fps, f"o{k}")
        last = f"o{k}"
    graph.append(f"[{last}]format=yuv420p,setsar=1[vout]")
    return args + ["-filter_complex", ";".join(graph), "-map", "[vout]",
                   "-frames:v", str(seg.frames)]


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
            # a moment with every tile on screen (the most, in a montage)
            at = min(poster_frame(plan, POSTER_AT) / plan.fps, max(0.0, duration - 0.05))
            run_ffmpeg(thumbnail_argv(tmp_out, tmp_poster, at, plan.width),
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
    return RenderResult(out_path, duration, plan.width, plan.height, poster_path,
                        tile_map(plan))

