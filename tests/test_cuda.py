"""The CUDA paths on a real GPU: bf16 renders exact against fresh loads, the text encoder's memory
plan, read-ahead onto the device and the peak memory a grid reports. Skipped without a GPU.

Run on a GPU machine with ``python -m pytest -m cuda``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zbench import (
    AdapterSwapper,
    BenchConfig,
    RenderSettings,
    load_base,
    measure_grid,
    plan_grid,
    render_cells,
    render_image,
    scan_run,
)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (torch sees none)"),
]
SETTINGS = RenderSettings(steps=4, guidance=0.0, width=64, height=64)


@pytest.fixture()
def cuda_config(tiny_model) -> BenchConfig:
    # compile = "false": these tests check the eager paths exactly; test_cuda_compiled_* checks the compiled one.
    return BenchConfig(
        name="tiny", model_path=tiny_model, pipeline="ZImagePipeline", device="cuda", dtype="bfloat16", compile="false"
    )


@pytest.fixture()
def run(tmp_path, make_lora):
    for epoch, rank in ((1, 4), (2, 8), (3, 4)):
        make_lora(tmp_path / "run" / f"c_{epoch}.safetensors", rank=rank, seed=epoch, strength=3.0)
    return scan_run(tmp_path / "run")


def test_cuda_bf16_grid_equals_fresh_loads(cuda_config, run):
    base = load_base(cuda_config)
    assert base.device.type == "cuda" and base.dtype == torch.bfloat16
    _, cells = plan_grid(run, prompts=["a red circle"], seeds=[5])
    results = render_cells(base, cells, SETTINGS, swapper=AdapterSwapper(base), target_rank=8)
    assert all(r.status == "ok" for r in results)
    for ck, result in zip(run, results[1:], strict=True):
        fresh = load_base(cuda_config)
        fresh.pipe.enable_lora_hotswap(target_rank=8)  # the same padding as the grid's layers
        fresh.pipe.load_lora_weights(str(ck.path), adapter_name="ref")
        assert np.array_equal(np.asarray(result.image), np.asarray(render_image(fresh, "a red circle", 5, SETTINGS)))


def test_cuda_text_encoder_leaves_the_gpu_after_encoding(cuda_config, run):
    base = load_base(cuda_config)  # text_encoder = "auto": offload-after-encode on CUDA
    assert base.text_encoder == "offload-after-encode"
    assert next(base.pipe.text_encoder.parameters()).device.type == "cpu"
    assert next(base.pipe.transformer.parameters()).device.type == "cuda"
    _, cells = plan_grid(run, prompts=["a red circle", "a blue square"], seeds=[5])
    with measure_grid(base) as stats:
        offloaded = render_cells(base, cells, SETTINGS, target_rank=8)
    assert next(base.pipe.text_encoder.parameters()).device.type == "cpu"  # back after encoding
    assert stats["peak_vram_bytes"] > 0 and stats["text_encoder"] == "offload-after-encode"

    import dataclasses

    resident = load_base(dataclasses.replace(cuda_config, text_encoder="gpu"))
    assert next(resident.pipe.text_encoder.parameters()).device.type == "cuda"
    kept = render_cells(resident, cells, SETTINGS, target_rank=8)
    for a, b in zip(offloaded, kept, strict=True):  # the same embeddings, so the same pixels
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_cuda_read_ahead_lands_on_the_device(cuda_config, run):
    base = load_base(cuda_config)
    swapper = AdapterSwapper(base)
    _, cells = plan_grid(run, prompts=["x"], seeds=[1])
    results = render_cells(base, cells, SETTINGS, swapper=swapper, target_rank=8)
    assert all(r.status == "ok" for r in results) and swapper.prefetcher.hits == len(run)
    assert all(r.swap_path in ("inject", "direct") for r in results[1:])


def test_cuda_compiled_grid_equals_eager_within_two_levels_without_recompiles(cuda_config, run):
    """compile = "auto" on CUDA: inductor's kernels; float32 so that eager and compiled compare like for like."""
    import dataclasses

    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    config = dataclasses.replace(cuda_config, dtype="float32", compile="auto")
    _, cells = plan_grid(run, prompts=["a red circle", "a much longer prompt: a blue square on green"], seeds=[5])
    eager = render_cells(load_base(dataclasses.replace(config, compile="false")), cells, SETTINGS, target_rank=8)
    base = load_base(config)
    assert base.compiled is not None and base.fingerprint.endswith("+compiled")
    compiled = render_cells(base, cells[:2], SETTINGS, target_rank=8)  # traced here (base column, then a LoRA)
    graphs = counters["stats"]["unique_graphs"]
    compiled = render_cells(base, cells, SETTINGS, target_rank=8)
    assert counters["stats"]["unique_graphs"] == graphs  # no checkpoint, base column or prompt recompiled
    for a, b in zip(eager, compiled, strict=True):
        diff = np.abs(np.asarray(a.image).astype(int) - np.asarray(b.image).astype(int)).max()
        assert diff <= 2, (a.cell.name, diff)
