"""The Grid tab: Stop, the grid component filled as cells finish, the zoom panels and a summary line.

The grid lives in a fragment: drawing a box, removing or renaming a panel and rating from the large
view rerun only this part, from the image cache (nothing renders again). Events from the component
are applied in its callback, before the fragment reruns, so the rerun already shows them.
"""

from __future__ import annotations

import functools
import time

import streamlit as st

import zbench

from .gridview import grid_data, show_grid
from .request import GridPlan, _state, panels, save_settings
from .resources import image_cache
from .run import OpenRun
from .signals import decision
from .signals import strip as signal_strip
from .text import literal

GRID_KEY = "grid_view"  # the component's key; st.session_state["grid"] holds (request, results)
REDRAW_S = 1.5  # while cells render, the grid is redrawn at most this often (and when the first row is done)
REUSE = "grid_reuse"  # set by an event that changes no cell: the next grid run sends the same cells again
APPLIED = "grid_applied"  # ids of the component's events already applied (sent back so it stops resending)
APPLIED_KEPT = 200


def controls(request: zbench.GridRequest) -> bool:
    """The Stop button (Render is the sidebar's). Returns True when the grid should show only what is drawn."""
    if st.button("Stop", help="keep what is drawn; Render in the sidebar finishes the grid"):
        st.session_state["stopped"] = request
    return st.session_state.get("stopped") == request


def keep_grid() -> None:
    """A callback for changes that touch no cell (another tab opened): the next run sends the same cells."""
    st.session_state[REUSE] = True


def rerun_part() -> None:
    """Rerun the fragment this code runs in; in a full run of the page, the page, with the grid's cells kept."""
    try:
        st.rerun(scope="fragment")
    except st.errors.StreamlitAPIException:  # not a fragment rerun (e.g. a test driving the whole page)
        keep_grid()
        st.rerun()


def focus_column(data: dict, name: str | None) -> int | None:
    """The grid column of checkpoint ``name`` (the one a typed file path named), or None."""
    return next((i for i, c in enumerate(data["columns"]) if name is not None and c["checkpoint"] == name), None)


def target_rank(run: list[zbench.Checkpoint]) -> int:
    """The largest rank of the run's usable checkpoints: adapter layers are injected once at it."""
    return max([c.rank or 0 for c in run if c.error is None] or [0])


@st.fragment
def grid_section(opened: OpenRun, plan: GridPlan, cache_only: bool) -> list[zbench.CellResult]:
    """Render the plan's cells (or take them from the cache) into the grid; the panels and a summary below.

    Returns:
        One result per cell of ``plan`` (also kept in ``st.session_state["grid"]``).
    """
    request, cells = plan.request, plan.cells
    store = zbench.DecisionStore(opened.run_dir)
    try:
        review, record = store.load(), store.release()
    except zbench.DecisionError:
        review, record = None, None  # the Pick a release tab says what is wrong
    ratings = review.ratings if review is not None else {}
    release = record["checkpoint"] if record else None
    zooms = panels(opened)
    slot, progress_slot = st.empty(), st.empty()
    started = time.perf_counter()
    shown, done_cells = [0.0], {}
    first_row = sum(1 for c in cells if c.row == 0)

    def draw(results: list[zbench.CellResult], *, final: bool) -> object:
        # The signal strip under the column headers, once the grid is drawn.
        strip = signal_strip(decision(opened, results, review)) if final and review is not None else None
        data = grid_data(results, plan, ratings=ratings, release=release, zooms=zooms, signals=strip)
        data["applied"] = list(st.session_state.get(APPLIED, []))
        data["view"] = _state(opened).get("view")  # cell size, transpose, zoom: where the user left this run
        data["focus"] = focus_column(data, opened.focus)  # a typed checkpoint file: its column scrolled into view
        with slot:
            if final:  # the interactive grid; its events are applied before the next rerun
                return show_grid(data, key=GRID_KEY, on_event=functools.partial(handle_grid_event, opened))
            return show_grid(data, key=None)

    def on_cell(done: int, total: int, result: zbench.CellResult) -> None:
        done_cells[(result.cell.row, result.cell.col)] = result
        if result.swap_path == "cache":
            return
        progress_slot.progress(done / total, text=f"rendered {done} of {total}")
        now = time.perf_counter()
        if done == first_row or now - shown[0] > REDRAW_S:  # the whole first row, then now and then
            shown[0] = now
            draw(_partial(cells, done_cells), final=False)

    def on_step(cell: zbench.Cell, step: int, steps: int) -> None:
        # A page element written every step: Streamlit stops a run at its next element write, so Stop
        # (or any widget) takes effect within one denoising step, not after the cell.
        if step:
            what = f"{literal(cell.name)}: step {step} of {steps}"
        else:  # before the first step: the first compiled render, or another session's render under way
            what = zbench.compile_notice(opened.base) or "waiting for another session's render"
        progress_slot.progress(
            len(done_cells) / len(cells), text=f"rendered {len(done_cells)} of {len(cells)} · {what}"
        )

    shown_grid = st.session_state.get("grid")
    if st.session_state.pop(REUSE, False) and shown_grid is not None and shown_grid[0] == request:
        # A panel or rating event: the cells are the ones on screen; only labels and panels change.
        results = shown_grid[1]
        started = None  # the summary still tells how the grid was drawn
    elif opened.stored is not None:  # a stored grid: its cells from their files, nothing renders
        results = opened.stored.results(
            [opened.by_name[n] for n in plan.chosen], plan.rows, base_column=request.include_base
        )
        st.session_state["grid_stats"] = {"browsed": str(opened.stored.folder)}
        st.session_state["grid"] = (request, results)
    else:
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
        progress_slot.empty()
        st.session_state["grid_stats"] = stats  # how this grid was drawn, for the exported manifest
        st.session_state["grid"] = (request, results)
    draw(results, final=True)
    if st.session_state.get("grid_event_error"):
        st.error(literal(st.session_state.pop("grid_event_error")))
    if started is not None:
        st.session_state["grid_seconds"] = time.perf_counter() - started
    _summary(results, st.session_state.get("grid_seconds", 0.0))
    _panel_names(opened, zooms)
    return results


def _partial(cells: list[zbench.Cell], done: dict) -> list[zbench.CellResult]:
    return [done.get((c.row, c.col)) or zbench.CellResult(c, None, "pending", "rendering…") for c in cells]


def _summary(results: list[zbench.CellResult], seconds: float) -> None:
    pending = sum(r.status == "pending" for r in results)
    errors = sum(r.status == "error" for r in results)
    drawn = sum(r.image is not None and r.swap_path != "cache" for r in results)
    if pending:
        st.info(f"Stopped: {pending} cells not rendered. Press Render to finish the grid.")
    summary = f"{len(results)} cells · {drawn} rendered now in {seconds:.1f} s"
    st.caption(summary + (f" · {errors} with errors" if errors else ""))


def _panel_names(opened: OpenRun, zooms: list[zbench.ZoomSpec]) -> None:
    """The kept panels by name: rename them here; draw new ones with "draw a box" on the grid."""
    if not zooms:
        st.caption('Zoom panels: press "draw a box" on the grid and drag over any image.')
        return
    st.markdown("**Zoom panels** (under the grid, in exports)")
    for i, zoom in enumerate(zooms):
        name = st.text_input(f"panel {i + 1}", zoom.box.name, key=f"panel_name:{i}:{zoom.box.name}")
        if name.strip() and name.strip() != zoom.box.name:
            box = zoom.box
            zooms[i] = zbench.ZoomSpec(
                zbench.ZoomBox(name.strip(), box.x, box.y, box.w, box.h), zoom.factor, zoom.method
            )
            save_settings(opened)
            st.session_state[REUSE] = True
            st.rerun(scope="fragment")


def handle_grid_event(opened: OpenRun) -> None:
    """The component's callback: apply drawn boxes, removed panels and ratings before the fragment reruns, and
    keep its view.

    The component sends every event it has not seen confirmed (two quick key presses can arrive as one
    message); each is applied once, in order, and confirmed back through the grid's data (``applied``). Each
    message also carries the grid's view (cell size, transpose, zoom), kept in the run's page state.
    """
    state = st.session_state.get(GRID_KEY)
    payload = state.get("event") if hasattr(state, "get") else None
    events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(events, list):
        return
    st.session_state[REUSE] = True
    _keep_view(opened, payload.get("view"))
    applied: list[str] = st.session_state.setdefault(APPLIED, [])
    for event in events:
        if not isinstance(event, dict) or event.get("id") in applied:
            continue
        applied.append(str(event.get("id")))
        try:
            _apply(opened, event)
        except (KeyError, TypeError, ValueError, zbench.DecisionError) as err:
            st.session_state["grid_event_error"] = f"could not apply that: {err}"
    del applied[:-APPLIED_KEPT]


def _keep_view(opened: OpenRun, view: object) -> None:
    """Save the grid's view with the run's settings when it changed (``save_page_state`` writes only its
    well-formed keys). A run that cannot be written keeps it for this session, without a message each zoom."""
    page = _state(opened)
    if isinstance(view, dict) and view != page.get("view"):
        page["view"] = view
        zbench.save_page_state(opened.run_dir, page)


def _apply(opened: OpenRun, event: dict) -> None:
    zooms = panels(opened)
    kind = event.get("type")
    if kind == "box":
        names = {z.box.name for z in zooms}
        n = len(zooms) + 1
        while f"region {n}" in names:
            n += 1
        box = zbench.ZoomBox(f"region {n}", event["x"], event["y"], event["w"], event["h"])
        zooms.append(zbench.ZoomSpec(box))
        save_settings(opened)
    elif kind == "remove_panel":
        index = int(event["index"])
        if 0 <= index < len(zooms) and zooms[index].box.name == event.get("name", zooms[index].box.name):
            zooms.pop(index)
            save_settings(opened)
    elif kind == "rate":
        _rate(opened, event)
    elif kind == "shortlist":
        ck = opened.by_name.get(str(event.get("checkpoint")))
        if ck is None or ck.error is not None:
            raise ValueError(f"{event.get('checkpoint')} is not a usable checkpoint of this run")
        zbench.DecisionStore(opened.run_dir).set_shortlist(ck.name, bool(event["keep"]))


def _rate(opened: OpenRun, event: dict) -> None:
    """A rating from the large view, for the checkpoint the event names (the one on screen)."""
    ck = opened.by_name.get(str(event.get("checkpoint")))
    if ck is None or ck.error is not None:
        raise ValueError(f"{event.get('checkpoint')} is not a usable checkpoint of this run")
    stars = int(event["stars"])
    if not 0 <= stars <= 5:
        raise ValueError(f"a rating is 1 to 5 stars (0 clears it), not {stars}")
    zbench.DecisionStore(opened.run_dir).set_rating(ck.name, stars or None, hash=ck.hash_read)
