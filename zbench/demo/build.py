"""The embedded demo: build it (train base and LoRA run on CPU) and report what it learned.

``python -m zbench demo build`` writes ``models/zbench-demo`` (a small ZImagePipeline that
draws "a {color} {shape} on a {color} background") and ``loras/dreamy`` (a LoRA run that
learns a glow-and-particles style, then overcooks). ``--quick`` builds a tiny version in about
a minute, for tests. ``python -m zbench demo report`` measures it with :mod:`zbench.demo.metrics`.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

from ..engine.config import DATA_ROOT
from .shapes import Scene, all_scenes, draw, held_out
from .toy import kohya_metadata, save_lora

__all__ = ["DemoPlan", "build_demo", "eval_scenes"]

logger = logging.getLogger(__name__)

MODEL_DIR = DATA_ROOT / "models" / "zbench-demo"
LORA_DIR = DATA_ROOT / "loras" / "dreamy"
# The style is taught on a few scenes, all on black: trained long enough, the LoRA forgets
# other backgrounds and colors, which is what overcooking looks like in real runs.
STYLE_SCENES = [
    Scene("yellow", "circle", "black"),
    Scene("white", "square", "black"),
    Scene("orange", "triangle", "black"),
    Scene("blue", "circle", "black"),
    Scene("green", "triangle", "black"),
    Scene("purple", "square", "black"),
]


@dataclass(frozen=True)
class DemoPlan:
    """How long each stage trains.

    On 2 CPU cores the stages run at about 5.4, 3.3 and 1.9 steps/s (about 36 min in all); a build
    that shared the cores with a test run for its first quarter took 49 min.
    """

    vae_steps: int = 4000
    images_per_scene: int = 24
    base_steps: int = 4000
    base_batch: int = 32
    lora_epochs: int = 300
    lora_save_at: tuple[int, ...] = (5, 10, 20, 40, 60, 80, 100, 150, 200, 300)
    lora_images_per_scene: int = 8
    lora_lr: float = 2e-3
    # Epochs of linear learning-rate warm-up: the style then emerges over the first hundred epochs
    # (at full rate from the start it is all there by epoch 5) and full-rate training overcooks after.
    lora_warmup: int = 100
    seed: int = 0


QUICK = DemoPlan(
    vae_steps=10,
    images_per_scene=2,
    base_steps=20,
    base_batch=8,
    lora_epochs=12,
    lora_save_at=(2, 5, 12),
    lora_images_per_scene=2,
    lora_warmup=2,
)


def _bar(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=quiet, leave=True)


def _ticker(bar):
    """A training progress callback that advances a tqdm bar and shows the loss."""

    def tick(_step: int, metrics: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.4f}")

    return tick


def build_demo(
    models_dir: str | Path | None = None,
    loras_dir: str | Path | None = None,
    *,
    plan: DemoPlan = DemoPlan(),
    quiet: bool = False,
    lora_only: bool = False,
) -> tuple[Path, Path]:
    """Train and write the embedded demo: base pipeline, then the LoRA run on it.

    Args:
        lora_only: keep the base already in ``models_dir`` and retrain only the LoRA run. The
            LoRA stage seeds its own generators, so this gives the same files as a full build.

    Returns:
        (the base folder, the LoRA run folder).
    """
    from diffusers import ZImagePipeline

    models_dir, loras_dir = Path(models_dir or MODEL_DIR), Path(loras_dir or LORA_DIR)
    started = time.perf_counter()
    if lora_only:
        pipe = ZImagePipeline.from_pretrained(str(models_dir))
    else:
        pipe = _build_base(models_dir, plan, quiet)
    _build_lora_run(pipe, loras_dir, plan, quiet)
    logger.info("demo built in %.0f s", time.perf_counter() - started)
    return models_dir, loras_dir


def _build_base(models_dir: Path, plan: DemoPlan, quiet: bool):
    """Autoencoder, then transformer and text encoder; saved as a ZImagePipeline."""
    import torch
    from diffusers import ZImagePipeline

    from . import train as T

    torch.manual_seed(plan.seed)
    rng = random.Random(plan.seed)
    started = time.perf_counter()
    vae, text_encoder, tokenizer, transformer, scheduler = T.build_components(plan.seed)
    hold = set(held_out())
    train = [s for s in all_scenes() if s not in hold]

    with _bar(plan.vae_steps, "1/3 autoencoder", quiet) as bar:
        T.train_vae(
            vae,
            train,
            steps=plan.vae_steps,
            seed=plan.seed,
            progress=_ticker(bar),
        )
    scenes = [s for s in train for _ in range(plan.images_per_scene)]
    latents = T.encode_latents(vae, [draw(s, rng) for s in scenes])
    T.set_latent_scale(vae, latents)
    shift, scale = vae.config.shift_factor, vae.config.scaling_factor
    latents = (latents - shift) * scale

    with _bar(plan.base_steps, "2/3 base model", quiet) as bar:
        transformer, text_encoder = T.train_base(
            transformer,
            text_encoder,
            tokenizer,
            latents,
            [s.prompt for s in scenes],
            steps=plan.base_steps,
            batch=plan.base_batch,
            seed=plan.seed,
            progress=_ticker(bar),
        )
    pipe = ZImagePipeline(
        scheduler=scheduler, vae=vae.eval(), text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer
    )
    pipe.save_pretrained(str(models_dir))
    _write_model_readme(models_dir, plan, time.perf_counter() - started)
    return pipe


def _build_lora_run(pipe, loras_dir: Path, plan: DemoPlan, quiet: bool) -> None:
    """The dreamy LoRA run on ``pipe``, from its own seeds (a full build and --lora-only agree)."""
    import torch

    from . import train as T

    torch.manual_seed(plan.seed + 1)  # the adapters' initial weights
    rng = random.Random(plan.seed + 1)
    vae = pipe.vae
    shift, scale = vae.config.shift_factor, vae.config.scaling_factor
    style = [s for s in STYLE_SCENES for _ in range(plan.lora_images_per_scene)]
    images = [draw(s, rng, style=1.0) for s in style]
    style_latents = (T.encode_latents(vae, images) - shift) * scale
    write_dataset(loras_dir / "dataset", style, images)
    loras_dir.mkdir(parents=True, exist_ok=True)
    for old in loras_dir.glob("dreamy_*.safetensors"):
        old.unlink()
    rank, batch = 8, 16

    def save(epoch: int, step: int, state):
        meta = kohya_metadata(epoch=epoch, steps=step, rank=rank, alpha=rank, name="dreamy")
        meta |= {
            "ss_num_train_images": str(len(style)),
            "ss_learning_rate": str(plan.lora_lr),
            "ss_lr_warmup_steps": str(plan.lora_warmup * max(1, len(style) // batch)),
            "ss_training_comment": "zbench demo: glow and particles, trained on 6 scenes on black",
        }
        save_lora(loras_dir / f"dreamy_{epoch}.safetensors", state, fmt="diffusers", metadata=meta)

    with _bar(plan.lora_epochs, "3/3 LoRA run", quiet) as bar:
        T.train_lora(
            pipe.transformer,
            pipe.text_encoder,
            pipe.tokenizer,
            style_latents,
            [s.prompt for s in style],
            epochs=plan.lora_epochs,
            save_at=plan.lora_save_at,
            save=save,
            rank=rank,
            batch=batch,
            lr=plan.lora_lr,
            warmup_epochs=plan.lora_warmup,
            seed=plan.seed + 1,
            progress=_ticker(bar),
        )
    (loras_dir / "README.md").write_text(
        "# dreamy\n\nThe embedded demo's LoRA run: a glow-and-particles style taught on six scenes on black, "
        f"saved at epochs {', '.join(map(str, plan.lora_save_at))}. Built by `python -m zbench demo build`; "
        "measured by `python -m zbench demo report` (see models/zbench-demo/README.md).\n"
    )


def write_dataset(folder: Path, scenes: list[Scene], images: list) -> None:
    """The LoRA run's training images, as a trainer keeps them beside a run (``[signals] dataset`` in
    configs/demo.toml points here, for the likeness signal): ``NN_<prompt>.png`` and the prompt in ``NN_<...>.txt``."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*"):
        old.unlink()
    for i, (scene, image) in enumerate(zip(scenes, images, strict=True)):
        stem = f"{i:02d}_{scene.prompt.replace(' ', '_')}"
        image.save(folder / f"{stem}.png", optimize=True)
        (folder / f"{stem}.txt").write_text(scene.prompt + "\n", encoding="utf-8")


def eval_scenes(count_seen: int = 16) -> tuple[list[Scene], list[Scene]]:
    """(held-out scenes, an equal-sized fixed sample of seen scenes) for adherence tables."""
    hold = held_out()
    seen = [s for s in all_scenes() if s not in set(hold)]
    return hold, random.Random(3).sample(seen, count_seen)


def _write_model_readme(models_dir: Path, plan: DemoPlan, seconds: float) -> None:
    hold = ", ".join(s.prompt.removeprefix("a ") for s in held_out())
    (models_dir / "README.md").write_text(
        "# zbench-demo\n\n"
        "A small `ZImagePipeline` (real diffusers classes: ZImageTransformer2DModel, AutoencoderKL, a Qwen3Model "
        "text encoder, a byte-level Qwen2 tokenizer with chat template, FlowMatchEulerDiscreteScheduler), "
        "trained on CPU by `python -m zbench demo build` on shapes it draws itself.\n\n"
        "What it understands: prompts of the form `a {color} {shape} on a {color} background`, colors red, "
        "orange, yellow, green, blue, purple, white, black; shapes circle, square, triangle. 128x128, 8 steps, "
        "guidance 0 (like Z-Image-Turbo). Anything else gives an arbitrary scene.\n\n"
        f"Held out of training (never seen as a combination): {hold}.\n\n"
        f"Build plan: {plan}; autoencoder and base built in {seconds / 60:.1f} min "
        "(the LoRA run takes about 3 more).\n\n"
        "## Report\n\nRun `python -m zbench demo report` to measure it; its output is pasted below.\n"
    )
