"""zbench: compare the checkpoints of one LoRA training run side by side."""

from .checkpoints import Checkpoint, parse_name, read_header, scan_run
from .config import BenchConfig, ConfigError, default_config_path, load_config
from .hotswap import AdapterSwapper, LoraError, get_swapper
from .pipeline import Base, BaseModelError, get_base, load_base, resolve_device, resolve_dtype
from .render import Cell, CellResult, RenderError, RenderSettings, Row, plan_grid, render_cells, render_image

__all__ = [
    "AdapterSwapper",
    "Base",
    "BaseModelError",
    "BenchConfig",
    "Cell",
    "CellResult",
    "Checkpoint",
    "ConfigError",
    "LoraError",
    "RenderError",
    "RenderSettings",
    "Row",
    "default_config_path",
    "get_base",
    "get_swapper",
    "load_base",
    "load_config",
    "parse_name",
    "plan_grid",
    "read_header",
    "render_cells",
    "render_image",
    "resolve_device",
    "resolve_dtype",
    "scan_run",
]
