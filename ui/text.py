"""Text from files shown as typed: file names, tensor keys, metadata and messages that quote them.

Streamlit reads labels, captions, toasts, alerts and markdown as Markdown, so a downloaded LoRA
named ``![x](https://…)`` would make the page fetch an image and show a link. Every string that
comes from a file or a folder goes through :func:`literal` before such a call.
"""

from __future__ import annotations

import re

# Every ASCII punctuation character can be backslash-escaped in CommonMark; escaping all of them
# disarms links, images, emphasis, headings, tables, HTML, LaTeX ($) and Streamlit's :color[...]
# directives alike.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# Emoji and icon shortcodes (":smile:", ":material/home:") are replaced after escapes are read,
# so they are broken with a zero-width space after their first colon instead.
_SHORTCODE = re.compile(r":(?=[\w+/-]+:)")


def literal(text: object) -> str:
    """``text`` escaped so that Streamlit's Markdown shows it character for character."""
    return _PUNCTUATION.sub(r"\\\1", _SHORTCODE.sub(":\u200b", str(text)))
