"""Blind pairwise votes turned into a ranking (Bradley-Terry), and the next pair to show."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Sequence

from .records import Vote

__all__ = ["next_blind_pair", "rank_votes"]

PRIOR_GAMES = 1.0  # virtual games each checkpoint plays (and half wins) against a strength-1 reference
MM_ITERATIONS = 200  # Bradley-Terry MM steps; each is O(pairs), so this is instant for any real run


def rank_votes(names: Sequence[str], votes: Sequence[Vote]) -> list[dict]:
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
