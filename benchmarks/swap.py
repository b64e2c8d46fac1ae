"""Swap benchmark at Z-Image-Turbo's full size: `python benchmarks/swap.py [--rank 32 ...]`.

The same as `python -m zbench bench swap`; flags: --rank, --dim, --layers, --refiner-layers,
--repeats, --device, --dtype. Needs about 13 GiB of RAM at full size (bf16).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "swap", *sys.argv[1:]]))
