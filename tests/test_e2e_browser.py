"""End to end in a real headless browser: open the page on the demo, render, zoom, export.

Drives Debian's chromium with Playwright (both installed by .ci/run). Screenshots go to
``$ZBENCH_SCREENSHOTS`` when set (to look at them), else to the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from zbench import load_config

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="pip install -r requirements-dev.txt")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tmp_path):
    """The app on the embedded demo's base, with a copy of its LoRA run (exports land in the copy)."""
    demo = load_config()
    model, run = demo.model_path, tmp_path / "dreamy"
    if model.exists():
        shutil.copytree(demo.lora_dir, run, ignore=shutil.ignore_patterns(".zbench", "zbench-sheets"))
    else:  # a checkout without the demo weights: the quick build of the same demo (about 20 s)
        from zbench.demo.build import QUICK, build_demo

        model, _ = build_demo(tmp_path / "zbench-demo", run, plan=QUICK, quiet=True)
    config = tmp_path / "demo.toml"
    config.write_text(
        textwrap.dedent(f"""
        name = "{demo.name}"
        [model]
        path = "{model}"
        pipeline = "{demo.pipeline}"
        [loras]
        dir = "{run}"
        [render]
        prompt = "{demo.prompt}"
        seed = {demo.seed}
        steps = {demo.steps}
        guidance = {demo.guidance}
        width = {demo.width}
        height = {demo.height}
    """)
    )
    port = _free_port()
    env = {**os.environ, "ZBENCH_CONFIG": str(config), "ZBENCH_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true"]
    cmd += ["--server.port", str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    log = (tmp_path / "streamlit.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not start")
        yield url, run
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_browser_renders_the_demo_grid_zooms_and_exports(server, tmp_path):
    url, run = server
    shots = Path(os.environ.get("ZBENCH_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    checkpoints = len(list(run.glob("*.safetensors")))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url)
        page.on("pageerror", lambda err: print("page error:", err))
        # 1. the first grid renders without any input: base + every checkpoint
        try:
            page.get_by_text(f"{checkpoints + 1} cells ·").wait_for(timeout=180_000)
        except playwright.TimeoutError:
            page.screenshot(path=str(shots / "0-timeout.png"), full_page=True)
            print(page.inner_text("body"), (tmp_path / "streamlit.log").read_text())
            raise
        grid_images = page.locator('[data-testid="stImage"]')
        assert grid_images.count() >= checkpoints + 1
        assert page.get_by_text("base (LoRA off)").count() >= 1
        page.screenshot(path=str(shots / "1-grid.png"), full_page=True)

        # 2. a zoom panel: the same region of every checkpoint, enlarged
        page.get_by_role("tab", name="Zoom").click()
        page.get_by_role("button", name="Keep this panel").click()
        page.get_by_text("panel region 1").wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "2-zoom.png"), full_page=True)

        # 3. export the sheet and check the files it wrote
        page.get_by_role("tab", name="Export").click()
        page.get_by_role("button", name="Export", exact=True).click()
        page.get_by_text("Exported to").wait_for(timeout=120_000)
        page.screenshot(path=str(shots / "3-export.png"), full_page=True)
        browser.close()

    (out,) = list((run / "zbench-sheets").iterdir())
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["cells"]) == checkpoints + 1 and all(c["status"] == "ok" for c in manifest["cells"])
    assert manifest["zooms"][0]["name"] == "region 1"
    assert (out / manifest["pdf"]).read_bytes().startswith(b"%PDF")
    from PIL import Image

    with Image.open(out / manifest["pages"][0]) as sheet:
        assert sheet.width > 128 * (checkpoints + 1)
    assert (out / manifest["zip"]).stat().st_size > 0
