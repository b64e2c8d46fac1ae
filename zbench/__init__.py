"""zbench: compare the checkpoints of one LoRA training run side by side."""

from .engine.cache import ImageCache, cell_key, default_cache_dir, get_image_cache
from .engine.checkpoints import Checkpoint, scan_run
from .engine.compiled import compile_denoiser, compile_notice
from .engine.config import BenchConfig, ConfigError, default_config_path, load_config
from .engine.header import read_header
from .engine.hotswap import AdapterSwapper, get_swapper
from .engine.limits import MAX_GUIDANCE, MAX_SIDE, MAX_STEPS, MIN_SIDE, LimitError
from .engine.lora_file import LoraError
from .engine.names import parse_name
from .engine.pipeline import Base, BaseModelError, get_base, load_base, resolve_device, resolve_dtype
from .engine.plan import Cell, CellResult, RenderSettings, Row, plan_grid
from .engine.render import RenderError, measure_grid, render_cells, render_image
from .engine.runs import describe_folder, find_runs, select_checkpoints
from .review.decision import DecisionStore, default_user
from .review.export import PRESETS, export_decision, export_sheet, file_sizes, write_grid
from .review.grid import (
    GridRequest,
    checkpoint_table,
    image_metrics,
    parse_prompts,
    parse_scales,
    parse_seeds,
    weight_metrics,
)
from .review.metrics import image_distance, lora_delta_norm, lora_weight_change
from .review.page_state import load_page_state, save_page_state
from .review.ranking import RATING_LOGIT, RATING_VOTES, informative_pair, next_blind_pair, rank_votes, vote_summary
from .review.recommend import Recommendation, recommend
from .review.records import DecisionError, Review, Vote
from .review.scorers import ScorerError, load_scorer, quality_score, ssim_distance
from .review.sheet import SheetInfo, compose_pages, compose_sheet
from .review.shortlist import Shortlist, edited_shortlist, follow_leader, make_room, suggest_shortlist
from .review.signals import Signal, SignalCache, SignalReport, Signals, compute_signals
from .review.suggest import Decision, decide, short_label, signal_cache, signal_grid
from .review.timeline import row_timeline, webp_bytes
from .review.zoom import ZoomBox, ZoomSpec, crop_zoom, draw_boxes, zoom_strip
from .sweep import StoredGrid, SweepError, SweepSpec, SweepStore, SweepSummary, load_sweep, open_stored, run_sweep

__all__ = [
    "MAX_GUIDANCE",
    "MAX_SIDE",
    "MAX_STEPS",
    "MIN_SIDE",
    "PRESETS",
    "RATING_LOGIT",
    "RATING_VOTES",
    "AdapterSwapper",
    "Base",
    "BaseModelError",
    "BenchConfig",
    "Cell",
    "CellResult",
    "Checkpoint",
    "ConfigError",
    "Decision",
    "DecisionError",
    "DecisionStore",
    "GridRequest",
    "ImageCache",
    "LimitError",
    "LoraError",
    "Recommendation",
    "RenderError",
    "RenderSettings",
    "Review",
    "Row",
    "ScorerError",
    "SheetInfo",
    "Shortlist",
    "Signal",
    "SignalCache",
    "SignalReport",
    "Signals",
    "StoredGrid",
    "SweepError",
    "SweepSpec",
    "SweepStore",
    "SweepSummary",
    "Vote",
    "ZoomBox",
    "ZoomSpec",
    "cell_key",
    "checkpoint_table",
    "compile_denoiser",
    "compile_notice",
    "compose_pages",
    "compose_sheet",
    "compute_signals",
    "crop_zoom",
    "decide",
    "default_cache_dir",
    "default_config_path",
    "default_user",
    "describe_folder",
    "draw_boxes",
    "edited_shortlist",
    "export_decision",
    "export_sheet",
    "file_sizes",
    "find_runs",
    "follow_leader",
    "get_base",
    "get_image_cache",
    "get_swapper",
    "image_distance",
    "image_metrics",
    "informative_pair",
    "load_base",
    "load_config",
    "load_page_state",
    "load_scorer",
    "load_sweep",
    "lora_delta_norm",
    "lora_weight_change",
    "make_room",
    "measure_grid",
    "next_blind_pair",
    "open_stored",
    "parse_name",
    "parse_prompts",
    "parse_scales",
    "parse_seeds",
    "plan_grid",
    "quality_score",
    "rank_votes",
    "read_header",
    "recommend",
    "render_cells",
    "render_image",
    "resolve_device",
    "resolve_dtype",
    "row_timeline",
    "run_sweep",
    "save_page_state",
    "scan_run",
    "select_checkpoints",
    "short_label",
    "signal_cache",
    "signal_grid",
    "ssim_distance",
    "suggest_shortlist",
    "vote_summary",
    "webp_bytes",
    "weight_metrics",
    "write_grid",
    "zoom_strip",
]
