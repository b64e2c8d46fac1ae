"""Grid benchmark on Z-Image-Turbo's architecture: `python benchmarks/grid.py [--size 1024 ...]`.

The same as `python -m zbench bench grid`; flags: --size, --steps, --k, --rank, --layers, --refiner-layers,
--text-layers, --device, --dtype, --text-encoder, --no-naive. Full depth needs a GPU (about 25 GB in bf16).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "grid", *sys.argv[1:]]))
