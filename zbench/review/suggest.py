"""The decision pipeline in one place, for the page's Pick tab and ``zbench suggest`` alike:
images → signals → suggested shortlist → the user's edits → ranking of ratings and votes → recommendation.

``signal_grid`` says what to render for the signals (the config's ``[signals]`` prompts and seeds, base column
included); ``decide`` turns rendered results and the run's review into a :class:`Decision`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.cache import default_cache_dir
from ..engine.checkpoints import Checkpoint
from ..engine.config import BenchConfig, read_prompts
from ..engine.plan import Cell, CellResult, RenderSettings, plan_grid
from .grid import parse_seeds
from .recommend import Recommendation, recommend
from .records import Review
from .shortlist import Shortlist, edited_shortlist, follow_leader, make_room, suggest_shortlist
from .signals import SignalCache, SignalReport, Signals, compute_signals

__all__ = ["Decision", "SignalGrid", "decide", "short_label", "signal_cache", "signal_grid"]

_CACHES: dict[str, SignalCache] = {}


def signal_cache(root: str | Path | None = None) -> SignalCache:
    """The process-wide signal cache: ``signals.sqlite`` in the image cache's folder."""
    folder = Path(root) if root is not None else default_cache_dir()
    key = str(folder.resolve())
    if key not in _CACHES:
        _CACHES[key] = SignalCache(folder / "signals.sqlite")
    return _CACHES[key]


def short_label(ck: Checkpoint) -> str:
    """ "epoch 14" (or "step 500", or the file name) for sentences."""
    if ck.epoch is not None:
        return f"epoch {ck.epoch}"
    if ck.step is not None:
        return f"step {ck.step}"
    return ck.name


@dataclass(frozen=True)
class SignalGrid:
    """The signal set: its prompts and seeds, its cells (the base and every usable checkpoint), its settings."""

    prompts: list[str]
    seeds: list[int]
    cells: list[Cell]
    settings: RenderSettings


def signal_grid(config: BenchConfig, run: Sequence[Checkpoint]) -> SignalGrid:
    """What ``zbench suggest`` renders: every usable checkpoint and the base, for the ``[signals]`` prompts
    (default: the config's) and seeds, at the config's render settings. The cells hold every usable checkpoint,
    so ``render_cells`` injects adapters at the run's largest rank without being told.

    Raises:
        ConfigError: the prompt set file cannot be read.
        ValueError: the seeds do not parse.
    """
    prompts = read_prompts(config.signal_prompts_file, source=config.source) if config.signal_prompts_file else None
    prompts = prompts or config.prompts()
    seeds = parse_seeds(config.signal_seeds or str(config.seed))
    usable = [c for c in run if c.error is None]
    _, cells = plan_grid(usable, prompts=prompts, seeds=seeds, include_base=True)
    settings = RenderSettings(config.steps, config.guidance, config.width, config.height, config.negative)
    return SignalGrid(prompts, seeds, cells, settings)


@dataclass
class Decision:
    """Everything the Pick tab and ``zbench suggest`` show."""

    report: SignalReport
    suggested: Shortlist
    shortlist: list[str]  # after the user's edits, and grown past an end where the leader is (``follow_leader``)
    recommendation: Recommendation
    labels: dict[str, str]
    grown: dict[str, str] = field(default_factory=dict)  # checkpoints that joined past an end, and why
    left: dict[str, str] = field(default_factory=dict)  # checkpoints that left to make room for them, and why

    def why(self, name: str) -> str:
        """Why ``name`` is where it is: joined or left following the leader, else the signals' reason ("" if none)."""
        return self.grown.get(name) or self.left.get(name) or self.suggested.reasons.get(name, "")

    def evidence(self) -> dict:
        """What a release record keeps of it."""
        return {
            "signals": self.report.to_json(),
            "suggested_shortlist": self.suggested.to_json(),
            "shortlist": list(self.shortlist),
            "grown": dict(self.grown),
            "left": dict(self.left),
            "recommendation": self.recommendation.to_json(),
        }


def decide(
    run: Sequence[Checkpoint],
    results: Sequence[CellResult],
    review: Review,
    *,
    signals: Signals | None = None,
    cache: SignalCache | None = None,
    size: int = 6,
    report: SignalReport | None = None,
) -> Decision:
    """Signals of ``results``, the shortlist (suggested, then as the user edited it), the recommendation.

    Args:
        run: the run's checkpoints in order (unusable ones are left out).
        results: rendered cells with the checkpoints as columns (ideally the base and two or more seeds).
        review: the run's ratings, votes and shortlist edits.
        report: signals already computed for ``results`` (skips computing them).
    """
    usable = [c for c in run if c.error is None]
    order = [c.name for c in usable]
    labels = {c.name: short_label(c) for c in usable}
    if report is None:
        report = compute_signals(results, signals=signals, cache=cache)
    suggested = suggest_shortlist(report, size=size, usable=order)
    edited = edited_shortlist(suggested.names, review.shortlist, order)
    dropped = [n for n, keep in review.shortlist.items() if not keep]
    kept = [n for n, keep in review.shortlist.items() if keep]
    shortlist, grown = follow_leader(
        edited, order, suggested.candidates, review.votes, review.ratings, dropped=dropped, labels=labels
    )
    shortlist, left = make_room(shortlist, grown, size, review.votes, review.ratings, kept=kept, labels=labels)
    rec = recommend(order, review, shortlist, report=report, suggested=suggested, labels=labels)
    return Decision(report, suggested, shortlist, rec, labels, grown, left)
