"""The CLI end to end on the tiny real pipeline: scan, grid, errors, exit codes."""

import json
import textwrap

import numpy as np
import pytest
from PIL import Image

from zbench.cli import main


@pytest.fixture()
def config_file(tmp_path, tiny_model):
    path = tmp_path / "tiny.toml"
    path.write_text(
        textwrap.dedent(f"""
        name = "tiny test base"
        [model]
        path = "{tiny_model}"
        pipeline = "ZImagePipeline"
        device = "cpu"
        dtype = "float32"
        [render]
        prompt = "a green triangle"
        seed = 3
        steps = 2
        width = 32
        height = 32
    """)
    )
    return path


@pytest.fixture()
def run_dir(tmp_path, make_lora):
    run = tmp_path / "run"
    for epoch in (9, 10, 100):
        make_lora(run / f"jimeng_{epoch}.safetensors", rank=4, seed=epoch, strength=epoch / 50)
    return run


def test_scan_json_lists_checkpoints_in_order(run_dir, capsys):
    (run_dir / "jimeng_2.safetensors.bak").write_bytes(b"old")
    (run_dir / "jimeng_50.pt").write_bytes(b"\x80pickle")
    assert main(["scan", str(run_dir), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in listed] == [
        "jimeng_9.safetensors",
        "jimeng_10.safetensors",
        "jimeng_50.pt",
        "jimeng_100.safetensors",
    ]
    for key in ("name", "path", "epoch", "step", "rank", "alpha", "format", "error"):
        assert key in listed[0]
    assert listed[0]["rank"] == 4 and listed[0]["error"] is None and listed[0]["format"] == "diffusers"
    assert "never unpickles" in listed[2]["error"]


def test_scan_table(run_dir, capsys):
    assert main(["scan", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert out.index("jimeng_9.") < out.index("jimeng_10.") < out.index("jimeng_100.")


def test_grid_writes_sheet_cells_and_manifest(config_file, run_dir, tmp_path, capsys):
    (run_dir / "jimeng_20.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{truncated")
    out = tmp_path / "out"
    code = main(
        [
            "grid",
            "--config",
            str(config_file),
            "--loras",
            str(run_dir),
            "--prompt",
            "a red circle",
            "--prompt",
            "a blue square",
            "--seed",
            "1",
            "--seed",
            "2",
            "--scale",
            "1",
            "--scale",
            "0.5",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    for name in ("share.webp", "index.html", "timeline.webp", "sheet.pdf", "cells.zip", "cells/*.png"):
        assert name in printed  # every file with its size
    assert " KB" in printed or " MB" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    render = manifest["render"]  # how the grid was drawn
    assert (render["device"], render["dtype"], render["peak_vram_bytes"]) == ("cpu", "float32", None)
    assert render["seconds"] > 0 and render["text_encoder"] == "gpu"
    cells = manifest["cells"]
    columns = [
        "base",
        "jimeng_9.safetensors",
        "jimeng_10.safetensors",
        "jimeng_20.safetensors",
        "jimeng_100.safetensors",
    ]
    assert len(cells) == 2 * 2 * 2 * len(columns)
    assert [c["checkpoint"] for c in cells[: len(columns)]] == columns
    for cell in cells:
        for key in ("checkpoint", "prompt", "seed", "scale", "image", "status", "error", "swap_ms", "render_ms"):
            assert key in cell
        if cell["checkpoint"] == "jimeng_20.safetensors":
            assert cell["status"] == "error" and "truncated" in cell["error"] and cell["image"] is None
        else:
            assert cell["status"] == "ok" and (out / cell["image"]).is_file()
    # One seed gives the same start for every checkpoint: the base column repeats across scale rows.
    base_rows = [c for c in cells if c["checkpoint"] == "base" and c["prompt"] == "a red circle" and c["seed"] == 1]
    a, b = (np.asarray(Image.open(out / c["image"])) for c in base_rows)
    assert np.array_equal(a, b)
    # Each cell PNG carries its parameters.
    first = Image.open(out / cells[1]["image"])
    assert "Seed: 1" in first.text["parameters"] and "jimeng_9.safetensors" in first.text["parameters"]
    assert json.loads(first.text["zbench"])["checkpoint"] == "jimeng_9.safetensors"
    sheet = Image.open(out / "sheet.png")
    assert sheet.width > 5 * 32 and sheet.height > 8 * 32


def test_grid_epochs_and_no_base(config_file, run_dir, tmp_path):
    out = tmp_path / "out"
    assert (
        main(
            [
                "grid",
                "--config",
                str(config_file),
                "--loras",
                str(run_dir),
                "--epochs",
                "100,9",
                "--no-base",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    cells = json.loads((out / "manifest.json").read_text())["cells"]
    assert [c["checkpoint"] for c in cells] == ["jimeng_9.safetensors", "jimeng_100.safetensors"]
    assert cells[0]["prompt"] == "a green triangle" and cells[0]["seed"] == 3  # the config's defaults


def test_grid_unknown_epoch_lists_what_exists(config_file, run_dir, tmp_path, capsys):
    code = main(
        ["grid", "--config", str(config_file), "--loras", str(run_dir), "--epochs", "7", "--out", str(tmp_path / "o")]
    )
    assert code == 2 and "this run has: 9, 10, 100" in capsys.readouterr().err


def test_grid_without_base_model_says_where_it_looked(tmp_path, run_dir, capsys):
    config = tmp_path / "missing.toml"
    config.write_text('name = "Z"\n[model]\npath = "nowhere/Z-Image-Turbo"\npipeline = "ZImagePipeline"\n')
    code = main(["grid", "--config", str(config), "--loras", str(run_dir), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1
    assert "nothing could render" in err and str(tmp_path / "nowhere" / "Z-Image-Turbo") in err
    assert "To fix" in err


def test_grid_missing_lora_folder(config_file, tmp_path, capsys):
    code = main(["grid", "--config", str(config_file), "--loras", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert code == 2 and "does not exist" in capsys.readouterr().err
