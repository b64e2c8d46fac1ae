"""Keep the swap benchmark alive at a toy size; real figures come from `python -m zbench bench swap`."""

from zbench.bench.swap import bench_swap, format_table


def test_bench_swap_runs_and_reports_ratios():
    result = bench_swap(
        rank=4, dim=256, layers=1, refiner_layers=1, repeats=2, dtype="float32", loha_rank=2, progress=lambda m: None
    )
    assert result.modules == 3 * 7  # q, k, v, out, w1, w2, w3 of each block
    table = format_table(result)
    for method in ("zbench swap", "memcpy floor", "hotswap=True", "unload + load_lora_weights"):
        assert method in table
    assert "ours / memcpy floor" in table and "(unload+load) / ours" in table
    assert "LoKr cached swap / LoRA cached swap" in table and "LoHa cached swap / LoRA cached swap" in table
    assert result.sizes["LoKr"] > 0 and result.sizes["LoHa"] > 0


def test_bench_grid_runs_every_phase_and_reports_the_targets(tmp_path, monkeypatch):
    """The grid benchmark's own code, on Z-Image-Turbo's configs shrunk to a toy width (same keys)."""
    import json

    from zbench.bench import grid

    for name in ("transformer", "text_encoder", "vae", "scheduler"):
        config = json.loads((grid.ARCHITECTURE / f"{name}.json").read_text())
        if name == "transformer":
            config.update(dim=64, n_heads=2, n_kv_heads=2, axes_dims=[8, 12, 12], cap_feat_dim=32)
        elif name == "text_encoder":
            config.update(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_key_value_heads=2,
                          head_dim=16, vocab_size=300)  # fmt: skip
        elif name == "vae":
            config.update(block_out_channels=[16, 16, 16, 16], norm_num_groups=8, latent_channels=16)
        (tmp_path / f"{name}.json").write_text(json.dumps(config))
    monkeypatch.setattr(grid, "ARCHITECTURE", tmp_path)
    result = grid.bench_grid(
        size=32, steps=2, k=3, rank=4, layers=1, refiner_layers=1, text_layers=1, device="cpu", dtype="float32",
        peak_tflops=1.0, backend="eager", progress=lambda m: None,
    )  # fmt: skip
    assert [p.name for p in result.phases] == [
        "zbench, first visits, read-ahead off",
        "zbench, first visits, read-ahead on",
        "zbench, cached swaps",
        "diffusers unload + load per checkpoint",
        "zbench compiled, first visits, read-ahead on",
        "zbench compiled, cached swaps",
    ]
    assert all(len(p.render_ms) == 4 and len(p.swap_ms) == 3 and p.overhead >= 1 for p in result.phases)
    table = grid.format_grid_table(result)
    assert "overhead (wall / sum of renders)" in table and "naive loop / zbench" in table
    # Compiled rows: dynamo traced once, before the grids; no checkpoint or the base column recompiled.
    assert result.compiled == "eager, repeated blocks (ZImageTransformerBlock)" and result.recompiles == 0
    assert result.compile_s > 0 and "render time eager / compiled" in table
    # Model FLOPs from the shrunk architecture: 2 steps of 4 image and the prompt's caption tokens, against a peak.
    assert result.image_flops > 0 and "| s/image | TFLOP/s | x floor |" in table and "the floor is" in table
