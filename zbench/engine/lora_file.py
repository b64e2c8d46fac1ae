"""A LoRA file read for the loaded base: keys converted the way diffusers converts them, then checked.

Before a checkpoint touches the live adapter layers, its tensors are read through diffusers'
own conversion (kohya, ai-toolkit, fused qkv, bare PEFT keys) and checked against the base:
keys that name its denoiser's modules, no text-encoder parts, no NaN or infinite values.
Every refusal is a :class:`LoraError` that says the cause and the fix.
"""

from __future__ import annotations

import torch

from .checkpoints import Checkpoint
from .pipeline import Base

__all__ = ["LoraError", "read_lora"]

_FAMILY_NAMES = {
    "z-image": "Z-Image",
    "sdxl": "SDXL",
    "sd": "SD 1.5/2",
    "flux": "Flux",
    "dit": "a DiT",
    "other": "another model",
}


class LoraError(ValueError):
    """A checkpoint cannot be applied to the loaded base; the message names cause and fix."""


def read_lora(base: Base, ck: Checkpoint) -> tuple[str | dict, dict, frozenset[str], int]:
    """Convert a file's keys the way diffusers will and check it fits this base.

    Returns:
        (what to pass to load_lora_weights, the converted tensors, the denoiser modules
        they adapt, the rank).
    """
    pipe, prefix = base.pipe, base.denoiser_name
    try:
        out = pipe.lora_state_dict(str(ck.path), return_lora_metadata=True)
    except Exception as err:  # diffusers raises many types for keys it cannot convert
        raise LoraError(
            f"{ck.name}: diffusers cannot read it as a {_family_name(base.family)} LoRA ({type(err).__name__}: "
            f"{err}). {_arch_hint(base, ck)}"
        ) from err
    sd = out[0]
    # The converted dict saves diffusers a second read, unless the file carries what the
    # dict cannot: adapter metadata (lora_alpha...) or SD-style network alphas.
    source: str | dict = sd if all(x is None or x == {} for x in out[1:]) else str(ck.path)
    names = set(dict(base.denoiser.named_modules()))
    if not any(k.startswith(prefix + ".") for k in sd):
        fixed = _with_prefix(sd, names, prefix)
        if fixed is None:
            raise LoraError(
                f"{ck.name}: none of its {len(sd)} keys names a module of this base's "
                f"{prefix} (e.g. {next(iter(sd), '')!r}), so it would change nothing. {_arch_hint(base, ck)}"
            )
        sd = source = fixed
    foreign = sorted(k for k in sd if not k.startswith(prefix + "."))
    if foreign:
        raise LoraError(
            f"{ck.name} also adapts the text encoder ({len(foreign)} tensors, e.g. {foreign[0]!r}); "
            "zbench swaps denoiser LoRAs only. Retrain with the text encoder frozen (e.g. kohya "
            "--network_train_unet_only) to compare this run here."
        )
    # One fused pass: a tensor's norm is NaN or inf exactly when it holds a NaN or inf.
    keys = list(sd)
    norms = torch.stack(torch._foreach_norm([sd[k].float() if sd[k].dtype == torch.float16 else sd[k] for k in keys]))
    bad = [k for k, finite in zip(keys, norms.isfinite().tolist(), strict=True) if not finite]
    if bad:
        raise LoraError(
            f"{ck.name} has NaN or infinite values in {len(bad)} tensors (e.g. {bad[0]!r}): training "
            "diverged by this checkpoint. Compare the earlier checkpoints and lower the learning rate."
        )
    modules = frozenset(k[len(prefix) + 1 :].split(".lora_")[0] for k in sd)
    unknown = sorted(modules - names)
    if unknown:
        raise LoraError(
            f"{ck.name} names {len(unknown)} of its {len(modules)} modules that this base lacks "
            f"(e.g. {unknown[0]!r}). {_arch_hint(base, ck)}"
        )
    rank = max(v.shape[0] for k, v in sd.items() if ".lora_A." in k)
    return source, sd, modules, rank


def _with_prefix(sd: dict, names: set[str], prefix: str) -> dict | None:
    """PEFT-style files name modules bare ("layers.0...") or as "base_model.model.layers.0...";
    diffusers expects "<prefix>.layers.0..." and otherwise silently injects nothing."""
    fixed = {}
    for k, v in sd.items():
        bare = k.removeprefix("base_model.model.").replace(".default.", ".")
        if bare.split(".lora_")[0] not in names:
            return None
        fixed[f"{prefix}.{bare}"] = v
    return fixed


def _family_name(family: str) -> str:
    """A base family as people write it: "z-image" -> "Z-Image"."""
    return _FAMILY_NAMES.get(family, family)


def _arch_hint(base: Base, ck: Checkpoint) -> str:
    """The fix for a file that does not fit: the base it was trained for, when its keys say."""
    if ck.arch not in ("unknown", base.family):
        example = sorted(ck.modules)[0] if ck.modules else ""
        ours = _family_name(base.family)
        return (
            f"It targets {_family_name(ck.arch)} (keys like {example!r}); the loaded base is "
            f"{ours}. Pick a {ours} LoRA or switch the base in configs/."
        )
    return f"Check that it was trained on {base.config.name}."
