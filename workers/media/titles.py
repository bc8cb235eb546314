"""Text as images: tile name labels, section captions, the intro card and the credits.

User text (names, parts, places, titles) is only ever drawn here, with Pillow, into PNG
files that an engine overlays by path and numeric position. It never goes into an ffmpeg
filtergraph string, so no quoting bug can turn a name into a filter.

Every line goes through :mod:`workers.media.typeset`: cleaned (no control or bidi-override
characters, combining-mark floods capped), set with a per-character font fallback chain
(Noto for every script, colour emoji, the bundled DejaVu Sans last), shaped by raqm
(Arabic joins, Indic conjuncts, Thai marks), right-to-left runs in their order, and
shortened with an ellipsis at a grapheme boundary when it does not fit.

Every writer goes through a temp file and a rename, so a PNG on disk is always whole.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

from PIL import Image

from .typeset import ELLIPSIS, Line, centred_baseline, clean_text, draw_line, fit, layout, visible

log = logging.getLogger(__name__)

__all__ = ["ELLIPSIS", "ANONYMOUS", "CreditsLayout", "caption_image", "clean_text",
           "credit_groups", "credits_image", "credits_layout",
           "credits_y", "credits_y_expr", "intro_card", "label_image", "performers_line"]

DASH = " — "
FSI, PDI = "\u2068", "\u2069"  # isolate a place from the name before it (UAX #9 isolates)
LABEL_BOX = (0, 0, 0, 150)  # the name label's semi-transparent dark box
TEXT = (255, 255, 255, 255)
DIM = (200, 200, 200, 255)
ACCENT = (255, 214, 120, 255)  # part headings in the credits
MAX_CREDITS_HEIGHT = 16384  # more lines than fit in this go into more columns, smaller lines
CREDITS_LINES_PER_COLUMN = 40
MIN_CREDITS_LINE = 12  # pixels per credits line at the least (text 8 pixels per em)
ANONYMOUS = "Anonymous"  # a clip whose name draws nothing


def _even_up(value: float) -> int:
    return int(math.ceil(value / 2)) * 2


def _save(image: Image.Image, out_path: str) -> None:
    head, tail = os.path.split(os.path.abspath(out_path))
    tmp = os.path.join(head, f".{tail}.{os.getpid()}.tmp.png")
    try:
        image.save(tmp, format="PNG", compress_level=1)  # read once by ffmpeg: speed over size
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

def _draw_centred(image: Image.Image, line: Line, centre_x: float, middle: float,
                  fill: tuple[int, ...]) -> None:
    draw_line(image, line, centre_x - line.width / 2, centred_baseline(line, middle), fill)


def label_image(text: str, max_width: int, height: int, out_path: str) -> tuple[int, int]:
    """A name label: white text on a semi-transparent dark box, ``height`` tall and as
    wide as the text needs up to ``max_width`` (cut with an ellipsis beyond; a name that
    draws nothing, e.g. only fillers or joiners, shows :data:`ANONYMOUS`). Writes an
    RGBA PNG and returns its (even) width and height."""
    height = max(2, height - height % 2)
    max_width = max(2, max_width - max_width % 2)
    pad = max(2, round(height * 0.3))
    name = clean_text(text)
    line = fit(name if visible(name) else ANONYMOUS, round(height * 0.62), max_width - 2 * pad)
    width = min(max_width, _even_up(line.width + 2 * pad)) if line.runs else 2
    # not even an ellipsis fits: nothing shows rather than a 2-pixel stub of the dark box
    image = Image.new("RGBA", (width, height), LABEL_BOX if line.runs else (0, 0, 0, 0))
    if line.runs:
        draw_line(image, line, pad, centred_baseline(line, height / 2), TEXT)
    _save(image, out_path)
    return width, height


def caption_image(text: str, width: int, height: int, out_path: str) -> str:
    """A section caption: the part's name in bold, left-aligned and vertically centred
    on a transparent ``width`` x ``height`` RGBA PNG (the background shows through)."""
    image = Image.new("RGBA", (max(2, width), max(2, height)), (0, 0, 0, 0))
    pad = max(2, round(height * 0.15))
    line = fit(clean_text(text), round(height * 0.66), width - 2 * pad, bold=True)
    if line.runs:
        draw_line(image, line, pad, centred_baseline(line, height / 2), DIM)
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
    intro = spec.intro
    room = width * 0.9
    lines: list[tuple[Line, tuple[int, ...]]] = []
    if intro is not None and visible(clean_text(intro.title)):
        title = clean_text(intro.title)
        lines.append((fit(title, _shrink(title, height * 0.11, room), room, bold=True), TEXT))
    if intro is not None and visible(clean_text(intro.subtitle)):
        lines.append((fit(clean_text(intro.subtitle), round(height * 0.055), room), DIM))
    lines.append((fit(performers_line(spec), round(height * 0.04), room), DIM))
    gaps = [line.size * 0.6 for line, _ in lines[1:]]
    total = sum(line.size * 1.2 for line, _ in lines) + sum(gaps)
    y = (height - total) / 2
    for k, (line, colour) in enumerate(lines):
        if k:
            y += gaps[k - 1]
        _draw_centred(image, line, width / 2, y + line.size * 0.6, colour)
        y += line.size * 1.2
    _save(image, out_path)
    return out_path


def _shrink(text: str, size: float, room: float) -> int:
    """``size`` (pixels per em), smaller (down to half) if ``text`` would not fit ``room``
    in bold."""
    shown = round(size)
    while layout(text, shown, True).width > room and shown > size / 2:
        shown -= 2
    return shown


# --- credits -------------------------------------------------------------------------------------

def credit_groups(spec) -> list[tuple[str, list[str]]]:
    """(part, ["Name — Location", ...]) for every clip (hidden ones included), parts in
    order of first appearance; a clip without a name, or one that draws nothing (only
    fillers, joiners or marks), is credited as "Anonymous". The
    place is wrapped in a first-strong isolate (U+2068 .. U+2069) so a right-to-left
    name and a left-to-right place (or the reverse) keep their own order."""
    groups: dict[str, list[str]] = {}
    for clip in spec.clips:
        name = clean_text(clip.name)
        name = name if visible(name) else ANONYMOUS
        place = clean_text(clip.location)
        place = place if visible(place) else ""
        groups.setdefault(clean_text(clip.part), []).append(
            name + (DASH + FSI + place + PDI if place else ""))
    return list(groups.items())


@dataclass(frozen=True)
class CreditsLayout:
    """Where the credits go: ``rows`` (text, is a part heading) in order, ``line_h``
    pixels per row, text ``size``/``heading_size``/``title_size`` in pixels per em,
    ``cols`` columns of ``per_col`` rows below a title band ``top`` pixels tall, the image
    ``width`` x ``height`` and ``title`` (cleaned; may be empty)."""

    rows: tuple[tuple[str, bool], ...]
    line_h: int
    size: int
    heading_size: int
    title_size: int
    cols: int
    per_col: int
    top: int
    width: int
    height: int
    title: str

    def position(self, k: int) -> tuple[int, float]:
        """(column, centre y in pixels) of row ``k``."""
        col, row = divmod(k, self.per_col)
        return col, self.top + row * self.line_h + self.line_h / 2


def credits_layout(spec) -> CreditsLayout:
    """The credits' rows in columns: a line a 22nd of the canvas height, up to 40 rows
    per column, more columns (each at least 16 ems wide) as needed to keep the image under
    :data:`MAX_CREDITS_HEIGHT` pixels; when even the most columns do not fit, smaller lines
    (down to :data:`MIN_CREDITS_LINE` pixels, which fits tens of thousands of names).
    Every row always gets a place; beyond even that a warning says how many rows share."""
    width, canvas_h = spec.canvas.width, spec.canvas.height
    rows: list[tuple[str, bool]] = []  # (text, is a part heading)
    for part, names in credit_groups(spec):
        if rows:
            rows.append(("", False))
        if part:
            rows.append((part, True))
        rows.extend((name, False) for name in names)
    title = clean_text(spec.credits.title) if getattr(spec, "credits", None) else "Performers"
    base = max(12, round(canvas_h / 22))
    line_h = base
    while True:
        size = round(line_h * 0.7)
        max_cols = max(1, int(width // (size * 16)))
        top = round(base * 2.2) if title else 0
        fits = max(1, (MAX_CREDITS_HEIGHT - top - line_h) // line_h)  # rows per column
        cols = min(max_cols, max(1, math.ceil(len(rows) / CREDITS_LINES_PER_COLUMN)))
        while cols < max_cols and math.ceil(len(rows) / cols) > fits:
            cols += 1
        if math.ceil(len(rows) / cols) <= fits or line_h <= MIN_CREDITS_LINE:
            break
        line_h -= 1
    per_col = max(1, math.ceil(len(rows) / cols))
    if per_col > fits:
        log.warning("credits: %d rows do not fit %d columns of %d rows under %d pixels; "
                    "the image is taller than that", len(rows), cols, fits, MAX_CREDITS_HEIGHT)
    height = _even_up(top + per_col * line_h + line_h)
    return CreditsLayout(tuple(rows), line_h, size, round(line_h * 0.72), round(base * 1.3),
                         cols, per_col, top, width, height, title)


def credits_image(spec, out_path: str) -> tuple[str, int]:
    """The credits as a canvas-wide RGBA PNG with a transparent background, as tall as
    its text: the credits title, then each part's name and its performers (name —
    location), laid out by :func:`credits_layout` (every performer has a line). Returns
    (path, height); scroll it with :func:`credits_y` / :func:`credits_y_expr`."""
    plan = credits_layout(spec)
    width = plan.width
    image = Image.new("RGBA", (width, plan.height), (0, 0, 0, 0))
    if plan.title:
        _draw_centred(image, fit(plan.title, plan.title_size, width * 0.9, bold=True), width / 2,
                      plan.top / 2.2, TEXT)
    col_w = width / plan.cols
    for k, (text, is_heading) in enumerate(plan.rows):
        if not text:
            continue
        col, y = plan.position(k)
        line = fit(text, plan.heading_size if is_heading else plan.size, col_w * 0.92,
                   bold=is_heading)
        _draw_centred(image, line, col_w * (col + 0.5), y, ACCENT if is_heading else TEXT)
    _save(image, out_path)
    return out_path, plan.height


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
