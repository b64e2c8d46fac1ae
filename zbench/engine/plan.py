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
from .limits import (
    MAX_SCALE,
    check_guidance,
    check_prompt,
    check_prompts,
    check_scale,
    check_scales,
    check_seeds,
    check_side,
    check_steps,
)

__all__ = ["MAX_SCALE", "Cell", "CellResult", "RenderSettings", "Row", "check_scale", "plan_grid"]


@dataclass(frozen=True)
class RenderSettings:
    """What every cell of a grid shares."""

    steps: int
    guidance: float
    width: int
    height: int
    negative: str = ""

    def __post_init__(self):
        """Checked by the rules every way in shares (``limits``); values are normalised (8.0 steps -> 8).

        Raises:
            LimitError: a value outside what zbench renders, naming the key and the allowed range.
        """
        object.__setattr__(self, "steps", check_steps(self.steps))
        object.__setattr__(self, "guidance", check_guidance(self.guidance))
        object.__setattr__(self, "width", check_side(self.width, "width"))
        object.__setattr__(self, "height", check_side(self.height, "height"))
        object.__setattr__(self, "negative", check_prompt(self.negative, "negative", empty=True))


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

    Raises:
        LimitError: no prompt, seed or scale, or one outside the rules of ``limits`` (naming which).
    """
    prompts, seeds, scales = check_prompts(prompts), check_seeds(seeds), check_scales(scales)
    rows = [Row(p, s, c) for p, s, c in itertools.product(prompts, seeds, scales)]
    columns: list[Checkpoint | None] = ([None] if include_base else []) + list(checkpoints)
    cells = [
        Cell(r, c, ck, row.prompt, row.seed, row.scale) for r, row in enumerate(rows) for c, ck in enumerate(columns)
    ]
    return rows, cells
