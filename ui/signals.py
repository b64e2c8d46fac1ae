"""The signals and the decision the page shows: from the signal set when it is rendered, else from the grid.

The signal set is the config's ``[signals]`` prompts and seeds for the base and every checkpoint (what
``python -m zbench suggest`` renders). When all of it is in the image cache (``suggest`` ran, or the page's
"Measure" button), the grid's strip and the Pick tab use it; otherwise they use the grid's own images and
say what is missing (diversity needs two seeds, drift the base column). Signals are cached by pixels, so a
rerun computes nothing new; the set's images are kept in the session, so a rerun reads no file.
"""

from __future__ import annotations

import streamlit as st

import zbench

from .resources import image_cache
from .run import OpenRun

SET = "signal_set"  # session key: (what it was loaded for, its results, complete?)


def _set_key(opened: OpenRun) -> tuple:
    c = opened.config
    return (str(opened.run_dir), tuple((ck.name, ck.hash) for ck in opened.run if ck.error is None),
            c.signal_seeds, str(c.signal_prompts_file), c.steps, c.guidance, c.width, c.height, c.negative)  # fmt: skip


def signal_set(opened: OpenRun, *, render: bool = False, progress=None) -> tuple[list[zbench.CellResult], int] | None:
    """The signal set's results from the image cache (rendering the missing ones when ``render``), and how many
    cells are still missing; None when browsing a stored grid or the config's [signals] cannot be read."""
    if opened.stored is not None or opened.base is None:
        return None
    key = _set_key(opened)
    kept = st.session_state.get(SET)
    if kept is not None and kept[0] == key and (kept[2] == 0 or not render):
        return kept[1], kept[2]
    try:
        grid = zbench.signal_grid(opened.config, opened.run)
    except (zbench.ConfigError, ValueError) as err:
        st.session_state["signal_problem"] = str(err)
        return None
    results = zbench.render_cells(
        opened.base,
        grid.cells,
        grid.settings,
        cache=image_cache(),
        cache_only=not render,
        progress=progress,
    )
    missing = sum(r.status == "pending" for r in results)
    st.session_state[SET] = (key, results, missing)
    return results, missing


def decision(opened: OpenRun, results: list[zbench.CellResult], review: zbench.Review) -> zbench.Decision:
    """The run's decision (signals, shortlist, recommendation) on ``review`` (the caller has read it), from the
    signal set when it is complete, else from the grid's ``results``."""
    found = signal_set(opened)
    source = results
    st.session_state["signal_source"] = "grid"
    if found is not None and found[1] == 0:
        source = found[0]
        st.session_state["signal_source"] = "set"
    ready = [r for r in source if r.status != "pending"]
    return zbench.decide(
        opened.run,
        ready,
        review,
        signals=zbench.Signals.from_config(opened.config),
        cache=zbench.signal_cache(),
        size=opened.config.shortlist_size,
    )


def strip(dec: zbench.Decision) -> dict:
    """The grid's signal strip: per checkpoint name, each signal's value and tone (0 worst .. 1 best), and the
    shortlist."""
    return {**dec.report.strip(), "shortlist": list(dec.shortlist)}
