"""Crop-zoom: boxes in fractions, exact enlarged pixels, labelled strips, outlined regions."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zbench import Cell, CellResult
from zbench.engine.checkpoints import Checkpoint
from zbench.review.zoom import (
    BOX_COLOURS,
    PLACEHOLDER,
    ZoomBox,
    ZoomSpec,
    column_text,
    crop_zoom,
    draw_boxes,
    zoom_strip,
)

EYES = ZoomBox("eyes", 0.25, 0.25, 0.25, 0.25)  # 16..32 on a 64 px image


def noise(size=(64, 64), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def checkpoint(epoch: int) -> Checkpoint:
    name = f"jimeng_{epoch}.safetensors"
    return Checkpoint(name=name, path=Path("/run") / name, epoch=epoch, hash=f"{epoch:012x}")


def result(row: int, col: int, image: Image.Image | None, status="ok") -> CellResult:
    ck = None if col == 0 else checkpoint(col)
    return CellResult(Cell(row, col, ck, "a red circle", 1, 1.0), image, status, None if image else "it broke")


def count(image: Image.Image, colour) -> int:
    return int(np.all(np.asarray(image) == colour, axis=-1).sum())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", 0, 0, 1, 1), "should have a name"),
        (("a", -0.1, 0, 0.5, 0.5), "x should be in [0, 1), got -0.1"),
        (("a", 1.0, 0, 0.5, 0.5), "x should be in [0, 1), got 1.0"),
        (("a", 0, 1.2, 0.5, 0.5), "y should be in [0, 1), got 1.2"),
        (("a", 0, 0, 0, 0.5), "w should be > 0, got 0"),
        (("a", 0, 0, 0.5, -1), "h should be > 0, got -1"),
        (("a", 0, 0, math.nan, 0.5), "w should be > 0, got nan"),
        (("a", 0.5, 0, 0.6, 0.5), "x + w should be at most 1, got 0.5 + 0.6"),
        (("a", 0, 0.9, 0.5, 0.2), "y + h should be at most 1, got 0.9 + 0.2"),
    ],
)
def test_zoom_box_rejects_regions_outside_the_image(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ZoomBox(*args)


@pytest.mark.parametrize(
    ("box", "size", "pixels"),
    [
        (EYES, (64, 64), (16, 16, 32, 32)),
        (ZoomBox("a", 0, 0, 1, 1), (100, 50), (0, 0, 100, 50)),
        (ZoomBox("a", 0.1, 0.2, 0.3, 0.4), (100, 50), (10, 10, 40, 30)),
        (ZoomBox("tiny", 0.5, 0.5, 0.001, 0.001), (64, 64), (32, 32, 33, 33)),  # at least 1 px
        (ZoomBox("edge", 0.999, 0.999, 0.001, 0.001), (64, 64), (63, 63, 64, 64)),  # clamped inside
        (EYES, (1024, 768), (256, 192, 512, 384)),  # the same region at another render size
    ],
)
def test_zoom_box_pixels(box, size, pixels):
    assert box.pixels(*size) == pixels


@pytest.mark.parametrize(
    ("box", "size"),
    [((16, 16, 32, 32), (64, 64)), ((0, 0, 3, 3), (3, 3)), ((1, 2, 3, 3), (3, 3)), ((7, 0, 1000, 77), (1000, 771))],
)
def test_zoom_box_from_pixels_round_trips(box, size):
    zoom = ZoomBox.from_pixels("r", box, *size)
    assert zoom.pixels(*size) == box
    assert ZoomBox.from_json(zoom.to_json()) == zoom


def test_zoom_box_from_pixels_and_json_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"0 <= left < right <= 64.*got \(32, 0, 16, 8\)"):
        ZoomBox.from_pixels("r", (32, 0, 16, 8), 64, 64)
    with pytest.raises(ValueError, match="needs name, x, y, w and h"):
        ZoomBox.from_json({"name": "a", "x": 0})


@pytest.mark.parametrize(("factor", "method"), [(1, "nearest"), (9, "nearest"), (2.5, "nearest"), (4, "bicubic")])
def test_zoom_factor_and_method_are_checked(factor, method):
    with pytest.raises(ValueError, match="should be"):
        ZoomSpec(EYES, factor, method)
    with pytest.raises(ValueError, match="should be"):
        crop_zoom(noise(), EYES, factor=factor, method=method)


def test_zoom_spec_json_round_trip():
    spec = ZoomSpec(EYES, 6, "smooth")
    assert spec.to_json() == {
        "name": "eyes",
        "x": 0.25,
        "y": 0.25,
        "w": 0.25,
        "h": 0.25,
        "factor": 6,
        "method": "smooth",
    }
    assert ZoomSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_nearest_zoom_repeats_each_pixel(factor):
    image = noise()
    crop = np.asarray(image)[16:32, 16:32]
    zoomed = np.asarray(crop_zoom(image, EYES, factor=factor))
    assert np.array_equal(zoomed, np.kron(crop, np.ones((factor, factor, 1), dtype=np.uint8)))


def test_smooth_zoom_size():
    box = ZoomBox("a", 0.1, 0.2, 0.3, 0.4)
    assert crop_zoom(noise((100, 50)), box, factor=3, method="smooth").size == (90, 60)


def test_column_text():
    assert column_text(None) == ("base (LoRA off)", "", "")
    assert column_text(checkpoint(7)) == ("epoch 7", "jimeng_7.safetensors", "sha256 000000000007")


def test_zoom_strip_shows_each_column_enlarged_with_labels(drawn):
    colours = [(200, 10, 20), (10, 200, 20), (10, 20, 200)]
    results = [result(0, c, Image.new("RGB", (64, 64), colours[c])) for c in range(3)]
    results += [result(1, c, noise(seed=c)) for c in range(3)]  # another row, not drawn
    strip = zoom_strip(results, EYES, row=0)
    assert strip.width >= 8 + 3 * (64 + 8)
    for colour in colours:
        assert count(strip, colour) == 64 * 64  # the 16 px region, 4x
    assert drawn[0] == "zoom eyes: 16,16-32,32 (16x16 px of 64x64) x4 nearest"
    assert drawn[1::2] == ["base", "epoch 1", "epoch 2"]  # "base (LoRA off)" where it fits
    assert drawn[2] == "" and "jimeng_2.safetensors".startswith(drawn[6].removesuffix("…"))


def test_zoom_strip_error_cells_are_labelled_placeholders(drawn):
    results = [result(0, 0, Image.new("RGB", (64, 64), (200, 10, 20))), result(0, 1, None, "error")]
    results.append(result(0, 2, None, "stopped"))
    strip = zoom_strip(results, EYES, row=0, factor=4, caption="seed 1")
    assert count(strip, (200, 10, 20)) == 64 * 64
    assert count(strip, PLACEHOLDER) > 2 * 50 * 50
    assert "error" in drawn and "stopped" in drawn
    assert drawn[0].endswith("x4 nearest · seed 1")


def test_zoom_strip_shrinks_to_max_width_but_not_below_1x(drawn):
    results = [result(0, c, Image.new("RGB", (64, 64), (200, 10 + c, 20))) for c in range(3)]
    strip = zoom_strip(results, EYES, row=0, factor=8, max_width=200)
    assert strip.width <= 200 and count(strip, (200, 10, 20)) == (16 * 3) ** 2  # 8x reduced to 3x
    wide = [result(0, c, Image.new("RGB", (64, 64), (200, 10 + c, 20))) for c in range(10)]
    strip = zoom_strip(wide, EYES, row=0, factor=8, max_width=1000)
    assert strip.width <= 1000 and count(strip, (200, 10, 20)) == (16 * 5) ** 2
    assert drawn[-20 - 1].endswith(" x5 nearest (x8 asked, reduced to fit)")
    strip = zoom_strip(results, EYES, row=0, factor=8, max_width=10)
    assert count(strip, (200, 10, 20)) == 16 * 16  # 1x: wider than asked, never smaller than the pixels


def test_zoom_strip_unknown_row():
    with pytest.raises(ValueError, match=r"one of the grid's rows \[0\], got 3"):
        zoom_strip([result(0, 0, noise())], EYES, row=3)


def test_draw_boxes_outlines_each_region_on_a_copy(drawn):
    image = Image.new("RGB", (256, 256), (128, 128, 128))
    out = draw_boxes(image, [EYES, ZoomBox("hands", 0.5, 0.75, 0.25, 0.25)])
    assert out is not image and image.getpixel((64, 100)) == (128, 128, 128)
    assert out.getpixel((64, 100)) == BOX_COLOURS[0] and out.getpixel((127, 100)) == BOX_COLOURS[0]
    assert out.getpixel((100, 96)) == (128, 128, 128)  # inside stays as it was
    assert out.getpixel((128, 230)) == BOX_COLOURS[1]
    assert drawn == ["eyes", "hands"]
