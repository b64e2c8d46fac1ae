"""Exports at the size of a real run: a 20-checkpoint x 2-seed grid at 256x256, with a zoom panel and an error cell.

The share image's rules (size, bands, legible text, no local paths, strips under their columns), the
PDF's text and native images, the timelines' frames in training order, the manifest's file list, and
the HTML viewer offline in a real browser.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pypdf
import pytest
from PIL import Image, ImageDraw, JpegImagePlugin

from zbench import Cell, CellResult, RenderSettings, Row, SheetInfo, ZoomBox, ZoomSpec, export_sheet
from zbench.engine.checkpoints import Checkpoint

SIZE, CHECKPOINTS, SEEDS = 256, 20, (1, 2)
EYES = ZoomSpec(ZoomBox("eyes", 0.25, 0.25, 0.25, 0.125))
ERROR_CELL = (1, 7)
PROMPT = "a knight in silver armour, rain"


def colour(row: int, col: int) -> tuple[int, int, int]:
    return (10 + 11 * col, 60 + 90 * row, 240 - 9 * col)


@pytest.fixture(scope="module")
def grid():
    cks = [None] + [
        Checkpoint(
            name=f"knight-{e:06d}.safetensors",
            path=Path(f"/home/me/runs/knight/knight-{e:06d}.safetensors"),
            epoch=e,
            step=e * 50,
            hash=f"{e:012x}",
        )
        for e in range(1, CHECKPOINTS + 1)
    ]
    rows = [Row(PROMPT, seed) for seed in SEEDS]
    results = []
    for r, row in enumerate(rows):
        for c, ck in enumerate(cks):
            cell = Cell(r, c, ck, row.prompt, row.seed, 1.0)
            if (r, c) == ERROR_CELL:
                results.append(CellResult(cell, None, "error", "knight-000007 holds NaN values: training diverged"))
            else:
                results.append(CellResult(cell, Image.new("RGB", (SIZE, SIZE), colour(r, c)), "ok", None, 1.0, 2.0))
    settings = RenderSettings(steps=8, guidance=0.0, width=SIZE, height=SIZE)
    info = SheetInfo("Z-Image-Turbo", "/home/me/runs/knight", settings, (PROMPT,), SEEDS, (1.0,))
    return results, rows, info


@pytest.fixture(scope="module")
def exported(grid, tmp_path_factory):
    """One export of both presets (share and archive), and every text drawn into the share image."""
    drawn = []
    real = ImageDraw.ImageDraw.text

    def spy(self, xy, text, *args, **kwargs):
        drawn.append((xy, text, kwargs.get("font"), self.im.size))
        return real(self, xy, text, *args, **kwargs)

    out = tmp_path_factory.mktemp("export")
    mp = pytest.MonkeyPatch()
    mp.setattr(ImageDraw.ImageDraw, "text", spy)
    results, rows, info = grid
    release = {"checkpoint": "knight-000012.safetensors", "hash": "00000000000c", "who": "ana", "when": "2026-11-26"}
    try:
        manifest = export_sheet(out, results, rows, info, zooms=[EYES], release=release)
    finally:
        mp.undo()
    return out, manifest, drawn


def test_share_image_fits_and_reads(exported):
    out, manifest, drawn = exported
    path = out / manifest["share"]
    assert manifest["share"] == "share.webp" and path.stat().st_size <= 8 * 2**20
    with Image.open(path) as share:
        width, height = share.size
    assert max(width, height) <= 4096 and list(share.size) == manifest["share_size"]
    on_share = [(xy, text, font) for xy, text, font, size in drawn if size == (width, height)]
    texts = [t for _, t, _ in on_share]
    assert "/home" not in "".join(texts) and "knight · Z-Image-Turbo" in texts  # title: the run's folder, the base
    header = [font.size for _, t, font in on_share if t.startswith("prompt") or " steps · " in t]
    assert header and min(header) >= 0.02 * height  # header text at least 2% of the image height
    labels = [font.size for _, t, font in on_share if t.startswith(("epoch", "base"))]
    assert len(labels) >= CHECKPOINTS and min(labels) >= 16
    # 21 columns wrap into bands of at most 8, each led by the base column: 3 bands
    assert texts.count("base (LoRA off)") == 3
    assert [t for t in texts if t.startswith("epoch")][:8] == [f"epoch {e}" for e in range(1, 8)] + ["epoch 8"]


def test_zoom_strips_sit_under_their_columns(exported):
    out, manifest, _ = exported
    with Image.open(out / manifest["share"]) as share:
        pixels = np.asarray(share.convert("RGB")).astype(int)
    for col in (0, 3, 9):  # base, a checkpoint of band 1, one of band 2
        mask = np.abs(pixels - colour(0, col)).sum(axis=-1) <= 12  # WebP is lossy: near the colour
        cols_hit = np.nonzero(mask.any(axis=0))[0]
        rows_hit = np.nonzero(mask.any(axis=1))[0]
        runs = np.split(rows_hit, np.nonzero(np.diff(rows_hit) > 1)[0] + 1)
        assert len(runs) >= 2, "the cell and its zoom crop"
        lefts = {int(np.nonzero(mask[run[len(run) // 2]])[0][0]) for run in runs}
        assert max(lefts) - min(lefts) <= 2 and cols_hit.size > 0  # the same left edge: under its column


def test_share_jpeg_keeps_full_colour_resolution(grid, tmp_path):
    results, rows, info = grid
    manifest = export_sheet(tmp_path, results, rows, info, preset="share", share_format="jpg")
    with Image.open(tmp_path / "share.jpg") as share:
        assert JpegImagePlugin.get_sampling(share) == 0  # 4:4:4: no chroma subsampling
    assert manifest["pdf"] is None and manifest["pages"] == [] and not (tmp_path / "cells").exists()


def test_pdf_has_text_native_images_and_a_cover(exported, grid, tmp_path):
    out, manifest, _ = exported
    reader = pypdf.PdfReader(out / manifest["pdf"])
    assert len(reader.pages) == 1 + 3  # the cover, then one page per band
    cover = reader.pages[0].extract_text()
    assert "knight · Z-Image-Turbo" in cover and "base model: Z-Image-Turbo" in cover and "/home" not in cover
    assert "release: knight-000012.safetensors" in cover and "ana" in cover
    text = " ".join(page.extract_text() for page in reader.pages)
    for e in (1, 8, 20):
        assert f"knight-{e:06d}.safetensors" in text and f"sha256 {e:012x}" in text
    assert PROMPT in text and "8 steps" in text
    page = reader.pages[1]
    assert round(float(page.mediabox.width)) == 842 and round(float(page.mediabox.height)) == 595  # A4 landscape
    images = [x.get_object() for x in page["/Resources"]["/XObject"].values()]
    assert all(i["/Filter"] == "/FlateDecode" for i in images)  # lossless
    assert {(i["/Width"], i["/Height"]) for i in images} >= {(SIZE, SIZE)}  # native resolution
    results, rows, info = grid
    small = export_sheet(tmp_path, results, rows, info, preset="archive", paper="letter", small_pdf=True)
    letter = pypdf.PdfReader(tmp_path / small["pdf"]).pages[1]
    assert round(float(letter.mediabox.width)) == 792
    assert {x.get_object()["/Filter"] for x in letter["/Resources"]["/XObject"].values()} == {"/DCTDecode"}


def test_timelines_play_every_checkpoint_in_training_order(exported):
    out, manifest, _ = exported
    assert manifest["timelines"][:2] == ["timelines/row-01.webp", "timelines/row-01-eyes.webp"]
    assert len([t for t in manifest["timelines"] if t.endswith(".webp")]) == 2 * 2  # rows x (image, zoom)
    with Image.open(out / manifest["timeline"]) as anim:
        assert anim.n_frames == CHECKPOINTS + 1
        durations = []
        for i in range(anim.n_frames):
            anim.seek(i)
            anim.load()
            durations.append(anim.info["duration"])
            frame = np.asarray(anim.convert("RGB"))
            assert tuple(frame[-10, frame.shape[1] // 2]) == colour(0, i)  # base, then epoch 1, 2, ... 20
    assert durations[0] == durations[-1] > durations[1]  # the base and the last frame are held


def test_manifest_lists_every_file_with_its_size(exported):
    out, manifest, _ = exported
    listed = {f["path"]: f["bytes"] for f in manifest["files"]}
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert set(listed) == on_disk
    assert all(listed[p] == (out / p).stat().st_size for p in on_disk if p != "manifest.json")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_html_viewer_works_offline_in_a_browser(exported):
    sync_api = pytest.importorskip("playwright.sync_api")
    out, manifest, _ = exported
    requests = []
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        context = browser.new_context(viewport={"width": 1280, "height": 800}, offline=True)
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url))
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / manifest["html"]).as_uri())
        page.wait_for_function("document.querySelectorAll('.zb-cell img').length > 0")
        loaded = page.evaluate(
            "[...document.querySelectorAll('.zb-cell img')].filter(i => i.complete && i.naturalWidth > 0).length"
        )
        assert loaded == 2 * (CHECKPOINTS + 1) - 1  # every image but the error cell's
        assert page.locator(".zb-error").count() == 1
        assert page.evaluate("getComputedStyle(document.querySelector('.zb th')).position") == "sticky"
        first = page.locator(".zb-cell").nth(1)
        box = first.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        zooms = "[...document.querySelectorAll('.zb-cell img')].map(i => i.style.transform)"
        page.mouse.wheel(0, 300)  # a plain wheel scrolls, as everywhere else; it never zooms
        assert all("scale(1)" in t or not t for t in page.evaluate(zooms))
        page.keyboard.down("Control")  # Ctrl + wheel (and a trackpad pinch) zooms every cell at once
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, -300)
        page.keyboard.up("Control")
        transforms = page.evaluate(zooms)
        assert len(set(transforms)) == 1 and "scale(1)" not in transforms[0]  # one zoom for every cell
        first.click()
        page.keyboard.press("ArrowRight")
        assert "epoch 2" in page.locator(".zb-caption").text_content()
        browser.close()
    assert not errors and all(url.startswith("file:") or url.startswith("data:") for url in requests)
