"""Bench configs: which base model to load, where, and the render defaults.

Configs are TOML files in ``configs/`` (data, never executed). Relative paths in a
config are resolved against the folder that holds the config file, so a config
can be used from any working directory.
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .jsonio import JsonError, read_regular
from .limits import LimitError, check_guidance, check_prompt, check_seed, check_side, check_steps, read_prompts_file

__all__ = ["DATA_ROOT", "BenchConfig", "ConfigError", "default_config_path", "load_config", "read_prompts"]

REPO_ROOT = Path(__file__).resolve().parents[2]  # zbench/engine/config.py -> the repository


def _data_root() -> Path:
    """Where the page's script (app.py) and the embedded demo (configs/, models/, loras/) are: the repository in
    a checkout or an editable install, else ``<prefix>/share/zbench`` of the prefix zbench was installed into
    from a wheel (a venv, ``--user``, ``--prefix``: the prefix is a few folders above the package)."""
    if (REPO_ROOT / "configs" / "demo.toml").is_file():
        return REPO_ROOT
    here = Path(__file__).resolve()
    for prefix in (*here.parents[2:7], Path(sys.prefix), Path(sys.base_prefix)):
        shared = prefix / "share" / "zbench"
        if (shared / "configs" / "demo.toml").is_file():
            return shared
    return REPO_ROOT


DATA_ROOT = _data_root()
MAX_CONFIG_BYTES = 2**20  # a config is a few hundred bytes


class ConfigError(ValueError):
    """A config file is missing, malformed or names an unknown setting."""


def read_prompts(path: Path, *, source: Path | None = None, key: str = "prompts_file") -> list[str]:
    """A prompt set: one prompt per line, blank lines and "#" comments skipped (``limits.read_prompts_file``: a
    regular text file of bounded size, each prompt checked).

    Raises:
        ConfigError: the file is missing, not a regular file, too big, unreadable, holds a bad prompt or none
            (the message names ``source``, the file that names it, and the key).
    """
    try:
        return read_prompts_file(path, key)
    except LimitError as err:
        raise ConfigError(f"{source}: {err}" if source is not None else str(err)) from None


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
    # Where the text encoder lives (offload = "none" only): "gpu" keeps it on the render device;
    # "offload-after-encode" brings it there to encode a grid's prompts, then back to the CPU (the
    # transformer and VAE stay resident, so Z-Image-Turbo fits 16 GB without per-render offload);
    # "cpu" encodes on the CPU. "auto": offload-after-encode on CUDA, else gpu.
    text_encoder: str = "auto"
    # How to get the model when it is missing, shown as the fix in that error (e.g. the demo's
    # build command); empty: the error suggests downloading repo_id into model_path.
    missing_hint: str = ""
    lora_dir: Path | None = None
    prompt: str = ""
    # A prompt set: a text file, one prompt per line (blank lines and "#" comments skipped); the page
    # and the CLI use it when no prompt is given.
    prompts_file: Path | None = None
    negative: str = ""
    seed: int = 42
    steps: int = 8
    guidance: float = 0.0
    width: int = 1024
    height: int = 1024
    # [render] compile: "true" compiles the denoiser once per base (``compiled.py``), "false" keeps it eager, "auto"
    # compiles on CUDA only (on a CPU it does not pay: benchmarks/RESULTS.md). TOML takes true, false or "auto".
    compile: str = "auto"
    # Bytes of converted LoRA tensors kept in RAM so revisiting a checkpoint is a plain copy.
    swap_cache_mb: int = 2048
    # [signals]: what zbench suggest (and the page) render and measure per checkpoint. Seeds as on the page
    # ("1-4"): diversity across seeds needs two or more. Prompts: a prompt set file (default: the config's).
    signal_seeds: str = "1-4"
    signal_prompts_file: Path | None = None
    signal_quality: bool = True  # BRISQUE no-reference quality
    # A CLIP model for prompt adherence: a local folder, or a hub id already in the local cache (never downloaded).
    signal_clip: str = ""
    signal_dataset: Path | None = None  # the training images, for likeness
    signal_scorers: tuple[str, ...] = ()  # "module:function" scorers of the user's own
    shortlist_size: int = 6  # blind votes are drawn among at most this many checkpoints
    source: Path | None = field(default=None, compare=False)

    def prompts(self) -> list[str]:
        """The config's prompts: its prompt set file when it names one, else its one prompt.

        Raises:
            ConfigError: the prompt set file is missing, unreadable or holds no prompt.
        """
        if self.prompts_file is None:
            return [self.prompt]
        return read_prompts(self.prompts_file, source=self.source)

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
        "text_encoder": "text_encoder",
        "missing_hint": "missing_hint",
    },
    "loras": {"dir": "lora_dir"},
    "render": {
        "prompt": "prompt",
        "prompts_file": "prompts_file",
        "negative": "negative",
        "seed": "seed",
        "steps": "steps",
        "guidance": "guidance",
        "width": "width",
        "height": "height",
        "compile": "compile",
    },
    "cache": {"swap_cache_mb": "swap_cache_mb"},
    "signals": {
        "seeds": "signal_seeds",
        "prompts_file": "signal_prompts_file",
        "quality": "signal_quality",
        "clip": "signal_clip",
        "dataset": "signal_dataset",
        "scorers": "signal_scorers",
        "shortlist": "shortlist_size",
    },
}
_CHOICES = {
    "device": ("auto", "cpu", "cuda", "mps"),
    "dtype": ("auto", "float32", "bfloat16", "float16"),
    "offload": ("none", "model", "sequential"),
    "text_encoder": ("auto", "gpu", "cpu", "offload-after-encode"),
}


def default_config_path() -> Path:
    """The config the app and the CLI open when none is given: the embedded demo."""
    return DATA_ROOT / "configs" / "demo.toml"


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
    try:
        data = tomllib.loads(read_regular(path, max_bytes=MAX_CONFIG_BYTES, what="config file").decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pick one of {sorted(_available(path))}") from None
    except JsonError as err:
        raise ConfigError(str(err)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be read ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err

    values: dict[str, object] = {"source": path}
    name = data.pop("name", path.stem)
    if not isinstance(name, str):
        raise ConfigError(f"{path}: name should be text, got {name!r}")
    values["name"] = name
    for section, table in data.items():
        if section not in _SECTIONS or not isinstance(table, dict):
            raise ConfigError(f"{path}: unknown section [{section}]; expected one of {sorted(_SECTIONS)}")
        for key, value in table.items():
            if key not in _SECTIONS[section]:
                raise ConfigError(
                    f"{path}: unknown setting {section}.{key}; [{section}] takes {sorted(_SECTIONS[section])}"
                )
            field_name = _SECTIONS[section][key]
            values[field_name] = _typed(path, f"{section}.{key}", value, _TYPES[field_name])

    for key in ("model_path", "lora_dir", "prompts_file", "signal_prompts_file", "signal_dataset"):
        if values.get(key) is not None:
            values[key] = (path.parent / Path(str(values[key])).expanduser()).resolve()
    for key, allowed in _CHOICES.items():
        if key in values and values[key] not in allowed:
            raise ConfigError(f"{path}: {key} should be one of {allowed}, got {values[key]!r}")
    if values.get("text_encoder", "auto") != "auto" and values.get("offload", "none") != "none":
        raise ConfigError(
            f'{path}: text_encoder = {values["text_encoder"]!r} needs offload = "none" (the offload modes already '
            "move every component, the text encoder included); remove one of the two"
        )
    if values.get("model_path") is None and values.get("repo_id") is None:
        raise ConfigError(f"{path}: [model] needs `path` (a local diffusers folder) or `repo_id`")
    clip = values.get("signal_clip")
    if clip and (clip.startswith((".", "~")) or ("/" in clip and (path.parent / clip).expanduser().exists())):
        values["signal_clip"] = str((path.parent / Path(clip).expanduser()).resolve())  # a folder beside the config
    if "shortlist_size" in values and not 2 <= values["shortlist_size"] <= 12:
        raise ConfigError(f"{path}: signals.shortlist should be 2 to 12 checkpoints, got {values['shortlist_size']}")
    if values.get("swap_cache_mb", 0) < 0:
        raise ConfigError(f"{path}: cache.swap_cache_mb should be at least 0, got {values['swap_cache_mb']}")
    checks = {"steps": check_steps, "guidance": check_guidance, "seed": check_seed, "width": check_side,
              "height": check_side, "prompt": check_prompt, "negative": check_prompt}  # fmt: skip
    for key, check in checks.items():
        if key in values:
            try:
                values[key] = (check(values[key], f"render.{key}", empty=True) if check is check_prompt
                               else check(values[key], f"render.{key}"))  # fmt: skip
            except LimitError as err:
                raise ConfigError(f"{path}: {err}") from None
    return BenchConfig(**values)


# The type each setting must have in TOML ("number" takes integers and floats).
_TYPES = {
    "model_path": str,
    "repo_id": str,
    "pipeline": str,
    "device": str,
    "dtype": str,
    "offload": str,
    "vae_tiling": bool,
    "text_encoder": str,
    "missing_hint": str,
    "lora_dir": str,
    "prompt": str,
    "prompts_file": str,
    "negative": str,
    "seed": int,
    "steps": int,
    "guidance": "number",
    "width": int,
    "height": int,
    "compile": "switch",
    "swap_cache_mb": int,
    "signal_seeds": "seeds",
    "signal_prompts_file": str,
    "signal_quality": bool,
    "signal_clip": str,
    "signal_dataset": str,
    "signal_scorers": "names",
    "shortlist_size": int,
}


def _typed(path: Path, key: str, value: object, kind: type | str) -> object:
    """``value`` if it has the setting's type (a bool is not a number), else a ConfigError naming file and key."""
    if kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind == "names":  # a list of texts
        ok = isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)
        value = tuple(v.strip() for v in value) if ok else value
    elif kind == "switch":  # true, false or "auto"
        ok = isinstance(value, bool) or value == "auto"
        value = str(value).lower() if ok else value
    elif kind == "seeds":  # "1-4" as on the page, or a list of whole numbers
        ok = isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        )
        value = ", ".join(str(v) for v in value) if ok and isinstance(value, list) else value
    else:
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        want = {
            "number": "a number",
            str: "text in quotes",
            bool: "true or false",
            int: "a whole number",
            "names": 'a list of texts, e.g. ["mypkg.faces:identity"]',
            "seeds": 'seeds as text ("1-4") or a list of whole numbers',
            "switch": 'true, false or "auto"',
        }[kind]
        raise ConfigError(f"{path}: {key} should be {want}, got {value!r} ({type(value).__name__})")
    return value


def _available(path: Path) -> list[str]:
    folder = path.parent if path.parent.is_dir() else DATA_ROOT / "configs"
    return [p.name for p in folder.glob("*.toml")]
