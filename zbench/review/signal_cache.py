"""Where signal values live: by a digest of the pixels they were computed from, in memory and in SQLite.

A value is kept under a key naming the signal, its version and the image's digest, so a grid shown again, the
page and ``zbench suggest`` (other processes) never compute one twice, and a changed scorer is asked again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import sqlite3
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from PIL import Image

__all__ = ["NotKept", "SignalCache", "image_digest"]

logger = logging.getLogger(__name__)

# id(image) -> (a weak reference to it, digest), newest last: remembered without keeping images alive.
_DIGESTS: OrderedDict[int, tuple[weakref.ref, str]] = OrderedDict()
_DIGESTS_KEPT = 4096
_DIGESTS_LOCK = threading.Lock()


def image_digest(image: Image.Image) -> str:
    """A digest of an image's pixels (mode, size and bytes): the key its signals are cached under.

    Remembered per image object (the page shows the same cached images on every rerun), so a 1024² image is
    hashed once, not on every rerun.
    """
    with _DIGESTS_LOCK:
        hit = _DIGESTS.get(id(image))
        if hit is not None and hit[0]() is image:
            _DIGESTS.move_to_end(id(image))
            return hit[1]
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.mode}:{image.width}x{image.height}:".encode())
    h.update(image.tobytes())
    digest = h.hexdigest()
    with _DIGESTS_LOCK:
        _DIGESTS[id(image)] = (weakref.ref(image), digest)
        while len(_DIGESTS) > _DIGESTS_KEPT:
            _DIGESTS.popitem(last=False)
    return digest


class SignalCache:
    """Signal values by key, in memory and, with a ``path``, in an SQLite file shared by processes. Thread-safe."""

    def __init__(self, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self._memory: dict[str, float | None] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
                self._db.execute("CREATE TABLE IF NOT EXISTS signal (key TEXT PRIMARY KEY, value REAL)")
                self._db.commit()
            except (sqlite3.Error, OSError) as err:  # a read-only, missing or broken cache folder: memory only
                logger.warning("signal cache %s unusable (%s); keeping signals in memory", self.path, err)
                self._db = None

    def get(self, key: str) -> tuple[bool, float | None]:
        """(found, value); a cached None is a value (the scorer had nothing to say)."""
        with self._lock:
            if key in self._memory:
                return True, self._memory[key]
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    row = self._db.execute("SELECT value FROM signal WHERE key = ?", (key,)).fetchone()
                    if row is not None:
                        self._memory[key] = row[0]
                        return True, row[0]
        return False, None

    def put(self, key: str, value: float | None) -> None:
        with self._lock:
            self._memory[key] = value
            if self._db is not None:
                try:
                    self._db.execute("INSERT OR REPLACE INTO signal VALUES (?, ?)", (key, value))
                    self._db.commit()
                except sqlite3.Error as err:
                    logger.warning("could not store a signal in %s: %s", self.path, err)

    def value(self, key: str, compute: Callable[[], float | None]) -> float | None:
        """The cached value, else ``compute()`` stored; a compute that raises :class:`NotKept` stores nothing."""
        found, value = self.get(key)
        if not found:
            try:
                value = compute()
            except NotKept:
                return None
            if value is not None and not math.isfinite(value):
                value = None
            self.put(key, value)
        return value


class NotKept(Exception):
    """A value that failed to compute: not cached, so a fixed scorer is asked again."""
