"""The Export tab: a preset (share, archive or both), written into the run's sheets folder, its files and sizes.
The share image, viewer and PDF show the run's decision (release, shortlist, stars, signals) as the grid does."""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

import zbench

from .request import GridPlan
from .run import OpenRun
from .signals import decision
from .text import literal

PRESETS = {
    "both": "both: what to post and what to keep",
    "share": "share: an image to post, an HTML viewer, epoch timelines",
    "archive": "archive: lossless PNG pages, a PDF, every cell and a zip",
}
# The files offered for download, in this order (pages and timelines come from the manifest).
TOP_FILES = ("share", "html", "timeline", "pdf", "zip")


def export_sheet(
    opened: OpenRun, plan: GridPlan, results: list[zbench.CellResult], zooms: list[zbench.ZoomSpec]
) -> None:
    """Export on request into ``<run>/zbench-sheets/<time>/`` (or a folder typed here), then offer the files."""
    out_root = st.text_input("Export folder", str(Path(opened.lora_dir) / "zbench-sheets"))
    preset = st.radio("Preset", list(PRESETS), format_func=PRESETS.get, key="export_preset")
    left, middle, right = st.columns(3)
    share_format = left.radio("Share image", ["webp", "jpg"], horizontal=True, key="export_share_format")
    paper = middle.radio("PDF paper", ["a4", "letter"], horizontal=True, format_func=str.upper, key="export_paper")
    small_pdf = right.checkbox("Small PDF (JPEG images)", key="export_small_pdf")
    use_zooms = st.checkbox("Include the kept zoom panels", value=True)
    if st.button("Export", type="primary"):
        out = Path(out_root.strip()).expanduser() / time.strftime("%Y%m%d-%H%M%S")
        try:
            manifest = zbench.export_sheet(
                out,
                results,
                plan.rows,
                plan.info,
                zooms=zooms if use_zooms else (),
                preset=preset,
                share_format=share_format,
                paper=paper,
                small_pdf=small_pdf,
                **_decision(opened, results),
                stats=st.session_state.get("grid_stats"),
            )
            st.session_state["export"] = (str(out), manifest)
        except OSError as err:
            st.error(f"could not write the sheet to {literal(out)}: {literal(err)}. Pick a writable export folder.")
    if "export" in st.session_state:
        _show(*st.session_state["export"])


def _decision(opened: OpenRun, results: list[zbench.CellResult]) -> dict:
    """The run's decision as the grid shows it, as ``zbench.export_sheet``'s keyword arguments (none when the
    records cannot be read: the Pick a release tab says what is wrong with them)."""
    store = zbench.DecisionStore(opened.run_dir)
    try:
        review, record = store.load(), store.release()
    except zbench.DecisionError:
        return {}
    dec = decision(opened, results, review)  # the grid's signals, from the cache
    return {"release": record, "shortlist": list(dec.shortlist), "ratings": dict(review.ratings), "signals": dec.report}


def _show(out: str, manifest: dict) -> None:
    """The files of the last export: sizes, downloads, and the share image."""
    st.success(f"Exported to {literal(out)}")
    st.code("\n".join(zbench.file_sizes(manifest.get("files", []))), language=None)
    names = [manifest.get(key) for key in TOP_FILES] + [*manifest.get("pages", []), "manifest.json"]
    columns = st.columns(4)
    for i, name in enumerate(n for n in names if n):
        path = Path(out) / name
        if path.is_file():
            columns[i % 4].download_button(
                f"Download {literal(name)}", path.read_bytes(), file_name=path.name, key=f"dl:{out}:{name}"
            )
    preview = Path(out) / (manifest.get("share") or (manifest.get("pages") or [""])[0])
    if preview.is_file():
        st.image(str(preview), caption=literal(preview.name))
