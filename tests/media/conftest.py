"""Media fixtures: tiny clips and hostile files generated with ffmpeg's lavfi sources.

Self-contained (only ffmpeg, numpy and pytest), so it can move to tests/conftest.py
for the web and worker tests. Everything is session-scoped and cached by its
arguments: each distinct clip is encoded once per test run.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workers.media.ffmpeg import ffmpeg_path

#: lavfi colour names used by the tests and their RGB values
COLOURS = {
    "red": (255, 0, 0),
    "lime": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "white": (255, 255, 255),
    "magenta": (255, 0, 255),
    "black": (0, 0, 0),
}


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"fixture ffmpeg failed: {' '.join(argv)}\n"
                           f"{done.stderr.decode(errors='replace')[-2000:]}")


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    return ffmpeg_path()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def make_clip(media_dir: Path, ffmpeg_exe: str) -> Callable[..., str]:
    """Factory for small test clips; returns the path.

    ``color`` gives a solid colour (``testsrc2`` pattern when None); with ``color_after``
    and ``switch_at`` the colour changes at that time. ``audio`` adds a sine tone of
    ``freq`` Hz at ``volume_db``; ``rotation`` tags the video with a display matrix as
    a phone does (clockwise degrees, as MediaInfo.rotation reports it); ``container``
    is "mp4", "mov", "mkv", "webm" or "webm-live" (a WebM without duration, like a
    browser's MediaRecorder writes).
    """
    cache: dict[str, str] = {}

    def make(*, width: int = 160, height: int = 90, duration: float = 2.0, fps: int = 25,
             color: str | None = None, color_after: str | None = None,
             switch_at: float = 1.0, audio: bool = True, freq: float = 440.0,
             volume_db: float = -12.0, rotation: int = 0, container: str = "mp4") -> str:
        key = json.dumps([width, height, duration, fps, color, color_after, switch_at, audio,
                          freq, volume_db, rotation, container])
        if key in cache:
            return cache[key]
        digest = hashlib.sha1(key.encode()).hexdigest()[:10]
        ext = {"webm-live": "webm"}.get(container, container)
        path = media_dir / f"clip-{digest}.{ext}"
        size = f"{width}x{height}"
        if color is None:
            video = f"testsrc2=s={size}:r={fps}:d={duration}"
        elif color_after is None:
            video = f"color=c={color}:s={size}:r={fps}:d={duration}"
        else:
            video = (f"color=c={color}:s={size}:r={fps}:d={switch_at}[a];"
                     f"color=c={color_after}:s={size}:r={fps}:d={duration - switch_at}[b];"
                     "[a][b]concat=n=2:v=1:a=0")
        argv = [ffmpeg_exe, "-hide_banner", "-nostdin", "-y",
                "-filter_complex", f"{video}[v]"]
        if audio:
            argv += ["-f", "lavfi", "-i",
                     f"sine=frequency={freq}:sample_rate=48000:duration={duration}"]
        argv += ["-map", "[v]"]
        if audio:
            argv += ["-map", "0:a", "-af", f"volume={volume_db}dB"]
        if container in ("webm", "webm-live"):
            argv += ["-c:v", "libvpx", "-b:v", "200k", "-c:a", "libopus"]
            if container == "webm-live":
                argv += ["-live", "1"]
        else:
            argv += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                     "-c:a", "aac"]
        target = path if not rotation else path.with_name(f"norot-{path.name}")
        _run([*argv, "-t", str(duration), str(target)])
        if rotation:
            # ffmpeg's -display_rotation is counter-clockwise, a phone's tag clockwise
            _run([ffmpeg_exe, "-hide_banner", "-nostdin", "-y",
                  "-display_rotation", str(-rotation), "-i", str(target),
                  "-c", "copy", str(path)])
        cache[key] = str(path)
        return str(path)

    return make


@pytest.fixture(scope="session")
def make_sample(media_dir: Path, ffmpeg_exe: str, make_clip: Callable[..., str]) -> Callable[
        [str], str]:
    """Factory for files that are not (good) videos, by kind: png, jpeg, text, html, pdf,
    zip, wav, mp3, m4a, mka_audio, nut, empty, truncated_mp4, garbage."""
    cache: dict[str, str] = {}

    def lavfi(out: Path, *args: str) -> None:
        _run([ffmpeg_exe, "-hide_banner", "-nostdin", "-y", *args, str(out)])

    def make(kind: str) -> str:
        if kind in cache:
            return cache[kind]
        ext = {"text": "txt", "truncated_mp4": "mp4", "garbage": "mp4", "empty": "mp4",
               "mka_audio": "mka", "jpeg": "jpg"}.get(kind, kind)
        path = media_dir / f"sample-{kind}.{ext}"
        tone = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=1"]
        if kind in ("png", "jpeg"):
            lavfi(path, "-f", "lavfi", "-i", "testsrc2=s=64x36", "-frames:v", "1")
        elif kind == "text":
            path.write_text("name,part\nAna,alto\n" * 50, encoding="utf-8")
        elif kind == "html":
            path.write_text("<!doctype html><html><body>Hello</body></html>\n")
        elif kind == "pdf":
            path.write_bytes(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n")
        elif kind == "zip":
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr("video.mp4", b"not really")
        elif kind in ("wav", "mp3", "m4a", "mka_audio"):
            codec = {"wav": "pcm_s16le", "mp3": "libmp3lame", "m4a": "aac",
                     "mka_audio": "libopus"}[kind]
            lavfi(path, *tone, "-c:a", codec)
        elif kind == "nut":
            lavfi(path, "-f", "lavfi", "-i", "testsrc2=s=64x36:d=1", "-c:v", "mpeg4")
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "truncated_mp4":
            whole = Path(make_clip(duration=2.0)).read_bytes()
            path.write_bytes(whole[: len(whole) // 3])  # moov is at the end: it is lost
        elif kind == "garbage":
            rng = np.random.default_rng(7)
            path.write_bytes(rng.integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes())
        else:
            raise ValueError(f"unknown sample kind {kind!r}")
        cache[kind] = str(path)
        return str(path)

    return make


@pytest.fixture(scope="session")
def read_frame(ffmpeg_exe: str) -> Callable[[str, float], np.ndarray]:
    """Decode the frame shown at ``t`` seconds to an (height, width, 3) uint8 RGB array."""

    def read(path: str, t: float) -> np.ndarray:
        done = subprocess.run(
            [ffmpeg_exe, "-hide_banner", "-nostdin", "-v", "error", "-ss", f"{t:.3f}",
             "-i", path, "-frames:v", "1", "-c:v", "png", "-f", "image2pipe", "-"],
            capture_output=True, timeout=60, check=True,
        )
        with Image.open(io.BytesIO(done.stdout)) as image:
            return np.asarray(image.convert("RGB"))

    return read


def region_colour(frame: np.ndarray, x: int, y: int, w: int, h: int,
                  margin: int = 4) -> tuple[int, int, int]:
    """Median RGB of a rectangle's inside (a margin away from its edges)."""
    inner = frame[y + margin: y + h - margin, x + margin: x + w - margin]
    return tuple(int(v) for v in np.median(inner.reshape(-1, 3), axis=0))


@pytest.fixture(scope="session")
def colour_of() -> Callable[..., tuple[int, int, int]]:
    """``colour_of(frame, x, y, w, h)``: the median RGB inside a rectangle."""
    return region_colour


@pytest.fixture(scope="session")
def close_to() -> Callable[[tuple[int, ...], tuple[int, ...]], bool]:
    """``close_to(rgb, expected, tol=40)``: colours equal within compression error."""

    def close(rgb: tuple[int, ...], expected: tuple[int, ...] | str, tol: int = 40) -> bool:
        if isinstance(expected, str):
            expected = COLOURS[expected]
        return all(abs(a - b) <= tol for a, b in zip(rgb, expected, strict=True))

    return close
