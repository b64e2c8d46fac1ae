"""The page's place in a real browser: a link opens its run, checkpoint and tab; the address follows the tabs; a
reload and a new tab at the bare address come back to the same place. Debian's chromium through Playwright, on
the embedded demo's base and a copy of its run (as test_e2e_browser.py)."""

from __future__ import annotations

import shutil
from urllib.parse import parse_qs, urlsplit

import pytest
from e2e_support import BROWSER_TESTS, CHROMIUM, playwright

from zbench.demo.serve import demo_config, demo_model, serve_page

pytestmark = BROWSER_TESTS


@pytest.fixture()
def server(tmp_path):
    model, source = demo_model(tmp_path)
    run = tmp_path / "dreamy"
    shutil.copytree(source, run, ignore=shutil.ignore_patterns("dataset", ".zbench", "zbench-sheets"))
    config = demo_config(tmp_path / "demo.toml", model, run)
    with serve_page(config, tmp_path / "cache", tmp_path / "streamlit.log") as served:
        yield served.url, run


def _selected(page) -> list[str]:
    return [t.inner_text() for t in page.get_by_role("tab").all() if t.get_attribute("aria-selected") == "true"]


def _query(page) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(page.url).query).items()}


def test_browser_link_reload_and_new_tab_keep_the_place(server):
    url, run = server
    checkpoint = run / "dreamy_40.safetensors"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{url}/?run={checkpoint}&tab=pick")
        page.get_by_role("combobox", name="Checkpoint to release").wait_for(timeout=240_000)
        assert _selected(page) == ["Pick a release"]
        assert page.get_by_role("textbox", name="LoRA folder").input_value() == str(checkpoint)

        page.get_by_role("tab", name="Timeline").click()
        page.locator(".zb-tl-img[src]").first.wait_for(timeout=120_000)  # the player shows its first frame
        page.wait_for_function("location.search.includes('tab=timeline')", timeout=30_000)
        assert _query(page) == {"run": str(checkpoint), "tab": "timeline"}

        page.reload()
        page.get_by_text("Played epoch by epoch").wait_for(timeout=120_000)
        assert _selected(page) == ["Timeline"]

        fresh = browser.new_page(viewport={"width": 1280, "height": 800})
        fresh.goto(url)  # a new tab at the bare address
        fresh.get_by_text("Played epoch by epoch").wait_for(timeout=120_000)
        assert _selected(fresh) == ["Timeline"] and _query(fresh)["run"] == str(checkpoint)
        browser.close()
