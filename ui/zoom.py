"""Crop-zoom panels: a region picked with sliders, enlarged for every checkpoint side by side; kept panels."""

from __future__ import annotations

import streamlit as st

import zbench

from .text import literal


def zoom_panels(results: list[zbench.CellResult], rows: list[zbench.Row]) -> list[zbench.ZoomSpec]:
    """The Zoom tab. Never renders: strips are cut from the grid's images.

    Returns:
        The kept panels (they live in the session, and go into exports).
    """
    zooms: list[zbench.ZoomSpec] = st.session_state.setdefault("zooms", [])
    usable = [r for r in results if r.image is not None]
    if not usable:
        st.info("Nothing rendered yet to zoom into.")
        return zooms
    pick, view = st.columns([1, 3])
    with pick:
        st.markdown("**Region** (in % of the image)")
        zx = st.slider("left", 0, 95, 35, key="zx")
        zy = st.slider("top", 0, 95, 35, key="zy")
        zw = st.slider("width", 5, 100 - zx, min(30, 100 - zx), key="zw")
        zh = st.slider("height", 5, 100 - zy, min(30, 100 - zy), key="zh")
        factor = st.select_slider("Enlarge", options=[2, 3, 4, 5, 6, 7, 8], value=4, key="zfactor")
        method = st.radio("Upscaling", ["nearest", "smooth"], horizontal=True, key="zmethod")
        zname = st.text_input("Panel name", f"region {len(zooms) + 1}", key="zname")
        box = zbench.ZoomBox(zname.strip() or "region", zx / 100, zy / 100, zw / 100, zh / 100)
        current = zbench.ZoomSpec(box, factor, method)
        if st.button("Keep this panel"):
            zooms.append(current)
            del st.session_state["zname"]  # the next panel gets the next default name
            st.rerun()
        reference = usable[-1].image
        st.image(zbench.draw_boxes(reference, [z.box for z in [*zooms, current]]), caption="where")
    with view:
        for i, spec in enumerate([current, *zooms]):
            title = "current region" if i == 0 else f"panel {literal(spec.box.name)}"
            top = st.columns([4, 1])
            top[0].markdown(f"**{title}** · ×{spec.factor} {spec.method}")
            if i > 0 and top[1].button("Remove", key=f"rm{i}"):
                zooms.pop(i - 1)
                st.rerun()
            for r in range(len(rows)):
                strip = zbench.zoom_strip(
                    results, spec.box, row=r, factor=spec.factor, method=spec.method, max_width=2400
                )
                st.image(strip, width="content")
    return zooms
