"""The image cache: keys cover every render parameter; a re-shown grid renders nothing."""

import numpy as np
import pytest
from PIL import Image

from zbench import ImageCache, RenderSettings, cell_key, plan_grid, render_cells, scan_run

PARAMS = dict(prompt="a red circle", negative="", seed=1, scale=1.0, steps=3, guidance=0.0, width=64, height=64)


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "a blue circle"},
        {"negative": "blurry"},
        {"seed": 2},
        {"scale": 0.5},
        {"steps": 4},
        {"guidance": 1.0},
        {"width": 80},
        {"height": 80},
    ],
)
def test_every_parameter_is_in_the_key(change):
    assert cell_key("base", "abc", **PARAMS) != cell_key("base", "abc", **{**PARAMS, **change})


def test_key_names_content_not_file_names():
    assert cell_key("base", "abc", **PARAMS) != cell_key("base", "abd", **PARAMS)
    assert cell_key("base", "abc", **PARAMS) != cell_key("other-base", "abc", **PARAMS)
    # the base (LoRA off) does not depend on the LoRA scale
    assert cell_key("base", None, **PARAMS) == cell_key("base", None, **{**PARAMS, "scale": 0.3})


def test_disk_entries_survive_a_new_cache_and_bad_entries_are_misses(tmp_path):
    image = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    ImageCache(tmp_path).put("k" * 64, image, parameters="a red circle")
    again = ImageCache(tmp_path)
    assert np.array_equal(np.asarray(again.get("k" * 64)), np.asarray(image))
    (tmp_path / "jj").mkdir()
    (tmp_path / "jj" / f"{'j' * 64}.png").write_bytes(b"not a png")
    assert again.get("j" * 64) is None and again.misses == 1
    assert not list(tmp_path.rglob("*.tmp"))


def test_memory_tier_is_bounded(tmp_path):
    cache = ImageCache(None, memory_mb=1)
    for i in range(20):
        cache.put(f"{i:064d}", Image.new("RGB", (256, 256), (i, 0, 0)))  # 192 KiB each
    assert cache.get(f"{0:064d}") is None and cache.get(f"{19:064d}") is not None


def test_render_cells_draws_each_image_once(base, tiny_config, tmp_path, make_lora):
    run_dir = tmp_path / "run"
    for epoch in (1, 2):
        make_lora(run_dir / f"r_{epoch}.safetensors", seed=epoch)
    run = scan_run(run_dir)
    settings = RenderSettings(steps=2, guidance=0.0, width=32, height=32)
    _, cells = plan_grid(run, prompts=["a red circle"], seeds=[3], scales=[0.5, 1.0])
    cache = ImageCache(tmp_path / "cache")
    first = render_cells(base, cells, settings, cache=cache)
    assert {r.swap_path for r in first} != {"cache"} and cache.stores == 5  # base once (scale-free) + 2 x 2
    pending = render_cells(base, cells, settings, cache=ImageCache(None), cache_only=True)
    assert {r.status for r in pending} == {"pending"}
    again = render_cells(base, cells, settings, cache=ImageCache(tmp_path / "cache"))  # a restarted server
    assert [r.swap_path for r in again] == ["cache"] * len(cells)
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    # a checkpoint replaced under the same name has another hash: drawn anew
    make_lora(run_dir / "r_2.safetensors", seed=99)
    fresh = render_cells(
        base, plan_grid(scan_run(run_dir), prompts=["a red circle"], seeds=[3])[1], settings, cache=cache
    )
    assert [r.swap_path == "cache" for r in fresh] == [True, True, False]
