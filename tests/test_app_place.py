"""The page keeps its place: the address opens a run, config and tab; typed paths (folders or checkpoint files)
say one thing when they open nothing; and the checkpoint choice offers all, every Nth, the last N and a range.

Through Streamlit's AppTest on the tiny real pipeline, like test_app.py.
"""

import re
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import zbench

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture()
def other_run(tmp_path, make_lora):
    """A second run, elsewhere: what a link names."""
    run = tmp_path / "elsewhere" / "other"
    for epoch in (1, 2, 3):
        make_lora(run / f"other-{epoch:06d}.safetensors", rank=4, seed=100 + epoch)
    return run


def _page(**query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(query)
    return at


def _folder(at: AppTest):
    return next(t for t in at.text_input if t.label == "LoRA folder")


def _shown(at: AppTest) -> list[str]:
    """The checkpoints of the grid the page drew."""
    request, _ = at.session_state["grid"]
    return list(request.checkpoints)


def _alerts(at: AppTest) -> list[str]:
    """The page's messages outside its tabs (about the config and run), as a person reads them (Markdown
    escapes and zero-width spaces removed)."""
    in_tabs = {a.value for tab in at.tabs for a in [*tab.error, *tab.warning, *tab.info]}
    texts = [a.value for a in [*at.error, *at.warning, *at.info] if a.value not in in_tabs]
    return [re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", t).replace("\u200b", "") for t in texts]


def _one_sentence_each(text: str) -> None:
    assert not re.search(r"(?<!\.)\.\.(?!\.)|\.\s+\.", text), f"a doubled period in: {text}"


def test_the_address_opens_the_run_and_the_tab_and_follows_them(app_config, run_dir, other_run):
    at = _page(run=str(other_run), tab="pick").run()
    assert not at.exception and not _alerts(at)
    assert _folder(at).value == str(other_run)
    assert _shown(at) == [f"other-{e:06d}.safetensors" for e in (1, 2, 3)]
    assert at.session_state["tab"] == "Pick a release"
    assert at.query_params == {"run": str(other_run), "tab": "pick"}  # the default config is not repeated

    at.session_state["tab"] = "Timeline"  # what a click on the tab does
    at.run()
    assert at.query_params["tab"] == "timeline"
    assert at.selectbox(key="timeline_row")  # the Timeline tab draws while it is open
    _folder(at).set_value(str(run_dir)).run()
    assert at.query_params["run"] == str(run_dir) and _shown(at)[-1] == "style_10.safetensors"

    again = _page(**at.query_params).run()  # a reload: the same address
    assert _folder(again).value == str(run_dir) and again.session_state["tab"] == "Timeline"
    bare = _page().run()  # a new tab at the bare address: where the last one was
    assert _folder(bare).value == str(run_dir) and bare.session_state["tab"] == "Timeline"
    assert bare.query_params == {"run": str(run_dir), "tab": "timeline"}


def test_the_timeline_is_drawn_only_while_its_tab_is_open(app_config):
    at = _page().run()
    assert not at.exception
    assert not [s for s in at.selectbox if s.key == "timeline_row"]
    at.session_state["tab"] = "Timeline"
    at.run()
    assert at.selectbox(key="timeline_row").value == 0 and not at.exception


def test_a_config_in_the_address_opens_with_its_run(app_config, tmp_path, write_config, other_run):
    other = write_config(tmp_path / "other.toml", other_run)
    at = _page(config=str(other)).run()
    assert not at.exception and not _alerts(at)
    assert at.selectbox(key="config").value == str(other)
    assert _shown(at)[0] == "other-000001.safetensors"
    assert at.query_params["config"] == str(other) and at.query_params["run"] == str(other_run)


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ({"run": "/nowhere/at/all"}, "does not exist"),
        ({"run": "/nowhere/at/all", "tab": "no such tab"}, "does not exist"),
        ({"run": "{pictures}/p0.png"}, "is a file, not a LoRA checkpoint"),
        ({"run": "{pictures}"}, "No LoRA checkpoints"),
        ({"config": "/nowhere/demo.toml"}, "config cannot be used"),
    ],
)
def test_a_bad_address_says_what_is_wrong_once_and_opens_the_default(app_config, run_dir, tmp_path, query, said):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    Image.new("RGB", (8, 8)).save(pictures / "p0.png")
    at = _page(**{k: v.format(pictures=pictures) for k, v in query.items()}).run()
    assert not at.exception
    alerts = _alerts(at)
    assert len(alerts) == 1 and said in alerts[0], alerts
    _one_sentence_each(alerts[0])
    assert "open instead" in alerts[0]
    assert _folder(at).value == str(run_dir) and _shown(at) == ["style_5.safetensors", "style_10.safetensors"]
    assert at.query_params["run"] == str(run_dir) and at.session_state["tab"] == "Grid"
    at.run()  # said until another path is chosen, and still once
    assert len(_alerts(at)) == 1


def test_a_checkpoint_file_opens_its_folder_with_it_chosen(app_config, run_dir, other_run):
    zbench.save_page_state(other_run, {"checkpoints": ["other-000001.safetensors"]})
    at = _page().run()
    _folder(at).set_value(str(other_run / "other-000003.safetensors")).run()
    assert not at.exception and not _alerts(at)
    assert _shown(at) == ["other-000001.safetensors", "other-000003.safetensors"]
    assert at.sidebar.multiselect[0].value == ["other-000001.safetensors", "other-000003.safetensors"]
    assert at.query_params["run"] == str(other_run / "other-000003.safetensors")
    # From a link too; and removing it by hand then sticks (the path chose it once).
    linked = _page(run=str(other_run / "other-000002.safetensors")).run()
    assert not linked.exception and "other-000002.safetensors" in _shown(linked)
    linked.sidebar.multiselect[0].set_value(["other-000003.safetensors"]).run()
    next(b for b in linked.button if b.label == "Render").click().run()
    assert _shown(linked) == ["other-000003.safetensors"]


def test_a_per_step_folder_checkpoint_opens_the_run_above_it(app_config, tmp_path, make_lora):
    run = tmp_path / "diffusers_run"
    for step in (500, 1000):
        make_lora(run / f"checkpoint-{step}" / "pytorch_lora_weights.safetensors", rank=4, seed=step)
    at = _page(run=str(run / "checkpoint-500" / "pytorch_lora_weights.safetensors")).run()
    assert not at.exception and not _alerts(at)
    assert _shown(at) == [f"checkpoint-{s}/pytorch_lora_weights.safetensors" for s in (500, 1000)]


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("{tmp}/nowhere/at/all", "does not exist"),
        ("{run}/style_5.safetensors.bak", "is a file, not a LoRA checkpoint"),
        ("{pictures}", "No LoRA checkpoints"),
        ("{pictures}/p0.png", "is a file, not a LoRA checkpoint"),
        ("{empty}", "holds nothing"),
    ],
)
def test_path_messages_say_one_thing_with_one_period(app_config, run_dir, tmp_path, typed, said):
    pictures, empty = tmp_path / "pictures", tmp_path / "empty"
    pictures.mkdir()
    empty.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8)).save(pictures / f"p{i}.png")
    at = _page().run()
    path = typed.format(tmp=tmp_path, run=run_dir, pictures=pictures, empty=empty)
    _folder(at).set_value(path).run()
    assert not at.exception
    alerts = _alerts(at)
    assert len(alerts) == 1 and said in alerts[0], alerts
    assert "not a folder" not in alerts[0] or "does not exist" not in alerts[0]
    assert "Type the folder" in alerts[0]  # and what to do
    _one_sentence_each(alerts[0])


def test_every_nth_last_n_and_a_range_of_epochs(app_config, tmp_path, make_lora):
    run = tmp_path / "long"
    for epoch in range(1, 10):
        make_lora(run / f"long_{epoch}.safetensors", rank=4, seed=epoch)
    at = _page(run=str(run)).run()
    names = [f"long_{e}.safetensors" for e in range(1, 10)]
    mode, n, span = (f"pick_{part}:{run}" for part in ("mode", "n", "span"))
    assert at.selectbox(key=mode).value == "all" and at.sidebar.multiselect[0].value == names

    at.selectbox(key=mode).set_value("every").run()
    at.number_input(key=n).set_value(3).run()
    assert at.sidebar.multiselect[0].value == ["long_3.safetensors", "long_6.safetensors", "long_9.safetensors"]
    assert _shown(at) == names  # not committed before Render
    at.selectbox(key=mode).set_value("last").run()
    at.number_input(key=n).set_value(2).run()
    assert at.sidebar.multiselect[0].value == ["long_8.safetensors", "long_9.safetensors"]
    at.selectbox(key=mode).set_value("range").run()
    at.select_slider(key=span).set_value((2, 4)).run()
    assert at.sidebar.multiselect[0].value == ["long_2.safetensors", "long_3.safetensors", "long_4.safetensors"]
    next(b for b in at.button if b.label == "Render").click().run()
    assert _shown(at) == ["long_2.safetensors", "long_3.safetensors", "long_4.safetensors"]
    assert zbench.load_page_state(run)["checkpoints"] == _shown(at)  # the chips are what is saved

    at.sidebar.multiselect[0].set_value(["long_2.safetensors", "long_4.safetensors"]).run()  # by hand
    assert at.selectbox(key=mode).value == "hand"
    at.selectbox(key=mode).set_value("all").run()
    assert at.sidebar.multiselect[0].value == names

    again = _page(run=str(run)).run()  # reopened: the mode that gives the saved chips
    assert again.selectbox(key=mode).value == "range" and again.select_slider(key=span).value == (2, 4)


def test_the_run_zbench_page_was_started_on_opens_at_a_bare_address(app_config, other_run, monkeypatch):
    monkeypatch.setenv("ZBENCH_RUN", str(other_run))  # what `zbench page RUN` sets
    at = _page().run()
    assert not at.exception and not _alerts(at)
    assert _folder(at).value == str(other_run) and at.query_params["run"] == str(other_run)
