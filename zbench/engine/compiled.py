"""The compiled render path: one ``torch.compile``'d denoiser per base that no hot-swap recompiles.

What would make dynamo recompile in this tool, and what zbench does instead:

- **Adapter tensors.** A swap writes new numbers into the same tensors (``hotswap.py``). LoRA ranks are padded to the
  run's largest when the layers are injected (diffusers' ``enable_lora_hotswap(target_rank=…)``), which also turns
  peft's per-module scalings into tensors: neither a new rank nor a new alpha is a new graph.
- **Strength and the base column.** With a compiled denoiser the base column is the same adapter layers at strength 0
  (exact: the LoRA term adds ``0 · finite``), not peft's ``disable_adapters`` flag, and zbench's own LoKr/LoHa/DoRA
  layers keep strength and scale in tensors (``DeltaLayer.fixed``): a flag or a Python float in ``forward`` is a
  guard, and changing it recompiles. ``render_cells`` injects the first checkpoint's layers before a base column
  that comes first, so the graph is traced with the layers it keeps.
- **Token counts.** Z-Image's blocks see the image's tokens, the caption's (the prompt's length, rounded up to 32)
  and both. The blocks are compiled with dynamic sequence lengths, so a new prompt or image size is not a new graph.
  Captions are not padded to buckets instead: Z-Image attends to its caption padding (the learned pad token is not
  masked out of attention), so padding a caption further would change the image.

Regional compilation (what diffusers' ``compile_repeated_blocks`` does): the repeated transformer blocks are
compiled, not the whole network, so one block of each kind is traced (Z-Image: the refiners' and the main layers')
and the same code serves every block: compile time in seconds rather than minutes, and the blocks hold nearly all the
FLOPs. A denoiser without ``_repeated_blocks`` is compiled whole.

The first compiled render traces and compiles; its time is kept per model and machine (``compile-times.json`` in the
image cache folder), so the page can say how long the next first render takes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .jsonio import JsonError, read_json

__all__ = ["CompiledDenoiser", "compile_denoiser", "compile_notice", "compile_steps", "compile_wanted", "uncompile"]

logger = logging.getLogger(__name__)


def compile_wanted(setting: str, device: torch.device) -> bool:
    """Whether a config's ``[render] compile`` compiles on ``device``.

    "auto" compiles on CUDA only: on a CPU, inductor's code is barely faster than eager (1.05x at Z-Image's width,
    1.23x on the demo, after 8-19 s of compiling: ``bench grid``, benchmarks/RESULTS.md), which few grids repay.
    """
    if setting == "true":
        return True
    if setting == "false":
        return False
    return device.type == "cuda"


@dataclass
class CompiledDenoiser:
    """What was compiled on a base, and how long its first compiled render took."""

    backend: Any  # "inductor", or a callable backend (tests count graphs with dynamo's CompileCounter)
    regions: str  # "repeated blocks (ZImageTransformerBlock)" or "the whole denoiser"
    modules: list[torch.nn.Module] = field(repr=False)
    key: str = ""  # names the model, device and torch version, for compile-times.json
    estimate_s: float | None = None  # the first compiled render's time measured earlier on this machine
    first_s: float | None = None  # this process's first compiled render (trace + compile + one render)

    @property
    def pending(self) -> bool:
        """True until the first compiled render has run."""
        return self.first_s is None

    @property
    def label(self) -> str:
        """For manifests and the bench table: "inductor, repeated blocks (ZImageTransformerBlock)"."""
        name = self.backend if isinstance(self.backend, str) else type(self.backend).__name__
        return f"{name}, {self.regions}"


def compile_denoiser(base, *, backend: Any = "inductor", dynamic: bool | None = True) -> CompiledDenoiser:
    """Compile ``base``'s denoiser in place (lazily: dynamo traces at the first render) and record it on the base.

    Args:
        base: a :class:`zbench.engine.pipeline.Base`.
        backend: ``torch.compile``'s backend.
        dynamic: dynamic shapes for the compiled regions (True: sequence lengths never recompile; see the module
            docstring).

    Returns:
        The record, also ``base.compiled``. The module objects stay the same, so the swapper's in-place writes and
        layer injection work as before. The base's fingerprint gets "+compiled": inductor's fused kernels round
        differently from eager ones (a level of 255 here and there), so the image cache keeps the two apart.
    """
    denoiser = base.denoiser
    blocks = set(getattr(denoiser, "_repeated_blocks", None) or ())
    modules = [m for m in denoiser.modules() if type(m).__name__ in blocks] if blocks else []
    if modules:
        regions = f"repeated blocks ({', '.join(sorted({type(m).__name__ for m in modules}))})"
    else:
        modules, regions = [denoiser], "the whole denoiser"
    for module in modules:
        module.compile(backend=backend, dynamic=dynamic)
    key = f"{base.config.model_id}|{_device_name(base.device)}|{base.dtype}|torch {torch.__version__}"
    record = CompiledDenoiser(backend, regions, modules, key, _read_times().get(key))
    base.compiled = record
    base.fingerprint = f"{base.fingerprint or base.config.model_id}+compiled"
    logger.info("compiling %s of %s (%s) at its first render", regions, base.config.name, record.label)
    return record


def uncompile(base) -> None:
    """Back to eager modules (after a compile failure); the base renders as without ``compile``."""
    record = getattr(base, "compiled", None)
    if record is None:
        return
    for module in record.modules:
        module._compiled_call_impl = None  # what nn.Module.compile set
    base.compiled = None
    base.fingerprint = base.fingerprint.removesuffix("+compiled")


@contextlib.contextmanager
def first_render(base):
    """Time the first compiled render of ``base`` (trace + compile + render) and keep the figure for next time."""
    record = getattr(base, "compiled", None)
    if record is None or not record.pending:
        yield
        return
    started = time.perf_counter()
    yield
    record.first_s = time.perf_counter() - started
    logger.info("first compiled render of %s: %.1f s", base.config.name, record.first_s)
    if isinstance(record.backend, str):
        _write_time(record.key, record.first_s)


def compile_notice(base) -> str | None:
    """While the next render is the first compiled one: what the page shows instead of a frozen progress bar."""
    record = getattr(base, "compiled", None)
    if record is None or not record.pending:
        return None
    if record.estimate_s is not None:
        return f"compiling the denoiser, once per base: ~{max(1, round(record.estimate_s))} s"
    return "compiling the denoiser, once per base: about a minute (the first compile on this machine: no time to go by)"


def compile_steps(base, bar):
    """An ``on_step`` for a command's tqdm bar: its description says when the denoiser compiles (then "rendering")."""

    shown = []  # the notice is on the bar (a disabled bar has no description to read back)

    def on_step(cell, step: int, steps: int) -> None:
        if step == 0 and (notice := compile_notice(base)) is not None:
            bar.set_description(notice)
            shown.append(notice)
        elif step == 1 and shown:
            bar.set_description("rendering")
            shown.clear()

    return on_step


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def _times_path() -> Path:
    from .cache import default_cache_dir

    return default_cache_dir() / "compile-times.json"


def _read_times() -> dict[str, float]:
    try:
        data = read_json(_times_path(), max_bytes=2**20)
    except (OSError, JsonError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float) and v > 0}


def _write_time(key: str, seconds: float) -> None:
    times = _read_times()
    times[key] = round(seconds, 1)
    path = _times_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(times, indent=1))
        tmp.replace(path)
    except OSError as err:  # a read-only cache folder: the estimate is only a nicety
        logger.info("could not record the compile time in %s (%s)", path, err)
