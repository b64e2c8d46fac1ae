"""``zbench`` (or ``python -m zbench``): open the page, scan a run, render a comparison grid, sweep, suggest a
release, benchmark swaps, build the demo."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import (
    BaseModelError,
    ConfigError,
    RenderSettings,
    SheetInfo,
    Signals,
    export_decision,
    export_sheet,
    file_sizes,
    get_base,
    load_config,
    measure_grid,
    plan_grid,
    render_cells,
    scan_run,
    select_checkpoints,
    signal_cache,
)
from .arguments import argument, guidance, scale, seed, side, steps
from .bench.cli import add_bench_commands
from .demo.cli import add_demo_commands
from .engine import jsonio
from .engine.compiled import compile_steps
from .engine.config import DATA_ROOT
from .suggest_cli import add_suggest_command, cell_progress
from .sweep.cli import add_sweep_command

__all__ = ["main"]

logger = logging.getLogger("zbench")


class UsageError(Exception):
    """Bad arguments: printed as one line, exit code 2."""


def _cmd_scan(args) -> int:
    cks = scan_run(args.loras)
    if args.json:
        print(jsonio.dumps([c.to_json(with_hash=args.hash) for c in cks], indent=2))
        return 0
    if not cks:
        print(f"no checkpoints in {args.loras} (looked for *.safetensors and checkpoint-*/ folders)")
        return 0
    print(
        f"{'#':>3}  {'checkpoint':<44} {'epoch':>6} {'step':>7} {'adapter':<8} {'rank':>5} {'alpha':>6} "
        f"{'trainer':<16} {'format':<12} {'size':>9}" + (f"  {'hash':<12}" if args.hash else "")
    )
    for i, c in enumerate(cks, 1):
        alpha = "" if c.alpha is None else f"{c.alpha:g}"
        adapter = c.adapter_name + (f" f{c.factor}" if c.factor else "")
        size = f"{c.size / 2**20:.1f} MiB" if c.size else ""
        print(
            f"{i:>3}  {c.name[:44]:<44} {_s(c.epoch):>6} {_s(c.step):>7} {adapter:<8} {_s(c.rank):>5} {alpha:>6} "
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


def _s(value) -> str:
    return "" if value is None else str(value)


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
    try:
        cks = select_checkpoints(run, [t for part in args.epochs for t in part.split(",") if t]) if args.epochs else run
    except ValueError as err:
        raise UsageError(f"--epochs: {err}") from err
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
        with measure_grid(base) as stats:
            results = render_cells(
                base,
                cells,
                settings,
                target_rank=target_rank,
                progress=cell_progress(bar),
                on_step=compile_steps(base, bar),
            )
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
        # the release, shortlist, ratings and signals, marked on the columns (none where the run has no records)
        **export_decision(
            run, results, signals=Signals.from_config(config), cache=signal_cache(), size=config.shortlist_size
        ),
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


def _cmd_page(args) -> int:
    """``streamlit run app.py`` on the config and run given (the page reads ZBENCH_CONFIG and ZBENCH_RUN)."""
    import os
    import subprocess
    from urllib.parse import quote

    app = DATA_ROOT / "app.py"
    if not app.is_file():
        raise UsageError(f"the page's script {app} is missing; reinstall zbench, or run it from a clone")
    env = dict(os.environ)
    if args.config:
        config = Path(args.config).expanduser().resolve()
        load_config(config)  # a bad config is said here, before a server starts
        env["ZBENCH_CONFIG"] = str(config)
    url = f"http://127.0.0.1:{args.port}"
    if args.run:
        run = Path(args.run).expanduser().resolve()
        if not run.exists():
            raise UsageError(f"{run} does not exist; give the folder your trainer saved checkpoints in")
        env["ZBENCH_RUN"] = str(run)
        url += f"/?run={quote(str(run))}"
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port)]
    cmd += ["--browser.gatherUsageStats", "false"] + (["--server.headless", "true"] if args.headless else [])
    print(f"zbench page: {url} (Ctrl+C stops it)", flush=True)
    if os.name == "posix":  # become the server: a signal to this process (a service manager's stop) stops it
        os.chdir(app.parent)
        os.execve(sys.executable, cmd, env)
    try:
        return subprocess.call(cmd, cwd=app.parent, env=env)
    except KeyboardInterrupt:
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zbench", description=__doc__)
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
    p.add_argument("--seed", action="append", type=argument(seed), help="a seed; repeat for a row per seed")
    p.add_argument("--steps", type=argument(steps), help="denoising steps (default: the config's)")
    p.add_argument("--guidance", type=argument(guidance), help="CFG scale; 0 turns CFG off (default: the config's)")
    p.add_argument("--width", type=argument(side), help="image width, a multiple of 16 (default: the config's)")
    p.add_argument("--height", type=argument(side), help="image height, a multiple of 16 (default: the config's)")
    p.add_argument(
        "--scale", action="append", type=argument(scale), help="LoRA scale in [-4, 4]; repeat for a row per scale"
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

    p = sub.add_parser("page", help="open the bench page (Streamlit) on a run, or on the embedded demo")
    p.add_argument("run", nargs="?", help="the LoRA run folder, or one checkpoint of it (default: the config's run)")
    p.add_argument("--config", help="bench config TOML (default: the embedded demo's)")
    p.add_argument("--port", type=int, default=8501, help="the port to serve on (default 8501)")
    p.add_argument("--headless", action="store_true", help="do not open a browser")
    p.set_defaults(func=_cmd_page)

    add_suggest_command(sub)
    add_sweep_command(sub)
    add_bench_commands(sub)
    add_demo_commands(sub)
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
