"""The records of a run's review and their files: votes, ratings and notes, read strictly, written atomically.

``review.json`` is parsed field by field: a file with a wrong type anywhere, or from a newer
zbench, is refused with :class:`DecisionError` rather than half-read and then overwritten.
Writes go to a temporary file in the same folder, are fsynced, then replace the old file,
so a crash leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..engine import jsonio

__all__ = [
    "VERSION",
    "DecisionError",
    "Review",
    "Vote",
    "append_line",
    "corrupt",
    "parse_review",
    "read_json",
    "write_atomic",
]

# Of review.json (2 added "shortlist"); a newer file is refused rather than rewritten without its new fields.
VERSION = 2
MAX_RECORD_BYTES = 16 * 2**20  # a review of 30 checkpoints with 1000 votes and long notes is < 1 MB


class DecisionError(ValueError):
    """A review or release file that cannot be read; the message names the file and the fix."""


@dataclass
class Vote:
    """One blind pairwise comparison: which checkpoint's image was preferred."""

    winner: str  # checkpoint name
    loser: str
    prompt: str
    seed: int
    when: str  # ISO 8601, UTC


@dataclass
class Review:
    """Ratings, notes and votes of one run, keyed by checkpoint name (``Checkpoint.name``)."""

    ratings: dict[str, int] = field(default_factory=dict)  # 1-5 stars
    notes: dict[str, str] = field(default_factory=dict)
    # The file hash each rating/note was given for: a replaced file keeps its name, not its hash.
    hashes: dict[str, str] = field(default_factory=dict)
    votes: list[Vote] = field(default_factory=list)
    # The user's edits of the suggested shortlist: True = kept (added), False = dropped.
    shortlist: dict[str, bool] = field(default_factory=dict)

    def stale(self, name: str, hash: str) -> bool:
        """Whether the rating/note of ``name`` was given for another version of the file.

        Args:
            name: checkpoint name.
            hash: the file's current hash (``Checkpoint.hash``).

        Returns:
            True when a hash was recorded and differs from ``hash``; False when they match or
            either is unknown.
        """
        recorded = self.hashes.get(name, "")
        return bool(recorded and hash and recorded != hash)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def append_line(path: Path, line: str) -> None:
    """Append one line (a JSON record) durably. A line torn by an earlier crash is ended first,
    so it cannot swallow this one: readers skip the torn line and read every whole one."""
    with path.open("a+b") as f:
        f.seek(0, os.SEEK_END)
        torn = False
        if f.tell():
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
        f.write((("\n" if torn else "") + line + "\n").encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def read_json(path: Path) -> object | None:
    """The JSON in ``path``, or None when it does not exist; bounded in size and nesting (``engine.jsonio``).

    Raises:
        DecisionError: unreadable, not a regular file, too big, too deeply nested, or not JSON.
    """
    try:
        return jsonio.read_json(path, max_bytes=MAX_RECORD_BYTES)
    except FileNotFoundError:
        return None
    except PermissionError as err:
        raise DecisionError(
            f"{path} cannot be read (permission denied): give yourself read access to it, then reload"
        ) from err
    except jsonio.JsonError as err:
        raise DecisionError(corrupt(path, str(err).removeprefix(f"{path} ").removeprefix(f"file {path} "))) from err
    except OSError as err:
        raise DecisionError(corrupt(path, f"cannot be read ({type(err).__name__}: {err})")) from err


def _vote(data: object) -> Vote:
    """One vote of review.json: names, prompt and time as text, the seed a whole number (a TypeError otherwise)."""
    if not isinstance(data, dict):
        raise TypeError(f"a vote is an object, got {type(data).__name__}")
    for key in ("winner", "loser", "prompt", "when"):
        if not isinstance(data[key], str):
            raise TypeError(f"a vote's {key!r} is text, got {type(data[key]).__name__}")
    if isinstance(data["seed"], bool) or not isinstance(data["seed"], int):
        raise TypeError(f"a vote's 'seed' is a whole number, got {data['seed']!r}")
    return Vote(data["winner"], data["loser"], data["prompt"], data["seed"], data["when"])


def corrupt(path: Path, problem: str) -> str:
    return (
        f"{path} {problem}; zbench will not overwrite it. Move it aside (e.g. rename it to "
        f"{path.name}.bad) to start afresh, or fix it by hand, then reload."
    )


def parse_review(data: object, path: Path) -> Review:
    """A :class:`Review` from the JSON of review.json, checking every field's type."""
    if not isinstance(data, dict):
        raise DecisionError(corrupt(path, f"holds a JSON {type(data).__name__}, not an object"))
    version = data.get("version", VERSION)
    if not isinstance(version, int) or version > VERSION:
        raise DecisionError(
            f"{path} has version {version!r}, newer than this zbench reads ({VERSION}); zbench will not "
            "overwrite it. Update zbench, or move it aside to start afresh."
        )

    def table(key: str, kind: type, check: Callable[[object], bool] = lambda v: True) -> dict:
        value = data.get(key, {})
        good = isinstance(value, dict) and all(
            isinstance(v, kind) and (kind is bool or not isinstance(v, bool)) and check(v) for v in value.values()
        )
        if not good:
            raise DecisionError(corrupt(path, f"has a malformed {key!r} (expected name → {kind.__name__})"))
        return dict(value)

    ratings = table("ratings", int, lambda v: 1 <= v <= 5)
    notes = table("notes", str)
    hashes = table("hashes", str)
    shortlist = table("shortlist", bool) if "shortlist" in data else {}
    raw_votes = data.get("votes", [])
    try:
        if not isinstance(raw_votes, list):
            raise TypeError("not a list")
        votes = [_vote(v) for v in raw_votes]
    except (TypeError, KeyError, ValueError) as err:
        raise DecisionError(corrupt(path, f"has malformed 'votes' ({type(err).__name__}: {err})")) from err
    return Review(ratings=ratings, notes=notes, hashes=hashes, votes=votes, shortlist=shortlist)
