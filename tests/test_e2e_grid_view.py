"""The grid's view in a real browser, on a 30-checkpoint run: "fit" shows every column at 1280 and 1920 px and
refits when the window grows, a plain wheel scrolls while Ctrl+wheel zooms, and the cell size, transpose and
zoom come back after a reload.

Drives Debian's chromium with Playwright, like test_e2e_browser.py; one server for the module. Screenshots go to
``$ZBENCH_SCREENSHOTS`` when set (to look at them), else to the test's temporary folder.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from e2e_support import BROWSER_TESTS, CHROMIUM, playwright, serve_demo_run

pytestmark = BROWSER_TESTS
EPOCHS = 30  # the run: 30 checkpoints and the base column
CELLS = EPOCHS + 1


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app on the demo's 128 px base with a 30-checkpoint run, for every test of this module."""
    # 2 denoising steps rather than 8: the layout does not depend on them, the module's time does.
    with serve_demo_run(tmp_path_factory.mktemp("grid-view"), EPOCHS, steps=2) as served:
        yield served


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def _grid(page, expr: str):
    """Evaluate ``expr`` with ``z``, the live state of the grid component (see grid.js)."""
    return page.evaluate(f"(() => {{ const z = window.__zbenchGrid; return {expr}; }})()")


def _open(browser, url: str, width: int, height: int, log: Path, errors: list[str]):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(url)
    _wait_grid(page, log)
    return page


def _wait_grid(page, log: Path) -> None:
    try:
        page.get_by_text(f"{CELLS} cells ·").wait_for(timeout=240_000)
        page.wait_for_function(
            f"window.__zbenchGrid && window.__zbenchGrid.images.length === {CELLS} && "
            "window.__zbenchGrid.images.every((img) => img.complete && img.naturalWidth > 0)"
        )
    except playwright.TimeoutError:
        print(page.inner_text("body"), log.read_text())
        raise


def _fits(page, width: int) -> dict:
    """Where every column header ends, against the window and the grid's box; the cell widths."""
    geometry = _grid(
        page,
        """(() => {
          const box = z.scroll.getBoundingClientRect();
          return {
            rights: z.labels.map((th) => th.getBoundingClientRect().right),
            cells: [...z.root.querySelectorAll('.zb-cell')].map((d) => d.getBoundingClientRect().width),
            boxRight: box.right, overflow: z.scroll.scrollWidth - z.scroll.clientWidth,
            head: z.labels[0].getBoundingClientRect().height, size: z.size, cell: z.cell,
          };
        })()""",
    )
    assert geometry["cell"] == "fit"
    assert len(geometry["rights"]) == CELLS and len(geometry["cells"]) == CELLS
    assert max(geometry["rights"]) <= min(width, geometry["boxRight"]) + 0.5, geometry
    assert geometry["overflow"] <= 0, geometry  # no column hidden past the box's edge
    assert min(geometry["cells"]) >= 40, geometry
    assert geometry["head"] < 100, geometry  # compact headers: the signal strip is a few thin bars
    return geometry


def test_fit_shows_every_column_at_1280_and_1920_and_refits_on_resize(served, browser, shots):
    url, _, log = served
    errors: list[str] = []
    page = _open(browser, url, 1280, 800, log, errors)
    # 31 columns of >= 40 px need the whole 1280 px: with the sidebar open the grid says so; it goes (its «
    # button), the grid refits and the note goes.
    note = _grid(page, "z.fitNote.textContent")
    assert re.match(r"\d+ of 31 columns in view at the smallest cells \(\d+ px\): .*close the sidebar", note), note
    page.get_by_test_id("stSidebar").hover()
    page.get_by_role("button", name="Collapse sidebar").click()
    page.wait_for_function("window.__zbenchGrid.size >= 40", timeout=10_000)
    page.wait_for_timeout(500)  # the sidebar's animation ends
    narrow = _fits(page, 1280)
    assert _grid(page, "z.fitNote.textContent") == ""
    page.screenshot(path=str(shots / "grid-view-1280.png"))
    # The headers: epoch and step in full in a 40 px column, the file name and hash on hover.
    heads = _grid(
        page,
        """z.labels.map((th) => { const e = th.querySelector('.zb-e'), s = th.querySelector('.zb-s');
             return [e.textContent, s ? s.textContent : '', e.scrollWidth <= e.clientWidth,
                     !s || s.scrollWidth <= s.clientWidth, e.getBoundingClientRect().width > 0, th.title]; })""",
    )
    assert heads[0][0] == "base"
    assert [h[:2] for h in heads[1:]] == [[f"e{e}", f"s{30 * e}"] for e in range(1, EPOCHS + 1)]
    assert all(h[2] and h[3] and h[4] for h in heads), heads  # shown, and not cut
    assert "dreamy-000012.safetensors" in heads[12][5] and "sha256 " in heads[12][5]

    # A wider window: the same page refits (no reload), every column still in view, wider cells.
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.wait_for_function(f"window.__zbenchGrid.size > {narrow['size']}", timeout=10_000)
    wide = _fits(page, 1920)
    assert min(wide["cells"]) > max(narrow["cells"])
    assert _grid(page, "z.builds") == 1  # a new size redraws nothing
    page.close()

    # 1920 with the sidebar open, as the page opens: every column in view too.
    page = _open(browser, url, 1920, 1080, log, errors)
    _fits(page, 1920)
    page.screenshot(path=str(shots / "grid-view-1920.png"))
    page.close()
    assert not errors, errors


def _saved_view(run: Path, expect, timeout: float = 20) -> dict:
    """The view in the run's page.json once ``expect(view)`` holds (the grid reports it after a pause)."""
    path = run / ".zbench" / "page.json"
    deadline = time.monotonic() + timeout
    view = None
    while time.monotonic() < deadline:
        if path.exists():
            view = json.loads(path.read_text()).get("view")
            if view and expect(view):
                return view
        time.sleep(0.2)
    raise AssertionError(f"page.json's view did not become the expected one: {view}")


def _centre(page, locator) -> tuple[float, float]:
    box = locator.bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_wheel_scrolls_ctrl_wheel_zooms_and_the_view_comes_back_after_a_reload(served, browser, shots):
    url, run, log = served
    errors: list[str] = []
    page = _open(browser, url, 1920, 1080, log, errors)

    # Checkpoints as rows: 31 rows, taller than the window; a plain wheel over an image scrolls, never zooms.
    page.get_by_label("checkpoints as rows").check()
    cell = page.locator(".zb-cell").first
    page.mouse.move(*_centre(page, cell))
    page.mouse.wheel(0, 400)
    page.wait_for_function("window.__zbenchGrid.scroll.scrollTop > 0", timeout=5_000)
    assert _grid(page, "z.view.s") == 1

    # Ctrl+wheel (a trackpad pinch sends the same) zooms every cell; the grid does not scroll.
    cell = page.locator(".zb-cell").nth(1)
    cell.scroll_into_view_if_needed()
    top = _grid(page, "z.scroll.scrollTop")
    page.mouse.move(*_centre(page, cell))
    page.keyboard.down("Control")
    page.mouse.wheel(0, -300)
    page.keyboard.up("Control")
    page.wait_for_function("window.__zbenchGrid.view.s > 1.5", timeout=5_000)
    assert _grid(page, "z.scroll.scrollTop") == top
    # Zoomed in, a drag pans every cell (and opens nothing).
    x, y = _centre(page, cell)
    before = _grid(page, "[z.view.x, z.view.y]")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 60, y - 40, steps=5)
    page.mouse.up()
    after = _grid(page, "[z.view.x, z.view.y]")
    assert after[0] > before[0] and after[1] > before[1] and _grid(page, "z.open") is None

    # A chosen cell size; the view reaches the run's page.json and comes back after a reload.
    page.get_by_label("cell size").fill("200")
    view = _grid(page, "z.state()")
    assert view["cell"] == 200 and view["transpose"] is True and view["zoom"] > 1.5
    _saved_view(run, lambda v: v == view)
    page.screenshot(path=str(shots / "grid-view-transposed-zoomed.png"))
    page.reload()
    _wait_grid(page, log)
    assert _grid(page, "[z.cell, z.size, z.transpose]") == [200, 200, True]
    assert _grid(page, "z.state()") == view
    page.screenshot(path=str(shots / "grid-view-reloaded.png"))

    # The large view's keys go no further than the grid (nothing else on the page sees them).
    page.evaluate("window.__leaked = 0; window.addEventListener('keydown', () => { window.__leaked += 1; })")
    page.locator(".zb-cell").nth(2).click()
    page.keyboard.press("ArrowRight")
    assert _grid(page, "z.open.c") == 3 and page.evaluate("window.__leaked") == 0
    page.keyboard.press("Escape")
    assert _grid(page, "z.open") is None

    # Back to fit, columns again, no zoom: that comes back too.
    page.get_by_role("button", name="fit", exact=True).click()
    page.get_by_label("checkpoints as rows").uncheck()
    page.get_by_role("button", name="reset zoom").click()
    _saved_view(run, lambda v: v["cell"] == "fit" and not v["transpose"] and v["zoom"] == 1)
    page.reload()
    _wait_grid(page, log)
    assert _grid(page, "[z.cell, z.transpose, z.view.s]") == ["fit", False, 1]
    _fits(page, 1920)
    page.close()
    assert not errors, errors


def test_a_typed_checkpoint_file_opens_with_its_column_in_view(served, browser, shots):
    """Cells wider than the window: a link to (or a typed path of) epoch 28's file scrolls its column into view."""
    url, run, log = served
    errors: list[str] = []
    page = _open(browser, url, 1280, 800, log, errors)
    page.get_by_label("cell size").fill("200")
    _saved_view(run, lambda v: v["cell"] == 200)
    page.goto(f"{url}/?run={run / 'dreamy-000028.safetensors'}")
    _wait_grid(page, log)
    page.wait_for_function("window.__zbenchGrid.scroll.scrollLeft > 0", timeout=10_000)
    where = _grid(
        page,
        """(() => {
          const box = z.scroll.getBoundingClientRect(), c = z.data.focus, el = z.labels[c].getBoundingClientRect();
          const name = z.data.columns[c].checkpoint;
          return {focus: c, name, left: el.left >= box.left, right: el.right <= box.right};
        })()""",
    )
    assert where == {"focus": 28, "name": "dreamy-000028.safetensors", "left": True, "right": True}, where
    page.screenshot(path=str(shots / "grid-view-focused.png"))
    page.get_by_role("button", name="fit", exact=True).click()  # the module's other tests start from "fit"
    _saved_view(run, lambda v: v["cell"] == "fit")
    page.close()
    assert not errors, errors
