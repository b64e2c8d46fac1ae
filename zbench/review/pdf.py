"""The PDF sheet: real text and native images on paper-sized pages.

Prompt, settings, checkpoint names and hashes are PDF text (selectable, searchable, found by
``pdftotext``), not pixels. Pages are A4 or Letter, landscape for wide grids; the first holds a cover
block (run, base model, date, the release decision and shortlist when there are some, the prompts and
settings, and every checkpoint with its hash and marks), its checkpoint list set closer to stay on the page;
then one page per band of at most 8 columns (and per group of rows when a band's rows do not fit one page:
cells a little smaller when that keeps the band on one page, else rows shared out evenly, so no page holds
one row that spilled), with the band's zoom strips under its columns. Column labels and file names wrap onto
a second line rather than end in "…". The released checkpoint's column has a green "released" badge and a
green frame round its cells, shortlisted ones a blue "shortlist" badge, rated ones their stars. Images are
embedded at their native resolution and losslessly (Flate), unless a small PDF is asked for (JPEG).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fpdf import FPDF
from PIL import Image

from ..engine.plan import CellResult, Row
from .drawing import ELLIPSIS, column_text, fit_measured, max_chars, one_line, unicode_font_file, wrap_measured
from .gridcells import GridCells
from .marks import RELEASE, SHORTLIST, STAR, STAR_OFF, Marks, column_marks, star_points
from .share import header_lines, share_title
from .zoom import ZoomSpec

__all__ = ["PAPERS", "sheet_pdf"]

PAPERS = {"a4": "A4", "letter": "Letter"}
MARGIN, GAP, ROW_LABEL = 10.0, 2.0, 24.0  # mm
PT = 25.4 / 72  # mm per point: font sizes are in points, the page in mm
COVER_LINES = 20  # lines of one cover paragraph (a prompt): a long prompt ends in "…" rather than run off the page
COVER_PITCH = ((4.5, 8.0), (4.0, 7.5), (3.6, 7.0), (3.2, 6.5))  # (mm a line, pt) of the checkpoint list, closer
SHRINK = 0.75  # a band's cells may get this much smaller to keep its rows on one page
MARKS_W = 42.0  # mm: the marks of a checkpoint on the cover (two badges and five stars)
INK, MUTED, ERR, WHITE = (20, 20, 20), (110, 110, 110), (180, 30, 30), (255, 255, 255)


class _Doc(FPDF):
    """An FPDF with one font that draws the text it is given (a Unicode TrueType one when the system has one)."""

    def __init__(self, paper: str, landscape: bool, title: str):
        super().__init__(orientation="L" if landscape else "P", unit="mm", format=PAPERS[paper])
        self.set_auto_page_break(False)
        self.set_margins(MARGIN, MARGIN)
        self.set_title(one_line(title, limit=300))
        self.set_creator("zbench")
        path = unicode_font_file()
        self.unicode = path is not None
        if path is not None:
            self.add_font("zb", "", str(path))
            bold = path.with_name(path.stem + "-Bold" + path.suffix)
            self.add_font("zb", "B", str(bold if bold.is_file() else path))
        self.family = "zb" if self.unicode else "helvetica"

    @property
    def ellipsis(self) -> str:
        return ELLIPSIS if self.unicode else "..."  # the core fonts encode Latin-1, which has no "…"

    def _plain(self, text: str, limit: int) -> str:
        """``text`` as one line of at most ``limit`` characters that the current font can encode."""
        text = one_line(text, limit=limit)
        if self.unicode:
            return text
        return text.replace(ELLIPSIS, "...").encode("latin-1", "replace").decode("latin-1")

    def text_at(self, x: float, y: float, text: str, *, size: float, width: float, bold=False, color=INK) -> None:
        """One line of text at (x, y), shortened with an ellipsis to ``width`` mm."""
        self.set_font(self.family, "B" if bold else "", size)
        self.set_text_color(*color)
        limit = max_chars(size * PT, width)
        line = fit_measured(self.get_string_width, self._plain(text, limit), width, limit=limit, ellipsis=self.ellipsis)
        self.set_xy(x - self.c_margin, y)  # a cell pads its text by c_margin: the text itself starts at x
        self.cell(width + 2 * self.c_margin, size * 0.45, line)

    def lines(self, text: str, *, size: float, width: float, most: int, bold=False, break_words=False) -> list[str]:
        """``text`` wrapped to ``width`` mm in at most ``most`` lines, the last shortened with an ellipsis
        (``break_words``: a file name goes on over the next line, see ``wrap_measured``)."""
        self.set_font(self.family, "B" if bold else "", size)
        limit = max_chars(size * PT, width)
        plain = self._plain(text, limit * most)
        return wrap_measured(
            self.get_string_width, plain, width, most, limit=limit, ellipsis=self.ellipsis, break_words=break_words
        )

    def paragraph(self, x: float, y: float, text: str, *, size: float, width: float, most: int, color=INK) -> float:
        """Wrapped text, at most ``most`` lines; returns the y below it."""
        for line in self.lines(text, size=size, width=width, most=most):
            self.text_at(x, y, line, size=size, width=width, color=color)
            y += size * 0.45
        return y

    def marks(self, x: float, y: float, marks: Marks, *, size: float, width: float, stars_row: bool) -> None:
        """Badges ("released" green, "shortlist" blue) at (x, y), the stars after them or on the next row
        (``stars_row``); every badge and star ``size`` pt tall, all within ``width`` mm."""
        h = size * 0.45
        names = [("released", RELEASE)] if marks.release else []
        names += [("shortlist", SHORTLIST)] if marks.short else []
        self.set_font(self.family, "", size)
        if sum(self.get_string_width(n) + 1.6 for n, _ in names) + len(names) > width:
            names = [({"released": "rel", "shortlist": "SL"}[n], c) for n, c in names]
        for name, colour in names:
            w = self.get_string_width(name) + 1.6
            self.set_fill_color(*colour)
            self.rect(x, y, w, h, style="F", round_corners=True, corner_radius=0.6)
            self.text_at(x + 0.8, y, name, size=size, width=w, color=WHITE)
            x += w + 1
        if stars_row:
            x, y = x - sum(self.get_string_width(n) + 2.6 for n, _ in names), y + h + 0.6
        if marks.stars:
            self.set_line_width(0.15)
            for i in range(5 if 5 * h <= width else 1):
                lit = i < marks.stars
                self.set_fill_color(*STAR)
                self.set_draw_color(*(STAR if lit else STAR_OFF))
                self.polygon(star_points(x + i * h + h / 2, y + h / 2, h * 0.45), style="DF" if lit else "D")
            if 5 * h > width:
                self.text_at(x + h + 0.5, y, str(marks.stars), size=size, width=width - h, color=STAR)


def sheet_pdf(
    results: Sequence[CellResult],
    rows: Sequence[Row],
    info,
    *,
    zooms: Sequence[ZoomSpec] = (),
    paper: str = "a4",
    small: bool = False,
    release: Mapping | None = None,
    shortlist: Sequence[str] = (),
    ratings: Mapping[str, int] | None = None,
    when: datetime | None = None,
) -> bytes:
    """The PDF of a grid (see the module docstring).

    Args:
        paper: "a4" or "letter".
        small: store images as JPEG (a much smaller file; compression artifacts in the pixels).
        release: the run's release record (``DecisionStore.release()``): on the cover, and its checkpoint's
            column marked "released".
        shortlist: checkpoint names marked "shortlist" (and listed on the cover).
        ratings: stars (1-5) by checkpoint name, drawn under the column labels and on the cover.

    Raises:
        ValueError: an unknown paper size.
    """
    if paper not in PAPERS:
        raise ValueError(f"paper should be one of {sorted(PAPERS)}, got {paper!r}")
    grid = GridCells(results, rows, info)
    marks = {c: column_marks(grid.checkpoints[c], release=release, shortlist=shortlist, ratings=ratings)
             for c in grid.cols}  # fmt: skip
    bands = grid.bands()
    k = max(len(b) for b in bands)
    w, h = grid.image_size
    landscape = k * w >= len(grid.rows) * h
    doc = _Doc(paper, landscape, f"zbench comparison sheet: {share_title(info)}")
    doc.set_image_filter("DCTDecode" if small else "FlateDecode")
    _cover(doc, grid, release, marks, when or datetime.now())
    lines = _lines(grid, zooms)
    cw = (doc.w - 2 * MARGIN - ROW_LABEL - (k - 1) * GAP) / k  # one column width for every band
    head = _head(doc, grid, marks, cw)
    fit = (doc.h - MARGIN - head.top - len(lines) * GAP) / sum(ratio for *_, ratio in lines)  # a band fills a page
    if cw > fit >= SHRINK * cw:
        cw = fit
        head = _head(doc, grid, marks, cw)
    for number, band in enumerate(bands, 1):
        _band(doc, grid, band, lines, marks, cw, head, f"band {number} of {len(bands)}")
    return bytes(doc.output())


def _cover(doc: _Doc, grid: GridCells, release: Mapping | None, marks: dict[int, Marks], when: datetime) -> None:
    """The cover: title, what the grid is, the decision, then every checkpoint, closer set to stay on the page."""
    doc.add_page()
    width = doc.w - 2 * MARGIN
    y = MARGIN
    for line in doc.lines(share_title(grid.info), size=20, width=width, most=2, bold=True, break_words=True):
        doc.text_at(MARGIN, y, line, size=20, width=width, bold=True)
        y += 9
    y += 3
    lines = [f"run: {Path(grid.info.run).name}", f"base model: {grid.info.base}", f"date: {when:%Y-%m-%d %H:%M}"]
    if release:
        lines.append(
            f"release: {release.get('checkpoint')} (sha256 {release.get('hash')}), chosen by {release.get('who')} "
            f"on {release.get('when')}" + (f": {release['reason']}" if release.get("reason") else "")
        )
    short = [column_text(grid.checkpoints[c])[1] for c in grid.cols if marks[c].short]
    if short:
        lines.append(f"shortlist: {', '.join(short)}")
    for line in [*lines, *header_lines(grid.info)]:
        for part in doc.lines(line, size=10, width=width, most=COVER_LINES):
            if y > doc.h - MARGIN - 5:
                doc.add_page()
                y = MARGIN
            doc.text_at(MARGIN, y, part, size=10, width=width)
            y += 4.5
        y += 1
    y += 3
    doc.text_at(MARGIN, y, "checkpoints, in training order", size=10, width=width, bold=True)
    y += 6
    n, bottom = len(grid.cols), doc.h - MARGIN
    pitch, size = next(((p, s) for p, s in COVER_PITCH if y + n * p <= bottom), COVER_PITCH[0])
    marked = any(m.release or m.short or m.stars for m in marks.values())
    marks_w = MARKS_W if marked else 0.0
    first = math.floor((bottom - y) / pitch)
    later = max(1, math.floor((bottom - MARGIN) / pitch))
    if first < 1:  # long prompts filled the page: the list starts on the next
        doc.add_page()
        y, first = MARGIN, later
    for i, chunk in enumerate(_share_out(list(grid.cols), first, later)):
        if i:
            doc.add_page()
            y = MARGIN
        for col in chunk:
            label, name, digest = column_text(grid.checkpoints[col])
            doc.text_at(MARGIN, y, label, size=size, width=45, bold=True)
            doc.text_at(MARGIN + 46, y, name, size=size, width=width - 46 - 40 - marks_w)
            if marked:
                doc.marks(doc.w - MARGIN - 39 - marks_w, y, marks[col], size=size - 1, width=marks_w, stars_row=False)
            doc.text_at(doc.w - MARGIN - 38, y, digest, size=size, width=38, color=MUTED)
            y += pitch


def _share_out(items: list, first: int, later: int) -> list[list]:
    """``items`` on pages that hold ``first`` then ``later`` each, the last page never left with one item alone:
    the page before gives it some (at most half of what they hold together)."""
    pages = [items[:first]]
    rest = items[first:]
    while rest:
        pages.append(rest[:later])
        rest = rest[later:]
    if len(pages) > 1 and len(pages[-1]) < 2:
        both = pages[-2] + pages[-1]
        keep = math.ceil(len(both) / 2)
        pages[-2:] = [both[:keep], both[keep:]]
    return pages


def _lines(grid: GridCells, zooms: Sequence[ZoomSpec]) -> list[tuple[str, int, ZoomSpec | None, float]]:
    """A band's lines top to bottom: each row, then each zoom panel's strip of each row, with its height as a
    share of the column width."""
    w, h = grid.image_size
    lines: list[tuple[str, int, ZoomSpec | None, float]] = [
        (grid.row_label(r), r, None, h / w) for r in range(len(grid.rows))
    ]
    for zoom in zooms:
        left, top, right, bottom = zoom.box.pixels(w, h)
        lines += [(f"{zoom.box.name} · {grid.row_label(r)}", r, zoom, (bottom - top) / (right - left))
                  for r in range(len(grid.rows))]  # fmt: skip
    return lines


def _column_head(doc: _Doc, grid: GridCells, col: int, cw: float) -> tuple[list[str], list[str], str]:
    """A column's label lines (bold, split at " · "), file name lines (broken inside the name) and hash line."""
    label, name, digest = column_text(grid.checkpoints[col])
    doc.set_font(doc.family, "B", 8)
    parts, labels = label.split(" · "), []
    for part in parts:  # "epoch 12 · step 3000" over two lines when one is too narrow, never "epoch 12 · st…"
        if labels and doc.get_string_width(f"{labels[-1]} · {part}") <= cw:
            labels[-1] = f"{labels[-1]} · {part}"
        else:
            labels.append(part)
    if len(labels) > 2:
        labels = [labels[0], " · ".join(labels[1:])]
    return labels, doc.lines(name, size=6.5, width=cw, most=2, break_words=True), digest


@dataclass(frozen=True)
class _Head:
    """The top of every band page: the settings' lines, how many lines every column label takes, the mark rows,
    and where the first row starts (mm)."""

    settings: list[str]
    label_lines: int
    name_lines: int
    mark_rows: tuple[bool, bool]  # badges, stars
    top: float


def _head(doc: _Doc, grid: GridCells, marks: dict[int, Marks], cw: float) -> _Head:
    """The band pages' top for columns ``cw`` mm wide: the tallest column label sets it for every page."""
    heads = [_column_head(doc, grid, c, cw) for c in grid.cols]
    settings = doc.lines(" · ".join(header_lines(grid.info)), size=7, width=doc.w - 2 * MARGIN, most=2)
    labels, names = max(len(a) for a, _, _ in heads), max(len(b) for _, b, _ in heads)
    rows = (any(m.release or m.short for m in marks.values()), any(m.stars for m in marks.values()))
    column = labels * 3.6 + names * 2.9 + 2.7 + sum(rows) * 3.4
    return _Head(settings, labels, names, rows, MARGIN + 5 + len(settings) * 3.2 + 2 + column + 2)


def _pages(heights: list[float], room: float) -> list[list[int]]:
    """Indices of lines ``heights`` tall on pages ``room`` tall, as many pages as filling them needs, the lines
    shared out evenly between them (by height), so no page holds one line that spilled."""
    greedy, y = [[]], 0.0
    for i, height in enumerate(heights):
        if greedy[-1] and y + height > room:
            greedy.append([])
            y = 0.0
        greedy[-1].append(i)
        y += height
    if len(greedy) == 1:
        return greedy
    pages, i = [], 0
    for left in range(len(greedy), 0, -1):
        target, page, y = sum(heights[i:]) / left, [], 0.0
        while i < len(heights) and (
            not page or (y + heights[i] <= room and (left == 1 or y + heights[i] / 2 <= target))
        ):  # a line goes on this page while its middle is within the page's share
            page.append(i)
            y += heights[i]
            i += 1
        pages.append(page)
    return pages if i == len(heights) and all(pages) else greedy


def _band(doc: _Doc, grid: GridCells, band: list[int], lines, marks: dict[int, Marks], cw: float, head: _Head,
          where: str) -> None:  # fmt: skip
    """The band's rows, then its zoom strips, over as many pages as they need (columns ``cw`` mm wide)."""
    heights = [cw * ratio + GAP for *_, ratio in lines]
    page_rows = _pages(heights, doc.h - MARGIN - head.top + GAP)
    for part, chunk in enumerate(page_rows, 1):
        doc.add_page()
        heading = f"{share_title(grid.info)} · {where}" + (
            f" · part {part} of {len(page_rows)}" if len(page_rows) > 1 else ""
        )
        doc.text_at(MARGIN, MARGIN, heading, size=9, width=doc.w - 2 * MARGIN, bold=True)
        y = MARGIN + 5
        for line in head.settings:
            doc.text_at(MARGIN, y, line, size=7, width=doc.w - 2 * MARGIN, color=MUTED)
            y += 3.2
        y += 2
        for j, col in enumerate(band):
            x = MARGIN + ROW_LABEL + j * (cw + GAP)
            labels, names, digest = _column_head(doc, grid, col, cw)
            at = y
            for text in labels:
                doc.text_at(x, at, text, size=8, width=cw, bold=True)
                at += 3.6
            at = y + head.label_lines * 3.6
            for text in names:
                doc.text_at(x, at, text, size=6.5, width=cw, color=MUTED)
                at += 2.9
            at = y + head.label_lines * 3.6 + head.name_lines * 2.9
            doc.text_at(x, at, digest, size=6, width=cw, color=MUTED)
            if any(head.mark_rows):
                doc.marks(x, at + 3.1, marks[col], size=6.5, width=cw, stars_row=head.mark_rows[0])
        y = head.top
        for i in chunk:
            label, r, zoom, ratio = lines[i]
            height = cw * ratio
            doc.paragraph(MARGIN, y, label, size=7, width=ROW_LABEL - GAP, most=max(1, int(height / (7 * 0.45))))
            for j, col in enumerate(band):
                x = MARGIN + ROW_LABEL + j * (cw + GAP)
                _cell(doc, grid.by_pos.get((r, col)), zoom, x, y, cw, height)
                if marks[col].release:  # a green frame round the released checkpoint's cells, in the gap
                    doc.set_draw_color(*RELEASE)
                    doc.set_line_width(0.6)
                    doc.rect(x - 0.6, y - 0.6, cw + 1.2, height + 1.2)
            y += height + GAP


def _cell(doc: _Doc, result, zoom: ZoomSpec | None, x: float, y: float, w: float, h: float) -> None:
    if result is not None and result.image is not None:
        picture: Image.Image = result.image.convert("RGB")
        if zoom is not None:  # the crop at its own pixels; the PDF viewer enlarges it
            picture = picture.crop(zoom.box.pixels(*picture.size))
        doc.image(picture, x=x, y=y, w=w, h=h)
        return
    doc.set_draw_color(*ERR)
    doc.set_line_width(0.2)
    doc.rect(x, y, w, h)
    text = "not rendered" if result is None else f"{result.status}: {result.error or ''}"
    doc.paragraph(x + 1, y + 1, text, size=5.5, width=w - 2, most=max(1, int((h - 2) / (5.5 * 0.45))), color=ERR)
