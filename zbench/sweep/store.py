"""A sweep's folder: one PNG per finished cell under a name from the cell's key, and a line per cell.

    DIR/sweep.json                       what the sweep is (spec, run, checkpoints with hashes, rows), marked
                                         ``"zbench": 1`` (its format) so no other program's file is taken for it
    DIR/cells.jsonl                      one JSON line per finished cell, appended and flushed at once
    DIR/images/<checkpoint>/<key>.png    the cell's image, written atomically before its line
    DIR/.lock                            held while a sweep renders into the folder (see ``folder.py``)

A cell is done when its line is in ``cells.jsonl`` (and, for an image, the file exists inside the folder):
a rerun after a kill renders only the rest. A line torn by a kill, or one that is not a record zbench
wrote, is skipped (its cell renders again). The key is the image cache's key (base files, checkpoint
content hash, prompt, negative, seed, scale, steps, guidance, size), so a replaced checkpoint file or a
changed setting is a new cell, never a stale image. Everything read back is checked (``readback.py``,
``stored.py``): the folder may have been edited by hand or be somebody else's.
"""

from __future__ import annotations

import os
import re
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import PngImagePlugin

from ..engine.checkpoints import Checkpoint
from ..engine.jsonio import dumps
from ..engine.plan import Cell, CellResult, RenderSettings, Row
from ..engine.render import image_key
from .folder import IMAGES, LINES, LOCK, SPEC, SPEC_TMP, FolderLock, SweepError, owned_description
from .readback import FORMAT, read_description, read_records
from .stored import stored_path, stored_results

__all__ = ["LINES", "SPEC", "SweepCell", "SweepError", "SweepStore", "cell_keys", "stored_results"]

NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


@dataclass(frozen=True)
class SweepCell:
    """A cell of the sweep with its key (what its image file is named after)."""

    key: str
    cell: Cell


def cell_keys(base_id: str, cells: list[Cell], settings: RenderSettings) -> list[SweepCell]:
    """Each cell with its key; a checkpoint that cannot be hashed keys on its name (it is an error cell)."""
    out = []
    for cell in cells:
        ck = cell.checkpoint
        lora = None if ck is None else (ck.hash or f"unreadable:{ck.name}")
        out.append(SweepCell(image_key(base_id, lora, cell, settings)[:24], cell))
    return out


def _merged(old: dict, new: dict) -> dict:
    """Two descriptions of one run and base: the new settings, every prompt, seed, scale and checkpoint."""
    out = dict(new)
    for key in ("prompts", "seeds", "scales"):
        out[key] = list(dict.fromkeys([*old.get(key, []), *new[key]]))
    names = {c["name"] for c in new["checkpoints"]}
    out["checkpoints"] = [*new["checkpoints"], *(c for c in old.get("checkpoints", []) if c["name"] not in names)]
    return out


def _folder_name(name: str) -> str:
    """A checkpoint's name as one safe folder name (``checkpoint-500/pytorch_lora_weights`` too)."""
    stem = name[: -len(".safetensors")] if name.endswith(".safetensors") else name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "checkpoint"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class SweepStore:
    """The sweep folder: what is done, and writing each finished cell at once (thread-safe).

    Reading (``description``, ``records``, ``done``, ``results``) needs nothing first; writing needs
    :meth:`start`, which takes the folder's lock until :meth:`close` (or the end of a ``with`` block).
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()
        self._write_lock = threading.Lock()
        self._owner = FolderLock(self.folder / LOCK)
        self._lines: int | None = None  # cells.jsonl, open for appending while started

    @property
    def lines_path(self) -> Path:
        return self.folder / LINES

    def __enter__(self) -> SweepStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # a store dropped without close() still gives its folder up
        try:
            self.close()
        except Exception:
            pass

    def start(self, description: dict) -> None:
        """Take the folder (create it, lock it), write ``sweep.json`` and open ``cells.jsonl`` for appending.

        The same sweep run again resumes; a sweep of the same run and base with more prompts, seeds,
        scales or checkpoints adds its cells to the folder (``sweep.json`` then lists them all).

        Raises:
            SweepError: the folder cannot be written, holds files zbench did not write, holds a sweep of
                another run or base, or another process is rendering into it.
        """
        if self._owner.held:
            raise SweepError(f"SweepStore({str(self.folder)!r}) is started already; close() it before starting again")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            owned_description(self.folder)  # before the lock file is made: a foreign folder is left exactly as it was
            self._owner.acquire()
            try:
                old = owned_description(
                    self.folder
                )  # again under the lock: another sweep may have written it meanwhile
                if old is not None:
                    if (old["run"], old["base"]) != (description["run"], description["base"]):
                        raise SweepError(
                            f"{self.folder} holds a sweep of {old['run']} on {old['base']}; give a new --out "
                            "folder for this one"
                        )
                    description = _merged(old, description)
                self._write_description({"zbench": FORMAT, **description})
                self._open_lines()
            except BaseException:
                self.close()
                raise
        except OSError as err:
            why = err.strerror or err
            raise SweepError(f"{self.folder} cannot be written ({why}); give a folder you can write") from err

    def close(self) -> None:
        """Stop writing and give the folder's lock up (a second call does nothing)."""
        fd, self._lines = self._lines, None
        if fd is not None:
            os.close(fd)
        self._owner.release()

    def _write_description(self, description: dict) -> None:
        """``sweep.json`` replaced atomically (a temporary file made afresh: never one someone put there)."""
        tmp = self.folder / SPEC_TMP
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NO_FOLLOW, 0o644)
        try:
            _write_all(fd, dumps(description, indent=2).encode("utf-8"))
        finally:
            os.close(fd)
        os.replace(tmp, self.folder / SPEC)

    def _open_lines(self) -> None:
        """Open ``cells.jsonl`` to append (never through a link); end a line a kill cut short first."""
        fd = os.open(self.lines_path, os.O_RDWR | os.O_APPEND | os.O_CREAT | NO_FOLLOW, 0o644)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise SweepError(f"{self.lines_path} is not a regular file; give an empty or new --out folder")
            if info.st_size:
                os.lseek(fd, info.st_size - 1, os.SEEK_SET)
                if os.read(fd, 1) != b"\n":  # torn: end it, so the next line is whole
                    _write_all(fd, b"\n")
        except BaseException:
            os.close(fd)
            raise
        self._lines = fd

    def description(self) -> dict:
        """``sweep.json``, checked (see ``readback.check_description``).

        Raises:
            SweepError: it is missing, too big, not JSON, not zbench's or of the wrong shape (names the file).
        """
        path = self.folder / SPEC
        try:
            return read_description(path)
        except FileNotFoundError:
            raise SweepError(f"{path} does not exist; {self.folder} is not a sweep folder") from None
        except (OSError, ValueError) as err:
            why = err.strerror if isinstance(err, OSError) and err.strerror else err
            raise SweepError(f"{path} cannot be used ({why}); render the sweep again into a new folder") from None

    def records(self) -> dict[str, dict]:
        """The finished cells by key (a torn, unreadable or malformed line is skipped; a later line wins).

        Raises:
            SweepError: ``cells.jsonl`` is not a regular file, is too big, or cannot be read.
        """
        try:
            return read_records(self.lines_path)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            why = err.strerror if isinstance(err, OSError) and err.strerror else err
            raise SweepError(f"{self.lines_path} cannot be read ({why})") from None

    def done(self, retry_errors: bool = False) -> set[str]:
        """Keys of finished cells: an image file inside the folder, or an error (unless ``retry_errors``).

        A record whose image is missing or lies outside the folder is not done: its cell renders again.
        """
        keys = set()
        for key, record in self.records().items():
            if record["image"]:
                try:
                    if stored_path(self.folder, record["image"]).is_file():
                        keys.add(key)
                except (OSError, ValueError):
                    continue
            elif not retry_errors:
                keys.add(key)
        return keys

    def write(self, sweep_cell: SweepCell, result: CellResult, **extra) -> dict:
        """Store one finished cell: its image (atomically), then its line (flushed and synced).

        Raises:
            SweepError: :meth:`start` was not called, the image's folder is a link or a file, or the disk is full.
        """
        if self._lines is None:
            raise SweepError(f"SweepStore({str(self.folder)!r}).start(description) must come before write()")
        cell = result.cell
        record = {
            "key": sweep_cell.key,
            "checkpoint": cell.name,
            "hash": None if cell.checkpoint is None else cell.checkpoint.hash,
            "prompt": cell.prompt,
            "seed": cell.seed,
            "scale": cell.scale,
            "row": cell.row,
            "col": cell.col,
            "status": result.status,
            "error": result.error,
            "image": None,
            "swap_ms": result.swap_ms,
            "render_ms": result.render_ms,
            "finished": round(time.time(), 3),
            **extra,
        }
        try:
            if result.image is not None:
                folder = "base" if cell.checkpoint is None else _folder_name(cell.name)
                record["image"] = self._write_image(folder, sweep_cell.key, result)
            line = (dumps(record) + "\n").encode("utf-8")
            with self._write_lock:
                _write_all(self._lines, line)
                os.fsync(self._lines)
        except OSError as err:  # a full disk, or a folder where the image should go
            why = err.strerror or err
            raise SweepError(f"{self.folder} cannot be written ({why}); run the sweep again to resume") from err
        return record

    def _write_image(self, folder: str, key: str, result: CellResult) -> str:
        """Write a cell's PNG under a fresh temporary name, then move it into place; its path relative to the folder."""
        path = self._image_folder(folder) / f"{key}.png"
        cell = result.cell
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", f"{cell.prompt}\nSeed: {cell.seed}, LoRA: {cell.name}, scale: {cell.scale:g}")
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        with open(tmp, "xb") as f:  # exclusive: never through a link left at that name
            result.image.save(f, format="PNG", pnginfo=info)
        os.replace(tmp, path)
        return f"{IMAGES}/{folder}/{key}.png"

    def _image_folder(self, name: str) -> Path:
        """``images/<name>``, made here if need be; an existing one must be a real folder, never a link out."""
        here = self.folder
        for part in (IMAGES, name):
            here = here / part
            try:
                os.mkdir(here)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(here).st_mode):
                    raise SweepError(
                        f"{here} is not a folder zbench made (a link or a file); give an empty or new --out folder"
                    ) from None
        return here

    def results(self, checkpoints: list[Checkpoint], rows: list[Row], *, base_column: bool = True) -> list[CellResult]:
        """The stored cells of ``rows`` across ``checkpoints`` as grid results (see ``stored_results``)."""
        return stored_results(self.folder, self.records().values(), checkpoints, rows, base_column=base_column)
