"""What every session of the page shares: the base pipeline, the image cache, run scans, and work kept off clicks.

Work that would otherwise land on a person's first click is done on background threads, once per server:
the modules the signals import on first use and each run's weight metrics (the Pick a release table), while
the page loads; the Timeline's animations (an animated WebP takes seconds to encode at a real run's size) when
the tab asks, and the grid's first row ahead of that, at the lowest CPU priority once the server is idle.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future

import streamlit as st

import zbench

SCAN_TTL = float(os.environ.get("ZBENCH_SCAN_TTL", "3"))  # seconds; new epochs of a live run show up
# Imported on first use by the signals (BRISQUE alone takes about 1.7 s): imported at page load instead.
WARM_MODULES = ("cv2", "brisque")
ANIMATIONS_KEPT = 16  # encoded timelines kept per server (each about 0.5-2 MB)

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


def _low_priority() -> None:
    """Run this thread at the lowest CPU priority (Linux: nice is per thread), so the page's runs come first."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not Linux, or not allowed: a normal thread
        pass


class _Lane:
    """One daemon thread that runs jobs in order (a server that stops never waits for them)."""

    def __init__(self, name: str, *, low_priority: bool = False):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.low_priority = low_priority
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, fn, *args) -> Future:
        job: Future = Future()
        self.jobs.put((job, fn, args))
        return job

    def _run(self) -> None:
        if self.low_priority:
            _low_priority()
        while True:
            job, fn, args = self.jobs.get()
            if not job.set_running_or_notify_cancel():
                continue
            try:
                job.set_result(fn(*args))
            except Exception as err:  # the caller shows it
                job.set_exception(err)


# One thread each: background jobs queue up instead of taking both cores from the page. Warm-ups are short and
# run at once (a first page load waits for what they prepare), and so does an animation the Timeline tab asks
# for; one nobody asked for yet is encoded at the lowest priority once the server has been idle for a while.
_WARM = _Lane("zbench-warm")
_ENCODE = _Lane("zbench-encode")
_PREWARM = _Lane("zbench-prewarm", low_priority=True)
IDLE_S = 1.0  # a prewarm starts after this long with the server under 5% of a core
_LOCK = threading.Lock()
_WARMED: set[object] = set()
_ANIMATIONS: OrderedDict[str, Future[str]] = OrderedDict()
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


def _digest(frames) -> str:
    h = hashlib.blake2b(digest_size=16)
    for image, ms in frames:
        h.update(f"{image.mode}{image.size}{ms}".encode())
        h.update(image.tobytes())
    return h.hexdigest()


def _encode(frames) -> str:
    return base64.b64encode(zbench.webp_bytes(frames)).decode("ascii")


def _kept(digest: str) -> Future[str] | None:
    """The animation of ``digest``, encoded or on its way (not one that failed); call with the lock held."""
    job = _ANIMATIONS.get(digest)
    if job is None or (job.done() and job.exception() is not None):
        return None
    _ANIMATIONS.move_to_end(digest)
    return job


def _keep(digest: str, job: Future[str]) -> None:
    _ANIMATIONS[digest] = job
    while len(_ANIMATIONS) > ANIMATIONS_KEPT:
        _ANIMATIONS.popitem(last=False)


def animation(frames) -> Future[str]:
    """``frames`` (``zbench.row_timeline``'s) as an animated WebP in base64, encoded once per server on a
    background thread: the same frames (a reload, another session, a prewarmed row) come back at once."""
    digest = _digest(frames)
    with _LOCK:
        job = _kept(digest)
        if job is None:
            job = _ENCODE.submit(_encode, list(frames))
            _keep(digest, job)
    return job


def _idle(seconds: float = IDLE_S, give_up: float = 120.0) -> bool:
    """Wait until the whole server (every thread, every session) has used under 5% of a core for ``seconds``."""
    deadline = time.monotonic() + give_up
    while time.monotonic() < deadline:
        before = time.process_time()
        time.sleep(seconds)
        if time.process_time() - before < 0.05 * seconds:
            return True
    return False


def _prewarm(results, rows, info, row: int) -> None:
    if not _idle():
        return  # a busy server: the Timeline tab encodes it when it is opened
    frames = zbench.row_timeline(results, rows, info, row, None)
    digest = _digest(frames)
    with _LOCK:
        if _kept(digest) is not None:
            return
        job: Future[str] = Future()
        _keep(digest, job)
    job.set_running_or_notify_cancel()
    try:
        job.set_result(_encode(frames))
    except Exception as err:  # the tab encodes it again when it is opened, and says what is wrong
        job.set_exception(err)


def prewarm_animation(results: list[zbench.CellResult], rows, info, row: int = 0) -> None:
    """Once a session shows a finished grid, encode its row timeline (the whole image) in the background when the
    server is next idle, so that opening the Timeline tab finds its animation ready."""
    if any(r.status == "pending" for r in results) or not any(r.image is not None for r in results):
        return
    if st.session_state.get("timeline_prewarmed") is results:
        return
    st.session_state["timeline_prewarmed"] = results
    _PREWARM.submit(_quietly, _prewarm, results, rows, info, row)
