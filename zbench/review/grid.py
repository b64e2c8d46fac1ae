"""What the bench page asks for, as data: a grid request, and the per-checkpoint table.

The page turns its widgets into a :class:`GridRequest` (parsing seeds and scales typed as
text), renders it through :func:`zbench.engine.render.render_cells`, and shows
:func:`checkpoint_table`: epoch, step, rank, the user's rating and note, blind-vote ranking,
and metrics from weights (LoRA delta norm, change from the previous checkpoint) and from the
grid's images (distance from the base render, change from the previous checkpoint).
"""

from __future__ import annotations

import logging
import re
import statistics
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from ..engine.checkpoints import Checkpoint
from ..engine.limits import MAX_SEEDS, check_prompts, check_scales, check_seed
from ..engine.plan import Cell, CellResult, RenderSettings, Row, check_scale, plan_grid
from .metrics import LoraFactors, image_distance, lora_delta_norm, lora_factors, lora_weight_change

__all__ = [
    "GridRequest",
    "checkpoint_table",
    "image_metrics",
    "parse_prompts",
    "parse_scales",
    "parse_seeds",
    "weight_metrics",
]

logger = logging.getLogger(__name__)

RowsBy = Literal["prompts", "seeds", "scales"]


def parse_prompts(text: str) -> list[str]:
    """One prompt per non-empty line.

    Raises:
        ValueError: no prompt at all, or one the shared rules refuse (``limits.check_prompt``).
    """
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ValueError("type at least one prompt (one per line)")
    return check_prompts(prompts)


def _numbers(text: str, what: str) -> list[str]:
    items = [t for t in re.split(r"[,\s;]+", text.strip()) if t]
    if not items:
        raise ValueError(f"give at least one {what}, e.g. 42 or 42, 7")
    return items


def parse_seeds(text: str) -> list[int]:
    """Seeds separated by commas or spaces, with ranges: "42, 7", "1-4", "1, 2, .., 10" or "0, 5, .., 20".

    "a-b" is every seed from a to b; "x, y, .., z" continues the step y - x up to z. Duplicates are
    dropped, order kept.

    Raises:
        ValueError: a seed that is not a whole number 0..2**64-1, a range that goes nowhere, or more
            than 1000 seeds, with the value received.
    """
    seeds: list[int] = []
    items = _numbers(text, "seed")
    i = 0
    while i < len(items):
        item = items[i]
        if item in ("..", "..."):
            if len(seeds) < 2 or i + 1 >= len(items):
                raise ValueError(f'".." continues a step: write it as "1, 2, .., 10", got {text.strip()!r}')
            first, second, end = seeds[-2], seeds[-1], _seed(items[i + 1])
            step = second - first
            if step == 0 or (end - second) * step < 0:
                raise ValueError(f"{first}, {second}, .., {end} does not reach {end} by steps of {step}")
            more = range(second + step, end + (1 if step > 0 else -1), step)
            _check_count(len(seeds) + len(more), text)
            seeds += more
            i += 2
        elif re.fullmatch(r"\d+-\d+", item):
            low, high = (_seed(x) for x in item.split("-"))
            if high < low:
                raise ValueError(f"a seed range goes up: write {high}-{low}, got {item}")
            _check_count(len(seeds) + high - low + 1, text)
            seeds += range(low, high + 1)
            i += 1
        else:
            seeds.append(_seed(item))
            i += 1
        _check_count(len(seeds), text)
    return list(dict.fromkeys(seeds))


def _check_count(count: int, text: str) -> None:
    if count > MAX_SEEDS:
        raise ValueError(f"at most {MAX_SEEDS} seeds (each is a row of the grid), got {count:,} from {text.strip()!r}")


def _seed(item: str) -> int:
    try:
        seed = int(item)
    except ValueError:
        raise ValueError(f"seeds should be whole numbers separated by commas, got {item!r}") from None
    return check_seed(seed)


def parse_scales(text: str) -> list[float]:
    """LoRA scales separated by commas or spaces: "0.5, 1, 1.2" (each between -4 and 4, see check_scale).

    Raises:
        ValueError: a value that is not a number or is out of range, with the value received.
    """
    scales: list[float] = []
    for item in _numbers(text, "LoRA scale"):
        try:
            scale = float(item)
        except ValueError:
            raise ValueError(f"LoRA scales should be numbers separated by commas, got {item!r}") from None
        check_scale(scale)
        if scale not in scales:
            scales.append(scale)
    return check_scales(scales)


@dataclass(frozen=True)
class GridRequest:
    """Everything a grid depends on; equal requests give equal images (and cache keys)."""

    checkpoints: tuple[str, ...]  # file names, in the run's order
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    scales: tuple[float, ...]
    settings: RenderSettings
    include_base: bool = True

    def plan(self, run: Sequence[Checkpoint]) -> tuple[list[Row], list[Cell]]:
        """Rows (prompt x seed x scale) and cells for the chosen checkpoints of ``run``."""
        chosen = [c for c in run if c.name in set(self.checkpoints)]
        return plan_grid(
            chosen,
            prompts=list(self.prompts),
            seeds=list(self.seeds),
            scales=list(self.scales),
            include_base=self.include_base,
        )


_WEIGHTS: dict[tuple, float | None] = {}
_WEIGHTS_LOCK = threading.Lock()


def _memo(key: tuple, compute) -> float | None:
    with _WEIGHTS_LOCK:
        if key in _WEIGHTS:
            return _WEIGHTS[key]
    try:
        value = compute()
    except Exception as err:  # one unreadable or odd file: its cells are blank, the scan or grid says why
        logger.warning("weight metric %s failed: %s", key[0], err)
        value = None
    with _WEIGHTS_LOCK:
        _WEIGHTS[key] = value
    return value


def weight_metrics(run: Sequence[Checkpoint]) -> dict[str, dict[str, float | None]]:
    """Per usable checkpoint: "delta_norm" and "weight_change" from the previous usable one.

    Memoised by content hash, so a page refresh does not reload every file; on a first
    view each file is read once (its factors serve its norm and both changes it is part of).
    """
    out: dict[str, dict[str, float | None]] = {}
    loaded: dict[str, LoraFactors] = {}  # at most the current and the previous checkpoint

    def factors(ck: Checkpoint) -> LoraFactors:
        if ck.hash not in loaded:
            loaded[ck.hash] = lora_factors(ck.path)
        return loaded[ck.hash]

    previous: Checkpoint | None = None
    for ck in run:
        if ck.error is not None:
            continue
        norm = _memo(("norm", ck.hash), lambda ck=ck: lora_delta_norm(factors(ck)))
        change = None
        if previous is not None:
            change = _memo(
                ("change", previous.hash, ck.hash),
                lambda a=previous, b=ck: lora_weight_change(factors(a), factors(b)),
            )
        out[ck.name] = {"delta_norm": norm, "weight_change": change}
        for digest in [d for d in loaded if d != ck.hash]:
            del loaded[digest]
        previous = ck
    return out


def image_metrics(results: Sequence[CellResult]) -> dict[str, dict[str, float | None]]:
    """Per checkpoint column of a rendered grid: mean "from_base" and "image_change" over its rows.

    Distances are mean absolute pixel differences (0..1); "image_change" compares with the
    column to the left (the previous checkpoint shown).
    """
    images = {(r.cell.row, r.cell.col): r.image for r in results if r.image is not None}
    base_col = next((r.cell.col for r in results if r.cell.checkpoint is None), None)
    names = {r.cell.col: r.cell.name for r in results if r.cell.checkpoint is not None}

    def mean_to(col: int, other: int) -> float | None:
        pairs = [(im, images[(row, other)]) for (row, c), im in images.items() if c == col and (row, other) in images]
        return statistics.mean(image_distance(x, y) for x, y in pairs) if pairs else None

    out: dict[str, dict[str, float | None]] = {}
    previous = None
    for col in sorted(names):
        out[names[col]] = {
            "from_base": None if base_col is None else mean_to(col, base_col),
            "image_change": None if previous is None else mean_to(col, previous),
        }
        previous = col
    return out


def checkpoint_table(
    run: Sequence[Checkpoint],
    *,
    ratings: dict[str, int] | None = None,
    notes: dict[str, str] | None = None,
    ranking: Sequence[dict] = (),
    weights: dict[str, dict] | None = None,
    images: dict[str, dict] | None = None,
    release: str | None = None,
    signals=None,
    shortlist: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per checkpoint of the run, in run order, for the page's table and chart.

    ``signals`` (a :class:`~zbench.review.signals.SignalReport`) adds a column per signal, named by its label;
    ``shortlist`` marks the checkpoints votes are drawn among.
    """
    ratings, notes, weights, images = ratings or {}, notes or {}, weights or {}, images or {}
    ranks = {r["name"]: r for r in ranking}
    rows = []
    for ck in run:
        vote = ranks.get(ck.name, {})
        w, im = weights.get(ck.name, {}), images.get(ck.name, {})
        rows.append(
            {
                "checkpoint": ck.name,
                "epoch": ck.epoch,
                "step": ck.step,
                "rank": ck.rank,
                "rating": ratings.get(ck.name),
                "note": notes.get(ck.name, ""),
                "wins": vote.get("wins", 0),
                "losses": vote.get("losses", 0),
                "vote rank": vote.get("rank"),
                "vote score": vote.get("score"),
                "vote low": vote.get("low"),  # the score's 95% interval: overlapping ones are not yet told apart
                "vote high": vote.get("high"),
                "P(best)": vote.get("p_best"),
                "shortlist": "✓" if ck.name in shortlist else "",
                "delta norm": w.get("delta_norm"),
                "weight change": w.get("weight_change"),
                "from base": im.get("from_base"),
                "image change": im.get("image_change"),
                "release": "★" if release == ck.name else "",
                "error": ck.error or "",
                "adapter": ck.adapter_text,  # "LoKr · factor 8 · rank 16 · alpha 8 · denoiser"
            }
        )
    extra = []
    if signals is not None:
        for row in rows:  # a checkpoint that reads but could not render (NaN weights, out of memory)
            row["error"] = row["error"] or signals.errors.get(row["checkpoint"], "")
        for s in signals.signals:
            extra.append(s.label)
            for row in rows:
                row[s.label] = signals.values.get(row["checkpoint"], {}).get(s.key)
    table = pd.DataFrame(rows)
    # What a decision reads first: the shortlist, the rating, how likely each is the best, then the signals.
    first = ["checkpoint", "epoch", "step", "rank", "shortlist", "rating", "P(best)", *extra]
    table = table[first + [c for c in table.columns if c not in first]]
    # Whole numbers stay whole numbers with gaps (an unrated checkpoint is blank, not NaN as a float).
    for column in ("epoch", "step", "rank", "rating", "vote rank"):
        table[column] = table[column].astype("Int64")
    floats = ("vote score", "vote low", "vote high", "P(best)", "delta norm", "weight change", "from base")
    for column in (*floats, "image change", *extra):
        table[column] = table[column].astype("Float64")  # numbers with gaps, whatever is missing
    return table
