"""``python -m zbench bench swap|grid``: the benchmarks' command line."""

from __future__ import annotations

import sys

from ..arguments import argument, side, steps

__all__ = ["add_bench_commands"]


def add_bench_commands(sub) -> None:
    """Add ``bench swap`` and ``bench grid`` to the ``python -m zbench`` parser's subcommands."""
    p = sub.add_parser("bench", help="benchmarks")
    bench = p.add_subparsers(dest="what", required=True)
    b = bench.add_parser("swap", help="checkpoint swap time: zbench vs diffusers vs the memcpy floor")
    b.add_argument("--rank", type=int, default=32)
    b.add_argument("--dim", type=int, default=3840, help="transformer width (Z-Image-Turbo: 3840)")
    b.add_argument("--layers", type=int, default=30, help="main blocks (Z-Image-Turbo: 30)")
    b.add_argument("--refiner-layers", type=int, default=2, help="noise and context refiner blocks each (2)")
    b.add_argument("--repeats", type=int, default=15)
    b.add_argument("--lokr-factor", type=int, default=8, help="LoKr rows: w1 is factor x factor, w2 whole (8)")
    b.add_argument("--loha-rank", type=int, default=16, help="LoHa rows' rank (16: the size of a rank-32 LoRA)")
    b.add_argument("--device", default="cpu")
    b.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    b.set_defaults(func=_swap)
    b = bench.add_parser(
        "grid", help="a K-checkpoint grid on Z-Image-Turbo's architecture: render, swap, overhead, memory, vs diffusers"
    )
    b.add_argument("--size", type=argument(side), default=1024, help="image width and height (1024)")
    b.add_argument("--steps", type=argument(steps), default=8, help="denoising steps (8: Turbo's recipe)")
    b.add_argument("--k", type=argument(steps), default=10, help="checkpoints in the grid (10)")
    b.add_argument("--rank", type=argument(steps), default=32)
    b.add_argument("--layers", type=int, default=30, help="main transformer blocks (Z-Image-Turbo: 30)")
    b.add_argument("--refiner-layers", type=int, default=2, help="noise and context refiner blocks each (2)")
    b.add_argument("--text-layers", type=int, default=36, help="text encoder layers (Qwen3-4B: 36)")
    b.add_argument("--device", default="auto")
    b.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    b.add_argument("--text-encoder", default="auto", choices=["auto", "gpu", "cpu", "offload-after-encode"])
    b.add_argument("--no-naive", action="store_true", help="skip the diffusers unload + load comparison")
    rows = "rows of the eager denoiser, the compiled one (torch.compile, inductor), or both (default)"
    b.add_argument("--compile", default="both", choices=["both", "eager", "compiled"], help=rows)
    peak = "the device's dense peak in TFLOP/s (default: the GPU's published bf16 figure, where known)"
    b.add_argument("--peak-tflops", type=float, default=None, help=peak)
    b.set_defaults(func=_grid)


def _swap(args) -> int:
    from .swap import bench_swap, format_table

    result = bench_swap(
        rank=args.rank,
        dim=args.dim,
        layers=args.layers,
        refiner_layers=args.refiner_layers,
        repeats=args.repeats,
        lokr_factor=args.lokr_factor,
        loha_rank=args.loha_rank,
        device=args.device,
        dtype=args.dtype,
        progress=lambda msg: print(f"... {msg}", file=sys.stderr),
    )
    print(format_table(result))
    return 0


def _grid(args) -> int:
    from .grid import bench_grid, format_grid_table

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
        compile=args.compile,
        peak_tflops=args.peak_tflops,
        progress=lambda msg: print(f"... {msg}", file=sys.stderr),
    )
    print(format_grid_table(result))
    return 0
