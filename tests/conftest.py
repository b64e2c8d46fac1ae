"""Fixtures: a tiny real Z-Image pipeline built once per session, and LoRA runs written per test."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest
from PIL import ImageDraw

from zbench import BenchConfig, load_base
from zbench.demo.toy import build_tiny_pipeline, random_lora, save_lora


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny-zimage"
    build_tiny_pipeline(path)
    return path


@pytest.fixture(scope="session")
def tiny_config(tiny_model) -> BenchConfig:
    return BenchConfig(
        name="tiny",
        model_path=tiny_model,
        pipeline="ZImagePipeline",
        device="cpu",
        dtype="float32",
        steps=3,
        guidance=0.0,
        width=64,
        height=64,
        prompt="a red circle",
    )


@pytest.fixture(scope="session")
def base(tiny_config):
    """One shared base, like the app's cached pipeline: tests must hold whatever state it is in."""
    return load_base(tiny_config)


@pytest.fixture()
def fresh_base(tiny_config):
    """A new pipeline, for reference renders that never saw another checkpoint."""
    return lambda: load_base(tiny_config)


@pytest.fixture(scope="session")
def transformer(base):
    return base.pipe.transformer


@pytest.fixture()
def write_config(tiny_model):
    """Write a config on the tiny model for the page and the CLI: write_config(path, run_dir, extra=""), where
    ``extra`` is more TOML (e.g. a [signals] table)."""

    def write(path: Path, run_dir: Path, extra: str = "") -> Path:
        path.write_text(
            textwrap.dedent(f"""
            name = "tiny"
            [model]
            path = "{tiny_model}"
            pipeline = "ZImagePipeline"
            device = "cpu"
            [loras]
            dir = "{run_dir}"
            [render]
            prompt = "a red circle"
            steps = 2
            width = 32
            height = 32
        """)
            + textwrap.dedent(extra)
        )
        return path

    return write


@pytest.fixture()
def run_dir(tmp_path, make_lora):
    """The page's run: two checkpoints written out of order (the page must sort naturally) and a hidden .bak."""
    run = tmp_path / "run"
    for epoch in (10, 5):
        make_lora(run / f"style_{epoch}.safetensors", rank=4, seed=epoch, strength=3.0)
    shutil.copy(run / "style_5.safetensors", run / "style_5.safetensors.bak")  # hidden
    return run


@pytest.fixture()
def app_config(tmp_path, write_config, run_dir, monkeypatch):
    """The page (AppTest) on the tiny model and ``run_dir``, with its own image cache and a fast run watcher."""
    path = write_config(tmp_path / "app.toml", run_dir)
    monkeypatch.setenv("ZBENCH_CONFIG", str(path))
    monkeypatch.setenv("ZBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ZBENCH_SCAN_TTL", "0.2")
    return path


@pytest.fixture()
def make_lora(transformer):
    """Write a LoRA file: make_lora(path, rank=4, seed=0, fmt="diffusers", alpha=None, strength=1.0)."""

    def make(path, *, rank=4, seed=0, fmt="diffusers", alpha=None, strength=1.0, modules=None, metadata=None):
        state = random_lora(transformer, rank=rank, seed=seed, strength=strength, modules=modules)
        return save_lora(path, state, fmt=fmt, alpha=alpha, metadata=metadata)

    return make


@pytest.fixture()
def drawn(monkeypatch):
    """Every string drawn with ImageDraw.text, in order."""
    texts = []
    real = ImageDraw.ImageDraw.text

    def spy(self, xy, text, *args, **kwargs):
        texts.append(text)
        return real(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", spy)
    return texts


@pytest.fixture()
def media(monkeypatch):
    """The bytes behind the page's media URLs (AppTest serves them from an in-memory store per run)."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from streamlit.testing.v1 import app_test

    stores = []

    class Recorded(MemoryMediaFileStorage):
        def __init__(self, endpoint):
            super().__init__(endpoint)
            stores.append(self)

    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", Recorded)

    def read(url: str) -> bytes:
        name = url.rsplit("/", 1)[-1]
        return stores[-1].get_file(name).content

    return read


@pytest.fixture()
def shots(tmp_path) -> Path:
    """Where a browser test saves its screenshots: ``$ZBENCH_SCREENSHOTS`` when set (to look at them), else the
    test's temporary folder."""
    folder = Path(os.environ.get("ZBENCH_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
