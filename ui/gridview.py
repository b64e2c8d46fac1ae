"""The grid on the page: one custom component (Streamlit Components v2) that draws every cell.

The JavaScript and styles are zbench's own grid (``zbench/review/web/``), the same code the exported
``index.html`` runs: cells that fit every column in the width (or a chosen size), sticky labels, synced zoom
and pan, drag-a-box panels, a large view with arrow keys and 1-5 to rate. Python sends labels, image URLs and
the view to start from; the component sends back events (a box drawn, a panel removed, a rating) and its
view (cell size, transpose, zoom). Images travel as lossless PNG through Streamlit's media files (a URL
each, cached by the browser), not inside the component's data.
"""

from __future__ import annotations

import base64
import io
import threading
from collections import OrderedDict
from pathlib import Path

import streamlit as st

import zbench

WEB = Path(zbench.__file__).resolve().parent / "review" / "web"
_JS = (
    (WEB / "grid.js").read_text(encoding="utf-8")
    + """
export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  let root = parentElement.querySelector(".zb-root");
  if (!root) {
    root = document.createElement("div");
    root.className = "zb-root";
    parentElement.appendChild(root);
  }
  // Media URLs are absolute paths ("/media/..."); resolve them against the app's own location.
  const base = window.location.href.replace(/[?#].*$/, "").replace(/[^/]*$/, "");
  for (const line of data.cells) {
    for (const cell of line) {
      if (cell.src && cell.src.startsWith("/media/")) cell.src = base + cell.src.slice(1);
    }
  }
  // The grid's box may use the main column's side padding (Streamlit's wide layout keeps 5rem each side): a
  // 30-checkpoint run needs every pixel of a 1280 px window. Without that column, no bleed.
  const bleed = () => {
    const main = document.querySelector('[data-testid="stMain"]');
    if (!main || !root.isConnected) return [0, 0];
    const m = main.getBoundingClientRect();
    const r = root.getBoundingClientRect();
    return [Math.max(0, r.left - m.left), Math.max(0, m.left + main.clientWidth - r.right)];
  };
  zbenchGrid(root, data, (event) => setTriggerValue("event", event), { bleed });
}
"""
)
GRID = st.components.v2.component("zbench.grid", css=(WEB / "grid.css").read_text(encoding="utf-8"), js=_JS)

_PNG: OrderedDict[int, tuple[object, bytes]] = OrderedDict()  # id(image) -> (image, its PNG), newest last
_PNG_BUDGET = 512 * 2**20
_PNG_LOCK = threading.Lock()


def _png(image) -> bytes:
    """The image as PNG, encoded once per image object (the grid re-sends URLs on every rerun)."""
    with _PNG_LOCK:
        hit = _PNG.get(id(image))
        if hit is not None and hit[0] is image:
            _PNG.move_to_end(id(image))
            return hit[1]
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)  # lossless; fast to encode, the browser caches it
    data = out.getvalue()
    with _PNG_LOCK:
        _PNG[id(image)] = (image, data)
        while sum(len(v[1]) for v in _PNG.values()) > _PNG_BUDGET and len(_PNG) > 1:
            _PNG.popitem(last=False)
    return data


def image_url(image, coordinates: str) -> str:
    """A URL the browser can load the image from: a Streamlit media file, or inline where there is no server."""
    data = _png(image)
    from streamlit import runtime

    if runtime.exists():
        return runtime.get_instance().media_file_mgr.add(data, "image/png", coordinates)
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def grid_data(
    results: list[zbench.CellResult],
    plan,
    *,
    ratings: dict[str, int],
    release: str | None,
    zooms: list[zbench.ZoomSpec],
    signals: dict | None = None,
) -> dict:
    """What the component draws: columns (labels, stars, signal strip, shortlist mark), rows, cells (URL or
    status), panels. ``signals`` is ``ui.signals.strip``'s output (None: no strip)."""
    request = plan.request
    columns: dict[int, zbench.Checkpoint | None] = {}
    for r in results:
        columns.setdefault(r.cell.col, r.cell.checkpoint)
    cols = sorted(columns)
    rows = [
        row.label(prompts=len(request.prompts), seeds=len(request.seeds), scales=len(request.scales))
        for row in plan.rows
    ]
    by_pos = {(r.cell.row, r.cell.col): r for r in results}
    cells = []
    for i in range(len(rows)):
        line = []
        for j, col in enumerate(cols):
            result = by_pos.get((i, col))
            if result is not None and result.image is not None:
                line.append({"src": image_url(result.image, f"zbench.grid.{i}.{j}"), "status": "ok", "error": None})
            else:
                status = "pending" if result is None else result.status
                line.append({"src": None, "status": status, "error": None if result is None else result.error})
        cells.append(line)
    out_columns = []
    strip = (signals or {}).get("values", {})
    shortlist = set((signals or {}).get("shortlist", []))
    for col in cols:
        ck = columns[col]
        label, name = _labels(ck)
        key = "base" if ck is None else ck.name
        out_columns.append(
            {
                "label": label,
                "name": name,
                "hash": "" if ck is None or not ck.hash_read else f"sha256 {ck.hash_read}",
                "adapter": None if ck is None else ck.adapter_text,  # "LoKr · factor 8 · …" on hover
                "stars": None if ck is None else ratings.get(ck.name),
                "release": ck is not None and ck.name == release,
                "rateable": ck is not None and ck.error is None,
                "checkpoint": None if ck is None else ck.name,
                "epoch": None if ck is None else ck.epoch,  # for the compact header ("e12" over "s2400")
                "step": None if ck is None else ck.step,
                "signals": strip.get(key),
                "short": ck is not None and ck.name in shortlist,
            }
        )
    w, h = request.settings.width, request.settings.height
    return {
        "columns": out_columns,
        "rows": rows,
        "cells": cells,
        "aspect": h / w,
        "imageWidth": w,
        "panels": [{"name": z.box.name, **{k: getattr(z.box, k) for k in "xywh"}} for z in zooms],
        "signals": (signals or {}).get("signals", []),
    }


def _labels(ck: zbench.Checkpoint | None) -> tuple[str, str]:
    """A column's label (short, so a narrow column keeps it) and the line under it."""
    if ck is None:
        return "base", "LoRA off"
    if ck.epoch is not None and ck.step is not None:
        return f"epoch {ck.epoch}", f"step {ck.step} · {ck.name}"
    return ck.label, ck.name


def show_grid(data: dict, *, key: str | None, on_event=None):
    """Mount (or update) the grid; with a key it is interactive: ``on_event`` runs when it sends an event."""
    if key is None:
        return GRID(data=data, height="content")
    return GRID(key=key, data=data, height="content", on_event_change=on_event or (lambda: None))
