"""The decision's marks on a column of an export: a "released" and a "shortlist" badge, and the stars.

The share image and the PDF draw them under a column's label (the PDF with its own calls, the same colours); the
offline viewer gets them as data for the grid component, which draws them as the page does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from PIL import ImageDraw

from ..engine.checkpoints import Checkpoint
from .drawing import draw_text, text_width

__all__ = [
    "RELEASE",
    "SHORTLIST",
    "STAR",
    "STAR_OFF",
    "Marks",
    "column_marks",
    "draw_marks",
    "mark_rows",
    "marks_height",
    "star_points",
]

# The decision's marks, in the grid component's colours (web/grid.css): released, shortlist, a lit star.
RELEASE, SHORTLIST, STAR, STAR_OFF = (26, 127, 55), (31, 95, 191), (209, 143, 0), (205, 205, 205)


@dataclass(frozen=True)
class Marks:
    """What the run's decision says about one column: released, on the shortlist, its stars (1-5, or None)."""

    release: bool = False
    short: bool = False
    stars: int | None = None


def column_marks(
    checkpoint: Checkpoint | None,
    *,
    release: Mapping | None = None,
    shortlist: Sequence[str] = (),
    ratings: Mapping[str, int] | None = None,
) -> Marks:
    """A column's :class:`Marks` from a release record (``DecisionStore.release()``), the shortlist's checkpoint
    names and the ratings by name, matched by file name as the page does; the base column has none."""
    if checkpoint is None:
        return Marks()
    stars = (ratings or {}).get(checkpoint.name)
    valid = isinstance(stars, int) and not isinstance(stars, bool) and 1 <= stars <= 5
    return Marks(
        release=bool(release) and release.get("checkpoint") == checkpoint.name,
        short=checkpoint.name in shortlist,
        stars=stars if valid else None,
    )


def mark_rows(marks: Sequence[Marks]) -> tuple[bool, bool]:
    """The rows a column header needs for these columns' marks: (badges, stars), each only when one column has it."""
    return any(m.release or m.short for m in marks), any(m.stars for m in marks)


def _mark_metrics(font) -> tuple[int, int, int]:
    """(badge height, padding inside a badge, gap after one) in px for marks drawn with ``font``."""
    size = getattr(font, "size", 10)
    return round(size * 1.3), max(3, round(size * 0.3)), max(2, round(size * 0.2))


def marks_height(font, rows: tuple[bool, bool]) -> int:
    """The height in px of the mark rows :func:`draw_marks` draws with ``font``."""
    h, _, gap = _mark_metrics(font)
    return sum(rows) * (h + gap)


def star_points(cx: float, cy: float, radius: float) -> list[tuple[float, float]]:
    """The ten corners of a five-pointed star centred at (cx, cy), its points ``radius`` from the centre, one up.

    Drawn as a polygon, not a "★" glyph: the fallback fonts (Pillow's, the PDF's core fonts) have none.
    """
    inner = radius * 0.4
    return [
        (cx + r * math.sin(math.pi * i / 5), cy - r * math.cos(math.pi * i / 5))
        for i, r in enumerate([radius, inner] * 5)
    ]


def draw_marks(draw: ImageDraw.ImageDraw, xy: tuple[int, int], width: int, marks: Marks, font, rows) -> None:
    """A column's marks under its label: a green "released" and a blue "shortlist" badge on the first row, the
    stars on the next (``rows`` as :func:`mark_rows`, so every column of an export has the same rows). Badges
    narrower than ``width`` shorten to "rel" and "SL"; five stars that do not fit become one star and the count.

    Modifies the image of ``draw`` in place.
    """
    x, y = xy
    h, pad, gap = _mark_metrics(font)
    if rows[0]:
        for names in (("released", "shortlist"), ("released", "SL"), ("rel", "SL")):
            on = (marks.release, marks.short)
            badges = [(n, c) for n, c, shown in zip(names, (RELEASE, SHORTLIST), on, strict=True) if shown]
            widths = [text_width(font, n) + 2 * pad for n, _ in badges]
            if sum(widths) + gap * (len(widths) - 1) <= width:
                break
        left = x
        for (name, colour), w in zip(badges, widths, strict=True):
            draw.rounded_rectangle([left, y, left + w - 1, y + h - 1], radius=pad, fill=colour)
            draw_text(draw, (left + pad, y + h / 2), name, font=font, fill=(255, 255, 255), anchor="lm")
            left += w + gap
        y += h + gap
    if rows[1] and marks.stars:
        r = h * 0.45  # a star's radius; one star every h px
        if 5 * h <= width:
            for i in range(5):
                lit = i < marks.stars
                draw.polygon(star_points(x + i * h + h / 2, y + h / 2, r), fill=STAR if lit else None,
                             outline=STAR if lit else STAR_OFF)  # fmt: skip
        else:
            draw.polygon(star_points(x + h / 2, y + h / 2, r), fill=STAR)
            draw_text(draw, (x + h + gap, y + h / 2), str(marks.stars), font=font, fill=STAR, anchor="lm")
