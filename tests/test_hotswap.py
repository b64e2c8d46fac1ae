"""Hot-swap correctness on a tiny real Z-Image pipeline: every swap must equal a fresh load."""

import threading

import numpy as np
import pytest
import torch
from diffusers import ZImagePipeline

from zbench import AdapterSwapper, LoraError, RenderSettings, render_image, scan_run
from zbench.demo.toy import lora_targets, random_lora

SETTINGS = RenderSettings(steps=3, guidance=0.0, width=64, height=64)
PROMPT, SEED = "a red circle on a blue background", 7


def pixels(image):
    return np.asarray(image).astype(np.int16)


def reference(fresh_base, path=None, *, scale=1.0):
    """Render with a brand-new pipeline that loaded only `path` (or nothing)."""
    ref = fresh_base()
    if path is not None:
        ref.pipe.load_lora_weights(str(path), adapter_name="ref")
        if scale != 1.0:
            ref.pipe.set_adapters(["ref"], [scale])
    return pixels(render_image(ref, PROMPT, SEED, SETTINGS))


@pytest.fixture()
def mixed_run(tmp_path, make_lora, transformer):
    """One run written by different trainers: formats, ranks and alpha != rank all mixed."""
    run = tmp_path / "run"
    make_lora(run / "mix_10.safetensors", rank=4, seed=1, fmt="diffusers")
    make_lora(run / "mix_20.safetensors", rank=8, seed=2, fmt="kohya", alpha=4)  # alpha/r = 0.5
    make_lora(run / "mix_30.safetensors", rank=8, seed=3, fmt="ai-toolkit", alpha=16)  # alpha/r = 2
    make_lora(run / "mix_40.safetensors", rank=2, seed=4, fmt="kohya")  # no alpha: scale 1
    make_lora(run / "mix_50.safetensors", rank=4, seed=5, fmt="bare")  # PEFT names without prefix
    # What mix_50 means, in the layout diffusers loads: the reference for the bare file.
    make_lora(tmp_path / "ref" / "mix_50.safetensors", rank=4, seed=5, fmt="diffusers")
    # Saved by diffusers with adapter metadata: lora_alpha 8 over r 4 lives in the scaling (2.0), not the weights.
    state = random_lora(transformer, rank=4, seed=6)
    targets = sorted({k.split(".lora_")[0] for k in state})
    ZImagePipeline.save_lora_weights(
        str(run),
        transformer_lora_layers=state,
        weight_name="mix_60.safetensors",
        transformer_lora_adapter_metadata={"r": 4, "lora_alpha": 8, "target_modules": targets},
    )
    # Per-module alphas and rsLoRA: alpha_pattern overrides lora_alpha for some modules, scaling alpha/sqrt(r).
    state = random_lora(transformer, rank=4, seed=7)
    ZImagePipeline.save_lora_weights(
        str(run),
        transformer_lora_layers=state,
        weight_name="mix_70.safetensors",
        transformer_lora_adapter_metadata={
            "r": 4,
            "lora_alpha": 8,
            "use_rslora": True,
            "alpha_pattern": {"layers.0.attention.to_q": 2, "feed_forward.w2": 16},
            "target_modules": targets,
        },
    )
    return run


def test_any_chain_of_swaps_equals_a_fresh_load(base, fresh_base, mixed_run, tmp_path):
    cks = {c.epoch: c for c in scan_run(mixed_run)}
    assert all(c.error is None for c in cks.values())
    # kohya's alpha is read from its per-module tensors, diffusers' from the adapter metadata
    assert (cks[20].alpha, cks[30].alpha, cks[40].alpha, cks[60].alpha) == (4.0, 16.0, None, 8.0)
    refs = {e: reference(fresh_base, tmp_path / "ref" / c.name if e == 50 else c.path) for e, c in cks.items()}
    refs[None] = reference(fresh_base)
    assert len({r.tobytes() for r in refs.values()}) == len(refs), "every checkpoint should draw differently"

    swapper = AdapterSwapper(base)
    chain = [10, 20, None, 30, 60, 70, 40, 10, 50, 20, None, 50, 60, 70, 30, 30, 40, None, 10, 60]
    paths = []
    for epoch in chain:
        paths.append(swapper.activate(cks.get(epoch), target_rank=8))
        got = pixels(render_image(base, PROMPT, SEED, SETTINGS))
        assert np.abs(got - refs[epoch]).max() == 0, f"epoch {epoch} after {chain[: len(paths) - 1]}"
    # first visits after the injection are plain copies too (scalings known without diffusers)
    assert paths[:2] == ["inject", "direct"] and "fast" in paths and "base" in paths and "general" not in paths
    assert swapper.injected_rank == 8  # injected once, at the largest rank of the run
    assert paths.count("inject") == 1


def test_first_visits_go_through_diffusers_when_zbench_scalings_ever_disagree(
    base, fresh_base, mixed_run, monkeypatch, caplog
):
    from zbench.engine import hotswap

    cks = {c.epoch: c for c in scan_run(mixed_run)}
    swapper = AdapterSwapper(base)
    real = hotswap.config_scalings
    monkeypatch.setattr(hotswap, "config_scalings", lambda read, prefix, names: [0.5] * len(names))
    assert swapper.activate(cks[60], target_rank=8) == "inject"  # diffusers set 2.0; the wrong formula says 0.5
    monkeypatch.setattr(hotswap, "config_scalings", real)
    assert "differ" in caplog.text
    for epoch in (10, 70):  # diffusers' hotswap, or a re-injection where it refuses (alpha_pattern)
        assert swapper.activate(cks[epoch]) in ("general", "inject")
        got = pixels(render_image(base, PROMPT, SEED, SETTINGS))
        assert np.abs(got - reference(fresh_base, cks[epoch].path)).max() == 0


def test_lora_scale_equals_set_adapters(base, fresh_base, mixed_run):
    ck = scan_run(mixed_run)[2]  # ai-toolkit, alpha/r = 2
    swapper = AdapterSwapper(base)
    swapper.activate(ck, scale=0.5, target_rank=8)
    got = pixels(render_image(base, PROMPT, SEED, SETTINGS))
    assert np.abs(got - reference(fresh_base, ck.path, scale=0.5)).max() == 0
    swapper.activate(ck, scale=1.0)
    assert np.abs(pixels(render_image(base, PROMPT, SEED, SETTINGS)) - reference(fresh_base, ck.path)).max() == 0


def test_rank_growing_mid_run_reinjects(base, fresh_base, tmp_path, make_lora):
    run = tmp_path / "grow"
    small = make_lora(run / "g_1.safetensors", rank=2, seed=11)
    swapper = AdapterSwapper(base)
    swapper.activate(scan_run(run)[0])
    big = make_lora(run / "g_2.safetensors", rank=16, seed=12)  # saved while the page was open
    cks = scan_run(run)
    assert swapper.activate(cks[1]) == "inject" and swapper.injected_rank == 16
    assert np.abs(pixels(render_image(base, PROMPT, SEED, SETTINGS)) - reference(fresh_base, big)).max() == 0
    swapper.activate(cks[0])
    assert np.abs(pixels(render_image(base, PROMPT, SEED, SETTINGS)) - reference(fresh_base, small)).max() == 0


def test_lora_for_another_base_is_an_error_naming_both(base, tmp_path, make_lora):
    from safetensors.torch import save_file

    run = tmp_path / "sdxl"
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_1_attn1_to_q"
    save_file(
        {
            f"{key}.lora_down.weight": torch.ones(4, 320),
            f"{key}.lora_up.weight": torch.ones(320, 4),
            f"{key}.alpha": torch.tensor(4.0),
        },
        str(run.mkdir() or run / "x_1.safetensors"),
    )
    (ck,) = scan_run(run)
    assert ck.arch == "sdxl"
    with pytest.raises(LoraError, match=r"SDXL.*Z-Image.*switch the base"):
        AdapterSwapper(base).activate(ck)


def test_file_matching_nothing_is_an_error_not_a_silent_base(base, tmp_path):
    from safetensors.torch import save_file

    run = tmp_path / "nomatch"
    run.mkdir()
    save_file(
        {"blocks.0.attn.qq.lora_A.weight": torch.ones(2, 32), "blocks.0.attn.qq.lora_B.weight": torch.ones(32, 2)},
        str(run / "n_1.safetensors"),
    )
    (ck,) = scan_run(run)
    with pytest.raises(LoraError, match="would change nothing"):
        AdapterSwapper(base).activate(ck)


def test_different_key_set_is_an_error_even_unmarked(base, tmp_path, make_lora, transformer):
    run = tmp_path / "keys"
    make_lora(run / "k_1.safetensors", seed=1)
    some = sorted(lora_targets(transformer))[:5]
    make_lora(run / "k_2.safetensors", seed=2, modules=some)
    cks = scan_run(run)
    cks[1].error = None  # as if the scan had no majority to compare with
    swapper = AdapterSwapper(base)
    swapper.activate(cks[0])
    with pytest.raises(LoraError, match="different set of modules"):
        swapper.activate(cks[1])


def test_nan_checkpoint_is_an_error(base, tmp_path, make_lora, transformer):
    from safetensors.torch import load_file, save_file

    run = tmp_path / "nan"
    make_lora(run / "n_1.safetensors", seed=1)
    path = make_lora(run / "n_2.safetensors", seed=2)
    sd = load_file(str(path))
    first = sorted(sd)[0]
    sd[first][0, 0] = float("nan")
    save_file(sd, str(path))
    with pytest.raises(LoraError, match="NaN"):
        AdapterSwapper(base).activate(scan_run(run)[1])


def test_concurrent_sessions_get_their_own_checkpoint(base, mixed_run):
    """Two threads rendering different checkpoints at once match sequential renders."""
    from zbench import plan_grid, render_cells

    cks = scan_run(mixed_run)
    swapper = AdapterSwapper(base)
    plans = [plan_grid(cks[:3], prompts=[PROMPT], seeds=[1])[1], plan_grid(cks[2:], prompts=[PROMPT], seeds=[2])[1]]
    sequential = [[pixels(r.image) for r in render_cells(base, p, SETTINGS, swapper=swapper)] for p in plans]
    out: list = [None, None]

    def work(i):
        out[i] = [pixels(r.image) for r in render_cells(base, plans[i], SETTINGS, swapper=swapper)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(out, sequential, strict=False):
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=False))
