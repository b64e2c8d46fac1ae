"""Reading a safetensors header: the JSON table of tensors and metadata at the start of the file.

Nothing past the header is read, so a folder of large files lists in milliseconds, and a
truncated or corrupt file is caught before any loader sees it. The checks are the ones the
safetensors library itself applies when it opens a file (``Metadata::validate`` and
``read_metadata`` in its ``tensor.rs``), so a file this module accepts is one safetensors
loads, and a file it refuses gets a message that says what is wrong instead of a loader's
traceback later.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

__all__ = ["MAX_HEADER", "HeaderError", "read_header", "read_scalars"]

MAX_HEADER = 100_000_000  # bytes; safetensors' own MAX_HEADER_SIZE for the JSON header
USIZE = 2**64  # offsets and shapes are Rust usize values in safetensors
# Bits per element of every dtype safetensors knows; any other name is refused as it refuses it.
DTYPE_BITS = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
# How read_scalars decodes one element (alpha tensors are saved in one of these); None: bfloat16.
_SCALARS = {"F64": "<d", "F32": "<f", "F16": "<e", "BF16": None, "I64": "<q", "I32": "<i"}


class HeaderError(ValueError):
    """A safetensors file whose header cannot be read or does not describe its bytes."""


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise HeaderError(f"has the key {twice!r} twice in its header")
    return dict(pairs)


def _no_constants(name: str) -> object:
    raise HeaderError(f"has {name} in its header, which is not JSON")


def _usize(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < USIZE


def read_header(path: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """Read and check a safetensors header without loading any tensor.

    Returns:
        (tensor entries by key, each with ``dtype``, ``shape`` and ``data_offsets``; the
        ``__metadata__`` string map, empty when absent).

    Raises:
        HeaderError: the file is too short or truncated, its header is over 100,000,000 bytes,
            not UTF-8 JSON, has duplicate keys or non-string metadata, names an unknown dtype,
            has shapes or offsets that are not whole numbers, tensors that overlap, leave gaps
            or do not match their shape and dtype, or bytes after the last tensor.
        OSError: the file cannot be read.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise HeaderError(f"is {size} bytes, too short to be a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            raise HeaderError(
                f"declares a header of {n:,} bytes, over safetensors' limit of {MAX_HEADER:,}: it is not a "
                "safetensors file or it is corrupt"
            )
        if 8 + n > size:
            raise HeaderError(
                f"has a header length of {n} bytes but the file is {size} bytes: it is truncated or not safetensors"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise HeaderError(f"has a header that is not valid JSON ({err}): the file is corrupt") from err
    if not isinstance(header, dict):
        raise HeaderError("has a header that is not a JSON object: the file is corrupt")
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise HeaderError("has a __metadata__ that is not a map of strings to strings: the file is corrupt")
    _check_strings(header, metadata)
    end = _check_table(header)
    if 8 + n + end > size:
        missing = 8 + n + end - size
        raise HeaderError(
            f"is truncated: its tensors need {missing} more bytes than the file has (an interrupted copy or save?)"
        )
    if 8 + n + end < size:
        raise HeaderError(
            f"has {size - 8 - n - end} bytes after its last tensor, which safetensors refuses: the file was "
            "appended to or corrupted"
        )
    return header, metadata


def _check_strings(header: dict, metadata: dict) -> None:
    """JSON escapes can spell lone surrogates, which Python keeps and safetensors (Rust) refuses."""
    try:
        for text in (*header, *metadata, *metadata.values()):
            text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise HeaderError(
            f"has text in its header that is not valid Unicode ({err.reason}): the file is corrupt"
        ) from err


def _check_table(header: dict[str, object]) -> int:
    """Check every tensor entry as safetensors does; return where the last tensor's bytes end."""
    spans = []
    for key, entry in header.items():
        if not isinstance(entry, dict):
            raise HeaderError(f"has a malformed tensor table (entry {key!r} is not an object): the file is corrupt")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in DTYPE_BITS:
            raise HeaderError(
                f"stores tensor {key!r} as dtype {dtype!r}, which safetensors does not know: the file is corrupt "
                "or from a newer format"
            )
        if not isinstance(shape, list) or not all(_usize(d) for d in shape):
            raise HeaderError(f"gives tensor {key!r} the shape {shape!r}, not a list of whole numbers: it is corrupt")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_usize(o) for o in offsets)):
            raise HeaderError(
                f"gives tensor {key!r} the data offsets {offsets!r}, not two whole numbers: the file is corrupt"
            )
        bits = math.prod(shape) * DTYPE_BITS[dtype]
        if bits >= USIZE * 8 or bits % 8:
            raise HeaderError(f"gives tensor {key!r} a shape {shape} that no {dtype} buffer can hold: it is corrupt")
        spans.append((offsets[0], offsets[1], key, bits // 8))
    end = 0
    for start, stop, key, nbytes in sorted(spans):
        if start != end or stop < start:
            raise HeaderError(
                f"places tensor {key!r} at bytes {start}-{stop} where the previous tensor ends at {end} "
                "(tensors overlap or leave a gap): the file is corrupt"
            )
        if stop - start != nbytes:
            raise HeaderError(
                f"gives tensor {key!r} {stop - start} bytes where its shape and dtype need {nbytes}: "
                "the file is corrupt"
            )
        end = stop
    return end


def read_scalars(path: Path, header: dict[str, dict], keys: list[str]) -> dict[str, float]:
    """Read the values of one-element tensors (e.g. kohya's per-module ``.alpha``) without loading the rest.

    Args:
        header: the file's tensor table from :func:`read_header`.
        keys: tensors to read.

    Returns:
        {key: value} for each key that names a one-element tensor of a float or int dtype;
        others are left out.
    """
    wanted = sorted(
        (header[k]["data_offsets"][0], k, header[k]["dtype"])
        for k in keys
        if k in header and math.prod(header[k]["shape"]) == 1 and header[k]["dtype"] in _SCALARS
    )
    values = {}
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        for offset, key, dtype in wanted:
            f.seek(8 + n + offset)
            fmt = _SCALARS[dtype]
            raw = f.read(struct.calcsize(fmt) if fmt else 2)
            # bfloat16 is the top half of a float32
            values[key] = float(struct.unpack(fmt or "<f", raw if fmt else b"\x00\x00" + raw)[0])
    return values
