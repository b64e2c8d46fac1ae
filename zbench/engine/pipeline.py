"""The base pipeline: loaded once per process, with explicit device and dtype.

Prompt embeddings are computed once per prompt and reused for every checkpoint, since
the LoRAs zbench compares adapt the denoiser (transformer or UNet), not the text encoder.
That also lets the text encoder leave the GPU once a grid's prompts are encoded (the memory
plan, ``text_encoder`` in the config): Z-Image-Turbo's is ~8 GB in bf16, as much as the
transformer's working set, and it is idle for the rest of the grid.
"""

from __future__ import annotations

import gc
import inspect
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from .compiled import compile_denoiser, compile_wanted
from .config import BenchConfig

__all__ = [
    "Base",
    "BaseModelError",
    "get_base",
    "load_base",
    "missing_model_message",
    "model_fingerprint",
    "resolve_device",
    "resolve_dtype",
    "wrap_pipeline",
]

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class BaseModelError(RuntimeError):
    """The base model could not be found or loaded; the message says where we looked."""


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` means CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BaseModelError(
            "the config asks for device = 'cuda' but torch sees no CUDA GPU; "
            "set device = 'auto' or 'cpu', or install a CUDA build of torch (see README)"
        )
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``"auto"`` means bfloat16 on CUDA and float32 elsewhere (CPU half precision is slow)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[name]


@dataclass
class Base:
    """A loaded base pipeline and what zbench needs to know about it."""

    pipe: Any  # a diffusers DiffusionPipeline
    config: BenchConfig
    device: torch.device
    dtype: torch.dtype
    family: str  # "z-image", "sdxl", "sd", "flux" or "other": which LoRAs fit
    # Names these exact weights on this device and dtype: the image cache's key for the base.
    fingerprint: str = ""
    _embeds: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _embeds_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Where the text encoder lives between encodes: "gpu" (the render device), "cpu" or
    # "offload-after-encode" (on the CPU, brought to the device to encode); see BenchConfig.
    text_encoder: str = "gpu"
    _encode_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # The AdapterSwapper that owns this pipeline's LoRA slot (see hotswap.get_swapper): kept on the
    # base so that releasing the base releases it, and no registry keeps an old pipeline alive.
    swapper: Any = field(default=None, repr=False)
    # The text-encoder adapter live now ("<hash>@<strength>"), None for the bare encoders: part of the key of
    # encoded prompts, so a checkpoint that adapts the text encoder gets its own encodings (set by the swapper).
    text_adapter: str | None = None
    # The compiled denoiser (``compiled.py``), None while it renders eagerly.
    compiled: Any = field(default=None, repr=False)

    @property
    def denoiser_name(self) -> str:
        """The pipeline component LoRAs adapt (also diffusers' key prefix): "transformer" or "unet"."""
        return "transformer" if getattr(self.pipe, "transformer", None) is not None else "unet"

    @property
    def denoiser(self) -> torch.nn.Module:
        return getattr(self.pipe, self.denoiser_name)

    def prompt_kwargs(self, prompt: str, negative: str, guidance: float) -> dict[str, Any]:
        """Keyword arguments for the pipeline call that carry the encoded prompt.

        Encodes once per (prompt, negative, guidance-on) and keeps the last ``EMBEDS_KEPT``
        results. Pipelines without a known encoder get the text itself (correct, just slower).
        """
        encoder = _ENCODERS.get(type(self.pipe).__name__)
        if encoder is None:
            kwargs: dict[str, Any] = {"prompt": prompt}
            if negative and "negative_prompt" in inspect.signature(self.pipe.__call__).parameters:
                kwargs["negative_prompt"] = negative
            return kwargs
        self.encode_prompts([prompt], negative, guidance)
        with self._embeds_lock:
            return self._embeds[(prompt, negative, guidance > 0, self.text_adapter)]

    def encode_prompts(self, prompts: list[str], negative: str, guidance: float) -> None:
        """Encode every prompt not encoded yet, in one visit of the text encoder to the device.

        Side effects:
            With ``text_encoder = "offload-after-encode"`` the text encoder is moved to the render
            device for these prompts and back to the CPU after them (its VRAM is freed).
        """
        encoder = _ENCODERS.get(type(self.pipe).__name__)
        if encoder is None:
            return
        with self._encode_lock:
            with self._embeds_lock:
                adapter = self.text_adapter
                missing = list(
                    dict.fromkeys(p for p in prompts if (p, negative, guidance > 0, adapter) not in self._embeds)
                )
            if not missing:
                return
            te = self.pipe.text_encoder
            where = self.device if self.text_encoder != "cpu" else torch.device("cpu")
            if self.text_encoder == "offload-after-encode":
                te.to(self.device)
            try:
                with torch.inference_mode():
                    encoded = {p: encoder(self.pipe, p, negative, guidance, where) for p in missing}
            finally:
                if self.text_encoder == "offload-after-encode":
                    te.to("cpu")
                    if self.device.type == "cuda":
                        torch.cuda.empty_cache()
            with self._embeds_lock:
                for prompt, kwargs in encoded.items():
                    key = (prompt, negative, guidance > 0, adapter)
                    self._embeds[key] = {k: _to(v, self.device) for k, v in kwargs.items()}
                    while len(self._embeds) > EMBEDS_KEPT:
                        self._embeds.popitem(last=False)


def _encode_zimage(pipe, prompt: str, negative: str, guidance: float, device) -> dict[str, Any]:
    cfg = guidance > 0  # ZImagePipeline applies CFG whenever guidance_scale > 0
    embeds, negative_embeds = pipe.encode_prompt(
        prompt, device=device, do_classifier_free_guidance=cfg, negative_prompt=negative or None
    )
    kwargs = {"prompt_embeds": embeds}
    if cfg:
        kwargs["negative_prompt_embeds"] = negative_embeds
    return kwargs


_ENCODERS = {"ZImagePipeline": _encode_zimage}
EMBEDS_KEPT = 64  # encoded prompts kept per base (a sweep's prompt set fits)


def _to(value, device: torch.device):
    """Embeddings (a tensor or a list of them, as Z-Image passes them) moved to the render device."""
    if isinstance(value, list):
        return [v.to(device) for v in value]
    return value.to(device) if isinstance(value, torch.Tensor) else value


def _text_encoder_mode(config: BenchConfig, device: torch.device, pipe) -> str:
    """The memory plan a config asks for, settled for this device and pipeline."""
    if config.offload != "none" or type(pipe).__name__ not in _ENCODERS or getattr(pipe, "text_encoder", None) is None:
        return "gpu"  # offload hooks manage every component; unknown pipelines encode in their own call
    if config.text_encoder == "auto":
        return "offload-after-encode" if device.type == "cuda" else "gpu"
    return config.text_encoder


def _family(pipe) -> str:
    name = type(pipe).__name__
    if name.startswith("ZImage"):
        return "z-image"
    if "XL" in name:
        return "sdxl"
    if name.startswith("Flux"):
        return "flux"
    if name.startswith("StableDiffusion"):
        return "sd"
    return "other"


def load_base(config: BenchConfig) -> Base:
    """Load the base pipeline a config names (not cached; see :func:`get_base`).

    Raises:
        BaseModelError: the model is neither at ``config.model_path`` nor loadable from ``repo_id``.
    """
    import diffusers

    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    cls = diffusers.DiffusionPipeline if config.pipeline == "auto" else getattr(diffusers, config.pipeline, None)
    if cls is None:
        raise BaseModelError(
            f"{config.source}: pipeline = {config.pipeline!r} is not a diffusers pipeline class "
            f"(diffusers {diffusers.__version__}); use e.g. 'ZImagePipeline' or 'auto'"
        )
    path = config.model_path
    try:
        if path is not None and path.is_file():
            if not hasattr(cls, "from_single_file"):
                raise BaseModelError(
                    f"{cls.__name__} cannot load a single file ({path}); point path at a diffusers folder"
                )
            pipe = cls.from_single_file(str(path), dtype=dtype)
        elif path is not None and path.is_dir():
            pipe = cls.from_pretrained(str(path), dtype=dtype, local_files_only=True)
        elif config.repo_id:
            pipe = cls.from_pretrained(config.repo_id, dtype=dtype)
        else:
            raise BaseModelError(missing_model_message(config))
    except BaseModelError:
        raise
    except (OSError, ValueError) as err:
        raise BaseModelError(f"{missing_model_message(config)}\n(loader said: {err})") from err

    logger.info("loaded %s (%s) on %s as %s", config.model_id, type(pipe).__name__, device, dtype)
    return wrap_pipeline(
        pipe, config, device, dtype, fingerprint=model_fingerprint(config, type(pipe).__name__, device, dtype)
    )


def wrap_pipeline(
    pipe, config: BenchConfig, device: torch.device, dtype: torch.dtype, *, fingerprint: str = ""
) -> Base:
    """Place a loaded pipeline's components as the config's memory plan says, and wrap it as a :class:`Base`.

    Side effects:
        Moves the pipeline's components to ``device`` (all of them, all but the text encoder, or
        through diffusers' offload hooks) and quiets its progress bar.
    """
    if config.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif config.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    text_encoder = _text_encoder_mode(config, device, pipe)
    if config.offload == "none" and text_encoder != "gpu":
        # Everything but the text encoder goes to the device; it stays on the CPU between encodes.
        for name, component in pipe.components.items():
            if isinstance(component, torch.nn.Module) and name != "text_encoder":
                component.to(device)
    elif config.offload == "none":
        pipe.to(device)
    if config.vae_tiling and hasattr(pipe, "vae"):
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    base = Base(
        pipe=pipe,
        config=config,
        device=device,
        dtype=dtype,
        family=_family(pipe),
        fingerprint=fingerprint,
        text_encoder=text_encoder,
    )
    if compile_wanted(config.compile, device):
        if config.offload == "sequential":  # its hooks move every weight per call: nothing for a compiler to keep
            logger.warning('compile is off with offload = "sequential"')
        else:
            compile_denoiser(base)
    return base


def model_fingerprint(config: BenchConfig, pipeline: str, device: torch.device | str, dtype: torch.dtype | str) -> str:
    """A short hash of the base's files (names, sizes, modification times), class, device and dtype.

    A rebuilt or replaced model gets a new fingerprint, so cached images of the old one are not shown.
    """
    import hashlib

    parts = [config.model_id, pipeline, getattr(device, "type", device), str(dtype), config.offload]
    path = config.model_path
    if path is not None and path.exists():
        # Weights and configs only: a README rewritten by `demo report` does not change the pixels.
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and p.suffix != ".md")
        for f in files:
            stat = f.stat()
            parts.append(f"{f.relative_to(path) if f != path else f.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def missing_model_message(config: BenchConfig) -> str:
    where = f"looked for a diffusers folder at {config.model_path}"
    if config.repo_id:
        where += f" and then for {config.repo_id!r} on the Hugging Face hub (unreachable or not cached)"
    fix = config.missing_hint or (
        f"download the model there (huggingface-cli download {config.repo_id or '<repo id>'} --local-dir "
        f"{config.model_path}) or edit [model] path in {config.source}"
    )
    return f"base model {config.name!r} not found: {where}. To fix: {fix}."


_BASES: dict[tuple, Base] = {}
_BASES_LOCK = threading.Lock()


def get_base(config: BenchConfig) -> Base:
    """The process-wide base for a config: loaded on first use, then shared.

    Only one base is kept: asking for another model releases the previous one (and its
    adapter swapper) before loading, since two 6B-parameter pipelines rarely fit in memory
    together. Callers should not keep a base across a config switch either.
    """
    key = (config.model_id, config.pipeline, config.device, config.dtype, config.offload, config.vae_tiling)
    with _BASES_LOCK:
        if key not in _BASES:
            _BASES.clear()
            gc.collect()  # the base and its swapper refer to each other: free them now, not later
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            _BASES[key] = load_base(config)
        return _BASES[key]
