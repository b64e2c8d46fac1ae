"""Which base and which run: the config and LoRA folder in the sidebar, the scan, and checkpoints saved mid-run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

import zbench

from .resources import SCAN_TTL, base_for, scan
from .text import literal


@dataclass(frozen=True)
class OpenRun:
    """The base config, its loaded pipeline and the scanned run the page works on.

    Browsing a stored grid (a sweep folder or the grid command's output), ``stored`` holds its cells, the
    run is the one they were rendered from, and no base is loaded: nothing renders.
    """

    config_path: str
    config: zbench.BenchConfig
    lora_dir: str
    run: list[zbench.Checkpoint]
    base: zbench.Base | None
    stored: zbench.StoredGrid | None = None

    @property
    def by_name(self) -> dict[str, zbench.Checkpoint]:
        return {c.name: c for c in self.run}

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.run]

    @property
    def run_dir(self) -> Path:
        """The run's folder, where its decisions and page settings are kept."""
        return Path(self.lora_dir)


def open_run() -> OpenRun:
    """Sidebar: base config and LoRA folder; then scan the run and load the base (once per server).

    Stops the page with a message when the config, folder or base model is missing.
    """
    configs = sorted(str(p) for p in zbench.default_config_path().parent.glob("*.toml"))
    default_config = os.environ.get("ZBENCH_CONFIG", str(zbench.default_config_path()))
    if default_config not in configs:
        configs.insert(0, default_config)

    with st.sidebar:
        st.title("zbench")
        config_dir = zbench.default_config_path().parent
        config_path = st.selectbox(
            "Base config",
            configs,
            index=configs.index(default_config),
            # configs/ files by name; others by full path, so two files called demo.toml stay apart
            format_func=lambda p: Path(p).name if Path(p).parent == config_dir else p,
        )
        try:
            config = zbench.load_config(config_path)
        except zbench.ConfigError as err:
            st.error(literal(err))
            st.stop()
        typed = st.text_input(
            "LoRA folder",
            str(config.lora_dir or ""),
            key=f"folder:{config_path}",
            help="a run's folder, a folder of runs, or a sweep's (or `zbench grid`'s) output folder to browse",
        )
        lora_dir = str(Path(typed.strip()).expanduser()) if typed.strip() else ""

    if not lora_dir:
        st.info("Type the folder that holds your run's .safetensors files in the sidebar.")
        st.stop()
    try:
        stored = zbench.open_stored(lora_dir)
    except ValueError as err:
        st.error(literal(err))
        st.stop()
    if stored is not None:
        return _browse(config_path, config, stored)
    try:
        run = scan(lora_dir)
    except OSError as err:
        where = zbench.describe_folder(lora_dir)
        st.info(f"{literal(err)}. {literal(where)}. Type the folder that holds your run's .safetensors files.")
        st.stop()
    if not run:
        lora_dir, run = _pick_run(lora_dir)
    try:
        base = base_for(config)
    except zbench.BaseModelError as err:
        st.info(literal(err))
        st.stop()
    opened = OpenRun(config_path, config, lora_dir, run, base)
    _watch_run(lora_dir, tuple(opened.names))
    return opened


def _browse(config_path: str, config: zbench.BenchConfig, stored: zbench.StoredGrid) -> OpenRun:
    """A stored grid: its run's checkpoints that have cells, and no base (nothing renders)."""
    what = "a sweep" if stored.kind == "sweep" else "a grid's output"
    try:
        run = scan(str(stored.run_dir))
    except OSError:
        run = []
    kept = [c for c in run if c.name in stored.checkpoints]
    if not kept and stored.checkpoints:
        st.info(
            f"{literal(stored.folder)} holds {what} of {literal(stored.run_dir)}, whose checkpoints are not there "
            "any more: move the run back there to browse it (the labels and decisions come from the run)."
        )
        st.stop()
    with st.sidebar:
        st.caption(
            f"Browsing {what}: {len(stored.records)} stored cells of {literal(stored.run_dir.name)} on "
            f"{literal(stored.base)}. Nothing renders here."
        )
    opened = OpenRun(config_path, config, str(stored.run_dir), kept, None, stored)
    _watch_run(str(stored.run_dir), tuple(c.name for c in run))
    return opened


def _pick_run(folder: str) -> tuple[str, list[zbench.Checkpoint]]:
    """A folder with no checkpoints: offer the runs in its subfolders, or say what it holds."""
    runs = zbench.find_runs(folder)
    if not runs:
        where = zbench.describe_folder(folder)
        st.info(
            f"No LoRA checkpoints (.safetensors) in {literal(folder)}: {literal(where)}. "
            "Point the sidebar at a run folder."
        )
        st.stop()
    with st.sidebar:
        picked = st.selectbox(
            f"Runs in {Path(folder).name or folder}",
            [str(r) for r in runs],
            format_func=lambda r: str(Path(r).relative_to(folder)),
            key=f"run_in:{folder}",
        )
    return picked, scan(picked)


@st.fragment(run_every=max(SCAN_TTL, 2.0))
def _watch_run(folder: str, shown: tuple[str, ...]) -> None:
    """Rerun the page when the run folder gains or loses checkpoints."""
    try:
        now = tuple(c.name for c in scan(folder))
    except OSError:
        return
    if now != shown:
        st.rerun(scope="app")
