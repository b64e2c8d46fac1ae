"""Decision benchmark: how many interactions a person needs to name the best of a run's checkpoints, per strategy.

`python benchmarks/decide.py [--runs 200] [--budget 300] [--checkpoints 30] [--margin 0.7] [--seed 0] [--quick]`

Simulated runs with a known favourite; every strategy reviews the same runs (same seeds). One simulated run:

- **Checkpoints** e1..eN at epochs 10, 20, …, 10·N; x = epoch / last epoch (the fraction of the run).
- **Latent quality** q on the log-odds scale of a blind vote:
  q(x) = H·σ((x − x_e)/w) − D·s·softplus((x − x_p)/s) + J·ε, ε ~ N(0, 1) per checkpoint.
  The style emerges (a logistic of height H ~ U(2.5, 3.5) logits, width w ~ U(0.04, 0.06) of the run, midpoint
  x_e = x_p − U(0.10, 0.20)), then overcooks after the peak x_p ~ U(0.3, 0.7): q falls by D ~ U(6, 10) logits per
  run (0.2-0.33 a checkpoint at 30), smoothed over s = 0.03. J = 0.4 logits is each checkpoint's own luck.
  The favourite is argmax q. As drawn, a smooth curve makes the top two a near tie (median margin 0.18 logit:
  the person prefers the favourite in 54% of blind votes, which no strategy can resolve in 25 votes); a person
  who *has* a favourite prefers it visibly, so by default (``--margin`` 0.7) it is set 0.7 logit above the next
  best: preferred in 2 of 3 blind votes against its closest rival. A second table varies the margin (0 = as drawn).
- **Signals** from the truth, with noise: drift = 0.4·σ((x − x_e)/w) + N(0, 0.01) (rises, levels off);
  change = 0.03 + |Δ drift| + N(0, 0.005); diversity = 0.45·(1 − 0.65·σ((x − x_c)/0.04)) + N(0, 0.02), collapsing
  from x_c = x_p + U(0.15, 0.30) (the base: 0.45); a judge scorer ("scorer:judge", high is good) = q + N(0, sd)
  with sd = JUDGE_NOISE (0.3) × the range of q over the run. The shortlist is the real ``suggest_shortlist``
  (size 6) on these signals: the stretch of 6 checkpoints in a row with the best signals on average.
- **A voter** prefers i over j with probability σ(q_i − q_j), except for LAPSE = 5% random clicks.
- **Stars** (strategy D): clip(round(3 + (q − mean q of the shortlist)/0.8 + N(0, 0.7)), 1, 5).

Strategies (an interaction is one vote or one star rating):

- A. all pairs, round robin (before): ``next_blind_pair`` over all checkpoints, votes only;
- B. all checkpoints, active pairs: ``informative_pair`` (the leader against its strongest challenger, LUCB) over
  all of them, votes only;
- C. signal shortlist + active pairs: ``informative_pair`` among the 6 of ``suggest_shortlist``, votes only;
- F. signal shortlist + stars + active pairs, the shortlist fixed (before): the 6 rated first (6 interactions),
  then ``informative_pair`` among them with ``ratings=``;
- D. … the shortlist following its leader (now): F, but the shortlist is ``follow_leader``'s, as on the page:
  once all of it is rated, a leader at an end brings in the next checkpoint past it (at most 2), which is rated
  next (one interaction each), and the lowest-ranked of the others leaves (``make_room``: votes stay among 6).
  C and O follow the leader too (C's never moves: it has no ratings).
- O. oracle bound: D, but every vote pits the true favourite against its strongest rival of the moment (the
  highest strength ``fit_ranking`` gives any other). No person or rule can choose pairs that way (it knows the
  answer); it bounds what any pair rule can reach after the same shortlist and stars, with the same voters.

C, F and D cannot name a favourite the shortlist left out: that run counts as a failure. The recommendation after N
interactions is the posterior mode's best (``fit_ranking(...).theta`` argmax over those with evidence: the top row
of ``rank_votes``; ``vote_summary``'s 4000 draws at every step would cost minutes), evaluated at every N up to 40
and then every 5 (so a first N above 40 is rounded up to a multiple of 5). ``vote_summary`` is asked once, at 25
interactions, for how often the page would call the ranking settled and how often it is then right.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zbench.review.ranking import fit_ranking, informative_pair, next_blind_pair, vote_summary
from zbench.review.records import Vote
from zbench.review.shortlist import follow_leader, make_room, suggest_shortlist
from zbench.review.signals import BASE, CHANGE, DIVERSITY, DRIFT, Signal, SignalReport

JITTER = 0.4  # logits: each checkpoint's own deviation from the quality curve
MARGIN = 0.7  # logits: the favourite over the next best (a person prefers it in 2 of 3 blind votes); 0 = as drawn
SWEEP = (0.0, 0.3, 0.5, 0.7, 1.0)  # favourite margins of the second table
JUDGE_NOISE = 0.3  # the judge's noise sd, as a share of the range of q over the run
LAPSE = 0.05  # share of votes clicked at random
STAR_LOGIT, STAR_SD = 0.8, 0.7  # one star per 0.8 logit of quality above the shortlist's mean; noise in stars
SHORTLIST = 6
ALL_ACTIVE_BUDGET = 300  # interactions simulated for strategy B at most
AT = 25  # interactions: the target
MARKS = (10, 25, 50, 100, 200, 300)  # interactions shown in the curve table
CLEAR_MARGIN = 0.5  # logits: a favourite this far above its runner-up is "clear" (wins 62% against it)
JUDGE = Signal("scorer:judge", "judge", "high", "synthetic judge")
STRATEGIES = {
    "A": "all pairs, round robin (before)",
    "B": "all {n}, active pairs",
    "C": "signal shortlist + active pairs",
    "F": "signal shortlist + stars + active pairs, the shortlist fixed (before)",
    "D": "signal shortlist + stars + active pairs, the shortlist following its leader (now)",
    "O": "oracle bound: D's shortlist and stars, every vote the favourite vs its strongest rival",
}
FOLLOW = "CDO"  # strategies whose shortlist follows its leader past its ends (``follow_leader``)
RATE = "DFO"  # strategies that rate every checkpoint of the shortlist before voting


@dataclass
class World:
    """One simulated run: names, true quality q (logits), its favourite and top two, and the signal shortlist."""

    names: list[str]
    q: dict[str, float]
    favourite: str
    top2: set[str]
    margin: float  # logits between the favourite and the runner-up
    shortlist: list[str]
    candidates: list[str]  # those no signal ruled out, run order


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def make_world(
    n: int, rng: np.random.Generator, jitter: float = JITTER, judge_noise: float = JUDGE_NOISE, margin: float = MARGIN
) -> World:
    """A run of ``n`` checkpoints: the quality curve, its signals and the real shortlist (module docstring).

    ``jitter`` is each checkpoint's own luck (logits); ``judge_noise`` the judge's sd as a share of q's range.
    """
    x = np.arange(1, n + 1) / n
    peak = rng.uniform(0.3, 0.7)
    emerge, width = peak - rng.uniform(0.10, 0.20), rng.uniform(0.04, 0.06)
    rise = sigmoid((x - emerge) / width)
    q = rng.uniform(2.5, 3.5) * rise - rng.uniform(6, 10) * 0.03 * np.logaddexp(0, (x - peak) / 0.03)
    q = q + jitter * rng.standard_normal(n)
    if margin > 0:  # a known favourite: the best checkpoint stands ``margin`` logits above the next best
        best = int(np.argmax(q))
        q[best] = max(q[best], np.delete(q, best).max() + margin)
    drift = np.maximum(0.4 * rise + 0.01 * rng.standard_normal(n), 0.0)  # distances (1 − SSIM) are ≥ 0
    change = np.maximum(0.03 + np.abs(np.diff(drift, prepend=0.0)) + 0.005 * rng.standard_normal(n), 0.0)
    collapse = peak + rng.uniform(0.15, 0.30)
    diversity = 0.45 * (1 - 0.65 * sigmoid((x - collapse) / 0.04)) + 0.02 * rng.standard_normal(n)
    judge = q + judge_noise * (q.max() - q.min()) * rng.standard_normal(n)
    names = [f"e{i + 1}" for i in range(n)]
    values: dict[str, dict[str, float | None]] = {BASE: {"diversity": 0.45}}
    for i, name in enumerate(names):
        values[name] = {"drift": float(drift[i]), "change": None if i == 0 else float(change[i]),
                        "diversity": float(diversity[i]), "scorer:judge": float(judge[i])}  # fmt: skip
    epochs: dict[str, int | None] = {BASE: None, **{name: 10 * (i + 1) for i, name in enumerate(names)}}
    report = SignalReport([BASE, *names], [DRIFT, CHANGE, DIVERSITY, JUDGE], values, epochs, [], 4 * (n + 1), 4)
    order = np.argsort(-q)
    shortlist = suggest_shortlist(report, size=SHORTLIST)
    return World(names, dict(zip(names, q.tolist(), strict=True)), names[order[0]], {names[order[0]], names[order[1]]},
                 float(q[order[0]] - q[order[1]]), shortlist.names, shortlist.candidates)  # fmt: skip


def checks(budget: int) -> list[int]:
    """The interaction counts at which the recommendation is evaluated: every one up to 40, then every 5."""
    return sorted({*range(1, min(budget, 40) + 1), *range(45, budget + 1, 5), min(AT, budget), budget})


def limit(key: str, budget: int) -> int:
    """The interactions simulated for strategy ``key``."""
    return min(budget, ALL_ACTIVE_BUDGET) if key == "B" else budget


def leader(pool: list[str], votes: list[Vote], ratings: dict[str, int], tie: random.Random) -> str | None:
    """The recommendation: the posterior mode's best (the top row of ``rank_votes``), None without evidence.

    Names tied for the best (one win each, the same stars) are drawn among by ``tie``, not taken in run order.
    """
    if len(pool) == 1:
        return pool[0]
    fit = fit_ranking(pool, votes, ratings)
    if not fit.names:
        return None
    best = fit.leaders()
    return tie.choice([n for n in fit.names if n in best])


def review(world: World, key: str, budget: int, seed: int, run: int) -> tuple[dict[int, str | None], tuple, bool]:
    """One person reviewing ``world`` with strategy ``key`` for ``budget`` interactions.

    Returns:
        The recommendation at each of ``checks(budget)``, (settled, leader) of ``vote_summary`` at AT, and whether
        the favourite was among the checkpoints compared at AT.
    """
    stream = "D" if key == "F" else key  # F is D without following: the same person, the same choices until then
    rng = random.Random(f"{seed}:{run}:{stream}")  # the strategy's own choices (pair order, ties)
    tie = random.Random(f"{seed}:{run}:{stream}:leader")  # ties for the recommendation
    person = np.random.default_rng([seed, run, ord(stream)])  # the voter's and rater's noise
    pool = world.names if key in "AB" else world.shortlist
    mean = float(np.mean([world.q[n] for n in pool])) if pool else 0.0  # stars are relative to the first shortlist
    votes: list[Vote] = []
    ratings: dict[str, int] = {}
    wanted, out, summary, held = set(checks(budget)), {}, (False, None), key in "AB"
    for step in range(1, budget + 1):
        if key in FOLLOW:  # as ``decide()`` does for the page: grow past a leading end, then make room
            pool, joined = follow_leader(world.shortlist, world.names, world.candidates, votes, ratings)
            pool = make_room(pool, joined, SHORTLIST, votes, ratings)[0]
        unrated = [n for n in pool if n not in ratings]
        if key in RATE and unrated:
            stars = 3 + (world.q[unrated[0]] - mean) / STAR_LOGIT + STAR_SD * person.standard_normal()
            ratings[unrated[0]] = int(np.clip(round(stars), 1, 5))
        else:
            if key == "A":
                pair = next_blind_pair(pool, votes, rng)
            elif key == "O" and world.favourite in pool:
                pair = oracle_pair(pool, votes, ratings, world.favourite)
            else:
                pair = informative_pair(pool, votes, rng, ratings or None)
            if pair is not None:
                a, b = pair
                p = (1 - LAPSE) / (1 + math.exp(world.q[b] - world.q[a])) + LAPSE / 2
                winner, loser = (a, b) if person.random() < p else (b, a)
                votes.append(Vote(winner, loser, "a prompt", step, ""))
        if step in wanted:
            out[step] = leader(pool, votes, ratings, tie) if pool else None
        if step == min(AT, budget):
            held = held or world.favourite in pool
            if len(pool) > 1:
                s = vote_summary(pool, votes, ratings)
                summary = (bool(s["settled"]), s["leader"])
    return out, summary, held


def oracle_pair(pool: list[str], votes: list[Vote], ratings: dict[str, int], favourite: str) -> tuple[str, str]:
    """The favourite against the rival ``fit_ranking`` rates strongest now (unrated, unvoted rivals count as 0)."""
    fit = fit_ranking(pool, votes, ratings)
    theta = dict(zip(fit.names, fit.theta.tolist(), strict=True))
    return favourite, max((n for n in pool if n != favourite), key=lambda n: theta.get(n, 0.0))


def simulate_run(
    n: int, budget: int, seed: int, run: int, jitter: float, judge_noise: float, margin: float, keys: str
) -> dict:
    """One run: its world and the recommendations of strategies ``keys`` (a picklable dict, for a process pool)."""
    world = make_world(n, np.random.default_rng([seed, run]), jitter, judge_noise, margin)
    result = {"world": world}
    for key in keys:
        result[key] = review(world, key, limit(key, budget), seed, run)
    return result


def run_benchmark(
    runs: int, budget: int, checkpoints: int = 30, seed: int = 0, workers: int = 1,
    jitter: float = JITTER, judge_noise: float = JUDGE_NOISE, margin: float = MARGIN, keys: str = "ABCFDO",
) -> dict:  # fmt: skip
    """Simulate ``runs`` runs and summarise each strategy (see ``format_table``); the same seed, the same result
    whatever ``workers`` (processes).

    Returns:
        ``rows`` (one dict per strategy), ``margins`` (favourite − runner-up, logits, per run), the parameters.
    """
    jobs = [(checkpoints, budget, seed, r, jitter, judge_noise, margin, keys) for r in range(runs)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(simulate_run, *zip(*jobs, strict=True), chunksize=max(1, runs // (4 * workers))))
    else:
        results = [simulate_run(*job) for job in jobs]
    worlds = [r["world"] for r in results]
    clear = np.array([w.margin >= CLEAR_MARGIN for w in worlds])
    rows, at = [], min(AT, budget)
    for key, label in STRATEGIES.items():
        if key not in keys:
            continue
        recs = [r[key][0] for r in results]  # the recommendation at each check, per run
        named = {k: np.mean([rec[k] == w.favourite for rec, w in zip(recs, worlds, strict=True)])
                 for k in checks(limit(key, budget))}  # fmt: skip
        top2 = {k: np.mean([rec[k] in w.top2 for rec, w in zip(recs, worlds, strict=True)])
                for k in checks(limit(key, budget))}  # fmt: skip
        hit = np.array([rec[at] == w.favourite for rec, w in zip(recs, worlds, strict=True)])
        settled = [r[key][1][1] == w.favourite for r, w in zip(results, worlds, strict=True) if r[key][1][0]]
        rows.append({
            "key": key, "strategy": f"{key}. {label.format(n=checkpoints)}", "budget": limit(key, budget),
            "first": next((k for k in named if named[k] >= 0.9), None),
            "first_top2": next((k for k in top2 if top2[k] >= 0.9), None),
            "named": named[at], "top2": top2[at], "clear": float(hit[clear].mean()) if clear.any() else None,
            "curve": {k: (named[k], top2[k]) for k in MARKS if k in named},
            "in_shortlist": None if key in "AB" else float(np.mean([r[key][2] for r in results])),
            "settled": len(settled) / runs, "settled_right": float(np.mean(settled)) if settled else None,
        })  # fmt: skip
    margins = np.array([w.margin for w in worlds])
    return {"rows": rows, "margins": margins, "runs": runs, "budget": budget, "checkpoints": checkpoints,
            "seed": seed, "clear_runs": int(clear.sum()), "jitter": jitter, "judge_noise": judge_noise,
            "margin": margin}  # fmt: skip


def format_table(result: dict) -> str:
    """The markdown table of ``run_benchmark``'s result, one row per strategy."""
    at = min(AT, result["budget"])
    lines = [
        f"| strategy | interactions to name the favourite with ≥90% | … to name one of the top 2 with ≥90% "
        f"| named at {at} | top 2 at {at} | named at {at}, clear favourites only | favourite in shortlist "
        f"| 'settled' at {at} (then right) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        first, first2 = (f"> {r['budget']}" if k is None else str(k) for k in (r["first"], r["first_top2"]))
        shortlist = "all" if r["in_shortlist"] is None else f"{r['in_shortlist']:.0%}"
        clear = "—" if r["clear"] is None else f"{r['clear']:.0%}"
        right = "" if r["settled_right"] is None else f" ({r['settled_right']:.0%})"
        lines.append(f"| {r['strategy']} | {first} | {first2} | {r['named']:.0%} | {r['top2']:.0%} | {clear} "
                     f"| {shortlist} | {r['settled']:.0%}{right} |")  # fmt: skip
    return "\n".join(lines)


def format_curve(result: dict) -> str:
    """Named the favourite / one of the top 2 after each of MARKS interactions (blank past a strategy's budget)."""
    marks = [k for k in MARKS if k <= result["budget"]]
    lines = ["| strategy | " + " | ".join(f"{k}" for k in marks) + " |", "|---|" + "---:|" * len(marks)]
    for r in result["rows"]:
        cells = [f"{r['curve'][k][0]:.0%} / {r['curve'][k][1]:.0%}" if k in r["curve"] else "" for k in marks]
        lines.append(f"| {r['strategy']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def header(result: dict) -> str:
    m = result["margins"]
    return (
        f"decision benchmark: {result['runs']} simulated runs of {result['checkpoints']} checkpoints, budget "
        f"{result['budget']} interactions (B: {limit('B', result['budget'])}), seed {result['seed']}\n"
        f"quality curve: logistic rise H~U(2.5,3.5) logits, peak x_p~U(0.3,0.7) of the run, decline D~U(6,10) "
        f"logits/run, checkpoint jitter {result['jitter']}; voter: Bradley-Terry, lapse {LAPSE:.0%}; judge noise "
        f"{result['judge_noise']} x range of q; stars: 1 per {STAR_LOGIT} logit, sd {STAR_SD}; shortlist {SHORTLIST}\n"
        f"favourite set {result['margin']} logits above the next best (0: as the curve draws it); its margin "
        f"(logits): median {np.median(m):.2f}, 90th percentile "
        f"{np.quantile(m, 0.9):.2f}; within 0.7 in {np.mean(m < 0.7):.0%} of runs; 'clear' (≥ {CLEAR_MARGIN}) in "
        f"{result['clear_runs']} runs\n"
        "recommendation: fit_ranking's posterior mode (the top of rank_votes), checked at every interaction up to "
        "40, then every 5"
    )


def machine() -> str:
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        name = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                     if line.startswith("model name")), name)  # fmt: skip
    return f"{name}, {os.cpu_count()} cores, python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="simulated runs, each reviewed by every strategy")
    parser.add_argument("--budget", type=int, default=300, help="interactions simulated per review (default 300)")
    parser.add_argument("--checkpoints", type=int, default=30, help="checkpoints per run (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same table (default 0)")
    parser.add_argument("--jitter", type=float, default=JITTER, help=f"checkpoint luck, logits (default {JITTER})")
    parser.add_argument("--judge-noise", type=float, default=JUDGE_NOISE,
                        help=f"the judge's sd as a share of the range of q (default {JUDGE_NOISE})")  # fmt: skip
    parser.add_argument("--margin", type=float, default=MARGIN,
                        help=f"the favourite over the next best, logits (default {MARGIN}; 0: as drawn)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: the cores)")
    parser.add_argument("--quick", action="store_true", help="a shrunk run: 40 runs, budget 120")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.budget = 40, 120
    started = time.perf_counter()
    result = run_benchmark(args.runs, args.budget, args.checkpoints, args.seed, args.workers, args.jitter,
                           args.judge_noise, args.margin)  # fmt: skip
    # How the answer depends on how clear the favourite is: named at AT for each margin, the same runs otherwise.
    sweep = {m: run_benchmark(args.runs // 2, AT, args.checkpoints, args.seed, args.workers, args.jitter,
                              args.judge_noise, m, keys="ACFDO") for m in SWEEP}  # fmt: skip
    wall = time.perf_counter() - started
    print(header(result))
    print(f"machine: {machine()}; {args.workers} worker processes; wall {wall:.1f} s\n")
    print(format_table(result))
    print("\nnamed the favourite / one of the top 2, after this many interactions:\n")
    print(format_curve(result))
    print(f"\nnamed the favourite at {AT} interactions, by how clearly the person prefers it "
          f"({args.runs // 2} runs each; margin 0 = the curve as drawn, often a near tie):\n")  # fmt: skip
    print(format_sweep(sweep))
    return 0


def format_sweep(sweep: dict[float, dict]) -> str:
    """Named at AT (and one of the top 2) per favourite margin, one column per strategy."""
    keys = [r["key"] for r in next(iter(sweep.values()))["rows"]]
    names = {r["key"]: r["strategy"] for r in next(iter(sweep.values()))["rows"]}
    lines = ["| margin (logits) | person prefers it | " + " | ".join(names[k] for k in keys) + " |",
             "|---:|---:|" + "---:|" * len(keys)]  # fmt: skip
    for m, result in sweep.items():
        rows = {r["key"]: r for r in result["rows"]}
        prefers = "near tie" if m == 0 else f"{1 / (1 + math.exp(-m)):.0%}"
        cells = [f"{rows[k]['named']:.0%} ({rows[k]['top2']:.0%})" for k in keys]
        lines.append(f"| {m:g} | {prefers} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
