"""Rendering: one encode per prompt, one noise per seed, error cells that do not stop the grid."""

import numpy as np
import pytest

from zbench import RenderSettings, plan_grid, render_cells, scan_run

SETTINGS = RenderSettings(steps=2, guidance=0.0, width=32, height=32)


def test_plan_grid_rows_and_columns(tmp_path, make_lora):
    for e in (1, 2):
        make_lora(tmp_path / f"p_{e}.safetensors", seed=e)
    cks = scan_run(tmp_path)
    rows, cells = plan_grid(cks, prompts=["a", "b"], seeds=[1, 2], scales=[0.5, 1.0])
    assert len(rows) == 8 and len(cells) == 8 * 3
    assert [c.name for c in cells[:3]] == ["base", "p_1.safetensors", "p_2.safetensors"]
    assert (rows[0].prompt, rows[0].seed, rows[0].scale) == ("a", 1, 0.5)
    assert rows[1].label(prompts=2, seeds=2, scales=2) == "a · seed 1 · scale 1"


def test_each_prompt_is_encoded_once(base, tmp_path, make_lora, monkeypatch):
    for e in (1, 2, 3):
        make_lora(tmp_path / f"e_{e}.safetensors", seed=e)
    calls = []
    real = base.pipe.encode_prompt

    def counting(prompt, *args, **kwargs):  # a spy around the real encoder
        calls.append(prompt)
        return real(prompt, *args, **kwargs)

    monkeypatch.setattr(base.pipe, "encode_prompt", counting)
    base._embeds.clear()
    _, cells = plan_grid(scan_run(tmp_path), prompts=["one prompt", "another prompt"], seeds=[1, 2])
    results = render_cells(base, cells, SETTINGS)
    assert all(r.status == "ok" for r in results)
    assert sorted(calls) == ["another prompt", "one prompt"]


def test_scale_zero_draws_the_base_image_exactly(base, tmp_path, make_lora):
    """Same seed, same noise: a LoRA at strength 0 must give the base column's pixels."""
    make_lora(tmp_path / "z_1.safetensors", seed=1, strength=3.0)
    _, cells = plan_grid(scan_run(tmp_path), prompts=["x"], seeds=[5], scales=[0.0, 1.0])
    results = {(r.cell.name, r.cell.scale): np.asarray(r.image) for r in render_cells(base, cells, SETTINGS)}
    assert np.array_equal(results[("z_1.safetensors", 0.0)], results[("base", 0.0)])
    assert not np.array_equal(results[("z_1.safetensors", 1.0)], results[("base", 1.0)])


def test_bad_checkpoint_is_an_error_cell_and_the_rest_render(base, tmp_path, make_lora):
    make_lora(tmp_path / "r_1.safetensors", seed=1)
    (tmp_path / "r_2.safetensors").write_bytes(b"\x00" * 4)
    make_lora(tmp_path / "r_3.safetensors", seed=3)
    _, cells = plan_grid(scan_run(tmp_path), prompts=["x"], seeds=[1])
    seen = []
    results = render_cells(base, cells, SETTINGS, progress=lambda done, total, r: seen.append((done, total)))
    assert [r.status for r in results] == ["ok", "ok", "error", "ok"]
    assert "too short" in results[2].error and results[2].image is None
    assert seen[-1] == (4, 4)
    assert all(r.render_ms > 0 and r.swap_ms is not None for r in results if r.status == "ok")


def test_stop_marks_the_rest(base, tmp_path, make_lora):
    make_lora(tmp_path / "s_1.safetensors", seed=1)
    _, cells = plan_grid(scan_run(tmp_path), prompts=["x"], seeds=[1, 2])
    done = []
    results = render_cells(
        base, cells, SETTINGS, progress=lambda d, t, r: done.append(d), should_stop=lambda: len(done) >= 2
    )
    assert [r.status for r in results].count("stopped") == 2


def test_reused_embeddings_with_cfg_equal_the_pipelines_own_encoding(base):
    """guidance > 0 with a negative prompt: cached embeddings give what the pipeline's own text path gives."""
    import torch

    from zbench import get_swapper, render_image

    get_swapper(base).activate(None)
    settings = RenderSettings(steps=2, guidance=3.0, width=32, height=32, negative="blurry")
    ours = np.asarray(render_image(base, "a red circle", 4, settings))
    direct = base.pipe(
        prompt="a red circle",
        negative_prompt="blurry",
        num_inference_steps=2,
        guidance_scale=3.0,
        width=32,
        height=32,
        generator=torch.Generator("cpu").manual_seed(4),
        output_type="np",
    ).images[0]
    assert np.array_equal(ours, (np.clip(direct, 0, 1) * 255).round().astype(np.uint8))
    plain = np.asarray(
        render_image(base, "a red circle", 4, RenderSettings(steps=2, guidance=0.0, width=32, height=32))
    )
    assert not np.array_equal(ours, plain)


def test_out_of_memory_is_an_error_cell_with_a_fix(base, tmp_path, make_lora, monkeypatch):
    """Fault injection: the first denoiser call runs out of memory; that cell says what to do, the next renders."""
    import torch

    make_lora(tmp_path / "o_1.safetensors", seed=1)
    real = base.pipe.transformer.forward
    calls = []

    def once_out_of_memory(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(base.pipe.transformer, "forward", once_out_of_memory)
    _, cells = plan_grid(scan_run(tmp_path), prompts=["x"], seeds=[9])
    results = render_cells(base, cells, SETTINGS)
    assert results[0].status == "error" and "out of memory" in results[0].error and "offload" in results[0].error
    assert results[1].status == "ok"


def test_eight_steps_are_the_official_nine_step_recipe(base, tmp_path, make_lora):
    """Z-Image-Turbo's card says 9 steps "actually results in 8 DiT forwards" (the 9th had a zero step
    on old diffusers). With the diffusers zbench requires, 8 steps make those 8 forwards on those sigmas."""
    import torch

    forwards = []
    handle = base.pipe.transformer.register_forward_hook(lambda *a: forwards.append(1))
    try:
        from zbench import get_swapper, render_image

        get_swapper(base).activate(None)
        render_image(base, "x", 1, RenderSettings(steps=8, guidance=0.0, width=32, height=32))
    finally:
        handle.remove()
    assert len(forwards) == 8
    shift = base.pipe.scheduler.config.shift
    old = torch.linspace(1, 0, 9)  # the old 9-step schedule: sigma_min = 0, shifted, a terminal 0 appended
    old = shift * old / (1 + (shift - 1) * old)
    useful = old[:8]  # its 9th forward ran at sigma 0 with a step of 0 to the terminal 0
    assert torch.allclose(base.pipe.scheduler.sigmas[:8].float(), useful, atol=1e-6)
    assert base.pipe.scheduler.sigmas[-1] == 0


def test_a_grids_prompts_are_encoded_in_one_batch_before_the_first_render(base, tmp_path, make_lora, monkeypatch):
    make_lora(tmp_path / "b_1.safetensors", seed=1)
    events = []
    real_encode, real_forward = base.pipe.encode_prompt, base.pipe.transformer.forward
    monkeypatch.setattr(
        base.pipe, "encode_prompt", lambda p, *a, **k: events.append(("encode", p)) or real_encode(p, *a, **k)
    )
    monkeypatch.setattr(
        base.pipe.transformer, "forward", lambda *a, **k: events.append(("render",)) or real_forward(*a, **k)
    )
    base._embeds.clear()
    _, cells = plan_grid(scan_run(tmp_path), prompts=["first prompt", "second prompt", "third"], seeds=[1])
    assert all(r.status == "ok" for r in render_cells(base, cells, SETTINGS))
    encodes = [e for e in events if e[0] == "encode"]
    assert [e[1] for e in encodes] == ["first prompt", "second prompt", "third"]
    assert events.index(("render",)) > events.index(encodes[-1])  # all encoded before any render


def test_the_next_checkpoint_is_read_ahead_and_renders_the_same(base, fresh_base, tmp_path, make_lora, monkeypatch):
    from zbench import AdapterSwapper, get_image_cache, render_image
    from zbench.engine import hotswap, prefetch

    for e in (1, 2, 3):
        make_lora(tmp_path / "run" / f"a_{e}.safetensors", rank=4, seed=20 + e, strength=3.0)
    run = scan_run(tmp_path / "run")
    swapper = AdapterSwapper(base)
    reads = []
    real_read = prefetch.read_lora
    monkeypatch.setattr(prefetch, "read_lora", lambda b, ck: reads.append(ck.name) or real_read(b, ck))
    _, cells = plan_grid(run, prompts=["x"], seeds=[3])
    cache = get_image_cache(tmp_path / "cache")
    results = render_cells(base, cells, SETTINGS, swapper=swapper, cache=cache)
    # a_1 was read while the base column rendered, a_2 while a_1 did, a_3 while a_2 did
    assert swapper.prefetcher.hits == 3 and reads == ["a_1.safetensors", "a_2.safetensors", "a_3.safetensors"]
    for ck, result in zip(run, results[1:], strict=True):
        ref = fresh_base()
        ref.pipe.load_lora_weights(str(ck.path), adapter_name="ref")
        assert np.array_equal(np.asarray(result.image), np.asarray(render_image(ref, "x", 3, SETTINGS)))
    # Shown again from the image cache: nothing is read ahead for columns that need no render.
    swapper.clear_cache()
    monkeypatch.setattr(hotswap, "read_lora", lambda b, ck: pytest.fail(f"read {ck.name}"))
    again = render_cells(base, cells, SETTINGS, swapper=swapper, cache=cache)
    assert all(r.swap_path == "cache" for r in again) and len(reads) == 3


def test_the_first_row_renders_across_every_checkpoint_first(base, tmp_path, make_lora):
    for e in (1, 2, 3):
        make_lora(tmp_path / f"f_{e}.safetensors", seed=e)
    _, cells = plan_grid(scan_run(tmp_path), prompts=["x"], seeds=[1, 2])
    seen = []
    render_cells(base, cells, SETTINGS, progress=lambda d, t, r: seen.append((r.cell.row, r.cell.name)))
    names = ["base", "f_1.safetensors", "f_2.safetensors", "f_3.safetensors"]
    assert seen == [(0, n) for n in names] + [(1, n) for n in names]
