"""Text and colours shared by every picture the review tools draw: zoom strips, sheets, share images, timelines.

Column labels ("epoch 10", file name, hash) and every line of text an export draws (the decision's marks on a
column are in ``marks.py``). Names and prompts come
from files and are untrusted: a newline, a NUL, a bidi override, a thousand combining marks or a megabyte
of prompt must neither crash Pillow's shaper (raqm refuses ``\\r`` and ``\\n``) nor take minutes to
measure. So all text goes through :func:`one_line` (one drawable line, capped before it is looked at),
is fitted to a width by a binary search over its length (a dozen measurements however long it is), and
is measured and drawn by :func:`text_width` and :func:`draw_text`, which fall back to Pillow's basic
layout, then to ASCII, rather than raise.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import unicodedata
import weakref
from collections.abc import Callable
from pathlib import Path

from PIL import ImageDraw, ImageFont

from ..engine.checkpoints import Checkpoint

__all__ = [
    "BASE_LABEL",
    "BG",
    "ELLIPSIS",
    "ERR",
    "FG",
    "MUTED",
    "PAD",
    "column_text",
    "draw_text",
    "fit",
    "fit_label",
    "fit_measured",
    "load_font",
    "max_chars",
    "one_line",
    "text_font",
    "text_width",
    "unicode_font_file",
    "wrap",
    "wrap_measured",
]

logger = logging.getLogger(__name__)

PAD = 8
BG, FG, MUTED, ERR = (250, 250, 250), (20, 20, 20), (110, 110, 110), (180, 30, 30)
BASE_LABEL = "base (LoRA off)"
ELLIPSIS = "…"
REPLACEMENT = "\ufffd"  # "�": stands for a character that cannot be drawn (a NUL, an escape, a bidi override)
MAX_LINE = 2000  # characters of one line when no width bounds it: wider than any export draws
MIN_GLYPH_EM = 0.15  # the narrowest advance of a visible glyph, in em (DejaVu Sans's narrowest, "ˡ", is 0.166)
MAX_MARKS = 4  # combining marks kept on one character: any script's stack, not a Zalgo tower over the next line
# Explicit bidi embeddings, overrides and isolates: they reorder the text around them (U+202E shows
# "exe.txt" as "txt.exe"), so they are shown as "�" rather than obeyed or silently dropped.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# What Pillow raises for text it cannot lay out or encode (UnicodeEncodeError is a ValueError).
_TEXT_ERRORS = (RuntimeError, OSError, ValueError)


def column_text(checkpoint: Checkpoint | None) -> tuple[str, str, str]:
    """A column's (label, file name, hash line): "base (LoRA off)" for the base column."""
    if checkpoint is None:
        return BASE_LABEL, "", ""
    return checkpoint.label, checkpoint.name, f"sha256 {checkpoint.hash}" if checkpoint.hash else ""


def fit_label(font, label: str, width: int) -> str:
    """A column label shortened to fit; the base column says "base" rather than "base (LoR…"."""
    if label == BASE_LABEL and text_width(font, label) > width:
        label = "base"
    return fit(font, label, width)


# -- one drawable line ---------------------------------------------------------------------------


@functools.cache
def _char(ch: str) -> tuple[str, bool]:
    """What ``ch`` becomes on a drawn line ("" drops it) and whether it is a combining mark."""
    if ch.isspace():  # tab, newline, \r, U+0085, U+2028 (Zl), U+2029 (Zp), every Zs
        return " ", False
    category = unicodedata.category(ch)
    if category in ("Cc", "Cs") or ch in _BIDI:  # a NUL, an escape, a lone surrogate (undecodable file name)
        return REPLACEMENT, False
    if category == "Cf":  # invisible by definition: joiners, soft hyphens, marks, BOMs
        return "", False
    return ch, category in ("Mn", "Me")


def _clean(text: str, limit: int) -> tuple[str, bool]:
    """``text`` as one line of at most ``limit`` characters (combining marks not counted), and whether it was cut.

    Whitespace becomes spaces (a run with a line break or tab becomes one space; plain runs of spaces are
    kept, they separate columns in generated lines), control and bidi characters "�", other format
    characters nothing. At most a fixed multiple of ``limit`` characters is read, so a megabyte costs what
    a line does.
    """
    limit = max(1, limit)
    out: list[str] = []
    count = marks = run = 0  # characters kept; marks on the last one; spaces pending
    plain = True  # the pending run is spaces only
    cut = False
    budget = limit * (MAX_MARKS + 2) + 64
    for ch in text[:budget]:
        new, mark = _char(ch)
        if new == " ":
            run, plain = run + 1, plain and ch == " "
            continue
        if not new or (mark and marks >= MAX_MARKS):
            continue
        if run and out:  # spaces only between characters: none leading, none trailing
            spaces = " " * run if plain else " "
            if count + len(spaces) >= limit:
                cut = True
                break
            out.append(spaces)
            count += len(spaces)
        run, plain = 0, True
        if mark:
            marks += 1
        elif count >= limit:
            cut = True
            break
        else:
            count, marks = count + 1, 0
        out.append(new)
    cut = cut or len(text) > budget
    return "".join(out), cut


def one_line(text: str, *, limit: int = MAX_LINE) -> str:
    """``text`` made drawable on one line, ending in "…" when it was longer than ``limit`` characters.

    Line breaks and tabs become spaces, control characters (NUL, escape) and bidi overrides "�", other
    invisible format characters are dropped, more than a few combining marks on one character are dropped,
    and only the first ``limit`` characters are kept (read, even: a megabyte costs what a line does).
    """
    line, cut = _clean(text, limit)
    return line + ELLIPSIS if cut else line


def max_chars(size: float, width: float) -> int:
    """The most characters of a font of ``size`` (an em, in the unit of ``width``) that can fit ``width``."""
    return max(1, math.ceil(max(0.0, width) / (MIN_GLYPH_EM * max(size, 1e-3))) + 1)


# -- fitting and wrapping by any measure (pixels, millimetres) ----------------------------------------


def _shorten(measure: Callable[[str], float], line: str, width: float, ellipsis: str) -> str:
    """The longest prefix of ``line`` that fits ``width`` with ``ellipsis`` after it: a binary search over
    the prefix length, so O(log n) measurements."""
    lo, hi = 0, len(line)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if measure(line[:mid].rstrip() + ellipsis) <= width:
            lo = mid
        else:
            hi = mid - 1
    return line[:lo].rstrip() + ellipsis


def fit_measured(
    measure: Callable[[str], float], text: str, width: float, *, limit: int, ellipsis: str = ELLIPSIS
) -> str:
    """``text`` as one line (see :func:`one_line`) shortened with ``ellipsis`` so ``measure`` of it is at most
    ``width``; ``limit`` bounds the characters looked at (see :func:`max_chars`)."""
    line, cut = _clean(text, limit)
    if not cut and measure(line) <= width:
        return line
    return _shorten(measure, line, width, ellipsis)


def _break(measure: Callable[[str], float], word: str, width: float) -> str:
    """The longest head of ``word`` that fits ``width`` (one character at least), cut after a "-", "_", "." or "/"
    in its second half when it has one ("knight-000012." | "safetensors")."""
    lo, hi = 1, len(word)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if measure(word[:mid]) <= width:
            lo = mid
        else:
            hi = mid - 1
    head = word[:lo]
    at = max(head.rfind(c) for c in "-_./")
    return head[: at + 1] if at + 1 >= len(head) / 2 and at + 1 < len(word) else head


def wrap_measured(
    measure: Callable[[str], float],
    text: str,
    width: float,
    lines: int,
    *,
    limit: int,
    ellipsis: str = ELLIPSIS,
    break_words: bool = False,
) -> list[str]:
    """Greedy word wrap of ``text`` into at most ``lines`` lines no wider than ``width``, keeping the spacing
    within lines; the last line ends in ``ellipsis`` when text remains. ``limit`` is per line. With
    ``break_words`` a word wider than a line (a file name) goes on over the next lines rather than end in "…"."""
    lines = max(1, lines)
    line, cut = _clean(text, limit * lines)
    out: list[str] = []
    current = ""
    for space, word in re.findall(r"( *)([^ ]+)", line):
        trial = current + space + word
        if not current or measure(trial) <= width:
            current = trial
        else:
            out.append(current)
            current = word
        while break_words and len(out) < lines - 1 and measure(current) > width:
            head = _break(measure, current, width)
            out.append(head)
            current = current[len(head) :]
        if len(out) == lines:  # the next word has no line left
            cut = True
            break
    else:
        if current:
            out.append(current)
    out = [fit_measured(measure, x, width, limit=limit, ellipsis=ellipsis) for x in out]
    if cut and out and not out[-1].endswith(ellipsis):
        out[-1] = _shorten(measure, out[-1], width, ellipsis)
    return out


# -- Pillow fonts ------------------------------------------------------------------------------------

# Fonts that draw most scripts (prompts are often not ASCII), where systems keep them; Pillow's own
# font (Latin only) is the fallback.
_UNICODE_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
    "C:/Windows/Fonts/arial.ttf",
)


@functools.cache
def unicode_font_file() -> Path | None:
    """A TrueType font with wide Unicode coverage installed on this machine, or None."""
    return next((Path(p) for p in _UNICODE_FONTS if Path(p).is_file()), None)


@functools.cache
def text_font(size: int) -> ImageFont.ImageFont:
    """A font for text read from files and prompts: a Unicode TrueType font when the system has one."""
    path = unicode_font_file()
    return ImageFont.truetype(str(path), size) if path else ImageFont.load_default(size=size)


def load_font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


_BASIC: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _basic(font):
    """``font`` with Pillow's basic layout (no shaping, no bidi), which lays out strings raqm refuses."""
    if font not in _BASIC:
        try:
            _BASIC[font] = font.font_variant(layout_engine=ImageFont.Layout.BASIC)
        except (AttributeError, *_TEXT_ERRORS):  # a bitmap font has no variants: it is basic already
            _BASIC[font] = font
    return _BASIC[font]


def _attempts(font, text: str):
    """(font, text) to try in turn: as given, with the basic layout, then with non-ASCII as "?"."""
    yield font, text
    basic = _basic(font)
    if basic is not font:
        yield basic, text
    yield basic, text.encode("ascii", "replace").decode("ascii")


def text_width(font, text: str) -> int:
    """The advance of ``text`` in pixels; never raises (an estimate when no layout can measure it)."""
    for f, t in _attempts(font, text):
        try:
            return math.ceil(f.getlength(t))
        except _TEXT_ERRORS:
            continue
    return math.ceil(len(text) * getattr(font, "size", 10) * 0.6)


def fit(font, text: str, width: int) -> str:
    """``text`` as one line, shortened with an ellipsis so it fits in ``width`` pixels."""
    limit = max_chars(getattr(font, "size", 10), width)
    return fit_measured(functools.partial(text_width, font), text, width, limit=limit)


def wrap(font, text: str, width: int, lines: int, *, break_words: bool = False) -> list[str]:
    """Greedy word wrap by pixel width, keeping the spacing within lines; the last allowed line gets
    an ellipsis if text remains (``break_words``: see :func:`wrap_measured`)."""
    limit = max_chars(getattr(font, "size", 10), width)
    measure = functools.partial(text_width, font)
    return wrap_measured(measure, text, width, lines, limit=limit, break_words=break_words)


def draw_text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, *, font, fill, anchor=None) -> None:
    """``draw.text`` of ``text`` made one line; falls back to the basic layout, then ASCII, rather than raise.

    Modifies the image of ``draw`` in place. Text that no layout can draw is skipped with a warning.
    """
    line = one_line(text)
    for f, t in _attempts(font, line):
        try:
            draw.text(xy, t, font=f, fill=fill, anchor=anchor)
            return
        except _TEXT_ERRORS as err:
            logger.debug("could not draw %r with %s: %s", t[:80], f, err)
    logger.warning("could not draw the text %r; left it out", line[:80])
