"""Swap benchmark: zbench's in-place swap against diffusers' ways, at Z-Image-Turbo's real size.

The transformer is built from Z-Image-Turbo's config on the meta device and materialised
with ``to_empty`` (its values are irrelevant to swap timing), then rank-r LoRA checkpoints
over q/k/v/out and w1/w2/w3 of every block are written to disk and swapped between.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..demo.toy import random_lora, random_lycoris, save_lora
from ..engine.checkpoints import scan_run
from ..engine.config import BenchConfig
from ..engine.hotswap import ADAPTER, AdapterSwapper
from ..engine.pipeline import Base, resolve_device

__all__ = ["SwapBench", "bench_swap", "format_table", "write_checkpoints"]


@dataclass
class SwapBench:
    """Timings of one benchmark run, in milliseconds, plus what was measured."""

    rows: list[tuple[str, str, float, float]]  # (method, source, median ms, p95 ms)
    modules: int
    lora_params: int
    lora_mib: float
    model_params: int
    device: str
    dtype: str
    sizes: dict[str, float] | None = None  # MiB of one checkpoint's tensors in the live layers, per adapter type


def _time(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> tuple[float, float]:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return statistics.median(samples), p95


def _memcpy(nbytes: int, device: torch.device, repeats: int, sync) -> tuple[float, float]:
    """The floor: one copy of the same number of bytes between two buffers already in memory."""
    src = torch.ones(nbytes, dtype=torch.uint8, device=device)
    dst = torch.zeros_like(src)
    return _time(lambda: dst.copy_(src), repeats, sync)


def _transformer(dim: int, layers: int, refiner_layers: int, dtype: torch.dtype, device: torch.device):
    from diffusers import ZImageTransformer2DModel

    heads = dim // 128  # Z-Image-Turbo: 3840 / 30 heads = 128 per head, axes 32 + 48 + 48
    with torch.device("meta"):
        model = ZImageTransformer2DModel(
            dim=dim,
            n_layers=layers,
            n_refiner_layers=refiner_layers,
            n_heads=heads,
            n_kv_heads=heads,
            cap_feat_dim=min(2560, dim),
        )
    return model.to(dtype).to_empty(device=device).eval()


def write_checkpoints(transformer, run: Path, *, count: int, rank: int, dtype: torch.dtype) -> list:
    """``count`` random rank-``rank`` LoRA checkpoints of ``transformer`` in diffusers' layout, scanned."""
    for i in range(count):
        state = {k: v.to(dtype) for k, v in random_lora(transformer, rank=rank, seed=i).items()}
        save_lora(run / f"bench_{i + 1:03d}.safetensors", state, fmt="diffusers")
    return scan_run(run)


def write_lycoris(transformer, run: Path, kind: str, *, count: int, rank: int, factor: int, dtype) -> list:
    """``count`` random LoKr or LoHa checkpoints of ``transformer`` as the LyCORIS library saves them, scanned."""
    from safetensors.torch import save_file

    run.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        state = random_lycoris(transformer, kind, rank=rank, seed=i, factor=factor)
        save_file({k: v.to(dtype).contiguous() for k, v in state.items()}, str(run / f"{kind}_{i + 1:03d}.safetensors"))
    return scan_run(run)


def _lycoris_rows(base, run: Path, kind: str, *, rank: int, factor: int, repeats: int, sync, progress):
    """Cached swaps and first visits between three LoKr or LoHa checkpoints, and their bytes in the live layers."""
    label = {"lokr": "LoKr", "loha": "LoHa"}[kind]
    shape = f"factor {factor}, whole halves" if kind == "lokr" else f"rank {rank}"
    progress(f"writing 3 {label} checkpoints ({shape})")
    cks = write_lycoris(base.denoiser, run, kind, count=3, rank=rank, factor=factor, dtype=base.dtype)
    swapper = AdapterSwapper(base, cache_mb=1 << 20)
    for ck in cks:
        swapper.activate(ck)
    nbytes = swapper.adapter_bytes
    order = iter(range(10**9))

    def cached():
        swapper.activate(cks[next(order) % 3])

    def first_visit():
        swapper.clear_cache()
        swapper.activate(cks[next(order) % 3])

    progress(f"timing: {label}, cached and first visits")
    rows = [
        (f"zbench swap, {label} {shape} (in-place copy from cache)", "RAM", *_time(cached, repeats * 4, sync)),
        (f"zbench first visit, {label} (read, check, copy)", "file", *_time(first_visit, repeats, sync)),
    ]
    swapper.reset()
    return rows, nbytes


def bench_swap(
    *,
    rank: int = 32,
    dim: int = 3840,
    layers: int = 30,
    refiner_layers: int = 2,
    repeats: int = 15,
    lokr_factor: int = 8,
    loha_rank: int = 16,
    device: str = "cpu",
    dtype: str = "bfloat16",
    progress: Callable[[str], None] = print,
) -> SwapBench:
    """Time every way of switching between checkpoints of one run, side by side in one process.

    Defaults are Z-Image-Turbo's transformer (6.15 B params) with rank-32 LoRAs (238 modules), and LoKr (factor 8,
    both halves whole) and LoHa (rank 16) checkpoints of about the same stored size over the same modules.
    """
    from diffusers import ZImagePipeline

    dev = resolve_device(device)
    dt = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    progress(f"building the transformer (dim {dim}, {layers}+{refiner_layers}x2 blocks) on meta, then {dev}")
    transformer = _transformer(dim, layers, refiner_layers, dt, dev)
    model_params = sum(p.numel() for p in transformer.parameters())
    pipe = ZImagePipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=transformer)
    base = Base(pipe=pipe, config=BenchConfig(name="bench", repo_id="bench"), device=dev, dtype=dt, family="z-image")

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        progress(f"writing 3 rank-{rank} checkpoints")
        cks = write_checkpoints(transformer, run, count=3, rank=rank, dtype=dt)
        swapper = AdapterSwapper(base, cache_mb=1 << 20)
        for ck in cks:  # first visits: inject, then direct copies; all end up cached
            swapper.activate(ck, target_rank=rank)
        nbytes, modules = swapper.adapter_bytes, swapper.layer_count
        order = iter(range(10**9))

        def ours():
            swapper.activate(cks[next(order) % 3])

        rows = []
        sizes = {"LoRA": nbytes / 2**20}
        progress("timing: ours (in-memory cache)")
        rows.append(("zbench swap (in-place copy from cache)", "RAM", *_time(ours, repeats * 4, sync)))

        def first_visit():
            swapper.clear_cache()  # as if each checkpoint were new: read, convert, check, then copy in
            swapper.activate(cks[next(order) % 3])

        progress("timing: ours, first visit of a checkpoint")
        rows.append(("zbench first visit (read, check, copy)", "file", *_time(first_visit, repeats, sync)))

        progress("timing: memcpy floor")
        rows.append(("memcpy floor (same bytes, one buffer)", "RAM", *_memcpy(nbytes, dev, repeats * 4, sync)))

        def hotswap():
            pipe.load_lora_weights(str(cks[next(order) % 3].path), adapter_name=ADAPTER, hotswap=True)

        progress("timing: diffusers hotswap=True")
        rows.append(("diffusers load_lora_weights(hotswap=True)", "file", *_time(hotswap, repeats, sync)))
        pipe.unload_lora_weights()

        def reload():
            pipe.unload_lora_weights()
            pipe.load_lora_weights(str(cks[next(order) % 3].path), adapter_name="x")

        pipe.load_lora_weights(str(cks[0].path), adapter_name="x")
        progress("timing: diffusers unload_lora_weights + load_lora_weights")
        rows.append(("diffusers unload + load_lora_weights", "file", *_time(reload, repeats, sync)))
        pipe.unload_lora_weights()
        swapper.reset()
        for kind in ("lokr", "loha"):
            more, size = _lycoris_rows(base, Path(tmp) / kind, kind, rank=10**6 if kind == "lokr" else loha_rank,
                                       factor=lokr_factor, repeats=repeats, sync=sync, progress=progress)  # fmt: skip
            rows += more
            sizes[{"lokr": "LoKr", "loha": "LoHa"}[kind]] = size / 2**20
        progress("timing: safetensors load_file (for reference)")
        rows.append(
            (
                "safetensors.load_file (read only)",
                "file",
                *_time(lambda: load_file(str(cks[next(order) % 3].path)), repeats, sync),
            )
        )

    return SwapBench(
        rows=rows,
        modules=modules,
        lora_params=nbytes // dt.itemsize,
        lora_mib=nbytes / 2**20,
        model_params=model_params,
        device=str(dev),
        dtype=dtype,
        sizes=sizes,
    )


def format_table(result: SwapBench) -> str:
    """A markdown table of the timings with the two ratios the issue asks for."""
    by = {r[0].split(" (")[0]: r for r in result.rows}
    ours = by["zbench swap"][2]
    floor = by["memcpy floor"][2]
    reload = by["diffusers unload + load_lora_weights"][2]
    hot = by["diffusers load_lora_weights(hotswap=True)"][2]
    lines = [
        f"model: {result.model_params / 1e9:.2f} B params, {result.dtype} on {result.device}; LoRA: "
        f"{result.modules} modules, {result.lora_params / 1e6:.1f} M params, {result.lora_mib:.0f} MiB",
        "",
        "| method | from | median ms | p95 ms |",
        "|---|---|---:|---:|",
        *[f"| {m} | {src} | {med:.2f} | {p95:.2f} |" for m, src, med, p95 in result.rows],
        "",
        f"ours / memcpy floor: {ours / floor:.2f}x    "
        f"(unload+load) / ours: {reload / ours:.1f}x    hotswap=True / ours: {hot / ours:.1f}x",
    ]
    for label in ("LoKr", "LoHa"):
        row = next((r for r in result.rows if r[0].startswith(f"zbench swap, {label}")), None)
        if row is not None and result.sizes:
            mib, lora = result.sizes[label], result.sizes["LoRA"]
            lines.append(f"{label} cached swap / LoRA cached swap: {row[2] / ours:.2f}x at {mib:.0f} MiB vs "
                         f"{lora:.0f} MiB ({row[2] / ours * lora / mib:.2f}x per byte)")  # fmt: skip
    return "\n".join(lines)
