"""Everything a sweep reads back is untrusted: sweep.json, cells.jsonl, stored images, the --out folder, --ray.

Each hostile file is a clear SweepError (or ValueError when browsing), an error cell, or a skipped line: never
a traceback, a hang, gigabytes of memory, or a write into a file zbench did not create.
"""

from __future__ import annotations

import ast
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
import zlib
from pathlib import Path

import pytest
from PIL import Image

import zbench
from zbench.engine.jsonio import MAX_LINE_BYTES
from zbench.sweep import readback, stored
from zbench.sweep.folder import FolderLock
from zbench.sweep.store import SweepStore

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "zbench" / "sweep"
ROW = zbench.Row("a red circle", 1, 1.0)


@pytest.fixture()
def spec(tmp_path, tiny_config, make_lora):
    """A sweep of two cells on the tiny base (the base and one checkpoint, 32 px, 2 steps)."""
    run = tmp_path / "run"
    run.mkdir()
    make_lora(run / "style-000002.safetensors", rank=4, seed=2)
    config = tmp_path / "tiny.toml"
    model = json.dumps(str(tiny_config.model_path))
    config.write_text(
        f'name = "tiny"\n[model]\npath = {model}\npipeline = "ZImagePipeline"\ndevice = "cpu"\ndtype = "float32"\n'
        '[render]\nprompt = "a red circle"\nsteps = 2\nwidth = 32\nheight = 32\n'
    )
    path = tmp_path / "sweep.toml"
    path.write_text('config = "tiny.toml"\nloras = "run"\nprompts = ["a red circle"]\nseeds = "1"\n')
    return zbench.load_sweep(path)


@pytest.fixture()
def swept(spec, tmp_path) -> Path:
    """The sweep rendered into tmp_path/sweep."""
    out = tmp_path / "sweep"
    summary = zbench.run_sweep(spec, out, threads=1, quiet=True)
    assert summary.rendered == 2 and summary.errors == 0
    return out


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines() if line.strip()]


def _description(out: Path) -> dict:
    return json.loads((out / "sweep.json").read_text())


def _results(out: Path) -> list[zbench.CellResult]:
    run = zbench.scan_run(zbench.open_stored(out).run_dir)
    return zbench.open_stored(out).results(run, [ROW])


# 1. sweep.json and cells.jsonl read back with bounds and checked types


@pytest.mark.parametrize(
    "text, says",
    [
        ("[1, 2]", "not a zbench sweep"),
        ('{"zbench": [1, 2]}', "format version"),
        ('{"zbench": 1}', "has no"),
        ('{"zbench": 1, "run": 3}', "has no"),
        ("[" * 100_000 + "]" * 100_000, "nests deeper"),
        ('{"zbench": 1, "run": "/r", "base": "t", "checkpoints": [], "prompts": [], "seeds": [NaN]', "not valid JSON"),
        ("\xff\xfe", "not valid JSON"),
    ],
)
def test_a_broken_sweep_json_is_a_clear_error(swept, spec, text, says):
    (swept / "sweep.json").write_text(text, encoding="latin-1" if "\xff" in text else "utf-8")
    with pytest.raises(zbench.SweepError) as err:
        zbench.run_sweep(spec, swept, threads=1, quiet=True)
    assert "sweep.json" in str(err.value) and "--out folder" in str(err.value)
    with pytest.raises(zbench.SweepError, match=r"sweep\.json"):
        SweepStore(swept).description()
    with pytest.raises(ValueError, match=r"sweep\.json"):
        zbench.open_stored(swept)
    if says != "not valid JSON":  # the page's message says what is wrong
        with pytest.raises(ValueError, match=says):
            zbench.open_stored(swept)


@pytest.mark.parametrize(
    "field, value",
    [
        ("seeds", "1"),
        ("seeds", [True]),
        ("seeds", [-1]),
        ("scales", ["x"]),
        ("scales", [1e308]),
        ("prompts", [1]),
        ("checkpoints", 5),
        ("checkpoints", [{"name": 5}]),
        ("run", ""),
        ("base", None),
        ("settings", []),
        ("base_column", "yes"),
        ("seeds", list(range(10_001))),
        ("zbench", 2),
        ("zbench", "1"),
    ],
)
def test_a_sweep_json_field_of_the_wrong_type_is_named(swept, spec, field, value):
    (swept / "sweep.json").write_text(json.dumps({**_description(swept), field: value}))
    with pytest.raises(zbench.SweepError, match="zbench" if field == "zbench" else field):
        zbench.run_sweep(spec, swept, threads=1, quiet=True)
    with pytest.raises(ValueError, match=r"sweep\.json"):
        zbench.open_stored(swept)


def test_a_huge_or_special_sweep_json_is_refused_without_reading_it(swept, spec):
    path = swept / "sweep.json"
    path.unlink()
    with path.open("wb") as f:
        f.truncate(readback.MAX_SPEC_BYTES + 1)  # sparse: its size is all that is looked at
    with pytest.raises(zbench.SweepError, match="bytes"):
        zbench.run_sweep(spec, swept, threads=1, quiet=True)
    with pytest.raises(ValueError, match="bytes"):
        zbench.open_stored(swept)
    path.unlink()
    os.mkfifo(path)  # opening it would wait for a writer forever
    with pytest.raises(zbench.SweepError, match="not a regular file"):
        zbench.run_sweep(spec, swept, threads=1, quiet=True)
    assert zbench.open_stored(swept) is None  # never blocks: a FIFO is no sweep.json


def test_bad_lines_in_cells_jsonl_are_skipped_and_never_cost_the_others(swept, spec):
    good = _lines(swept)
    odd = {"checkpoint": "base", "prompt": "a red circle", "seed": 1, "scale": 1.0, "status": "ok"}
    bad = [
        b"not json",
        b"[" * 100_000,  # a RecursionError in json, which ended resume and browse before
        b"[" * 50 + b"]" * 50,
        json.dumps({**odd, "key": "k1", "image": 5}).encode(),
        json.dumps({**odd, "key": "k2", "seed": "1", "image": "images/x.png"}).encode(),
        json.dumps({**odd, "key": "k3", "seed": True, "image": "images/x.png"}).encode(),
        json.dumps({**odd, "key": "k4", "scale": "x", "image": "images/x.png"}).encode(),
        json.dumps({**odd, "key": 7, "image": "images/x.png"}).encode(),
        json.dumps({**odd, "key": "k5", "image": None}).encode(),  # neither an image nor an error
        json.dumps({**odd, "key": "k6", "image": "images/\x00.png"}).encode(),
        json.dumps({"key": "k7", "prompt": "a red circle"}).encode(),
        json.dumps({"key": "x" * 500, **odd, "image": "images/x.png"}).encode(),
        b'{"key": "k8", "scale": NaN}',
        b"x" * (MAX_LINE_BYTES + 10),  # too long: skipped without being held
        b'{"key": "\xed\xa0\x80"}',  # not UTF-8
        b"",
    ]
    with (swept / "cells.jsonl").open("ab") as f:
        f.write(b"\n".join(bad) + b"\n")
        f.write(json.dumps(good[0]).encode() + b"\n")  # a good line after all of them still counts
        f.write(b'{"key": "torn')  # a line cut by a kill
    records = SweepStore(swept).records()
    assert set(records) == {r["key"] for r in good}
    assert SweepStore(swept).done() == {r["key"] for r in good}
    again = zbench.run_sweep(spec, swept, threads=1, quiet=True)
    assert again.rendered == 0 and again.skipped == 2
    assert [r.status for r in _results(swept)] == ["ok", "ok"]


def test_a_huge_or_special_cells_jsonl_is_a_clear_error(swept, spec):
    path = swept / "cells.jsonl"
    path.unlink()
    with path.open("wb") as f:
        f.truncate(readback.MAX_CELLS_BYTES + 1)
    with pytest.raises(ValueError, match="bytes"):
        zbench.open_stored(swept)
    with pytest.raises(zbench.SweepError, match="bytes"):
        zbench.run_sweep(spec, swept, threads=1, quiet=True)
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(ValueError, match="not a regular file"):
        zbench.open_stored(swept)  # returns at once: a FIFO is opened without waiting
    with pytest.raises(zbench.SweepError, match="not what zbench writes"):
        zbench.run_sweep(spec, swept, threads=1, quiet=True)


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink", "symlinked folder", "the folder itself"])
def test_a_record_pointing_outside_the_folder_is_not_done_and_not_shown(swept, spec, tmp_path, where):
    outside = tmp_path / "private.png"
    Image.new("RGB", (32, 32), "red").save(outside)
    base = next(r for r in _lines(swept) if r["checkpoint"] == "base")
    image = {
        "absolute": str(outside),
        "dotdot": "images/../../private.png",
        "symlink": "images/base/link.png",
        "symlinked folder": "images/elsewhere/private.png",
        "the folder itself": ".",
    }[where]
    (swept / "images" / "base" / "link.png").symlink_to(outside)
    (swept / "images" / "elsewhere").symlink_to(tmp_path)
    with (swept / "cells.jsonl").open("a") as f:
        f.write(json.dumps({**base, "image": image}) + "\n")  # the later line for the key wins
    assert base["key"] not in SweepStore(swept).done()
    shown = _results(swept)
    assert shown[0].status == "error" and shown[0].image is None and shown[1].status == "ok"
    assert "outside" in shown[0].error
    resumed = zbench.run_sweep(spec, swept, threads=1, quiet=True)
    assert resumed.rendered == 1 and resumed.skipped == 1  # that cell is rendered again, inside the folder
    assert [r.status for r in _results(swept)] == ["ok", "ok"]


# 2. stored images: a pixel bound before decoding, downscaled when large


def _png(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height (its pixel data is one empty row: a bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def _replace_image(out: Path, checkpoint: str = "base") -> Path:
    record = next(r for r in _lines(out) if r["checkpoint"] == checkpoint)
    path = out / record["image"]
    path.unlink()
    return path


@pytest.mark.parametrize(
    "content, says",
    [
        (_png(100_000, 100_000), "pixels"),  # past PIL's DecompressionBombError
        (_png(9_000, 9_000), "pixels"),  # between zbench's bound and PIL's warning
        (_png(0, 32), "pixels"),
        (_png(32, 32), "cannot be shown"),  # a header and no pixels
        (b"GIF89a" + bytes(64), "not a PNG"),
        (b"", "not a PNG"),
    ],
)
def test_a_bomb_or_broken_image_is_an_error_cell_and_the_rest_shows(swept, content, says):
    _replace_image(swept).write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a DecompressionBombWarning escapes
        shown = _results(swept)
    assert [r.status for r in shown] == ["error", "ok"]
    assert says in shown[0].error and shown[1].image.size == (32, 32)


def test_pils_own_bomb_check_never_escapes(swept, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # 32 × 32 = 1024 > 2 × 200: DecompressionBombError
    stored._cache.items.clear()
    stored._cache.used = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shown = _results(swept)
    assert [r.status for r in shown] == ["error", "error"]
    assert "DecompressionBomb" in shown[0].error


@pytest.mark.parametrize("kind", ["fifo", "folder", "missing"])
def test_an_image_that_is_not_a_file_is_an_error_cell_at_once(swept, kind):
    path = _replace_image(swept)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    shown = _results(swept)
    assert [r.status for r in shown] == ["error", "ok"]


def test_a_large_image_is_shown_downscaled_and_the_cache_is_bounded_in_bytes(swept):
    Image.new("RGB", (4096, 512), "blue").save(_replace_image(swept))
    shown = _results(swept)
    assert shown[0].status == "ok" and shown[0].image.size == (stored.SHOWN_SIDE, 256)
    cache = stored._Cache(limit=3 * 100 * 100 * 2)
    for i in range(5):
        cache.put((i,), Image.new("RGB", (100, 100)))
    assert cache.used <= cache.limit and list(cache.items) == [(3,), (4,)]
    cache.put(("huge",), Image.new("RGB", (1000, 1000)))  # larger than the whole cache: never kept
    assert ("huge",) not in cache.items


# 3. stored render settings that would break the page


@pytest.mark.parametrize("value", [0, -32, "abc", None, 1e9, True, 33])
def test_a_stored_width_or_height_that_cannot_be_used_falls_back_to_the_images(swept, spec, value):
    description = _description(swept)
    description["settings"]["width"] = value
    description["settings"]["height"] = value
    (swept / "sweep.json").write_text(json.dumps(description))
    grid = zbench.open_stored(swept)
    assert (grid.settings.width, grid.settings.height) == (32, 32)  # the images' own size
    assert grid.settings.height / grid.settings.width == 1.0
    for record in _lines(swept):
        (swept / record["image"]).unlink()
    with pytest.raises(ValueError, match="width"):  # nothing to fall back on: a clear error, not a crash
        zbench.open_stored(swept)
    resumed = zbench.run_sweep(spec, swept, threads=1, quiet=True)  # a resume writes the settings afresh
    assert resumed.rendered == 2 and zbench.open_stored(swept).settings.width == 32


@pytest.mark.parametrize("field, value", [("steps", 0), ("guidance", "x"), ("negative", 5), ("steps", None)])
def test_other_stored_settings_that_cannot_be_used_are_a_clear_error(swept, field, value):
    description = _description(swept)
    description["settings"][field] = value
    (swept / "sweep.json").write_text(json.dumps(description))
    with pytest.raises(ValueError, match=field):
        zbench.open_stored(swept)


def test_a_grid_outputs_manifest_is_read_the_same_way(swept):
    manifest = {"run": "/r", "base": "t", "prompts": ["p"], "seeds": [1], "scales": [1.0], "steps": 2}
    manifest |= {"guidance": 0.0, "width": 0, "height": 32, "cells": [5, {"checkpoint": 3}]}
    (swept / "sweep.json").unlink()
    (swept / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="width"):  # no usable cell to take a size from
        zbench.open_stored(swept)
    (swept / "manifest.json").write_text("[" * 100_000)
    with pytest.raises(ValueError, match=r"manifest\.json"):
        zbench.open_stored(swept)


# 4. one owner: zbench writes only into folders it made, one process at a time


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "files",
    [
        {"cells.jsonl": '{"key": "abc"}\n'},
        {"notes.txt": "mine"},
        {"sweep.json": '{"name": "another program"}'},
        {"sweep.json": '{"run": "/elsewhere", "base": "tiny"}'},
        {"sweep.json": "not json at all", "cells.jsonl": ""},
        {".lock": "someone else's lock"},
        {"images/x.png": "x"},
    ],
)
def test_a_folder_zbench_did_not_write_is_refused_untouched(spec, tmp_path, files):
    out = tmp_path / "theirs"
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = _snapshot(out)
    with pytest.raises(zbench.SweepError, match=r"zbench did not write|did not create") as err:
        zbench.run_sweep(spec, out, threads=1, quiet=True)
    assert "empty or new --out folder" in str(err.value)
    assert _snapshot(out) == before and sorted(os.listdir(out)) == sorted({n.split("/")[0] for n in files})


@pytest.mark.parametrize("name", ["cells.jsonl", "images", "sweep.json", ".lock"])
def test_a_link_in_a_sweep_folder_is_never_written_through(swept, spec, tmp_path, name):
    target = tmp_path / "target"
    (swept / name).rename(tmp_path / "moved")
    if name == "images":
        target.mkdir()
    else:
        target.write_bytes((tmp_path / "moved").read_bytes())
    (swept / name).symlink_to(target)
    before = _snapshot(tmp_path / "target") if name == "images" else target.read_bytes()
    with pytest.raises(zbench.SweepError, match="link"):
        zbench.run_sweep(spec, swept, threads=1, quiet=True, retry_errors=True)
    assert (_snapshot(target) if name == "images" else target.read_bytes()) == before


def test_an_empty_folder_and_an_older_zbench_sweep_are_taken(spec, swept, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".DS_Store").write_bytes(b"\0")  # a file browser's, in any folder it showed
    assert zbench.run_sweep(spec, empty, threads=1, quiet=True).rendered == 2

    old = _description(swept)
    del old["zbench"]  # a sweep.json from before the marker: exactly the keys zbench always wrote
    assert set(old) == readback.LEGACY_KEYS
    (swept / "sweep.json").write_text(json.dumps(old))
    resumed = zbench.run_sweep(spec, swept, threads=1, quiet=True)
    assert resumed.skipped == 2 and resumed.rendered == 0
    assert _description(swept)["zbench"] == readback.FORMAT


def test_an_image_is_never_written_through_a_link(swept, spec, tmp_path):
    target = tmp_path / "theirs.png"
    target.write_bytes(b"theirs")
    path = _replace_image(swept)
    (path.parent / (path.name + ".tmp")).symlink_to(target)  # where the image is written before it is moved
    assert zbench.run_sweep(spec, swept, threads=1, quiet=True).rendered == 1
    assert target.read_bytes() == b"theirs" and Image.open(path).size == (32, 32)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (swept / "images" / "base").rename(tmp_path / "moved")
    (swept / "images" / "base").symlink_to(elsewhere)  # the base column's folder leads out
    with pytest.raises(zbench.SweepError, match="link"):
        zbench.run_sweep(spec, swept, threads=1, quiet=True)
    assert not any(elsewhere.iterdir())


def test_a_cell_that_cannot_be_written_stops_the_sweep_with_a_message(swept, spec):
    path = _replace_image(swept)
    path.mkdir()  # where the image goes: its cell is not done, and writing it fails
    with pytest.raises(zbench.SweepError, match="cannot be written"):
        zbench.run_sweep(spec, swept, threads=1, quiet=True)
    path.rmdir()
    assert zbench.run_sweep(spec, swept, threads=1, quiet=True).rendered == 1  # the folder was given up


def test_two_sweeps_on_one_folder_cannot_both_render(swept, spec):
    with SweepStore(swept) as first:
        first.start(zbench.sweep.plan_sweep(spec)[0])
        with pytest.raises(zbench.SweepError, match=f"pid {os.getpid()}") as err:
            zbench.run_sweep(spec, swept, threads=1, quiet=True)
        assert "another zbench sweep" in str(err.value) and "started" in str(err.value)
        with pytest.raises(zbench.SweepError, match="started already"):
            first.start(zbench.sweep.plan_sweep(spec)[0])
    assert zbench.run_sweep(spec, swept, threads=1, quiet=True).skipped == 2  # released at the end
    with pytest.raises(zbench.SweepError, match="start"):
        SweepStore(swept).write(None, None)  # writing needs the folder taken first


def test_a_lock_held_by_another_process_names_it(swept, spec):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, json, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, json.dumps({'zbench': 'sweep lock', 'pid': os.getpid(), 'host': 'h', "
            "'started': '2026-12-02 10:00:00'}).encode())\n"
            "print('held', flush=True)\n"
            "time.sleep(30)\n",
            str(swept / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(zbench.SweepError, match=f"pid {holder.pid} on h started 2026-12-02 10:00:00"):
            zbench.run_sweep(spec, swept, threads=1, quiet=True)
    finally:
        holder.kill()
        holder.wait()
    assert zbench.run_sweep(spec, swept, threads=1, quiet=True).skipped == 2  # the kernel dropped it


def test_the_lock_without_fcntl_is_an_exclusive_file_and_a_dead_holder_is_taken_over(tmp_path):
    path = tmp_path / ".lock"
    first = FolderLock(path, use_flock=False).acquire()
    with pytest.raises(zbench.SweepError, match=f"pid {os.getpid()}"):
        FolderLock(path, use_flock=False).acquire()
    first.release()
    assert not path.exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    said = {"zbench": "sweep lock", "pid": int(dead.stdout), "host": socket.gethostname(), "started": "then"}
    path.write_text(json.dumps(said))  # left by a process that is gone
    FolderLock(path, use_flock=False).acquire().release()
    path.write_text(json.dumps({**said, "host": "another-machine"}))  # can't tell from here: never taken
    with pytest.raises(zbench.SweepError, match="another-machine"):
        FolderLock(path, use_flock=False).acquire()


# 5. a wrong Ray address fails in seconds, leaving nothing behind


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(answer: bytes | None) -> tuple[socket.socket, int]:
    """A local TCP server that accepts, sends ``answer`` (None: nothing, ever) and keeps the connection open."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    kept = []  # closing at once would reset the connection before the answer is read

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            kept.append(conn)
            if answer is not None:
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def _children() -> set[int]:
    psutil = pytest.importorskip("psutil")
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _h2(block: bytes) -> bytes:
    """An HTTP/2 server's SETTINGS, then a whole answer on stream 1 whose header block is ``block``."""
    return bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]) + struct.pack(">I", len(block))[1:] + b"\x01\x05\x00\x00\x00\x01" + block


ANSWERS = {
    "silent": None,
    "http": b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    "proxy": _h2(b"\x8d"),  # :status 404, as an HTTP/2 proxy that accepts every connection answers
    "grpc, not a GCS": _h2(b"\x88\x00\x0bgrpc-status\x0212"),  # :status 200, grpc-status UNIMPLEMENTED
}
SAID = {
    "refused": "refused",
    "silent": "timed out",
    "http": "does not speak HTTP/2",
    "proxy": "HTTP/2 status 404",
    "grpc, not a GCS": "not a Ray head's GCS",
    "auto": "auto (127.0.0.1:",
    "client": "answers at ray://127.0.0.1:",
}


@pytest.mark.parametrize("kind", SAID)
def test_a_wrong_ray_address_fails_fast_and_starts_nothing(spec, tmp_path, monkeypatch, kind):
    ray = pytest.importorskip("ray", reason="pip install -r requirements-ray.txt")
    server = None
    if kind in ANSWERS:
        server, port = _server(ANSWERS[kind])
    else:
        port = _closed_port()
    address = {"auto": "auto", "client": f"ray://127.0.0.1:{port}"}.get(kind, f"127.0.0.1:{port}")
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")  # what "auto" finds
    before, started = _children(), time.monotonic()
    try:
        with pytest.raises(zbench.SweepError) as err:
            zbench.run_sweep(spec, tmp_path / "out", ray_address=address, threads=1, quiet=True)
    finally:
        if server is not None:
            server.close()
    assert time.monotonic() - started < 10
    said = str(err.value)
    assert f"127.0.0.1:{port}" in said and SAID[kind] in said, said
    assert ("ray start --head" in said and "leave out --ray" in said) or "ray://HOST" in said
    assert not ray.is_initialized() and _children() <= before
    assert not (tmp_path / "out").exists()  # said before the folder is touched


@pytest.mark.parametrize("address", ["nohost", "h:99999", "h:x", ":6379", "[::1]"])
def test_a_malformed_ray_address_is_said_at_once(spec, tmp_path, address):
    pytest.importorskip("ray", reason="pip install -r requirements-ray.txt")
    with pytest.raises(zbench.SweepError, match="not a Ray address"):
        zbench.run_sweep(spec, tmp_path / "out", ray_address=address, threads=1, quiet=True)


def test_cli_says_a_wrong_ray_address_and_exits(spec, tmp_path, capsys):
    pytest.importorskip("ray", reason="pip install -r requirements-ray.txt")
    from zbench.cli import main

    port = _closed_port()
    args = ["sweep", str(spec.source), "--out", str(tmp_path / "out"), "--ray", f"127.0.0.1:{port}", "--quiet"]
    assert main(args) == 1
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in capsys.readouterr().err


GRPC_OK = _h2(b"\x88")  # :status 200, and nothing more


def test_a_grpc_lookalike_is_bounded_by_the_init_timeout(tmp_path):
    """Something that answers gRPC's :status 200 but is no Ray cluster: ray.init would wait minutes; it gets INIT_S."""
    pytest.importorskip("ray", reason="pip install -r requirements-ray.txt")
    script = (
        "import socket, sys, threading, time\n"
        "server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen(64)\n"
        "def serve():\n"
        "    while True:\n"
        f"        conn, _ = server.accept(); conn.sendall({GRPC_OK!r})\n"
        "threading.Thread(target=serve, daemon=True).start()\n"
        "import zbench.sweep.pool as pool\n"
        "pool.INIT_S = 2\n"
        "started = time.monotonic()\n"
        "try:\n"
        "    pool._start(f'127.0.0.1:{server.getsockname()[1]}', 1, 1)\n"
        "except pool.SweepError as err:\n"
        "    print('refused', round(time.monotonic() - started, 1), err)\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("refused"), done.stdout + done.stderr[-2000:]
    assert "within 2 s" in done.stdout and float(done.stdout.split()[1]) < 5
    assert time.monotonic() - started < 30  # and the process exits, the abandoned ray.init notwithstanding


# 6. no import cycle in zbench/sweep


def _sweep_imports(path: Path) -> set[str]:
    """The zbench.sweep modules a file imports, lazy (inside functions) ones included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [a.name for a in node.names]
            found |= {n.split(".")[0] for n in names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("zbench.sweep."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("zbench.sweep.")}
    return found - {"__init__"}


def test_no_module_of_sweep_imports_itself_back():
    graph = {p.stem: _sweep_imports(p) for p in SWEEP.glob("*.py") if p.stem != "__init__"}
    assert graph["pool"] and "run" not in graph["pool"]

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            here, path = stack.pop()
            for nxt in sorted(graph.get(here, ())):
                if nxt == start:
                    return [*path, nxt]
                if nxt not in path:
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = [c for c in map(cycle_from, sorted(graph)) if c]
    assert not cycles, f"import cycles in zbench/sweep: {cycles}"


# Each module imported first, alone: a fresh interpreter loads zbench's third-party libraries once (torch alone
# takes seconds), forgets every zbench module, then forks a child per sweep module that imports just that one.
ISOLATED = """
import importlib, os, sys, traceback
import zbench
for name in [n for n in sys.modules if n == "zbench" or n.startswith("zbench.")]:
    del sys.modules[name]
failed = []
for module in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module("zbench.sweep." + module)
            assert "zbench.sweep." + module in sys.modules
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1]:
        failed.append(module)
print("failed:", *failed)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the isolated imports fork a child per module")
def test_each_sweep_module_imports_first_and_alone():
    modules = sorted(p.stem for p in SWEEP.glob("*.py"))
    done = subprocess.run(
        [sys.executable, "-c", ISOLATED, *modules], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip() == "failed:", done.stdout + done.stderr[-3000:]


# 7. every number written is valid JSON


def test_what_a_sweep_writes_is_strict_json(spec, tmp_path):
    from zbench.sweep.store import SweepCell

    out = tmp_path / "strict"
    with SweepStore(out) as store:
        store.start(zbench.sweep.plan_sweep(spec)[0])
        cell = zbench.Cell(0, 0, None, "a red circle", 1, 1.0)
        store.write(SweepCell("k" * 24, cell), zbench.CellResult(cell, None, "error", "x", float("nan"), float("inf")))
    for line in (out / "cells.jsonl").read_text().splitlines():
        record = json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} written"))
        assert record["swap_ms"] is None and record["render_ms"] is None
    json.loads((out / "sweep.json").read_text(), parse_constant=lambda name: pytest.fail(f"{name} written"))
