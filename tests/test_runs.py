"""A folder of runs offered to pick, a wrong path described, and the page's settings kept per run."""

from __future__ import annotations

import json
import os

import pytest

from zbench import ZoomBox, ZoomSpec, describe_folder, find_runs, load_page_state, save_page_state


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_runs_below_a_folder_in_natural_order(tmp_path):
    out = tmp_path / "output"
    _touch(out / "run10" / "a-000001.safetensors")
    _touch(out / "run9" / "a-000001.safetensors")
    _touch(out / "sdxl" / "faces" / "f_500.safetensors")  # a group of runs, two levels down
    _touch(out / "dreambooth" / "checkpoint-500" / "pytorch_lora_weights.safetensors")  # diffusers' layout
    _touch(out / "run9" / ".zbench" / "x.safetensors")  # zbench's own folders are not runs
    _touch(out / "zbench-sheets" / "s.safetensors")
    _touch(out / ".cache" / "c.safetensors")
    _touch(out / "logs" / "events.out")
    assert [p.relative_to(out).as_posix() for p in find_runs(out)] == ["dreambooth", "run9", "run10", "sdxl/faces"]
    assert find_runs(out / "logs") == [] and find_runs(tmp_path / "nowhere") == []


def test_a_wrong_path_says_what_is_there(tmp_path):
    _touch(tmp_path / "pics" / "a.png")
    _touch(tmp_path / "pics" / "b.PNG")
    _touch(tmp_path / "pics" / "notes")
    (tmp_path / "pics" / "sub").mkdir()
    said = describe_folder(tmp_path / "pics")
    assert "1 folder (sub)" in said and "3 files (2 .png, 1 (no extension))" in said
    assert "is a file" in describe_folder(tmp_path / "pics" / "a.png")
    missing = describe_folder(tmp_path / "pics" / "typo" / "deeper")
    assert "does not exist" in missing and f"{tmp_path / 'pics'}" in missing


def test_page_settings_round_trip_and_bad_fields_are_dropped(tmp_path):
    zoom = ZoomSpec(ZoomBox("eye", 0.1, 0.2, 0.3, 0.4))
    state = {"prompts": "a\nb", "seeds": "1-4", "steps": 8, "guidance": 0.0, "include_base": False,
             "checkpoints": ["a.safetensors"], "zooms": [zoom], "unknown": 1}  # fmt: skip
    assert save_page_state(tmp_path, state)
    back = load_page_state(tmp_path)
    assert back == {k: v for k, v in state.items() if k != "unknown"}
    path = tmp_path / ".zbench" / "page.json"
    data = json.loads(path.read_text())
    data.update(steps="8", guidance=2, include_base=1, checkpoints=["ok", 3], width=True)
    data["zooms"].append({"name": "bad", "x": 2, "y": 0, "w": 1, "h": 1})  # outside the image
    path.write_text(json.dumps(data))
    back = load_page_state(tmp_path)
    assert "steps" not in back and back["guidance"] == 2.0 and "include_base" not in back and "width" not in back
    assert back["checkpoints"] == ["ok"] and [z.box.name for z in back["zooms"]] == ["eye"]
    path.write_text("{torn")
    assert load_page_state(tmp_path) == {}  # a broken file starts from the defaults
    assert path.read_text() == "{torn"  # and is left for the user to look at


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_a_read_only_run_keeps_settings_in_the_session_only(tmp_path):
    tmp_path.chmod(0o555)
    try:
        assert save_page_state(tmp_path, {"seeds": "1"}) is False
    finally:
        tmp_path.chmod(0o755)
