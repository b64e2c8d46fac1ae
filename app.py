"""zbench page: the same prompt and seed across a LoRA run's checkpoints, side by side.

UI only: every computation lives in the zbench package. This is the first, minimal page;
zoom panels, sheet export and the release pick come with the bench-page work.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

import zbench

st.set_page_config(page_title="zbench", layout="wide")


@st.cache_resource(max_entries=1, show_spinner="Loading the base model (once per server)…")
def base_for(config_path: str) -> zbench.Base:
    return zbench.get_base(zbench.load_config(config_path))


@st.cache_data(ttl=5, show_spinner=False)  # short ttl: checkpoints saved mid-training show up
def scan(folder: str) -> list[zbench.Checkpoint]:
    return zbench.scan_run(folder)


configs = sorted(str(p) for p in zbench.default_config_path().parent.glob("*.toml"))
default = os.environ.get("ZBENCH_CONFIG", str(zbench.default_config_path()))
if default not in configs:
    configs.insert(0, default)

with st.sidebar:
    st.title("zbench")
    config_path = st.selectbox("Base config", configs, index=configs.index(default), format_func=lambda p: Path(p).name)
    try:
        config = zbench.load_config(config_path)
    except zbench.ConfigError as err:
        st.error(str(err))
        st.stop()
    lora_dir = st.text_input("LoRA folder", str(config.lora_dir or ""))

try:
    checkpoints = scan(lora_dir)
except FileNotFoundError as err:
    st.info(str(err))
    st.stop()
try:
    base = base_for(config_path)
except zbench.BaseModelError as err:
    st.info(str(err))
    st.stop()

st.subheader(f"{config.name} · {Path(lora_dir).name}")
table = pd.DataFrame(
    [{k: c.to_json()[k] for k in ("name", "label", "rank", "alpha", "format", "hash", "error")} for c in checkpoints]
)
st.dataframe(table, hide_index=True)

names = [c.name for c in checkpoints]
with st.form("grid"):
    chosen = st.multiselect("Checkpoints", names, default=[c.name for c in checkpoints if c.error is None])
    left, mid, right = st.columns([4, 1, 1])
    prompt = left.text_input("Prompt", config.prompt)
    seed = mid.number_input("Seed", value=config.seed, step=1)
    include_base = right.checkbox("Base column", value=True)
    submitted = st.form_submit_button("Render grid", type="primary")

if submitted:
    selected = [c for c in checkpoints if c.name in chosen]
    settings = zbench.RenderSettings(
        steps=config.steps, guidance=config.guidance, width=config.width, height=config.height, negative=config.negative
    )
    _, cells = zbench.plan_grid(selected, prompts=[prompt], seeds=[int(seed)], include_base=include_base)
    bar = st.progress(0.0, text="rendering…")
    target_rank = max([c.rank or 0 for c in checkpoints if c.error is None] or [0])
    st.session_state["results"] = zbench.render_cells(
        base,
        cells,
        settings,
        target_rank=target_rank,
        progress=lambda done, total, _: bar.progress(done / total, text=f"rendered {done} of {total}"),
    )
    bar.empty()

results = st.session_state.get("results", [])
if results:
    for column, result in zip(st.columns(len(results)), results, strict=True):
        ck = result.cell.checkpoint
        column.markdown(f"**{'base' if ck is None else ck.label}**  \n`{result.cell.name}`")
        if result.image is not None:
            column.image(result.image, width="stretch")
            column.caption(f"swap {result.swap_ms or 0:.1f} ms · render {result.render_ms or 0:.0f} ms")
        else:
            column.error(result.error)
