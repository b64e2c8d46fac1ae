"""Epoch timelines: one grid row (or one zoom region of it) played as an animation, checkpoint by checkpoint.

What a trainer watches for is growth: the style arriving epoch by epoch, then overcooking. A
timeline shows it as motion: the base first (held), then every checkpoint in training order, each
frame labelled with its epoch or step, the last one held. Written as an animated WebP (every
browser and chat app plays it) and, when ffmpeg is on the machine (imageio-ffmpeg or a system
ffmpeg), also as MP4.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from .drawing import BASE_LABEL, BG, ERR, FG, MUTED, draw_text, fit, text_font, wrap
from .gridcells import GridCells
from .zoom import ZoomSpec

__all__ = ["Frame", "ffmpeg_path", "row_timeline", "timeline_frames", "webp_bytes", "write_mp4"]

FRAME_MS = 450  # each checkpoint
HOLD_MS = 1200  # the base and the last checkpoint
MIN_SIDE = 256  # px: small renders and crops are enlarged (by whole pixels) to at least this

Frame = tuple[Image.Image, int]  # (picture, milliseconds)


def timeline_frames(grid: GridCells, row: int, zoom: ZoomSpec | None = None) -> list[Frame]:
    """The frames of one row's timeline, in training order: base (held), checkpoints, the last held.

    Args:
        zoom: play this region of the row instead of the whole image.

    Raises:
        ValueError: ``row`` is not a row of the grid.
    """
    if not 0 <= row < len(grid.rows):
        raise ValueError(f"a timeline's row should be one of 0..{len(grid.rows) - 1}, got {row}")
    cols = grid.base_cols + [c for c in grid.cols if c not in grid.base_cols]
    w, h = grid.image_size
    if zoom is not None:
        left, top, right, bottom = zoom.box.pixels(w, h)
        w, h = right - left, bottom - top
    factor = max(1, -(-MIN_SIDE // min(w, h)))  # whole-pixel enlargement, so pixels stay pixels
    size = (w * factor, h * factor)
    label_font = text_font(max(14, size[0] // 18))
    bar = label_font.size + 12
    frames = []
    for i, col in enumerate(cols):
        ck = grid.checkpoints[col]
        result = grid.by_pos.get((row, col))
        picture = None if result is None else result.image
        if picture is not None and zoom is not None:
            picture = picture.convert("RGB").crop(zoom.box.pixels(*picture.size))
        frame = Image.new("RGB", (size[0], size[1] + bar), BG)
        draw = ImageDraw.Draw(frame)
        label = BASE_LABEL if ck is None else f"{ck.label} · {ck.name}"
        counter = f"{i + 1}/{len(cols)}"
        draw_text(
            draw,
            (6, 6),
            fit(label_font, label, size[0] - 12 - len(counter) * label_font.size),
            font=label_font,
            fill=FG,
        )
        draw_text(draw, (size[0] - 6, 6), counter, font=label_font, fill=MUTED, anchor="ra")
        if picture is not None:
            frame.paste(picture.convert("RGB").resize(size, Image.Resampling.NEAREST), (0, bar))
        else:
            small = text_font(max(12, size[0] // 24))
            message = "not rendered" if result is None else f"{result.status}: {result.error or ''}"
            for n, line in enumerate(wrap(small, message, size[0] - 12, max(1, size[1] // (small.size + 4)))):
                draw_text(draw, (6, bar + 6 + n * (small.size + 4)), line, font=small, fill=ERR)
        held = ck is None or i == len(cols) - 1
        frames.append((frame, HOLD_MS if held else FRAME_MS))
    return frames


def row_timeline(results, rows, info, row: int, zoom: ZoomSpec | None = None) -> list[Frame]:
    """:func:`timeline_frames` of a grid given as its results, rows and sheet info."""
    return timeline_frames(GridCells(results, rows, info), row, zoom)


def webp_bytes(frames: Sequence[Frame]) -> bytes:
    """An animated WebP that loops forever (lossless: colour shifts between epochs are the point)."""
    out = io.BytesIO()
    first, *rest = [f for f, _ in frames]
    first.save(
        out,
        format="WEBP",
        save_all=True,
        append_images=rest,
        duration=[ms for _, ms in frames],
        loop=0,
        lossless=True,
        method=4,
    )
    return out.getvalue()


def ffmpeg_path() -> str | None:
    """An ffmpeg executable: imageio-ffmpeg's when installed, else the system's, else None."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or its binary is missing
        return shutil.which("ffmpeg")


def write_mp4(path: Path, frames: Sequence[Frame], ffmpeg: str) -> None:
    """An H.264 MP4 of the frames (each repeated for its duration at 20 fps).

    Raises:
        RuntimeError: ffmpeg failed (its message is included).
    """
    fps = 20
    w, h = frames[0][0].size
    w2, h2 = w + w % 2, h + h % 2  # yuv420p needs even sides
    command = [
        ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w2}x{h2}",
        "-r", str(fps), "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", str(path),
    ]  # fmt: skip
    raw = bytearray()
    for frame, ms in frames:
        padded = Image.new("RGB", (w2, h2), BG)
        padded.paste(frame, (0, 0))
        raw += padded.tobytes() * max(1, round(ms * fps / 1000))
    done = subprocess.run(command, input=bytes(raw), capture_output=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg could not write {path.name}: {done.stderr.decode(errors='replace')[-400:]}")
