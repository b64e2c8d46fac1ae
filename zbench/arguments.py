"""Command-line values checked as the page checks them, with messages that say what was wrong."""

from __future__ import annotations

import argparse

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


def number(text: str, kind, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{what} should be a {'whole ' if kind is int else ''}number, got {text!r}") from None
    return value


def steps(text: str) -> int:
    value = number(text, int, "steps")
    if value < 1:
        raise ValueError(f"steps should be at least 1, got {value}")
    return value


def side(text: str) -> int:
    value = number(text, int, "width and height")
    if value < 16 or value % 16:
        raise ValueError(f"width and height should be positive multiples of 16, got {value}")
    return value


def guidance(text: str) -> float:
    value = number(text, float, "guidance")
    if not 0 <= value < float("inf"):
        raise ValueError(f"guidance should be a finite number >= 0, got {text!r}")
    return value


def one(parse, what: str):
    def first(text: str):
        values = parse(text)
        if len(values) != 1:
            raise ValueError(f"give one {what} per --{what.split()[-1]} (repeat the option for more), got {text!r}")
        return values[0]

    return first


seed = one(parse_seeds, "seed")
scale = one(parse_scales, "LoRA scale")
