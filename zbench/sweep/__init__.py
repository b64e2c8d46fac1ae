"""Sweeps: grids too big for one sitting, rendered into a folder cell by cell, resumable, over Ray workers.

``load_sweep`` reads a spec (``configs/sweeps/demo.toml``), ``run_sweep`` renders what is missing, and
``SweepStore`` reads a sweep folder back (the page browses it without rendering).
"""

from .browse import StoredGrid, open_stored
from .run import SweepSummary, plan_sweep, run_sweep
from .spec import SweepSpec, load_sweep
from .store import SweepError, SweepStore

__all__ = [
    "StoredGrid",
    "SweepError",
    "SweepSpec",
    "SweepStore",
    "SweepSummary",
    "load_sweep",
    "open_stored",
    "plan_sweep",
    "run_sweep",
]
