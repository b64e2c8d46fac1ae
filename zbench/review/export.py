"""Exporting a grid: a share image, an HTML viewer and timelines to post; PNG pages, a PDF, every cell
with its parameters and a cells zip to keep; a manifest that lists every file. With the run's decision
(release, shortlist, ratings, signals: ``export_decision`` reads it) the share image, the viewer and the PDF
mark the released checkpoint, the shortlist and the stars on their columns, and the viewer shows the signals.

Every file is staged under a temporary name and moved into place at the end, the manifest
last, so an export that fails half-way leaves the previous one whole.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL.PngImagePlugin import PngInfo

from ..engine import jsonio
from ..engine.checkpoints import Checkpoint
from ..engine.plan import CellResult, Row
from .decision import DecisionStore
from .gridcells import GridCells
from .pdf import PAPERS, sheet_pdf
from .records import DecisionError
from .share import compose_share, encode_share
from .sheet import MAX_SHEET_PIXELS, MAX_SHEET_SIDE, SheetInfo, layout_pages
from .signals import SignalCache, SignalReport, Signals
from .suggest import decide
from .timeline import ffmpeg_path, timeline_frames, webp_bytes, write_mp4
from .viewer import viewer_html
from .zoom import ZoomSpec

__all__ = ["FORMATS", "PRESETS", "cell_parameters", "export_decision", "export_sheet", "file_sizes", "write_grid"]

logger = logging.getLogger(__name__)

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


_OUTPUTS = re.compile(r"sheet(-\d+)?\.png|sheet\.pdf|cells\.zip|share\.(webp|jpg)|index\.html|timeline\.(webp|mp4)")
_CELL_FILE = re.compile(r"r\d+_c\d+_.+\.png")
_TIMELINE_FILE = re.compile(r"row-\d+(-.+)?\.(webp|mp4)")
PRESETS = ("share", "archive", "both")


class _Staging:
    """Files written under temporary names, moved into place together at the end (the manifest last)."""

    def __init__(self, out: Path):
        self.out, self.token = out, f"{os.getpid()}-{secrets.token_hex(4)}"
        self.files: list[tuple[Path, Path]] = []  # (temporary, final)

    def path(self, rel: str) -> Path:
        final = self.out / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        self.files.append((final.with_name(f".{final.name}.{self.token}.tmp"), final))
        return self.files[-1][0]

    def write(self, rel: str, data: bytes) -> None:
        self.path(rel).write_bytes(data)

    def sizes(self) -> list[dict]:
        return [{"path": str(final.relative_to(self.out)), "bytes": tmp.stat().st_size} for tmp, final in self.files]


def export_sheet(
    out_dir: str | Path,
    results: Sequence[CellResult],
    rows: Sequence[Row],
    info: SheetInfo,
    *,
    zooms: Sequence[ZoomSpec] = (),
    preset: str = "both",
    share_format: str = "webp",
    paper: str = "a4",
    small_pdf: bool = False,
    release: Mapping | None = None,
    shortlist: Sequence[str] = (),
    ratings: Mapping[str, int] | None = None,
    signals: SignalReport | None = None,
    formats: Sequence[str] = FORMATS,
    zip_cells: bool = True,
    max_pixels: int = MAX_SHEET_PIXELS,
    max_side: int = MAX_SHEET_SIDE,
    stats: Mapping[str, object] | None = None,
) -> dict:
    """Export a grid into ``out_dir`` as a preset: a picture to post, an archive, or both.

    - *share*: ``share.webp`` (or ``.jpg``, see ``share.py``: ≤ 4096 px, ≤ 8 MB, bands of columns),
      ``index.html`` (the grid viewer, every image inside), ``timeline.webp`` (the first row played
      epoch by epoch) and ``timelines/row-NN[-zoom].webp`` for every row and zoom panel (plus ``.mp4``
      when ffmpeg is available).
    - *archive*: lossless ``sheet.png`` pages (``sheet-01.png`` … when paginated), ``sheet.pdf``
      (text and native images, see ``pdf.py``), ``cells/*.png`` (parameters in PNG text chunks
      "parameters" and "zbench") and ``cells.zip``.
    - both: all of it. Every preset writes ``manifest.json``, which lists every file with its size.

    Args:
        preset: "share", "archive" or "both".
        share_format: "webp" or "jpg" for the share image.
        paper, small_pdf: the PDF's paper ("a4" or "letter") and JPEG images instead of lossless.
        release: the run's release record (``DecisionStore.release()``): on the PDF's cover and in the viewer's
            and share image's header; its checkpoint's column is marked "released" in all three.
        shortlist: checkpoint names (``Decision.shortlist``) marked "shortlist" on their columns.
        ratings: stars (1-5) by checkpoint name (``Review.ratings``), drawn under the column labels.
        signals: the run's signals (``Decision.report``), a strip under each column label in the viewer.
            None of the four is needed: without them the exports show no decision. See ``export_decision``.
        formats: which archive sheet files to write: "png", "pdf" or both.
        zip_cells: also write ``cells.zip`` (archive).
        max_pixels, max_side: the limits of one sheet page (see ``compose_pages``).
        stats: how the grid was rendered (see ``zbench.measure_grid``), kept as the manifest's "render".

    Returns:
        The manifest that was written.

    Raises:
        ValueError: an unknown preset, format or paper, or limits too small for one row.

    Side effects:
        Every file is written under a temporary name and moved into place at the end, the
        manifest last, so a failed export leaves the previous one intact. Outputs of an earlier
        export that this one did not write again (surplus pages, cells, a PDF or zip) are deleted.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset should be one of {PRESETS}, got {preset!r}")
    if not formats or set(formats) - set(FORMATS):
        raise ValueError(f"formats should be a non-empty selection of {FORMATS}, got {tuple(formats)}")
    if share_format not in ("webp", "jpg") or paper not in PAPERS:
        raise ValueError(
            f"share_format should be webp or jpg and paper one of {sorted(PAPERS)}, got {share_format!r}, {paper!r}"
        )
    archive, share = preset in ("archive", "both"), preset in ("share", "both")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    layout = layout_pages(results, rows, info, zooms=zooms, max_pixels=max_pixels, max_side=max_side)
    pages = layout.pages
    digits = max(2, len(str(len(pages))))
    names = ["sheet.png"] if len(pages) == 1 else [f"sheet-{i:0{digits}d}.png" for i in range(1, len(pages) + 1)]
    staging = _Staging(out)
    manifest: dict = {}
    try:
        cells, cell_files = _cells(staging, results, info, write=archive)
        if archive and "png" in formats:
            for i in range(1, len(pages) + 1):  # one page in memory at a time
                layout.draw(i).save(staging.path(names[i - 1]), format="PNG")
        if archive and "pdf" in formats:
            pdf = sheet_pdf(
                results, rows, info, zooms=zooms, paper=paper, small=small_pdf, release=release,
                shortlist=shortlist, ratings=ratings,
            )  # fmt: skip
            staging.write("sheet.pdf", pdf)
        decision = {"release": release, "shortlist": shortlist, "ratings": ratings}
        shared = _share(staging, results, rows, info, zooms, share_format, decision, signals) if share else {}
        s = info.settings
        png_pages = names if archive and "png" in formats else []
        manifest = {
            "preset": preset,
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
            "pdf": "sheet.pdf" if archive and "pdf" in formats else None,
            "zip": "cells.zip" if archive and zip_cells else None,
            **shared,
            "zooms": [z.to_json() for z in zooms],
            "decision": {
                "release": (release or {}).get("checkpoint"),
                "shortlist": list(shortlist),
                "ratings": dict(ratings or {}),
            },
            "render": dict(stats or {}),
            "cells": cells,
        }
        if archive and zip_cells:  # its copy of the manifest cannot list the zip's own size
            with zipfile.ZipFile(staging.path("cells.zip"), "w") as zf:
                for tmp, rel in cell_files:
                    zf.write(tmp, rel, compress_type=zipfile.ZIP_STORED)  # PNGs are compressed already
                zf.writestr("manifest.json", jsonio.dumps(manifest, indent=2), compress_type=zipfile.ZIP_DEFLATED)
        manifest["files"] = [*staging.sizes(), {"path": "manifest.json", "bytes": None}]
        staging.write("manifest.json", jsonio.dumps(manifest, indent=2).encode())
        for tmp, final in staging.files:
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in staging.files:
            tmp.unlink(missing_ok=True)
        raise
    _remove_stale(out, {final for _, final in staging.files})
    logger.info("wrote %d file(s) to %s (%s)", len(staging.files), out, preset)
    return manifest


def _cells(staging: _Staging, results: Sequence[CellResult], info: SheetInfo, *, write: bool):
    """Every cell's manifest entry; with ``write``, its PNG with its parameters in text chunks."""
    cells, files = [], []
    for result in sorted(results, key=lambda r: (r.cell.row, r.cell.col)):
        entry = _cell_entry(result)
        if write and result.image is not None:
            slug = _slug(result.cell.name.removesuffix(".safetensors"))
            rel = f"cells/r{entry['row']:02d}_c{entry['col']:02d}_{slug}.png"
            png = PngInfo()
            # A file name undecodable as UTF-8 (os.listdir keeps it as lone surrogates) cannot go into an
            # iTXt chunk: "?" stands for it there ("zbench" holds it exactly, JSON-escaped).
            png.add_text("parameters", cell_parameters(result, info).encode("utf-8", "replace").decode("utf-8"))
            png.add_text("zbench", jsonio.dumps({k: v for k, v in entry.items() if k != "image"}))
            tmp = staging.path(rel)
            result.image.save(tmp, format="PNG", pnginfo=png)
            files.append((tmp, rel))
            entry["image"] = rel
        cells.append(entry)
    return cells, files


def _share(staging: _Staging, results, rows, info, zooms, share_format: str, decision: dict, signals) -> dict:
    """The share image, the HTML viewer and the timelines; their manifest fields (``decision``: the release,
    shortlist and ratings arguments of ``export_sheet``)."""
    image = compose_share(results, rows, info, zooms=zooms, **decision)
    staging.write(f"share.{share_format}", encode_share(image, share_format))
    staging.write("index.html", viewer_html(results, rows, info, zooms, **decision, signals=signals).encode("utf-8"))
    grid = GridCells(results, rows, info)
    ffmpeg = ffmpeg_path()
    timelines = []
    for r in range(len(grid.rows)):
        for zoom in [None, *zooms]:
            frames = timeline_frames(grid, r, zoom)
            name = f"timelines/row-{r + 1:02d}" + (f"-{_slug(zoom.box.name)}" if zoom else "")
            data = webp_bytes(frames)
            staging.write(f"{name}.webp", data)
            timelines.append(f"{name}.webp")
            if r == 0 and zoom is None:
                staging.write("timeline.webp", data)
            if ffmpeg:
                try:
                    write_mp4(staging.path(f"{name}.mp4"), frames, ffmpeg)
                    timelines.append(f"{name}.mp4")
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
                    staging.files.pop()
                    logger.warning("no MP4 for %s: %s", name, err)
    return {
        "share": f"share.{share_format}",
        "share_size": list(image.size),
        "html": "index.html",
        "timeline": "timeline.webp",
        "timelines": timelines,
    }


def export_decision(
    run: Sequence[Checkpoint],
    results: Sequence[CellResult],
    *,
    signals: Signals | None = None,
    cache: SignalCache | None = None,
    size: int = 6,
) -> dict:
    """The run's decision as ``export_sheet``'s keyword arguments: ``release``, ``shortlist``, ``ratings``, ``signals``.

    Reads the release record and the review beside the run (``DecisionStore``) and computes the signals of
    ``results`` and the shortlist as the Pick a release tab does (``decide``).

    Args:
        run: the run's checkpoints (their folder holds the records).
        results: the grid's cells, the signals' images.
        signals, cache, size: as ``decide`` takes them (which signals, where they are kept, the shortlist's size).

    Returns:
        The four arguments; a run without records gives no release and no ratings, and records that cannot be
        read give none of the four (a warning says why; the page's Pick a release tab says how to fix them).
    """
    usable = [c for c in run if c.error is None]
    if not usable:
        return {}
    store = DecisionStore(usable[0].run_dir)
    try:
        review, release = store.load(), store.release()
    except DecisionError as err:
        logger.warning("the decision is not on the sheet: %s", err)
        return {}
    ready = [r for r in results if r.status != "pending"]
    dec = decide(run, ready, review, signals=signals, cache=cache, size=size)
    return {
        "release": release,
        "shortlist": list(dec.shortlist),
        "ratings": dict(review.ratings),
        "signals": dec.report,
    }


def _remove_stale(out: Path, written: set[Path]) -> None:
    """Outputs of an earlier export into the same folder that this one did not write again."""
    stale = [p for p in out.iterdir() if _OUTPUTS.fullmatch(p.name) and p not in written]
    for folder, pattern in (("cells", _CELL_FILE), ("timelines", _TIMELINE_FILE)):
        if (out / folder).is_dir():
            stale += [p for p in (out / folder).iterdir() if pattern.fullmatch(p.name) and p not in written]
    for path in stale:
        path.unlink(missing_ok=True)
    if (out / "timelines").is_dir() and not any((out / "timelines").iterdir()):
        (out / "timelines").rmdir()


def file_sizes(files: Sequence[Mapping]) -> list[str]:
    """A manifest's files as lines "name  1.2 MB", the cell PNGs summed."""
    lines, cells = [], [f["bytes"] for f in files if f["path"].startswith("cells/")]
    for f in files:
        if not f["path"].startswith("cells/") and f["bytes"] is not None:
            lines.append(f"{f['path']:<28} {_human(f['bytes'])}")
    if cells:
        lines.append(f"{'cells/*.png':<28} {_human(sum(cells))} ({len(cells)} files)")
    return lines


def _human(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


def write_grid(out_dir: str | Path, results: Sequence[CellResult], rows: Sequence[Row], info: SheetInfo) -> dict:
    """Write ``sheet.png`` (or pages), ``cells/*.png`` and ``manifest.json``: ``export_sheet`` without PDF and zip.

    Returns:
        The manifest that was written.
    """
    return export_sheet(out_dir, results, rows, info, preset="archive", formats=("png",), zip_cells=False)
