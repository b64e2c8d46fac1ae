"""The shipped demo: it loads through the normal config path, follows prompts, and its LoRA style grows."""

import pytest

from zbench import RenderSettings, image_distance, load_config, plan_grid, render_cells, scan_run
from zbench.demo.build import eval_scenes
from zbench.demo.metrics import adherence
from zbench.demo.shapes import glow_share
from zbench.engine.pipeline import get_base


@pytest.fixture(scope="module")
def shipped():
    config = load_config()  # configs/demo.toml, as the app and the CLI open it
    if not config.model_path.exists():
        pytest.fail(f"the shipped demo is missing at {config.model_path}: run `python -m zbench demo build`")
    settings = RenderSettings(steps=config.steps, guidance=config.guidance, width=config.width, height=config.height)
    return config, get_base(config), settings


def test_shipped_demo_follows_prompts(shipped):
    _, base, settings = shipped
    held, seen = eval_scenes()
    _, cells = plan_grid([], prompts=[s.prompt for s in held[:8] + seen[:8]], seeds=[1])
    scores = [adherence(r.image, r.cell.prompt)["all"] for r in render_cells(base, cells, settings)]
    assert sum(scores[:8]) >= 6, f"held-out prompts drawn right: {sum(scores[:8])} of 8"
    assert sum(scores[8:]) >= 5, f"seen prompts drawn right: {sum(scores[8:])} of 8"


def test_shipped_lora_epochs_differ_from_base_and_from_each_other(shipped):
    config, base, settings = shipped
    run = scan_run(config.lora_dir)
    assert len(run) >= 8 and all(c.error is None for c in run)
    assert [c.epoch for c in run] == sorted(c.epoch for c in run)
    assert all({"ss_epoch", "ss_steps", "ss_network_dim", "ss_network_alpha"} <= set(c.metadata) for c in run)
    _, cells = plan_grid([run[0], run[len(run) // 2], run[-1]], prompts=[config.prompt], seeds=[config.seed])
    images = [r.image for r in render_cells(base, cells, settings)]
    # The first checkpoint is barely trained (learning-rate warm-up) but its adapter is applied;
    # the middle and last ones are far from base and from the first, and show the style.
    assert image_distance(images[0], images[1]) > 0.001
    assert all(image_distance(images[0], im) > 0.05 for im in images[2:])
    assert image_distance(images[1], images[3]) > 0.05
    assert glow_share(images[2]) > glow_share(images[1]) + 0.05


def test_shipped_demo_is_small():
    config = load_config()
    files = [*config.model_path.rglob("*"), *config.lora_dir.rglob("*")]
    assert sum(f.stat().st_size for f in files if f.is_file()) <= 25 * 1024 * 1024
