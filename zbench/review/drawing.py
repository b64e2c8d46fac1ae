"""Text and colours shared by every picture the review tools draw: zoom strips and sheet pages.

Column labels ("epoch 10", file name, hash), fitting text to a width with an ellipsis, and
wrapping by pixel width, so strips and sheets label checkpoints the same way.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

from PIL import ImageFont

from ..engine.checkpoints import Checkpoint

__all__ = [
    "BASE_LABEL",
    "BG",
    "ERR",
    "FG",
    "MUTED",
    "PAD",
    "column_text",
    "fit",
    "fit_label",
    "load_font",
    "text_font",
    "text_width",
    "unicode_font_file",
    "wrap",
]

PAD = 8
BG, FG, MUTED, ERR = (250, 250, 250), (20, 20, 20), (110, 110, 110), (180, 30, 30)
BASE_LABEL = "base (LoRA off)"


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


def text_width(font, text: str) -> int:
    return math.ceil(font.getlength(text))


def fit(font, text: str, width: int) -> str:
    """Shorten text with an ellipsis so it fits in ``width`` pixels."""
    if text_width(font, text) <= width:
        return text
    lo, hi = 0, len(text)  # binary search for the longest prefix that fits with the ellipsis
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text_width(font, text[:mid] + "…") <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "…"


def wrap(font, text: str, width: int, lines: int) -> list[str]:
    """Greedy word wrap by pixel width, keeping the spacing within lines; the last allowed line gets
    an ellipsis if text remains."""
    out: list[str] = []
    current = ""
    for space, word in re.findall(r"(\s*)(\S+)", text):
        trial = current + space + word
        if text_width(font, trial) <= width or not current:
            current = trial
        else:
            out.append(current)
            current = word
    if current:
        out.append(current)
    if len(out) > lines:
        out = [*out[: lines - 1], " ".join(out[lines - 1 :])]
    return [fit(font, line, width) for line in out]
