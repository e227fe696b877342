"""The papers' tables and the speed/memory benchmarks of wsss_kit.

``python -m benchmarks COMMAND`` (see :mod:`benchmarks.__main__`); the scripts beside this file
(``python benchmarks/<script>.py``) each write a results file under ``benchmarks/results/``.
"""
