"""The page through Streamlit's AppTest, on the tiny real pipeline."""

import textwrap
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture()
def app_config(tmp_path, tiny_model, make_lora, monkeypatch):
    run = tmp_path / "run"
    for epoch in (5, 10):
        make_lora(run / f"style_{epoch}.safetensors", rank=4, seed=epoch)
    path = tmp_path / "app.toml"
    path.write_text(
        textwrap.dedent(f"""
        name = "tiny"
        [model]
        path = "{tiny_model}"
        pipeline = "ZImagePipeline"
        device = "cpu"
        [loras]
        dir = "{run}"
        [render]
        prompt = "a red circle"
        steps = 2
        width = 32
        height = 32
    """)
    )
    monkeypatch.setenv("ZBENCH_CONFIG", str(path))
    return path


def test_page_lists_checkpoints_and_renders_a_grid(app_config):
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    assert list(at.dataframe[0].value["name"]) == ["style_5.safetensors", "style_10.safetensors"]
    at.button[0].click().run()
    assert not at.exception and not at.error
    captions = [c.value for c in at.caption]
    assert len(captions) == 3 and all("swap" in c for c in captions)  # base + 2 checkpoints


def test_page_without_base_model_says_how_to_get_it(tmp_path, monkeypatch):
    path = tmp_path / "missing.toml"
    path.write_text(f'[model]\npath = "nowhere"\npipeline = "ZImagePipeline"\n[loras]\ndir = "{tmp_path}"\n')
    monkeypatch.setenv("ZBENCH_CONFIG", str(path))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "not found" in at.info[0].value and "To fix" in at.info[0].value
