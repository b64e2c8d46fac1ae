"""What to render: prompts, seeds, scales and settings in the sidebar, and which checkpoints, as one grid plan."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def choose_grid(opened: OpenRun) -> GridPlan:
    """Sidebar render settings and the checkpoint picker, parsed into a plan.

    Stops the page with a message when a field does not parse or nothing is chosen.
    """
    config, by_name = opened.config, opened.by_name
    try:
        default_prompts = "\n".join(config.prompts())
    except zbench.ConfigError as err:
        st.error(literal(err))
        default_prompts = config.prompt
    with st.sidebar:
        prompts_text = st.text_area("Prompts (one per line)", default_prompts, height=90)
        negative = st.text_input("Negative prompt", config.negative)
        seeds_text = st.text_input("Seeds", str(config.seed), help="comma-separated: each seed is a row")
        scales_text = st.text_input("LoRA scales", "1.0", help="comma-separated, e.g. 0.5, 1: epoch × strength")
        left, right = st.columns(2)
        steps = left.number_input("Steps", min_value=1, max_value=200, value=config.steps)
        guidance = right.number_input("Guidance", min_value=0.0, max_value=30.0, value=float(config.guidance), step=0.5)
        width = left.number_input("Width", min_value=16, max_value=4096, value=config.width, step=16)
        height = right.number_input("Height", min_value=16, max_value=4096, value=config.height, step=16)
        include_base = st.checkbox("Base column (LoRA off)", value=True)
        st.checkbox("Add new checkpoints as they are saved", value=True, key="follow")

    st.subheader(f"{literal(config.name)} · {literal(Path(opened.lora_dir).name)}")
    chosen = st.multiselect(
        "Checkpoints (in training order)",
        opened.names,
        default=opened.names,
        key=f"chosen:{opened.lora_dir}",
        format_func=lambda n: f"{by_name[n].label} · {n}" if n in by_name else n,
    )
    try:
        request = zbench.GridRequest(
            checkpoints=tuple(chosen),
            prompts=tuple(zbench.parse_prompts(prompts_text)),
            seeds=tuple(zbench.parse_seeds(seeds_text)),
            scales=tuple(zbench.parse_scales(scales_text)),
            settings=zbench.RenderSettings(
                steps=int(steps), guidance=float(guidance), width=int(width), height=int(height), negative=negative
            ),
            include_base=include_base,
        )
    except ValueError as err:
        st.error(literal(err))
        st.stop()
    if not chosen and not include_base:
        st.info("Pick at least one checkpoint, or turn on the base column.")
        st.stop()
    rows, cells = request.plan(opened.run)
    info = zbench.SheetInfo(
        base=config.name,
        run=str(opened.lora_dir),
        settings=request.settings,
        prompts=request.prompts,
        seeds=request.seeds,
        scales=request.scales,
    )
    return GridPlan(request, list(chosen), list(rows), list(cells), info)
