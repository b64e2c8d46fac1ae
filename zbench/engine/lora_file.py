"""A LoRA file read for the loaded base: loaded once, checked, converted the way diffusers converts it.

Before a checkpoint touches the live adapter layers, zbench reads its tensors itself (safetensors
only, never a pickle), checks what would hang, poison or silently falsify a render, and only then
hands diffusers an in-memory dict to convert (kohya, ai-toolkit, OneTrainer, fused qkv, bare PEFT
keys). Checked: every lora_A has its lora_B and their ranks agree, every alpha is usable, no
value is NaN or infinite, every key names a module of this base's denoiser, and every factor fits
that module's shape. Every refusal is a :class:`LoraError` that says the cause and the fix.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import safetensors
import torch
from safetensors.torch import load_file

from .alphas import adapter_metadata, alpha_problem, read_adapter_config
from .checkpoints import Checkpoint
from .flux_names import BFL_BLOCKS, flux_targets
from .header import HeaderError, read_header
from .keys import DOWN_WEIGHT, UP_WEIGHT, family_name, module_of
from .lycoris import (
    KIND_NAMES,
    LycorisRead,
    adapter_kind,
    check_alpha,
    delta_shape,
    group_modules,
    magnitude_problem,
    peft_scales,
)
from .module_names import SGM_BLOCKS, TEXT_ENCODER, resolve_modules, sgm_to_diffusers
from .pipeline import Base

__all__ = ["LoraError", "LoraRead", "read_lora", "read_lycoris"]

_RESAVE = "Re-save it from the trainer, or move it out of the run folder; the other checkpoints are unaffected."


class LoraError(ValueError):
    """A checkpoint cannot be applied to the loaded base; the message names cause and fix."""


@dataclass
class LoraRead:
    """A checkpoint's tensors, converted and checked, and what diffusers needs to build its adapter."""

    state: dict[str, torch.Tensor]  # "<prefix>.<module>.lora_A.weight" ... as diffusers' loaders produce them
    metadata: dict | None  # the LoRA config (lora_alpha, rank_pattern...) from the file, or None: alpha = r
    network_alphas: dict | None  # SD-style alphas some pipelines keep apart from the tensors
    modules: frozenset[str]  # denoiser module names, dotted
    rank: int


def read_lora(base: Base, ck: Checkpoint) -> LoraRead | LycorisRead:
    """Load a checkpoint's file and make it ready for the live base.

    Raises:
        LoraError: the file is unreadable, incomplete, has unusable alphas or values, is for
            another base, or its factors do not fit this base's modules. Nothing in the
            pipeline has changed when it is raised.
    """
    prefix = base.denoiser_name
    try:
        _, file_metadata = read_header(ck.path)
        raw = load_file(str(ck.path))
        metadata = adapter_metadata(ck.path, file_metadata, prefix)
    except (OSError, HeaderError, safetensors.SafetensorError) as err:
        raise LoraError(f"{ck.name} cannot be read: {err}. {_RESAVE}") from err
    except ValueError as err:
        raise LoraError(f"{ck.name}: {err}. {_RESAVE}") from err
    if adapter_kind(raw) or any(TEXT_ENCODER.match(k) for k in raw):
        return read_lycoris(base, ck, raw, metadata)
    _check_raw(ck, raw)
    try:
        # A copy: diffusers' converters pop keys out of the dict they are given.
        out = base.pipe.lora_state_dict(dict(raw), return_lora_metadata=True)
    except Exception as err:  # diffusers raises many types for keys it cannot convert
        raise LoraError(
            f"{ck.name}: diffusers cannot read it as a {family_name(base.family)} LoRA ({type(err).__name__}: "
            f"{err}). {_arch_hint(base, ck)}"
        ) from err
    sd = out[0] if isinstance(out, tuple) else out
    network_alphas = out[1] if isinstance(out, tuple) and len(out) == 3 else None
    sd = _one_prefix(sd, prefix, base.denoiser)
    names = dict(base.denoiser.named_modules())
    if not any(k.startswith(prefix + ".") for k in sd):
        fixed = _with_prefix(sd, set(names), prefix)
        if fixed is None:
            raise LoraError(
                f"{ck.name}: none of its {len(sd)} keys names a module of this base's "
                f"{prefix} (e.g. {next(iter(sd), '')!r}), so it would change nothing. {_arch_hint(base, ck)}"
            )
        sd = fixed
    foreign = sorted(k for k in sd if not k.startswith(prefix + "."))
    if foreign:
        raise LoraError(
            f"{ck.name}: diffusers reads {len(foreign)} of its tensors as another component's (e.g. {foreign[0]!r}) "
            "under names zbench does not map; zbench applies text-encoder parts saved with lora_te_, lora_te1_, "
            "lora_te2_ or text_encoder(_2). keys. Re-save it in one of those layouts."
        )
    _check_finite(ck, sd)
    modules = frozenset(k[len(prefix) + 1 :].split(".lora_")[0] for k in sd)
    unknown = sorted(modules - set(names))
    if unknown:
        raise LoraError(
            f"{ck.name} names {len(unknown)} of its {len(modules)} modules that this base lacks "
            f"(e.g. {unknown[0]!r}). {_arch_hint(base, ck)}"
        )
    _check_shapes(base, ck, sd, names)
    rank = max(v.shape[0] for k, v in sd.items() if ".lora_A." in k)
    return LoraRead(sd, metadata, network_alphas or None, modules, rank)


def read_lycoris(base: Base, ck: Checkpoint, raw: dict[str, torch.Tensor], metadata: dict | None = None) -> LycorisRead:
    """A file zbench applies with its own layers (LoKr, LoHa, DoRA, text-encoder parts), grouped per module of the
    pipeline's denoiser and text encoders, and checked against the live modules.

    Raises:
        LoraError: other tensors mixed in, text-encoder parts for an encoder the pipeline lacks, missing or
            mismatched factors, modules this base lacks or whose shapes differ, a magnitude of the wrong length,
            unusable alphas, NaN or infinite values.
    """
    try:
        groups, other = group_modules(raw)
    except ValueError as err:
        raise LoraError(f"{ck.name}: {err}. {_RESAVE}") from err
    kind = "+".join(sorted({s.kind for s in groups.values()}))
    label = "+".join(KIND_NAMES[k] for k in kind.split("+"))
    label += " (DoRA)" if any(s.dora for s in groups.values()) else ""
    if other:
        raise LoraError(
            f"{ck.name} mixes {label} modules with {len(other)} other tensors (e.g. {other[0]!r}); zbench applies "
            "LoRA, LoKr and LoHa (with or without DoRA), one algorithm per module. Save the run with one algorithm."
        )
    if base.denoiser_name == "unet" and any(k.startswith("lora_unet_" + p) for k in groups for p in SGM_BLOCKS):
        try:
            groups = sgm_to_diffusers(groups, base.denoiser.config)
        except (ValueError, IndexError) as err:
            raise LoraError(
                f"{ck.name}: its SDXL block names do not fit this UNet ({err}). {_arch_hint(base, ck)}"
            ) from err
    fused, rows = _flux_targets(base, groups)
    components = {base.denoiser_name: base.denoiser}
    for te in ("text_encoder", "text_encoder_2"):
        if isinstance(getattr(base.pipe, te, None), torch.nn.Module):
            components[te] = getattr(base.pipe, te)
    names = {f"{c}.{n}": m for c, module in components.items() for n, m in module.named_modules() if n}
    specs, unknown, absent = resolve_modules(
        groups, {c: {n for n, _ in m.named_modules() if n} for c, m in components.items()}, base.denoiser_name
    )
    specs |= fused
    if absent:
        component, key = absent[0]
        raise LoraError(
            f"{ck.name} adapts {component} (keys like {key!r}), which this {type(base.pipe).__name__} does not have "
            f"(it has {', '.join(components)}): it was trained for another base model. {_arch_hint(base, ck)}"
        )
    own = {n.removeprefix(base.denoiser_name + "."): spec for n, spec in specs.items()
           if n.startswith(base.denoiser_name + ".")}  # fmt: skip
    try:
        # A PEFT folder's LoKrConfig/LoHaConfig, or a LoRA config (diffusers' header field or adapter_config.json,
        # as ``adapter_metadata`` read it) for a PEFT DoRA: the config scales the factors.
        config = read_adapter_config(ck.path)
        if config and config.get("peft_type") in ("LOKR", "LOHA"):
            peft_scales(config, own)
        elif metadata and any(s.kind == "lora" for s in own.values()):
            prefix = base.denoiser_name + "."
            peft_scales({k.removeprefix(prefix): v for k, v in metadata.items() if k.startswith(prefix)}, own)
    except ValueError as err:
        raise LoraError(f"{ck.name}: {err}. {_RESAVE}") from err
    if unknown:
        where = "text encoder" if TEXT_ENCODER.match(unknown[0]) else base.denoiser_name
        raise LoraError(
            f"{ck.name} names {len(unknown)} of its {len(groups)} {label} modules that this base's {where} lacks "
            f"(e.g. {unknown[0]!r}). {_arch_hint(base, ck)}"
        )
    for name, spec in specs.items():
        live = getattr(names[name], "base_layer", names[name])  # through zbench's or peft's adapter layer
        if type(live) not in (torch.nn.Linear, torch.nn.Conv2d):
            raise LoraError(
                f"{ck.name}: module {name!r} is a {type(live).__name__}; zbench applies {label} to Linear and "
                f"Conv2d layers. {_RESAVE}"
            )
        try:
            shape = delta_shape(spec)
        except ValueError as err:
            raise LoraError(f"{ck.name}: {err}. {_RESAVE}") from err
        want = tuple(live.weight.shape)
        if name in rows:  # this module's rows of a fused module's ΔW
            fits = sum(b - a for a, b in rows[name]) == want[0] and max(b for _, b in rows[name]) <= shape[0]
            if not fits or shape[1:] != want[1:]:
                raise LoraError(
                    f"{ck.name}: module {spec.key!r} makes {shape}, which does not hold {name!r} ({want}) where "
                    f"kohya's Flux layout puts it: it was trained on another model or size. {_arch_hint(base, ck)}"
                )
            if spec.dora and spec.tensors["dora_scale"].numel() != shape[0]:
                raise LoraError(f"{ck.name}: module {spec.key!r} is a fused module with a per-input DoRA magnitude, "
                                f"which cannot be split into its parts. {_RESAVE}")  # fmt: skip
            want = shape
        if shape != want and not (len(shape) == 2 and shape == (want[0], math.prod(want[1:]))):
            raise LoraError(
                f"{ck.name}: module {name!r} has weight {want} in this base, but the file's {KIND_NAMES[spec.kind]} "
                f"factors make {shape}: it was trained on another model or size. {_arch_hint(base, ck)}"
            )
        problem = magnitude_problem(spec, want)
        if problem:
            raise LoraError(f"{ck.name}: {problem}: it was trained on another model or is corrupt. {_RESAVE}")
        problem = check_alpha(spec)
        if problem:
            raise LoraError(f"{ck.name}: {problem} (module {spec.key!r}). The file is corrupt or hand-edited. "
                            f"{_RESAVE}")  # fmt: skip
    state = {f"{spec.key}.{n}": t for spec in specs.values() for n, t in spec.tensors.items()}
    _check_finite(ck, state)
    rank = max(s.rank for s in specs.values())
    text = any(not n.startswith(base.denoiser_name + ".") for n in specs)
    return LycorisRead(state, specs, frozenset(specs), rank, kind, text, rows)


def _flux_targets(base: Base, groups: dict) -> tuple[dict, dict]:
    """kohya's Flux modules (BFL names) taken out of ``groups``: the diffusers modules each adapts ("<denoiser>.<m>")
    and the rows of ΔW that split fused ones (see ``flux_names.py``)."""
    if not type(base.denoiser).__name__.startswith("Flux") or not any(BFL_BLOCKS.match(k) for k in groups):
        return {}, {}
    out_features = {}
    for n, m in base.denoiser.named_modules():
        m = getattr(m, "base_layer", m)
        if isinstance(m, torch.nn.Linear):
            out_features.setdefault(n.removesuffix(".base_layer"), m.out_features)
    specs, rows = {}, {}
    for key in [k for k in groups if BFL_BLOCKS.match(k)]:
        targets = flux_targets(key, out_features)
        if targets is None:
            continue
        spec = groups.pop(key)
        for name, part in targets:
            specs[f"{base.denoiser_name}.{name}"] = spec
            if part is not None:
                rows[f"{base.denoiser_name}.{name}"] = part
    return specs, rows


def _check_raw(ck: Checkpoint, raw: dict[str, torch.Tensor]) -> None:
    """Pairs, ranks and alphas as stored, before diffusers' converter (which loops on a negative alpha).
    Files with text-encoder keys never get here: ``read_lycoris`` applies them."""
    downs, ups, alphas = {}, {}, {}
    for key, tensor in raw.items():
        module = module_of(key)
        if module is None:
            continue
        if key.endswith(".alpha"):
            alphas[module] = (key, tensor)
        elif DOWN_WEIGHT.search(key):
            downs[module] = (key, tensor)
        elif UP_WEIGHT.search(key):
            ups[module] = (key, tensor)
    if not downs:
        raise LoraError(f"{ck.name} holds no LoRA factors (no lora_A/lora_down keys among {len(raw)}). {_RESAVE}")
    unpaired = sorted(set(downs) ^ set(ups))
    if unpaired:
        key = (downs.get(unpaired[0]) or ups[unpaired[0]])[0]
        raise LoraError(
            f"{ck.name} is incomplete: {key!r} has no matching "
            f"{'lora_B/lora_up' if unpaired[0] in downs else 'lora_A/lora_down'} factor ({len(unpaired)} "
            f"module{'s' if len(unpaired) > 1 else ''} like this). {_RESAVE}"
        )
    for module, (key, down) in downs.items():
        up = ups[module][1]
        if down.dim() not in (2, 4) or up.dim() != down.dim() or up.shape[1] != down.shape[0]:
            raise LoraError(
                f"{ck.name}: {key!r} and its partner have shapes {tuple(down.shape)} and {tuple(up.shape)}, which "
                f"do not make a LoRA (lora_A is rank x in, lora_B is out x rank). {_RESAVE}"
            )
    for module, (key, alpha) in alphas.items():
        rank = downs[module][1].shape[0] if module in downs else None
        problem = f"{key!r} holds {alpha.numel()} values" if alpha.numel() != 1 else None
        problem = problem or alpha_problem(float(alpha.float().reshape(())), rank)
        if problem:
            raise LoraError(f"{ck.name}: {problem} ({key!r}). The file is corrupt or hand-edited. {_RESAVE}")


def _check_finite(ck: Checkpoint, sd: dict[str, torch.Tensor]) -> None:
    # One fused pass: a tensor's norm is NaN or inf exactly when it holds a NaN or inf.
    keys = list(sd)
    norms = torch.stack(torch._foreach_norm([sd[k].float() if sd[k].dtype == torch.float16 else sd[k] for k in keys]))
    bad = [k for k, finite in zip(keys, norms.isfinite().tolist(), strict=True) if not finite]
    if bad:
        raise LoraError(
            f"{ck.name} has NaN or infinite values in {len(bad)} tensors (e.g. {bad[0]!r}): training "
            "diverged by this checkpoint. Compare the earlier checkpoints and lower the learning rate."
        )


def _check_shapes(base: Base, ck: Checkpoint, sd: dict[str, torch.Tensor], names: dict[str, torch.nn.Module]) -> None:
    """Each factor must fit its live module: lora_A's input side and lora_B's output side.

    A narrower lora_A would be zero-padded into a wrong image that reports "ok"; a wider one
    would fail inside the pipeline after the adapter was half written.
    """
    prefix = base.denoiser_name
    for key, tensor in sd.items():
        if not key.endswith((".lora_A.weight", ".lora_B.weight")):
            continue
        module = key[len(prefix) + 1 :].split(".lora_")[0]
        live = names[module]
        weight = getattr(getattr(live, "base_layer", live), "weight", None)
        if weight is None or weight.dim() != tensor.dim():
            continue  # peft refuses what it cannot adapt, before writing anything
        side, want, got = (
            ("input", weight.shape[1], tensor.shape[1])
            if key.endswith(".lora_A.weight")
            else ("output", weight.shape[0], tensor.shape[0])
        )
        if want != got:
            raise LoraError(
                f"{ck.name}: module {module!r} has {want} {side} features in this base, but the file's "
                f"{'lora_A' if side == 'input' else 'lora_B'} has {got} ({tuple(tensor.shape)}): it was trained on "
                f"another model or size. {_arch_hint(base, ck)}"
            )


def _one_prefix(sd: dict, prefix: str, denoiser: torch.nn.Module) -> dict:
    """Undo a doubled prefix: converters that add "transformer." to keys that already had it
    (OneTrainer's Z-Image files with .alpha tensors) leave "transformer.transformer.…"."""
    doubled = f"{prefix}.{prefix}."
    if sd and all(k.startswith(doubled) for k in sd) and not hasattr(denoiser, prefix):
        return {k[len(prefix) + 1 :]: v for k, v in sd.items()}
    return sd


def _with_prefix(sd: dict, names: set[str], prefix: str) -> dict | None:
    """PEFT-style files name modules bare ("layers.0...") or as "base_model.model.layers.0...";
    diffusers expects "<prefix>.layers.0..." and otherwise silently injects nothing."""
    fixed = {}
    for k, v in sd.items():
        bare = re.sub(r"\.default(?=\.)", "", k.removeprefix("base_model.model."))
        if bare.split(".lora_")[0] not in names:
            return None
        fixed[f"{prefix}.{bare}"] = v
    return fixed


def _arch_hint(base: Base, ck: Checkpoint) -> str:
    """The fix for a file that does not fit: the base it was trained for, when its keys say."""
    if ck.arch not in ("unknown", base.family):
        example = sorted(ck.modules)[0] if ck.modules else ""
        ours = family_name(base.family)
        return (
            f"It targets {family_name(ck.arch)} (keys like {example!r}); the loaded base is "
            f"{ours}. Pick a {ours} LoRA or switch the base in configs/."
        )
    return f"Check that it was trained on {base.config.name}."
