"""Comparison sheets: the labelled grid with its zoom panels, drawn as one image or as pages.

Layout: a header with base model, run, prompt(s), seeds and settings; a column per
checkpoint labelled with epoch/step, file name and hash; a row per prompt × seed × scale;
below the grid, one zoom strip per zoom region × row. Error cells show their message in
place of the image, so a sheet always tells the whole story. A grid too large for one image
is split into pages (by rows, then by column groups that each repeat the base column).
Writing the pages, PDF, cells and manifest to disk is ``export.py``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from ..engine.plan import CellResult, RenderSettings, Row
from .drawing import BG, ERR, FG, MUTED, PAD, column_text, draw_text, fit, fit_label, load_font, wrap
from .gridcells import GridCells
from .zoom import StripLayout, ZoomSpec, strip_layout, zoom_strip

__all__ = ["MAX_SHEET_PIXELS", "SheetInfo", "SheetLayout", "compose_pages", "compose_sheet", "layout_pages"]

logger = logging.getLogger(__name__)

# Keep sheets openable by Pillow elsewhere: its decompression-bomb warning starts at ~89 Mpx.
MAX_SHEET_PIXELS = 80_000_000
# Browsers and image viewers refuse wider images, and a PDF page must stay under 200 inches.
MAX_SHEET_SIDE = 16_384
MIN_CELL = 64  # px: pages shrink cells (only when one cell alone does not fit) down to this smaller side
PAGE_LINES = 2  # lines kept on each page for "page i of n · rows … · epochs …"


@dataclass(frozen=True)
class SheetInfo:
    """What the header of a sheet says."""

    base: str
    run: str
    settings: RenderSettings
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    scales: tuple[float, ...]

    def lines(self) -> list[str]:
        s = self.settings
        prompts = " | ".join(self.prompts)
        lines = [f"base: {self.base}    run: {self.run}", f"prompt: {prompts}"]
        if s.negative:
            lines.append(f"negative: {s.negative}")
        lines.append(
            f"seed: {', '.join(map(str, self.seeds))}    steps: {s.steps}    guidance: {s.guidance:g}    "
            f"size: {s.width}x{s.height}    LoRA scale: {', '.join(f'{x:g}' for x in self.scales)}"
        )
        return lines


@dataclass(frozen=True)
class _Geometry:
    """Cell size and the fonts and margins that follow from it."""

    cw: int
    ch: int
    small: ImageFont.ImageFont
    body: ImageFont.ImageFont
    title: ImageFont.ImageFont
    row_label_w: int
    col_label_h: int

    @classmethod
    def at(cls, cw: int, ch: int) -> _Geometry:
        small, body, title = load_font(max(11, cw // 22)), load_font(max(12, cw // 18)), load_font(max(14, cw // 14))
        col_label_h = PAD + body.size + 4 + 2 * (small.size + 3)
        return cls(cw, ch, small, body, title, min(280, max(120, cw // 2)), col_label_h)


@dataclass(frozen=True)
class Page:
    rows: tuple[int, ...]  # grid row indices on this page
    cols: tuple[int, ...]  # grid column indices, base first
    size: tuple[int, int]


class _Grid(GridCells):
    """A grid's results indexed for drawing, and the arithmetic that sizes its pages."""

    def __init__(self, results: Sequence[CellResult], rows: Sequence[Row], info: SheetInfo, zooms):
        super().__init__(results, rows, info)
        self.zooms: list[ZoomSpec] = list(zooms)
        self._headers: dict[tuple[int, int], list[str]] = {}
        self.paged = False  # a paged sheet says on each page which part of the grid it shows

    def header(self, g: _Geometry, width: int) -> list[str]:
        key = (g.body.size, width)
        if key not in self._headers:
            self._headers[key] = [x for line in self.info.lines() for x in wrap(g.body, line, width - 2 * PAD, 3)]
        return self._headers[key]

    def grid_width(self, g: _Geometry, k: int) -> int:
        return g.row_label_w + k * (g.cw + PAD) + PAD

    def strip_width(self, g: _Geometry, k: int) -> int:
        """Strips sit under the grid's columns (right of the row labels) and are no wider."""
        return k * (g.cw + PAD) + PAD

    def strips(self, g: _Geometry, k: int) -> list[StripLayout]:
        width = self.strip_width(g, k)
        return [
            strip_layout(z.box, self.image_size, k, factor=z.factor, method=z.method, max_width=width)
            for z in self.zooms
        ]

    def size(self, g: _Geometry, k: int, r: int) -> tuple[int, int]:
        """The pixel size of a page of ``k`` columns and ``r`` rows."""
        strips = self.strips(g, k)
        width = max([self.grid_width(g, k), *(g.row_label_w - PAD + s.size[0] for s in strips)])
        lines = len(self.header(g, width)) + (PAGE_LINES if self.paged else 0)
        header = 2 * PAD + g.title.size + 4 + lines * (g.body.size + 4)
        per_row = g.ch + PAD + sum(s.size[1] + PAD for s in strips)
        return width, header + g.col_label_h + PAD + r * per_row


def _fits(size: tuple[int, int], max_pixels: int, max_side: int) -> bool:
    return size[0] * size[1] <= max_pixels and max(size) <= max_side


def _geometry(grid: _Grid, k: int, r: int, max_pixels: int, max_side: int, *, strict: bool) -> _Geometry:
    """The largest cell size (full size at most) at which a page of k x r cells fits."""
    w, h = grid.image_size
    floor = min(1.0, MIN_CELL / min(w, h))
    scale = 1.0
    while True:
        g = _Geometry.at(max(1, round(w * scale)), max(1, round(h * scale)))
        size = grid.size(g, k, r)
        if _fits(size, max_pixels, max_side) or (scale <= floor and not strict):
            return g
        if scale <= floor:
            raise ValueError(
                f"a sheet page should fit {k} column(s) of one row with cells of at least {MIN_CELL} px, which takes "
                f"{size[0]}x{size[1]} px; got max_pixels={max_pixels:,} and max_side={max_side:,}: raise them"
            )
        scale = max(floor, scale * 0.9)


def _chunks(items: Sequence[int], n: int) -> list[list[int]]:
    """``items`` cut into ``n`` runs whose lengths differ by at most one."""
    q, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        end = start + q + (i < extra)
        out.append(list(items[start:end]))
        start = end
    return out


def _plan(grid: _Grid, max_pixels: int, max_side: int) -> tuple[_Geometry, list[Page]]:
    """Split the grid into pages under the limits: rows first, then column groups that repeat the base."""
    full = _Geometry.at(*grid.image_size)
    if _fits(grid.size(full, len(grid.cols), len(grid.rows)), max_pixels, max_side):
        return full, [
            Page(tuple(range(len(grid.rows))), tuple(grid.cols), grid.size(full, len(grid.cols), len(grid.rows)))
        ]
    grid.paged = True
    base = grid.base_cols
    others = [c for c in grid.cols if c not in base]
    k_min = len(base) + (1 if others else 0)
    g = _geometry(grid, k_min, 1, max_pixels, max_side, strict=True)

    def fits(k: int, r: int) -> bool:
        return _fits(grid.size(g, k, r), max_pixels, max_side)

    groups = [grid.cols]
    if not fits(len(grid.cols), 1):
        k = next(k for k in range(len(grid.cols) - 1, k_min - 1, -1) if fits(k, 1))
        groups = [base + chunk for chunk in _chunks(others, math.ceil(len(others) / (k - len(base))))]
    widest = max(len(cols) for cols in groups)
    per_page = 1
    while per_page < len(grid.rows) and fits(widest, per_page + 1):
        per_page += 1
    row_groups = _chunks(range(len(grid.rows)), math.ceil(len(grid.rows) / per_page))
    pages = [
        Page(tuple(rows), tuple(cols), grid.size(g, len(cols), len(rows))) for rows in row_groups for cols in groups
    ]
    return g, pages


def _draw(grid: _Grid, g: _Geometry, page: Page, number: int, count: int) -> Image.Image:
    """Draw one page: header, column labels, the cells of its rows and columns, then its zoom strips."""
    width = page.size[0]
    sheet = Image.new("RGB", page.size, BG)
    draw = ImageDraw.Draw(sheet)

    # 1. Header: title, the page's place in the grid (when paged), then the settings.
    y = PAD
    draw_text(draw, (PAD, y), "zbench comparison sheet", font=g.title, fill=FG)
    y += g.title.size + 4
    if grid.paged:
        where = f"page {number} of {count} · rows {page.rows[0] + 1}-{page.rows[-1] + 1} of {len(grid.rows)}"
        checkpoints = [grid.checkpoints[c] for c in page.cols if c not in grid.base_cols]
        if checkpoints:
            where += f" · {checkpoints[0].label} … {checkpoints[-1].label} of {len(grid.cols) - len(grid.base_cols)}"
        for n, line in enumerate(wrap(g.body, where, width - 2 * PAD, PAGE_LINES)):
            draw_text(draw, (PAD, y + n * (g.body.size + 4)), line, font=g.body, fill=MUTED)
        y += PAGE_LINES * (g.body.size + 4)
    for line in grid.header(g, width):
        draw_text(draw, (PAD, y), line, font=g.body, fill=FG)
        y += g.body.size + 4
    y += PAD

    # 2. Column labels.
    for j, col in enumerate(page.cols):
        x = g.row_label_w + j * (g.cw + PAD)
        label, name, digest = column_text(grid.checkpoints[col])
        draw_text(draw, (x, y), fit_label(g.body, label, g.cw), font=g.body, fill=FG)
        draw_text(draw, (x, y + g.body.size + 4), fit(g.small, name, g.cw), font=g.small, fill=MUTED)
        draw_text(
            draw, (x, y + g.body.size + 4 + g.small.size + 3), fit(g.small, digest, g.cw), font=g.small, fill=MUTED
        )
    y += g.col_label_h

    # 3. Rows: label, then each column's image or error message.
    for i, r in enumerate(page.rows):
        top = y + i * (g.ch + PAD)
        limit = max(1, g.ch // (g.body.size + 3))
        for n, line in enumerate(wrap(g.body, grid.row_label(r), g.row_label_w - 2 * PAD, limit)):
            draw_text(draw, (PAD, top + n * (g.body.size + 3)), line, font=g.body, fill=FG)
        for j, col in enumerate(page.cols):
            result = grid.by_pos.get((r, col))
            if result is not None:
                _draw_cell(sheet, draw, g, result, (g.row_label_w + j * (g.cw + PAD), top))
    y += len(page.rows) * (g.ch + PAD) + PAD

    # 4. Zoom strips, one per zoom x row, under the grid's columns; the row label on their left.
    if grid.zooms:
        draw.line([(PAD, y - PAD // 2), (width - PAD, y - PAD // 2)], fill=MUTED)
    shown = [grid.by_pos[(r, c)] for r in page.rows for c in page.cols if (r, c) in grid.by_pos]
    for zoom in grid.zooms:
        for r in page.rows:
            if not any(res.cell.row == r for res in shown):
                continue
            strip = zoom_strip(
                shown,
                zoom.box,
                row=r,
                factor=zoom.factor,
                method=zoom.method,
                max_width=grid.strip_width(g, len(page.cols)),
                image_size=grid.image_size,
            )
            sheet.paste(strip, (g.row_label_w - PAD, y))
            name = fit(g.body, zoom.box.name, g.row_label_w - 2 * PAD)
            lines = [name, *wrap(g.body, grid.row_label(r), g.row_label_w - 2 * PAD, 3)]
            for n, line in enumerate(lines):
                draw_text(draw, (PAD, y + PAD + n * (g.body.size + 3)), line, font=g.body, fill=MUTED if n == 0 else FG)
            y += strip.height + PAD
    return sheet


def _draw_cell(sheet: Image.Image, draw: ImageDraw.ImageDraw, g: _Geometry, result: CellResult, at: tuple[int, int]):
    x, y = at
    if result.image is not None:
        sheet.paste(result.image.convert("RGB").resize((g.cw, g.ch), Image.Resampling.LANCZOS), (x, y))
        return
    draw.rectangle([x, y, x + g.cw - 1, y + g.ch - 1], fill=(238, 232, 232), outline=ERR)
    limit = max(1, (g.ch - 8) // (g.small.size + 2))
    for i, line in enumerate(wrap(g.small, f"{result.status}: {result.error or ''}", g.cw - 8, limit)):
        draw_text(draw, (x + 4, y + 4 + i * (g.small.size + 2)), line, font=g.small, fill=ERR)


def compose_sheet(
    results: Sequence[CellResult], rows: Sequence[Row], info: SheetInfo, *, zooms: Sequence[ZoomSpec] = ()
) -> Image.Image:
    """Draw the labelled grid of a render as one image, with zoom strips below it.

    Cells shrink (to 64 px at least) to keep the image under ``MAX_SHEET_PIXELS``; for grids
    too large for that, ``compose_pages`` splits them into pages instead.

    Args:
        results: one per cell, in any order (placed by their row and column).
        rows: the grid's rows, for the row labels.
        zooms: zoom panels, drawn below the grid as one strip per zoom x row.
    """
    grid = _Grid(results, rows, info, zooms)
    k, r = len(grid.cols), len(grid.rows)
    g = _geometry(grid, k, r, MAX_SHEET_PIXELS, 2**31, strict=False)
    return _draw(grid, g, Page(tuple(range(r)), tuple(grid.cols), grid.size(g, k, r)), 1, 1)


def compose_pages(results: Sequence[CellResult], rows: Sequence[Row], info: SheetInfo, **options) -> list[Image.Image]:
    """Draw the grid as pages, each under ``max_pixels`` and ``max_side``, cells at full size where possible.

    Rows are split first; a row too wide for one page is split into column groups, each with
    the base column first. Every page repeats the header with "page i of n". Cells shrink
    only when one row of the base and one checkpoint would not fit at full size.

    Args:
        options: ``zooms``, ``max_pixels`` and ``max_side``, as in :func:`layout_pages`.

    Raises:
        ValueError: no results, or limits too small for even one row of 64 px cells.
    """
    layout = layout_pages(results, rows, info, **options)
    return [layout.draw(i) for i in range(1, len(layout.pages) + 1)]


@dataclass(frozen=True)
class SheetLayout:
    """A grid planned into pages under size limits, drawn one page at a time (to keep memory flat)."""

    grid: _Grid
    geometry: _Geometry
    pages: list[Page]

    def draw(self, number: int) -> Image.Image:
        """Draw page ``number`` (1-based) of ``pages``."""
        return _draw(self.grid, self.geometry, self.pages[number - 1], number, len(self.pages))


def layout_pages(
    results: Sequence[CellResult],
    rows: Sequence[Row],
    info: SheetInfo,
    *,
    zooms: Sequence[ZoomSpec] = (),
    max_pixels: int = MAX_SHEET_PIXELS,
    max_side: int = MAX_SHEET_SIDE,
) -> SheetLayout:
    """Plan the pages of :func:`compose_pages` without drawing them.

    Args:
        zooms: zoom panels, drawn below the grid as one strip per zoom x row.
        max_pixels, max_side: the limits of one page.

    Raises:
        ValueError: no results, or limits too small for even one row of 64 px cells.
    """
    grid = _Grid(results, rows, info, zooms)
    g, pages = _plan(grid, max_pixels, max_side)
    return SheetLayout(grid, g, pages)
