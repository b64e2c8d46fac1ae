"""JSON that zbench writes and reads back, treated as untrusted: bounded size and nesting, never NaN.

Every file zbench reads back (``sweep.json``, ``cells.jsonl``, ``page.json``, ``review.json``,
``release.json``, a viewer's manifest) may have been edited by hand, truncated, or written by someone else.
:func:`read_json` reads one with a size bound (a regular file only: a FIFO or a device is refused before it
is opened) and :func:`parse_json` checks the nesting depth, so a hostile file is a :class:`JsonError` with a
message, never a ``MemoryError``, a hang or a ``RecursionError``. :func:`dumps` writes strict JSON: NaN and
±Infinity (which Python's ``json`` writes by default and no other JSON reader accepts) become ``null``.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

__all__ = ["MAX_DEPTH", "MAX_JSON_BYTES", "MAX_LINE_BYTES", "JsonError", "dumps", "finite", "parse_json", "read_json",
           "read_regular"]  # fmt: skip

MAX_JSON_BYTES = 64 * 2**20  # a review, page or sweep description is kilobytes; a sweep of 100k cells ~ 30 MB
MAX_LINE_BYTES = 2**20  # one cells.jsonl record is ~400 bytes (a long prompt included)
MAX_DEPTH = 32  # zbench's own files nest 4 deep at most


class JsonError(ValueError):
    """A JSON file or line that cannot be used: too big, too deep, not a regular file, or not JSON."""


def finite(value: object) -> object:
    """``value`` with every NaN/±Infinity float (inside dicts, lists and tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: object, **kwargs) -> str:
    """``json.dumps`` that always writes valid JSON: non-finite floats become null (never ``NaN``)."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)


def _depth(value: object) -> int:
    """The nesting depth of parsed JSON (1 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str | bytes, *, where: str = "JSON", max_depth: int = MAX_DEPTH) -> object:
    """Parse ``text``, refusing NaN/Infinity, nesting deeper than ``max_depth`` and invalid UTF-8.

    Raises:
        JsonError: the message names ``where`` and what was wrong.
    """
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        value = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise JsonError(f"{where} nests deeper than {max_depth} levels") from None
    except UnicodeDecodeError as err:
        raise JsonError(f"{where} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except ValueError as err:  # JSONDecodeError and the NaN/Infinity refusal
        raise JsonError(f"{where} is not valid JSON ({err})") from None
    if _depth(value) > max_depth:
        raise JsonError(f"{where} nests deeper than {max_depth} levels")
    return value


def read_regular(path: str | Path, *, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``max_bytes``.

    A FIFO, a device, a socket or a folder is refused before it is opened (opening a FIFO would block, reading
    /dev/zero would never end), and at most ``max_bytes`` + 1 bytes are ever read (a file that grows while it is
    read is still bounded).

    Raises:
        FileNotFoundError: nothing is there.
        JsonError: not a regular file, or larger than ``max_bytes`` (the message names the path and the bound).
        OSError: the file cannot be read (permission, I/O).
    """
    path = Path(path)
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, FIFO or socket)"
        raise JsonError(f"{what} {path} is {kind}; give a regular file")
    if info.st_size > max_bytes:
        raise JsonError(f"{what} {path} is {info.st_size:,} bytes, more than the {max_bytes:,} bytes zbench reads")
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise JsonError(f"{what} {path} is more than the {max_bytes:,} bytes zbench reads")
    return data


def read_json(path: str | Path, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_DEPTH) -> object:
    """The JSON in a regular file of bounded size and nesting.

    Raises:
        FileNotFoundError: nothing is there.
        JsonError: too big, too deep, not a regular file, not UTF-8 or not JSON (the message names the path).
        OSError: the file cannot be read.
    """
    data = read_regular(path, max_bytes=max_bytes, what="file")
    return parse_json(data, where=str(path), max_depth=max_depth)
