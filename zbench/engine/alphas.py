"""Where a LoRA's strength comes from, and which values are sane.

A LoRA changes a weight by ``alpha / r · B @ A``. Trainers store alpha in one of three places:
a per-module ``.alpha`` tensor (kohya sd-scripts, musubi-tuner, OneTrainer, SimpleTuner's
ComfyUI export), diffusers' ``lora_adapter_metadata`` header field (diffusers scripts,
SimpleTuner: ``lora_alpha``, ``alpha_pattern``, ``use_rslora``), or PEFT's
``adapter_config.json`` beside ``adapter_model.safetensors``. Without any of them alpha equals
the rank (ai-toolkit, DiffSynth-Studio). A zero, negative, NaN, infinite or absurd alpha is
refused here, before diffusers sees it: its converter loops forever on a negative alpha, and a
zero alpha silently renders the base model.
"""

from __future__ import annotations

import math
from pathlib import Path

from . import jsonio

__all__ = [
    "ADAPTER_CONFIG",
    "ALPHA_RATIO_LIMIT",
    "adapter_metadata",
    "alpha_problem",
    "configured_alpha",
    "read_adapter_config",
]

# alpha / r above this is no trainer's setting (common: 0.5-2; rsLoRA and "alpha = 2 r" stay far
# below); such a file is corrupt or hand-edited, and its weights would overflow half precision.
ALPHA_RATIO_LIMIT = 256.0
ADAPTER_CONFIG = "adapter_config.json"  # PEFT save_pretrained writes it beside adapter_model.safetensors


def alpha_problem(alpha: object, rank: int | None) -> str | None:
    """What is wrong with a LoRA alpha, or None when it is usable.

    Args:
        alpha: the value as read (a tensor's number, a metadata field).
        rank: the module's rank, when known, to bound alpha / rank.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, int | float):
        return f"alpha {alpha!r} is not a number"
    if math.isnan(alpha) or math.isinf(alpha):
        return f"alpha is {alpha}"
    if alpha <= 0:
        return f"alpha is {alpha:g}; it must be above 0 (0 turns the LoRA off, a negative one inverts it)"
    if rank and alpha / rank > ALPHA_RATIO_LIMIT:
        limit = f"{ALPHA_RATIO_LIMIT:g}"
        return f"alpha {alpha:g} is {alpha / rank:g} times the rank {rank} (no trainer saves more than {limit})"
    return None


def read_adapter_config(weights: Path) -> dict | None:
    """PEFT's ``adapter_config.json`` beside a ``adapter_model.safetensors``, or None when there is none.

    Raises:
        ValueError: the file exists but is not a JSON object, or its alphas are not usable.
    """
    path = weights.with_name(ADAPTER_CONFIG)
    if weights.name != "adapter_model.safetensors" or not path.is_file():
        return None
    try:
        config = jsonio.read_json(path, max_bytes=2**20)  # a PEFT config is ~1 kB; bounded like every file read back
    except (OSError, jsonio.JsonError) as err:
        raise ValueError(f"its {ADAPTER_CONFIG} cannot be read ({type(err).__name__}: {err})") from err
    if not isinstance(config, dict):
        raise ValueError(f"its {ADAPTER_CONFIG} is not a JSON object")
    _check_config(config, ADAPTER_CONFIG)
    return config


def _check_config(config: dict, where: str) -> None:
    """lora_alpha and every alpha_pattern value must be usable, at the ranks the config gives."""
    r = config.get("r")
    rank = r if isinstance(r, int) and not isinstance(r, bool) and r > 0 else None
    if "lora_alpha" in config:
        problem = alpha_problem(config["lora_alpha"], rank)
        if problem:
            raise ValueError(f"{where}: {problem}")
    patterns = config.get("alpha_pattern") or {}
    ranks = config.get("rank_pattern") or {}
    if not isinstance(patterns, dict) or not isinstance(ranks, dict):
        raise ValueError(f"{where}: alpha_pattern and rank_pattern must be maps of module names to numbers")
    for module, alpha in patterns.items():
        problem = alpha_problem(alpha, ranks.get(module, rank))
        if problem:
            raise ValueError(f"{where}: module {module!r}: {problem}")


def _header_config(file_metadata: dict[str, str]) -> dict | None:
    """diffusers' ``lora_adapter_metadata`` header field, parsed and checked for every component in it."""
    raw = file_metadata.get("lora_adapter_metadata")
    if not raw:
        return None
    try:
        meta = jsonio.parse_json(raw, where="its lora_adapter_metadata header field")
    except jsonio.JsonError as err:
        raise ValueError(str(err)) from err
    if not isinstance(meta, dict):
        raise ValueError("its lora_adapter_metadata header field is not a JSON object")
    # Keys are "<component>.<field>" ("transformer.lora_alpha"), or bare fields in older files.
    for key in [k for k in meta if k.endswith("lora_alpha")]:
        component = key[: -len("lora_alpha")]
        _check_config({k[len(component) :]: v for k, v in meta.items() if k.startswith(component)}, "its metadata")
    return meta


def configured_alpha(weights: Path, file_metadata: dict[str, str]) -> float | None:
    """lora_alpha as the file's config gives it (header field or adapter_config.json), or None.

    Raises:
        ValueError: the config is unreadable or its alphas are not usable.
    """
    config = _header_config(file_metadata) or read_adapter_config(weights) or {}
    alpha = next((v for k, v in config.items() if k.endswith("lora_alpha")), None)
    return float(alpha) if alpha is not None else None


def adapter_metadata(weights: Path, file_metadata: dict[str, str], prefix: str) -> dict | None:
    """The LoRA config diffusers should build the adapter from, as its ``metadata`` argument.

    diffusers reads it from the ``lora_adapter_metadata`` header field (keys prefixed with the
    denoiser's name: ``transformer.lora_alpha``); PEFT folders keep it in ``adapter_config.json``,
    which diffusers ignores (their LoRAs would render at alpha = r). Both come back here in the
    header's form.

    Returns:
        {"<prefix>.<LoraConfig field>": value}, or None when the file says nothing (alpha = r).

    Raises:
        ValueError: the metadata or config is not JSON, or its alphas are not usable.
    """
    meta = _header_config(file_metadata)
    if meta is not None:
        return meta
    config = read_adapter_config(weights)
    if config is None:
        return None
    from peft import LoraConfig  # the fields diffusers passes on to LoraConfig(**metadata)

    fields = set(LoraConfig.__dataclass_fields__) - {"peft_type", "task_type", "base_model_name_or_path", "revision"}
    return {f"{prefix}.{k}": v for k, v in config.items() if k in fields}
