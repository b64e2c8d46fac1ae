"""Comparison sheets: a labelled grid PNG, the cells with their parameters, and a manifest.

Layout: a header with base model, run, prompt(s), seeds and settings; a column per
checkpoint labelled with epoch/step, file name and hash; a row per prompt × seed × scale.
Error cells show their message in place of the image, so a sheet always tells the whole story.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from .render import CellResult, RenderSettings, Row

__all__ = ["SheetInfo", "compose_sheet", "write_grid"]

# Keep sheets openable by Pillow elsewhere: its decompression-bomb warning starts at ~89 Mpx.
MAX_SHEET_PIXELS = 80_000_000
PAD = 8
BG, FG, MUTED, ERR = (250, 250, 250), (20, 20, 20), (110, 110, 110), (180, 30, 30)


@dataclass(frozen=True)
class SheetInfo:
    """What the header of a sheet says."""

    base: str
    run: str
    settings: RenderSettings
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    scales: tuple[float, ...]

    def lines(self) -> list[str]:
        s = self.settings
        prompts = " | ".join(self.prompts)
        lines = [f"base: {self.base}    run: {self.run}", f"prompt: {prompts}"]
        if s.negative:
            lines.append(f"negative: {s.negative}")
        lines.append(
            f"seed: {', '.join(map(str, self.seeds))}    steps: {s.steps}    guidance: {s.guidance:g}    "
            f"size: {s.width}x{s.height}    LoRA scale: {', '.join(f'{x:g}' for x in self.scales)}"
        )
        return lines


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _text_width(font, text: str) -> int:
    return int(font.getlength(text))


def _fit(font, text: str, width: int) -> str:
    """Shorten text with an ellipsis so it fits in ``width`` pixels."""
    if _text_width(font, text) <= width:
        return text
    while text and _text_width(font, text + "…") > width:
        text = text[:-1]
    return text + "…"


def _wrap(font, text: str, width: int, lines: int) -> list[str]:
    """Greedy word wrap by pixel width; the last allowed line gets an ellipsis if text remains."""
    out: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if _text_width(font, trial) <= width or not current:
            current = trial
        else:
            out.append(current)
            current = word
    if current:
        out.append(current)
    if len(out) > lines:
        out = [*out[: lines - 1], " ".join(out[lines - 1 :])]
    return [_fit(font, line, width) for line in out]


def compose_sheet(results: Sequence[CellResult], rows: Sequence[Row], info: SheetInfo) -> Image.Image:
    """Draw the labelled grid of a render as one image.

    Args:
        results: one per cell, in any order (placed by their row and column).
        rows: the grid's rows, for the row labels.
    """
    s = info.settings
    ncols = 1 + max(r.cell.col for r in results)
    columns = {r.cell.col: r for r in results}  # any row's cell names the column's checkpoint
    # Scale cells down only as far as needed to keep the sheet under MAX_SHEET_PIXELS.
    scale = min(1.0, (MAX_SHEET_PIXELS / max(1, len(rows) * ncols * s.width * s.height)) ** 0.5)
    cw, ch = max(64, int(s.width * scale)), max(64, int(s.height * scale))
    small, body, title = _font(max(11, cw // 22)), _font(max(12, cw // 18)), _font(max(14, cw // 14))
    row_label_w = min(280, max(120, cw // 2))
    header_lines = info.lines()
    header_h = PAD * 2 + (title.size + 4) + len(header_lines) * (body.size + 4)
    col_label_h = PAD + body.size + 4 + 2 * (small.size + 3)
    width = row_label_w + ncols * (cw + PAD) + PAD
    height = header_h + col_label_h + len(rows) * (ch + PAD) + PAD
    sheet = Image.new("RGB", (width, height), BG)
    draw = ImageDraw.Draw(sheet)

    y = PAD
    draw.text((PAD, y), "zbench comparison sheet", font=title, fill=FG)
    y += title.size + 4
    for line in header_lines:
        draw.text((PAD, y), _fit(body, line, width - 2 * PAD), font=body, fill=FG)
        y += body.size + 4

    for col, result in sorted(columns.items()):
        x = row_label_w + col * (cw + PAD)
        ck = result.cell.checkpoint
        label = "base (LoRA off)" if ck is None else ck.label
        name = "" if ck is None else ck.name
        digest = "" if ck is None or not ck.hash else f"sha256 {ck.hash}"
        yy = header_h
        draw.text((x, yy), _fit(body, label, cw), font=body, fill=FG)
        yy += body.size + 4
        draw.text((x, yy), _fit(small, name, cw), font=small, fill=MUTED)
        draw.text((x, yy + small.size + 3), _fit(small, digest, cw), font=small, fill=MUTED)

    nprompts, nseeds, nscales = len(info.prompts), len(info.seeds), len(info.scales)
    for r, row in enumerate(rows):
        y = header_h + col_label_h + r * (ch + PAD)
        label = row.label(prompts=nprompts, seeds=nseeds, scales=nscales)
        limit = max(1, ch // (body.size + 3))
        for i, line in enumerate(_wrap(body, label, row_label_w - 2 * PAD, limit)):
            draw.text((PAD, y + i * (body.size + 3)), line, font=body, fill=FG)

    for result in results:
        x = row_label_w + result.cell.col * (cw + PAD)
        y = header_h + col_label_h + result.cell.row * (ch + PAD)
        if result.image is not None:
            sheet.paste(result.image.convert("RGB").resize((cw, ch), Image.Resampling.LANCZOS), (x, y))
        else:
            draw.rectangle([x, y, x + cw - 1, y + ch - 1], fill=(238, 232, 232), outline=ERR)
            limit = max(1, (ch - 8) // (small.size + 2))
            message = _wrap(small, f"{result.status}: {result.error or ''}", cw - 8, limit)
            for i, line in enumerate(message):
                draw.text((x + 4, y + 4 + i * (small.size + 2)), line, font=small, fill=ERR)
    return sheet


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


def write_grid(out_dir: str | Path, results: Sequence[CellResult], rows: Sequence[Row], info: SheetInfo) -> dict:
    """Write ``sheet.png``, ``cells/*.png`` (parameters in a PNG text chunk) and ``manifest.json``.

    Returns:
        The manifest that was written.
    """
    out = Path(out_dir)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    cells = []
    for result in sorted(results, key=lambda r: (r.cell.row, r.cell.col)):
        c = result.cell
        entry = {
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
        if result.image is not None:
            rel = f"cells/r{c.row:02d}_c{c.col:02d}_{_slug(c.name.removesuffix('.safetensors'))}.png"
            png = PngInfo()
            png.add_text("parameters", cell_parameters(result, info))
            png.add_text("zbench", json.dumps({k: v for k, v in entry.items() if k != "image"}))
            result.image.save(out / rel, pnginfo=png)
            entry["image"] = rel
        cells.append(entry)
    compose_sheet(results, rows, info).save(out / "sheet.png")
    s = info.settings
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
        "sheet": "sheet.png",
        "cells": cells,
    }
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(out / "manifest.json")
    return manifest
