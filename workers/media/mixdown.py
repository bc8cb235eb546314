"""The mix in numpy: each take decoded and cleaned once, pulled into time, placed and summed.

:func:`workers.media.render._mix_audio` used to sum the takes in ffmpeg filtergraphs, a
take with a time map first played through a hundred atempo segments in a pass of its own
(``timemap.warp_filter``). Here ffmpeg only decodes each take at the mix's rate, folds it
to mono and cleans it (hum notches, afftdn: :func:`sound.cleanup_filter`, unchanged) into
a pipe, one process per take, ``jobs`` side by side; the rest is numpy on float32:

- **time**: the take is read through its time map, or its drift's straight line
  (guide time -> clip time), by :func:`splice_warp`: runs of samples copied as recorded,
  joined by short crossfades where the wanted read position has moved more than
  :data:`SPLICE_TOLERANCE` from the one being read, at the lag (within
  :data:`SPLICE_SEARCH`) where the take is most like itself, so the splice falls
  between two alike periods of the voice. This is the synchronous overlap-add idea of
  WSOLA (Verhelst & Roelands, "An overlap-add technique based on waveform similarity
  (WSOLA) for high quality time-scale modification of speech", ICASSP 1993) with
  frames as long as the map allows: the pitch is kept (no resampling), and no sample is
  off the map by more than the tolerance (4 ms) outside a crossfade;
- **level and place**: gain, pan (:func:`sound.pan_gains`), the headroom, summed;
- **room**: the shared impulse (:func:`sound.room_impulse`) by FFT convolution
  (``scipy.signal.oaconvolve``, the same sum as ffmpeg's afir);
- the sum is written as a float WAV and measured by ffmpeg's ebur128 (EBU R128), as
  before; mastering (gain, limiter, codec) stays in :func:`render.render_audio`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np
from scipy.io import wavfile
from scipy.signal import oaconvolve

from .ffmpeg import (
    ffmpeg_report,
    input_url,
    remove_quietly,
    replace_atomically,
    run_ffmpeg,
    temp_path_for,
)
from .normalize import AUDIO_RATE, Loudness, parse_ebur128_summary
from .probe import MEDIA_DEMUXERS, safe_input
from .sound import cleanup_filter, pan_gains, room_impulse, to_mono_filter

#: how far (seconds) the read position may get from the map before a splice
SPLICE_TOLERANCE = 0.004
#: a splice lands within this (seconds) of the map, where the take is most like itself
SPLICE_SEARCH = 0.0035
#: the crossfade of a splice (seconds)
SPLICE_FADE = 0.010
#: takes decoded at a time per core (``jobs``): a decode reads its file and writes its
#: scratch file, and a thread's share of a busy machine's cores is per thread (each
#: thread keeps about 3 × 4 bytes × the mix's samples of buffers)
DECODES_PER_JOB = 2
#: the wanted read position is followed on a grid of this many seconds (the map is
#: piecewise linear with knots 0.25 s apart: a millisecond's grid loses nothing)
GRID_SECONDS = 0.001


def _read(x: np.ndarray, start: int, count: int) -> np.ndarray:
    """``x[start:start + count]`` (along axis 0), zeros where that is outside ``x``."""
    if start >= 0 and start + count <= x.shape[0]:
        return x[start:start + count]
    out = np.zeros((count, *x.shape[1:]), dtype=x.dtype)
    lo, hi = max(0, start), min(x.shape[0], start + count)
    if hi > lo:
        out[lo - start:hi - start] = x[lo:hi]
    return out


def _extended_interp(t: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Piecewise-linear ``fp(xp)`` at ``t``, extended beyond the ends at the end slopes."""
    out = np.interp(t, xp, fp)
    if xp.size >= 2:
        lo = (fp[1] - fp[0]) / (xp[1] - xp[0])
        hi = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
        out = np.where(t < xp[0], fp[0] + (t - xp[0]) * lo, out)
        out = np.where(t > xp[-1], fp[-1] + (t - xp[-1]) * hi, out)
    return out


def _next_violation(d: np.ndarray, start: int, e: float, limit: float) -> int:
    """The first index >= ``start`` where ``|d - e| > limit``, or ``d.size``."""
    size = 256
    while start < d.size:
        hit = np.flatnonzero(np.abs(d[start:start + size] - e) > limit)
        if hit.size:
            return start + int(hit[0])
        start += size
        size *= 2
    return d.size


def splice_warp(x: np.ndarray, out_knots: Sequence[float], in_knots: Sequence[float],
                n_out: int, rate: int = AUDIO_RATE, *, tolerance: float = SPLICE_TOLERANCE,
                search: float = SPLICE_SEARCH, fade: float = SPLICE_FADE,
                out: np.ndarray | None = None) -> np.ndarray:
    """``n_out`` samples whose sample n plays ``x`` near input position P(n), P the
    piecewise-linear map ``out_knots -> in_knots`` (sample positions, increasing,
    extended at the end slopes); ``x`` (L,) or (L, C) float32, the result the same
    dtype, (n_out,) or (n_out, C), zeros where P is outside ``x``.

    Runs of ``x`` are copied as they are (pitch and timbre kept) while the copy's read
    position stays within ``tolerance`` seconds of P; there it jumps to a lag within
    ``search`` seconds of P chosen by normalised cross-correlation with what it was
    playing (WSOLA's waveform similarity, Verhelst & Roelands 1993), through a
    raised-cosine crossfade of ``fade`` seconds. Outside the crossfades no sample is
    more than ``tolerance`` off the map; a map of slope 1 is one copy. ``out``: an
    array of the result's shape and dtype to write every sample of it into (a buffer
    kept from one take to the next)."""
    if len(out_knots) != len(in_knots) or not len(out_knots):
        raise ValueError("the map needs as many output as input knots, at least one")
    go = np.asarray(out_knots, dtype=float)
    gi = np.asarray(in_knots, dtype=float)
    if go.size == 1:
        go, gi = np.array([go[0], go[0] + 1.0]), np.array([gi[0], gi[0] + 1.0])
    if out is None:
        out = np.empty((n_out, *x.shape[1:]), dtype=x.dtype)
    elif out.shape != (n_out, *x.shape[1:]) or out.dtype != x.dtype:
        raise ValueError(f"out must be {(n_out, *x.shape[1:])} {x.dtype}")
    if n_out <= 0:
        return out
    step = max(1, round(GRID_SECONDS * rate))
    grid = np.arange(0, n_out + step, step, dtype=float)
    d = _extended_interp(grid, go, gi) - grid  # wanted read offset on the grid
    limit, reach = tolerance * rate, max(1, round(search * rate))
    width = max(2, round(fade * rate))
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(width) + 0.5) / width)).astype(x.dtype)
    if x.ndim > 1:
        ramp = ramp[:, None]

    def mono(start: int, count: int) -> np.ndarray:  # only where a splice looks
        part = _read(x, start, count).astype(np.float64)
        return part if part.ndim == 1 else part.sum(axis=1)

    n, e = 0, int(round(d[0]))
    while n < n_out:
        j = _next_violation(d, n // step + 1, e, limit)
        m = min(n_out, j * step)
        if m > n:
            out[n:m] = _read(x, n + e, m - n)
        if m >= n_out:
            break
        target = int(round(d[j]))
        ref = mono(m + e, width)
        cand = mono(m + target - reach, width + 2 * reach)
        corr = np.correlate(cand, ref, "valid")  # 2 * reach + 1 lags
        energy = np.cumsum(np.concatenate([[0.0], cand * cand]))
        energy = energy[width:] - energy[:-width]
        score = corr / np.sqrt(energy + 1e-12)
        k = int(np.argmax(score)) if np.any(energy > 1e-12) else reach
        e_new = target - reach + k
        w = min(width, n_out - m)
        out[m:m + w] = (_read(x, m + e, w) * (1 - ramp[:w])
                        + _read(x, m + e_new, w) * ramp[:w])
        n, e = m + w, e_new
    return out


def room_impulse_float(rt60: float, wet_db: float, rate: int = AUDIO_RATE) -> np.ndarray:
    """The shared room's impulse (L, 2) float32 as ffmpeg's afir reads the 16-bit WAV
    that :func:`sound.write_room_impulse` writes (samples / 32768)."""
    return (room_impulse(rt60, wet_db, rate=rate).astype(np.float32) / 32768.0)


def convolve_room(dry: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """``dry`` (2, N) float32 with the room ``ir`` (L, 2): each ear hears its own dry sound
    plus the room's tail (``ir`` past its head) of both ears' sum, ``(left + right) / 2``
    (overlap-add FFT convolution), cut to N samples, so a take panned hard left still
    rings in the right ear, as in a room (per channel, the right ear was silent); a
    centred take hears what a per-channel convolution gave. What
    :func:`sound.room_filter` gives in a filtergraph."""
    mid = dry.mean(axis=0)
    out = np.empty_like(dry)
    for ch in range(dry.shape[0]):
        out[ch] = (oaconvolve(mid, ir[:, ch])[: dry.shape[1]] + dry[ch] - mid)
    return out


def decode_argv(path: str, trim: float, seconds: float | None, chain: str) -> list[str]:
    """ffmpeg arguments writing the sound of ``path`` from clip time ``trim`` for
    ``seconds`` (None: to its end) at the mix's rate, through ``chain`` (filter text
    after the stereo float conversion, or ""), as raw f32le to stdout. Numbers only in
    the filter text; the path is its own argument."""
    seek = ["-ss", f"{trim:.6f}"] if trim > 0 else []
    stereo = f"aresample={AUDIO_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo"
    limit = ["-t", f"{max(0.0, seconds):.6f}"] if seconds is not None else []
    return ["-v", "error", *seek, *safe_input(path, MEDIA_DEMUXERS), "-map", "0:a:0",
            "-vn", "-sn", "-dn", "-af", stereo + (f",{chain}" if chain else ""),
            *limit, "-f", "f32le", "-c:a", "pcm_f32le", "pipe:1"]


def _decode(args: list[str], channels: int, timeout: float) -> np.ndarray:
    """Run :func:`decode_argv`'s ``args`` with the output to a scratch file instead of
    its pipe (a pipe makes ffmpeg wait on Python at every 8 KiB packet, which on a busy
    machine cost the mix several times its CPU time in waiting), read back as float32
    (N,) or (N, ``channels``)."""
    import os
    import tempfile

    fd, scratch = tempfile.mkstemp(prefix="tutti-take-", suffix=".f32")
    os.close(fd)
    try:
        run_ffmpeg([*args[:-1], input_url(scratch)], timeout=timeout)
        x = np.fromfile(scratch, dtype="<f4")
    finally:
        remove_quietly(scratch)
    x = x[: x.size - x.size % channels]
    return x if channels == 1 else x.reshape(-1, channels)


def cached_decode(path: str, chain: str, channels: int, timeout: float,
                  cache_dir: str) -> np.ndarray:
    """The whole sound of ``path`` through ``chain`` (:func:`decode_argv` from 0 to its
    end), kept in ``cache_dir`` as a .npy named by the file as it is now (path, size,
    modification time: :func:`proxies.source_digest`, so a replaced file never meets a
    stale copy, and :func:`proxies.prune` drops it with the clip's proxies) and by the
    filter text; a later mix with other levels, pan, offset or time map reads it back
    instead of decoding and cleaning the take again. Written atomically."""
    import hashlib
    import os

    from .proxies import source_digest

    key = hashlib.sha256(f"{AUDIO_RATE}\0{channels}\0{chain}".encode()).hexdigest()[:16]
    full = os.path.join(cache_dir, f"{source_digest(path)}-sound-{key}.npy")
    try:
        x = np.load(full, allow_pickle=False)
        os.utime(full)  # used: pruned only once unused for a while
        if x.dtype == np.float32 and x.ndim == (1 if channels == 1 else 2):
            return x
    except (OSError, ValueError, EOFError):
        pass
    x = _decode(decode_argv(path, 0.0, None, chain), channels, timeout)
    tmp = temp_path_for(full)
    try:
        np.save(tmp, x, allow_pickle=False)
        replace_atomically(tmp, full)
    except BaseException:
        remove_quietly(tmp)
        raise
    return x


def take_samples(source, total: float, timeout: float, cache_dir: str | None = None,
                 buffers: dict | None = None) -> tuple[np.ndarray, tuple[float, float]]:
    """One source (``render.ClipSource``) as heard in the mix: (samples (N,) or (N, 2)
    float32 on the guide's timeline from t=0, N = ``total`` × rate; (left, right) gains
    with its level). Cleaned and folded to mono as :func:`sound.take_filter` says, read
    through its time map or its drift (:func:`splice_warp`). With ``cache_dir``, the
    take, when it is cleaned, is decoded whole once and kept (:func:`cached_decode`).
    ``buffers``: the result is written into ``buffers[shape]`` (made when missing), so
    a thread that mixes many takes allocates (and faults in) its memory once."""
    c = source.clip
    rate = AUDIO_RATE
    cleanup = cleanup_filter(c.hum_hz, c.denoise, c.noise_floor_db)
    mono = bool(cleanup) or c.pan != 0.0
    chain = ",".join(f for f in (to_mono_filter() if mono else "", cleanup) if f)
    trim = source.trim
    n_out = round(total * rate)
    if c.time_map:
        guide = np.array([k[0] for k in c.time_map], dtype=float)
        clip = np.array([k[1] for k in c.time_map], dtype=float)
    else:
        guide = np.array([0.0, 1.0])
        clip = np.array([c.offset, c.offset + source.speed])
    # decoded up to a second past what the mix plays of it (to its end when that is
    # near: afftdn treats a take's last 25 ms as the full decode does)
    end_clip = float(_extended_interp(np.array([total]), guide, clip)[0]) + 1.0
    seconds = end_clip - trim if end_clip < source.duration - 1.0 else None
    if cache_dir is not None and cleanup:  # (decoding alone is cheap: not kept)
        x = cached_decode(c.path, chain, 1 if mono else 2, timeout, cache_dir)
        trim = 0.0
    else:
        x = _decode(decode_argv(c.path, trim, seconds, chain), 1 if mono else 2, timeout)
    shape = (n_out,) if x.ndim == 1 else (n_out, x.shape[1])
    out = None
    if buffers is not None:
        out = buffers.get(shape)
        if out is None:
            out = buffers[shape] = np.empty(shape, dtype=np.float32)
    y = splice_warp(x.astype(np.float32, copy=False), guide * rate, (clip - trim) * rate,
                    n_out, rate, out=out)
    level = 10 ** (c.gain_db / 20)
    left, right = pan_gains(c.pan) if mono else (1.0, 1.0)
    return y, (left * level, right * level)


def mix_to_wav(sources: Sequence, total: float, dst: str, timeout: float,
               progress: Callable[[float], None], *, guide: tuple[str, float, float] | None,
               room: tuple[float, float] | None, voices: int | None, jobs: int,
               cache_dir: str | None = None) -> Loudness:
    """The sum of ``sources`` (``render.ClipSource``: each by :func:`take_samples`,
    :data:`DECODES_PER_JOB` × ``jobs`` at a time) with ``-10 log10(voices)`` dB of
    headroom, through the ``room``
    ((reverberation s, wet dB): :func:`convolve_room`), with the ``guide`` ((path,
    guide dB, mix dB)) under it, ``total`` seconds, as a stereo float WAV at ``dst``
    (atomic), measured by ffmpeg's ebur128. ``cache_dir``: the cleaned takes kept
    there (:func:`cached_decode`). Raises FFmpegError when a take cannot be decoded or
    the measurement fails."""
    import time

    deadline = time.monotonic() + timeout
    n = round(total * AUDIO_RATE)
    mix = np.zeros((2, n), dtype=np.float32)  # channel-major: each add runs on contiguous rows
    lock = threading.Lock()

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    mine = threading.local()  # each thread's buffers, kept from one take to the next

    def add(source) -> None:
        if not hasattr(mine, "buffers"):
            mine.buffers = {}
            mine.scaled = np.empty(n, dtype=np.float32)
        y, gains = take_samples(source, total, left(), cache_dir, mine.buffers)
        for ch in range(2):
            np.multiply(y if y.ndim == 1 else y[:, ch], np.float32(gains[ch]),
                        out=mine.scaled)
            with lock:
                np.add(mix[ch], mine.scaled, out=mix[ch])

    # DECODES_PER_JOB takes decoding per core: each decode also waits on its files.
    # ``progress`` is called from this thread only: the render's callback reads the
    # database through the task's application context, which the pool's threads lack.
    with ThreadPoolExecutor(max(1, jobs * DECODES_PER_JOB)) as pool:
        futures = [pool.submit(add, s) for s in sources]
        try:
            for done, future in enumerate(as_completed(futures), 1):
                future.result()
                progress(0.9 * done / max(1, len(sources)))
        except BaseException:
            for future in futures:  # a failed take or a cancel: stop the queued decodes
                future.cancel()
            raise
    count = voices or len(sources)
    headroom = -10 * math.log10(count) if count else 0.0
    mix_db = headroom + (guide[2] if guide is not None else 0.0)
    mix *= np.float32(10 ** (mix_db / 20))
    if room is not None and sources:
        mix = convolve_room(mix, room_impulse_float(*room))
    if guide is not None:
        args = decode_argv(guide[0], 0.0, total, "")
        g = _read(_decode(args, 2, left()), 0, n)
        mix += np.float32(10 ** (guide[1] / 20)) * g.T
    tmp = temp_path_for(dst)
    try:
        wavfile.write(tmp, AUDIO_RATE, np.ascontiguousarray(mix.T))
        replace_atomically(tmp, dst)
    except BaseException:
        remove_quietly(tmp)
        raise
    status, text = ffmpeg_report(["-v", "info", *safe_input(dst, ("wav",)), "-af",
                                  "ebur128=peak=true:framelog=quiet", "-f", "null", "-"],
                                 timeout=left())
    progress(1.0)
    return parse_ebur128_summary(status, text)

