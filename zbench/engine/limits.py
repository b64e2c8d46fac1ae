"""One set of rules for every value a grid is rendered from, whichever way it came in.

The page's widgets, a restored ``page.json``, the ``zbench grid`` options, a sweep spec, a bench config and
the Python API all check steps, sizes, guidance, seeds, scales and prompts here, before any model loads, so a
value refused in one place is refused in all of them with the same words. Each ``check_*`` returns the value
(normalised: an int, a float) or raises :class:`LimitError` naming the key, the allowed range and what it got.

The bounds are what a comparison can use, with room: Turbo models run 8 steps and SDXL/Flux 20-50, so 200 is
plenty; the largest bases draw 2048 px, so 4096 is plenty; guidance above 30 burns every image; more than
1000 seeds or prompts is a typo (each is a row of the grid).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "MAX_GUIDANCE",
    "MAX_PROMPTS",
    "MAX_PROMPTS_FILE",
    "MAX_PROMPT_CHARS",
    "MAX_SCALE",
    "MAX_SCALES",
    "MAX_SEED",
    "MAX_SEEDS",
    "MAX_SIDE",
    "MAX_STEPS",
    "MIN_SIDE",
    "LimitError",
    "check_guidance",
    "check_prompt",
    "check_prompts",
    "check_scale",
    "check_scales",
    "check_seed",
    "check_seeds",
    "check_side",
    "check_steps",
    "read_prompts_file",
]

MAX_STEPS = 200
MIN_SIDE, MAX_SIDE = 16, 4096  # and a multiple of 16 (the VAE's 8 × the patch size 2)
MAX_GUIDANCE = 30.0
MAX_SCALE = 4.0  # LoRA strengths people compare lie within ±2; beyond ±4 images are noise
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes 0..2**64-1
MAX_SEEDS = 1000  # a typo like "1-100000" should be an error, not a grid of a hundred thousand rows
MAX_SCALES = 32
MAX_PROMPTS = 1000
MAX_PROMPT_CHARS = 20_000  # text encoders read 77-512 tokens; 20k characters is far past any of them
MAX_PROMPTS_FILE = 4 * 2**20  # bytes: 1000 prompts of 4000 characters


class LimitError(ValueError):
    """A value outside what zbench renders; the message names the key, the allowed range and the value."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value: object, key: str, what: str) -> int:
    """``value`` as an int when it is a whole number (an int, or a float/str that is one), else LimitError."""
    if isinstance(value, bool):
        raise LimitError(key, f"should be {what}, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    if isinstance(value, int):
        return value
    raise LimitError(key, f"should be {what}, got {value!r}")


def check_steps(value: object, key: str = "steps") -> int:
    steps = _whole(value, key, f"a whole number from 1 to {MAX_STEPS}")
    if not 1 <= steps <= MAX_STEPS:
        raise LimitError(key, f"should be from 1 to {MAX_STEPS}, got {steps}")
    return steps


def check_side(value: object, key: str = "width") -> int:
    what = f"a multiple of 16 from {MIN_SIDE} to {MAX_SIDE}"
    side = _whole(value, key, what)
    if not MIN_SIDE <= side <= MAX_SIDE or side % 16:
        raise LimitError(key, f"should be {what}, got {side}")
    return side


def check_guidance(value: object, key: str = "guidance") -> float:
    what = f"a number from 0 to {MAX_GUIDANCE:g} (0 turns classifier-free guidance off)"
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise LimitError(key, f"should be {what}, got {value!r}") from None
    if not _is_number(value) or not math.isfinite(value) or not 0 <= value <= MAX_GUIDANCE:
        raise LimitError(key, f"should be {what}, got {value!r}")
    return float(value)


def check_scale(value: object, key: str = "scale") -> float:
    """A LoRA scale: finite, within ±MAX_SCALE. Zero (the base, exactly) and negative (inverted) are allowed."""
    if not _is_number(value) or not math.isfinite(value) or not -MAX_SCALE <= value <= MAX_SCALE:
        raise LimitError(key, f"a LoRA scale should be between {-MAX_SCALE:g} and {MAX_SCALE:g}, got {value!r}")
    return float(value)


def check_scales(values: Iterable[object], key: str = "scales") -> list[float]:
    return _rows(values, check_scale, key, MAX_SCALES, "LoRA scales", "give at least one LoRA scale, e.g. 1")


def _rows(values: Iterable[object], check, key: str, most: int, what: str, none: str) -> list:
    """Each of ``values`` checked by ``check``, stopping as soon as there are more than ``most`` (a generator of a
    million seeds is never drawn out), and at least one."""
    out = []
    for value in values:
        out.append(check(value, key))
        if len(out) > most:
            raise LimitError(key, f"at most {most} {what} (each is a row of the grid)")
    if not out:
        raise LimitError(key, none)
    return out


def check_seed(value: object, key: str = "seed") -> int:
    seed = _whole(value, key, "a whole number from 0 to 2**64-1")
    if not 0 <= seed <= MAX_SEED:
        raise LimitError(key, f"should be between 0 and 2**64-1, got {seed}")
    return seed


def check_seeds(values: Iterable[object], key: str = "seeds") -> list[int]:
    return _rows(values, check_seed, key, MAX_SEEDS, "seeds", "give at least one seed, e.g. 42")


def _control(text: str) -> str | None:
    """The first character of ``text`` that a prompt cannot hold (a control character other than tab), or None."""
    for ch in text:
        if ch != "\t" and unicodedata.category(ch) == "Cc":
            return ch
    return None


def check_prompt(value: object, key: str = "prompt", *, empty: bool = False) -> str:
    """One prompt (or negative prompt when ``empty`` is allowed): text of at most MAX_PROMPT_CHARS characters,
    one line, no control characters (a NUL or an escape sequence in a prompt is a broken file, not a prompt)."""
    if not isinstance(value, str):
        raise LimitError(key, f"should be text, got {type(value).__name__}")
    text = value.strip()
    if not text and not empty:
        raise LimitError(key, "is empty; give a prompt")
    if len(text) > MAX_PROMPT_CHARS:
        raise LimitError(key, f"should be at most {MAX_PROMPT_CHARS:,} characters, got {len(text):,}")
    bad = _control(text)
    if bad is not None:
        raise LimitError(key, f"holds a control character ({bad!r}); prompts are plain text, one per line")
    return text


def check_prompts(values: Iterable[object], key: str = "prompts") -> list[str]:
    return _rows(values, check_prompt, key, MAX_PROMPTS, "prompts", "give at least one prompt")


def read_prompts_file(path: str | Path, key: str = "prompts_file") -> list[str]:
    """A prompt set file: a regular UTF-8 text file of at most MAX_PROMPTS_FILE bytes, one prompt per line, blank
    lines and "#" comments skipped, each prompt checked by :func:`check_prompt`.

    A FIFO, a device (/dev/zero) or a folder is refused before it is opened; a file is never read past the bound.

    Raises:
        LimitError: the file is missing, not a regular file, too big, not UTF-8 text, or holds a bad prompt or none.
    """
    from .jsonio import JsonError, read_regular  # the bounded reader; jsonio imports nothing of zbench

    path = Path(path).expanduser()
    try:
        data = read_regular(path, max_bytes=MAX_PROMPTS_FILE, what="prompts file")
    except FileNotFoundError:
        raise LimitError(key, f"{path} does not exist; give a text file with one prompt per line") from None
    except JsonError as err:
        raise LimitError(key, str(err)) from None
    except OSError as err:
        raise LimitError(key, f"{path} cannot be read ({err.strerror or err})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise LimitError(key, f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    lines = [line.strip() for line in text.splitlines()]
    prompts = [line for line in lines if line and not line.startswith("#")]
    if not prompts:
        raise LimitError(key, f"{path} holds no prompt (one per line)")
    for number, line in enumerate(lines, 1):
        if line and not line.startswith("#"):
            try:
                check_prompt(line, key)
            except LimitError as err:
                raise LimitError(key, f"{path} line {number}: {str(err).split(': ', 1)[1]}") from None
    if len(prompts) > MAX_PROMPTS:
        raise LimitError(key, f"{path} holds {len(prompts):,} prompts; at most {MAX_PROMPTS}")
    return prompts
