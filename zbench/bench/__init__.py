"""Benchmarks at the size of the real job: checkpoint swaps (``swap``) and whole grids (``grid``).

Both build Z-Image-Turbo's published architecture (``zimage-turbo/*.json``) with random weights,
since the speed of a swap or a render does not depend on the values, and print every figure of
one run side by side (``python -m zbench bench swap|grid``).
"""
