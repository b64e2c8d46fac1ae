"""A shortlist suggested from the signals: the checkpoints worth a person's blind votes.

A trainer's rule of thumb, made explicit:

1. **Emerged**: the LoRA has learned something. Drift from the base has reached at least half of the run's
   largest drift; earlier checkpoints barely differ from the base model.
2. **Not collapsed**: the seeds still give different pictures. Diversity across seeds is at least 60% of the
   base model's (or, without a base column, of the most diverse emerged checkpoint).
3. **Not copying**: no render is a near copy of a training image (likeness below 0.97).
4. **Healthiest stretch**: of what is left, the ``size`` checkpoints in a row (in run order, among those left)
   whose quality signals are best on average. A checkpoint's health is its quality signals, each scaled over
   the candidates from 0 (worst) to 1 (best) and averaged; prompt adherence (CLIP) and the user's own scorers
   count twice, diversity and BRISQUE once. Drift, change and likeness are not health.

   A stretch rather than the ``size`` best scores one by one: quality changes gradually over training, so the
   signals of neighbouring checkpoints are evidence about each other, and a scorer's noise on one checkpoint
   averages out over a stretch. Picking the best scores one by one chases that noise: it takes a lucky
   checkpoint far from the good part of the run and leaves gaps inside it, where the best checkpoint often is.
   In ``benchmarks/decide.py`` (a judge scorer whose noise is 0.3 of the quality range) the stretch of 6 holds
   the person's favourite in 93% of 1000 simulated runs of 30 checkpoints, the 6 best scores in 88%.

Every checkpoint gets one line saying why it is in or out. The user edits the result (keep/drop); votes are
drawn among the edited list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .ranking import fit_ranking
from .records import Vote
from .signals import BASE, SignalReport

__all__ = [
    "COLLAPSE",
    "EMERGED",
    "GROW",
    "Shortlist",
    "edited_shortlist",
    "follow_leader",
    "make_room",
    "suggest_shortlist",
]

EMERGED = 0.5  # of the run's largest drift
PLATEAU = 0.8  # drift stays above this share of the largest from the plateau's start
COLLAPSE = 0.6  # of the reference diversity
COPYING = 0.97  # likeness to the closest training image
GROW = 2  # checkpoints the shortlist may gain past its ends, following a leader at one of them
HEALTH_WEIGHTS = {"diversity": 1.0, "quality": 1.0, "adherence": 2.0}  # and every "scorer:..." 2.0


@dataclass
class Shortlist:
    """The suggested shortlist (run order), a reason per checkpoint, and what the drift curve says."""

    names: list[str]
    reasons: dict[str, str] = field(default_factory=dict)
    plateau: str | None = None  # the checkpoint from which drift has levelled off
    health: dict[str, float] = field(default_factory=dict)
    candidates: list[str] = field(default_factory=list)  # run order: those no signal ruled out

    def to_json(self) -> dict:
        return {"names": self.names, "reasons": self.reasons, "plateau": self.plateau, "health": self.health,
                "candidates": self.candidates}  # fmt: skip


def _label(report: SignalReport, name: str) -> str:
    epoch = report.epochs.get(name)
    return f"epoch {epoch}" if epoch is not None else name


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def suggest_shortlist(report: SignalReport, *, size: int = 6, usable: Sequence[str] | None = None) -> Shortlist:
    """The checkpoints worth blind votes, from the signals alone (see the module's docstring).

    Args:
        report: signals of a grid that has the checkpoints as columns (and ideally the base and 2+ seeds).
        size: at most this many.
        usable: the checkpoints that may be chosen (default: every checkpoint column of the report).

    Returns:
        A :class:`Shortlist`; with no signal at all, the last ``size`` checkpoints, said so.
    """
    names = [n for n in report.names if n != BASE and (usable is None or n in usable)]
    reasons: dict[str, str] = {}
    if not names:
        return Shortlist([], {}, None)
    drift = {n: v for n, v in report.series("drift").items() if v is not None and n in names}
    candidates = list(names)
    plateau = None
    if drift:
        top = max(drift.values())
        for n in names:
            if n not in drift:
                failed = report.errors.get(n)
                reasons[n] = f"could not render: {failed}" if failed else "no renders to measure"
                candidates.remove(n)
            elif drift[n] < EMERGED * top:
                reasons[n] = (
                    f"barely changed from the base: drift {_fmt(drift[n])} is {drift[n] / top:.0%} of the run's "
                    f"largest ({_fmt(top)})"
                )
                candidates.remove(n)
        ordered = [n for n in names if n in drift]
        for i, n in enumerate(ordered):
            if all(drift[m] >= PLATEAU * top for m in ordered[i:]):
                plateau = n
                break
    diversity = report.series("diversity")
    reference = diversity.get(BASE)
    if reference is None:
        reference = max((diversity[n] for n in candidates if diversity.get(n) is not None), default=None)
    if reference:
        for n in list(candidates):
            d = diversity.get(n)
            if d is not None and d < COLLAPSE * reference:
                reasons[n] = (
                    f"seeds collapse: diversity {_fmt(d)}, {d / reference:.0%} of "
                    + ("the base's" if diversity.get(BASE) is not None else "the most diverse checkpoint's")
                    + " (the same picture whatever the seed: overfitting)"
                )
                candidates.remove(n)
    likeness_keys = [s.key for s in report.signals if s.key.startswith("likeness")]
    for key in likeness_keys:
        for n in list(candidates):
            v = report.values.get(n, {}).get(key)
            if v is not None and v >= COPYING:
                reasons[n] = f"may be copying a training image: likeness {_fmt(v)}"
                candidates.remove(n)
    health = _health(report, candidates)
    chosen = _stretch(candidates, health, size)
    weakest = min((health.get(n, 0.0) for n in chosen), default=0.0)
    average = sum(health.get(n, 0.0) for n in chosen) / len(chosen) if chosen else 0.0
    for n in candidates:
        if n in chosen:
            reasons[n] = "shortlisted: " + _why_in(report, n, drift, plateau)
        elif health.get(n, 0.0) < weakest:
            reasons[n] = f"weaker signals than the shortlist: {_weakest_signal(report, n, chosen)}" + (
                f" (health {health.get(n, 0):.2f}, the shortlist's lowest {weakest:.2f})"
            )
        else:
            reasons[n] = (
                f"healthy (health {health.get(n, 0):.2f}) but outside the shortlisted stretch "
                f"{_label(report, chosen[0])} to {_label(report, chosen[-1])}, whose signals are better on average "
                f"({average:.2f}) than any other {len(chosen)} in a row: one checkpoint's score may be luck"
            )
    if not drift and not health:
        chosen = names[-size:]
        reasons = dict.fromkeys(chosen, "no signals yet: the last checkpoints of the run")
    reasons = {n: reasons[n] for n in names if n in reasons}  # in run order, as the page and CLI list them
    return Shortlist([n for n in names if n in chosen], reasons, plateau, health, candidates)


def _stretch(candidates: list[str], health: Mapping[str, float], size: int) -> list[str]:
    """The ``size`` candidates in a row (run order) with the best mean health; the earliest such stretch on a tie."""
    if len(candidates) <= size:
        return list(candidates)
    values = [health.get(n, 0.0) for n in candidates]
    sums = [sum(values[i : i + size]) for i in range(len(candidates) - size + 1)]
    start = max(range(len(sums)), key=lambda i: (round(sums[i], 12), -i))
    return candidates[start : start + size]


def _health_weight(key: str) -> float | None:
    """How much a signal counts towards health; None for signals that are not health (drift, change, likeness)."""
    return 2.0 if key.startswith("scorer:") else HEALTH_WEIGHTS.get(key)


def _health(report: SignalReport, candidates: list[str]) -> dict[str, float]:
    total: dict[str, float] = dict.fromkeys(candidates, 0.0)
    mass: dict[str, float] = dict.fromkeys(candidates, 0.0)
    for s in report.signals:
        weight = _health_weight(s.key)
        tones = {n: t for n, t in report.tones(s.key, among=candidates).items() if t is not None}
        if weight is None or len(tones) < 2:
            continue
        for n, t in tones.items():
            total[n] += weight * t
            mass[n] += weight
    return {n: total[n] / mass[n] for n in candidates if mass[n] > 0}


def _weakest_signal(report: SignalReport, name: str, chosen: list[str]) -> str:
    """The health signal on which ``name`` falls furthest behind the shortlist, in words."""
    worst, text = 0.0, "overall"
    for s in report.signals:
        if _health_weight(s.key) is None:
            continue
        mine = report.values.get(name, {}).get(s.key)
        theirs = [report.values.get(n, {}).get(s.key) for n in chosen]
        theirs = [v for v in theirs if v is not None]
        if mine is None or not theirs:
            continue
        edge = (min(theirs) - mine) if s.good == "high" else (mine - max(theirs))
        scale = (max(theirs) - min(theirs)) or abs(min(theirs)) or 1.0
        if edge / scale > worst:
            bound = min(theirs) if s.good == "high" else max(theirs)
            sign = "≥" if s.good == "high" else "≤"
            worst, text = edge / scale, f"{s.label} {_fmt(mine)} (shortlist {sign} {_fmt(bound)})"
    return text


def _why_in(report: SignalReport, name: str, drift: Mapping[str, float], plateau: str | None) -> str:
    parts = []
    if name in drift:
        parts.append(f"drift {_fmt(drift[name])}")
    for s in report.signals:
        if s.key in ("drift", "change"):
            continue
        v = report.values.get(name, {}).get(s.key)
        if v is not None:
            parts.append(f"{s.label} {_fmt(v)}")
    return ", ".join(parts) or "in the run"


def edited_shortlist(suggested: Sequence[str], edits: Mapping[str, bool], order: Sequence[str]) -> list[str]:
    """The shortlist after the user's edits: suggested ones not dropped, plus the kept ones, in run order."""
    chosen = {n for n in suggested if edits.get(n, True)} | {n for n, keep in edits.items() if keep}
    return [n for n in order if n in chosen]


def follow_leader(
    shortlist: Sequence[str],
    order: Sequence[str],
    candidates: Sequence[str],
    votes: Sequence[Vote],
    ratings: Mapping[str, int],
    *,
    dropped: Sequence[str] = (),
    limit: int = GROW,
    labels: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The shortlist grown past an end where the ratings and votes so far put the best checkpoint.

    A trainer whose favourite so far is the last (or first) of the checkpoints they compared looks at the next
    one too: the signals chose the stretch, but they are noisy, and the best may lie just past it. So once every
    checkpoint of the shortlist has a star rating, and the leader of the ratings and votes (the posterior mode of
    ``fit_ranking``; any of them on a tie) is at an end of the shortlist in run order, the next checkpoint past
    that end joins it, if the signals did not rule it out (``candidates``) and the user did not drop it
    (``dropped``). It asks for one rating; if it then leads in turn, the one past it joins, up to ``limit`` in
    all. A joined checkpoint stays while the leader is still at that end, or while it leads itself.

    Why ratings first: a rating places a newcomer at once, a blind vote barely. In ``benchmarks/decide.py``
    (1000 simulated runs of 30 checkpoints, a shortlist of 6, the favourite preferred 2:1) following the leader
    after the ratings holds the favourite in 96% of runs instead of 93% and names it after 25 interactions in
    82% instead of 79%; following a leader of votes alone (before any rating) named it in 65-67% instead of 70%:
    each newcomer then costs more votes than it saves.

    Returns:
        The names (run order) and, for each checkpoint that joined, why, in words.
    """
    say = (labels or {}).get
    position = {n: i for i, n in enumerate(order)}
    pool = [n for n in dict.fromkeys(shortlist) if n in position]
    allowed = set(candidates) - set(dropped)
    seen = set(ratings) | {n for v in votes for n in (v.winner, v.loser)}
    added: dict[str, str] = {}
    while pool and len(added) < limit:
        # The leader counts once every checkpoint of the pool has a rating (see the docstring).
        leaders = fit_ranking(pool, votes, ratings).leaders() if all(n in ratings for n in pool) else set()
        for end, step in ((max(pool, key=position.get), 1), (min(pool, key=position.get), -1)):
            i = position[end] + step
            nxt = order[i] if 0 <= i < len(order) else None
            if nxt is None or nxt in pool or nxt not in allowed:
                continue
            where = "last" if step == 1 else "first"
            if end in leaders:
                lead = "leads" if len(leaders) == 1 else "shares the lead of"
                why = f"{say(end, end)}, the shortlist's {where} in run order, {lead} the ratings and votes so far"
            elif nxt in seen and nxt in fit_ranking([*pool, nxt], votes, ratings).leaders():
                why = f"it leads the ratings and votes, just past {say(end, end)}"
            else:
                continue
            added[nxt] = f"joined the shortlist: {why}; the best may lie past it"
            pool.append(nxt)
            break
        else:  # neither end grows
            break
    return [n for n in order if n in pool], added


def make_room(
    pool: Sequence[str],
    joined: Mapping[str, str],
    size: int,
    votes: Sequence[Vote],
    ratings: Mapping[str, int],
    *,
    kept: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The shortlist back to ``size`` after checkpoints ``joined`` it (``follow_leader``): it slides toward the lead.

    For each one that joined, while the shortlist is longer than ``size``, the checkpoint the ratings and votes
    rank lowest leaves it (never one that joined, a leader, or one the user kept on purpose: ``kept``); on a tie,
    the one farthest from where the shortlist grew. Its ratings and votes still count in the ranking; only blind
    votes are no longer drawn with it. So votes stay among at most ``size`` checkpoints, the ones still in the
    running. In ``benchmarks/decide.py`` (1000 runs) this names the favourite as often as keeping all of them
    (82.2% against 82.0% after 25 interactions).

    Returns:
        The names (in ``pool``'s order) and, for each that left, why, in words.
    """
    say = (labels or {}).get
    extra = min(len(joined), len(pool) - size)
    if extra <= 0:
        return list(pool), {}
    fit = fit_ranking(pool, votes, ratings)
    theta = dict(zip(fit.names, fit.theta.tolist(), strict=True))
    index = {n: i for i, n in enumerate(pool)}
    grew = [index[n] for n in joined if n in index]
    leaders = fit.leaders()
    movable = [n for n in pool if n not in joined and n not in leaders and n not in kept]
    # Lowest strength first; unrated and unvoted ones count as average (0); farther from the new ones first.
    movable.sort(key=lambda n: (round(theta.get(n, 0.0), 9), -min(abs(index[n] - g) for g in grew)))
    newcomers = ", ".join(say(n, n) for n in joined)
    left = {}
    for name in movable[:extra]:
        rated = f"rated {ratings[name]}, " if name in ratings else ""
        left[name] = (
            f"left the shortlist to make room for {newcomers}: {rated}the lowest of its ratings and votes; "
            "add it back to keep it"
        )
    return [n for n in pool if n not in left], left
