"""Crop-zoom panels: the same region of every checkpoint's image, enlarged side by side.

A region is picked once, in fractions of the image, so it maps onto any render size. A strip
shows one grid row: a labelled, enlarged crop per column, base first, labelled as the sheet
labels its columns (``drawing.py``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from PIL import Image, ImageDraw, ImageFont

from ..engine.plan import CellResult
from .drawing import BG, ERR, FG, MUTED, PAD, column_text, fit, fit_label, load_font, text_width, wrap

__all__ = ["Method", "ZoomBox", "ZoomSpec", "crop_zoom", "draw_boxes", "zoom_strip"]

Method = Literal["nearest", "smooth"]
_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "smooth": Image.Resampling.LANCZOS}
MIN_FACTOR, MAX_FACTOR = 2, 8
# When a strip has no image to measure, crops are taken as if from an image of this size (px).
FALLBACK_SIZE = (256, 256)
PLACEHOLDER = (214, 214, 214)
BOX_COLOURS = [(255, 64, 64), (40, 140, 255), (255, 190, 0), (40, 200, 110), (210, 70, 255)]
_TOLERANCE = 1e-9  # x + w may overshoot 1 by a rounding error when built from pixels


@dataclass(frozen=True)
class ZoomBox:
    """A region picked once, in fractions of the image (0..1), so it maps onto any render size."""

    name: str
    x: float  # left edge, fraction of the width
    y: float  # top edge, fraction of the height
    w: float
    h: float

    def __post_init__(self):
        if not self.name:
            raise ValueError("a zoom box should have a name (e.g. 'eyes'), got an empty string")
        for field, value in (("x", self.x), ("y", self.y)):
            if not 0 <= value < 1:
                raise ValueError(f"zoom box {self.name!r}: {field} should be in [0, 1), got {value}")
        for field, value in (("w", self.w), ("h", self.h)):
            if not value > 0:
                raise ValueError(f"zoom box {self.name!r}: {field} should be > 0, got {value}")
        if not self.x + self.w <= 1 + _TOLERANCE:
            raise ValueError(f"zoom box {self.name!r}: x + w should be at most 1, got {self.x} + {self.w}")
        if not self.y + self.h <= 1 + _TOLERANCE:
            raise ValueError(f"zoom box {self.name!r}: y + h should be at most 1, got {self.y} + {self.h}")

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The region on a ``width`` x ``height`` image: (left, top, right, bottom), at least 1 px each way."""
        if width < 1 or height < 1:
            raise ValueError(f"image size should be at least 1x1, got {width}x{height}")

        def edges(start: float, size: float, extent: int) -> tuple[int, int]:
            lo = min(extent - 1, math.floor(start * extent + 0.5))
            hi = min(extent, max(lo + 1, math.floor((start + size) * extent + 0.5)))
            return lo, hi

        left, right = edges(self.x, self.w, width)
        top, bottom = edges(self.y, self.h, height)
        return left, top, right, bottom

    @classmethod
    def from_pixels(cls, name: str, box: tuple[int, int, int, int], width: int, height: int) -> ZoomBox:
        """A box from a pixel region (left, top, right, bottom) picked on a ``width`` x ``height`` image."""
        left, top, right, bottom = box
        if not (0 <= left < right <= width and 0 <= top < bottom <= height):
            raise ValueError(
                f"zoom box {name!r}: the region should satisfy 0 <= left < right <= {width} and "
                f"0 <= top < bottom <= {height}, got {box}"
            )
        return cls(name, left / width, top / height, (right - left) / width, (bottom - top) / height)

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "x": self.x, "y": self.y, "w": self.w, "h": self.h}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ZoomBox:
        try:
            return cls(str(data["name"]), *(float(data[k]) for k in "xywh"))
        except KeyError as err:
            raise ValueError(f"a zoom box needs name, x, y, w and h; got keys {sorted(data)}") from err


def _check_zoom(factor: int, method: str) -> None:
    if not (
        isinstance(factor, numbers.Integral) and not isinstance(factor, bool) and MIN_FACTOR <= factor <= MAX_FACTOR
    ):
        raise ValueError(f"zoom factor should be an integer from {MIN_FACTOR} to {MAX_FACTOR}, got {factor!r}")
    if method not in _RESAMPLE:
        raise ValueError(f"zoom method should be one of {', '.join(get_args(Method))}, got {method!r}")


@dataclass(frozen=True)
class ZoomSpec:
    """A zoom panel of a sheet: which region, how much larger, and how pixels are enlarged."""

    box: ZoomBox
    factor: int = 4
    method: Method = "nearest"  # nearest shows the real pixels; smooth (Lanczos) is easier on the eye

    def __post_init__(self):
        _check_zoom(self.factor, self.method)

    def to_json(self) -> dict[str, object]:
        return {**self.box.to_json(), "factor": self.factor, "method": self.method}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ZoomSpec:
        return cls(ZoomBox.from_json(data), data.get("factor", 4), data.get("method", "nearest"))


def crop_zoom(image: Image.Image, box: ZoomBox, *, factor: int = 4, method: Method = "nearest") -> Image.Image:
    """Crop ``box`` out of ``image`` and enlarge it ``factor`` times.

    Raises:
        ValueError: factor outside 2..8, or an unknown method.
    """
    _check_zoom(factor, method)
    return _enlarge(image, box, factor, method)


def _enlarge(image: Image.Image, box: ZoomBox, scale: int, method: str, size: tuple[int, int] | None = None):
    crop = image.crop(box.pixels(*image.size))
    return crop.resize(size or (crop.width * scale, crop.height * scale), _RESAMPLE[method])


@dataclass(frozen=True)
class StripLayout:
    scale: int  # the enlargement used: the asked factor, or less to fit max_width
    cell: tuple[int, int]  # one enlarged crop (px)
    title: list[str]  # one or two lines
    title_font: ImageFont.ImageFont
    body: ImageFont.ImageFont
    small: ImageFont.ImageFont
    size: tuple[int, int]  # the whole strip (px)


def strip_layout(
    box: ZoomBox,
    image_size: tuple[int, int],
    ncols: int,
    *,
    factor: int,
    method: str,
    max_width: int | None,
    caption: str = "",
) -> StripLayout:
    """Where everything of a strip goes; ``sheet.py`` uses it to size pages before drawing."""
    left, top, right, bottom = box.pixels(*image_size)
    cw, ch = right - left, bottom - top
    scale = factor
    while scale > 1 and max_width is not None and PAD + ncols * (cw * scale + PAD) > max_width:
        scale -= 1
    cell = (cw * scale, ch * scale)
    # The sheet's rule for its cells, so a strip's text matches the grid's above it.
    small, body, title_font = (
        load_font(max(11, cell[0] // 22)),
        load_font(max(12, cell[0] // 18)),
        load_font(max(13, cell[0] // 16)),
    )
    # Plain "x" and "-": Pillow's built-in font has no "×" or "–" glyph.
    title = f"zoom {box.name}: {left},{top}-{right},{bottom} ({cw}x{ch} px of {image_size[0]}x{image_size[1]})"
    title += f" x{scale} {method}" + (f" (x{factor} asked, reduced to fit)" if scale < factor else "")
    if caption:
        title += f" · {caption}"
    width = PAD + ncols * (cell[0] + PAD)
    want = text_width(title_font, title) + 2 * PAD  # widen for the title, within max_width
    width = max(width, min(want, max_width or want))
    titles = wrap(title_font, title, width - 2 * PAD, 2)
    height = PAD + len(titles) * (title_font.size + 4) + body.size + 4 + small.size + 3 + cell[1] + PAD
    return StripLayout(scale, cell, titles, title_font, body, small, (width, height))


def zoom_strip(
    results: Sequence[CellResult],
    box: ZoomBox,
    *,
    row: int,
    factor: int = 4,
    method: Method = "nearest",
    max_width: int | None = None,
    image_size: tuple[int, int] | None = None,
    caption: str = "",
) -> Image.Image:
    """The same region of every column of one grid row, enlarged side by side and labelled.

    Args:
        results: cells of a grid (any rows; only ``row`` is drawn), placed by column.
        max_width: if the strip would be wider, the enlargement is reduced (never below 1x).
        image_size: the render size the region is measured on (default: the first image found).
        caption: appended to the title, e.g. the row's label.

    Returns:
        An RGB image; cells without an image (error, stopped, pending) are grey placeholders saying so.

    Raises:
        ValueError: no cell in ``row``, factor outside 2..8, or an unknown method.
    """
    _check_zoom(factor, method)
    cells = sorted((r for r in results if r.cell.row == row), key=lambda r: r.cell.col)
    if not cells:
        present = sorted({r.cell.row for r in results})
        raise ValueError(f"zoom strip: row should be one of the grid's rows {present}, got {row}")
    if image_size is None:
        image_size = next((r.image.size for r in cells if r.image is not None), None)
        image_size = image_size or next((r.image.size for r in results if r.image is not None), FALLBACK_SIZE)
    lay = strip_layout(box, image_size, len(cells), factor=factor, method=method, max_width=max_width, caption=caption)
    strip = Image.new("RGB", lay.size, BG)
    draw = ImageDraw.Draw(strip)
    y = PAD
    for line in lay.title:
        draw.text((PAD, y), line, font=lay.title_font, fill=FG)
        y += lay.title_font.size + 4
    cw, ch = lay.cell
    for i, result in enumerate(cells):
        x = PAD + i * (cw + PAD)
        label, name, _ = column_text(result.cell.checkpoint)
        draw.text((x, y), fit_label(lay.body, label, cw), font=lay.body, fill=FG)
        draw.text((x, y + lay.body.size + 4), fit(lay.small, name, cw), font=lay.small, fill=MUTED)
        top = y + lay.body.size + 4 + lay.small.size + 3
        if result.image is not None:
            strip.paste(_enlarge(result.image.convert("RGB"), box, lay.scale, method, lay.cell), (x, top))
        else:
            draw.rectangle([x, top, x + cw - 1, top + ch - 1], fill=PLACEHOLDER, outline=ERR)
            lines = max(1, (ch - 4) // (lay.small.size + 2))
            for j, line in enumerate(wrap(lay.small, result.status, cw - 6, lines)):
                draw.text((x + 3, top + 2 + j * (lay.small.size + 2)), line, font=lay.small, fill=ERR)
    return strip


def draw_boxes(image: Image.Image, boxes: Sequence[ZoomBox]) -> Image.Image:
    """Outline each zoom box, with its name, on a copy of ``image`` (to show where the regions are)."""
    out = image.convert("RGB")  # always a copy
    draw = ImageDraw.Draw(out)
    line = max(1, round(min(out.size) / 256))
    font = load_font(max(11, min(out.size) // 32))
    for i, box in enumerate(boxes):
        colour = BOX_COLOURS[i % len(BOX_COLOURS)]
        left, top, right, bottom = box.pixels(*out.size)
        draw.rectangle([left, top, right - 1, bottom - 1], outline=colour, width=line)
        tw, th = text_width(font, box.name) + 4, font.size + 3
        ty = top - th if top >= th else min(bottom, out.height - th)  # above the box, else below it
        draw.rectangle([left, ty, left + tw, ty + th], fill=colour)
        draw.text((left + 2, ty + 1), box.name, font=font, fill=(0, 0, 0))
    return out
