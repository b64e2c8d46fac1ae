"""What to render: the sidebar's checkpoint choice and form (prompts, seeds, scales, settings), and the run's saved
settings.

Edits are batched: nothing renders until Render is pressed, so a half-typed seed list never starts a grid.
Which checkpoints is one control above the form: all, every Nth, the last N or a range of epochs fills the
chips, which stay for picking by hand (the chips are what Render commits and what is saved). The committed
settings and the kept zoom panels are saved per run in ``<run>/.zbench/page.json`` and restored when the run
is opened again (a reload, a restart, another browser). The first open of a run renders its saved settings,
or the config's defaults, without any input.
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
    _focus(opened, state, committed, key["checkpoints"])
    _follow_new_checkpoints(opened, state, committed, key["checkpoints"])
    with st.sidebar:
        _choose_checkpoints(opened, key["checkpoints"], committed["checkpoints"])
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


MODES = {
    "all": "all",
    "every": "every Nth",
    "last": "the last N",
    "range": "a range of epochs",
    "hand": "picked by hand",
}


def _mode_keys(opened: OpenRun) -> dict[str, str]:
    return {part: f"pick_{part}:{opened.run_dir}" for part in ("mode", "n", "span")}


def _numbers(run: list[zbench.Checkpoint]) -> tuple[str, list[int]]:
    """What a range counts in ("epoch", or "step" for a run whose files have none) and the run's values of it."""
    unit = "epoch" if any(c.epoch is not None for c in run) else "step"
    return unit, sorted({n for c in run if (n := _number(c, unit)) is not None})


def _number(ck: zbench.Checkpoint, unit: str) -> int | None:
    return ck.epoch if unit == "epoch" else ck.step


def chosen_by(run: list[zbench.Checkpoint], mode: str, n: int, span: tuple[int, int]) -> list[str] | None:
    """The checkpoint names a mode chooses, in run order; None for "picked by hand" (the chips stay)."""
    if mode == "all":
        return [c.name for c in run]
    if mode == "every":
        return [c.name for c in zbench.select_checkpoints(run, every=max(1, n))]
    if mode == "last":
        return [c.name for c in zbench.select_checkpoints(run, last=max(1, n))]
    if mode == "range":
        unit = _numbers(run)[0]
        lo, hi = span
        return [c.name for c in run if (x := _number(c, unit)) is not None and lo <= x <= hi]
    return None


def _infer_mode(run: list[zbench.Checkpoint], chips: list[str], n: int) -> tuple[str, int, tuple[int, int] | None]:
    """The mode (and N or range) that gives ``chips``: "picked by hand" when none does."""
    names = [c.name for c in run]
    if chips == names:
        return "all", n, None
    for k in range(1, len(run)):
        if chips == chosen_by(run, "last", k, (0, 0)):
            return "last", k, None
    for k in range(2, len(run) + 1):
        if chips == chosen_by(run, "every", k, (0, 0)):
            return "every", k, None
    unit, _ = _numbers(run)
    picked = [c for c in run if c.name in chips]
    ends = [_number(c, unit) for c in picked[:1] + picked[-1:]]
    if picked and None not in ends and chips == chosen_by(run, "range", n, (ends[0], ends[-1])):
        return "range", n, (ends[0], ends[-1])
    return "hand", n, None


def _set_chips(opened: OpenRun, widget_key: str, chips: list[str]) -> None:
    """Put ``chips`` in the checkpoint chips and show the mode that gives them (call before the widgets exist,
    or from a callback)."""
    keys = _mode_keys(opened)
    st.session_state[widget_key] = chips
    mode, n, span = _infer_mode(opened.run, chips, st.session_state.get(keys["n"], 2))
    st.session_state[keys["mode"]] = mode
    st.session_state[keys["n"]] = n
    if span is not None:
        st.session_state[keys["span"]] = span


def _mode_changed(opened: OpenRun, widget_key: str) -> None:
    """A callback: the mode, N or range changed: the chips show what it chooses (committed by Render)."""
    keys = _mode_keys(opened)
    chips = chosen_by(
        opened.run, st.session_state[keys["mode"]], st.session_state[keys["n"]], st.session_state[keys["span"]]
    )
    if chips is not None:
        st.session_state[widget_key] = chips
    _keep_grid()


def _chips_changed(opened: OpenRun, widget_key: str) -> None:
    """A callback: chips picked by hand: the mode says which one gives them, or "picked by hand"."""
    _set_chips(opened, widget_key, [n for n in opened.names if n in st.session_state[widget_key]])
    _keep_grid()


def _keep_grid() -> None:
    """The chips are not committed yet: the grid's next run sends the same cells."""
    from .grid import keep_grid  # ui.grid imports this module

    keep_grid()


def _choose_checkpoints(opened: OpenRun, widget_key: str, committed: list[str]) -> None:
    """Which checkpoints: a mode (all, every Nth, the last N, a range of epochs) and its number fill the chips;
    the chips pick by hand. Render commits the chips."""
    run, by_name = opened.run, opened.by_name
    keys = _mode_keys(opened)
    unit, numbers = _numbers(run)
    total = max(1, len(run))
    if keys["mode"] not in st.session_state:
        _set_chips(opened, widget_key, list(st.session_state.get(widget_key, [])))
    st.session_state[keys["n"]] = min(max(1, int(st.session_state.get(keys["n"], 2))), total)
    span = st.session_state.get(keys["span"])
    if numbers and not (isinstance(span, tuple) and len(span) == 2 and set(span) <= set(numbers)):
        st.session_state[keys["span"]] = (numbers[0], numbers[-1])
    modes = [m for m in MODES if m != "range" or len(numbers) > 1]
    if st.session_state[keys["mode"]] not in modes:
        st.session_state[keys["mode"]] = "hand"
    on_change, args = _mode_changed, (opened, widget_key)
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    mode = left.selectbox(
        "Checkpoints",
        modes,
        format_func=lambda m: MODES[m].replace("epochs", f"{unit}s"),
        key=keys["mode"],
        on_change=on_change,
        args=args,
        help="every Nth counts back from the last checkpoint, which is always kept; the chips below pick by hand",
    )
    if mode in ("every", "last"):
        right.number_input("N", min_value=1, max_value=total, step=1, key=keys["n"], on_change=on_change, args=args)
    if mode == "range":
        st.select_slider(  # value: a range slider (the session's range, when it has one, wins)
            f"{unit.capitalize()}s from–to",
            numbers,
            value=st.session_state[keys["span"]],
            key=keys["span"],
            on_change=on_change,
            args=args,
        )
    st.multiselect(
        "Checkpoints (in training order)",
        opened.names,
        format_func=lambda n: f"{by_name[n].label} · {n}" if n in by_name else n,
        key=widget_key,
        on_change=_chips_changed,
        args=args,
        label_visibility="collapsed",
    )
    chips = st.session_state[widget_key]
    waiting = " · Render to show them" if chips != committed else ""
    st.caption(f"{len(chips)} of {len(run)} checkpoints{waiting}")
    st.checkbox("Add new checkpoints as they are saved", value=True, key="follow")


def _focus(opened: OpenRun, state: dict, committed: dict, widget_key: str) -> None:
    """A checkpoint named by the typed (or linked) path joins the chosen checkpoints, once per session."""
    name, seen = opened.focus, f"focused:{opened.run_dir}"
    if name is None or st.session_state.get(seen) == name:
        return
    st.session_state[seen] = name
    if name not in committed["checkpoints"]:
        committed["checkpoints"] = [n for n in opened.names if n in committed["checkpoints"] or n == name]
        if "checkpoints" in state:
            state["checkpoints"] = committed["checkpoints"]
    chips = st.session_state.get(widget_key, [])
    if name not in chips:
        _set_chips(opened, widget_key, [n for n in opened.names if n in chips or n == name])


def _follow_new_checkpoints(opened: OpenRun, state: dict, committed: dict, widget_key: str) -> None:
    """Checkpoints saved while the page is open (a run still training) join the grid when "follow" is on."""
    names = opened.names
    known_key = f"known:{opened.run_dir}"
    known = st.session_state.setdefault(known_key, list(names))
    fresh = [n for n in names if n not in known]
    gone = [n for n in st.session_state.get(widget_key, []) if n not in names]
    if gone:  # deleted or renamed files leave the choice (a multiselect refuses unknown options)
        _set_chips(opened, widget_key, [n for n in st.session_state[widget_key] if n in names])
    if not fresh:
        return
    st.session_state[known_key] = list(names)
    if st.session_state.get("follow", True):
        committed["checkpoints"] = [n for n in names if n in committed["checkpoints"] or n in fresh]
        chosen = st.session_state.get(widget_key, [])
        _set_chips(opened, widget_key, [n for n in names if n in chosen or n in fresh])
        if "checkpoints" in state:
            state["checkpoints"] = committed["checkpoints"]
    st.toast(f"new checkpoint{'s' if len(fresh) > 1 else ''}: {literal(', '.join(fresh))}")
