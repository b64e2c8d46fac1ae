"""The page through Streamlit's AppTest, on the tiny real pipeline.

The grid itself is a custom component (its events come from a browser: see test_e2e_browser.py); here
the page's flows are checked through the widgets and the data the component is given.
"""

import io
import json
import threading
from pathlib import Path

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

import zbench
from ui.text import literal  # what the page shows of text that comes from files

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def _page() -> AppTest:
    return AppTest.from_file(APP, default_timeout=120)


def _grid(at: AppTest):
    request, results = at.session_state["grid"]
    return request, results


def _grid_data(at: AppTest) -> dict:
    """What the grid component was given to draw (the last one mounted)."""
    grids = [e for e in at.get("bidi_component") if e.proto.component_name == "zbench.grid"]
    assert grids, "no grid component on the page"
    return json.loads(grids[-1].proto.json)


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def _text(at: AppTest, label: str):
    return next(t for t in [*at.text_input, *at.text_area] if t.label == label)


def _number(at: AppTest, label: str):
    return next(n for n in at.number_input if n.label == label)


def _render(at: AppTest) -> AppTest:
    return _button(at, "Render").click().run()


def _rating(at: AppTest, checkpoint: str):
    """The Pick tab's rating slider for a checkpoint (its key also carries the stored rating)."""
    return next(s for s in at.select_slider if str(s.key).startswith(f"rating:{checkpoint}:"))


def _note(at: AppTest, checkpoint: str):
    return next(t for t in at.text_area if str(t.key).startswith(f"note:{checkpoint}:"))


def test_opens_on_the_run_and_renders_a_first_grid_without_input(app_config, media):
    at = _page().run()
    assert not at.exception and not at.error
    assert at.multiselect[0].value == ["style_5.safetensors", "style_10.safetensors"]  # natural order, no .bak
    request, results = _grid(at)
    assert request.prompts == ("a red circle",) and request.include_base
    assert [r.cell.name for r in results] == ["base", "style_5.safetensors", "style_10.safetensors"]
    assert all(r.status == "ok" for r in results)
    data = _grid_data(at)
    assert [c["label"] for c in data["columns"]] == ["base", "epoch 5", "epoch 10"]
    assert [c["name"] for c in data["columns"]][1:] == ["style_5.safetensors", "style_10.safetensors"]
    assert data["rows"] == ["seed 42"] and data["aspect"] == 1.0
    # Lossless: the images the grid shows are PNGs of exactly the rendered pixels.
    for cell, result in zip(data["cells"][0], results, strict=True):
        assert cell["src"].endswith(".png")
        png = Image.open(io.BytesIO(media(cell["src"])))
        assert png.format == "PNG"
        assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(result.image.convert("RGB")))


def test_shown_again_from_the_cache(app_config):
    at = _page().run()
    cache = zbench.get_image_cache(zbench.default_cache_dir())
    stored = cache.stores
    at.run()
    assert cache.stores == stored and all(r.swap_path == "cache" for r in _grid(at)[1])
    at.selectbox(key="chart_metric").set_value("delta norm").run()  # a widget elsewhere on the page
    assert not at.exception and cache.stores == stored


def test_sidebar_edits_wait_for_render(app_config):
    """Half-typed settings never start a grid: the form is committed by Render, all fields at once."""
    at = _page().run()
    cache = zbench.get_image_cache(zbench.default_cache_dir())
    stored = cache.stores
    _text(at, "Seeds").set_value("1-")  # half typed
    at.run()
    _text(at, "Seeds").set_value("1-2")
    _text(at, "LoRA scales").set_value("0.5, 1")
    at.run()  # any other rerun: the typed values wait in the form
    request, _ = _grid(at)
    assert request.seeds == (42,) and request.scales == (1.0,) and cache.stores == stored and not at.error
    _text(at, "Seeds").set_value("1-2")  # (in a browser the typed values stay in the form by themselves)
    _text(at, "LoRA scales").set_value("0.5, 1")
    _render(at)
    request, results = _grid(at)
    assert request.seeds == (1, 2) and request.scales == (0.5, 1.0)
    assert len(results) == 4 * 3 and all(r.status == "ok" for r in results)  # epoch x seed x strength
    by = {(r.cell.seed, r.cell.scale, r.cell.name): np.asarray(r.image) for r in results}
    assert not np.array_equal(by[(1, 0.5, "style_5.safetensors")], by[(1, 1.0, "style_5.safetensors")])
    assert not np.array_equal(by[(1, 1.0, "style_5.safetensors")], by[(2, 1.0, "style_5.safetensors")])
    assert _grid_data(at)["rows"][:2] == ["seed 1 · scale 0.5", "seed 1 · scale 1"]
    assert cache.stores == stored + 2 * 2 * 2 + 2  # LoRA cells per seed and scale; base cells per seed only


def test_seed_ranges_and_the_first_row_first(app_config, monkeypatch):
    order = []
    real = zbench.render_cells

    def spy(base, cells, *args, **kwargs):
        order.extend((c.row, c.col) for c in cells)
        return real(base, cells, *args, **kwargs)

    monkeypatch.setattr(zbench, "render_cells", spy)
    at = _page().run()
    _text(at, "Seeds").set_value("1, 2, .., 4")
    order.clear()
    _render(at)
    assert _grid(at)[0].seeds == (1, 2, 3, 4)
    assert order[:3] == [(0, 0), (0, 1), (0, 2)]  # every checkpoint of the first row, then the next rows
    _text(at, "Seeds").set_value("7-9")
    _render(at)
    assert _grid(at)[0].seeds == (7, 8, 9)
    _text(at, "Seeds").set_value("9-1")
    _render(at)
    assert at.error and literal("got 9-1") in at.error[0].value


def test_negative_prompt_at_guidance_zero_is_said(app_config):
    at = _page().run()
    _text(at, "Negative prompt").set_value("blurry")
    _render(at)
    assert any("not used at guidance 0" in i.value for i in at.info)
    _number(at, "Guidance").set_value(2.0)
    _render(at)
    assert not any("not used at guidance 0" in i.value for i in at.info)


def test_settings_and_panels_come_back_when_the_run_is_opened_again(app_config, run_dir):
    at = _page().run()
    _text(at, "Prompts (one per line)").set_value("a blue square\na green hill")
    _text(at, "Negative prompt").set_value("noise")
    _text(at, "Seeds").set_value("3, 4")
    _text(at, "LoRA scales").set_value("0.75")
    _number(at, "Steps").set_value(3)
    _number(at, "Guidance").set_value(1.5)
    _number(at, "Width").set_value(48)
    at.multiselect[0].set_value(["style_10.safetensors"])
    _render(at)
    request, _ = _grid(at)
    # A zoom panel, kept the way the grid keeps one (its events write the run's page state).
    state = zbench.load_page_state(run_dir)
    box = zbench.ZoomBox("left eye", 0.1, 0.2, 0.3, 0.25)
    zbench.save_page_state(run_dir, {**state, "zooms": [zbench.ZoomSpec(box)]})

    again = _page().run()  # a reload, a restart or another browser
    assert not again.exception
    assert _grid(again)[0] == request
    assert _text(again, "Prompts (one per line)").value == "a blue square\na green hill"
    assert _text(again, "Seeds").value == "3, 4" and _number(again, "Guidance").value == 1.5
    assert again.multiselect[0].value == ["style_10.safetensors"]
    data = _grid_data(again)
    assert data["panels"] == [{"name": "left eye", "x": 0.1, "y": 0.2, "w": 0.3, "h": 0.25}]
    assert data["aspect"] == 32 / 48 and len(data["rows"]) == 4


def test_a_folder_of_runs_offers_them_and_a_wrong_path_says_what_is_there(app_config, tmp_path, make_lora):
    runs = tmp_path / "output"
    for name, epochs in (("alpha", (1, 2)), ("beta", (3,))):
        for e in epochs:
            make_lora(runs / name / f"{name}-{e:06d}.safetensors", rank=4, seed=e)
    at = _page().run()
    _text(at, "LoRA folder").set_value(str(runs)).run()
    picker = at.selectbox(key=f"run_in:{runs}")
    assert picker.options == ["alpha", "beta"]
    picker.set_value(str(runs / "beta")).run()
    assert [r.cell.name for r in _grid(at)[1]] == ["base", "beta-000003.safetensors"]

    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8)).save(pictures / f"p{i}.png")
    _text(at, "LoRA folder").set_value(str(pictures)).run()
    assert "No LoRA checkpoints" in at.info[0].value and literal("3 files (3 .png)") in at.info[0].value
    _text(at, "LoRA folder").set_value(str(pictures / "p0.png")).run()
    assert "file" in at.info[0].value


def test_bad_input_is_said_and_the_rest_renders(app_config, run_dir):
    (run_dir / "style_7.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    at = _page().run()
    results = _grid(at)[1]
    bad = [r for r in results if r.cell.name == "style_7.safetensors"]
    assert bad[0].status == "error" and bad[0].error
    assert sum(r.status == "ok" for r in results) == 3
    cell = _grid_data(at)["cells"][0][2]  # its badge in the grid; the full message on hover and click
    assert cell["status"] == "error" and cell["error"] == bad[0].error and cell["src"] is None
    # The Pick tab's table says which checkpoints cannot be compared and why, under it as well as in its column.
    said = next(e for e in at.expander if "cannot be compared" in e.label)
    assert said.label.startswith("1 of 3 checkpoints") and said.text[0].value.startswith("style_7.safetensors: ")
    _text(at, "Seeds").set_value("1, x")
    _render(at)
    assert "whole numbers" in at.error[0].value


def test_new_checkpoints_appear_while_the_page_is_open(app_config, run_dir, make_lora):
    at = _page().run()
    make_lora(run_dir / "style_20.safetensors", rank=4, seed=20)
    (run_dir / "style_20.safetensors.bak").write_bytes(b"junk")
    # The scan is cached for ZBENCH_SCAN_TTL seconds, read when ui.resources is first imported (by whichever
    # page test ran first in this process): let it expire now instead of sleeping past it.
    from ui.resources import scan

    scan.clear()
    at.run()
    assert at.multiselect[0].value[-1] == "style_20.safetensors"
    assert [r.cell.name for r in _grid(at)[1]][-1] == "style_20.safetensors"


def test_stop_keeps_what_is_drawn_and_render_finishes(app_config):
    at = _page().run()
    _text(at, "Prompts (one per line)").set_value("a blue square")
    _button(at, "Stop").click()
    _render(at)  # the new prompt committed, and stopped before anything of it was drawn
    results = _grid(at)[1]
    assert {r.status for r in results} == {"pending"}
    assert any("Stopped" in i.value for i in at.info)
    _render(at)
    assert all(r.status == "ok" for r in _grid(at)[1])


def test_export_writes_sheet_pdf_manifest_and_zip(app_config, run_dir):
    box = zbench.ZoomBox("hand", 0.5, 0.5, 0.25, 0.25)
    zbench.save_page_state(run_dir, {"zooms": [zbench.ZoomSpec(box)]})
    at = _page().run()
    _button(at, "Export").click().run()
    assert not at.exception
    out = Path(at.session_state["export"][0])
    assert out.parent == run_dir / "zbench-sheets"
    manifest = json.loads((out / "manifest.json").read_text())
    assert (out / manifest["pdf"]).read_bytes().startswith(b"%PDF")
    assert (out / manifest["zip"]).is_file() and manifest["zooms"][0]["name"] == "hand"
    assert len(at.download_button) >= 4


def test_ratings_votes_and_release_survive_a_restart(app_config, run_dir):
    at = _page().run()
    at.selectbox(key="rate_target").set_value("style_10.safetensors").run()
    _rating(at, "style_10.safetensors").set_value(4)
    _note(at, "style_10.safetensors").set_value("best hands")
    _button(at, "Save rating and note").click().run()
    _button(at, "Left is better").click().run()
    at.run()  # (AppTest keeps only the voting fragment's elements after its own rerun)
    pick = next(s for s in at.selectbox if s.label == "Checkpoint to release")
    pick.set_value("style_10.safetensors").run()
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
    # No hidden export: nothing was exported, so the record names no sheet; it keeps what the choice rested on.
    assert record["sheet"] is None and not (run_dir / "zbench-sheets").exists()
    assert record["evidence"]["shortlist"] and record["evidence"]["signals"]["values"]
    assert record["ratings"] == {"style_10.safetensors": 4} and len(record["vote_list"]) == 1
    assert any("Release" in s.value for s in again.success)
    columns = {c["name"]: c for c in _grid_data(again)["columns"]}
    assert columns["style_10.safetensors"]["stars"] == 4 and columns["style_10.safetensors"]["release"]


def test_the_rating_shown_is_the_checkpoint_shown(app_config, run_dir):
    store = zbench.DecisionStore(run_dir)
    store.set_rating("style_5.safetensors", 2)
    at = _page().run()
    at.selectbox(key="rate_target").set_value("style_5.safetensors").run()
    assert _rating(at, "style_5.safetensors").value == 2
    at.selectbox(key="rate_target").set_value("style_10.safetensors").run()
    assert _rating(at, "style_10.safetensors").value == "–"  # not the previous one's 2
    _button(at, "Save rating and note").click().run()
    assert zbench.DecisionStore(run_dir).load().ratings == {"style_5.safetensors": 2}


def test_a_rating_given_on_the_grid_shows_in_the_pick_tab(app_config, run_dir):
    at = _page().run()
    at.selectbox(key="rate_target").set_value("style_10.safetensors").run()
    assert _rating(at, "style_10.safetensors").value == "–"
    # Rated with a key in the grid's large view (the component's callback writes the store), then the
    # Pick a release tab is opened, which reruns the page.
    zbench.DecisionStore(run_dir).set_rating("style_10.safetensors", 5)
    at.run()
    assert _rating(at, "style_10.safetensors").value == 5  # not the stale widget's "–"
    assert at.dataframe[0].value.set_index("checkpoint").loc["style_10.safetensors", "rating"] == 5
    _note(at, "style_10.safetensors").set_value("crisp")
    _button(at, "Save rating and note").click().run()
    review = zbench.DecisionStore(run_dir).load()
    assert review.ratings["style_10.safetensors"] == 5 and review.notes["style_10.safetensors"] == "crisp"
    assert at.dataframe[0].value.set_index("checkpoint").loc["style_10.safetensors", "note"] == "crisp"


def test_pick_defaults_to_the_best_ranked_and_warns_about_a_weak_choice(app_config, run_dir, make_lora):
    make_lora(run_dir / "style_15.safetensors", rank=4, seed=15)
    store = zbench.DecisionStore(run_dir)
    for _ in range(3):  # 10 beats both, 5 loses to both
        for winner, loser in (("10", "5"), ("10", "15"), ("15", "5")):
            store.add_vote(f"style_{winner}.safetensors", f"style_{loser}.safetensors", prompt="a red circle", seed=42)
    at = _page().run()
    pick = next(s for s in at.selectbox if s.label == "Checkpoint to release")
    assert pick.value == "style_10.safetensors" and not at.warning
    pick.set_value("style_5.safetensors").run()
    assert any("ranks 3 of 3" in w.value for w in at.warning)
    table = at.dataframe[0].value.set_index("checkpoint")
    best = table.loc["style_10.safetensors"]
    assert best["vote rank"] == 1 and best["vote low"] < best["vote score"] < best["vote high"]
    assert table["vote rank"].dtype == "Int64" and list(table.reset_index().columns[:4]) == [
        "checkpoint",
        "epoch",
        "step",
        "rank",
    ]
    assert any("9 votes: epoch 10 is the best with" in c.value for c in at.caption)
    assert any("Release epoch 10" in s.value for s in at.success)  # clear: proposed with its evidence


def test_unrated_cells_are_blank_and_the_chart_has_points(app_config, run_dir):
    zbench.DecisionStore(run_dir).set_rating("style_10.safetensors", 5)
    at = _page().run()
    table = at.dataframe[0].value.set_index("checkpoint")
    assert table["rating"].isna()["style_5.safetensors"] and table.loc["style_10.safetensors", "rating"] == 5
    assert at.dataframe[0].proto.placeholder == ""  # shown as blank cells, not "None"
    at.selectbox(key="chart_metric").set_value("rating").run()
    chart = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert any(layer["mark"].get("type") == "point" for layer in chart["layer"] if isinstance(layer["mark"], dict))


def test_two_sessions_rendering_at_once_get_correct_images(app_config, base, tiny_config, run_dir, monkeypatch):
    """Both sessions share one pipeline; swap+render is atomic per cell, so each sees its own LoRA."""
    from streamlit import config as st_config
    from streamlit.runtime import Runtime

    # AppTest turns the global option "global.appTest" on for each run and back off at its end, and sets
    # the global Runtime instance to a mock for each run and to None at its end; two AppTests running at
    # once would switch both off under each other (not a page concern: a server has one runtime and runs
    # each browser session's script with its own context). Keep the last mock runtime while both run.
    last = {}

    def instance(cls):
        if cls._instance is not None:
            last["runtime"] = cls._instance
        return last["runtime"]

    monkeypatch.setattr(Runtime, "instance", classmethod(instance))
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
            _text(page, "Prompts (one per line)").set_value(prompt)
            _render(page)
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


def test_shortlist_edits_and_blind_votes_among_it(app_config, run_dir, make_lora):
    for epoch in (15, 20):
        make_lora(run_dir / f"style_{epoch}.safetensors", rank=4, seed=epoch, strength=3.0)
    at = _page().run()
    assert not at.exception
    shortlist = next(m for m in at.multiselect if m.label == "Shortlist")
    suggested = list(shortlist.value)
    assert suggested and set(suggested) <= {f"style_{e}.safetensors" for e in (5, 10, 15, 20)}
    columns = {c["checkpoint"]: c for c in _grid_data(at)["columns"] if c["checkpoint"]}
    assert {n for n, c in columns.items() if c["short"]} == set(suggested)  # marked on the grid too
    assert [s["label"] for s in _grid_data(at)["signals"]][:3] == ["drift", "change", "diversity"]
    assert all(len(c["signals"]) == len(_grid_data(at)["signals"]) for c in columns.values())
    shortlist.set_value(["style_10.safetensors", "style_20.safetensors"]).run()
    edits = zbench.DecisionStore(run_dir).load().shortlist
    kept = {n for n, keep in edits.items() if keep}
    assert {n for n in ("style_10.safetensors", "style_20.safetensors") if n not in suggested} <= kept
    assert all(not keep for n, keep in edits.items() if n not in ("style_10.safetensors", "style_20.safetensors"))
    at.run()
    assert set(next(m for m in at.multiselect if m.label == "Shortlist").value) == {
        "style_10.safetensors",
        "style_20.safetensors",
    }
    for _ in range(3):
        assert set(at.session_state["blind_pair"][:2]) == {"style_10.safetensors", "style_20.safetensors"}
        _button(at, "Left is better").click().run()
        at.run()
    votes = zbench.DecisionStore(run_dir).load().votes
    assert len(votes) == 3 and {v.winner for v in votes} | {v.loser for v in votes} <= {
        "style_10.safetensors",
        "style_20.safetensors",
    }
    assert any(c.value.startswith("3 votes: epoch") for c in at.caption)


def test_weak_or_contradicted_evidence_preselects_nothing_and_says_what_settles_it(app_config, run_dir, make_lora):
    make_lora(run_dir / "style_15.safetensors", rank=4, seed=15, strength=3.0)
    store = zbench.DecisionStore(run_dir)
    store.set_rating("style_5.safetensors", 5)
    for _ in range(4):  # the 5-star checkpoint loses every vote
        store.add_vote("style_10.safetensors", "style_5.safetensors", prompt="a red circle", seed=42)
        store.add_vote("style_15.safetensors", "style_5.safetensors", prompt="a red circle", seed=42)
    at = _page().run()
    assert not at.exception
    assert any("is rated 5 but ranks 3 of 3" in w.value for w in at.warning)
    pick = next(s for s in at.selectbox if s.label == "Checkpoint to release")
    assert pick.value is None and _button(at, "Mark as release").disabled
    assert any("Nothing is preselected" in c.value for c in at.caption)
    pick.set_value("style_10.safetensors").run()
    _button(at, "Mark as release").click().run()
    record = store.release()
    assert record["checkpoint"] == "style_10.safetensors" and record["sheet"] is None
    assert record["evidence"]["recommendation"]["conflicts"] and len(record["vote_list"]) == 8
    assert not (run_dir / "zbench-sheets").exists()  # marking exports nothing


def test_mark_release_names_the_sheet_that_was_exported(app_config, run_dir):
    at = _page().run()
    _button(at, "Export").click().run()
    out = Path(at.session_state["export"][0])
    pick = next(s for s in at.selectbox if s.label == "Checkpoint to release")
    pick.set_value("style_10.safetensors").run()
    _button(at, "Mark as release").click().run()
    record = zbench.DecisionStore(run_dir).release()
    assert Path(record["sheet"]).parent == out and Path(record["sheet"]).is_file()


def test_the_signal_set_is_measured_on_request_and_then_used(app_config, run_dir):
    app_config.write_text(app_config.read_text() + '\n[signals]\nseeds = "1, 2"\nquality = false\n')
    at = _page().run()
    assert at.session_state["signal_source"] == "grid"  # one seed on the grid: diversity cannot be measured
    assert any("two or more seeds" in c.value for c in at.caption)
    button = next(b for b in at.button if b.label.startswith("Measure on the signal set"))
    assert button.label == "Measure on the signal set (6 renders)"  # base + 2 checkpoints, 2 seeds
    button.click().run()
    assert not at.exception
    at.run()
    assert at.session_state["signal_source"] == "set"
    assert not any(b.label.startswith("Measure on the signal set") for b in at.button)
    table = at.dataframe[0].value.set_index("checkpoint")
    assert table["diversity"].notna().all() and table["drift"].notna().all()


def test_hostile_page_and_release_files_never_break_the_page(app_config, run_dir):
    """A page.json with steps 100000, a 65536x0 size and guidance -5 is not used (the config's defaults stand
    in); a release.json without its checkpoint is said on the Pick tab, and votes and ratings still work."""
    folder = run_dir / ".zbench"
    folder.mkdir()
    (folder / "page.json").write_text(
        json.dumps({"steps": 100000, "width": 65536, "height": 0, "guidance": -5, "seeds": "7"})
    )
    (folder / "release.json").write_text('{"who": "me"}')
    at = _page().run()
    assert not at.exception
    request, results = _grid(at)
    assert (request.settings.steps, request.settings.width, request.settings.height) == (2, 32, 32)
    assert request.settings.guidance == 0.0 and request.seeds == (7,)  # what was valid is kept
    assert all(r.status == "ok" for r in results)
    assert any("not a release record" in e.value for e in at.error)
    _button(at, "Left is better").click().run()
    assert not at.exception
    assert len(zbench.DecisionStore(run_dir).load().votes) == 1
    assert (folder / "release.json").read_text() == '{"who": "me"}'


def test_the_grid_view_kept_for_the_run_is_given_back_checked(app_config, run_dir):
    """The grid's view (cell size, transpose, zoom) kept in page.json starts the grid; what is not well formed
    is dropped, on reading and on writing (the browser reports it)."""
    view = {"cell": 64, "transpose": True, "zoom": 99, "cx": 0.25, "cy": "x", "evil": "<script>"}
    zbench.save_page_state(run_dir, {"view": view})
    saved = json.loads((run_dir / ".zbench" / "page.json").read_text())["view"]
    assert saved == {"cell": 64, "transpose": True, "cx": 0.25}
    (run_dir / ".zbench" / "page.json").write_text(json.dumps({"view": {**view, "zoom": 2, "cy": 1.0}}))
    at = _page().run()
    assert not at.exception
    assert _grid_data(at)["view"] == {"cell": 64, "transpose": True, "zoom": 2.0, "cx": 0.25, "cy": 1.0}
    for bad in ({"cell": 8}, {"cell": True, "zoom": 1e9, "cx": -1}, [1, 2], "fit"):
        (run_dir / ".zbench" / "page.json").write_text(json.dumps({"view": bad, "seeds": "7"}))
        assert zbench.load_page_state(run_dir) == {"seeds": "7"}, bad


def test_rate_and_note_follows_the_shortlist_until_you_choose(tmp_path, write_config, run_dir, make_lora, monkeypatch):
    """The checkpoint Rate and note shows, when the page chose it, leaves with it when it leaves the shortlist
    (an edit, the signal set measured); one the user chose stays."""
    for epoch in (15, 20, 25):
        make_lora(run_dir / f"style_{epoch}.safetensors", rank=4, seed=epoch, strength=3.0)
    monkeypatch.setenv("ZBENCH_CONFIG", str(write_config(tmp_path / "app.toml", run_dir, "[signals]\nshortlist = 2")))
    monkeypatch.setenv("ZBENCH_CACHE_DIR", str(tmp_path / "cache"))
    at = _page().run()
    shortlist = next(m for m in at.multiselect if m.label == "Shortlist")
    first, second = sorted(shortlist.value, key=lambda n: int(n.split("_")[1].split(".")[0]))
    assert at.selectbox(key="rate_target").value == first
    shortlist.set_value([second]).run()
    at.run()
    assert at.selectbox(key="rate_target").value == second
    at.selectbox(key="rate_target").set_value(first).run()  # the user's choice, off the shortlist: it stays
    at.run()
    assert at.selectbox(key="rate_target").value == first


def test_the_shortlist_follows_a_rated_leader_at_its_end(tmp_path, write_config, run_dir, make_lora, monkeypatch):
    """Rated, with the best at an end of the shortlist: the next checkpoint past it joins, says why, and is the
    next to rate; taken off the shortlist it is dropped for good (it would join again otherwise)."""
    for epoch in (15, 20, 25):
        make_lora(run_dir / f"style_{epoch}.safetensors", rank=4, seed=epoch, strength=3.0)
    monkeypatch.setenv("ZBENCH_CONFIG", str(write_config(tmp_path / "app.toml", run_dir, "[signals]\nshortlist = 2")))
    monkeypatch.setenv("ZBENCH_CACHE_DIR", str(tmp_path / "cache"))
    at = _page().run()
    assert not at.exception
    order = [f"style_{e}.safetensors" for e in (5, 10, 15, 20, 25)]
    suggested = sorted(next(m for m in at.multiselect if m.label == "Shortlist").value, key=order.index)
    assert len(suggested) == 2
    # The leader at the end that has a checkpoint past it.
    end, past = (suggested[-1], 1) if suggested[-1] != order[-1] else (suggested[0], -1)
    joined = order[order.index(end) + past]
    # Rated on the page: the checkpoint shown opens on the shortlist's first unrated one and moves on after each
    # save, to the one that joined last.
    for name in suggested:
        assert at.selectbox(key="rate_target").value == name
        _rating(at, name).set_value(5 if name == end else 3)
        _button(at, "Save rating and note").click().run()
        at.run()  # (AppTest keeps only the fragment's elements after its own rerun)
    assert at.selectbox(key="rate_target").value == joined
    store = zbench.DecisionStore(run_dir)
    assert store.load().ratings == {n: 5 if n == end else 3 for n in suggested}
    # The other one leaves to keep votes among 2 (the config's shortlist size), and says so.
    (other,) = set(suggested) - {end}
    shortlist = next(m for m in at.multiselect if m.label == "Shortlist")
    assert set(shortlist.value) == {end, joined}
    epoch = joined.removeprefix("style_").removesuffix(".safetensors")
    caption = next(c.value for c in at.caption if "joined the shortlist" in c.value)
    assert caption.startswith(f"epoch {epoch} joined the shortlist") and "Rate it" in caption
    assert any("left the shortlist to make room for" in c.value for c in at.caption)
    # Back to the suggestion by hand: the newcomer is dropped for good, the one that left is kept on purpose.
    shortlist.set_value(suggested).run()
    assert store.load().shortlist == {joined: False, other: True}
    at.run()
    assert set(next(m for m in at.multiselect if m.label == "Shortlist").value) == set(suggested)
    assert not any("joined the shortlist" in c.value or "make room" in c.value for c in at.caption)
