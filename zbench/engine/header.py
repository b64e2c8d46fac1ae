"""Reading a safetensors header: the JSON table of tensors and metadata at the start of the file.

Nothing past the header is read, so a folder of large files lists in milliseconds, and a
truncated or corrupt file is caught before any loader sees it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

__all__ = ["HeaderError", "read_header"]

MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


class HeaderError(ValueError):
    """A safetensors file whose header cannot be read."""


def read_header(path: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """Read a safetensors header without loading any tensor.

    Returns:
        (tensor entries by key, the ``__metadata__`` string map).

    Raises:
        HeaderError: the file is too short, the header is not JSON, or the tensor data
            runs past the end of the file (a truncated download or an interrupted save).
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise HeaderError(f"is {size} bytes, too short to be a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or 8 + n > size:
            raise HeaderError(
                f"has a header length of {n} bytes but the file is {size} bytes: it is truncated or not safetensors"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HeaderError(f"has a header that is not valid JSON ({err}): the file is corrupt") from err
    if not isinstance(header, dict):
        raise HeaderError("has a header that is not a JSON object: the file is corrupt")
    metadata = header.pop("__metadata__", None) or {}
    try:
        end = max((int(v["data_offsets"][1]) for v in header.values()), default=0)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise HeaderError(f"has a malformed tensor table ({type(err).__name__}: {err}): the file is corrupt") from err
    if 8 + n + end > size:
        missing = 8 + n + end - size
        raise HeaderError(
            f"is truncated: its tensors need {missing} more bytes than the file has (an interrupted copy or save?)"
        )
    return header, {str(k): str(v) for k, v in metadata.items()}
