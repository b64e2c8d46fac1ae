"""kohya's Flux module names (Black Forest Labs' layout) mapped onto diffusers' ``FluxTransformer2DModel``.

kohya sd-scripts trains Flux on BFL's own model, where a block's q, k and v are one fused Linear
(``double_blocks_0_img_attn_qkv``) and a single block's q, k, v and MLP input are one (``single_blocks_0_linear1``).
diffusers splits them. A LoRA splits exactly by rows of B (diffusers' converter does that), but a LoKr, LoHa or
DoRA does not factor per part, so here each diffusers module is given the file's whole adapter and the rows of
ΔW that are its own: ``[(start, stop), ...]`` (concatenated; the final layer's modulation swaps its two halves,
as diffusers' converter does). The names follow diffusers' ``_convert_kohya_flux_lora_to_diffusers``.
"""

from __future__ import annotations

import re

__all__ = ["BFL_BLOCKS", "flux_targets"]

BFL_BLOCKS = re.compile(r"^(lora_unet_)?(double_blocks|single_blocks|img_in|txt_in|time_in|vector_in|guidance_in|"
                        r"final_layer)")  # fmt: skip

_DOUBLE = {
    "img_attn_proj": "attn.to_out.0", "img_mlp_0": "ff.net.0.proj", "img_mlp_2": "ff.net.2",
    "img_mod_lin": "norm1.linear", "txt_attn_proj": "attn.to_add_out", "txt_mlp_0": "ff_context.net.0.proj",
    "txt_mlp_2": "ff_context.net.2", "txt_mod_lin": "norm1_context.linear",
    "img_attn_qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn_qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}  # fmt: skip
_SINGLE = {
    "linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), "linear2": "proj_out",
    "modulation_lin": "norm.linear",
}  # fmt: skip
_TOP = {
    "img_in": "x_embedder", "txt_in": "context_embedder",
    "time_in_in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in_out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in_in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in_out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in_in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in_out_layer": "time_text_embed.guidance_embedder.linear_2",
    "final_layer_linear": "proj_out", "final_layer_adaLN_modulation_1": "norm_out.linear",
}  # fmt: skip

Rows = list[tuple[int, int]]


def flux_targets(key: str, out_features: dict[str, int]) -> list[tuple[str, Rows | None]] | None:
    """The diffusers modules a kohya Flux module key adapts, each with its rows of ΔW (None: all of them).

    Args:
        key: the file's module key ("lora_unet_double_blocks_3_img_attn_qkv").
        out_features: output size of each Linear of the live transformer, by dotted name.

    Returns:
        [(module, rows)], or None when ``key`` is not a BFL name (or names a module the model lacks).
    """
    bare = key.removeprefix("lora_unet_")
    if bare in _TOP:
        name = _TOP[bare]
        if name not in out_features:
            return None
        if bare == "final_layer_adaLN_modulation_1":  # BFL: (shift, scale); diffusers: (scale, shift)
            half = out_features[name] // 2
            return [(name, [(half, 2 * half), (0, half)])]
        return [(name, None)]
    m = re.fullmatch(r"(double|single)_blocks_(\d+)_(.+)", bare)
    if not m:
        return None
    table, block = (_DOUBLE, "transformer_blocks") if m.group(1) == "double" else (_SINGLE, "single_transformer_blocks")
    part = table.get(m.group(3))
    if part is None:
        return None
    prefix = f"{block}.{m.group(2)}."
    if isinstance(part, str):
        return [(prefix + part, None)] if prefix + part in out_features else None
    names = [prefix + p for p in part]
    if any(n not in out_features for n in names):
        return None
    out, start = [], 0
    for n in names:  # the fused rows in order: q, k, v (then the MLP input of a single block)
        out.append((n, [(start, start + out_features[n])]))
        start += out_features[n]
    return out
