"""Training the embedded demo on CPU: a small Z-Image pipeline that draws the shapes it is told to.

Three stages, all on procedurally drawn images (:mod:`zbench.demo.shapes`):
1. an ``AutoencoderKL`` (8x down, 4 latent channels) learns to reconstruct scenes;
2. a ``ZImageTransformer2DModel`` and a ``Qwen3Model`` text encoder learn, jointly, flow
   matching in that latent space exactly as ``ZImagePipeline`` samples it: the model sees
   ``x_t = (1 - s) x0 + s noise`` at timestep ``1 - s`` and predicts ``x0 - noise``;
3. a PEFT LoRA on the transformer learns the "dreamy" style from a few scenes, saved at
   several epochs, and kept training past the point where it still follows prompts.
"""

from __future__ import annotations

import copy
import logging
import math
import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .shapes import COLORS, SHAPES, Scene, draw
from .toy import byte_tokenizer

__all__ = ["DemoSizes", "build_components", "encode_prompts", "train_base", "train_lora", "train_vae"]

logger = logging.getLogger(__name__)
Progress = Callable[[int, dict[str, float]], None]


class DemoSizes:
    """Model sizes of the shipped demo (the quick build uses the same shapes, fewer steps)."""

    image = 128
    dim = 128
    layers = 4
    heads = 4  # 32 per head = axes 8 + 12 + 12
    text_dim = 64
    vae_channels = (16, 32, 64, 64)  # four blocks: 8x down, 128 px -> 16x16 latents -> 64 tokens


def make_tokenizer():
    """A byte-level Qwen2 tokenizer whose merges make each word of the demo grammar one token."""
    return byte_tokenizer([*COLORS, *SHAPES, "a", "on", "background"])


def build_components(seed: int = 0, sizes: type[DemoSizes] = DemoSizes):
    """Fresh (untrained) demo components: (vae, text_encoder, tokenizer, transformer, scheduler)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(seed)
    tokenizer = make_tokenizer()
    head = sizes.dim // sizes.heads
    transformer = ZImageTransformer2DModel(
        in_channels=4,
        dim=sizes.dim,
        n_layers=sizes.layers,
        n_refiner_layers=1,
        n_heads=sizes.heads,
        n_kv_heads=sizes.heads,
        cap_feat_dim=sizes.text_dim,
        axes_dims=[head // 4, 3 * head // 8, 3 * head // 8],
        axes_lens=[512, 64, 64],
    )
    text_encoder = Qwen3Model(
        Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=sizes.text_dim,
            intermediate_size=2 * sizes.text_dim,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            head_dim=sizes.text_dim // 4,
            max_position_embeddings=512,
        )
    )
    n = len(sizes.vae_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=list(sizes.vae_channels),
        layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * n,
        up_block_types=["UpDecoderBlock2D"] * n,
        # One group: GroupNorm over all channels keeps colors recoverable from relative activations;
        # with many groups, flat color regions normalise to the same values and colors wash out.
        norm_num_groups=1,
        mid_block_add_attention=False,
    )
    # The pipeline reads the first layer's output (hidden_states[-2]); starting that layer as the
    # identity makes caption features the word embeddings themselves, which trains much faster.
    with torch.no_grad():
        text_encoder.layers[0].self_attn.o_proj.weight.zero_()
        text_encoder.layers[0].mlp.down_proj.weight.zero_()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    return vae, text_encoder, tokenizer, transformer, scheduler


def _to_tensor(images) -> torch.Tensor:
    arr = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def train_vae(
    vae,
    scenes: Sequence[Scene],
    *,
    steps: int,
    batch: int = 8,
    lr: float = 3e-3,
    crop: int = 64,
    seed: int = 0,
    progress: Progress | None = None,
) -> None:
    """Teach the autoencoder to reconstruct scenes (plain and styled); modifies ``vae`` in place.

    Trains on random crops of full-size scenes: the network is convolutional, so crops teach it
    the same edges and colors at a quarter of the cost.
    """
    rng = random.Random(seed)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    vae.train()
    size = DemoSizes.image
    for step in range(steps):
        x = _to_tensor(
            [
                draw(rng.choice(scenes), rng, size=size, style=rng.choice((0.0, 0.0, 1.0)), look="soft")
                for _ in range(batch)
            ]
        )
        ox, oy = rng.randrange(0, size - crop + 1, 8), rng.randrange(0, size - crop + 1, 8)
        x = x[:, :, oy : oy + crop, ox : ox + crop]
        # Decode the posterior mean: a fresh encoder's variance is ~1, which would drown the signal
        # for thousands of steps; the latents the base model learns are means too.
        recon = vae.decode(vae.encode(x).latent_dist.mode()).sample
        loss = F.l1_loss(recon, x) + 0.5 * F.mse_loss(recon, x)
        for group in opt.param_groups:
            group["lr"] = lr * _cosine(step, steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress:
            progress(step, {"loss": loss.item()})
    vae.eval()


@torch.no_grad()
def encode_latents(vae, images, *, batch: int = 64) -> torch.Tensor:
    """Posterior means of images, in the VAE's raw latent space."""
    return torch.cat(
        [vae.encode(_to_tensor(images[i : i + batch])).latent_dist.mean for i in range(0, len(images), batch)]
    )


def set_latent_scale(vae, means: torch.Tensor) -> None:
    """Record shift and scale so that model latents have zero mean and unit variance."""
    shift = float(means.mean())
    scale = float(1.0 / (means - shift).std())
    vae.register_to_config(shift_factor=shift, scaling_factor=scale)


def encode_prompts(tokenizer, text_encoder, prompts: Sequence[str]) -> list[torch.Tensor]:
    """Caption features exactly as ``ZImagePipeline._encode_prompt`` makes them (with gradients).

    The pipeline pads to 512 tokens; the encoder is causal, so the valid tokens' features do
    not depend on padding and padding to the longest prompt gives the same values, faster.
    """
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True, enable_thinking=True
        )
        for p in prompts
    ]
    inputs = tokenizer(texts, padding="longest", return_tensors="pt")
    mask = inputs.attention_mask.bool()
    hidden = text_encoder(
        input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, output_hidden_states=True
    ).hidden_states[-2]
    return [hidden[i][mask[i]] for i in range(len(prompts))]


def flow_loss(
    transformer, text_encoder, tokenizer, x0: torch.Tensor, prompts: Sequence[str], generator: torch.Generator
) -> torch.Tensor:
    """One flow-matching loss, in the pipeline's conventions (see the module docstring)."""
    u = torch.rand(x0.shape[0], generator=generator)
    sigma = 3.0 * u / (1.0 + 2.0 * u)  # the scheduler's shift=3 emphasis on high noise
    noise = torch.randn(x0.shape, generator=generator)
    s = sigma.view(-1, 1, 1, 1)
    xt = (1 - s) * x0 + s * noise
    caps = encode_prompts(tokenizer, text_encoder, prompts)
    out = transformer([x.unsqueeze(1) for x in xt], 1 - sigma, caps, return_dict=False)[0]
    pred = torch.stack([o.squeeze(1) for o in out])
    return F.mse_loss(pred, x0 - noise)


def _cosine(step: int, total: int, warmup: int = 50) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup)))) * 0.95 + 0.05


def train_base(
    transformer,
    text_encoder,
    tokenizer,
    latents: torch.Tensor,
    prompts: Sequence[str],
    *,
    steps: int,
    batch: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    ema_decay: float = 0.998,
    progress: Progress | None = None,
):
    """Train transformer and text encoder jointly; returns their EMA copies (what ships).

    Args:
        latents: scaled latents of the training images, one per prompt.
    """
    gen = torch.Generator().manual_seed(seed)
    params = list(transformer.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.99))
    ema_tr, ema_te = copy.deepcopy(transformer).eval(), copy.deepcopy(text_encoder).eval()
    ema_params = list(ema_tr.parameters()) + list(ema_te.parameters())
    transformer.train()
    text_encoder.train()
    for step in range(steps):
        idx = torch.randint(0, len(prompts), (batch,), generator=gen)
        x0 = latents[idx]
        loss = flow_loss(transformer, text_encoder, tokenizer, x0, [prompts[i] for i in idx.tolist()], gen)
        for group in opt.param_groups:
            group["lr"] = lr * _cosine(step, steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(ema_decay, (step + 1) / (step + 10))
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        if progress:
            progress(step, {"loss": loss.item()})
    return ema_tr, ema_te


def train_lora(
    transformer,
    text_encoder,
    tokenizer,
    latents: torch.Tensor,
    prompts: Sequence[str],
    *,
    epochs: int,
    save_at: Sequence[int],
    save: Callable[[int, int, dict[str, torch.Tensor]], None],
    rank: int = 8,
    batch: int = 16,
    lr: float = 2e-3,
    warmup_epochs: int = 0,
    seed: int = 0,
    progress: Progress | None = None,
) -> None:
    """Train a PEFT LoRA on the transformer; ``save(epoch, step, state)`` at each epoch in ``save_at``.

    Trains on a copy of the transformer; the text encoder is frozen. The learning rate rises
    linearly over ``warmup_epochs``, then stays constant.
    """
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        init_lora_weights="gaussian",
        target_modules=["to_q", "to_k", "to_v", "to_out.0", "w1", "w2", "w3"],
    )
    model = inject_adapter_in_model(config, copy.deepcopy(transformer), adapter_name="default")  # base untouched
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    text_encoder.requires_grad_(False)
    per_epoch = max(1, len(prompts) // batch)
    step = 0
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(prompts), generator=gen)
        for b in range(per_epoch):
            idx = order[b * batch : (b + 1) * batch]
            x0 = latents[idx]
            loss = flow_loss(model, text_encoder, tokenizer, x0, [prompts[i] for i in idx.tolist()], gen)
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / max(1, warmup_epochs * per_epoch))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        if progress:
            progress(epoch, {"loss": loss.item()})
        if epoch in save_at:
            state = get_peft_model_state_dict(model, adapter_name="default")
            save(epoch, step, {k: v.detach().clone() for k, v in state.items()})
