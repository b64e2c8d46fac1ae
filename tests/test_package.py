"""zbench as a package: a wheel built from the checkout, installed without the checkout, runs the page and a
grid on the embedded demo (the README's `pip install .` path; CI runs this from a fresh clone)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel installed into its own prefix: (prefix, environment that puts it first on the path)."""
    tmp = tmp_path_factory.mktemp("package")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "wheel"],
        check=True,
        cwd=tmp,
    )
    (wheel,) = (tmp / "wheel").glob("zbench-*.whl")
    prefix = tmp / "prefix"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--prefix", prefix, wheel],
        check=True,
        cwd=tmp,
    )
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))
    # The dependencies come from this environment; zbench, ui and the demo only from the installed prefix.
    env = {**os.environ, "PYTHONPATH": str(purelib), "ZBENCH_CACHE_DIR": str(tmp / "cache")}
    env.pop("ZBENCH_CONFIG", None)
    work = tmp / "elsewhere"  # not the checkout: nothing can be imported from it by accident
    work.mkdir()
    return prefix, purelib, env, work


def test_the_wheel_declares_its_dependencies_and_command(installed):
    prefix, purelib, env, work = installed
    (dist,) = purelib.glob("zbench-*.dist-info")
    metadata = (dist / "METADATA").read_text()
    runtime = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    for requirement in filter(None, runtime):
        assert f"Requires-Dist: {requirement}" in metadata, requirement
    assert "zbench = zbench.cli:main" in (dist / "entry_points.txt").read_text()
    out = subprocess.run(
        [sys.executable, "-c", "import zbench, ui; print(zbench.__file__, ui.__file__, zbench.default_config_path())"],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    package, page, config = out.stdout.split()
    assert Path(package).is_relative_to(purelib) and Path(page).is_relative_to(purelib)
    assert Path(config) == prefix / "share" / "zbench" / "configs" / "demo.toml"


def test_the_installed_command_renders_a_grid_on_the_demo(installed):
    prefix, _, env, work = installed
    command = prefix / "bin" / "zbench"
    out = subprocess.run(
        [sys.executable, command, "grid", "--epochs", "5,300", "--out", work / "sheet", "--sheet", "share", "--quiet"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "3 of 3 cells rendered" in out.stdout, out.stdout
    assert (work / "sheet" / "index.html").is_file()


def test_the_installed_page_serves_the_demo(installed):
    prefix, _, env, work = installed
    # The command starts the server on the installed app.py ...
    port = 8700 + os.getpid() % 200
    proc = subprocess.Popen(
        [sys.executable, prefix / "bin" / "zbench", "page", "--headless", "--port", str(port)],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).status == 200:
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # Stopping the command stops the server (it becomes the server; no orphan keeps the port).
    time.sleep(1)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
    # ... and that script opens the demo and renders its first grid (Streamlit runs it per browser session).
    app = prefix / "share" / "zbench" / "app.py"
    script = textwrap.dedent(f"""
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(app)!r}, default_timeout=180).run()
        assert not at.exception, at.exception
        request, results = at.session_state["grid"]
        print(len(results), sum(r.status == "ok" for r in results))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    total, ok = map(int, out.stdout.split()[-2:])
    assert total > 1 and ok == total
