"""``python -m benchmarks speed``: one entry point for every speed and memory measure (see
:mod:`benchmarks.speed.cli`; the measures are records of :mod:`benchmarks.speed.registry`)."""
