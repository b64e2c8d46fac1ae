"""Running a sweep: plan its cells, skip the finished ones, render the rest in checkpoint groups.

One process renders with ``SweepWorker`` (``worker.py``) directly; ``--workers N`` or ``--ray ADDRESS`` hands
the same worker class to Ray, one actor per GPU (or per CPU slot), see ``pool.py``. Either way this process
holds the folder's lock and writes every finished cell at once (``SweepStore.write``), so a killed sweep
resumes where it stopped and no second sweep renders into the same folder meanwhile.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..engine.checkpoints import Checkpoint
from ..engine.pipeline import model_fingerprint
from ..engine.plan import CellResult, plan_grid
from .spec import SweepSpec
from .store import SweepCell, SweepStore, cell_keys
from .worker import CHUNK, SweepWorker, Task, make_tasks

# SweepWorker, Task and make_tasks live in worker.py (pool.py uses them too); still importable from here.
__all__ = ["CHUNK", "SweepSummary", "SweepWorker", "Task", "make_tasks", "plan_sweep", "run_sweep"]


@dataclass
class SweepSummary:
    total: int
    skipped: int  # finished before this run
    rendered: int = 0
    errors: int = 0
    seconds: float = 0.0
    workers: int = 1


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
        ray_address: an existing Ray cluster ("host:6379", "auto" or "ray://host:10001"); one worker per
            GPU there unless ``workers`` says how many. An address where no cluster answers fails in seconds.
        threads: torch CPU threads per worker (default: this machine's cores divided among the workers).
        retry_errors: render error cells again (by default an error cell is finished).
        on_result: called with each stored cell's record (tests and progress displays).

    Raises:
        SweepError: the folder cannot be written, holds files zbench did not write or another run's sweep, or
            another process renders into it; Ray is missing, its address answers nothing, or no worker starts.
        ConfigError, BaseModelError: the spec or its base cannot be used.
    """
    from tqdm import tqdm

    if ray_address:  # said in seconds, before the run's checkpoints are hashed and the folder is touched
        from .address import check_address

        check_address(ray_address)
    description, run, keyed = plan_sweep(spec)
    with SweepStore(out) as store:  # the folder is locked until the sweep ends, however it ends
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
                """Every finished cell, from this process or a Ray worker, is written here, by this process."""
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
