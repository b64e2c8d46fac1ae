"""The Export tab: write the comparison sheet (PNG, PDF, manifest, cells zip) and offer its files."""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

import zbench

from .request import GridPlan
from .text import literal


def export_sheet(lora_dir: str, plan: GridPlan, results: list[zbench.CellResult], zooms: list[zbench.ZoomSpec]) -> None:
    """Export on request into ``<run>/zbench-sheets/<time>/`` (or a folder typed here), then offer downloads."""
    default_out = str(Path(lora_dir) / "zbench-sheets")
    out_root = st.text_input("Export folder", default_out)
    use_zooms = st.checkbox("Include the kept zoom panels", value=True)
    if st.button("Export sheet (PNG, PDF, manifest, cells zip)"):
        out = Path(out_root.strip()).expanduser() / time.strftime("%Y%m%d-%H%M%S")
        try:
            manifest = zbench.export_sheet(
                out,
                results,
                plan.rows,
                plan.info,
                zooms=zooms if use_zooms else (),
                stats=st.session_state.get("grid_stats"),
            )
            st.session_state["export"] = (str(out), manifest)
        except OSError as err:
            st.error(f"could not write the sheet to {literal(out)}: {literal(err)}. Pick a writable export folder.")
    if "export" in st.session_state:
        out, manifest = st.session_state["export"]
        st.success(f"Exported to {literal(out)}")
        files = [*manifest.get("pages", [manifest["sheet"]]), manifest.get("pdf"), manifest.get("zip"), "manifest.json"]
        for name in [f for f in files if f]:
            path = Path(out) / name
            if path.is_file():
                st.download_button(
                    f"Download {literal(name)}", path.read_bytes(), file_name=path.name, key=f"dl:{out}:{name}"
                )
        first = Path(out) / manifest.get("pages", [manifest["sheet"]])[0]
        if first.is_file():
            st.image(str(first), caption=literal(first.name))
