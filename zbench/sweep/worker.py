"""The sweep's unit of work: a ``Task`` (one checkpoint's cells, a few at a time) and the ``SweepWorker`` that
renders it, in this process (``run.py``) or as a Ray actor (``pool.py``).

Both callers import it from here, so neither imports the other: the driver decides where tasks run, the
worker only renders and never writes the folder (the driver stores every cell it gets back).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..engine.checkpoints import Checkpoint
from ..engine.config import BenchConfig
from ..engine.pipeline import get_base
from ..engine.plan import CellResult, RenderSettings
from ..engine.render import render_cells
from .store import SweepCell

__all__ = ["CHUNK", "SweepWorker", "Task", "make_tasks"]

CHUNK = 8  # cells per task: one checkpoint's cells in groups, so a lost worker loses little


@dataclass(frozen=True)
class Task:
    """Cells of one checkpoint (None: the base) for one worker call."""

    checkpoint: Checkpoint | None
    cells: tuple[SweepCell, ...]
    attempt: int = 0

    @property
    def name(self) -> str:
        return "base" if self.checkpoint is None else self.checkpoint.name


def make_tasks(todo: list[SweepCell], chunk: int = CHUNK) -> list[Task]:
    """Group cells by checkpoint (each worker swaps as rarely as possible), in groups of ``chunk``."""
    groups: dict[str, list[SweepCell]] = {}
    for sweep_cell in todo:
        groups.setdefault(sweep_cell.cell.name, []).append(sweep_cell)
    tasks = []
    for cells in groups.values():
        for i in range(0, len(cells), chunk):
            tasks.append(Task(cells[0].cell.checkpoint, tuple(cells[i : i + chunk])))
    return tasks


class SweepWorker:
    """One base pipeline and its swapper, rendering tasks; in this process or as a Ray actor.

    ``threads`` sets torch's CPU threads (images are bit-identical for the same device, dtype and
    thread count; on CPU, another thread count may move a few pixels by one level).
    """

    def __init__(self, config: BenchConfig, settings: RenderSettings, target_rank: int, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.config, self.settings, self.target_rank = config, settings, target_rank
        self.base = get_base(config)  # BaseModelError says what is missing and how to get it

    def describe(self) -> dict:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": str(self.base.device),
            "dtype": str(self.base.dtype).replace("torch.", ""),
            "threads": torch.get_num_threads(),
        }

    def render(
        self, task: Task, on_cell: Callable[[SweepCell, CellResult], None] | None = None
    ) -> list[tuple[SweepCell, CellResult]]:
        """Render a task's cells (swapping once); a checkpoint that fails gives error cells, never raises."""
        by_cell = {id(sc.cell): sc for sc in task.cells}
        out: list[tuple[SweepCell, CellResult]] = []

        def progress(done: int, total: int, result: CellResult) -> None:
            sweep_cell = by_cell[id(result.cell)]
            out.append((sweep_cell, result))
            if on_cell is not None:
                on_cell(sweep_cell, result)

        render_cells(
            self.base,
            [sc.cell for sc in task.cells],
            self.settings,
            target_rank=self.target_rank,
            progress=progress,
            read_ahead=False,  # one checkpoint per task: nothing to read ahead
        )
        return out

    def render_and_describe(self, task: Task) -> tuple[dict, list[tuple[SweepCell, CellResult]]]:
        """``render`` and who rendered it, in one answer (a worker may be gone by the time it is asked)."""
        return self.describe(), self.render(task)
