"""What a checkpoint's file name says about its place in the run, and the order a person counts a run in.

Every trainer's naming scheme (kohya ``-000010``, ai-toolkit ``_000000500``, diffusers
``checkpoint-500/``, DiffSynth ``epoch-3``, OneTrainer ``-save-<step>-<epoch>-<epoch_step>``,
hand-named ``jimeng_20``) gives an epoch or a step; a run is ordered by step when every numbered
file has one, else by epoch, else naturally by name (9 before 10), with an un-numbered final last.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TypeVar

from natsort import natsort_keygen

__all__ = ["NameInfo", "parse_name", "sort_run"]

_natkey = natsort_keygen()

# (regex on the file stem, what the numbers mean). First match wins; order matters.
_NAME_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"-save-(?P<step>\d+)-(?P<epoch>\d+)-(?P<epoch_step>\d+)$"), "onetrainer"),
    (re.compile(r"^checkpoint-(?P<step>\d+)$"), "diffusers"),
    (re.compile(r"-step(?P<step>\d+)$"), "kohya-step"),
    (re.compile(r"^(epoch)-(?P<epoch>\d+)$"), "diffsynth"),
    (re.compile(r"^(step)-(?P<step>\d+)$"), "diffsynth-step"),
    (re.compile(r"_(?P<step>\d{9})$"), "ai-toolkit"),
    (re.compile(r"-(?P<epoch>\d{6})$"), "kohya"),
    (re.compile(r"(?:^|[-_ .])(?:e|ep|epoch)[-_]?(?P<epoch>\d+)$", re.I), "epoch"),
    (re.compile(r"(?:^|[-_ .])(?:s|step|steps)[-_]?(?P<step>\d+)$", re.I), "step"),
    (re.compile(r"(?P<epoch>\d+)$"), "number"),
]


@dataclass(frozen=True)
class NameInfo:
    """What a file name says about its place in the run."""

    run: str  # the name with the counter removed: "jimeng" for "jimeng_20"
    epoch: int | None
    step: int | None
    pattern: str  # which naming scheme matched, or "final" for an un-numbered file


def parse_name(stem: str) -> NameInfo:
    """Read epoch and step from a checkpoint's file stem (or its folder name for diffusers).

    >>> parse_name("name-000010")
    NameInfo(run='name', epoch=10, step=None, pattern='kohya')
    """
    for regex, pattern in _NAME_PATTERNS:
        m = regex.search(stem)
        if m is None:
            continue
        groups = m.groupdict()
        run = stem[: m.start()].rstrip("-_ .") or stem
        epoch = int(groups["epoch"]) if groups.get("epoch") else None
        step = int(groups["step"]) if groups.get("step") else None
        return NameInfo(run=run, epoch=epoch, step=step, pattern=pattern)
    return NameInfo(run=stem, epoch=None, step=None, pattern="final")


T = TypeVar("T")  # a Checkpoint: anything with name, epoch, step and pattern


def sort_run(cks: list[T]) -> list[T]:
    """Sort checkpoints in place as a person counts them, and return them.

    By step when every numbered file has one, else by epoch, else naturally by name; a
    file with no number (a trainer's final save) comes last.
    """
    numbered = [c for c in cks if c.pattern != "final" or c.epoch is not None or c.step is not None]
    by = "step" if numbered and all(c.step is not None for c in numbered) else "epoch"
    if by == "epoch" and not all(c.epoch is not None for c in numbered):
        by = "name"
    cks.sort(key=lambda c: _sort_key(c, by) if by != "name" else (c.pattern == "final", _natkey(c.name)))
    return cks


def _sort_key(ck, by: str):
    number = ck.step if by == "step" else ck.epoch
    final = ck.pattern == "final"
    return (number if number is not None else math.inf, final, _natkey(ck.name))
