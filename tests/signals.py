"""Synthetic signals shared by the sync tests."""

from __future__ import annotations

import numpy as np


def tone_melody(seconds: float, seed: int, rate: int) -> np.ndarray:
    """A synth line of pure tones: random semitones of 220 Hz over two octaves, each from
    phase 0 with an exponential decay (sharp attacks), 0.15-0.5 s long, 0.02-0.2 s apart.
    Two of them share every pitch and attack shape: the hardest unrelated pair for sync."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    out = np.zeros_like(t)
    start = 0.3
    while start < seconds - 0.3:
        length = rng.uniform(0.15, 0.5)
        freq = 220 * 2 ** (rng.integers(0, 24) / 12)
        idx = (t >= start) & (t < start + length)
        local = t[idx] - start
        out[idx] += np.sin(2 * np.pi * freq * local) * np.exp(-local * 6)
        start += length + rng.uniform(0.02, 0.2)
    return (0.4 * out / np.abs(out).max()).astype(np.float32)


def write_wav(path, x: np.ndarray, rate: int) -> None:
    """``x`` (mono, float, -1..1; clipped) as a 16-bit PCM WAV file at ``rate`` Hz."""
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
