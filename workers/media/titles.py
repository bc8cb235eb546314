"""Text as images: tile name labels, section captions, the intro card and the credits.

User text (names, parts, places, titles) is only ever drawn here, with Pillow and the
DejaVu Sans fonts bundled in ``fonts/`` (so every machine draws the same pixels), into
PNG files that an engine overlays by path and numeric position. It never goes into an
ffmpeg filtergraph string, so no quoting bug can turn a name into a filter.

Coverage: DejaVu Sans covers Latin, Greek, Cyrillic, Arabic, Hebrew and more, but not
CJK or emoji; such characters are drawn as the font's replacement box rather than
failing. Control and formatting characters (newlines, bidi overrides) are removed.

Every writer goes through a temp file and a rename, so a PNG on disk is always whole.
"""

from __future__ import annotations

import math
import os
import unicodedata
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path(__file__).with_name("fonts")
REGULAR_FONT = FONT_DIR / "DejaVuSans.ttf"
BOLD_FONT = FONT_DIR / "DejaVuSans-Bold.ttf"
ELLIPSIS = "…"
DASH = " — "
LABEL_BOX = (0, 0, 0, 150)  # the name label's semi-transparent dark box
TEXT = (255, 255, 255, 255)
DIM = (200, 200, 200, 255)
ACCENT = (255, 214, 120, 255)  # part headings in the credits
MAX_CREDITS_HEIGHT = 16384  # more lines than fit in this go into more columns
CREDITS_LINES_PER_COLUMN = 40


@lru_cache(maxsize=64)
def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """The bundled DejaVu Sans at ``size`` pixels."""
    return ImageFont.truetype(str(BOLD_FONT if bold else REGULAR_FONT), max(4, int(size)))


def clean_text(text: str) -> str:
    """One line of drawable text: control and format characters removed, runs of
    whitespace collapsed."""
    kept = "".join(" " if ch.isspace() else ch for ch in text
                   if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
                   or ch.isspace())
    return " ".join(kept.split())


def fit_text(text: str, face: ImageFont.FreeTypeFont, max_width: float) -> str:
    """``text``, cut and ended with an ellipsis if it is wider than ``max_width``."""
    if face.getlength(text) <= max_width:
        return text
    lo, hi = 0, len(text)  # the longest prefix that fits with the ellipsis
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if face.getlength(text[:mid].rstrip() + ELLIPSIS) <= max_width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + ELLIPSIS if lo else ""


def _even_up(value: float) -> int:
    return int(math.ceil(value / 2)) * 2


def _save(image: Image.Image, out_path: str) -> None:
    head, tail = os.path.split(os.path.abspath(out_path))
    tmp = os.path.join(head, f".{tail}.{os.getpid()}.tmp.png")
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _rgb(colour: str) -> tuple[int, int, int]:
    digits = colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(ch * 2 for ch in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


# --- labels and captions -------------------------------------------------------------------------

def label_image(text: str, max_width: int, height: int, out_path: str) -> tuple[int, int]:
    """A name label: white text on a semi-transparent dark box, ``height`` tall and as
    wide as the text needs up to ``max_width`` (cut with an ellipsis beyond). Writes an
    RGBA PNG and returns its (even) width and height."""
    height = max(2, height - height % 2)
    max_width = max(2, max_width - max_width % 2)
    face = font(round(height * 0.62))
    pad = max(2, round(height * 0.3))
    shown = fit_text(clean_text(text), face, max_width - 2 * pad)
    width = min(max_width, _even_up(face.getlength(shown) + 2 * pad)) if shown else 2
    image = Image.new("RGBA", (width, height), LABEL_BOX)
    if shown:
        ImageDraw.Draw(image).text((pad, height / 2), shown, font=face, fill=TEXT, anchor="lm")
    _save(image, out_path)
    return width, height


def caption_image(text: str, width: int, height: int, out_path: str) -> str:
    """A section caption: the part's name in bold, left-aligned and vertically centred
    on a transparent ``width`` x ``height`` RGBA PNG (the background shows through)."""
    image = Image.new("RGBA", (max(2, width), max(2, height)), (0, 0, 0, 0))
    face = font(round(height * 0.66), bold=True)
    pad = max(2, round(height * 0.15))
    shown = fit_text(clean_text(text), face, width - 2 * pad)
    if shown:
        ImageDraw.Draw(image).text((pad, height / 2), shown, font=face, fill=DIM, anchor="lm")
    _save(image, out_path)
    return out_path


# --- intro card ----------------------------------------------------------------------------------

def performers_line(spec) -> str:
    """"12 performers · 4 parts" (every clip in the spec, hidden ones included: they are
    heard)."""
    n = len(spec.clips)
    parts = len({c.part.strip() for c in spec.clips if c.part.strip()})
    text = f"{n} performer{'s' if n != 1 else ''}"
    if parts > 1:
        text += f" · {parts} parts"
    return text


def intro_card(spec, out_path: str) -> str:
    """The intro: the title, the subtitle and the number of performers, centred on an
    opaque canvas-sized PNG of the background colour. ``spec.intro`` may be None (the
    card then shows the performers only)."""
    width, height = spec.canvas.width, spec.canvas.height
    image = Image.new("RGB", (width, height), _rgb(spec.canvas.background))
    draw = ImageDraw.Draw(image)
    intro = spec.intro
    lines: list[tuple[str, ImageFont.FreeTypeFont, tuple[int, ...]]] = []
    room = width * 0.9
    if intro is not None and clean_text(intro.title):
        lines.append((clean_text(intro.title), _shrink(clean_text(intro.title), height * 0.11,
                                                       room, bold=True), TEXT))
    if intro is not None and clean_text(intro.subtitle):
        lines.append((clean_text(intro.subtitle), font(round(height * 0.055)), DIM))
    lines.append((performers_line(spec), font(round(height * 0.04)), DIM))
    gaps = [face.size * 0.6 for _, face, _ in lines[1:]]
    total = sum(face.size * 1.2 for _, face, _ in lines) + sum(gaps)
    y = (height - total) / 2
    for k, (text, face, colour) in enumerate(lines):
        if k:
            y += gaps[k - 1]
        draw.text((width / 2, y + face.size * 0.6), fit_text(text, face, room), font=face,
                  fill=colour[:3], anchor="mm")
        y += face.size * 1.2
    _save(image, out_path)
    return out_path


def _shrink(text: str, size: float, room: float, *, bold: bool) -> ImageFont.FreeTypeFont:
    """The font at ``size``, smaller (down to half) if ``text`` would not fit ``room``."""
    face = font(round(size), bold)
    while face.getlength(text) > room and face.size > size / 2:
        face = font(face.size - 2, bold)
    return face


# --- credits -------------------------------------------------------------------------------------

def credit_groups(spec) -> list[tuple[str, list[str]]]:
    """(part, ["Name — Location", ...]) for every clip (hidden ones included), parts in
    order of first appearance; a clip without a name is credited as "Anonymous"."""
    groups: dict[str, list[str]] = {}
    for clip in spec.clips:
        name = clean_text(clip.name) or "Anonymous"
        place = clean_text(clip.location)
        groups.setdefault(clean_text(clip.part), []).append(name + (DASH + place if place else ""))
    return list(groups.items())


def credits_image(spec, out_path: str) -> tuple[str, int]:
    """The credits as a canvas-wide RGBA PNG with a transparent background, as tall as
    its text: the credits title, then each part's name and its performers (name —
    location), in as many columns as needed to keep it under 40 lines per column and
    :data:`MAX_CREDITS_HEIGHT` pixels. Returns (path, height); scroll it with
    :func:`credits_y` / :func:`credits_y_expr`."""
    width, canvas_h = spec.canvas.width, spec.canvas.height
    line_h = max(12, round(canvas_h / 22))
    face = font(round(line_h * 0.7))
    heading = font(round(line_h * 0.72), bold=True)
    title_face = font(round(line_h * 1.3), bold=True)
    rows: list[tuple[str, bool]] = []  # (text, is a part heading)
    for part, names in credit_groups(spec):
        if rows:
            rows.append(("", False))
        if part:
            rows.append((part, True))
        rows.extend((name, False) for name in names)
    max_cols = max(1, int(width // (face.size * 16)))
    cols = min(max_cols, max(1, math.ceil(len(rows) / CREDITS_LINES_PER_COLUMN)))
    while cols < max_cols and math.ceil(len(rows) / cols) * line_h > MAX_CREDITS_HEIGHT:
        cols += 1
    per_col = math.ceil(len(rows) / cols)
    title = clean_text(spec.credits.title) if getattr(spec, "credits", None) else "Performers"
    top = round(line_h * 2.2) if title else 0
    height = _even_up(min(MAX_CREDITS_HEIGHT, top + per_col * line_h + line_h))
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((width / 2, line_h), fit_text(title, title_face, width * 0.9),
                  font=title_face, fill=TEXT, anchor="mm")
    col_w = width / cols
    for k, (text, is_heading) in enumerate(rows):
        col, row = divmod(k, per_col)
        y = top + row * line_h + line_h / 2
        if y + line_h / 2 > height:
            break  # only with an absurd number of clips on a narrow canvas
        which = heading if is_heading else face
        draw.text((col_w * (col + 0.5), y), fit_text(text, which, col_w * 0.92), font=which,
                  fill=ACCENT if is_heading else TEXT, anchor="mm")
    _save(image, out_path)
    return out_path, height


def credits_y(t: float, canvas_height: int, image_height: int, seconds: float) -> float:
    """The credits image's top edge ``t`` seconds into the credits: it enters at the
    bottom edge and has just left at the top when ``seconds`` have passed."""
    t = min(max(t, 0.0), seconds)
    return canvas_height - (canvas_height + image_height) * t / seconds


def credits_y_expr(canvas_height: int, image_height: int, seconds: float,
                   start: float = 0.0) -> str:
    """:func:`credits_y` as an ffmpeg overlay ``y`` expression of the output time ``t``
    with the credits starting at ``start``: numbers only, safe in a filtergraph."""
    speed = (canvas_height + image_height) / seconds
    return f"{canvas_height:d}-{speed:.6f}*(t-{start:.6f})"
