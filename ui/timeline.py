"""The Timeline tab: one row (or one zoom region of it) epoch by epoch: scrub through it, or play it."""

from __future__ import annotations

from concurrent.futures import Future

import streamlit as st

import zbench

from .grid import keep_grid
from .request import GridPlan
from .resources import animation
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
        # Encoded once per server on a background thread (seconds at a real run's size; the grid's first row is
        # encoded as soon as the grid is drawn): the frames above show at once, the animation when it is ready.
        job = animation(frames)
        if job.done():
            _play(job)
        else:
            st.fragment(_wait_for, run_every=0.5)(job)


def _play(job: Future[str]) -> None:
    try:
        data = job.result()
    except Exception as err:  # the frames above still step through the checkpoints
        st.error(f"could not encode the animation: {literal(err)}")
        return
    st.html(f'<img src="data:image/webp;base64,{data}" style="max-width:100%;image-rendering:pixelated">')


def _wait_for(job: Future[str]) -> None:
    """Until the animation is encoded; then the page reruns once to show it (the grid keeps its cells)."""
    if not job.done():
        st.caption("preparing the animation…")
        return
    keep_grid()
    st.rerun(scope="app")
