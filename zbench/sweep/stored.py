"""Stored cells as grid results, their images opened as untrusted files: inside the folder, bounded, downscaled.

A sweep folder (``cells.jsonl``) and the grid command's output (``manifest.json``) both keep a record per
cell; :func:`stored_results` turns checked records (``readback.check_record``) into ``CellResult`` for any
slice of rows and checkpoints, reading each image from disk and rendering nothing.

A record's ``image`` is a path someone may have edited: it must stay inside the folder (no absolute path,
no ``..``, no symlink out of it) and name a regular file (a FIFO would block the page). The file must be a
PNG (zbench writes nothing else, and PIL's other decoders are more attack surface) of at most
``MAX_PIXELS``, checked from its header before anything is decoded, so a decompression bomb is an error
cell, never a ``DecompressionBombError`` or gigabytes of memory. An image larger than ``SHOWN_SIDE`` is
kept downscaled, and the cache of opened images is bounded in bytes, not images.
"""

from __future__ import annotations

import os
import stat
import struct
import threading
from collections import OrderedDict
from pathlib import Path, PurePosixPath, PureWindowsPath

from PIL import Image

from ..engine.checkpoints import Checkpoint
from ..engine.plan import Cell, CellResult, Row

__all__ = ["MAX_PIXELS", "SHOWN_SIDE", "png_size", "read_image", "stored_path", "stored_results"]

MAX_PIXELS = 64_000_000  # 8000 × 8000; zbench renders at most 4096 × 4096 (16.8 MP)
MAX_IMAGE_BYTES = 256 * 2**20  # a 64 MP RGBA PNG stored without compression
SHOWN_SIDE = 2048  # longest side kept in memory: a cell is 96-512 px on the page, the zoom panels crop
CACHE_BYTES = 384 * 2**20  # opened images kept for the page's reruns: ~100 images of 1024 px
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def stored_path(folder: Path, rel: object) -> Path:
    """The file a record's ``image`` names, if it lies inside ``folder`` (symlinks resolved).

    Raises:
        ValueError: not a relative path, or one that leads outside the folder (the message says "outside").
    """
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise ValueError(f"stored image {rel!r} is not a path")
    outside = ValueError(f"stored image {rel} is outside {folder}")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or PureWindowsPath(rel).drive or PureWindowsPath(rel).root:
        raise outside
    try:
        root = folder.resolve()
        path = (root / pure).resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop (RuntimeError on Python 3.11), a name too long
        raise ValueError(f"stored image {rel} cannot be resolved ({err})") from None
    if path == root or not path.is_relative_to(root):
        raise outside
    return path


def _open_regular(path: Path):
    """``path`` opened for reading if it is a regular file of at most ``MAX_IMAGE_BYTES`` (checked on the open
    file: a FIFO put there is never waited on).

    Raises:
        ValueError: not a regular file, or too big.
        OSError: it cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    f = os.fdopen(fd, "rb")
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_IMAGE_BYTES:
        f.close()
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("it is not a regular file")
        raise ValueError(f"it is {info.st_size:,} bytes, more than the {MAX_IMAGE_BYTES:,} zbench opens")
    return f


def _png_header(f) -> tuple[int, int]:
    head = f.read(24)
    if len(head) < 24 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        raise ValueError("it is not a PNG")
    return struct.unpack(">II", head[16:24])


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a regular PNG file's header, without decoding it.

    Raises:
        ValueError: not a regular file, larger than ``MAX_IMAGE_BYTES``, or not a PNG.
        OSError: it cannot be read.
    """
    with _open_regular(path) as f:
        return _png_header(f)


class _Cache:
    """Opened images by (path, mtime, size), least recently used first out, at most ``limit`` bytes."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self.items: OrderedDict[tuple, Image.Image] = OrderedDict()
        self.lock = threading.Lock()  # the page's sessions read images from several threads

    def get(self, key: tuple) -> Image.Image | None:
        with self.lock:
            image = self.items.get(key)
            if image is not None:
                self.items.move_to_end(key)
            return image

    def put(self, key: tuple, image: Image.Image) -> None:
        size = image.width * image.height * len(image.getbands())
        with self.lock:
            if key in self.items or size > self.limit:
                return
            self.items[key] = image
            self.used += size
            while self.used > self.limit:
                _, old = self.items.popitem(last=False)
                self.used -= old.width * old.height * len(old.getbands())


_cache = _Cache(CACHE_BYTES)


def read_image(path: Path) -> Image.Image:
    """A stored PNG as RGB, downscaled to ``SHOWN_SIDE`` when larger; cached per file version.

    Callers must not modify the image (it is shared by every rerun that shows it).

    Raises:
        ValueError: not a regular file, not a PNG, more than ``MAX_PIXELS``, or a file PIL cannot decode;
            the message says which, in a few words.
        OSError: it cannot be read.
    """
    info = os.stat(path)
    key = (str(path), info.st_mtime_ns, info.st_size)
    image = _cache.get(key)
    if image is None:
        image = _decode(path)
        _cache.put(key, image)
    return image


def _decode(path: Path) -> Image.Image:
    with _open_regular(path) as f:
        width, height = _png_header(f)  # checked before PIL sees it: its own bomb check warns or raises
        if width * height > MAX_PIXELS or not width or not height:
            raise ValueError(f"it is {width}×{height} pixels; zbench opens images of at most {MAX_PIXELS:,} pixels")
        f.seek(0)
        try:
            with Image.open(f, formats=["PNG"]) as im:
                if im.size != (width, height):
                    raise ValueError(f"its header says {width}×{height} and PIL reads {im.size[0]}×{im.size[1]}")
                im.load()
                if max(im.size) > SHOWN_SIDE:
                    im.thumbnail((SHOWN_SIDE, SHOWN_SIDE), Image.Resampling.LANCZOS, reducing_gap=2.0)
                return im.convert("RGB")
        except ValueError:
            raise
        except Exception as err:  # PIL's decoders raise many types on a corrupt file (OSError, SyntaxError…)
            raise ValueError(f"{type(err).__name__}: {str(err)[:200]}") from None


def stored_results(
    folder: Path, records, checkpoints: list[Checkpoint], rows: list[Row], *, base_column: bool = True
) -> list[CellResult]:
    """Stored cells (records checked by ``readback.check_record``) as grid results for ``rows``.

    Images are read from disk (``image`` is relative to ``folder``; bounded and downscaled, see
    :func:`read_image`); nothing renders. Cells are matched by checkpoint name, prompt, seed and scale, so any
    slice (some rows, some checkpoints) can be shown; a cell that is not stored comes back "pending", one
    whose image cannot be opened is an error cell saying why.
    """
    by_cell = {}
    for record in records:
        # The base ignores the LoRA scale: one base image per prompt and seed serves every scale.
        scale = None if record["checkpoint"] == "base" else float(record["scale"])
        by_cell[(record["checkpoint"], record["prompt"], record["seed"], scale)] = record
    columns: list[Checkpoint | None] = ([None] if base_column else []) + list(checkpoints)
    out = []
    for r, row in enumerate(rows):
        for c, ck in enumerate(columns):
            cell = Cell(r, c, ck, row.prompt, row.seed, row.scale)
            record = by_cell.get((cell.name, row.prompt, row.seed, None if ck is None else float(row.scale)))
            out.append(_result(folder, cell, record))
    return out


def _result(folder: Path, cell: Cell, record: dict | None) -> CellResult:
    if record is None:
        return CellResult(cell, None, "pending", "not stored in this folder")
    if not record["image"]:
        return CellResult(cell, None, "error", record["error"])
    try:
        image = read_image(stored_path(folder, record["image"]))  # a path outside the folder: "outside"
    except ValueError as err:
        text = str(err)
        why = text if text.startswith("stored image") else f"stored image {record['image']} cannot be shown ({text})"
        return CellResult(cell, None, "error", why)
    except OSError as err:
        why = err.strerror or type(err).__name__
        return CellResult(cell, None, "error", f"stored image {record['image']} cannot be read ({why})")
    return CellResult(cell, image, "ok", None, record["swap_ms"], record["render_ms"], "cache")
