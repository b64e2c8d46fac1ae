"""``python -m zbench demo report``: measure the embedded demo with zbench's own metrics.

Renders held-out and seen prompts with the base (adherence table), then the same prompts with
every checkpoint of the LoRA run (adherence; style strength = the share of each render that is
glow or particles; distance from the base render; change from the previous checkpoint), and
writes a labelled sheet of the run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..engine.checkpoints import scan_run
from ..engine.config import BenchConfig, load_config
from ..engine.pipeline import get_base
from ..engine.plan import CellResult, RenderSettings, plan_grid
from ..engine.render import render_cells
from ..review.metrics import image_distance
from .metrics import adherence, spearman
from .shapes import glow_share

__all__ = ["DemoReport", "run_report"]

ATTRS = ("color", "shape", "background", "all")


@dataclass
class DemoReport:
    """The numbers behind the report text."""

    base_seen: dict[str, float]
    base_held: dict[str, float]
    epochs: list[dict]  # per checkpoint: name, label, epoch, adherence, style, from_base, change
    early_mid_spearman: float  # style vs epoch
    base_style: float
    text: str


def _rates(results: list[CellResult]) -> dict[str, float]:
    scores = [adherence(r.image, r.cell.prompt) for r in results if r.image is not None]
    return {a: sum(s[a] for s in scores) / max(1, len(scores)) for a in ATTRS}


def run_report(
    config: BenchConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    seeds: tuple[int, ...] = (1, 2),
    progress: Callable[[int, int, CellResult], None] | None = None,
) -> DemoReport:
    """Measure the demo base and its LoRA run; write ``sheet.png`` and ``report.md`` to ``out_dir``."""
    from ..review.export import write_grid
    from ..review.sheet import SheetInfo
    from .build import eval_scenes

    config = config or load_config()
    base = get_base(config)
    run = [c for c in scan_run(config.lora_dir) if c.error is None]
    settings = RenderSettings(steps=config.steps, guidance=config.guidance, width=config.width, height=config.height)
    held, seen = eval_scenes()

    _, planned = plan_grid(run, prompts=[s.prompt for s in held + seen], seeds=list(seeds))
    results = render_cells(base, planned, settings, progress=progress)  # column 0 is the base
    by_col: dict[int, list[CellResult]] = {}
    for r in results:
        by_col.setdefault(r.cell.col, []).append(r)
    base_cells = by_col.pop(0)
    held_prompts = {s.prompt for s in held}
    base_held = _rates([r for r in base_cells if r.cell.prompt in held_prompts])
    base_seen = _rates([r for r in base_cells if r.cell.prompt not in held_prompts])
    epochs, previous = [], base_cells
    for col, ck in enumerate(run, start=1):
        cells = by_col[col]
        pairs = [
            (a.image, b.image)
            for a, b in zip(cells, base_cells, strict=True)
            if a.image is not None and b.image is not None
        ]
        steps = [
            (a.image, b.image)
            for a, b in zip(cells, previous, strict=True)
            if a.image is not None and b.image is not None
        ]
        epochs.append(
            {
                "name": ck.name,
                "label": ck.label,
                "epoch": ck.epoch,
                "adherence": _rates(cells),
                "style": statistics.mean(glow_share(r.image) for r in cells if r.image is not None),
                "from_base": statistics.mean(image_distance(a, b) for a, b in pairs),
                "change": None if col == 1 else statistics.mean(image_distance(a, b) for a, b in steps),
            }
        )
        prev = epochs[-2]["epoch"] if len(epochs) > 1 else None
        change, gap = epochs[-1]["change"], (ck.epoch or 0) - (prev or 0)
        # Checkpoints are saved at growing gaps; change per 10 epochs compares like with like.
        epochs[-1]["change_per_10"] = None if change is None or prev is None or gap <= 0 else change / gap * 10
        previous = cells
    early_mid = epochs[: max(2, round(len(epochs) * 0.7))]
    order = [e["epoch"] or i for i, e in enumerate(early_mid)]
    rho = spearman(order, [e["style"] for e in early_mid])
    rho_base = spearman(order, [e["from_base"] for e in early_mid])
    base_style = statistics.mean(glow_share(r.image) for r in base_cells if r.image is not None)
    text = _format(config, base_held, base_seen, epochs, (rho, rho_base, base_style), len(held), len(seen), seeds)
    if out_dir is not None:
        out = Path(out_dir)
        prompts = [held[0].prompt, seen[0].prompt, seen[1].prompt]
        rows, cells = plan_grid(run, prompts=prompts, seeds=[seeds[0]])
        # These prompts were drawn above with the same seed: place those images, render nothing again.
        drawn = {(r.cell.prompt, r.cell.seed, r.cell.col): r for r in results}
        sheet = [replace(drawn[(c.prompt, c.seed, c.col)], cell=c) for c in cells]
        info = SheetInfo(
            base=config.name,
            run=str(config.lora_dir),
            settings=settings,
            prompts=tuple(prompts),
            seeds=(seeds[0],),
            scales=(1.0,),
        )
        write_grid(out, sheet, rows, info)
        (out / "report.md").write_text(text)
    return DemoReport(base_seen, base_held, epochs, rho, base_style, text)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _format(config, held, seen, epochs, style, n_held, n_seen, seeds) -> str:
    rho, rho_base, base_style = style
    lines = [
        f"Base model: {config.name}; {config.steps} steps, guidance {config.guidance:g}, "
        f"{config.width}x{config.height}; seeds {', '.join(map(str, seeds))}.",
        "",
        "| prompts | shape color | shape | background | all three |",
        "|---|---:|---:|---:|---:|",
        f"| held-out combinations ({n_held} x {len(seeds)} seeds) | " + " | ".join(_pct(held[a]) for a in ATTRS) + " |",
        f"| seen combinations ({n_seen} x {len(seeds)} seeds) | " + " | ".join(_pct(seen[a]) for a in ATTRS) + " |",
        "",
        f"LoRA run {config.lora_dir.name if config.lora_dir else ''}: the same {n_held + n_seen} prompts x "
        f"{len(seeds)} seeds. Style = share of the image that is glow or particles (neither shape nor background "
        f"color; the base scores {base_style:.3f}, mostly outlines); from base = mean pixel distance from the "
        "base render (composition shifts count too); change = from the previous checkpoint.",
        "",
        "| checkpoint | all three | shape color | shape | background | style | from base | change "
        "| change / 10 epochs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in epochs:
        change = "" if e["change"] is None else f"{e['change']:.3f}"
        rate = "" if e.get("change_per_10") is None else f"{e['change_per_10']:.4f}"
        a = e["adherence"]
        lines.append(
            f"| {e['name']} | {_pct(a['all'])} | {_pct(a['color'])} | {_pct(a['shape'])} | {_pct(a['background'])} | "
            f"{e['style']:.3f} | {e['from_base']:.3f} | {change} | {rate} |"
        )
    middle = epochs[1:-2] or epochs
    best = max(middle, key=lambda e: e["adherence"]["all"])
    last = epochs[-1]
    # A release must show the style it was trained for: among checkpoints with most of the style,
    # the one that still draws what it is told.
    strongest = max(e["style"] for e in epochs)
    styled = [e for e in epochs if e["style"] - base_style >= 0.8 * (strongest - base_style)] or epochs
    pick = max(styled, key=lambda e: (e["adherence"]["all"], e["adherence"]["background"]))
    lines += [
        "",
        f"Style strength vs epoch over the early and middle checkpoints: Spearman {rho:.2f} "
        f"(distance from base: {rho_base:.2f}).",
        f"Best middle checkpoint: {best['name']} ({_pct(best['adherence']['all'])} all three); last: "
        f"{last['name']} ({_pct(last['adherence']['all'])}): "
        + ("overcooked, adherence lower." if last["adherence"]["all"] < best["adherence"]["all"] else "not lower."),
        f"Release candidate (best adherence among checkpoints with at least 80% of the strongest style): "
        f"{pick['name']} ({_pct(pick['adherence']['all'])} all three, style {pick['style']:.3f}).",
    ]
    return "\n".join(lines) + "\n"
