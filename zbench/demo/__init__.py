"""The embedded demo: a small Z-Image pipeline and a LoRA run, trained on this CPU from drawn scenes.

Its scene grammar (``shapes``), the toy pipelines and trainer-layout LoRA writers that tests
and benchmarks use (``toy``), training (``train``), the build (``build``), and the report with
its own measures (``report``, ``metrics``). The demo uses the engine and the review tools;
neither of them imports it.
"""
