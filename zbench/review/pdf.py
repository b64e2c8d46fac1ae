"""The PDF sheet: real text and native images on paper-sized pages.

Prompt, settings, checkpoint names and hashes are PDF text (selectable, searchable, found by
``pdftotext``), not pixels. Pages are A4 or Letter, landscape for wide grids; the first holds a cover
block (run, base model, date, the release decision when one exists, the prompts and settings, and
every checkpoint with its hash); then one page per band of at most 8 columns (and per group of rows
when a band's rows do not fit one page), with the band's zoom strips under its columns. Images are
embedded at their native resolution and losslessly (Flate), unless a small PDF is asked for (JPEG).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from fpdf import FPDF
from PIL import Image

from ..engine.plan import CellResult, Row
from .drawing import ELLIPSIS, column_text, fit_measured, max_chars, one_line, unicode_font_file, wrap_measured
from .gridcells import GridCells
from .share import header_lines, share_title
from .zoom import ZoomSpec

__all__ = ["PAPERS", "sheet_pdf"]

PAPERS = {"a4": "A4", "letter": "Letter"}
MARGIN, GAP, ROW_LABEL = 10.0, 2.0, 24.0  # mm
PT = 25.4 / 72  # mm per point: font sizes are in points, the page in mm
COVER_LINES = 20  # lines of one cover paragraph (a prompt): a long prompt ends in "…" rather than run off the page
INK, MUTED, ERR = (20, 20, 20), (110, 110, 110), (180, 30, 30)


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
        self.set_xy(x, y)
        self.cell(width, size * 0.45, line)

    def lines(self, text: str, *, size: float, width: float, most: int) -> list[str]:
        """``text`` wrapped to ``width`` mm in at most ``most`` lines, the last shortened with an ellipsis."""
        self.set_font(self.family, "", size)
        limit = max_chars(size * PT, width)
        plain = self._plain(text, limit * most)
        return wrap_measured(self.get_string_width, plain, width, most, limit=limit, ellipsis=self.ellipsis)

    def paragraph(self, x: float, y: float, text: str, *, size: float, width: float, most: int, color=INK) -> float:
        """Wrapped text, at most ``most`` lines; returns the y below it."""
        for line in self.lines(text, size=size, width=width, most=most):
            self.text_at(x, y, line, size=size, width=width, color=color)
            y += size * 0.45
        return y


def sheet_pdf(
    results: Sequence[CellResult],
    rows: Sequence[Row],
    info,
    *,
    zooms: Sequence[ZoomSpec] = (),
    paper: str = "a4",
    small: bool = False,
    release: Mapping | None = None,
    when: datetime | None = None,
) -> bytes:
    """The PDF of a grid (see the module docstring).

    Args:
        paper: "a4" or "letter".
        small: store images as JPEG (a much smaller file; compression artifacts in the pixels).
        release: the run's release record (``DecisionStore.release()``), shown on the cover.

    Raises:
        ValueError: an unknown paper size.
    """
    if paper not in PAPERS:
        raise ValueError(f"paper should be one of {sorted(PAPERS)}, got {paper!r}")
    grid = GridCells(results, rows, info)
    bands = grid.bands()
    k = max(len(b) for b in bands)
    w, h = grid.image_size
    landscape = k * w >= len(grid.rows) * h
    doc = _Doc(paper, landscape, f"zbench comparison sheet: {share_title(info)}")
    doc.set_image_filter("DCTDecode" if small else "FlateDecode")
    _cover(doc, grid, release, when or datetime.now())
    cw = (doc.w - 2 * MARGIN - ROW_LABEL - (k - 1) * GAP) / k  # one column width for every band
    for number, band in enumerate(bands, 1):
        _band(doc, grid, band, zooms, cw, f"band {number} of {len(bands)}")
    return bytes(doc.output())


def _cover(doc: _Doc, grid: GridCells, release: Mapping | None, when: datetime) -> None:
    doc.add_page()
    width = doc.w - 2 * MARGIN
    doc.text_at(MARGIN, MARGIN, share_title(grid.info), size=20, width=width, bold=True)
    y = MARGIN + 12
    lines = [f"run: {Path(grid.info.run).name}", f"base model: {grid.info.base}", f"date: {when:%Y-%m-%d %H:%M}"]
    if release:
        lines.append(
            f"release: {release.get('checkpoint')} (sha256 {release.get('hash')}), chosen by {release.get('who')} "
            f"on {release.get('when')}" + (f": {release['reason']}" if release.get("reason") else "")
        )
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
    for col in grid.cols:
        label, name, digest = column_text(grid.checkpoints[col])
        if y > doc.h - MARGIN - 5:
            doc.add_page()
            y = MARGIN
        doc.text_at(MARGIN, y, label, size=8, width=45, bold=True)
        doc.text_at(MARGIN + 46, y, name, size=8, width=width - 46 - 40)
        doc.text_at(doc.w - MARGIN - 38, y, digest, size=8, width=38, color=MUTED)
        y += 4.5


def _band(doc: _Doc, grid: GridCells, band: list[int], zooms: Sequence[ZoomSpec], cw: float, where: str) -> None:
    """The band's rows, then its zoom strips, over as many pages as they need (columns ``cw`` mm wide)."""
    w, h = grid.image_size
    lines: list[tuple[str, int, ZoomSpec | None, float]] = [
        (grid.row_label(r), r, None, cw * h / w) for r in range(len(grid.rows))
    ]
    for zoom in zooms:
        left, top, right, bottom = zoom.box.pixels(w, h)
        lines += [(f"{zoom.box.name} · {grid.row_label(r)}", r, zoom, cw * (bottom - top) / (right - left))
                  for r in range(len(grid.rows))]  # fmt: skip
    top_y = MARGIN + 26  # page heading and the column labels above the first line
    page_rows: list[list] = [[]]
    y = top_y
    for line in lines:
        if page_rows[-1] and y + line[3] > doc.h - MARGIN:
            page_rows.append([])
            y = top_y
        page_rows[-1].append(line)
        y += line[3] + GAP
    for part, chunk in enumerate(page_rows, 1):
        doc.add_page()
        heading = f"{share_title(grid.info)} · {where}" + (
            f" · part {part} of {len(page_rows)}" if len(page_rows) > 1 else ""
        )
        doc.text_at(MARGIN, MARGIN, heading, size=9, width=doc.w - 2 * MARGIN, bold=True)
        doc.text_at(
            MARGIN, MARGIN + 5, " · ".join(header_lines(grid.info)), size=7, width=doc.w - 2 * MARGIN, color=MUTED
        )
        for j, col in enumerate(band):
            x = MARGIN + ROW_LABEL + j * (cw + GAP)
            label, name, digest = column_text(grid.checkpoints[col])
            doc.text_at(x, MARGIN + 12, label, size=8, width=cw, bold=True)
            doc.text_at(x, MARGIN + 16, name, size=6.5, width=cw, color=MUTED)
            doc.text_at(x, MARGIN + 19.5, digest, size=6, width=cw, color=MUTED)
        y = top_y
        for label, r, zoom, height in chunk:
            doc.paragraph(MARGIN, y, label, size=7, width=ROW_LABEL - GAP, most=max(1, int(height / (7 * 0.45))))
            for j, col in enumerate(band):
                x = MARGIN + ROW_LABEL + j * (cw + GAP)
                _cell(doc, grid.by_pos.get((r, col)), zoom, x, y, cw, height)
            y += height + GAP


def _cell(doc: _Doc, result, zoom: ZoomSpec | None, x: float, y: float, w: float, h: float) -> None:
    if result is not None and result.image is not None:
        picture: Image.Image = result.image.convert("RGB")
        if zoom is not None:  # the crop at its own pixels; the PDF viewer enlarges it
            picture = picture.crop(zoom.box.pixels(*picture.size))
        doc.image(picture, x=x, y=y, w=w, h=h)
        return
    doc.set_draw_color(*ERR)
    doc.rect(x, y, w, h)
    text = "not rendered" if result is None else f"{result.status}: {result.error or ''}"
    doc.paragraph(x + 1, y + 1, text, size=5.5, width=w - 2, most=max(1, int((h - 2) / (5.5 * 0.45))), color=ERR)
