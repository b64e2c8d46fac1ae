"""Hostile and odd input, as a user's downloads folder holds it: what zbench promises for each class.

Every file case below is rendered in a run between two good checkpoints on the shared tiny
pipeline. Each must end as a scan row or error cell that names the cause and the fix, never a
hang, a crash or a silently wrong image; the good checkpoint rendered after it must equal, pixel
for pixel, a fresh pipeline that loaded only that checkpoint. Trainer layouts are written here
from the trainers' own saving code (cited per case), never with zbench's writers.

| class                  | cases                                                                         |
|------------------------|-------------------------------------------------------------------------------|
| header                 | empty, truncated, header length past the end or over 100,000,000 bytes, not  |
|                        | JSON, NaN/Infinity, duplicate keys, non-object or non-string __metadata__,     |
|                        | unknown dtype, non-numeric shape or offsets, overlapping or gapped tensors,    |
|                        | size/shape mismatch, trailing bytes, invalid Unicode                           |
| not a LoRA             | pickle (.pt), plain weights, a LoKr in a LoRA run, bad DoRA                    |
| alpha (hang, strength) | negative, zero, NaN, infinite, absurd, multi-value .alpha; lora_alpha 0 in     |
|                        | metadata; PEFT adapter_config.json with a bad or unreadable lora_alpha         |
| structure (poison)     | lora_A without lora_B, ranks that disagree, lora_A narrower or wider than its  |
|                        | module, lora_B of the wrong output size, NaN values                            |
| other base / set       | SDXL keys, text-encoder parts, modules this base lacks, odd module set        |
| trainer layouts        | ai-toolkit, musubi-tuner, OneTrainer LEGACY/DIFFUSERS/KOHYA/ORIGINAL/COMFY,    |
|                        | DiffSynth-Studio, SimpleTuner, diffusers script, PEFT save_pretrained folder  |
| scale, stop            | NaN/inf/out-of-range scales; Stop within one step of a long render            |
| decisions              | two processes writing at once, a torn releases.jsonl line, a file replaced    |
|                        | with the same size and mtime, a folder that cannot be written                 |
| page text              | file names with Markdown links and images are shown literally                 |
| smaller                | ~ in folders, one pipeline after a config switch, a decompression bomb in the |
|                        | image cache, wrong config types, grid --steps 0 and --out at a file           |

Run them with ``python -m pytest -k hostile``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from zbench import (
    AdapterSwapper,
    BaseModelError,
    ConfigError,
    DecisionError,
    DecisionStore,
    ImageCache,
    RenderSettings,
    cell_key,
    get_base,
    load_config,
    plan_grid,
    render_cells,
    scan_run,
)
from zbench.demo.toy import lora_targets

SETTINGS = RenderSettings(steps=2, guidance=0.0, width=32, height=32)
PROMPT, SEED, RANK = "a red circle", 7, 4
# Every message must say what to do, not only what is wrong.
FIX = re.compile(r"re-save|re-copy|move it|pick a|retrain|compare|export|lower|switch|check that|give|copy the", re.I)
GOOD_A, GOOD_B = "good_1.safetensors", "good_3.safetensors"


@pytest.fixture(scope="module")
def targets(transformer) -> dict[str, torch.nn.Linear]:
    return lora_targets(transformer)


def factors(targets, *, seed: int, rank: int = RANK) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Seeded (A, B) per target module, strong enough to change the image."""
    gen = torch.Generator().manual_seed(seed)
    return {
        name: (
            torch.randn(rank, lin.in_features, generator=gen) / lin.in_features**0.5,
            torch.randn(lin.out_features, rank, generator=gen) * 3 / rank**0.5,
        )
        for name, lin in sorted(targets.items())
    }


def diffusers_keys(fs, prefix="transformer.") -> dict[str, torch.Tensor]:
    return {
        k: v.contiguous()
        for m, (a, b) in fs.items()
        for k, v in ((f"{prefix}{m}.lora_A.weight", a), (f"{prefix}{m}.lora_B.weight", b))
    }


def kohya_keys(fs, alpha: float | None = None, prefix="lora_unet_", dtype=torch.float32) -> dict[str, torch.Tensor]:
    out = {}
    for m, (a, b) in fs.items():
        name = prefix + m.replace(".", "_")
        out[f"{name}.lora_down.weight"], out[f"{name}.lora_up.weight"] = a.contiguous(), b.contiguous()
        if alpha is not None:
            out[f"{name}.alpha"] = torch.tensor(alpha, dtype=dtype)  # 0-d, as musubi/kohya register_buffer it
    return out


def raw_safetensors(path: Path, header: dict | bytes, data: bytes, *, length: int | None = None) -> Path:
    """Write a safetensors file byte by byte (for headers no library would write)."""
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body) if length is None else length) + body + data)
    return path


def split(path: Path) -> tuple[dict, bytes]:
    """A written file's header (parsed) and its data bytes."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


# -- the file cases ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path, dict], None]  # writes the bad file into the run folder, given the good factors
    where: str  # "scan": the scan row says it; "cell": the scan accepts it and the swap refuses it
    cause: str  # a regex the message must match
    alone: bool = False  # the run holds only this file (no majority for the scan to compare with)


def _good_file(run: Path, fs: dict, name: str = "bad_2.safetensors") -> Path:
    path = run / name
    save_file(diffusers_keys(fs), str(path))
    return path


def _mutated(mutate: Callable[[dict, bytes], tuple[dict | bytes, bytes]], **kw) -> Callable[[Path, dict], None]:
    """A case that writes a good file, then rewrites its header (and data) as ``mutate`` says."""

    def build(run: Path, fs: dict) -> None:
        path = _good_file(run, fs)
        header, data = split(path)
        new_header, new_data = mutate(header, data)
        raw_safetensors(path, new_header, new_data, **kw)

    return build


def _save(sd: dict, run: Path, metadata: dict | None = None) -> None:
    save_file(sd, str(run / "bad_2.safetensors"), metadata=metadata)


def _duplicate_key(header: dict) -> bytes:
    key = _first(header)
    return json.dumps(header)[:-1].encode() + f', "{key}": {json.dumps(header[key])}}}'.encode()


def _all_at_zero(header: dict) -> dict:
    """Every tensor placed at offset 0: they overlap."""
    return {
        k: v if k == "__metadata__" else {**v, "data_offsets": [0, v["data_offsets"][1] - v["data_offsets"][0]]}
        for k, v in header.items()
    }


def _add_dora_scales(sd: dict) -> None:
    sd.update(
        {k.replace("lora_A.weight", "dora_scale"): torch.ones(1) for k in list(sd) if k.endswith("lora_A.weight")}
    )


def _first(header: dict) -> str:
    return sorted(k for k in header if k != "__metadata__")[0]


def _with(header: dict, **changes) -> dict:
    key = _first(header)
    return {**header, key: {**header[key], **changes}}


def _alpha_file(alpha, *, dtype=torch.float32, shape=()) -> Callable[[Path, dict], None]:
    def build(run: Path, fs: dict) -> None:
        sd = kohya_keys(fs, alpha=1.0)
        for k in [k for k in sd if k.endswith(".alpha")][:1]:
            sd[k] = torch.full(shape, float(alpha), dtype=dtype)
        save_file(sd, str(run / "bad_2.safetensors"))

    return build


def _state_edit(edit: Callable[[dict], None]) -> Callable[[Path, dict], None]:
    def build(run: Path, fs: dict) -> None:
        sd = diffusers_keys(fs)
        edit(sd)
        save_file(sd, str(run / "bad_2.safetensors"))

    return build


def _peft_folder(config: str | dict) -> Callable[[Path, dict], None]:
    def build(run: Path, fs: dict) -> None:
        folder = run / "checkpoint-2"
        folder.mkdir()
        save_file(diffusers_keys(fs, prefix="base_model.model."), str(folder / "adapter_model.safetensors"))
        text = config if isinstance(config, str) else json.dumps(config)
        (folder / "adapter_config.json").write_text(text)

    return build


def _drop_first_b(sd: dict) -> None:
    del sd[sorted(k for k in sd if ".lora_B." in k)[0]]


def _rank_disagrees(sd: dict) -> None:
    key = sorted(k for k in sd if ".lora_B." in k)[0]
    sd[key] = sd[key][:, :2].contiguous()


def _resize_first(side: str, features: int) -> Callable[[dict], None]:
    def edit(sd: dict) -> None:
        key = sorted(k for k in sd if f".lora_{side}." in k)[0]
        shape = (RANK, features) if side == "A" else (features, RANK)
        sd[key] = torch.randn(*shape) * 0.1

    return edit


def _nan_values(sd: dict) -> None:
    sd[sorted(sd)[0]][0, 0] = float("nan")


def _sdxl(run: Path, fs: dict) -> None:
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_1_attn1_to_q"
    save_file(
        {f"{key}.lora_down.weight": torch.ones(4, 320), f"{key}.lora_up.weight": torch.ones(320, 4)},
        str(run / "bad_2.safetensors"),
    )


def _text_encoder(run: Path, fs: dict) -> None:
    sd = kohya_keys(fs, alpha=4.0)
    sd["lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"] = torch.ones(4, 16)
    sd["lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"] = torch.ones(16, 4)
    save_file(sd, str(run / "bad_2.safetensors"))


def _unknown_modules(run: Path, fs: dict) -> None:
    sd = diffusers_keys({m.replace("layers.0.", "layers.9.", 1): f for m, f in fs.items()})
    save_file(sd, str(run / "bad_2.safetensors"))


def _odd_set(run: Path, fs: dict) -> None:
    save_file(diffusers_keys(dict(list(fs.items())[:3])), str(run / "bad_2.safetensors"))


CASES = [
    # header: what safetensors itself refuses
    Case("empty file", lambda run, fs: (run / "bad_2.safetensors").write_bytes(b""), "scan", r"too short"),
    Case(
        "truncated data",
        lambda run, fs: (run / "bad_2.safetensors").write_bytes(_good_file(run, fs).read_bytes()[:-100]),
        "scan",
        r"truncated",
    ),
    Case("header past the end", _mutated(lambda h, d: (h, d), length=10**6), "scan", r"truncated or not safetensors"),
    Case("header over the limit", _mutated(lambda h, d: (h, d), length=100_000_001), "scan", r"over safetensors'"),
    Case("not JSON", _mutated(lambda h, d: (b"{not json" + b" " * 10, d)), "scan", r"not valid JSON"),
    Case(
        "Infinity offset",
        _mutated(lambda h, d: (json.dumps(_with(h, data_offsets=[0, 1])).replace("1]", "Infinity]").encode(), d)),
        "scan",
        r"Infinity",
    ),
    Case(
        "duplicate key",
        _mutated(lambda h, d: (_duplicate_key(h), d)),
        "scan",
        r"twice",
    ),
    Case("metadata not an object", _mutated(lambda h, d: ({**h, "__metadata__": [1]}, d)), "scan", r"__metadata__"),
    Case("metadata not strings", _mutated(lambda h, d: ({**h, "__metadata__": {"a": 1}}, d)), "scan", r"__metadata__"),
    Case("unknown dtype", _mutated(lambda h, d: (_with(h, dtype="F7"), d)), "scan", r"dtype 'F7'"),
    Case("shape not numbers", _mutated(lambda h, d: (_with(h, shape=["4", 32]), d)), "scan", r"shape"),
    Case("offsets not numbers", _mutated(lambda h, d: (_with(h, data_offsets=[0, True]), d)), "scan", r"offsets"),
    Case(
        "overlapping tensors",
        _mutated(lambda h, d: (_all_at_zero(h), d)),
        "scan",
        r"overlap or leave a gap",
    ),
    Case("shape and size disagree", _mutated(lambda h, d: (_with(h, shape=[RANK, 31]), d)), "scan", r"need"),
    Case("trailing bytes", _mutated(lambda h, d: (h, d + b"\0" * 16)), "scan", r"after its last tensor"),
    Case("invalid Unicode", _mutated(lambda h, d: ({**h, "__metadata__": {"x": "\ud800"}}, d)), "scan", r"Unicode"),
    # not a LoRA at all
    Case("pickle", lambda run, fs: (run / "bad_2.pt").write_bytes(b"\x80\x04K\x01."), "scan", r"pickle"),
    Case("plain weights", lambda run, fs: _save({"w": torch.ones(2)}, run), "scan", r"no LoRA"),
    Case(
        "LoKr",
        lambda run, fs: _save({"lycoris_x.lokr_w1": torch.ones(2, 2)}, run),
        "scan",
        r"is a LoKr \(the rest of this run is LoRA\)",
    ),
    Case(
        "DoRA magnitude of the wrong length",
        _state_edit(_add_dora_scales),
        "cell",
        r"DoRA magnitude \(dora_scale\) has shape \(1,\)",
    ),
    # alphas: diffusers' converter loops forever on a negative one; zero renders the base as "ok"
    Case("negative alpha", _alpha_file(-4.0), "scan", r"alpha is -4"),
    Case("zero alpha", _alpha_file(0.0), "scan", r"alpha is 0.*above 0"),
    Case("NaN alpha", _alpha_file(float("nan")), "scan", r"alpha is nan"),
    Case("infinite alpha", _alpha_file(float("inf")), "scan", r"alpha is inf"),
    Case("absurd alpha", _alpha_file(1e6), "scan", r"times the rank"),
    Case("bf16 negative alpha", _alpha_file(-2.0, dtype=torch.bfloat16), "scan", r"alpha is -2"),
    Case("alpha of two values", _alpha_file(4.0, shape=(2,)), "scan", r"not a single number"),
    Case(
        "metadata lora_alpha 0",
        lambda run, fs: save_file(
            diffusers_keys(fs),
            str(run / "bad_2.safetensors"),
            metadata={"lora_adapter_metadata": json.dumps({"transformer.r": RANK, "transformer.lora_alpha": 0})},
        ),
        "scan",
        r"alpha is 0",
    ),
    Case("PEFT config negative alpha", _peft_folder({"r": RANK, "lora_alpha": -8}), "scan", r"alpha is -8"),
    Case("PEFT config not JSON", _peft_folder("{r: 4"), "scan", r"adapter_config.json cannot be read"),
    # structure: what used to poison the pipeline or render a wrong image as "ok"
    Case("lora_A without lora_B", _state_edit(_drop_first_b), "cell", r"incomplete.*no matching lora_B"),
    Case("ranks disagree", _state_edit(_rank_disagrees), "cell", r"do not make a LoRA"),
    Case("lora_A narrower than its module", _state_edit(_resize_first("A", 16)), "cell", r"input features"),
    Case("lora_A wider than its module", _state_edit(_resize_first("A", 64)), "cell", r"input features"),
    Case("lora_B of the wrong size", _state_edit(_resize_first("B", 48)), "cell", r"output features"),
    Case("NaN values", _state_edit(_nan_values), "cell", r"NaN or infinite"),
    # for another base, or another run: in a run the scan compares it with the others; alone the swap refuses it
    Case("SDXL LoRA in a Z-Image run", _sdxl, "scan", r"targets SDXL.*rest of this run targets Z-Image"),
    Case("SDXL LoRA alone", _sdxl, "cell", r"SDXL.*the loaded base is Z-Image", alone=True),
    Case("text-encoder parts in a run", _text_encoder, "scan", r"also adapts the text encoder"),
    Case("text-encoder parts alone", _text_encoder, "cell", r"that this base's text encoder lacks", alone=True),
    Case("modules this base lacks in a run", _unknown_modules, "scan", r"different set of modules"),
    Case("modules this base lacks alone", _unknown_modules, "cell", r"that this base lacks", alone=True),
    Case("odd module set", _odd_set, "scan", r"different set of modules"),
]


@pytest.fixture(scope="module")
def reference_b(tiny_config, targets, tmp_path_factory):
    """GOOD_B drawn by a fresh pipeline that loaded only it (plain diffusers)."""
    from zbench import load_base, render_image

    path = tmp_path_factory.mktemp("ref") / GOOD_B
    save_file(diffusers_keys(factors(targets, seed=3)), str(path))
    fresh = load_base(tiny_config)
    fresh.pipe.load_lora_weights(str(path), adapter_name="ref")
    return np.asarray(render_image(fresh, PROMPT, SEED, SETTINGS))


@pytest.fixture()
def deadline():
    """Fail (instead of hanging the suite) when a case runs past the given seconds."""

    def expire(signum, frame):
        raise TimeoutError("zbench hung on this input")

    previous = signal.signal(signal.SIGALRM, expire)
    yield lambda seconds: signal.alarm(seconds)
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_file(case, base, targets, tmp_path, reference_b, deadline):
    run, later = tmp_path / "run", tmp_path / "later"
    run.mkdir()
    later.mkdir()
    case.build(run, factors(targets, seed=2))
    save_file(diffusers_keys(factors(targets, seed=1)), str((later if case.alone else run) / GOOD_A))
    save_file(diffusers_keys(factors(targets, seed=3)), str((later if case.alone else run) / GOOD_B))

    deadline(60)
    cks = scan_run(run)  # never raises for one file
    bad = [c for c in cks if c.name not in (GOOD_A, GOOD_B)]
    assert len(bad) == 1 and [c.error for c in cks if c not in bad] == ([] if case.alone else [None, None])
    (bad,) = bad
    if case.where == "scan":
        assert bad.error and re.search(case.cause, bad.error), bad.error
    else:
        assert bad.error is None, bad.error
    _, cells = plan_grid(cks, prompts=[PROMPT], seeds=[SEED])
    results = {r.cell.name: r for r in render_cells(base, cells, SETTINGS, target_rank=RANK)}
    if case.alone:  # the run after it, on the same pipeline
        _, cells = plan_grid(scan_run(later), prompts=[PROMPT], seeds=[SEED], include_base=False)
        results.update({r.cell.name: r for r in render_cells(base, cells, SETTINGS, target_rank=RANK)})
    deadline(0)

    cell = results[bad.name]
    assert cell.status == "error" and re.search(case.cause, cell.error), cell.error
    assert FIX.search(cell.error), f"no fix in: {cell.error}"
    assert all(results[n].status == "ok" for n in ("base", GOOD_A, GOOD_B))
    assert np.array_equal(np.asarray(results[GOOD_B].image), reference_b), "the good checkpoint after it changed"


# The one deliberate difference: safetensors 0.8 keeps one of two tensors saved under the same key
# and says nothing; which one a user's file meant is unknowable, so zbench refuses the file.
STRICTER = {"duplicate key"}
HEADER_CASES = [c for c in CASES[: [c.id for c in CASES].index("pickle")] if c.id not in STRICTER]


@pytest.mark.parametrize("case", HEADER_CASES, ids=[c.id for c in HEADER_CASES])
def test_hostile_header_verdicts_agree_with_safetensors(case, targets, tmp_path):
    """What the scan refuses, safetensors refuses too (and the good file both accept)."""
    import safetensors

    case.build(tmp_path, factors(targets, seed=2))
    (path,) = tmp_path.glob("bad_2*")
    with pytest.raises(Exception) as refused, safetensors.safe_open(str(path), framework="pt") as f:
        f.keys()
    assert not isinstance(refused.value, AssertionError)
    good = _good_file(tmp_path, factors(targets, seed=2), "good.safetensors")
    with safetensors.safe_open(str(good), framework="pt") as f:
        assert f.keys()


# -- trainer layouts, written as each trainer's saving code writes them ------------------------


def _ai_toolkit(run, fs):
    # ai-toolkit toolkit/network_mixins.py get_state_dict + z_image.py convert_lora_weights_before_save:
    # "transformer." -> "diffusion_model.", PEFT lora_A/B names, no alpha (alpha = rank), fp16 by default.
    sd = {k: v.half() for k, v in diffusers_keys(fs, prefix="diffusion_model.").items()}
    meta = {"software": json.dumps({"name": "ai-toolkit"}), "training_info": json.dumps({"step": 500, "epoch": 1})}
    save_file(sd, str(run / "mylora_000000500.safetensors"), metadata=meta)
    return run / "mylora_000000500.safetensors", None


def _musubi(run, fs):
    # musubi-tuner networks/lora.py: lora_unet_<module with _>.lora_down/lora_up + a 0-d .alpha buffer.
    meta = {"ss_network_module": "networks.lora_zimage", "ss_network_dim": "4", "ss_network_alpha": "2.0",
            "ss_epoch": "1", "modelspec.architecture": "Z-Image/lora"}  # fmt: skip
    save_file(kohya_keys(fs, alpha=2.0), str(run / "mylora-000001.safetensors"), metadata=meta)
    return run / "mylora-000001.safetensors", None


OT_META = {"modelspec.architecture": "Z-Image/lora", "ot_branch": "master", "ot_revision": "23df3832"}


def _onetrainer(layout):
    def build(run, fs):
        # OneTrainer ZImageLoRASaver / LoRASaverMixin: module names as the transformer names them, prefixed
        # "transformer." (LEGACY, DIFFUSERS), "lora_unet_" flattened (KOHYA), none (ORIGINAL) or "diffusion_model."
        # (COMFY); 0-d alpha buffers kept except in DIFFUSERS, which folds alpha / rank into lora_B.
        alpha = 2.0
        if layout == "LEGACY":
            sd = kohya_keys(fs, alpha=alpha, prefix="transformer.")
            sd = {k.replace("transformer." + m.replace(".", "_"), "transformer." + m): v for k, v in sd.items()
                  for m in fs if k.startswith("transformer." + m.replace(".", "_") + ".")}  # fmt: skip
        elif layout == "KOHYA":
            sd = kohya_keys(fs, alpha=alpha)
        elif layout == "DIFFUSERS":
            sd = diffusers_keys({m: (a, b * (alpha / a.shape[0])) for m, (a, b) in fs.items()})
        else:
            prefix = "" if layout == "ORIGINAL" else "diffusion_model."
            sd = diffusers_keys(fs, prefix=prefix)
            sd.update({f"{prefix}{m}.alpha": torch.tensor(alpha) for m in fs})
        path = run / "mylora2026-01-02_03-04-05-save-500-1-0.safetensors"
        save_file(sd, str(path), metadata=OT_META)
        return path, kohya_keys(fs, alpha=alpha) if layout == "LEGACY" else None

    return build


def _diffsynth(run, fs):
    # DiffSynth-Studio training_module.py: inject_adapter_in_model keys kept as they are (".default"), bf16,
    # metadata {"format": "pt"} from accelerate, files epoch-N.safetensors counted from 0.
    sd = {k.replace(".weight", ".default.weight"): v.bfloat16() for k, v in diffusers_keys(fs, prefix="").items()}
    save_file(sd, str(run / "epoch-0.safetensors"), metadata={"format": "pt"})
    return run / "epoch-0.safetensors", None


TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0", "w1", "w2", "w3"]


def _lora_metadata(alpha):
    return json.dumps(
        {"transformer.r": RANK, "transformer.lora_alpha": alpha, "transformer.target_modules": TARGET_MODULES}
    )


def _simpletuner(run, fs):
    # SimpleTuner save_hooks._save_lora: diffusers write_lora_layers (lora_adapter_metadata) + modelspec.*.
    folder = run / "checkpoint-500"
    folder.mkdir()
    meta = {"format": "pt", "lora_adapter_metadata": _lora_metadata(8), "modelspec.architecture": "z-image-turbo/lora"}
    save_file(diffusers_keys(fs), str(folder / "pytorch_lora_weights.safetensors"), metadata=meta)
    return folder / "pytorch_lora_weights.safetensors", None


def _diffusers_script(run, fs):
    # diffusers examples/dreambooth/train_dreambooth_lora_z_image.py: save_lora_weights with adapter metadata.
    folder = run / "checkpoint-500"
    folder.mkdir()
    meta = {"format": "pt", "lora_adapter_metadata": _lora_metadata(2)}
    save_file(diffusers_keys(fs), str(folder / "pytorch_lora_weights.safetensors"), metadata=meta)
    return folder / "pytorch_lora_weights.safetensors", None


def _peft(run, fs):
    # peft save_pretrained: base_model.model.<module>.lora_A.weight + adapter_config.json (lora_alpha lives there).
    folder = run / "checkpoint-500"
    folder.mkdir()
    save_file(diffusers_keys(fs, prefix="base_model.model."), str(folder / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": RANK, "lora_alpha": 8, "target_modules": TARGET_MODULES, "task_type": None}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder / "adapter_model.safetensors", {"metadata": _lora_metadata(8)}


TRAINERS = {
    "ai-toolkit": (_ai_toolkit, "ai-toolkit", None, 500),
    "musubi-tuner": (_musubi, "musubi-tuner", 2.0, None),
    "OneTrainer LEGACY": (_onetrainer("LEGACY"), "OneTrainer", 2.0, 500),
    "OneTrainer DIFFUSERS": (_onetrainer("DIFFUSERS"), "OneTrainer", None, 500),
    "OneTrainer KOHYA": (_onetrainer("KOHYA"), "OneTrainer", 2.0, 500),
    "OneTrainer ORIGINAL": (_onetrainer("ORIGINAL"), "OneTrainer", 2.0, 500),
    "OneTrainer COMFY": (_onetrainer("COMFY"), "OneTrainer", 2.0, 500),
    "DiffSynth-Studio": (_diffsynth, "DiffSynth-Studio", None, None),
    "SimpleTuner": (_simpletuner, "SimpleTuner", 8.0, 500),
    "diffusers script": (_diffusers_script, "diffusers", 2.0, 500),
    "PEFT folder": (_peft, "PEFT", 8.0, 500),
}


@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_hostile_trainer_layouts_render_as_their_trainer_means(trainer, base, fresh_base, targets, tmp_path):
    from zbench import render_image

    build, name, alpha, step = TRAINERS[trainer]
    run = tmp_path / "run"
    run.mkdir()
    fs = factors(targets, seed=5)
    path, equivalent = build(run, fs)
    (ck,) = scan_run(run)
    assert ck.error is None and ck.trainer == name and ck.alpha == alpha and ck.step == step, ck

    # What the trainer means, loaded by plain diffusers into a fresh pipeline: the same file where diffusers
    # reads it right, else the same weights in a layout it does (kohya keys; diffusers metadata for PEFT).
    ref = fresh_base()
    if equivalent is None:
        ref.pipe.load_lora_weights(str(path), adapter_name="ref")
    elif "metadata" in equivalent:
        save_file(diffusers_keys(fs), str(tmp_path / "ref.safetensors"), metadata={
            "format": "pt", "lora_adapter_metadata": equivalent["metadata"]})  # fmt: skip
        ref.pipe.load_lora_weights(str(tmp_path / "ref.safetensors"), adapter_name="ref")
    else:
        save_file(equivalent, str(tmp_path / "ref.safetensors"))
        ref.pipe.load_lora_weights(str(tmp_path / "ref.safetensors"), adapter_name="ref")
    want = np.asarray(render_image(ref, PROMPT, SEED, SETTINGS))

    _, cells = plan_grid([ck], prompts=[PROMPT], seeds=[SEED], include_base=False)
    (got,) = render_cells(base, cells, SETTINGS, target_rank=RANK)
    assert got.status == "ok", got.error
    assert np.array_equal(np.asarray(got.image), want)
    if trainer == "PEFT folder":  # lora_alpha 8 over r 4: not the image at alpha = r
        flat = fresh_base()
        save_file(diffusers_keys(fs), str(tmp_path / "flat.safetensors"))
        flat.pipe.load_lora_weights(str(tmp_path / "flat.safetensors"), adapter_name="flat")
        assert not np.array_equal(want, np.asarray(render_image(flat, PROMPT, SEED, SETTINGS)))


# -- scales and Stop --------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -5.0, 4.5])
def test_hostile_scale_is_refused_before_anything_renders(scale, base, targets, tmp_path):
    save_file(diffusers_keys(factors(targets, seed=1)), str(tmp_path / "s_1.safetensors"))
    with pytest.raises(ValueError, match="LoRA scale"):
        plan_grid(scan_run(tmp_path), prompts=[PROMPT], seeds=[SEED], scales=[scale])
    with pytest.raises(ValueError, match="LoRA scale"):
        AdapterSwapper(base).activate(scan_run(tmp_path)[0], scale=scale)


def test_hostile_stop_ends_a_long_render_within_a_step(base, targets, tmp_path, reference_b):
    save_file(diffusers_keys(factors(targets, seed=3)), str(tmp_path / GOOD_B))
    (ck,) = scan_run(tmp_path)
    long = RenderSettings(steps=50, guidance=0.0, width=32, height=32)
    _, cells = plan_grid([ck], prompts=[PROMPT], seeds=[SEED], include_base=False)
    steps = []
    (stopped,) = render_cells(
        base, cells, long, on_step=lambda cell, i, n: steps.append(i), should_stop=lambda: len(steps) >= 2
    )
    assert stopped.status == "stopped" and max(steps) == 2  # not 50
    (again,) = render_cells(base, cells, SETTINGS)
    assert np.array_equal(np.asarray(again.image), reference_b)  # the pipeline renders on, exactly


def test_hostile_render_failure_inside_the_model_resets_the_adapter(base, targets, tmp_path, reference_b, monkeypatch):
    save_file(diffusers_keys(factors(targets, seed=1)), str(tmp_path / GOOD_A))
    save_file(diffusers_keys(factors(targets, seed=3)), str(tmp_path / GOOD_B))
    cks = scan_run(tmp_path)
    real = base.pipe.transformer.forward
    calls = []

    def broken_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
        return real(*args, **kwargs)

    monkeypatch.setattr(base.pipe.transformer, "forward", broken_once)
    _, cells = plan_grid(cks, prompts=[PROMPT], seeds=[SEED], include_base=False)
    first, second = render_cells(base, cells, SETTINGS)
    assert first.status == "error" and "taken off the pipeline" in first.error
    assert second.status == "ok" and np.array_equal(np.asarray(second.image), reference_b)


def test_hostile_unforeseen_failures_are_one_row_and_one_cell(base, targets, tmp_path, reference_b, monkeypatch):
    import zbench.engine.checkpoints as checkpoints
    import zbench.engine.hotswap as hotswap

    for name, seed in (("u_1.safetensors", 1), ("u_2.safetensors", 2), (GOOD_B, 3)):
        save_file(diffusers_keys(factors(targets, seed=seed)), str(tmp_path / name))
    real_describe, real_read = checkpoints.describe, hotswap.read_lora
    monkeypatch.setattr(checkpoints, "describe", lambda p, n: 1 / 0 if n == "u_1.safetensors" else real_describe(p, n))
    monkeypatch.setattr(
        hotswap, "read_lora", lambda b, ck: {}["boom"] if ck.name == "u_2.safetensors" else real_read(b, ck)
    )
    cks = {c.name: c for c in scan_run(tmp_path)}
    assert "ZeroDivisionError" in cks["u_1.safetensors"].error and cks["u_2.safetensors"].error is None
    order = [cks["u_1.safetensors"], cks["u_2.safetensors"], cks[GOOD_B]]
    _, cells = plan_grid(order, prompts=[PROMPT], seeds=[SEED], include_base=False)
    one, two, good = render_cells(base, cells, SETTINGS, target_rank=RANK)
    assert one.status == "error" and two.status == "error" and "KeyError" in two.error
    assert good.status == "ok" and np.array_equal(np.asarray(good.image), reference_b)


# -- decisions --------------------------------------------------------------------------------

_WRITER = """
import sys
from zbench import DecisionStore
store = DecisionStore(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.set_rating(f"{sys.argv[2]}_{i}", 1 + i % 5)
"""


def test_hostile_two_processes_writing_one_run_lose_nothing(tmp_path):
    n = 60
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), who, str(n)], env=env) for who in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert len(DecisionStore(tmp_path).load().ratings) == 2 * n


def test_hostile_torn_history_line_swallows_nothing(tmp_path, targets):
    save_file(diffusers_keys(factors(targets, seed=1)), str(tmp_path / "r_1.safetensors"))
    save_file(diffusers_keys(factors(targets, seed=2)), str(tmp_path / "r_2.safetensors"))
    cks = scan_run(tmp_path)
    store = DecisionStore(tmp_path)
    store.mark_release(cks[0], who="ana")
    with store.history_path.open("a") as f:
        f.write('{"checkpoint": "r_2.safeten')  # a crash in the middle of an append
    store.mark_release(cks[1], who="ana")
    assert [r["checkpoint"] for r in store.history()] == ["r_1.safetensors", "r_2.safetensors"]


def test_hostile_file_replaced_with_same_size_and_mtime_is_caught(tmp_path, targets):
    path = tmp_path / "r_1.safetensors"
    save_file(diffusers_keys(factors(targets, seed=1)), str(path))
    (ck,) = scan_run(tmp_path)
    seen, stat = ck.hash, path.stat()
    save_file(diffusers_keys(factors(targets, seed=9)), str(path))  # same shapes: same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert scan_run(tmp_path)[0].hash != seen  # not the digest remembered for that size and time
    with pytest.raises(DecisionError, match="changed on disk"):
        DecisionStore(tmp_path).mark_release(ck, who="ana")


def test_hostile_unwritable_run_folder_says_so(tmp_path, monkeypatch):
    import zbench.review.decision as decision

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(decision.os, "open", read_only)
    with pytest.raises(DecisionError, match=r"read-only or not yours.*nothing was changed"):
        DecisionStore(tmp_path).set_rating("x.safetensors", 4)


# -- page text --------------------------------------------------------------------------------

MARKDOWN_NAME = "**bold** ![pic](https:evil.example.png) [link](https:evil.example) :smile:_1.safetensors"


def test_hostile_page_shows_names_from_files_literally(tmp_path, tiny_model, targets, monkeypatch):
    from streamlit.testing.v1 import AppTest

    run = tmp_path / "run"
    run.mkdir()
    save_file(diffusers_keys(factors(targets, seed=1)), str(run / MARKDOWN_NAME))
    (run / MARKDOWN_NAME.replace("_1", "_2")).write_bytes(b"\0")  # an error cell that quotes the name
    config = tmp_path / "c.toml"
    config.write_text(
        f'name = "[cfg](https:evil.example)"\n[model]\npath = "{tiny_model}"\npipeline = "ZImagePipeline"\n'
        f'device = "cpu"\n[loras]\ndir = "{run}"\n[render]\nprompt = "a red circle"\nsteps = 2\n'
        "width = 32\nheight = 32\n"
    )
    monkeypatch.setenv("ZBENCH_CONFIG", str(config))
    monkeypatch.setenv("ZBENCH_CACHE_DIR", str(tmp_path / "cache"))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120).run()
    assert not at.exception
    kinds = ("markdown", "caption", "error", "info", "subheader", "success")
    shown = [e.value for kind in kinds for e in getattr(at, kind)]
    text = "\n".join(shown)
    assert "evil" in text  # the names are on the page...
    assert "](" not in text and "![" not in text and ":smile:" not in text  # ...and nothing in them is Markdown
    assert r"\[cfg\]\(https\:evil\.example\)" in text
    # The grid component gets the names as data and draws them as text (DOM textContent), never as markup.
    grid = next(e for e in at.get("bidi_component") if e.proto.component_name == "zbench.grid")
    names = [c["name"] for c in json.loads(grid.proto.json)["columns"]]
    assert MARKDOWN_NAME in names and MARKDOWN_NAME.replace("_1", "_2") in names
    js = (Path(__file__).resolve().parent.parent / "zbench" / "review" / "web" / "grid.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js


# -- smaller ----------------------------------------------------------------------------------


def test_hostile_tilde_folders_are_expanded(tmp_path, monkeypatch, targets):
    from zbench.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "runs").mkdir()
    save_file(diffusers_keys(factors(targets, seed=1)), str(tmp_path / "runs" / "t_1.safetensors"))
    assert scan_run("~/runs")[0].name == "t_1.safetensors"
    assert DecisionStore("~/runs").run_dir == tmp_path / "runs"
    monkeypatch.chdir(tmp_path)
    args = ["grid", "--loras", "~/runs", "--out", "~/sheets", "--steps", "1", "--width", "32", "--height", "32"]
    assert main(args) == 0
    assert (tmp_path / "sheets" / "manifest.json").is_file() and not (tmp_path / "~").exists()


def test_hostile_weight_metrics_never_raise_for_one_file(tmp_path, targets, monkeypatch):
    import safetensors

    from zbench import weight_metrics
    from zbench.review import metrics

    for e in (1, 2, 3):
        save_file(diffusers_keys(factors(targets, seed=10 + e)), str(tmp_path / f"w_{e}.safetensors"))
    run = scan_run(tmp_path)
    real = metrics.load_file

    def refuses_the_second(path, *args, **kwargs):  # a file that changed on disk after the scan
        if path.endswith("w_2.safetensors"):
            raise safetensors.SafetensorError("invalid offset for tensor")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(metrics, "load_file", refuses_the_second)
    table = weight_metrics(run)
    assert table["w_2.safetensors"] == {"delta_norm": None, "weight_change": None}
    assert table["w_1.safetensors"]["delta_norm"] > 0 and table["w_3.safetensors"]["delta_norm"] > 0


def test_hostile_config_switch_keeps_one_pipeline(tiny_config):
    import dataclasses

    from zbench import get_swapper

    first = get_base(tiny_config)
    get_swapper(first)  # the swapper lives on the base: no registry keeps the old pipeline
    gone = weakref.ref(first)
    del first
    get_base(dataclasses.replace(tiny_config, vae_tiling=True))  # another config: the old base is released
    assert gone() is None


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares its size and holds no pixels (what a decompression bomb starts with)."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_hostile_decompression_bomb_in_the_image_cache_is_a_miss(tmp_path, base, targets):
    save_file(diffusers_keys(factors(targets, seed=1)), str(tmp_path / "c_1.safetensors"))
    (ck,) = scan_run(tmp_path)
    cache = ImageCache(tmp_path / "cache")
    key = cell_key(base.fingerprint, ck.hash, prompt=PROMPT, negative="", seed=SEED, scale=1.0, steps=2,
                   guidance=0.0, width=32, height=32)  # fmt: skip
    path = cache._path(key)
    path.parent.mkdir(parents=True)
    path.write_bytes(_png_header(30000, 30000))  # 900 Mpx declared in 57 bytes: Pillow refuses to decode it
    _, cells = plan_grid([ck], prompts=[PROMPT], seeds=[SEED], include_base=False)
    (result,) = render_cells(base, cells, SETTINGS, cache=cache)
    assert result.status == "ok" and result.image.size == (32, 32) and result.swap_path != "cache"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('[render]\nsteps = "8"', r"render\.steps should be a whole number"),
        ("[render]\nsteps = true", r"render\.steps should be a whole number"),
        ('[render]\nguidance = "none"', r"render\.guidance should be a number"),
        ("[model]\nvae_tiling = 1", r"model\.vae_tiling should be true or false"),
        ("[loras]\ndir = 3", r"loras\.dir should be text"),
        ("[render]\nwidth = 0", r"render\.width: should be a multiple of 16 from 16 to 4096"),
    ],
)
def test_hostile_config_values_of_the_wrong_type(tmp_path, setting, message):
    path = tmp_path / "c.toml"
    section, line = setting.split("\n")
    body = f'[model]\npath = "m"\n{line}\n' if section == "[model]" else f'[model]\npath = "m"\n{section}\n{line}\n'
    path.write_text(body)
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: {message}"):
        load_config(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "steps: should be from 1 to 200"),
        (["--scale", "nan"], "LoRA scale"),
        (["--width", "100"], "16"),
    ],
)
def test_hostile_grid_arguments_are_refused_before_loading(args, message, capsys):
    from zbench.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["grid", "--out", "x", *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_hostile_grid_out_at_a_file(tmp_path, capsys):
    from zbench.cli import main

    (tmp_path / "taken").write_text("x")
    assert main(["grid", "--out", str(tmp_path / "taken")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_hostile_missing_model_is_said_not_raised(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\npath = "nowhere"\n')
    with pytest.raises(BaseModelError, match="not found"):
        get_base(load_config(path))
