"""Exports survive any text: names and prompts from files render in every export, quickly, shortened with "…".

Newlines, NUL and escapes, U+2028, markup, right-to-left text and a bidi override, emoji, combining marks,
a 230-character name and a megabyte of prompt, on tiny plain images: the share image, the sheet PNG, the
PDF, the offline viewer and the timeline each render them within a hang guard, to a file that opens.
"""

from __future__ import annotations

import io
import json
import time
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import pypdf
import pytest
from PIL import Image, ImageDraw, ImageFont

from zbench import Cell, CellResult, RenderSettings, Row, SheetInfo
from zbench.engine.checkpoints import Checkpoint
from zbench.review import drawing
from zbench.review.drawing import ELLIPSIS, draw_text, fit, fit_measured, one_line, text_font, text_width, wrap
from zbench.review.export import export_sheet
from zbench.review.pdf import sheet_pdf
from zbench.review.share import compose_share, encode_share
from zbench.review.sheet import compose_sheet
from zbench.review.timeline import row_timeline, webp_bytes
from zbench.review.viewer import viewer_html

HANG = 10.0  # s: a hang guard only; each export takes well under a second here
SIDE = 96  # px: tiny cells, wide enough for a label to show its first characters

LONG = "epoch_" + "x" * 225 + ".safetensors"
SCRIPT = "<!--<script> </script><script>alert(1)</script>"
HOSTILE = {
    "newline": "line one\nline two\r\nthree\tfour",
    "controls": "nul\x00bell\x07esc\x1b[31mred\x7f",
    "separators": "para\u2028graph\u2029end\x85next",
    "markup": f"<b>bold</b> {SCRIPT} &amp; &lt;",
    "rtl": "مرحبا بالعالم שלום עולם",
    "override": "evil\u202etxt.exe\u202c\u2066iso\u2069",
    "emoji": "👩\u200d👩\u200d👧\u200d👦 🏳️\u200d🌈 🇫🇷 🙂",
    "combining": "Z̵̡̢͇̈́a̸͓̓l̷g̵o" + "\u0301" * 300 + " end",
    "long": LONG,
}
MEGABYTE = ("a knight in silver armour, rain " * 32_768)[: 2**20]
UNDRAWABLE = {"Cc", "Cf", "Cs", "Zl", "Zp"}  # categories no drawn line may hold


def undrawable(text: str) -> list[str]:
    return [c for c in text if unicodedata.category(c) in UNDRAWABLE]


def hostile_grid(prompts=(HOSTILE["markup"], MEGABYTE)):
    """(results, rows, info): a base column and one checkpoint per hostile name, one row per prompt; the
    last checkpoint's cells are errors that quote its name."""
    names = [*HOSTILE.values()]
    cks = [None] + [
        Checkpoint(name=f"{name}.safetensors", path=Path(f"/run/{i}.safetensors"), epoch=i, hash=f"{i:012x}")
        for i, name in enumerate(names, 1)
    ]
    rows = [Row(prompt, 1) for prompt in prompts]
    results = []
    for r, row in enumerate(rows):
        for c, ck in enumerate(cks):
            cell = Cell(r, c, ck, row.prompt, row.seed, 1.0)
            if c == len(cks) - 1:
                results.append(CellResult(cell, None, "error", f"{ck.name} is truncated:\n{HOSTILE['controls']}"))
            else:
                results.append(CellResult(cell, Image.new("RGB", (SIDE, SIDE), (40 + 9 * c, 90, 200)), "ok"))
    settings = RenderSettings(steps=2, guidance=0.0, width=SIDE, height=SIDE)
    info = SheetInfo(HOSTILE["rtl"], f"/runs/{HOSTILE['newline']}", settings, tuple(prompts), (1,), (1.0,))
    return results, rows, info


def timed(make):
    start = time.perf_counter()
    out = make()
    elapsed = time.perf_counter() - start
    assert elapsed < HANG, f"took {elapsed:.1f} s"
    return out


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# -- the helpers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a\nb\r\nc\td", "a b c d"),
        ("nul\x00esc\x1b[0m", "nul�esc�[0m"),
        ("para\u2028graph\u2029end\x85x", "para graph end x"),
        ("evil\u202etxt", "evil�txt"),  # an override shown, not obeyed
        ("👩\u200d👧 soft\xadhyphen", "👩👧 softhyphen"),  # invisible format characters dropped
        ("base: x    run: y", "base: x    run: y"),  # plain runs of spaces separate columns: kept
        ("  \n lead and trail \t ", "lead and trail"),
        ("a" + "\u0301" * 50 + "b", "a" + "\u0301" * drawing.MAX_MARKS + "b"),
        ("\udcff.safetensors", "�.safetensors"),  # a lone surrogate (an undecodable file name)
        ("<b>&amp;</b>", "<b>&amp;</b>"),  # markup is text
        ("x" * 30, "x" * 10 + ELLIPSIS),
    ],
)
def test_one_line(text, line):
    assert one_line(text, limit=10 if len(text) == 30 else 100) == line


def test_a_megabyte_is_capped_before_it_is_read():
    calls = []

    def measure(text: str) -> float:
        calls.append(len(text))
        return 7.0 * len(text)

    line = timed(lambda: fit_measured(measure, "x" * 2**20, 700, limit=1000))
    assert line == "x" * 99 + ELLIPSIS
    assert len(calls) <= 12 and max(calls) <= 1001  # a binary search over a capped line
    assert timed(lambda: one_line(" " * 2**20 + "tail")) == ELLIPSIS  # whitespace is read within the cap too


@pytest.mark.parametrize("text", [*HOSTILE.values(), MEGABYTE])
def test_fit_and_wrap_give_drawable_lines_within_the_width(text):
    font = text_font(14)
    line = timed(lambda: fit(font, text, 120))
    assert text_width(font, line) <= 120 and not undrawable(line)
    lines = timed(lambda: wrap(font, text, 200, 3))
    assert 1 <= len(lines) <= 3 and all(text_width(font, x) <= 200 and not undrawable(x) for x in lines)
    if text in (LONG, MEGABYTE):
        assert line.endswith(ELLIPSIS) and lines[-1].endswith(ELLIPSIS)


def test_draw_text_falls_back_when_the_shaper_fails(monkeypatch):
    real = ImageDraw.ImageDraw.text

    def shaper_fails(self, xy, text, *args, font=None, **kwargs):
        if getattr(font, "layout_engine", None) == ImageFont.Layout.RAQM:
            raise RuntimeError("raqm_layout() failed.")
        return real(self, xy, text, *args, font=font, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", shaper_fails)
    image = Image.new("RGB", (200, 30), "white")
    draw_text(ImageDraw.Draw(image), (2, 2), "مرحبا abc", font=text_font(16), fill="black")
    assert image.getextrema() != ((255, 255), (255, 255), (255, 255))  # drawn with the basic layout

    def always_fails(self, *args, **kwargs):
        raise OSError("no glyphs")

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", always_fails)
    draw_text(ImageDraw.Draw(image), (2, 2), "abc", font=text_font(16), fill="black")  # left out, no raise


def test_text_width_never_raises():
    class Broken:
        size = 10

        def getlength(self, text):
            raise RuntimeError("raqm_layout() failed.")

        def font_variant(self, **kwargs):
            return self

    assert text_width(Broken(), "abcd") > 0


# -- every export ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid():
    return hostile_grid()


def check_drawn(drawn: list[str]) -> None:
    """Every drawn line is drawable, and the long name and the megabyte prompt were shortened with "…"."""
    assert drawn and not [t for t in drawn if undrawable(t)]
    assert any(t.startswith("epoch_xxx") and t.endswith(ELLIPSIS) for t in drawn)
    assert any("knight" in t and t.endswith(ELLIPSIS) for t in drawn)
    assert any("مرحبا" in t for t in drawn) and "evil�txt.exe" in "".join(drawn)  # a long name may go on a line


def test_share_image(grid, drawn):
    results, rows, info = grid
    image = timed(lambda: compose_share(results, rows, info))
    with opened(timed(lambda: encode_share(image, "webp"))) as share:
        assert share.size == image.size
    check_drawn(drawn)


def test_sheet_png(grid, drawn):
    results, rows, info = grid
    image = timed(lambda: compose_sheet(results, rows, info))
    out = io.BytesIO()
    image.save(out, format="PNG")
    with opened(out.getvalue()) as sheet:
        assert sheet.size == image.size
    check_drawn(drawn)


@pytest.mark.parametrize("row", [0, 1])
def test_timeline(grid, drawn, row):
    results, rows, info = grid
    frames = timed(lambda: row_timeline(results, rows, info, row))
    with opened(timed(lambda: webp_bytes(frames))) as anim:
        assert anim.n_frames == len(HOSTILE) + 1
    assert not [t for t in drawn if undrawable(t)]
    assert any("epoch_xxx" in t and t.endswith(ELLIPSIS) for t in drawn)  # "epoch 9 · epoch_xxx…"


def test_pdf(grid):
    results, rows, info = grid
    data = timed(lambda: sheet_pdf(results, rows, info))
    assert data.startswith(b"%PDF")
    reader = pypdf.PdfReader(io.BytesIO(data))
    assert len(reader.pages) >= 1 + 2  # the cover (two pages here: a long prompt and list), then 2 bands
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "prompt 2: a knight in silver armour" in text and "epoch_xxx" in text
    unicode = drawing.unicode_font_file() is not None
    assert (ELLIPSIS if unicode else "...") in text and "\x00" not in text and "\u202e" not in text


def test_pdf_holds_a_megabyte_prompt_in_a_few_lines():
    results, rows, info = hostile_grid(prompts=(MEGABYTE,))
    reader = pypdf.PdfReader(io.BytesIO(timed(lambda: sheet_pdf(results, rows, info))))
    assert 1 + 2 <= len(reader.pages) <= 4  # the prompt does not run on for pages
    assert len(reader.pages[0].extract_text()) < 10_000


class _Scripts(HTMLParser):
    """The <script> elements of a page as the HTML parser sees them: (attributes, text)."""

    def __init__(self, html: str):
        super().__init__()
        self.scripts: list[tuple[dict, str]] = []
        self._open: dict | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._open = dict(attrs)
            self.scripts.append((self._open, ""))

    def handle_data(self, data):
        if self._open is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag):
        if tag == "script":
            self._open = None


def test_viewer_data_cannot_end_its_script_block(grid):
    results, rows, info = grid
    html = timed(lambda: viewer_html(results, rows, info))
    html.encode("utf-8")  # what export writes
    plain = _Scripts(viewer_html(*hostile_grid(prompts=("a red circle",))))
    scripts = _Scripts(html).scripts
    assert len(scripts) == len(plain.scripts) == 3  # the template's: data, grid.js, the call
    block = next(text for attrs, text in scripts if attrs.get("id") == "zbench-data")
    assert not set(block) & set("<>&\u2028\u2029")
    data = json.loads(block)
    assert data["header"][:2] == [f"prompt 1: {HOSTILE['markup']}", f"prompt 2: {MEGABYTE}"]
    assert [c["name"] for c in data["columns"][1:]] == [f"{name}.safetensors" for name in HOSTILE.values()]
    assert data["cells"][0][-1]["error"].endswith(HOSTILE["controls"])
    assert SCRIPT in data["header"][0] and "<title>" in html and "\x00" not in html.split("<style>")[0]


def test_viewer_keeps_separators_and_undecodable_names_exactly():
    results, rows, info = hostile_grid(prompts=("a\u2028b\u2029c",))
    results[1].cell.checkpoint.name = "\udcff\udcfe.safetensors"  # os.listdir's surrogateescape
    html = viewer_html(results, rows, info)
    html.encode("utf-8")
    block = next(text for attrs, text in _Scripts(html).scripts if attrs.get("id") == "zbench-data")
    data = json.loads(block)
    assert data["header"][0] == "prompt: a\u2028b\u2029c" and data["columns"][1]["name"] == "\udcff\udcfe.safetensors"


def test_export_writes_every_file_for_hostile_names(tmp_path):
    results, rows, info = hostile_grid(prompts=(HOSTILE["markup"],))
    results[1].cell.checkpoint.name = "\udcff\udcfe.safetensors"
    manifest = timed(lambda: export_sheet(tmp_path, results, rows, info))
    assert {f["path"] for f in manifest["files"]} == {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.*")}
    cells = [c for c in manifest["cells"] if c["image"]]
    assert len(cells) == len(HOSTILE)  # every cell but the error one
    with Image.open(tmp_path / cells[1]["image"]) as cell:
        assert json.loads(cell.text["zbench"])["checkpoint"] == "\udcff\udcfe.safetensors"
        assert cell.text["parameters"].startswith(HOSTILE["markup"])
    assert (tmp_path / "sheet.pdf").read_bytes().startswith(b"%PDF")
