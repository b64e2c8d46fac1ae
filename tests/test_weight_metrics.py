"""LoRA weight metrics (delta norm, change between checkpoints) against dense B @ A and real fused weights."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from zbench.demo.toy import random_lora, save_lora
from zbench.review.metrics import lora_delta_norm, lora_factors, lora_weight_change

# (module, in_features, out_features): shapes of a Z-Image block at toy size, with unequal sides.
MODULES = [
    ("layers.0.attention.to_q", 16, 16),
    ("layers.0.attention.to_out.0", 16, 12),
    ("layers.1.feed_forward.w1", 16, 40),
    ("noise_refiner.0.feed_forward.w2", 40, 16),
]


def lora_state(*, rank: int, seed: int, modules=MODULES) -> dict[str, torch.Tensor]:
    """Random LoRA tensors in diffusers layout without prefix, as ``random_lora`` makes them."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, fan_in, fan_out in modules:
        state[f"{name}.lora_A.weight"] = torch.randn(rank, fan_in, generator=gen)
        state[f"{name}.lora_B.weight"] = torch.randn(fan_out, rank, generator=gen)
    return state


def dense(state: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """ΔW = scale · B @ A per module, formed explicitly in float64."""
    out = {}
    for key, a in state.items():
        if key.endswith(".lora_A.weight"):
            module = key.removesuffix(".lora_A.weight")
            b = state[f"{module}.lora_B.weight"]
            out[module.replace(".", "_")] = scale * b.double() @ a.double()
    return out


def dense_norm(deltas: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float((d**2).sum()) for d in deltas.values()))


def dense_change(x: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> float:
    zero = torch.zeros(())
    return math.sqrt(sum(float(((y.get(m, zero) - x.get(m, zero)) ** 2).sum()) for m in x.keys() | y.keys()))


# (format, alpha written as .alpha tensors, metadata, the scale diffusers applies)
FORMATS = [
    ("diffusers", None, None, 1.0),
    ("diffusers", None, {"transformer.r": 4, "transformer.lora_alpha": 8}, 2.0),
    ("diffusers", None, {"transformer.r": 4, "transformer.lora_alpha": 8, "transformer.use_rslora": True}, 4.0),
    ("kohya", None, None, 1.0),
    ("kohya", 2.0, None, 0.5),
    ("ai-toolkit", 16.0, None, 4.0),
    ("ai-toolkit", None, None, 1.0),
    ("bare", None, None, 1.0),
]


def _meta(adapter):
    return {"lora_adapter_metadata": json.dumps(adapter)} if adapter else None


@pytest.mark.parametrize("fmt, alpha, adapter, scale", FORMATS)
def test_delta_norm_matches_dense_product(tmp_path, fmt, alpha, adapter, scale):
    state = lora_state(rank=4, seed=1)
    path = save_lora(tmp_path / "a.safetensors", state, fmt=fmt, alpha=alpha, metadata=_meta(adapter))
    factors = lora_factors(path)
    assert sorted(factors) == sorted(m.replace(".", "_") for m, _, _ in MODULES)
    assert {s for _, _, s in factors.values()} == {scale}
    assert lora_delta_norm(path) == pytest.approx(dense_norm(dense(state, scale)), rel=1e-6)


def test_same_weights_in_every_format_give_one_norm(tmp_path):
    state = lora_state(rank=4, seed=2)
    norms = {
        fmt: lora_delta_norm(save_lora(tmp_path / f"{fmt}.safetensors", state, fmt=fmt, alpha=4.0))
        for fmt in ("diffusers", "kohya", "ai-toolkit", "bare")
    }
    assert max(norms.values()) == pytest.approx(min(norms.values()), rel=1e-12), norms
    a = save_lora(tmp_path / "x.safetensors", state, fmt="kohya", alpha=4.0)
    b = save_lora(tmp_path / "y.safetensors", state, fmt="diffusers")
    assert lora_weight_change(a, b) == pytest.approx(0.0, abs=1e-9 * norms["kohya"])


def test_change_from_itself_is_zero(tmp_path):
    path = save_lora(tmp_path / "a.safetensors", lora_state(rank=4, seed=3), fmt="kohya", alpha=2.0)
    assert lora_weight_change(path, path) == 0.0


@pytest.mark.parametrize(
    "a, b",
    [
        (("diffusers", 4, None), ("diffusers", 4, None)),
        (("kohya", 4, 2.0), ("kohya", 8, 3.0)),  # rank and alpha grow mid-run
        (("ai-toolkit", 2, None), ("kohya", 6, 1.5)),  # different trainers, ranks and scales
    ],
)
def test_change_matches_dense_difference(tmp_path, a, b):
    (fmt_a, rank_a, alpha_a), (fmt_b, rank_b, alpha_b) = a, b
    state_a, state_b = lora_state(rank=rank_a, seed=4), lora_state(rank=rank_b, seed=5)
    path_a = save_lora(tmp_path / "a.safetensors", state_a, fmt=fmt_a, alpha=alpha_a)
    path_b = save_lora(tmp_path / "b.safetensors", state_b, fmt=fmt_b, alpha=alpha_b)
    want = dense_change(dense(state_a, (alpha_a or rank_a) / rank_a), dense(state_b, (alpha_b or rank_b) / rank_b))
    assert lora_weight_change(path_a, path_b) == pytest.approx(want, rel=1e-6)
    assert lora_weight_change(path_b, path_a) == pytest.approx(want, rel=1e-6)


def test_change_of_nearby_checkpoints_is_accurate(tmp_path):
    """Consecutive epochs differ by a little: the Gram formula must not lose that to cancellation."""
    state = lora_state(rank=4, seed=6)
    nudged = {k: v + 1e-3 * torch.randn(v.shape, generator=torch.Generator().manual_seed(7)) for k, v in state.items()}
    path_a = save_lora(tmp_path / "a.safetensors", state)
    path_b = save_lora(tmp_path / "b.safetensors", nudged)
    want = dense_change(dense(state, 1.0), dense(nudged, 1.0))
    assert lora_weight_change(path_a, path_b) == pytest.approx(want, rel=1e-6)


def test_modules_in_one_file_only_count_fully(tmp_path):
    state = lora_state(rank=4, seed=8)
    fewer = lora_state(rank=4, seed=8, modules=MODULES[:2])
    path_all = save_lora(tmp_path / "all.safetensors", state)
    path_few = save_lora(tmp_path / "few.safetensors", fewer)
    want = dense_norm({m: d for m, d in dense(state, 1.0).items() if not m.startswith(("layers_1", "noise"))})
    assert lora_weight_change(path_all, path_few) == pytest.approx(
        dense_change(dense(state, 1.0), dense(fewer, 1.0)), rel=1e-6
    )
    assert lora_weight_change(path_all, path_few) ** 2 == pytest.approx(lora_delta_norm(path_all) ** 2 - want**2)


def test_refuses_files_that_are_not_plain_lora(tmp_path):
    path = tmp_path / "lokr.safetensors"
    from safetensors.torch import save_file

    save_file({"diffusion_model.layers.0.attention.to_q.dora_scale": torch.ones(2, 1),
               "diffusion_model.layers.0.attention.to_q.lora_A.weight": torch.ones(2, 2)}, str(path))  # fmt: skip
    with pytest.raises(ValueError, match="DoRA"):
        lora_delta_norm(path)
    save_file({"layers.0.attention.to_q.lora_A.weight": torch.ones(2, 4)}, str(path))
    with pytest.raises(ValueError, match="only one of its two"):
        lora_delta_norm(path)
    a = save_lora(tmp_path / "a.safetensors", lora_state(rank=2, seed=0, modules=[("layers.0.x", 4, 4)]))
    b = save_lora(tmp_path / "b.safetensors", lora_state(rank=2, seed=0, modules=[("layers.0.x", 4, 8)]))
    with pytest.raises(ValueError, match="different base models"):
        lora_weight_change(a, b)


@pytest.mark.parametrize(
    "fmt, alpha, adapter",
    [
        ("kohya", 2.0, None),
        ("diffusers", None, {"transformer.r": 4, "transformer.lora_alpha": 12}),
    ],
)
def test_norm_matches_diffusers_fused_weights(tiny_model, tmp_path, fmt, alpha, adapter):
    """Against reality: what diffusers loads and fuses into the tiny Z-Image transformer."""
    from diffusers import ZImagePipeline

    pipe = ZImagePipeline.from_pretrained(str(tiny_model), local_files_only=True)
    state = random_lora(pipe.transformer, rank=4, seed=9)
    if adapter:  # as diffusers saves it: the whole LoraConfig, target modules included
        adapter = {**adapter, "transformer.target_modules": sorted({k.split(".lora_")[0] for k in state})}
    path = save_lora(tmp_path / "lora.safetensors", state, fmt=fmt, alpha=alpha, metadata=_meta(adapter))
    before = {n: p.detach().double().clone() for n, p in pipe.transformer.named_parameters()}
    pipe.load_lora_weights(str(path))
    pipe.fuse_lora()
    after = {n.replace(".base_layer", ""): p.detach().double() for n, p in pipe.transformer.named_parameters()}
    changed = {n: after[n] - w for n, w in before.items() if not torch.equal(after[n], w)}
    assert len(changed) == len(state) // 2  # every adapted module, nothing else
    assert lora_delta_norm(path) == pytest.approx(dense_norm(changed), rel=1e-4)


def test_run_metrics_read_each_file_once_and_match_direct_calls(tmp_path, make_lora, monkeypatch):
    from zbench import scan_run
    from zbench.review import grid

    for epoch in (1, 2, 3):
        make_lora(tmp_path / f"r_{epoch}.safetensors", rank=2 + epoch, seed=epoch)
    run = scan_run(tmp_path)
    reads = []
    monkeypatch.setattr(grid, "lora_factors", lambda path: reads.append(path) or lora_factors(path))
    monkeypatch.setattr(grid, "_WEIGHTS", {})
    metrics = grid.weight_metrics(run)
    assert sorted(reads) == sorted(c.path for c in run)
    for prev, ck in itertools.pairwise(run):
        assert metrics[ck.name]["delta_norm"] == pytest.approx(lora_delta_norm(ck.path))
        assert metrics[ck.name]["weight_change"] == pytest.approx(lora_weight_change(prev.path, ck.path))
    assert metrics[run[0].name]["weight_change"] is None


def _lycoris(kind: str, seed: int, *, whole: bool, conv: bool = False) -> dict[str, torch.Tensor]:
    """LoKr / LoHa tensors for two modules (a Linear 12x8 and, with ``conv``, a 3x3 conv 4->6), seeded."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    out = {}
    for name, (o, i, k) in {
        "lycoris_layers_0_x": (12, 8, 1),
        **({"lycoris_layers_0_c": (6, 4, 3)} if conv else {}),
    }.items():
        if kind == "lokr":
            out[f"{name}.lokr_w1"] = r(2, 2)
            if whole:
                out[f"{name}.lokr_w2"] = r(o // 2, i // 2, k, k) if k > 1 else r(o // 2, i // 2)
            else:
                out[f"{name}.lokr_w2_a"], out[f"{name}.lokr_w2_b"] = r(o // 2, 2), r(2, i // 2 * k * k)
        else:
            for h in ("1", "2"):
                out[f"{name}.hada_w{h}_a"], out[f"{name}.hada_w{h}_b"] = r(o, 3), r(3, i * k * k)
        out[f"{name}.alpha"] = torch.tensor(1.0)
    return out


@pytest.mark.parametrize(("kind", "whole"), [("lokr", True), ("lokr", False), ("loha", False)])
def test_lokr_and_loha_norms_and_changes_match_their_dense_weights(tmp_path, kind, whole):
    """Kronecker and Hadamard identities give what forming ΔW (as zbench applies it, in float32) gives."""
    from safetensors.torch import save_file

    from zbench.engine.lycoris import delta_shape, delta_weight, group_modules

    def dense_of(state):
        groups, _ = group_modules(state)
        return {k: delta_weight(s.tensors, s.kind, delta_shape(s)).double().reshape(delta_shape(s)[0], -1) * s.scale
                for k, s in groups.items()}  # fmt: skip

    a, b = _lycoris(kind, 1, whole=whole, conv=True), _lycoris(kind, 2, whole=whole, conv=True)
    pa, pb = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file(a, str(pa))
    save_file(b, str(pb))
    assert lora_delta_norm(pa) == pytest.approx(dense_norm(dense_of(a)), rel=1e-6)
    assert lora_weight_change(pa, pb) == pytest.approx(dense_change(dense_of(a), dense_of(b)), rel=1e-6)
    assert lora_weight_change(pa, pa) == pytest.approx(0.0, abs=1e-9)
