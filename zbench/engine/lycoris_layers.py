"""Layers for the adapters diffusers cannot swap (LoKr, LoHa, DoRA, text-encoder parts, kohya's fused Flux
modules), swapped like LoRA: fixed-shape factor buffers written in place.

A :class:`DeltaLayer` wraps one live Linear or Conv2d of the denoiser or a text encoder and adds
``scale · op(x, ΔW)`` to its output, ΔW rebuilt from the factors it holds (see ``lycoris.py``); with a DoRA
magnitude it applies the rescaled W + ΔW instead; disabled, it returns the base layer's output untouched.
Why not merge ΔW into the base weights: a merged swap rewrites every adapted weight (the whole
6 B-parameter transformer of Z-Image-Turbo, 11.5 GiB, for a typical LoKr) and needs a pristine copy to restore
exactly, where writing the factors costs what the file holds (``bench swap``: 1.1-1.4x a LoRA's swap per byte).
The price is paid at render time: a LoKr on a Linear is applied without ever building kron(w1, w2) (two small
matmuls over the input, reshaped), as is a LoRA's (x · Aᵀ · Bᵀ); a LoHa, a DoRA, a conv or a part of a fused
module builds its ΔW once per forward.

A :class:`LycorisSlot` owns the wrapped layers of one run: created from its first checkpoint with every rank
dimension padded to the run's largest (zero padding leaves ΔW exact), filled by one ``torch._foreach_copy_`` per
swap, and removed (the original modules put back) when the run or the adapter type changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .entries import Entry
from .lycoris import MAGNITUDE, LycorisRead, ModuleSpec, delta_shape, delta_weight

__all__ = ["DeltaLayer", "LycorisSlot"]


class DeltaLayer(torch.nn.Module):
    """A live module plus a LyCORIS ΔW (modifies nothing of the base layer; see the module docstring)."""

    def __init__(
        self,
        base_layer: torch.nn.Module,
        kind: str,
        slots: dict[str, torch.Tensor],
        *,
        peft_dora: bool = False,
        rows: list[tuple[int, int]] | None = None,
        full_shape: tuple[int, ...] | None = None,
        fixed: bool = False,
    ):
        super().__init__()
        self.base_layer = base_layer
        self.kind = kind
        # Part of a fused module (kohya's Flux q/k/v): these rows of a ΔW of ``full_shape``; None: all of it.
        self.rows, self.full_shape = rows, full_shape
        self.peft_dora = peft_dora  # DoRA as peft applies it (the strength scales ΔW, no blend); see _decomposed
        self.names = tuple(slots)
        for name, tensor in slots.items():
            self.register_buffer(name, tensor, persistent=False)
        self.scale = 0.0  # ΔW's factor at strength 1: the checkpoint's alpha / rank (see ModuleSpec.scale)
        self.strength = 1.0  # the LoRA strength the page or sweep asks for
        self.enabled = True
        # For a compiled denoiser (``compiled.py``): forward never branches on scale, strength or enabled, which
        # would be guards that recompile; they act through two 0-dim tensors written in place (see ``sync``):
        # coef multiplies ΔW, blend the DoRA rescale's departure from 1. Disabled, both are 0: the base layer exactly.
        self.fixed = fixed
        if fixed:
            w = base_layer.weight
            self.register_buffer("coef", torch.zeros((), device=w.device), persistent=False)
            self.register_buffer("blend", torch.zeros((), device=w.device), persistent=False)
            self._written = (0.0, 0.0)

    def __getattr__(self, name: str):
        """The wrapped module's attributes (weight, in_features, stride...): code that inspects it still works."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_layer":
                raise
            return getattr(self.base_layer, name)

    def factors(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, n) for n in self.names}

    def sync(self) -> None:
        """A fixed layer: write scale, strength and enabled into its tensors (only what changed)."""
        if not self.fixed:
            return
        on = 1.0 if self.enabled else 0.0
        if MAGNITUDE in self.names and not self.peft_dora:  # the library blends the rescale, ΔW unscaled
            values = (self.scale * on, self.strength * on)
        else:
            values = (self.scale * self.strength * on, on)
        if values != self._written:
            self.coef.fill_(values[0])
            self.blend.fill_(values[1])
            self._written = values

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.fixed:  # no branch on the numbers (see __init__)
            if MAGNITUDE in self.names:
                return self._decomposed(x)
            out = self.base_layer(x, *args, **kwargs)
            return out + self._delta(x).to(out.dtype)
        if self.enabled and MAGNITUDE in self.names:
            return self._decomposed(x)
        out = self.base_layer(x, *args, **kwargs)
        if not self.enabled or self.scale * self.strength == 0.0:
            return out
        return out + self._delta(x).to(out.dtype)

    def _op(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        base = self.base_layer
        return F.linear(x, weight, bias) if isinstance(base, torch.nn.Linear) else base._conv_forward(x, weight, bias)

    def _decomposed(self, x: torch.Tensor) -> torch.Tensor:
        """DoRA: W' = (W + ΔW) · m / ‖W + ΔW‖, per output row (or per input column when the magnitude says so).

        The strength s acts as the writer's code applies it: the LyCORIS library blends the rescale factor,
        s·(m/‖·‖ − 1) + 1, with ΔW unscaled; peft (diffusers' set_adapters) scales ΔW by s inside the norm.
        """
        t = self.factors()
        m = t.pop(MAGNITUDE)
        w = self.base_layer.weight
        if self.fixed:
            scale, blend = self.coef, self.blend
        else:
            scale = self.scale * self.strength if self.peft_dora else self.scale
            blend = None if self.strength == 1.0 or self.peft_dora else self.strength
        if self.rows is not None:
            m = torch.cat([m.reshape(-1)[a:b] for a, b in self.rows])
        merged = (w + self._delta_weight(t).to(w.dtype) * scale).to(m.dtype)
        if m.numel() == w.shape[0] and m.shape[0] == w.shape[0]:
            norm = merged.reshape(w.shape[0], -1).norm(dim=1)
            norm = norm.reshape(w.shape[0], *[1] * (w.dim() - 1))
        else:
            norm = merged.transpose(0, 1).reshape(w.shape[1], -1).norm(dim=1)
            norm = norm.reshape(1, w.shape[1], *[1] * (w.dim() - 2))
        factor = m.reshape(norm.shape) / (norm + torch.finfo(merged.dtype).eps)
        if blend is not None:
            factor = blend * (factor - 1) + 1
        return self._op(x, (merged * factor).to(x.dtype), self.base_layer.bias)

    def _delta_weight(self, t: dict[str, torch.Tensor]) -> torch.Tensor:
        """ΔW at scale 1 in this module's weight shape (its rows of a fused module's)."""
        if self.rows is None:
            return delta_weight(t, self.kind, self.base_layer.weight.shape)
        full = delta_weight(t, self.kind, self.full_shape)
        return torch.cat([full[a:b] for a, b in self.rows])

    def _delta(self, x: torch.Tensor) -> torch.Tensor:
        t = self.factors()
        scale = self.coef if self.fixed else self.scale * self.strength
        x = x.to(next(iter(t.values())).dtype)
        base = self.base_layer
        if isinstance(base, torch.nn.Linear) and self.kind == "lora" and self.rows is None:  # x · Aᵀ · Bᵀ
            return (x @ t["lora_down"].T) @ t["lora_up"].T * scale
        if isinstance(base, torch.nn.Linear) and self.kind == "lokr" and "lokr_t2" not in t and self.rows is None:
            # kron(w1, w2) @ x without kron: x as (b, d) blocks, then w1 · X · w2ᵀ (w1: a×b, w2: c×d).
            w1 = t["lokr_w1"] if "lokr_w1" in t else t["lokr_w1_a"] @ t["lokr_w1_b"]
            h = x.reshape(*x.shape[:-1], w1.shape[1], -1)
            h = h @ t["lokr_w2"].T if "lokr_w2" in t else (h @ t["lokr_w2_b"].T) @ t["lokr_w2_a"].T
            h = torch.matmul(w1, h)
            return h.reshape(*x.shape[:-1], -1) * scale
        return self._op(x, self._delta_weight(t) * scale, None)


def _padded(tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``tensor`` zero-padded at the end of each dimension to ``shape``."""
    if tuple(tensor.shape) == shape:
        return tensor
    out = tensor.new_zeros(shape)
    out[tuple(slice(0, s) for s in tensor.shape)] = tensor
    return out


def _slot_shape(spec: ModuleSpec, name: str, shape: torch.Size, rank: int) -> tuple[int, ...]:
    dims = spec.rank_dims(name)
    return tuple(max(s, rank) if i in dims else s for i, s in enumerate(shape))


def _layout(spec: ModuleSpec) -> tuple:
    """What must match for a checkpoint to be written into a slot: type, which tensors, non-rank sizes."""
    return (spec.kind, spec.dora_style, tuple(
        (n, tuple(s if i not in spec.rank_dims(n) else -1 for i, s in enumerate(t.shape)))
        for n, t in sorted(spec.tensors.items())
    ))  # fmt: skip


class SlotEntry(Entry):
    """An entry whose targets are looked up at each write: a text encoder that moves between CPU and GPU
    (``text_encoder = "offload-after-encode"``) replaces its buffers."""

    def __init__(self, src, targets: list[tuple[torch.nn.Module, str]], scalings, nbytes, text: bool):
        super().__init__(src, [], [], scalings, nbytes)
        self.targets, self.text = targets, text

    def write(self) -> None:
        torch._foreach_copy_([getattr(layer, name) for layer, name in self.targets], self.src)


class LycorisSlot:
    """The DeltaLayers of one run in a pipeline's denoiser and text encoders (modifies their module trees in place)."""

    def __init__(self, components: dict[str, torch.nn.Module], read: LycorisRead, rank: int, *, fixed: bool = False):
        """Wrap every module ``read`` adapts ("<component>.<module>"), with buffers at ``rank`` (≥ the file's) on
        each module's own device and dtype; ``fixed``: layers for a compiled denoiser (``DeltaLayer.fixed``)."""
        self.names: list[str] = sorted(read.specs)
        self.layouts = {n: _layout(read.specs[n]) for n in self.names}
        self.rank = rank
        self.layers: list[DeltaLayer] = []
        self._originals: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []
        self._owners: dict[str, int] = {}  # file module key -> index of the layer whose buffers its entry fills
        self.rows = dict(read.rows)
        shared: dict[str, dict[str, torch.Tensor]] = {}
        try:
            for name in self.names:
                spec = read.specs[name]
                component, _, path = name.partition(".")
                root = components[component]
                parent_name, _, child = path.rpartition(".")
                parent = root.get_submodule(parent_name) if parent_name else root
                original = getattr(parent, child)
                w = original.weight
                slots = shared.get(spec.key)  # the parts of a fused module share one set of factors
                if slots is None:
                    slots = {n: torch.zeros(_slot_shape(spec, n, t.shape, rank), device=w.device, dtype=w.dtype)
                             for n, t in spec.tensors.items()}  # fmt: skip
                    shared[spec.key] = slots
                    self._owners[spec.key] = len(self.layers)
                layer = DeltaLayer(original, spec.kind, slots, peft_dora=spec.dora and spec.dora_style == "peft",
                                   rows=read.rows.get(name), full_shape=delta_shape(spec), fixed=fixed)  # fmt: skip
                setattr(parent, child, layer)
                self._originals.append((parent, child, original))
                self.layers.append(layer)
        except BaseException:
            self.remove()
            raise

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for layer in self.layers for t in layer.factors().values())

    def fits(self, read: LycorisRead) -> bool:
        """Whether ``read`` can be written into these layers (same modules and layouts, rank within the slot)."""
        return (
            sorted(read.specs) == self.names
            and read.rows == self.rows
            and read.rank <= self.rank
            and all(_layout(read.specs[n]) == self.layouts[n] for n in self.names)
        )

    def entry(self, read: LycorisRead) -> SlotEntry:
        """The copy that writes ``read`` into the layers (padded to the slot's ranks), with its scales."""
        src, targets = [], []
        for i, (name, layer) in enumerate(zip(self.names, self.layers, strict=True)):
            if self._owners.get(read.specs[name].key) != i:
                continue  # another part of the same fused module fills the shared buffers
            live = layer.factors()
            for n, t in read.tensors(name).items():
                target = live[n]
                src.append(_padded(t.to(target.device, target.dtype), tuple(target.shape)))
                targets.append((layer, n))
        scalings = [read.specs[n].scale for n in self.names]
        return SlotEntry(src, targets, scalings, sum(t.numel() * t.element_size() for t in src), read.text)

    def apply_scalings(self, scalings: list[float], strength: float) -> None:
        for layer, value in zip(self.layers, scalings, strict=True):
            layer.scale, layer.strength = value, strength
            layer.sync()

    def enable(self, on: bool) -> None:
        for layer in self.layers:
            layer.enabled = on
            layer.sync()

    def remove(self) -> None:
        """Put the original modules back: the denoiser is exactly as before the slot."""
        for parent, child, original in reversed(self._originals):
            setattr(parent, child, original)
        self._originals, self.layers = [], []
