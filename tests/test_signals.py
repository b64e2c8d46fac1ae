"""Signals on images with known answers, the cache they live in, and scorers of the user's own, CLIP and datasets."""

from __future__ import annotations

import random
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from zbench import Cell, CellResult, Checkpoint, ScorerError, SignalCache, Signals, compute_signals, ssim_distance
from zbench.demo.shapes import Scene, draw
from zbench.review.scorers import DatasetIndex, clip_scorer, load_scorer, quality_score, thumbnail_feature

RED = Scene("red", "circle", "blue")
GREEN = Scene("green", "square", "yellow")


def picture(scene: Scene = RED, seed: int = 0, size: int = 64) -> Image.Image:
    return draw(scene, random.Random(seed), size=size)


def ck(epoch: int) -> Checkpoint:
    return Checkpoint(name=f"run_{epoch}.safetensors", path=f"/nowhere/run_{epoch}.safetensors", epoch=epoch)


def results(*columns: tuple[Checkpoint | None, dict[int, Image.Image]], prompt: str = "p") -> list[CellResult]:
    """A grid's results: a column per checkpoint (None = base), a row per seed."""
    out = []
    for c, (checkpoint, by_seed) in enumerate(columns):
        for r, (seed, image) in enumerate(by_seed.items()):
            out.append(CellResult(Cell(r, c, checkpoint, prompt, seed, 1.0), image, "ok"))
    return out


def test_ssim_distance_is_zero_for_the_same_image_and_grows_with_change():
    a = picture()
    assert ssim_distance(a, a.copy()) == 0.0
    slight = Image.fromarray(np.clip(np.asarray(a, dtype=int) + 3, 0, 255).astype(np.uint8))
    other = picture(GREEN, seed=1)
    assert 0 < ssim_distance(a, slight) < 0.05 < ssim_distance(a, other)
    assert ssim_distance(a, other) == pytest.approx(ssim_distance(other, a), abs=1e-6)
    assert ssim_distance(a, a.resize((128, 128))) < 0.1  # another size is compared at the first one's


def test_signals_have_their_known_answers():
    base, ck1, ck2, ck3 = None, ck(1), ck(2), ck(3)
    same = picture()
    grid = results(
        (base, {1: picture(RED, 1), 2: picture(RED, 2)}),
        (ck1, {1: picture(RED, 1), 2: picture(RED, 2)}),  # draws exactly what the base draws
        (ck2, {1: same, 2: same.copy()}),  # the same picture whatever the seed: collapsed
        (ck3, {1: picture(GREEN, 1), 2: picture(GREEN, 2)}),
    )
    report = compute_signals(grid, signals=Signals(quality=False))
    values = report.values
    assert report.names == ["base", ck1.name, ck2.name, ck3.name]
    assert values[ck1.name]["drift"] == 0.0  # base vs base: no drift
    assert values[ck1.name]["change"] is None  # the first checkpoint has no previous one
    assert values[ck2.name]["diversity"] == 0.0  # identical images for both seeds
    assert values[ck1.name]["diversity"] == values["base"]["diversity"] > 0.1
    assert values[ck3.name]["drift"] > values[ck2.name]["drift"] > 0
    assert values[ck3.name]["change"] > 0.1 and not report.problems
    tones = report.tones("diversity")
    assert tones[ck2.name] == 0.0 and tones[ck1.name] == 1.0  # higher is better: the collapse is worst
    assert report.tones("change")[ck3.name] == 0.0  # lower is better: the largest change is worst


def test_what_cannot_be_measured_is_said():
    grid = results((ck(1), {7: picture()}), (ck(2), {7: picture(GREEN)}))
    report = compute_signals(grid, signals=Signals(quality=False))
    assert report.values[ck(1).name]["drift"] is None and report.values[ck(1).name]["diversity"] is None
    assert any("base column" in p for p in report.problems) and any("two or more seeds" in p for p in report.problems)
    grid[1] = CellResult(grid[1].cell, None, "error", "broken file")  # error cells are skipped, not fatal
    assert compute_signals(grid, signals=Signals(quality=False)).images == 1


def test_quality_is_brisque_from_the_package_model():
    clean = np.asarray(picture(size=128), dtype=float)
    rng = np.random.default_rng(0)
    light = Image.fromarray(np.clip(clean + rng.normal(0, 5, clean.shape), 0, 255).astype(np.uint8))
    heavy = Image.fromarray(np.clip(clean + rng.normal(0, 30, clean.shape), 0, 255).astype(np.uint8))
    assert 0 < quality_score(light) < quality_score(heavy) < 150  # lower is better: heavy noise scores worse


def test_signal_cache_keeps_values_across_processes_and_never_a_failure(tmp_path):
    cache = SignalCache(tmp_path / "signals.sqlite")
    assert cache.value("a", lambda: 0.5) == 0.5
    assert cache.value("none", lambda: None) is None
    again = SignalCache(tmp_path / "signals.sqlite")  # another process, after a restart
    assert again.get("a") == (True, 0.5) and again.get("none") == (True, None)
    assert again.value("a", lambda: pytest.fail("computed twice")) == 0.5

    # A cache file that is not a database, or a folder that cannot be made: signals are kept in memory.
    (tmp_path / "garbage.sqlite").write_bytes(bytes(range(256)) * 20)
    (tmp_path / "a-file").write_text("not a folder")
    for path in (tmp_path / "garbage.sqlite", tmp_path / "a-file" / "signals.sqlite"):
        broken = SignalCache(path)
        assert broken.value("k", lambda: 1.5) == 1.5 and broken.get("k") == (True, 1.5)

    grid = results((None, {1: picture(RED, 1)}), (ck(1), {1: picture(GREEN, 1)}))
    calls = []

    def flaky(image, prompt):
        calls.append(prompt)
        raise RuntimeError("model not loaded")

    module = type(sys)("zb_flaky")
    module.score = flaky
    sys.modules["zb_flaky"] = module
    try:
        signals = Signals(quality=False, scorers=("zb_flaky:score",))
        report = compute_signals(grid, signals=signals, cache=again)
        assert report.values[ck(1).name]["scorer:zb_flaky:score"] is None
        assert any("model not loaded" in p for p in report.problems)
        compute_signals(grid, signals=signals, cache=again)
        assert len(calls) == 4  # a failure is not cached: a fixed scorer is asked again
    finally:
        del sys.modules["zb_flaky"]


def test_scorers_of_your_own(tmp_path, monkeypatch):
    (tmp_path / "myscores.py").write_text(
        textwrap.dedent("""
        import numpy as np

        def redness(image, prompt):
            return float(np.asarray(image)[..., 0].mean() / 255)
        redness.zbench_label = "red"
        redness.zbench_means = "how red the render is"

        def wordy(image, prompt):
            return None if "skip" in prompt else "high"
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cool = Scene("green", "square", "blue")
    grid = results((None, {1: picture(cool, 1)}), (ck(1), {1: picture(Scene("red", "circle", "red"), 1)}))
    signals = Signals(quality=False, scorers=("myscores:redness", "myscores:wordy"))
    report = compute_signals(grid, signals=signals)
    red = report.signal("scorer:myscores:redness")
    assert (red.label, red.good, red.means) == ("red", "high", "how red the render is")
    assert report.values[ck(1).name]["scorer:myscores:redness"] > report.values["base"]["scorer:myscores:redness"]
    assert report.values[ck(1).name]["scorer:myscores:wordy"] is None  # a text is not a number: blank, said
    assert any("returned str" in p for p in report.problems)
    for spec, message in [
        ("no_colon", "module:function"),
        ("not_a_module_zb:f", "cannot be imported"),
        ("myscores:missing", "has no function"),
    ]:
        with pytest.raises(ScorerError, match=message):
            load_scorer(spec)
    report = compute_signals(grid, signals=Signals(quality=False, scorers=("not_a_module_zb:f",)))
    assert any("cannot be imported" in p for p in report.problems) and report.values[ck(1).name]["drift"] > 0


def test_a_scorers_number_may_be_numpy_or_a_one_element_tensor_and_anything_else_is_said_once(tmp_path):
    import torch

    from zbench.review.signals import as_number

    for value, number in [(2, 2.0), (0.5, 0.5), (np.float32(0.25), 0.25), (np.int64(3), 3.0), (np.array([1.5]), 1.5),
                          (np.array(2.5), 2.5), (torch.tensor([0.75]), 0.75), (torch.tensor(1.0), 1.0)]:  # fmt: skip
        assert as_number(value) == pytest.approx(number)
    for value in [True, np.bool_(True), "0.5", np.array([1.0, 2.0]), torch.ones(2), [0.5], None]:
        assert as_number(value) is None
    (tmp_path / "various.py").write_text(
        textwrap.dedent("""
        import math
        import numpy as np
        import torch
        calls = []
        def np_scalar(image, prompt): return np.float32(0.25)
        def tensor(image, prompt): return torch.tensor([0.5])
        def nan(image, prompt):
            calls.append(prompt)
            return math.nan
        def boom(image, prompt): raise RuntimeError("weights missing")
        def nothing(image, prompt): return None
        """)
    )
    grid = results((None, {1: picture(RED, 1)}), (ck(1), {1: picture(GREEN, 1)}), (ck(2), {1: picture(RED, 2)}))
    specs = ("various:np_scalar", "various:tensor", "various:nan", "various:boom", "various:nothing", "various.py:boom")
    cache = SignalCache(tmp_path / "signals.sqlite")
    report = compute_signals(grid, signals=Signals(quality=False, scorers=specs, root=tmp_path), cache=cache)
    assert report.values[ck(2).name]["scorer:various:np_scalar"] == 0.25
    assert report.values[ck(2).name]["scorer:various:tensor"] == 0.5
    # A scorer with no value anywhere is left out of the strip; each problem is said once, not once per image.
    shown = [s.key for s in report.signals]
    assert "scorer:various:np_scalar" in shown and "scorer:various:nan" not in shown
    assert "scorer:various:nothing" not in shown and "scorer:various:boom" not in shown
    said = "\n".join(report.problems)
    assert said.count("weights missing") == 2 and "boom failed (RuntimeError: weights missing) on every column" in said
    assert "various.py:boom" in said  # two scorers labelled alike: the second by its full name
    assert "nan returned nan on every column" in said and "nothing gave no value (None) for any image" in said
    import various

    compute_signals(grid, signals=Signals(quality=False, scorers=("various:nan",), root=tmp_path), cache=cache)
    assert len(various.calls) == 6  # a NaN is not cached: the scorer is asked again once fixed
    # Some columns only: which ones.
    (tmp_path / "some.py").write_text("def score(image, prompt):\n    return 1 / (image.getpixel((0, 0))[0] > 200)\n")
    report = compute_signals(grid, signals=Signals(quality=False, scorers=("some.py:score",), root=tmp_path))
    problem = next(p for p in report.problems if "ZeroDivisionError" in p)
    assert "2 of 3 columns (base, run_2.safetensors)" in problem  # run_1 is drawn on yellow: it has its value
    with pytest.raises(ScorerError, match="no file"):
        load_scorer("missing.py:score", tmp_path)


def test_the_demo_registers_its_scene_judge_as_a_scorer():
    judge = load_scorer("zbench.demo.metrics:scene_score")
    scene = Scene("red", "circle", "blue")
    assert judge(draw(scene, random.Random(0), size=128), scene.prompt) == 1.0
    assert judge(draw(Scene("red", "square", "blue"), random.Random(0), size=128), scene.prompt) < 1.0
    assert judge(picture(), "a portrait of a knight") is None


def test_likeness_to_the_training_images(tmp_path):
    data = tmp_path / "dataset" / "10_subject"
    data.mkdir(parents=True)
    picture(RED, 3).save(data / "a.png")
    picture(GREEN, 4).save(data / "b.jpg")
    (data / "broken.png").write_bytes(b"not an image")
    (data / "caption.txt").write_text("a red circle")
    index = DatasetIndex(tmp_path / "dataset", thumbnail_feature, kind="thumbnail")
    assert index.count == 2 and len(index.skipped) == 1
    assert index.likeness(picture(RED, 3)) == pytest.approx(1.0)  # a copy of a training image
    assert index.likeness(picture(Scene("white", "triangle", "black"), 9)) < 0.9
    with pytest.raises(ScorerError, match="not a folder"):
        DatasetIndex(tmp_path / "missing", thumbnail_feature, kind="thumbnail")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScorerError, match="no readable image"):
        DatasetIndex(tmp_path / "empty", thumbnail_feature, kind="thumbnail")
    grid = results((None, {1: picture(GREEN, 1)}), (ck(1), {1: picture(RED, 3)}))
    report = compute_signals(grid, signals=Signals(quality=False, dataset=tmp_path / "dataset"))
    (key,) = [s.key for s in report.signals if s.key.startswith("likeness")]
    assert report.values[ck(1).name][key] == pytest.approx(1.0)
    assert any("1 training images were skipped (broken.png" in p for p in report.problems)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny randomly initialised CLIP with a byte-level tokenizer, saved like a downloaded model: it exercises
    zbench's CLIP code, not the quality of its scores."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    folder = tmp_path_factory.mktemp("clip")
    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"])}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 77,
                     "eos_token_id": vocab["<|endoftext|>"], "bos_token_id": vocab["<|startoftext|>"]},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )  # fmt: skip
    CLIPModel(config).save_pretrained(folder)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(folder)
    return folder


def test_clip_adherence_from_a_local_model_and_never_a_download(tiny_clip, tmp_path):
    clip = clip_scorer(str(tiny_clip))
    score = clip.score(picture(), "a red circle on a blue background")
    assert 0.0 <= score <= 100.0 and np.isfinite(score)
    assert clip.score(picture(), "a red circle on a blue background") == score  # deterministic
    grid = results((None, {1: picture(GREEN, 1)}), (ck(1), {1: picture(RED, 1)}), prompt="a red circle")
    report = compute_signals(grid, signals=Signals(quality=False, clip=str(tiny_clip), dataset=None))
    assert report.signal("adherence").version == str(tiny_clip)
    assert report.values[ck(1).name]["adherence"] is not None
    with pytest.raises(ScorerError, match="never downloads"):
        clip_scorer(str(tmp_path / "no-clip-here"))
    with pytest.raises(ScorerError, match="never downloads"):
        clip_scorer("zbench-tests/not-in-the-local-cache")
    report = compute_signals(grid, signals=Signals(quality=False, clip=str(tmp_path / "no-clip-here")))
    assert any("never downloads" in p for p in report.problems) and report.signal("adherence") is None


def test_without_the_quality_package_the_rest_is_measured(monkeypatch):
    from zbench.review import scorers

    monkeypatch.setattr(scorers, "_brisque", lambda: "ModuleNotFoundError: No module named 'cv2'")
    grid = results((None, {1: picture(GREEN, 1)}), (ck(1), {1: picture(RED, 1)}))
    report = compute_signals(grid, signals=Signals(quality=True))
    assert report.signal("quality") is None and report.values[ck(1).name]["drift"] > 0
    assert [p for p in report.problems if "brisque" in p] == [
        "the quality signal needs the brisque package (ModuleNotFoundError: No module named 'cv2'): "
        "pip install -r requirements.txt"
    ]
