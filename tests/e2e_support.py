"""What every browser test module shares: Debian's chromium, Playwright, and the marks that make the module slow
and skip it without chromium (``pytestmark = BROWSER_TESTS``). Importing this skips the importing module when
Playwright is missing."""

import contextlib
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="pip install -r requirements-dev.txt")
BROWSER_TESTS = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"),
]


@contextlib.contextmanager
def serve_demo_run(folder: Path, epochs: int, *, steps: int | None = None):
    """The app on the demo's base with a run of ``epochs`` kohya-named checkpoints blended from the demo's, all
    in ``folder``; ``steps`` replaces the demo's denoising steps (tests of layout need fewer).

    Yields:
        (the page's URL, the run folder, the server's log file).
    """
    from zbench.demo.bigrun import blend_run
    from zbench.demo.serve import demo_config, demo_model, serve_page

    model, source = demo_model(folder)
    run = folder / "dreamy"
    blend_run(source, run, epochs)
    config = demo_config(folder / "demo.toml", model, run)
    if steps is not None:
        config.write_text(re.sub(r"(?m)^steps = \d+$", f"steps = {steps}", config.read_text()))
    log = folder / "streamlit.log"
    with serve_page(config, folder / "cache", log) as served:
        yield served.url, run, log
