"""A sweep's folder: one PNG per finished cell under a name from the cell's key, and a line per cell.

    DIR/sweep.json                       what the sweep is (spec, run, checkpoints with hashes, rows)
    DIR/cells.jsonl                      one JSON line per finished cell, appended and flushed at once
    DIR/images/<checkpoint>/<key>.png    the cell's image, written atomically before its line

A cell is done when its line is in ``cells.jsonl`` (and, for an image, the file exists): a rerun after a
kill renders only the rest. A line torn by a kill is skipped (its cell renders again). The key is the
image cache's key (base files, checkpoint content hash, prompt, negative, seed, scale, steps,
guidance, size), so a replaced checkpoint file or a changed setting is a new cell, never a stale image.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, PngImagePlugin

from ..engine.checkpoints import Checkpoint
from ..engine.plan import Cell, CellResult, RenderSettings, Row
from ..engine.render import image_key

__all__ = ["SweepCell", "SweepError", "SweepStore", "cell_keys"]

SPEC = "sweep.json"
LINES = "cells.jsonl"


class SweepError(RuntimeError):
    """A sweep folder that cannot be used: not writable, or holding another sweep's cells."""


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


class SweepStore:
    """The sweep folder: what is done, and writing each finished cell at once (thread-safe)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()
        self._lock = threading.Lock()

    @property
    def lines_path(self) -> Path:
        return self.folder / LINES

    def start(self, description: dict) -> None:
        """Create the folder and write ``sweep.json``.

        The same sweep run again resumes; a sweep of the same run and base with more prompts, seeds,
        scales or checkpoints adds its cells to the folder (``sweep.json`` then lists them all).

        Raises:
            SweepError: the folder cannot be written, or holds a sweep of another run or base.
        """
        path = self.folder / SPEC
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if path.exists():
                old = json.loads(path.read_text(encoding="utf-8"))
                if (old.get("run"), old.get("base")) != (description["run"], description["base"]):
                    raise SweepError(
                        f"{self.folder} holds a sweep of {old.get('run')} on {old.get('base')}; give a new --out "
                        "folder for this one"
                    )
                description = _merged(old, description)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(description, indent=2), encoding="utf-8")
            os.replace(tmp, path)
            self._close_torn_line()
        except OSError as err:
            why = err.strerror or err
            raise SweepError(f"{self.folder} cannot be written ({why}); give a folder you can write") from err
        except json.JSONDecodeError as err:
            raise SweepError(f"{path} is not a sweep description ({err}); give a new --out folder") from err

    def _close_torn_line(self) -> None:
        """A kill in the middle of a line leaves it without its newline: end it, so the next line is whole."""
        try:
            with self.lines_path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() == 0:
                    return
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
        except FileNotFoundError:
            return
        if torn:
            with self.lines_path.open("a", encoding="utf-8") as f:
                f.write("\n")

    def description(self) -> dict:
        return json.loads((self.folder / SPEC).read_text(encoding="utf-8"))

    def records(self) -> dict[str, dict]:
        """The finished cells by key (a torn or unreadable line is skipped; a later line wins)."""
        out: dict[str, dict] = {}
        try:
            text = self.lines_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return out
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("key"), str):
                out[record["key"]] = record
        return out

    def done(self, retry_errors: bool = False) -> set[str]:
        """Keys of finished cells: an image that exists, or an error (unless ``retry_errors``)."""
        keys = set()
        for key, record in self.records().items():
            if record.get("image"):
                if (self.folder / record["image"]).is_file():
                    keys.add(key)
            elif not retry_errors:
                keys.add(key)
        return keys

    def write(self, sweep_cell: SweepCell, result: CellResult, **extra) -> dict:
        """Store one finished cell: its image (atomically), then its line (flushed and synced)."""
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
        if result.image is not None:
            folder = "base" if cell.checkpoint is None else _folder_name(cell.name)
            rel = f"images/{folder}/{sweep_cell.key}.png"
            path = self.folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            info = PngImagePlugin.PngInfo()
            info.add_text("parameters", f"{cell.prompt}\nSeed: {cell.seed}, LoRA: {cell.name}, scale: {cell.scale:g}")
            tmp = path.with_name(path.name + ".tmp")
            result.image.save(tmp, format="PNG", pnginfo=info)
            os.replace(tmp, path)
            record["image"] = rel
        line = json.dumps(record) + "\n"
        with self._lock, self.lines_path.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        return record

    def results(self, checkpoints: list[Checkpoint], rows: list[Row], *, base_column: bool = True) -> list[CellResult]:
        """The stored cells of ``rows`` across ``checkpoints`` as grid results (see ``stored_results``)."""
        return stored_results(self.folder, self.records().values(), checkpoints, rows, base_column=base_column)


def stored_results(
    folder: Path, records, checkpoints: list[Checkpoint], rows: list[Row], *, base_column: bool = True
) -> list[CellResult]:
    """Stored cells (records with checkpoint, prompt, seed, scale, image) as grid results for ``rows``.

    Images are read from disk (``image`` is relative to ``folder``); nothing renders. Cells are matched by
    checkpoint name, prompt, seed and scale, so any slice (some rows, some checkpoints) can be shown; a
    cell that is not stored comes back "pending".
    """
    by_cell = {}
    for record in records:
        try:
            # The base ignores the LoRA scale: one base image per prompt and seed serves every scale.
            scale = None if record["checkpoint"] == "base" else float(record["scale"])
            by_cell[(record["checkpoint"], record["prompt"], record["seed"], scale)] = record
        except (KeyError, TypeError, ValueError):
            continue  # a record written by something else: its cell shows as not stored
    columns: list[Checkpoint | None] = ([None] if base_column else []) + list(checkpoints)
    out = []
    for r, row in enumerate(rows):
        for c, ck in enumerate(columns):
            cell = Cell(r, c, ck, row.prompt, row.seed, row.scale)
            record = by_cell.get((cell.name, row.prompt, row.seed, None if ck is None else float(row.scale)))
            out.append(_result(folder, cell, record))
    return out


def _result(folder: Path, cell: Cell, record: dict | None) -> CellResult:
    if record is None:
        return CellResult(cell, None, "pending", "not stored in this folder")
    if not record.get("image"):
        return CellResult(cell, None, record.get("status") or "error", record.get("error"))
    path = (folder / str(record["image"])).resolve()
    if not path.is_relative_to(folder.resolve()):  # a record pointing outside its folder is not shown
        return CellResult(cell, None, "error", f"stored image {record['image']} is outside {folder}")
    try:
        image = _read_image(str(path), path.stat().st_mtime_ns)
    except (OSError, ValueError) as err:
        return CellResult(cell, None, "error", f"stored image {record['image']} cannot be read ({err})")
    return CellResult(cell, image, "ok", None, record.get("swap_ms"), record.get("render_ms"), "cache")


@functools.lru_cache(maxsize=96)  # about 290 MiB of 1024 px images
def _read_image(path: str, mtime_ns: int) -> Image.Image:
    """A stored image, read once per file version (browsing reruns show the same cells again)."""
    with Image.open(path) as im:
        return im.convert("RGB")
