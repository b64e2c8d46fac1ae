"""``python -m zbench suggest RUN``: signals per checkpoint, the suggested shortlist, the ranking and a recommendation.

Run it on the training box after a run: it renders (or takes from the image cache) the config's ``[signals]``
prompts and seeds for the base and every checkpoint, measures them, and says what to release and why, or
what would settle it. The page then opens on the same cached images and signals.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import (
    BaseModelError,
    ConfigError,
    DecisionError,
    DecisionStore,
    Signals,
    decide,
    get_base,
    get_image_cache,
    load_config,
    render_cells,
    scan_run,
    signal_cache,
    signal_grid,
)
from .engine import jsonio
from .engine.compiled import compile_steps

__all__ = ["add_suggest_command"]


def add_suggest_command(sub) -> None:
    p = sub.add_parser(
        "suggest",
        help="signals per checkpoint, a suggested shortlist, the ranking of ratings and votes, and a recommendation",
    )
    p.add_argument("loras", nargs="?", help="the run folder (default: the config's [loras] dir)")
    p.add_argument("--config", help="bench config TOML (default: configs/demo.toml); [signals] says what to measure")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_suggest)


def cell_progress(bar):
    """A ``progress`` for a command's tqdm bar: one step per cell, and each cell error's message once on stderr
    (a run whose renders all fail must say why, not print empty signals)."""
    reported = set()

    def progress(done, total, result) -> None:
        bar.update(1)
        if result.status == "error" and (result.cell.name, result.error) not in reported:
            reported.add((result.cell.name, result.error))
            bar.write(f"error in {result.cell.name}: {result.error}", file=sys.stderr)

    return progress


def _suggest(args) -> int:
    from tqdm import tqdm

    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    folder = Path(args.loras).expanduser() if args.loras else config.lora_dir
    if folder is None or not folder.is_dir():
        print(f"error: {folder} is not a run folder; pass the folder your trainer saved checkpoints", file=sys.stderr)
        return 2
    run = scan_run(folder)
    usable = [c for c in run if c.error is None]
    if not usable:
        print(f"error: no usable checkpoint in {folder} (python -m zbench scan {folder} says why)", file=sys.stderr)
        return 1
    try:
        grid = signal_grid(config, run)
        review = DecisionStore(folder).load()
        base = get_base(config)
    except (ConfigError, ValueError, DecisionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BaseModelError as err:
        print(f"error: nothing could render: {err}", file=sys.stderr)
        return 1
    quiet = args.quiet or args.json
    with tqdm(total=len(grid.cells), desc="rendering", unit="cell", disable=quiet, file=sys.stderr) as bar:
        results = render_cells(
            base,
            grid.cells,
            grid.settings,
            cache=get_image_cache(),
            progress=cell_progress(bar),
            on_step=compile_steps(base, bar),
        )
    decision = decide(
        run, results, review, signals=Signals.from_config(config), cache=signal_cache(), size=config.shortlist_size
    )
    if args.json:
        out = {
            "run": str(folder),
            "config": str(config.source),
            "prompts": grid.prompts,
            "seeds": grid.seeds,
            "checkpoints": [
                {
                    "name": c.name,
                    "epoch": c.epoch,
                    "step": c.step,
                    "error": c.error or decision.report.errors.get(c.name),
                    "signals": decision.report.values.get(c.name, {}),
                    "shortlist": c.name in decision.shortlist,
                    "why": decision.why(c.name),
                    "rating": review.ratings.get(c.name),
                }
                for c in run
            ],
            "base": decision.report.values.get("base", {}),
            **decision.evidence(),
        }
        print(jsonio.dumps(out, indent=2, ensure_ascii=False, default=str))
        return 0
    _print(decision, run, review, len(grid.prompts), len(grid.seeds))
    return 0


def _print(decision, run, review, prompts: int, seeds: int) -> None:
    report = decision.report
    usable = sum(c.error is None and c.name not in report.errors for c in run)
    broken = f" ({len(run) - usable} with errors, below)" if usable < len(run) else ""
    shape = f"{prompts} prompts x {seeds} seeds, base and {usable} checkpoints{broken}"
    print(f"signals from {report.images} images: {shape}")
    for s in report.signals:
        print(f"  {s.label:<10} {'higher' if s.good == 'high' else 'lower'} is better: {s.means}")
    for problem in report.problems:
        print(f"  note: {problem}")
    head = f"{'checkpoint':<36} " + " ".join(f"{s.label[:9]:>9}" for s in report.signals) + "  short  rated"
    print("\n" + head)
    for name in report.names:
        values = report.values.get(name, {})
        if name in report.errors:
            print(f"{name[:36]:<36} could not render: {report.errors[name]}")
            continue
        cells = " ".join(
            f"{values[s.key]:>9.3f}" if values.get(s.key) is not None else f"{'':>9}" for s in report.signals
        )
        mark = "  *    " if name in decision.shortlist else "       "
        stars = str(review.ratings.get(name, ""))
        print(f"{name[:36]:<36} {cells}{mark}{stars:>5}")
    for c in run:
        if c.error:
            print(f"{c.name[:36]:<36} error: {c.error}")
    print("\nsuggested shortlist (* above; votes on the page are drawn among it):")
    reasons = decision.suggested.reasons
    for name in [n for n in report.names if n in reasons]:  # run order; one that joined says why it did
        why = decision.why(name) if name not in report.errors else "could not render (above)"
        print(f"  {decision.labels.get(name, name):<12} {why}")
    edited = [n for n in decision.shortlist if n not in decision.suggested.names and n not in decision.grown]
    dropped = [n for n in decision.suggested.names if n not in decision.shortlist and n not in decision.left]
    if edited or dropped:
        print(f"  your edits: kept {', '.join(edited) or 'none'}; dropped {', '.join(dropped) or 'none'}")
    rec = decision.recommendation
    ranked = sorted((r for r in rec.ranking if r["rank"] is not None), key=lambda r: r["rank"])
    if ranked:
        print("\nranking of ratings and votes (95% interval of the strength; P = probability of being the best):")
        for r in ranked:
            print(
                f"  {r['rank']:>2}. {decision.labels.get(r['name'], r['name']):<12} strength {r['score']:.2f} "
                f"[{r['low']:.2f}, {r['high']:.2f}]  P {r['p_best']:.0%}  votes {r['wins']}-{r['losses']}"
                + (f"  rated {review.ratings[r['name']]}" if r["name"] in review.ratings else "")
            )
    print("\n" + rec.headline())
