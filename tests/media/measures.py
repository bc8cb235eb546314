"""Measurements the media tests make on outputs: the dominant frequency of the sound,
mean saturation and luma of a picture, the size of a white box, SSIM."""

from __future__ import annotations

import re
import subprocess

import numpy as np

from workers.media.ffmpeg import ffmpeg_path


def decode_sound(path: str, *, rate: int = 48000, stream: str = "a:0") -> np.ndarray:
    """The sound of ``path`` as mono float32 samples at ``rate`` Hz."""
    done = subprocess.run(
        [ffmpeg_path(), "-hide_banner", "-nostdin", "-v", "error", "-i", path,
         "-map", f"0:{stream}", "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"],
        capture_output=True, timeout=60, check=True)
    return np.frombuffer(done.stdout, np.float32)


def dominant_frequency(path: str, *, rate: int = 48000) -> float:
    """The frequency (Hz) with the most energy in the sound of ``path``."""
    samples = decode_sound(path, rate=rate)
    assert samples.size > rate // 10, "no sound to measure"
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


def mean_saturation_and_luma(frame: np.ndarray) -> tuple[float, float]:
    """HSV saturation (0..255) and BT.709 luma (0..255) averaged over an RGB frame."""
    rgb = frame.reshape(-1, 3).astype(float)
    top, bottom = rgb.max(axis=1), rgb.min(axis=1)
    saturation = np.where(top > 0, (top - bottom) / np.maximum(top, 1) * 255, 0)
    luma = rgb @ np.array([0.2126, 0.7152, 0.0722])
    return float(saturation.mean()), float(luma.mean())


def white_box(frame: np.ndarray, level: int = 128) -> tuple[int, int]:
    """Width and height (pixels) of the bright region of an RGB frame."""
    bright = frame.mean(axis=2) > level
    cols, rows = np.flatnonzero(bright.any(axis=0)), np.flatnonzero(bright.any(axis=1))
    assert cols.size and rows.size, "no bright region"
    return int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def ssim(a: str, b: str, *, size: str | None = None, at: float = 0.5) -> float:
    """ffmpeg's SSIM (All) of one frame of ``a`` against ``b`` at ``at`` seconds, with ``b``
    scaled to ``a``'s size (``size``: "WxH") by one bicubic scale."""
    scale = f"scale={size.replace('x', ':')}:flags=bicubic," if size else ""
    done = subprocess.run(
        [ffmpeg_path(), "-hide_banner", "-nostdin", "-ss", f"{at:.3f}", "-i", a,
         "-ss", f"{at:.3f}", "-i", b, "-filter_complex",
         f"[1:v]{scale}format=yuv420p[ref];[0:v]format=yuv420p[main];[main][ref]ssim",
         "-frames:v", "1", "-f", "null", "-"],
        capture_output=True, text=True, timeout=120)
    found = re.findall(r"All:([\d.]+)", done.stderr)
    assert found, done.stderr[-2000:]
    return float(found[-1])
