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
# Letters and symbols that draw nothing (Hangul fillers, the blank Braille pattern): with
# the format, space and combining-mark categories they make a text that looks empty.
_BLANK_GLYPHS = frozenset("\u115f\u1160\u2800\u3164\uffa0")
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Zs", "Zl", "Zp", "Mn", "Me"})


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


def is_noncharacter(ch: str) -> bool:
    """Unicode noncharacters (U+FDD0..U+FDEF and the last two code points of every
    plane, U+FFFE, U+FFFF, ...): never text, only a program's internal markers."""
    code = ord(ch)
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def looks_empty(text: str) -> bool:
    """True when ``text`` would show nothing: only spaces, zero-width and format
    characters, combining marks without a base, or blank glyphs."""
    return all(unicodedata.category(ch) in _INVISIBLE_CATEGORIES or ch in _BLANK_GLYPHS
               or ch.isspace() for ch in text)


def clean_text(value: str | None, field: str, *, max_length: int, label: str | None = None,
               multiline: bool = False, name: bool = True) -> str:
    """``value`` stripped, with bidi controls removed when it is a ``name`` (shown to
    others); raises :class:`InvalidText` for control characters, noncharacters or
    U+FFFD (text that was not valid UTF-8 on its way here), or when it is longer than
    ``max_length`` characters (the column's size). A text that would show nothing
    (zero-width spaces, fillers) is returned empty, so a required field says so."""
    label = label or field.replace("_", " ")
    text = value or ""
    if has_control(text, multiline=multiline):
        raise InvalidText(field, f"The {label} contains a control character; please type it "
                                 "again without it.")
    if "\ufffd" in text or any(is_noncharacter(ch) for ch in text):
        raise InvalidText(field, f"The {label} contains characters that could not be read "
                                 "(a character set problem); please type it again.")
    if name:
        text = BIDI_CONTROLS.sub("", text)
    text = text.strip()
    if looks_empty(text):
        text = ""
    if len(text) > max_length:
        raise InvalidText(field, f"The {label} is too long ({len(text)} characters; "
                                 f"{max_length} at most).")
    return text


def clean_filename(value: str | None, field: str = "filename", max_length: int = 255) -> str:
    """A client's file name, kept for people to read: control characters refused,
    unreadable characters (U+FFFD, noncharacters) made "_", bidi controls and folders
    removed, shortened (keeping the extension) to fit."""
    raw = "".join("_" if ch == "\ufffd" or is_noncharacter(ch) else ch for ch in value or "")
    text = clean_text(os.path.basename(raw.replace("\\", "/")), field,
                      max_length=10_000, label="file name")
    if len(text) > max_length:
        stem, ext = os.path.splitext(text)
        ext = ext if len(ext) <= 16 else ""
        text = stem[: max_length - len(ext)] + ext
    return text
