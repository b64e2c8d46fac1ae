"""Sheets from plain images: zoom panels, pages under a pixel limit, and the PNG/PDF/zip/manifest export."""

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zbench import Cell, CellResult, RenderSettings, Row
from zbench.engine.checkpoints import Checkpoint
from zbench.review.export import export_sheet, write_grid
from zbench.review.sheet import SheetInfo, compose_pages, compose_sheet
from zbench.review.zoom import ZoomBox, ZoomSpec, crop_zoom

EYES = ZoomSpec(ZoomBox("eyes", 0.25, 0.25, 0.25, 0.25), 4, "nearest")


def colour(row: int, col: int) -> tuple[int, int, int]:
    """A solid colour per cell, unlike any text, background or placeholder colour of a sheet."""
    return (13 + 6 * col, 40 + 11 * row, 230 - 3 * col)


def grid(ncols, nrows, *, size=64, image=None, errors=(), negative=""):
    """(results, rows, info) of a grid with a base column and ``ncols - 1`` checkpoints."""
    cks = [None] + [
        Checkpoint(name=f"jimeng_{e}.safetensors", path=Path(f"/run/jimeng_{e}.safetensors"), epoch=e, hash=f"{e:012x}")
        for e in range(1, ncols)
    ]
    rows = [Row("a red circle", seed) for seed in range(1, nrows + 1)]
    results = []
    for r, row in enumerate(rows):
        for c, ck in enumerate(cks):
            cell = Cell(r, c, ck, row.prompt, row.seed, 1.0)
            if (r, c) in errors:
                results.append(CellResult(cell, None, "error", "jimeng is truncated: re-download it"))
            else:
                picture = image(r, c) if image else Image.new("RGB", (size, size), colour(r, c))
                results.append(CellResult(cell, picture, "ok", None, 1.0, 2.0, "copy"))
    settings = RenderSettings(steps=8, guidance=0.0, width=size, height=size, negative=negative)
    info = SheetInfo("tiny base", "/run", settings, ("a red circle",), tuple(range(1, nrows + 1)), (1.0,))
    return results, rows, info


def count(image: Image.Image, rgb) -> int:
    return int(np.all(np.asarray(image.convert("RGB")) == rgb, axis=-1).sum())


def colours(image: Image.Image) -> dict[tuple[int, int, int], int]:
    """How many pixels of each colour ``image`` has."""
    rgb = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(np.uint32)
    values, counts = np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2], return_counts=True)
    return {(int(v) >> 16, int(v) >> 8 & 255, int(v) & 255): int(n) for v, n in zip(values, counts, strict=True)}


def contains(image: Image.Image, block: Image.Image) -> bool:
    """Whether ``block`` appears pixel for pixel somewhere in ``image``."""
    big, small = np.asarray(image), np.asarray(block)
    h, w = small.shape[:2]
    for y, x in zip(*np.nonzero(np.all(big == small[0, 0], axis=-1)), strict=True):
        if np.array_equal(big[y : y + h, x : x + w], small):
            return True
    return False


def noise(r, c):
    rng = np.random.default_rng(100 * r + c)
    return Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


def test_sheet_header_cells_and_error_cells(drawn):
    results, rows, info = grid(4, 2, errors={(1, 2)}, negative="blurry")
    sheet = compose_sheet(results, rows, info)
    for r in range(2):
        for c in range(4):
            assert count(sheet, colour(r, c)) == (0 if (r, c) == (1, 2) else 64 * 64)
    assert drawn[0] == "zbench comparison sheet"
    for line in ("base: tiny base    run: /run", "prompt: a red circle", "negative: blurry"):
        assert line in drawn
    assert any(t.startswith("seed: 1, 2    steps: 8    guidance: 0    size: 64x64") for t in drawn)
    assert any(t.startswith("error:") for t in drawn) and "seed 2" in drawn


def test_zoom_strips_below_the_grid_hold_the_enlarged_crops(drawn):
    results, rows, info = grid(3, 2, image=noise)
    plain = compose_sheet(results, rows, info)
    zoomed = compose_sheet(results, rows, info, zooms=[EYES, ZoomSpec(ZoomBox("hands", 0.5, 0.5, 0.5, 0.5), 2)])
    assert zoomed.width == plain.width and zoomed.height > plain.height + 2 * (64 + 64)
    for result in results:
        assert contains(zoomed, crop_zoom(result.image, EYES.box, factor=4))
        assert contains(zoomed, crop_zoom(result.image, ZoomBox("hands", 0.5, 0.5, 0.5, 0.5), factor=2))
        assert not contains(plain, crop_zoom(result.image, EYES.box, factor=4))
    starts = [i for i, t in enumerate(drawn) if t.startswith("zoom ")]
    assert len(starts) == 2 * 2  # one strip per zoom x row
    i = starts[0]  # the title wraps to the narrow page; the row label sits left of the strip
    assert " ".join(drawn[i : i + 2]) == "zoom eyes: 16,16-32,32 (16x16 px of 64x64) x4 nearest"
    assert drawn[i + 2 : i + 4] == ["base", ""] and drawn[i + 8 : i + 10] == ["eyes", "seed 1"]


def test_a_grid_too_large_for_one_page_is_split_without_shrinking_cells(drawn):
    results, rows, info = grid(31, 3)  # base + 30 checkpoints: one row is too wide for 300k px
    pages = compose_pages(results, rows, info, max_pixels=300_000)
    assert len(pages) > 3
    assert all(page.width * page.height <= 300_000 for page in pages)
    counts = [colours(page) for page in pages]
    for r in range(3):
        for c in range(1, 31):  # every checkpoint cell on exactly one page, at full size
            assert sorted(page.get(colour(r, c), 0) for page in counts)[-2:] == [0, 64 * 64]
        showing = [any(colour(r, c) in page for c in range(1, 31)) for page in counts]
        assert [page.get(colour(r, 0), 0) for page in counts] == [64 * 64 * s for s in showing]  # base repeated
    assert sum(map(bool, showing)) > 1  # rows are split into column groups
    assert re.fullmatch(rf"page 1 of {len(pages)} · rows 1-\d of 3 · epoch 1 … epoch \d+ of 30", drawn[1])


def test_pages_with_zoom_strips_stay_under_the_limit():
    results, rows, info = grid(31, 3)
    pages = compose_pages(results, rows, info, zooms=[EYES], max_pixels=300_000)
    assert all(p.width * p.height <= 300_000 for p in pages)
    counts = [colours(page) for page in pages]
    for r in range(3):
        for c in range(1, 31):  # the cell, and its 16 px region 4x in a strip, on one page
            assert sorted(page.get(colour(r, c), 0) for page in counts)[-2:] == [0, 64 * 64 + 64 * 64]


def test_a_small_grid_is_one_page():
    results, rows, info = grid(3, 2)
    (page,) = compose_pages(results, rows, info)
    assert np.array_equal(np.asarray(page), np.asarray(compose_sheet(results, rows, info)))


def test_cells_shrink_only_when_one_alone_does_not_fit():
    results, rows, info = grid(3, 2, size=512)
    pages = compose_pages(results, rows, info, max_pixels=200_000)
    assert all(p.width * p.height <= 200_000 for p in pages)
    assert 0 < count(pages[0], colour(0, 1)) < 512 * 512
    with pytest.raises(ValueError, match=r"at least 64 px.*max_pixels=1,000"):
        compose_pages(results, rows, info, max_pixels=1000)


def pdf_pages(path: Path) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", path.read_bytes()))


def test_export_writes_pages_pdf_zip_and_manifest(tmp_path):
    results, rows, info = grid(9, 2, errors={(0, 3)})
    out = tmp_path / "out"
    manifest = export_sheet(out, results, rows, info, zooms=[EYES], max_pixels=150_000)
    n = len(manifest["pages"])
    assert n > 1 and manifest["pages"] == [f"sheet-{i:02d}.png" for i in range(1, n + 1)]
    assert manifest["sheet"] == "sheet-01.png" and manifest["pdf"] == "sheet.pdf" and manifest["zip"] == "cells.zip"
    assert manifest["zooms"] == [EYES.to_json()]
    assert [[c["row"], c["col"]] for c in manifest["cells"]] == [[r, c] for r in range(2) for c in range(9)]
    for name in manifest["pages"]:
        with Image.open(out / name) as page:
            assert page.width * page.height <= 150_000
    pdf = out / "sheet.pdf"
    assert pdf.read_bytes().startswith(b"%PDF") and pdf_pages(pdf) == 1 + 2  # a cover, then 9 columns in 2 bands
    assert json.loads((out / "manifest.json").read_text()) == manifest
    images = [c["image"] for c in manifest["cells"] if c["image"]]
    assert len(images) == 17 and manifest["cells"][3]["image"] is None and manifest["cells"][3]["status"] == "error"
    with zipfile.ZipFile(out / "cells.zip") as zf:
        assert sorted(zf.namelist()) == sorted([*images, "manifest.json"])
        assert json.loads(zf.read("manifest.json")) == {k: v for k, v in manifest.items() if k != "files"}
        with Image.open(io.BytesIO(zf.read(images[1]))) as cell:
            assert "Seed: 1" in cell.text["parameters"] and "jimeng_1.safetensors" in cell.text["parameters"]
            assert json.loads(cell.text["zbench"])["checkpoint"] == "jimeng_1.safetensors"
    assert not list(out.rglob("*.tmp"))


def test_export_again_replaces_the_earlier_pages(tmp_path):
    results, rows, info = grid(9, 2)
    export_sheet(tmp_path, results, rows, info, max_pixels=150_000)
    assert (tmp_path / "sheet-02.png").is_file()
    manifest = write_grid(tmp_path, results[:9], rows[:1], info)  # one row: one page, PNG only
    assert manifest["sheet"] == "sheet.png" and manifest["pages"] == ["sheet.png"]
    assert manifest["pdf"] is None and manifest["zip"] is None
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["cells", "manifest.json", "sheet.png"]  # no stale pages, PDF or zip
    assert len(list((tmp_path / "cells").iterdir())) == 9


def test_a_failed_export_keeps_the_previous_manifest(tmp_path, monkeypatch):
    results, rows, info = grid(3, 1)
    export_sheet(tmp_path, results, rows, info)
    before = (tmp_path / "manifest.json").read_text()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", full_disk)
    results, rows, info = grid(4, 2)
    with pytest.raises(OSError, match="No space"):
        export_sheet(tmp_path, results, rows, info)
    assert (tmp_path / "manifest.json").read_text() == before
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_export_rejects_unknown_formats(tmp_path):
    results, rows, info = grid(2, 1)
    with pytest.raises(ValueError, match=r"formats should be .* got \('jpg',\)"):
        export_sheet(tmp_path, results, rows, info, formats=("jpg",))
