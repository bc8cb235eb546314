"""Make docs/world-names.png from a demo render: the title card, the labelled grid and the
credits, one above the other.

    .venv/bin/tutti demo --no-serve --clips 16 --seconds 4      # prints the mash-up's path
    .venv/bin/python docs/world_names_picture.py MASHUP.mp4 docs/world-names.png
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
from PIL import Image

from workers.media.ffmpeg import ffmpeg_path

WIDTH = 960


def frame(path: str, t: float) -> Image.Image:
    done = subprocess.run([ffmpeg_path(), "-v", "error", "-ss", f"{t:.2f}", "-i", path,
                           "-frames:v", "1", "-c:v", "png", "-f", "image2pipe", "-"],
                          capture_output=True, check=True)
    return Image.open(io.BytesIO(done.stdout)).convert("RGB")


def credits_moment(path: str, start: float, end: float) -> float:
    """The time the credits' first line (their title) is nearest the top of the picture."""
    best, best_t = None, start
    t = start
    while t < end:
        rows = np.nonzero(np.asarray(frame(path, t).convert("L")).max(axis=1) > 150)[0]
        if rows.size and rows.min() > 20 and (best is None or rows.min() < best):
            best, best_t = rows.min(), t
        t += 0.25
    return best_t


def main(mashup: str, out: str) -> None:
    intro = frame(mashup, 1.0)
    band = intro.crop((0, intro.height * 5 // 16, intro.width, intro.height * 11 // 16))
    grid = frame(mashup, 6.0)
    credits = frame(mashup, credits_moment(mashup, 8.5, 12.0))
    panels = [p.resize((WIDTH, round(p.height * WIDTH / p.width)), Image.Resampling.LANCZOS)
              for p in (band, grid, credits)]
    sheet = Image.new("RGB", (WIDTH, sum(p.height for p in panels) + 8 * (len(panels) - 1)),
                      (60, 60, 60))
    y = 0
    for panel in panels:
        sheet.paste(panel, (0, y))
        y += panel.height + 8
    sheet.quantize(colors=192, method=Image.Quantize.MEDIANCUT,
                   dither=Image.Dither.NONE).save(out, optimize=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
