"""Adapters zbench applies with its own layers, grouped per module, checked, their scale fixed: LyCORIS LoKr and
LoHa, DoRA (a LoRA, LoKr or LoHa with magnitudes), and LoRAs with text-encoder parts.

The LyCORIS library (and kohya sd-scripts, SimpleTuner and ai-toolkit through it or a copy of it) saves one
group of tensors per adapted module, named ``<prefix><module>.<tensor>``:

- LoKr: ΔW = scale · kron(w1, w2), w1 = ``lokr_w1`` or ``lokr_w1_a @ lokr_w1_b``; w2 = ``lokr_w2``, or
  ``lokr_w2_a @ lokr_w2_b`` (conv: w2_b flattened over the kernel), or with ``lokr_t2`` the Tucker form
  ``einsum("i j ..., i p, j r -> p r ...", t2, w2_a, w2_b)``.
- LoHa: ΔW = scale · (w1_a @ w1_b) ⊙ (w2_a @ w2_b) (``hada_*``), or with ``hada_t1``/``hada_t2`` each half
  ``einsum("i j ..., j r, i p -> p r ...", t, w_b, w_a)``.

The scale is the library's, applied once, as its modules' forward, ComfyUI and A1111 apply it:
``alpha / dim`` with dim the rank (alpha = dim when absent or 0), and 1 for a LoKr whose two halves are both
stored whole (the library ignores alpha then). PEFT folders scale by their config (``peft_scales``). DoRA
rescales each row of W + ΔW to its magnitude (``lycoris_layers.DeltaLayer``). Where a key's module lives in the
pipeline: ``module_names.py`` and ``flux_names.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

__all__ = [
    "LOHA_TENSORS",
    "LOKR_TENSORS",
    "LycorisRead",
    "ModuleSpec",
    "adapter_kind",
    "delta_weight",
    "group_modules",
    "header_summary",
]

LOKR_TENSORS = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")
LOHA_TENSORS = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2")
# A LoRA's factors under the names this module uses (read only for DoRA files, which diffusers cannot apply).
LORA_TENSORS = {"lora_down.weight": "lora_down", "lora_up.weight": "lora_up", "lora_A.weight": "lora_down",
                "lora_B.weight": "lora_up", "lora_magnitude_vector": "dora_scale",
                "lora_magnitude_vector.weight": "dora_scale"}  # fmt: skip
KIND_NAMES = {"lokr": "LoKr", "loha": "LoHa", "lora": "LoRA"}
MAGNITUDE = "dora_scale"  # DoRA's magnitude vector, per output row (or per input column in older LyCORIS files)
_EXTRA = ("alpha", MAGNITUDE)
_TENSOR = re.compile(
    r"^(.*)\.("
    + "|".join((*LOKR_TENSORS, *LOHA_TENSORS, *_EXTRA, *(re.escape(k) for k in LORA_TENSORS)))
    + r")(\.default)?$"
)


def adapter_kind(keys) -> str | None:
    """Which files zbench applies with its own layers: "lokr", "loha", "dora" (a LoRA with ``dora_scale``
    magnitudes), or None for a plain LoRA, which goes through diffusers."""
    keys = list(keys)
    for key in keys:
        m = _TENSOR.match(key)
        if m and m.group(2).startswith("lokr_"):
            return "lokr"
        if m and m.group(2).startswith("hada_"):
            return "loha"
    return "dora" if any(k.endswith("." + MAGNITUDE) or ".lora_magnitude_vector" in k for k in keys) else None


@dataclass
class ModuleSpec:
    """One adapted module's LyCORIS factors as stored, and how the library scales them."""

    key: str  # the module as the file names it ("lycoris_layers_0_attention_to_q")
    kind: str  # "lokr", "loha" or "lora"
    # By name: "lokr_w1", "hada_w1_a", "lora_down"..., and "dora_scale" for a weight-decomposed (DoRA) module.
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    alpha: float | None = None
    # Whose DoRA: "lycoris" (dora_scale; the strength blends the rescale) or "peft" (lora_magnitude_vector; the
    # strength scales ΔW inside the norm, as diffusers' set_adapters does).
    dora_style: str = "lycoris"
    peft_scale: float | None = None  # a PEFT LoKr/LoHa folder: alpha / r from adapter_config.json, as peft scales

    @property
    def dora(self) -> bool:
        return MAGNITUDE in self.tensors

    @property
    def tucker(self) -> bool:
        return "lokr_t2" in self.tensors or "hada_t1" in self.tensors

    @property
    def whole(self) -> bool:
        """A LoKr whose two halves are stored whole: the library ignores its alpha (scale 1)."""
        return self.kind == "lokr" and "lokr_w1" in self.tensors and "lokr_w2" in self.tensors

    @property
    def rank(self) -> int:
        """The library's ``lora_dim``: the rank of the factorised halves (1 for a LoKr stored whole)."""
        t = self.tensors
        if self.kind == "lora":
            return int(t["lora_down"].shape[0])
        if self.kind == "loha":
            return int(t["hada_w1_b"].shape[0])
        if "lokr_w1_a" in t:
            return int(t["lokr_w1_a"].shape[1])
        if "lokr_t2" in t:
            return int(t["lokr_t2"].shape[0])
        if "lokr_w2_a" in t:
            return int(t["lokr_w2_a"].shape[1])
        return 1

    @property
    def scale(self) -> float:
        """ΔW's factor at strength 1: alpha / rank, or 1 for a LoKr whose halves are both whole (PEFT: its config's
        alpha / r, whole halves or not)."""
        if self.peft_scale is not None:
            return self.peft_scale
        if self.whole:
            return 1.0
        alpha = self.alpha if self.alpha else float(self.rank)
        return alpha / self.rank

    def rank_dims(self, name: str) -> tuple[int, ...]:
        """Which dimensions of tensor ``name`` are the rank (zero-padding them leaves ΔW unchanged)."""
        if name in ("lokr_t2", "hada_t1", "hada_t2"):
            return (0, 1)
        if name in ("lokr_w1_b", "hada_w1_b", "hada_w2_b", "lokr_w2_b", "lora_down"):
            return (0,)
        if name == "lora_up":
            return (1,)
        if name == "lokr_w1_a":
            return (1,)
        if name in ("lokr_w2_a", "hada_w1_a", "hada_w2_a"):
            return (0,) if self.tucker else (1,)
        return ()  # lokr_w1, lokr_w2: whole halves; dora_scale


def header_summary(header: dict) -> tuple[dict[str, int], int | None, set[str]]:
    """Ranks per module key, the LoKr factor (the most common larger side of w1), and the module keys whose
    alpha is ignored (whole LoKr halves), from a file's header alone.

    Modules whose shapes say nothing usable are left out (reading the file later says what is wrong).
    """
    groups: dict[str, ModuleSpec] = {}
    for key, info in header.items():
        m = _TENSOR.match(key)
        if not m or m.group(2) in _EXTRA or m.group(2) in LORA_TENSORS:
            continue
        kind = "lokr" if m.group(2).startswith("lokr_") else "loha"
        spec = groups.setdefault(m.group(1), ModuleSpec(m.group(1), kind))
        try:
            spec.tensors[m.group(2)] = torch.empty(info["shape"], device="meta")
        except (TypeError, ValueError, RuntimeError, KeyError):
            continue
    ranks, factors = {}, []
    whole = {key for key, spec in groups.items() if spec.whole}
    for key, spec in groups.items():
        try:
            ranks[key] = spec.rank
            if spec.kind == "lokr":
                t = spec.tensors
                w1 = t["lokr_w1"].shape if "lokr_w1" in t else (t["lokr_w1_a"].shape[0], t["lokr_w1_b"].shape[1])
                factors.append(max(w1))
        except (KeyError, IndexError):
            continue
    factor = max(set(factors), key=factors.count) if factors else None
    return ranks, factor, whole


def group_modules(raw: dict[str, torch.Tensor]) -> tuple[dict[str, ModuleSpec], list[str]]:
    """The file's tensors grouped per module, and the keys that are not LyCORIS tensors.

    Raises:
        ValueError: a module mixes LoKr and LoHa tensors, or an alpha is not one number.
    """
    groups: dict[str, ModuleSpec] = {}
    other: list[str] = []
    for key, tensor in raw.items():
        m = _TENSOR.match(key)
        if not m:
            other.append(key)
            continue
        module, name = m.group(1), m.group(2)
        spec = groups.setdefault(module, ModuleSpec(module, ""))
        if name == "alpha":
            if tensor.numel() != 1:
                raise ValueError(f"{key!r} holds {tensor.numel()} values; an alpha is one number")
            spec.alpha = float(tensor.float().reshape(()))
        elif name == MAGNITUDE or LORA_TENSORS.get(name) == MAGNITUDE:
            spec.tensors[MAGNITUDE] = tensor
            spec.dora_style = "lycoris" if name == MAGNITUDE else "peft"
        else:
            kind = "lokr" if name.startswith("lokr_") else "loha" if name.startswith("hada_") else "lora"
            if spec.kind and spec.kind != kind:
                raise ValueError(f"module {module!r} mixes {spec.kind} and {kind} tensors ({key!r})")
            spec.kind = kind
            spec.tensors[LORA_TENSORS.get(name, name)] = tensor
    stray = [s.key for s in groups.values() if not s.kind]
    if stray:
        raise ValueError(f"{stray[0]!r} has an alpha or dora_scale but no factors ({len(stray)} modules like it)")
    return groups, other


def delta_shape(spec: ModuleSpec) -> tuple[int, ...]:
    """The shape of ΔW the factors make, from shapes alone (nothing is multiplied).

    Raises:
        ValueError: a factor is missing or the factors' inner sizes do not meet; the message names them.
    """
    t = spec.tensors
    where = f"module {spec.key!r}"

    def need(*names: str) -> None:
        missing = [n for n in names if n not in t]
        if missing:
            raise ValueError(f"{where} lacks {', '.join(missing)} (it has {', '.join(sorted(t))})")

    def meet(left: str, right: str, a: int, b: int) -> None:
        if a != b:
            raise ValueError(f"{where}: {left} and {right} do not meet ({a} vs {b}: shapes "
                             f"{tuple(t[left].shape)} and {tuple(t[right].shape)})")  # fmt: skip

    def dims(name: str, n: int | tuple[int, ...]) -> None:
        ok = t[name].dim() in ((n,) if isinstance(n, int) else n)
        if not ok:
            raise ValueError(f"{where}: {name} has shape {tuple(t[name].shape)}, which no LyCORIS layout writes")

    if spec.kind == "lora":
        need("lora_down", "lora_up")
        down, up = t["lora_down"], t["lora_up"]
        if down.dim() not in (2, 4) or up.dim() != down.dim() or any(k != 1 for k in up.shape[2:]):
            raise ValueError(f"{where}: lora_down {tuple(down.shape)} and lora_up {tuple(up.shape)} make no LoRA")
        meet("lora_up", "lora_down", up.shape[1], down.shape[0])
        return (int(up.shape[0]), *(int(d) for d in down.shape[1:]))
    if spec.kind == "loha":
        need("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
        if ("hada_t1" in t) != ("hada_t2" in t):
            raise ValueError(f"{where} has only one of hada_t1 and hada_t2")
        for n in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"):
            dims(n, 2)
        halves = []
        for i in ("1", "2"):
            a, b = t[f"hada_w{i}_a"], t[f"hada_w{i}_b"]
            if spec.tucker:
                tt = t[f"hada_t{i}"]
                dims(f"hada_t{i}", (3, 4, 5))
                meet(f"hada_t{i}", f"hada_w{i}_a", tt.shape[0], a.shape[0])
                meet(f"hada_t{i}", f"hada_w{i}_b", tt.shape[1], b.shape[0])
                halves.append((a.shape[1], b.shape[1], *tt.shape[2:]))
            else:
                meet(f"hada_w{i}_a", f"hada_w{i}_b", a.shape[1], b.shape[0])
                halves.append((a.shape[0], b.shape[1]))
        if halves[0] != halves[1]:
            raise ValueError(f"{where}: its two Hadamard halves have different shapes {halves[0]} and {halves[1]}")
        return tuple(int(d) for d in halves[0])
    # LoKr
    if "lokr_w1" in t:
        dims("lokr_w1", 2)
        w1 = tuple(t["lokr_w1"].shape)
    else:
        need("lokr_w1_a", "lokr_w1_b")
        dims("lokr_w1_a", 2), dims("lokr_w1_b", 2)
        meet("lokr_w1_a", "lokr_w1_b", t["lokr_w1_a"].shape[1], t["lokr_w1_b"].shape[0])
        w1 = (t["lokr_w1_a"].shape[0], t["lokr_w1_b"].shape[1])
    if "lokr_w2" in t:
        dims("lokr_w2", (2, 3, 4, 5))
        w2 = tuple(t["lokr_w2"].shape)
    else:
        need("lokr_w2_a", "lokr_w2_b")
        a, b = t["lokr_w2_a"], t["lokr_w2_b"]
        dims("lokr_w2_a", 2), dims("lokr_w2_b", 2)
        if "lokr_t2" in t:
            tt = t["lokr_t2"]
            dims("lokr_t2", (3, 4, 5))
            meet("lokr_t2", "lokr_w2_a", tt.shape[0], a.shape[0])
            meet("lokr_t2", "lokr_w2_b", tt.shape[1], b.shape[0])
            w2 = (a.shape[1], b.shape[1], *tt.shape[2:])
        else:
            meet("lokr_w2_a", "lokr_w2_b", a.shape[1], b.shape[0])
            w2 = (a.shape[0], b.shape[1])
    kernel = w2[2:]
    return (int(w1[0] * w2[0]), int(w1[1] * w2[1]), *(int(k) for k in kernel))


def delta_weight(spec_tensors: dict[str, torch.Tensor], kind: str, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """ΔW at scale 1, in the live module's weight ``shape`` (out, in, *kernel), as the library rebuilds it."""
    t = spec_tensors
    if kind == "lora":
        return (t["lora_up"].flatten(1) @ t["lora_down"].flatten(1)).reshape(shape)
    if kind == "loha":
        halves = []
        for i in ("1", "2"):
            a, b = t[f"hada_w{i}_a"], t[f"hada_w{i}_b"]
            if f"hada_t{i}" in t:
                halves.append(torch.einsum("i j ..., j r, i p -> p r ...", t[f"hada_t{i}"], b, a))
            else:
                halves.append((a @ b).reshape(shape))
        return (halves[0] * halves[1]).reshape(shape)
    w1 = t["lokr_w1"] if "lokr_w1" in t else t["lokr_w1_a"] @ t["lokr_w1_b"]
    if "lokr_w2" in t:
        w2 = t["lokr_w2"]
    elif "lokr_t2" in t:
        w2 = torch.einsum("i j ..., i p, j r -> p r ...", t["lokr_t2"], t["lokr_w2_a"], t["lokr_w2_b"])
    else:
        w2 = t["lokr_w2_a"] @ t["lokr_w2_b"]
    for _ in range(w2.dim() - w1.dim()):
        w1 = w1.unsqueeze(-1)
    return torch.kron(w1, w2.contiguous()).reshape(shape)


def magnitude_problem(spec: ModuleSpec, shape: tuple[int, ...]) -> str | None:
    """What is wrong with a DoRA magnitude for a weight of ``shape``, or None: one value per output row (the
    library's default, PEFT's) or per input column (older LyCORIS files)."""
    m = spec.tensors.get(MAGNITUDE)
    if m is None:
        return None
    if m.numel() == shape[0] and m.shape[0] == shape[0]:
        return None
    if m.dim() >= 2 and m.shape[0] == 1 and m.shape[1] == shape[1] and m.numel() == shape[1]:
        return None
    return (f"module {spec.key!r}: its DoRA magnitude (dora_scale) has shape {tuple(m.shape)}, but the module has "
            f"{shape[0]} outputs and {shape[1]} inputs")  # fmt: skip


def check_alpha(spec: ModuleSpec) -> str | None:
    """What is wrong with a module's alpha (see ``alphas.alpha_problem``), or None; 0 or absent means alpha = dim."""
    from .alphas import alpha_problem

    if spec.alpha == 0 or spec.alpha is None or spec.whole:
        return None  # absent, or ignored: ai-toolkit's full-rank LoKr stores alpha 9999999999 (inf in fp16)
    return alpha_problem(spec.alpha, spec.rank)


@dataclass
class LycorisRead:
    """A LyCORIS checkpoint read and checked for the live base (the LoRA path's ``LoraRead`` counterpart)."""

    state: dict[str, torch.Tensor]  # "<module>.<tensor>" (module dotted, as the denoiser names it)
    specs: dict[str, ModuleSpec]  # by dotted module name; their tensors are the file's, never the live ones
    modules: frozenset[str]  # "<component>.<module>"
    rank: int
    kind: str  # "lokr", "loha", "lora" (DoRA or text-encoder parts), or "lokr+loha"... when a file mixes them
    text: bool = False  # it adapts a text encoder: prompts must be encoded with it active
    # Modules that take only some rows of their spec's ΔW (kohya's fused Flux q/k/v), by module: [(start, stop)].
    rows: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def tensors(self, module: str) -> dict[str, torch.Tensor]:
        """The module's factors from ``state`` (which the prefetcher may have moved to the device); modules that
        split one fused module share them."""
        spec = self.specs[module]
        return {n: self.state[f"{spec.key}.{n}"] for n in spec.tensors}


def peft_scales(config: dict, specs: dict[str, ModuleSpec]) -> None:
    """Set each module's scale from a PEFT config: ``LoKrConfig``/``LoHaConfig`` (alpha / r) or ``LoraConfig``
    (lora_alpha / r, or / sqrt(r) with rsLoRA), per-module patterns honoured.

    Raises:
        ValueError: r or alpha is not a positive number.
    """
    from peft.utils.other import get_pattern_key

    lora = "lora_alpha" in config or "alpha" not in config
    r, alpha = config.get("r", 8), config.get("lora_alpha" if lora else "alpha", 8)
    ranks, alphas = config.get("rank_pattern") or {}, config.get("alpha_pattern") or {}
    for name, spec in specs.items():
        r_m = ranks.get(get_pattern_key(list(ranks), name), r)
        a_m = alphas.get(get_pattern_key(list(alphas), name), alpha)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in (r_m, a_m)):
            raise ValueError(f"adapter_config.json gives module {name!r} r={r_m!r}, alpha={a_m!r}; both must be > 0")
        spec.peft_scale = a_m / (r_m**0.5 if lora and config.get("use_rslora") else r_m)
