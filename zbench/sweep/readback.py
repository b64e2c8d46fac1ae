"""Reading a stored sweep back as untrusted input: ``sweep.json`` and ``cells.jsonl`` checked, field by field.

A sweep folder outlives the process that wrote it: it is copied, edited by hand, cut short by a full disk,
or is somebody else's folder altogether. Everything here is bounded (file and line sizes, nesting) and
type-checked, and says what is wrong as a ``ValueError`` naming the file; a bad line of ``cells.jsonl`` is
skipped on its own, so it never costs the other records. Nothing here writes.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ..engine.jsonio import MAX_LINE_BYTES, JsonError, parse_json, read_json
from ..engine.limits import check_guidance, check_scale, check_seed, check_side, check_steps
from ..engine.plan import RenderSettings

__all__ = [
    "FORMAT",
    "LEGACY_KEYS",
    "MAX_CELLS_BYTES",
    "MAX_ENTRIES",
    "MAX_SPEC_BYTES",
    "check_description",
    "check_record",
    "check_settings",
    "is_zbench",
    "read_description",
    "read_records",
]

FORMAT = 1  # sweep.json's "zbench" marker: the folder's format version, written by zbench and by nothing else
# What every sweep.json held before the marker (unchanged since sweeps began): such a folder is an older zbench's.
LEGACY_KEYS = frozenset(
    {"spec", "config", "base", "run", "checkpoints", "prompts", "seeds", "scales", "base_column", "settings"}
)
MAX_SPEC_BYTES = 16 * 2**20  # sweep.json is kilobytes (1000 prompts of 4000 characters: 4 MB)
MAX_CELLS_BYTES = 256 * 2**20  # cells.jsonl: ~400 bytes a cell, so ~600k cells; a bigger file is not zbench's
MAX_RECORD_DEPTH = 4  # a record is one flat object
# Prompts, seeds, scales or checkpoints in one folder: a spec allows 1000 of each, and specs of one run merge.
MAX_ENTRIES = 10_000


def is_zbench(data: object) -> bool:
    """Whether parsed ``sweep.json`` content claims to be zbench's: the marker, or exactly the keys of an older one."""
    return isinstance(data, dict) and ("zbench" in data or set(data) == LEGACY_KEYS)


def _text(value: object, key: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or "\x00" in value:
        raise ValueError(f"{key} should be text, got {_kind(value)}")
    return value


def _whole(value: object, key: str, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} should be a whole number, got {_kind(value)}")
    return value


def _number(value: object, key: str, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{key} should be a number, got {_kind(value)}")
    return float(value)


def _list(value: object, key: str) -> list:
    if not isinstance(value, list):
        raise ValueError(f"{key} should be a list, got {_kind(value)}")
    if len(value) > MAX_ENTRIES:
        raise ValueError(f"{key} should be a list of at most {MAX_ENTRIES:,}, got {len(value):,}")
    return value


def _kind(value: object) -> str:
    """A value as an error message shows it: short, whatever it is."""
    text = repr(value)
    return text if len(text) <= 40 else f"{type(value).__name__} {text[:37]}…"


def check_description(data: object) -> dict:
    """A sweep description (parsed ``sweep.json``) with every field checked; the marker is set to ``FORMAT``.

    ``settings`` is only checked to be an object here: a resumed sweep replaces it, and browsing checks it
    with :func:`check_settings` (falling back to the images' size for a bad width or height).

    Raises:
        ValueError: the first field of the wrong shape or type, by name, with the value received.
    """
    if not isinstance(data, dict):
        raise ValueError(f"should be a JSON object, got {type(data).__name__}")
    marker = data.get("zbench", FORMAT)
    if not isinstance(marker, int) or isinstance(marker, bool) or marker < 1:
        raise ValueError(f'"zbench" should be the format version {FORMAT}, got {_kind(marker)}')
    if marker > FORMAT:
        raise ValueError(f"is format {marker}, written by a newer zbench (this one reads format {FORMAT})")
    missing = sorted({"run", "base", "checkpoints", "prompts", "seeds", "scales", "settings"} - set(data))
    if missing:
        raise ValueError(f"has no {', '.join(missing)}")
    run = _text(data["run"], "run")
    if not run.strip():
        raise ValueError("run should be the run folder's path, got ''")
    checkpoints = []
    for i, entry in enumerate(_list(data["checkpoints"], "checkpoints")):
        where = f"checkpoints[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} should be an object, got {_kind(entry)}")
        checkpoints.append(
            {
                "name": _text(entry.get("name"), f"{where}.name"),
                "hash": _text(entry.get("hash"), f"{where}.hash", optional=True),
                "epoch": _whole(entry.get("epoch"), f"{where}.epoch", optional=True),
                "step": _whole(entry.get("step"), f"{where}.step", optional=True),
            }
        )
    if not isinstance(data["settings"], dict):
        raise ValueError(f"settings should be an object, got {_kind(data['settings'])}")
    base_column = data.get("base_column", True)
    if not isinstance(base_column, bool):
        raise ValueError(f"base_column should be true or false, got {_kind(base_column)}")
    seeds = [check_seed(_whole(s, "seeds"), "seeds") for s in _list(data["seeds"], "seeds")]  # LimitError: key, rule
    scales = [check_scale(_number(s, "scales"), "scales") for s in _list(data["scales"], "scales")]
    return {
        **data,
        "zbench": FORMAT,
        "spec": _text(data.get("spec"), "spec", optional=True),
        "config": _text(data.get("config"), "config", optional=True),
        "base": _text(data["base"], "base"),
        "run": run,
        "checkpoints": checkpoints,
        "prompts": [_text(p, "prompts") for p in _list(data["prompts"], "prompts")],
        "seeds": seeds,
        "scales": scales,
        "base_column": base_column,
        "settings": dict(data["settings"]),
    }


def check_settings(settings: dict, *, size: tuple[int, int] | None = None) -> RenderSettings:
    """Stored render settings as ``RenderSettings``, each value checked by the rules every way in shares.

    Args:
        size: (width, height) to use when the stored width or height is unusable (0, negative, not a
            number): the stored images' own size. None: such a value is an error.

    Raises:
        ValueError: a value outside what zbench renders (the key, the rule and the value received).
    """
    width, height = settings.get("width"), settings.get("height")
    try:
        width, height = check_side(_whole(width, "width"), "width"), check_side(_whole(height, "height"), "height")
    except ValueError:
        if size is None:
            raise
        width, height = check_side(size[0], "the images' width"), check_side(size[1], "the images' height")
    return RenderSettings(
        steps=check_steps(_whole(settings.get("steps"), "steps"), "steps"),
        guidance=check_guidance(_number(settings.get("guidance"), "guidance"), "guidance"),
        width=width,
        height=height,
        negative=_text(settings.get("negative") or "", "negative"),
    )


def read_description(path: Path) -> dict:
    """``sweep.json`` read with bounds and checked (see :func:`check_description`).

    Raises:
        FileNotFoundError: there is none.
        ValueError: too big, too deep, not JSON, not zbench's, or a field of the wrong shape (names the file).
        OSError: it cannot be read.
    """
    data = read_json(path, max_bytes=MAX_SPEC_BYTES)  # JsonError (a ValueError) names the file
    if not is_zbench(data):
        raise ValueError(f'{path} is not a zbench sweep description (it has no "zbench" marker)')
    try:
        return check_description(data)
    except ValueError as err:
        raise ValueError(f"{path} {err}") from None


def check_record(data: object, *, need_key: bool = True) -> dict | None:
    """One stored cell, its fields checked; None when it cannot be used (its cell then counts as not stored).

    A record needs checkpoint, prompt, seed and scale (and ``key`` in ``cells.jsonl``), and either an ``image``
    (a path relative to the folder, checked where it is opened) or ``"status": "error"``: anything else is
    not a cell zbench stored, so its cell is rendered again on resume. Timings of the wrong type become None;
    other fields (who rendered it) are kept as they are.
    """
    if not isinstance(data, dict):
        return None
    image, error = data.get("image"), data.get("error")
    try:
        record = {
            **data,
            "checkpoint": _text(data.get("checkpoint"), "checkpoint"),
            "prompt": _text(data.get("prompt"), "prompt"),
            "seed": _whole(data.get("seed"), "seed"),
            "scale": _number(data.get("scale"), "scale"),
            "image": _text(image, "image", optional=True) or None,
            "error": error if isinstance(error, str) else None,
        }
        if need_key or "key" in data:
            record["key"] = _text(data.get("key"), "key")
    except ValueError:
        return None
    if need_key and not 0 < len(record["key"]) <= 128:
        return None
    if record["image"] is None and data.get("status") != "error":
        return None  # neither an image nor an error: not a finished cell
    record["status"] = "ok" if record["image"] else "error"
    if record["status"] == "error" and not record["error"]:
        record["error"] = "stored as an error without a message"
    for name in ("swap_ms", "render_ms", "finished"):
        value = data.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            record[name] = None
    return record


def read_records(path: Path) -> dict[str, dict]:
    """The usable records of ``cells.jsonl`` by key (a later line for a key wins), read line by line.

    A line that is torn, too long, too deep, not JSON or not a record is skipped; the rest still count.

    Raises:
        FileNotFoundError: there is none.
        ValueError: it is not a regular file (a FIFO would block) or bigger than ``MAX_CELLS_BYTES``.
        OSError: it cannot be read.
    """
    out: dict[str, dict] = {}
    for number, line in _lines(path):
        try:
            data = parse_json(line, where=f"{path} line {number}", max_depth=MAX_RECORD_DEPTH)
        except JsonError:
            continue
        record = check_record(data)
        if record is not None:
            out[record["key"]] = record
    return out


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of a regular file, each line at most ``MAX_LINE_BYTES`` (a longer one is skipped
    without being held in memory), the whole at most ``MAX_CELLS_BYTES``."""
    # O_NONBLOCK: opening a FIFO put where the file was must not wait for a writer; fstat then refuses it.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path} is not a regular file (a folder, device or FIFO); zbench reads files it wrote")
        if info.st_size > MAX_CELLS_BYTES:
            raise ValueError(f"{path} is {info.st_size:,} bytes, more than the {MAX_CELLS_BYTES:,} zbench reads")
        total, number = 0, 0
        while line := f.readline(MAX_LINE_BYTES + 1):
            number += 1
            total += len(line)
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                while (rest := f.readline(2**16)) and not rest.endswith(b"\n"):  # skip the rest of the long line
                    total += len(rest)
                total += len(rest)
            elif line.strip():
                yield number, line
            if total > MAX_CELLS_BYTES:  # it grew while being read
                raise ValueError(f"{path} is more than the {MAX_CELLS_BYTES:,} bytes zbench reads")
