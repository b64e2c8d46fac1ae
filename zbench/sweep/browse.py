"""Stored grids: a sweep folder or the CLI's grid output, opened for browsing without rendering.

Both keep one record per cell (checkpoint, prompt, seed, scale, image, status, error) beside the
images: a sweep in ``cells.jsonl`` (with ``sweep.json``), ``python -m zbench grid`` in ``manifest.json``.
The page shows any slice of them (prompts, seeds, scales; checkpoints as columns) from the files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..engine.checkpoints import Checkpoint
from ..engine.plan import CellResult, RenderSettings, Row
from .store import SPEC, SweepStore, stored_results

__all__ = ["StoredGrid", "open_stored"]


@dataclass(frozen=True)
class StoredGrid:
    """What a folder of rendered cells holds, and its cells as grid results."""

    folder: Path
    kind: str  # "sweep" or "grid"
    base: str  # the base config's name
    run_dir: Path  # the run the cells were rendered from (its decisions live there)
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    scales: tuple[float, ...]
    checkpoints: tuple[str, ...]  # names, in the order they were rendered
    base_column: bool
    settings: RenderSettings
    records: tuple[dict, ...]

    def results(self, checkpoints: list[Checkpoint], rows: list[Row], *, base_column: bool = True) -> list[CellResult]:
        return stored_results(self.folder, self.records, checkpoints, rows, base_column=base_column)


def open_stored(folder: str | Path) -> StoredGrid | None:
    """The stored grid in ``folder`` (a sweep, or a grid command's output); None when it is neither.

    Raises:
        ValueError: the folder has a sweep.json or manifest.json that cannot be read (the message says which).
    """
    folder = Path(folder).expanduser()
    if (folder / SPEC).is_file():
        store = SweepStore(folder)
        try:
            about = store.description()
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{folder / SPEC} cannot be read ({err})") from err
        records = tuple(store.records().values())
        kind = "sweep"
    elif (folder / "manifest.json").is_file():
        try:
            about = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{folder / 'manifest.json'} cannot be read ({err})") from err
        if not isinstance(about, dict) or not isinstance(about.get("cells"), list):
            return None  # some other manifest
        records = tuple(c for c in about["cells"] if isinstance(c, dict))
        about = {**about, "settings": {k: about.get(k) for k in ("steps", "guidance", "width", "height", "negative")}}
        kind = "grid"
    else:
        return None
    try:
        names = [c["name"] for c in about["checkpoints"]] if "checkpoints" in about else []
        if not names:  # a grid manifest: its columns in order
            names = list(dict.fromkeys(r["checkpoint"] for r in records if r.get("checkpoint") != "base"))
        s = about["settings"]
        settings = RenderSettings(
            steps=int(s["steps"]),
            guidance=float(s["guidance"]),
            width=int(s["width"]),
            height=int(s["height"]),
            negative=s.get("negative") or "",
        )
        return StoredGrid(
            folder=folder,
            kind=kind,
            base=str(about.get("base", "")),
            run_dir=Path(about["run"]),
            prompts=tuple(about["prompts"]),
            seeds=tuple(int(x) for x in about["seeds"]),
            scales=tuple(float(x) for x in about["scales"]),
            checkpoints=tuple(names),
            base_column=bool(about.get("base_column", any(r.get("checkpoint") == "base" for r in records))),
            settings=settings,
            records=records,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{folder} holds cells zbench cannot read back ({type(err).__name__}: {err})") from err
