"""Signals: what each checkpoint's renders say without a person, computed from a grid's images.

Built in (see ``scorers.py`` for the measures):

- **drift**: distance from the base render of the same prompt and seed. It rises as the LoRA's style
  emerges and should level off; a checkpoint that barely drifts has not learned yet.
- **change**: distance from the previous checkpoint's render. Large while training moves, small once it settles.
- **diversity**: distance between one checkpoint's images for different seeds (same prompt and scale). A drop
  means the LoRA draws the same picture whatever the seed: overfitting.
- **quality**: BRISQUE, a no-reference quality score (lower is better).
- **adherence**: CLIP text-image score, when ``[signals] clip`` names a local CLIP model.
- **likeness**: similarity to the closest training image, when ``[signals] dataset`` names the folder: how
  well it learned the subject; near 1 it may be copying a training image.
- one signal per ``[signals] scorers`` entry: a function of (image, prompt) of the user's own.

Every value is cached by the pixels it was computed from (a digest of the image) in ``signals.sqlite`` beside
the image cache, so a grid shown again, the page and ``zbench suggest`` never compute one twice.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import logging
import math
import numbers
import statistics
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image

from ..engine.plan import CellResult
from .scorers import (
    DatasetIndex,
    ScorerError,
    clip_scorer,
    load_scorer,
    quality_missing,
    quality_score,
    ssim_distance,
    thumbnail_feature,
)
from .signal_cache import NotKept, SignalCache, image_digest

__all__ = ["BUILTIN", "NotKept", "Signal", "SignalCache", "SignalReport", "Signals", "compute_signals", "image_digest"]

logger = logging.getLogger(__name__)

BASE = "base"  # the base column's name in a report


@dataclass(frozen=True)
class Signal:
    """One signal: its key, a short label for a strip, which direction is good, and what it measures."""

    key: str
    label: str
    good: Literal["high", "low"]
    means: str
    version: str = ""  # part of the cache key: a scorer of your own that changes is asked again


DRIFT = Signal("drift", "drift", "high", "how much the LoRA changes the base render (1 − SSIM); rises as the style "
               "emerges, then should level off")  # fmt: skip
CHANGE = Signal("change", "change", "low", "how much the render changed since the previous checkpoint (1 − SSIM); "
                "small once training has settled")  # fmt: skip
DIVERSITY = Signal("diversity", "diversity", "high", "how different the images for different seeds are (1 − SSIM); "
                   "a drop means the same picture whatever the seed: overfitting")  # fmt: skip
QUALITY = Signal("quality", "BRISQUE", "low", "no-reference image quality (BRISQUE, 0 best to ~100 worst): noise, "
                 "blur and blocking", "brisque 0.2.0")  # fmt: skip
ADHERENCE = Signal("adherence", "CLIP", "high", "prompt adherence: CLIP text-image score (100 × cosine)")
LIKENESS = Signal("likeness", "likeness", "high", "similarity to the closest training image; near 1 it may be "
                  "copying one")  # fmt: skip
BUILTIN = (DRIFT, CHANGE, DIVERSITY, QUALITY, ADHERENCE, LIKENESS)


@dataclass
class Signals:
    """Which signals to compute, as a config asks for them (``[signals]``); see :meth:`from_config`."""

    quality: bool = True
    clip: str | None = None  # a local CLIP folder or a cached hub id
    dataset: Path | None = None
    scorers: tuple[str, ...] = ()
    root: Path | None = None  # the config's folder: scorers beside it import, scorer files are relative to it
    problems: list[str] = field(default_factory=list)  # what could not be set up, said once
    # (scorer label, what went wrong) -> the columns it went wrong on, said once per scorer and problem
    trouble: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config) -> Signals:
        return cls(
            quality=getattr(config, "signal_quality", True),
            clip=getattr(config, "signal_clip", None) or None,
            dataset=getattr(config, "signal_dataset", None),
            scorers=tuple(getattr(config, "signal_scorers", ()) or ()),
            root=config.source.parent if getattr(config, "source", None) is not None else None,
        )

    def extra(self) -> list[tuple[Signal, Callable[[Image.Image, str], float | None]]]:
        """The per-image signals beyond the built-in distances: (signal, scorer); problems are noted, not raised."""
        out = []
        if self.quality and (missing := quality_missing()):
            self._note(missing)
        elif self.quality:
            out.append((QUALITY, lambda image, prompt: quality_score(image)))
        clip = None
        if self.clip:
            try:
                clip = clip_scorer(self.clip)
                out.append((dataclasses.replace(ADHERENCE, version=self.clip), clip.score))
            except ScorerError as err:
                self._note(str(err))
        if self.dataset is not None:
            try:
                index = _dataset(str(self.dataset), self.clip if clip is not None else None)
                if index.skipped:
                    self._note(f"{len(index.skipped)} training images were skipped ({index.skipped[0]})")
                out.append((_likeness(index), lambda image, prompt, index=index: index.likeness(image)))
            except ScorerError as err:
                self._note(str(err))
        for spec in self.scorers:
            try:
                fn = load_scorer(spec, self.root)
            except ScorerError as err:
                self._note(str(err))
                continue
            label = str(getattr(fn, "zbench_label", spec.rpartition(":")[2]))
            if any(s.label == label for s, _ in out):  # two scorers named alike: the second by its full name
                label = spec
            version = str(getattr(fn, "zbench_version", "") or _source_time(fn))
            good = "low" if getattr(fn, "zbench_good", "high") == "low" else "high"
            means = str(getattr(fn, "zbench_means", f"your scorer {spec}"))
            out.append((Signal(f"scorer:{spec}", label, good, means, version), fn))
        return out

    def _note(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)
            logger.warning("signal left out: %s", problem)

    def _trouble(self, label: str, what: str, column: str) -> None:
        columns = self.trouble.setdefault((label, what), [])
        if column not in columns:
            columns.append(column)

    def _said(self, among: int) -> None:
        """The scorers' troubles as one problem each: which columns (of ``among``) they hit, and what to do."""
        for (label, what), columns in self.trouble.items():
            where = ", ".join(columns[:3]) + (f" and {len(columns) - 3} more" if len(columns) > 3 else "")
            share = "every column" if len(columns) >= among else f"{len(columns)} of {among} columns ({where})"
            self._note(f"{label} {what} on {share}: its values there are left blank; fix the scorer (a number or "
                       "None per image) and open the grid again")  # fmt: skip
        self.trouble.clear()


def _likeness(index: DatasetIndex) -> Signal:
    how = "CLIP image embeddings" if index.kind != "thumbnail" else "24×24 thumbnails (layout and colour)"
    return Signal(f"likeness:{index.kind}", LIKENESS.label, "high", f"{LIKENESS.means} ({how}, {index.count} images)")


def _dataset(folder: str, clip: str | None) -> DatasetIndex:
    try:
        changed = Path(folder).stat().st_mtime_ns  # images added or removed: read the folder again
    except OSError:
        changed = None
    key = (folder, clip, changed)
    with _DATASETS_LOCK:
        if key in _DATASETS:
            return _DATASETS[key]
    if clip is not None:
        index = DatasetIndex(folder, clip_scorer(clip).image_embedding, kind=f"clip {clip}")
    else:
        index = DatasetIndex(folder, thumbnail_feature, kind="thumbnail")
    with _DATASETS_LOCK:
        _DATASETS[key] = index
    return index


_DATASETS: dict[tuple[str, str | None, int | None], DatasetIndex] = {}
_DATASETS_LOCK = threading.Lock()


@dataclass
class SignalReport:
    """Signals per column of a grid: the base (as "base") and each checkpoint, in grid order."""

    names: list[str]
    signals: list[Signal]
    values: dict[str, dict[str, float | None]]  # name -> signal key -> mean over its images (None: no value)
    epochs: dict[str, int | None]
    problems: list[str]
    images: int  # images the report was computed from
    seeds: int  # distinct seeds per (prompt, scale): diversity needs two
    errors: dict[str, str] = field(default_factory=dict)  # name -> why its renders failed (none rendered)

    def series(self, key: str) -> dict[str, float | None]:
        return {n: self.values.get(n, {}).get(key) for n in self.names}

    def signal(self, key: str) -> Signal | None:
        return next((s for s in self.signals if s.key == key), None)

    def tones(self, key: str, *, among: Sequence[str] | None = None) -> dict[str, float | None]:
        """Each checkpoint's value as 0 (worst) to 1 (best) of the run, or of ``among``, for a colour scale or a
        health score; None without a value. The base is never scaled (it is the reference)."""
        signal = self.signal(key)
        names = list(self.names if among is None else among)
        values = {n: v for n, v in self.series(key).items() if v is not None and n != BASE and n in names}
        if signal is None or not values:
            return dict.fromkeys(names)
        low, high = min(values.values()), max(values.values())
        span = high - low
        out: dict[str, float | None] = {}
        for n in names:
            v = values.get(n)
            if v is None:
                out[n] = None
            else:
                t = 0.5 if span <= 1e-12 else (v - low) / span
                out[n] = t if signal.good == "high" else 1 - t
        return out

    def strip(self) -> dict:
        """The strip under the grid's column headers, as the grid component reads it (the page's and the offline
        viewer's): the signals, and per checkpoint name each one's [value, tone] (tone 0 worst .. 1 best)."""
        tones = {s.key: self.tones(s.key) for s in self.signals}
        return {
            "signals": [{"key": s.key, "label": s.label, "good": s.good, "means": s.means} for s in self.signals],
            "values": {
                n: [[self.values.get(n, {}).get(s.key), tones[s.key].get(n)] for s in self.signals] for n in self.names
            },
        }

    def to_json(self) -> dict:
        return {
            "signals": [{"key": s.key, "label": s.label, "good": s.good, "means": s.means} for s in self.signals],
            "values": {n: self.values.get(n, {}) for n in self.names},
            "problems": list(self.problems),
            "images": self.images,
            "seeds": self.seeds,
        }


def compute_signals(
    results: Sequence[CellResult],
    *,
    signals: Signals | None = None,
    cache: SignalCache | None = None,
) -> SignalReport:
    """Signals of each column of a rendered grid (see the module's docstring), as means over its rows.

    Args:
        results: a grid's cells (any rows: prompts × seeds × scales; error and pending cells are skipped).
        signals: which per-image signals to add (default: quality only).
        cache: where values are kept (default: memory, for this call).

    Returns:
        A :class:`SignalReport`; values are None where a signal could not be computed (diversity with one
        seed, drift without a base column), and ``problems`` says why in words.
    """
    signals = signals or Signals()
    cache = cache or SignalCache()
    ok = [r for r in results if r.image is not None and r.status == "ok"]
    columns: dict[int, str] = {}
    epochs: dict[str, int | None] = {}
    for r in sorted(results, key=lambda r: r.cell.col):
        columns.setdefault(r.cell.col, BASE if r.cell.checkpoint is None else r.cell.name)
        epochs.setdefault(columns[r.cell.col], None if r.cell.checkpoint is None else r.cell.checkpoint.epoch)
    names = [columns[c] for c in sorted(columns)]
    digests = {id(r): image_digest(r.image) for r in ok}
    # Each column's images by (prompt, seed, scale); the base ignores the scale.
    by: dict[str, dict[tuple[str, int, float], CellResult]] = {n: {} for n in names}
    for r in ok:
        by[columns[r.cell.col]][(r.cell.prompt, r.cell.seed, r.cell.scale)] = r
    base = {(p, s): r for (p, s, _), r in by.get(BASE, {}).items()}

    def distance(x: CellResult, y: CellResult) -> float | None:
        a, b = sorted((digests[id(x)], digests[id(y)]))
        if a == b:
            return 0.0
        return cache.value(f"ssim1:{a}:{b}", lambda: ssim_distance(x.image, y.image))

    extra = signals.extra()
    values: dict[str, dict[str, float | None]] = {}
    seeds_per = 0
    previous: dict[tuple[str, int, float], CellResult] | None = None
    for name in names:
        mine = by[name]
        row: dict[str, float | None] = {}
        if name != BASE:
            row["drift"] = _mean(distance(r, base[(p, s)]) for (p, s, _), r in mine.items() if (p, s) in base)
            row["change"] = None
            if previous is not None:
                row["change"] = _mean(distance(r, previous[k]) for k, r in mine.items() if k in previous)
            previous = mine
        seeds: dict[tuple[str, float], list[CellResult]] = {}  # the same prompt and scale, another seed
        for (p, _, sc), r in mine.items():
            seeds.setdefault((p, sc), []).append(r)
        seeds_per = max([seeds_per, *map(len, seeds.values())])
        row["diversity"] = _mean(distance(x, y) for same in seeds.values() for x, y in itertools.combinations(same, 2))
        for signal, fn in extra:
            row[signal.key] = _mean(_score(cache, signal, fn, r, digests[id(r)], signals) for r in mine.values())
        values[name] = row
    signals._said(sum(1 for n in names if by[n]))
    # A signal of its own with no value anywhere is left out of the strip and tables (a problem says why).
    kept = [(s, fn) for s, fn in extra if any(values[n].get(s.key) is not None for n in names)]
    for s, _ in extra:
        if (s, _) not in kept and not any(p.startswith(f"{s.label} ") for p in signals.problems):
            signals._note(f"{s.label} gave no value (None) for any image: left out")
    extra = kept
    problems = list(signals.problems)
    if not base:
        problems.append("drift needs the base column (LoRA off): turn it on to see how far each checkpoint moves")
    if seeds_per < 2:
        problems.append("diversity needs two or more seeds per prompt: add seeds (e.g. 1-4) to see it")
    shown = [DRIFT, CHANGE, DIVERSITY, *(s for s, _ in extra)]
    # A column none of whose cells rendered: the first error says why (a NaN checkpoint, an out-of-memory).
    failed = {}
    for r in results:
        name = columns[r.cell.col]
        if r.status == "error" and r.error and not by[name]:
            failed.setdefault(name, r.error)
    return SignalReport(names, shown, values, epochs, problems, len(ok), seeds_per, failed)


def _score(cache: SignalCache, signal: Signal, fn, result: CellResult, digest: str, signals: Signals) -> float | None:
    """One image's value of ``signal``; a scorer that raises or returns something else than a finite number or
    None leaves it blank, uncached (asked again once fixed), and says so once per scorer and problem."""

    def compute() -> float | None:
        try:
            value = fn(result.image, result.cell.prompt)
        except Exception as err:  # a scorer of the user's own may raise anything
            signals._trouble(signal.label, f"failed ({type(err).__name__}: {str(err)[:200]})", result.cell.name)
            raise NotKept from err
        if value is None:
            return None
        number = as_number(value)
        if number is None:
            kind = type(value).__name__ + (f" of shape {tuple(value.shape)}" if hasattr(value, "shape") else "")
            signals._trouble(signal.label, f"returned {kind}, not a number or None", result.cell.name)
            raise NotKept
        if not math.isfinite(number):
            signals._trouble(signal.label, f"returned {number}", result.cell.name)
            raise NotKept
        return number

    return cache.value(f"{signal.key}:{signal.version}:{digest}", compute)


def as_number(value: object) -> float | None:
    """``value`` as a float when it is one number: int, float, a numpy scalar, or a one-element numpy array or
    torch tensor (what a model's head returns); None otherwise (text, bools, several numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):  # int, float, numpy's integer and floating scalars
        return float(value)
    size = getattr(value, "size", None)
    size = size() if callable(size) else size  # torch: .size() is a shape; numpy: .size is a count
    count = math.prod(size) if isinstance(size, tuple) else size
    if count == 1 and hasattr(value, "item"):
        item = value.item()
        if isinstance(item, numbers.Real) and not isinstance(item, bool):
            return float(item)
    return None


def _source_time(fn) -> str:
    """When the scorer's source file last changed (its cache version unless it sets ``zbench_version``)."""
    try:
        return str(Path(inspect.getfile(inspect.unwrap(fn))).stat().st_mtime_ns)
    except (TypeError, OSError):
        return ""


def _mean(values) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(kept) if kept else None
