"""The adapter lifecycle: inject LoRA layers once, then swap checkpoints by writing tensors in place.

A run's checkpoints all adapt the same modules, so after the first one is loaded the next is
only new numbers in the same places. Three paths, fastest first:

- fast: the checkpoint was seen before; its converted tensors sit in a bounded in-memory
  cache and one ``torch._foreach_copy_`` writes them into the live layers.
- direct: a new file of the same run whose scalings zbench knows (``scalings.py``): read and
  checked (``lora_file.py``, ahead of time by ``prefetch.py``), then one copy like the fast path.
- general: a new file otherwise; zbench reads and checks it (``lora_file.py``: diffusers converts its keys,
  kohya, ai-toolkit, fused qkv...) and diffusers' ``load_lora_adapter(..., hotswap=True)``
  writes it in place. The result is then cached.
- inject: the first checkpoint of a run, a new run, or a rank larger than the layers hold;
  layers are (re)created at the largest rank of the run (zero padding is exact).

LoKr, LoHa, DoRA and text-encoder files (``lycoris.py``) take the same paths with zbench's own layers
(``lycoris_layers.py``) instead of peft's: inject wraps the run's modules, direct and fast copy factors into
them. A checkpoint of the other family (a plain LoRA after a LoKr, or back) first takes every adapter layer off.

"base" disables the adapter layers, which makes them return the base layer's output exactly; with a compiled
denoiser it sets their strength to 0 instead (exact too), since a flag would recompile it (``compiled.py``).
Every method that changes the adapter holds ``lock``; a caller that renders holds it across
swap and render so that concurrent sessions sharing the pipeline never mix checkpoints.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Literal

import torch

from .checkpoints import Checkpoint
from .entries import ADAPTER, Entry, EntryCache, clone_entry, entry_for
from .lora_file import LoraError, LoraRead, read_lora
from .lycoris import LycorisRead
from .lycoris_layers import LycorisSlot
from .pipeline import Base
from .plan import check_scale
from .prefetch import Prefetcher
from .scalings import config_scalings

__all__ = ["AdapterSwapper", "get_swapper"]

logger = logging.getLogger(__name__)

SwapPath = Literal["noop", "base", "fast", "direct", "general", "inject"]


class AdapterSwapper:
    """Owns the one LoRA adapter slot of a base pipeline's denoiser.

    Modifies ``base.pipe`` in place: it injects peft LoRA layers into the denoiser and
    rewrites their weights and scalings on every :meth:`activate`.
    """

    def __init__(self, base: Base, *, cache_mb: int | None = None):
        self.base = base
        self.lock = threading.RLock()
        self._cache = EntryCache((base.config.swap_cache_mb if cache_mb is None else cache_mb) * 2**20)
        self._names: list[str] = []  # module names of the adapter layers, aligned with _layers
        self._layers: list[torch.nn.Module] = []
        self._params: list[torch.Tensor] = []
        self._modules: frozenset[str] = frozenset()
        self._run: Path | None = None
        self._rank = 0
        self._active: str | None = None  # hash of the active checkpoint; None = base
        self._scale = 1.0
        self._scalings: list[float] = []  # the active checkpoint's scalings at LoRA scale 1
        self._applied: list[float] = []  # what the layers hold now
        self._enabled = False  # whether the adapter layers are on (off = base model)
        self._slot: LycorisSlot | None = None  # the LoKr/LoHa layers, when the live run is one of those
        self._text = False  # whether the active checkpoint adapts a text encoder
        self.last_path: SwapPath = "noop"
        self.prefetcher = Prefetcher(base)  # reads the next checkpoint of a grid while this one renders
        self._trust_scalings = True  # until zbench's scalings ever differ from the ones diffusers sets
        if getattr(base.denoiser, "peft_config", None):
            base.pipe.unload_lora_weights()  # take over a pipeline that already holds adapters

    @property
    def prefix(self) -> str:
        return self.base.denoiser_name

    @property
    def active(self) -> str | None:
        """Hash of the checkpoint the next render uses, or None for the base model."""
        return self._active

    @property
    def injected_rank(self) -> int:
        return self._rank

    @property
    def adapter_bytes(self) -> int:
        """Bytes of LoRA tensors in the live layers (one checkpoint at the injected rank)."""
        return sum(p.numel() * p.element_size() for p in self._params)

    @property
    def layer_count(self) -> int:
        return len(self._layers)

    def prefetch(self, ck: Checkpoint | None, *, needed=None) -> None:
        """Read ``ck`` on a background thread unless it is cached or active (see :class:`Prefetcher`).

        Never reads or hashes the file on the calling thread: a hash not known yet is read in the
        background, and ``needed`` (see :meth:`Prefetcher.prefetch`) is asked there too.
        """
        if ck is None or ck.error is not None:
            return
        if ck.hash_read and (ck.hash_read in self._cache or ck.hash_read == self._active):
            return

        def wanted() -> bool:
            return ck.hash not in self._cache and ck.hash != self._active and (needed is None or needed())

        self.prefetcher.prefetch(ck, needed=wanted)

    def prepare(self, ck: Checkpoint, *, target_rank: int | None = None) -> None:
        """Inject ``ck``'s layers, then make the base active: with a compiled denoiser, before a base column that
        renders first, so the graph is traced once, with the layers the rest of the grid uses (``compiled.py``).

        Nothing happens when layers are there already; a file that fails is left for its own cell to report.
        """
        with self.lock:
            if self._layers:
                return
            try:
                self.activate(ck, target_rank=target_rank)
            except LoraError:
                return
            self.activate(None)

    def clear_cache(self) -> None:
        """Forget cached checkpoints (frees their memory); the next visit of each reloads its file."""
        with self.lock:
            self._cache.clear()

    def activate(self, ck: Checkpoint | None, *, scale: float = 1.0, target_rank: int | None = None) -> SwapPath:
        """Make ``ck`` the adapter of the next render (``None``: the base model, LoRA off).

        Args:
            ck: a checkpoint from :func:`zbench.scan_run`, or None for the base.
            scale: LoRA strength; 1.0 is the checkpoint as trained.
            target_rank: the largest rank in the run, so layers are injected once for all.

        Returns:
            Which path the swap took: "noop", "base", "fast", "general" or "inject".

        Raises:
            LoraError: the file is broken, for another base, or differs from the run's modules.
                The adapter state is unchanged when the file is refused before loading; when
                diffusers fails while writing it, every adapter layer is removed (the base is
                active and the next checkpoint is injected afresh).
            ValueError: ``scale`` is NaN, infinite or beyond ±MAX_SCALE.
        """
        check_scale(scale)
        with self.lock, torch.no_grad():
            self.last_path = self._activate(ck, scale, target_rank)
            return self.last_path

    def _activate(self, ck, scale, target_rank) -> SwapPath:
        if ck is None:
            if self._enabled:
                self._enable(False)
                self._enabled = False
            self._active = None
            self.base.text_adapter = None
            return "base"
        if ck.error:
            raise LoraError(ck.error)
        if self._active == ck.hash:
            if scale != self._scale:
                self._apply_scalings(self._scalings, scale)
                self._scale = scale
                self._text_adapter(ck, scale)
            return "noop"
        entry = self._cache.get(ck.hash)
        run = ck.run_dir
        if entry is not None and run == self._run:
            entry.write()
            path: SwapPath = "fast"
        else:
            # Read ahead by the prefetcher, or now; either raises before anything in the pipeline changes.
            read = self.prefetcher.take(ck) or read_lora(self.base, ck)
            try:
                if self._slot is not None and not isinstance(read, LycorisRead):
                    self._reset()  # a LoRA after LoKr/LoHa layers: back to the bare base first
                if isinstance(read, LycorisRead):
                    entry, path = self._lycoris(read, run, target_rank)
                    entry.write()
                elif (entry := self._direct(read, run, target_rank)) is not None:
                    entry.write()  # a first visit as cheap as a revisit: one copy into the live layers
                    path = "direct"
                else:
                    path = self._load(read, ck, run, target_rank)
                    scalings = [float(m.scaling[ADAPTER]) for m in self._layers]
                    self._applied = list(scalings)  # what diffusers just wrote
                    if config_scalings(read, self.prefix, self._names) not in (None, scalings):
                        logger.warning(
                            "zbench's scalings differ from diffusers' for %s; first visits go through diffusers",
                            ck.name,
                        )
                        self._trust_scalings = False
                    fresh = entry_for(read.state, self.prefix, self._names, self._layers, scalings)
                    entry = (fresh if path == "general" else None) or clone_entry(self._params, scalings)
            except BaseException as err:
                # diffusers or peft failed with the adapter half written: drop every adapter layer
                # so the next render is the base, and the next checkpoint is injected afresh.
                self._reset()
                if not isinstance(err, Exception) or isinstance(err, LoraError):
                    raise
                raise LoraError(
                    f"{ck.name} could not be loaded into {type(self.base.denoiser).__name__} ({type(err).__name__}: "
                    f"{err}); the pipeline was reset to the base model and keeps rendering the other checkpoints. "
                    "Re-save the file from the trainer."
                ) from err
            self._cache.remember(ck.hash, entry)
        self._scalings = entry.scalings
        self._apply_scalings(entry.scalings, scale)
        if not self._enabled:
            self._enable(True)
            self._enabled = True
        self._active, self._scale = ck.hash, scale
        self._text = bool(getattr(entry, "text", False))
        self._text_adapter(ck, scale)
        return path

    def _text_adapter(self, ck: Checkpoint, scale: float) -> None:
        """Tell the base which text-encoder adapter is live, so prompts encoded under another are not reused."""
        self.base.text_adapter = f"{ck.hash}@{scale!r}" if self._text else None

    def _enable(self, on: bool) -> None:
        if self._slot is not None:
            self._slot.enable(on)
        elif self.base.compiled is not None:  # peft's disable flag would recompile: the base is strength 0
            if not on:  # (on: ``_activate`` has just written the checkpoint's scalings)
                self._apply_scalings(self._scalings, 0.0)
        elif on:
            self.base.denoiser.enable_adapters()
        else:
            self.base.denoiser.disable_adapters()

    # -- the direct, general and inject paths ------------------------------------------------

    def _lycoris(self, read: LycorisRead, run: Path, target_rank: int | None) -> tuple[Entry, SwapPath]:
        """The copy that makes a LoKr/LoHa checkpoint live: into the run's layers, or into new ones."""
        if self._slot is not None and run == self._run and self._slot.fits(read):
            return self._slot.entry(read), "direct"
        rank = max(read.rank, target_rank or 0, self._rank if run == self._run and self._slot is not None else 0)
        self._reset()
        pipe = self.base.pipe
        components = {self.prefix: self.base.denoiser}
        components |= {c: getattr(pipe, c) for c in ("text_encoder", "text_encoder_2") if hasattr(pipe, c)}
        slot = LycorisSlot(components, read, rank, fixed=self.base.compiled is not None)
        self._slot = slot
        self._names, self._layers = list(slot.names), list(slot.layers)
        self._params = [t for layer in slot.layers for t in layer.factors().values()]
        self._modules, self._rank, self._run = read.modules, rank, run
        self._applied = [0.0] * len(slot.layers)
        self._enabled = True  # fresh layers start enabled
        return slot.entry(read), "inject"

    def _direct(self, read: LoraRead, run: Path, target_rank: int | None) -> Entry | None:
        """A new checkpoint of the run the layers were injected for, ready to copy in, when its
        scalings are known without diffusers (``scalings.py``); else None (diffusers loads it)."""
        if not (self._layers and self._trust_scalings and run == self._run and read.modules == self._modules):
            return None
        if max(read.rank, target_rank or 0) > self._rank:
            return None
        scalings = config_scalings(read, self.prefix, self._names)
        return None if scalings is None else entry_for(read.state, self.prefix, self._names, self._layers, scalings)

    def _load(self, read: LoraRead, ck: Checkpoint, run: Path, target_rank: int | None) -> SwapPath:
        if self._layers and run == self._run and read.modules != self._modules:
            missing, extra = self._modules - read.modules, read.modules - self._modules
            raise LoraError(
                f"{ck.name} adapts a different set of modules from the rest of this run ({len(missing)} missing, "
                f"{len(extra)} extra, e.g. {sorted(missing or extra)[0]!r}): it is from another run or trainer "
                "setting. Move it to its own folder."
            )
        need = max(read.rank, target_rank or 0)
        if self._layers and run == self._run and need <= self._rank:
            try:
                self._load_adapter(read, hotswap=True)
                return "general"
            except ValueError as err:  # e.g. a different alpha_pattern: re-inject instead
                logger.info("hotswap of %s refused (%s); re-injecting", ck.name, err)
        self._inject(read, ck, run, need)
        return "inject"

    def _load_adapter(self, read: LoraRead, *, hotswap: bool) -> None:
        """diffusers' own loader, given the dict zbench read and checked (it never reads the file again)."""
        try:  # what load_lora_weights passes by default (peft builds the layers on the meta device first)
            from diffusers.loaders.lora_base import _LOW_CPU_MEM_USAGE_DEFAULT_LORA as low_cpu_mem_usage
        except ImportError:
            low_cpu_mem_usage = False
        self.base.denoiser.load_lora_adapter(
            read.state,
            prefix=self.prefix,
            network_alphas=read.network_alphas,
            metadata=read.metadata,
            adapter_name=ADAPTER,
            _pipeline=self.base.pipe,
            low_cpu_mem_usage=low_cpu_mem_usage,
            hotswap=hotswap,
        )

    def _inject(self, read: LoraRead, ck: Checkpoint, run: Path, rank: int) -> None:
        self._reset()
        self.base.pipe.enable_lora_hotswap(target_rank=rank)
        self._load_adapter(read, hotswap=False)
        layers = {n: m for n, m in self.base.denoiser.named_modules() if ADAPTER in getattr(m, "lora_A", {})}
        if set(layers) != read.modules:
            raise LoraError(
                f"{ck.name}: diffusers injected {len(layers)} of its {len(read.modules)} modules (e.g. missing "
                f"{sorted(read.modules - set(layers))[:1]}); the file does not match this base. Pick a LoRA trained "
                f"on {self.base.config.name}."
            )
        self._names, self._layers = list(layers), list(layers.values())
        self._params = [p for m in self._layers for p in (m.lora_A[ADAPTER].weight, m.lora_B[ADAPTER].weight)]
        self._modules, self._rank, self._run = read.modules, rank, run
        self._enabled = True  # fresh layers start enabled

    def reset(self) -> None:
        """Take every adapter layer off the pipeline: it renders the base until the next activate.

        For recovery after a render that failed with the adapter on; thread-safe.
        """
        with self.lock:
            self._reset()

    def _reset(self) -> None:
        """Back to the bare base: no adapter layers, nothing cached, the base active."""
        denoiser = self.base.denoiser
        if self._slot is not None:
            self._slot.remove()  # the original modules back in place
            self._slot = None
        # Even an empty peft_config means LoRA layers may be left (diffusers empties it when a
        # hotswap fails, deleting our adapter from the layers but not the layers themselves).
        elif self._layers or hasattr(denoiser, "peft_config"):
            self.base.pipe.unload_lora_weights()
        denoiser._prepare_lora_hotswap_kwargs = None  # set by enable_lora_hotswap
        self._cache.clear()
        self._names, self._layers, self._params = [], [], []
        self._modules, self._rank, self._run = frozenset(), 0, None
        self._active, self._enabled = None, False
        self._text, self.base.text_adapter = False, None
        self._scalings, self._applied = [], []

    def _apply_scalings(self, scalings: list[float], scale: float) -> None:
        if self._slot is not None:
            self._slot.apply_scalings(scalings, scale)
            return
        # Most runs share one alpha/r, so usually nothing changes: skip those writes (one op each).
        for i, (layer, value) in enumerate(zip(self._layers, scalings, strict=True)):
            value *= scale
            if value == self._applied[i]:
                continue
            current = layer.scaling[ADAPTER]
            if isinstance(current, torch.Tensor):
                current.fill_(value)
            else:
                layer.scaling[ADAPTER] = value
            self._applied[i] = value

    def timed_activate(self, ck: Checkpoint | None, **kwargs) -> tuple[SwapPath, float]:
        """:meth:`activate`, also returning its wall time in milliseconds (synchronised on CUDA)."""
        with self.lock:
            t0 = time.perf_counter()
            path = self.activate(ck, **kwargs)
            if self.base.device.type == "cuda":
                torch.cuda.synchronize(self.base.device)
            return path, (time.perf_counter() - t0) * 1000


_SWAPPERS_LOCK = threading.Lock()


def get_swapper(base: Base) -> AdapterSwapper:
    """The one swapper of a base pipeline (created on first use, kept on the base)."""
    with _SWAPPERS_LOCK:
        if base.swapper is None:
            base.swapper = AdapterSwapper(base)
        return base.swapper
