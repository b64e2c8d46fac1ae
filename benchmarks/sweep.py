"""Sweep benchmark: cells per second in one process and over 1 and 2 local Ray workers.

`python benchmarks/sweep.py [--checkpoints 10] [--prompts 4] [--seeds 2] [--threads 1]`

Renders the same sweep on the embedded demo (its base and run; 128 px, 8 steps) four ways, one after
another in this process, each into a fresh folder: one process at 1 thread and at the machine's cores,
then Ray with 1 and with 2 workers of ``--threads`` each. It prints wall time (start-up included: base
loads, Ray's start) and the steady rate (cells between the first and the last one stored), and checks
that every way stored the same images as the one-process run at the same thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zbench


def spec_file(folder: Path, checkpoints: int, prompts: int, seeds: int) -> Path:
    demo = zbench.load_config()
    colors = ["red", "blue", "green", "yellow", "white", "purple"]
    shapes = ["circle", "square", "triangle"]
    lines = [f"a {colors[i % 6]} {shapes[i % 3]} on a {colors[(i + 2) % 6]} background" for i in range(prompts)]
    path = folder / "bench.toml"
    path.write_text(
        f"config = {json.dumps(str(demo.source))}\n"
        f"prompts = {json.dumps(lines)}\n"
        f'seeds = "1-{seeds}"\n'
        f"[checkpoints]\nlast = {checkpoints}\n"
    )
    return path


def measure(spec, out: Path, **how) -> dict:
    started = time.perf_counter()
    summary = zbench.run_sweep(spec, out, quiet=True, **how)
    wall = time.perf_counter() - started
    records = sorted(zbench.SweepStore(out).records().values(), key=lambda r: r["finished"])
    steady = (len(records) - 1) / max(records[-1]["finished"] - records[0]["finished"], 1e-9)
    return {"cells": summary.rendered, "wall": wall, "steady": steady, "out": out}


def images(out: Path) -> dict[str, np.ndarray]:
    return {
        r["key"]: np.asarray(Image.open(out / r["image"]))
        for r in zbench.SweepStore(out).records().values()
        if r["image"]
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", type=int, default=10, help="the run's last N checkpoints (default 10)")
    parser.add_argument("--prompts", type=int, default=4, help="prompts (default 4)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per prompt (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per Ray worker (default 1)")
    args = parser.parse_args(argv)
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="zbench-sweep-bench-") as tmp:
        tmp = Path(tmp)
        spec = zbench.load_sweep(spec_file(tmp, args.checkpoints, args.prompts, args.seeds))
        ways = [
            ("one process", {"threads": args.threads}, 1, args.threads),
            ("one process", {"threads": cores}, 1, cores),
            ("Ray, local", {"workers": 1, "threads": args.threads}, 1, args.threads),
            ("Ray, local", {"workers": 2, "threads": args.threads}, 2, args.threads),
        ]
        for i, (mode, how, workers, threads) in enumerate(ways):
            result = measure(spec, tmp / f"out-{i}", **how)
            ray.shutdown()  # each Ray row starts its own local cluster with the CPUs it asks for
            rows.append((mode, workers, threads, result))
        reference = images(rows[0][3]["out"])
        same = []
        for _, _, threads, r in rows:  # bit-identical is promised at the same thread count
            got = images(r["out"])
            equal = got.keys() == reference.keys() and all(np.array_equal(got[k], reference[k]) for k in got)
            same.append(str(equal) if threads == args.threads else "(other thread count)")
    total = rows[0][3]["cells"]
    print(
        f"sweep on the embedded demo: {args.checkpoints} checkpoints + base × {args.prompts} prompts × {args.seeds} "
        f"seeds = {total} cells, 128 px, 8 steps, cpu float32"
    )
    print(f"machine: {platform.machine()}, {cores} cores, python {platform.python_version()}, ray {ray.__version__}\n")
    print("| mode | workers | threads each | cells | wall s (start-up incl.) | steady cells/s | same images as row 1 |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for (mode, workers, threads, r), ok in zip(rows, same, strict=True):
        print(f"| {mode} | {workers} | {threads} | {r['cells']} | {r['wall']:.1f} | {r['steady']:.2f} | {ok} |")
    one, two = rows[2][3], rows[3][3]
    steady, wall = two["steady"] / one["steady"], one["wall"] / two["wall"]
    print(f"\n2 Ray workers / 1 Ray worker: {steady:.2f}x steady, {wall:.2f}x wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
