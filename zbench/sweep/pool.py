"""Sweeps over Ray: one actor per GPU (or CPU slot), each holding its own base and swapper.

Ray is optional (``pip install -r requirements-ray.txt``); a sweep in one
process never imports it. Tasks (one checkpoint's cells, a few at a time) go to whichever worker is
free, two in flight per worker so it never waits for the next; the driver writes each cell as it comes
back (workers never touch the folder, whose lock the driver holds). A worker that dies (killed, out of
memory, a lost node) is replaced and its tasks are queued again, up to ``ATTEMPTS`` times; a checkpoint
that fails to render is an error cell like anywhere else.

``--ray ADDRESS`` is probed first (``address.py``: ``ray.init`` on an address where nothing listens retries
for minutes), then ``ray.init`` itself gets ``INIT_S``. Ray started here (local workers) is shut down when
the sweep ends, so no raylet or GCS of ours outlives it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..engine.pipeline import BaseModelError, missing_model_message
from ..engine.plan import CellResult
from .address import HOW, check_address
from .spec import SweepSpec
from .store import SweepCell, SweepError
from .worker import SweepWorker, Task

__all__ = ["ATTEMPTS", "INIT_S", "run_on_ray"]

logger = logging.getLogger("zbench")
ATTEMPTS = 3  # tries per task before its cells become error cells
IN_FLIGHT = 2  # tasks queued per worker
ROOT = Path(__file__).resolve().parents[2]  # where the zbench package lives, for local workers
INIT_S = 20.0  # seconds for ray.init once the address answered as gRPC (a cluster connects in one or two)


def _init(ray, timeout: float, **kwargs) -> None:
    """``ray.init(address=..., **kwargs)`` given at most ``timeout`` seconds; a failure shuts Ray down again.

    ``ray.init`` cannot be interrupted (it waits inside Ray's C++ client), so it runs in a thread (Ray then
    logs that it set no SIGTERM handler: a driver that only connects has no processes of its own to stop);
    one still running at the deadline is left to finish and then shuts down what it connected.

    Raises:
        SweepError: it failed or did not finish in time (the message names the address).
    """
    where = kwargs["address"]
    state = {"finished": False, "abandoned": False, "error": None}
    lock = threading.Lock()

    def connect() -> None:
        try:
            ray.init(**kwargs)
        except BaseException as err:
            state["error"] = err
        with lock:
            state["finished"] = True
            abandoned = state["abandoned"]
        if abandoned:
            ray.shutdown()

    thread = threading.Thread(target=connect, name="zbench-ray-init", daemon=True)
    thread.start()
    thread.join(timeout)
    with lock:
        if not state["finished"]:
            state["abandoned"] = True
            raise SweepError(f"Ray did not connect to {where} within {timeout:.0f} s; {HOW}")
    err = state["error"]
    if err is not None:
        ray.shutdown()
        if not isinstance(err, Exception):
            raise err
        raise SweepError(f"Ray could not connect to {where} ({_first_line(err)}); {HOW}") from err


def _start(address: str | None, workers: int, threads: int) -> tuple[object, bool]:
    """(the ray module, connected, whether this call connected it: then the sweep shuts it down at the end)."""
    try:
        import ray
    except ImportError:
        raise SweepError(
            "--workers and --ray need Ray: pip install -r requirements-ray.txt (or run without them, in one process)"
        ) from None
    if ray.is_initialized():
        return ray, False
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}}
    if address:
        # A cluster: its nodes need zbench and the base model at the same paths (see the README).
        check_address(address)
        _init(ray, INIT_S, address=address, runtime_env=env, log_to_driver=False)
    else:
        # Local workers: just enough Ray for them (no dashboard, a small object store). This starts Ray rather
        # than waiting on an address, so it runs here, in the main thread, where Ray sets its SIGTERM handler.
        try:
            ray.init(
                num_cpus=workers * threads,
                include_dashboard=False,
                object_store_memory=256 * 2**20,
                runtime_env=env,
                log_to_driver=False,
            )
        except Exception as err:
            ray.shutdown()
            raise SweepError(f"Ray could not start local workers ({_first_line(err)})") from err
    return ray, True


def run_on_ray(
    spec: SweepSpec,
    tasks: list[Task],
    stored: Callable[[SweepCell, CellResult, dict], None],
    *,
    target_rank: int,
    workers: int,
    address: str | None,
    threads: int | None,
) -> int:
    """Render ``tasks`` on Ray workers, calling ``stored`` for each cell as it comes back. Returns the worker count."""
    config = spec.config
    if not address and not config.repo_id and (config.model_path is None or not config.model_path.exists()):
        # Local workers would each fail to load it: say so once, before starting Ray.
        raise BaseModelError(missing_model_message(config))
    local_threads = threads or max(1, (os.cpu_count() or 1) // max(workers, 1))
    ray, ours = _start(address, max(workers, 1), local_threads)
    try:
        return _render(ray, spec, tasks, stored, target_rank, workers, local_threads)
    finally:
        if ours:
            ray.shutdown()


def _render(ray, spec: SweepSpec, tasks: list[Task], stored, target_rank: int, workers: int, threads: int) -> int:
    """``run_on_ray``'s loop: start the actors, keep each busy, replace the lost ones, store what comes back."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, WorkerCrashedError

    lost = (RayActorError, ActorDiedError, ActorUnavailableError, WorkerCrashedError)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    count = workers or gpus or 1
    if gpus:
        options = {"num_gpus": 1, "num_cpus": 1}
    else:
        options = {"num_cpus": threads}
    actor_class = ray.remote(SweepWorker)

    started = itertools.count()  # actors started, replacements included: each gets its own name

    def start(slot: int):
        name = f"zbench-sweep-{os.getpid()}-{slot}-{next(started)}"
        return actor_class.options(name=name, **options).remote(
            spec.config, spec.settings, target_rank, None if gpus else threads
        )

    actors = [start(i) for i in range(count)]
    try:
        _loop(ray, actors, start, tasks, stored, lost)
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):  # already gone: nothing to stop
                ray.kill(actor)
    return count


def _loop(ray, actors: list, start, tasks: list[Task], stored, lost: tuple) -> None:
    count = len(actors)
    queue: deque[Task] = deque(tasks)
    in_flight: dict = {}  # object ref -> (slot, actor, task)
    streak = 0  # workers lost since the last task that came back

    def submit(slot: int) -> None:
        if queue:
            task = queue.popleft()
            in_flight[actors[slot].render_and_describe.remote(task)] = (slot, actors[slot], task)

    for slot in range(count):
        for _ in range(IN_FLIGHT):
            submit(slot)
    while in_flight:
        [ref], _ = ray.wait(list(in_flight), num_returns=1)
        slot, actor, task = in_flight.pop(ref)
        try:
            about, results = ray.get(ref)
        except lost as err:
            streak += 1
            if actors[slot] is actor:  # replace it once, however many of its tasks come back lost
                logger.warning("sweep worker %d was lost (%s); starting another", slot, type(err).__name__)
                actors[slot] = start(slot)
            if task.attempt + 1 < ATTEMPTS:
                queue.appendleft(replace(task, attempt=task.attempt + 1))
            else:
                why = f"the worker rendering it was lost {ATTEMPTS} times (last: {_first_line(err)})"
                for sweep_cell in task.cells:
                    stored(sweep_cell, CellResult(sweep_cell.cell, None, "error", why), {"worker": "ray"})
            if streak > ATTEMPTS * count:  # no worker gets anything done: a base that cannot load, say
                raise SweepError(f"sweep workers keep failing: {_cause(err)}") from err
            submit(slot)
            continue
        except ray.exceptions.RayTaskError as err:
            cause = err.cause if getattr(err, "cause", None) is not None else err
            if not isinstance(cause, Exception) or "BaseModelError" in type(cause).__name__:
                raise SweepError(f"a sweep worker could not start: {_first_line(cause)}") from err
            why = f"the worker failed on this checkpoint: {_first_line(cause)}"
            for sweep_cell in task.cells:
                stored(sweep_cell, CellResult(sweep_cell.cell, None, "error", why), {"worker": "ray"})
            submit(slot)
            continue
        streak = 0
        for sweep_cell, result in results:
            stored(sweep_cell, result, {"worker": f"ray-{slot}", **about})
        submit(slot)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


def _cause(err: BaseException) -> str:
    """The line of a lost actor's error that says why (its creation task's exception, when there is one)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    said = [line for line in lines if "Error:" in line and not line.startswith("ray.")]
    return (said[-1] if said else lines[0] if lines else type(err).__name__)[:400]
