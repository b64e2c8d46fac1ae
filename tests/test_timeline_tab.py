"""The Timeline tab's player and the Pick tab's blind pair through AppTest, on the tiny real pipeline: what the
player is given (frames labelled by epoch, the base first, lossless PNGs of exactly the rendered pixels, the
native size) and the blind pair's images (lossless PNGs, names hidden). The player's clock, keys and whole-factor
sizes run in the browser: see test_e2e_timeline.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import zbench
from ui.timeline import _crop, player_data

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def _component(at: AppTest, name: str) -> list[dict]:
    return [json.loads(e.proto.json) for e in at.get("bidi_component") if e.proto.component_name == name]


def _pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"))


def test_the_player_gets_every_checkpoint_by_epoch_as_lossless_pngs(app_config, run_dir, media):
    box = zbench.ZoomBox("eye", 0.25, 0.5, 0.5, 0.25)
    zbench.save_page_state(run_dir, {"zooms": [zbench.ZoomSpec(box)]})
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.session_state["tab"] = "Timeline"  # what a click on the tab does
    at.run()
    assert not at.exception and not at.error
    _, results = at.session_state["grid"]
    (data,) = _component(at, "zbench.timeline")
    frames = data["frames"]
    assert [f["label"] for f in frames] == ["base", "epoch 5", "epoch 10"]
    assert [f["name"] for f in frames] == ["LoRA off", "style_5.safetensors", "style_10.safetensors"]
    assert [f["hold"] for f in frames] == [True, False, True]  # the base and the last are held
    assert (data["width"], data["height"]) == (32, 32)  # native: the player enlarges by whole factors
    for frame, result in zip(frames, results, strict=True):
        assert frame["src"].endswith(".png") and frame["error"] is None
        assert np.array_equal(_pixels(media(frame["src"])), np.asarray(result.image.convert("RGB")))
    assert any(c.value.startswith("Played epoch by epoch") for c in at.caption)

    # A zoom region: the same checkpoints, the region's own pixels at native size (8 x 16 of 32 x 32).
    at.selectbox(key="timeline_region").set_value("zoom: eye").run()
    assert not at.exception
    (data,) = _component(at, "zbench.timeline")
    assert (data["width"], data["height"]) == (16, 8)
    assert [f["label"] for f in data["frames"]] == ["base", "epoch 5", "epoch 10"]
    for frame, result in zip(data["frames"], results, strict=True):
        expected = np.asarray(result.image.convert("RGB"))[16:24, 8:24]
        assert np.array_equal(_pixels(media(frame["src"])), expected)


def test_the_blind_pair_is_lossless_and_nameless(app_config, run_dir, media):
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.session_state["tab"] = "Pick a release"
    at.run()
    assert not at.exception
    left, right, row = at.session_state["blind_pair"]
    assert row == 0
    _, results = at.session_state["grid"]
    by_name = {r.cell.name: r for r in results}
    shown = _component(at, "zbench.pixels")
    assert [s["alt"] for s in shown] == ["left image", "right image"]  # never a checkpoint's name
    for data, name in zip(shown, (left, right), strict=True):
        assert data["src"].endswith(".png") and (data["width"], data["height"]) == (32, 32)
        assert np.array_equal(_pixels(media(data["src"])), np.asarray(by_name[name].image.convert("RGB")))
    assert not at.get("image")  # no st.image on the tab (it sends a photo as JPEG)


def _result(col: int, checkpoint, *, image=None, status="ok", error=None) -> zbench.CellResult:
    cell = zbench.Cell(row=0, col=col, checkpoint=checkpoint, prompt="p", seed=1, scale=1.0)
    return zbench.CellResult(cell, image, status, error)


@pytest.mark.parametrize(
    ("status", "error", "shown"),
    [
        ("error", "bad tensor", "error: bad tensor"),
        ("pending", "rendering…", "not rendered yet"),
        ("error", None, "error: no image"),
    ],
)
def test_a_frame_without_an_image_says_why(tmp_path, make_lora, status, error, shown):
    ck = zbench.scan_run(make_lora(tmp_path / "run" / "style_000020.safetensors").parent)[0]
    image = Image.new("RGB", (24, 16), (10, 20, 30))
    # Columns as any order gives them: the base first all the same, the last checkpoint held.
    results = [_result(1, ck, status=status, error=error), _result(0, None, image=image)]
    data = player_data(results, 0, None, image_size=(24, 16))
    assert [f["label"] for f in data["frames"]] == ["base", "epoch 20"]
    assert [f["hold"] for f in data["frames"]] == [True, True]
    assert data["frames"][1]["src"] is None and data["frames"][1]["error"] == shown
    assert data["frames"][0]["src"].startswith("data:image/png;base64,")  # no server: inline, still PNG
    assert (data["width"], data["height"]) == (24, 16)


def test_a_region_is_cropped_once_per_image():
    image = Image.new("RGB", (40, 40))
    box = zbench.ZoomBox("r", 0.0, 0.0, 0.5, 0.25)
    assert _crop(image, box) is _crop(image, box)
    assert _crop(image, box).size == (20, 10)
    assert _crop(Image.new("RGB", (40, 40)), box) is not _crop(image, box)
