"""The Timeline tab's player and the Pick tab's blind pair in a real browser, on the demo's 128 px base with an
8-checkpoint run: frames labelled by epoch, play and pause, frame by frame (buttons, slider and keys that go no
further than the player), a speed, the grid's own lossless PNGs at native size times a whole factor, pixelated;
the blind pair lossless and pixelated at a whole factor too.

Drives Debian's chromium with Playwright, like test_e2e_grid_view.py. Screenshots go to ``$ZBENCH_SCREENSHOTS``
when set (to look at them), else to the test's temporary folder.
"""

from __future__ import annotations

import base64
import re

import pytest
from e2e_support import BROWSER_TESTS, CHROMIUM, playwright, serve_demo_run

from zbench import DecisionStore

pytestmark = BROWSER_TESTS
EPOCHS = 8
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def served(tmp_path):
    # 2 denoising steps rather than 8: the player does not depend on them, the test's time does.
    with serve_demo_run(tmp_path, EPOCHS, steps=2) as served:
        yield served


def _player(page, expr: str):
    """Evaluate ``expr`` with ``t``, the live state of the player (see timeline.js)."""
    return page.evaluate(f"(() => {{ const t = window.__zbenchTimeline; return {expr}; }})()")


def _bytes_of(img) -> bytes:
    """The bytes an <img> shows, fetched by the page itself."""
    data = img.evaluate(
        """async (img) => {
          const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
          let s = ""; for (const b of bytes) s += String.fromCharCode(b); return btoa(s);
        }"""
    )
    return base64.b64decode(data)


def _shown(img) -> dict:
    return img.evaluate(
        """(img) => ({ natural: img.naturalWidth, width: img.getBoundingClientRect().width,
                      height: img.getBoundingClientRect().height, rendering: getComputedStyle(img).imageRendering })"""
    )


def test_player_and_blind_pair(served, shots):
    url, run, log = served
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(f"{url}/?tab=timeline")
        try:
            page.get_by_role("button", name="Pause").wait_for(timeout=240_000)  # it plays on arrival
            page.wait_for_function("window.__zbenchTimeline.images.every((im) => im && im.complete)")
        except playwright.TimeoutError:
            print(page.inner_text("body"), log.read_text())
            raise

        # Labelled by epoch, the base first; the grid's own lossless PNGs (the same URLs, cached by the browser).
        labels = _player(page, "t.frames.map((f) => f.label)")
        assert labels[0] == "base" and len(labels) == EPOCHS + 1
        assert all(re.fullmatch(rf"epoch {e} · step \d+", label) for e, label in enumerate(labels[1:], 1)), labels
        grid = page.evaluate("window.__zbenchGrid.data.cells[0].map((c) => c.src)")
        assert _player(page, "t.frames.map((f) => f.src)") == grid
        img = page.locator(".zb-tl-img")
        assert _bytes_of(img).startswith(PNG)

        # Playing: the frames move on by themselves; paused, they stay.
        start = _player(page, "t.index")
        page.wait_for_function(f"window.__zbenchTimeline.index !== {start}", timeout=5_000)
        page.get_by_role("button", name="Pause").click()
        held = _player(page, "t.index")
        page.wait_for_timeout(1200)
        assert _player(page, "t.index") == held and _player(page, "t.prefs.playing") is False

        # Frame by frame: the buttons, the slider and the keys, each frame labelled by its epoch.
        page.get_by_role("button", name="First frame").click()
        assert page.locator(".zb-tl-label").inner_text() == "base"
        page.get_by_role("button", name="Next frame").click()
        assert page.locator(".zb-tl-label").inner_text() == labels[1]
        assert page.locator(".zb-tl-count").inner_text() == f"2 / {EPOCHS + 1}"
        page.get_by_role("slider", name="Checkpoint").fill("4")
        assert _player(page, "t.index") == 4 and page.locator(".zb-tl-label").inner_text() == labels[4]
        page.locator(".zb-tl-stage").click()  # the player has the focus: its keys work, and go no further
        page.keyboard.press("ArrowRight")
        assert _player(page, "t.index") == 5
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")
        assert _player(page, "t.index") == 3
        page.keyboard.press("End")
        assert page.locator(".zb-tl-label").inner_text() == labels[-1]
        page.keyboard.press("Space")
        assert _player(page, "t.prefs.playing") is True
        page.keyboard.press("Space")
        assert _player(page, "t.prefs.playing") is False
        tab = page.get_by_role("tab", name="Timeline")
        assert tab.get_attribute("aria-selected") == "true"  # the arrows did not move to another tab
        page.get_by_role("combobox", name="Speed").select_option("4")
        assert _player(page, "t.prefs.speed") == 4

        # Native resolution times a whole factor, pixelated: "fit" is the largest that keeps the whole player on
        # the first screen (2x at 1280 x 800); 1x when asked.
        page.get_by_role("button", name="First frame").click()
        page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollTo(0, 0)")
        shown = _shown(img)
        factor = _player(page, "t.factor")
        assert shown["natural"] == 128 and factor == int(factor) >= 2, (shown, factor)
        assert shown["width"] == shown["height"] == 128 * factor and shown["rendering"] == "pixelated"
        assert _player(page, "t.root.getBoundingClientRect().bottom") <= 800
        page.screenshot(path=str(shots / "timeline.png"))
        page.get_by_role("combobox", name="Size").select_option("1")
        shown = _shown(img)
        assert shown["width"] == 128 and shown["rendering"] == "auto"
        page.get_by_role("combobox", name="Size").select_option("fit")
        assert DecisionStore(run).load().votes == []  # no key pressed in the player was a vote

        # The blind pair: lossless PNGs, native pixels times a whole factor, pixelated; names nowhere.
        page.get_by_role("tab", name="Pick a release").click()
        page.get_by_text("Keys live").wait_for(timeout=60_000)
        pair = page.get_by_role("img", name=re.compile(r"^(left|right) image$"))
        playwright.expect(pair).to_have_count(2, timeout=30_000)
        page.wait_for_function(
            """[...document.querySelectorAll('*')].filter((e) => e.shadowRoot)
                 .flatMap((e) => [...e.shadowRoot.querySelectorAll('.zb-pixels img')])
                 .every((img) => img.complete && img.naturalWidth > 0)"""
        )
        sides = [_shown(pair.nth(i)) for i in range(2)]
        for side in sides:
            k = side["width"] / 128
            assert side["natural"] == 128 and k == int(k) >= 1 and side["height"] == side["width"], sides
            assert side["rendering"] == ("pixelated" if k > 1 else "auto")
        assert all(_bytes_of(pair.nth(i)).startswith(PNG) for i in range(2))
        pair.first.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "pick-blind-pair.png"), full_page=True)
        browser.close()
    assert not errors, errors
