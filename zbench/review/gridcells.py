"""A rendered grid indexed for drawing: its columns (checkpoints in order), rows and cells by position.

Every export (sheet pages, the share image, the PDF, timelines, the HTML viewer) draws from this one
view, so they all place and label the same cell the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..engine.checkpoints import Checkpoint
from ..engine.plan import CellResult, Row

__all__ = ["BAND_COLUMNS", "GridCells"]

BAND_COLUMNS = 8  # columns per band when a wide grid wraps (the base column repeats in each band)


class GridCells:
    """``results`` of a grid, by (row, column), with its columns' checkpoints and its rows' labels.

    Raises:
        ValueError: no results, or a cell whose row is not in ``rows``.
    """

    def __init__(self, results: Sequence[CellResult], rows: Sequence[Row], info):
        if not results:
            raise ValueError("a sheet needs at least one cell result, got none")
        if max(r.cell.row for r in results) >= len(rows):
            raise ValueError(f"every cell's row should index into rows ({len(rows)} given), got a cell beyond it")
        self.results, self.rows, self.info = list(results), list(rows), info
        self.by_pos = {(r.cell.row, r.cell.col): r for r in results}
        self.checkpoints: dict[int, Checkpoint | None] = {}
        for r in results:  # any row's cell names the column's checkpoint
            self.checkpoints.setdefault(r.cell.col, r.cell.checkpoint)
        self.cols = sorted(self.checkpoints)
        self.base_cols = [c for c in self.cols if self.checkpoints[c] is None]
        self.image_size = (info.settings.width, info.settings.height)

    def row_label(self, r: int) -> str:
        i = self.info
        return self.rows[r].label(prompts=len(i.prompts), seeds=len(i.seeds), scales=len(i.scales))

    def bands(self, columns: int = BAND_COLUMNS) -> list[list[int]]:
        """Column groups of at most ``columns``, each led by the base column(s), in training order."""
        others = [c for c in self.cols if c not in self.base_cols]
        per = max(1, columns - len(self.base_cols))
        chunks = [others[i : i + per] for i in range(0, len(others), per)] or [[]]
        return [self.base_cols + chunk for chunk in chunks]
