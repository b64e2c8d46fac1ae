"""Sweep specs: a TOML file naming a base config, a run, and the prompts, seeds and scales to render.

A sweep is a grid too big for one sitting (30 checkpoints × 50 prompts × 4 seeds): it is rendered into a
folder cell by cell, resumes where it stopped, and may be spread over Ray workers. The spec is data,
never executed; relative paths in it are relative to the spec file. See ``configs/sweeps/demo.toml``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.checkpoints import Checkpoint, scan_run
from ..engine.config import BenchConfig, ConfigError, load_config, read_prompts
from ..engine.jsonio import JsonError, read_regular
from ..engine.limits import LimitError, check_prompts, check_scales, check_seeds
from ..engine.plan import RenderSettings
from ..engine.runs import select_checkpoints
from ..review.grid import parse_scales, parse_seeds

__all__ = ["SweepSpec", "load_sweep"]

TOP = {"config", "loras", "prompts", "prompts_file", "seeds", "scales", "base_column", "checkpoints", "render"}
CHECKPOINTS = {"names", "every", "last"}
RENDER = {"steps", "guidance", "width", "height", "negative"}
MAX_SPEC_BYTES = 2**20  # a spec is a few hundred bytes; its prompts belong in a prompts file


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep renders: rows prompt × seed × scale across the chosen checkpoints (and the base)."""

    config: BenchConfig
    run_dir: Path
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    scales: tuple[float, ...]
    settings: RenderSettings
    names: tuple[str, ...] = ()  # epochs, "final" or file names; empty: every checkpoint
    every: int = 1
    last: int = 0
    base_column: bool = True
    source: Path | None = field(default=None, compare=False)

    def checkpoints(self) -> tuple[list[Checkpoint], list[Checkpoint]]:
        """(the whole run, the checkpoints this sweep renders), both in run order.

        Raises:
            ConfigError: a name matches no checkpoint of the run.
        """
        run = scan_run(self.run_dir)
        try:
            return run, select_checkpoints(run, list(self.names), every=self.every, last=self.last)
        except ValueError as err:
            raise ConfigError(f"{self.source}: [checkpoints] {err}") from err


def load_sweep(path: str | Path) -> SweepSpec:
    """Read a sweep spec.

    Raises:
        ConfigError: the file is missing or malformed, names an unknown key, or a value is unusable;
            the message names the file and the key.
    """
    path = Path(path).expanduser()
    try:
        data = tomllib.loads(read_regular(path, max_bytes=MAX_SPEC_BYTES, what="sweep spec").decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"sweep spec {path} does not exist; see configs/sweeps/demo.toml for an example") from None
    except JsonError as err:
        raise ConfigError(str(err)) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"sweep spec {path} cannot be read: {err}") from None
    where = path.resolve().parent

    def fail(key: str, what: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {what}")

    for keys, table, name in ((TOP, data, ""), (CHECKPOINTS, data.get("checkpoints", {}), "[checkpoints] ")):
        if not isinstance(table, dict):
            raise fail(name.strip() or "checkpoints", "must be a table")
        unknown = sorted(set(table) - keys)
        if unknown:
            raise fail(name + unknown[0], f"unknown key; known: {', '.join(sorted(keys))}")
    render = data.get("render", {})
    if not isinstance(render, dict) or set(render) - RENDER:
        raise fail("[render]", f"a table of {', '.join(sorted(RENDER))}")
    if not isinstance(data.get("config"), str):
        raise fail("config", 'the base config to render with, e.g. config = "../demo.toml"')
    config = load_config(where / data["config"])
    loras = data.get("loras")
    if loras is not None and (not isinstance(loras, str) or not loras.strip()):
        raise fail("loras", f'the run folder as a path in quotes, e.g. loras = "../../loras/dreamy", got {loras!r}')
    run_dir = (where / Path(loras).expanduser()).resolve() if loras is not None else config.lora_dir
    if run_dir is None:
        raise fail("loras", f"no run folder: set loras here or [loras] dir in {config.source}")

    prompts: list[str] = []
    raw = data.get("prompts", [])
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise fail("prompts", "a list of strings")
    prompts += [p.strip() for p in raw if p.strip()]
    if "prompts_file" in data:
        if not isinstance(data["prompts_file"], str):
            raise fail("prompts_file", "a path to a text file, one prompt per line")
        prompts += read_prompts(where / data["prompts_file"], source=path)
    prompts = prompts or list(config.prompts())
    try:
        prompts = check_prompts(prompts)
        seeds = check_seeds(_numbers(data.get("seeds", str(config.seed)), parse_seeds, int, "seeds"), "seeds")
        scales = check_scales(_numbers(data.get("scales", "1"), parse_scales, float, "scales"), "scales")
    except LimitError as err:
        raise ConfigError(f"{path}: {err}") from None
    except (ValueError, TypeError) as err:
        raise fail("seeds/scales", str(err)) from None
    picks = data.get("checkpoints", {})
    names = picks.get("names", [])
    every, last = picks.get("every", 1), picks.get("last", 0)
    if not isinstance(names, list) or not all(isinstance(n, str | int) for n in names):
        raise fail("[checkpoints] names", 'a list of epochs, "final" or file names')
    if not isinstance(every, int) or every < 1 or not isinstance(last, int) or last < 0:
        raise fail("[checkpoints] every/last", "every is 1 or more, last 0 or more (0: all)")
    try:  # the types as given (a float width or a string of steps is refused, never rounded), then the rules
        settings = RenderSettings(
            steps=_given(render, "steps", config.steps, int),
            guidance=_given(render, "guidance", config.guidance, float),
            width=_given(render, "width", config.width, int),
            height=_given(render, "height", config.height, int),
            negative=_given(render, "negative", config.negative, str),
        )
    except LimitError as err:
        raise fail("[render] " + err.key, str(err).split(": ", 1)[1]) from None
    base_column = data.get("base_column", True)
    if not isinstance(base_column, bool):
        raise fail("base_column", "true or false")
    return SweepSpec(
        config=config,
        run_dir=run_dir,
        prompts=tuple(prompts),
        seeds=tuple(seeds),
        scales=tuple(scales),
        settings=settings,
        names=tuple(str(n) for n in names),
        every=every,
        last=last,
        base_column=base_column,
        source=path,
    )


def _given(table: dict, key: str, default, kind: type):
    """``table[key]`` when it has the type ``kind`` (an int counts as a float; a bool as neither), else the
    default when absent; a value of another type is a LimitError naming the key."""
    if key not in table:
        return default
    value = table[key]
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        want = {int: "a whole number", float: "a number", str: "text in quotes"}[kind]
        raise LimitError(key, f"should be {want}, got {value!r} ({type(value).__name__})")
    return value


def _numbers(value, parse, kind, key: str) -> list:
    """Seeds or scales as the page takes them ("1-4", "1, 2, .., 10") or as a TOML list or number.

    A seed must be a whole number as written (1.5 is refused, never truncated to 1); a list is bounded like the
    page's text (``limits.MAX_SEEDS``), checked as it is read.
    """
    if isinstance(value, str):
        return parse(value)
    items = [value] if isinstance(value, int | float) and not isinstance(value, bool) else value
    if not isinstance(items, list) or not items:
        raise LimitError(key, f"a list of numbers or a string such as '1-4', got {value!r}")
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int | float) or (kind is int and not isinstance(v, int)):
            want = "whole numbers" if kind is int else "numbers"
            raise LimitError(key, f"should be {want} (a list, or a string such as '1-4'), got {v!r}")
    return [kind(v) for v in items]
