"""A picture of a sync for the organizer: the guide, the clip moved by the offset, the evidence.

Three panels drawn with Pillow: the guide's waveform envelope on top, the clip shifted by the
chosen offset below it (so that matching notes stand one above the other), and the coarse
correlation curve over every candidate offset with the chosen one marked. A clip whose curve
has one clear peak is synced; several peaks of similar height mean "look at it".
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

from .align import correlation_curve, max_clip_seconds
from .align.features import ANALYSIS_RATE
from .audio import decode_audio
from .ffmpeg import temp_path_for

BG = (255, 255, 255)
GRID = (225, 225, 225)
TEXT = (40, 40, 40)
GUIDE = (40, 90, 170)
CLIP = (210, 110, 30)
CURVE = (90, 90, 90)
MARK = (200, 30, 30)


def _envelope(x: np.ndarray, t0: float, t1: float, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-column min and max of ``x`` over [t0, t1) seconds; zeros outside the signal."""
    lo = np.zeros(cols)
    hi = np.zeros(cols)
    edges = np.linspace(t0, t1, cols + 1) * ANALYSIS_RATE
    for i in range(cols):
        a, b = int(max(0, edges[i])), int(min(len(x), edges[i + 1]))
        if b > a:
            seg = x[a:b]
            lo[i], hi[i] = float(seg.min()), float(seg.max())
    return lo, hi


def _draw_wave(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], lo: np.ndarray,
               hi: np.ndarray, colour: tuple[int, int, int], label: str) -> None:
    x0, y0, x1, y1 = box
    mid = (y0 + y1) / 2
    scale = max(float(np.abs(lo).max()), float(np.abs(hi).max()), 1e-6)
    half = (y1 - y0) / 2 - 2
    draw.line([(x0, mid), (x1, mid)], fill=GRID)
    for i in range(len(lo)):
        draw.line([(x0 + i, mid - hi[i] / scale * half), (x0 + i, mid - lo[i] / scale * half)],
                  fill=colour)
    draw.text((x0 + 4, y0 + 2), label, fill=TEXT)


def render_sync_plot(guide_path: str, clip_path: str, offset_seconds: float, out_png: str, *,
                     width: int = 900, height: int = 320) -> None:
    """Write a PNG showing the guide, the clip shifted by ``offset_seconds`` and the evidence."""
    guide = decode_audio(guide_path, sample_rate=ANALYSIS_RATE)
    clip = decode_audio(clip_path, sample_rate=ANALYSIS_RATE,
                        max_seconds=max_clip_seconds(len(guide) / ANALYSIS_RATE) + 1)
    lags, scores = correlation_curve(guide, clip, ANALYSIS_RATE)

    img = Image.new("RGB", (width, height), BG)
    draw = ImageDraw.Draw(img)
    margin = 8
    cols = width - 2 * margin
    panel = (height - 4 * margin) // 3
    # guide time axis: from the earlier of the two starts to the later of the two ends
    gdur = len(guide) / ANALYSIS_RATE
    cdur = len(clip) / ANALYSIS_RATE
    t0 = min(0.0, -offset_seconds)
    t1 = max(gdur, cdur - offset_seconds)
    if t1 <= t0:
        t1 = t0 + 1.0
    glo, ghi = _envelope(guide, t0, t1, cols)
    clo, chi = _envelope(clip, t0 + offset_seconds, t1 + offset_seconds, cols)
    y = margin
    _draw_wave(draw, (margin, y, margin + cols, y + panel), glo, ghi, GUIDE,
               f"guide ({gdur:.1f} s)")
    y += panel + margin
    _draw_wave(draw, (margin, y, margin + cols, y + panel), clo, chi, CLIP,
               f"clip shifted by {offset_seconds:+.3f} s")
    # seconds grid across both waveform panels
    step = max(1.0, float(10 ** np.floor(np.log10(max(t1 - t0, 1.0) / 2))))
    for s in np.arange(np.ceil(t0 / step) * step, t1, step):
        x = margin + (s - t0) / (t1 - t0) * cols
        draw.line([(x, margin), (x, y + panel)], fill=GRID)

    y += panel + margin
    box = (margin, y, margin + cols, y + panel)
    draw.rectangle(box, outline=GRID)
    if len(scores) > 1:
        sc = np.asarray(scores, dtype=float)
        # one value per column: the max over the lags the column covers, so peaks stay visible
        idx = np.linspace(0, len(sc), cols + 1).astype(int)
        col = np.array([sc[idx[i]:max(idx[i] + 1, idx[i + 1])].max() for i in range(cols)])
        lo, hi = float(col.min()), float(col.max())
        span = max(hi - lo, 1e-9)
        pts = [(margin + i, y + panel - 2 - (v - lo) / span * (panel - 4))
               for i, v in enumerate(col)]
        draw.line(pts, fill=CURVE)
        x = margin + (offset_seconds - lags[0]) / max(lags[-1] - lags[0], 1e-9) * cols
        if margin <= x <= margin + cols:
            draw.line([(x, y), (x, y + panel)], fill=MARK, width=2)
        draw.text((margin + 4, y + 2), f"evidence over offsets {lags[0]:+.0f} .. "
                  f"{lags[-1]:+.0f} s; red: {offset_seconds:+.3f} s", fill=TEXT)

    tmp = temp_path_for(out_png)
    try:
        img.save(tmp, format="PNG")
        os.replace(tmp, out_png)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


LISTEN_RATE = 24000


def sync_listen_wav(guide_path: str, clip_path: str, offset_seconds: float, *,
                    start_seconds: float = 0.0, seconds: float = 20.0) -> bytes:
    """A stereo WAV (16-bit, :data:`LISTEN_RATE` Hz) to check a sync by ear: the guide in the
    left ear and the clip's sound in the right, the clip moved by ``offset_seconds`` (the clip
    time at which the guide's t=0 occurs), from guide time ``start_seconds`` for ``seconds``.

    Each side is brought to the same loudness (RMS), so a quiet take or a loud guide does not
    hide the other; where the clip has not started or has ended, its side is silent. Raises
    :class:`~workers.media.audio.NoAudio` when either file has no sound, and
    :class:`~workers.media.ffmpeg.FFmpegError` when one cannot be decoded."""
    import io
    import wave

    start = max(0.0, float(start_seconds))
    seconds = float(np.clip(seconds, 1.0, 60.0))
    n = int(seconds * LISTEN_RATE)
    guide = decode_audio(guide_path, sample_rate=LISTEN_RATE, max_seconds=start + seconds)
    left = np.zeros(n, np.float32)
    part = guide[int(start * LISTEN_RATE):][:n]
    left[: len(part)] = part
    # clip time offset + t holds guide time t
    clip_from = float(offset_seconds) + start
    clip = decode_audio(clip_path, sample_rate=LISTEN_RATE,
                        max_seconds=max(0.0, clip_from) + seconds)
    right = np.zeros(n, np.float32)
    a = int(round(clip_from * LISTEN_RATE))
    src_lo, dst_lo = max(0, a), max(0, -a)
    take = clip[src_lo:src_lo + n - dst_lo]
    right[dst_lo:dst_lo + len(take)] = take

    def level(x: np.ndarray) -> np.ndarray:
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        return x * (0.1 / rms) if rms > 1e-5 else x

    stereo = np.clip(np.stack([level(left), level(right)], axis=1), -1.0, 1.0)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(LISTEN_RATE)
        w.writeframes((stereo * 32767).astype("<i2").tobytes())
    return buf.getvalue()
