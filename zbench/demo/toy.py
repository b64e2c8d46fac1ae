"""Toy models and LoRA files: a tiny real Z-Image pipeline, and LoRA tensors in trainers' layouts.

The pipeline uses diffusers' and transformers' real classes (``ZImagePipeline``,
``ZImageTransformer2DModel``, ``AutoencoderKL``, ``Qwen3Model``, a byte-level Qwen2
tokenizer with a chat template) at toy sizes, saved with ``save_pretrained`` and loaded with
``from_pretrained`` like any real base. Its weights are random, so it draws abstract
patterns; the LoRA files are real LoRA tensors in the key formats trainers write.
Tests and the swap benchmark build these in seconds; the trained embedded demo is zbench.demo.build.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import save_file

__all__ = [
    "build_tiny_pipeline",
    "byte_tokenizer",
    "kohya_metadata",
    "lora_targets",
    "random_lora",
    "random_lycoris",
    "save_lora",
    "tiny_sdxl_pipeline",
]

logger = logging.getLogger(__name__)

LoraFormat = Literal["diffusers", "kohya", "ai-toolkit", "bare"]
# The modules Z-Image LoRA trainers adapt: attention projections and the SwiGLU FFN of every block.
TARGET = re.compile(
    r"^(layers|noise_refiner|context_refiner)\.\d+\.(attention\.(to_q|to_k|to_v|to_out\.0)|feed_forward\.w[123])$"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def byte_tokenizer(words: Sequence[str] = ()):
    """A byte-level Qwen2 tokenizer with Z-Image's chat template (no hub needed).

    Args:
        words: words made single tokens (by BPE merges on their " word" form), in this order.
    """
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}  # the 256 byte symbols
    merges = []
    for word in words:
        token = "Ġ" + word  # byte-level BPE writes a leading space as Ġ
        for i in range(2, len(token) + 1):
            if token[:i] not in vocab:
                merges.append((token[: i - 1], token[i - 1]))
                vocab[token[:i]] = len(vocab)
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_tiny_pipeline(out_dir: str | Path, *, seed: int = 0, dim: int = 32, layers: int = 2):
    """Build a tiny random ZImagePipeline and save it with ``save_pretrained``.

    Sizes obey Z-Image's constraints: ``sum(axes_dims) == dim // n_heads``, the text
    encoder's hidden size equals ``cap_feat_dim`` and its positions reach 512 tokens, and
    the VAE's latent channels equal the transformer's input channels.

    Returns:
        The pipeline (float32, CPU), also written to ``out_dir``.
    """
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(seed)
    heads, text_dim = 2, 16
    head_dim = dim // heads
    axes = [head_dim // 2, head_dim // 4, head_dim // 4]
    transformer = ZImageTransformer2DModel(
        in_channels=4,
        dim=dim,
        n_layers=layers,
        n_refiner_layers=1,
        n_heads=heads,
        n_kv_heads=heads,
        cap_feat_dim=text_dim,
        axes_dims=axes,
        axes_lens=[256, 64, 64],
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=[16, 32],
        layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        norm_num_groups=8,
        scaling_factor=0.3611,
        shift_factor=0.1159,
    )
    text_encoder = Qwen3Model(
        Qwen3Config(
            vocab_size=len(SPECIAL_TOKENS) + 256,
            hidden_size=text_dim,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=512,
        )
    )
    pipe = ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=byte_tokenizer(),
        transformer=transformer,
    )
    pipe.save_pretrained(str(out_dir))
    return pipe


def tiny_sdxl_pipeline(*, seed: int = 0):
    """A tiny real SDXL pipeline in memory (diffusers' UNet with conv and cross-attention blocks, two CLIP text
    encoders, a byte-level CLIP tokenizer), random weights: for adapters typical on SDXL (conv LoKr/LoHa, text
    encoder 1 and 2 parts). 64x64 in 2 steps takes about a second on a CPU."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": len(chars) + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=8,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, sample_size=64, norm_num_groups=8,
    )  # fmt: skip
    special = {"bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
               "pad_token_id": vocab["<|endoftext|>"]}  # fmt: skip
    text = CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                          vocab_size=len(vocab), hidden_act="gelu", projection_dim=32, **special)  # fmt: skip
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(text), text_encoder_2=CLIPTextModelWithProjection(text),
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=EulerDiscreteScheduler(),
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def lora_targets(transformer: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """The Linear modules a Z-Image LoRA adapts, by name (the base layer where LoRA is already injected)."""
    found = {n: getattr(m, "base_layer", m) for n, m in transformer.named_modules() if TARGET.match(n)}
    return {n: m for n, m in found.items() if isinstance(m, torch.nn.Linear)}


def random_lora(
    transformer: torch.nn.Module, *, rank: int, seed: int, strength: float = 1.0, modules: list[str] | None = None
) -> dict[str, torch.Tensor]:
    """LoRA tensors in diffusers/PEFT layout ("<module>.lora_A.weight"), random but seeded.

    ``strength`` scales B, so a series of strengths imitates a LoRA growing over a run.
    """
    gen = torch.Generator().manual_seed(seed)
    targets = lora_targets(transformer)
    out = {}
    for name in modules or sorted(targets):
        lin = targets[name]
        out[f"{name}.lora_A.weight"] = torch.randn(rank, lin.in_features, generator=gen) / lin.in_features**0.5
        out[f"{name}.lora_B.weight"] = torch.randn(lin.out_features, rank, generator=gen) * strength / rank**0.5
    return out


def _factor(dim: int, factor: int) -> tuple[int, int]:
    """The LyCORIS library's split of ``dim`` into (small, large) near ``factor`` (its ``factorization``)."""
    if factor > 0 and dim % factor == 0:
        return min(factor, dim // factor), max(factor, dim // factor)
    m, n = 1, dim
    while m < n:
        new = m + 1
        while dim % new:
            new += 1
        if new + dim // new > m + n or new > (dim if factor < 0 else factor):
            break
        m, n = new, dim // new
    return min(m, n), max(m, n)


def random_lycoris(
    transformer: torch.nn.Module, kind: Literal["lokr", "loha"], *, rank: int, seed: int, factor: int = 8
) -> dict[str, torch.Tensor]:
    """LoKr or LoHa tensors as the LyCORIS library saves them (``lycoris_<module>.lokr_w1``...), random but seeded.

    LoKr: w1 whole (factor x factor), w2 whole when ``rank`` ≥ half its larger side, else ``lokr_w2_a @ lokr_w2_b``
    (the library's rule); alpha = rank. LoHa: two rank-``rank`` pairs, alpha = rank. Scaled so ΔW is small.
    """
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, lin in sorted(lora_targets(transformer).items()):
        key = "lycoris_" + name.replace(".", "_")
        out_dim, in_dim = lin.out_features, lin.in_features
        if kind == "lokr":
            (a, c), (b, d) = _factor(out_dim, factor), _factor(in_dim, factor)
            out[f"{key}.lokr_w1"] = torch.randn(a, b, generator=gen) / b**0.5
            if rank >= max(c, d) / 2:
                out[f"{key}.lokr_w2"] = torch.randn(c, d, generator=gen) * 0.1 / d**0.5
            else:
                out[f"{key}.lokr_w2_a"] = torch.randn(c, rank, generator=gen) * 0.1 / rank**0.5
                out[f"{key}.lokr_w2_b"] = torch.randn(rank, d, generator=gen) / d**0.5
        else:
            for i in ("1", "2"):
                out[f"{key}.hada_w{i}_a"] = torch.randn(out_dim, rank, generator=gen) * 0.3 / rank**0.5
                out[f"{key}.hada_w{i}_b"] = torch.randn(rank, in_dim, generator=gen) / in_dim**0.5
        out[f"{key}.alpha"] = torch.tensor(float(rank))
    return out


def save_lora(
    path: str | Path,
    state: dict[str, torch.Tensor],
    *,
    fmt: LoraFormat = "diffusers",
    alpha: float | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write LoRA tensors as a trainer of the given kind would.

    Args:
        state: tensors from :func:`random_lora` (diffusers layout, no prefix).
        fmt: "diffusers" (``transformer.`` prefix), "kohya" (``lora_unet_`` + lora_down/up + alpha),
            "ai-toolkit" (``diffusion_model.`` prefix) or "bare" (PEFT names with no prefix).
        alpha: written as per-module ``.alpha`` tensors (kohya and ai-toolkit read them as alpha/rank).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module, _, tail = key.partition(".lora_")
        ab = tail.split(".")[0]  # "A" or "B"
        if fmt == "kohya":
            name = "lora_unet_" + module.replace(".", "_")
            out[f"{name}.lora_{'down' if ab == 'A' else 'up'}.weight"] = value.contiguous()
            if alpha is not None and ab == "A":
                out[f"{name}.alpha"] = torch.tensor(float(alpha))
            continue
        prefix = {"diffusers": "transformer.", "ai-toolkit": "diffusion_model.", "bare": ""}[fmt]
        out[f"{prefix}{key}"] = value.contiguous()
        if alpha is not None and ab == "A":
            out[f"{prefix}{module}.alpha"] = torch.tensor(float(alpha))
    if not out:
        raise ValueError("save_lora got no tensors to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(path), metadata=metadata or {})
    return path


def kohya_metadata(*, epoch: int, steps: int, rank: int, alpha: float, name: str) -> dict[str, str]:
    """The ``ss_*`` header fields kohya sd-scripts writes with every save."""
    return {
        "ss_output_name": name,
        "ss_epoch": str(epoch),
        "ss_steps": str(steps),
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(alpha),
        "ss_network_module": "networks.lora",
        "ss_base_model_version": "zimage",
        "modelspec.architecture": "z-image/lora",
        "modelspec.title": f"{name} epoch {epoch}",
    }
