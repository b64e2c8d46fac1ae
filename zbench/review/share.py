"""The share image: one picture of a grid that can be posted as it is (Discord, Civitai, a forum).

Rules it keeps: at most 4096 px on its longest side and 8 MB; a large title (run and base model), drawn in
full (wrapped onto two lines, or smaller, rather than cut); prompt, seeds and settings in a header whose text
is 2% of the image's height (1.5% at least where a long prompt needs it) and which takes at most 15% of it (a
long prompt loses its last lines, then the text shrinks, only for a grid too small for both); checkpoint
labels at least 16 px tall; no local paths (the run is named by its folder); a wide grid wraps into bands,
each led by the base column, of 8 columns or of as many as give the largest cells (30 checkpoints over
several rows make a wide image, not a tall strip of 100 px cells); zoom strips sit under their columns, one
crop per column at the column's width. With the run's decision, the released checkpoint's column has a green
"released" badge and a green frame round its cells, shortlisted ones a blue "shortlist" badge, rated ones
their stars.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from ..engine.plan import CellResult, Row
from .drawing import (
    BG,
    ERR,
    FG,
    MUTED,
    PAD,
    column_text,
    draw_text,
    fit,
    fit_label,
    one_line,
    text_font,
    text_width,
    wrap,
)
from .gridcells import BAND_COLUMNS, GridCells
from .marks import RELEASE, Marks, column_marks, draw_marks, mark_rows, marks_height
from .zoom import ZoomSpec

__all__ = [
    "SHARE_MAX_BYTES",
    "SHARE_MAX_SIDE",
    "compose_share",
    "encode_share",
    "header_lines",
    "release_line",
    "share_title",
]

SHARE_MAX_SIDE = 4096  # px: what chat apps and forums show without downscaling it to mush
SHARE_MAX_BYTES = 8 * 2**20  # Discord's upload limit without Nitro
HEADER_SHARE = 0.02  # header text height, as a share of the image height
HEADER_MAX = 0.15  # the whole header (title, prompts, settings), as a share of the image height, at most
MIN_HEADER = 14  # px: the header text shrinks below 2% of the height, down to this, only to stay within HEADER_MAX
TITLE_LINES = 2  # the title wraps onto this many lines before it gets smaller
MIN_LABEL = 16  # px, checkpoint labels
PLACEHOLDER = (238, 232, 232)


def share_title(info) -> str:
    """The run named by its folder (never a local path) and the base model."""
    return f"{Path(info.run).name or info.run} · {info.base}"


def header_lines(info) -> list[str]:
    """Prompt, negative and settings for a header, without local paths."""
    s = info.settings
    prompts = info.prompts
    lines = [f"prompt: {prompts[0]}"] if len(prompts) == 1 else [f"prompt {i}: {p}" for i, p in enumerate(prompts, 1)]
    if s.negative:
        lines.append(f"negative: {s.negative}")
    scales = ", ".join(f"{x:g}" for x in info.scales)
    lines.append(
        f"seed {', '.join(map(str, info.seeds))} · {s.steps} steps · guidance {s.guidance:g} · "
        f"{s.width}x{s.height} · LoRA scale {scales}"
    )
    return lines


def release_line(release: Mapping | None) -> str | None:
    """The release decision in one line for a header ("released: x.safetensors (epoch 12) by ana on 2026-11-26"),
    or None without one. The record's fields are shown only when they are text or whole numbers."""
    if not release or not isinstance(release.get("checkpoint"), str):
        return None
    line = f"released: {release['checkpoint']}"
    epoch = release.get("epoch")
    if isinstance(epoch, int) and not isinstance(epoch, bool):
        line += f" (epoch {epoch})"
    if isinstance(release.get("who"), str) and release["who"]:
        line += f" by {release['who']}"
    if isinstance(release.get("when"), str) and release["when"]:
        line += f" on {release['when'][:10]}"
    return line


@dataclass(frozen=True)
class _Cells:
    """The grid part of the image at one cell size: fonts, widths, and its height without the header."""

    cw: int
    ch: int
    label: object  # fonts
    small: object
    small_lines: int  # lines under each column label (a file name too long for one goes on over two)
    marks: tuple[bool, bool]  # mark rows under the column labels (badges, stars)
    row_label_w: int
    strip_heights: list[int]  # one per zoom: crop height at the column width
    bands: list[list[int]]
    width: int

    @property
    def col_label_h(self) -> int:
        small = self.small_lines * (self.small.size + 2) + marks_height(self.label, self.marks)
        return PAD + self.label.size + 4 + small + PAD

    def band_height(self, rows: int) -> int:
        strips = sum(rows * (self.small.size + 4 + h + PAD) for h in self.strip_heights)
        return self.col_label_h + rows * (self.ch + PAD) + (PAD + strips if strips else 0) + 2 * PAD

    def height(self, rows: int) -> int:
        return len(self.bands) * self.band_height(rows)


@dataclass(frozen=True)
class _Layout:
    cells: _Cells
    title: object  # fonts
    title_lines: list[str]
    header: object
    header_lines: list[tuple[str, tuple]]  # with their colours
    header_h: int
    size: tuple[int, int]


def _cells(grid: GridCells, zooms, bands, marks, widest: float, scale: float) -> _Cells:
    """The grid's geometry with cells at ``scale`` of the images (``widest``: the longest text under a column
    label, in px per px of font size)."""
    w, h = grid.image_size
    cw, ch = max(16, round(w * scale)), max(16, round(h * scale))
    label = text_font(max(MIN_LABEL, round(cw / 10)))
    small = text_font(max(12, round(label.size * 0.7)))
    row_label_w = max(6 * label.size, min(360, round(cw * 0.6)))
    k = max(len(b) for b in bands)
    strip_heights = []
    for z in zooms:
        left, top, right, bottom = z.box.pixels(w, h)
        strip_heights.append(max(8, round(cw * (bottom - top) / (right - left))))
    small_lines = 1 if widest * small.size <= cw else 2
    width = row_label_w + k * (cw + PAD) + PAD
    return _Cells(cw, ch, label, small, small_lines, marks, row_label_w, strip_heights, bands, width)


def _title(title: str, width: int, size: int) -> tuple[object, list[str]]:
    """The title's font and lines: one line, 1.6 x ``size`` or down to 1.25 x; else ``TITLE_LINES`` lines, from
    1.6 x ``size`` down to ``size``; else ``size`` on one line more, shortened only if even that is too short."""
    whole = len(one_line(title).replace(" ", ""))
    for most, smallest in ((1, round(size * 1.25)), (TITLE_LINES, size)):
        t = round(size * 1.6)
        while True:
            font = text_font(t)
            lines = wrap(font, title, width - 2 * PAD, most, break_words=True)
            if len("".join(lines).replace(" ", "")) == whole:
                return font, lines
            if t <= smallest:
                break
            t = max(smallest, math.floor(t * 0.92))
    return font, wrap(font, title, width - 2 * PAD, TITLE_LINES + 1, break_words=True)


def _header(title: str, lines: list[tuple[str, bool, tuple]], width: int, grid_h: int):
    """Fonts and lines of the header over a grid ``grid_h`` px tall: text at 2% of the image's height, the whole
    header within ``HEADER_MAX`` of it. To stay within it the text first shrinks to 1.5% of the height, then the
    lines not marked whole (prompts) lose lines (the settings and release keep up to three), then the text shrinks
    on (down to ``MIN_HEADER`` px).

    Returns:
        (title font, title lines, text font, text lines (each with its colour), header height in px).
    """
    budget = math.floor(grid_h * HEADER_MAX / (1 - HEADER_MAX))
    # 2% of the tallest image this header can make (one at HEADER_MAX), so of the image whatever the header's height
    first = max(18, math.ceil(HEADER_SHARE * grid_h / (1 - HEADER_MAX)))
    sizes = [first]
    while sizes[-1] > MIN_HEADER:
        sizes.append(max(MIN_HEADER, math.floor(sizes[-1] * 0.9)))
    soft = [x for x in sizes if x >= 0.75 * first] or sizes[:1]
    attempts = [(x, 4) for x in soft] + [(soft[-1], m) for m in (3, 2, 1)] + [(x, 1) for x in sizes[len(soft) :]]
    for size, most in attempts:
        title_font, title_lines = _title(title, width, size)
        font = text_font(size)
        body = [
            (x, colour)
            for text, whole, colour in lines
            for x in wrap(font, text, width - 2 * PAD, 3 if whole else most)
        ]
        height = (
            2 * PAD + len(title_lines) * round(title_font.size * 1.15) + PAD + len(body) * round(font.size * 1.3) + PAD
        )
        if height <= budget:
            break  # else the last attempt: a grid too small for even that, and the header takes what it needs
    return title_font, title_lines, font, body, height


def _band_choices(grid: GridCells) -> list[list[list[int]]]:
    """Ways to wrap the grid into bands: 8 columns a band, or wider, each band count once at its narrowest."""
    choices, seen = [], set()
    for k in range(min(BAND_COLUMNS, len(grid.cols)), len(grid.cols) + 1):
        bands = grid.bands(k)
        if len(bands) not in seen:
            seen.add(len(bands))
            choices.append(bands)
    return choices


def _layout(grid: GridCells, zooms: Sequence[ZoomSpec], marks, title: str, lines, max_side: int) -> _Layout:
    """Bands, cell size and fonts: the largest cells at which the image fits ``max_side`` (see the module docstring)."""
    rows = len(grid.rows)
    smalls = [_short_label(grid.checkpoints[c])[1] for c in grid.cols]
    widest = max(text_width(text_font(100), one_line(s, limit=300)) for s in smalls) / 100 * 1.03

    def fitted(bands, scale: float, header: bool):
        """The first scale from ``scale`` down at which the image fits; the header is estimated, or drawn."""
        while True:
            cells = _cells(grid, zooms, bands, marks, widest, scale)
            grid_h = cells.height(rows)
            if header:
                fonts = _header(title, lines, cells.width, grid_h)
                height = fonts[-1] + grid_h
            else:
                height = math.ceil(grid_h / (1 - HEADER_MAX))
            if max(cells.width, height) <= max_side or cells.cw <= 16:
                return scale, cells, (fonts if header else None), height
            scale *= 0.92

    # 1. The band width whose cells are largest (the header estimated at its most); ties go to narrower bands.
    best = max(((fitted(b, 1.0, False)[0], -i, b) for i, b in enumerate(_band_choices(grid))), key=lambda t: t[:2])
    # 2. The header drawn: it is usually under its most, so the cells may grow a little again.
    _, cells, fonts, height = fitted(best[2], min(1.0, best[0] / 0.92**3), True)
    title_font, title_lines, font, body, header_h = fonts
    return _Layout(cells, title_font, title_lines, font, body, header_h, (cells.width, height))


def compose_share(
    results: Sequence[CellResult],
    rows: Sequence[Row],
    info,
    *,
    zooms: Sequence[ZoomSpec] = (),
    max_side: int = SHARE_MAX_SIDE,
    release: Mapping | None = None,
    shortlist: Sequence[str] = (),
    ratings: Mapping[str, int] | None = None,
) -> Image.Image:
    """Draw the share image (see the module docstring for its rules).

    Args:
        zooms: zoom panels, a strip of crops under the columns per panel and row.
        max_side: the longest side in px.
        release: the run's release record (``DecisionStore.release()``): its checkpoint's column is marked
            "released" and the header says who released it when.
        shortlist: checkpoint names marked "shortlist".
        ratings: stars (1-5) by checkpoint name, drawn under the column labels.
    """
    grid = GridCells(results, rows, info)
    marks = {c: column_marks(grid.checkpoints[c], release=release, shortlist=shortlist, ratings=ratings)
             for c in grid.cols}  # fmt: skip
    # (text, kept whole, colour): the settings and the release keep their lines, the prompts may lose theirs
    lines = [(x, False, FG) for x in header_lines(info)]
    lines[-1] = (lines[-1][0], True, FG)
    if (line := release_line(release)) is not None:
        lines.append((line, True, RELEASE))
    lay = _layout(grid, zooms, mark_rows(list(marks.values())), share_title(info), lines, max_side)
    image = Image.new("RGB", lay.size, BG)
    draw = ImageDraw.Draw(image)
    y = 2 * PAD
    for line in lay.title_lines:
        draw_text(draw, (PAD, y), line, font=lay.title, fill=FG)
        y += round(lay.title.size * 1.15)
    y += PAD
    for line, colour in lay.header_lines:
        draw_text(draw, (PAD, y), line, font=lay.header, fill=colour)
        y += round(lay.header.size * 1.3)
    y = lay.header_h
    for band in lay.cells.bands:
        y = _draw_band(image, draw, grid, lay, band, zooms, marks, y)
    return image


def _draw_band(image, draw, grid: GridCells, lay: _Layout, band: list[int], zooms, marks: dict[int, Marks], y: int):
    c = lay.cells
    x0 = c.row_label_w
    draw.line([(PAD, y), (lay.size[0] - PAD, y)], fill=MUTED)
    y += PAD
    for j, col in enumerate(band):
        label, name = _short_label(grid.checkpoints[col])
        x = x0 + j * (c.cw + PAD)
        draw_text(draw, (x, y), fit_label(c.label, label, c.cw), font=c.label, fill=FG)
        below = y + c.label.size + 4
        for n, line in enumerate(wrap(c.small, name, c.cw, c.small_lines, break_words=True)):
            draw_text(draw, (x, below + n * (c.small.size + 2)), line, font=c.small, fill=MUTED)
        marks_y = below + c.small_lines * (c.small.size + 2)  # at the same height in every column
        draw_marks(draw, (x, marks_y), c.cw, marks[col], c.label, c.marks)
    y += c.col_label_h - PAD
    released = [j for j, col in enumerate(band) if marks[col].release]
    for r in range(len(grid.rows)):
        limit = max(1, c.ch // (c.label.size + 4))
        for n, line in enumerate(wrap(c.label, grid.row_label(r), c.row_label_w - 2 * PAD, limit)):
            draw_text(draw, (PAD, y + n * (c.label.size + 4)), line, font=c.label, fill=FG)
        for j, col in enumerate(band):
            _draw_cell(image, draw, c, grid.by_pos.get((r, col)), (x0 + j * (c.cw + PAD), y), (c.cw, c.ch))
        _frame(draw, c, released, x0, y, c.ch)
        y += c.ch + PAD
    if zooms:
        y += PAD
    for zoom, height in zip(zooms, c.strip_heights, strict=True):
        for r in range(len(grid.rows)):
            caption = f"{zoom.box.name} · {grid.row_label(r)}"
            draw_text(draw, (x0, y), fit(c.small, caption, lay.size[0] - x0 - PAD), font=c.small, fill=MUTED)
            y += c.small.size + 4
            for j, col in enumerate(band):
                result = grid.by_pos.get((r, col))
                crop = None
                if result is not None and result.image is not None:
                    crop = result.image.convert("RGB").crop(zoom.box.pixels(*result.image.size))
                _draw_cell(image, draw, c, result, (x0 + j * (c.cw + PAD), y), (c.cw, height), crop)
            _frame(draw, c, released, x0, y, height)
            y += height + PAD
    return y + PAD


def _frame(draw, c: _Cells, columns: list[int], x0: int, y: int, height: int) -> None:
    """A green frame round the released column's cell, in the gap between cells."""
    for j in columns:
        x = x0 + j * (c.cw + PAD)
        draw.rectangle([x - 4, y - 4, x + c.cw + 3, y + height + 3], outline=RELEASE, width=3)


def _short_label(ck) -> tuple[str, str]:
    """The column label in large type (the epoch, or the step) and the rest in small type."""
    label, name, _ = column_text(ck)
    if ck is not None and ck.epoch is not None and ck.step is not None:
        return f"epoch {ck.epoch}", f"step {ck.step} · {name}"
    return label, name


def _draw_cell(image, draw, lay: _Cells, result, at: tuple[int, int], size: tuple[int, int], crop=None) -> None:
    x, y = at
    picture = crop if crop is not None else (result.image if result is not None else None)
    if picture is not None:
        upscale = size[0] > picture.width  # enlarge crops by whole pixels, shrink images smoothly
        resample = Image.Resampling.NEAREST if upscale else Image.Resampling.LANCZOS
        image.paste(picture.convert("RGB").resize(size, resample), (x, y))
        return
    draw.rectangle([x, y, x + size[0] - 1, y + size[1] - 1], fill=PLACEHOLDER, outline=ERR)
    if result is not None:
        lines = max(1, (size[1] - 8) // (lay.small.size + 2))
        text = result.status if result.status != "error" else f"error: {result.error or ''}"
        for i, line in enumerate(wrap(lay.small, text, size[0] - 8, lines)):
            draw_text(draw, (x + 4, y + 4 + i * (lay.small.size + 2)), line, font=lay.small, fill=ERR)


def encode_share(image: Image.Image, fmt: str = "webp", *, max_bytes: int = SHARE_MAX_BYTES) -> bytes:
    """The image as WebP or JPEG (4:4:4 chroma: colour bleeding is what people judge) under ``max_bytes``.

    Lowers the quality first (down to 70), then the size, until it fits.

    Raises:
        ValueError: an unknown format.
    """
    if fmt not in ("webp", "jpg"):
        raise ValueError(f"the share image format should be 'webp' or 'jpg', got {fmt!r}")
    picture = image.convert("RGB")
    while True:
        for quality in (92, 86, 80, 75, 70):
            out = io.BytesIO()
            if fmt == "webp":
                picture.save(out, format="WEBP", quality=quality, method=6)
            else:
                picture.save(out, format="JPEG", quality=quality, subsampling=0, optimize=True)
            if out.tell() <= max_bytes:
                return out.getvalue()
        picture = picture.resize((round(picture.width * 0.85), round(picture.height * 0.85)), Image.Resampling.LANCZOS)
