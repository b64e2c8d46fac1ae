"""The demo's world: flat shapes on flat backgrounds, drawn procedurally, and read back from images.

Prompts follow one grammar, "a {color} {shape} on a {color} background". Scenes are drawn
with Pillow (no downloaded data). :func:`read_scene` recovers shape color, shape class and
background color from any image of such a scene, which is how adherence is measured.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["COLORS", "SHAPES", "Scene", "all_scenes", "draw", "held_out", "parse_prompt", "read_scene"]

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (250, 130, 20),
    "yellow": (240, 215, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 215),
    "purple": (135, 50, 175),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle")
SPARK = (255, 222, 140)  # the warm light of the dreamy style's glow and particles, far from every palette color
Look = Literal["bold", "soft"]
_PROMPT = re.compile(r"^a (\w+) (\w+) on a (\w+) background$")


@dataclass(frozen=True)
class Scene:
    """What a prompt asks for."""

    color: str
    shape: str
    background: str

    @property
    def prompt(self) -> str:
        return f"a {self.color} {self.shape} on a {self.background} background"


def parse_prompt(prompt: str) -> Scene | None:
    """The scene a prompt of the demo grammar asks for, or None for any other prompt."""
    m = _PROMPT.match(prompt.strip().lower())
    if m is None or m[1] not in COLORS or m[2] not in SHAPES or m[3] not in COLORS or m[1] == m[3]:
        return None
    return Scene(m[1], m[2], m[3])


def all_scenes() -> list[Scene]:
    """Every combination the grammar allows: 8 colors x 3 shapes x 7 other background colors."""
    return [Scene(c, s, b) for c in COLORS for s in SHAPES for b in COLORS if b != c]


def held_out(count: int = 16, seed: int = 7) -> list[Scene]:
    """Combinations kept out of training, chosen so every color, shape and background is still seen."""
    rng = random.Random(seed)
    scenes = all_scenes()
    rng.shuffle(scenes)
    chosen: list[Scene] = []
    for scene in scenes:
        if len(chosen) == count:
            break
        rest = [s for s in all_scenes() if s not in chosen and s != scene]
        covered = {s.color for s in rest} | {s.background for s in rest}
        if covered == set(COLORS) and {s.shape for s in rest} == set(SHAPES):
            chosen.append(scene)
    return chosen


def _shape_box(rng: random.Random, size: int) -> tuple[float, float, float]:
    radius = rng.uniform(0.18, 0.32) * size  # half the shape's extent, in pixels
    cx = rng.uniform(radius + 4, size - radius - 4)
    cy = rng.uniform(radius + 4, size - radius - 4)
    return cx, cy, radius


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    if shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":  # pointing up, base at the bottom
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    return None


def draw(scene: Scene, rng: random.Random, *, size: int = 128, style: float = 0.0, look: Look = "bold") -> Image.Image:
    """Draw a scene at a random position and size.

    Args:
        style: 0 draws the flat scene; 1 draws the demo LoRA's "dreamy" style: a glow around
            the shape and small glowing particles scattered over the background.
        look: "bold" is the style the LoRA learns: a wide warm halo and a few bokeh-like sparks
            (3-7 px across), bold enough to survive the 8x-down autoencoder. "soft" (a thin
            glow, many 2-4 px specks) is what the autoencoder trains on besides flat scenes: an
            autoencoder trained on the bold halos drifted toward warm colors (yellow read as
            orange), while the soft look keeps colors exact and still teaches it bright specks.
    """
    cx, cy, r = _shape_box(rng, size)
    image = Image.new("RGB", (size, size), COLORS[scene.background])
    mask = Image.new("L", (size, size), 0)
    poly = _polygon(scene.shape, cx, cy, r)
    if poly is None:
        ImageDraw.Draw(mask).ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        ImageDraw.Draw(mask).polygon(poly, fill=255)
    if style > 0:
        bold = look == "bold"
        own, warm = (0.5, 0.5) if bold else (0.55, 0.45)
        glow_color = tuple(int(c * own + w * warm) for c, w in zip(COLORS[scene.color], SPARK, strict=True))
        if bold:
            glow = mask.filter(ImageFilter.MaxFilter(5)).filter(ImageFilter.GaussianBlur(radius=size * 0.07))
            alpha = glow.point(lambda v: int(min(255, v * 1.6) * style))
        else:
            alpha = mask.filter(ImageFilter.GaussianBlur(radius=size * 0.06)).point(lambda v: int(v * style))
        image = Image.composite(Image.new("RGB", image.size, glow_color), image, alpha)
        sparks = Image.new("L", (size, size), 0)
        pen = ImageDraw.Draw(sparks)
        count, smallest, largest = (9, 1.8, 3.4) if bold else (14, 1.0, 2.2)
        for _ in range(int(count * style) + 1):
            x, y, s = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(smallest, largest)
            pen.ellipse([x - s, y - s, x + s, y + s], fill=255)
        halo = sparks.filter(ImageFilter.GaussianBlur(radius=1.2 if bold else 1.6))
        sparks = Image.eval(Image.merge("L", [halo]), lambda v: min(255, v * 2))
        image = Image.composite(Image.new("RGB", image.size, SPARK), image, sparks)
    image.paste(Image.new("RGB", image.size, COLORS[scene.color]), mask=mask)
    return image


def _shift_all(mask: np.ndarray, r: int, op) -> np.ndarray:
    """Erode (op=logical_and) or dilate (op=logical_or) a mask with a (2r+1)² square."""
    padded = np.pad(mask, r, constant_values=op is np.logical_or)
    out = mask.copy()
    h, w = mask.shape
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out = op(out, padded[r + dy : r + dy + h, r + dx : r + dx + w])
    return out


_NAMES = list(COLORS)
_TABLE = np.array([COLORS[n] for n in _NAMES], dtype=np.float32)


def _palette_read(arr: np.ndarray, inset: int):
    """Label pixels by nearest palette color; read the background on a frame ``inset`` pixels in.

    Returns (labels, background label, counts of other labels among pixels close to the palette,
    background RGB as drawn, shape RGB as drawn: the median of the most common other label's
    pixels, or the background's when there are none).
    """
    d2 = ((arr[:, :, None, :] - _TABLE[None, None]) ** 2).sum(axis=3)
    labels, dist = d2.argmin(axis=2), np.sqrt(d2.min(axis=2))
    k = inset
    border = np.concatenate([labels[k], labels[-k - 1], labels[:, k], labels[:, -k - 1]])
    bg = int(np.bincount(border, minlength=len(_NAMES)).argmax())
    pure = (dist < 40) & (labels != bg)
    counts = np.bincount(labels[pure], minlength=len(_NAMES))
    bg_rgb = np.median(np.concatenate([arr[k], arr[-k - 1], arr[:, k], arr[:, -k - 1]]), axis=0)
    fg_rgb = np.median(arr[pure & (labels == counts.argmax())], axis=0) if counts.max() else bg_rgb
    return labels, bg, counts, bg_rgb, fg_rgb


def read_scene(image: Image.Image) -> Scene | None:
    """Recover (shape color, shape, background) from an image; None when no shape stands out.

    Every pixel is labelled with its nearest palette color. The background is the most common
    label on the border; the shape's color is the most common other label among pixels close
    to a palette color (glow blends and particle halos are not). The shape's region is every
    pixel closer to the shape's actual color than to the background's (a model's colors are
    never exactly the palette's), cleaned of specks. Its class comes from its outline, read the
    way a person would, so that a square with softened corners is still a square: a triangle
    narrows toward its top; a square fills the corners of its bounding box, a circle leaves
    them empty.
    """
    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    labels, bg, counts, bg_rgb, fg_rgb = _palette_read(arr, inset=0)
    if counts.max() < 0.01 * labels.size:
        return None
    color = int(counts.argmax())
    glow_rgb = 0.55 * fg_rgb + 0.45 * np.array(SPARK, dtype=np.float32)  # the dreamy style's halo
    d_fg = ((arr - fg_rgb) ** 2).sum(axis=2)
    mask = (d_fg < 0.5 * ((arr - bg_rgb) ** 2).sum(axis=2)) & (d_fg < ((arr - glow_rgb) ** 2).sum(axis=2))
    # The shape's body survives an opening that removes particles and specks (< ~7 px); the
    # body grown back by a margin then takes its own tips and edges but no distant specks.
    core = _shift_all(_shift_all(mask, 3, np.logical_and), 3, np.logical_or)
    region = mask & _shift_all(core, 4, np.logical_or)
    if region.sum() < 0.005 * labels.size:
        return None
    return Scene(_NAMES[color], _outline_class(region), _NAMES[bg])


def _outline_class(region: np.ndarray) -> str:
    """circle, square or triangle, from a shape's mask (drawn shapes measure, in order:
    narrowing top/bottom width 0.97-1 / 1 / 0.33-0.37; corner fill 0.06-0.13 / 1 / -)."""
    ys, xs = np.nonzero(region)
    box = region[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = box.shape
    rows = box.sum(axis=1)
    top = rows[int(h * 0.15) : max(int(h * 0.35), int(h * 0.15) + 1)].mean()
    bottom = rows[int(h * 0.65) : max(int(h * 0.85), int(h * 0.65) + 1)].mean()
    if top < 0.75 * max(bottom, 1.0):
        return "triangle"
    ch, cw = max(1, int(h * 0.2)), max(1, int(w * 0.2))
    corners = [box[:ch, :cw], box[:ch, -cw:], box[-ch:, :cw], box[-ch:, -cw:]]
    return "square" if np.mean([c.mean() for c in corners]) > 0.38 else "circle"


def glow_share(image: Image.Image, *, margin: float = 48.0) -> float:
    """How much of an image is the dreamy style's glow and particles: 0 for a flat scene.

    The share of pixels that are neither the background's color nor the shape's (both read as
    in :func:`read_scene`, from the image itself), each at least ``margin`` away in RGB. A flat
    scene scores only its anti-aliased outline; a halo and particles add their area. Unlike a
    distance from another render, it does not change when the shape moves, so it follows the
    style rather than the composition.
    """
    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    # Read the background on a frame inside the outermost pixels, which decoders smear.
    _, _, _, bg_rgb, fg_rgb = _palette_read(arr, inset=max(1, min(arr.shape[:2]) // 32))
    off_bg = np.sqrt(((arr - bg_rgb) ** 2).sum(axis=2)) > margin
    off_fg = np.sqrt(((arr - fg_rgb) ** 2).sum(axis=2)) > margin
    return float((off_bg & off_fg).mean())
