"""The bench page in a subprocess, for browser tests and the page benchmark: start, wait, stop.

Runs ``python -m streamlit run app.py`` from the repository with the given config and cache folder on
a free port, waits for its health check, and stops it on exit. The project's ``.streamlit/config.toml``
applies (no file watcher, minimal toolbar).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Served", "demo_config", "demo_model", "serve_page"]

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class Served:
    url: str
    pid: int
    log: Path


def demo_model(scratch: str | Path) -> tuple[Path, Path]:
    """The demo base and its LoRA run; where a checkout lacks the shipped weights, the quick build of the
    same demo into ``scratch`` (about half a minute on 2 cores)."""
    from ..engine.config import load_config
    from .build import QUICK, build_demo

    demo = load_config()
    if demo.model_path.exists():
        return demo.model_path, demo.lora_dir
    scratch = Path(scratch)
    return build_demo(scratch / "zbench-demo", scratch / "dreamy-built", plan=QUICK, quiet=True)


def demo_config(path: str | Path, model: str | Path, run: str | Path) -> Path:
    """Write a config like the demo's (same base settings and prompt) for ``model`` and the run ``run``."""
    from ..engine.config import load_config

    demo = load_config()
    lines = [
        f"name = {json.dumps(demo.name)}",
        "[model]",
        f"path = {json.dumps(str(model))}",
        f"pipeline = {json.dumps(demo.pipeline)}",
        'device = "cpu"',
        "[loras]",
        f"dir = {json.dumps(str(run))}",
        "[render]",
        f"prompt = {json.dumps(demo.prompt)}",
        f"seed = {demo.seed}",
        f"steps = {demo.steps}",
        f"guidance = {demo.guidance}",
        f"width = {demo.width}",
        f"height = {demo.height}",
    ]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_page(
    config: str | Path, cache_dir: str | Path, log: str | Path, *, timeout: float = 60, options: Sequence[str] = ()
) -> Iterator[Served]:
    """The app on ``config`` until the ``with`` block ends. Raises RuntimeError when it does not come up.

    ``options`` are more ``streamlit run`` flags (e.g. ``--server.fileWatcherType auto`` to compare).
    """
    port = _free_port()
    env = {**os.environ, "ZBENCH_CONFIG": str(config), "ZBENCH_CACHE_DIR": str(cache_dir)}
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true"]
    cmd += ["--server.port", str(port), "--browser.gatherUsageStats", "false", *options]
    url = f"http://127.0.0.1:{port}"
    log = Path(log)
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).status == 200:
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the page did not start; see {log}:\n{log.read_text()[-2000:]}") from None
                time.sleep(0.3)
        yield Served(url, proc.pid, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
