"""A run at a real run's size from the demo: ``epochs`` checkpoints named the way kohya names them.

The page and its benchmark are checked on 25-30 checkpoints, the length of a real training run, while
the demo ships 10. Each new checkpoint blends two neighbouring demo epochs (linear in the LoRA weights),
so the style still grows from the first file to the last; ``ss_epoch`` and ``ss_steps`` are rewritten
to match the new name. Nothing here is a stand-in: the files are real LoRAs the real pipeline loads.
"""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from ..engine.checkpoints import scan_run

__all__ = ["blend_run"]


def blend_run(source: str | Path, run: str | Path, epochs: int, *, name: str = "dreamy") -> list[Path]:
    """Write ``epochs`` checkpoints ``<name>-000001.safetensors`` ... into ``run`` (created; must not exist).

    Returns:
        The written files, in training order.
    """
    if epochs < 2:
        raise ValueError(f"a blended run needs at least 2 epochs, got {epochs}")
    files = [c.path for c in scan_run(source) if c.error is None]
    if len(files) < 2:
        raise ValueError(f"{source} needs at least two usable checkpoints to blend, has {len(files)}")
    states, metas = [], []
    for path in files:
        with safe_open(str(path), "pt") as f:
            states.append({k: f.get_tensor(k) for k in f.keys()})
            metas.append(f.metadata() or {})
    out = Path(run)
    out.mkdir(parents=True)
    written = []
    for epoch in range(1, epochs + 1):
        t = (epoch - 1) / (epochs - 1) * (len(files) - 1)
        i = min(int(t), len(files) - 2)
        a = t - i
        state = {k: ((1 - a) * v + a * states[i + 1][k]).contiguous() for k, v in states[i].items()}
        steps_per_epoch = 30
        meta = {**metas[i], "ss_epoch": str(epoch), "ss_steps": str(epoch * steps_per_epoch)}
        path = out / f"{name}-{epoch:06d}.safetensors"
        save_file(state, str(path), metadata=meta)
        written.append(path)
    return written
