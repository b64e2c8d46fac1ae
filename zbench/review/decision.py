"""Decisions about a run: star ratings, notes, blind pairwise votes, and the release record.

Everything is kept beside the run, in ``<run_dir>/.zbench/``:

- ``review.json``: ratings, notes and votes (one file, rewritten on every change);
- ``release.json``: the current release decision;
- ``releases.jsonl``: every release decision ever made, one JSON object a line (append only).

Every change is a read-modify-write under a lock per run folder, held across threads (the
page's browser sessions share a process) and across processes (a second server, a script):
a thread lock plus an exclusive ``flock`` on ``.zbench/.lock``. The file is re-read before each
change, so no writer loses another's edits. Writes are atomic and a file that cannot be read is
never overwritten (``records.py``); votes become a ranking in ``ranking.py``. A run folder that
cannot be written (read-only media, another user's files) gives a :class:`DecisionError` that
says so; nothing is half written.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from ..engine import jsonio
from ..engine.checkpoints import Checkpoint, file_hash
from .ranking import rank_votes
from .records import VERSION, DecisionError, Review, Vote, append_line, corrupt, parse_review, read_json, write_atomic

try:
    import fcntl  # POSIX; elsewhere the lock is per process only
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["DecisionStore", "default_user"]

logger = logging.getLogger(__name__)

FOLDER = ".zbench"

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()

MAX_HISTORY_BYTES = 64 * 2**20  # releases.jsonl: a record is a few kB; thousands of releases fit


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


def _unwritable(folder: Path, err: OSError) -> DecisionError:
    return DecisionError(
        f"cannot write zbench's records in {folder} ({type(err).__name__}: {err.strerror or err}): the run folder "
        "is read-only or not yours. Make it writable, or copy the run to a folder you can write, then reload; "
        "nothing was changed."
    )


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

    @contextlib.contextmanager
    def _locked(self):
        """This run's lock, across threads and processes, for one read-modify-write."""
        with self._lock:
            folder = self.run_dir / FOLDER
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise _unwritable(folder, err) from err
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            except OSError as err:
                if isinstance(err, FileNotFoundError):
                    raise
                raise _unwritable(folder, err) from err
            finally:
                os.close(fd)  # closing releases the flock

    def load(self) -> Review:
        """Read the review; an absent file is an empty review.

        Raises:
            DecisionError: review.json exists but cannot be read (it is left untouched).
        """
        data = read_json(self.path)
        return Review() if data is None else parse_review(data, self.path)

    def _update(self, change: Callable[[Review], None]) -> Review:
        """Re-read, change, and atomically rewrite review.json under the run's lock."""
        with self._locked():
            review = self.load()
            change(review)
            data = {"version": VERSION, **asdict(review)}
            write_atomic(self.path, jsonio.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
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

    def set_shortlist(self, name: str, keep: bool | None) -> Review:
        """Keep (True) or drop (False) a checkpoint on the shortlist, or go back to the suggestion (None).

        Returns:
            The review after the change.

        Raises:
            DecisionError: review.json exists but cannot be read.
        """

        def change(review: Review) -> None:
            if keep is None:
                review.shortlist.pop(name, None)
            else:
                review.shortlist[name] = bool(keep)

        return self._update(change)

    def ranking(self, names: Sequence[str]) -> list[dict]:
        """Rank checkpoints by their blind votes (Bradley-Terry), in the order of ``names``.

        Votes naming a checkpoint not in ``names`` are ignored (a file since removed); ratings count too
        (see ``ranking.py`` for how).

        Returns:
            As :func:`zbench.review.ranking.rank_votes`.

        Raises:
            DecisionError: review.json exists but cannot be read.
        """
        review = self.load()
        return rank_votes(names, review.votes, review.ratings)

    def mark_release(
        self,
        checkpoint: Checkpoint,
        *,
        who: str,
        sheet: str | Path | None = None,
        reason: str = "",
        settings: dict | None = None,
        evidence: dict | None = None,
    ) -> dict:
        """Record ``checkpoint`` as the one to release: writes release.json, appends releases.jsonl.

        Args:
            checkpoint: the chosen checkpoint; its file must exist.
            who: who decided (see :func:`default_user`).
            sheet: path of the exported comparison sheet the decision was made on.
            reason: free text.
            settings: render settings of the comparison (prompt, seeds, steps...), stored as given.
            evidence: what the choice rested on (signals, shortlist, recommendation), stored as given.

        Returns:
            The record: checkpoint name, path, hash, epoch, step, who, when (UTC ISO), reason,
            its rating and note, all ratings/notes/hashes, the vote ranking (best first, voted
            checkpoints only), the number of votes, sheet and settings.

        Raises:
            FileNotFoundError: the checkpoint's file is gone.
            DecisionError: the file changed since it was scanned (hash differs), or review.json or
                release.json cannot be read (neither is overwritten).
        """
        path = Path(checkpoint.path)
        if not path.is_file():
            raise FileNotFoundError(f"{checkpoint.name}: {path} does not exist; rescan the run and pick again.")
        current = file_hash(path, memo=False)  # the bytes recorded now, not a digest remembered by size and time
        if checkpoint.hash and checkpoint.hash != current:
            raise DecisionError(
                f"{checkpoint.name} changed on disk since it was scanned (hash {checkpoint.hash}, now {current}); "
                "rescan the run and look at it again before releasing it."
            )
        with self._locked():
            review = self.load()
            self.release()  # a release.json that cannot be read is the user's to fix: never overwritten
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
                "ranking": sorted(
                    (r for r in rank_votes(names, review.votes, review.ratings) if r["rank"]), key=lambda r: r["rank"]
                ),
                "votes": len(review.votes),
                "vote_list": [asdict(v) for v in review.votes],
                "shortlist_edits": dict(review.shortlist),
                "sheet": str(sheet) if sheet is not None else None,
                "settings": settings or {},
                "evidence": evidence or {},
            }
            write_atomic(self.release_path, jsonio.dumps(record, indent=2, ensure_ascii=False) + "\n")
            append_line(self.history_path, jsonio.dumps(record, ensure_ascii=False))
        logger.info("release of %s: %s (%s) by %s", self.run_dir, checkpoint.name, current, who)
        return record

    def history(self) -> list[dict]:
        """Every release record, oldest first; a line torn by a crash mid-write is skipped.

        Raises:
            DecisionError: releases.jsonl exists but cannot be read.
        """
        try:
            data = jsonio.read_regular(self.history_path, max_bytes=MAX_HISTORY_BYTES, what="release history")
        except FileNotFoundError:
            return []
        except (OSError, jsonio.JsonError) as err:
            raise DecisionError(corrupt(self.history_path, f"cannot be read ({type(err).__name__}: {err})")) from err
        records = []
        for line in data.splitlines():
            with contextlib.suppress(jsonio.JsonError):
                record = _release_record(jsonio.parse_json(line, where=str(self.history_path)))
                if record is not None:
                    records.append(record)
        return records

    def release(self) -> dict | None:
        """The current release record, or None when none was made.

        Raises:
            DecisionError: release.json exists but cannot be read.
        """
        data = read_json(self.release_path)
        if data is None:
            return None
        record = _release_record(data)
        if record is None:
            raise DecisionError(
                corrupt(self.release_path, 'is not a release record (an object naming its "checkpoint")')
            )
        return record


# The fields of a release record that readers show, and the type each must have to be shown.
_RELEASE_TEXT = ("checkpoint", "path", "hash", "who", "when", "reason", "note", "sheet")
_RELEASE_NUMBERS = ("epoch", "step", "rating", "votes")


def _release_record(data: object) -> dict | None:
    """A release record read back, or None when it is not one: an object whose "checkpoint" is a name.

    The file may have been edited by hand: a shown field of the wrong type is dropped (readers use ``.get``),
    never passed on to a page or a PDF cover that formats it as text.
    """
    if not isinstance(data, dict) or not isinstance(data.get("checkpoint"), str) or not data["checkpoint"]:
        return None
    record = dict(data)
    for key in _RELEASE_TEXT:
        if record.get(key) is not None and not isinstance(record[key], str):
            del record[key]
    for key in _RELEASE_NUMBERS:
        if record.get(key) is not None and (isinstance(record[key], bool) or not isinstance(record[key], int)):
            del record[key]
    return record
