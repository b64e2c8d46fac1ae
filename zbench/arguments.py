"""Command-line values checked by the rules every way in shares (``engine.limits``), with messages that say what
was wrong; argparse turns them into exit status 2."""

from __future__ import annotations

import argparse

from .engine.limits import check_guidance, check_side, check_steps
from .review.grid import parse_scales, parse_seeds

__all__ = ["argument", "guidance", "scale", "seed", "side", "steps"]


def argument(parse):
    """An argparse type that shows the parser's own message ("steps should be at least 1, got 0")."""

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return convert


def steps(text: str) -> int:
    return check_steps(text)


def side(text: str) -> int:
    return check_side(text, "width and height")


def guidance(text: str) -> float:
    return check_guidance(text)


def one(parse, what: str):
    def first(text: str):
        values = parse(text)
        if len(values) != 1:
            raise ValueError(f"give one {what} per --{what.split()[-1]} (repeat the option for more), got {text!r}")
        return values[0]

    return first


seed = one(parse_seeds, "seed")
scale = one(parse_scales, "LoRA scale")
