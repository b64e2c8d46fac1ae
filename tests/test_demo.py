"""The embedded demo's build script stays alive: --quick writes a base and a LoRA run that load and render."""

import textwrap

import pytest
import torch
from safetensors import safe_open

from zbench import RenderSettings, load_config, plan_grid, render_cells, scan_run
from zbench.demo.build import QUICK, build_demo
from zbench.engine.pipeline import load_base


@pytest.mark.slow
def test_quick_build_writes_a_loadable_base_and_a_lora_run(tmp_path):
    build_demo(tmp_path / "models" / "demo", tmp_path / "loras" / "dreamy", plan=QUICK, quiet=True)
    config_path = tmp_path / "configs" / "quick.toml"
    config_path.parent.mkdir()
    config_path.write_text(
        textwrap.dedent("""
        name = "quick demo"
        [model]
        path = "../models/demo"
        pipeline = "ZImagePipeline"
        device = "cpu"
        [loras]
        dir = "../loras/dreamy"
        [render]
        steps = 2
        width = 64
        height = 64
    """)
    )
    config = load_config(config_path)
    run = scan_run(config.lora_dir)
    assert [c.name for c in run] == ["dreamy_2.safetensors", "dreamy_5.safetensors", "dreamy_12.safetensors"]
    assert all(c.error is None and c.format == "diffusers" and c.metadata["ss_network_dim"] == "8" for c in run)
    base = load_base(config)
    _, cells = plan_grid(run, prompts=["a red circle on a blue background"], seeds=[1])
    results = render_cells(base, cells, RenderSettings(steps=2, guidance=0.0, width=64, height=64))
    assert [r.status for r in results] == ["ok"] * 4
    # The report runs on any demo build: adherence table, per-epoch rows, a sheet.
    from zbench.demo.report import run_report

    report = run_report(config, out_dir=tmp_path / "report", seeds=(1,))
    assert "held-out combinations" in report.text and "dreamy_12.safetensors" in report.text
    assert len(report.epochs) == 3 and all(0 <= e["style"] <= 1 for e in report.epochs)
    assert (tmp_path / "report" / "sheet.png").is_file() and (tmp_path / "report" / "report.md").is_file()

    # --lora-only keeps the base and retrains the run from the LoRA stage's own seeds: the same files.
    again = tmp_path / "again"
    build_demo(tmp_path / "models" / "demo", again, plan=QUICK, quiet=True, lora_only=True)
    for ck in run:  # (the files' bytes differ: safetensors writes metadata in a random order)
        with safe_open(again / ck.name, "pt") as x, safe_open(ck.path, "pt") as y:
            assert x.metadata() == y.metadata() and set(x.keys()) == set(y.keys())
            assert all(torch.equal(x.get_tensor(k), y.get_tensor(k)) for k in x.keys()), ck.name
