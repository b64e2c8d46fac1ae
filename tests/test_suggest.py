"""The decision pipeline: a shortlist from signals, a recommendation with its evidence, and `zbench suggest`."""

from __future__ import annotations

import json

import pytest

from zbench import (
    DecisionStore,
    Review,
    Signal,
    SignalReport,
    Vote,
    edited_shortlist,
    follow_leader,
    make_room,
    recommend,
    suggest_shortlist,
)
from zbench.cli import main
from zbench.review.signals import CHANGE, DIVERSITY, DRIFT

JUDGE = Signal("scorer:judge", "judge", "high", "a judge")


def report(rows: dict[str, tuple], *, likeness: dict[str, float] | None = None) -> SignalReport:
    """A report over epochs: name -> (drift, diversity, judge); "base" has drift None."""
    signals = [DRIFT, CHANGE, DIVERSITY, JUDGE]
    values = {n: {"drift": d, "change": None, "diversity": v, "scorer:judge": j} for n, (d, v, j) in rows.items()}
    if likeness:
        signals.append(Signal("likeness:thumbnail", "likeness", "high", "closest training image"))
        for n, v in likeness.items():
            values[n]["likeness:thumbnail"] = v
    epochs = {n: None if n == "base" else int(n[1:]) for n in rows}
    return SignalReport(list(rows), signals, values, epochs, [], 10, 2)


RUN = {
    "base": (None, 0.30, 0.9),
    "e1": (0.02, 0.30, 0.9),  # barely changed from the base
    "e2": (0.10, 0.30, 0.9),
    "e3": (0.25, 0.32, 0.85),
    "e4": (0.30, 0.31, 0.88),
    "e5": (0.32, 0.30, 0.80),
    "e6": (0.33, 0.28, 0.70),
    "e7": (0.34, 0.12, 0.60),  # collapsed: the same picture whatever the seed
}


def test_the_shortlist_is_the_plateau_after_the_style_emerged_and_before_it_collapses():
    shortlist = suggest_shortlist(report(RUN), size=3)
    assert shortlist.names == ["e3", "e4", "e5"]
    assert "barely changed" in shortlist.reasons["e1"] and "barely changed" in shortlist.reasons["e2"]
    assert "seeds collapse" in shortlist.reasons["e7"] and "40% of the base's" in shortlist.reasons["e7"]
    assert "weaker signals" in shortlist.reasons["e6"] and "judge 0.7" in shortlist.reasons["e6"]
    assert shortlist.plateau == "e4"  # drift stays >= 80% of the largest from e4 on
    assert "base" not in shortlist.reasons
    assert list(shortlist.reasons) == sorted(shortlist.reasons, key=lambda n: int(n[1:]))  # run order, as listed
    assert suggest_shortlist(report(RUN), size=6).names == ["e3", "e4", "e5", "e6"]
    copying = suggest_shortlist(report(RUN, likeness={"e4": 0.99, "e5": 0.6}), size=3)
    assert "e4" not in copying.names and "copying" in copying.reasons["e4"]
    assert suggest_shortlist(report(RUN), usable=["e4", "e5"]).names == ["e4", "e5"]


def test_edits_keep_and_drop():
    order = ["e1", "e2", "e3", "e4"]
    assert edited_shortlist(["e2", "e3"], {}, order) == ["e2", "e3"]
    assert edited_shortlist(["e2", "e3"], {"e3": False, "e4": True}, order) == ["e2", "e4"]


def vote(winner, loser):
    return Vote(winner=winner, loser=loser, prompt="p", seed=1, when="2026-01-01T00:00:00+00:00")


def test_a_recommendation_is_proposed_only_on_clear_evidence():
    order = ["e1", "e2", "e3", "e4", "e5"]
    shortlist = ["e3", "e4", "e5"]
    labels = {n: f"epoch {n[1:]}" for n in order}
    sig = report(RUN)
    suggested = suggest_shortlist(sig, size=3)

    none = recommend(order, Review(), shortlist, report=sig, labels=labels)
    assert none.checkpoint is None and none.confidence == "none" and "epoch 3" in none.settle

    clear = Review(ratings={"e4": 5}, votes=[vote("e4", "e3")] * 5 + [vote("e4", "e5")] * 5 + [vote("e3", "e5")])
    rec = recommend(order, clear, shortlist, report=sig, suggested=suggested, labels=labels)
    assert rec.checkpoint == "e4" and rec.confidence == "clear" and rec.p_best >= 0.9
    assert rec.evidence.startswith("epoch 4: rated 5, won 10 of 10 votes against the shortlist")
    assert "seeds still diverse" in rec.evidence and "drift has plateaued since epoch 4" in rec.evidence
    assert rec.headline().startswith("Release epoch 4: ")

    # A 5-star checkpoint the votes put last: nothing is proposed, and the page says what would settle it.
    contradicted = Review(ratings={"e3": 5}, votes=[vote("e4", "e3")] * 4 + [vote("e5", "e3")] * 4)
    contradicted.votes += [vote("e4", "e5")] * 3
    rec = recommend(order, contradicted, shortlist, report=sig, labels=labels)
    assert rec.checkpoint is None and rec.conflicts and "epoch 3 is rated 5 but ranks 3 of 3" in rec.conflicts[0]

    # Rated alike and told apart by votes: no disagreement, the stars did not order them.
    alike = Review(ratings=dict.fromkeys(shortlist, 5), votes=[vote("e4", "e3")] * 6 + [vote("e4", "e5")] * 6)
    rec = recommend(order, alike, shortlist, report=sig, labels=labels)
    assert not rec.conflicts and rec.checkpoint == "e4" and rec.confidence == "clear"
    alike.ratings["e4"] = 4  # the votes' leader rated below a 5-star one they put last: that is a disagreement
    alike.votes += [vote("e5", "e3")] * 3
    assert "e3 is rated 5 but ranks 3 of 3" in recommend(order, alike, shortlist, report=sig).conflicts[0]

    early = Review(votes=[vote("e3", "e4")])
    rec = recommend(order, early, shortlist, report=sig, labels=labels)
    assert rec.checkpoint is None and rec.confidence in ("likely", "weak")
    assert "epoch 5" in rec.settle and "more vote" in rec.settle  # the unseen one, and about how many votes

    level = Review(votes=[vote("e3", "e4"), vote("e4", "e3")] * 4 + [vote("e3", "e5"), vote("e4", "e5")] * 3)
    rec = recommend(order, level, shortlist, report=sig, labels=labels)
    assert rec.confidence == "even" and rec.checkpoint is None and "either is a fine release" in rec.settle


@pytest.fixture()
def suggest_config(tmp_path, write_config, run_dir_small):
    signals = """
        [signals]
        seeds = "1, 2"
        quality = false
        scorers = ["zbench.demo.metrics:scene_score", "no_such_module_zb:score"]
    """
    return write_config(tmp_path / "suggest.toml", run_dir_small, signals)


@pytest.fixture()
def run_dir_small(tmp_path, make_lora):
    run = tmp_path / "run"
    for epoch in (5, 10, 20):
        make_lora(run / f"style_{epoch}.safetensors", rank=4, seed=epoch, strength=2.0 + epoch / 10)
    return run


def test_suggest_prints_signals_shortlist_ranking_and_recommendation(
    suggest_config, run_dir_small, capsys, monkeypatch
):
    monkeypatch.setenv("ZBENCH_CACHE_DIR", str(run_dir_small.parent / "cache"))
    DecisionStore(run_dir_small).set_rating("style_10.safetensors", 5)
    assert main(["suggest", "--config", str(suggest_config), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "signals from 8 images: 1 prompts x 2 seeds" in out
    assert "drift" in out and "diversity" in out and "higher is better" in out
    assert "no_such_module_zb" in out and "cannot be imported" in out  # a broken scorer is said, the rest runs
    assert "suggested shortlist" in out and "ranking of ratings and votes" in out and "rated 5" in out
    assert main(["suggest", str(run_dir_small), "--config", str(suggest_config), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in data["checkpoints"]] == [f"style_{e}.safetensors" for e in (5, 10, 20)]
    assert data["seeds"] == [1, 2] and data["signals"]["values"]["style_20.safetensors"]["drift"] > 0
    assert data["recommendation"]["leader"] == "style_10.safetensors" and data["base"]["diversity"] is not None
    assert main(["suggest", str(run_dir_small / "missing"), "--config", str(suggest_config)]) == 2
    assert "not a run folder" in capsys.readouterr().err


@pytest.mark.slow
def test_the_demo_shortlist_holds_the_middle_epochs(tmp_path, monkeypatch, capsys):
    """From signals alone, the shipped demo run's shortlist holds middle epochs: the glow has emerged and the
    shapes still hold; neither epoch 5 (barely changed from the base) nor epoch 300 (shapes lost)."""
    monkeypatch.setenv("ZBENCH_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["suggest", "--json"]) == 0  # configs/demo.toml and loras/dreamy, as the README shows
    data = json.loads(capsys.readouterr().out)
    short = [c["epoch"] for c in data["checkpoints"] if c["shortlist"]]
    assert 3 <= len(short) <= 6 and min(short) >= 20 and max(short) <= 150, short
    why = {c["epoch"]: c["why"] for c in data["checkpoints"]}
    assert "barely changed from the base" in why[5] and "weaker signals" in why[300]
    assert data["recommendation"]["confidence"] == "none"  # no ratings or votes yet: nothing proposed


def test_the_shortlist_is_a_stretch_of_the_run_not_scattered_lucky_scores():
    """A noisy scorer's lucky spike far from the good part of the run does not pull the shortlist apart: the
    shortlist is the stretch in a row with the best signals on average, and the spike is told why it is out."""
    rows = {"base": (None, 0.30, 0.5)}
    judge = [0.5, 0.8, 0.85, 0.9, 0.7, 0.3, 0.2, 0.95, 0.1]  # e8: one lucky score after the decline
    for i, j in enumerate(judge, start=1):
        rows[f"e{i}"] = (0.3, 0.30, j)
    shortlist = suggest_shortlist(report(rows), size=3)
    assert shortlist.names == ["e2", "e3", "e4"]  # not e8, the 3rd best score, nor a gap between e4 and e8
    assert "outside the shortlisted stretch epoch 2 to epoch 4" in shortlist.reasons["e8"]
    assert "weaker signals" in shortlist.reasons["e5"]
    flat = {n: (0.3, 0.30, 0.5) if n != "base" else v for n, v in rows.items()}
    assert suggest_shortlist(report(flat), size=3).names == ["e1", "e2", "e3"]  # no evidence: the earliest stretch


ORDER = [f"e{i}" for i in range(1, 10)]
CANDIDATES = ORDER[1:8]  # e1 barely changed, e9 collapsed: ruled out by the signals


def test_the_shortlist_follows_a_rated_leader_past_its_end():
    shortlist = ["e4", "e5", "e6"]
    labels = {n: f"epoch {n[1:]}" for n in ORDER}

    def follow(ratings, votes=(), **kw):
        return follow_leader(shortlist, ORDER, CANDIDATES, list(votes), ratings, labels=labels, **kw)

    # Nothing moves before every shortlisted checkpoint has a rating, nor while the leader is inside.
    assert follow({}) == (shortlist, {})
    assert follow({"e6": 5}, [vote("e6", "e4")] * 3) == (shortlist, {})
    assert follow({"e4": 3, "e5": 5, "e6": 3}) == (shortlist, {})
    # The leader at the last end: the next checkpoint joins, unseen; rated below the leader, nothing more.
    names, grown = follow({"e4": 3, "e5": 3, "e6": 5})
    assert names == ["e4", "e5", "e6", "e7"] and list(grown) == ["e7"]
    assert grown["e7"].startswith("joined the shortlist: epoch 6, the shortlist's last in run order, leads")
    assert follow({"e4": 3, "e5": 3, "e6": 5, "e7": 2})[0] == ["e4", "e5", "e6", "e7"]
    # The newcomer leads in turn: the one past it joins.
    names, grown = follow({"e4": 3, "e5": 3, "e6": 4, "e7": 5})
    assert names == ["e4", "e5", "e6", "e7", "e8"] and list(grown) == ["e7", "e8"]
    assert "epoch 7, the shortlist's last" in grown["e8"]
    # At most ``limit`` join; never one the signals ruled out (e9) or the user dropped.
    assert follow({"e4": 3, "e5": 3, "e6": 4, "e7": 4, "e8": 5})[0] == ["e4", "e5", "e6", "e7", "e8"]
    assert follow({"e4": 3, "e5": 3, "e6": 4, "e7": 5}, limit=1)[0] == ["e4", "e5", "e6", "e7"]
    assert follow({"e4": 3, "e5": 3, "e6": 5}, dropped=["e7"]) == (shortlist, {})
    # The first end: the one before joins; a tie at both ends grows the last first (one at a time).
    assert follow({"e4": 5, "e5": 3, "e6": 3})[0] == ["e3", "e4", "e5", "e6"]
    names, grown = follow({"e4": 5, "e5": 3, "e6": 5}, limit=1)
    assert names == ["e4", "e5", "e6", "e7"]
    assert "epoch 6, the shortlist's last in run order, shares the lead" in grown["e7"]
    # Past an end into checkpoints the signals ruled out: nothing.
    late = ["e6", "e7", "e8"]
    assert follow_leader(late, ORDER, CANDIDATES, [], {"e6": 3, "e7": 3, "e8": 5}) == (late, {})
    # A joined checkpoint that leads on its own votes stays after the shortlist's own leader moved inwards.
    moved = {"e4": 3, "e5": 4, "e6": 4, "e7": 3}
    votes = [vote("e5", "e6")] * 3 + [vote("e7", "e5")] * 4 + [vote("e7", "e6")] * 4
    names, grown = follow(moved, votes)
    assert "e7" in names and "it leads the ratings and votes, just past epoch 6" in grown["e7"]
    assert follow(moved, [vote("e5", "e6")] * 3)[0] == shortlist  # neither it nor its end leads: it leaves


def test_decide_grows_the_shortlist_and_records_why(tmp_path):
    from zbench.engine.checkpoints import Checkpoint
    from zbench.review.suggest import decide

    sig = report({"base": (None, 0.30, 0.5), **{f"e{i}": (0.3, 0.30, 0.9 if 3 <= i <= 5 else 0.5) for i in
                                               range(1, 8)}})  # fmt: skip
    run = [Checkpoint(f"e{i}", tmp_path / f"e{i}.safetensors", epoch=i) for i in range(1, 8)]
    review = Review(ratings={"e3": 3, "e4": 3, "e5": 5})
    dec = decide(run, [], review, report=sig, size=3)
    # e6 joins past the leader e5; e3 leaves to keep votes among 3 (e3 and e4 rated alike: the farther one).
    assert dec.suggested.names == ["e3", "e4", "e5"] and dec.shortlist == ["e4", "e5", "e6"]
    assert "joined the shortlist" in dec.grown["e6"] and dec.evidence()["grown"] == dec.grown
    assert dec.left["e3"].startswith("left the shortlist to make room for epoch 6: rated 3")
    assert dec.evidence()["left"] == dec.left
    assert "e3" in dec.recommendation.pool  # its rating still counts
    assert "e6" in dec.recommendation.summary["unseen"] and "rate or vote on" in dec.recommendation.settle
    dropped = decide(run, [], Review(ratings=review.ratings, shortlist={"e6": False}), report=sig, size=3)
    assert dropped.shortlist == ["e3", "e4", "e5"] and not dropped.grown and not dropped.left
    kept = decide(run, [], Review(ratings=review.ratings, shortlist={"e3": True}), report=sig, size=3)
    assert kept.shortlist == ["e3", "e5", "e6"] and list(kept.left) == ["e4"]  # e3 kept on purpose: e4 goes


def test_make_room_keeps_the_shortlist_at_its_size():
    pool = ["e3", "e4", "e5", "e6", "e7"]
    joined = {"e6": "joined", "e7": "joined"}
    ratings = {"e3": 2, "e4": 4, "e5": 4, "e6": 5, "e7": 3}
    # Two joined, size 3: the two lowest of the others leave (e3 rated 2, then e4 or e5: the farther from e6/e7).
    names, left = make_room(pool, joined, 3, [], ratings)
    assert names == ["e5", "e6", "e7"] and list(left) == ["e3", "e4"]
    # Never more than joined, never below what the user made longer, never a leader, kept or joined one.
    assert make_room(pool, {"e7": "joined"}, 3, [], ratings)[0] == ["e4", "e5", "e6", "e7"]
    assert make_room(pool, joined, 5, [], ratings) == (pool, {})
    assert make_room(pool, joined, 3, [], ratings, kept=["e3"])[0] == ["e3", "e6", "e7"]
    lead = {"e3": 5, "e4": 4, "e5": 4, "e6": 3, "e7": 3}
    assert make_room(pool, joined, 3, [], lead)[0] == ["e3", "e6", "e7"]
    # Votes count: e4 lost every vote to e5.
    votes = [vote("e5", "e4")] * 4
    assert make_room(pool, {"e7": "joined"}, 4, votes, ratings, kept=["e3"])[0] == ["e3", "e5", "e6", "e7"]


def test_suggest_says_which_checkpoint_joined_the_shortlist(tmp_path, write_config, run_dir_small, capsys, monkeypatch):
    monkeypatch.setenv("ZBENCH_CACHE_DIR", str(tmp_path / "cache"))
    config = write_config(tmp_path / "two.toml", run_dir_small, '[signals]\nseeds = "1, 2"\nshortlist = 2')
    order = [f"style_{e}.safetensors" for e in (5, 10, 20)]
    assert main(["suggest", "--config", str(config), "--json", "--quiet"]) == 0
    suggested = [c["name"] for c in json.loads(capsys.readouterr().out)["checkpoints"] if c["shortlist"]]
    assert len(suggested) == 2
    end, past = (suggested[-1], 1) if suggested[-1] != order[-1] else (suggested[0], -1)
    joined = order[order.index(end) + past]
    store = DecisionStore(run_dir_small)
    for name in suggested:
        store.set_rating(name, 5 if name == end else 3)
    assert main(["suggest", "--config", str(config), "--quiet"]) == 0
    out = capsys.readouterr().out
    label = f"epoch {joined.split('_')[1].split('.')[0]}"
    assert [line.split()[2] for line in out.splitlines() if line.startswith(f"  {label} ")] == ["joined"]
    assert "your edits" not in out  # joining is not an edit of the user's
    assert main(["suggest", "--config", str(config), "--json", "--quiet"]) == 0
    data = json.loads(capsys.readouterr().out)
    row = next(c for c in data["checkpoints"] if c["name"] == joined)
    assert row["shortlist"] and row["why"].startswith("joined the shortlist") and joined in data["grown"]


def test_suggest_says_why_a_checkpoint_could_not_render(tmp_path, write_config, run_dir_small, capsys, monkeypatch):
    """A checkpoint whose header reads but whose tensors are NaN fails when it is loaded to render: its row, its
    shortlist line and the JSON say why, and the rest of the run is measured and shortlisted as before."""
    from safetensors.torch import load_file, save_file

    monkeypatch.setenv("ZBENCH_CACHE_DIR", str(tmp_path / "cache"))
    state = load_file(run_dir_small / "style_20.safetensors")
    first = next(iter(state))
    save_file({**state, first: state[first].clone().fill_(float("nan"))}, run_dir_small / "style_30.safetensors")
    config = write_config(tmp_path / "nan.toml", run_dir_small, '[signals]\nseeds = "1, 2"\nquality = false')
    assert main(["suggest", "--config", str(config), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "base and 3 checkpoints (1 with errors, below)" in out
    row = next(line for line in out.splitlines() if line.startswith("style_30.safetensors"))
    assert "could not render" in row and "NaN" in row
    assert any(line.split()[:2] == ["epoch", "30"] and "could not render" in line for line in out.splitlines())
    assert main(["suggest", "--config", str(config), "--json", "--quiet"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {c["name"]: c for c in data["checkpoints"]}
    assert "NaN" in rows["style_30.safetensors"]["error"] and not rows["style_30.safetensors"]["shortlist"]
    assert rows["style_30.safetensors"]["why"].startswith("could not render")
    assert rows["style_20.safetensors"]["error"] is None and rows["style_20.safetensors"]["signals"]["drift"] > 0
