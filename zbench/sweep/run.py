"""Running a sweep: plan its cells, skip the finished ones, render the rest in checkpoint groups.

One process renders with ``SweepWorker`` directly; ``--workers N`` or ``--ray ADDRESS`` hands the same
worker class to Ray, one actor per GPU (or per CPU slot), see ``pool.py``. Either way every finished
cell is written at once (``SweepStore.write``), so a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..engine.checkpoints import Checkpoint
from ..engine.config import BenchConfig
from ..engine.pipeline import get_base, model_fingerprint
from ..engine.plan import CellResult, RenderSettings, plan_grid
from ..engine.render import render_cells
from .spec import SweepSpec
from .store import SweepCell, SweepStore, cell_keys

__all__ = ["SweepSummary", "SweepWorker", "Task", "plan_sweep", "run_sweep"]

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


@dataclass
class SweepSummary:
    total: int
    skipped: int  # finished before this run
    rendered: int = 0
    errors: int = 0
    seconds: float = 0.0
    workers: int = 1


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


def plan_sweep(spec: SweepSpec) -> tuple[dict, list[Checkpoint], list[SweepCell]]:
    """(the sweep's description for ``sweep.json``, the whole run, every cell with its key).

    The base column's cells are the same image for every scale: each prompt and seed is planned once.
    """
    run, chosen = spec.checkpoints()
    _, cells = plan_grid(
        chosen, prompts=spec.prompts, seeds=spec.seeds, scales=spec.scales, include_base=spec.base_column
    )
    config = spec.config
    base_id = model_fingerprint(config, config.pipeline, config.device, config.dtype)
    keyed, seen = [], set()
    for sweep_cell in cell_keys(base_id, cells, spec.settings):
        if sweep_cell.key not in seen:
            seen.add(sweep_cell.key)
            keyed.append(sweep_cell)
    description = {
        "spec": str(spec.source) if spec.source else None,
        "config": str(config.source) if config.source else config.name,
        "base": config.name,
        "run": str(spec.run_dir),
        "checkpoints": [{"name": c.name, "hash": c.hash, "epoch": c.epoch, "step": c.step} for c in chosen],
        "prompts": list(spec.prompts),
        "seeds": list(spec.seeds),
        "scales": list(spec.scales),
        "base_column": spec.base_column,
        "settings": dataclasses.asdict(spec.settings),
    }
    return description, run, keyed


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


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    *,
    workers: int = 0,
    ray_address: str | None = None,
    threads: int | None = None,
    retry_errors: bool = False,
    chunk: int = CHUNK,
    quiet: bool = False,
    on_result: Callable[[dict], None] | None = None,
) -> SweepSummary:
    """Render the sweep's missing cells into ``out``.

    Args:
        workers: 0 renders in this process; N > 0 starts N Ray workers (local Ray unless ``ray_address``).
        ray_address: an existing Ray cluster ("auto" or "ray://host:10001"); one worker per GPU there
            unless ``workers`` says how many.
        threads: torch CPU threads per worker (default: this machine's cores divided among the workers).
        retry_errors: render error cells again (by default an error cell is finished).
        on_result: called with each stored cell's record (tests and progress displays).

    Raises:
        SweepError: the folder cannot be written or holds another sweep; Ray is missing or no worker starts.
        ConfigError, BaseModelError: the spec or its base cannot be used.
    """
    from tqdm import tqdm

    store = SweepStore(out)
    description, run, keyed = plan_sweep(spec)
    store.start(description)
    done = store.done(retry_errors=retry_errors)
    todo = [sc for sc in keyed if sc.key not in done]
    summary = SweepSummary(total=len(keyed), skipped=len(keyed) - len(todo))
    target_rank = max([c.rank or 0 for c in run if c.error is None] or [0])
    tasks = make_tasks(todo, chunk)
    started = time.perf_counter()
    reported = set()  # (checkpoint, error) pairs said once, not once per cell
    with tqdm(total=len(keyed), initial=summary.skipped, desc="sweep", unit="cell", disable=quiet) as bar:

        def stored(sweep_cell: SweepCell, result: CellResult, worker: dict) -> None:
            record = store.write(sweep_cell, result, **worker)
            summary.rendered += 1
            summary.errors += result.status == "error"
            bar.update(1)
            if result.status == "error" and (result.cell.name, result.error) not in reported:
                reported.add((result.cell.name, result.error))
                tqdm.write(f"error in {result.cell.name}: {result.error}", file=sys.stderr)
            if on_result is not None:
                on_result(record)

        if todo and (workers > 0 or ray_address):
            from .pool import run_on_ray

            summary.workers = run_on_ray(
                spec, tasks, stored, target_rank=target_rank, workers=workers, address=ray_address, threads=threads
            )
        elif todo:
            worker = SweepWorker(spec.config, spec.settings, target_rank, threads)
            about = {"worker": "local", **worker.describe()}
            for task in tasks:
                worker.render(task, on_cell=lambda sc, result: stored(sc, result, about))
    summary.seconds = time.perf_counter() - started
    return summary
