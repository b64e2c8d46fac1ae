"""The bench page's settings for one run, kept beside the run so a reload or a restart finds them again.

``<run>/.zbench/page.json`` holds what the user asked the grid to show (prompts, negative, seeds, scales,
size, steps, guidance, the base column, the chosen checkpoints), the kept zoom panels and the grid's view (cell
size, transpose, zoom). It is written atomically when the user renders, changes a panel or the view, and read
when the run is opened. A field that is
missing, of the wrong type or outside the rules every way in shares (``engine.limits``: steps, sizes, guidance,
prompts, seeds, scales) is left out and the page's default stands in; nothing is ever fatal here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

from ..engine import jsonio
from ..engine.limits import check_guidance, check_prompt, check_side, check_steps
from .grid import parse_prompts, parse_scales, parse_seeds
from .records import read_json, write_atomic
from .zoom import ZoomSpec

__all__ = ["PAGE_FIELDS", "load_page_state", "save_page_state"]

logger = logging.getLogger(__name__)

FILE = Path(".zbench") / "page.json"
# Each field and the type it must have; "zooms" are ZoomSpec dicts, "checkpoints" file names, "view" the grid's
# view as its component reports it (see ``_view``).
PAGE_FIELDS: dict[str, type] = {
    "prompts": str,
    "negative": str,
    "seeds": str,
    "scales": str,
    "steps": int,
    "guidance": float,
    "width": int,
    "height": int,
    "include_base": bool,
    "checkpoints": list,
    "zooms": list,
    "view": dict,
}

VIEW_CELL = (40, 512)  # a chosen cell width in px; "fit" fits every column in the width
VIEW_ZOOM = (1.0, 16.0)


def _view(value: Mapping) -> dict:
    """The grid's view with only what is well formed: ``cell`` ("fit" or an int px in VIEW_CELL), ``transpose``
    (bool), ``zoom`` (in VIEW_ZOOM) and ``cx``, ``cy`` (the zoom's centre, fractions 0..1 of the image). Any other
    key or value is dropped. Raises ValueError when nothing is left."""

    def number(v, lo: float, hi: float) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi

    view: dict[str, object] = {}
    cell = value.get("cell")
    if cell == "fit" or (isinstance(cell, int) and number(cell, *VIEW_CELL)):
        view["cell"] = cell
    if isinstance(value.get("transpose"), bool):
        view["transpose"] = value["transpose"]
    if number(value.get("zoom"), *VIEW_ZOOM):
        view["zoom"] = float(value["zoom"])
    for key in ("cx", "cy"):
        if number(value.get(key), 0.0, 1.0):
            view[key] = float(value[key])
    if not view:
        raise ValueError(f"a view should have cell, transpose, zoom, cx or cy, got {sorted(map(str, value))[:5]}")
    return view


# What each restored value must satisfy to be used (the page's text fields are checked as the page parses them).
_RULES = {
    "steps": check_steps,
    "guidance": check_guidance,
    "width": lambda v: check_side(v, "width"),
    "height": lambda v: check_side(v, "height"),
    "negative": lambda v: check_prompt(v, "negative", empty=True),
    "prompts": lambda v: (parse_prompts(v), v)[1],
    "seeds": lambda v: (parse_seeds(v), v)[1],
    "scales": lambda v: (parse_scales(v), v)[1],
    "view": _view,
}


def load_page_state(run_dir: str | Path) -> dict:
    """The saved settings of a run's page: only fields that are present and well typed."""
    path = Path(run_dir).expanduser() / FILE
    try:
        data = read_json(path)
    except Exception as err:  # unreadable or not JSON: start from the defaults, keep the file
        logger.warning("ignoring %s: %s", path, err)
        return {}
    if not isinstance(data, dict):
        return {}
    state = {}
    for key, kind in PAGE_FIELDS.items():
        value = data.get(key)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            state[key] = value
    for key, check in _RULES.items():
        if key in state:
            try:
                state[key] = check(state[key])
            except ValueError as err:  # LimitError and the parsers' messages
                logger.warning("ignoring %s in %s: %s", key, path, err)
                del state[key]
    if "checkpoints" in state:
        state["checkpoints"] = [n for n in state["checkpoints"] if isinstance(n, str)]
    if "zooms" in state:
        zooms = []
        for z in state["zooms"]:
            try:
                zooms.append(ZoomSpec.from_json(z))
            except (ValueError, TypeError, AttributeError):
                continue
        state["zooms"] = zooms
    return state


def save_page_state(run_dir: str | Path, state: Mapping[str, object]) -> bool:
    """Write the page's settings of a run (zoom panels as dicts). Returns False when the folder
    cannot be written (a read-only run still works; its settings just are not kept)."""
    data = {k: v for k, v in state.items() if k in PAGE_FIELDS}
    if "view" in data:  # reported by the browser: only what would be read back is written
        try:
            data["view"] = _view(data["view"])
        except (ValueError, AttributeError):
            del data["view"]
    if "zooms" in data:
        data["zooms"] = [z.to_json() if isinstance(z, ZoomSpec) else z for z in data["zooms"]]
    path = Path(run_dir).expanduser() / FILE
    try:
        write_atomic(path, jsonio.dumps(data, indent=2, ensure_ascii=False) + "\n")
    except OSError as err:
        logger.warning("could not save the page's settings to %s: %s", path, err)
        return False
    return True
