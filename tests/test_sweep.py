"""Sweeps: a spec, a folder written cell by cell, resumed after a kill, the same images over Ray workers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import zbench
from zbench.sweep.run import make_tasks, plan_sweep

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def sweep_spec(tmp_path, tiny_config, make_lora):
    """A spec on the tiny base: 4 checkpoints (one of them broken) × 2 prompts × 2 seeds, plus the base."""
    run = tmp_path / "run"
    run.mkdir()
    for epoch in (2, 4, 6):
        make_lora(run / f"style-{epoch:06d}.safetensors", rank=4, seed=epoch)
    (run / "style-000008.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")  # a header and no tensors
    config = tmp_path / "tiny.toml"
    config.write_text(
        "\n".join(
            [
                'name = "tiny"',
                "[model]",
                f"path = {json.dumps(str(tiny_config.model_path))}",
                'pipeline = "ZImagePipeline"',
                'device = "cpu"',
                'dtype = "float32"',
                "[render]",
                'prompt = "a red circle"',
                "steps = 2",
                "width = 64",
                "height = 64",
            ]
        )
        + "\n"
    )
    spec = tmp_path / "sweep.toml"
    spec.write_text(
        'config = "tiny.toml"\nloras = "run"\nprompts = ["a red circle", "a blue square"]\nseeds = "1-2"\n'
        "[render]\nsteps = 2\n"
    )
    return spec


def _images(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for record in zbench.SweepStore(folder).records().values():
        if record["image"]:
            out[record["key"]] = np.asarray(Image.open(folder / record["image"]))
    return out


def test_spec_reads_ranges_filters_and_says_what_is_wrong(tmp_path, sweep_spec):
    spec = zbench.load_sweep(sweep_spec)
    assert spec.seeds == (1, 2) and spec.prompts == ("a red circle", "a blue square") and spec.settings.steps == 2
    run, chosen = spec.checkpoints()
    assert [c.epoch for c in chosen] == [2, 4, 6, 8]
    example = zbench.load_sweep(ROOT / "configs" / "sweeps" / "demo.toml")  # the documented example loads
    assert example.seeds == (1, 2) and len(example.prompts) == 3 and example.run_dir.is_dir()

    picked = tmp_path / "picked.toml"
    picked.write_text(
        sweep_spec.read_text().replace("[render]", '[checkpoints]\nnames = ["2", "6", "8"]\nevery = 2\n[render]')
    )
    assert [c.epoch for c in zbench.load_sweep(picked).checkpoints()[1]] == [2, 8]  # every 2nd back from the last
    assert [c.epoch for c in zbench.select_checkpoints(run, last=2)] == [6, 8]
    for text, says in [
        ('config = "tiny.toml"\nloras = "run"\nseed = 3\n', "seed: unknown key"),
        ('config = "tiny.toml"\nloras = "run"\nseeds = "4-1"\n', "seeds"),
        ('config = "tiny.toml"\nloras = "run"\n[checkpoints]\nnames = ["99"]\n', "no checkpoint matches '99'"),
        ('config = "tiny.toml"\n', "no run folder"),
        ('loras = "run"\n', "config"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(zbench.ConfigError, match=says) as err:
            zbench.load_sweep(bad).checkpoints()
        assert str(bad) in str(err.value)


def test_cells_are_grouped_by_checkpoint_and_the_base_is_planned_once(sweep_spec, tmp_path):
    text = sweep_spec.read_text().replace('seeds = "1-2"', 'seeds = "1-2"\nscales = "0.5, 1"')
    sweep_spec.write_text(text)
    _, _, keyed = plan_sweep(zbench.load_sweep(sweep_spec))
    assert len(keyed) == 2 * 2 + 4 * (2 * 2 * 2)  # base once per prompt and seed, whatever the scale
    assert len({sc.key for sc in keyed}) == len(keyed)
    tasks = make_tasks(keyed, chunk=3)
    assert all(len({sc.cell.name for sc in t.cells}) == 1 and len(t.cells) <= 3 for t in tasks)
    assert [t.name for t in tasks].count("style-000002.safetensors") == 3  # 8 cells in groups of 3


def test_a_killed_sweep_resumes_with_only_the_rest_and_the_same_images(sweep_spec, tmp_path):
    sweep_spec.write_text(sweep_spec.read_text().replace('seeds = "1-2"', 'seeds = "1-4"'))
    whole = tmp_path / "whole"
    summary = zbench.run_sweep(zbench.load_sweep(sweep_spec), whole, threads=1, quiet=True)
    assert summary.total == 40 and summary.rendered == 40 and summary.errors == 8  # the broken file's 8 cells
    expected = _images(whole)
    assert len(expected) == 32

    # Kill a sweep mid-way (the CLI, as a user's Ctrl-C or a lost machine would), then run it again.
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "zbench", "sweep", str(sweep_spec), "--out", str(out), "--threads", "1", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lines = out / "cells.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not lines.exists() or len(lines.read_text().splitlines()) < 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with lines.open("a") as f:
        f.write('{"key": "torn')  # a line cut by the kill
    before = len(zbench.SweepStore(out).done())
    assert 3 <= before < 40

    seen = []
    summary = zbench.run_sweep(zbench.load_sweep(sweep_spec), out, threads=1, quiet=True, on_result=seen.append)
    assert summary.skipped == before and summary.rendered == 40 - before == len(seen)
    got = _images(out)
    assert got.keys() == expected.keys()
    assert all(np.array_equal(got[k], expected[k]) for k in expected)
    again = zbench.run_sweep(zbench.load_sweep(sweep_spec), out, threads=1, quiet=True)
    assert again.rendered == 0 and again.skipped == 40


def test_the_folder_browses_as_a_grid_without_rendering(sweep_spec, tmp_path):
    out = tmp_path / "sweep"
    zbench.run_sweep(zbench.load_sweep(sweep_spec), out, threads=1, quiet=True)
    store = zbench.SweepStore(out)
    run = zbench.scan_run(tmp_path / "run")
    rows = [zbench.Row("a blue square", 2, 1.0)]  # one slice: one prompt and seed
    results = store.results(run, rows)
    assert [r.cell.name for r in results] == ["base", *(c.name for c in run)]
    assert [r.status for r in results] == ["ok", "ok", "ok", "ok", "error"]
    assert "tensor" in results[-1].error.lower()
    missing = store.results(run, [zbench.Row("a green star", 1, 1.0)])
    assert {r.status for r in missing} == {"pending"}


def test_a_sweep_folder_of_another_run_is_refused(sweep_spec, tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps({"run": "/elsewhere", "base": "tiny"}))
    with pytest.raises(zbench.SweepError, match="new --out"):
        zbench.run_sweep(zbench.load_sweep(sweep_spec), out, quiet=True)


@pytest.mark.slow
def test_two_ray_workers_give_the_same_images_and_a_lost_worker_is_replaced(sweep_spec, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="pip install -r requirements-ray.txt")
    spec = zbench.load_sweep(sweep_spec)
    single = tmp_path / "single"
    zbench.run_sweep(spec, single, threads=1, quiet=True)
    killed = []

    def kill_one(record):  # after the first cell comes back, a worker dies (as a lost node would)
        if not killed:
            name = next(n for n in ray.util.list_named_actors() if n.startswith("zbench-sweep-"))
            ray.kill(ray.get_actor(name), no_restart=True)
            killed.append(name)

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a local throwaway cluster
    try:
        summary = zbench.run_sweep(spec, tmp_path / "ray", workers=2, threads=1, quiet=True, on_result=kill_one)
    finally:
        ray.shutdown()
    assert killed and summary.workers == 2 and summary.rendered == 20 and summary.errors == 4
    records = zbench.SweepStore(tmp_path / "ray").records().values()
    assert {r["worker"] for r in records if r["status"] == "ok"} <= {"ray-0", "ray-1"}
    expected, got = _images(single), _images(tmp_path / "ray")
    assert got.keys() == expected.keys() and all(np.array_equal(got[k], expected[k]) for k in expected)


def test_cli_sweep_says_what_it_did(sweep_spec, tmp_path, capsys):
    from zbench.cli import main

    out = tmp_path / "cli"
    assert main(["sweep", str(sweep_spec), "--out", str(out), "--quiet", "--threads", "1"]) == 0
    said = capsys.readouterr()
    assert "20 cells: 0 were done, 20 rendered now (4 errors)" in said.out
    assert "style-000008.safetensors" in said.err  # the broken file's error is said
    assert main(["sweep", str(tmp_path / "nope.toml"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["sweep", str(sweep_spec), "--out", str(out), "--workers", "-1"]) == 2


def test_the_page_browses_a_sweep_without_rendering(sweep_spec, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    out = tmp_path / "sweep"
    zbench.run_sweep(zbench.load_sweep(sweep_spec), out, threads=1, quiet=True)
    config = tmp_path / "browse.toml"
    config.write_text((tmp_path / "tiny.toml").read_text() + f"[loras]\ndir = {json.dumps(str(out))}\n")
    monkeypatch.setenv("ZBENCH_CONFIG", str(config))
    monkeypatch.setenv("ZBENCH_CACHE_DIR", str(tmp_path / "cache"))

    def nothing_renders(*args, **kwargs):
        raise AssertionError("browsing a sweep rendered or loaded a base")

    monkeypatch.setattr(zbench, "render_cells", nothing_renders)
    monkeypatch.setattr(zbench, "get_base", nothing_renders)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception, at.exception

    def grid() -> dict:
        mounted = [e for e in at.get("bidi_component") if e.proto.component_name == "zbench.grid"]
        return json.loads(mounted[-1].proto.json)

    def statuses() -> list[list[str]]:
        return [[c["status"] for c in line] for line in grid()["cells"]]

    assert [c["label"] for c in grid()["columns"]] == ["base", "epoch 2", "epoch 4", "epoch 6", "epoch 8"]
    assert statuses() == [["ok", "ok", "ok", "ok", "error"]]  # first prompt, first seed
    # Another slice: the second prompt at both seeds.
    multiselect = {m.label: m for m in at.multiselect}
    multiselect["Prompts"].set_value(["a blue square"])
    multiselect["Seeds"].set_value([1, 2])
    next(b for b in at.button if b.label == "Show").click().run()
    assert not at.exception, at.exception
    assert statuses() == [["ok", "ok", "ok", "ok", "error"]] * 2
    _, results = at.session_state["grid"]
    shown = {(r.cell.name, r.cell.prompt, r.cell.seed): np.asarray(r.image) for r in results if r.image is not None}
    for record in zbench.SweepStore(out).records().values():  # the stored images, not new ones
        key = (record["checkpoint"], record["prompt"], record["seed"])
        if key in shown:
            assert np.array_equal(shown[key], np.asarray(Image.open(out / record["image"]).convert("RGB")))
    assert len(shown) == 8

    # Export and the release pick work on it; decisions land in the run the sweep rendered.
    next(b for b in at.button if b.label == "Export").click().run()
    assert not at.exception, at.exception
    sheet = Path(at.session_state["export"][0])
    assert sheet.parent == tmp_path / "run" / "zbench-sheets"
    assert json.loads((sheet / "manifest.json").read_text())["prompts"] == ["a blue square"]
    next(s for s in at.selectbox if s.label == "Checkpoint to release").set_value("style-000004.safetensors").run()
    next(b for b in at.button if b.label == "Mark as release").click().run()
    assert not at.exception, at.exception
    record = json.loads((tmp_path / "run" / ".zbench" / "release.json").read_text())
    assert record["checkpoint"] == "style-000004.safetensors"


def test_a_wider_spec_adds_to_the_folder_and_a_grid_output_browses_too(sweep_spec, tmp_path, capsys):
    from zbench.cli import main

    out = tmp_path / "sweep"
    zbench.run_sweep(zbench.load_sweep(sweep_spec), out, threads=1, quiet=True)
    sweep_spec.write_text(sweep_spec.read_text().replace('seeds = "1-2"', 'seeds = "1-3"'))
    more = zbench.run_sweep(zbench.load_sweep(sweep_spec), out, threads=1, quiet=True)
    assert more.skipped == 20 and more.rendered == 10  # seed 3 only: 2 prompts × 5 columns
    assert zbench.open_stored(out).seeds == (1, 2, 3)

    grid = tmp_path / "grid"
    args = ["grid", "--config", str(tmp_path / "tiny.toml"), "--loras", str(tmp_path / "run"), "--seed", "5"]
    assert main([*args, "--out", str(grid), "--sheet", "archive", "--quiet"]) == 0
    capsys.readouterr()
    stored = zbench.open_stored(grid)
    assert stored.kind == "grid" and stored.seeds == (5,) and stored.run_dir == tmp_path / "run"
    run = [c for c in zbench.scan_run(tmp_path / "run") if c.name in stored.checkpoints]
    results = stored.results(run, [zbench.Row("a red circle", 5, 1.0)])
    assert [r.status for r in results] == ["ok", "ok", "ok", "ok", "error"]
    assert zbench.open_stored(tmp_path) is None  # neither a sweep nor a grid's output


def test_odd_records_in_a_stored_folder_never_break_browsing(sweep_spec, tmp_path):
    out = tmp_path / "sweep"
    zbench.run_sweep(zbench.load_sweep(sweep_spec), out, threads=1, quiet=True)
    outside = tmp_path / "private.png"
    Image.new("RGB", (64, 64)).save(outside)
    with (out / "cells.jsonl").open("a") as f:
        f.write(json.dumps({"key": "x1", "prompt": "a red circle"}) + "\n")  # no checkpoint
        odd = {"key": "x2", "checkpoint": "base", "prompt": "a green star", "seed": 1, "scale": 1.0}
        f.write(json.dumps({**odd, "image": "../private.png", "status": "ok"}) + "\n")
        f.write("[1, 2]\n")
    store = zbench.SweepStore(out)
    results = store.results([], [zbench.Row("a red circle", 1, 1.0), zbench.Row("a green star", 1, 1.0)])
    assert [r.status for r in results] == ["ok", "error"]
    assert "outside" in results[1].error


def test_the_readme_shows_the_demo_sweep_spec_as_it_is():
    """The README's sweep example is configs/sweeps/demo.toml (less its three header comment lines)."""
    import re

    root = Path(__file__).resolve().parent.parent
    shown = re.search(r"is this \(its comments document every key\):\n\n```toml\n(.*?)```",
                      (root / "README.md").read_text(encoding="utf-8"), re.S)  # fmt: skip
    spec = (root / "configs" / "sweeps" / "demo.toml").read_text(encoding="utf-8").split("\n", 3)[3]
    assert shown is not None and shown.group(1).strip() == spec.strip()
