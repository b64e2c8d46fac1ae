"""What to render: the sidebar's form (prompts, seeds, scales, settings, checkpoints) and the run's saved settings.

Edits are batched: nothing renders until Render is pressed, so a half-typed seed list never starts
a grid. The committed settings and the kept zoom panels are saved per run in ``<run>/.zbench/page.json``
and restored when the run is opened again (a reload, a restart, another browser). The first open of
a run renders its saved settings, or the config's defaults, without any input.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

import zbench

from .run import OpenRun
from .text import literal


@dataclass(frozen=True)
class GridPlan:
    """The grid the page asked for: the request, its rows and cells, and the sheet header that describes it."""

    request: zbench.GridRequest
    chosen: list[str]  # checkpoint names, in training order
    rows: list[zbench.Row]
    cells: list[zbench.Cell]
    info: zbench.SheetInfo


def _state(opened: OpenRun) -> dict:
    """This run's committed settings and panels, read from its folder once per session."""
    key = f"page:{opened.run_dir}"
    if key not in st.session_state:
        st.session_state[key] = zbench.load_page_state(opened.run_dir)
    return st.session_state[key]


def panels(opened: OpenRun) -> list[zbench.ZoomSpec]:
    """The run's kept zoom panels (a list the page changes in place; ``save_settings`` keeps it)."""
    return _state(opened).setdefault("zooms", [])


def save_settings(opened: OpenRun) -> None:
    """Write the run's committed settings and panels beside it (a read-only run just keeps them in the session)."""
    if not zbench.save_page_state(opened.run_dir, _state(opened)):
        st.toast("This run's folder cannot be written: its page settings are kept for this session only.")


def _defaults(opened: OpenRun, state: dict) -> dict:
    config = opened.config
    try:
        prompts = "\n".join(config.prompts())
    except zbench.ConfigError as err:
        st.error(literal(err))
        prompts = config.prompt
    names = opened.names
    chosen = [n for n in state.get("checkpoints", names) if n in names]
    return {
        "prompts": state.get("prompts", prompts),
        "negative": state.get("negative", config.negative),
        "seeds": state.get("seeds", str(config.seed)),
        "scales": state.get("scales", "1.0"),
        "steps": state.get("steps", config.steps),
        "guidance": state.get("guidance", float(config.guidance)),
        "width": state.get("width", config.width),
        "height": state.get("height", config.height),
        "include_base": state.get("include_base", True),
        "checkpoints": chosen if "checkpoints" in state else names,
    }


def choose_grid(opened: OpenRun) -> GridPlan:
    """The sidebar form; on Render its values are committed (and saved). Returns the committed plan.

    Stops the page with a message when the committed values do not parse or nothing is chosen.
    """
    if opened.stored is not None:
        return _choose_slice(opened, opened.stored)
    state = _state(opened)
    committed = _defaults(opened, state)
    by_name, run = opened.by_name, opened.run_dir
    # Each field has a stable key per run and takes its first value from the committed settings: what
    # is typed stays typed until Render, and a changed default never makes it a new, empty widget.
    key = {name: f"form:{run}:{name}" for name in committed}
    for name, value in committed.items():
        st.session_state.setdefault(key[name], value)
    _follow_new_checkpoints(opened, state, committed, key["checkpoints"])
    with st.sidebar.form(f"render:{run}"):
        st.text_area("Prompts (one per line)", height=90, key=key["prompts"])
        st.text_input("Negative prompt", key=key["negative"])
        st.text_input("Seeds", help="e.g. 42, 7 or 1-4 or 1, 2, .., 10: a row each", key=key["seeds"])
        st.text_input("LoRA scales", help="e.g. 0.5, 1: epoch × strength", key=key["scales"])
        left, right = st.columns(2)
        left.number_input("Steps", min_value=1, max_value=zbench.MAX_STEPS, key=key["steps"])
        right.number_input("Guidance", min_value=0.0, max_value=zbench.MAX_GUIDANCE, step=0.5, key=key["guidance"])
        left.number_input("Width", min_value=zbench.MIN_SIDE, max_value=zbench.MAX_SIDE, step=16, key=key["width"])
        right.number_input("Height", min_value=zbench.MIN_SIDE, max_value=zbench.MAX_SIDE, step=16, key=key["height"])
        st.checkbox("Base column (LoRA off)", key=key["include_base"])
        st.multiselect(
            "Checkpoints (in training order)",
            opened.names,
            format_func=lambda n: f"{by_name[n].label} · {n}" if n in by_name else n,
            key=key["checkpoints"],
        )
        st.checkbox("Add new checkpoints as they are saved", value=True, key="follow")
        submitted = st.form_submit_button("Render", type="primary", width="stretch")
    if submitted:
        values = {name: st.session_state[key[name]] for name in committed}
        values["checkpoints"] = [n for n in values["checkpoints"] if n in by_name]
        state.update(values)
        committed.update(values)
        save_settings(opened)
        st.session_state.pop("stopped", None)  # Render also finishes a stopped grid
    return _plan(opened, committed)


def _choose_slice(opened: OpenRun, stored: zbench.StoredGrid) -> GridPlan:
    """A stored grid: which prompts, seeds, scales and checkpoints to show (from its cells; nothing renders)."""
    key = f"slice:{stored.folder}"
    chosen = st.session_state.setdefault(
        key,
        {
            "prompts": list(stored.prompts[:1]),
            "seeds": list(stored.seeds[:1]),
            "scales": list(stored.scales),
            "checkpoints": opened.names,
            "include_base": stored.base_column,
        },
    )
    with st.sidebar.form(f"show:{stored.folder}"):
        prompts = st.multiselect("Prompts", list(stored.prompts), default=chosen["prompts"])
        seeds = st.multiselect("Seeds", list(stored.seeds), default=chosen["seeds"])
        scales = st.multiselect("LoRA scales", list(stored.scales), default=chosen["scales"])
        include_base = st.checkbox(
            "Base column (LoRA off)", value=chosen["include_base"], disabled=not stored.base_column
        )
        names = st.multiselect(
            "Checkpoints (in training order)",
            opened.names,
            default=[n for n in chosen["checkpoints"] if n in opened.names],  # a file may have gone since
        )
        if st.form_submit_button("Show", type="primary", width="stretch"):
            chosen.update(prompts=prompts, seeds=seeds, scales=scales, checkpoints=names, include_base=include_base)
    if not (chosen["prompts"] and chosen["seeds"] and chosen["scales"]):
        st.info("Pick at least one prompt, one seed and one scale in the sidebar.")
        st.stop()
    committed = {
        "checkpoints": [n for n in opened.names if n in chosen["checkpoints"]],
        "prompts": "\n".join(chosen["prompts"]),
        "seeds": ", ".join(str(x) for x in chosen["seeds"]),
        "scales": ", ".join(f"{x:g}" for x in chosen["scales"]),
        "steps": stored.settings.steps,
        "guidance": stored.settings.guidance,
        "width": stored.settings.width,
        "height": stored.settings.height,
        "negative": stored.settings.negative,
        "include_base": chosen["include_base"] and stored.base_column,
    }
    return _plan(opened, committed)


def _plan(opened: OpenRun, committed: dict) -> GridPlan:
    try:
        request = zbench.GridRequest(
            checkpoints=tuple(committed["checkpoints"]),
            prompts=tuple(zbench.parse_prompts(committed["prompts"])),
            seeds=tuple(zbench.parse_seeds(committed["seeds"])),
            scales=tuple(zbench.parse_scales(committed["scales"])),
            settings=zbench.RenderSettings(
                steps=int(committed["steps"]),
                guidance=float(committed["guidance"]),
                width=int(committed["width"]),
                height=int(committed["height"]),
                negative=committed["negative"],
            ),
            include_base=bool(committed["include_base"]),
        )
    except ValueError as err:
        st.error(literal(err))
        st.stop()
    if not committed["checkpoints"] and not committed["include_base"]:
        st.info("Pick at least one checkpoint, or turn on the base column.")
        st.stop()
    if request.settings.negative.strip() and request.settings.guidance == 0 and opened.stored is None:
        st.info(
            "The negative prompt is not used at guidance 0 (no classifier-free guidance, as Turbo models run): "
            "the images are the same without it. Raise guidance above 0 to use it."
        )
    base_name = opened.stored.base if opened.stored is not None else opened.config.name
    st.subheader(f"{literal(base_name)} · {literal(opened.run_dir.name)}")
    rows, cells = request.plan(opened.run)
    info = zbench.SheetInfo(
        base=base_name,
        run=str(opened.run_dir),
        settings=request.settings,
        prompts=request.prompts,
        seeds=request.seeds,
        scales=request.scales,
    )
    return GridPlan(request, list(committed["checkpoints"]), list(rows), list(cells), info)


def _follow_new_checkpoints(opened: OpenRun, state: dict, committed: dict, widget_key: str) -> None:
    """Checkpoints saved while the page is open (a run still training) join the grid when "follow" is on."""
    names = opened.names
    known_key = f"known:{opened.run_dir}"
    known = st.session_state.setdefault(known_key, list(names))
    fresh = [n for n in names if n not in known]
    gone = [n for n in st.session_state.get(widget_key, []) if n not in names]
    if gone:  # deleted or renamed files leave the form's choice (a multiselect refuses unknown options)
        st.session_state[widget_key] = [n for n in st.session_state[widget_key] if n in names]
    if not fresh:
        return
    st.session_state[known_key] = list(names)
    if st.session_state.get("follow", True):
        committed["checkpoints"] = [n for n in names if n in committed["checkpoints"] or n in fresh]
        chosen = st.session_state.get(widget_key, [])
        st.session_state[widget_key] = [n for n in names if n in chosen or n in fresh]
        if "checkpoints" in state:
            state["checkpoints"] = committed["checkpoints"]
    st.toast(f"new checkpoint{'s' if len(fresh) > 1 else ''}: {literal(', '.join(fresh))}")
