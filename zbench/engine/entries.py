"""Checkpoints ready to be copied into the live adapter layers, and the bounded cache that keeps them.

An :class:`Entry` is a checkpoint's converted tensors on the render device, the views of the live
LoRA weights they go into, the views past its rank that must be zeroed (layers are injected at
the run's largest rank), and its scalings. Writing one is a single ``torch._foreach_copy_``: the
swap of a cached checkpoint, and of a first visit whose scalings zbench knows.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

__all__ = ["Entry", "EntryCache", "clone_entry", "entry_for"]

ADAPTER = "zbench"  # the adapter name zbench injects under


@dataclass
class Entry:
    """A checkpoint ready for the fast path: what to copy where, and its scalings."""

    src: list[torch.Tensor]  # converted tensors (owned by the cache, never aliased by the model)
    dst: list[torch.Tensor]  # views of the live adapter weights they are copied into
    zero: list[torch.Tensor]  # views past this checkpoint's rank (padding), zeroed on swap
    scalings: list[float]  # aligned with the swapper's layers, at LoRA scale 1
    nbytes: int

    def write(self) -> None:
        """Copy into the live layers (modifies the model's adapter weights in place)."""
        torch._foreach_copy_(self.dst, self.src)
        if self.zero:
            torch._foreach_zero_(self.zero)


def entry_for(
    sd: dict, prefix: str, names: list[str], layers: list[torch.nn.Module], scalings: list[float]
) -> Entry | None:
    """An entry holding the converted tensors themselves (moved to the layers' device and dtype).

    Returns None when the dict does not map one-to-one onto the live layers (a layout
    diffusers rewrites further); the caller then loads through diffusers instead.
    """
    if len(sd) != 2 * len(layers):
        return None
    src, dst, zero = [], [], []
    for name, layer in zip(names, layers, strict=True):
        a = sd.get(f"{prefix}.{name}.lora_A.weight")
        b = sd.get(f"{prefix}.{name}.lora_B.weight")
        pa, pb = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
        if a is None or b is None or a.dim() != pa.dim() or b.dim() != pb.dim():
            return None
        r = a.shape[0]
        if a.shape[1:] != pa.shape[1:] or b.shape[0] != pb.shape[0] or b.shape[1] != r or r > pa.shape[0]:
            return None
        src += [a.to(pa.device, pa.dtype), b.to(pb.device, pb.dtype)]
        dst += [pa[:r], pb[:, :r]]
        if r < pa.shape[0]:
            zero += [pa[r:], pb[:, r:]]
    return Entry(src, dst, zero, scalings, sum(t.numel() * t.element_size() for t in src))


def clone_entry(params: list[torch.Tensor], scalings: list[float]) -> Entry:
    """An entry copied from the live adapter weights (after an injection, which may share storage with the dict)."""
    src = [p.detach().clone() for p in params]
    return Entry(src, list(params), [], scalings, sum(t.numel() * t.element_size() for t in src))


class EntryCache:
    """Entries by checkpoint hash, least recently used dropped first, within a byte budget."""

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[str, Entry] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def remember(self, key: str, entry: Entry) -> None:
        """Keep ``entry`` unless it alone is over the budget; drop the oldest to stay within it."""
        if entry.nbytes > self.budget_bytes:
            return
        self._entries[key] = entry
        while sum(e.nbytes for e in self._entries.values()) > self.budget_bytes:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
