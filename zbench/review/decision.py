"""Decisions about a run: star ratings, notes, blind pairwise votes, and the release record.

Everything is kept beside the run, in ``<run_dir>/.zbench/``:

- ``review.json``: ratings, notes and votes (one file, rewritten on every change);
- ``release.json``: the current release decision;
- ``releases.jsonl``: every release decision ever made, one JSON object a line (append only).

Every browser session of the page shares one process, so every change is a read-modify-write
under a process-wide lock per run folder: the file is re-read before each change, and two
sessions never lose each other's edits. Writes are atomic (temp file in the same folder,
fsync, ``os.replace``), so a crash leaves the old file or the new one, never half of one.
A file that cannot be read is never overwritten: :class:`DecisionError` says which and what to do.
"""

from __future__ import annotations

import contextlib
import getpass
import itertools
import json
import logging
import os
import random
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..engine.checkpoints import Checkpoint, file_hash

__all__ = ["DecisionError", "DecisionStore", "Review", "Vote", "default_user", "next_blind_pair"]

logger = logging.getLogger(__name__)

FOLDER = ".zbench"
VERSION = 1  # of review.json; a newer file is refused rather than rewritten without its new fields
PRIOR_GAMES = 1.0  # virtual games each checkpoint plays (and half wins) against a strength-1 reference
MM_ITERATIONS = 200  # Bradley-Terry MM steps; each is O(pairs), so this is instant for any real run

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


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


def default_user() -> str:
    """The login name for a release record's ``who``, or "unknown" where the OS has none."""
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # containers without a passwd entry, no USER set
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _lock_for(folder: Path) -> threading.Lock:
    key = folder.resolve()
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def _write_atomic(path: Path, text: str) -> None:
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


def _read_json(path: Path) -> object | None:
    """The JSON in ``path``, or None when it does not exist.

    Raises:
        DecisionError: unreadable or not JSON.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise DecisionError(_corrupt(path, f"cannot be read ({type(err).__name__}: {err})")) from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DecisionError(_corrupt(path, f"is not valid JSON ({err})")) from err


def _corrupt(path: Path, problem: str) -> str:
    return (
        f"{path} {problem}; zbench will not overwrite it. Move it aside (e.g. rename it to "
        f"{path.name}.bad) to start afresh, or fix it by hand, then reload."
    )


def _parse_review(data: object, path: Path) -> Review:
    """A :class:`Review` from the JSON of review.json, checking every field's type."""
    if not isinstance(data, dict):
        raise DecisionError(_corrupt(path, f"holds a JSON {type(data).__name__}, not an object"))
    version = data.get("version", VERSION)
    if not isinstance(version, int) or version > VERSION:
        raise DecisionError(
            f"{path} has version {version!r}, newer than this zbench reads ({VERSION}); zbench will not "
            "overwrite it. Update zbench, or move it aside to start afresh."
        )

    def table(key: str, kind: type, check: Callable[[object], bool] = lambda v: True) -> dict:
        value = data.get(key, {})
        good = isinstance(value, dict) and all(
            isinstance(v, kind) and not isinstance(v, bool) and check(v) for v in value.values()
        )
        if not good:
            raise DecisionError(_corrupt(path, f"has a malformed {key!r} (expected name → {kind.__name__})"))
        return dict(value)

    ratings = table("ratings", int, lambda v: 1 <= v <= 5)
    notes = table("notes", str)
    hashes = table("hashes", str)
    raw_votes = data.get("votes", [])
    try:
        if not isinstance(raw_votes, list):
            raise TypeError("not a list")
        votes = [
            Vote(str(v["winner"]), str(v["loser"]), str(v["prompt"]), int(v["seed"]), str(v["when"])) for v in raw_votes
        ]
    except (TypeError, KeyError, ValueError) as err:
        raise DecisionError(_corrupt(path, f"has malformed 'votes' ({type(err).__name__}: {err})")) from err
    return Review(ratings=ratings, notes=notes, hashes=hashes, votes=votes)


class DecisionStore:
    """Ratings, notes, votes and the release record of one run, kept in ``<run_dir>/.zbench/``.

    Cheap to create (reads nothing until asked), so a page can make one per call; instances
    for the same folder share one lock. Thread-safe.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir).expanduser()
        self._lock = _lock_for(self.run_dir)

    @property
    def path(self) -> Path:
        """``review.json``: ratings, notes and votes."""
        return self.run_dir / FOLDER / "review.json"

    @property
    def release_path(self) -> Path:
        """``release.json``: the current release record (history in ``releases.jsonl`` beside it)."""
        return self.run_dir / FOLDER / "release.json"

    @property
    def history_path(self) -> Path:
        """``releases.jsonl``: every release record, oldest first."""
        return self.run_dir / FOLDER / "releases.jsonl"

    def load(self) -> Review:
        """Read the review; an absent file is an empty review.

        Raises:
            DecisionError: review.json exists but cannot be read (it is left untouched).
        """
        data = _read_json(self.path)
        return Review() if data is None else _parse_review(data, self.path)

    def _update(self, change: Callable[[Review], None]) -> Review:
        """Re-read, change, and atomically rewrite review.json under the run's lock."""
        with self._lock:
            review = self.load()
            change(review)
            data = {"version": VERSION, **asdict(review)}
            _write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            return review

    @staticmethod
    def _record_hash(review: Review, name: str, hash: str) -> None:
        if hash:
            review.hashes[name] = hash
        elif name not in review.ratings and name not in review.notes:
            review.hashes.pop(name, None)

    def set_rating(self, name: str, stars: int | None, *, hash: str = "") -> Review:
        """Rate a checkpoint 1-5 stars, or clear its rating with None. Writes review.json.

        Args:
            name: checkpoint name (``Checkpoint.name``).
            stars: 1-5, or None to clear.
            hash: the file's hash (``Checkpoint.hash``), recorded so a replaced file shows as stale;
                "" keeps the hash recorded before.

        Returns:
            The review after the change (including other sessions' changes).

        Raises:
            ValueError: ``stars`` is not 1-5 or None.
            DecisionError: review.json exists but cannot be read.
        """
        if stars is not None and (not isinstance(stars, int) or isinstance(stars, bool) or not 1 <= stars <= 5):
            raise ValueError(f"rating of {name} should be 1-5 stars (None clears it), got {stars!r}")

        def change(review: Review) -> None:
            if stars is None:
                review.ratings.pop(name, None)
            else:
                review.ratings[name] = stars
            self._record_hash(review, name, hash)

        return self._update(change)

    def set_note(self, name: str, text: str, *, hash: str = "") -> Review:
        """Set a checkpoint's note; "" (or only whitespace) clears it. Writes review.json.

        Args:
            name: checkpoint name.
            text: the note.
            hash: as in :meth:`set_rating`.

        Returns:
            The review after the change.

        Raises:
            DecisionError: review.json exists but cannot be read.
        """

        def change(review: Review) -> None:
            if text.strip():
                review.notes[name] = text
            else:
                review.notes.pop(name, None)
            self._record_hash(review, name, hash)

        return self._update(change)

    def add_vote(self, winner: str, loser: str, *, prompt: str, seed: int) -> Review:
        """Record that ``winner``'s image was preferred over ``loser``'s. Appends to review.json.

        Returns:
            The review after the change.

        Raises:
            ValueError: winner and loser are the same checkpoint.
            DecisionError: review.json exists but cannot be read.
        """
        if winner == loser:
            raise ValueError(f"a vote needs two different checkpoints, got {winner!r} twice")
        vote = Vote(winner=winner, loser=loser, prompt=prompt, seed=int(seed), when=_now())
        return self._update(lambda review: review.votes.append(vote))

    def ranking(self, names: Sequence[str]) -> list[dict]:
        """Rank checkpoints by their blind votes (Bradley-Terry), in the order of ``names``.

        Votes naming a checkpoint not in ``names`` are ignored (a file since removed).

        Returns:
            One dict per name: ``name``, ``wins``, ``losses``, ``score`` (Bradley-Terry strength;
            1.0 = even odds against a neutral reference, 2.0 = twice as likely to win) and
            ``rank`` (1 = best, ties share a rank). ``score`` and ``rank`` are None for a name
            without votes.

        Raises:
            DecisionError: review.json exists but cannot be read.
        """
        return _ranking(names, self.load().votes)

    def mark_release(
        self,
        checkpoint: Checkpoint,
        *,
        who: str,
        sheet: str | Path | None = None,
        reason: str = "",
        settings: dict | None = None,
    ) -> dict:
        """Record ``checkpoint`` as the one to release: writes release.json, appends releases.jsonl.

        Args:
            checkpoint: the chosen checkpoint; its file must exist.
            who: who decided (see :func:`default_user`).
            sheet: path of the exported comparison sheet the decision was made on.
            reason: free text.
            settings: render settings of the comparison (prompt, seeds, steps...), stored as given.

        Returns:
            The record: checkpoint name, path, hash, epoch, step, who, when (UTC ISO), reason,
            its rating and note, all ratings/notes/hashes, the vote ranking (best first, voted
            checkpoints only), the number of votes, sheet and settings.

        Raises:
            FileNotFoundError: the checkpoint's file is gone.
            DecisionError: the file changed since it was scanned (hash differs), or review.json
                cannot be read.
        """
        path = Path(checkpoint.path)
        if not path.is_file():
            raise FileNotFoundError(f"{checkpoint.name}: {path} does not exist; rescan the run and pick again.")
        current = file_hash(path)
        if checkpoint.hash and checkpoint.hash != current:
            raise DecisionError(
                f"{checkpoint.name} changed on disk since it was scanned (hash {checkpoint.hash}, now {current}); "
                "rescan the run and look at it again before releasing it."
            )
        with self._lock:
            review = self.load()
            names = sorted({*review.ratings, *review.notes, *(n for v in review.votes for n in (v.winner, v.loser))})
            record = {
                "checkpoint": checkpoint.name,
                "path": str(path.resolve()),
                "hash": current,
                "epoch": checkpoint.epoch,
                "step": checkpoint.step,
                "who": who,
                "when": _now(),
                "reason": reason,
                "rating": review.ratings.get(checkpoint.name),
                "note": review.notes.get(checkpoint.name, ""),
                "ratings": review.ratings,
                "notes": review.notes,
                "hashes": review.hashes,
                "ranking": sorted((r for r in _ranking(names, review.votes) if r["rank"]), key=lambda r: r["rank"]),
                "votes": len(review.votes),
                "sheet": str(sheet) if sheet is not None else None,
                "settings": settings or {},
            }
            _write_atomic(self.release_path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
            with self.history_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
        logger.info("release of %s: %s (%s) by %s", self.run_dir, checkpoint.name, current, who)
        return record

    def release(self) -> dict | None:
        """The current release record, or None when none was made.

        Raises:
            DecisionError: release.json exists but cannot be read.
        """
        data = _read_json(self.release_path)
        if data is not None and not isinstance(data, dict):
            raise DecisionError(_corrupt(self.release_path, f"holds a JSON {type(data).__name__}, not an object"))
        return data


def _ranking(names: Sequence[str], votes: Sequence[Vote]) -> list[dict]:
    """Bradley-Terry strengths by minorisation-maximisation (Hunter 2004).

    Each checkpoint also plays ``PRIOR_GAMES`` virtual games against a reference of strength 1,
    winning half: this keeps an undefeated checkpoint finite and anchors the scale.
    """
    known = set(names)
    counted = [v for v in votes if v.winner in known and v.loser in known and v.winner != v.loser]
    wins = Counter(v.winner for v in counted)
    losses = Counter(v.loser for v in counted)
    games = Counter(frozenset((v.winner, v.loser)) for v in counted)
    players = sorted(set(wins) | set(losses))
    opponents: dict[str, list[tuple[str, int]]] = {p: [] for p in players}
    for pair, n in games.items():
        a, b = sorted(pair)
        opponents[a].append((b, n))
        opponents[b].append((a, n))
    strength = dict.fromkeys(players, 1.0)
    for _ in range(MM_ITERATIONS):
        new = {}
        for i in players:
            s = strength[i]
            denom = PRIOR_GAMES / (s + 1.0) + sum(n / (s + strength[j]) for j, n in opponents[i])
            new[i] = (wins[i] + PRIOR_GAMES / 2) / denom
        converged = all(abs(new[p] - strength[p]) <= 1e-12 * strength[p] for p in players)
        strength = new
        if converged:
            break
    ordered = sorted(strength.values(), reverse=True)
    rows = []
    for name in names:
        score = strength.get(name)
        # Competition ranking: ties (within rounding) share the better rank.
        rank = None if score is None else 1 + sum(s > score * (1 + 1e-9) for s in ordered)
        rows.append({"name": name, "wins": wins[name], "losses": losses[name], "score": score, "rank": rank})
    return rows


def next_blind_pair(names: Sequence[str], votes: Sequence[Vote], rng: random.Random) -> tuple[str, str] | None:
    """The next pair to show blind: one compared least so far, in random order.

    Every pair is shown once before any is shown twice. Ties are broken by ``rng``, and the
    order within the pair is random, so the left/right position reveals nothing.

    Args:
        names: checkpoints to compare (duplicates ignored).
        votes: votes so far; votes naming checkpoints outside ``names`` are ignored.
        rng: the random source (seed it for a reproducible sequence).

    Returns:
        (left, right), or None when fewer than two names are given.
    """
    unique = list(dict.fromkeys(names))
    if len(unique) < 2:
        return None
    seen = Counter(frozenset((v.winner, v.loser)) for v in votes)
    pairs = list(itertools.combinations(unique, 2))
    fewest = min(seen[frozenset(p)] for p in pairs)
    left, right = rng.choice([p for p in pairs if seen[frozenset(p)] == fewest])
    return (left, right) if rng.random() < 0.5 else (right, left)
