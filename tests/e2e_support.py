"""What every browser test module shares: Debian's chromium, Playwright, and the marks that make the module slow
and skip it without chromium (``pytestmark = BROWSER_TESTS``). Importing this skips the importing module when
Playwright is missing."""

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="pip install -r requirements-dev.txt")
BROWSER_TESTS = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"),
]
