"""Grid benchmark: a K-checkpoint grid on Z-Image-Turbo's real architecture, zbench against the naive loop.

The pipeline is built from the published configs (``zimage-turbo/*.json``: transformer, Qwen3-4B text
encoder, Flux VAE, scheduler) on the meta device, materialised on the chosen device and filled with
small random values (speed does not depend on them; finite values keep the NaN check quiet). K
rank-r LoRA checkpoints are written to disk; then, in one process, one after another:

1. zbench, first visits, no read-ahead: a fresh swapper renders the grid (base column + K);
2. zbench, first visits, read-ahead: the same with the next checkpoint read in the background;
3. zbench, cached: the same grid again (converted tensors in RAM, images not cached);
4. the naive loop: diffusers ``unload_lora_weights`` + ``load_lora_weights`` per checkpoint;
5. compiled (``engine/compiled.py``: the repeated blocks through torch.compile's inductor): the denoiser is
   compiled and traced once (the time of that first render is reported), then the grid with first visits and
   read-ahead, then cached swaps; dynamo's count of graphs says whether any swap recompiled.

Per grid: per-image render time, swap time in the render path, wall time, overhead = wall / sum
of renders, peak memory. ``--layers`` and friends reduce the depth so the same code runs on a CPU.
"""

from __future__ import annotations

import json
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..demo.toy import byte_tokenizer
from ..engine.compiled import compile_denoiser
from ..engine.config import BenchConfig
from ..engine.hotswap import AdapterSwapper
from ..engine.lora_file import read_lora
from ..engine.pipeline import resolve_device, wrap_pipeline
from ..engine.plan import RenderSettings, plan_grid
from ..engine.render import measure_grid, render_cells, render_image
from .flops import detect_peak_tflops, zimage_image_flops
from .swap import _memcpy, write_checkpoints

__all__ = ["ARCHITECTURE", "GridBench", "bench_grid", "format_grid_table"]

ARCHITECTURE = Path(__file__).resolve().parent / "zimage-turbo"
PROMPT = "a portrait photo, soft light"  # short: the byte-level tokenizer here spends a token per byte


@dataclass
class Phase:
    """One way of rendering the grid, measured."""

    name: str
    wall_s: float
    render_ms: list[float] = field(default_factory=list)  # per rendered image
    swap_ms: list[float] = field(default_factory=list)  # per checkpoint cell, in the render path
    peak_bytes: int | None = None

    @property
    def overhead(self) -> float:
        return self.wall_s * 1000 / sum(self.render_ms)


@dataclass
class GridBench:
    phases: list[Phase]
    memcpy_ms: float
    description: str
    k: int
    text_encoder: str
    cpu_peak_rss_mib: float
    image_flops: int = 0  # the transformer's model FLOPs per image (``flops.py``)
    peak_tflops: float | None = None  # the device's dense peak, for the ratio to the floor
    compile_s: float | None = None  # the first compiled render: trace, compile and one render
    compiled: str = ""  # what was compiled ("inductor, repeated blocks (...)")
    recompiles: int | None = None  # graphs compiled during the compiled grids (after the first render): 0 is right


def _materialize(module: torch.nn.Module, device: torch.device, dtype: torch.dtype, seed: int) -> torch.nn.Module:
    """Allocate a meta-device module on ``device`` in ``dtype`` and fill it with small random weights,
    unit norms and zero biases: finite outputs at any depth (the values do not matter for speed)."""
    module = module.to(dtype).to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0 if "norm" in name or name.endswith("weight") else 0.0)
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen, device=device, dtype=torch.float32) * (0.5 / fan_in**0.5))
        for buffer in module.buffers():  # e.g. rotary tables: recomputed by from_config, lost by to_empty
            if buffer.is_floating_point():
                buffer.zero_()
    return module.eval()


def build_pipeline(
    *, layers: int, refiner_layers: int, text_layers: int, device: torch.device, dtype: torch.dtype, progress
):
    """Z-Image-Turbo's pipeline from its published configs, at the given depth, with random weights.

    The transformer and VAE are allocated on ``device``, the text encoder on the CPU (the memory plan
    then moves it, see ``wrap_pipeline``), so a 16 GB card never holds all three at once.
    """
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    def config(name: str) -> dict:
        return {k: v for k, v in json.loads((ARCHITECTURE / f"{name}.json").read_text()).items() if k[0] != "_"}

    progress(f"building Z-Image-Turbo ({layers}+{refiner_layers}x2 blocks, text encoder {text_layers} layers)")
    with torch.device("meta"):
        transformer = ZImageTransformer2DModel.from_config(
            {**config("transformer"), "n_layers": layers, "n_refiner_layers": refiner_layers}
        )
        text_encoder = Qwen3Model(Qwen3Config(**{**config("text_encoder"), "num_hidden_layers": text_layers}))
        vae = AutoencoderKL.from_config(config("vae"))
    parts = {
        "transformer": _materialize(transformer, device, dtype, seed=0),
        "text_encoder": _materialize(text_encoder, torch.device("cpu"), dtype, seed=1),
        "vae": _materialize(vae, device, dtype, seed=2),
    }
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config("scheduler"))
    return ZImagePipeline(scheduler=scheduler, tokenizer=byte_tokenizer(), **parts)


def bench_grid(
    *,
    size: int = 1024,
    steps: int = 8,
    k: int = 10,
    rank: int = 32,
    layers: int = 30,
    refiner_layers: int = 2,
    text_layers: int = 36,
    device: str = "auto",
    dtype: str = "auto",
    text_encoder: str = "auto",
    naive: bool = True,
    compile: str = "both",
    backend: str = "inductor",
    peak_tflops: float | None = None,
    progress: Callable[[str], None] = print,
) -> GridBench:
    """Render a K-checkpoint grid several ways in one process and measure each (see the module docstring).

    Args:
        compile: "both" (eager rows, then compiled rows), "eager" or "compiled" (only those rows).
        backend: torch.compile's backend for the compiled rows (tests take "eager": dynamo without a compiler).
    """
    from ..engine.pipeline import resolve_dtype

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    pipe = build_pipeline(
        layers=layers, refiner_layers=refiner_layers, text_layers=text_layers, device=dev, dtype=dt, progress=progress
    )
    # compile = false: the eager rows are eager on CUDA too; the compiled rows compile explicitly.
    config = BenchConfig(
        name="Z-Image-Turbo (random weights)", repo_id="bench", text_encoder=text_encoder, compile="false"
    )
    base = wrap_pipeline(pipe, config, dev, dt, fingerprint="bench")
    settings = RenderSettings(steps=steps, guidance=0.0, width=size, height=size)
    params = sum(p.numel() for p in pipe.transformer.parameters())
    description = (
        f"Z-Image-Turbo architecture, transformer {layers}+{refiner_layers}x2 blocks ({params / 1e9:.2f} B params), "
        f"text encoder {text_layers} layers, {str(dt).removeprefix('torch.')} on {dev}; {size}x{size}, {steps} steps, "
        f"guidance 0; {k} rank-{rank} checkpoints + base column"
    )
    phases = []
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        progress(f"writing {k} rank-{rank} checkpoints")
        cks = write_checkpoints(pipe.transformer, run, count=k, rank=rank, dtype=dt)
        _, cells = plan_grid(cks, prompts=[PROMPT], seeds=[1])

        progress("warming up (one render each of base and a checkpoint)")
        warm = AdapterSwapper(base)
        warm.activate(cks[0], target_rank=rank)
        render_image(base, PROMPT, 1, settings)
        warm.reset()

        def grid(name: str, swapper: AdapterSwapper, read_ahead: bool) -> None:
            progress(f"grid: {name}")
            with measure_grid(base) as stats:
                results = render_cells(base, cells, settings, swapper=swapper, target_rank=rank, read_ahead=read_ahead)
            bad = [r for r in results if r.status != "ok"]
            if bad:
                raise RuntimeError(f"{name}: {bad[0].cell.name}: {bad[0].error}")
            phases.append(
                Phase(
                    name,
                    stats["seconds"],
                    [r.render_ms for r in results],
                    [r.swap_ms for r in results if r.cell.checkpoint is not None],
                    stats["peak_vram_bytes"],
                )
            )

        if compile != "compiled":
            fresh = AdapterSwapper(base)
            grid("zbench, first visits, read-ahead off", fresh, read_ahead=False)
            fresh.reset()
            fresh = AdapterSwapper(base)
            grid("zbench, first visits, read-ahead on", fresh, read_ahead=True)
            grid("zbench, cached swaps", fresh, read_ahead=True)
            fresh.reset()
            if naive:
                phases.append(_naive(base, cks, settings, progress))
        if compile != "eager":  # last: the naive loop's unload + load would change the compiled modules
            compiled, compile_s, recompiles = _compiled_grids(base, cks, rank, settings, grid, progress, backend)
        nbytes = sum(t.numel() * t.element_size() for t in read_lora(base, cks[0]).state.values())
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    memcpy_ms, _ = _memcpy(nbytes, dev, 20, sync)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    caption = base.prompt_kwargs(PROMPT, "", 0.0)["prompt_embeds"][0].shape[0]
    flops = zimage_image_flops(pipe.transformer.config, size, size, steps, caption, cfg=False)
    peak = peak_tflops if peak_tflops is not None else detect_peak_tflops(dev)
    result = GridBench(phases, memcpy_ms, description, k, base.text_encoder, rss, flops, peak)
    if compile != "eager":
        result.compiled, result.compile_s, result.recompiles = compiled, compile_s, recompiles
    return result


def _compiled_grids(
    base, cks, rank: int, settings: RenderSettings, grid, progress, backend: str
) -> tuple[str, float, int]:
    """The compiled rows: compile, trace with the first checkpoint, then first visits and cached swaps.

    Returns:
        What was compiled, the first compiled render's seconds, and the graphs compiled during the two grids.
    """
    from torch._dynamo.utils import counters

    record = compile_denoiser(base, backend=backend)
    swapper = AdapterSwapper(base)
    swapper.activate(cks[0], target_rank=rank)
    progress(f"compiling {record.label} (the first compiled render)")
    t0 = time.perf_counter()
    render_image(base, PROMPT, 1, settings)
    if base.device.type == "cuda":
        torch.cuda.synchronize(base.device)
    compile_s = time.perf_counter() - t0
    if base.compiled is None:
        raise RuntimeError("torch.compile failed on this machine (see the log); no compiled rows")
    graphs = counters["stats"]["unique_graphs"]
    swapper.clear_cache()  # first visits: every checkpoint read from its file again
    grid("zbench compiled, first visits, read-ahead on", swapper, read_ahead=True)
    grid("zbench compiled, cached swaps", swapper, read_ahead=True)
    return record.label, compile_s, counters["stats"]["unique_graphs"] - graphs


def _naive(base, cks, settings: RenderSettings, progress) -> Phase:
    """What a WebUI does per checkpoint: unload the LoRA, load the next file, render."""
    progress("grid: diffusers unload + load per checkpoint")
    pipe = base.pipe
    renders, swaps = [], []
    with measure_grid(base) as stats:
        t0 = time.perf_counter()
        renders.append(_timed(lambda: render_image(base, PROMPT, 1, settings), base))  # the base column
        for ck in cks:
            swaps.append(_timed(lambda ck=ck: (pipe.unload_lora_weights(), pipe.load_lora_weights(str(ck.path))), base))
            renders.append(_timed(lambda: render_image(base, PROMPT, 1, settings), base))
        pipe.unload_lora_weights()
        wall = time.perf_counter() - t0
    return Phase("diffusers unload + load per checkpoint", wall, renders, swaps, stats["peak_vram_bytes"])


def _timed(fn, base) -> float:
    t0 = time.perf_counter()
    fn()
    if base.device.type == "cuda":
        torch.cuda.synchronize(base.device)
    return (time.perf_counter() - t0) * 1000


def format_grid_table(result: GridBench) -> str:
    """A markdown table of every phase, with the ratios the targets speak of."""

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.1f}" if values else ""

    def gib(value: int | None) -> str:
        return "" if value is None else f"{value / 2**30:.1f}"

    tflop = result.image_flops / 1e12
    peak = result.peak_tflops
    lines = [
        result.description,
        f"text encoder: {result.text_encoder}; LoRA bytes per checkpoint copied in a swap: memcpy floor "
        f"{result.memcpy_ms:.2f} ms; model FLOPs per image {tflop:.4g} TFLOP (transformer, from the architecture); "
        + (f"peak {peak:g} TFLOP/s dense, so the floor is {tflop / peak:.3g} s/image" if peak else "no peak given"),
        "",
        "| grid | wall s | render ms (median) | swap ms in render path (median, max) | overhead | peak GiB "
        "| s/image | TFLOP/s | x floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in result.phases:
        swap = f"{med(p.swap_ms)}, {max(p.swap_ms):.1f}" if p.swap_ms else ""
        seconds = statistics.median(p.render_ms) / 1000
        achieved = tflop / seconds if seconds else 0.0
        floor = f"{seconds / (tflop / peak):.2f}" if peak and tflop else "—"
        lines.append(
            f"| {p.name} | {p.wall_s:.2f} | {med(p.render_ms)} | {swap} | {p.overhead:.3f} | {gib(p.peak_bytes)} "
            f"| {seconds:.3f} | {achieved:.3g} | {floor} |"
        )
    by = {p.name: p for p in result.phases}
    lines.append("")
    for prefix in ("zbench", "zbench compiled"):
        ahead, cached = by.get(f"{prefix}, first visits, read-ahead on"), by.get(f"{prefix}, cached swaps")
        if ahead is None or cached is None:
            continue
        lines.append(
            f"{prefix}: overhead (wall / sum of renders), first visits with read-ahead: {ahead.overhead:.3f}; "
            f"swap in the render path / memcpy floor: {statistics.median(ahead.swap_ms) / result.memcpy_ms:.2f}x "
            f"(first visits, median), {statistics.median(cached.swap_ms) / result.memcpy_ms:.2f}x (cached)"
        )
    naive, ahead = by.get("diffusers unload + load per checkpoint"), by.get("zbench, first visits, read-ahead on")
    if naive is not None and ahead is not None:
        lines.append(f"naive loop / zbench (first visits, read-ahead), wall: {naive.wall_s / ahead.wall_s:.2f}x")
    if result.compiled:
        eager, compiled = by.get("zbench, cached swaps"), by["zbench compiled, cached swaps"]
        line = (
            f"compiled ({result.compiled}): first compiled render {result.compile_s:.1f} s (trace + compile + one "
            f"render, once per base); graphs compiled during the compiled grids: {result.recompiles}"
        )
        if eager is not None:
            ratio = statistics.median(eager.render_ms) / statistics.median(compiled.render_ms)
            line += f"; render time eager / compiled (cached swaps, median): {ratio:.2f}x"
        lines.append(line)
    lines.append(f"process peak RSS: {result.cpu_peak_rss_mib / 1024:.1f} GiB")
    return "\n".join(lines)
