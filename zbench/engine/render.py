"""Turn a grid plan (``plan.py``) into images: the same prompt and seed drawn by every chosen checkpoint.

The first row is rendered across every checkpoint first, so a complete comparison appears after
one render per column; the other rows follow checkpoint by checkpoint (revisits are cached swaps).
Swap and render of a cell happen under the swapper's lock, so sessions sharing the pipeline
never see each other's adapter. One bad checkpoint yields an error cell; the rest render.
The API takes every cell at once so that a batched strategy (several checkpoints in one
denoising batch) can replace the loop without changing callers.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from .cache import ImageCache, cell_key
from .compiled import compile_notice, first_render, uncompile
from .hotswap import AdapterSwapper, get_swapper
from .lora_file import LoraError
from .pipeline import Base
from .plan import Cell, CellResult, RenderSettings, check_scale

__all__ = ["RenderError", "RenderStopped", "image_key", "measure_grid", "render_cells", "render_image"]

logger = logging.getLogger(__name__)

LOCK_POLL_S = 0.25  # how often a cell waiting for the shared pipeline checks Stop


def render_cells(
    base: Base,
    cells: Sequence[Cell],
    settings: RenderSettings,
    *,
    swapper: AdapterSwapper | None = None,
    target_rank: int | None = None,
    progress: Callable[[int, int, CellResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_step: Callable[[Cell, int, int], None] | None = None,
    cache: ImageCache | None = None,
    cache_only: bool = False,
    read_ahead: bool = True,
) -> list[CellResult]:
    """Render cells: the first row across all checkpoints, then the rest; results come back in the order of ``cells``.

    Args:
        target_rank: the largest rank among the run's checkpoints (default: among these cells'),
            so adapter layers are injected once for the whole run.
        progress: called after every cell with (done, total, result).
        should_stop: polled between cells, after every denoising step and while waiting for
            another session's cell; when it returns True the current cell and the rest are
            marked "stopped" (a long render stops within one step).
        on_step: called with (cell, step, steps) after every denoising step, and with step 0
            while waiting for the shared pipeline and before the first render of a compiled denoiser
            (``compile_notice`` says which). It may raise to abandon the render (the
            page's Stop does): the lock is released and the pipeline stays usable.
        cache: images already drawn are taken from it (no swap, no render; ``swap_path`` is
            "cache") and new ones are stored in it.
        cache_only: render nothing; cells not in the cache come back "pending".
        read_ahead: read the next column's checkpoint on a background thread while a column
            renders (see ``prefetch.py``); False reads each on its first visit (benchmarks compare).

    Raises:
        ValueError: a cell's LoRA scale is not usable (see ``check_scale``); nothing is rendered.

    Side effects:
        Swaps the shared pipeline's adapter (under the swapper's lock).
    """
    swapper = swapper or get_swapper(base)
    for cell in cells:
        check_scale(cell.scale)
    ranks = [c.checkpoint.rank for c in cells if c.checkpoint is not None and c.checkpoint.rank]
    target_rank = max([target_rank or 0, *ranks])
    # The first row across every checkpoint first (a whole comparison after one render per column),
    # then the other rows checkpoint by checkpoint (each revisit of an adapter is a cached swap).
    order = sorted(range(len(cells)), key=lambda i: (cells[i].row > 0, cells[i].col, cells[i].scale, cells[i].row))
    columns: dict[int, list[Cell]] = {}
    for i in order:
        columns.setdefault(cells[i].col, []).append(cells[i])
    following = dict(zip(columns, [*list(columns)[1:], None], strict=True))  # column -> the next one rendered
    results: list[CellResult | None] = [None] * len(cells)
    base_images: dict[tuple[str, int], CellResult] = {}  # the base ignores the LoRA scale
    encoded = False
    started: set[int] = set()  # columns whose successor is being read in the background

    def read_next(col: int) -> None:
        """Right after a column's swap: read the next column's file while this one renders."""
        if read_ahead and col not in started and following[col] is not None:
            started.add(col)
            upcoming = columns[following[col]]
            swapper.prefetch(upcoming[0].checkpoint, needed=_needs_render(base, upcoming, settings, cache))

    for done, i in enumerate(order, start=1):
        cell = cells[i]
        key = _key(base, cell, settings) if cache is not None else None
        cached = cache.get(key, size=(settings.width, settings.height)) if key is not None else None
        reuse = base_images.get((cell.prompt, cell.seed)) if cell.checkpoint is None else None
        if cached is not None:
            result = CellResult(cell, cached, "ok", None, None, None, "cache")
        elif reuse is not None:
            result = CellResult(cell, reuse.image, reuse.status, reuse.error, None, None, "reused")
        elif cache_only:
            result = CellResult(cell, None, "pending", "not rendered yet")
        elif should_stop is not None and should_stop():
            result = CellResult(cell, None, "stopped", "rendering was stopped")
        else:
            if not encoded:  # the grid's prompts in one visit of the text encoder (see the memory plan)
                encoded = _encode_all(base, cells, settings)
            if cell.checkpoint is None and base.compiled is not None and not swapper.layer_count:
                # A base column first: trace the compiled graph with the adapter layers the grid goes on to use.
                first = next((c.checkpoint for c in cells if c.checkpoint is not None and c.checkpoint.error is None),
                             None)  # fmt: skip
                if first is not None:
                    swapper.prepare(first, target_rank=target_rank)
            result = _render_cell(
                base, swapper, cell, settings, target_rank, should_stop, on_step, lambda c=cell.col: read_next(c)
            )
            if key is not None and result.image is not None:
                cache.put(key, result.image, parameters=f"{cell.prompt}\nSeed: {cell.seed}, LoRA: {cell.name}")
        if cell.checkpoint is None and result.image is not None:
            base_images[(cell.prompt, cell.seed)] = result
        results[i] = result
        if progress is not None:
            progress(done, len(cells), result)
    return [r for r in results if r is not None]


def _needs_render(base: Base, column: list[Cell], settings: RenderSettings, cache: ImageCache | None):
    """For the prefetcher: whether any cell of a column is missing from the image cache (asked in the background)."""
    if cache is None:
        return None
    return lambda: any((key := _key(base, c, settings)) is None or not cache.has(key) for c in column)


def _encode_all(base: Base, cells: Sequence[Cell], settings: RenderSettings) -> bool:
    prompts = list(dict.fromkeys(c.prompt for c in cells))
    try:
        base.encode_prompts(prompts, settings.negative, settings.guidance)
    except Exception as err:  # each cell then encodes its own prompt and reports what fails
        logger.warning("encoding the grid's prompts failed (%s); encoding per cell", err)
    return True


@contextlib.contextmanager
def measure_grid(base: Base) -> Iterator[dict[str, object]]:
    """Measure a grid while the block renders it: wall seconds and peak memory allocated on CUDA.

    Yields a dict for the grid's manifest: device, dtype, text-encoder plan and what is compiled at once; ``seconds``
    and ``peak_vram_bytes`` (None off CUDA) when the block ends.
    """
    stats: dict[str, object] = {
        "device": str(base.device),
        "dtype": str(base.dtype).removeprefix("torch."),
        "text_encoder": base.text_encoder,
        "compiled": None if base.compiled is None else base.compiled.label,
        "peak_vram_bytes": None,
    }
    cuda = base.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(base.device)
        torch.cuda.reset_peak_memory_stats(base.device)
    started = time.perf_counter()
    try:
        yield stats
    finally:
        if cuda:
            torch.cuda.synchronize(base.device)
            stats["peak_vram_bytes"] = int(torch.cuda.max_memory_allocated(base.device))
        stats["seconds"] = round(time.perf_counter() - started, 3)


def _key(base: Base, cell: Cell, settings: RenderSettings) -> str | None:
    ck = cell.checkpoint
    if ck is not None and (ck.error is not None or not ck.hash):
        return None  # nothing to key on; such cells are errors anyway
    return image_key(base.fingerprint or base.config.model_id, None if ck is None else ck.hash, cell, settings)


def image_key(base_id: str, lora_hash: str | None, cell: Cell, settings: RenderSettings) -> str:
    """The image cache's key of a cell: the base, the LoRA's content hash (None: the base) and every setting."""
    return cell_key(
        base_id,
        lora_hash,
        prompt=cell.prompt,
        negative=settings.negative,
        seed=cell.seed,
        scale=cell.scale,
        steps=settings.steps,
        guidance=settings.guidance,
        width=settings.width,
        height=settings.height,
    )


def _render_cell(
    base: Base,
    swapper: AdapterSwapper,
    cell: Cell,
    settings: RenderSettings,
    target_rank: int,
    should_stop: Callable[[], bool] | None,
    on_step: Callable[[Cell, int, int], None] | None,
    after_swap: Callable[[], None] = lambda: None,
) -> CellResult:
    def step(i: int) -> None:
        if on_step is not None:
            on_step(cell, i, settings.steps)
        if should_stop is not None and should_stop():
            raise RenderStopped

    try:
        # Another session may be rendering: wait in short slices so Stop still works meanwhile.
        while not swapper.lock.acquire(timeout=LOCK_POLL_S):
            step(0)
    except RenderStopped:
        return CellResult(cell, None, "stopped", "rendering was stopped")
    try:
        try:
            path, swap_ms = swapper.timed_activate(cell.checkpoint, scale=cell.scale, target_rank=target_rank)
        except LoraError as err:
            return CellResult(cell, None, "error", str(err))
        except Exception as err:  # unforeseen: the next cells still get a clean pipeline
            swapper.reset()
            return CellResult(
                cell,
                None,
                "error",
                f"{cell.name} could not be swapped in ({type(err).__name__}: {err}); the pipeline was reset to the "
                "base model and keeps rendering the other checkpoints. Re-save the file from the trainer.",
            )
        after_swap()
        try:
            if compile_notice(base) is not None:
                step(0)  # the page says the denoiser compiles now, instead of a frozen bar for the first step
            t0 = time.perf_counter()
            image = render_image(base, cell.prompt, cell.seed, settings, on_step=step)
            render_ms = (time.perf_counter() - t0) * 1000
        except RenderStopped:
            return CellResult(cell, None, "stopped", "rendering was stopped", swap_ms, None, path)
        except RenderError as err:
            return CellResult(cell, None, "error", str(err), swap_ms, None, path)
        except Exception as err:  # an adapter that fails inside the model must not poison the next cells
            swapper.reset()
            return CellResult(
                cell,
                None,
                "error",
                f"rendering {cell.name} failed ({type(err).__name__}: {err}); its LoRA was taken off the pipeline, "
                "which keeps rendering the other checkpoints. Re-save the file from the trainer.",
                swap_ms,
                None,
                path,
            )
    finally:
        swapper.lock.release()
    return CellResult(cell, image, "ok", None, swap_ms, render_ms, path)


def _oom_message(base: Base, settings: RenderSettings, doing: str) -> str:
    if base.device.type == "cuda":
        torch.cuda.empty_cache()
    return (
        f'out of memory {doing} on {base.device}: lower the size, or set offload = "model" in the config\'s '
        "[model] section. Cells already drawn are kept."
    )


def _compiler_error(err: Exception) -> bool:
    """Whether ``err`` came from dynamo or inductor (not from the model, a stop or an out-of-memory)."""
    return type(err).__module__.startswith(("torch._dynamo", "torch._inductor"))


class RenderStopped(Exception):
    """Raised inside a render to abandon it (Stop was pressed); the cell is marked "stopped"."""


class RenderError(RuntimeError):
    """A render failed; the message says why and what to change."""


def render_image(
    base: Base,
    prompt: str,
    seed: int,
    settings: RenderSettings,
    *,
    on_step: Callable[[int], None] | None = None,
) -> Image.Image:
    """Draw one image with whatever adapter is active. Call it under the swapper's lock.

    The initial noise comes from a CPU generator seeded with ``seed``, so every checkpoint
    (and CPU and CUDA alike) starts from the same noise.

    Args:
        on_step: called with the number of finished denoising steps after each one (pipelines
            that report steps); whatever it raises ends the render and propagates.

    Raises:
        RenderError: out of memory, or the result holds NaNs (a diverged LoRA or fp16 overflow).
    """
    try:
        kwargs = base.prompt_kwargs(prompt, settings.negative, settings.guidance)
    except torch.OutOfMemoryError as err:
        raise RenderError(_oom_message(base, settings, "encoding the prompt")) from err
    if on_step is not None and "callback_on_step_end" in inspect.signature(base.pipe.__call__).parameters:

        def callback(pipe, i, t, tensors):
            on_step(i + 1)
            return {}

        kwargs = {**kwargs, "callback_on_step_end": callback, "callback_on_step_end_tensor_inputs": []}

    def draw():
        with torch.inference_mode(), first_render(base):
            out = base.pipe(
                **kwargs,
                num_inference_steps=settings.steps,
                guidance_scale=settings.guidance,
                width=settings.width,
                height=settings.height,
                output_type="np",
                generator=torch.Generator("cpu").manual_seed(seed),
            )
            if base.device.type == "cuda":
                torch.cuda.synchronize(base.device)
        return out

    try:
        try:
            out = draw()
        except Exception as err:
            if base.compiled is None or not base.compiled.pending or not _compiler_error(err):
                raise
            # No working compiler here (e.g. no C++ toolchain for inductor on a CPU): render eagerly from now on.
            logger.warning("compiling the denoiser failed (%s: %s); rendering without compile", type(err).__name__, err)
            uncompile(base)
            out = draw()
    except torch.OutOfMemoryError as err:
        raise RenderError(_oom_message(base, settings, f"rendering {settings.width}x{settings.height}")) from err
    array = np.asarray(out.images[0])
    if not np.isfinite(array).all():
        raise RenderError(
            "the render produced NaN values: the checkpoint is diverged, or float16 overflowed "
            '(try dtype = "bfloat16" or "float32" in the config)'
        )
    return Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8))
