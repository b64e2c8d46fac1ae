"""A sweep folder has one owner: zbench writes only into folders it made, and one process at a time.

zbench appends to ``cells.jsonl`` and rewrites ``sweep.json``, so it must never do that to files it did not
write. A folder is zbench's when its ``sweep.json`` carries the marker (``"zbench": 1``, see
``readback.FORMAT``), or holds exactly the keys every sweep.json had before the marker (an older zbench's
folder: it resumes, and gets the marker). Any other folder is taken only when it is empty (its lock file
and the desktop's own files aside); otherwise the sweep stops with a message, before anything is written.

Two processes rendering into one folder would both render every cell and interleave their lines:
:class:`FolderLock` holds ``DIR/.lock`` for the sweep's lifetime. Where ``fcntl`` exists it is a
non-blocking ``flock`` (the kernel drops it when the process dies, so a killed sweep never leaves a stale
lock); elsewhere the lock file is created exclusively and removed on release, and one whose process is
gone (same host) is taken over. Either way the file says who holds it (pid, host, start time).
"""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

from ..engine.jsonio import JsonError, dumps, parse_json, read_json
from .readback import MAX_CELLS_BYTES, MAX_SPEC_BYTES, check_description, is_zbench

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["IMAGES", "LINES", "LOCK", "SPEC", "SPEC_TMP", "FolderLock", "SweepError", "foreign_entries",
           "owned_description"]  # fmt: skip

SPEC = "sweep.json"
SPEC_TMP = SPEC + ".tmp"  # sweep.json is written here first, then moved into place
LINES = "cells.jsonl"
IMAGES = "images"
LOCK = ".lock"
JUNK = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})  # what a file browser leaves in any folder it shows
MAX_LOCK_BYTES = 4096
STALE_S = 10.0  # an unreadable exclusive lock file older than this is a crash between creating and writing it


class SweepError(RuntimeError):
    """A sweep folder that cannot be used: not writable, not zbench's, busy, or holding another sweep's cells."""


def foreign_entries(folder: Path, *, own: set[str]) -> list[str]:
    """Names in ``folder`` that zbench did not write (``own`` are the names it may have written so far).

    A lock file counts as zbench's only when it is a regular file holding nothing or a zbench lock.
    """
    out = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name in JUNK:
            continue
        if entry.name == LOCK and entry.is_file(follow_symlinks=False) and _lock_text(Path(entry.path)) is not None:
            continue
        if entry.name in own and entry.is_file(follow_symlinks=False):
            continue
        out.append(entry.name)
    return out


def owned_description(folder: Path) -> dict | None:
    """The folder's zbench description (checked), None when the folder is empty (zbench's lock file aside).

    Only reads: a folder that is not zbench's is left exactly as it was.

    Raises:
        SweepError: the folder holds files zbench did not write, or a zbench sweep.json it cannot read.
    """
    path = folder / SPEC
    foreign = "give an empty or new --out folder (zbench never writes into files it did not create)"
    if not os.path.lexists(path):
        names = foreign_entries(folder, own={SPEC_TMP})
        if names:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            raise SweepError(f"{folder} holds files zbench did not write ({shown}); {foreign}")
        return None
    if path.is_symlink() or not path.is_file():
        raise SweepError(f"{path} is not a file zbench wrote (a link, or not a regular file); {foreign}")
    try:
        data = read_json(path, max_bytes=MAX_SPEC_BYTES)
    except ValueError as err:  # too big, too deep, not JSON: nothing zbench wrote (it writes atomically)
        raise SweepError(f"{err}; {foreign}") from None
    if not is_zbench(data):
        raise SweepError(f'{folder} holds a sweep.json zbench did not write (no "zbench" marker); {foreign}')
    try:
        description = check_description(data)
    except ValueError as err:
        raise SweepError(f"{path} {err}; give a new --out folder (or fix the file)") from None
    for name, is_kind in ((LINES, stat.S_ISREG), (IMAGES, stat.S_ISDIR), (LOCK, stat.S_ISREG)):
        try:
            info = os.lstat(folder / name)
        except FileNotFoundError:
            continue
        if name == LINES and info.st_size > MAX_CELLS_BYTES:  # said before a byte is appended to it
            raise SweepError(
                f"{folder / LINES} is {info.st_size:,} bytes, more than the {MAX_CELLS_BYTES:,} zbench reads; "
                "give a new --out folder"
            )
        if not is_kind(info.st_mode):
            raise SweepError(f"{folder / name} is not what zbench writes there (a link or another kind); {foreign}")
    return description


def _lock_text(path: Path) -> dict | None:
    """What a lock file says: {} when it is empty, None when it is not a zbench lock file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            data = f.read(MAX_LOCK_BYTES + 1)
    except OSError:
        return None
    if not data.strip():
        return {}
    try:
        said = parse_json(data, where=str(path), max_depth=2) if len(data) <= MAX_LOCK_BYTES else None
    except JsonError:
        return None
    return said if isinstance(said, dict) and said.get("zbench") == "sweep lock" else None


def _holder(said: dict | None) -> str:
    """Who holds a lock, in words, from its file (written by another process: every field checked)."""
    said = said or {}
    pid, host, started = said.get("pid"), said.get("host"), said.get("started")
    parts = [f"pid {pid}" if isinstance(pid, int) and not isinstance(pid, bool) else "pid unknown"]
    if isinstance(host, str):
        parts.append(f"on {host[:100]}")
    if isinstance(started, str):
        parts.append(f"started {started[:40]}")
    return " ".join(parts)


def _alive(pid: int) -> bool:
    """Whether a process of this host is running (True when it cannot be told)."""
    try:
        import psutil

        return psutil.pid_exists(pid)
    except ImportError:
        pass
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate it on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class FolderLock:
    """An exclusive, non-blocking lock on a sweep folder, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, path: Path, *, use_flock: bool | None = None):
        self.path = path
        self.use_flock = fcntl is not None if use_flock is None else use_flock
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> FolderLock:
        """Take the lock and write who holds it into the lock file.

        Raises:
            SweepError: another process holds it (the message names its pid, host and start time).
            OSError: the lock file cannot be made.
        """
        fd = self._flock() if self.use_flock else self._exclusive()
        about = {"zbench": "sweep lock", "pid": os.getpid(), "host": socket.gethostname()}
        about["started"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
        try:
            os.ftruncate(fd, 0)
            os.write(fd, dumps(about).encode() + b"\n")
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def _busy(self, said: dict | None) -> SweepError:
        folder = self.path.parent
        return SweepError(
            f"{folder} is in use by another zbench sweep ({_holder(said)}, as its {LOCK} file says); wait for it "
            "to finish or stop it, or give another --out folder"
        )

    def _flock(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise SweepError(f"{self.path} is not a regular file; give an empty or new --out folder")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._busy(_lock_text(self.path)) from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _exclusive(self) -> int:
        for attempt in range(2):
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
            except FileExistsError:
                said = _lock_text(self.path)
                if attempt == 0 and self._stale(said):
                    self.path.unlink(missing_ok=True)
                    continue
                raise self._busy(said) from None
        raise self._busy(None)

    def _stale(self, said: dict | None) -> bool:
        """A lock file left by a process that is gone: its own host and a dead pid, or unreadable and old."""
        if said is None:
            return False  # not a zbench lock file: never removed
        if not said:
            try:
                return time.time() - self.path.stat().st_mtime > STALE_S
            except OSError:
                return False
        pid = said.get("pid")
        if said.get("host") != socket.gethostname() or not isinstance(pid, int) or isinstance(pid, bool):
            return False
        return pid != os.getpid() and not _alive(pid)

    def release(self) -> None:
        """Give the lock up (a second call does nothing)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self.use_flock:
                os.ftruncate(fd, 0)  # under the lock still: nobody reads a stale holder from it
        except OSError:
            pass
        finally:
            os.close(fd)
        if not self.use_flock:
            self.path.unlink(missing_ok=True)
