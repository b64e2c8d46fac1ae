"""The HTML viewer: one self-contained ``index.html`` that shows a grid the way the bench page does.

Sticky checkpoint and row labels, a cell-size control, synced zoom and pan over every cell, and a
large view with arrow keys to flip through epochs, for someone who has no zbench. With the run's
decision it shows what the page shows on the column labels: the "release" and "shortlist" marks, the
stars, and the signal strip (a bar per signal, green the best of the run, red the worst). Images are
embedded (lossless WebP), the script and styles inlined from ``web/``, and a Content-Security-Policy
forbids any network request, so the file works offline and leaks nothing.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..engine import jsonio
from ..engine.plan import CellResult, Row
from .drawing import column_text, one_line
from .gridcells import GridCells
from .marks import column_marks
from .share import header_lines, release_line, share_title
from .signals import BASE, SignalReport
from .zoom import ZoomSpec

__all__ = ["script_json", "viewer_html"]

WEB = Path(__file__).resolve().parent / "web"
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body class="zb">
<div id="zbench"></div>
<script type="application/json" id="zbench-data">{data}</script>
<script>{js}</script>
<script>zbenchGrid(document.getElementById("zbench"),
  JSON.parse(document.getElementById("zbench-data").textContent));</script>
</body>
</html>
"""


def _data_uri(image) -> str:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="WEBP", lossless=True, method=4)
    return "data:image/webp;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def viewer_html(
    results: Sequence[CellResult],
    rows: Sequence[Row],
    info,
    zooms: Sequence[ZoomSpec] = (),
    *,
    release: Mapping | None = None,
    shortlist: Sequence[str] = (),
    ratings: Mapping[str, int] | None = None,
    signals: SignalReport | None = None,
) -> str:
    """The viewer page of a grid, every image embedded, its zoom panels under the grid.

    Args:
        release: the run's release record (``DecisionStore.release()``): its checkpoint's column is marked
            "release" and the header says who released it when.
        shortlist: checkpoint names marked "shortlist".
        ratings: stars (1-5) by checkpoint name.
        signals: the run's signals (``Decision.report``): a strip of them under each column label.
    """
    grid = GridCells(results, rows, info)
    strip = signals.strip() if signals is not None else {"signals": [], "values": {}}
    columns = []
    for col in grid.cols:
        ck = grid.checkpoints[col]
        label, name, digest = ("base", "LoRA off", "") if ck is None else column_text(ck)  # as the page says it
        marks = column_marks(ck, release=release, shortlist=shortlist, ratings=ratings)
        columns.append(
            {
                "label": label,
                "name": name,
                "hash": digest,
                "epoch": None if ck is None else ck.epoch,  # for the compact header ("e12" over "s2400")
                "step": None if ck is None else ck.step,
                "stars": marks.stars,
                "release": marks.release,
                "short": marks.short,
                "signals": strip["values"].get(BASE if ck is None else ck.name),
            }
        )
    cells = []
    for r in range(len(grid.rows)):
        line = []
        for col in grid.cols:
            result = grid.by_pos.get((r, col))
            if result is not None and result.image is not None:
                line.append({"src": _data_uri(result.image), "status": "ok", "error": None})
            else:
                status = "pending" if result is None else result.status
                line.append({"src": None, "status": status, "error": None if result is None else result.error})
        cells.append(line)
    w, h = grid.image_size
    header = header_lines(info)
    if (line := release_line(release)) is not None:
        reason = release.get("reason")
        header.append(f"{line}: {reason}" if isinstance(reason, str) and reason else line)
    data = {
        "title": share_title(info),
        "header": header,
        "columns": columns,
        "rows": [grid.row_label(r) for r in range(len(grid.rows))],
        "cells": cells,
        "panels": [z.box.to_json() for z in zooms],
        "aspect": h / w,
        "imageWidth": w,
        "signals": strip["signals"],
    }
    return _PAGE.format(
        title=_escape(one_line(share_title(info), limit=300)),  # one line, no NUL or lone surrogate
        css=(WEB / "grid.css").read_text(encoding="utf-8"),
        js=(WEB / "grid.js").read_text(encoding="utf-8"),
        data=script_json(data),
    )


# Characters of JSON text written as \uXXXX escapes inside the page's <script> data block: "<" and ">"
# ("</script>" would end the block, "<!--" would change how the HTML parser reads up to its end), "&",
# U+2028/U+2029 (line ends to older JavaScript), and lone surrogates (an undecodable file name), which
# UTF-8 cannot hold. JSON.parse and json.loads turn every escape back into the character.
_UNSAFE_IN_SCRIPT = re.compile("[<>&\u2028\u2029\ud800-\udfff]")


def script_json(data) -> str:
    """``data`` as JSON text that can sit inside an HTML ``<script>`` element and parses back to ``data``."""
    text = jsonio.dumps(data, ensure_ascii=False)
    return _UNSAFE_IN_SCRIPT.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
