"""Finding runs: a folder that holds run folders rather than checkpoints, and what a wrong path holds.

Trainers write each run into its own folder (``output/<name>/``), so people often point at the
parent. Its runs are offered to pick; a path with no checkpoints at all is described (what is
there, or the nearest folder that exists) instead of answered with "no checkpoints".
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from natsort import natsorted

from .checkpoints import _candidates

__all__ = ["describe_folder", "find_runs"]

MAX_DEPTH = 2  # output/<run>/ and output/<group>/<run>/


def find_runs(folder: str | Path, *, depth: int = MAX_DEPTH) -> list[Path]:
    """Folders below ``folder`` (up to ``depth`` levels) that hold checkpoints, in natural order.

    Hidden folders (``.zbench``, ``.git``) and zbench's own ``zbench-sheets`` are skipped; a folder
    that holds checkpoints is a run, and its subfolders are not searched (``checkpoint-500/``
    folders belong to their run).
    """
    root = Path(folder).expanduser()
    runs: list[Path] = []

    def walk(path: Path, level: int) -> None:
        try:
            children = [c for c in path.iterdir() if c.is_dir() and not c.name.startswith(".")]
        except OSError:
            return
        for child in children:
            if child.name == "zbench-sheets":
                continue
            try:
                holds = bool(_candidates(child))
            except OSError:
                continue
            if holds:
                runs.append(child)
            elif level < depth:
                walk(child, level + 1)

    walk(root, 1)
    return natsorted(runs, key=str)


def describe_folder(folder: str | Path) -> str:
    """What a path holds, for a message when it holds no checkpoints (or does not exist)."""
    path = Path(folder).expanduser()
    if not path.exists():
        parent = next((p for p in path.parents if p.is_dir()), None)
        if parent is None:
            return f"{path} does not exist"
        return f"{path} does not exist; the nearest folder that does, {parent}, holds {_contents(parent)}"
    if not path.is_dir():
        return f"{path} is a file, not a folder"
    return f"{path} holds {_contents(path)}"


def _contents(path: Path) -> str:
    try:
        entries = [e for e in path.iterdir() if not e.name.startswith(".")]
    except OSError as err:
        return f"nothing zbench can read ({err.strerror or err})"
    folders = natsorted(e.name for e in entries if e.is_dir())
    kinds = Counter(e.suffix.lower() or "(no extension)" for e in entries if e.is_file())
    parts = []
    if folders:
        shown = ", ".join(folders[:6]) + (", ..." if len(folders) > 6 else "")
        parts.append(f"{len(folders)} folder{'s' if len(folders) != 1 else ''} ({shown})")
    if kinds:
        listed = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common(5))
        parts.append(f"{sum(kinds.values())} file{'s' if sum(kinds.values()) != 1 else ''} ({listed})")
    return " and ".join(parts) if parts else "nothing"
