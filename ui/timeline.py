"""The Timeline tab: one row (or one zoom region of it) epoch by epoch, in a player.

The player is a custom component (Streamlit Components v2; ``zbench/review/web/timeline.js``) that runs in the
browser: play and pause, a speed, frame by frame, a slider over the checkpoints labelled by epoch, and the cell
at its native resolution times a whole factor. Playing, stepping and the speed or size cost the server nothing.
Python sends each frame's label and image URL: the grid's own lossless PNGs (encoded once for the grid, cached
by the browser) or, for a zoom region, PNG crops of them. The tab is a fragment: another row or region reruns
only the tab.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import streamlit as st

import zbench

from .gridview import WEB, image_url
from .request import GridPlan

PLAYER = st.components.v2.component(
    "zbench.timeline",
    css=(WEB / "timeline.css").read_text(encoding="utf-8"),
    js=(WEB / "timeline.js").read_text(encoding="utf-8"),
)
PLAYER_KEY = "timeline_player"
# Crops for zoom regions, by (source image, region): the same crop object again, so its PNG is encoded once. The
# source is held weakly (a grid no longer shown is not kept alive for its crops); newest last.
_CROPS: OrderedDict[tuple[int, tuple[int, int, int, int]], tuple[weakref.ref, object]] = OrderedDict()
_CROPS_PIXELS = 32 * 2**20  # kept crops' pixels in all (about 100 MB as RGB)
_CROPS_LOCK = threading.Lock()


@st.fragment
def timeline_tab(plan: GridPlan, results: list[zbench.CellResult], zooms: list[zbench.ZoomSpec]) -> None:
    """Pick a row and a region; the player shows them checkpoint by checkpoint in training order."""
    shown = st.session_state.get("grid")
    if shown is not None and shown[0] == plan.request:  # a rerun of the tab alone: the grid's latest cells
        results = shown[1]
    if not any(r.image is not None for r in results):
        st.info("Nothing rendered yet to play.")
        return
    request = plan.request
    labels = [
        row.label(prompts=len(request.prompts), seeds=len(request.seeds), scales=len(request.scales))
        for row in plan.rows
    ]
    left, right = st.columns(2)
    row = left.selectbox("Row", range(len(plan.rows)), format_func=lambda r: labels[r], key="timeline_row")
    regions = {"whole image": None, **{f"zoom: {z.box.name}": z for z in zooms}}
    region = right.selectbox("Region", list(regions), key="timeline_region")
    settings = request.settings
    data = player_data(results, row, regions[region], image_size=(settings.width, settings.height))
    PLAYER(key=PLAYER_KEY, data=data, height="content")
    st.caption(
        "Played epoch by epoch: the base first, then every checkpoint in training order; the base and the last "
        "are held. Each image pixel is shown as a whole number of screen pixels."
    )


def player_data(
    results: list[zbench.CellResult], row: int, zoom: zbench.ZoomSpec | None, *, image_size: tuple[int, int]
) -> dict:
    """What the player shows: one frame per checkpoint of ``row`` (the base first, then training order), each with
    its label, file name and PNG URL (or why there is no image), and the frames' native size in pixels (the
    images', else ``image_size`` or its zoom region)."""
    columns: dict[int, zbench.Checkpoint | None] = {}
    for r in results:
        columns.setdefault(r.cell.col, r.cell.checkpoint)
    order = sorted(columns, key=lambda c: (columns[c] is not None, c))
    by_pos = {(r.cell.row, r.cell.col): r for r in results}
    frames, size = [], None
    for i, col in enumerate(order):
        ck, result = columns[col], by_pos.get((row, col))
        image = None if result is None else result.image
        if image is not None and zoom is not None:
            image = _crop(image, zoom.box)
        if image is not None:
            size = size or image.size
            src, error = image_url(image, f"zbench.timeline.{i}"), None
        elif result is None or result.status == "pending":
            src, error = None, "not rendered yet"
        else:
            src, error = None, f"{result.status}: {result.error or 'no image'}"
        frames.append(
            {
                "src": src,
                "error": error,
                "label": "base" if ck is None else ck.label,  # "epoch 20 · step 500", as the grid's columns
                "name": "LoRA off" if ck is None else ck.name,
                "hold": ck is None or i == len(order) - 1,  # the base and the last checkpoint stay longer
            }
        )
    if size is None:
        size = image_size if zoom is None else _region_size(zoom.box, image_size)
    width, height = size
    return {"frames": frames, "width": width, "height": height}


def _region_size(box: zbench.ZoomBox, image_size: tuple[int, int]) -> tuple[int, int]:
    left, top, right, bottom = box.pixels(*image_size)
    return right - left, bottom - top


def _crop(image, box: zbench.ZoomBox):
    """``box`` of ``image`` at native resolution, the same object for the same image and region."""
    pixels = box.pixels(*image.size)
    key = (id(image), pixels)
    with _CROPS_LOCK:
        hit = _CROPS.get(key)
        if hit is not None and hit[0]() is image:
            _CROPS.move_to_end(key)
            return hit[1]
    crop = image.crop(pixels)
    with _CROPS_LOCK:
        _CROPS[key] = (weakref.ref(image), crop)
        kept = sum(c.width * c.height for _, c in _CROPS.values())
        while kept > _CROPS_PIXELS and len(_CROPS) > 1:
            _, (_, old) = _CROPS.popitem(last=False)
            kept -= old.width * old.height
    return crop
