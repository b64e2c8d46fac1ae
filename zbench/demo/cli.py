"""``python -m zbench demo build|report``: the embedded demo's command line."""

from __future__ import annotations

from ..engine.config import load_config

__all__ = ["add_demo_commands"]


def add_demo_commands(sub) -> None:
    """Add ``demo build`` and ``demo report`` to the ``python -m zbench`` parser's subcommands."""
    p = sub.add_parser("demo", help="the embedded demo")
    demo = p.add_subparsers(dest="what", required=True)
    d = demo.add_parser("build", help="train the demo base and its LoRA run on CPU (about 45 min; --quick: 1 min)")
    d.add_argument("--quick", action="store_true", help="a tiny version, to check the build works")
    d.add_argument("--models", help="where the base goes (default: models/zbench-demo)")
    d.add_argument("--loras", help="where the LoRA run goes (default: loras/dreamy)")
    d.add_argument(
        "--lora-only", action="store_true", help="keep the base in --models and retrain only the LoRA run (3 min)"
    )
    d.set_defaults(func=_build)
    d = demo.add_parser("report", help="measure the demo: adherence, style and change per epoch; write a sheet")
    d.add_argument("--config", help="bench config (default: configs/demo.toml)")
    d.add_argument("--out", default="out/demo-report", help="folder for sheet.png and report.md")
    d.add_argument("--update-readme", action="store_true", help="put the report into the model's README.md")
    d.set_defaults(func=_report)


def _build(args) -> int:
    import time

    from .build import QUICK, DemoPlan, build_demo

    started = time.perf_counter()
    plan = QUICK if args.quick else DemoPlan()
    models, loras = build_demo(args.models, args.loras, plan=plan, lora_only=args.lora_only)
    print(
        f"built the demo base in {models} and its LoRA run in {loras} ({(time.perf_counter() - started) / 60:.1f} min)"
    )
    return 0


def _report(args) -> int:
    from tqdm import tqdm

    from .report import run_report

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
