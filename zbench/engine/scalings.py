"""The per-module LoRA scaling peft gives a checkpoint, computed without loading it through diffusers.

A LoRA layer multiplies its output by ``scaling = lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA),
with ``r`` and ``lora_alpha`` looked up per module in ``rank_pattern`` and ``alpha_pattern``.
diffusers builds that config from the file's ``lora_adapter_metadata`` (or PEFT's
``adapter_config.json``, see ``alphas.py``); a file without one gets alpha = r, scaling 1
(kohya-style ``.alpha`` values were already folded into the weights by diffusers' converter).
Knowing the scalings lets a first visit of a checkpoint be a plain copy into the live layers, like
a revisit, instead of a trip through diffusers' hotswap. The swapper checks this computation
against the scalings diffusers sets whenever it does load a file itself.
"""

from __future__ import annotations

import math

from .lora_file import LoraRead

__all__ = ["config_scalings"]


def config_scalings(read: LoraRead, prefix: str, names: list[str]) -> list[float] | None:
    """The scaling peft would give each module in ``names`` for this checkpoint, at LoRA scale 1.

    Args:
        read: the checkpoint as :func:`zbench.engine.lora_file.read_lora` returned it.
        prefix: the denoiser's name ("transformer"), which prefixes the metadata's keys.
        names: live adapter module names, in the swapper's order.

    Returns:
        One float per name, or None when the config holds what this does not model (SD-style
        network alphas, DoRA or other options); the caller then lets diffusers load the file.
    """
    from peft import LoraConfig
    from peft.utils.other import get_pattern_key

    if read.network_alphas:
        return None
    if read.metadata is None:
        return [1.0] * len(names)
    # As diffusers' load_lora_adapter does: keep the keys of this component, drop the prefix.
    own = {k.removeprefix(f"{prefix}."): v for k, v in read.metadata.items() if k.startswith(f"{prefix}.")}
    if own.get("use_dora") or own.get("lora_bias") or own.get("use_qalora"):
        return None
    defaults = LoraConfig.__dataclass_fields__
    r, alpha = own.get("r", defaults["r"].default), own.get("lora_alpha", defaults["lora_alpha"].default)
    ranks, alphas = own.get("rank_pattern") or {}, own.get("alpha_pattern") or {}
    out = []
    for name in names:
        r_m = ranks.get(get_pattern_key(list(ranks), name), r)
        a_m = alphas.get(get_pattern_key(list(alphas), name), alpha)
        out.append(a_m / math.sqrt(r_m) if own.get("use_rslora") else a_m / r_m)
    return out
