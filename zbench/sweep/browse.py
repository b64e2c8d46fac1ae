"""Stored grids: a sweep folder or the CLI's grid output, opened for browsing without rendering.

Both keep one record per cell (checkpoint, prompt, seed, scale, image, status, error) beside the
images: a sweep in ``cells.jsonl`` (with ``sweep.json``), ``python -m zbench grid`` in ``manifest.json``.
The page shows any slice of them (prompts, seeds, scales; checkpoints as columns) from the files. Both
files are read as untrusted (bounded, every field checked, see ``readback.py``): a folder that cannot be
shown is a ``ValueError`` saying which file and why, and the render settings the page lays the grid out
by are always usable (a stored width or height of 0 falls back to the images' own size).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..engine.checkpoints import Checkpoint
from ..engine.jsonio import read_json
from ..engine.limits import check_scale, check_seed
from ..engine.plan import CellResult, RenderSettings, Row
from .readback import MAX_ENTRIES, check_record, check_settings
from .store import SPEC, SweepError, SweepStore
from .stored import png_size, stored_path, stored_results

__all__ = ["StoredGrid", "open_stored"]

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 * 2**20  # a grid's manifest lists every cell: ~500 bytes each
MAX_MANIFEST_DEPTH = 8  # zooms and layouts nest 3 deep


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
    records: tuple[dict, ...]  # checked (readback.check_record)

    def results(self, checkpoints: list[Checkpoint], rows: list[Row], *, base_column: bool = True) -> list[CellResult]:
        return stored_results(self.folder, self.records, checkpoints, rows, base_column=base_column)


def open_stored(folder: str | Path) -> StoredGrid | None:
    """The stored grid in ``folder`` (a sweep, or a grid command's output); None when it is neither.

    Raises:
        ValueError: the folder has a sweep.json or manifest.json that cannot be used (the message names the
            file and what is wrong).
    """
    folder = Path(folder).expanduser()
    try:
        is_sweep, is_grid = (folder / SPEC).is_file(), (folder / MANIFEST).is_file()
    except OSError as err:  # a folder without permission to look into
        raise ValueError(f"{folder} cannot be read ({err.strerror or err})") from None
    if is_sweep:
        return _sweep(folder)
    if is_grid:
        return _grid(folder)
    return None


def _sweep(folder: Path) -> StoredGrid:
    store = SweepStore(folder)
    try:
        about = store.description()
        records = tuple(store.records().values())
    except SweepError as err:
        raise ValueError(str(err)) from None
    path = folder / SPEC
    return _stored(
        folder,
        path,
        kind="sweep",
        about=about,
        names=[c["name"] for c in about["checkpoints"]],
        settings=about["settings"],
        records=records,
    )


def _grid(folder: Path) -> StoredGrid | None:
    path = folder / MANIFEST
    try:
        about = read_json(path, max_bytes=MAX_MANIFEST_BYTES, max_depth=MAX_MANIFEST_DEPTH)
    except (OSError, ValueError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise ValueError(f"{path} cannot be read ({why})") from None
    if not isinstance(about, dict) or not isinstance(about.get("cells"), list):
        return None  # some other manifest
    records = tuple(r for r in (check_record(c, need_key=False) for c in about["cells"]) if r is not None)
    names = list(dict.fromkeys(r["checkpoint"] for r in records if r["checkpoint"] != "base"))  # its columns
    settings = {k: about.get(k) for k in ("steps", "guidance", "width", "height", "negative")}
    return _stored(folder, path, kind="grid", about=about, names=names, settings=settings, records=records)


def _stored(
    folder: Path, path: Path, *, kind: str, about: dict, names: list[str], settings: dict, records: tuple[dict, ...]
) -> StoredGrid:
    """A StoredGrid from a checked description; a field of the wrong type is a ValueError naming ``path``."""
    try:
        try:
            settings = check_settings(settings)
        except ValueError:  # a width or height of 0 would break the page's layout: the images know theirs
            settings = check_settings(settings, size=_image_size(folder, records))
        run, base = about.get("run"), about.get("base", "")
        if not isinstance(run, str) or not run.strip() or "\x00" in run or not isinstance(base, str):
            raise ValueError(f"run should be the run folder's path, got {run!r:.60}")
        prompts, seeds, scales = about.get("prompts"), about.get("seeds"), about.get("scales")
        for key, values in (("prompts", prompts), ("seeds", seeds), ("scales", scales), ("checkpoints", names)):
            if not isinstance(values, list) or len(values) > MAX_ENTRIES:
                raise ValueError(f"{key} should be a list of at most {MAX_ENTRIES:,}")
        if not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts should be a list of text")
        base_column = about.get("base_column", any(r["checkpoint"] == "base" for r in records))
        return StoredGrid(
            folder=folder,
            kind=kind,
            base=base,
            run_dir=Path(run),
            prompts=tuple(prompts),
            seeds=tuple(check_seed(x, "seeds") for x in seeds),
            scales=tuple(check_scale(x, "scales") for x in scales),
            checkpoints=tuple(names),
            base_column=base_column is True,
            settings=settings,
            records=records,
        )
    except ValueError as err:
        raise ValueError(f"{path} cannot be browsed ({err}); render the grid again into a new folder") from None


def _image_size(folder: Path, records: tuple[dict, ...]) -> tuple[int, int] | None:
    """The size of the first stored image that can be read (from its header), for settings that lost theirs."""
    for record in records:
        if record["image"]:
            try:
                return png_size(stored_path(folder, record["image"]))
            except (OSError, ValueError):
                continue
    return None
