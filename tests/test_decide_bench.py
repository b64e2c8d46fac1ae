"""Keep the decision benchmark alive at a toy size; real figures come from `python benchmarks/decide.py`."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "decide.py"


def load_decide():
    spec = importlib.util.spec_from_file_location("decide_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_decide_bench_table_has_every_strategy_and_is_reproducible():
    decide = load_decide()
    result = decide.run_benchmark(runs=3, budget=30, checkpoints=10, seed=7)
    table = decide.format_table(result)
    lines = table.splitlines()
    assert len(lines) == 2 + len(decide.STRATEGIES)  # header, rule, one row per strategy
    assert len({line.count("|") for line in lines}) == 1  # every row has the header's columns
    assert [r["key"] for r in result["rows"]] == list(decide.STRATEGIES)
    for row in result["rows"]:
        assert 0 <= row["named"] <= row["top2"] <= 1  # the favourite is one of the top 2
        assert (row["in_shortlist"] is None) == (row["key"] in "AB")
    assert len(result["margins"]) == 3 and (result["margins"] >= 0).all()
    assert "named at 25" in table and "favourite in shortlist" in table
    curve = decide.format_curve(result).splitlines()  # columns: the marks within the budget (10 and 25)
    assert len(curve) == len(lines) and curve[0].count("|") == 4 and {line.count("|") for line in curve} == {4}
    again = decide.run_benchmark(runs=3, budget=30, checkpoints=10, seed=7)
    assert decide.format_table(again) == table
    assert (again["margins"] == result["margins"]).all()
    assert "judge noise" in decide.header(result)
    sweep = decide.format_sweep({m: decide.run_benchmark(2, 25, 10, 7, margin=m, keys="ACD") for m in (0.0, 0.7)})
    assert sweep.count("\n") == 3 and "near tie" in sweep and "67%" in sweep


def test_decide_bench_worlds_follow_the_model():
    """The favourite is argmax q, and the shortlist is the real suggest_shortlist's (at most 6, from the run)."""
    import numpy as np

    decide = load_decide()
    world = decide.make_world(30, np.random.default_rng([0, 1]))
    assert world.favourite == max(world.q, key=world.q.get) and world.favourite in world.top2
    assert 0 < len(world.shortlist) <= decide.SHORTLIST and set(world.shortlist) <= set(world.names)
    assert world.margin == world.q[world.favourite] - max(v for n, v in world.q.items() if n != world.favourite)
    assert world.margin >= decide.MARGIN - 1e-9  # a known favourite: preferred 2:1 over its closest rival
    assert decide.make_world(30, np.random.default_rng([0, 1]), margin=0).margin < decide.MARGIN
