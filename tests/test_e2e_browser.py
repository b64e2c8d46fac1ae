"""End to end in a real headless browser, at the size of a real run, on the embedded demo's base.

Drives Debian's chromium with Playwright (both installed by .ci/run) at 1280x800. Screenshots go to
``$ZBENCH_SCREENSHOTS`` when set (to look at them), else to the test's temporary folder.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from e2e_support import BROWSER_TESTS, CHROMIUM, playwright, serve_demo_run
from PIL import Image

from zbench import DecisionStore

pytestmark = BROWSER_TESTS
EPOCHS = 25  # a real run: 25 kohya-named checkpoints


@pytest.fixture()
def server(tmp_path):
    """The app on the demo's base with a 25-checkpoint run (exports and decisions land in the copy)."""
    with serve_demo_run(tmp_path, EPOCHS) as (url, run, _):
        yield url, run


def _grid(page, expr: str):
    """Evaluate ``expr`` with ``z``, the live state of the grid component (see grid.js)."""
    return page.evaluate(f"(() => {{ const z = window.__zbenchGrid; return {expr}; }})()")


def _image_of(page, locator) -> Image.Image:
    """The image an <img> shows, fetched by the page itself (the media URL the grid uses)."""
    data = locator.evaluate(
        """async (img) => {
          const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
          let s = ""; for (const b of bytes) s += String.fromCharCode(b); return btoa(s);
        }"""
    )
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def _wait_grid(page, cells: int, shots: Path, log: Path) -> None:
    try:
        page.get_by_text(f"{cells} cells ·").wait_for(timeout=240_000)
        page.wait_for_function(f"window.__zbenchGrid && window.__zbenchGrid.images.length === {cells}")
    except playwright.TimeoutError:
        page.screenshot(path=str(shots / "timeout.png"), full_page=True)
        print(page.inner_text("body"), log.read_text())
        raise


def test_browser_real_run_grid_panels_ratings_votes_and_reload(server, tmp_path):
    url, run = server
    shots = Path(os.environ.get("ZBENCH_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "streamlit.log"
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(url)

        # 1. The first grid without any input; at 1280x800 "fit" shows every column (>= 36 px) and the header reads.
        _wait_grid(page, EPOCHS + 1, shots, log)
        page.screenshot(path=str(shots / "1-grid.png"))
        widths = _grid(page, "z.images.map((img) => img.getBoundingClientRect().width)")
        assert len(widths) == EPOCHS + 1 and min(widths) >= 36
        heads = _grid(
            page,
            """z.labels.map((th) => { const l = th.querySelector('.zb-label');
                 return [l.textContent, l.getBoundingClientRect().height, l.scrollWidth <= l.clientWidth]; })""",
        )
        assert [h[0] for h in heads] == ["base", *(f"epoch {e}" for e in range(1, EPOCHS + 1))]
        assert all(h[1] < 24 and h[2] for h in heads), heads  # one line each, not cut: no per-letter wrap
        first = page.evaluate("window.__first = window.__zbenchGrid.images[0], true")
        assert first and _grid(page, "z.builds") == 1

        # 2. Rate from the grid: open a cell, 4; flip right with the arrow key, 2. The images stay.
        cells = page.locator(".zb-cell")
        cells.nth(3).click()
        page.keyboard.press("4")
        page.keyboard.press("ArrowRight")
        page.wait_for_timeout(300)
        page.keyboard.press("2")
        page.keyboard.press("k")  # the quick pass: keep this one on the shortlist
        page.screenshot(path=str(shots / "2-large-view.png"))
        page.keyboard.press("Escape")
        page.wait_for_function("window.__zbenchGrid.data.columns[4].stars === 2", timeout=30_000)
        page.wait_for_function("window.__zbenchGrid.data.columns[4].short === true", timeout=30_000)
        review = DecisionStore(run).load()
        assert review.ratings == {"dreamy-000003.safetensors": 4, "dreamy-000004.safetensors": 2}
        assert review.shortlist == {"dreamy-000004.safetensors": True}
        assert _grid(page, "z.data.columns[3].stars") == 4

        # 3. Draw a box on one cell: a panel of that region under every column, the strip showing that region.
        page.get_by_role("button", name="draw a box").click()
        box = cells.nth(2).bounding_box()
        x0, y0 = box["x"] + 0.30 * box["width"], box["y"] + 0.20 * box["height"]
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x0 + 0.30 * box["width"], y0 + 0.30 * box["height"], steps=6)
        page.mouse.up()
        page.wait_for_function("window.__zbenchGrid.data.panels.length === 1", timeout=30_000)
        panel = _grid(page, "z.data.panels[0]")
        assert panel["name"] == "region 1"
        assert np.allclose([panel[k] for k in "xywh"], [0.30, 0.20, 0.30, 0.30], atol=0.02)
        page.screenshot(path=str(shots / "3-panel.png"))
        strip = page.locator(".zb-strip .zb-cropcell").nth(2)
        shown = Image.open(io.BytesIO(strip.screenshot())).convert("RGB")
        source = _image_of(page, cells.nth(2).locator("img"))
        w, h = source.size

        def region(x: float, y: float) -> np.ndarray:
            crop = source.crop((round(x * w), round(y * h), round((x + panel["w"]) * w), round((y + panel["h"]) * h)))
            return np.asarray(crop.resize(shown.size, Image.Resampling.NEAREST), dtype=float)

        right = np.abs(np.asarray(shown, dtype=float) - region(panel["x"], panel["y"])).mean()
        wrong = np.abs(np.asarray(shown, dtype=float) - region(0.0, 0.0)).mean()
        assert right < 12 and right < wrong / 3, (right, wrong)
        assert json.loads((run / ".zbench" / "page.json").read_text())["zooms"][0]["name"] == "region 1"

        # 4. Votes by key right after opening the tab: the tab button has the focus, and the arrows must vote,
        #    not move to another tab. Then A, then a button. Votes rerun their own part only: the grid stays.
        summary = page.get_by_text(f"{EPOCHS + 1} cells ·").inner_text()
        page.get_by_role("tab", name="Pick a release").click()
        page.get_by_text("Keys live").wait_for(timeout=30_000)
        page.keyboard.press("ArrowRight")
        page.get_by_text("1 vote:").wait_for(timeout=30_000)
        pick_tab = page.get_by_role("tab", name="Pick a release")
        assert pick_tab.get_attribute("aria-selected") == "true"  # still on the tab: the key voted
        page.keyboard.press("a")
        page.get_by_text("2 votes:").wait_for(timeout=30_000)
        page.get_by_role("button", name="Left is better").click()
        page.get_by_text("3 votes:").wait_for(timeout=30_000)
        votes = DecisionStore(run).load().votes
        shortlist = {c for v in votes for c in (v.winner, v.loser)}
        assert len(votes) == 3 and len(shortlist) <= 7  # drawn among the shortlist (6 and the kept one), not all 25
        # Typing in a field: the keys pause (the line says so) and the arrow moves the caret, not a vote.
        page.get_by_role("textbox", name="Why").click()
        page.get_by_text("Keys paused while you type").wait_for(timeout=10_000)
        page.keyboard.type("sharp ")
        page.keyboard.press("ArrowLeft")
        page.wait_for_timeout(800)
        assert len(DecisionStore(run).load().votes) == 3
        # Ratings 4 and 2 and three votes are weak evidence: nothing is preselected, and the page says what
        # would settle it.
        page.get_by_text("Nothing is preselected").wait_for(timeout=30_000)
        playwright.expect(page.get_by_text("No rating values yet")).to_have_count(0)
        page.screenshot(path=str(shots / "4-pick.png"), full_page=True)
        page.get_by_role("tab", name="Grid").click()
        page.get_by_role("heading", name="dreamy").click()  # away from the tab list
        page.keyboard.press("ArrowLeft")  # off its tab the arrow keys do not vote
        page.wait_for_timeout(1000)
        assert len(DecisionStore(run).load().votes) == 3
        assert _grid(page, "z.builds") == 1 and page.evaluate("window.__first === window.__zbenchGrid.images[0]")
        assert page.get_by_text(f"{EPOCHS + 1} cells ·").inner_text() == summary  # no cell rendered again
        # The signal strip under the column headers: a chip per signal, coloured.
        chips = _grid(page, "z.labels[5].querySelectorAll('.zb-chip').length")
        assert chips == len(_grid(page, "z.data.signals")) >= 3

        # 5. Settings are committed by Render, kept beside the run, and back after a reload.
        seeds = page.get_by_role("textbox", name="Seeds")
        seeds.fill("42, 7")
        page.get_by_role("button", name="Render").click()
        _wait_grid(page, 2 * (EPOCHS + 1), shots, log)
        page.reload()
        _wait_grid(page, 2 * (EPOCHS + 1), shots, log)
        assert page.get_by_role("textbox", name="Seeds").input_value() == "42, 7"
        assert _grid(page, "z.data.rows") == ["seed 42", "seed 7"]
        assert _grid(page, "z.data.panels.map((p) => p.name)") == ["region 1"]
        assert _grid(page, "z.strips.length") == 2 and _grid(page, "z.data.columns[3].stars") == 4
        page.screenshot(path=str(shots / "5-reloaded.png"), full_page=True)
        browser.close()
    assert not errors, errors


def test_browser_exports_the_grid_with_its_panel(server, tmp_path):
    url, run = server
    shots = Path(os.environ.get("ZBENCH_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    from zbench import ZoomBox, ZoomSpec, save_page_state

    save_page_state(run, {"zooms": [ZoomSpec(ZoomBox("hand", 0.5, 0.5, 0.25, 0.25))]})
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url)
        _wait_grid(page, EPOCHS + 1, shots, tmp_path / "streamlit.log")
        page.get_by_role("tab", name="Export").click()
        page.get_by_role("button", name="Export", exact=True).click()
        page.get_by_text("Exported to").wait_for(timeout=120_000)
        page.screenshot(path=str(shots / "6-export.png"), full_page=True)
        browser.close()
    (out,) = list((run / "zbench-sheets").iterdir())
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["cells"]) == EPOCHS + 1 and all(c["status"] == "ok" for c in manifest["cells"])
    assert manifest["zooms"][0]["name"] == "hand"
    assert (out / manifest["pdf"]).read_bytes().startswith(b"%PDF")
    assert (out / manifest["zip"]).stat().st_size > 0
