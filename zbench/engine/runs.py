"""Finding runs: a folder that holds run folders rather than checkpoints, and what a wrong path holds.

Trainers write each run into its own folder (``output/<name>/``), so people often point at the
parent. Its runs are offered to pick; a path with no checkpoints at all is described (what is
there, or the nearest folder that exists) instead of answered with "no checkpoints".
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from natsort import natsorted

from .checkpoints import Checkpoint, _candidates

__all__ = ["describe_folder", "find_runs", "select_checkpoints"]

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


def select_checkpoints(
    cks: list[Checkpoint], tokens: list[str] = (), *, every: int = 1, last: int = 0
) -> list[Checkpoint]:
    """Pick checkpoints of a run, in run order.

    Args:
        tokens: epochs (or steps, for files without an epoch), "final", or file names; empty: all.
        every: then every Nth, counted back from the last one (so the last is always kept).
        last: then only the last N (0: no limit).

    Raises:
        ValueError: a token matches no checkpoint (the message lists what the run has), or every/last < 0.
    """
    if every < 1 or last < 0:
        raise ValueError(f"every must be 1 or more and last 0 or more (got every={every}, last={last})")
    chosen = []
    for token in tokens:
        token = str(token)
        if token.isdigit():
            n = int(token)
            hits = [c for c in cks if c.epoch == n] or [c for c in cks if c.epoch is None and c.step == n]
        elif token == "final":
            hits = [c for c in cks if c.pattern == "final"]
        else:
            hits = [c for c in cks if c.name == token or c.path.name == token or c.path.stem == token]
        if not hits:
            known = ", ".join(
                str(c.epoch if c.epoch is not None else c.step if c.step is not None else c.name) for c in cks
            )
            raise ValueError(f"no checkpoint matches {token!r}; this run has: {known}")
        chosen += [c for c in hits if c not in chosen]
    picked = sorted(chosen, key=cks.index) if tokens else list(cks)
    picked = [c for i, c in enumerate(picked) if (len(picked) - 1 - i) % every == 0]
    return picked[-last:] if last else picked
