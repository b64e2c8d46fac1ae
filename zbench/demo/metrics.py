"""The demo's own measures: whether a render follows its scene prompt, and rank correlation for the report.

Adherence needs prompts of the demo grammar ("a red circle on a blue background"); it is None
for any other prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from .shapes import parse_prompt, read_scene

__all__ = ["adherence", "scene_score", "spearman"]


def adherence(image: Image.Image, prompt: str) -> dict[str, bool] | None:
    """Whether an image shows what a demo-grammar prompt asks for: shape color, shape, background.

    Returns:
        {"color": ..., "shape": ..., "background": ..., "all": ...} as booleans, or None when
        the prompt is not of the form "a {color} {shape} on a {color} background".
    """
    want = parse_prompt(prompt)
    if want is None:
        return None
    got = read_scene(image)
    if got is None:
        return {"color": False, "shape": False, "background": False, "all": False}
    result = {
        "color": got.color == want.color,
        "shape": got.shape == want.shape,
        "background": got.background == want.background,
    }
    result["all"] = all(result.values())
    return result


def scene_score(image: Image.Image, prompt: str) -> float | None:
    """The demo's scene judge as a zbench scorer: the share of the prompt's shape color, shape and background
    that the render shows (0, 1/3, 2/3 or 1); None for a prompt outside the demo grammar.

    ``configs/demo.toml`` registers it under ``[signals] scorers``, the way a trainer registers a face-identity
    or aesthetic model of their own.
    """
    result = adherence(image, prompt)
    if result is None:
        return None
    return (result["color"] + result["shape"] + result["background"]) / 3


scene_score.zbench_label = "scene"
scene_score.zbench_good = "high"
scene_score.zbench_means = "the demo's judge: share of the prompt's color, shape and background the render shows"


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""

    def ranks(values):
        order = np.argsort(values, kind="stable")
        r = np.empty(len(values))
        r[order] = np.arange(len(values), dtype=float)
        v = np.asarray(values, dtype=float)
        for value in np.unique(v):  # ties share their mean rank
            r[v == value] = r[v == value].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])
