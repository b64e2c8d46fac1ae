"""Reading the next checkpoint ahead: its first visit costs about a cached swap.

A first visit of a checkpoint reads its file, converts its keys and checks it (``lora_file``):
about 100 ms at Z-Image-Turbo's size, more than the copy into the live layers. While one
checkpoint's cells render, the next one of the grid is read on a background thread, so the
swap in the render path only copies. One slot: at most one checkpoint is held ahead (bounded
memory), and asking for another replaces it. Nothing in the pipeline changes until the
swapper takes the result under its lock, so exactness is that of the plain path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from .checkpoints import Checkpoint
from .lora_file import LoraError, LoraRead, read_lora
from .pipeline import Base

__all__ = ["Prefetcher"]

logger = logging.getLogger(__name__)


class Prefetcher:
    """One background reader for one base pipeline's swapper."""

    def __init__(self, base: Base):
        self.base = base
        self._pool: ThreadPoolExecutor | None = None  # started on first use
        self._slot: tuple[Checkpoint, Future] | None = None
        self._lock = threading.Lock()
        self.hits = 0  # first visits served from the slot (tests and the benchmark read these)
        self.misses = 0

    def prefetch(self, ck: Checkpoint | None, *, needed: Callable[[], bool] | None = None) -> None:
        """Start reading ``ck`` in the background, replacing whatever was held ahead.

        Args:
            needed: evaluated on the background thread after the file's hash is known (e.g. "is
                any of its cells missing from the image cache?"); False skips the read.
        """
        if ck is None or ck.error is not None:
            return
        with self._lock:
            if self._slot is not None and self._slot[0] is ck:
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zbench-prefetch")
            self._slot = (ck, self._pool.submit(self._read, ck, needed))

    def _read(self, ck: Checkpoint, needed: Callable[[], bool] | None) -> LoraRead | None:
        _ = ck.hash  # hash here, not on the render path (the image cache keys on it)
        if needed is not None and not needed():
            return None
        read = read_lora(self.base, ck)
        # Also the copy to the device and the cast to the model's dtype, off the render path.
        read.state = {k: v.to(self.base.device, self.base.dtype) for k, v in read.state.items()}
        return read

    def take(self, ck: Checkpoint) -> LoraRead | None:
        """The read of ``ck`` if it is the one held ahead (waiting for it to finish), else None.

        Raises:
            LoraError: the background read refused the file (the same error a plain read gives).
        """
        with self._lock:
            slot, self._slot = self._slot, None
        if slot is None or slot[0].path != ck.path or slot[0].hash != ck.hash:
            self.misses += 1
            return None
        try:
            read = slot[1].result()
        except LoraError:
            raise
        except Exception as err:  # e.g. the module tree changed under it during an injection
            logger.info("prefetch of %s failed (%s); reading it now", ck.name, err)
            read = None
        if read is None:
            self.misses += 1
        else:
            self.hits += 1
        return read
