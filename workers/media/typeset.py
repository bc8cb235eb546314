"""One line of user text in any script, laid out and drawn with Pillow.

Names come from everywhere, so a line is set the way a browser would set it:

1. :func:`clean_text` keeps what can be drawn: no control or format characters (bidi
   overrides, isolates and marks included; ZWJ and ZWNJ stay, they shape Indic scripts and
   emoji, and so do the tags of the England, Scotland and Wales flags), combining-mark floods
   capped at :data:`MAX_MARKS` per letter, giant clusters (a ZWJ chain of 60 people, 119
   skin tones) capped, whitespace collapsed.
2. :func:`graphemes` splits it into extended grapheme clusters (UAX #29, via the ``regex``
   package's ``\\X``: it follows the current Unicode rules, Indic conjuncts, emoji ZWJ
   sequences and flags included, which the older ``grapheme`` package does not). A line is
   only ever cut between clusters, so an ellipsis never splits a letter from its marks or
   an emoji sequence; a cluster ending with a virama is joined to the consonant after it in
   every script (UAX #29 does this for six Indic scripts only).
3. The Unicode bidirectional algorithm (FriBiDi, the library Pillow's raqm layout itself
   uses) gives each character its embedding level; a right-to-left name runs right to left,
   and a Latin name with an Arabic surname keeps each part in its own direction.
4. Each cluster is given the first font of a fallback chain (:func:`font_chain`) whose
   character map holds all of it (read with fontTools): the bundled DejaVu Sans for Latin,
   Greek and Cyrillic, then Noto Sans and a Noto family per script (Arabic, Hebrew, the
   Indic scripts, Thai, ...), Noto Sans CJK (its Japanese, Korean or Chinese face chosen
   from the kana or hangul in the line), symbols, every other installed Noto family (found
   in the font folders, Sans before Serif), Noto Color Emoji (first for emoji), and DejaVu
   Sans again as the last resort. Spaces and punctuation stay in the font of the
   letters around them, so a run is not split for them.
5. Runs of one level and one font are shaped by raqm (HarfBuzz: Arabic joining, Indic
   conjuncts, Thai mark stacking, emoji ligatures) and placed in visual order (rule L2).

The fonts are Debian's ``fonts-noto-core``, ``fonts-noto-cjk`` and ``fonts-noto-color-emoji``
(SIL Open Font License), installed by ``make setup`` and the Dockerfile. Without them every
line is drawn in DejaVu Sans (CJK and emoji then show as boxes); without raqm (Pillow built
without it, or no ``libfribidi`` on the machine) text is drawn unshaped in logical order.
Either way a warning says once what to install. :func:`text_support` reports what is there.

Fonts, character maps and laid-out lines are cached per process: a font file is opened once
per size, not once per label.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import regex
from PIL import Image, ImageDraw, ImageFont, features

log = logging.getLogger(__name__)

BUNDLED_FONTS = Path(__file__).with_name("fonts")
FONT_DIRS = (BUNDLED_FONTS, Path("/usr/share/fonts"), Path("/usr/local/share/fonts"),
             Path.home() / ".local/share/fonts", Path.home() / ".fonts")
ELLIPSIS = "…"
MAX_MARKS = 4  # combining marks kept on one letter: real text stacks at most 3 or 4
MAX_JOINS = 4  # ZWJ per cluster: the longest emoji ZWJ sequences (families, kisses) have 3
MAX_CLUSTER_CHARS = 16  # code points per cluster: the longest emoji sequence has 10
MAX_CLUSTERS = 256  # graphemes kept of one line before fitting (none is ever wider)
INSTALL_HINT = ("install the Noto fonts: `make fonts`, or on Debian/Ubuntu "
                "`apt-get install fonts-noto-core fonts-noto-cjk fonts-noto-color-emoji`")

# The chain, in the order a character is looked up: (family, regular file, bold file).
# After DejaVu Sans for Latin, Greek and Cyrillic (PRIMARY_RANGES): Noto Sans (the Latin it
# lacks), one family per script; CJK and emoji are placed by :func:`font_chain`; symbols;
# and the bundled DejaVu Sans again last.
SCRIPT_FAMILIES: tuple[tuple[str, str, str], ...] = tuple(
    (f"Noto Sans {script}".strip(), f"NotoSans{script.replace(' ', '')}-Regular.ttf",
     f"NotoSans{script.replace(' ', '')}-Bold.ttf")
    for script in (
        "", "Arabic", "Hebrew", "Devanagari", "Bengali", "Gurmukhi", "Gujarati", "Oriya",
        "Tamil", "Telugu", "Kannada", "Malayalam", "Sinhala", "Thai", "Lao", "Khmer", "Myanmar",
        "Tibetan", "Georgian", "Armenian", "Ethiopic", "Thaana", "Syriac", "Mongolian",
        "Javanese", "Sundanese", "Balinese", "Cherokee", "Canadian Aboriginal", "Tifinagh",
        "Ol Chiki", "Adlam", "NKo", "Vai", "Yi", "Tai Tham", "Tai Viet", "Cham", "Lisu",
        "Meetei Mayek", "Sora Sompeng", "Chakma", "Syloti Nagri", "Hanifi Rohingya",
        "Bamum", "Osage", "Samaritan", "Mandaic", "Coptic", "Glagolitic", "Runic", "Ogham",
    ))
CJK_FAMILY = ("Noto Sans CJK", "NotoSansCJK-Regular.ttc", "NotoSansCJK-Bold.ttc")
EMOJI_FAMILY = ("Noto Color Emoji", "NotoColorEmoji.ttf", "NotoColorEmoji.ttf")
SYMBOL_FAMILIES = (
    ("Noto Sans Symbols", "NotoSansSymbols-Regular.ttf", "NotoSansSymbols-Bold.ttf"),
    ("Noto Sans Symbols2", "NotoSansSymbols2-Regular.ttf", "NotoSansSymbols2-Regular.ttf"),
    ("Noto Sans Math", "NotoSansMath-Regular.ttf", "NotoSansMath-Regular.ttf"),
)
LAST_RESORT = ("DejaVu Sans", "DejaVuSans.ttf", "DejaVuSans-Bold.ttf")
# Every other installed Noto family joins the chain after the symbols (:func:`noto_families`),
# so a script Debian ships (Tibetan only as Noto Serif, Tagalog, Limbu, Osmanya, ...) is drawn
# without a hand-kept list. Left out: faces for other purposes than the plain text face.
_NOTO_FILE = regex.compile(r"^Noto(Sans|Serif|)([A-Za-z0-9]+)-Regular\.(?:ttf|otf)$")
_NOTO_SKIP = regex.compile(r"Display|Mono|UI$|Looped|Kufi|Naskh|Nastaliq|Rashi|Slanted|CJK"
                           r"|Emoji|Symbols|Math")
# The bundled DejaVu Sans comes first for Latin, Greek, Cyrillic, punctuation and symbols:
# the same pixels as before the chain existed, and FreeType draws it about 7x faster than
# Noto Sans (whose hinting bytecode runs for every glyph; Pillow cannot turn hinting off).
# Every other script goes to its Noto family even where DejaVu has some glyphs for it.
PRIMARY_RANGES = ((0x0000, 0x052F), (0x1D00, 0x1FFF), (0x2000, 0x2BFF), (0x2C60, 0x2C7F),
                  (0x2E00, 0x2E7F), (0xA640, 0xA69F), (0xA720, 0xA7FF), (0xFB00, 0xFB06))
CJK_FACES = {"JP": "Noto Sans CJK JP", "KR": "Noto Sans CJK KR", "SC": "Noto Sans CJK SC",
             "TC": "Noto Sans CJK TC"}
# The character maps of the fonts, kept between processes: reading the ~270 Noto files with
# fontTools takes seconds, the index a few milliseconds. Keyed by path, size and mtime.
CMAP_CACHE = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
              / "tutti" / "cmaps-v1.json")
EMOJI_BITMAP_SIZE = 109  # Noto Color Emoji has one strike, 109 pixels per em

# Drawn by nobody but handled by the shaper: joiners, variation selectors, emoji tags.
_IGNORABLE = regex.compile(r"[\u200c\u200d\u034f\u180b-\u180f\ufe00-\ufe0f"
                           r"\U000e0020-\U000e007f\U000e0100-\U000e01ef]")
_EMOJI = regex.compile(r"\p{Emoji_Presentation}|\ufe0f|\u20e3|\p{Emoji_Modifier}"
                       r"|\p{Regional_Indicator}")
_GRAPHEME = regex.compile(r"\X")
_SPACE = regex.compile(r"[\s\p{Z}]")
_UNDRAWABLE = regex.compile(r"(?V1)[\p{Cc}\p{Cs}\p{Co}\p{Cn}[\p{Cf}--[\u200c\u200d]]]")
_MARK = regex.compile(r"\p{M}")
_JOINERS = {"\u200c", "\u200d"}
_VIRAMA = regex.compile(r"\p{ccc=9}")
_SPECIAL = regex.compile(r"[\p{M}\u200c\u200d\p{Emoji_Modifier}\U0001F3F4]")
_MODIFIER = regex.compile(r"\p{Emoji_Modifier}")
# A valid emoji tag sequence (UTS #51: black flag, tag letters and digits, cancel tag), else
# one character.
_TOKEN = regex.compile(r"\U0001F3F4[\U000E0020-\U000E007E]{1,32}\U000E007F|.", regex.S)
_BLANK = regex.compile(r"[\s\p{Z}\p{M}\p{Cf}\p{Default_Ignorable_Code_Point}\u2800]")
_LETTER = regex.compile(r"[\p{L}\p{M}]")
_KANA = regex.compile(r"[\p{Hiragana}\p{Katakana}]")
_HANGUL = regex.compile(r"\p{Hangul}")
_BOPOMOFO = regex.compile(r"\p{Bopomofo}")
# LRI RLI FSI PDI, LRM RLM: steer the bidi algorithm, never drawn (only ours: see layout)
_ISOLATES = {"\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f"}

_draw_lock = threading.Lock()
_reported: set[str] = set()  # clusters already warned about (once per process)


@dataclass(frozen=True)
class Face:
    """One font of the chain: a file (``index`` picks the face of a collection), for a
    colour bitmap font the only pixel size it can be opened at (0 for outline fonts), and
    the ranges of code points it is asked for (all it holds when empty)."""

    family: str
    path: str
    index: int = 0
    bitmap_size: int = 0
    only: tuple[tuple[int, int], ...] = ()  # inclusive code point ranges; () for all it has


class FontChain(tuple):
    """The faces of a chain in lookup order (a tuple of :class:`Face`) that remembers the
    face it gave each grapheme cluster, so a character is looked up once per process."""

    picks: dict[tuple[str, bool], Face | None]

    def __new__(cls, faces: Iterable[Face]) -> FontChain:
        chain = super().__new__(cls, faces)
        chain.picks = {}
        return chain


@dataclass(frozen=True)
class Run:
    """A piece of a line in one font and one direction: ``text`` in logical order, its
    left edge ``x`` and ``width`` in pixels from the line's left edge."""

    text: str
    face: Face
    x: float
    width: float
    rtl: bool


@dataclass(frozen=True)
class Line:
    """A laid-out line: ``runs`` left to right as seen, ``width`` in pixels, ``size`` the
    font size in pixels per em, ``ascent``/``descent`` (pixels above/below the baseline)
    of the chain's first font, ``text`` the (possibly shortened) text in logical order and
    ``missing`` the characters no font of the chain holds (drawn as boxes)."""

    text: str
    runs: tuple[Run, ...]
    width: float
    size: int
    ascent: float
    descent: float
    missing: tuple[str, ...] = ()


# --- cleaning and clusters -----------------------------------------------------------------------

def clean_text(text: str) -> str:
    """One line of drawable text: control, format (bidi overrides, isolates, marks),
    private-use, surrogate and unassigned characters removed except ZWJ, ZWNJ and the tags
    of a valid emoji tag sequence (U+1F3F4 + tags + U+E007F: the flags of England,
    Scotland and Wales; stray tags go); at most :data:`MAX_MARKS` combining marks on a
    letter (the first ones typed; joiners between them do not restart the count) and none
    without one; no joiner after a joiner, no skin-tone modifier after a modifier; line
    breaks and runs of whitespace collapsed to one space; NFC-normalized; and no grapheme
    cluster longer than :func:`cap_cluster` allows (so one cluster can never be a whole
    name too wide to show). Character classes come from the ``regex`` package's Unicode
    data, newer than Python's own ``unicodedata`` (so this year's emoji are kept)."""
    text = _SPACE.sub(" ", text or "")
    if not _SPECIAL.search(text):  # the common case: nothing to cap or keep
        text = unicodedata.normalize("NFC", " ".join(_UNDRAWABLE.sub("", text).split()))
        return "".join(cap_cluster(c) for c in _GRAPHEME.findall(text)) if len(text) > 2 else text
    out: list[str] = []
    marks = 0
    for token in _TOKEN.findall(text):
        if len(token) > 1:  # a valid emoji tag sequence
            out.append(token)
            marks = 0
            continue
        if _UNDRAWABLE.match(token):
            continue
        previous = out[-1][-1] if out else ""
        if _MARK.match(token):
            if not out or previous == " " or marks >= MAX_MARKS:
                continue  # a mark on nothing, or a flood of marks on one letter
            marks += 1
        elif token in _JOINERS:
            if not out or previous in _JOINERS or previous == " ":
                continue
        elif _MODIFIER.match(token) and _MODIFIER.match(previous):
            continue  # one skin tone per emoji
        else:
            marks = 0
        out.append(token)
    joined = unicodedata.normalize("NFC", " ".join("".join(out).split()))
    return "".join(cap_cluster(cluster) for cluster in _GRAPHEME.findall(joined))


def cap_cluster(cluster: str) -> str:
    """``cluster`` (one extended grapheme cluster) kept to what a real one holds: at most
    :data:`MAX_JOINS` zero-width joiners (the joiners after that are dropped, so a chain
    of 60 emoji becomes 60 pictures that :func:`fit` can shorten) and at most
    :data:`MAX_CLUSTER_CHARS` code points (a flood of conjoining jamo or prepended
    marks)."""
    if len(cluster) <= 2:
        return cluster
    if cluster.count("\u200d") > MAX_JOINS:
        head = cluster.split("\u200d")
        cluster = "\u200d".join(head[:MAX_JOINS + 1]) + "".join(head[MAX_JOINS + 1:])
        return "".join(cap_cluster(c) for c in _GRAPHEME.findall(cluster))
    return cluster[:MAX_CLUSTER_CHARS]


def visible(text: str) -> bool:
    """Whether ``text`` draws anything: not only spaces, marks, joiners, fillers (U+3164
    Hangul filler, U+2800 blank Braille pattern) or other default-ignorable characters."""
    return bool(_BLANK.sub("", text or ""))


def graphemes(text: str) -> list[str]:
    """``text`` split into extended grapheme clusters (UAX #29), e.g. ``["क्षि", "👨‍👩‍👧",
    "🇯🇵", "é"]``: what a reader sees as one character. A cluster ending with a virama
    (canonical combining class 9), optionally with ZWJ after it, is joined to the letter
    of the same script after it: UAX #29's conjunct rule (GB9c) covers six Indic scripts,
    this covers every script with a virama (Kannada, Gurmukhi, Tamil, Sinhala, Khmer,
    Myanmar, ...), so a line is never cut inside a conjunct."""
    if not _VIRAMA.search(text):
        return _GRAPHEME.findall(text)
    out: list[str] = []
    for cluster in _GRAPHEME.findall(text):
        if out and _links(out[-1], cluster):
            out[-1] += cluster
        else:
            out.append(cluster)
    return out


def _script(ch: str) -> str:
    return unicodedata.name(ch, "").split(" ", 1)[0]


def _links(before: str, after: str) -> bool:
    """Whether ``before`` ends with a virama (and ZWJ) that joins it to ``after``'s
    first letter, of the same script."""
    core = before.rstrip("\u200d")
    if not core or before[-1] == "\u200c" or not _LETTER.match(after[0]):
        return False
    if unicodedata.combining(core[-1]) != 9:
        return False
    return _script(core[-1]) == _script(after[0])


# --- fonts ---------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _font_files() -> dict[str, str]:
    """File name -> path of every font file in :data:`FONT_DIRS` (the bundled fonts win)."""
    found: dict[str, str] = {}
    for root in FONT_DIRS:
        if not root.is_dir():
            continue
        for folder, _dirs, files in os.walk(root):
            for name in files:
                if name.lower().endswith((".ttf", ".otf", ".ttc")):
                    found.setdefault(name, os.path.join(folder, name))
    return found


def _face_index(path: str, family: str) -> int:
    from fontTools.ttLib import TTCollection

    collection = TTCollection(path, lazy=True)
    try:
        for index, font in enumerate(collection.fonts):
            if font["name"].getDebugName(4) == family or font["name"].getDebugName(1) == family:
                return index
    finally:
        collection.close()
    return -1


def noto_families(files: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(family, regular file, bold file) of every installed Noto family not in
    :data:`SCRIPT_FAMILIES`, :data:`SYMBOL_FAMILIES` or the CJK and emoji fonts: Noto Sans
    families first, then Noto Serif (only for scripts without a Sans face, e.g. Tibetan on
    Debian), then the rest (Noto Traditional Nushu, Noto Music), each group by name."""
    files = _font_files() if files is None else files
    known = {regular for _, regular, _ in (*SCRIPT_FAMILIES, *SYMBOL_FAMILIES)}
    found: dict[str, list[tuple[str, str, str]]] = {"Sans": [], "Serif": [], "": []}
    for name in sorted(files):
        match = _NOTO_FILE.match(name)
        if (not match or name in known or _NOTO_SKIP.search(match[2])
                or match[2] in ("Sans", "Serif")):
            continue
        style, script = match[1], match[2]
        if style == "Serif" and f"NotoSans{script}-Regular.ttf" in files:
            continue  # Sans before Serif: the Sans face is already in the chain
        words = " ".join(regex.findall(r"[A-Z]+(?![a-z])|[A-Z][a-z0-9]*|[a-z0-9]+", script))
        family = " ".join(part for part in ("Noto", style, words) if part)
        found[style].append((family, name, name.replace("-Regular.", "-Bold.")))
    return found["Sans"] + found["Serif"] + found[""]


@lru_cache(maxsize=16)
def font_chain(bold: bool = False, cjk: str = "SC") -> FontChain:
    """The fonts a line is set with, in lookup order, of those installed: the bundled
    DejaVu Sans for Latin, Greek and Cyrillic, the Noto families (bold where the family has
    it), the Noto Sans CJK face ``cjk`` (JP, KR, SC or TC), symbols, every other installed
    Noto family (:func:`noto_families`), Noto Color Emoji, and
    DejaVu Sans for anything else, always last. Warns once when the Noto fonts are
    missing."""
    files = _font_files()
    chain: list[Face] = []

    def add(family: str, regular: str, bold_file: str, index: int = 0, bitmap: int = 0) -> None:
        path = files.get(bold_file if bold else regular) or files.get(regular)
        if path:
            chain.append(Face(family, path, index, bitmap))

    primary = files.get(LAST_RESORT[2] if bold else LAST_RESORT[1])
    if primary:
        chain.append(Face(LAST_RESORT[0], primary, only=PRIMARY_RANGES))
    for family in SCRIPT_FAMILIES:
        add(*family)
    cjk_path = files.get(CJK_FAMILY[2] if bold else CJK_FAMILY[1]) or files.get(CJK_FAMILY[1])
    if cjk_path:
        index = _face_index(cjk_path, CJK_FACES.get(cjk, CJK_FACES["SC"]))
        if index >= 0:
            chain.append(Face(CJK_FACES.get(cjk, CJK_FACES["SC"]), cjk_path, index))
    for family in SYMBOL_FAMILIES:
        add(*family)
    for family in noto_families(files):
        add(*family)
    add(*EMOJI_FAMILY, bitmap=EMOJI_BITMAP_SIZE)
    add(*LAST_RESORT)
    _warn_once(tuple(face.family for face in chain))
    return FontChain(chain)


@lru_cache(maxsize=1)
def _warn_once(families: tuple[str, ...]) -> None:
    wanted = {"Noto Sans", "Noto Sans Arabic", "Noto Sans Devanagari", "Noto Color Emoji"}
    if not wanted <= set(families) or not any(f.startswith("Noto Sans CJK") for f in families):
        log.warning("fonts for non-Latin names are missing (have: %s): CJK, Indic and emoji "
                    "names will show boxes; %s", ", ".join(families), INSTALL_HINT)
    if not shaping_available():
        log.warning("Pillow has no raqm layout (libraqm/libfribidi not found): Arabic and "
                    "Indic names are drawn unshaped; install libfribidi0 (Debian) or fribidi")


_index_lock = threading.Lock()
_index_dirty = False


@lru_cache(maxsize=1)
def _cmap_index() -> dict[str, list[int]]:
    """The stored character maps (:data:`CMAP_CACHE`): key -> flat [first, last, ...]
    inclusive code point ranges. Empty when there is no (readable) file yet."""
    try:
        index = json.loads(CMAP_CACHE.read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def _save_cmap_index() -> None:
    """Write the index when a character map was read from a font since the last save,
    merged with what is stored (one temp file and a rename; a read-only cache directory is
    only logged)."""
    global _index_dirty
    with _index_lock:
        if not _index_dirty:
            return
        _index_dirty = False
        index = _cmap_index()
        try:  # keep what other processes stored meanwhile
            stored = json.loads(CMAP_CACHE.read_text())
            index.update({k: v for k, v in stored.items() if k not in index}
                         if isinstance(stored, dict) else {})
        except (OSError, ValueError):
            pass
        try:
            CMAP_CACHE.parent.mkdir(parents=True, exist_ok=True)
            tmp = CMAP_CACHE.with_name(f".{CMAP_CACHE.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(index, separators=(",", ":")))
            os.replace(tmp, CMAP_CACHE)
        except OSError as exc:
            log.info("font index not saved to %s: %s", CMAP_CACHE, exc)


def _ranges(codes: Iterable[int]) -> list[int]:
    flat: list[int] = []
    for cp in sorted(codes):
        if flat and cp == flat[-1] + 1:
            flat[-1] = cp
        else:
            flat += [cp, cp]
    return flat


@cache
def coverage(face: Face) -> frozenset[int]:
    """The code points ``face``'s character map holds: from the index in
    :data:`CMAP_CACHE`, else read once with fontTools (and added to the index)."""
    global _index_dirty
    try:
        stat = os.stat(face.path)
        key = f"{face.path}#{face.index}#{stat.st_size}#{stat.st_mtime_ns}"
    except OSError:
        key = ""
    index = _cmap_index()
    flat = index.get(key) if key else None
    if flat is None:
        from fontTools.ttLib import TTFont

        with TTFont(face.path, fontNumber=face.index, lazy=True) as font:
            flat = _ranges((font.getBestCmap() or {}).keys())
        if key:
            with _index_lock:
                index[key] = flat
                _index_dirty = True
    codes = (cp for a, b in zip(flat[::2], flat[1::2], strict=True) for cp in range(a, b + 1))
    if face.only:
        return frozenset(cp for cp in codes if any(a <= cp <= b for a, b in face.only))
    return frozenset(codes)


@lru_cache(maxsize=512)
def pil_font(face: Face, size: int) -> ImageFont.FreeTypeFont:
    """``face`` opened by Pillow at ``size`` pixels per em (a bitmap face at its own size),
    with raqm layout when Pillow has it. Cached: a font is opened once per size."""
    layout = ImageFont.Layout.RAQM if shaping_available() else ImageFont.Layout.BASIC
    return ImageFont.truetype(face.path, face.bitmap_size or max(4, int(size)),
                              index=face.index, layout_engine=layout)


@lru_cache(maxsize=1)
def shaping_available() -> bool:
    """Whether Pillow can shape text (raqm with HarfBuzz and FriBiDi) on this machine."""
    return bool(features.check("raqm")) and _fribidi() is not None


def text_support() -> dict:
    """What this machine can draw: ``{"shaping": bool, "fonts": [family, ...],
    "missing": [family, ...]}`` (the wanted families not installed)."""
    chain = font_chain()
    have = {face.family for face in chain}
    wanted = [f[0] for f in SCRIPT_FAMILIES[:14]] + [CJK_FACES["SC"], EMOJI_FAMILY[0]]
    return {"shaping": shaping_available(), "fonts": [face.family for face in chain],
            "missing": [family for family in wanted if family not in have]}


# --- bidi ----------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _fribidi():
    """FriBiDi's ``fribidi_log2vis`` through ctypes, or None where the library is absent."""
    for name in (ctypes.util.find_library("fribidi"), "libfribidi.so.0", "libfribidi.0.dylib",
                 "fribidi-0.dll"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        fn = lib.fribidi_log2vis
        fn.restype = ctypes.c_int8
        fn.argtypes = [ctypes.POINTER(ctypes.c_uint32), ctypes.c_int,
                       ctypes.POINTER(ctypes.c_uint32), ctypes.c_void_p, ctypes.c_void_p,
                       ctypes.c_void_p, ctypes.POINTER(ctypes.c_int8)]
        return fn
    return None


_PAR_ON = 0x40  # FRIBIDI_PAR_ON: the paragraph's direction from its first strong letter


def bidi_levels(text: str) -> list[int]:
    """The embedding level of each character of ``text`` (one paragraph, direction from
    its first strong letter): even left to right, odd right to left. All 0 without
    FriBiDi."""
    fn = _fribidi()
    n = len(text)
    if fn is None or n == 0 or max(text) < "\u0590":  # nothing right-to-left before Hebrew
        return [0] * n
    chars = (ctypes.c_uint32 * n)(*map(ord, text))
    levels = (ctypes.c_int8 * n)()
    base = ctypes.c_uint32(_PAR_ON)
    if not fn(chars, n, ctypes.byref(base), None, None, None, levels):
        return [0] * n
    return list(levels)


# --- layout --------------------------------------------------------------------------------------

def _cjk_variant(text: str) -> str:
    if _KANA.search(text):
        return "JP"
    if _HANGUL.search(text):
        return "KR"
    if _BOPOMOFO.search(text):
        return "TC"
    return "SC"


def _holds(face: Face, cluster: str) -> bool:
    cmap = coverage(face)
    return all(ord(ch) in cmap or _IGNORABLE.match(ch) for ch in cluster)


def _pick(cluster: str, chain: FontChain, emoji: bool) -> Face | None:
    key = (cluster, emoji)
    if key not in chain.picks:
        chain.picks[key] = _lookup(cluster, chain, emoji)
        _save_cmap_index()
    return chain.picks[key]


def _lookup(cluster: str, chain: FontChain, emoji: bool) -> Face | None:
    if emoji:
        for face in chain:
            if face.bitmap_size and _holds(face, cluster):
                return face
    for face in chain:
        if not face.bitmap_size and _holds(face, cluster):
            return face
    for face in chain:
        if _holds(face, cluster):
            return face
    return None


def _faces(clusters: list[str], chain: FontChain) -> tuple[list[Face], list[str]]:
    """The face of each cluster: letters and emoji by the chain; spaces, digits and
    punctuation in the face of the letters before (or after) them when it holds them."""
    faces: list[Face | None] = [None] * len(clusters)
    missing: list[str] = []
    strong = [bool(_LETTER.search(c)) or bool(_EMOJI.search(c)) for c in clusters]
    for i, cluster in enumerate(clusters):
        if strong[i] and not _ISOLATES.issuperset(cluster):
            faces[i] = _pick(cluster, chain, bool(_EMOJI.search(cluster)))
    following: list[Face | None] = [None] * len(clusters)  # the next letter's face
    for i in range(len(clusters) - 2, -1, -1):
        following[i] = faces[i + 1] or following[i + 1]
    for i, cluster in enumerate(clusters):
        if faces[i] is not None or (strong[i] and not _ISOLATES.issuperset(cluster)):
            continue
        for face in (faces[i - 1] if i else None, following[i]):
            if face is not None and not face.bitmap_size and _holds(face, cluster):
                faces[i] = face
                break
        else:
            faces[i] = _pick(cluster, chain, False)
    result: list[Face] = []
    for cluster, face in zip(clusters, faces, strict=True):
        if face is None:
            if not _ISOLATES.issuperset(cluster):
                missing.append(cluster)
            face = chain[0]
        result.append(face)
    return result, missing


def _run_width(face: Face, size: int, text: str, rtl: bool) -> float:
    font = pil_font(face, size)
    kwargs = {"direction": "rtl" if rtl else "ltr"} if shaping_available() else {}
    width = font.getlength(text, **kwargs)
    return width * size / face.bitmap_size if face.bitmap_size else width


@lru_cache(maxsize=4096)
def layout(text: str, size: int, bold: bool = False) -> Line:
    """``text`` (already cleaned; :func:`clean_text`) set on one line at ``size`` pixels
    per em: bidi levels, a font per grapheme cluster, runs in visual order with their
    widths. The isolate controls U+2066..U+2069 steer the bidi algorithm and are not drawn
    (callers use them to keep user fields apart)."""
    size = max(4, int(size))
    chain = font_chain(bold, _cjk_variant(text))
    primary = pil_font(chain[0], size)
    ascent, descent = primary.getmetrics()
    clusters = graphemes(text)
    if not clusters:
        return Line("", (), 0.0, size, float(ascent), float(descent))
    faces, missing = _faces(clusters, chain)
    levels = bidi_levels(text)
    pieces: list[tuple[str, Face, int]] = []  # (text, face, level) in logical order
    offset = 0
    for cluster, face in zip(clusters, faces, strict=True):
        level = levels[offset]
        offset += len(cluster)
        drawn = "".join(ch for ch in cluster if ch not in _ISOLATES)
        if not drawn:
            continue
        if pieces and pieces[-1][1] is face and pieces[-1][2] == level:
            pieces[-1] = (pieces[-1][0] + drawn, face, level)
        else:
            pieces.append((drawn, face, level))
    order = _visual_order([level for _, _, level in pieces])
    runs: list[Run] = []
    x = 0.0
    for k in order:
        piece, face, level = pieces[k]
        width = _run_width(face, size, piece, bool(level % 2))
        runs.append(Run(piece, face, x, width, bool(level % 2)))
        x += width
    new = [cluster for cluster in missing if cluster not in _reported]
    if new:
        _reported.update(new)
        log.warning("no installed font holds %s (in %r): drawn as boxes; `tutti fonts TEXT` "
                    "shows the fonts; %s", " ".join(new), text, INSTALL_HINT)
    return Line(text, tuple(runs), x, size, float(ascent), float(descent), tuple(missing))


def _visual_order(levels: list[int]) -> list[int]:
    """Indexes of runs with these embedding levels in visual order (UAX #9 rule L2:
    from the highest level down to the lowest odd one, reverse every stretch at that
    level or above)."""
    order = list(range(len(levels)))
    if not levels:
        return order
    odd = [level for level in levels if level % 2]
    if not odd:
        return order
    for level in range(max(levels), min(odd) - 1, -1):
        i = 0
        while i < len(order):
            if levels[order[i]] >= level:
                j = i
                while j < len(order) and levels[order[j]] >= level:
                    j += 1
                order[i:j] = reversed(order[i:j])
                i = j
            else:
                i += 1
    return order


def _direction_mark(kept: str) -> str:
    """RLM when the last letter kept is right-to-left, else LRM: the ellipsis then follows
    the last kept letter in reading order (the left end of a cut Arabic run)."""
    for ch in reversed(kept):
        direction = unicodedata.bidirectional(ch)
        if direction in ("R", "AL"):
            return "\u200f"
        if direction == "L":
            return "\u200e"
    return ""


def fit(text: str, size: int, max_width: float, bold: bool = False) -> Line:
    """:func:`layout` of ``text``, shortened at a grapheme cluster boundary and ended with
    an ellipsis when it is wider than ``max_width`` pixels (the ellipsis alone when not
    even one cluster fits with it, an empty line when not even that fits). The ellipsis
    takes the direction of the last letter kept, so it follows that letter in reading
    order."""
    clusters = graphemes(text)
    if len(clusters) > MAX_CLUSTERS:
        clusters = clusters[:MAX_CLUSTERS]
        kept = "".join(clusters).rstrip()
        text = kept + ELLIPSIS + _direction_mark(kept)
    line = layout(text, size, bold)
    if line.width <= max_width:
        return line

    def cut(k: int) -> Line:
        kept = "".join(clusters[:k]).rstrip()
        return layout(kept + ELLIPSIS + _direction_mark(kept), size, bold)

    lo, hi = 0, len(clusters) - 1  # the most clusters that fit with the ellipsis
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cut(mid).width <= max_width:
            lo = mid
        else:
            hi = mid - 1
    while lo > 0 and cut(lo).width > max_width:
        lo -= 1  # shaping can make widths not quite monotonic
    if lo:
        return cut(lo)
    alone = layout(ELLIPSIS, size, bold)  # something shows that there is a name
    return alone if alone.width <= max_width else layout("", size, bold)


# --- drawing -------------------------------------------------------------------------------------

@lru_cache(maxsize=256)
def _bitmap_run(face: Face, text: str, size: int, rtl: bool = False) -> Image.Image:
    """A colour-bitmap run (emoji) drawn at the font's own size and scaled to ``size``
    pixels per em, right to left when ``rtl`` (emoji inside a right-to-left name); its
    top edge is ``ascent * size / bitmap_size`` above the baseline."""
    font = pil_font(face, face.bitmap_size)
    ascent, descent = font.getmetrics()
    kwargs = {"direction": "rtl" if rtl else "ltr"} if shaping_available() else {}
    width = max(1, round(font.getlength(text, **kwargs)))
    image = Image.new("RGBA", (width, ascent + descent), (0, 0, 0, 0))
    ImageDraw.Draw(image).text((0, ascent), text, font=font, embedded_color=True, anchor="ls",
                               **kwargs)
    scale = size / face.bitmap_size
    return image.resize((max(1, round(width * scale)), max(1, round((ascent + descent) * scale))),
                        Image.Resampling.LANCZOS)


def _paste(image: Image.Image, overlay: Image.Image, x: int, y: int) -> None:
    left, top = max(0, -x), max(0, -y)
    right = min(overlay.width, image.width - x)
    bottom = min(overlay.height, image.height - y)
    if right <= left or bottom <= top:
        return
    piece = overlay.crop((left, top, right, bottom))
    if image.mode == "RGBA":
        image.alpha_composite(piece, (x + left, y + top))
    else:
        image.paste(piece, (x + left, y + top), piece)


def draw_line(image: Image.Image, line: Line, x: float, baseline: float,
              fill: tuple[int, ...]) -> None:
    """Draw ``line`` on ``image`` (RGB or RGBA) with its left edge at ``x`` and its
    baseline at ``baseline`` (pixels), text in ``fill`` and emoji in their own colours."""
    draw = ImageDraw.Draw(image)
    fill = fill if image.mode == "RGBA" else fill[:3]
    with _draw_lock:
        for run in line.runs:
            left = x + run.x
            if run.face.bitmap_size:
                picture = _bitmap_run(run.face, run.text, line.size, run.rtl)
                ascent = pil_font(run.face, run.face.bitmap_size).getmetrics()[0]
                top = baseline - ascent * line.size / run.face.bitmap_size
                _paste(image, picture, round(left), round(top))
                continue
            kwargs = {"direction": "rtl" if run.rtl else "ltr"} if shaping_available() else {}
            draw.text((left, baseline), run.text, font=pil_font(run.face, line.size), fill=fill,
                      anchor="ls", **kwargs)


def centred_baseline(line: Line, middle: float) -> float:
    """The baseline that centres ``line``'s ascent-to-descent box on ``middle``."""
    return middle + (line.ascent - line.descent) / 2


def missing_glyphs(texts: Iterable[str], size: int = 20) -> dict[str, tuple[str, ...]]:
    """For each text (cleaned first) the grapheme clusters no font of the chain holds;
    texts drawn completely are left out."""
    out = {}
    for text in texts:
        line = layout(clean_text(text), size)
        if line.missing:
            out[text] = line.missing
    return out
