"""Model FLOPs of a Z-Image render from its architecture, and the GPUs' published dense peaks to hold them against.

One transformer forward (``ZImageTransformer2DModel``): ``n_layers`` main blocks over the image and caption
tokens together, ``n_refiner_layers`` noise-refiner blocks over the image tokens and as many context-refiner
blocks over the caption tokens. A block's matrix products per token are q, k, v and out (d·d each, k and v at
``n_kv_heads``' width) and the SwiGLU feed-forward (three d·f, f = int(d/3·8)); attention adds QKᵀ and AV
(2·L²·d multiply-adds for L tokens). Plus the patch embedder, the caption embedder and the final projection.
Every multiply-add counts 2 FLOPs; norms, RoPE, softmax and the per-sample modulation are left out (< 0.1% at
1024²). Token counts are padded to 32 as the model pads them. The VAE decode and the text encoder (once per
prompt, not per image) are not in it.

Z-Image-Turbo at 1024² with a 128-token prompt: 56.6 TFLOP per forward, 453 TFLOP for 8 steps: the floor is
0.46 s/image on an H100/H200 (989 TFLOP/s dense bf16), 2.7 s on an RTX 4090 (165).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["PEAK_TFLOPS", "detect_peak_tflops", "zimage_forward_flops", "zimage_image_flops"]

# Dense (no sparsity) bf16 tensor-core peaks as the vendors publish them, TFLOP/s; matched by substring of the
# device name, most specific first.
PEAK_TFLOPS = (
    ("GB300", 2500.0), ("B200", 2250.0), ("H200", 989.4), ("H100 PCIe", 756.0), ("H100", 989.4), ("H800", 989.4),
    ("A100", 312.0), ("L40S", 362.1), ("L40", 181.0), ("RTX 5090", 209.5), ("RTX 4090", 165.2), ("RTX 3090", 71.0),
    ("A10G", 70.0), ("A10", 125.0), ("L4", 121.0), ("T4", 65.0),
)  # fmt: skip


def _padded(n: int, multiple: int = 32) -> int:
    return math.ceil(n / multiple) * multiple


def zimage_forward_flops(config: Mapping, image_tokens: int, caption_tokens: int) -> int:
    """FLOPs of one transformer forward (see the module docstring).

    Args:
        config: the transformer's config (``dim``, ``n_heads``, ``n_kv_heads``, ``n_layers``, ``n_refiner_layers``,
            ``cap_feat_dim``, ``in_channels``, ``all_patch_size``).
        image_tokens: latent patches, (height / 16) · (width / 16) for Z-Image's VAE and patch size 2.
        caption_tokens: the prompt's tokens as the text encoder gives them.
    """
    d = config["dim"]
    kv = d * config.get("n_kv_heads", config["n_heads"]) // config["n_heads"]
    f = int(d / 3 * 8)
    img, cap = _padded(image_tokens), _padded(caption_tokens)

    def block(tokens: int) -> int:
        linear = 2 * tokens * (2 * d * d + 2 * d * kv + 3 * d * f)
        return linear + 4 * tokens * tokens * d

    patch = config.get("all_patch_size", [2])[0]
    per_patch = config["in_channels"] * patch * patch
    embed = 2 * img * per_patch * d + 2 * cap * config["cap_feat_dim"] * d + 2 * img * d * per_patch
    layers, refiners = config["n_layers"], config["n_refiner_layers"]
    return layers * block(img + cap) + refiners * (block(img) + block(cap)) + embed


def zimage_image_flops(config: Mapping, width: int, height: int, steps: int, caption_tokens: int, *, cfg: bool) -> int:
    """FLOPs of one image: ``steps`` forwards (twice as many with classifier-free guidance)."""
    forward = zimage_forward_flops(config, (height // 16) * (width // 16), caption_tokens)
    return steps * forward * (2 if cfg else 1)


def detect_peak_tflops(device) -> float | None:
    """The published dense bf16 peak of a CUDA device (TFLOP/s), None for a CPU or a GPU not in the table."""
    import torch

    if getattr(device, "type", str(device)) != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_TFLOPS if key in name), None)
