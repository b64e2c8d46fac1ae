"""A grid as data: what every cell shares, its rows (prompt x seed x LoRA scale), its cells and their results.

Equal plans give equal images; ``render.py`` turns a plan into images, ``cache.py`` keys them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from .checkpoints import Checkpoint

__all__ = ["MAX_SCALE", "Cell", "CellResult", "RenderSettings", "Row", "check_scale", "plan_grid"]

MAX_SCALE = 4.0  # LoRA strengths people compare lie within ±2; beyond ±4 images are noise


def check_scale(scale: float) -> None:
    """Refuse a LoRA scale that is NaN, infinite or beyond ±MAX_SCALE (with the value received).

    Zero (the base, exactly) and negative scales (the LoRA inverted) are allowed.

    Raises:
        ValueError: the scale is not usable.
    """
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not -MAX_SCALE <= scale <= MAX_SCALE:
        raise ValueError(f"a LoRA scale should be a number between {-MAX_SCALE:g} and {MAX_SCALE:g}, got {scale!r}")


@dataclass(frozen=True)
class RenderSettings:
    """What every cell of a grid shares."""

    steps: int
    guidance: float
    width: int
    height: int
    negative: str = ""

    def __post_init__(self):
        if self.width % 16 or self.height % 16:
            raise ValueError(f"width and height should be multiples of 16, got {self.width}x{self.height}")
        if self.steps < 1:
            raise ValueError(f"steps should be at least 1, got {self.steps}")


@dataclass(frozen=True)
class Row:
    """One row of the grid: a prompt, a seed and a LoRA scale."""

    prompt: str
    seed: int
    scale: float = 1.0

    def label(self, *, prompts: int, seeds: int, scales: int) -> str:
        parts = []
        if prompts > 1:
            parts.append(self.prompt if len(self.prompt) <= 40 else self.prompt[:39] + "…")
        if seeds > 1 or not parts:
            parts.append(f"seed {self.seed}")
        if scales > 1:
            parts.append(f"scale {self.scale:g}")
        return " · ".join(parts)


@dataclass(frozen=True)
class Cell:
    """One image of the grid: a row drawn by one checkpoint (None = the base model)."""

    row: int
    col: int
    checkpoint: Checkpoint | None
    prompt: str
    seed: int
    scale: float

    @property
    def name(self) -> str:
        return "base" if self.checkpoint is None else self.checkpoint.name


# "pending": not rendered and not in the cache (a grid shown from the cache only).
Status = Literal["ok", "error", "stopped", "pending"]


@dataclass
class CellResult:
    """What rendering a cell gave: an image, or an error message saying what to do."""

    cell: Cell
    image: Image.Image | None
    status: Status
    error: str | None = None
    swap_ms: float | None = None
    render_ms: float | None = None
    swap_path: str | None = None  # how the adapter was set: "fast", "hotswap", "inject", "base", "cache", …


def plan_grid(
    checkpoints: Sequence[Checkpoint],
    *,
    prompts: Sequence[str],
    seeds: Sequence[int],
    scales: Sequence[float] = (1.0,),
    include_base: bool = True,
) -> tuple[list[Row], list[Cell]]:
    """Lay out a grid: a column per checkpoint (base first), a row per prompt × seed × scale.

    Returns:
        (the rows, the cells in row-major order).
    """
    if not prompts or not seeds or not scales:
        raise ValueError("a grid needs at least one prompt, one seed and one scale")
    for scale in scales:
        check_scale(scale)
    rows = [Row(p, s, c) for p, s, c in itertools.product(prompts, seeds, scales)]
    columns: list[Checkpoint | None] = ([None] if include_base else []) + list(checkpoints)
    cells = [
        Cell(r, c, ck, row.prompt, row.seed, row.scale) for r, row in enumerate(rows) for c, ck in enumerate(columns)
    ]
    return rows, cells
