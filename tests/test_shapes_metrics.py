"""The demo's scene grammar, drawing and reading back, and the generic metrics."""

import itertools
import random

import numpy as np
import pytest
from PIL import Image

from zbench.demo.metrics import adherence, spearman
from zbench.demo.shapes import COLORS, SHAPES, Scene, all_scenes, draw, glow_share, held_out, parse_prompt, read_scene
from zbench.review.metrics import image_distance


def test_grammar():
    assert parse_prompt("a red circle on a blue background") == Scene("red", "circle", "blue")
    assert parse_prompt("A Red Circle on a Blue Background ") == Scene("red", "circle", "blue")
    assert parse_prompt("a red circle on a red background") is None
    assert parse_prompt("a portrait of a knight") is None
    assert len(all_scenes()) == 8 * 3 * 7


def test_held_out_keeps_every_word_in_training():
    hold = set(held_out())
    train = [s for s in all_scenes() if s not in hold]
    assert len(hold) == 16
    assert {s.color for s in train} == set(COLORS) == {s.background for s in train}
    assert {s.shape for s in train} == set(SHAPES)


@pytest.mark.parametrize("style", [0.0, 1.0])
def test_read_scene_recovers_drawn_scenes(style):
    rng = random.Random(1)
    scenes = all_scenes()
    right = sum(read_scene(draw(s, rng, style=style)) == s for s in scenes)
    assert right / len(scenes) >= (1.0 if style == 0 else 0.97)


def test_glow_share_follows_the_style_not_the_composition():
    scenes = random.Random(2).sample(all_scenes(), 24)

    def share(style, seed):
        return np.mean([glow_share(draw(s, random.Random(seed + i), style=style)) for i, s in enumerate(scenes)])

    levels = [share(style, 0) for style in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert levels[0] < 0.01 and all(a < b for a, b in itertools.pairwise(levels)), levels
    # Other positions and sizes of the same scenes: the same style reads the same.
    assert abs(share(1.0, 100) - levels[-1]) < 0.3 * levels[-1]
    assert share(0.0, 100) < 0.01


def test_adherence_scores_each_attribute():
    image = draw(Scene("red", "square", "blue"), random.Random(0))
    assert adherence(image, "a red square on a blue background")["all"]
    wrong = adherence(image, "a red circle on a green background")
    assert wrong == {"color": True, "shape": False, "background": False, "all": False}
    assert adherence(image, "a dog") is None
    assert adherence(Image.new("RGB", (64, 64), (40, 80, 215)), "a red square on a blue background")["all"] is False


def test_image_distance_and_spearman():
    black, white = Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8), (255, 255, 255))
    assert image_distance(black, white) == 1.0 and image_distance(black, black) == 0.0
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [5, 5, 5]) == 0.0
    assert np.isfinite(spearman([1, 2, 3, 4], [1, 3, 2, 2]))
