"""Bench clips: 1280x720, 30 fps, 12 s, H.264 + AAC, like normalized phone takes.

A few distinct clips (a moving test pattern with camera-like grain, hue-shifted, and a
tone each) are encoded once into a cache directory and reused under N names (hard links):
decoding cost does not depend on which file a name points to, and building 100 distinct
720p clips would take longer than the benchmark itself.
"""

from __future__ import annotations

import os
import subprocess

from workers.media.ffmpeg import ffmpeg_path

DISTINCT = 8


def clip_path(cache: str, k: int, width: int, height: int, fps: int, seconds: float) -> str:
    return os.path.join(cache, f"take-{k}-{width}x{height}-{fps}-{seconds:g}.mp4")


def make_clip(path: str, k: int, width: int, height: int, fps: int, seconds: float) -> None:
    if os.path.exists(path):
        return
    video = (f"testsrc2=s={width}x{height}:r={fps}:d={seconds},hue=h={k * 45},"
             f"noise=alls=6:allf=t")
    tmp = path + ".tmp.mp4"
    subprocess.run(
        [ffmpeg_path(), "-hide_banner", "-nostdin", "-y", "-v", "error",
         "-f", "lavfi", "-i", video,
         "-f", "lavfi", "-i", f"sine=frequency={220 + 55 * k}:sample_rate=48000:d={seconds}",
         "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-g", str(2 * fps),
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "160k", "-shortest",
         "-movflags", "+faststart", tmp],
        check=True, stdin=subprocess.DEVNULL, timeout=4 * 3600)
    os.replace(tmp, path)


def corpus(cache: str, n: int, *, width: int = 1280, height: int = 720, fps: int = 30,
           seconds: float = 12.0) -> list[str]:
    """``n`` clip paths (hard links to DISTINCT encoded takes: distinct paths, so nothing
    that caches per file, such as proxies, sees through them)."""
    os.makedirs(cache, exist_ok=True)
    paths = []
    for i in range(n):
        k = i % DISTINCT
        src = clip_path(cache, k, width, height, fps, seconds)
        make_clip(src, k, width, height, fps, seconds)
        link = os.path.join(cache, f"take{i:03d}-{width}x{height}-{fps}-{seconds:g}.mp4")
        if not os.path.lexists(link):
            os.link(src, link)
        paths.append(link)
    return paths
