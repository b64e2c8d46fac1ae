"""What every session of the page shares: the base pipeline, the image cache, run scans, and work kept off clicks.

Work that would otherwise land on a person's first click is done on a background thread, once per server: the
modules the signals import on first use and each run's weight metrics (the Pick a release table), while the page
loads.
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import threading
from concurrent.futures import Future

import streamlit as st

import zbench

SCAN_TTL = float(os.environ.get("ZBENCH_SCAN_TTL", "3"))  # seconds; new epochs of a live run show up
# Imported on first use by the signals (BRISQUE alone takes about 1.7 s): imported at page load instead.
WARM_MODULES = ("cv2", "brisque")

logger = logging.getLogger(__name__)


def base_for(config: zbench.BenchConfig) -> zbench.Base:
    """The server's one base pipeline (zbench keeps it; switching configs releases the old one first)."""
    with st.spinner("Loading the base model (once per server)…"):
        return zbench.get_base(config)


@st.cache_resource
def image_cache_in(folder: str) -> zbench.ImageCache:
    return zbench.get_image_cache(folder)


def image_cache() -> zbench.ImageCache:
    return image_cache_in(str(zbench.default_cache_dir()))


@st.cache_data(ttl=SCAN_TTL, show_spinner=False)
def scan(folder: str) -> list[zbench.Checkpoint]:
    return zbench.scan_run(folder)


class _Lane:
    """One daemon thread that runs jobs in order (a server that stops never waits for them)."""

    def __init__(self, name: str):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, fn, *args) -> Future:
        job: Future = Future()
        self.jobs.put((job, fn, args))
        return job

    def _run(self) -> None:
        while True:
            job, fn, args = self.jobs.get()
            if not job.set_running_or_notify_cancel():
                continue
            try:
                job.set_result(fn(*args))
            except Exception as err:  # the caller shows it
                job.set_exception(err)


# One thread: background jobs queue up instead of taking both cores from the page. Warm-ups are short and run at
# once (a first page load waits for what they prepare).
_WARM = _Lane("zbench-warm")
_LOCK = threading.Lock()
_WARMED: set[object] = set()
# Per default config (what a bare address opens): the run, config and tab a session showed last, so a new
# tab at the bare address opens where the last one was. Only places that opened are kept.
LAST_PLACE: dict[str, dict[str, str]] = {}


def _quietly(job, *args) -> None:
    try:
        job(*args)
    except Exception as err:  # warming is an optimisation: the page computes it again and says what is wrong
        logger.warning("background job %s failed: %s", getattr(job, "__name__", job), err)


def _import_all() -> None:
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # an optional extra: the signal that needs it says so


def warm_up(run: list[zbench.Checkpoint]) -> None:
    """Start, in the background: the slow imports (once per server) and ``run``'s weight metrics (once per
    set of checkpoint files; zbench keeps them by content hash for the Pick a release table)."""
    jobs = [("imports", _import_all, ())]
    usable = [c for c in run if c.error is None]
    if usable:
        jobs.append((("weights", tuple((str(c.path), c.size) for c in usable)), zbench.weight_metrics, (usable,)))
    for key, job, args in jobs:
        with _LOCK:
            if key in _WARMED:
                continue
            _WARMED.add(key)
        _WARM.submit(_quietly, job, *args)
