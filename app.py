"""zbench page: the same prompt and seed across a LoRA run's checkpoints, side by side.

UI only: widgets, layout and messages. Every computation lives in the zbench package; the
page's parts live in ``ui/``, one idea each. Run with ``streamlit run app.py``
(``ZBENCH_CONFIG`` picks another default config). The address keeps the page's place
(``?run=<folder or checkpoint>&config=<toml>&tab=pick``): a reload or a shared link opens it again.
"""

from __future__ import annotations

import streamlit as st

from ui.export import export_sheet
from ui.grid import controls, grid_section, keep_grid
from ui.pick import pick_release
from ui.request import choose_grid, panels
from ui.run import TABS, keep_place, open_run, restore_tab
from ui.timeline import timeline_tab

st.set_page_config(page_title="zbench", layout="wide")

# 1. Which base and run (sidebar, or the address), and what to render (the sidebar's form, committed by Render).
opened = open_run()
plan = choose_grid(opened)
cache_only = controls(plan.request) if opened.stored is None else False  # a stored grid has nothing to stop
# Opening a tab reruns the page so it shows what was done on the others (a rating on the grid is in the
# Pick a release table); the grid keeps its cells. The tab open last comes back from the address.
restore_tab()
tab_grid, tab_timeline, tab_export, tab_pick = st.tabs(list(TABS.values()), key="tab", on_change=keep_grid)
keep_place(opened)

# 2. The grid: the first row across every checkpoint first; zoom panels drawn on it sit under it.
with tab_grid:
    results = grid_section(opened, plan, cache_only)

# 3. The timeline (only while its tab is open; its player shows the grid's own PNGs), 4. comparison sheets,
# 5. pick a release.
with tab_timeline:
    if tab_timeline.open:
        timeline_tab(plan, results, panels(opened))
with tab_export:
    export_sheet(opened, plan, results, panels(opened))
with tab_pick:
    pick_release(opened, plan, results)
