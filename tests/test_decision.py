"""Ratings, notes, blind votes and the release record, kept in <run>/.zbench/."""

from __future__ import annotations

import itertools
import json
import random
import threading
from collections import Counter

import pytest
import torch

from zbench import DecisionError, DecisionStore, Vote, default_user, next_blind_pair
from zbench.demo.toy import save_lora
from zbench.engine.checkpoints import Checkpoint, scan_run


def write_run(folder, epochs=(1, 2, 3), *, seed=0):
    """A run of tiny LoRA files (one module, rank 2), scanned like the page does."""
    gen = torch.Generator().manual_seed(seed)
    for epoch in epochs:
        state = {
            "layers.0.attention.to_q.lora_A.weight": torch.randn(2, 8, generator=gen),
            "layers.0.attention.to_q.lora_B.weight": torch.randn(8, 2, generator=gen),
        }
        save_lora(folder / f"run_{epoch}.safetensors", state)
    return scan_run(folder)


def vote(winner, loser, seed=0):
    return Vote(winner=winner, loser=loser, prompt="p", seed=seed, when="2026-01-01T00:00:00+00:00")


def test_round_trip_survives_restart(tmp_path):
    store = DecisionStore(tmp_path)
    assert store.load().ratings == {} and store.release() is None  # absent files = empty state
    store.set_rating("a.safetensors", 4, hash="aaa")
    store.set_note("a.safetensors", "crisp eyes, hands melt", hash="aaa")
    store.set_note("b.safetensors", "overcooked")
    store.add_vote("a.safetensors", "b.safetensors", prompt="a cat", seed=7)

    review = DecisionStore(tmp_path).load()  # a new instance, as after a restart
    assert review.ratings == {"a.safetensors": 4}
    assert review.notes == {"a.safetensors": "crisp eyes, hands melt", "b.safetensors": "overcooked"}
    assert review.hashes == {"a.safetensors": "aaa"}
    (v,) = review.votes
    assert (v.winner, v.loser, v.prompt, v.seed) == ("a.safetensors", "b.safetensors", "a cat", 7)
    assert v.when.endswith("+00:00")
    assert store.path == tmp_path / ".zbench" / "review.json"

    review = store.set_rating("a.safetensors", None)
    review = store.set_note("b.safetensors", "")
    assert review.ratings == {} and review.notes == {"a.safetensors": "crisp eyes, hands melt"}


@pytest.mark.parametrize("stars", [0, 6, 7, 2.5, True, "5"])
def test_rating_out_of_range_is_refused(tmp_path, stars):
    with pytest.raises(ValueError, match=r"should be 1-5 stars .*got"):
        DecisionStore(tmp_path).set_rating("a", stars)
    assert not DecisionStore(tmp_path).path.exists()


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path):
    store = DecisionStore(tmp_path)
    for i in range(5):
        store.set_rating(f"c{i}", 1 + i % 5)
    files = sorted(p.name for p in store.path.parent.iterdir())
    assert files == [".lock", "review.json"]  # the lock file that processes share stays
    json.loads(store.path.read_text())  # always complete JSON


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not an object"),
        ('{"ratings": {"a": 9}}', "malformed 'ratings'"),
        ('{"votes": [{"winner": "a"}]}', "malformed 'votes'"),
        ('{"version": 99}', "newer than this zbench"),
        ('{"shortlist": {"a": "yes"}}', "malformed 'shortlist'"),
        ('{"shortlist": ["a"]}', "malformed 'shortlist'"),
    ],
)
def test_corrupt_file_raises_and_is_left_untouched(tmp_path, content, problem):
    store = DecisionStore(tmp_path)
    store.path.parent.mkdir()
    store.path.write_text(content)
    with pytest.raises(DecisionError, match=problem) as err:
        store.load()
    assert str(store.path) in str(err.value)
    with pytest.raises(DecisionError, match=r"(?i)move it aside"):
        store.set_rating("a", 3)
    assert store.path.read_text() == content


def test_shortlist_edits_round_trip_and_a_version_1_file_still_reads(tmp_path):
    store = DecisionStore(tmp_path)
    store.path.parent.mkdir()
    store.path.write_text('{"version": 1, "ratings": {"a": 4}}')  # written by the zbench before shortlists
    assert store.load().shortlist == {} and store.load().ratings == {"a": 4}
    store.set_shortlist("b", True)
    store.set_shortlist("c", False)
    assert DecisionStore(tmp_path).load().shortlist == {"b": True, "c": False}
    assert store.set_shortlist("b", None).shortlist == {"c": False}  # back to the suggestion
    assert json.loads(store.path.read_text())["version"] == 2


def test_concurrent_writers_all_persist(tmp_path):
    start = threading.Barrier(8)
    errors = []

    def work(i):
        try:
            store = DecisionStore(tmp_path)  # each session makes its own store
            start.wait()
            for _ in range(3):
                store.set_rating(f"ck{i}", 1 + i % 5, hash=f"h{i}")
                store.set_note(f"ck{i}", f"note {i}")
        except Exception as err:  # surfaced below; a thread's exception is otherwise lost
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    review = DecisionStore(tmp_path).load()
    assert review.ratings == {f"ck{i}": 1 + i % 5 for i in range(8)}
    assert review.notes == {f"ck{i}": f"note {i}" for i in range(8)}
    assert review.hashes == {f"ck{i}": f"h{i}" for i in range(8)}


def test_ranking_orders_a_consistent_vote_set(tmp_path):
    store = DecisionStore(tmp_path)
    for winner, loser, times in [("A", "B", 3), ("B", "C", 3), ("A", "C", 3), ("B", "A", 1), ("C", "B", 1)]:
        for _ in range(times):
            store.add_vote(winner, loser, prompt="p", seed=0)
    rows = store.ranking(["C", "B", "A", "D"])
    assert [r["name"] for r in rows] == ["C", "B", "A", "D"]  # the caller's order
    by_name = {r["name"]: r for r in rows}
    assert [by_name[n]["rank"] for n in "ABC"] == [1, 2, 3]
    assert by_name["A"]["score"] > by_name["B"]["score"] > by_name["C"]["score"] > 0
    assert (by_name["A"]["wins"], by_name["A"]["losses"]) == (6, 1)
    assert by_name["D"] == {
        "name": "D", "wins": 0, "losses": 0, "score": None, "low": None, "high": None, "rank": None, "p_best": None
    }  # fmt: skip
    assert by_name["A"]["low"] < by_name["A"]["score"] < by_name["A"]["high"]  # a 95% interval


def test_ranking_keeps_undefeated_and_winless_finite(tmp_path):
    store = DecisionStore(tmp_path)
    for _ in range(5):
        store.add_vote("A", "B", prompt="p", seed=0)
        store.add_vote("B", "C", prompt="p", seed=0)
    store.add_vote("gone.safetensors", "A", prompt="p", seed=0)  # not in names: ignored
    rows = {r["name"]: r for r in store.ranking(["A", "B", "C"])}
    scores = [rows[n]["score"] for n in "ABC"]
    assert all(0 < s < 1e6 for s in scores) and scores == sorted(scores, reverse=True)
    assert rows["A"]["losses"] == 0 and [rows[n]["rank"] for n in "ABC"] == [1, 2, 3]


def test_ties_share_a_rank(tmp_path):
    store = DecisionStore(tmp_path)
    store.add_vote("A", "B", prompt="p", seed=0)
    store.add_vote("B", "A", prompt="p", seed=1)
    assert [r["rank"] for r in store.ranking(["A", "B"])] == [1, 1]


def test_vote_needs_two_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="two different"):
        DecisionStore(tmp_path).add_vote("A", "A", prompt="p", seed=0)


def test_next_blind_pair_covers_every_pair_before_repeating():
    names = ["e1", "e2", "e3", "e4", "e5"]
    rng, votes, firsts = random.Random(0), [], Counter()
    pairs = list(itertools.combinations(names, 2))
    for round_ in range(2):
        shown = []
        for _ in pairs:
            left, right = next_blind_pair(names, votes, rng)
            firsts[left] += 1
            shown.append(frozenset((left, right)))
            votes.append(vote(left, right))
        assert sorted(shown, key=sorted) == sorted(map(frozenset, pairs), key=sorted), round_
    assert len(firsts) == len(names)  # every name appears on the left at some point: order is random
    assert next_blind_pair(["only"], [], rng) is None
    assert next_blind_pair([], [], rng) is None


def test_next_blind_pair_is_reproducible_with_a_seed():
    names = ["a", "b", "c", "d"]
    assert next_blind_pair(names, [], random.Random(3)) == next_blind_pair(names, [], random.Random(3))


def test_mark_release_writes_record_and_history(tmp_path):
    cks = write_run(tmp_path)
    store = DecisionStore(cks[0].run_dir)
    store.set_rating(cks[1].name, 5, hash=cks[1].hash)
    store.set_note(cks[1].name, "best hands", hash=cks[1].hash)
    store.add_vote(cks[1].name, cks[0].name, prompt="p", seed=1)

    record = store.mark_release(
        cks[1], who="ana", sheet="sheets/a.png", reason="cleanest", settings={"steps": 8, "seeds": [1, 2]}
    )
    assert record["checkpoint"] == "run_2.safetensors" and record["hash"] == cks[1].hash
    assert (record["epoch"], record["who"], record["reason"]) == (2, "ana", "cleanest")
    assert (record["rating"], record["note"], record["sheet"]) == (5, "best hands", "sheets/a.png")
    assert record["ranking"][0]["name"] == cks[1].name and record["settings"]["steps"] == 8
    assert DecisionStore(tmp_path).release() == record

    second = store.mark_release(cks[2], who=default_user())
    history = [json.loads(line) for line in store.history_path.read_text().splitlines()]
    assert [h["checkpoint"] for h in history] == ["run_2.safetensors", "run_3.safetensors"]
    assert store.release() == second and store.release_path.name == "release.json"
    assert sorted(p.name for p in store.path.parent.iterdir()) == [
        ".lock",
        "release.json",
        "releases.jsonl",
        "review.json",
    ]


def test_mark_release_refuses_a_file_changed_since_the_scan(tmp_path):
    cks = write_run(tmp_path)
    seen = cks[1].hash  # read on first use, as a render or the release table does
    write_run(tmp_path, epochs=(2,), seed=1)  # run_2 replaced after it was seen
    assert cks[1].hash == seen
    with pytest.raises(DecisionError, match="changed on disk"):
        DecisionStore(tmp_path).mark_release(cks[1], who="ana")
    with pytest.raises(FileNotFoundError, match="rescan"):
        DecisionStore(tmp_path).mark_release(Checkpoint(name="x", path=tmp_path / "x.safetensors"), who="ana")
    assert DecisionStore(tmp_path).release() is None


def test_a_replaced_file_makes_its_rating_stale(tmp_path):
    (old,) = write_run(tmp_path, epochs=(1,))
    store = DecisionStore(tmp_path)
    review = store.set_rating(old.name, 3, hash=old.hash)
    assert not review.stale(old.name, old.hash)
    (new,) = write_run(tmp_path, epochs=(1,), seed=5)
    assert new.name == old.name and new.hash != old.hash
    assert store.load().stale(new.name, new.hash)
    assert not store.load().stale("never-rated", new.hash)
    assert not store.set_rating(new.name, 4, hash=new.hash).stale(new.name, new.hash)


def test_vote_summary_says_when_the_leader_is_clear():
    from zbench import vote_summary

    names = ["A", "B", "C"]
    assert vote_summary(names, [])["leader"] is None
    close = [vote("A", "B"), vote("B", "A"), vote("A", "B"), vote("A", "C"), vote("B", "C")]
    summary = vote_summary(names, close)
    assert summary["leader"] == "A" and not summary["settled"] and summary["more"] > 0 and summary["votes"] == 5
    clear = [vote("A", "B")] * 25 + [vote("B", "C")] * 25 + [vote("A", "C")] * 25
    summary = vote_summary(names, clear)
    assert summary["leader"] == "A" and summary["settled"] and summary["more"] is None
    level = [vote("A", "B"), vote("B", "A")]
    assert 1 <= vote_summary(["A", "B"], level)["more"] <= 30  # bounded, never hundreds for a level start
    even = vote_summary(["A", "B"], level * 5)  # 10 votes, 5 each: a person cannot tell them apart
    assert even["even"] and even["more"] is None and not even["settled"]


def test_ratings_and_votes_combine():
    from zbench.review.ranking import rank_votes, vote_summary

    names = ["e10", "e14", "e20", "e28"]
    # Ratings alone rank, with wide intervals; no vote makes them certain.
    rows = {r["name"]: r for r in rank_votes(names, [], {"e14": 5, "e20": 5, "e28": 3})}
    assert rows["e10"]["score"] is None and rows["e14"]["rank"] == 1 and rows["e28"]["rank"] == 3
    assert rows["e14"]["p_best"] == pytest.approx(rows["e20"]["p_best"], abs=0.05)
    # A 5-star rating against a few lost votes: the votes move it, but one lost vote does not bury it.
    one = rank_votes(["e14", "e28"], [vote("e28", "e14")], {"e14": 5, "e28": 3})
    assert one[0]["rank"] == 1
    many = rank_votes(["e14", "e28"], [vote("e28", "e14")] * 8, {"e14": 5, "e28": 3})
    assert many[1]["rank"] == 1
    summary = vote_summary(names, [vote("e14", "e20")] * 6, {"e14": 5, "e20": 5, "e28": 3})
    assert summary["leader"] == "e14" and summary["unseen"] == ["e10"] and not summary["settled"]
    assert sum(r["p_best"] for r in rank_votes(names[1:], [], {"e14": 5, "e20": 4, "e28": 1})) == pytest.approx(1)


def test_informative_pair_asks_about_the_uncertain_top():
    from zbench import informative_pair

    rng = random.Random(0)
    # Every checkpoint has votes; A and B both beat everyone else but never met: that match is the question.
    votes = []
    for strong in "AB":
        for weak in "CDE":
            votes += [vote(strong, weak)] * 4
    votes += [vote("C", "D"), vote("D", "E")]
    for _ in range(10):
        assert set(informative_pair(list("ABCDE"), votes, rng)) == {"A", "B"}
    # Before every checkpoint has a vote, the least compared pairs come first (E has none).
    first = {frozenset(informative_pair(list("ABCDE"), votes[:4], rng)) for _ in range(20)}
    assert all(pair != frozenset("AC") for pair in first)
    assert informative_pair(["A"], [], rng) is None


def test_informative_pair_tests_the_leader_against_the_rival_that_could_overturn_it():
    from zbench import informative_pair

    rng = random.Random(0)
    # Rated A 5, B 4, C 4, D 1. A has beaten B often; C has never met A: C is the open question, not D.
    votes = [vote("A", "B")] * 6
    ratings = {"A": 5, "B": 4, "C": 4, "D": 1}
    for _ in range(10):
        assert set(informative_pair(list("ABCD"), votes, rng, ratings)) == {"A", "C"}
    # Once C has lost to A as often, B and C are equally far behind: either may be asked, always against A.
    votes += [vote("A", "C")] * 6
    pairs = {frozenset(informative_pair(list("ABCD"), votes, rng, ratings)) for _ in range(30)}
    assert pairs == {frozenset("AB"), frozenset("AC")}
