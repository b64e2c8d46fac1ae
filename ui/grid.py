"""The grid: Render and Stop, a placeholder per cell filled as cells finish, and a summary line."""

from __future__ import annotations

import time

import streamlit as st

import zbench

from .request import GridPlan
from .resources import image_cache
from .run import OpenRun
from .text import literal


def column_title(ck: zbench.Checkpoint | None) -> str:
    return "base (LoRA off)" if ck is None else ck.label


def show_cell(slot, result: zbench.CellResult) -> None:
    """Draw one grid cell (image, or its error) into a placeholder."""
    with slot.container():
        if result.image is not None:
            st.image(result.image, width="stretch")
            how = "from cache" if result.swap_path == "cache" else f"render {result.render_ms or 0:.0f} ms"
            if result.swap_ms is not None:
                how = f"swap {result.swap_ms:.1f} ms · {how}"
            st.caption(how)
        elif result.status == "error":
            st.error(literal(result.error))
        else:
            st.info(literal(result.error or result.status))


def controls(request: zbench.GridRequest):
    """Render and Stop buttons, and the slot beside them for progress.

    Returns:
        (cache_only, progress slot): cache_only is True after Stop, until Render is pressed
        (the page then shows what is drawn and draws nothing).
    """
    b1, b2, b3 = st.columns([1, 1, 6])
    render_clicked = b1.button("Render", type="primary")
    stop_clicked = b2.button("Stop")
    if stop_clicked:
        st.session_state["stopped"] = request
    if render_clicked:
        st.session_state.pop("stopped", None)
    return st.session_state.get("stopped") == request, b3.empty()


def draw_grid(opened: OpenRun, plan: GridPlan, *, cache_only: bool, progress_slot) -> list[zbench.CellResult]:
    """Lay out the grid's placeholders, render (or take from the cache) every cell into them, then sum up.

    Returns:
        One result per cell of ``plan``.
    """
    request, rows, cells = plan.request, plan.rows, plan.cells
    columns_of = {c.col: c.checkpoint for c in cells if c.row == 0}
    slots = {}
    header = st.columns([1] + [3] * len(columns_of))
    for col, ck in columns_of.items():
        header[col + 1].markdown(f"**{literal(column_title(ck))}**  \n{literal('base' if ck is None else ck.name)}")
    for r, row in enumerate(rows):
        line = st.columns([1] + [3] * len(columns_of))
        line[0].caption(
            literal(row.label(prompts=len(request.prompts), seeds=len(request.seeds), scales=len(request.scales)))
        )
        for col in columns_of:
            slots[(r, col)] = line[col + 1].empty()

    started = time.perf_counter()
    finished = [0]  # cells done, for the per-step progress line

    def on_cell(done: int, total: int, result: zbench.CellResult) -> None:
        finished[0] = done
        show_cell(slots[(result.cell.row, result.cell.col)], result)
        if result.swap_path != "cache":
            progress_slot.progress(done / total, text=f"rendered {done} of {total}")

    def on_step(cell: zbench.Cell, step: int, steps: int) -> None:
        # A page element written every step: Streamlit interrupts a run at its next element write,
        # so Stop (or any widget) takes effect within one denoising step, not after the cell.
        what = f"{literal(cell.name)}: step {step} of {steps}" if step else "waiting for another session's render"
        progress_slot.progress(finished[0] / len(cells), text=f"rendered {finished[0]} of {len(cells)} · {what}")

    with zbench.measure_grid(opened.base) as stats:
        results = zbench.render_cells(
            opened.base,
            cells,
            request.settings,
            target_rank=target_rank(opened.run),
            progress=on_cell,
            on_step=on_step,
            cache=image_cache(),
            cache_only=cache_only,
        )
    st.session_state["grid_stats"] = stats  # how this grid was drawn, for the exported manifest
    progress_slot.empty()
    pending = sum(r.status == "pending" for r in results)
    errors = sum(r.status == "error" for r in results)
    drawn = sum(r.image is not None and r.swap_path != "cache" for r in results)
    if pending:
        st.info(f"Stopped: {pending} cells not rendered. Press Render to finish the grid.")
    summary = f"{len(results)} cells · {drawn} rendered now in {time.perf_counter() - started:.1f} s"
    st.caption(summary + (f" · {errors} with errors" if errors else ""))
    return results


def target_rank(run: list[zbench.Checkpoint]) -> int:
    """The largest rank of the run's usable checkpoints: adapter layers are injected once at it."""
    return max([c.rank or 0 for c in run if c.error is None] or [0])
