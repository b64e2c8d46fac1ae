"""Exporting a grid: sheet pages as PNG, a PDF, every cell with its parameters, a cells zip and a manifest.

Every file is staged under a temporary name and moved into place at the end, the manifest
last, so an export that fails half-way leaves the previous one whole.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL.PngImagePlugin import PngInfo

from ..engine.plan import CellResult, Row
from .sheet import MAX_SHEET_PIXELS, MAX_SHEET_SIDE, SheetInfo, layout_pages
from .zoom import ZoomSpec

__all__ = ["FORMATS", "cell_parameters", "export_sheet", "write_grid"]

logger = logging.getLogger(__name__)

PDF_DPI = 150
FORMATS = ("png", "pdf")


def cell_parameters(result: CellResult, info: SheetInfo) -> str:
    """A1111-style parameters text, so other tools can read how a cell was made."""
    c, s = result.cell, info.settings
    lora = "none (base)" if c.checkpoint is None else f"{c.checkpoint.name} ({c.checkpoint.hash}) scale {c.scale:g}"
    lines = [c.prompt]
    if s.negative:
        lines.append(f"Negative prompt: {s.negative}")
    lines.append(
        f"Steps: {s.steps}, CFG scale: {s.guidance:g}, Seed: {c.seed}, Size: {s.width}x{s.height}, "
        f"Model: {info.base}, LoRA: {lora}"
    )
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "cell"


def _cell_entry(result: CellResult) -> dict:
    c = result.cell
    return {
        "row": c.row,
        "col": c.col,
        "checkpoint": c.name,
        "label": "base" if c.checkpoint is None else c.checkpoint.label,
        "epoch": None if c.checkpoint is None else c.checkpoint.epoch,
        "step": None if c.checkpoint is None else c.checkpoint.step,
        "hash": None if c.checkpoint is None else c.checkpoint.hash,
        "prompt": c.prompt,
        "seed": c.seed,
        "scale": c.scale,
        "image": None,
        "status": result.status,
        "error": result.error,
        "swap_ms": None if result.swap_ms is None else round(result.swap_ms, 3),
        "render_ms": None if result.render_ms is None else round(result.render_ms, 1),
        "swap_path": result.swap_path,
    }


_OUTPUTS = re.compile(r"sheet(-\d+)?\.png|sheet\.pdf|cells\.zip")
_CELL_FILE = re.compile(r"r\d+_c\d+_.+\.png")


def export_sheet(
    out_dir: str | Path,
    results: Sequence[CellResult],
    rows: Sequence[Row],
    info: SheetInfo,
    *,
    zooms: Sequence[ZoomSpec] = (),
    formats: Sequence[str] = FORMATS,
    zip_cells: bool = True,
    max_pixels: int = MAX_SHEET_PIXELS,
    max_side: int = MAX_SHEET_SIDE,
    stats: Mapping[str, object] | None = None,
) -> dict:
    """Write a grid's sheet pages, PDF, cells, cells zip and manifest into ``out_dir``.

    Files: ``sheet.png`` (or ``sheet-01.png`` … when paginated), ``sheet.pdf`` (every page),
    ``cells/*.png`` (parameters in PNG text chunks "parameters" and "zbench"), ``cells.zip``
    (the cell PNGs and the manifest) and ``manifest.json``.

    Args:
        formats: which sheet files to write: "png", "pdf" or both.
        zip_cells: also write ``cells.zip``.
        max_pixels, max_side: the limits of one page (see ``compose_pages``).
        stats: how the grid was rendered (see ``zbench.measure_grid``), kept as the manifest's "render".

    Returns:
        The manifest that was written.

    Raises:
        ValueError: an unknown format, or limits too small for one row.

    Side effects:
        Every file is written under a temporary name and moved into place at the end, the
        manifest last, so a failed export leaves the previous one intact. Outputs of an earlier
        export that this one did not write again (surplus pages, cells, a PDF or zip) are deleted.
    """
    if not formats or set(formats) - set(FORMATS):
        raise ValueError(f"formats should be a non-empty selection of {FORMATS}, got {tuple(formats)}")
    out = Path(out_dir).expanduser()
    (out / "cells").mkdir(parents=True, exist_ok=True)
    layout = layout_pages(results, rows, info, zooms=zooms, max_pixels=max_pixels, max_side=max_side)
    pages = layout.pages
    digits = max(2, len(str(len(pages))))
    names = ["sheet.png"] if len(pages) == 1 else [f"sheet-{i:0{digits}d}.png" for i in range(1, len(pages) + 1)]
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    staged: list[tuple[Path, Path]] = []  # (temporary, final), moved into place in this order

    def stage(final: Path) -> Path:
        staged.append((final.with_name(f".{final.name}.{token}.tmp"), final))
        return staged[-1][0]

    try:
        # 1. Cells, each with its parameters.
        cells, cell_files = [], []
        for result in sorted(results, key=lambda r: (r.cell.row, r.cell.col)):
            entry = _cell_entry(result)
            if result.image is not None:
                slug = _slug(result.cell.name.removesuffix(".safetensors"))
                rel = f"cells/r{entry['row']:02d}_c{entry['col']:02d}_{slug}.png"
                png = PngInfo()
                png.add_text("parameters", cell_parameters(result, info))
                png.add_text("zbench", json.dumps({k: v for k, v in entry.items() if k != "image"}))
                tmp = stage(out / rel)
                result.image.save(tmp, format="PNG", pnginfo=png)
                cell_files.append((tmp, rel))
                entry["image"] = rel
            cells.append(entry)

        # 2. Pages: drawn one at a time; kept in memory only when the PDF needs them.
        pdf_pages = []
        for i in range(1, len(pages) + 1):
            image = layout.draw(i)
            if "png" in formats:
                image.save(stage(out / names[i - 1]), format="PNG")
            if "pdf" in formats:
                pdf_pages.append(image)
        if pdf_pages:
            # Pillow sizes PDF pages by resolution; viewers refuse pages over 200 inches.
            dpi = max(PDF_DPI, math.ceil(max(max(p.size) for p in pages) / 200))
            pdf_pages[0].save(
                stage(out / "sheet.pdf"),
                format="PDF",
                save_all=True,
                append_images=pdf_pages[1:],
                resolution=dpi,
                title=f"zbench comparison sheet: {info.run}",
                quality=95,  # the PDF driver stores RGB pages as JPEG
                subsampling=0,
            )
            del pdf_pages

        # 3. Manifest, and the zip of cells that carries a copy of it.
        s = info.settings
        png_pages = names if "png" in formats else []
        manifest = {
            "base": info.base,
            "run": info.run,
            "prompts": list(info.prompts),
            "negative": s.negative,
            "seeds": list(info.seeds),
            "scales": list(info.scales),
            "steps": s.steps,
            "guidance": s.guidance,
            "width": s.width,
            "height": s.height,
            "sheet": png_pages[0] if png_pages else None,
            "pages": png_pages,
            "layout": [
                {"page": i, "rows": list(p.rows), "cols": list(p.cols), "width": p.size[0], "height": p.size[1]}
                for i, p in enumerate(pages, start=1)
            ],
            "pdf": "sheet.pdf" if "pdf" in formats else None,
            "zip": "cells.zip" if zip_cells else None,
            "zooms": [z.to_json() for z in zooms],
            "render": dict(stats or {}),
            "cells": cells,
        }
        text = json.dumps(manifest, indent=2)
        if zip_cells:
            with zipfile.ZipFile(stage(out / "cells.zip"), "w") as zf:
                for tmp, rel in cell_files:
                    zf.write(tmp, rel, compress_type=zipfile.ZIP_STORED)  # PNGs are compressed already
                zf.writestr("manifest.json", text, compress_type=zipfile.ZIP_DEFLATED)
        stage(out / "manifest.json").write_text(text)

        # 4. Move everything into place, the manifest last.
        for tmp, final in staged:
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    written = {final for _, final in staged}
    stale = [p for p in out.iterdir() if _OUTPUTS.fullmatch(p.name) and p not in written]
    stale += [p for p in (out / "cells").iterdir() if _CELL_FILE.fullmatch(p.name) and p not in written]
    for path in stale:
        path.unlink(missing_ok=True)
    logger.info("wrote %d page(s) and %d cell(s) to %s", len(pages), len(cell_files), out)
    return manifest


def write_grid(out_dir: str | Path, results: Sequence[CellResult], rows: Sequence[Row], info: SheetInfo) -> dict:
    """Write ``sheet.png`` (or pages), ``cells/*.png`` and ``manifest.json``: ``export_sheet`` without PDF and zip.

    Returns:
        The manifest that was written.
    """
    return export_sheet(out_dir, results, rows, info, formats=("png",), zip_cells=False)
