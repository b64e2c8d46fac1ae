"""The review tools: what the page asks for (grid requests), crop-zoom panels, comparison sheets and
their export, weight and image metrics, and the decisions (ratings, notes, blind votes, release).

They work on the engine's results (``zbench.engine``) and never import the demo (``zbench.demo``);
``zbench/__init__.py`` is the public API.
"""
