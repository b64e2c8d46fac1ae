"""``python -m zbench``: scan a run, render a comparison grid, benchmark swaps, build the demo."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from . import (
    BaseModelError,
    Checkpoint,
    ConfigError,
    DecisionError,
    DecisionStore,
    RenderSettings,
    SheetInfo,
    export_sheet,
    file_sizes,
    get_base,
    load_config,
    measure_grid,
    parse_scales,
    parse_seeds,
    plan_grid,
    render_cells,
    scan_run,
)

__all__ = ["main"]

logger = logging.getLogger("zbench")


class UsageError(Exception):
    """Bad arguments: printed as one line, exit code 2."""


def _cmd_scan(args) -> int:
    cks = scan_run(args.loras)
    if args.json:
        print(json.dumps([c.to_json(with_hash=args.hash) for c in cks], indent=2))
        return 0
    if not cks:
        print(f"no checkpoints in {args.loras} (looked for *.safetensors and checkpoint-*/ folders)")
        return 0
    print(
        f"{'#':>3}  {'checkpoint':<44} {'epoch':>6} {'step':>7} {'rank':>5} {'alpha':>6} {'trainer':<16} "
        f"{'format':<12} {'size':>9}" + (f"  {'hash':<12}" if args.hash else "")
    )
    for i, c in enumerate(cks, 1):
        alpha = "" if c.alpha is None else f"{c.alpha:g}"
        size = f"{c.size / 2**20:.1f} MiB" if c.size else ""
        print(
            f"{i:>3}  {c.name[:44]:<44} {_s(c.epoch):>6} {_s(c.step):>7} {_s(c.rank):>5} {alpha:>6} "
            f"{c.trainer:<16} {c.format:<12} {size:>9}" + (f"  {c.hash:<12}" if args.hash else "")
        )
        if args.all_meta:
            for k in sorted(c.metadata):
                print(f"{'':5}{k} = {c.metadata[k][:100]}")
        else:
            summary = ", ".join(f"{k}={c.metadata[k][:40]}" for k in SUMMARY_KEYS if k in c.metadata)
            if summary:
                print(f"{'':5}{summary}")
        if c.error:
            print(f"{'':5}error: {c.error}")
    return 0


# Header fields worth a glance in the table; --all-meta prints every key.
SUMMARY_KEYS = (
    "ss_output_name",
    "ss_base_model_version",
    "ss_network_module",
    "ss_learning_rate",
    "ss_num_train_images",
    "modelspec.architecture",
    "training_info",
)


def _argument(parse):
    """An argparse type that shows the parser's own message ("steps should be at least 1, got 0")."""

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return convert


def _number(text: str, kind, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{what} should be a {'whole ' if kind is int else ''}number, got {text!r}") from None
    return value


def _steps(text: str) -> int:
    value = _number(text, int, "steps")
    if value < 1:
        raise ValueError(f"steps should be at least 1, got {value}")
    return value


def _side(text: str) -> int:
    value = _number(text, int, "width and height")
    if value < 16 or value % 16:
        raise ValueError(f"width and height should be positive multiples of 16, got {value}")
    return value


def _guidance(text: str) -> float:
    value = _number(text, float, "guidance")
    if not 0 <= value < float("inf"):
        raise ValueError(f"guidance should be a finite number >= 0, got {text!r}")
    return value


def _one(parse, what: str):
    def first(text: str):
        values = parse(text)
        if len(values) != 1:
            raise ValueError(f"give one {what} per --{what.split()[-1]} (repeat the option for more), got {text!r}")
        return values[0]

    return first


_seed = _one(parse_seeds, "seed")
_scale = _one(parse_scales, "LoRA scale")


def _s(value) -> str:
    return "" if value is None else str(value)


def select(cks: list[Checkpoint], tokens: list[str]) -> list[Checkpoint]:
    """Pick checkpoints by epoch (or step when a file has no epoch), by "final", or by file name."""
    chosen = []
    for token in tokens:
        if token.isdigit():
            n = int(token)
            hits = [c for c in cks if c.epoch == n] or [c for c in cks if c.epoch is None and c.step == n]
        elif token == "final":
            hits = [c for c in cks if c.pattern == "final"]
        else:
            hits = [c for c in cks if c.name == token or c.path.name == token or c.path.stem == token]
        if not hits:
            known = ", ".join(
                str(c.epoch if c.epoch is not None else c.step if c.step is not None else c.name) for c in cks
            )
            raise UsageError(f"--epochs: no checkpoint matches {token!r}; this run has: {known}")
        chosen += [c for c in hits if c not in chosen]
    return sorted(chosen, key=cks.index)


def _cmd_grid(args) -> int:
    from tqdm import tqdm

    config = load_config(args.config)
    lora_dir = Path(args.loras).expanduser() if args.loras else config.lora_dir
    if lora_dir is None:
        raise UsageError(f"no LoRA folder: pass --loras DIR or set [loras] dir in {config.source}")
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the sheet (it is created when missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {out} cannot be created ({err.strerror or err}); give a folder you can write") from err
    run = scan_run(lora_dir)
    cks = select(run, [t for part in args.epochs for t in part.split(",") if t]) if args.epochs else run
    if not cks and args.no_base:
        raise UsageError(f"nothing to render: {lora_dir} has no checkpoints and --no-base was given")
    settings = RenderSettings(
        steps=config.steps if args.steps is None else args.steps,
        guidance=config.guidance if args.guidance is None else args.guidance,
        width=config.width if args.width is None else args.width,
        height=config.height if args.height is None else args.height,
        negative=config.negative if args.negative is None else args.negative,
    )
    prompts = args.prompt or config.prompts()
    seeds = args.seed or [config.seed]
    scales = args.scale or [1.0]
    try:
        base = get_base(config)
    except BaseModelError as err:
        print(f"error: nothing could render: {err}", file=sys.stderr)
        return 1
    rows, cells = plan_grid(cks, prompts=prompts, seeds=seeds, scales=scales, include_base=not args.no_base)
    target_rank = max([c.rank or 0 for c in run if c.error is None] or [0])
    with tqdm(total=len(cells), desc="rendering", unit="cell", disable=args.quiet) as bar:
        reported = set()

        def progress(done, total, result):
            bar.update(1)
            if result.status == "error" and (result.cell.name, result.error) not in reported:
                reported.add((result.cell.name, result.error))
                tqdm.write(f"error in {result.cell.name}: {result.error}", file=sys.stderr)

        with measure_grid(base) as stats:
            results = render_cells(base, cells, settings, target_rank=target_rank, progress=progress)
    info = SheetInfo(
        base=config.name,
        run=str(lora_dir),
        settings=settings,
        prompts=tuple(prompts),
        seeds=tuple(seeds),
        scales=tuple(scales),
    )
    manifest = export_sheet(
        out,
        results,
        rows,
        info,
        preset=args.sheet,
        share_format=args.share_format,
        paper=args.paper,
        small_pdf=args.small_pdf,
        release=_release(run),
        stats=stats,
    )
    ok = sum(c["status"] == "ok" for c in manifest["cells"])
    print(f"wrote {out}: {ok} of {len(results)} cells rendered, {len(results) - ok} errors (see manifest.json)")
    for line in file_sizes(manifest["files"]):
        print(f"  {line}")
    if ok == 0:
        print("error: nothing could render; every cell failed (messages above)", file=sys.stderr)
        return 1
    return 0


def _release(run: list[Checkpoint]) -> dict | None:
    """The run's release record, for the PDF's cover (None when there is none or it cannot be read)."""
    usable = [c for c in run if c.error is None]
    if not usable:
        return None
    try:
        return DecisionStore(usable[0].run_dir).release()
    except DecisionError as err:
        logger.warning("the release record is not on the sheet: %s", err)
        return None


def _cmd_bench(args) -> int:
    from .bench.swap import bench_swap, format_table

    result = bench_swap(
        rank=args.rank,
        dim=args.dim,
        layers=args.layers,
        refiner_layers=args.refiner_layers,
        repeats=args.repeats,
        device=args.device,
        dtype=args.dtype,
        progress=lambda msg: print(f"... {msg}", file=sys.stderr),
    )
    print(format_table(result))
    return 0


def _cmd_bench_grid(args) -> int:
    from .bench.grid import bench_grid, format_grid_table

    result = bench_grid(
        size=args.size,
        steps=args.steps,
        k=args.k,
        rank=args.rank,
        layers=args.layers,
        refiner_layers=args.refiner_layers,
        text_layers=args.text_layers,
        device=args.device,
        dtype=args.dtype,
        text_encoder=args.text_encoder,
        naive=not args.no_naive,
        progress=lambda msg: print(f"... {msg}", file=sys.stderr),
    )
    print(format_grid_table(result))
    return 0


def _cmd_demo_build(args) -> int:
    import time

    from .demo.build import QUICK, DemoPlan, build_demo

    started = time.perf_counter()
    plan = QUICK if args.quick else DemoPlan()
    models, loras = build_demo(args.models, args.loras, plan=plan, lora_only=args.lora_only)
    print(
        f"built the demo base in {models} and its LoRA run in {loras} ({(time.perf_counter() - started) / 60:.1f} min)"
    )
    return 0


def _cmd_demo_report(args) -> int:
    from tqdm import tqdm

    from .demo.report import run_report

    config = load_config(args.config)
    with tqdm(desc="rendering", unit="cell") as bar:
        report = run_report(config, out_dir=args.out, progress=lambda done, total, r: bar.update(1))
    print(report.text)
    print(f"sheet and report written to {args.out}")
    if args.update_readme:
        readme = config.model_path / "README.md"
        head = readme.read_text().split("## Report")[0]
        readme.write_text(f"{head}## Report\n\nOutput of `python -m zbench demo report`:\n\n{report.text}")
        print(f"updated {readme}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m zbench", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("scan", help="list a run's checkpoints in order, with what their headers say")
    p.add_argument("loras", help="the folder the trainer saved checkpoints in")
    p.add_argument("--json", action="store_true", help="print a JSON list in display order")
    p.add_argument("--all-meta", action="store_true", help="print every header metadata field")
    p.add_argument(
        "--hash", action="store_true", help="also print each file's sha256 (reads every byte; a scan reads headers)"
    )
    p.set_defaults(func=_cmd_scan)

    p = sub.add_parser("grid", help="render the same prompt and seed across checkpoints into a sheet")
    p.add_argument("--config", help="bench config TOML (default: configs/demo.toml)")
    p.add_argument("--loras", help="LoRA run folder (default: the config's [loras] dir)")
    p.add_argument("--epochs", action="append", help="checkpoints to show: epochs/steps/names, comma-separated")
    p.add_argument("--prompt", action="append", help="a prompt; repeat for a row per prompt")
    p.add_argument("--negative", help="negative prompt (used when guidance > 0)")
    p.add_argument("--seed", action="append", type=_argument(_seed), help="a seed; repeat for a row per seed")
    p.add_argument("--steps", type=_argument(_steps), help="denoising steps (default: the config's)")
    p.add_argument("--guidance", type=_argument(_guidance), help="CFG scale; 0 turns CFG off (default: the config's)")
    p.add_argument("--width", type=_argument(_side), help="image width, a multiple of 16 (default: the config's)")
    p.add_argument("--height", type=_argument(_side), help="image height, a multiple of 16 (default: the config's)")
    p.add_argument(
        "--scale", action="append", type=_argument(_scale), help="LoRA scale in [-4, 4]; repeat for a row per scale"
    )
    p.add_argument("--no-base", action="store_true", help="leave out the base (LoRA off) column")
    p.add_argument(
        "--sheet",
        choices=["share", "archive", "both"],
        default="both",
        help="share: share image, HTML viewer, timelines; archive: PNG pages, PDF, cells, zip (default: both)",
    )
    p.add_argument("--share-format", choices=["webp", "jpg"], default="webp", help="the share image's format")
    p.add_argument("--paper", choices=["a4", "letter"], default="a4", help="the PDF's paper size")
    p.add_argument("--small-pdf", action="store_true", help="JPEG images in the PDF (smaller, not lossless)")
    p.add_argument(
        "--out", required=True, help="folder for sheet.png (or pages), sheet.pdf, cells/, cells.zip and manifest.json"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_grid)

    p = sub.add_parser("bench", help="benchmarks")
    bench = p.add_subparsers(dest="what", required=True)
    b = bench.add_parser("swap", help="checkpoint swap time: zbench vs diffusers vs the memcpy floor")
    b.add_argument("--rank", type=int, default=32)
    b.add_argument("--dim", type=int, default=3840, help="transformer width (Z-Image-Turbo: 3840)")
    b.add_argument("--layers", type=int, default=30, help="main blocks (Z-Image-Turbo: 30)")
    b.add_argument("--refiner-layers", type=int, default=2, help="noise and context refiner blocks each (2)")
    b.add_argument("--repeats", type=int, default=15)
    b.add_argument("--device", default="cpu")
    b.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    b.set_defaults(func=_cmd_bench)
    b = bench.add_parser(
        "grid", help="a K-checkpoint grid on Z-Image-Turbo's architecture: render, swap, overhead, memory, vs diffusers"
    )
    b.add_argument("--size", type=_argument(_side), default=1024, help="image width and height (1024)")
    b.add_argument("--steps", type=_argument(_steps), default=8, help="denoising steps (8: Turbo's recipe)")
    b.add_argument("--k", type=_argument(_steps), default=10, help="checkpoints in the grid (10)")
    b.add_argument("--rank", type=_argument(_steps), default=32)
    b.add_argument("--layers", type=int, default=30, help="main transformer blocks (Z-Image-Turbo: 30)")
    b.add_argument("--refiner-layers", type=int, default=2, help="noise and context refiner blocks each (2)")
    b.add_argument("--text-layers", type=int, default=36, help="text encoder layers (Qwen3-4B: 36)")
    b.add_argument("--device", default="auto")
    b.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    b.add_argument("--text-encoder", default="auto", choices=["auto", "gpu", "cpu", "offload-after-encode"])
    b.add_argument("--no-naive", action="store_true", help="skip the diffusers unload + load comparison")
    b.set_defaults(func=_cmd_bench_grid)

    p = sub.add_parser("demo", help="the embedded demo")
    demo = p.add_subparsers(dest="what", required=True)
    d = demo.add_parser("build", help="train the demo base and its LoRA run on CPU (about 45 min; --quick: 1 min)")
    d.add_argument("--quick", action="store_true", help="a tiny version, to check the build works")
    d.add_argument("--models", help="where the base goes (default: models/zbench-demo)")
    d.add_argument("--loras", help="where the LoRA run goes (default: loras/dreamy)")
    d.add_argument(
        "--lora-only", action="store_true", help="keep the base in --models and retrain only the LoRA run (3 min)"
    )
    d.set_defaults(func=_cmd_demo_build)
    d = demo.add_parser("report", help="measure the demo: adherence, style and change per epoch; write a sheet")
    d.add_argument("--config", help="bench config (default: configs/demo.toml)")
    d.add_argument("--out", default="out/demo-report", help="folder for sheet.png and report.md")
    d.add_argument("--update-readme", action="store_true", help="put the report into the model's README.md")
    d.set_defaults(func=_cmd_demo_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        _quiet_libraries()
    try:
        return args.func(args)
    except BrokenPipeError:  # `... | head` closed the pipe: not an error of ours
        sys.stdout = None
        return 0
    except (UsageError, ConfigError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _quiet_libraries() -> None:
    """diffusers and transformers print loading bars and notices that drown the CLI's own output."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
