"""zbench page: the same prompt and seed across a LoRA run's checkpoints, side by side.

UI only: widgets, layout and messages. Every computation lives in the zbench package; the
page's parts live in ``ui/``, one idea each. Run with ``streamlit run app.py``
(``ZBENCH_CONFIG`` picks another default config).
"""

from __future__ import annotations

import streamlit as st

from ui.export import export_sheet
from ui.grid import controls, draw_grid
from ui.pick import pick_release
from ui.request import choose_grid
from ui.run import open_run
from ui.timeline import timeline_tab
from ui.zoom import zoom_panels

st.set_page_config(page_title="zbench", layout="wide")

# 1. Which base and run, and what to render (sidebar); stops with a message when something is missing.
opened = open_run()
plan = choose_grid(opened)
cache_only, progress_slot = controls(plan.request)
tab_grid, tab_zoom, tab_timeline, tab_export, tab_pick = st.tabs(
    ["Grid", "Zoom", "Timeline", "Export", "Pick a release"]
)

# 2. The grid: placeholders first, filled as cells finish.
with tab_grid:
    results = draw_grid(opened, plan, cache_only=cache_only, progress_slot=progress_slot)
st.session_state["grid"] = (plan.request, results)

# 3. Crop-zoom panels, 4. the timeline, 5. comparison sheets, 6. pick a release.
with tab_zoom:
    zooms = zoom_panels(results, plan.rows)
with tab_timeline:
    timeline_tab(plan, results, zooms)
with tab_export:
    export_sheet(opened, plan, results, zooms)
with tab_pick:
    pick_release(opened, plan, results, zooms)
