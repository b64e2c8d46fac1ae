"""``python -m zbench sweep SPEC --out DIR``: render a sweep spec, resumably, in one process or over Ray."""

from __future__ import annotations

import sys

__all__ = ["add_sweep_command"]


def add_sweep_command(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="render a sweep spec (checkpoints x prompts x seeds x scales) into a folder; a rerun renders only "
        "what is missing",
    )
    p.add_argument("spec", help="sweep spec TOML (see configs/sweeps/demo.toml)")
    p.add_argument(
        "--out",
        required=True,
        help="the sweep folder: images/, cells.jsonl, sweep.json; a new or empty folder, or a sweep's to resume",
    )
    p.add_argument("--workers", type=int, default=0, help="Ray workers to start (0: render in this process)")
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help='use a running Ray cluster (HOST:6379, "auto" or ray://HOST:10001); fails in seconds if none answers',
    )
    p.add_argument("--threads", type=int, help="torch CPU threads per worker (default: the cores shared out)")
    p.add_argument("--retry-errors", action="store_true", help="render error cells again")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_sweep)


def _sweep(args) -> int:
    from ..engine.pipeline import BaseModelError
    from .run import run_sweep
    from .spec import load_sweep
    from .store import SweepError

    if args.workers < 0 or (args.threads is not None and args.threads < 1):
        print("error: --workers is 0 or more and --threads 1 or more", file=sys.stderr)
        return 2
    spec = load_sweep(args.spec)  # ConfigError: exit 2 with the file and key
    try:
        summary = run_sweep(
            spec,
            args.out,
            workers=args.workers,
            ray_address=args.ray,
            threads=args.threads,
            retry_errors=args.retry_errors,
            quiet=args.quiet,
        )
    except (SweepError, BaseModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"{args.out}: {summary.total} cells: {summary.skipped} were done, {summary.rendered} rendered now "
        f"({summary.errors} errors) in {summary.seconds:.1f} s on {summary.workers} worker(s)"
    )
    return 0
