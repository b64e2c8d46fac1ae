"""The page through Streamlit's AppTest, on the tiny real pipeline."""

import json
import shutil
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import zbench
from ui.text import literal  # what the page shows of text that comes from files

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture()
def run_dir(tmp_path, make_lora):
    run = tmp_path / "run"
    for epoch in (10, 5):  # written out of order: the page must sort naturally
        make_lora(run / f"style_{epoch}.safetensors", rank=4, seed=epoch, strength=3.0)
    shutil.copy(run / "style_5.safetensors", run / "style_5.safetensors.bak")  # hidden
    return run


@pytest.fixture()
def app_config(tmp_path, tiny_model, run_dir, monkeypatch):
    path = tmp_path / "app.toml"
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
    )
    monkeypatch.setenv("ZBENCH_CONFIG", str(path))
    monkeypatch.setenv("ZBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ZBENCH_SCAN_TTL", "0.2")
    return path


def _page() -> AppTest:
    return AppTest.from_file(APP, default_timeout=120)


def _grid(at: AppTest):
    request, results = at.session_state["grid"]
    return request, results


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def _text(at: AppTest, label: str):
    return next(t for t in [*at.text_input, *at.text_area] if t.label == label)


def test_opens_on_the_run_and_renders_a_first_grid_without_input(app_config):
    at = _page().run()
    assert not at.exception and not at.error
    assert at.multiselect[0].value == ["style_5.safetensors", "style_10.safetensors"]  # natural order, no .bak
    request, results = _grid(at)
    assert request.prompts == ("a red circle",) and request.include_base
    assert [r.cell.name for r in results] == ["base", "style_5.safetensors", "style_10.safetensors"]
    assert all(r.status == "ok" for r in results)
    labels = " ".join(m.value for m in at.markdown)
    assert literal("base (LoRA off)") in labels and "epoch 5" in labels and "epoch 10" in labels
    assert len(at.image) >= 3


def test_shown_again_from_the_cache_and_zoom_never_renders(app_config):
    at = _page().run()
    cache = zbench.get_image_cache(zbench.default_cache_dir())
    stored = cache.stores
    at.run()
    assert cache.stores == stored and all(r.swap_path == "cache" for r in _grid(at)[1])
    at.slider(key="zx").set_value(10).run()
    at.select_slider(key="zfactor").set_value(8).run()
    at.radio(key="zmethod").set_value("smooth").run()
    assert not at.exception and cache.stores == stored


def test_rows_by_seeds_and_scales(app_config):
    at = _page().run()
    _text(at, "Seeds").set_value("1, 2").run()
    _text(at, "LoRA scales").set_value("0.5, 1").run()  # epoch x strength
    request, results = _grid(at)
    assert request.seeds == (1, 2) and request.scales == (0.5, 1.0)
    assert len(results) == 4 * 3 and all(r.status == "ok" for r in results)
    by = {(r.cell.seed, r.cell.scale, r.cell.name): np.asarray(r.image) for r in results}
    assert not np.array_equal(by[(1, 0.5, "style_5.safetensors")], by[(1, 1.0, "style_5.safetensors")])
    assert not np.array_equal(by[(1, 1.0, "style_5.safetensors")], by[(2, 1.0, "style_5.safetensors")])


def test_bad_input_is_said_and_the_rest_renders(app_config, run_dir):
    (run_dir / "style_7.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    at = _page().run()
    results = _grid(at)[1]
    bad = [r for r in results if r.cell.name == "style_7.safetensors"]
    assert bad[0].status == "error" and bad[0].error
    assert sum(r.status == "ok" for r in results) == 3
    assert any(literal(bad[0].error) in e.value for e in at.error)
    _text(at, "Seeds").set_value("1, x").run()
    assert "whole numbers" in at.error[0].value


def test_new_checkpoints_appear_while_the_page_is_open(app_config, run_dir, make_lora):
    at = _page().run()
    make_lora(run_dir / "style_20.safetensors", rank=4, seed=20)
    (run_dir / "style_20.safetensors.bak").write_bytes(b"junk")
    time.sleep(0.3)  # the scan's ttl
    at.run()
    assert at.multiselect[0].value[-1] == "style_20.safetensors"
    assert [r.cell.name for r in _grid(at)[1]][-1] == "style_20.safetensors"


def test_stop_keeps_what_is_drawn_and_render_finishes(app_config):
    at = _page().run()
    _text(at, "Prompts (one per line)").set_value("a blue square")
    _button(at, "Stop").click().run()  # stopped before anything of the new prompt was drawn
    results = _grid(at)[1]
    assert {r.status for r in results} == {"pending"}
    assert any("Stopped" in i.value for i in at.info)
    _button(at, "Render").click().run()
    assert all(r.status == "ok" for r in _grid(at)[1])


def test_export_writes_sheet_pdf_manifest_and_zip(app_config, run_dir):
    at = _page().run()
    _button(at, "Keep this panel").click().run()
    _button(at, "Export").click().run()
    assert not at.exception
    out = Path(at.session_state["export"][0])
    assert out.parent == run_dir / "zbench-sheets"
    manifest = json.loads((out / "manifest.json").read_text())
    assert (out / manifest["pdf"]).read_bytes().startswith(b"%PDF")
    assert (out / manifest["zip"]).is_file() and manifest["zooms"]
    assert len(at.download_button) >= 4


def test_ratings_votes_and_release_survive_a_restart(app_config, run_dir):
    at = _page().run()
    at.selectbox(key="rate_target").set_value("style_10.safetensors").run()
    next(s for s in at.select_slider if s.label == "Rating").set_value(4)
    at.text_area(key="note:style_10.safetensors").set_value("best hands")
    _button(at, "Save rating and note").click().run()
    _button(at, "Left is better").click().run()
    at.selectbox(key="release_pick").set_value("style_10.safetensors").run()
    _button(at, "Mark as release").click().run()
    assert not at.exception and not at.error

    again = _page().run()  # a new session, as after a server restart
    table = again.dataframe[0].value.set_index("checkpoint")
    assert table.loc["style_10.safetensors", "rating"] == 4
    assert table.loc["style_10.safetensors", "note"] == "best hands"
    assert table["wins"].sum() == 1 and table.loc["style_10.safetensors", "release"] == "★"
    assert table["delta norm"].notna().all()
    record = json.loads((run_dir / ".zbench" / "release.json").read_text())
    assert record["checkpoint"] == "style_10.safetensors" and record["hash"]
    assert Path(record["sheet"]).is_file()
    assert any("Release" in s.value for s in again.success)


def test_two_sessions_rendering_at_once_get_correct_images(app_config, base, tiny_config, run_dir):
    """Both sessions share one pipeline; swap+render is atomic per cell, so each sees its own LoRA."""
    from streamlit import config as st_config

    # AppTest turns the global option "global.appTest" on for each run and back off at its end; two
    # AppTests running at once would switch it off under each other (not a page concern: a server runs
    # each browser session's script with its own context).
    previous = st_config.get_option("global.appTest")
    st_config.set_option("global.appTest", True)
    try:
        _two_sessions(base, tiny_config, run_dir)
    finally:
        st_config.set_option("global.appTest", previous)


def _two_sessions(base, tiny_config, run_dir):
    pages = [_page(), _page()]
    prompts = ["a green triangle", "a purple square"]
    errors = []

    def session(page, prompt):
        try:
            page.run()  # renders the default prompt first, then its own one
            _text(page, "Prompts (one per line)").set_value(prompt).run()
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=session, args=(p, q)) for p, q in zip(pages, prompts, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    run = zbench.scan_run(run_dir)
    fresh = zbench.load_base(tiny_config)  # never saw another checkpoint
    for page, prompt in zip(pages, prompts, strict=True):
        request, results = _grid(page)
        assert request.prompts == (prompt,)
        _, cells = zbench.plan_grid(run, prompts=[prompt], seeds=list(request.seeds))
        expected = zbench.render_cells(fresh, cells, request.settings)
        for got, want in zip(results, expected, strict=True):
            assert np.array_equal(np.asarray(got.image), np.asarray(want.image)), got.cell.name


def test_page_without_base_model_says_how_to_get_it(tmp_path, monkeypatch, run_dir):
    path = tmp_path / "missing.toml"
    path.write_text(f'[model]\npath = "nowhere"\npipeline = "ZImagePipeline"\n[loras]\ndir = "{run_dir}"\n')
    monkeypatch.setenv("ZBENCH_CONFIG", str(path))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "not found" in at.info[0].value and "To fix" in at.info[0].value


def test_missing_folder_says_what_to_do(app_config):
    at = _page().run()
    _text(at, "LoRA folder").set_value("/nowhere/at/all").run()
    assert not at.exception
    assert "folder" in at.info[0].value
