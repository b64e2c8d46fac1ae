"""Bench configs: which base model to load, where, and the render defaults.

Configs are TOML files in ``configs/`` (data, never executed). Relative paths in a
config are resolved against the folder that holds the config file, so a config
can be used from any working directory.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BenchConfig", "ConfigError", "default_config_path", "load_config"]

REPO_ROOT = Path(__file__).resolve().parents[2]  # zbench/engine/config.py -> the repository


class ConfigError(ValueError):
    """A config file is missing, malformed or names an unknown setting."""


@dataclass(frozen=True)
class BenchConfig:
    """One base model and the render defaults that suit it."""

    name: str
    # A local diffusers folder (or a single .safetensors file). Tried first.
    model_path: Path | None = None
    # A hub repo id, used only when model_path does not exist (needs internet).
    repo_id: str | None = None
    # diffusers pipeline class name; "auto" lets DiffusionPipeline read model_index.json.
    pipeline: str = "auto"
    device: str = "auto"  # "auto" -> cuda when available, else cpu
    dtype: str = "auto"  # "auto" -> bfloat16 on cuda, float32 on cpu
    # "none" keeps everything on the device; the offload modes trade speed for VRAM.
    offload: str = "none"
    vae_tiling: bool = False
    # How to get the model when it is missing, shown as the fix in that error (e.g. the demo's
    # build command); empty: the error suggests downloading repo_id into model_path.
    missing_hint: str = ""
    lora_dir: Path | None = None
    prompt: str = ""
    negative: str = ""
    seed: int = 42
    steps: int = 8
    guidance: float = 0.0
    width: int = 1024
    height: int = 1024
    # Bytes of converted LoRA tensors kept in RAM so revisiting a checkpoint is a plain copy.
    swap_cache_mb: int = 2048
    source: Path | None = field(default=None, compare=False)

    @property
    def model_id(self) -> str:
        """A stable string naming the base model, for cache keys and sheet headers."""
        if self.model_path is not None and self.model_path.exists():
            return str(self.model_path)
        return self.repo_id or str(self.model_path)


_SECTIONS = {
    "model": {
        "path": "model_path",
        "repo_id": "repo_id",
        "pipeline": "pipeline",
        "device": "device",
        "dtype": "dtype",
        "offload": "offload",
        "vae_tiling": "vae_tiling",
        "missing_hint": "missing_hint",
    },
    "loras": {"dir": "lora_dir"},
    "render": {
        "prompt": "prompt",
        "negative": "negative",
        "seed": "seed",
        "steps": "steps",
        "guidance": "guidance",
        "width": "width",
        "height": "height",
    },
    "cache": {"swap_cache_mb": "swap_cache_mb"},
}
_CHOICES = {
    "device": ("auto", "cpu", "cuda", "mps"),
    "dtype": ("auto", "float32", "bfloat16", "float16"),
    "offload": ("none", "model", "sequential"),
}


def default_config_path() -> Path:
    """The config the app and the CLI open when none is given: the embedded demo."""
    return REPO_ROOT / "configs" / "demo.toml"


def load_config(path: str | Path | None = None) -> BenchConfig:
    """Read a bench config from a TOML file.

    Args:
        path: the TOML file; ``None`` means ``configs/demo.toml``.

    Returns:
        The parsed config, with relative paths resolved against the file's folder.

    Raises:
        ConfigError: the file is missing, not TOML, or has unknown or invalid settings.
    """
    path = Path(path) if path is not None else default_config_path()
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pick one of {sorted(_available(path))}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err

    values: dict[str, object] = {"name": data.pop("name", path.stem), "source": path}
    for section, table in data.items():
        if section not in _SECTIONS or not isinstance(table, dict):
            raise ConfigError(f"{path}: unknown section [{section}]; expected one of {sorted(_SECTIONS)}")
        for key, value in table.items():
            if key not in _SECTIONS[section]:
                raise ConfigError(
                    f"{path}: unknown setting {section}.{key}; [{section}] takes {sorted(_SECTIONS[section])}"
                )
            values[_SECTIONS[section][key]] = value

    for key in ("model_path", "lora_dir"):
        if values.get(key) is not None:
            values[key] = (path.parent / str(values[key])).resolve()
    for key, allowed in _CHOICES.items():
        if key in values and values[key] not in allowed:
            raise ConfigError(f"{path}: {key} should be one of {allowed}, got {values[key]!r}")
    if values.get("model_path") is None and values.get("repo_id") is None:
        raise ConfigError(f"{path}: [model] needs `path` (a local diffusers folder) or `repo_id`")
    for key in ("width", "height"):
        if key in values and int(values[key]) % 16:
            raise ConfigError(f"{path}: render.{key} should be a multiple of 16, got {values[key]}")
    for key in ("seed", "steps", "width", "height", "swap_cache_mb"):
        if key in values and not isinstance(values[key], int):
            raise ConfigError(f"{path}: {key} should be an integer, got {values[key]!r}")
    if "guidance" in values:
        values["guidance"] = float(values["guidance"])
    return BenchConfig(**values)


def _available(path: Path) -> list[str]:
    folder = path.parent if path.parent.is_dir() else REPO_ROOT / "configs"
    return [p.name for p in folder.glob("*.toml")]
