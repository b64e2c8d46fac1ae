"""The Timeline tab: one row (or one zoom region of it) epoch by epoch: scrub through it, or play it."""

from __future__ import annotations

import base64

import streamlit as st

import zbench

from .request import GridPlan
from .text import literal


def timeline_tab(plan: GridPlan, results: list[zbench.CellResult], zooms: list[zbench.ZoomSpec]) -> None:
    """Pick a row and a region; a slider steps through the checkpoints in training order, the animation plays."""
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
    frames = zbench.row_timeline(results, plan.rows, plan.info, row, regions[region])
    step, play = st.columns(2)
    with step:
        index = st.select_slider(
            "Checkpoint", options=list(range(len(frames))), format_func=lambda i: f"{i + 1}", key="timeline_step"
        )
        st.image(frames[index][0], caption=literal(f"frame {index + 1} of {len(frames)}"))
    with play:
        st.caption("Played epoch by epoch (base and last frame held)")
        # Encoded once per row, region and set of images: reruns of the page reuse it.
        key = (row, region, tuple((r.cell.name, id(r.image)) for r in results if r.cell.row == row))
        if st.session_state.get("timeline_anim", (None,))[0] != key:
            st.session_state["timeline_anim"] = (key, base64.b64encode(zbench.webp_bytes(frames)).decode("ascii"))
        data = st.session_state["timeline_anim"][1]
        st.html(f'<img src="data:image/webp;base64,{data}" style="max-width:100%;image-rendering:pixelated">')
