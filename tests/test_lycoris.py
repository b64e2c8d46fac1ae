"""LoKr and LoHa checkpoints: written by the LyCORIS library itself, rendered by zbench, compared with the library.

The reference for every format is the library's own modules loaded from the saved file
(``create_lycoris_from_weights``) and applied by their forward on a fresh pipeline; that applies alpha/dim once
(lycoris-lora 4.1.3's ``get_diff_weight``/``merge_to`` apply it twice, so they are no reference).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from zbench import AdapterSwapper, LoraError, RenderSettings, render_image, scan_run
from zbench.engine.lycoris import delta_weight, group_modules
from zbench.engine.lycoris_layers import DeltaLayer

lycoris = pytest.importorskip("lycoris")
logging.getLogger("lycoris").setLevel(logging.ERROR)

SETTINGS = RenderSettings(steps=3, guidance=0.0, width=64, height=64)
PROMPT, SEED = "a red circle on a blue background", 7

# (algo, create_lycoris options): LoKr with both halves whole (alpha ignored), with the large half factorised,
# with both factorised, and LoHa at alpha/dim = 0.5 and 2.
FORMATS = {
    "lokr-whole": ("lokr", {"linear_dim": 4, "linear_alpha": 2, "factor": 4}),
    "lokr-w2-factorised": ("lokr", {"linear_dim": 2, "linear_alpha": 1, "factor": 2}),
    "lokr-both-factorised": ("lokr", {"linear_dim": 1, "linear_alpha": 4, "factor": -1, "decompose_both": True}),
    "loha-half": ("loha", {"linear_dim": 4, "linear_alpha": 2}),
    "loha-double": ("loha", {"linear_dim": 2, "linear_alpha": 4}),
}


def pixels(image):
    return np.asarray(image).astype(np.int16)


def write_lycoris(module: torch.nn.Module, path, algo: str, *, seed: int, **options):
    """Train nothing: create the library's network on ``module``, give it random factors, save it as the library does.

    Returns the network. Side effects: wraps ``module``'s layers with the library's (use a throwaway pipeline).
    """
    net = lycoris.create_lycoris(module, 1.0, algo=algo, **options)
    net.apply_to()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "alpha" not in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    net.save_weights(str(path), torch.float32, {})
    return net


def reference(fresh_base, path=None, *, multiplier=1.0):
    """The library's modules loaded from ``path`` and applied by their forward on a new pipeline."""
    ref = fresh_base()
    if path is not None:
        net, weights = lycoris.create_lycoris_from_weights(multiplier, str(path), ref.pipe.transformer)
        net.apply_to()
        net.load_state_dict(weights, strict=False)
    return pixels(render_image(ref, PROMPT, SEED, SETTINGS))


@pytest.fixture(scope="module")
def lyco_run(tmp_path_factory, tiny_config):
    """A run with one checkpoint per format (epochs 10, 20, ...), each written by the library; written once for
    the module (tests only read it)."""
    from zbench import load_base

    run = tmp_path_factory.mktemp("lyco") / "lyco"
    for i, (algo, options) in enumerate(FORMATS.values()):
        transformer = load_base(tiny_config).pipe.transformer
        write_lycoris(transformer, run / f"lyco_{10 * (i + 1)}.safetensors", algo, seed=i, **options)
    return run


def test_every_format_renders_as_the_library_applies_it(lyco_run, fresh_base):
    cks = scan_run(lyco_run)
    assert [c.adapter for c in cks] == [FORMATS[k][0] for k in FORMATS] and not any(c.error for c in cks)
    assert all(c.format.startswith("lycoris+") for c in cks)
    base = fresh_base()
    swapper = AdapterSwapper(base)
    plain = pixels(render_image(base, PROMPT, SEED, SETTINGS))
    for ck, name in zip(cks, FORMATS, strict=True):
        swapper.activate(ck, target_rank=max(c.rank for c in cks))
        mine = pixels(render_image(base, PROMPT, SEED, SETTINGS))
        assert np.abs(mine - reference(fresh_base, ck.path)).max() <= 1, name
        assert np.abs(mine - plain).max() > 8, f"{name} changed nothing: the test would not see a wrong scale"
    # Half strength is the library's multiplier 0.5.
    swapper.activate(cks[3], scale=0.5)
    half = pixels(render_image(base, PROMPT, SEED, SETTINGS))
    assert np.abs(half - reference(fresh_base, cks[3].path, multiplier=0.5)).max() <= 1


def test_lora_lokr_loha_and_base_in_any_order_leave_no_trace(lyco_run, fresh_base, make_lora, tmp_path):
    lora = make_lora(tmp_path / "lora" / "plain_10.safetensors", rank=4, seed=3)
    lyco = scan_run(lyco_run)
    (plain,) = scan_run(lora.parent)
    base = fresh_base()
    swapper = AdapterSwapper(base)
    expected = {None: reference(fresh_base)}
    ref = fresh_base()
    ref.pipe.load_lora_weights(str(lora), adapter_name="ref")
    expected[plain.path] = pixels(render_image(ref, PROMPT, SEED, SETTINGS))
    for ck in (lyco[0], lyco[3]):
        expected[ck.path] = reference(fresh_base, ck.path)
    order = [lyco[0], None, lyco[3], plain, lyco[0], lyco[3], None, plain, lyco[3], lyco[0]]
    for ck in order:
        swapper.activate(ck)
        got = pixels(render_image(base, PROMPT, SEED, SETTINGS))
        assert np.abs(got - expected[ck.path if ck else None]).max() <= 1, (ck and ck.name, swapper.last_path)
    # Same layout, lower rank: a copy into the live layers; a revisit: the cached copy.
    swapper.activate(lyco[3])
    swapper.activate(lyco[4])
    assert swapper.last_path == "direct"
    swapper.activate(lyco[3])
    assert swapper.last_path == "fast"
    assert np.abs(pixels(render_image(base, PROMPT, SEED, SETTINGS)) - expected[lyco[3].path]).max() <= 1


def test_ranks_differ_within_a_run(tmp_path, fresh_base):
    """A rank-2 and a rank-4 LoKr of one run: layers padded to the larger rank render both exactly."""
    run = tmp_path / "ranks"
    write_lycoris(fresh_base().pipe.transformer, run / "r_10.safetensors", "lokr", seed=1, linear_dim=2,
                  linear_alpha=1, factor=2)  # fmt: skip
    write_lycoris(fresh_base().pipe.transformer, run / "r_20.safetensors", "lokr", seed=2, linear_dim=3,
                  linear_alpha=1, factor=2)  # fmt: skip
    cks = scan_run(run)
    assert [c.rank for c in cks] == [2, 3] and cks[0].factor == 2
    base = fresh_base()
    swapper = AdapterSwapper(base)
    for ck in (cks[0], cks[1], cks[0]):
        swapper.activate(ck, target_rank=3)
        got = pixels(render_image(base, PROMPT, SEED, SETTINGS))
        assert np.abs(got - reference(fresh_base, ck.path)).max() <= 1
    assert swapper.injected_rank == 3 and swapper.last_path == "fast"


def _edit(src, dst, change):
    sd = load_file(str(src))
    change(sd)
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(dst))
    return dst


def _first(sd, suffix):
    return next(k for k in sorted(sd) if k.endswith(suffix))


def _rename_block(sd):
    """Keys of an SDXL UNet block where the Z-Image layer was: a LoKr for another base."""
    for k in [k for k in sd if "layers_0_" in k]:
        sd[k.replace("layers_0_", "input_blocks_4_")] = sd.pop(k)


BAD = {
    "wrong factor shape": (
        lambda sd: sd.__setitem__(_first(sd, ".lokr_w1"), torch.ones(3, 3)),
        "factors make",
    ),
    "missing factor": (lambda sd: sd.pop(_first(sd, ".lokr_w2_b")), "lacks lokr_w2_b"),
    "NaN": (lambda sd: sd[_first(sd, ".lokr_w2_b")].fill_(float("nan")), "NaN or infinite"),
    "another base": (_rename_block, "lacks"),
    "text encoder the base lacks": (
        lambda sd: sd.update({"lora_te2_encoder_layers_0_mlp_fc1.lokr_w1": torch.ones(2, 2)}),
        "adapts text_encoder_2",
    ),
    "DoRA": (lambda sd: sd.update({_first(sd, ".lokr_w1").replace("lokr_w1", "dora_scale"): torch.ones(4)}), "DoRA"),
    "LoRA keys mixed in": (
        lambda sd: sd.update({"lycoris_layers_0_attention_to_q.lora_down.weight": torch.ones(2, 32)}),
        "mixes",
    ),
    "negative alpha": (lambda sd: sd[_first(sd, ".alpha")].fill_(-1.0), "alpha"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_lycoris_files_are_error_cells_and_never_poison_the_pipeline(case, lyco_run, fresh_base, tmp_path):
    change, words = BAD[case]
    good = scan_run(lyco_run)
    run = tmp_path / "bad"
    _edit(good[1].path, run / "bad_10.safetensors", change)
    bad = scan_run(run)[0]
    base = fresh_base()
    swapper = AdapterSwapper(base)
    swapper.activate(good[3])
    with pytest.raises(LoraError) as err:
        if bad.error:
            raise LoraError(bad.error)
        swapper.activate(bad)
    assert words in str(err.value) and bad.name in str(err.value), str(err.value)
    swapper.activate(good[1])
    got = pixels(render_image(base, PROMPT, SEED, SETTINGS))
    assert np.abs(got - reference(fresh_base, good[1].path)).max() <= 1


@pytest.mark.parametrize("algo", ["lokr", "loha"])
@pytest.mark.parametrize("tucker", [False, True])
def test_conv_layers_match_the_library(tmp_path, algo, tucker):
    """Conv2d LoKr/LoHa (SDXL UNets), with and without the Tucker core: zbench's layer equals the library's."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(16, 8, 3, padding=1)
    )
    x = torch.randn(2, 8, 12, 12)
    path = tmp_path / "conv.safetensors"
    options = {"linear_dim": 2, "linear_alpha": 1, "conv_dim": 2, "conv_alpha": 1, "use_tucker": tucker, "factor": 2}
    lyco = lycoris.create_lycoris(net, 1.0, algo=algo, **options)
    lyco.apply_to()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in lyco.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        expected = net(x)  # the library's modules, as trained
    lyco.save_weights(str(path), torch.float32, {})
    lyco.restore()
    groups, other = group_modules(load_file(str(path)))
    assert not other and all(s.tucker == tucker for s in groups.values())
    with torch.no_grad():
        for i in (0, 2):
            spec = groups[f"lycoris_{i}"]
            layer = DeltaLayer(net[i], spec.kind, {n: t.clone() for n, t in spec.tensors.items()})
            layer.scale = spec.scale
            assert delta_weight(spec.tensors, spec.kind, net[i].weight.shape).shape == net[i].weight.shape
            net[i] = layer
        got = net(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_trainer_layouts_name_the_same_modules(lyco_run, fresh_base, tmp_path):
    """ai-toolkit (diffusion_model.<dotted>), musubi-tuner/kohya (lora_unet_<underscored>) and ai-toolkit's Flux
    style (transformer.<dotted>) spell the library's keys differently; each renders the same LoKr."""
    source = scan_run(lyco_run)[1]
    base = fresh_base()
    dotted = {n.replace(".", "_"): n for n, _ in base.pipe.transformer.named_modules()}
    expected = reference(fresh_base, source.path)
    spellings = {
        "ai-toolkit": lambda m: f"diffusion_model.{dotted[m]}",
        "kohya": lambda m: f"lora_unet_{m}",
        "diffusers": lambda m: f"transformer.{dotted[m]}",
    }
    swapper = AdapterSwapper(base)
    for layout, spell in spellings.items():
        sd = load_file(str(source.path))
        renamed = {}
        for key, value in sd.items():
            module, _, tensor = key.removeprefix("lycoris_").rpartition(".")
            renamed[f"{spell(module)}.{tensor}"] = value
        path = tmp_path / layout / "lokr_10.safetensors"
        path.parent.mkdir()
        save_file(renamed, str(path))
        (ck,) = scan_run(path.parent)
        assert ck.error is None and ck.format == f"{layout}+lokr", (ck.format, ck.error)
        swapper.activate(ck)
        assert np.abs(pixels(render_image(base, PROMPT, SEED, SETTINGS)) - expected).max() <= 1, layout


@pytest.mark.parametrize("kind", ["lokr", "loha"])
def test_peft_folders_render_as_peft_applies_them(tmp_path, fresh_base, kind):
    """PEFT's LoKrConfig/LoHaConfig adapters (adapter_model.safetensors + adapter_config.json): scaled by the config's
    alpha / r, per-module patterns included, as peft's own layers apply them."""
    from peft import LoHaConfig, LoKrConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    from zbench.demo.toy import lora_targets

    ref = fresh_base()
    targets = sorted(lora_targets(ref.pipe.transformer))
    config = (LoKrConfig if kind == "lokr" else LoHaConfig)(
        r=2, alpha=1, target_modules=targets, alpha_pattern={targets[0]: 6}, init_weights=False
    )
    inject_adapter_in_model(config, ref.pipe.transformer)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in ref.pipe.transformer.named_parameters():
            if ".lokr_" in name or ".hada_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    expected = pixels(render_image(ref, PROMPT, SEED, SETTINGS))
    folder = tmp_path / "peft" / "checkpoint-10"
    folder.mkdir(parents=True)
    save_file(get_peft_model_state_dict(ref.pipe.transformer), str(folder / "adapter_model.safetensors"))
    config.save_pretrained(str(folder))
    (ck,) = scan_run(folder.parent)
    assert ck.error is None and ck.adapter == kind and ck.step == 10
    base = fresh_base()
    plain = pixels(render_image(base, PROMPT, SEED, SETTINGS))
    AdapterSwapper(base).activate(ck)
    got = pixels(render_image(base, PROMPT, SEED, SETTINGS))
    assert np.abs(got - expected).max() <= 1 and np.abs(got - plain).max() > 8


@pytest.mark.parametrize(("algo", "on_output"), [("lora", True), ("lora", False), ("lokr", True), ("loha", True)])
def test_dora_renders_as_the_library_applies_it(tmp_path, fresh_base, algo, on_output):
    """Weight-decomposed (DoRA) LoRA, LoKr and LoHa: the magnitudes rescale each output row (or input column) of
    W + ΔW, at strength 1 and 0.5 (the library blends the rescale factor, not ΔW). The reference is the library's
    network that wrote the file, as trained (its loader cannot read back a per-input-column magnitude)."""
    run = tmp_path / "dora"
    writer = fresh_base()
    net = write_lycoris(writer.pipe.transformer, run / "dora_10.safetensors", algo, seed=4, linear_dim=2,
                        linear_alpha=1, factor=2, dora_wd=True, wd_on_output=on_output)  # fmt: skip
    (ck,) = scan_run(run)
    assert ck.error is None and "dora" in ck.format and "(DoRA)" in ck.adapter_text
    base = fresh_base()
    swapper = AdapterSwapper(base)
    plain = pixels(render_image(base, PROMPT, SEED, SETTINGS))
    for strength in (1.0, 0.5):
        for module in net.loras:
            module.multiplier = strength
        expected = pixels(render_image(writer, PROMPT, SEED, SETTINGS))
        swapper.activate(ck, scale=strength)
        got = pixels(render_image(base, PROMPT, SEED, SETTINGS))
        assert np.abs(got - expected).max() <= 1, strength
        if on_output:  # the library's modules loaded from the file agree
            assert np.abs(got - reference(fresh_base, ck.path, multiplier=strength)).max() <= 1, strength
        assert np.abs(got - plain).max() > 8
    swapper.activate(None)
    assert np.abs(pixels(render_image(base, PROMPT, SEED, SETTINGS)) - plain).max() == 0


def test_a_dora_magnitude_of_the_wrong_length_is_an_error_cell(tmp_path, fresh_base):
    run = tmp_path / "dora"
    write_lycoris(fresh_base().pipe.transformer, run / "src.safetensors", "lora", seed=4, linear_dim=2,
                  linear_alpha=1, dora_wd=True)  # fmt: skip
    bad = _edit(run / "src.safetensors", tmp_path / "bad" / "bad_10.safetensors",
                lambda sd: sd.__setitem__(_first(sd, ".dora_scale"), torch.ones(3, 1)))  # fmt: skip
    (ck,) = scan_run(bad.parent)
    with pytest.raises(LoraError, match=r"DoRA magnitude \(dora_scale\) has shape \(3, 1\)"):
        AdapterSwapper(fresh_base()).activate(ck)


def _peft_dora(fresh_base, folder, seed):
    """A PEFT DoRA LoRA (lora_magnitude_vector, use_dora in diffusers' adapter metadata) and its render by peft."""
    from diffusers import ZImagePipeline
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    from zbench.demo.toy import lora_targets

    ref = fresh_base()
    targets = sorted(lora_targets(ref.pipe.transformer))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, use_dora=True, init_lora_weights=False)
    inject_adapter_in_model(config, ref.pipe.transformer)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in ref.pipe.transformer.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if "magnitude" in name else 0.0))
    ZImagePipeline.save_lora_weights(
        str(folder),
        transformer_lora_layers=get_peft_model_state_dict(ref.pipe.transformer),
        weight_name=f"peftdora_{seed}0.safetensors",
        transformer_lora_adapter_metadata={"r": 4, "lora_alpha": 8, "use_dora": True, "target_modules": targets},
    )
    return pixels(render_image(ref, PROMPT, SEED, SETTINGS))


def test_peft_dora_swaps_carry_their_magnitudes(tmp_path, fresh_base):
    """PEFT's DoRA (diffusers loads it): every swap, cached or not, brings that checkpoint's magnitudes too."""
    run = tmp_path / "peftdora"
    expected = [_peft_dora(fresh_base, run, seed) for seed in (1, 2)]
    cks = scan_run(run)
    assert all(c.error is None for c in cks)
    base = fresh_base()
    swapper = AdapterSwapper(base)
    for i in (0, 1, 0, 1):
        swapper.activate(cks[i])
        got = pixels(render_image(base, PROMPT, SEED, SETTINGS))
        assert np.abs(got - expected[i]).max() <= 1, (i, swapper.last_path)


def _with_text_encoder(fresh_base, path, seed, te_algo="lora"):
    """A checkpoint adapting the denoiser (LoKr) and the text encoder (``te_algo``), written by the library as
    kohya's LyCORIS wrapper names them (``lora_unet_``, ``lora_te_``), and its render by the library as trained."""
    writer = fresh_base()
    parts = {}
    for root, algo, prefix in ((writer.pipe.transformer, "lokr", "lora_unet_"), (writer.pipe.text_encoder, te_algo,
                               "lora_te_")):  # fmt: skip
        net = write_lycoris(root, path, algo, seed=seed, linear_dim=2, linear_alpha=1, factor=2)
        parts |= {prefix + k.removeprefix("lycoris_"): v for k, v in load_file(str(path)).items()}
    save_file(parts, str(path))
    assert net is not None
    return pixels(render_image(writer, PROMPT, SEED, SETTINGS))


def test_text_encoder_parts_re_encode_prompts_only_when_they_differ(tmp_path, fresh_base):
    run = tmp_path / "te"
    expected = {
        "te_10.safetensors": _with_text_encoder(fresh_base, run / "te_10.safetensors", 1),
        "te_20.safetensors": _with_text_encoder(fresh_base, run / "te_20.safetensors", 2, te_algo="loha"),
    }
    cks = scan_run(run)
    assert [c.error for c in cks] == [None, None]
    base = fresh_base()
    plain = pixels(render_image(base, PROMPT, SEED, SETTINGS))
    encodes = []
    base.pipe.text_encoder.register_forward_hook(lambda *a: encodes.append(1))
    swapper = AdapterSwapper(base)
    for ck in (cks[0], cks[1], None, cks[0], cks[1]):
        swapper.activate(ck)
        got = pixels(render_image(base, PROMPT, SEED, SETTINGS))
        want = plain if ck is None else expected[ck.name]
        assert np.abs(got - want).max() <= 1, ck and ck.name
    # One encoding per text-encoder adapter (the base's was cached before the hook); revisits reuse them.
    assert len(encodes) == 2, len(encodes)
    swapper.activate(cks[0], scale=0.5)  # a new strength changes the encoder's output: encoded again
    render_image(base, PROMPT, SEED, SETTINGS)
    assert len(encodes) == 3
    # diffusers' spelling of the same file (text_encoder.<dotted>, transformer.<dotted>) renders the same.
    dotted = {f"text_encoder.{n}": n for n, _ in base.pipe.text_encoder.named_modules()}
    dotted |= {f"transformer.{n}": n for n, _ in base.pipe.transformer.named_modules()}
    spelled = {k.replace("_", "."): k for k in dotted}  # "text.encoder.layers.0..." -> its real name
    renamed = {}
    for key, value in load_file(str(cks[0].path)).items():
        module, _, tensor = key.partition(".")  # kohya's module names hold no dots
        component = "text_encoder." if module.startswith("lora_te_") else "transformer."
        bare = module.removeprefix("lora_te_").removeprefix("lora_unet_")
        renamed[f"{spelled[(component + bare).replace('_', '.')]}.{tensor}"] = value
    diffusers = tmp_path / "diffusers" / "te_10.safetensors"
    diffusers.parent.mkdir()
    save_file(renamed, str(diffusers))
    (ck,) = scan_run(diffusers.parent)
    assert ck.parts == ("denoiser", "text_encoder"), ck.parts
    swapper.activate(ck)
    assert np.abs(pixels(render_image(base, PROMPT, SEED, SETTINGS)) - expected["te_10.safetensors"]).max() <= 1


SDXL = RenderSettings(steps=2, guidance=5.0, width=64, height=64)


def _sdxl():
    from zbench import BenchConfig
    from zbench.demo.toy import tiny_sdxl_pipeline
    from zbench.engine.pipeline import wrap_pipeline

    return wrap_pipeline(tiny_sdxl_pipeline(), BenchConfig(name="tiny-sdxl", repo_id="tiny-sdxl"),
                         torch.device("cpu"), torch.float32)  # fmt: skip


def _to_sgm(key: str, per_block: int = 1) -> str:
    """A diffusers UNet key of the tiny SDXL as kohya names it (its SGM UNet: input_blocks_4_1_...), for the test."""
    import re

    inner = (("_conv1", "_in_layers_2"), ("_conv2", "_out_layers_3"), ("_time_emb_proj", "_emb_layers_1"),
             ("_conv_shortcut", "_skip_connection"))  # fmt: skip
    top = {"conv_in": "input_blocks_0_0", "conv_out": "out_2", "time_embedding_linear_1": "time_embed_0",
           "time_embedding_linear_2": "time_embed_2", "add_embedding_linear_1": "label_emb_0_0",
           "add_embedding_linear_2": "label_emb_0_2"}  # fmt: skip
    module, dot, tail = key.removeprefix("lora_unet_").partition(".")
    for old, new in top.items():
        if module == old:
            return f"lora_unet_{new}{dot}{tail}"
    m = re.match(r"(down|up)_blocks_(\d+)_(resnets|attentions|downsamplers|upsamplers)_(\d+)_(.*)", module)
    if m:
        side, b, part, i, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
        if part in ("downsamplers", "upsamplers"):
            n, sub, rest = b * (per_block + 1) + per_block + (side == "down"), (0 if side == "down" else 2), (
                "op" if side == "down" else rest)  # fmt: skip
        else:
            n, sub = b * (per_block + 1) + i + (side == "down"), (0 if part == "resnets" else 1)
        module = f"{'input' if side == 'down' else 'output'}_blocks_{n}_{sub}_{rest}"
    m = re.match(r"mid_block_(resnets|attentions)_(\d+)_(.*)", module)
    if m:
        module = f"middle_block_{1 if m.group(1) == 'attentions' else 2 * int(m.group(2))}_{m.group(3)}"
    for new, old in inner:
        module = module.replace(new, old)
    return f"lora_unet_{module}{dot}{tail}"


@pytest.mark.parametrize(("algo", "tucker"), [("lokr", True), ("loha", False)])
def test_sdxl_conv_layers_and_both_text_encoders(tmp_path, algo, tucker):
    """Where these formats are typical: an SDXL UNet's convs and attention (LoKr with the Tucker core, LoHa)
    plus text encoder 1 (LoRA) and 2 (LoHa), kohya's prefixes; equal to the library's networks as trained. The
    same file with kohya's SGM block names (its SDXL trainer's UNet) renders the same."""
    writer = _sdxl()
    path = tmp_path / "sdxl" / "sdxl_10.safetensors"
    options = {"linear_dim": 2, "linear_alpha": 1, "conv_dim": 2, "conv_alpha": 1, "factor": 4, "use_tucker": tucker}
    parts = {}
    for root, kind, prefix in ((writer.pipe.unet, algo, "lora_unet_"), (writer.pipe.text_encoder, "lora", "lora_te1_"),
                               (writer.pipe.text_encoder_2, "loha", "lora_te2_")):  # fmt: skip
        write_lycoris(root, path, kind, seed=len(parts), **options)
        parts |= {prefix + k.removeprefix("lycoris_"): v for k, v in load_file(str(path)).items()}
    save_file(parts, str(path))
    assert any(".lokr_t2" in k or ".hada_" in k for k in parts) and any("conv" in k for k in parts)
    expected = pixels(render_image(writer, PROMPT, SEED, SDXL))
    (ck,) = scan_run(path.parent)
    assert ck.error is None and ck.parts == ("denoiser", "text_encoder", "text_encoder_2"), (ck.error, ck.parts)
    base = _sdxl()
    plain = pixels(render_image(base, PROMPT, SEED, SDXL))
    swapper = AdapterSwapper(base)
    swapper.activate(ck)
    got = pixels(render_image(base, PROMPT, SEED, SDXL))
    assert np.abs(got - expected).max() <= 1 and np.abs(got - plain).max() > 8
    swapper.activate(None)
    assert np.abs(pixels(render_image(base, PROMPT, SEED, SDXL)) - plain).max() == 0
    sgm = tmp_path / "sgm" / "sgm_10.safetensors"
    sgm.parent.mkdir()
    save_file({_to_sgm(k) if k.startswith("lora_unet_") else k: v for k, v in parts.items()}, str(sgm))
    assert sum("input_blocks" in k or "output_blocks" in k or "middle_block" in k for k in load_file(str(sgm))) > 10
    (ck,) = scan_run(sgm.parent)
    swapper.activate(ck)
    assert np.abs(pixels(render_image(base, PROMPT, SEED, SDXL)) - expected).max() <= 1


def _flux_call(transformer, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return transformer(
            hidden_states=torch.randn(1, 16, 4, generator=gen),
            encoder_hidden_states=torch.randn(1, 8, 32, generator=gen),
            pooled_projections=torch.randn(1, 32, generator=gen),
            timestep=torch.tensor([0.5]),
            img_ids=torch.zeros(16, 3),
            txt_ids=torch.zeros(8, 3),
            return_dict=False,
        )[0]


@pytest.mark.parametrize("algo", ["lokr", "loha"])
def test_kohya_flux_names_split_fused_modules_exactly(tmp_path, algo):
    """kohya trains Flux on BFL's model, whose q, k, v (and a single block's MLP input) are one Linear; diffusers
    splits them. Each diffusers part takes its rows of the fused ΔW, as the library applies it to the fused one."""
    from diffusers import FluxPipeline, FluxTransformer2DModel

    from zbench import BenchConfig
    from zbench.engine.flux_names import flux_targets
    from zbench.engine.pipeline import Base

    def transformer():
        torch.manual_seed(0)
        return FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                      attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                      pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])  # fmt: skip

    live = transformer()
    modules = dict(live.named_modules())
    outs = {n: m.out_features for n, m in modules.items() if isinstance(m, torch.nn.Linear)}
    keys = [
        f"double_blocks_0_{p}" for p in ("img_attn_qkv", "txt_attn_qkv", "img_attn_proj", "img_mlp_0", "img_mod_lin")
    ]
    keys += ["single_blocks_0_linear1", "single_blocks_0_linear2", "final_layer_adaLN_modulation_1", "img_in"]
    # BFL's fused modules, built from the diffusers parts: the library trains on these.
    fused, parts = torch.nn.Module(), {}
    for key in keys:
        targets = flux_targets(key, outs)
        weights = [modules[n].weight for n, _ in targets]
        whole = torch.cat(weights) if len(targets) > 1 else weights[0]
        if key.startswith("final_layer"):  # diffusers keeps (scale, shift), BFL (shift, scale)
            half = whole.shape[0] // 2
            whole = torch.cat([whole[half:], whole[:half]])
        linear = torch.nn.Linear(whole.shape[1], whole.shape[0], bias=False)
        linear.weight.data.copy_(whole)
        fused.add_module(key, linear)
        parts[key] = targets
    path = tmp_path / "flux" / "flux_10.safetensors"
    net = write_lycoris(fused, path, algo, seed=3, linear_dim=2, linear_alpha=1, factor=4)
    save_file({"lora_unet_" + k.removeprefix("lycoris_"): v for k, v in load_file(str(path)).items()}, str(path))
    # The reference: the library's ΔW of each fused module (its forward's rebuild), its rows added to each part.
    reference = transformer()
    ref_modules = dict(reference.named_modules())
    with torch.no_grad():
        for module in net.loras:
            key = module.lora_name.removeprefix("lycoris_")
            delta = module.get_weight(module.shape)
            if key.startswith("final_layer"):
                half = delta.shape[0] // 2
                delta = torch.cat([delta[half:], delta[:half]])
            start = 0
            for name, _ in parts[key]:
                w = ref_modules[name].weight
                w += delta[start : start + w.shape[0]]
                start += w.shape[0]
    expected = _flux_call(reference)
    (ck,) = scan_run(path.parent)
    assert ck.error is None and ck.arch == "flux", (ck.error, ck.arch)
    pipe = FluxPipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, text_encoder_2=None,
                        tokenizer_2=None, transformer=live)  # fmt: skip
    base = Base(pipe=pipe, config=BenchConfig(name="tiny-flux", repo_id="tiny-flux"), device=torch.device("cpu"),
                dtype=torch.float32, family="flux")  # fmt: skip
    plain = _flux_call(live)
    swapper = AdapterSwapper(base)
    swapper.activate(ck)
    got = _flux_call(live)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert (got - plain).abs().max() > 1e-2
    swapper.activate(None)
    torch.testing.assert_close(_flux_call(live), plain, rtol=0, atol=0)


def test_whole_lokr_ignores_its_alpha_even_when_it_overflowed(lyco_run, fresh_base, tmp_path):
    """ai-toolkit's full-rank LoKr saves alpha 9999999999 (inf once cast to fp16); with both halves whole the
    library ignores alpha, and so does zbench: the file scans clean and renders as with any alpha."""
    source = scan_run(lyco_run)[0]  # "lokr-whole": most modules have both halves whole
    expected = reference(fresh_base, source.path)

    def overflow(sd, value):
        for key in [k for k in sd if k.endswith(".alpha")]:
            module = key.removesuffix(".alpha")
            if f"{module}.lokr_w1" in sd and f"{module}.lokr_w2" in sd:
                sd[key].fill_(value)
        assert any(v.isinf() or v > 1e9 for k, v in sd.items() if k.endswith(".alpha"))

    for value in (9999999999.0, float("inf")):
        path = _edit(source.path, tmp_path / f"a{value}" / "lokr_10.safetensors",
                     lambda sd, v=value: overflow(sd, v))  # fmt: skip
        (ck,) = scan_run(path.parent)
        assert ck.error is None, (value, ck.error)
        base = fresh_base()
        AdapterSwapper(base).activate(ck)
        assert np.abs(pixels(render_image(base, PROMPT, SEED, SETTINGS)) - expected).max() <= 1


def test_a_lycoris_grid_reads_each_next_checkpoint_ahead(lyco_run, fresh_base):
    """The grid's read-ahead works for LoKr and LoHa as for LoRA: every checkpoint read while the one before renders,
    each cell as the library renders it."""
    from zbench import plan_grid, render_cells

    run = scan_run(lyco_run)[:3]  # two LoKr layouts and a LoHa
    base = fresh_base()
    swapper = AdapterSwapper(base)
    _, cells = plan_grid(run, prompts=[PROMPT], seeds=[SEED])
    results = render_cells(base, cells, SETTINGS, swapper=swapper, target_rank=max(c.rank for c in run))
    assert swapper.prefetcher.hits == 3 and all(r.status == "ok" for r in results)
    for ck, result in zip(run, results[1:], strict=True):
        assert np.abs(pixels(result.image) - reference(fresh_base, ck.path)).max() <= 1, ck.name
