"""The phone clips the intake benchmark normalizes, generated once by ffmpeg (cached):
1080p30 H.264, 4K HEVC 10-bit HLG (as an iPhone records by default), 720p VFR (a screen
recording alternating 60 and 10 fps), at the bit rates phones use (17, 40 and 8 Mb/s). A
moving test pattern with a little noise, so the decoders have real work, and a tone."""

from __future__ import annotations

import os
import subprocess

from workers.media.ffmpeg import ffmpeg_path

#: name -> (description, video source filter, encoder arguments, container)
KINDS = {
    "1080p30 H.264": (
        "testsrc2=s=1920x1080:r=30,noise=alls=6:allf=t",
        ["-c:v", "libx264", "-preset", "veryfast", "-b:v", "17M", "-maxrate", "20M",
         "-bufsize", "34M", "-pix_fmt", "yuv420p"],
        "mp4"),
    "4K HEVC 10-bit HLG": (
        "testsrc2=s=3840x2160:r=30,noise=alls=6:allf=t,"
        "setparams=color_trc=bt709:color_primaries=bt709:colorspace=bt709:range=tv,"
        "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt2020,"
        "zscale=t=arib-std-b67:m=bt2020nc:r=tv:npl=100,format=yuv420p10le",
        ["-c:v", "libx265", "-preset", "ultrafast", "-b:v", "40M",
         "-x265-params", "log-level=error",
         "-tag:v", "hvc1", "-colorspace", "bt2020nc", "-color_primaries", "bt2020",
         "-color_trc", "arib-std-b67"],
        "mov"),
    "720p VFR phone": (
        # 60 fps for half of each second, 10 fps for the other half
        "testsrc2=s=1280x720:r=60,noise=alls=6:allf=t,"
        "select='lt(mod(t\\,1)\\,0.5)+not(mod(n\\,6))'",
        ["-c:v", "libx264", "-preset", "veryfast", "-b:v", "8M", "-maxrate", "10M",
         "-bufsize", "16M", "-pix_fmt", "yuv420p", "-fps_mode", "vfr"],
        "mp4"),
}


def corpus(cache: str, seconds: float) -> dict[str, str]:
    """Name -> path of each benchmark clip (``seconds`` long), made if missing."""
    os.makedirs(cache, exist_ok=True)
    paths = {}
    for k, (name, (video, codec, container)) in enumerate(KINDS.items()):
        path = os.path.join(cache, f"intake-{k}-{seconds:g}s.{container}")
        if not os.path.exists(path):
            tmp = path + ".tmp." + container
            subprocess.run(
                [ffmpeg_path(), "-hide_banner", "-nostdin", "-y", "-v", "error",
                 "-f", "lavfi", "-i", f"{video}", "-f", "lavfi", "-i",
                 "sine=frequency=440:sample_rate=48000", "-t", f"{seconds:g}",
                 "-map", "0:v", "-map", "1:a", *codec, "-c:a", "aac", "-b:a", "128k",
                 "-shortest", tmp],
                check=True, timeout=3600)
            os.replace(tmp, path)
        paths[name] = path
    return paths
