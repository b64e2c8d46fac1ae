"""Measures over a run: distance between renders, and how far and how fast its LoRA weights move.

Image distance is an ordinary function on PIL images. Weight measures (delta norm, change
between checkpoints) read the adapter's factors from the safetensors file and never form ΔW:
a LoRA is B @ A; a LoHa (A1 B1) ⊙ (A2 B2) is the same as a LoRA of rank r1·r2 (row-wise and
column-wise Kronecker products of its factors); a LoKr kron(W1, W2) has ||kron||_F = ||W1||_F·||W2||_F
and <kron(W1, W2), kron(V1, V2)>_F = <W1, V1>_F·<W2, V2>_F.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from ..engine import jsonio
from ..engine.header import read_header
from ..engine.keys import DOWN_WEIGHT, UP_WEIGHT, module_of
from ..engine.lycoris import adapter_kind, group_modules

__all__ = ["image_distance", "lora_delta_norm", "lora_factors", "lora_weight_change"]


def image_distance(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute pixel difference, 0 (identical) to 1 (black vs white everywhere)."""
    x = np.asarray(a.convert("RGB"), dtype=np.float32)
    y = np.asarray(b.convert("RGB").resize(a.size), dtype=np.float32)
    return float(np.abs(x - y).mean() / 255.0)


# Weight measures. A LoRA changes a module's weight by ΔW = scale · B @ A (B: out×r, A: r×in).
# Norms and inner products of such products reduce to r×r matrices:
#   ||B A||²_F = trace((A Aᵀ)(Bᵀ B)),   <B1 A1, B2 A2>_F = trace((B1ᵀ B2)(A2 A1ᵀ)),
# so a 3840×10240 module costs two r×r Gram matrices instead of a 39 M-entry product.

_NOT_LORA = re.compile(r"\.(lora_mid|dora_scale|lora_magnitude_vector|lokr_t2|hada_t[12])")
_COMPONENT = re.compile(r"^(transformer|unet|base_model\.model|diffusion_model)\.")


@dataclass(frozen=True)
class Kron:
    """A LoKr module's ΔW = scale · kron(w1, w2), w2 whole or as the low-rank pair (w2_a, w2_b)."""

    w1: torch.Tensor
    w2: torch.Tensor | tuple[torch.Tensor, torch.Tensor]
    scale: float


# Per module: (A, B, scale) for ΔW = scale · B @ A (LoRA, and LoHa as its rank r1·r2 equivalent), or a Kron.
LoraFactors = dict[str, "tuple[torch.Tensor, torch.Tensor, float] | Kron"]


def _adapter_config(meta: dict[str, str]) -> dict:
    """The PEFT LoraConfig diffusers saved in ``lora_adapter_metadata`` (keys for the denoiser), or {}."""
    try:
        config = jsonio.parse_json(meta.get("lora_adapter_metadata", "{}"), where="lora_adapter_metadata")
    except jsonio.JsonError:
        return {}
    if not isinstance(config, dict):
        return {}
    for prefix in ("transformer.", "unet."):  # diffusers packs each component's config under its name
        own = {k.removeprefix(prefix): v for k, v in config.items() if k.startswith(prefix)}
        if own:
            return own
    return config


def _pattern_value(patterns: dict, module: str, default: float) -> float:
    """PEFT's rank/alpha_pattern lookup: a key matches a module name it ends (at a dot boundary)."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return float(value)
    return default


def lora_factors(path: str | Path) -> LoraFactors:
    """Read a LoRA file's factors: per module A (r×in), B (out×r) and the scale of B @ A.

    Reads diffusers/PEFT (``transformer.<m>.lora_A.weight``), kohya (``lora_unet_<m>.lora_down.weight``
    with ``.alpha``), ai-toolkit (``diffusion_model.<m>.lora_A.weight``) and bare PEFT keys. The
    scale is what diffusers applies when loading: alpha/r from a per-module ``.alpha`` tensor,
    times lora_alpha/r (or /√r with rsLoRA) from ``lora_adapter_metadata``; 1.0 without either
    (alpha == r). Conv factors are flattened to matrices. Bias terms (``lora_B.bias``) are ignored.

    Args:
        path: a ``.safetensors`` file (loaded with safetensors, never unpickled).

    Returns:
        {canonical module name: (A, B, scale)}, names as in ``Checkpoint.modules``
        ("layers_0_attention_to_q"); tensors as stored (dtype, CPU).

    Raises:
        HeaderError: the file is not a readable safetensors file.
        ValueError: the file holds no LoRA factors, is LoKr/LoHa/DoRA/LoCon-Tucker (not B @ A),
            or a module's factors are missing or do not fit together.
    """
    path = Path(path)
    _, meta = read_header(path)
    tensors = load_file(str(path))
    odd = next((k for k in tensors if _NOT_LORA.search(k)), None)
    if odd is not None:
        raise ValueError(
            f"{path.name} is a DoRA, Tucker or LoCon-mid adapter (key {odd!r}): its change depends on the base "
            "weights or a conv core, so zbench does not measure its weights."
        )
    if adapter_kind(tensors) in ("lokr", "loha"):
        return _lycoris_factors(path, tensors)
    downs, ups, alphas, dotted = {}, {}, {}, {}
    for key, tensor in tensors.items():
        module = module_of(key)
        if module is None:
            continue
        if key.endswith(".alpha"):
            alphas[module] = float(tensor.float())
        elif DOWN_WEIGHT.search(key):
            downs[module] = tensor.reshape(tensor.shape[0], -1)
            dotted[module] = _COMPONENT.sub("", key[: DOWN_WEIGHT.search(key).start()])
        elif UP_WEIGHT.search(key):
            ups[module] = tensor.reshape(tensor.shape[0], -1)
    if not downs:
        raise ValueError(
            f"{path.name} holds no LoRA factors (no lora_A/lora_down keys among {len(tensors)}); it is not a LoRA."
        )
    unpaired = sorted(set(downs) ^ set(ups))
    if unpaired:
        raise ValueError(
            f"{path.name}: module {unpaired[0]!r} has only one of its two LoRA factors "
            f"({len(unpaired)} such modules); the file is incomplete. Re-save it from the trainer."
        )
    config = _adapter_config(meta)
    out: LoraFactors = {}
    for module, a in sorted(downs.items()):
        b = ups[module]
        r = a.shape[0]
        if b.shape[1] != r:
            raise ValueError(
                f"{path.name}: module {module!r} has lora_A of rank {r} but lora_B of rank {b.shape[1]} "
                f"(shapes {tuple(a.shape)} and {tuple(b.shape)}); the file is corrupt."
            )
        scale = alphas[module] / r if module in alphas else 1.0
        if config:
            alpha = _pattern_value(config.get("alpha_pattern"), dotted[module], float(config.get("lora_alpha", r)))
            scale *= alpha / (math.sqrt(r) if config.get("use_rslora") else r)
        out[module] = (a, b, scale)
    return out


def _lycoris_factors(path: Path, tensors: dict[str, torch.Tensor]) -> LoraFactors:
    """LoKr modules as :class:`Kron`, LoHa modules as their rank r1·r2 LoRA equivalent; scales as the library's."""
    groups, other = group_modules(tensors)
    if other:
        raise ValueError(f"{path.name} mixes LyCORIS modules with other tensors (e.g. {other[0]!r})")
    out: LoraFactors = {}
    for key, spec in groups.items():
        module = module_of(f"{key}.alpha")
        t = {n: v.reshape(v.shape[0], -1) for n, v in spec.tensors.items()}  # conv halves as matrices
        if spec.kind == "loha":
            a1, b1, a2, b2 = t["hada_w1_a"], t["hada_w1_b"], t["hada_w2_a"], t["hada_w2_b"]
            down = (b1[:, None, :] * b2[None, :, :]).reshape(-1, b1.shape[1])  # column-wise Kronecker
            up = (a1[:, :, None] * a2[:, None, :]).reshape(a1.shape[0], -1)  # row-wise Kronecker
            out[module] = (down, up, spec.scale)
        elif spec.kind == "lokr":
            w1 = t["lokr_w1"] if "lokr_w1" in t else t["lokr_w1_a"] @ t["lokr_w1_b"]
            w2 = spec.tensors["lokr_w2"].reshape(spec.tensors["lokr_w2"].shape[0], -1) if "lokr_w2" in t else (
                t["lokr_w2_b"], t["lokr_w2_a"])  # fmt: skip
            out[module] = Kron(w1, w2, spec.scale)
    return out


def _gram_sq(w: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> float:
    """||W||²_F for a whole matrix or a (A, B) pair meaning B @ A."""
    return _frobenius_sq(*w) if isinstance(w, tuple) else float(w.double().pow(2).sum())


def _pair_inner(x, y) -> float:
    """<X, Y>_F for whole matrices or (A, B) pairs (B @ A), in float64."""
    if isinstance(x, tuple) and isinstance(y, tuple):
        return _inner(*x, *y)
    full = [(v[1].double() @ v[0].double()) if isinstance(v, tuple) else v.double() for v in (x, y)]
    return float((full[0] * full[1]).sum())


def _sq(f) -> float:
    """||ΔW||²_F of one module's factors, without its scale."""
    if isinstance(f, Kron):
        return float(f.w1.double().pow(2).sum()) * _gram_sq(f.w2)
    return _frobenius_sq(f[0], f[1])


def _module_inner(f, g) -> float:
    """<ΔW_f, ΔW_g>_F without scales: LoRA·LoRA by Gram matrices, LoKr·LoKr of one layout by the Kronecker
    identity, anything else (a run that changed algorithm) by forming both."""
    if isinstance(f, Kron) and isinstance(g, Kron) and f.w1.shape == g.w1.shape:
        return float((f.w1.double() * g.w1.double()).sum()) * _pair_inner(f.w2, g.w2)
    if not isinstance(f, Kron) and not isinstance(g, Kron):
        return _inner(f[0], f[1], g[0], g[1])
    full = [_dense(v) for v in (f, g)]
    return float((full[0] * full[1]).sum())


def _dense(f) -> torch.Tensor:
    if isinstance(f, Kron):
        w2 = f.w2[1].double() @ f.w2[0].double() if isinstance(f.w2, tuple) else f.w2.double()
        return torch.kron(f.w1.double(), w2)
    return f[1].double() @ f[0].double()


def _shape(f) -> tuple[int, int]:
    """ΔW's (out, in) of one module's factors."""
    if isinstance(f, Kron):
        w2 = (f.w2[1].shape[0], f.w2[0].shape[1]) if isinstance(f.w2, tuple) else tuple(f.w2.shape)
        return f.w1.shape[0] * w2[0], f.w1.shape[1] * w2[1]
    return f[1].shape[0], f[0].shape[1]


def _scale(f) -> float:
    return f.scale if isinstance(f, Kron) else f[2]


def _frobenius_sq(a: torch.Tensor, b: torch.Tensor) -> float:
    """||B @ A||²_F from r×r Gram matrices, in float64."""
    a, b = a.double(), b.double()
    return float(((a @ a.T) * (b.T @ b)).sum())


def _inner(a1: torch.Tensor, b1: torch.Tensor, a2: torch.Tensor, b2: torch.Tensor) -> float:
    """<B1 @ A1, B2 @ A2>_F = trace((B1ᵀ B2)(A2 A1ᵀ)) = sum((B1ᵀ B2) ⊙ (A1 A2ᵀ)), in float64; ranks may differ."""
    return float(((b1.double().T @ b2.double()) * (a1.double() @ a2.double().T)).sum())


def _read(source: str | Path | LoraFactors) -> tuple[LoraFactors, str]:
    """Factors and a name for messages, from a file or from factors already read."""
    if isinstance(source, dict):
        return source, "the given factors"
    return lora_factors(source), Path(source).name


def lora_delta_norm(path: str | Path | LoraFactors) -> float:
    """How far a checkpoint moves the base weights: sqrt(Σ over modules of ||scale · B @ A||²_F).

    Args:
        path: a LoRA ``.safetensors`` file (see :func:`lora_factors` for the formats), or its
            :func:`lora_factors` already read.

    Returns:
        The Frobenius norm of the whole weight change at LoRA scale 1, in the units of the
        base weights (a base weight entry of 0.01 changed by 0.001 contributes 0.001).

    Raises:
        HeaderError, ValueError: as :func:`lora_factors`.
    """
    total = sum(_scale(f) ** 2 * _sq(f) for f in _read(path)[0].values())
    return math.sqrt(max(total, 0.0))


def lora_weight_change(path_a: str | Path | LoraFactors, path_b: str | Path | LoraFactors) -> float:
    """How much the weight change differs between two checkpoints: sqrt(Σ ||ΔW_b − ΔW_a||²_F).

    ΔW = scale · B @ A per module; the files may differ in rank, alpha and format. A module
    adapted by only one file counts with its full ΔW. Computed as ||X||² + ||Y||² − 2<X, Y> in
    float64, so the absolute error is about 1e-8 × the larger delta norm.

    Args:
        path_a: the earlier checkpoint (a file, or its :func:`lora_factors`).
        path_b: the later one.

    Returns:
        The Frobenius norm of ΔW_b − ΔW_a over all modules, in the units of the base weights;
        0.0 for the same file.

    Raises:
        HeaderError, ValueError: as :func:`lora_factors`, or a module has different shapes in
            the two files (LoRAs for different base models).
    """
    (fa, name_a), (fb, name_b) = _read(path_a), _read(path_b)
    total = 0.0
    for module in sorted(fa.keys() | fb.keys()):
        if module not in fb or module not in fa:
            f = fa.get(module) or fb[module]
            total += _scale(f) ** 2 * _sq(f)
            continue
        f, g = fa[module], fb[module]
        if _shape(f) != _shape(g):
            (o1, i1), (o2, i2) = _shape(f), _shape(g)
            raise ValueError(
                f"module {module!r} is {o1}×{i1} in {name_a} but {o2}×{i2} in {name_b}: the files adapt different "
                "base models."
            )
        s1, s2 = _scale(f), _scale(g)
        sq = s1 * s1 * _sq(f) + s2 * s2 * _sq(g) - 2 * s1 * s2 * _module_inner(f, g)
        total += max(sq, 0.0)  # rounding can leave a tiny negative for (near-)identical modules
    return math.sqrt(total)
