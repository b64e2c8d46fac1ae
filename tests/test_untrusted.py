"""Every way in shares one set of rules, and every file zbench reads back is untrusted.

Each class of hostile value is tried on every way in: the sweep spec, the bench config, the grid command, the
page's restored state and the Python API; each class of hostile file on every reader (page.json, review.json,
release.json, releases.jsonl, prompts files). Nothing here loads a model: every refusal happens before.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zbench import (
    ConfigError,
    DecisionError,
    DecisionStore,
    LimitError,
    RenderSettings,
    load_config,
    load_page_state,
    load_sweep,
    plan_grid,
)
from zbench.engine import jsonio
from zbench.engine.cache import cell_key, software_versions
from zbench.engine.limits import MAX_PROMPT_CHARS, read_prompts_file

ROOT = Path(__file__).resolve().parent.parent

# (TOML line in [render] or at the top, the key the message must name) — each refused by the sweep spec.
HOSTILE_SPEC = [
    ("[render]\nsteps = 1000000", r"\[render\] steps: should be from 1 to 200"),
    ("[render]\nsteps = 0", r"\[render\] steps"),
    ("[render]\nsteps = 8.5", r"\[render\] steps: should be a whole number"),
    ('[render]\nsteps = "8"', r"\[render\] steps: should be a whole number"),
    ("[render]\nwidth = 65536", r"\[render\] width: should be a multiple of 16 from 16 to 4096"),
    ("[render]\nwidth = 0", r"\[render\] width"),
    ("[render]\nheight = -16", r"\[render\] height"),
    ("[render]\nheight = 100", r"\[render\] height"),
    ("[render]\nwidth = true", r"\[render\] width"),
    ("[render]\nguidance = nan", r"\[render\] guidance: should be a number from 0 to 30"),
    ("[render]\nguidance = inf", r"\[render\] guidance"),
    ("[render]\nguidance = -3", r"\[render\] guidance"),
    ("[render]\nguidance = 1e308", r"\[render\] guidance"),
    ('[render]\nnegative = "a\\u0000b"', r"\[render\] negative: holds a control character"),
    ("seeds = [-1]", r"seeds: should be between 0 and 2\*\*64-1"),
    ("seeds = [1.5]", r"seeds: should be whole numbers"),
    ("seeds = [18446744073709551616]", r"cannot be read|seeds"),  # beyond TOML's 64-bit integers
    ("seeds = [true]", r"seeds"),
    ("seeds = []", r"seeds"),
    (f"seeds = [{', '.join(str(i) for i in range(5000))}]", r"seeds: at most 1000 seeds"),
    ('seeds = "1-100000"', r"at most 1000 seeds"),
    ("scales = [nan]", r"scales: a LoRA scale should be between -4 and 4"),
    ("scales = [5]", r"scales"),
    (f"scales = [{', '.join('1' for _ in range(3))}, {', '.join(str(i / 100) for i in range(40))}]", r"scales"),
    ("loras = 5", r"loras: the run folder as a path"),
    ('loras = ""', r"loras"),
    ("loras = [1]", r"loras"),
    ('prompts = ["a\\u0000b"]', r"prompts: holds a control character"),
    (f'prompts = ["{"x" * (MAX_PROMPT_CHARS + 1)}"]', r"prompts: should be at most 20,000 characters"),
]


def _spec(tmp_path: Path, spec_config: Path, line: str) -> Path:
    top, _, render = line.partition("[render]\n") if line.startswith("[render]") else (line, "", "")
    body = [f'config = "{spec_config}"', top.strip()]
    if render:
        body += ["[render]", render]
    path = tmp_path / "spec.toml"
    path.write_text("\n".join(b for b in body if b) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def spec_config(tmp_path):
    """A config whose model is never loaded: every refusal here comes before any model (or run) is opened."""
    (tmp_path / "run").mkdir()
    path = tmp_path / "bench.toml"
    path.write_text(
        f'[model]\npath = "no-model-here"\n[loras]\ndir = "{tmp_path / "run"}"\n'
        '[render]\nprompt = "a red square"\nsteps = 2\nwidth = 64\nheight = 64\n'
    )
    return path


@pytest.mark.parametrize(("line", "message"), HOSTILE_SPEC, ids=[m[0][:40] for m in HOSTILE_SPEC])
def test_a_hostile_sweep_spec_is_refused_naming_the_key(tmp_path, spec_config, line, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep(_spec(tmp_path, spec_config, line))


def test_the_sweep_command_exits_2_before_loading_a_model(tmp_path, spec_config):
    spec = _spec(tmp_path, spec_config, "[render]\nsteps = 1000000")
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "zbench", "sweep", str(spec), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2, out.stderr
    assert "steps: should be from 1 to 200, got 1000000" in out.stderr
    assert not (tmp_path / "out").exists()  # refused before the folder (or a model) was touched
    assert time.perf_counter() - started < 60  # a hang guard only


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "1000000"], "steps: should be from 1 to 200"),
        (["--width", "65536"], "should be a multiple of 16 from 16 to 4096"),
        (["--width", "0"], "should be a multiple of 16"),
        (["--height", "-16"], "should be a multiple of 16"),
        (["--guidance", "nan"], "guidance: should be a number from 0 to 30"),
        (["--guidance", "inf"], "guidance"),
        (["--guidance", "-3"], "guidance"),
        (["--seed", "-1"], "seed"),
        (["--seed", "1.5"], "seed"),
        (["--scale", "inf"], "LoRA scale"),
    ],
)
def test_the_grid_command_refuses_the_same_values_with_status_2(args, message, capsys):
    from zbench.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["grid", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("steps = 1000000", r"render\.steps: should be from 1 to 200"),
        ("width = 65536", r"render\.width"),
        ("guidance = nan", r"render\.guidance"),
        ("guidance = -3", r"render\.guidance"),
        ("seed = -1", r"render\.seed"),
        ('negative = "\\u001b[31m"', r"render\.negative: holds a control character"),
    ],
)
def test_a_config_is_held_to_the_same_rules(tmp_path, line, message):
    path = tmp_path / "c.toml"
    path.write_text(f'[model]\npath = "m"\n[render]\n{line}\n')
    with pytest.raises(ConfigError, match=message):
        load_config(path)


@pytest.mark.parametrize(
    "settings",
    [
        {"steps": 1000000},
        {"steps": 0},
        {"steps": True},
        {"width": 0},
        {"width": 65536},
        {"height": -16},
        {"guidance": math.nan},
        {"guidance": math.inf},
        {"guidance": -3.0},
        {"negative": "\x00"},
        {"negative": 5},
    ],
)
def test_the_api_holds_render_settings_to_the_same_rules(settings):
    with pytest.raises(LimitError):
        RenderSettings(**{"steps": 8, "guidance": 0.0, "width": 64, "height": 64, **settings})


@pytest.mark.parametrize(
    ("grid", "key"),
    [
        ({"seeds": [-1]}, "seeds"),
        ({"seeds": [1.5]}, "seeds"),
        ({"seeds": list(range(1001))}, "seeds"),
        ({"scales": [math.nan]}, "scales"),
        ({"scales": [1.0] * 33}, "scales"),
        ({"prompts": ["a\x00b"]}, "prompts"),
        ({"prompts": ["x" * (MAX_PROMPT_CHARS + 1)]}, "prompts"),
        ({"prompts": []}, "prompts"),
    ],
)
def test_the_api_holds_grids_to_the_same_rules(grid, key):
    with pytest.raises(LimitError) as err:
        plan_grid([], **{"prompts": ["a red square"], "seeds": [1], "scales": [1.0], **grid})
    assert err.value.key == key


def test_written_numbers_are_always_valid_json(tmp_path, make_lora):
    """NaN and infinities (a metric gone wrong, a hand-edited value) are written as null, never as NaN."""
    text = jsonio.dumps({"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": {"d": (math.nan,)}})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in {text}")) == {
        "a": None,
        "b": [None, None, 1.5],
        "c": {"d": [None]},
    }
    from zbench import scan_run

    make_lora(tmp_path / "r_1.safetensors", seed=1)
    (ck,) = scan_run(tmp_path)
    store = DecisionStore(tmp_path)
    store.mark_release(ck, who="me", settings={"guidance": math.nan}, evidence={"p": math.inf})
    for path in (store.release_path, store.history_path):
        assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
        json.loads(path.read_text().splitlines()[0] if path.suffix == ".jsonl" else path.read_text())


# --- prompts files: regular files of bounded size ---------------------------------------------------------------


def test_prompts_files_are_regular_files_of_bounded_size(tmp_path):
    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"a red square\n\x00\x00\x00\n")
    big = tmp_path / "big.txt"
    with big.open("wb") as f:  # 100 MB, sparse: never read
        f.truncate(100 * 2**20)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(bytes(range(128, 256)))
    cases = {
        nul: "line 2: holds a control character",
        big: "more than the 4,194,304 bytes",
        fifo: "not a regular file",
        Path("/dev/zero"): "not a regular file",
        tmp_path: "is a folder",
        tmp_path / "missing.txt": "does not exist",
        binary: "is not UTF-8 text",
    }
    for path, message in cases.items():
        started = time.perf_counter()
        with pytest.raises(LimitError, match=re.escape(message)):
            read_prompts_file(path)
        assert time.perf_counter() - started < 5, path  # a FIFO is never opened, /dev/zero never read
    good = tmp_path / "good.txt"
    good.write_text("\ufeff# a comment\na red square\n\n  a blue circle  \n", encoding="utf-8")
    assert read_prompts_file(good) == ["a red square", "a blue circle"]


def test_a_spec_naming_a_fifo_or_dev_zero_as_prompts_file_is_refused_at_once(tmp_path, spec_config):
    fifo = tmp_path / "prompts.fifo"
    os.mkfifo(fifo)
    for target in (fifo, Path("/dev/zero")):
        spec = _spec(tmp_path, spec_config, f'prompts_file = "{target}"')
        with pytest.raises(ConfigError, match=r"prompts_file: .*not a regular file"):
            load_sweep(spec)


# --- page and decision files read back ----------------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


def _page(tmp_path: Path, data) -> Path:
    folder = tmp_path / ".zbench"
    folder.mkdir(exist_ok=True)
    (folder / "page.json").write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return tmp_path


def test_a_restored_page_keeps_only_values_the_rules_allow(tmp_path):
    state = load_page_state(
        _page(
            tmp_path,
            {
                "steps": 100000,
                "width": 65536,
                "height": 0,
                "guidance": -5,
                "seeds": "1-100000",
                "scales": "nan",
                "prompts": "a\u0000b",
                "negative": "fine",
                "include_base": False,
            },
        )
    )
    assert state == {"negative": "fine", "include_base": False}
    good = load_page_state(_page(tmp_path, {"steps": 12, "width": 512, "height": 768, "guidance": 3, "seeds": "1-4"}))
    assert good == {"steps": 12, "width": 512, "height": 768, "guidance": 3.0, "seeds": "1-4"}


@pytest.mark.parametrize("text", [DEEP, '{"steps": NaN}', "\xff", "[]", "null", '{"zooms": ' + DEEP + "}"])
def test_a_broken_page_file_is_ignored_and_kept(tmp_path, text):
    run = _page(tmp_path, text)
    assert load_page_state(run) == {}
    assert (run / ".zbench" / "page.json").read_text(encoding="utf-8") == text  # the user's file is left alone


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("review.json", DEEP, "nests deeper than"),
        ("review.json", '{"ratings": {"a": NaN}}', "not valid JSON"),
        ("review.json", '{"votes": [{"winner": {}, "loser": "b", "prompt": "p", "seed": 1, "when": ""}]}', "votes"),
        ("review.json", '{"votes": [{"winner": "a", "loser": "b", "prompt": "p", "seed": "1", "when": ""}]}', "seed"),
        ("release.json", DEEP, "nests deeper than"),
        ("release.json", '{"who": "me"}', "not a release record"),
        ("release.json", '{"checkpoint": 5}', "not a release record"),
        ("release.json", "[1, 2]", "not a release record"),
    ],
)
def test_decision_files_read_back_are_checked(tmp_path, name, text, message):
    folder = tmp_path / ".zbench"
    folder.mkdir()
    (folder / name).write_text(text, encoding="utf-8")
    store = DecisionStore(tmp_path)
    with pytest.raises(DecisionError, match=message) as err:
        store.load() if name == "review.json" else store.release()
    assert "zbench will not overwrite it" in str(err.value)  # and says what to do
    assert (folder / name).read_text(encoding="utf-8") == text


def test_a_release_record_keeps_what_it_can_show(tmp_path):
    folder = tmp_path / ".zbench"
    folder.mkdir()
    record = {"checkpoint": "r_5.safetensors", "who": {"x": 1}, "when": 5, "epoch": "five", "step": None}
    (folder / "release.json").write_text(json.dumps(record))
    (folder / "releases.jsonl").write_text(DEEP + "\n" + json.dumps(record) + "\n{torn\n" + '"a string"\n')
    store = DecisionStore(tmp_path)
    assert store.release() == {"checkpoint": "r_5.safetensors", "step": None}
    assert store.history() == [{"checkpoint": "r_5.safetensors", "step": None}]


def test_a_huge_review_file_is_refused_without_reading_it(tmp_path):
    folder = tmp_path / ".zbench"
    folder.mkdir()
    with (folder / "review.json").open("wb") as f:
        f.truncate(200 * 2**20)
    with pytest.raises(DecisionError, match="more than the"):
        DecisionStore(tmp_path).load()


# --- the image cache knows the software ---------------------------------------------------------------------------


def test_cache_keys_change_with_the_software_that_draws(monkeypatch):
    params = {"prompt": "p", "negative": "", "seed": 1, "scale": 1.0, "steps": 8, "guidance": 0.0, "width": 64,
              "height": 64}  # fmt: skip
    versions = software_versions()
    assert set(versions) == {"torch", "diffusers", "transformers", "peft"} and "missing" not in versions.values()
    before = cell_key("base", "abc", **params)
    for library in versions:
        monkeypatch.setattr("zbench.engine.cache.software_versions", lambda lib=library: {**versions, lib: "99.0"})
        assert cell_key("base", "abc", **params) != before, library
    monkeypatch.setattr("zbench.engine.cache.software_versions", lambda: versions)
    assert cell_key("base", "abc", **params) == before


def test_an_old_cache_is_a_miss_not_an_error(tmp_path):
    """Entries written under other versions are simply never asked for: the cache opens and renders anew."""
    from PIL import Image

    from zbench import ImageCache

    cache = ImageCache(tmp_path)
    old = "ab" + "0" * 62
    cache.put(old, Image.new("RGB", (8, 8)))
    assert ImageCache(tmp_path).get("cd" + "0" * 62) is None
    assert ImageCache(tmp_path).get(old) is not None


# --- JSON inside checkpoint files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["lora_adapter_metadata", "training_info"])
def test_deeply_nested_json_in_a_checkpoints_metadata_is_a_message(tmp_path, make_lora, field):
    from zbench import scan_run

    make_lora(tmp_path / "deep_1.safetensors", seed=1, metadata={field: DEEP})
    make_lora(tmp_path / "fine_2.safetensors", seed=2)
    deep, fine = scan_run(tmp_path)
    assert fine.error is None  # the rest of the run is untouched
    if field == "lora_adapter_metadata":
        assert "nests deeper than" in deep.error
    else:  # ai-toolkit's step counter is only a hint: ignored, the file still loads
        assert deep.error is None


def test_a_peft_folders_config_is_bounded(tmp_path, make_lora):
    from safetensors.torch import load_file, save_file

    from zbench import scan_run

    folder = tmp_path / "checkpoint-500"
    bare = make_lora(tmp_path / "bare.safetensors", seed=1, fmt="bare")
    folder.mkdir()
    save_file({f"base_model.model.{k}": v for k, v in load_file(bare).items()}, folder / "adapter_model.safetensors")
    bare.unlink()
    (folder / "adapter_config.json").write_text(DEEP)
    (ck,) = scan_run(tmp_path)
    assert "adapter_config.json cannot be read" in ck.error and "nests deeper than" in ck.error


def test_marking_a_release_never_overwrites_a_release_file_it_cannot_read(tmp_path, make_lora):
    from zbench import scan_run

    make_lora(tmp_path / "r_1.safetensors", seed=1)
    (ck,) = scan_run(tmp_path)
    (tmp_path / ".zbench").mkdir()
    (tmp_path / ".zbench" / "release.json").write_text('{"who": "me"}')
    with pytest.raises(DecisionError, match="not a release record"):
        DecisionStore(tmp_path).mark_release(ck, who="me")
    assert (tmp_path / ".zbench" / "release.json").read_text() == '{"who": "me"}'
