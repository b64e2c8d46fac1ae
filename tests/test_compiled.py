"""The compiled render path (``engine/compiled.py``): zero recompiles across everything a grid changes, the same
pictures as eager, and what happens around it (config, cache keys, the page's notice, a compiler that fails).

Graphs are counted with dynamo's CompileCounter, a backend that counts each graph dynamo hands it and runs it
eagerly: the counting is dynamo's own, and no C++ compile is paid for it. One slow test compiles with inductor.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch._dynamo.testing import CompileCounter

from zbench import RenderSettings, compile_denoiser, compile_notice, get_swapper, load_base, plan_grid, render_cells
from zbench.bench.swap import write_lycoris
from zbench.engine.compiled import compile_wanted, uncompile
from zbench.engine.config import ConfigError, load_config
from zbench.engine.lycoris import MAGNITUDE
from zbench.engine.lycoris_layers import DeltaLayer
from zbench.engine.render import render_image

PROMPT = "a red circle"
PROMPTS = ["a red circle", "a much longer prompt about a blue square on a green field, with more words in it", "x"]


@pytest.fixture(autouse=True)
def _fresh_dynamo(tmp_path, monkeypatch):
    monkeypatch.setenv("ZBENCH_CACHE_DIR", str(tmp_path / "cache"))
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _pixels(image) -> np.ndarray:
    return np.asarray(image).astype(int)


def _grid(base, run, settings, prompts=(PROMPT,), seeds=(1,), scales=(1.0,), cache=None):
    _, cells = plan_grid(run, prompts=list(prompts), seeds=list(seeds), scales=list(scales), include_base=True)
    results = render_cells(base, cells, settings, cache=cache)
    assert all(r.status == "ok" for r in results), [r.error for r in results if r.status != "ok"]
    return results


@pytest.fixture()
def lora_run(tmp_path, make_lora):
    """Five checkpoints with different ranks and alphas (so different padding and scalings), natural order."""
    from zbench import scan_run

    run = tmp_path / "run"
    run.mkdir()
    for i, (rank, alpha) in enumerate([(4, None), (2, 1.0), (4, 8.0), (3, None), (4, 2.0)]):
        make_lora(run / f"r_{(i + 1) * 10}.safetensors", rank=rank, seed=i, fmt="kohya", alpha=alpha,
                  strength=0.5 + 0.2 * i)  # fmt: skip
    return scan_run(run)


def test_swaps_base_column_strength_prompts_and_sizes_never_recompile(tiny_config, lora_run):
    base = load_base(tiny_config)
    counter = CompileCounter()
    compile_denoiser(base, backend=counter)
    settings = RenderSettings(steps=2, guidance=0.0, width=64, height=64)
    _grid(base, lora_run[:1], settings)  # the base column first, then one checkpoint: traced once, with the layers
    traced = counter.frame_count
    assert 0 < traced <= 2, traced  # Z-Image: the refiners' blocks without modulation, and the others
    swapper = get_swapper(base)
    _grid(base, lora_run, settings, prompts=PROMPTS[:2], scales=(1.0, 0.5))
    assert swapper.last_path in ("fast", "direct", "noop", "base")
    _grid(base, lora_run[::-2], RenderSettings(steps=1, guidance=0.0, width=96, height=64), prompts=PROMPTS[2:],
          seeds=(2,), scales=(1.25,))  # fmt: skip
    assert counter.frame_count == traced, f"{counter.frame_count - traced} recompiles"


def test_compiled_pictures_equal_eager_and_the_base_column_is_exact(tiny_config, lora_run, fresh_base):
    settings = RenderSettings(steps=2, guidance=0.0, width=64, height=64)
    eager = _grid(fresh_base(), lora_run[:3], settings, scales=(1.0, 0.5))
    base = load_base(tiny_config)
    compile_denoiser(base, backend=CompileCounter())
    compiled = _grid(base, lora_run[:3], settings, scales=(1.0, 0.5))
    for e, c in zip(eager, compiled, strict=True):
        assert (e.cell.name, e.cell.scale) == (c.cell.name, c.cell.scale)
        assert np.abs(_pixels(e.image) - _pixels(c.image)).max() <= 2, e.cell.name
    # The base column is the layers at strength 0: the bare model's pixels, after every checkpoint too.
    get_swapper(base).activate(None)
    after = render_image(base, PROMPT, 1, settings)
    assert np.array_equal(_pixels(after), _pixels(compiled[0].image))
    assert compiled[0].cell.checkpoint is None


def test_lokr_loha_runs_never_recompile_and_match_eager(tiny_config, tmp_path, fresh_base):
    settings = RenderSettings(steps=2, guidance=0.0, width=64, height=64)
    writer = fresh_base().pipe.transformer
    for kind in ("lokr", "loha"):
        run = write_lycoris(writer, tmp_path / kind, kind, count=2, rank=2, factor=4, dtype=torch.float32)
        eager = _grid(fresh_base(), run, settings, scales=(1.0, 0.5))
        base = load_base(tiny_config)
        counter = CompileCounter()
        compile_denoiser(base, backend=counter)
        compiled = _grid(base, run[:1], settings)
        traced = counter.frame_count
        compiled = _grid(base, run, settings, scales=(1.0, 0.5))
        assert counter.frame_count == traced, (kind, counter.frame_count - traced)
        for e, c in zip(eager, compiled, strict=True):
            assert np.abs(_pixels(e.image) - _pixels(c.image)).max() <= 2, (kind, e.cell.name, e.cell.scale)


@pytest.mark.parametrize("peft_dora", [False, True])
@pytest.mark.parametrize("kind", ["lora", "lora-dora"])
def test_fixed_delta_layers_equal_flagged_ones(kind, peft_dora):
    """A compiled run's DeltaLayer (numbers in tensors) gives what the eager one gives, off, at any strength."""
    gen = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(8, 6)
    slots = {"lora_down": torch.randn(2, 8, generator=gen), "lora_up": torch.randn(6, 2, generator=gen)}
    if kind == "lora-dora":
        slots[MAGNITUDE] = torch.rand(6, generator=gen) + 0.5
    eager = DeltaLayer(linear, "lora", {k: v.clone() for k, v in slots.items()}, peft_dora=peft_dora)
    fixed = DeltaLayer(linear, "lora", {k: v.clone() for k, v in slots.items()}, peft_dora=peft_dora, fixed=True)
    x = torch.randn(3, 8, generator=gen)
    for scale, strength, enabled in [(0.5, 1.0, True), (0.5, 0.3, True), (2.0, 1.7, True), (0.5, 1.0, False)]:
        for layer in (eager, fixed):
            layer.scale, layer.strength, layer.enabled = scale, strength, enabled
            layer.sync()
        torch.testing.assert_close(fixed(x), eager(x), rtol=1e-5, atol=1e-6)
    assert torch.equal(fixed(x), linear(x))  # off: the base layer's output, exactly


@pytest.mark.slow
def test_inductor_renders_equal_eager_within_two_levels_on_the_demo():
    """The real compiler (inductor's C++ kernels on this CPU) on the shipped demo base and LoRA run, at the demo's
    size and steps: pixels within ±2/255 of eager (measured: 1), and the next process is told the compile time."""
    from zbench import scan_run

    config = load_config()  # configs/demo.toml, as the page opens it
    run = [c for c in scan_run(config.lora_dir) if c.epoch in (20, 100, 300)]
    settings = RenderSettings(steps=config.steps, guidance=config.guidance, width=config.width, height=config.height)
    eager = _grid(load_base(dataclasses.replace(config, compile="false")), run, settings, prompts=(config.prompt,))
    base = load_base(dataclasses.replace(config, compile="true"))
    assert base.compiled is not None and "inductor" in base.compiled.label
    assert compile_notice(base).startswith("compiling the denoiser, once per base")
    compiled = _grid(base, run, settings, prompts=(config.prompt,))
    assert compile_notice(base) is None and base.compiled.first_s > 0
    for e, c in zip(eager, compiled, strict=True):
        assert np.abs(_pixels(e.image) - _pixels(c.image)).max() <= 2, e.cell.name
    again = load_base(dataclasses.replace(config, compile="true"))
    assert again.compiled.estimate_s == pytest.approx(base.compiled.first_s, abs=0.1)
    assert (
        compile_notice(again) == f"compiling the denoiser, once per base: ~{max(1, round(again.compiled.estimate_s))} s"
    )


def test_config_compile_switch(tmp_path, tiny_model):
    def load(value: str):
        path = tmp_path / "c.toml"
        path.write_text(f'name = "t"\n[model]\npath = "{tiny_model}"\n[render]\ncompile = {value}\n')
        return load_config(path)

    assert load("true").compile == "true" and load("false").compile == "false" and load('"auto"').compile == "auto"
    for bad in ('"yes"', "1"):
        with pytest.raises(ConfigError, match='compile should be true, false or "auto"'):
            load(bad)
    assert compile_wanted("auto", torch.device("cuda")) and not compile_wanted("auto", torch.device("cpu"))
    assert compile_wanted("true", torch.device("cpu")) and not compile_wanted("false", torch.device("cuda"))


def test_compiled_images_are_cached_apart_from_eager_ones(tiny_config, lora_run):
    from zbench import get_image_cache

    eager = load_base(tiny_config)
    base = load_base(tiny_config)
    compile_denoiser(base, backend="eager")
    assert base.fingerprint == eager.fingerprint + "+compiled"
    settings = RenderSettings(steps=2, guidance=0.0, width=64, height=64)
    cache = get_image_cache()
    _grid(eager, lora_run[:1], settings, cache=cache)
    results = _grid(base, lora_run[:1], settings, cache=cache)
    assert {r.swap_path for r in results} != {"cache"}  # rendered, not taken from the eager images
    assert {r.swap_path for r in _grid(base, lora_run[:1], settings, cache=cache)} == {"cache"}
    uncompile(base)
    assert base.fingerprint == eager.fingerprint and base.compiled is None


def test_a_compiler_that_fails_leaves_an_eager_render_and_says_so(tiny_config, lora_run, caplog):
    def broken(graph, inputs):
        raise RuntimeError("no C++ compiler here")

    base = load_base(tiny_config)
    compile_denoiser(base, backend=broken)
    settings = RenderSettings(steps=2, guidance=0.0, width=64, height=64)
    results = _grid(base, lora_run[:2], settings)
    assert base.compiled is None and "rendering without compile" in caplog.text
    eager = _grid(load_base(tiny_config), lora_run[:2], settings)
    for e, c in zip(eager, results, strict=True):
        assert np.array_equal(_pixels(e.image), _pixels(c.image))


def test_the_page_says_the_denoiser_compiles_before_its_first_render(tiny_config, lora_run):
    base = load_base(tiny_config)
    compile_denoiser(base, backend="eager")
    seen = []
    _, cells = plan_grid(lora_run[:2], prompts=[PROMPT], seeds=[1], scales=[1.0], include_base=True)
    render_cells(base, cells, RenderSettings(steps=2, guidance=0.0, width=64, height=64),
                 on_step=lambda cell, step, steps: seen.append((step, compile_notice(base))))  # fmt: skip
    assert seen[0] == (0, "compiling the denoiser, once per base: about a minute (the first compile on this machine: "
                          "no time to go by)")  # fmt: skip
    assert sum(1 for step, _ in seen if step == 0) == 1  # only before the first compiled render
    assert compile_notice(base) is None


def test_caption_padding_would_change_the_image_so_lengths_stay_dynamic(tiny_config):
    """Why no caption buckets: Z-Image attends to its caption padding (no mask for one image), so padding a prompt's
    embeddings to a longer bucket changes the picture; compiled blocks take any length instead (first test)."""
    base = load_base(tiny_config)
    embeds = base.prompt_kwargs(PROMPT, "", 0.0)["prompt_embeds"][0]
    bucket = torch.cat([embeds, torch.zeros(64 - embeds.shape[0] % 32, embeds.shape[1])])  # the next bucket but one

    def draw(e):
        out = base.pipe(prompt_embeds=[e], num_inference_steps=2, guidance_scale=0.0, width=64, height=64,
                        output_type="np", generator=torch.Generator("cpu").manual_seed(1))  # fmt: skip
        return (out.images[0] * 255).round()

    assert np.abs(draw(bucket) - draw(embeds)).max() > 2


@pytest.mark.parametrize("quiet", [False, True])
def test_commands_progress_bars_say_the_denoiser_compiles(tiny_config, quiet):
    from tqdm import tqdm

    from zbench.engine.compiled import compile_steps

    base = load_base(tiny_config)
    compile_denoiser(base, backend="eager")
    with tqdm(total=2, desc="rendering", disable=quiet) as bar:  # --quiet: a disabled bar
        on_step = compile_steps(base, bar)
        on_step(None, 0, 2)
        assert quiet or bar.desc.startswith("compiling the denoiser, once per base")
        base.compiled.first_s = 1.0  # the first compiled render is done
        on_step(None, 1, 2)
        assert quiet or bar.desc.startswith("rendering")


def test_stop_pressed_as_the_compile_notice_shows_stops_the_cell(tiny_config, lora_run):
    base = load_base(tiny_config)
    compile_denoiser(base, backend="eager")
    stop = []
    _, cells = plan_grid(lora_run[:2], prompts=[PROMPT], seeds=[1], scales=[1.0], include_base=True)
    settings = RenderSettings(steps=2, guidance=0.0, width=64, height=64)
    results = render_cells(
        base, cells, settings, on_step=lambda cell, step, steps: stop.append(step), should_stop=lambda: bool(stop)
    )
    assert stop[0] == 0 and [r.status for r in results] == ["stopped"] * 3
    assert base.compiled.pending  # nothing rendered: the next grid still says it compiles
