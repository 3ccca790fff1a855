"""Benchmarks: one module per measured thing; ``python -m benchmarks NAME [ARGS]`` runs one.

Each module is runnable on its own (``python -m benchmarks.NAME``) and prints its medians and
baseline ratios; the numbers recorded in docs/benchmarks.md come from these runs.
"""
