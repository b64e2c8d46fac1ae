"""Is a Ray cluster there? ``--ray ADDRESS`` probed in seconds, before ``ray.init`` is asked.

``ray.init(address=...)`` on an address where nothing listens retries for minutes (each GCS connection
attempt waits about 40 s, and it makes twenty). A Ray head's GCS and a Ray Client server are gRPC servers,
so the probe opens a TCP connection and makes one gRPC call over plain HTTP/2 (the GCS's ``GetClusterId``):
a gRPC server answers ``:status 200`` (with a gRPC status, even "unauthenticated" or "unimplemented"), where
a web server, a proxy or a middlebox that accepts every connection answers something else or nothing. All
of it within ``PROBE_S`` (the name lookup included), and anything but a gRPC answer is refused at once with
what to do. Nothing here starts or imports Ray, except to resolve "auto" the way Ray does.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from typing import NamedTuple

from .folder import SweepError

__all__ = ["CLIENT_PORT", "GCS_PORT", "HOW", "PROBE_S", "check_address"]

PROBE_S = 3.0  # seconds for an address to be looked up, accept a connection and answer one gRPC call
GCS_PORT, CLIENT_PORT = 6379, 10001  # Ray's defaults: the head's GCS, and Ray Client (ray://)
MAX_ANSWER = 2**16  # bytes read from whatever answers
HOW = (
    "start one with `ray start --head` (and `ray start --address=HEAD:6379` on the other machines), or leave "
    "out --ray to render in this process (--workers N starts local Ray workers)"
)
PATH = b"/ray.rpc.NodeInfoGcsService/GetClusterId"  # a call any GCS answers, with or without token auth
UNIMPLEMENTED = b"grpc-status\x0212"  # gRPC's "no such method", as grpc-core writes it (no Huffman coding)


class Endpoint(NamedTuple):
    host: str
    port: int
    client: bool  # a Ray Client address (ray://): not a GCS


def _endpoint(address: str) -> Endpoint | None:
    """What ``address`` names, for the probe; None for what only Ray can resolve ("local", other schemes).

    Raises:
        SweepError: the address cannot be parsed, or "auto" finds no cluster on this machine.
    """
    text = address.strip()
    if text == "auto":
        return _auto()
    if text == "local":
        return None
    port, client = "", False  # Ray needs a port for a GCS address
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme != "ray":
            return None
        port, client = str(CLIENT_PORT), True
    text = text.split("/", 1)[0]
    host = text
    if text.startswith("["):  # [::1]:6379
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or port
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SweepError(
            f"--ray {address!r} is not a Ray address; give HOST:PORT (the head's GCS port, {GCS_PORT} unless "
            f"changed), ray://HOST:{CLIENT_PORT} or auto"
        )
    return Endpoint(host, int(port), client)


def _auto() -> Endpoint | None:
    """The cluster "auto" means: $RAY_ADDRESS, else the last one `ray start` recorded on this machine."""
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env and env != "auto":
        return _endpoint(env)
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # Ray's private layout changed: let ray.init find it (bounded by INIT_S)
        return None
    try:
        found = canonicalize_bootstrap_address("auto")
    except ConnectionError:
        raise SweepError(f"--ray auto: no running Ray cluster on this machine; {HOW}") from None
    except Exception:
        return None
    return _endpoint(found) if found else None


def check_address(address: str, *, timeout: float = PROBE_S) -> None:
    """Fail at once, with what to do, when no Ray cluster answers at ``address``.

    Within ``timeout`` seconds the name must resolve, a TCP connection open and a gRPC call come back as gRPC
    (with ``RAY_USE_TLS`` set, the connection alone counts: the call would have to be TLS).

    Raises:
        SweepError: the address is malformed, refuses, times out, or answers but not as a Ray cluster.
    """
    end = _endpoint(address)
    if end is None:
        return
    shown = address if address.strip() != "auto" else f"auto ({end.host}:{end.port})"
    deadline = time.monotonic() + timeout
    try:
        with _connect(end.host, end.port, timeout=timeout) as sock:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return
            answer = _grpc_call(sock, f"{end.host}:{end.port}", deadline)
    except OSError as err:
        why = "timed out" if isinstance(err, TimeoutError) else err.strerror or type(err).__name__
        raise SweepError(f"no Ray cluster answers at {shown} ({why}); {HOW}") from None
    if isinstance(answer, str):
        raise SweepError(
            f"{shown} answers, but not as a Ray cluster ({answer}); give the head's GCS address "
            f"(HOST:{GCS_PORT}) or ray://HOST:{CLIENT_PORT}; {HOW}"
        )
    if not end.client and UNIMPLEMENTED in answer:
        raise SweepError(
            f"{shown} is a gRPC server but not a Ray head's GCS; a Ray Client port is written "
            f"ray://HOST:{end.port}, a head's GCS port is {GCS_PORT} unless changed"
        )


def _connect(host: str, port: int, *, timeout: float) -> socket.socket:
    """A TCP connection to host:port within ``timeout`` seconds in all, the name lookup included (a resolver
    that waits on an unreachable DNS server is not bounded by the socket's timeout).

    Raises:
        OSError: the lookup or every connection failed or timed out (TimeoutError).
    """
    deadline = time.monotonic() + timeout
    found: list = []

    def look_up() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as err:
            found.append(err)

    lookup = threading.Thread(target=look_up, name="zbench-ray-lookup", daemon=True)
    lookup.start()
    lookup.join(timeout)
    if lookup.is_alive() or not found:
        raise TimeoutError(f"looking up {host} timed out")
    if isinstance(found[0], OSError):
        raise found[0]
    error: OSError = TimeoutError("timed out")
    for family, kind, proto, _, where in found:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.05))
            sock.connect(where)
            return sock
        except OSError as err:
            sock.close()
            error = err
    raise error


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    """One HTTP/2 frame (RFC 9113 §4.1)."""
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _literal(index: int, value: bytes) -> bytes:
    """An HPACK header field: a static-table name (index < 15), a literal value, not indexed, not Huffman."""
    return bytes([index, len(value)]) + value


def _grpc_call(sock: socket.socket, authority: str, deadline: float) -> bytes | str:
    """Call ``GetClusterId`` once; the first header block of the answer when it is gRPC's ``:status 200``,
    else what came back instead, in words.

    Raises:
        OSError: the connection failed or the deadline passed (TimeoutError).
    """
    headers = b"\x83\x86" + _literal(4, PATH) + _literal(1, authority.encode()[:100])  # POST, http, :path
    headers += b"\x0f\x10" + bytes([16]) + b"application/grpc" + b"\x00\x02te\x08trailers"  # content-type, te
    sock.sendall(
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + _frame(0x4, 0, 0, b"")  # SETTINGS
        + _frame(0x1, 0x4, 1, headers)  # HEADERS, END_HEADERS
        + _frame(0x0, 0x1, 1, b"\x00\x00\x00\x00\x00")  # DATA, END_STREAM: an empty request message
    )
    data, first = b"", True
    while True:
        while len(data) >= 9:
            size, kind, flags = int.from_bytes(data[:3], "big"), data[3], data[4]
            if first and (kind != 0x4 or size % 6):  # an HTTP/2 server's first frame is its SETTINGS
                return "it does not speak HTTP/2"
            first = False
            if len(data) < 9 + size:
                break
            stream, payload, data = int.from_bytes(data[5:9], "big") & 0x7FFFFFFF, data[9 : 9 + size], data[9 + size :]
            if kind == 0x4 and not flags & 0x1:
                sock.sendall(_frame(0x4, 0x1, 0, b""))  # acknowledge its SETTINGS
            elif kind == 0x1 and stream == 1:
                block = _header_block(flags, payload)
                return block if block.startswith(b"\x88") else f"HTTP/2 status {_status(block)}"  # 0x88: 200
            elif kind in (0x3, 0x7):
                return "it reset the call" if kind == 0x3 else "it closed the connection (GOAWAY)"
        left = deadline - time.monotonic()
        if len(data) > MAX_ANSWER:
            return "it sent more than a gRPC answer"
        if left <= 0:
            raise TimeoutError("no answer in time")
        sock.settimeout(left)
        chunk = sock.recv(MAX_ANSWER)
        if not chunk:
            return "it closed the connection"
        data += chunk


def _header_block(flags: int, payload: bytes) -> bytes:
    """A HEADERS frame's header block, without its padding (flag 0x8) and priority (flag 0x20) fields."""
    pad = 0
    if flags & 0x8 and payload:
        pad, payload = payload[0], payload[1:]
    if flags & 0x20:
        payload = payload[5:]
    block = payload[: len(payload) - pad] if pad else payload
    while block and block[0] & 0xE0 == 0x20:  # a dynamic table size update may come first
        block = block[1:] if block[0] != 0x3F else block[1:].lstrip(bytes(range(0x80, 0x100)))[1:]
    return block


def _status(block: bytes) -> str:
    """The ``:status`` of a header block, when it is one of HPACK's static entries (else "other than 200")."""
    static = {0x89: "204", 0x8A: "206", 0x8B: "304", 0x8C: "400", 0x8D: "404", 0x8E: "500"}
    return static.get(block[:1][0] if block else 0, "other than 200")
