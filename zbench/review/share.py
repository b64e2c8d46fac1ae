"""The share image: one picture of a grid that can be posted as it is (Discord, Civitai, a forum).

Rules it keeps: at most 4096 px on its longest side and 8 MB; a large title (run and base model);
prompt, seeds and settings in a header whose text is at least 2% of the image's height; checkpoint
labels at least 16 px tall; no local paths (the run is named by its folder); a wide grid wraps into
bands of at most 8 columns, each led by the base column; zoom strips sit under their columns, one
crop per column at the column's width.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from ..engine.plan import CellResult, Row
from .drawing import BG, ERR, FG, MUTED, PAD, column_text, draw_text, fit, fit_label, text_font, wrap
from .gridcells import GridCells
from .zoom import ZoomSpec

__all__ = ["SHARE_MAX_BYTES", "SHARE_MAX_SIDE", "compose_share", "encode_share", "header_lines", "share_title"]

SHARE_MAX_SIDE = 4096  # px: what chat apps and forums show without downscaling it to mush
SHARE_MAX_BYTES = 8 * 2**20  # Discord's upload limit without Nitro
HEADER_SHARE = 0.02  # header text height, as a share of the image height
MIN_LABEL = 16  # px, checkpoint labels
PLACEHOLDER = (238, 232, 232)


def share_title(info) -> str:
    """The run named by its folder (never a local path) and the base model."""
    return f"{Path(info.run).name or info.run} · {info.base}"


def header_lines(info) -> list[str]:
    """Prompt, negative and settings for a header, without local paths."""
    s = info.settings
    prompts = info.prompts
    lines = [f"prompt: {prompts[0]}"] if len(prompts) == 1 else [f"prompt {i}: {p}" for i, p in enumerate(prompts, 1)]
    if s.negative:
        lines.append(f"negative: {s.negative}")
    scales = ", ".join(f"{x:g}" for x in info.scales)
    lines.append(
        f"seed {', '.join(map(str, info.seeds))} · {s.steps} steps · guidance {s.guidance:g} · "
        f"{s.width}x{s.height} · LoRA scale {scales}"
    )
    return lines


@dataclass(frozen=True)
class _Layout:
    cw: int
    ch: int
    title: object  # fonts
    header: object
    label: object
    small: object
    row_label_w: int
    header_lines: list[str]
    strip_heights: list[int]  # one per zoom: crop height at the column width
    size: tuple[int, int]

    @property
    def col_label_h(self) -> int:
        return PAD + self.label.size + 4 + self.small.size + PAD

    def band_height(self, rows: int) -> int:
        strips = sum(rows * (self.small.size + 4 + h + PAD) for h in self.strip_heights)
        return self.col_label_h + rows * (self.ch + PAD) + (PAD + strips if strips else 0) + 2 * PAD


def _layout(grid: GridCells, zooms: Sequence[ZoomSpec], bands: list[list[int]], max_side: int) -> _Layout:
    """Cell size and fonts so that the image fits ``max_side`` with the header at 2% of its height."""
    w, h = grid.image_size
    k = max(len(b) for b in bands)
    rows = len(grid.rows)
    scale = 1.0
    while True:
        cw, ch = max(16, round(w * scale)), max(16, round(h * scale))
        label = text_font(max(MIN_LABEL, round(cw / 13)))
        small = text_font(max(12, round(label.size * 0.7)))
        row_label_w = max(6 * label.size, min(360, round(cw * 0.6)))
        width = row_label_w + k * (cw + PAD) + PAD
        strip_heights = []
        for z in zooms:
            left, top, right, bottom = z.box.pixels(w, h)
            strip_heights.append(max(8, round(cw * (bottom - top) / (right - left))))
        size_f = 18
        for _ in range(8):  # the header's text height depends on the image's height, which depends on it
            header, title = text_font(size_f), text_font(round(size_f * 1.6))
            lines = [x for line in header_lines(grid.info) for x in wrap(header, line, width - 2 * PAD, 4)]
            lay = _Layout(cw, ch, title, header, label, small, row_label_w, lines, strip_heights, (width, 0))
            height = (
                2 * PAD + title.size + PAD + len(lines) * round(header.size * 1.3) + PAD
                + len(bands) * lay.band_height(rows)
            )  # fmt: skip
            want = max(18, math.ceil(HEADER_SHARE * height))
            if want <= size_f:
                break
            size_f = want
        lay = _Layout(cw, ch, title, header, label, small, row_label_w, lines, strip_heights, (width, height))
        if max(width, height) <= max_side or cw <= 16:
            return lay
        scale *= 0.92


def compose_share(
    results: Sequence[CellResult],
    rows: Sequence[Row],
    info,
    *,
    zooms: Sequence[ZoomSpec] = (),
    max_side: int = SHARE_MAX_SIDE,
) -> Image.Image:
    """Draw the share image (see the module docstring for its rules)."""
    grid = GridCells(results, rows, info)
    bands = grid.bands()
    lay = _layout(grid, zooms, bands, max_side)
    image = Image.new("RGB", lay.size, BG)
    draw = ImageDraw.Draw(image)
    y = 2 * PAD
    draw_text(draw, (PAD, y), fit(lay.title, share_title(info), lay.size[0] - 2 * PAD), font=lay.title, fill=FG)
    y += lay.title.size + PAD
    for line in lay.header_lines:
        draw_text(draw, (PAD, y), line, font=lay.header, fill=FG)
        y += round(lay.header.size * 1.3)
    y += PAD
    for band in bands:
        y = _draw_band(image, draw, grid, lay, band, zooms, y)
    return image


def _draw_band(image, draw, grid: GridCells, lay: _Layout, band: list[int], zooms, y: int) -> int:
    x0 = lay.row_label_w
    draw.line([(PAD, y), (lay.size[0] - PAD, y)], fill=MUTED)
    y += PAD
    for j, col in enumerate(band):
        label, name = _short_label(grid.checkpoints[col])
        x = x0 + j * (lay.cw + PAD)
        draw_text(draw, (x, y), fit_label(lay.label, label, lay.cw), font=lay.label, fill=FG)
        draw_text(draw, (x, y + lay.label.size + 4), fit(lay.small, name, lay.cw), font=lay.small, fill=MUTED)
    y += lay.col_label_h - PAD
    for r in range(len(grid.rows)):
        limit = max(1, lay.ch // (lay.label.size + 4))
        for n, line in enumerate(wrap(lay.label, grid.row_label(r), lay.row_label_w - 2 * PAD, limit)):
            draw_text(draw, (PAD, y + n * (lay.label.size + 4)), line, font=lay.label, fill=FG)
        for j, col in enumerate(band):
            _draw_cell(image, draw, lay, grid.by_pos.get((r, col)), (x0 + j * (lay.cw + PAD), y), (lay.cw, lay.ch))
        y += lay.ch + PAD
    if zooms:
        y += PAD
    for zoom, height in zip(zooms, lay.strip_heights, strict=True):
        for r in range(len(grid.rows)):
            caption = f"{zoom.box.name} · {grid.row_label(r)}"
            draw_text(draw, (x0, y), fit(lay.small, caption, lay.size[0] - x0 - PAD), font=lay.small, fill=MUTED)
            y += lay.small.size + 4
            for j, col in enumerate(band):
                result = grid.by_pos.get((r, col))
                crop = None
                if result is not None and result.image is not None:
                    crop = result.image.convert("RGB").crop(zoom.box.pixels(*result.image.size))
                _draw_cell(image, draw, lay, result, (x0 + j * (lay.cw + PAD), y), (lay.cw, height), crop)
            y += height + PAD
    return y + PAD


def _short_label(ck) -> tuple[str, str]:
    """The column label in large type (the epoch, or the step) and the rest in small type."""
    label, name, _ = column_text(ck)
    if ck is not None and ck.epoch is not None and ck.step is not None:
        return f"epoch {ck.epoch}", f"step {ck.step} · {name}"
    return label, name


def _draw_cell(image, draw, lay: _Layout, result, at: tuple[int, int], size: tuple[int, int], crop=None) -> None:
    x, y = at
    picture = crop if crop is not None else (result.image if result is not None else None)
    if picture is not None:
        upscale = size[0] > picture.width  # enlarge crops by whole pixels, shrink images smoothly
        resample = Image.Resampling.NEAREST if upscale else Image.Resampling.LANCZOS
        image.paste(picture.convert("RGB").resize(size, resample), (x, y))
        return
    draw.rectangle([x, y, x + size[0] - 1, y + size[1] - 1], fill=PLACEHOLDER, outline=ERR)
    if result is not None:
        lines = max(1, (size[1] - 8) // (lay.small.size + 2))
        text = result.status if result.status != "error" else f"error: {result.error or ''}"
        for i, line in enumerate(wrap(lay.small, text, size[0] - 8, lines)):
            draw_text(draw, (x + 4, y + 4 + i * (lay.small.size + 2)), line, font=lay.small, fill=ERR)


def encode_share(image: Image.Image, fmt: str = "webp", *, max_bytes: int = SHARE_MAX_BYTES) -> bytes:
    """The image as WebP or JPEG (4:4:4 chroma: colour bleeding is what people judge) under ``max_bytes``.

    Lowers the quality first (down to 70), then the size, until it fits.

    Raises:
        ValueError: an unknown format.
    """
    if fmt not in ("webp", "jpg"):
        raise ValueError(f"the share image format should be 'webp' or 'jpg', got {fmt!r}")
    picture = image.convert("RGB")
    while True:
        for quality in (92, 86, 80, 75, 70):
            out = io.BytesIO()
            if fmt == "webp":
                picture.save(out, format="WEBP", quality=quality, method=6)
            else:
                picture.save(out, format="JPEG", quality=quality, subsampling=0, optimize=True)
            if out.tell() <= max_bytes:
                return out.getvalue()
        picture = picture.resize((round(picture.width * 0.85), round(picture.height * 0.85)), Image.Resampling.LANCZOS)
