"""Text from people, checked before it reaches the database.

The same rules on SQLite and PostgreSQL: PostgreSQL refuses a NUL character
and a string longer than its ``VARCHAR`` column where SQLite takes both, so
every user field is checked here first and a bad one is a 400 that names the
field, never a 500.
"""

from __future__ import annotations

import os
import re
import unicodedata

# Bidirectional embeddings, overrides and isolates (and the marks): in a name they
# can make "Ana" display as something else, or reverse the text that follows.
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = {"\n", "\r", "\t"}


class InvalidText(ValueError):
    """A field that cannot be stored: ``field`` names it, ``message`` says what to do."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def has_control(text: str, *, multiline: bool = False) -> bool:
    """True when ``text`` holds a control character (NUL, escape, ... and, unless
    ``multiline``, tab and line breaks)."""
    return any(unicodedata.category(ch) == "Cc" and not (multiline and ch in _LINE_BREAKS)
               for ch in text)


def clean_text(value: str | None, field: str, *, max_length: int, label: str | None = None,
               multiline: bool = False, name: bool = True) -> str:
    """``value`` stripped, with bidi controls removed when it is a ``name`` (shown to
    others); raises :class:`InvalidText` for control characters or when it is longer
    than ``max_length`` characters (the column's size)."""
    label = label or field.replace("_", " ")
    text = value or ""
    if has_control(text, multiline=multiline):
        raise InvalidText(field, f"The {label} contains a control character; please type it "
                                 "again without it.")
    if name:
        text = BIDI_CONTROLS.sub("", text)
    text = text.strip()
    if len(text) > max_length:
        raise InvalidText(field, f"The {label} is too long ({len(text)} characters; "
                                 f"{max_length} at most).")
    return text


def clean_filename(value: str | None, field: str = "filename", max_length: int = 255) -> str:
    """A client's file name, kept for people to read: control characters refused,
    bidi controls and folders removed, shortened (keeping the extension) to fit."""
    text = clean_text(os.path.basename((value or "").replace("\\", "/")), field,
                      max_length=10_000, label="file name")
    if len(text) > max_length:
        stem, ext = os.path.splitext(text)
        ext = ext if len(ext) <= 16 else ""
        text = stem[: max_length - len(ext)] + ext
    return text
