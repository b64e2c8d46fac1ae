"""The bench page's parts, one idea each; ``app.py`` puts them together.

UI only: widgets, layout and messages. Every computation lives in the ``zbench`` package, and
these modules use only its public API (``import zbench``).
"""
