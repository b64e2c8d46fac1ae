"""Where an adapter file's module keys point in the live pipeline: prefixes, text encoders, kohya's SDXL names.

Trainers name a module "<prefix><module>", the module dotted or with dots as underscores, and put a text
encoder's modules under their own prefix (kohya ``lora_te1_``, diffusers ``text_encoder.``). kohya trains SDXL on
Stability's own UNet ("SGM" names: ``input_blocks_4_1_...``), which diffusers' block arithmetic maps onto its
UNet. kohya's Flux names (BFL's fused modules) are in ``flux_names.py``.
"""

from __future__ import annotations

import re
from typing import TypeVar

__all__ = ["PREFIXES", "SGM_BLOCKS", "TEXT_ENCODER", "TEXT_PREFIXES", "resolve_modules", "sgm_to_diffusers",
           "text_parts"]  # fmt: skip

Spec = TypeVar("Spec")  # what a file's module key carries (``lycoris.Spec``); passed through unchanged

# Prefixes as the trainers write them, longest first; what is left names a module of the denoiser.
PREFIXES = ("base_model.model.", "diffusion_model.", "transformer.", "unet.", "lycoris_", "lora_unet_",
            "lora_transformer_")  # fmt: skip
# Text-encoder keys as trainers write them: kohya lora_te_/lora_te1_/lora_te2_, diffusers text_encoder(_2).
TEXT_ENCODER = re.compile(r"^(lora_te\d?_|lycoris_te\d?_|text_encoder(_\d)?\.|te\d?\.)")
# Each text-encoder prefix and the pipeline component it adapts (kohya numbers SDXL's encoders from 1).
TEXT_PREFIXES = (("lora_te1_", "text_encoder"), ("lora_te2_", "text_encoder_2"), ("lora_te_", "text_encoder"),
                 ("text_encoder_2.", "text_encoder_2"), ("text_encoder.", "text_encoder"))  # fmt: skip


def text_parts(keys) -> tuple[str, ...]:
    """What a file's keys adapt: ("denoiser",), plus "text_encoder"/"text_encoder_2" for text-encoder keys."""
    found = set()
    for key in keys:
        for p, component in TEXT_PREFIXES:
            if key.startswith(p):
                found.add(component)
                break
        else:
            if not key.startswith("lora_te"):  # kohya-style names are all caught above
                found.add("denoiser")
    return tuple(sorted(found, key=("denoiser", "text_encoder", "text_encoder_2").index)) or ("denoiser",)


SGM_BLOCKS = ("input_blocks", "middle_block", "output_blocks")
# kohya's SDXL UNet (Stability's "SGM" layout) names inside a block → diffusers' names, as diffusers converts them.
_SGM_NAMES = (
    ("_in_layers_2", "_conv1"), ("_out_layers_3", "_conv2"), ("_emb_layers_1", "_time_emb_proj"),
    ("_skip_connection", "_conv_shortcut"), ("_downsamplers_0_op", "_downsamplers_0_conv"),
    ("input_blocks", "down_blocks"), ("middle_block", "mid_block"), ("output_blocks", "up_blocks"),
)  # fmt: skip
_SGM_TOP = {"input_blocks_0_0": "conv_in", "out_2": "conv_out", "time_embed_0": "time_embedding_linear_1",
            "time_embed_2": "time_embedding_linear_2", "label_emb_0_0": "add_embedding_linear_1",
            "label_emb_0_2": "add_embedding_linear_2"}  # fmt: skip


def sgm_to_diffusers(groups: dict[str, Spec], unet_config) -> dict[str, Spec]:
    """kohya's SDXL module keys (``lora_unet_input_blocks_4_1_...``: it trains SDXL on its own SGM UNet) renamed to
    diffusers' UNet (``lora_unet_down_blocks_1_attentions_0_...``), with diffusers' own block arithmetic; other keys
    unchanged. Used only when a key has SGM block names."""
    from diffusers.loaders.lora_conversion_utils import _maybe_map_sgm_blocks_to_diffusers

    unet, blocks, out = "lora_unet_", {}, {}
    for key, spec in groups.items():
        bare = key.removeprefix(unet)
        if key.startswith(unet) and bare in _SGM_TOP:
            out[unet + _SGM_TOP[bare]] = spec
        elif key.startswith(unet) and bare.startswith(SGM_BLOCKS):
            blocks[key] = spec
        else:
            out[key] = spec
    for key, spec in _maybe_map_sgm_blocks_to_diffusers(blocks, unet_config).items():
        for old, new in _SGM_NAMES:
            key = key.replace(old, new)
        out[key] = spec
    return out


def resolve_modules(
    groups: dict[str, Spec], components: dict[str, set[str]], denoiser: str
) -> tuple[dict[str, Spec], list[str], list[tuple[str, str]]]:
    """Map the file's module keys onto the pipeline's modules, "<component>.<dotted module name>".

    Args:
        components: the module names of each pipeline component ("transformer", "text_encoder"...).
        denoiser: the component keys without a text-encoder prefix adapt.

    Returns:
        The specs by "<component>.<module>", the file's keys that name no module of their component, and
        (component, key) for keys of a text encoder the pipeline does not have.
    """
    underscored = {c: {} for c in components}
    for c, names in components.items():
        for n in names:
            underscored[c].setdefault(n.replace(".", "_"), n)
    out, unknown, absent = {}, [], []
    for key, spec in groups.items():
        component, bare = denoiser, key
        for p, c in TEXT_PREFIXES:
            if bare.startswith(p):
                component, bare = c, bare[len(p) :]
                break
        else:
            for p in PREFIXES:
                if bare.startswith(p):
                    bare = bare[len(p) :]
                    break
        if component not in components:
            absent.append((component, key))
            continue
        names = components[component]
        name = bare if bare in names else underscored[component].get(bare.replace(".", "_"))
        if name is None:
            unknown.append(key)
        else:
            out[f"{component}.{name}"] = spec
    return out, unknown, absent
