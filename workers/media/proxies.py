"""Cell-size proxies: decode a clip at full size once, then let every later render that
draws it small decode a copy a fraction of its size.

Decoding is most of a mash-up's cost (about 90 % of the floor at 100 clips), and a grid
tile is a small part of its clip: a 10×10 grid of 1280×720 clips draws each at 1/8 of its
size. A proxy is the clip's picture scaled by one of :data:`PROXY_SCALES` (the smallest
that still covers the largest tile the clip gets in the render), H.264 near-lossless,
with its frame times kept exactly, so a segment seeks and times it like the clip itself.
The ladder of scales means a re-render whose grid changed a little (one more clip
approved) still finds its proxies; a nudged offset, a changed gain, other labels, another
layout of the same tile size or a replaced clip (only its proxy is made again) all reuse
the rest.

Proxies live in a cache directory, named by a digest of the clip file's path, size and
modification time plus the scale, so a replaced file never meets a stale proxy. Several
renders and workers may share the directory: a proxy is written atomically, and an
exclusive lock per proxy makes one of them build it while the others wait and reuse it.
:func:`prune` drops what no render used for a while.

Intake builds a new take's proxies ahead (:func:`build_proxies` at :func:`likely_scales`:
the scales a grid of 16 to 100 clips on the campaign's canvas draws it at, all from one
decode), under the same names and locks, so the first render of a big grid finds them
instead of decoding every take whole at full size (most of its time).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from .ffmpeg import (
    FFmpegError,
    input_url,
    remove_quietly,
    replace_atomically,
    run_ffmpeg,
    temp_path_for,
)
from .layout import FINAL_GAP, LayoutError, grid_rects
from .plan import RenderPlan
from .probe import MEDIA_DEMUXERS, safe_input
from .spec import SpecError

log = logging.getLogger(__name__)

#: Scales of a clip's size a proxy may have (largest last). A tile needing more than the
#: largest is drawn from the clip: a proxy would save too little decoding to pay for itself.
PROXY_SCALES = (1 / 8, 1 / 6, 1 / 4, 1 / 3, 1 / 2)
#: Near-lossless: the proxy is scaled and encoded once more in the mash-up.
PROXY_PRESET, PROXY_CRF = "ultrafast", 12
#: Proxies unused this long are removed by :func:`prune` (when it is not told which files
#: are current: those of a current file stay).
KEEP_SECONDS = 14 * 24 * 3600
#: The grids intake builds proxies for (:func:`likely_scales`): from this many clips (a
#: smaller grid draws few clips, each large: cheap to render cold) to that many.
INTAKE_GRID_CLIPS = (16, 100)
#: Proxies of files a campaign no longer draws (a replaced take, a rejected clip) go once
#: unused this long: a render planned before the change may still be about to open them.
STALE_SECONDS = 3600


def proxy_scale(clip_w: int, clip_h: int, tile_w: int, tile_h: int) -> float | None:
    """The smallest proxy scale whose copy of a ``clip_w``×``clip_h`` clip still covers
    what a ``tile_w``×``tile_h`` tile shows of it (fitted, aspect kept); None when the
    tile needs more than the largest scale (or the clip's size is unknown)."""
    if clip_w <= 0 or clip_h <= 0 or tile_w <= 0 or tile_h <= 0:
        return None
    need = min(tile_w / clip_w, tile_h / clip_h)
    return next((s for s in PROXY_SCALES if s >= need), None)


def proxy_scales(plan: RenderPlan) -> dict[int, float]:
    """Clip index -> proxy scale, for every clip of ``plan`` that a proxy can serve: the
    scale covers the largest tile the clip gets in any segment."""
    largest: dict[int, tuple[int, int]] = {}
    for seg in plan.segments:
        for tile in seg.tiles:
            w, h = largest.get(tile.clip, (0, 0))
            largest[tile.clip] = (max(w, tile.rect.w), max(h, tile.rect.h))
    scales = {}
    for index, (w, h) in largest.items():
        clip = plan.clips[index]
        scale = proxy_scale(clip.width, clip.height, w, h)
        if scale is not None:
            scales[index] = scale
    return scales


def source_digest(clip_path: str) -> str:
    """Names the clip file as it is now: its path, size and modification time (hex, no
    hyphen: a cached file's name starts with it, then a hyphen)."""
    st = os.stat(clip_path)
    ident = f"{os.path.realpath(clip_path)}\0{st.st_size}\0{st.st_mtime_ns}"
    return hashlib.sha256(ident.encode()).hexdigest()[:24]


_source_digest = source_digest  # the name the portal imports


def proxy_name(clip_path: str, scale: float) -> str:
    """The cache file name of ``clip_path``'s proxy at ``scale`` (it changes whenever the
    file is replaced or rewritten)."""
    return f"{source_digest(clip_path)}-1of{round(1 / scale)}.mp4"


def render_proxy(clip_path: str, out_path: str, scale: float, *, keyint: int = 30,
                 timeout: float = 1800) -> None:
    """A picture-only copy of a clip scaled by ``scale`` (both sides even, aspect kept),
    its frame times kept exactly, a keyframe every ``keyint`` frames. Atomic."""
    tmp = temp_path_for(out_path)
    size = _scale_filter(scale)
    try:
        run_ffmpeg([
            "-threads", "1", *safe_input(clip_path, MEDIA_DEMUXERS), "-map", "0:v:0", "-an",
            "-vf", f"{size},setsar=1,format=yuv420p", "-fps_mode", "passthrough",
            "-c:v", "libx264", "-preset", PROXY_PRESET, "-crf", str(PROXY_CRF),
            "-g", str(keyint), "-threads", "1", "-map_metadata", "-1",
            "-f", "mp4", input_url(tmp)], timeout=timeout)
        replace_atomically(tmp, out_path)
    except BaseException:
        remove_quietly(tmp)
        raise


def likely_scales(clip_w: int, clip_h: int, canvas_w: int, canvas_h: int, *,
                  gap: int = FINAL_GAP, clips: tuple[int, int] = INTAKE_GRID_CLIPS,
                  ) -> tuple[float, ...]:
    """The proxy scales (smallest first) a grid of ``clips[0]`` to ``clips[1]`` clips
    (both included) on a ``canvas_w``×``canvas_h`` canvas with ``gap`` pixels between
    tiles (:func:`layout.grid_rects`) would draw a ``clip_w``×``clip_h`` clip at: what
    intake builds so the campaign's final grid finds its proxies made. A 1920×1080 clip
    on a 1920×1080 canvas: 1/4 (16-25 clips), 1/6 (26-49), 1/8 (50-100). Empty when every
    such tile needs more than the largest scale (a small clip) or the size is unknown."""
    scales = set()
    for n in range(max(1, clips[0]), clips[1] + 1):
        try:
            tile = grid_rects(n, canvas_w, canvas_h, gap=gap)[0]  # all tiles share a size
        except (LayoutError, ValueError):
            continue  # too many tiles for the canvas: no grid draws it
        scale = proxy_scale(clip_w, clip_h, tile.w, tile.h)
        if scale is not None:
            scales.add(scale)
    return tuple(sorted(scales))


def _proxy_graph(scales: Sequence[float]) -> tuple[str, list[str]]:
    """One filtergraph splitting the first video stream into a picture per scale, each
    filtered as :func:`render_proxy` filters its one (so their frames and times match);
    and the graph's output labels, in ``scales``' order."""
    labels = [f"p{k}" for k in range(len(scales))]
    chains = []
    for scale, label in zip(scales, labels, strict=True):
        chains.append(f"[s{label}]{_scale_filter(scale)},setsar=1,format=yuv420p[{label}]")
    split = f"[0:v:0]split={len(scales)}" + "".join(f"[s{label}]" for label in labels)
    return ";".join([split, *chains]), labels


def _scale_filter(scale: float) -> str:
    """Both sides times ``scale``, rounded to even, at least 2; area averaging."""
    return (f"scale=w='max(2\\,2*trunc(iw*{scale:.6f}/2+0.5))':"
            f"h='max(2\\,2*trunc(ih*{scale:.6f}/2+0.5))':flags=area")


def render_proxies(clip_path: str, outputs: Sequence[tuple[float, str]], *,
                   keyint: int = 30, timeout: float = 1800) -> None:
    """:func:`render_proxy` for several ``(scale, out_path)`` at once, from ONE decode of
    the clip: each output is encoded and timed exactly as :func:`render_proxy` makes it
    (same scale, encoder settings and frame times), so a render cannot tell them apart.
    Each output is written atomically; on any error none is left (FFmpegError)."""
    if len(outputs) == 1:
        render_proxy(clip_path, outputs[0][1], outputs[0][0], keyint=keyint, timeout=timeout)
        return
    graph, labels = _proxy_graph([scale for scale, _ in outputs])
    temps = [temp_path_for(path) for _, path in outputs]
    args = ["-threads", "1", *safe_input(clip_path, MEDIA_DEMUXERS), "-filter_complex", graph]
    for label, tmp in zip(labels, temps, strict=True):
        args += ["-map", f"[{label}]", "-an", "-fps_mode", "passthrough",
                 "-c:v", "libx264", "-preset", PROXY_PRESET, "-crf", str(PROXY_CRF),
                 "-g", str(keyint), "-threads", "1", "-map_metadata", "-1",
                 "-f", "mp4", input_url(tmp)]
    try:
        run_ffmpeg(args, timeout=timeout)
        for (_, path), tmp in zip(outputs, temps, strict=True):
            replace_atomically(tmp, path)
    except BaseException:
        for tmp in temps:
            remove_quietly(tmp)
        raise


def build_proxies(clip_path: str, cache_dir: str, scales: Iterable[float], *,
                  keyint: int = 30, timeout: float = 1800) -> list[str]:
    """Build ``clip_path``'s proxies at ``scales`` that ``cache_dir`` lacks, all from one
    decode (:func:`render_proxies`), under the names and locks :func:`ensure_proxy` uses,
    so a render finds them (or, building one itself now, is left to it: a proxy whose
    lock is held is skipped, never waited for). Returns the paths built. Raises
    FFmpegError, or OSError (the clip gone, the disk full)."""
    os.makedirs(cache_dir, exist_ok=True)
    with ExitStack() as held:
        todo: list[tuple[float, str]] = []
        for scale in sorted(set(scales)):
            path = os.path.join(cache_dir, proxy_name(clip_path, scale))
            if _touch(path):
                continue
            lock = held.enter_context(open(path + ".lock", "a"))
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a render builds it now
            if os.path.exists(path):  # built before the lock was ours
                continue
            remove_dead_temps(path)
            todo.append((scale, path))
        if todo:
            started = time.monotonic()
            render_proxies(clip_path, todo, keyint=keyint, timeout=timeout)
            log.info("proxies of %s at %s: %.2f s", clip_path,
                     ", ".join(f"1/{round(1 / s)}" for s, _ in todo), time.monotonic() - started)
        return [path for _, path in todo]


def ensure_proxy(clip_path: str, cache_dir: str, scale: float, *, keyint: int = 30,
                 timeout: float = 1800) -> tuple[str, bool]:
    """The path of ``clip_path``'s proxy at ``scale`` in ``cache_dir``, built when missing
    (by one caller at a time: others wait for it); and whether this call built it."""
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, proxy_name(clip_path, scale))
    if _touch(path):
        return path, False
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _touch(path):  # built while this one waited
            return path, False
        remove_dead_temps(path)
        started = time.monotonic()
        render_proxy(clip_path, path, scale, keyint=keyint, timeout=timeout)
        log.info("proxy of %s at 1/%d: %.2f s", clip_path, round(1 / scale),
                 time.monotonic() - started)
        return path, True


def remove_dead_temps(path: str) -> int:
    """Remove the temp files of ``path``'s proxy left by a writer that died mid-build.
    Call it holding the proxy's lock: no live writer is building it then. Returns how
    many went."""
    head, tail = os.path.split(path)
    stem = os.path.splitext(tail)[0]
    removed = 0
    for name in os.listdir(head):
        if name.startswith(f".{stem}.") and ".tmp" in name:
            remove_quietly(os.path.join(head, name))
            removed += 1
    if removed:
        log.info("proxy %s: removed %d temp file(s) of a build that died", tail, removed)
    return removed


def sweep_dead_temps(cache_dir: str) -> int:
    """Remove the temp files of proxy builds that died, in a whole cache folder: a build
    holds its proxy's lock, so a temp whose lock is free belongs to no one."""
    removed = 0
    if not os.path.isdir(cache_dir):
        return 0
    for name in os.listdir(cache_dir):
        if name.endswith(".lock"):
            with open(os.path.join(cache_dir, name), "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # being built now
                removed += remove_dead_temps(os.path.join(cache_dir, name[:-len(".lock")]))
    return removed


def _touch(path: str) -> bool:
    """Mark a proxy as used (for :func:`prune`); False when there is none."""
    try:
        os.utime(path)
        return True
    except FileNotFoundError:
        return False


def ensure_proxies(spec_paths: Mapping[int, str], scales: Mapping[int, float],
                   cache_dir: str, *, clips: Iterable[int] | None = None, jobs: int = 1,
                   keyint: int = 30, timeout: float = 1800, start: int = 0,
                   progress: Callable[[float], None] | None = None) -> dict[int, str]:
    """Clip index -> proxy path for ``clips`` (default: every clip in ``scales``), built
    ``jobs`` at a time where missing. ``spec_paths`` maps a clip index to its file.
    ``start`` rotates the order, so parallel renderers of one plan (its segments) build
    different proxies first instead of queueing on the same lock. Raises SpecError when a
    clip's file is gone, FFmpegError when a proxy cannot be made."""
    wanted = sorted(i for i in (scales if clips is None else clips) if i in scales)
    if wanted:
        shift = start % len(wanted)
        wanted = wanted[shift:] + wanted[:shift]
    done = [0]
    deadline = time.monotonic() + timeout

    def one(index: int) -> tuple[int, str]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise FFmpegError("proxies timed out", timed_out=True)
        try:
            path, _built = ensure_proxy(spec_paths[index], cache_dir, scales[index],
                                        keyint=keyint, timeout=left)
        except FileNotFoundError as exc:  # the clip went away after the plan was made
            raise SpecError(f"clips[{index}].path",
                            f"{spec_paths[index]} cannot be read: {exc.strerror}") from exc
        done[0] += 1
        if progress is not None:
            progress(done[0] / len(wanted))
        return index, path

    if jobs > 1 and len(wanted) > 1:
        with ThreadPoolExecutor(min(jobs, len(wanted))) as pool:
            return dict(pool.map(one, wanted))
    return dict(one(i) for i in wanted)


def missing(spec_paths: Mapping[int, str], scales: Mapping[int, float], cache_dir: str) -> int:
    """How many of the proxies ``scales`` asks for are not in ``cache_dir`` yet."""
    return sum(not os.path.exists(os.path.join(cache_dir, proxy_name(spec_paths[i], s)))
               for i, s in scales.items())


def _digest(name: str) -> str:
    """The :func:`source_digest` part of a proxy's (or its lock file's, or a cleaned
    take's: :func:`mixdown.cached_decode`) name."""
    return name.split("-", 1)[0]


def prune(cache_dir: str, keep_seconds: float = KEEP_SECONDS, now: float | None = None, *,
          current: Iterable[str] | None = None, stale_seconds: float = STALE_SECONDS) -> int:
    """Remove proxies (and their lock files) unused for ``keep_seconds``; with ``current``
    (the clip files the campaign draws or may draw: its approved takes and those awaiting
    moderation), those of any other file once unused for ``stale_seconds``, and those of
    current files never (intake built them for a render weeks away; at most one per
    scale a file). Returns how many files went."""
    now = time.time() if now is None else now
    keep = None
    if current is not None:
        keep = set()
        for path in current:
            try:
                keep.add(source_digest(path))
            except OSError:  # gone: its proxies are stale too
                pass
    removed = 0
    try:
        names = os.listdir(cache_dir)
    except FileNotFoundError:
        return 0
    for name in names:
        path = os.path.join(cache_dir, name)
        try:
            unused = now - os.stat(path).st_mtime
            if (keep is None and unused > keep_seconds) or (
                    keep is not None and _digest(name) not in keep and unused > stale_seconds):
                os.remove(path)
                removed += 1
        except FileNotFoundError:
            pass
    return removed
