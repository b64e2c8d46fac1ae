"""The engine: find a run's checkpoints, load the base once, hot-swap LoRAs in place, render, cache images.

It knows nothing of the review tools (``zbench.review``) or the embedded demo (``zbench.demo``)
and imports neither; ``zbench/__init__.py`` is the public API.
"""
