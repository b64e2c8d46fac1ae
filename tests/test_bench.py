"""Keep the swap benchmark alive at a toy size; real figures come from `python -m zbench bench swap`."""

from zbench.bench.swap import bench_swap, format_table


def test_bench_swap_runs_and_reports_ratios():
    result = bench_swap(
        rank=4, dim=256, layers=1, refiner_layers=1, repeats=2, dtype="float32", progress=lambda m: None
    )
    assert result.modules == 3 * 7  # q, k, v, out, w1, w2, w3 of each block
    table = format_table(result)
    for method in ("zbench swap", "memcpy floor", "hotswap=True", "unload + load_lora_weights"):
        assert method in table
    assert "ours / memcpy floor" in table and "(unload+load) / ours" in table
