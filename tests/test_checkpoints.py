import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from zbench import parse_name, scan_run
from zbench.engine.header import read_header


@pytest.mark.parametrize(
    ("stem", "epoch", "step", "pattern"),
    [
        ("jimeng_20", 20, None, "number"),
        ("jimeng_300", 300, None, "number"),
        ("name-000010", 10, None, "kohya"),
        ("name", None, None, "final"),
        ("name-step00000500", None, 500, "kohya-step"),
        ("name_000000500", None, 500, "ai-toolkit"),
        ("epoch-3", 3, None, "diffsynth"),
        ("step-1200", None, 1200, "diffsynth-step"),
        ("checkpoint-500", None, 500, "diffusers"),
        ("mylora2025-01-02_03-04-05-save-1500-3-100", 3, 1500, "onetrainer"),
        ("style_e12", 12, None, "epoch"),
        ("style-epoch_7", 7, None, "epoch"),
        ("style_step300", None, 300, "step"),
        ("gauss_10", 10, None, "number"),  # an "s" before the number is not a step marker
    ],
)
def test_parse_name(stem, epoch, step, pattern):
    info = parse_name(stem)
    assert (info.epoch, info.step, info.pattern) == (epoch, step, pattern)


def _touch_lora(path, *, rank=2, modules=("layers.0.attention.to_q",), metadata=None, fmt="diffusers"):
    tensors = {}
    for m in modules:
        if fmt == "kohya":
            name = "lora_unet_" + m.replace(".", "_")
            tensors[f"{name}.lora_down.weight"] = torch.zeros(rank, 8)
            tensors[f"{name}.lora_up.weight"] = torch.zeros(8, rank)
        else:
            tensors[f"transformer.{m}.lora_A.weight"] = torch.zeros(rank, 8)
            tensors[f"transformer.{m}.lora_B.weight"] = torch.zeros(8, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


ORDER_CASES = {
    "jimeng": (
        ["jimeng_100", "jimeng_20", "jimeng_9", "jimeng_10", "jimeng_300"],
        ["jimeng_9", "jimeng_10", "jimeng_20", "jimeng_100", "jimeng_300"],
    ),
    "kohya": (
        ["name", "name-000010", "name-000002", "name-000001"],
        ["name-000001", "name-000002", "name-000010", "name"],
    ),
    "kohya-step": (
        ["n-step00001000", "n-step00000500", "n-step00000050"],
        ["n-step00000050", "n-step00000500", "n-step00001000"],
    ),
    "ai-toolkit": (
        ["n", "n_000001000", "n_000000250", "n_000000500"],
        ["n_000000250", "n_000000500", "n_000001000", "n"],
    ),
    "diffsynth": (["epoch-10", "epoch-2", "epoch-0", "epoch-1"], ["epoch-0", "epoch-1", "epoch-2", "epoch-10"]),
    "onetrainer": (
        ["r-save-900-9-100", "r-save-1000-10-0", "r-save-100-1-0"],
        ["r-save-100-1-0", "r-save-900-9-100", "r-save-1000-10-0"],
    ),
}


@pytest.mark.parametrize("case", sorted(ORDER_CASES))
def test_scan_orders_as_a_person_counts(tmp_path, case):
    names, expected = ORDER_CASES[case]
    for n in names:
        _touch_lora(tmp_path / f"{n}.safetensors")
    got = [c.path.stem for c in scan_run(tmp_path)]
    assert got == expected


def test_diffusers_checkpoint_folders_sort_by_step(tmp_path):
    for step in (1000, 500, 1500):
        _touch_lora(tmp_path / f"checkpoint-{step}" / "pytorch_lora_weights.safetensors")
        (tmp_path / f"checkpoint-{step}" / "optimizer.bin").write_bytes(b"not a lora")
    _touch_lora(tmp_path / "pytorch_lora_weights.safetensors")  # the final save at the top
    cks = scan_run(tmp_path)
    assert [c.name for c in cks] == [
        "checkpoint-500/pytorch_lora_weights.safetensors",
        "checkpoint-1000/pytorch_lora_weights.safetensors",
        "checkpoint-1500/pytorch_lora_weights.safetensors",
        "pytorch_lora_weights.safetensors",
    ]
    assert [c.step for c in cks] == [500, 1000, 1500, None]
    assert all(c.error is None for c in cks)


def test_metadata_fills_epoch_of_final_and_orders_by_it(tmp_path):
    _touch_lora(tmp_path / "style.safetensors", metadata={"ss_epoch": "12", "ss_steps": "1200"}, fmt="kohya")
    _touch_lora(tmp_path / "style-000004.safetensors", metadata={"ss_epoch": "4", "ss_steps": "400"}, fmt="kohya")
    _touch_lora(tmp_path / "style-000008.safetensors", metadata={"ss_epoch": "8", "ss_steps": "800"}, fmt="kohya")
    cks = scan_run(tmp_path)
    assert [(c.epoch, c.step) for c in cks] == [(4, 400), (8, 800), (12, 1200)]
    assert cks[-1].name == "style.safetensors" and cks[0].format == "kohya"


def test_ai_toolkit_training_info(tmp_path):
    info = json.dumps({"step": 750, "epoch": 3})
    _touch_lora(tmp_path / "n_000000750.safetensors", metadata={"training_info": info})
    (ck,) = scan_run(tmp_path)
    assert (ck.epoch, ck.step) == (3, 750)


def test_ignores_bak_and_other_files_and_refuses_pickles(tmp_path, monkeypatch):
    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load must never be called by a scan")

    monkeypatch.setattr(torch, "load", no_unpickling)
    _touch_lora(tmp_path / "run_1.safetensors")
    _touch_lora(tmp_path / "run_2.safetensors.bak")
    (tmp_path / "run_3.ckpt").write_bytes(b"\x80\x04pickle")
    (tmp_path / "optimizer.pt").write_bytes(b"\x80\x04pickle")  # trainer state: not listed
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "sample_1.png").write_bytes(b"png")
    cks = scan_run(tmp_path)
    assert [c.name for c in cks] == ["run_1.safetensors", "run_3.ckpt"]
    assert cks[1].format == "pickle" and "never unpickles" in cks[1].error


def test_header_only(tmp_path, monkeypatch):
    """Listing a folder reads headers: no tensor is ever materialised."""
    import safetensors
    import safetensors.torch

    def forbidden(*args, **kwargs):
        raise AssertionError("scan loaded tensors")

    _touch_lora(tmp_path / "a_1.safetensors", rank=4)
    monkeypatch.setattr(safetensors, "safe_open", forbidden)
    monkeypatch.setattr(safetensors.torch, "load_file", forbidden)
    monkeypatch.setattr(safetensors.torch, "load", forbidden)
    (ck,) = scan_run(tmp_path)
    assert ck.rank == 4 and ck.error is None


def test_truncated_corrupt_and_not_lora_files_get_errors(tmp_path):
    good = _touch_lora(tmp_path / "run_1.safetensors")
    data = good.read_bytes()
    (tmp_path / "run_2.safetensors").write_bytes(data[: len(data) - 10])
    (tmp_path / "run_3.safetensors").write_bytes(struct.pack("<Q", 5) + b"{oops")
    (tmp_path / "run_4.safetensors").write_bytes(b"abc")
    (tmp_path / "run_6.safetensors").write_bytes(struct.pack("<Q", 8) + b'{"w": 5}')
    save_file({"model.weight": torch.zeros(2, 2)}, str(tmp_path / "run_5.safetensors"))
    cks = {c.name: c for c in scan_run(tmp_path)}
    assert cks["run_1.safetensors"].error is None
    assert "truncated" in cks["run_2.safetensors"].error
    assert "not valid JSON" in cks["run_3.safetensors"].error
    assert "too short" in cks["run_4.safetensors"].error
    assert "not a LoRA" in cks["run_5.safetensors"].error
    assert "malformed tensor table" in cks["run_6.safetensors"].error


def test_odd_module_set_is_marked(tmp_path):
    modules = ("layers.0.attention.to_q", "layers.0.attention.to_k")
    for e in (1, 2, 3):
        _touch_lora(tmp_path / f"r_{e}.safetensors", modules=modules)
    _touch_lora(tmp_path / "r_4.safetensors", modules=modules[:1])
    cks = scan_run(tmp_path)
    assert [c.error is None for c in cks] == [True, True, True, False]
    assert "different set of modules" in cks[-1].error


def test_one_run_saved_in_two_layouts_is_one_module_set(tmp_path):
    modules = ("layers.0.attention.to_q", "layers.0.attention.to_out.0")
    for e in (1, 2, 3):
        _touch_lora(tmp_path / f"r_{e}.safetensors", modules=modules, fmt="kohya")
    _touch_lora(tmp_path / "r_4.safetensors", modules=modules, fmt="diffusers")
    assert [c.error for c in scan_run(tmp_path)] == [None] * 4


def test_mixed_ranks_are_fine_and_reported(tmp_path):
    _touch_lora(tmp_path / "r_1.safetensors", rank=4)
    _touch_lora(tmp_path / "r_2.safetensors", rank=16)
    assert [(c.rank, c.error) for c in scan_run(tmp_path)] == [(4, None), (16, None)]


def test_formats_and_lokr(tmp_path):
    _touch_lora(tmp_path / "a_1.safetensors", fmt="kohya")
    save_file({"diffusion_model.layers.0.attention.to_q.lokr_w1": torch.zeros(2, 2)}, str(tmp_path / "a_2.safetensors"))
    cks = scan_run(tmp_path)
    assert cks[0].format == "kohya" and cks[0].arch == "z-image"
    assert cks[1].format == "ai-toolkit+lokr" and cks[1].adapter == "lokr" and cks[1].adapter_name == "LoKr"


def test_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist\. Pass the folder"):
        scan_run(tmp_path / "nope")


def test_read_header_returns_metadata(tmp_path):
    path = _touch_lora(tmp_path / "x.safetensors", metadata={"ss_network_dim": "2"})
    header, meta = read_header(path)
    assert meta == {"ss_network_dim": "2"} and "transformer.layers.0.attention.to_q.lora_A.weight" in header
