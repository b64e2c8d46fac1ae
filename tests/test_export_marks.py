"""Exports that show the decision, at 30 columns and at 5: the share image's title drawn in full and its header
within 15% of its height; the released checkpoint, the shortlist and the stars marked on their columns in the
share image, the PDF and the offline viewer (with the signal strip); a PDF cover on one page, no page holding one
row that spilled, no column label cut where there is room; and exports without a decision as before.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pypdf
import pytest
from PIL import Image, ImageDraw

from zbench import Cell, CellResult, DecisionStore, RenderSettings, Row, SheetInfo, ZoomBox, ZoomSpec
from zbench.engine.checkpoints import Checkpoint, file_hash
from zbench.review.drawing import ELLIPSIS, wrap_measured
from zbench.review.export import export_decision, export_sheet
from zbench.review.marks import RELEASE, STAR
from zbench.review.pdf import _pages, _share_out, sheet_pdf
from zbench.review.share import compose_share, share_title
from zbench.review.signals import DIVERSITY, DRIFT, SignalReport, Signals
from zbench.review.viewer import viewer_html

SIZE = 256
EYES = ZoomSpec(ZoomBox("eyes", 0.25, 0.25, 0.5, 0.25))
SEEDS = (11, 22)  # row labels "seed 11", "seed 22": counted on each PDF page
RUN, BASE = "/home/me/runs/knight-style-lora-v3-final", "Z-Image-Turbo (bf16, 6 layers, distilled)"
RELEASED, SHORT, RATED = 4, (2, 4), {1: 1, 4: 5}  # epochs


def name(epoch: int) -> str:
    return f"knight-{epoch:06d}.safetensors"


def build(columns: int, *, folder: Path | None = None, size: int = SIZE):
    """(results, rows, info, checkpoints) of ``columns`` columns (the base and ``columns - 1`` epochs) x 2 seeds,
    a solid colour per cell; checkpoint files in ``folder`` when given (for the decision's records)."""
    cks = []
    for e in range(1, columns):
        path = Path(f"/home/me/runs/knight/{name(e)}") if folder is None else folder / name(e)
        if folder is not None:
            path.write_bytes(bytes([e]) * 64)
        cks.append(Checkpoint(name=name(e), path=path, epoch=e, step=e * 250, hash=f"{e:012x}"))
    rows = [Row("a knight in silver armour, rain", seed) for seed in SEEDS]
    results = []
    for r, row in enumerate(rows):
        for c, ck in enumerate([None, *cks]):
            picture = Image.new("RGB", (size, size), (10 + 7 * c, 60 + 90 * r, 240 - 7 * c))
            results.append(CellResult(Cell(r, c, ck, row.prompt, row.seed, 1.0), picture, "ok", None, 1.0, 2.0))
    settings = RenderSettings(steps=8, guidance=0.0, width=size, height=size)
    return results, rows, SheetInfo(BASE, RUN, settings, (rows[0].prompt,), SEEDS, (1.0,)), cks


def decision(columns: int) -> dict:
    released = min(RELEASED, columns - 1)
    return {
        "release": {"checkpoint": name(released), "hash": f"{released:012x}", "who": "ana", "when": "2026-11-26"},
        "shortlist": [name(e) for e in SHORT if e < columns],
        "ratings": {name(e): stars for e, stars in RATED.items() if e < columns},
    }


def report(columns: int) -> SignalReport:
    names = ["base", *(name(e) for e in range(1, columns))]
    values = {n: {"drift": 0.01 * i, "change": None, "diversity": 0.5 - 0.01 * i} for i, n in enumerate(names)}
    epochs = {n: i or None for i, n in enumerate(names)}
    return SignalReport(names, [DRIFT, DIVERSITY], values, epochs, [], 2 * columns, 2)


@pytest.fixture()
def drawn_at(monkeypatch):
    """Every string drawn with ImageDraw.text: (x, y, text, font size), in order."""
    texts = []
    real = ImageDraw.ImageDraw.text

    def spy(self, xy, text, *args, **kwargs):
        texts.append((xy[0], xy[1], text, kwargs["font"].size))
        return real(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", spy)
    return texts


def columns_x(drawn_at, label: str) -> list[float]:
    return [x for x, _, text, _ in drawn_at if text == label]


def pixels(image: Image.Image, colour, x0: float, x1: float, y0: float = 0) -> int:
    """How many pixels of ``colour`` ``image`` has between x0 and x1, below y0."""
    rgb = np.asarray(image.convert("RGB"))[int(y0) :, int(x0) : int(x1)]
    return int(np.all(rgb == colour, axis=-1).sum())


# -- the share image --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [30, 5])
def test_share_title_in_full_header_within_15_percent_and_the_decision_marked(columns, drawn_at):
    results, rows, info, _ = build(columns)
    image = compose_share(results, rows, info, zooms=[EYES], **decision(columns))
    width, height = image.size
    texts = [t for _, _, t, _ in drawn_at]
    prompt = next(i for i, t in enumerate(texts) if t.startswith("prompt: "))
    assert " ".join(texts[:prompt]) == share_title(info)  # every word of the title, over one line or two
    header = drawn_at[: texts.index("base (LoRA off)")]
    assert max(y + size for _, y, _, size in header) <= 0.15 * height
    assert next(size for _, _, t, size in header if t.startswith("prompt")) >= 0.015 * height  # still legible
    assert max(width, height) <= 4096
    assert texts.count("released") == 1 and texts.count("shortlist") + texts.count("SL") == len(SHORT)
    assert any(t.startswith(f"released: {name(min(RELEASED, columns - 1))}") for t in texts[: prompt + 4])
    # Under the header: a green badge and a frame round the released column's cells, stars where rated, not else.
    released, other = columns_x(drawn_at, f"epoch {min(RELEASED, columns - 1)}")[0], columns_x(drawn_at, "epoch 3")[0]
    cw = columns_x(drawn_at, "epoch 2")[0] - columns_x(drawn_at, "epoch 1")[0]
    top = drawn_at[texts.index("base (LoRA off)")][1]
    assert pixels(image, RELEASE, released - 4, released + cw, top) > 4 * SIZE
    assert pixels(image, RELEASE, other - 3, other + cw - 5, top) == 0  # its own gaps, not the next frame's
    assert pixels(image, STAR, released, released + cw, top) > 0 and pixels(image, STAR, other, other + cw, top) == 0


def test_share_without_a_decision_has_no_marks(drawn_at):
    results, rows, info, _ = build(5)
    image = compose_share(results, rows, info)
    texts = [t for _, _, t, _ in drawn_at]
    assert not {"released", "shortlist", "SL"} & set(texts) and not [t for t in texts if t.startswith("released:")]
    assert pixels(image, RELEASE, 0, image.width) == 0 and pixels(image, STAR, 0, image.width) == 0


# -- the PDF ----------------------------------------------------------------------------------------------------


def lines_on(text: str) -> int:
    """The grid lines (rows and zoom strips) a band page holds: their labels "seed 11", "eyes · seed 22"
    (not the settings' "seed 11, 22")."""
    return len(re.findall(r"seed (?:11|22)\b(?!,)", text))


@pytest.mark.parametrize("columns", [30, 5])
def test_pdf_cover_on_one_page_no_lone_row_no_cut_label(columns):
    results, rows, info, _ = build(columns)
    data = sheet_pdf(results, rows, info, zooms=[EYES], **decision(columns))
    pages = [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages]
    assert name(columns - 1) in pages[0] and "band 1 of" in pages[1]  # the whole list on the cover
    assert f"release: {name(min(RELEASED, columns - 1))}" in pages[0] and "shortlist: " in pages[0]
    bands = pages[1:]
    assert len(bands) == -(-(columns - 1) // 7)  # one page per band of the base and 7 checkpoints: no part 2
    assert all(lines_on(page) == 2 * len(SEEDS) for page in bands)  # 2 rows and their 2 zoom strips, no spill
    text = "\n".join(bands)
    assert ELLIPSIS not in text and "..." not in text  # no column label cut
    for e in range(1, columns):
        assert f"epoch {e}" in text and f"step {e * 250}" in text and f"knight-{e:06d}." in text
    assert text.count("released") == 1 and text.count("shortlist") == len(SHORT)


@pytest.mark.parametrize(
    ("heights", "room", "pages"),
    [
        ([1.0] * 7, 3.0, [[0, 1], [2, 3, 4], [5, 6]]),  # filling pages in turn would leave the last line alone
        ([1.0] * 4, 4.0, [[0, 1, 2, 3]]),
        ([2.0, 2.0, 2.0, 1.0, 1.0, 1.0], 4.0, [[0, 1], [2, 3], [4, 5]]),  # not [0, 1], [2, 3, 4], [5]
    ],
)
def test_pdf_lines_are_shared_out_over_pages(heights, room, pages):
    assert _pages(heights, room) == pages


@pytest.mark.parametrize(
    ("count", "first", "later", "sizes"),
    [
        (31, 30, 40, [16, 15]),
        (30, 30, 40, [30]),
        (70, 30, 40, [30, 40]),
        (71, 30, 40, [30, 21, 20]),
        (5, 1, 40, [1, 4]),
    ],
)
def test_cover_list_never_leaves_one_checkpoint_alone(count, first, later, sizes):
    assert [len(page) for page in _share_out(list(range(count)), first, later)] == sizes


def test_pdf_rows_that_do_not_fit_a_page_are_shared_out():
    """Eight rows and their strips do not fit one page: they are shared out (by height), none left alone."""
    results, rows, info, _ = build(3)
    rows8 = [Row(rows[0].prompt, seed) for seed in (11, 22, 33, 44, 55, 66, 77, 88)]
    results8 = [
        CellResult(Cell(r, c, res.cell.checkpoint, row.prompt, row.seed, 1.0), res.image, "ok", None)
        for r, row in enumerate(rows8)
        for c, res in enumerate(results[:3])
    ]
    info8 = SheetInfo(BASE, RUN, info.settings, info.prompts, tuple(r.seed for r in rows8), (1.0,))
    pages = pypdf.PdfReader(io.BytesIO(sheet_pdf(results8, rows8, info8, zooms=[EYES]))).pages[1:]
    counts = [len(re.findall(r"seed \d\d\b(?!,)", p.extract_text())) for p in pages]
    assert sum(counts) == 16 and len(counts) >= 2 and min(counts) > 1


# -- the offline viewer -----------------------------------------------------------------------------------------


def viewer_data(html: str) -> dict:
    block = re.search(r'<script type="application/json" id="zbench-data">(.*?)</script>', html, re.S).group(1)
    return json.loads(block)


@pytest.mark.parametrize("columns", [30, 5])
def test_viewer_shows_the_marks_and_the_signal_strip(columns):
    results, rows, info, _ = build(columns)
    data = viewer_data(viewer_html(results, rows, info, [EYES], **decision(columns), signals=report(columns)))
    by_name = {c["name"]: c for c in data["columns"]}
    released = name(min(RELEASED, columns - 1))
    assert [c["name"] for c in data["columns"] if c["release"]] == [released]
    assert {c["name"] for c in data["columns"] if c["short"]} == {name(e) for e in SHORT if e < columns}
    assert {c["name"]: c["stars"] for c in data["columns"] if c["stars"]} == decision(columns)["ratings"]
    assert [s["key"] for s in data["signals"]] == ["drift", "diversity"]
    assert by_name[name(1)]["signals"][0][0] == pytest.approx(0.01) and by_name[name(1)]["epoch"] == 1
    assert data["columns"][0]["label"] == "base" and data["columns"][0]["signals"][1][0] == pytest.approx(0.5)
    assert all(0 <= tone <= 1 for c in data["columns"][1:] for _, tone in c["signals"])
    assert any(line.startswith(f"released: {released}") for line in data["header"])


def test_viewer_without_a_decision_has_no_marks():
    results, rows, info, _ = build(5)
    data = viewer_data(viewer_html(results, rows, info))
    assert data["signals"] == [] and not any(c["release"] or c["short"] or c["stars"] for c in data["columns"])


# -- the decision read from the run, through export_sheet --------------------------------------------------------


def test_export_decision_reads_the_run_and_the_exports_show_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    results, rows, info, cks = build(5, folder=run, size=64)
    for ck in cks:
        ck.hash = file_hash(ck.path)
    store = DecisionStore(run)
    store.set_rating(cks[1].name, 4)
    store.set_shortlist(cks[0].name, True)
    store.mark_release(cks[2], who="ana", reason="cleanest armour")
    marks = export_decision(cks, results, signals=Signals(quality=False))
    assert marks["release"]["checkpoint"] == cks[2].name and marks["ratings"] == {cks[1].name: 4}
    assert cks[0].name in marks["shortlist"] and marks["signals"].signal("drift") is not None
    manifest = export_sheet(tmp_path / "out", results, rows, info, preset="share", **marks)
    assert manifest["decision"]["release"] == cks[2].name and manifest["decision"]["ratings"] == {cks[1].name: 4}
    data = viewer_data((tmp_path / "out" / "index.html").read_text(encoding="utf-8"))
    assert [c["release"] for c in data["columns"]] == [False, False, False, True, False]
    assert data["signals"] and "cleanest armour" in data["header"][-1]

    (run / ".zbench" / "review.json").write_text("{not json")
    assert export_decision(cks, results) == {}  # records that cannot be read: no decision, the export goes on


# -- file names go on over a second line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "width", "lines", "wrapped"),
    [
        ("knight-000012.safetensors", 16, 2, ["knight-000012.", "safetensors"]),  # cut after the "."
        ("step 3000 · knight-000012.safetensors", 16, 3, ["step 3000 ·", "knight-000012.", "safetensors"]),
        ("abcdefghijklmnopqrstuvwxyz", 10, 2, ["abcdefghij", "klmnopqrs" + ELLIPSIS]),  # no separator: at the width
        ("short name", 16, 2, ["short name"]),
    ],
)
def test_wrap_breaks_long_words(text, width, lines, wrapped):
    assert wrap_measured(len, text, width, lines, limit=100, break_words=True) == wrapped
