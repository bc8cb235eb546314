"""One measured intake run, in a process of its own (so its peak RSS is its own):

    python -m bench.intake.one tutti|ffmpeg|ffmpeg-tm SRC OUT WIDTH HEIGHT FPS

"tutti" does what the intake task does, minus the database: probe, normalize at the
campaign canvas (with the contact sheet, in the same pass), thumbnail, checks. "ffmpeg"
is plain ffmpeg's one transcode of the same file to the same size: scale, libx264 at the
same preset and quality, AAC; "ffmpeg-tm" the same with the exact HDR tone mapping
(``colour_filter(exact=True)``), the fair floor for an HDR clip. Prints one JSON line."""

from __future__ import annotations

import json
import sys

from workers.media.checks import intake_checks
from workers.media.ffmpeg import run_ffmpeg
from workers.media.normalize import TileFormat, colour_filter, make_thumbnail, normalize_clip
from workers.media.probe import probe


def main(argv: list[str]) -> int:
    engine, src, out, width, height, fps = argv
    fmt = TileFormat(width=int(width), height=int(height), fps=int(fps),
                     min_width=int(width) // 2 // 2 * 2, min_height=int(height) // 2 // 2 * 2)
    if engine == "tutti":
        info = probe(src)
        done = normalize_clip(src, out, info, fmt, sheet=out + ".sheet.jpg",
                              thumbnail=out + ".thumb.jpg", meter=True)
        if done.thumbnail is None:
            make_thumbnail(out, out + ".thumb.jpg")
        checks = intake_checks(info, canvas=(fmt.width, fmt.height), guide_duration=None,
                               sound=done.sound)
        print(json.dumps({"duration": info.duration, "checks": [c.code for c in checks]}))
    elif engine in ("ffmpeg", "ffmpeg-tm"):
        scale = f"scale={width}:{height}"
        if engine == "ffmpeg-tm":  # the fair floor for HDR: the exact tone mapping
            scale = colour_filter(probe(src), (int(width), int(height)), exact=True)
        run_ffmpeg(["-i", src, "-vf", scale, "-pix_fmt", "yuv420p",
                    "-c:v", "libx264", "-preset", fmt.preset, "-crf", str(fmt.crf),
                    "-c:a", "aac", "-b:a", "160k", "-movflags", "+faststart", out],
                   timeout=3600)
        print(json.dumps({}))
    else:
        raise SystemExit(f"unknown engine {engine}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
