"""LoRA tensor keys as each trainer writes them: which module a key adapts, which layout and base family a file has.

kohya (``lora_unet_…``), ai-toolkit (``diffusion_model.…``), diffusers (``transformer.…``), PEFT
(``base_model.model.…``) and bare keys all name modules in one spelling here, so one run saved
in two layouts still counts as one module set.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "DOWN_WEIGHT",
    "UP_WEIGHT",
    "detect_arch",
    "detect_format",
    "detect_trainer",
    "family_name",
    "module_of",
]

# The down (A) factor of a module: its first dimension is the module's rank.
DOWN_WEIGHT = re.compile(r"\.(lora_A|lora_down|lora\.down)(\.[^.]+)?\.weight$")
# The up (B) factor: out x rank.
UP_WEIGHT = re.compile(r"\.(lora_B|lora_up|lora\.up)(\.[^.]+)?\.weight$")

# Suffixes that end a LoRA tensor key; what is left is the module the tensor adapts.
_LORA_SUFFIX = re.compile(
    r"\.(lora_A|lora_B|lora_down|lora_up|lora\.down|lora\.up|lora_mid)(\.[^.]+)?\.(weight|bias)$|\.alpha$|\.dora_scale$"
    r"|\.(lokr_w[12](_[ab])?|lokr_t[12]|hada_w[12]_[ab]|hada_t[12])(\.default)?$"  # LyCORIS LoKr and LoHa
)


_PREFIX = re.compile(
    r"^(lora_unet_|lora_transformer_|lycoris_|diffusion_model\.|base_model\.model\.|transformer\.|unet\.)"
)


def module_of(key: str) -> str | None:
    """The adapted module of a tensor key, in one spelling for every trainer's layout.

    ``lora_unet_layers_0_attention_to_q``, ``diffusion_model.layers.0.attention.to_q`` and
    ``transformer.layers.0.attention.to_q`` all become ``layers_0_attention_to_q``, so one run
    saved in two layouts still counts as one module set.
    """
    m = _LORA_SUFFIX.search(key)
    return _PREFIX.sub("", key[: m.start()]).replace(".", "_") if m else None


def detect_format(keys: list[str]) -> str:
    """The key layout ("kohya", "diffusers", "lycoris"...), then marks: "+lokr"/"+loha", "+fused-qkv", "+dora"."""
    parts = []
    if any(k.startswith("lycoris_") for k in keys):
        parts.append("lycoris")
    elif any(k.startswith(("lora_unet_", "lora_te", "lora_transformer_")) for k in keys):
        parts.append("kohya")
    elif any(k.startswith("diffusion_model.") for k in keys):
        parts.append("ai-toolkit")
    elif any(k.startswith("base_model.model.") for k in keys):
        parts.append("peft")
    elif any(k.startswith(("transformer.", "unet.", "text_encoder")) for k in keys):
        parts.append("diffusers")
    elif any(".lora.down." in k for k in keys):
        parts.append("dot-lora")
    else:
        parts.append("bare")
    kind = "lokr" if any(".lokr_" in k for k in keys) else "loha" if any(".hada_" in k for k in keys) else None
    if kind:
        parts.append(kind)
    if any(re.search(r"[._]qkv[._]", k) for k in keys):
        parts.append("fused-qkv")
    if any(k.endswith(".dora_scale") for k in keys):
        parts.append("dora")
    return "+".join(parts)


_FAMILY_NAMES = {
    "z-image": "Z-Image",
    "sdxl": "SDXL",
    "sd": "SD 1.5/2",
    "flux": "Flux",
    "dit": "a DiT",
    "other": "another model",
}


def family_name(family: str) -> str:
    """A base family as people write it: "z-image" -> "Z-Image"."""
    return _FAMILY_NAMES.get(family, family)


def detect_arch(modules: frozenset[str]) -> str:
    """Which base family a LoRA's module names point at (a hint for error messages)."""
    joined = "\n".join(modules)
    if re.search(r"single_transformer_blocks|double_blocks|single_blocks", joined):
        return "flux"
    if re.search(r"down_blocks|up_blocks|mid_block|input_blocks|output_blocks|middle_block", joined):
        sdxl = re.search(r"input_blocks|transformer_blocks[._][1-9]|lora_te2|text_encoder_2", joined)
        return "sdxl" if sdxl else "sd"
    if re.search(r"(^|[._])(layers|noise_refiner|context_refiner)[._]\d+[._](attention|feed_forward)", joined):
        return "z-image"
    if "transformer_blocks" in joined:
        return "dit"
    return "unknown"


# ss_network_module values of musubi-tuner (kohya's trainer for video and DiT models) rather than sd-scripts.
_MUSUBI_MODULES = re.compile(
    r"^networks\.lora_(zimage|wan|framepack|qwen_image|hv|hunyuan\w*|flux_kontext|kandinsky\w*)$"
)


def detect_trainer(keys: list[str], meta: dict[str, str], path: Path) -> str:
    """Which trainer wrote a LoRA file, from the marks each one leaves (metadata first, then layout).

    Learned from the trainers' saving code: ai-toolkit writes ``software`` and ``training_info``;
    OneTrainer ``ot_revision``/``ot_branch``; kohya sd-scripts and musubi-tuner ``ss_*`` fields
    (musubi with its own ``ss_network_module``); SimpleTuner diffusers' ``lora_adapter_metadata``
    plus ``modelspec.*``; diffusers' scripts the adapter metadata alone; PEFT ``adapter_model``
    files; DiffSynth-Studio PEFT keys that keep the adapter name (``lora_A.default``); the LyCORIS library's
    ``lycoris_`` keys (SimpleTuner adds a ``lycoris_config`` field).
    """
    if any(k.startswith("lycoris_") for k in keys):  # the LyCORIS library's own wrapper, which SimpleTuner uses
        return "SimpleTuner" if "lycoris_config" in meta or any(k.startswith("modelspec.") for k in meta) else "LyCORIS"
    software = meta.get("software", "")
    if "ai-toolkit" in software or "training_info" in meta:
        return "ai-toolkit"
    if "ot_revision" in meta or "ot_branch" in meta:
        return "OneTrainer"
    module = meta.get("ss_network_module", "")
    if module:
        return "musubi-tuner" if _MUSUBI_MODULES.match(module) else "kohya sd-scripts"
    if "lora_adapter_metadata" in meta:
        return "SimpleTuner" if any(k.startswith("modelspec.") for k in meta) else "diffusers"
    if path.name == "adapter_model.safetensors":
        return "PEFT"
    if any(".lora_A.default." in k or ".lora_B.default." in k for k in keys):
        return "DiffSynth-Studio"
    if path.name == "pytorch_lora_weights.safetensors":
        return "diffusers"
    return "unknown"
