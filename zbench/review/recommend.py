"""A release recommendation with its evidence in plain words, and what would settle it when it is not clear.

Nothing is proposed as *the* release unless the evidence says so: the ranking of ratings and votes
(``ranking.py``) names a leader that is the best with at least 90% probability, every shortlisted checkpoint
has been seen, and no rating contradicts it (a checkpoint rated at the top that the votes put in the bottom
half, or a leader rated 2 or less). Otherwise the recommendation names the leader, says how sure it is and
what would settle it (which pair to vote on and about how many votes, or which checkpoints to rate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from .ranking import rank_votes, vote_summary
from .records import Review
from .shortlist import Shortlist
from .signals import BASE, SignalReport

__all__ = ["Recommendation", "recommend"]


@dataclass
class Recommendation:
    """What to release and why. ``checkpoint`` is set only when the evidence is clear (preselect it)."""

    checkpoint: str | None
    leader: str | None  # the best-supported checkpoint, even when not clear
    confidence: Literal["clear", "likely", "weak", "even", "none"]
    p_best: float | None
    evidence: str  # one line: "epoch 14: rated 5, won 7 of 9 votes against the shortlist, ..."
    settle: str  # what would settle it ("" when clear)
    conflicts: list[str] = field(default_factory=list)
    pool: list[str] = field(default_factory=list)  # the checkpoints ranked: shortlist, rated and voted ones
    ranking: list[dict] = field(default_factory=list)  # rank_votes over the pool
    summary: dict = field(default_factory=dict)  # vote_summary over the pool

    def headline(self) -> str:
        """The one sentence a page or a terminal leads with."""
        if self.confidence == "clear":
            return f"Release {self.evidence}"
        if self.confidence == "none":
            return "No recommendation yet: " + self.settle
        if self.confidence == "even":
            return f"About even: {self.evidence}. {self.settle}"
        sure = "probably" if self.confidence == "likely" else "perhaps"
        return f"Not yet clear: {sure} {self.evidence}. To settle it: {self.settle}"

    def to_json(self) -> dict:
        return asdict(self)


def recommend(
    order: Sequence[str],
    review: Review,
    shortlist: Sequence[str],
    *,
    report: SignalReport | None = None,
    suggested: Shortlist | None = None,
    labels: Mapping[str, str] | None = None,
) -> Recommendation:
    """The recommendation from ratings, votes and signals.

    Args:
        order: the run's usable checkpoints in training order.
        review: its ratings and votes.
        shortlist: the (edited) shortlist votes are drawn from.
        report: the signals, for the evidence (diversity, drift plateau, scorers).
        suggested: the suggested shortlist (its drift plateau).
        labels: name -> "epoch 14" for sentences (default: the name).
    """
    labels = labels or {}

    def say(name: str) -> str:
        return labels.get(name, name)

    voted = {n for v in review.votes for n in (v.winner, v.loser)}
    pool = [n for n in order if n in shortlist or n in review.ratings or n in voted]
    ratings = {n: r for n, r in review.ratings.items() if n in pool}
    summary = vote_summary(pool, review.votes, ratings)
    rows = rank_votes(pool, review.votes, ratings)
    ranked = {r["name"]: r for r in rows if r["rank"] is not None}
    leader = summary["leader"]
    if leader is None:
        need = f"about {summary['more']} votes" if summary["more"] else "a few votes"
        where = ", ".join(say(n) for n in shortlist) or "the run"
        return Recommendation(
            None, None, "none", None, "",
            f"rate the shortlisted checkpoints ({where}: open a cell of the grid, press 1-5) or vote among them "
            f"({need}).",
            pool=pool, ranking=rows, summary=summary,
        )  # fmt: skip
    conflicts = _conflicts(ranked, ratings, leader, say)
    evidence = f"{say(leader)}: " + ", ".join(_evidence(leader, review, pool, ranked, report, suggested, say))
    evidence += f" (best with {summary['p_best']:.0%} probability)"
    a, b = leader, summary["runner_up"]
    if summary["settled"] and not conflicts:
        return Recommendation(leader, leader, "clear", summary["p_best"], evidence, "", [], pool, rows, summary)
    if summary["even"]:
        earlier = min((a, b), key=order.index)
        settle = (
            f"{say(a)} and {say(b)} are level after {summary['votes']} votes: either is a fine release; "
            f"{say(earlier)} is the less trained one."
        )
        return Recommendation(None, leader, "even", summary["p_best"], evidence, settle, conflicts, pool, rows, summary)
    steps = []
    if summary["unseen"]:
        steps.append("rate or vote on " + ", ".join(say(n) for n in summary["unseen"]))
    if b is not None and summary["more"]:
        n = summary["more"]
        steps.append(f"about {n} more vote{'s' if n != 1 else ''}, mostly {say(a)} against {say(b)}")
    steps += [c.split(": ", 1)[-1] for c in conflicts]
    confidence = "likely" if summary["p_best"] >= 0.6 and not conflicts else "weak"
    return Recommendation(
        None, leader, confidence, summary["p_best"], evidence, "; ".join(steps) or "more votes", conflicts, pool, rows,
        summary,
    )  # fmt: skip


def _conflicts(ranked: dict, ratings: Mapping[str, int], leader: str, say) -> list[str]:
    """Where the ratings and the votes disagree: a top-rated checkpoint the votes put in the lower half, below a
    leader rated lower (or not at all), or a leader rated 2 or less. Several checkpoints rated alike and then
    told apart by votes are no disagreement: the stars did not order them."""
    out = []
    if len(ranked) >= 3 and ratings:
        top = max(ratings.values())
        for name, stars in ratings.items():
            row = ranked.get(name)
            if ratings.get(leader, 0) >= stars:  # the leader is rated as high: the votes only broke a tie
                continue
            if stars == top and stars >= 4 and row and name != leader and row["rank"] > (len(ranked) + 1) / 2:
                out.append(
                    f"{say(name)} is rated {stars} but ranks {row['rank']} of {len(ranked)} after its votes "
                    f"(won {row['wins']} of {row['wins'] + row['losses']}): vote {say(name)} against {say(leader)} "
                    "again, or change its rating"
                )
    if ratings.get(leader, 5) <= 2:
        out.append(f"the leader {say(leader)} is rated {ratings[leader]}: rate it again, or vote against it")
    return out


def _evidence(name, review: Review, pool, ranked: dict, report, suggested, say) -> list[str]:
    parts = []
    if name in review.ratings:
        parts.append(f"rated {review.ratings[name]}")
    row = ranked.get(name)
    games = (row or {}).get("wins", 0) + (row or {}).get("losses", 0)
    if games:
        parts.append(f"won {row['wins']} of {games} votes against the shortlist")
    if report is not None:
        mine, base = report.values.get(name, {}), report.values.get(BASE, {})
        d, ref = mine.get("diversity"), base.get("diversity")
        if d is not None and ref:
            kept = d / ref
            parts.append("seeds still diverse" if kept >= 0.8 else f"seed diversity down to {kept:.0%} of the base")
        for s in report.signals:
            if s.key.startswith(("scorer:", "adherence")) and mine.get(s.key) is not None:
                others = [report.values.get(n, {}).get(s.key) for n in pool]
                others = [v for v in others if v is not None]
                best = max(others) if s.good == "high" else min(others)
                parts.append(f"{s.label} {mine[s.key]:.3g} (best of the shortlist {best:.3g})")
    if suggested is not None and suggested.plateau is not None:
        parts.append(f"drift has plateaued since {say(suggested.plateau)}")
    return parts or ["ranked first"]
