"""Blind pairwise votes turned into a ranking (Bradley-Terry), and the next pair to show."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Sequence

import numpy as np

from .records import Vote

__all__ = ["informative_pair", "next_blind_pair", "rank_votes", "vote_summary"]

PRIOR_GAMES = 1.0  # virtual games each checkpoint plays (and half wins) against a strength-1 reference
Z95 = 1.96  # a 95% interval, in standard errors
MM_ITERATIONS = 200  # Bradley-Terry MM steps; each is O(pairs), so this is instant for any real run


def _fit(names: Sequence[str], votes: Sequence[Vote]):
    """Bradley-Terry strengths by minorisation-maximisation (Hunter 2004), with the vote counts."""
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
    return strength, wins, losses, games, players, len(counted)


def _covariance(strength: dict[str, float], games: Counter, players: list[str]) -> np.ndarray:
    """Covariance of the log-strengths: the inverse of the Fisher information (the virtual games against
    the strength-1 reference included, which make it invertible)."""
    index = {p: k for k, p in enumerate(players)}
    info = np.zeros((len(players), len(players)))
    for p in players:
        q = strength[p] / (strength[p] + 1.0)
        info[index[p], index[p]] += PRIOR_GAMES * q * (1 - q)
    for pair, n in games.items():
        a, b = sorted(pair)
        q = strength[a] / (strength[a] + strength[b])
        w = n * q * (1 - q)
        i, j = index[a], index[b]
        info[i, i] += w
        info[j, j] += w
        info[i, j] -= w
        info[j, i] -= w
    return np.linalg.inv(info)


def rank_votes(names: Sequence[str], votes: Sequence[Vote]) -> list[dict]:
    """Rank checkpoints by their blind votes (Bradley-Terry), in the order of ``names``.

    Each checkpoint also plays ``PRIOR_GAMES`` virtual games against a reference of strength 1,
    winning half: this keeps an undefeated checkpoint finite and anchors the scale.

    Returns:
        One dict per name: ``name``, ``wins``, ``losses``, ``score`` (strength; 1.0 = even odds against
        the reference), ``low`` and ``high`` (its 95% interval) and ``rank`` (1 = best, ties share a
        rank); the last four are None for a name without votes.
    """
    strength, wins, losses, games, players, _ = _fit(names, votes)
    se = {}
    if players:
        cov = _covariance(strength, games, players)
        se = {p: math.sqrt(max(cov[k, k], 0.0)) for k, p in enumerate(players)}
    ordered = sorted(strength.values(), reverse=True)
    rows = []
    for name in names:
        score = strength.get(name)
        # Competition ranking: ties (within rounding) share the better rank.
        rank = None if score is None else 1 + sum(s > score * (1 + 1e-9) for s in ordered)
        low = None if score is None else score * math.exp(-Z95 * se[name])
        high = None if score is None else score * math.exp(Z95 * se[name])
        rows.append(
            {"name": name, "wins": wins[name], "losses": losses[name], "score": score, "low": low, "high": high,
             "rank": rank}
        )  # fmt: skip
    return rows


def vote_summary(names: Sequence[str], votes: Sequence[Vote]) -> dict:
    """Whether the blind votes have a clear leader yet, for the page to say.

    Returns:
        ``leader`` (the best-ranked name, or None without votes), ``settled`` (the leader is ahead of
        the second by more than 1.96 standard errors of their difference), ``more`` (about how many more
        votes would settle it at the current margin; None when settled, or when the two are level and no
        number of votes can be named) and ``votes`` (counted votes).
    """
    strength, _, _, games, players, counted = _fit(names, votes)
    if len(players) < 2:
        leader = players[0] if players else None
        return {"leader": leader, "settled": False, "more": None, "votes": counted}
    cov = _covariance(strength, games, players)
    index = {p: k for k, p in enumerate(players)}
    first, second = sorted(players, key=lambda p: -strength[p])[:2]
    i, j = index[first], index[second]
    gap = math.log(strength[first]) - math.log(strength[second])
    se = math.sqrt(max(cov[i, i] + cov[j, j] - 2 * cov[i, j], 1e-12))
    settled = gap > Z95 * se
    more = None
    if not settled and gap > 1e-9:
        # Standard errors shrink as 1/sqrt(votes): votes needed for this gap to reach 1.96 of them.
        more = max(1, math.ceil(counted * ((Z95 * se / gap) ** 2 - 1)))
    return {"leader": first, "settled": settled, "more": more, "votes": counted}


def informative_pair(names: Sequence[str], votes: Sequence[Vote], rng: random.Random) -> tuple[str, str] | None:
    """The pair whose next vote tells the most about the top of the ranking, in random order.

    Until every checkpoint has a vote this is :func:`next_blind_pair` (cover everything first). Then,
    among pairs with one of the three best, the one that maximises p(1-p) x Var(log s_a - log s_b):
    a close match whose outcome is still uncertain.
    """
    unique = list(dict.fromkeys(names))
    strength, _, _, games, players, _ = _fit(unique, votes)
    if len(unique) < 2 or set(players) != set(unique):
        return next_blind_pair(unique, votes, rng)
    cov = _covariance(strength, games, players)
    index = {p: k for k, p in enumerate(players)}
    top = sorted(players, key=lambda p: -strength[p])[:3]

    def value(pair: tuple[str, str]) -> float:
        a, b = pair
        q = strength[a] / (strength[a] + strength[b])
        i, j = index[a], index[b]
        return q * (1 - q) * (cov[i, i] + cov[j, j] - 2 * cov[i, j])

    pairs = [p for p in itertools.combinations(unique, 2) if p[0] in top or p[1] in top]
    best = max(value(p) for p in pairs)
    left, right = rng.choice([p for p in pairs if value(p) >= best * (1 - 1e-9)])
    return (left, right) if rng.random() < 0.5 else (right, left)


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
